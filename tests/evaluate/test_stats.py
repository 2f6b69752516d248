"""Paired test and rank correlation against hand-computed values."""

import math

import numpy as np
import pytest
from scipy.stats import spearmanr

from bertpress.errors import BertpressError
from bertpress.evaluate.stats import _spearman_rows, paired_bootstrap_spearman, paired_test, rank_correlation


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


def test_row_spearman_equals_scipy_with_ties():
    pred = np.array([[1.0, 2.0, 2.0, 4.0, 3.0], [5.0, 4.0, 3.0, 2.0, 1.0]])
    gold = np.array([[1.0, 1.0, 2.0, 3.0, 5.0], [1.0, 2.0, 3.0, 4.0, 5.0]])
    got = _spearman_rows(pred, gold)
    assert got[0] == pytest.approx(spearmanr(pred[0], gold[0])[0])
    assert got[1] == pytest.approx(-1.0)


def test_paired_bootstrap_of_spearman():
    rng = np.random.default_rng(0)
    gold = rng.uniform(0, 5, 400)
    good, poor = gold + rng.normal(0, 0.5, 400), gold + rng.normal(0, 3.0, 400)
    r = paired_bootstrap_spearman(gold, good, poor, resamples=500, seed=1)
    assert r["diff"] == pytest.approx(100 * (spearmanr(good, gold)[0] - spearmanr(poor, gold)[0]))
    assert r["n"] == 400 and r["ci95"][0] > 0 and r["p_not_better"] == 0.0 and r["std"] > 0
    assert r["ci95"][0] < r["diff"] < r["ci95"][1]
    same = paired_bootstrap_spearman(gold, good, good, resamples=200)
    assert same["diff"] == 0 and same["std"] == 0 and same["p_not_better"] == 1.0  # never better than itself
    assert paired_bootstrap_spearman(gold, good, poor, resamples=500, seed=1) == r  # seeded
    with pytest.raises(BertpressError, match="same items"):
        paired_bootstrap_spearman(gold, good[:-1], poor)
