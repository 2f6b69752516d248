"""The architectures a supernet holds: depth, hidden width, heads and FFN width, and how sub-networks are drawn.

A sub-network is a slice of the supernet (NAS-BERT, Xu et al., KDD 2021; AutoTinyBERT's SuperPLM, Yin et al., ACL
2021; DynaBERT, Hou et al., NeurIPS 2020): ``hidden`` dims of the residual stream, per layer ``heads`` heads (each
keeping ``hidden / heads`` dims, or several teacher heads concatenated when a student head is wider, as ETD's
extraction lays them out) and ``ffn`` neurons, and ``layers`` of the supernet's layers chosen by the depth rule.
Ranked by importance (:meth:`bertpress.nas.supernet.Supernet.rank`) those are the most important units of each
kind, so every slice is the best extraction of its size; unranked, the leading ones.

Sampling follows the sandwich rule of slimmable networks (Yu & Huang, ICCV 2019; BigNAS, Yu et al., ECCV 2020) —
the largest, the smallest and ``n`` random sub-networks per step — or one random sub-network per step
(AutoTinyBERT). The draw for a micro-batch depends only on ``(seed, position)``, so every process and every resume
draws the same sequence.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass

import numpy as np

from bertpress.errors import BertpressError


@dataclass(frozen=True, order=True)
class Arch:
    """One sub-network's shape."""

    layers: int
    hidden: int
    heads: int
    ffn: int

    @property
    def name(self) -> str:
        return f"L{self.layers}-H{self.hidden}-A{self.heads}-F{self.ffn}"

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class ArchSpace:
    """Every combination of the choices whose heads divide the hidden width; the supernet is the largest."""

    layers: tuple[int, ...]
    hidden: tuple[int, ...]
    heads: tuple[int, ...]
    ffn: tuple[int, ...]

    def __post_init__(self) -> None:
        for field in ("layers", "hidden", "heads", "ffn"):
            values = getattr(self, field)
            if not values or any(v < 1 for v in values):
                raise BertpressError(f"supernet space {field} {list(values)}: give positive sizes")
            object.__setattr__(self, field, tuple(sorted(set(values))))
        if not self.archs():
            raise BertpressError(f"supernet space has no architecture whose heads {list(self.heads)} divide a hidden "
                                 f"width {list(self.hidden)}: add a head count that divides one of the widths")

    def archs(self) -> list[Arch]:
        return [Arch(*c) for c in itertools.product(self.layers, self.hidden, self.heads, self.ffn)
                if c[1] % c[2] == 0]

    @property
    def largest(self) -> Arch:
        return max(self.archs(), key=lambda a: (a.layers, a.hidden, a.ffn, a.heads))

    @property
    def smallest(self) -> Arch:
        return min(self.archs(), key=lambda a: (a.layers, a.hidden, a.ffn, a.heads))

    def check_fits(self, layers: int, hidden: int, heads: int, ffn: int, head_dim: int) -> None:
        """Refuse a space larger than the supernet it slices (of ``layers`` x ``hidden`` ...)."""
        big = self.largest
        for what, want, have in (("layers", big.layers, layers), ("hidden", big.hidden, hidden),
                                 ("ffn", big.ffn, ffn)):
            if want > have:
                raise BertpressError(f"supernet space {what} {want} exceeds the supernet's {have}: use sizes up to "
                                     f"{have}")
        need = max(max(a.heads, math.ceil(a.hidden / head_dim)) for a in self.archs())
        if need > heads:
            raise BertpressError(f"supernet space needs {need} heads of {head_dim} dims but the supernet has {heads}: "
                                 "use fewer heads or a narrower hidden width")

    def sample(self, seed: int, position: int, rule: str = "sandwich", random: int = 2,
               among: list[Arch] | None = None) -> list[Arch]:
        """The sub-networks trained on micro-batch ``position``: ``sandwich`` (largest, smallest, ``random`` drawn)
        or ``random`` (one drawn); seeded by ``(seed, position)`` only; drawn ``among`` these shapes (default all:
        a shrunk space keeps its largest and smallest)."""
        archs = among if among is not None else self.archs()
        rng = np.random.default_rng([seed, position])
        if rule == "random":
            return [archs[int(rng.integers(len(archs)))]]
        if rule != "sandwich":
            raise BertpressError(f"unknown supernet sampling {rule!r}: use sandwich or random")
        return [self.largest, self.smallest, *(archs[int(i)] for i in rng.integers(len(archs), size=random))]
