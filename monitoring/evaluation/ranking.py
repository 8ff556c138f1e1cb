"""Ranks and the rank tests of a benchmark's comparison of detectors over data sets (ADBench's
style): average ranks, Friedman's test, the Wilcoxon signed-rank test and Holm's correction.

Written with numpy and the standard library because the monitoring package does not depend
on scipy (scipy.stats computes the same: rankdata, friedmanchisquare, wilcoxon with its exact
distribution; the tests compare them).
"""
from __future__ import annotations

import math

import numpy as np


def average_ranks(values) -> np.ndarray:
    """1-based ranks of `values`, smallest first; tied values share the mean of their ranks."""
    values = np.asarray(values, dtype=np.float64)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return (ends - (counts - 1) / 2.0)[inverse.ravel()].reshape(values.shape)


def _chi2_sf(x: float, dof: int) -> float:
    """P(X > x) for a chi-square variable with an integer number of degrees of freedom:
    the regularised upper incomplete gamma function Q(dof / 2, x / 2) in closed form."""
    if x <= 0:
        return 1.0
    y = x / 2.0
    if dof % 2 == 0:
        terms = [y ** i / math.factorial(i) for i in range(dof // 2)]
        return min(1.0, math.exp(-y) * sum(terms))
    terms = [y ** (i + 0.5) / math.gamma(i + 1.5) for i in range((dof - 1) // 2)]
    return min(1.0, math.erfc(math.sqrt(y)) + math.exp(-y) * sum(terms))


def friedman_p(table) -> float:
    """Friedman's test on an (n blocks x k treatments) table (sets x detectors): the p-value
    of the chi-square statistic of within-row ranks, corrected for ties as scipy does."""
    table = np.asarray(table, dtype=np.float64)
    n, k = table.shape
    if n < 2 or k < 3:
        return float("nan")
    ranks = np.vstack([average_ranks(row) for row in table])
    statistic = 12.0 / (n * k * (k + 1)) * float((ranks.sum(axis=0) ** 2).sum()) - 3.0 * n * (k + 1)
    ties = sum(float((c ** 3 - c).sum()) for c in (np.unique(row, return_counts=True)[1] for row in table))
    correction = 1.0 - ties / (n * k * (k * k - 1))
    return _chi2_sf(statistic / correction, k - 1) if correction > 0 else float("nan")


def wilcoxon_p(differences) -> float:
    """Two-sided p-value of the Wilcoxon signed-rank test of paired differences (zeros dropped),
    from the exact distribution of the positive rank sum (every sign pattern equally likely;
    tied absolute values share their mean rank). 1.0 when every difference is zero."""
    d = np.asarray(differences, dtype=np.float64)
    d = d[d != 0]
    if len(d) == 0:
        return 1.0
    doubled = np.rint(2 * average_ranks(np.abs(d))).astype(int)  # integer ranks (ties: halves)
    counts = np.zeros(int(doubled.sum()) + 1)
    counts[0] = 1.0
    for r in doubled:  # distribution of the sum of a random subset of the ranks
        counts[r:] = counts[r:] + counts[:-r].copy() if r else counts[r:]
    probabilities = counts / counts.sum()
    t = int(doubled[d > 0].sum())
    lower, upper = probabilities[:t + 1].sum(), probabilities[t:].sum()
    return float(min(1.0, 2 * min(lower, upper)))


def holm(p_values) -> list[float]:
    """Holm's step-down adjustment of several p-values (the k-th smallest times m - k + 1,
    kept monotone, at most 1), in the order given."""
    p = np.asarray(p_values, dtype=np.float64)
    adjusted = np.empty_like(p)
    running = 0.0
    for k, i in enumerate(np.argsort(p, kind="stable")):
        running = max(running, min(1.0, float(p[i]) * (len(p) - k)))
        adjusted[i] = running
    return adjusted.tolist()
