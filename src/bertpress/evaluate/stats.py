"""Is a difference between two models beyond noise, and do two rankings agree? Small, dependency-light statistics
for benchmark reports (the layer-mapping search's winner vs the best heuristic; proxy fitness vs full evaluation).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import kendalltau, rankdata, spearmanr, ttest_rel

from bertpress.errors import BertpressError


def paired_test(a: Sequence[float], b: Sequence[float], *, alpha: float = 0.05) -> dict[str, Any]:
    """Paired comparison of ``a`` and ``b``, pair i being the same task and fine-tuning seed for both models.

    Differences d_i = a_i - b_i; reports their mean, sample std, the two-sided paired t-test p-value
    (t = mean(d) / (std(d) / sqrt(n)), n - 1 degrees of freedom; Student 1908) and ``beyond_noise``: p < alpha.
    With identical pairs (std 0) the p-value is 1 if the mean difference is 0, else 0."""
    if len(a) != len(b) or len(a) < 2:
        raise BertpressError(f"a paired test needs two equally long lists of at least 2 scores, got {len(a)} and "
                             f"{len(b)}: pair every (task, seed) run of one model with the other's")
    d = [x - y for x, y in zip(a, b, strict=True)]
    mean, std = statistics.fmean(d), statistics.stdev(d)
    p = (1.0 if mean == 0 else 0.0) if std == 0 else float(ttest_rel(a, b).pvalue)
    return {"n": len(d), "mean_diff": mean, "std_diff": std, "p_value": p, "alpha": alpha,
            "beyond_noise": p < alpha, "wins": sum(x > 0 for x in d), "losses": sum(x < 0 for x in d)}


def rank_correlation(x: Sequence[float], y: Sequence[float]) -> dict[str, float | int]:
    """Spearman's rho and Kendall's tau-b (with their p-values) between ``x`` and ``y`` (e.g. the proxy fitness
    and the full evaluation of the same mappings); NaN where either side is constant."""
    if len(x) != len(y) or len(x) < 3:
        raise BertpressError(f"a rank correlation needs two equally long lists of at least 3 values, got {len(x)} "
                             f"and {len(y)}")
    if len(set(x)) < 2 or len(set(y)) < 2:
        nan = math.nan
        return {"n": len(x), "spearman": nan, "spearman_p": nan, "kendall": nan, "kendall_p": nan}
    rho, rho_p = spearmanr(x, y)
    tau, tau_p = kendalltau(x, y)
    return {"n": len(x), "spearman": float(rho), "spearman_p": float(rho_p), "kendall": float(tau),
            "kendall_p": float(tau_p)}


def _spearman_rows(pred: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """Spearman's rho of each row of ``pred [k, n]`` with the same row of ``gold [k, n]`` (average ranks for ties)."""
    rp, rg = rankdata(pred, axis=1), rankdata(gold, axis=1)
    rp -= rp.mean(axis=1, keepdims=True)
    rg -= rg.mean(axis=1, keepdims=True)
    return (rp * rg).sum(axis=1) / np.sqrt((rp * rp).sum(axis=1) * (rg * rg).sum(axis=1))


def paired_bootstrap_spearman(gold: Sequence[float], a: Sequence[float], b: Sequence[float], *,
                              resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Is model ``a``'s Spearman correlation (x100) with ``gold`` beyond model ``b``'s on the same items?

    Paired bootstrap (Efron & Tibshirani 1993; for STS, e.g. Reimers & Gurevych 2019): ``resamples`` times, draw
    the n items with replacement, the same draw for both models, and take rho(a) - rho(b). Reports the difference on
    all items, the bootstrap std, the percentile 95% interval and ``p_not_better``: the share of resamples where
    ``a`` does not beat ``b`` (one-sided). The zero-shot score has no training seed, so this is its spread."""
    g, pa, pb = (np.asarray(x, dtype=float) for x in (gold, a, b))
    if not len(g) == len(pa) == len(pb) or len(g) < 3:
        raise BertpressError(f"a paired bootstrap needs three equally long lists of at least 3 values, got {len(g)}, "
                             f"{len(pa)} and {len(pb)}: score both models on the same items")
    idx = np.random.default_rng(seed).integers(0, len(g), size=(resamples, len(g)))
    diffs = 100 * (_spearman_rows(pa[idx], g[idx]) - _spearman_rows(pb[idx], g[idx]))
    full = 100 * (float(spearmanr(pa, g)[0]) - float(spearmanr(pb, g)[0]))
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return {"n": len(g), "resamples": resamples, "diff": full, "std": float(diffs.std(ddof=1)),
            "ci95": [float(lo), float(hi)], "p_not_better": float((diffs <= 0).mean())}
