"""Inference latency of the teacher and two students on CPU: PyTorch eager and ONNX Runtime, batch 1 and 32,
sequence 128, median over repetitions (models interleaved). Writes ``results/latency.{json,md}``.

    python benchmarks/latency/run.py [--rounds-b1 40 --rounds-b32 10] [--no-onnx]

Models: the packaged teacher (all-MiniLM-L6-v2, 6 x 384), the 3-layer student initialised by ``select`` (3 x 384) and
a 4-layer narrow student (4 x 256, 8 heads, FFN 1024; HF random init: latency does not depend on the weights).
Eager timings come from ``bertpress.evaluate.latency.measure_latency``. ONNX: ``torch.onnx.export(dynamo=True)``
(needs ``onnxscript``; the legacy TorchScript exporter produces wrong outputs for transformers-5 BERT) with dynamic
batch and sequence axes, checked against eager, then timed with onnxruntime's CPU provider in the same interleaved way.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from bertpress.evaluate.latency import conditions, footprint, measure_latency
from bertpress.init import InitContext, initialise
from bertpress.models.teacher import packaged_teacher_path
from bertpress.train.build import build_run

HERE = Path(__file__).resolve().parent
SEQ_LEN = 128
SEED = 42


def _student(tmp: Path, **student: Any):
    """The student a recipe with this ``student`` section builds (``build_run`` reads no corpus: none is needed)."""
    run = build_run({"seed": SEED, "output_dir": str(tmp / "unused"), "student": student,
                     "data": {"sources": ["not read by build_run"]}})
    initialise(run.recipe.student.init, InitContext(run.teacher, run.student, SEED), run.recipe.student.init_args)
    return run.student


def build_models(tmp: Path) -> dict[str, Path]:
    """name -> saved model directory."""
    dirs = {"teacher 6L x 384": packaged_teacher_path()}
    select = _student(tmp, num_layers=3, init="select")
    narrow = _student(tmp, num_layers=4, hidden_size=256, num_heads=8, intermediate_size=1024, init="random")
    for name, model in (("student 3L x 384 (select)", select), ("student 4L x 256, 8 heads, FFN 1024", narrow)):
        path = tmp / name.split()[1]
        model.save_pretrained(path)
        dirs[name] = path
    return dirs


class Encoder(nn.Module):
    """``(input_ids, attention_mask) -> last_hidden_state``, a positional signature for the exporter."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def export_onnx(model_dir: Path, path: Path) -> dict[str, Any]:
    """Export with dynamic batch/sequence axes and check against eager at batch 1 and 32."""
    import onnxruntime as ort
    from transformers import AutoModel

    model = AutoModel.from_pretrained(model_dir).eval()
    ids = torch.randint(0, model.config.vocab_size, (2, 16))
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq", max=model.config.max_position_embeddings)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(Encoder(model), (ids, torch.ones_like(ids)), dynamo=True, verbose=False,
                                    input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"],
                                    dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}})
    program.save(str(path))
    export_s = time.perf_counter() - t0
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    diffs = []
    for b in (1, 32):
        ids = torch.randint(0, model.config.vocab_size, (b, SEQ_LEN))
        mask = torch.ones_like(ids)
        with torch.inference_mode():
            ref = model(input_ids=ids, attention_mask=mask).last_hidden_state.numpy()
        out = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
        diffs.append(float(np.abs(out - ref).max()))
    return {"export_s": export_s, "max_abs_diff_vs_eager": max(diffs), "onnx_mb": path.stat().st_size / 1e6}


def time_onnx(paths: list[Path], batch_sizes: tuple[int, ...], rounds: dict[int, int], warmup: int = 2
              ) -> list[dict[str, dict[str, float]]]:
    """Like ``measure_latency``: interleaved rounds, median and quartiles in ms."""
    import onnxruntime as ort

    sessions = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in paths]
    gen = torch.Generator().manual_seed(0)
    out: list[dict[str, dict[str, float]]] = [{} for _ in paths]
    for batch in batch_sizes:
        times: list[list[float]] = [[] for _ in paths]
        for i in range(warmup + rounds[batch]):
            for m, session in enumerate(sessions):
                ids = torch.randint(0, 30522, (batch, SEQ_LEN), generator=gen).numpy()
                feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
                start = time.perf_counter()
                session.run(None, feed)
                if i >= warmup:
                    times[m].append(1000 * (time.perf_counter() - start))
        for m, t in enumerate(times):
            q1, median, q3 = np.percentile(t, [25, 50, 75])
            out[m][str(batch)] = {"median_ms": float(median), "q1_ms": float(q1), "q3_ms": float(q3), "n": rounds[batch]}
    return out


