"""Two-sample comparisons of a reading's (or a score's) distribution, and the tail of an
alert count: the statistics a drift check decides on (monitoring.evaluation.drift_detection)."""
from __future__ import annotations

import numpy as np


def finite(values) -> np.ndarray:
    """`values` as a flat float array without NaN or infinities."""
    values = np.asarray(values, dtype=np.float64).ravel()
    return values[np.isfinite(values)]


def population_stability(reference, recent, n_bins: int = 10) -> float:
    """PSI = sum over bins of (recent% - reference%) * ln(recent% / reference%), the bins cut at
    the reference's quantiles (ties merge bins). Each bin's count gets 0.5 added, so an empty
    bin gives a large but finite term. NaN when either side has no finite value."""
    reference, recent = finite(reference), finite(recent)
    if len(reference) == 0 or len(recent) == 0:
        return float("nan")
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, n_bins + 1)[1:-1]))
    n = len(edges) + 1
    ref = (np.bincount(np.searchsorted(edges, reference, side="right"), minlength=n) + 0.5) / (len(reference) + 0.5 * n)
    new = (np.bincount(np.searchsorted(edges, recent, side="right"), minlength=n) + 0.5) / (len(recent) + 0.5 * n)
    return float(np.sum((new - ref) * np.log(new / ref)))


def ks_test(reference, recent) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic D and its (asymptotic) p-value."""
    from scipy import stats  # here: 0.5 s to import, for the drift checks only

    result = stats.ks_2samp(finite(reference), finite(recent), method="asymp")
    return float(result.statistic), float(result.pvalue)


def excess_p_value(k: int, n: int, rate: float) -> float:
    """P(X >= k) for X ~ Binomial(n, rate): how surprising k alerts in n windows are."""
    from scipy import stats

    return float(stats.binomtest(int(k), int(n), rate, alternative="greater").pvalue)
