"""Throughput on one GPU (issue 14, item 2): bertpress vs TextBrewer vs a plain PyTorch loop on the same work.

The work is the CPU benchmark's (TinyBERT-style 3-layer ``select`` student, embedding + hidden + attention-probability
MSE along the uniform mapping, AdamW, clipping, packed Wikipedia blocks in bertpress's order) at ``--batch-size``
(default 256) x 128 tokens, for two teachers: the packaged all-MiniLM-L6-v2 and, with ``--bert-base``, a randomly
initialised BERT-base-shaped teacher (12 layers, hidden 768, FFN 3072; seeded, the packaged tokenizer).

Rows, each one process per run, order rotated per round (``--reps`` rounds, ``--warmup`` untimed then ``--steps``
timed steps; the clock waits for the device only at the two ends of the timed window, so every loop keeps its own
host/device overlap):

- ``bertpress``: the defaults on a bf16 GPU (``mixed_precision: auto`` = bf16 autocast; SDPA in unmapped layers, the
  attention kernel's hand-over in mapped ones, no per-step host synchronisation);
- ``plain_bf16``: the plain loop under bf16 autocast (the same precision: the like-for-like ratio);
- ``plain`` and ``textbrewer``: fp32, their defaults (TextBrewer's mixed precision needs apex).

First an equivalence check in fp32 with dropout off (per-step losses agree to ``--tolerance``). MFU = model FLOPs
(teacher forward over its layers + 3 x the student's forward: forward and backward; matmuls and attention products
only) / time / the GPU's dense bf16 peak (``--peak-tflops``; H100/H200 known). Writes ``throughput-gpu.{json,md}``.

    python benchmarks/throughput/gpu.py --out-dir benchmarks/throughput/results/gpu [--bert-base]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import BLOCK_SIZE, STUDENT_LAYERS, TEACHER
from run import run_one, spread

#: row -> (runner, arguments besides the shared ones)
ENTRIES: dict[str, tuple[str, list[str]]] = {
    "bertpress": ("bertpress", ["--set", "train.mixed_precision=bf16"]),
    "plain_bf16": ("plain", ["--bf16"]),
    "plain": ("plain", []),
    "textbrewer": ("textbrewer", []),
}
#: dense bf16 tensor-core peak, TFLOPS (NVIDIA data sheets, SXM)
PEAKS = {"H100": 989.4, "H200": 989.4, "A100": 312.0}


def layer_flops(hidden: int, ffn: int, batch: int, seq: int) -> float:
    """Forward FLOPs of one encoder layer: the six projections (Q, K, V, output, FFN in/out) and the two attention
    products (QKᵀ and PV), 2 FLOPs per multiply-add."""
    tokens = batch * seq
    return 2 * tokens * (4 * hidden * hidden + 2 * hidden * ffn) + 2 * 2 * batch * seq * seq * hidden


def step_flops(config: Any, batch: int) -> float:
    """Model FLOPs of one distillation step: the teacher's forward over all its layers (the uniform mapping reads
    the last) and the student's forward and backward (3 x forward)."""
    layer = layer_flops(config.hidden_size, config.intermediate_size, batch, BLOCK_SIZE)
    return layer * (config.num_hidden_layers + 3 * STUDENT_LAYERS)


