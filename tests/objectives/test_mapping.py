import pytest

from bertpress.errors import BertpressError
from bertpress.objectives.mapping import resolve_mapping, validate_mapping


@pytest.mark.parametrize(("strategy", "expected"), [
    ("uniform", [2, 4, 6]), ("last", [4, 5, 6]), ("skip", [1, 3, 5]), ("first", [1, 2, 3])])
def test_strategies_six_to_three(strategy, expected):
    assert resolve_mapping(strategy, 3, 6) == expected


def test_uniform_twelve_to_four_is_tinybert():
    assert resolve_mapping("uniform", 4, 12) == [3, 6, 9, 12]


def test_explicit_validated():
    assert resolve_mapping("explicit", 3, 6, [6, 6, 6]) == [6, 6, 6]
    with pytest.raises(BertpressError, match="has 2 entries but the student has 3"):
        validate_mapping([1, 2], 3, 6)
    with pytest.raises(BertpressError, match=r"outside 1\.\.6"):
        validate_mapping([0, 3, 7], 3, 6)
    with pytest.raises(BertpressError, match="needs mapping.layers"):
        resolve_mapping("explicit", 3, 6)


def test_unknown_strategy_and_too_deep_student():
    with pytest.raises(BertpressError, match="unknown mapping strategy 'zigzag'"):
        resolve_mapping("zigzag", 3, 6)
    with pytest.raises(BertpressError, match="more than the teacher"):
        resolve_mapping("uniform", 8, 6)
