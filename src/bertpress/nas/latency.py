"""A latency model of sub-networks, measured on the target: a per-shape lookup table.

NAS-BERT and AutoTinyBERT predict a candidate's latency from per-block measurements instead of timing every
candidate. Here, for each (hidden, heads, FFN) combination of the space, a whole one-layer model (embeddings, one
layer, the model's own overhead) and one extra encoder layer are timed on this device (threads, batch size and
sequence length as options), and a sub-network of ``L`` layers is predicted as ``one_layer + (L - 1) * layer``;
:func:`validate` times whole models of other shapes and reports the relative error of the prediction.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from transformers import PreTrainedModel

from bertpress.models.anatomy import anatomy
from bertpress.nas.space import Arch, ArchSpace

Builder = Callable[[Arch], PreTrainedModel]


def _median_ms(fn: Callable[[], object], device: torch.device, rounds: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(rounds):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


@dataclass
class LatencyTable:
    """Measured milliseconds per (hidden, heads, ffn): ``one_layer`` (a whole one-layer model) and ``layer`` (one
    more encoder layer); the conditions they hold for (``batch``, ``seq``, ``threads``, ``device``)."""

    batch: int
    seq: int
    threads: int
    device: str
    one_layer: dict[tuple[int, int, int], float] = field(default_factory=dict)
    layer: dict[tuple[int, int, int], float] = field(default_factory=dict)

    def predict(self, arch: Arch) -> float:
        key = (arch.hidden, arch.heads, arch.ffn)
        return self.one_layer[key] + (arch.layers - 1) * self.layer[key]

    def to_dict(self) -> dict:
        return {"batch": self.batch, "seq": self.seq, "threads": self.threads, "device": self.device,
                "shapes": [[*k, self.one_layer[k], self.layer[k]] for k in sorted(self.layer)]}

    @classmethod
    def from_dict(cls, d: dict) -> LatencyTable:
        rows = d["shapes"]
        return cls(d["batch"], d["seq"], d["threads"], d["device"], {(h, a, f): one for h, a, f, one, _ in rows},
                   {(h, a, f): layer for h, a, f, _, layer in rows})


class _Timer:
    def __init__(self, build: Builder, batch: int, seq: int, device: str, rounds: int, warmup: int) -> None:
        self.build, self.device, self.rounds, self.warmup = build, torch.device(device), rounds, warmup
        self.ids = torch.randint(5, 100, (batch, seq), generator=torch.Generator().manual_seed(0)).to(self.device)
        self.mask = torch.ones_like(self.ids)

    def model(self, arch: Arch) -> float:
        with torch.random.fork_rng(devices=[]):
            base = anatomy(self.build(arch)).base.to(self.device).eval()
        return _median_ms(lambda: base(input_ids=self.ids, attention_mask=self.mask), self.device, self.rounds,
                          self.warmup)

    def layer(self, arch: Arch) -> float:
        with torch.random.fork_rng(devices=[]):
            parts = anatomy(self.build(arch))
        parts.base.to(self.device).eval()
        x = parts.embeddings(input_ids=self.ids)
        layer = parts.layers[0]
        return _median_ms(lambda: layer(x), self.device, self.rounds, self.warmup)


class _Threads:
    def __init__(self, n: int | None) -> None:
        self.n, self.before = n, torch.get_num_threads()

    def __enter__(self) -> int:
        if self.n:
            torch.set_num_threads(self.n)
        return torch.get_num_threads()

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self.before)


@torch.inference_mode()
def measure_table(space: ArchSpace, build: Builder, *, batch: int = 1, seq: int = 128, threads: int | None = None,
                  device: str = "cpu", rounds: int = 20, warmup: int = 3) -> LatencyTable:
    """Time every (hidden, heads, ffn) of ``space``; ``build(arch)`` makes a model of that shape (any weights)."""
    with _Threads(threads) as n:
        timer = _Timer(build, batch, seq, device, rounds, warmup)
        table = LatencyTable(batch, seq, n, device)
        for hidden, heads, ffn in sorted({(a.hidden, a.heads, a.ffn) for a in space.archs()}):
            arch = Arch(1, hidden, heads, ffn)
            table.one_layer[(hidden, heads, ffn)] = timer.model(arch)
            table.layer[(hidden, heads, ffn)] = timer.layer(arch)
        return table


@torch.inference_mode()
def validate(table: LatencyTable, archs: Sequence[Arch], build: Builder, *, rounds: int = 20,
             warmup: int = 3) -> list[dict]:
    """Predicted vs measured latency of whole models of ``archs`` (``error`` = predicted / measured - 1)."""
    with _Threads(table.threads):
        timer = _Timer(build, table.batch, table.seq, table.device, rounds, warmup)
        out = []
        for arch in archs:
            measured, predicted = timer.model(arch), table.predict(arch)
            out.append({"arch": arch.name, "predicted_ms": round(predicted, 3), "measured_ms": round(measured, 3),
                        "error": round(predicted / measured - 1, 4)})
        return out
