"""``bertpress export RUN_DIR``: ONNX (graph-optimised by ONNX Runtime) and dynamic int8, with parity and latency.

1. ``model.onnx``: the bare encoder (``input_ids``, ``attention_mask`` -> ``last_hidden_state``) exported by PyTorch's
   ONNX exporter (``torch.onnx.export(dynamo=True)``) with dynamic batch and sequence axes;
2. ``model.optimized.onnx``: the graph ONNX Runtime runs after its extended optimisations (constant folding and the
   transformer fusions that apply: LayerNorm, GELU, attention, skip-LayerNorm), saved so loading skips them;
3. ``model.int8.onnx``: dynamic int8 quantisation of the weights, one scale per output channel
   (``onnxruntime.quantization.quantize_dynamic(per_channel=True)``).

Parity against eager PyTorch on random token ids (batch 1 and 32): the max absolute difference of the hidden states
(fp32 formats: expected <= 1e-4) and, for int8, the cosine similarity of mean-pooled embeddings (tolerance 0.99:
int8 weights change hidden states by far more than fp32 rounding, embeddings little). Latency per format at batch 1
and 32 (median of interleaved rounds). Everything is written to ``export.json``; the tokenizer and config are copied
beside the models. Needs the ``export`` extra (``pip install 'bertpress[export]'``).
"""

from __future__ import annotations

import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from bertpress.atomic import atomic_write_json
from bertpress.errors import BertpressError

#: fp32 ONNX must match eager to this (max abs difference of hidden states); int8 embeddings to this cosine
FP32_TOLERANCE, INT8_COSINE = 1e-4, 0.99
FORMATS = ("onnx", "onnx-optimized", "onnx-int8")