def bert_base_teacher(dst: Path, tokenizer_from: str) -> Path:
    """A seeded, randomly initialised BERT-base-shaped model with ``tokenizer_from``'s tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from bertpress.models.teacher import resolve_model

    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                         intermediate_size=3072), add_pooling_layer=False).save_pretrained(dst)
    AutoTokenizer.from_pretrained(resolve_model(tokenizer_from)).save_pretrained(dst)
    return dst


def measure(teacher: str, args: argparse.Namespace, tmp: Path, label: str) -> dict[str, Any]:
    """The rounds of every row on ``teacher``; returns per-row spreads, MFU and ratios."""
    from transformers import AutoConfig

    from bertpress.models.teacher import resolve_model

    shared = ["--device", args.device, "--batch-size", str(args.batch_size), "--teacher", teacher,
              "--warmup", str(args.warmup), "--steps", str(args.steps)]
    runs: list[dict[str, Any]] = []
    names = list(ENTRIES)
    for r in range(args.reps):
        for name in names[r % len(names):] + names[:r % len(names)]:
            runner, extra = ENTRIES[name]
            runs.append(run_one(runner, [*shared, *extra], tmp, f"{label}-rep{r}-{name}") | {"entry": name})
    flops = step_flops(AutoConfig.from_pretrained(resolve_model(teacher)), args.batch_size)
    tokens_per_step = args.batch_size * BLOCK_SIZE
    rows = {}
    for name in names:
        xs = [x for x in runs if x["entry"] == name]
        rate = spread([x["tokens_per_s"] for x in xs])
        achieved = flops * rate["median"] / tokens_per_step
        rows[name] = {"tokens_per_s": rate, "tflops": achieved / 1e12,
                      "mfu": achieved / (args.peak_tflops * 1e12) if args.peak_tflops else None,
                      "peak_device_mb": spread([x["peak_device_mb"] or 0.0 for x in xs])}
    ratios = {other: rows["bertpress"]["tokens_per_s"]["median"] / rows[other]["tokens_per_s"]["median"]
              for other in names if other != "bertpress"}
    return {"teacher": teacher, "step_flops": flops, "rows": rows, "ratios": ratios, "runs": runs}


def equivalence(teacher: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    shared = ["--device", args.device, "--batch-size", str(args.batch_size), "--teacher", teacher,
              "--warmup", "0", "--steps", "4", "--no-dropout"]
    losses = {s: run_one(s, shared, tmp, f"equiv-{s}")["losses"] for s in ("bertpress", "textbrewer", "plain")}
    rel = {s: max(abs(a - b) / abs(b) for a, b in zip(v, losses["plain"], strict=True)) for s, v in losses.items()}
    return {"losses": losses, "max_relative_difference_to_plain": rel, "tolerance": args.tolerance,
            "passed": all(r <= args.tolerance for r in rel.values())}


def write_markdown(result: dict[str, Any], path: Path) -> None:
    m = result["machine"]
    lines = ["# Distillation throughput on one GPU: bertpress vs TextBrewer vs a plain PyTorch loop", "",
             f"Command: `{result['command']}`. Device: {m['device_name']} ({m['peak_tflops'] or '?'} TFLOPS dense "
             f"bf16 peak), torch {m['torch']}, transformers {m['transformers']}. Batch {result['batch_size']} x "
             f"{BLOCK_SIZE} tokens, dropout on; {result['reps']} rounds x {result['warmup']} warm-up + "
             f"{result['steps']} timed steps; medians (min-max). Total {result['total_wall_s'] / 60:.1f} min.", "",
             f"Equivalence (fp32, dropout off, 4 steps, packaged teacher): largest relative difference to the plain "
             f"loop {max(result['equivalence']['max_relative_difference_to_plain'].values()):.1e} (tolerance "
             f"{result['equivalence']['tolerance']:g}): **{'passed' if result['equivalence']['passed'] else 'FAILED'}**."]
    for block in result["teachers"]:
        lines += ["", f"## Teacher {block['teacher']} ({block['step_flops'] / 1e12:.2f} TFLOP per step)", "",
                  "| row | precision | tokens/s | TFLOPS | MFU | peak GPU memory MB | bertpress vs row |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        for name, row in block["rows"].items():
            t = row["tokens_per_s"]
            mfu = f"{100 * row['mfu']:.1f}%" if row["mfu"] is not None else "n/a"
            ratio = "" if name == "bertpress" else f"{block['ratios'][name]:.2f}x"
            precision = "bf16 autocast" if name in ("bertpress", "plain_bf16") else "fp32"
            lines.append(f"| {name} | {precision} | {t['median']:,.0f} ({t['min']:,.0f}-{t['max']:,.0f}) | "
                         f"{row['tflops']:.1f} | {mfu} | {row['peak_device_mb']['median']:,.0f} | {ratio} |")
    lines += ["", "Goal (issue 14): bertpress >= 2x TextBrewer and >= 1.5x the plain loop on the same work."]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--teacher", default=TEACHER, help="the MiniLM teacher (a directory where it is not installed)")
    p.add_argument("--bert-base", action="store_true", help="also a random BERT-base-shaped teacher")
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--tolerance", type=float, default=1e-3)
    p.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak (default: known GPUs)")
    p.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent / "results" / "gpu")
    args = p.parse_args()
    import torch
    import transformers

    name = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    if args.peak_tflops is None:
        args.peak_tflops = next((v for k, v in PEAKS.items() if k in name), None)
    t0 = time.perf_counter()
    result: dict[str, Any] = {
        "command": " ".join(["python benchmarks/throughput/gpu.py", *sys.argv[1:]]),
        "machine": {"device_name": name, "peak_tflops": args.peak_tflops, "torch": torch.__version__,
                    "transformers": transformers.__version__, "logical_cpus": os.cpu_count()},
        "batch_size": args.batch_size, "reps": args.reps, "warmup": args.warmup, "steps": args.steps}
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp_dir:
        tmp = Path(tmp_dir)
        print("equivalence (fp32, dropout off)", flush=True)
        result["equivalence"] = equivalence(args.teacher, args, tmp)
        teachers = [args.teacher] + ([str(bert_base_teacher(tmp / "bert-base", args.teacher))] if args.bert_base else [])
        result["teachers"] = []
        for i, teacher in enumerate(teachers):
            print(f"teacher {teacher}", flush=True)
            result["teachers"].append(measure(teacher, args, tmp, f"t{i}"))
    result["total_wall_s"] = time.perf_counter() - t0
    for block in result["teachers"]:  # the temporary path means nothing after the run
        if block["teacher"] != args.teacher:
            block["teacher"] = "random BERT-base shape (12 x 768, FFN 3072)"
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "throughput-gpu.json").write_text(json.dumps(result, indent=1))
    write_markdown(result, args.out_dir / "throughput-gpu.md")
    print(f"wrote {args.out_dir / 'throughput-gpu.md'} ({result['total_wall_s'] / 60:.1f} min)")
    print((args.out_dir / "throughput-gpu.md").read_text())


if __name__ == "__main__":
    main()
