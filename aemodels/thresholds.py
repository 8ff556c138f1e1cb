"""Alarm thresholds fitted on the scores of held-out normal windows, and the rule that
chooses one (`ThresholdRule`): the one description of a threshold that detectors, the
stream configuration, training and the model registry share."""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, fields
from typing import Any, Literal, get_args

import numpy as np

from aemodels.checks import check_int, check_real
from aemodels.errors import ThresholdFitError

ThresholdMethod = Literal["percentile", "pot", "conformal"]
THRESHOLD_METHODS: tuple[ThresholdMethod, ...] = get_args(ThresholdMethod)
REPORTED_PERCENTILES = (95.0, 99.0, 99.9)


def percentile_threshold(scores: np.ndarray, q: float = 99.0, coefficient: float = 1.0) -> float:
    """The q-th percentile of `scores` (numpy's default linear method) times `coefficient`.

    q = 99 flags about 1 % of windows drawn like `scores`; a coefficient > 1 moves the
    threshold up by a safety margin (the seed article's "percentile x coefficient" rule).
    """
    check_real("percentile q", q, 0, 100, low_open=True)
    check_real("threshold coefficient", coefficient, 0, low_open=True)
    return float(np.percentile(_finite_scores(scores), q)) * float(coefficient)


@dataclass(frozen=True)
class ThresholdRule:
    """How a detector's alarm threshold is set from the scores of held-out normal
    (calibration) windows: a percentile times a coefficient (the default, p99), a
    peaks-over-threshold fit for a false-alarm risk, or a conformal bound on the false-alarm
    rate (`conformal_threshold`), each times the coefficient."""

    method: ThresholdMethod = "percentile"
    percentile: float = 99.0
    coefficient: float = 1.0
    pot_risk: float = 1e-3
    pot_initial_quantile: float = 0.98
    conformal_alpha: float = 0.01
    conformal_confidence: float = 0.9

    def __post_init__(self) -> None:
        if self.method not in THRESHOLD_METHODS:
            raise ValueError(f"threshold method={self.method!r}, must be one of {list(THRESHOLD_METHODS)}")
        check_real("threshold percentile", self.percentile, 0, 100, low_open=True)
        check_real("threshold coefficient", self.coefficient, 0, low_open=True)
        check_real("threshold pot_initial_quantile", self.pot_initial_quantile, 0.5, 1, low_open=True,
                   high_open=True)
        # the risk must lie in the tail the POT fit sees: beyond the initial quantile
        check_real("threshold pot_risk", self.pot_risk, 0, 1 - self.pot_initial_quantile, low_open=True,
                   high_open=True)
        check_real("threshold conformal_alpha", self.conformal_alpha, 0, 1, low_open=True, high_open=True)
        check_real("threshold conformal_confidence", self.conformal_confidence, 0, 1, low_open=True,
                   high_open=True)

    @property
    def name(self) -> str:
        times = f"x{self.coefficient:g}" if self.coefficient != 1 else ""
        if self.method == "pot":
            return f"pot(risk={self.pot_risk:g}){times}"
        if self.method == "conformal":
            return f"conformal(alpha={self.conformal_alpha:g},confidence={self.conformal_confidence:g}){times}"
        return f"p{self.percentile:g}{times}"

    def apply(self, scores: np.ndarray) -> float:
        """The threshold this rule sets on `scores`."""
        if self.method == "pot":
            return pot_threshold(scores, self.pot_risk, self.pot_initial_quantile) * self.coefficient
        if self.method == "conformal":
            return conformal_threshold(scores, self.conformal_alpha, self.conformal_confidence) * self.coefficient
        return percentile_threshold(scores, self.percentile, self.coefficient)

    def all_thresholds(self, scores: np.ndarray) -> dict[str, float]:
        """Every threshold reported for comparison: p95 / p99 / p99.9 (times the coefficient),
        POT at the rule's risk when the tail has enough points to fit, and the conformal bound
        at the rule's alpha and confidence when there are enough scores for it."""
        found = {f"p{q:g}": percentile_threshold(scores, q, self.coefficient) for q in REPORTED_PERCENTILES}
        # each reported as absent when the validation windows are too few for it
        with contextlib.suppress(ThresholdFitError):
            found["pot"] = pot_threshold(scores, self.pot_risk, self.pot_initial_quantile) * self.coefficient
        with contextlib.suppress(ThresholdFitError):
            found["conformal"] = conformal_threshold(scores, self.conformal_alpha,
                                                     self.conformal_confidence) * self.coefficient
        return found

    def to_dict(self) -> dict[str, Any]:
        """The rule's fields as plain values (what a saved detector stores)."""
        return {f.name: getattr(self, f.name) for f in fields(ThresholdRule)}


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
    check_real("POT risk", risk, 0, 1, low_open=True, high_open=True)
    check_real("POT initial_quantile", initial_quantile, 0, 1, low_open=True, high_open=True)
    check_int("POT min_exceedances", min_exceedances, 3)
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
    # imported here: scipy.stats takes 0.5 s to import, and rules are read far more often than fitted
    from scipy.stats import genpareto

    xi, _, sigma = genpareto.fit(peaks, floc=0.0)
    ratio = risk * n / n_t
    if abs(xi) < 1e-9:
        return t - sigma * math.log(ratio)
    return t + sigma / xi * (ratio ** -xi - 1.0)


