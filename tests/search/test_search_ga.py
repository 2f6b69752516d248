"""Search space and GA operators: validity in both spaces, sizes, determinism, novelty of children."""

import math
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bertpress.errors import BertpressError
from bertpress.search import ga
from bertpress.search.space import SearchSpace

spaces = st.builds(SearchSpace, st.integers(1, 5), st.integers(1, 8), st.sampled_from(["monotone", "free"]))


@pytest.mark.parametrize(("kind", "size"), [("monotone", 56), ("free", 216)])
def test_size_matches_enumeration(kind, size):
    space = SearchSpace(3, 6, kind)
    everything = list(space.all())
    assert space.size == size == len(everything) == len(set(everything))
    assert all(space.is_valid(m) for m in everything)
    assert "56 mappings" in SearchSpace(3, 6).describe()


@settings(max_examples=150, deadline=None)
@given(spaces, st.integers(0, 2**32 - 1), st.floats(0, 1))
def test_operators_keep_mappings_valid(space, seed, rate):
    rng = random.Random(seed)
    a, b = space.sample(rng), space.sample(rng)
    assert space.is_valid(a) and space.is_valid(b)
    assert space.is_valid(ga.crossover(rng, a, b, space))
    assert space.is_valid(ga.mutate(rng, a, rate, space))


@settings(max_examples=100, deadline=None)
@given(spaces, st.lists(st.integers(-3, 12), min_size=1, max_size=5))
def test_repair_gives_a_valid_mapping(space, raw):
    raw = (raw * space.student_layers)[:space.student_layers]
    fixed = space.repair(raw)
    assert space.is_valid(fixed)
    if space.is_valid(raw):
        assert fixed == tuple(raw)


def test_monotone_space_rejects_decreasing():
    space = SearchSpace(3, 6)
    assert not space.is_valid((3, 2, 6)) and SearchSpace(3, 6, "free").is_valid((3, 2, 6))
    assert not space.is_valid((0, 2, 6)) and not space.is_valid((2, 6)) and not space.is_valid((2, 6, 7))
    with pytest.raises(BertpressError, match="not in the monotone space"):
        space.check([3, 2, 6], "baseline")


def test_monotone_sampling_is_uniform():
    space = SearchSpace(2, 3)  # 6 mappings
    counts = Counter(space.sample(random.Random(i)) for i in range(6000))
    assert set(counts) == set(space.all())
    assert max(counts.values()) < 1.25 * min(counts.values())


def test_operators_deterministic_with_seed():
    space = SearchSpace(4, 12, "free")
    scored = [(space.sample(random.Random(i)), float(i)) for i in range(8)]

    def run(seed):
        rng = random.Random(seed)
        return ga.breed(rng, space, ga.GAParams(), scored, lambda m: True, 6)

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_tournament_and_elites():
    scored = [((1, 1), 0.1), ((2, 2), 0.9), ((3, 3), 0.5), ((4, 4), None)]
    ranked = ga.ranked(scored)
    assert [m for m, _ in ranked] == [(2, 2), (3, 3), (1, 1)]
    assert ga.tournament(random.Random(0), ranked, size=3) == (2, 2)  # whole population: the best wins
    assert ga.elites(scored, 2) == [(2, 2), (3, 3)]


@pytest.mark.parametrize("kind", ["monotone", "free"])
def test_breed_gives_new_distinct_children_until_space_exhausted(kind):
    space = SearchSpace(2, 3, kind)
    seen = {(1, 1), (1, 2)}
    population = [((1, 1), 0.3), ((1, 2), 0.6)]
    children = ga.breed(random.Random(0), space, ga.GAParams(), population, lambda m: m not in seen, 100)
    assert len(children) == space.size - len(seen) == len(set(children))
    assert not seen & set(children) and all(space.is_valid(c) for c in children)


def test_breed_without_scored_parents_draws_random_mappings():
    space = SearchSpace(3, 6)
    children = ga.breed(random.Random(0), space, ga.GAParams(), [((1, 2, 3), None)], lambda m: True, 4)
    assert len(children) == 4 and all(space.is_valid(c) for c in children)


def test_initial_population_keeps_seeds_first():
    space = SearchSpace(3, 6)
    seeds = [(2, 4, 6), (4, 5, 6), (2, 4, 6), (1, 3, 5)]
    pop = ga.initial_population(random.Random(0), space, 6, seeds, lambda m: m not in seeds)
    assert pop[:3] == [(2, 4, 6), (4, 5, 6), (1, 3, 5)] and len(set(pop)) == 6
    assert math.comb(8, 3) == space.size
