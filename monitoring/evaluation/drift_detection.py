"""Drift of a stream against its champion: recent inputs and scores compared with what the
champion was trained and calibrated on, and the recent alert rate with the rate its
threshold implies.

Per feature (each sensor's readings, then the window scores) two numbers must agree before
a feature counts as drifted:

- a two-sample Kolmogorov-Smirnov test, significant at `alpha` divided by the number of
  tests in the check (Bonferroni: the family-wise false-alarm rate of a check stays at most
  `alpha` however many sensors a stream has);
- the population stability index over `n_bins` bins cut at the reference's quantiles, above
  `psi_threshold` (0.1 is commonly read as "some shift", 0.25 as "a significant shift").

Readings are autocorrelated, so thousands of them are worth far fewer independent draws and
a KS test alone fires on differences no one would retrain for (measured: README, Drift);
PSI is the effect size that keeps the check to shifts that matter. The alert rate is tested
with a one-sided binomial test against the expected rate: the fraction of calibration
scores above the threshold (a p99 threshold implies 1 %), or the champion's false-alarm rate
on its holdout when that was higher. It counts as drifted when it is also at least
`alert_rate_ratio` times that rate (flagged windows overlap and come in runs, so the
binomial p-value alone is as optimistic as the KS one).

A check drifts when any feature drifts; drift *holds* after `hold_checks` drifting checks in
a row on new data (see `drift_streak`), which is what may start a retraining.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from features.differencing import difference
from features.exclusions import EXCLUDED, exclusion_mask
from features.shift_tests import excess_p_value, finite, ks_test, population_stability
from features.training_set import labeled_mask
from monitoring.errors import DriftInputError

if TYPE_CHECKING:  # the bundle module imports MLflow; the configuration reads DriftRule
    from monitoring.models.bundle import ModelBundle

SCORE = "__score__"
ALERT_RATE = "__alert_rate__"

COLUMNS = ["feature", "kind", "test", "statistic", "p_value", "p_limit", "psi", "recent_value", "reference_value",
           "n_recent", "n_reference", "drifted", "note"]


@dataclass(frozen=True)
class DriftRule:
    """What a drift check compares and when it calls drift (defaults: README, Drift)."""

    recent_hours: float = 24.0  # the recent window: this many hours up to the stream's last reading
    alpha: float = 0.01  # family-wise significance of one check (Bonferroni over its tests)
    psi_threshold: float = 0.5  # effect size a drifted feature must also reach (README, Drift: why not 0.25)
    n_bins: int = 10  # PSI bins, cut at the reference's quantiles
    alert_rate_ratio: float = 3.0  # recent alert rate / implied rate a drifted alert rate must also reach
    min_samples: int = 100  # fewer recent readings (windows) than this: the feature is not tested
    hold_checks: int = 3  # drifting checks in a row, each on new readings, before drift holds
    cooldown_hours: float = 24.0  # after a retraining was started, none again for this long

    def __post_init__(self):
        checks = [("recent_hours", self.recent_hours > 0, "> 0"), ("alpha", 0 < self.alpha < 1, "in (0, 1)"),
                  ("psi_threshold", self.psi_threshold > 0, "> 0"), ("n_bins", self.n_bins >= 2, ">= 2"),
                  ("alert_rate_ratio", self.alert_rate_ratio >= 1, ">= 1"),
                  ("min_samples", self.min_samples >= 2, ">= 2"), ("hold_checks", self.hold_checks >= 1, ">= 1"),
                  ("cooldown_hours", self.cooldown_hours >= 0, ">= 0")]
        for name, ok, expected in checks:
            if not ok:
                raise DriftInputError(f"drift.{name}={getattr(self, name)!r}, must be {expected}")


def compare_distributions(feature: str, kind: str, reference, recent, rule: DriftRule, n_tests: int) -> dict:
    """One feature's row: KS statistic and p-value, PSI, medians, sizes, and whether it drifted
    (p below alpha / n_tests and PSI above the rule's threshold)."""
    reference, recent = finite(reference), finite(recent)
    p_limit = rule.alpha / n_tests
    row = {"feature": feature, "kind": kind, "test": "ks", "statistic": math.nan, "p_value": math.nan,
           "p_limit": p_limit, "psi": math.nan, "recent_value": _median(recent), "reference_value": _median(reference),
           "n_recent": len(recent), "n_reference": len(reference), "drifted": False, "note": ""}
    short = [f"{name} {len(values)}" for name, values in (("recent", recent), ("reference", reference))
             if len(values) < rule.min_samples]
    if short:
        row["note"] = f"not tested: {', '.join(short)} < min_samples {rule.min_samples}"
        return row
    statistic, p_value = ks_test(reference, recent)
    psi = population_stability(reference, recent, rule.n_bins)
    row.update(statistic=statistic, p_value=p_value, psi=psi,
               drifted=bool(p_value < p_limit and psi > rule.psi_threshold))
    return row


def _median(values: np.ndarray) -> float:
    return float(np.median(values)) if len(values) else math.nan


def implied_alert_rate(calibration_scores, threshold: float) -> float:
    """The share of calibration scores above the threshold (0.01 for a p99 rule), at least one
    calibration window's share: a smaller rate cannot be told from the calibration set."""
    scores = finite(calibration_scores)
    if len(scores) == 0:
        raise DriftInputError("the champion has no calibration scores to take the implied alert rate from")
    return max(float(np.mean(scores > threshold)), 1.0 / len(scores))


def compare_alert_rate(n_flagged: int, n_windows: int, implied: float, rule: DriftRule, n_tests: int,
                       overlap: float = 1.0) -> dict:
    """The alert rate's row: recent rate against the implied one, one-sided binomial test;
    drifted when significant and at least `alert_rate_ratio` times the implied rate.

    `overlap`: readings per window over the stride (each reading is in that many windows);
    the test counts windows and flags divided by it, the windows that share no reading."""
    p_limit = rule.alpha / n_tests
    observed = n_flagged / n_windows if n_windows else math.nan
    row = {"feature": ALERT_RATE, "kind": "alert_rate", "test": "binomial", "statistic": observed,
           "p_value": math.nan, "p_limit": p_limit, "psi": math.nan, "recent_value": observed,
           "reference_value": implied, "n_recent": int(n_windows), "n_reference": math.nan, "drifted": False,
           "note": ""}
    if n_windows < rule.min_samples:
        row["note"] = f"not tested: recent {n_windows} windows < min_samples {rule.min_samples}"
        return row
    n_independent = max(1, round(n_windows / overlap))
    k = min(n_independent, round(n_flagged / overlap))
    p_value = excess_p_value(k, n_independent, implied)
    row.update(p_value=p_value, drifted=bool(p_value < p_limit and observed >= rule.alert_rate_ratio * implied))
    return row


@dataclass(frozen=True)
class DriftInputs:
    """What one check compares: readings of the reference and recent ranges (the model's inputs,
    already filtered to the rows that count), the champion's calibration scores and threshold,
    and the recent window scores."""

    sensors: list[str]
    reference: pd.DataFrame  # rows of the reference range: the sensors' columns
    recent: pd.DataFrame  # rows of the recent range
    calibration_scores: np.ndarray
    recent_scores: np.ndarray
    threshold: float
    overlap: float = 1.0  # window size / stride of the recent windows (see compare_alert_rate)
    holdout_far: float | None = None  # the champion's false-alarm rate on its held-out normal windows


def drift_inputs(bundle: ModelBundle, reference: pd.DataFrame, recent: pd.DataFrame, *,
                 label_columns: list[str] | tuple[str, ...] = (), exclusions=None,
                 excluded_intervals: pd.DataFrame | None = None, holdout_far: float | None = None) -> DriftInputs:
    """The champion's side and the recent side of a check, as the model sees them.

    Inputs: readings of the champion's training range (`reference`) less what training
    leaves out (labeled rows, the stream's exclusions, past incidents), against the recent
    readings less the stream's exclusions (machine off, maintenance: not drift); sensors the
    bundle differences are compared as changes. Scores: the champion's calibration scores
    (kept in the bundle, from the windows its threshold was set on) against its scores of
    the recent windows that touch no excluded reading. `holdout_far`: the champion's
    false-alarm rate on its held-out normal windows, when known; the expected alert rate is
    the larger of it and the rate the threshold implies on the calibration scores (a model
    that flagged 3 % of its own holdout does not drift by flagging 3 %)."""
    for name, frame in (("reference", reference), ("recent", recent)):
        if frame.empty:
            raise DriftInputError(f"no {name} readings of stream '{bundle.stream}' to compare")
        missing = [c for c in bundle.input_columns() if c not in frame.columns]
        if missing:
            raise DriftInputError(f"the {name} readings of stream '{bundle.stream}' lack {missing}, which the "
                                  f"champion reads; it expects {bundle.input_columns()}")
    never_normal = labeled_mask(reference, list(label_columns)) | exclusion_mask(reference, exclusions,
                                                                                excluded_intervals)
    ref = difference(reference[bundle.input_columns()], bundle.differenced)[~never_normal]
    excluded = exclusion_mask(recent, exclusions)
    new = difference(recent[bundle.input_columns()], bundle.differenced)[~excluded]
    marked = recent[bundle.input_columns()].copy()
    marked[EXCLUDED] = excluded.astype(np.float64)
    windows, marks = bundle.windows(marked, extra_columns=(EXCLUDED,))
    keep = marks.max(axis=(1, 2)) == 0 if len(windows) else np.zeros(0, dtype=bool)
    scores = bundle.detector.score(windows.X[keep]) if keep.any() else np.zeros(0)
    return DriftInputs(list(bundle.sensors), ref, new, np.asarray(bundle.detector.val_scores_, dtype=np.float64),
                       np.asarray(scores, dtype=np.float64), bundle.threshold,
                       max(1.0, bundle.spec.size / bundle.spec.stride), holdout_far)


def detect_drift(inputs: DriftInputs, rule: DriftRule) -> pd.DataFrame:
    """One row per sensor, one for the scores and one for the alert rate (COLUMNS)."""
    n_tests = len(inputs.sensors) + 2
    rows = [compare_distributions(s, "sensor", inputs.reference[s].to_numpy(), inputs.recent[s].to_numpy(), rule,
                                  n_tests) for s in inputs.sensors]
    rows.append(compare_distributions(SCORE, "score", inputs.calibration_scores, inputs.recent_scores, rule, n_tests))
    scores = finite(inputs.recent_scores)
    implied = implied_alert_rate(inputs.calibration_scores, inputs.threshold)
    expected = implied if inputs.holdout_far is None else max(implied, inputs.holdout_far)
    row = compare_alert_rate(int((scores > inputs.threshold).sum()), len(scores), expected, rule, n_tests,
                             inputs.overlap)
    if expected > implied:
        row["note"] = (row["note"] + "; " if row["note"] else "") + \
            f"expected: the holdout's {expected:.2%}, above the threshold's {implied:.2%}"
    rows.append(row)
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame["n_reference"] = frame["n_reference"].astype("Int64")
    return frame


def drift_streak(history: pd.DataFrame, drifted: bool, recent_end: pd.Timestamp) -> int:
    """Drifting checks in a row ending with this one (`drifted`, on readings up to
    `recent_end`), counted back through `history`: earlier checks of the same champion since
    its last retraining request, newest first, with columns recent_end and drifted. A check
    on the same readings as a later one (no new data came) does not count again, so a
    stalled feed cannot make drift hold."""
    if not drifted:
        return 0
    streak, seen = 1, {pd.Timestamp(recent_end)}
    for row in history.itertuples(index=False):
        end = pd.Timestamp(row.recent_end)
        if end in seen:
            continue
        if not row.drifted:
            break
        seen.add(end)
        streak += 1
    return streak


@dataclass(frozen=True)
class DriftDecision:
    drifted: bool  # some feature of this check drifted
    streak: int  # drifting checks in a row on new readings, this one included
    holds: bool  # streak >= hold_checks
    retrain: bool  # start a retraining now
    reason: str


def decide(drifted: bool, streak: int, rule: DriftRule, *, retrain: bool,
           since_last_request: pd.Timedelta | None) -> DriftDecision:
    """Whether drift holds and a retraining starts: it holds after `hold_checks` drifting
    checks in a row; a retraining starts when it holds, retraining is on, and none was
    requested within `cooldown_hours` (the gate may keep the old champion, and the next
    checks would otherwise ask again every hour)."""
    holds = streak >= rule.hold_checks
    if not drifted:
        return DriftDecision(False, 0, False, False, "no drift")
    seen = f"drift in {streak} of {rule.hold_checks} checks in a row"
    if not holds:
        return DriftDecision(True, streak, False, False, f"{seen}: not holding yet")
    if not retrain:
        return DriftDecision(True, streak, True, False, f"{seen}: drift holds; retraining is off")
    cooldown = pd.Timedelta(hours=rule.cooldown_hours)
    if since_last_request is not None and since_last_request < cooldown:
        return DriftDecision(True, streak, True, False,
                             f"{seen}: drift holds; a retraining was started {_hours(since_last_request)} ago, "
                             f"within the cooldown of {rule.cooldown_hours:g} h")
    return DriftDecision(True, streak, True, True, f"{seen}: drift holds; retraining, the gate decides promotion")


def _hours(delta: pd.Timedelta) -> str:
    return f"{delta.total_seconds() / 3600:.1f} h"