def markdown(result: dict[str, Any]) -> str:
    c = result["conditions"]
    onnx = result.get("onnx")
    head = ("| model | parameters | size MB | eager b1 ms | eager b32 ms | speed-up vs teacher (b1 / b32) |"
            + (" ONNX Runtime b1 ms | ONNX Runtime b32 ms | ORT vs eager (b1 / b32) |" if onnx else ""))
    lines = ["# CPU inference latency: teacher vs students", "",
             "Generated by `python benchmarks/latency/run.py`. Forward pass of the bare encoder over random token ids, "
             f"sequence {SEQ_LEN}, fp32, batch 1 and 32; median (quartiles in the JSON) over "
             f"{result['rounds']['1']} (batch 1) / {result['rounds']['32']} (batch 32) interleaved repetitions after "
             "2 warm-up passes.", "",
             f"- Machine: {c['cpu']}, {c['cpu_count']} logical CPUs, torch {c['torch']} ({c['torch_threads']} threads)"
             + (f", onnxruntime {onnx['version']} (CPU provider, {onnx['intra_op_threads']})" if onnx else "") + ".",
             f"- Load: 1-minute load average {result['load_average_start'][0]:.1f} at the start, "
             f"{result['load_average_end'][0]:.1f} at the end (above the core count, other jobs shared the machine; the "
             "models are interleaved, so ratios are fair either way).", "", head,
             "|---|---:|---:|---:|---:|---:|" + ("---:|---:|---:|" if onnx else "")]
    teacher = result["models"][0]["eager"]
    for m in result["models"]:
        e = m["eager"]
        row = (f"| {m['name']} | {m['parameters'] / 1e6:.1f} M | {m['size_mb']:.1f} | {e['1']['median_ms']:.1f} | "
               f"{e['32']['median_ms']:.0f} | {teacher['1']['median_ms'] / e['1']['median_ms']:.2f}x / "
               f"{teacher['32']['median_ms'] / e['32']['median_ms']:.2f}x |")
        if onnx:
            o = m["onnx"]
            row += (f" {o['1']['median_ms']:.1f} | {o['32']['median_ms']:.0f} | "
                    f"{e['1']['median_ms'] / o['1']['median_ms']:.2f}x / {e['32']['median_ms'] / o['32']['median_ms']:.2f}x |")
        lines.append(row)
    if onnx:
        diffs = ", ".join(f"{m['onnx_export']['max_abs_diff_vs_eager']:.1e}" for m in result["models"])
        lines += ["", f"ONNX outputs match eager to max |diff| {diffs} (per model). Speed-up vs teacher uses eager "
                  "times; ORT vs eager > 1 means ONNX Runtime is faster."]
    elif "onnx_skipped" in result:
        lines += ["", f"ONNX Runtime: skipped ({result['onnx_skipped']})."]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds-b1", type=int, default=40)
    p.add_argument("--rounds-b32", type=int, default=10)
    p.add_argument("--no-onnx", action="store_true")
    p.add_argument("--out-dir", type=Path, default=HERE / "results")
    args = p.parse_args()
    rounds = {1: args.rounds_b1, 32: args.rounds_b32}
    t0 = time.perf_counter()
    result: dict[str, Any] = {"load_average_start": list(os.getloadavg()), "seq_len": SEQ_LEN,
                              "rounds": {str(k): v for k, v in rounds.items()}}
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp_dir:
        tmp = Path(tmp_dir)
        dirs = build_models(tmp)
        models = [{"name": name, **footprint(d)} for name, d in dirs.items()]
        print("eager", flush=True)
        for m, timing in zip(models, measure_latency(list(dirs.values()), batch_sizes=(1, 32), seq_len=SEQ_LEN,
                                                     rounds=rounds), strict=True):
            m["eager"] = timing
        result["conditions"] = conditions()
        try:
            import onnxruntime
            import onnxscript  # noqa: F401 - needed by the dynamo exporter
        except ImportError as e:
            onnxruntime = None
            result["onnx_skipped"] = f"{e.name} not installed: pip install -e '.[bench]'"
        if onnxruntime is not None and not args.no_onnx:
            print("onnx export", flush=True)
            paths = []
            for m, d in zip(models, dirs.values(), strict=True):
                paths.append(tmp / f"{d.name}.onnx")
                m["onnx_export"] = export_onnx(d, paths[-1])
            print("onnx runtime", flush=True)
            for m, timing in zip(models, time_onnx(paths, (1, 32), rounds), strict=True):
                m["onnx"] = timing
            opts = onnxruntime.SessionOptions()
            result["onnx"] = {"version": onnxruntime.__version__,
                              "intra_op_threads": f"intra-op threads {opts.intra_op_num_threads or 'default'}"}
    result.update(models=models, load_average_end=list(os.getloadavg()), total_wall_s=time.perf_counter() - t0,
                  python=sys.version.split()[0])
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "latency.json").write_text(json.dumps(result, indent=1, default=str))
    (args.out_dir / "latency.md").write_text(markdown(result))
    print(f"wrote {args.out_dir / 'latency.json'} and latency.md ({result['total_wall_s'] / 60:.1f} min)")


if __name__ == "__main__":
    main()
