"""Alarm thresholds fitted on the scores of held-out normal windows."""
from __future__ import annotations

import math

import numpy as np
from scipy.stats import genpareto

from aemodels.errors import ThresholdFitError


def percentile_threshold(scores: np.ndarray, q: float = 99.0, coefficient: float = 1.0) -> float:
    """The q-th percentile of `scores` (numpy's default linear method) times `coefficient`.

    q = 99 flags about 1 % of windows drawn like `scores`; a coefficient > 1 moves the
    threshold up by a safety margin (the seed article's "percentile x coefficient" rule).
    """
    if isinstance(q, bool) or not isinstance(q, (int, float, np.integer, np.floating)):
        raise ValueError(f"percentile q={q!r}, must be a number in (0, 100]")
    if not 0.0 < q <= 100.0:  # also rejects NaN
        raise ValueError(f"percentile q={q}, must be in (0, 100]")
    if isinstance(coefficient, bool) or not isinstance(coefficient, (int, float, np.integer, np.floating)) \
            or not math.isfinite(coefficient) or coefficient <= 0:
        raise ValueError(f"threshold coefficient={coefficient!r}, must be a finite number > 0")
    return float(np.percentile(_finite_scores(scores), q)) * float(coefficient)


def _finite_scores(scores) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if scores.size == 0:
        raise ValueError("cannot fit a threshold on an empty array of scores")
    n_bad = int(np.count_nonzero(~np.isfinite(scores)))
    if n_bad:
        raise ValueError(f"scores contain {n_bad} non-finite values (NaN or inf) of {scores.size}; "
                         "expected finite scores")
    return scores


def pot_threshold(scores: np.ndarray, risk: float, initial_quantile: float = 0.98,
                  min_exceedances: int = 20) -> float:
    """The score exceeded with probability `risk`, by peaks over threshold (POT).

    The scores above t = the `initial_quantile` quantile of `scores` are fitted with a
    generalized Pareto distribution (shape xi, scale sigma; scipy.stats.genpareto, location 0)
    and the tail is extrapolated to the target false-alarm probability:

        z = t + sigma / xi * ((risk * n / n_t) ** -xi - 1)      (t - sigma * log(risk * n / n_t) when xi = 0)

    where n is the number of scores and n_t of exceedances (Siffer et al., KDD 2017). Unlike a
    percentile, z can lie beyond the largest score seen, so a small risk needs no huge sample.
    Raises ThresholdFitError when fewer than `min_exceedances` scores exceed t.
    """
    if isinstance(risk, bool) or not isinstance(risk, (int, float, np.integer, np.floating)) or not 0 < risk < 1:
        raise ValueError(f"POT risk={risk!r}, must be a probability in (0, 1)")
    if isinstance(initial_quantile, bool) or not isinstance(initial_quantile, (int, float, np.integer, np.floating)) \
            or not 0 < initial_quantile < 1:
        raise ValueError(f"POT initial_quantile={initial_quantile!r}, must be in (0, 1)")
    if isinstance(min_exceedances, bool) or not isinstance(min_exceedances, (int, np.integer)) or min_exceedances < 3:
        raise ValueError(f"POT min_exceedances={min_exceedances!r}, must be an int >= 3")
    scores = _finite_scores(scores)
    t = float(np.quantile(scores, initial_quantile))
    peaks = scores[scores > t] - t
    n, n_t = scores.size, peaks.size
    if n_t < min_exceedances:
        raise ThresholdFitError(
            f"POT found {n_t} exceedances of the initial_quantile={initial_quantile} threshold {t:.6g} among "
            f"{n} scores; needs at least {min_exceedances} to fit a generalized Pareto tail "
            f"(give more scores or lower initial_quantile)")
    if risk >= n_t / n:
        raise ValueError(f"POT risk={risk} is not in the tail: {n_t} of {n} scores ({n_t / n:.4g}) exceed the "
                         f"initial quantile; expected risk < {n_t / n:.4g} (or use percentile_threshold)")
    xi, _, sigma = genpareto.fit(peaks, floc=0.0)
    ratio = risk * n / n_t
    if abs(xi) < 1e-9:
        return t - sigma * math.log(ratio)
    return t + sigma / xi * (ratio ** -xi - 1.0)


def persistence(flags: np.ndarray, k: int, n: int) -> np.ndarray:
    """Alert where at least `k` of the last `n` windows (the current one included) are flagged.

    `flags` is a (n_windows,) bool array in time order; the first n - 1 windows look back
    over the windows there are. k = n = 1 returns the flags unchanged.
    """
    for name, value in (("k", k), ("n", n)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"persistence {name}={value!r}, must be an int >= 1")
    if k > n:
        raise ValueError(f"persistence k={k} of the last n={n} windows, must have k <= n")
    flags = np.asarray(flags)
    if flags.ndim != 1 or flags.dtype != bool:
        raise ValueError(f"persistence flags have dtype {flags.dtype} and shape {flags.shape}; "
                         "expected a 1-D bool array")
    counts = np.cumsum(flags, dtype=np.int64)  # flagged windows up to and including i
    counts[n:] -= counts[:-n].copy()  # ... within the last n
    return counts >= k
