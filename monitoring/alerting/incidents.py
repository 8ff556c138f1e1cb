"""Merging flagged windows into incidents: one fault should be one incident, not a
hundred overlapping window rows.

Flagged windows of one asset merge while each starts no later than `merge_gap` after
the previous one ended. A merged run becomes an incident when it holds at least
`min_windows` flagged windows (persistence: lone blips drop) and its peak score reaches
`min_peak_severity` times the threshold (an alarm level above the warning level that
flags windows). The window threshold is a 99th percentile, so about 1 % of normal windows
cross it by design; those rows stay in `anomalies`, but they do not page anyone.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import duckdb
import pandas as pd

from monitoring.store.connection import Warehouse, write
from monitoring.store.results import get_watermarks, latest_flagged_windows, read_incidents, replace_incidents

INCIDENT_COLUMNS = ["asset", "start", "end", "n_windows", "peak_score", "peak_severity", "top_sensors",
                    "model_versions"]


@dataclass(frozen=True)
class IncidentRule:
    merge_gap: pd.Timedelta = pd.Timedelta(minutes=30)
    min_windows: int = 3
    min_peak_severity: float = 1.5

    def __post_init__(self):
        if self.min_windows < 1:
            raise ValueError(f"min_windows={self.min_windows}, must be >= 1")
        if self.min_peak_severity < 1:
            raise ValueError(f"min_peak_severity={self.min_peak_severity}, must be >= 1 (a multiple of the threshold)")


def merge_incidents(anomalies: pd.DataFrame, rule: IncidentRule = IncidentRule()) -> pd.DataFrame:
    """Incidents from flagged windows (columns asset, window_start, window_end, score, threshold, top_sensors)."""
    if "excluded" in anomalies.columns:  # windows over excluded readings never page anyone
        anomalies = anomalies[~anomalies["excluded"].astype(bool)]
    if anomalies.empty:
        return pd.DataFrame(columns=INCIDENT_COLUMNS)
    rows = []
    for asset, group in anomalies.sort_values(["asset", "window_start"]).groupby("asset", sort=True):
        run: list[Any] = []  # the flagged windows (rows) of the incident being merged
        run_end = None
        for window in group.itertuples(index=False):
            if run and window.window_start > run_end + rule.merge_gap:
                rows.append(_incident(asset, run))
                run = []
            run_end = window.window_end if not run else max(run_end, window.window_end)
            run.append(window)
        rows.append(_incident(asset, run))
    incidents = pd.DataFrame(rows, columns=INCIDENT_COLUMNS)
    keep = (incidents["n_windows"] >= rule.min_windows) & (incidents["peak_severity"] >= rule.min_peak_severity)
    return incidents[keep].reset_index(drop=True)


def _incident(asset: str, run: list) -> dict:
    peak = max(run, key=lambda w: w.score)
    votes = Counter(s for w in run for s in str(w.top_sensors).split(",")[:1] if s)
    return {
        "asset": asset,
        "start": min(w.window_start for w in run),
        "end": max(w.window_end for w in run),
        "n_windows": len(run),
        "peak_score": float(peak.score),
        "peak_severity": _severity(peak),
        "top_sensors": ",".join(s for s, _ in votes.most_common(3)),
        "model_versions": ",".join(sorted({str(int(v)) for v in (getattr(w, "model_version", None) for w in run)
                                           if v is not None and not pd.isna(v)}, key=int)),
    }


def _severity(window) -> float:
    """The window's stored severity (the model's own scale, right for scores of any sign);
    score / threshold for rows written without one."""
    stored = getattr(window, "severity", None)
    if stored is not None and not pd.isna(stored):
        return float(stored)
    return float(window.score / window.threshold) if window.threshold > 0 else float("inf")


def store_incidents(con: duckdb.DuckDBPyConnection, stream: str, rule: IncidentRule = IncidentRule()) -> pd.DataFrame:
    """Merge the stream's flagged windows (as their latest scoring says) into incidents and
    store them in the `incidents` table, replacing the previous set: a re-run gives the same
    rows. An incident is `open` while the next scoring run could still extend it (its end
    lies within `merge_gap` of its asset's watermark), `closed` after that. Runs in the
    caller's transaction (a scoring run's), so it sees that run's windows."""
    windows = latest_flagged_windows(con, stream)
    marks = get_watermarks(con, stream)
    incidents = merge_incidents(windows, rule)
    mark = incidents["asset"].map(marks)
    still_open = mark.notna() & (pd.to_datetime(incidents["end"]) + rule.merge_gap >= pd.to_datetime(mark))
    incidents["status"] = still_open.map({True: "open", False: "closed"}).astype(str)
    replace_incidents(con, stream, incidents)
    return read_incidents(con, stream)


def refresh_incidents(warehouse: Warehouse, stream: str, rule: IncidentRule = IncidentRule()) -> pd.DataFrame:
    """store_incidents in a transaction of its own (after the incident rule changed)."""
    return write(warehouse, lambda con: store_incidents(con, stream, rule))
