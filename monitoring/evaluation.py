"""Detected incidents against known faults, at the incident level.

A fault is found when an incident of the same asset overlaps it (within `tolerance`
on either side, since a window that ends just after a fault started already sees it);
an incident is a true positive when it overlaps any fault. Precision is over
incidents, recall over faults.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class IncidentEvaluation:
    faults: pd.DataFrame  # the fault table plus found (bool), delay (to the first overlapping incident)
    # and top_sensors (of the strongest overlapping incident, when incidents carry them)
    n_incidents: int
    n_true_incidents: int

    @property
    def precision(self) -> float:
        return self.n_true_incidents / self.n_incidents if self.n_incidents else 0.0

    @property
    def recall(self) -> float:
        return float(self.faults["found"].mean()) if len(self.faults) else 0.0


def evaluate_incidents(
    incidents: pd.DataFrame, faults: pd.DataFrame, tolerance: pd.Timedelta = pd.Timedelta(0)
) -> IncidentEvaluation:
    found, delays, top = [], [], []
    true_incident = pd.Series(False, index=incidents.index)
    for fault in faults.itertuples(index=False):
        same = incidents["asset"] == fault.asset
        overlap = same & (incidents["start"] <= fault.end + tolerance) & (incidents["end"] >= fault.start - tolerance)
        true_incident |= overlap
        found.append(bool(overlap.any()))
        delays.append(
            max(incidents.loc[overlap, "start"].min() - fault.start, pd.Timedelta(0)) if overlap.any() else pd.NaT
        )
        if overlap.any() and "top_sensors" in incidents:
            top.append(incidents.loc[incidents.loc[overlap, "peak_score"].idxmax(), "top_sensors"])
        else:
            top.append("")
    table = faults.copy()
    table["found"] = found
    table["delay"] = delays
    table["top_sensors"] = top
    return IncidentEvaluation(table, len(incidents), int(true_incident.sum()))


def point_alarms(timestamps, window_end, flagged) -> np.ndarray:
    """The alarm state of each reading, causally: the flag of the latest window that ends at
    or before the reading (windows sorted by end), false before the first window. A reading's
    state never depends on data after it, as in a live monitor."""
    timestamps = np.asarray(timestamps, dtype="datetime64[ns]")
    window_end = np.asarray(window_end, dtype="datetime64[ns]")
    flagged = np.asarray(flagged, dtype=bool)
    if len(window_end) != len(flagged):
        raise ValueError(f"{len(window_end)} window ends but {len(flagged)} flags")
    if np.any(np.diff(window_end.astype(np.int64)) < 0):
        raise ValueError("window ends must be sorted in time")
    latest = np.searchsorted(window_end, timestamps, side="right") - 1
    return np.where(latest >= 0, flagged[np.maximum(latest, 0)], False) if len(flagged) else \
        np.zeros(len(timestamps), dtype=bool)
