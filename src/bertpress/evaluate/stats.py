"""Is a difference between two models beyond noise, and do two rankings agree? Small, dependency-light statistics
for benchmark reports (the layer-mapping search's winner vs the best heuristic; proxy fitness vs full evaluation).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from scipy.stats import kendalltau, spearmanr, ttest_rel

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
