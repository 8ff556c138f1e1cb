"""Adaptive alarms: a window above its model's threshold raises an alarm only when its
score also stands out from the asset's own score history.

A model's threshold is fixed when it is trained, on a short normal stretch; an asset whose
errors then run higher (a series that drifts, a noisier day) raises alarm after alarm.
With `AlarmRule(mode="adaptive")` a flagged window also needs the mean log-score of its
last `short_windows` windows to lie more than `z` standard deviations above the mean of
the log-scores of every earlier window of that asset (the windows before those
`short_windows`, `min_windows` of them at least; until then the threshold alone decides).
A log-score is the log of score / threshold, the window's severity: within one model
version that is the log of the score shifted by a constant, which moves no z-score, and a
new version continues the asset's history where the previous one left it, on the same
scale, instead of starting from nothing after every retrain. It is the idea of the anomaly
likelihood of Numenta's HTM detector (a short-term average against the long-term
distribution of the raw scores), on the log of a reconstruction error, whose spread is
closer to normal than the error's.

The long-term distribution is kept as sums (count, sum, sum of squares of the
log-scores), which each run stores with the asset's watermark, so the next run reads only
the windows after them (`History`, monitoring.store.results.score_history_from), whatever
the history's length.

Written here, not taken from a library: scipy and pandas give rolling and expanding
moments of one array, but not continued from sums a previous run left, which is what an
incremental scoring run needs.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MODES = ("threshold", "adaptive")
# a score of 0 (a perfect reconstruction) is as low as the log goes
_LOG_FLOOR = 1e-12


class AlarmRuleError(ValueError):
    """An alarm rule setting out of range; the message names it."""


@dataclass(frozen=True)
class AlarmRule:
    """mode: "threshold" (a window above its model's threshold is an alarm) or "adaptive"
    (also above the asset's own recent history, see the module's text)."""

    mode: str = "threshold"
    short_windows: int = 3
    z: float = 2.5
    min_windows: int = 100

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise AlarmRuleError(f"mode: {self.mode!r}; expected one of {list(MODES)}")
        if not isinstance(self.short_windows, int) or self.short_windows < 1:
            raise AlarmRuleError(f"short_windows: {self.short_windows!r}; expected an integer >= 1")
        if not np.isfinite(self.z):
            raise AlarmRuleError(f"z: {self.z!r}; expected a finite number of standard deviations")
        if not isinstance(self.min_windows, int) or self.min_windows < 2:
            raise AlarmRuleError(f"min_windows: {self.min_windows!r}; expected an integer >= 2")

    @property
    def adaptive(self) -> bool:
        return self.mode == "adaptive"

    def to_dict(self) -> dict:
        return {"mode": self.mode, "short_windows": self.short_windows, "z": self.z, "min_windows": self.min_windows}


@dataclass(frozen=True)
class History:
    """One asset's earlier log-scores under one model version: the latest ones themselves
    (`recent`, oldest first, at most short_windows - 1 of them) and the sums over the others."""

    count: int = 0
    total: float = 0.0
    total_sq: float = 0.0
    recent: np.ndarray = field(default_factory=lambda: np.zeros(0))


def log_scores(scores, thresholds=None) -> np.ndarray:
    """log(score / threshold) (log(score) without thresholds), zeros floored."""
    x = np.log(np.maximum(np.asarray(scores, dtype=np.float64), _LOG_FLOOR))
    if thresholds is None:
        return x
    return x - np.log(np.maximum(np.asarray(thresholds, dtype=np.float64), _LOG_FLOOR))


def adaptive_mask(scores, rule: AlarmRule, history: History = History(), thresholds=None) -> np.ndarray:
    """For windows of one asset in time order, after `history`: True where the mean
    log-score of the window and the `short_windows - 1` before it exceeds the mean of all
    earlier ones by more than `rule.z` of their standard deviations, and at least
    `rule.min_windows` earlier ones exist. A window is compared with the windows before
    its own short stretch only, so a burst does not raise its own baseline."""
    k = rule.short_windows
    recent = np.asarray(history.recent, dtype=np.float64)
    if len(recent) > k - 1:
        raise ValueError(f"history.recent: {len(recent)} log-scores; expected at most short_windows - 1 = {k - 1}")
    new = log_scores(scores, thresholds)
    x = np.concatenate([recent, new])
    head = len(recent)  # earlier windows carried in `x`
    # cumulative sums: c[i] = sum of x[:i]
    c1 = np.concatenate([[0.0], np.cumsum(x)])
    c2 = np.concatenate([[0.0], np.cumsum(x * x)])
    i = np.arange(head, len(x))  # the new windows' positions in x
    lo = np.maximum(i - k + 1, 0)
    short = (c1[i + 1] - c1[lo]) / (i + 1 - lo)
    # the baseline: history's sums plus x[:i - k + 1] (the windows before the short stretch)
    cut = np.maximum(i - k + 1, 0)
    n = history.count + cut
    s1 = history.total + c1[cut]
    s2 = history.total_sq + c2[cut]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / n
        var = np.maximum(s2 - s1 * mean, 0.0) / (n - 1)
        z = (short - mean) / np.sqrt(var)
    out = (n >= rule.min_windows) & (var > 0) & (z > rule.z)
    # a constant history (var 0): any rise of the short mean stands out
    flat = (n >= rule.min_windows) & (var <= 0) & (short > mean)
    return np.asarray(out | flat, dtype=bool)
