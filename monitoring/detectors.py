"""The detector kinds aemon trains, and the threshold rules it applies to their scores.

Kinds and their hyperparameters come from aemodels (DETECTOR_KINDS, each class's
constructor signature), so nothing here lists them again.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aemodels import DETECTOR_KINDS, BaseDetector, make_detector
from aemodels.errors import ThresholdFitError
from aemodels.thresholds import percentile_threshold, pot_threshold

__all__ = ["DETECTOR_KINDS", "THRESHOLD_PARAMS", "ThresholdFitError", "ThresholdRule", "detector_class",
           "detector_kinds", "make_detector", "param_defaults", "pot_threshold"]

# Hyperparameters that belong to the stream's threshold rule, not to a detector's table.
THRESHOLD_PARAMS = ("threshold_percentile", "threshold_coefficient")
REPORTED_PERCENTILES = (95.0, 99.0, 99.9)


def detector_kinds() -> tuple[str, ...]:
    """Every detector kind aemon trains, in display order."""
    return tuple(DETECTOR_KINDS)


def detector_class(kind: str) -> type[BaseDetector]:
    if kind not in BaseDetector._kinds:
        raise ValueError(f"detector kind {kind!r} is unknown; expected one of {list(detector_kinds())}")
    return BaseDetector._kinds[kind]


def param_defaults(kind: str) -> dict:
    """The constructor arguments of a kind with their defaults."""
    return detector_class(kind).param_defaults()


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
