"""The search space: each student layer gets one teacher layer (1-based); monotone (non-decreasing) or free.

The embedding output always maps to the teacher's embedding output, so it is not part of a mapping.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from bertpress.errors import BertpressError

Mapping = tuple[int, ...]
SpaceKind = Literal["monotone", "free"]


@dataclass(frozen=True)
class SearchSpace:
    """Mappings of ``student_layers`` student layers onto teacher layers ``1..teacher_layers``."""

    student_layers: int
    teacher_layers: int
    kind: SpaceKind = "monotone"

    def __post_init__(self) -> None:
        if self.student_layers < 1 or self.teacher_layers < 1:
            raise BertpressError(f"a mapping search needs at least one student and one teacher layer (got "
                                 f"{self.student_layers} and {self.teacher_layers}): check student.num_layers")
        if self.kind not in ("monotone", "free"):
            raise BertpressError(f"unknown search space {self.kind!r}: choose monotone or free")

    @property
    def size(self) -> int:
        """Number of distinct mappings: C(T+S-1, S) non-decreasing ones, or T^S free ones."""
        s, t = self.student_layers, self.teacher_layers
        return math.comb(t + s - 1, s) if self.kind == "monotone" else t ** s

    def describe(self) -> str:
        what = "non-decreasing" if self.kind == "monotone" else "free"
        return (f"{self.kind} search space: {what} mappings of {self.student_layers} student layers onto "
                f"{self.teacher_layers} teacher layers: {self.size:,} mappings")

    def gene_max(self, i: int) -> int:
        """The largest teacher layer student layer ``i`` may map to (the GA's mutation range)."""
        return self.teacher_layers

    def is_valid(self, mapping: Sequence[int]) -> bool:
        m = tuple(mapping)
        if len(m) != self.student_layers or not all(isinstance(x, int) and 1 <= x <= self.teacher_layers for x in m):
            return False
        return self.kind == "free" or all(a <= b for a, b in itertools.pairwise(m))

    def repair(self, mapping: Sequence[int]) -> Mapping:
        """The nearest valid mapping: entries clamped to ``1..T``; in the monotone space, sorted."""
        m = [min(max(int(x), 1), self.teacher_layers) for x in mapping]
        if len(m) != self.student_layers:
            raise ValueError(f"mapping {list(mapping)} has {len(m)} entries, not {self.student_layers}")
        return tuple(sorted(m)) if self.kind == "monotone" else tuple(m)

    def sample(self, rng: random.Random) -> Mapping:
        """A uniformly random mapping (monotone: stars and bars over multisets)."""
        s, t = self.student_layers, self.teacher_layers
        if self.kind == "free":
            return tuple(rng.randint(1, t) for _ in range(s))
        bars = sorted(rng.sample(range(t + s - 1), s))
        return tuple(b - i + 1 for i, b in enumerate(bars))

    def all(self) -> Iterator[Mapping]:
        """Every mapping in lexicographic order (use only on small spaces)."""
        layers = range(1, self.teacher_layers + 1)
        if self.kind == "monotone":
            yield from itertools.combinations_with_replacement(layers, self.student_layers)
        else:
            yield from itertools.product(layers, repeat=self.student_layers)

    def check(self, mapping: Sequence[int], what: str) -> Mapping:
        """``mapping`` as a tuple, or a one-line error saying why it is outside this space."""
        if not self.is_valid(mapping):
            raise BertpressError(f"{what} {list(mapping)} is not in the {self.kind} space of {self.student_layers} "
                                 f"layers over 1..{self.teacher_layers}: use space: free, or a non-decreasing mapping")
        return tuple(mapping)
