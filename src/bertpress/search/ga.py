"""Genetic-algorithm operators over integer genomes (layer mappings; supernet shapes, :mod:`bertpress.search.arch`):
pure functions of a seeded :class:`random.Random` and a :class:`Genes` space.

A generation keeps the ``elitism`` fittest mappings and breeds the rest: two tournament winners, one-point
crossover (probability ``crossover_rate``), per-layer mutation (``mutation_rate``), then repair into the space.
Children are always new mappings (never scored before in this search), so no evaluation is spent twice.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from bertpress.search.space import Mapping

#: Breeding attempts per child before falling back to a random new mapping.
MAX_TRIES = 64
#: Spaces up to this size are enumerated when random draws keep hitting known mappings.
ENUMERABLE = 200_000

Scored = tuple[Mapping, float | None]


class Genes(Protocol):
    """A space of genomes (tuples of 1-based genes) the operators breed in, e.g.
    :class:`bertpress.search.space.SearchSpace`."""

    @property
    def size(self) -> int: ...

    def gene_max(self, i: int) -> int:
        """The largest value of gene ``i`` (genes run from 1)."""
        ...

    def repair(self, genome: Sequence[int]) -> Mapping: ...

    def sample(self, rng: random.Random) -> Mapping: ...

    def all(self) -> Iterator[Mapping]: ...


@dataclass(frozen=True)
class GAParams:
    population: int = 8
    tournament_size: int = 2
    crossover_rate: float = 0.9
    mutation_rate: float = 0.3
    elitism: int = 1


def ranked(scored: Sequence[Scored]) -> list[tuple[Mapping, float]]:
    """Mappings with a fitness, best first; ties keep their order (stable, so deterministic)."""
    ok = [(m, f) for m, f in scored if f is not None]
    return sorted(ok, key=lambda mf: -mf[1])


def tournament(rng: random.Random, scored: Sequence[tuple[Mapping, float]], size: int) -> Mapping:
    """The fittest of ``size`` mappings drawn without replacement (the first drawn wins a tie)."""
    entrants = rng.sample(range(len(scored)), min(size, len(scored)))
    best = max(entrants, key=lambda i: (scored[i][1], -entrants.index(i)))
    return scored[best][0]


def crossover(rng: random.Random, a: Mapping, b: Mapping, space: Genes) -> Mapping:
    """One-point crossover: ``a``'s head and ``b``'s tail, repaired (sorted in the monotone space)."""
    if len(a) < 2:
        return space.repair(a if rng.random() < 0.5 else b)
    cut = rng.randint(1, len(a) - 1)
    return space.repair(a[:cut] + b[cut:])


def mutate(rng: random.Random, m: Mapping, rate: float, space: Genes) -> Mapping:
    """Each gene (a mapping: each layer), with probability ``rate``, moves one up or down (half the time) or jumps to
    a random value; the result is repaired into the space."""
    out = list(m)
    for i in range(len(out)):
        if rng.random() < rate:
            if rng.random() < 0.5:
                out[i] += rng.choice((-1, 1))
            else:
                out[i] = rng.randint(1, space.gene_max(i))
    return space.repair(out)


def random_new(rng: random.Random, space: Genes, is_new: Callable[[Mapping], bool]) -> Mapping | None:
    """A random mapping that ``is_new``, or ``None`` when the space holds none."""
    for _ in range(MAX_TRIES):
        m = space.sample(rng)
        if is_new(m):
            return m
    if space.size <= ENUMERABLE:
        left = [m for m in space.all() if is_new(m)]
        return rng.choice(left) if left else None
    return None


def initial_population(rng: random.Random, space: Genes, size: int, seeds: Sequence[Mapping],
                       is_new: Callable[[Mapping], bool]) -> list[Mapping]:
    """``seeds`` (e.g. the baselines, duplicates dropped) then random new mappings, ``size`` in all (fewer only if
    the space is smaller)."""
    out: list[Mapping] = []
    for m in seeds:
        if m not in out and len(out) < size:
            out.append(m)
    while len(out) < size:
        m = random_new(rng, space, lambda x: x not in out and is_new(x))
        if m is None:
            break
        out.append(m)
    return out


def breed(rng: random.Random, space: Genes, params: GAParams, population: Sequence[Scored],
          is_new: Callable[[Mapping], bool], n: int) -> list[Mapping]:
    """``n`` new children of the scored ``population`` (fewer only if the space runs out of new mappings).

    Mappings without a fitness (failed evaluations) never become parents. With no scored parent at all, the
    children are random new mappings.
    """
    parents = ranked(population)
    children: list[Mapping] = []

    def fresh(m: Mapping) -> bool:
        return m not in children and is_new(m)

    while len(children) < n:
        child = None
        for _ in range(MAX_TRIES if parents else 0):
            a = tournament(rng, parents, params.tournament_size)
            if rng.random() < params.crossover_rate:
                c = crossover(rng, a, tournament(rng, parents, params.tournament_size), space)
            else:
                c = a
            c = mutate(rng, c, params.mutation_rate, space)
            if fresh(c):
                child = c
                break
        if child is None:
            child = random_new(rng, space, fresh)
            if child is None:
                break
        children.append(child)
    return children


def elites(population: Sequence[Scored], k: int) -> list[Mapping]:
    """The ``k`` fittest mappings of ``population`` (failed ones excluded)."""
    return [m for m, _ in ranked(population)[:k]]
