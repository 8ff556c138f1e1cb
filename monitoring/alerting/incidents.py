"""Merging flagged windows into incidents: one fault should be one incident, not a
hundred overlapping window rows.

Flagged windows of one asset merge while each starts no later than `merge_gap` after
the previous one ended. A merged run becomes an incident when it holds at least
`min_windows` flagged windows (persistence: lone blips drop) and its peak score reaches
`min_peak_severity` times the threshold (an alarm level above the warning level that
flags windows). The window threshold is a 99th percentile, so about 1 % of normal windows
cross it by design; those rows stay in `anomalies`, but they do not page anyone.

What happens to an incident after that (recovery, closing, reopening, acknowledgement,
its stable id and history) is monitoring.alerting.lifecycle.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

INCIDENT_COLUMNS = ["asset", "start", "end", "n_windows", "peak_score", "peak_severity", "top_sensors",
                    "directions", "model_versions"]
LEVEL_NAMES = ("warning", "major", "critical")


@dataclass(frozen=True)
class IncidentRule:
    merge_gap: pd.Timedelta = pd.Timedelta(minutes=30)
    min_windows: int = 3
    min_peak_severity: float = 1.5
    # Data time of normal scores after an incident's last flagged window before it counts as
    # recovered (None: a third of merge_gap). It closes once merge_gap has passed: no later
    # flag can join it. Flags in between reopen it.
    recover_after: pd.Timedelta | None = None
    # Severities (multiples of the threshold) at which an incident escalates: from warning to
    # major, then critical.
    escalation_levels: tuple[float, ...] = (3.0, 6.0)
    # Wall time without a new scored window after which an asset's incidents close with the
    # reason "no data": a feed that stopped cannot recover.
    stale_after: pd.Timedelta = pd.Timedelta(hours=24)

    def __post_init__(self):
        if self.min_windows < 1:
            raise ValueError(f"min_windows={self.min_windows}, must be >= 1")
        if self.min_peak_severity < 1:
            raise ValueError(f"min_peak_severity={self.min_peak_severity}, must be >= 1 (a multiple of the threshold)")
        if self.merge_gap < pd.Timedelta(0):
            raise ValueError(f"merge_gap={self.merge_gap}, must be >= 0")
        if self.recover_after is not None and not pd.Timedelta(0) <= self.recover_after <= self.merge_gap:
            raise ValueError(f"recover_after={self.recover_after}, must lie between 0 and merge_gap={self.merge_gap}"
                             " (an incident recovers before it closes)")
        levels = list(self.escalation_levels)
        if len(levels) > len(LEVEL_NAMES) - 1 or levels != sorted(set(levels)) or any(v <= 1 for v in levels):
            raise ValueError(f"escalation_levels={tuple(levels)}: at most {len(LEVEL_NAMES) - 1} increasing "
                             "severities above 1 (warning -> major -> critical)")
        if self.stale_after <= pd.Timedelta(0):
            raise ValueError(f"stale_after={self.stale_after}, must be > 0")

    @property
    def recovery(self) -> pd.Timedelta:
        return self.merge_gap / 3 if self.recover_after is None else self.recover_after

    def level(self, severity: float) -> int:
        """1 (warning), 2 (major) or 3 (critical): how many escalation levels `severity` reached, plus one."""
        return 1 + int(np.searchsorted(np.asarray(self.escalation_levels, dtype=float), severity, side="right"))


def merge_incidents(anomalies: pd.DataFrame, rule: IncidentRule = IncidentRule(),
                    closed: pd.DataFrame | None = None) -> pd.DataFrame:
    """Incidents from flagged windows (columns asset, window_start, window_end, score,
    threshold, top_sensors; optional severity, contributions, model_version, excluded).

    `closed`: spans (asset, start, end) of closed incidents, history that is not merged
    again: windows inside one are left out, and a run never merges across one."""
    if "excluded" in anomalies.columns:  # windows over excluded readings never page anyone
        anomalies = anomalies[~anomalies["excluded"].astype(bool)]
    if anomalies.empty:
        return pd.DataFrame(columns=INCIDENT_COLUMNS)
    rows = []
    for asset, group in anomalies.sort_values(["asset", "window_start"]).groupby("asset", sort=True):
        segment = _segments(group, None if closed is None else closed[closed["asset"] == asset])
        run: list[Any] = []  # the flagged windows (rows) of the incident being merged
        run_end = None
        run_segment = None
        for window, seg in zip(group.itertuples(index=False), segment, strict=True):
            if seg < 0:
                continue  # inside a closed incident
            if run and (window.window_start > run_end + rule.merge_gap or seg != run_segment):
                rows.append(_incident(asset, run))
                run = []
            run_end = window.window_end if not run else max(run_end, window.window_end)
            run_segment = seg
            run.append(window)
        if run:
            rows.append(_incident(asset, run))
    incidents = pd.DataFrame(rows, columns=INCIDENT_COLUMNS)
    keep = (incidents["n_windows"] >= rule.min_windows) & (incidents["peak_severity"] >= rule.min_peak_severity)
    return incidents[keep].reset_index(drop=True)


def _segments(windows: pd.DataFrame, closed: pd.DataFrame | None) -> np.ndarray:
    """Per window: how many closed spans end before it ends (runs do not merge across a
    closed span), or -1 for a window inside a closed span."""
    if closed is None or closed.empty:
        return np.zeros(len(windows), dtype=int)
    ends = np.sort(pd.to_datetime(closed["end"]).to_numpy())
    starts = pd.to_datetime(closed["start"]).to_numpy()
    w_start = pd.to_datetime(windows["window_start"]).to_numpy()
    w_end = pd.to_datetime(windows["window_end"]).to_numpy()
    segment = np.searchsorted(ends, w_end, side="left")
    inside = ((w_start[:, None] >= starts[None, :]) &
              (w_end[:, None] <= pd.to_datetime(closed["end"]).to_numpy()[None, :])).any(axis=1)
    return np.where(inside, -1, segment)


def _incident(asset: str, run: list) -> dict:
    peak = max(run, key=lambda w: w.score)
    votes = Counter(s for w in run for s in str(w.top_sensors).split(",")[:1] if s)
    top = [s for s, _ in votes.most_common(3)]
    return {
        "asset": asset,
        "start": min(w.window_start for w in run),
        "end": max(w.window_end for w in run),
        "n_windows": len(run),
        "peak_score": float(peak.score),
        "peak_severity": _severity(peak),
        "top_sensors": ",".join(top),
        "directions": ",".join(_directions(run, top)),
        "model_versions": ",".join(sorted({str(int(v)) for v in (getattr(w, "model_version", None) for w in run)
                                           if v is not None and not pd.isna(v)}, key=int)),
    }


def _directions(run: list, sensors: list[str]) -> list[str]:
    """Per sensor: 'above' when its signed contributions over the run sum to more than zero
    (readings above their reconstruction), 'below' when less, '' when unknown."""
    totals = dict.fromkeys(sensors, 0.0)
    seen = False
    for window in run:
        raw = getattr(window, "contributions", None)
        if raw is None or (isinstance(raw, float) and pd.isna(raw)):
            continue
        values = json.loads(raw) if isinstance(raw, str) else dict(raw)
        seen = True
        for sensor in sensors:
            totals[sensor] += float(values.get(sensor, 0.0))
    if not seen:
        return ["" for _ in sensors]
    return ["above" if totals[s] > 0 else "below" if totals[s] < 0 else "" for s in sensors]


def _severity(window) -> float:
    """The window's stored severity (the model's own scale, right for scores of any sign);
    score / threshold for rows written without one."""
    stored = getattr(window, "severity", None)
    if stored is not None and not pd.isna(stored):
        return float(stored)
    return float(window.score / window.threshold) if window.threshold > 0 else float("inf")