def conformal_min_scores(alpha: float, confidence: float) -> int:
    """The fewest calibration scores with which `conformal_threshold` can certify `alpha` at
    `confidence`: the smallest n with (1 - alpha) ** n <= 1 - confidence (the largest score
    of n is then the threshold)."""
    check_real("conformal alpha", alpha, 0, 1, low_open=True, high_open=True)
    check_real("conformal confidence", confidence, 0, 1, low_open=True, high_open=True)
    n = math.ceil(math.log1p(-confidence) / math.log1p(-alpha))
    # guard the float rounding at the boundary: n must satisfy the inequality itself
    return n if (1 - alpha) ** n <= 1 - confidence else n + 1


def conformal_threshold(scores: np.ndarray, alpha: float = 0.01, confidence: float = 0.9) -> float:
    """A calibration score that normal windows exceed with probability at most `alpha`, with
    probability at least `confidence` over the draw of the calibration scores.

    If the n calibration scores and a new normal window's score are exchangeable (drawn
    alike), the k-th smallest score S(k) is exceeded with probability 1 - F(S(k)), and
    F(S(k)) follows Beta(k, n - k + 1), so

        P(exceedance > alpha) = P(Binomial(n, 1 - alpha) >= k)

    The threshold is S(k) for the smallest k that makes this at most 1 - confidence: a
    guarantee for this one calibration set (training-conditional split conformal), which a
    percentile of few scores does not give: p99 of 45 scores lies between the two largest,
    which leave more than 1 % of normal windows above them on 64 % and 93 % of the draws. It
    cannot lie beyond the largest score, so few scores certify only a large alpha: raises
    ThresholdFitError with fewer than `conformal_min_scores(alpha, confidence)` of them.
    Flags are `score > threshold`, so ties only lower the rate.
    """
    need = conformal_min_scores(alpha, confidence)
    scores = _finite_scores(scores)
    n = scores.size
    if n < need:
        raise ThresholdFitError(
            f"a conformal threshold for alpha={alpha:g} at confidence={confidence:g} needs at least {need} "
            f"calibration scores; got {n} (raise alpha, lower the confidence, or give a longer validation range)")
    # imported here: scipy.stats takes 0.5 s to import, and rules are read far more often than fitted
    from scipy.stats import binom

    miss = binom.sf(np.arange(n), n, 1.0 - alpha)  # [k-1] = P(Binomial(n, 1 - alpha) >= k), k = 1..n
    k = int(np.argmax(miss <= 1.0 - confidence)) + 1  # decreasing in k; k = n qualifies since n >= need
    return float(np.sort(scores)[k - 1])


def persistence(flags: np.ndarray, k: int, n: int) -> np.ndarray:
    """Alert where at least `k` of the last `n` windows (the current one included) are flagged.

    `flags` is a (n_windows,) bool array in time order; the first n - 1 windows look back
    over the windows there are. k = n = 1 returns the flags unchanged.
    """
    check_int("persistence k", k, 1)
    check_int("persistence n", n, 1)
    if k > n:
        raise ValueError(f"persistence k={k} of the last n={n} windows, must have k <= n")
    flags = np.asarray(flags)
    if flags.ndim != 1 or flags.dtype != bool:
        raise ValueError(f"persistence flags have dtype {flags.dtype} and shape {flags.shape}; "
                         "expected a 1-D bool array")
    counts = np.cumsum(flags, dtype=np.int64)  # flagged windows up to and including i
    counts[n:] -= counts[:-n].copy()  # ... within the last n
    return counts >= k
