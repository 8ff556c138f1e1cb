"""The detector kinds aemon trains, and the threshold rules it applies to their scores.

Detectors are looked up by kind in aemodels' registry of detector classes (every
subclass of BaseDetector with a `kind` registers itself), so nothing here lists kinds
or their hyperparameters: the constructor signature of each class is the one source.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from aemodels.base import BaseDetector
from aemodels.thresholds import percentile_threshold

# Preferred training order (and display order) of the kinds aemon knows; a kind that is
# installed but not listed here comes after these.
KIND_ORDER = ("mlp_ae", "cnn_ae", "vae")
# Hyperparameters that belong to the stream's threshold rule, not to a detector's table.
THRESHOLD_PARAMS = ("threshold_percentile", "threshold_coefficient")
REPORTED_PERCENTILES = (95.0, 99.0, 99.9)


class ThresholdFitError(ValueError):
    """Too few scores above the initial quantile to fit the tail of their distribution."""


def detector_kinds() -> tuple[str, ...]:
    """Every detector kind installed, in KIND_ORDER first."""
    known = tuple(BaseDetector._kinds)
    return tuple(k for k in KIND_ORDER if k in known) + tuple(sorted(k for k in known if k not in KIND_ORDER))


def detector_class(kind: str) -> type[BaseDetector]:
    if kind not in BaseDetector._kinds:
        raise ValueError(f"detector kind {kind!r} is unknown; expected one of {list(detector_kinds())}")
    return BaseDetector._kinds[kind]


def param_defaults(kind: str) -> dict:
    """The constructor arguments of a kind with their defaults, in signature order."""
    cls = detector_class(kind)
    signature = inspect.signature(cls.__init__)
    return {name: signature.parameters[name].default for name in cls._param_names()}


def make_detector(kind: str, **params) -> BaseDetector:
    return detector_class(kind)(**params)


def pot_threshold(scores: np.ndarray, risk: float = 1e-3, initial_quantile: float = 0.98) -> float:
    """Peaks-over-threshold: fit a generalised Pareto distribution to the excesses of the
    scores over their `initial_quantile`, and return the score exceeded with probability
    `risk` (Siffer et al., 2017). scipy's maximum-likelihood fit does the estimation."""
    scores = np.asarray(scores, dtype=np.float64)
    if not 0 < risk < 1 - initial_quantile:
        raise ValueError(f"POT risk={risk}, must be in (0, {1 - initial_quantile:g}) for initial_quantile={initial_quantile}")
    t = float(np.quantile(scores, initial_quantile))
    excesses = scores[scores > t] - t
    if len(excesses) < 10:
        raise ThresholdFitError(
            f"only {len(excesses)} of {len(scores)} scores exceed their {initial_quantile:g} quantile; "
            "the POT fit needs >= 10 (more validation windows, or a lower initial quantile)")
    shape, _, scale = stats.genpareto.fit(excesses, floc=0.0)
    ratio = risk * len(scores) / len(excesses)
    if abs(shape) < 1e-9:
        return t - scale * math.log(ratio)
    return t + scale / shape * (ratio ** (-shape) - 1.0)


@dataclass(frozen=True)
class ThresholdRule:
    """How a version's alarm threshold is set from the scores of held-out normal windows:
    a percentile times a coefficient (the default), or a POT fit for a false-alarm risk."""

    method: str = "percentile"  # "percentile" | "pot"
    percentile: float = 99.0
    coefficient: float = 1.0
    pot_risk: float = 1e-3
    pot_initial_quantile: float = 0.98

    @property
    def name(self) -> str:
        if self.method == "pot":
            return f"pot(risk={self.pot_risk:g})"
        return f"p{self.percentile:g}" + (f"x{self.coefficient:g}" if self.coefficient != 1 else "")

    def apply(self, scores: np.ndarray) -> float:
        if self.method == "pot":
            return pot_threshold(scores, self.pot_risk, self.pot_initial_quantile) * self.coefficient
        return percentile_threshold(scores, self.percentile, self.coefficient)

    def all_thresholds(self, scores: np.ndarray) -> dict[str, float]:
        """Every threshold reported for comparison: p95 / p99 / p99.9 (times the coefficient)
        and POT at the rule's risk, when the tail has enough points to fit."""
        found = {f"p{q:g}": percentile_threshold(scores, q, self.coefficient) for q in REPORTED_PERCENTILES}
        try:
            found["pot"] = pot_threshold(scores, self.pot_risk, self.pot_initial_quantile) * self.coefficient
        except ThresholdFitError:
            pass  # reported as absent: too few validation windows above the initial quantile
        return found
