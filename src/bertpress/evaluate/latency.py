"""Model footprint (parameters, size on disk) and CPU inference latency of the bare encoder (and per sentence).

Latency is the median wall time of one forward pass over a full ``batch x seq_len`` batch of random token ids, in
fp32 with torch's default thread count. Models are timed in interleaved rounds (A, B, A, B, ...), so a load spike
from other processes hits every model alike and speed-ups stay fair on a shared machine.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
from transformers import AutoModel

#: Weight files whose size is the model's "size on disk".
WEIGHT_SUFFIXES = (".safetensors", ".bin")


def footprint(model_dir: Path) -> dict[str, float]:
    """Encoder parameter count and the size of the weight files in ``model_dir`` (MB = 10^6 bytes)."""
    transformers.logging.set_verbosity_error()
    model = AutoModel.from_pretrained(model_dir)
    size = sum(p.stat().st_size for p in Path(model_dir).iterdir() if p.suffix in WEIGHT_SUFFIXES)
    return {"parameters": sum(p.numel() for p in model.parameters()), "size_mb": size / 1e6}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def conditions() -> dict[str, Any]:
    """What the numbers depend on: CPU, threads, versions and the load average while measuring."""
    return {"cpu": cpu_name(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "dtype": "float32",
            "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None}


@torch.inference_mode()
def measure_latency(model_dirs: Sequence[Path], *, batch_sizes: Sequence[int] = (1, 32), seq_len: int = 128,
                    rounds: dict[int, int] | None = None, warmup: int = 2) -> list[dict[str, dict[str, float]]]:
    """Per model, per batch size: median and quartiles of forward-pass time in milliseconds.

    ``rounds`` sets the timed passes per batch size (default 60 at batch 1, 20 above it).
    """
    transformers.logging.set_verbosity_error()
    models = [AutoModel.from_pretrained(d).eval() for d in model_dirs]
    gen = torch.Generator().manual_seed(0)
    out: list[dict[str, dict[str, float]]] = [{} for _ in models]
    for batch in batch_sizes:
        n = (rounds or {}).get(batch, 60 if batch == 1 else 20)
        times: list[list[float]] = [[] for _ in models]
        for i in range(warmup + n):
            for m, model in enumerate(models):
                ids = torch.randint(0, model.config.vocab_size, (batch, seq_len), generator=gen)
                start = time.perf_counter()
                model(input_ids=ids, attention_mask=torch.ones_like(ids))
                if i >= warmup:
                    times[m].append(1000 * (time.perf_counter() - start))
        for m, t in enumerate(times):
            out[m][str(batch)] = _quartiles(t)
    return out


def _quartiles(times_ms: Sequence[float]) -> dict[str, float]:
    q1, median, q3 = np.percentile(times_ms, [25, 50, 75])
    return {"median_ms": float(median), "q1_ms": float(q1), "q3_ms": float(q3), "n": len(times_ms)}


@torch.inference_mode()
def sentence_latency(specs: Sequence[tuple[str, Path]], sentences: Sequence[Sequence[str]], *, warmup: int = 5
                     ) -> list[dict[str, float]]:
    """Per model (``(kind, dir)``: ``encoder`` or ``tagger``), milliseconds to process one real sentence at batch 1,
    from words to the last layer's output (tokenisation included: what tagging a sentence costs); median and
    quartiles over ``sentences``, models interleaved like :func:`measure_latency`."""
    from transformers import AutoTokenizer

    from bertpress.baselines.cvt import CVTTagger

    transformers.logging.set_verbosity_error()
    runners = []
    for kind, path in specs:
        if kind == "tagger":
            tagger = CVTTagger.load(path)
            runners.append(lambda words, t=tagger: t.tag([tuple(words)], batch_size=1))
        else:
            model, tok = AutoModel.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)
            runners.append(lambda words, m=model, t=tok: m(**t(list(words), is_split_into_words=True,
                                                               truncation=True, return_tensors="pt")))
    times: list[list[float]] = [[] for _ in runners]
    for i, words in enumerate([*sentences[:warmup], *sentences]):
        for r, run in enumerate(runners):
            start = time.perf_counter()
            run(words)
            if i >= warmup:
                times[r].append(1000 * (time.perf_counter() - start))
    return [_quartiles(t) for t in times]
