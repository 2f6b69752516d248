"""Paired test and rank correlation against hand-computed values."""

import math

import pytest

from bertpress.errors import BertpressError
from bertpress.evaluate.stats import paired_test, rank_correlation


def test_paired_test_matches_the_t_formula():
    a, b = [70.0, 72.0, 71.0, 75.0], [69.0, 70.0, 71.5, 72.0]
    r = paired_test(a, b)
    d = [1.0, 2.0, -0.5, 3.0]
    mean = sum(d) / 4
    std = math.sqrt(sum((x - mean) ** 2 for x in d) / 3)
    assert r["mean_diff"] == pytest.approx(1.375) and r["std_diff"] == pytest.approx(std)
    t = mean / (std / 2)  # std 1.4930, t 1.8419; two-sided p for 3 degrees of freedom (t table): 0.163
    assert t == pytest.approx(1.8419, abs=1e-4)
    assert r["p_value"] == pytest.approx(0.1627, abs=5e-4) and not r["beyond_noise"]
    assert (r["wins"], r["losses"], r["n"]) == (3, 1, 4)


def test_a_consistent_difference_is_beyond_noise():
    a = [60.0 + i for i in range(9)]
    b = [x - 2.0 + 0.1 * (i % 3) for i, x in enumerate(a)]
    r = paired_test(a, b)
    assert r["beyond_noise"] and r["p_value"] < 1e-6 and r["wins"] == 9


def test_identical_pairs():
    assert paired_test([1.0, 2.0], [1.0, 2.0])["p_value"] == 1.0
    assert paired_test([2.0, 3.0], [1.0, 2.0])["beyond_noise"]


def test_paired_test_refuses_unpaired_lists():
    with pytest.raises(BertpressError, match="equally long"):
        paired_test([1.0, 2.0], [1.0])


def test_rank_correlation_by_hand():
    x = [1.0, 2.0, 3.0, 4.0, 5.0]
    y = [2.0, 1.0, 4.0, 3.0, 5.0]  # ranks differ by swaps: d^2 = 1+1+1+1 = 4; rho = 1 - 6*4/(5*24) = 0.8
    r = rank_correlation(x, y)
    assert r["spearman"] == pytest.approx(0.8)
    assert r["kendall"] == pytest.approx((8 - 2) / 10)  # 8 concordant, 2 discordant pairs of 10
    assert rank_correlation(x, [-v for v in x])["spearman"] == pytest.approx(-1.0)
    assert math.isnan(rank_correlation(x, [1.0] * 5)["spearman"])