class _Encoder(nn.Module):
    """``(input_ids, attention_mask) -> last_hidden_state``: a positional signature for the exporter."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def _ort():
    try:
        import onnxruntime
    except ImportError:
        raise BertpressError("export needs onnxruntime, onnx and onnxscript: pip install 'bertpress[export]'") from None
    return onnxruntime


def _mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask[..., None].astype(hidden.dtype)
    return (hidden * m).sum(1) / np.clip(m.sum(1), 1, None)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a / np.linalg.norm(a, axis=-1, keepdims=True), b / np.linalg.norm(b, axis=-1, keepdims=True)
    return float((a * b).sum(-1).min())


def export_model(model_dir: Path, out_dir: Path, *, seq_len: int = 128, rounds: int = 20,
                 latency: bool = True, threads: int | None = None) -> dict[str, Any]:
    """Export the encoder in ``model_dir`` (a run directory: its student) to ``out_dir`` in every format; returns (and
    writes) the report. ``threads`` caps ONNX Runtime's intra-op threads (default: its own choice; eager PyTorch runs
    with ``torch.get_num_threads()``)."""
    ort = _ort()
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModel, AutoTokenizer

    from bertpress.models.teacher import resolve_model

    model_dir, out_dir = Path(resolve_model(str(model_dir))), Path(out_dir)
    if not (model_dir / "config.json").is_file():
        raise BertpressError(f"{model_dir} has no config.json: give a run directory or a saved model directory")
    model = AutoModel.from_pretrained(model_dir, attn_implementation="eager").eval()
    seq_len = min(seq_len, int(getattr(model.config, "max_position_embeddings", seq_len)) - 2)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"onnx": out_dir / "model.onnx", "onnx-optimized": out_dir / "model.optimized.onnx",
             "onnx-int8": out_dir / "model.int8.onnx"}
    vocab = model.config.vocab_size
    ids = torch.randint(5, vocab, (2, 16))
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq", max=model.config.max_position_embeddings)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(_Encoder(model), (ids, torch.ones_like(ids)), dynamo=True, verbose=False,
                                    input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"],
                                    dynamic_shapes={"input_ids": {0: batch, 1: seq},
                                                    "attention_mask": {0: batch, 1: seq}})
    program.save(str(paths["onnx"]), external_data=False)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(paths["onnx-optimized"])
    ort.InferenceSession(str(paths["onnx"]), options, providers=["CPUExecutionProvider"])
    # one scale per output channel: with one per tensor the 4 x 192 student of the MobileBERT benchmark kept a mean-
    # pooled cosine of only 0.826 to fp32, per channel 0.9986 (file 8.13 vs 8.09 MB, batch-1 latency 4.1-4.2 ms both)
    quantize_dynamic(str(paths["onnx"]), str(paths["onnx-int8"]), weight_type=QuantType.QInt8, per_channel=True)
    export_s = time.perf_counter() - t0
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(out_dir)
    shutil.copy(model_dir / "config.json", out_dir / "config.json")

    run_options = ort.SessionOptions()
    if threads:
        run_options.intra_op_num_threads = threads
    sessions = {f: ort.InferenceSession(str(p), run_options, providers=["CPUExecutionProvider"])
                for f, p in paths.items()}
    gen = torch.Generator().manual_seed(0)
    parity: dict[str, dict[str, float]] = {f: {} for f in FORMATS}
    inputs = {}
    for b in (1, 32):
        x = torch.randint(5, vocab, (b, seq_len), generator=gen)
        mask = torch.ones_like(x)
        if b > 1:
            mask[1:, seq_len // 2:] = 0  # padded rows too
        inputs[b] = (x, mask)
        with torch.inference_mode():
            ref = model(input_ids=x, attention_mask=mask).last_hidden_state.numpy()
        feed = {"input_ids": x.numpy(), "attention_mask": mask.numpy()}
        for f, session in sessions.items():
            out = session.run(None, feed)[0]
            real = mask.numpy().astype(bool)
            parity[f][f"max_abs_diff_b{b}"] = float(np.abs(out - ref)[real].max())
            parity[f][f"min_cosine_b{b}"] = _cosine(_mean_pool(out, mask.numpy()), _mean_pool(ref, mask.numpy()))
    checks = {f: (max(parity[f]["max_abs_diff_b1"], parity[f]["max_abs_diff_b32"]) <= FP32_TOLERANCE
                  if f != "onnx-int8" else min(parity[f]["min_cosine_b1"], parity[f]["min_cosine_b32"]) >= INT8_COSINE)
              for f in FORMATS}
    report: dict[str, Any] = {
        "model_dir": str(model_dir), "seq_len": seq_len, "export_s": round(export_s, 2),
        "files": {f: {"path": p.name, "mb": round(p.stat().st_size / 2**20, 2)} for f, p in paths.items()},
        "parity": parity, "parity_ok": checks,
        "tolerances": {"fp32_max_abs_diff": FP32_TOLERANCE, "int8_min_cosine_of_mean_pooled": INT8_COSINE},
        "int8": "dynamic, int8 weights with one scale per output channel, activations quantised at run time",
        "versions": {"torch": torch.__version__, "onnxruntime": ort.__version__}}
    if latency:  # eager as users run it (SDPA attention where the architecture has it)
        report["latency_ms"] = _latency(AutoModel.from_pretrained(model_dir).eval(), sessions, inputs, rounds)
        report["threads"] = {"torch": torch.get_num_threads(), "onnxruntime": threads or "default"}
    atomic_write_json(out_dir / "export.json", report)
    if not all(checks.values()):
        bad = [f for f, ok in checks.items() if not ok]
        raise BertpressError(f"exported {', '.join(bad)} does not match eager PyTorch within tolerance (see "
                             f"{out_dir / 'export.json'}): report it with the model's config")
    return report


def _latency(model: nn.Module, sessions: dict[str, Any], inputs: dict[int, tuple[Tensor, Tensor]],
             rounds: int) -> dict[str, dict[str, float]]:
    """Median ms per format (eager included) at each batch size, interleaved rounds after 2 warm-up passes."""
    out: dict[str, dict[str, float]] = {"eager": {}, **{f: {} for f in sessions}}
    for b, (x, mask) in inputs.items():
        feed = {"input_ids": x.numpy(), "attention_mask": mask.numpy()}
        times: dict[str, list[float]] = {k: [] for k in out}
        for i in range(2 + rounds):
            for name in out:
                start = time.perf_counter()
                if name == "eager":
                    with torch.inference_mode():
                        model(input_ids=x, attention_mask=mask)
                else:
                    sessions[name].run(None, feed)
                if i >= 2:
                    times[name].append(1000 * (time.perf_counter() - start))
        for name, t in times.items():
            out[name][f"b{b}"] = float(np.median(t))
    return out
