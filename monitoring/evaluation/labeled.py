"""aemon's detections against known faults.

Two views. At the incident level (`evaluate_incidents`): a fault is found when an
incident of the same asset overlaps it (within `tolerance` on either side, since a window
that ends just after a fault started already sees it); an incident is a true positive when
it overlaps any fault. Precision is over incidents, recall over faults.

At the reading level, on a stream's own label columns (`evaluate_stream`, `aemon evaluate`):
each reading gets the alarm state the monitor showed at its time (`point_alarms`, causal),
and the alarms are scored against the labels with monitoring.evaluation.metrics: pointwise SKAB
metrics, point-adjusted F1, event overlap F1, the NAB score and detection times. The
result is stored in the `evaluations` table and logged to MLflow as a run `evaluate`.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from monitoring.errors import EvaluationError, MetricsInputError, WarehouseError
from monitoring.evaluation import metrics as m
from monitoring.models import registry
from monitoring.store.connection import Warehouse, connect, write
from monitoring.store.readings import has_view, read_labeled_readings
from monitoring.store.results import latest_window_flags, read_evaluation, write_evaluation


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


# ---------------------------------------------------------------- on labels


def point_alarms(timestamps, window_end, flagged) -> np.ndarray:
    """The alarm state of each reading of ONE asset, as the monitor showed it then: the flag
    of the latest scored window that ends at or before the reading's time; false before any
    window has ended. Causal: a window flagged at t never flags a reading before t.

    `timestamps`: the readings' times, sorted; `window_end`, `flagged`: one entry per scored
    window (any order; an excluded window counts as not flagged, pass `is_anomaly and not
    excluded`). Windows ending at the same time: the last one given wins."""
    stamps = m.as_ns(timestamps)
    if not stamps.is_monotonic_increasing:
        raise MetricsInputError("timestamps: expected the readings' times sorted")
    ends = m.as_ns(window_end).asi8
    flags = np.asarray(flagged, dtype=bool)
    if len(ends) != len(flags):
        raise MetricsInputError(f"flagged: {len(flags)} entries, expected {len(ends)} (one per window_end)")
    if len(ends) == 0:
        return np.zeros(len(stamps), dtype=bool)
    order = np.argsort(ends, kind="stable")
    ends, flags = ends[order], flags[order]
    latest = np.searchsorted(ends, stamps.asi8, side="right") - 1  # the last window ended at or before t
    return np.where(latest >= 0, flags[np.maximum(latest, 0)], False)


@dataclass(frozen=True)
class LabelEvaluation:
    """Alarms against labels, pooled over assets (each asset one series)."""

    points: m.PointCounts
    adjusted: m.PointCounts  # after point adjustment: optimistic
    event_counts: m.EventCounts
    nab: dict[str, float]  # normalised NAB score per profile
    events: pd.DataFrame  # one row per labeled event: asset + monitoring.evaluation.metrics.detection_times
    n_assets: int
    n_rows: int
    n_alarms: int  # alarm onsets

    def metrics(self) -> dict[str, float]:
        return {
            "precision": self.points.precision, "recall": self.points.recall, "f1": self.points.f1,
            "far": self.points.far, "mar": self.points.mar, "f1_point_adjusted": self.adjusted.f1,
            "event_precision": self.event_counts.precision, "event_recall": self.event_counts.recall,
            "event_f1": self.event_counts.f1,
            **{f"nab_{name}": value for name, value in self.nab.items()},
            "mean_delay_s": m.mean_delay(self.events), "mean_forewarning_s": m.mean_forewarning(self.events),
        }

    def counts(self) -> dict[str, float]:
        """Row and event counts (whole numbers: one evaluation, no averaging)."""
        return {
            "n_assets": self.n_assets, "n_rows": self.n_rows, "n_labeled_rows": self.points.tp + self.points.fn,
            "n_events": len(self.events), "n_detected_events": int(self.events["detected"].sum()),
            "n_alarms": self.n_alarms, "tp": self.points.tp, "fp": self.points.fp, "fn": self.points.fn,
            "tn": self.points.tn,
        }


def evaluate_alarms(frame: pd.DataFrame) -> LabelEvaluation:
    """Score alarms against labels; `frame` has one row per reading: asset, timestamp
    (sorted within an asset), labeled, alarm. NAB windows are the runs of labeled readings,
    its detections the alarm onsets, with no probationary period (the model was trained on
    other data)."""
    points = adjusted = m.PointCounts(0, 0, 0, 0)
    tp: float = 0
    fp: float = 0
    fn: float = 0
    nab_files, tables = [], []
    n_alarms = 0
    for asset, part in frame.groupby("asset", sort=True):
        truth, alarm = part["labeled"].to_numpy(bool), part["alarm"].to_numpy(bool)
        stamps = part["timestamp"]
        points += m.point_counts(truth, alarm)
        adjusted += m.point_counts(truth, m.point_adjust(truth, alarm))
        events = m.overlap_f1(truth, alarm, stamps)
        tp, fp, fn = tp + events.tp, fp + events.fp, fn + events.fn
        onsets = m.onsets(alarm)
        n_alarms += int(onsets.sum())
        nab_files.append(m.nab_file_score(stamps, onsets, m.label_windows(stamps, truth)))
        table = m.detection_times(truth, alarm, stamps)
        table.insert(0, "asset", asset)
        tables.append(table)
    events_table = pd.concat(tables, ignore_index=True) if tables else m.detection_times([], [], [])
    return LabelEvaluation(points, adjusted, m.EventCounts(tp, fp, fn), m.nab_normalised(nab_files), events_table,
                           n_assets=len(tables), n_rows=len(frame), n_alarms=n_alarms)


@dataclass(frozen=True)
class StreamEvaluation:
    row: dict  # the `evaluations` row
    result: LabelEvaluation = field(repr=False)
    stored: bool  # False: an identical evaluation was stored before (nothing new written or logged)


def _describe_range(start, end) -> str:
    if start is None and end is None:
        return "in all its readings"
    return f"between {start or 'the first reading'} and {end or 'the last reading'}"


def evaluate_stream(warehouse: Warehouse, tracking_uri: str, artifact_root: str | None, stream: str,
                    label_columns: list[str], *, start: pd.Timestamp | None = None, end: pd.Timestamp | None = None,
                    version: int | None = None) -> StreamEvaluation:
    """Evaluate the stream's stored flags on its labels between start and end (inclusive).

    Windows: the latest scored row of each (as incidents use them), or only `version`'s.
    Readings after an asset's last scored window are not evaluated (not scored yet). The
    result is written to `evaluations` and logged to MLflow; an evaluation of exactly the
    same inputs and results is recognised by its id and not stored twice."""
    where = _describe_range(start, end)
    with connect(warehouse) as con:  # read and compare on one snapshot
        if not has_view(con, stream):
            raise WarehouseError(f"stream '{stream}' has no readings yet; run `aemon ingest {stream}` first")
        readings = read_labeled_readings(con, stream, list(label_columns), start, end)
        windows = latest_window_flags(con, stream, start, end, version)
        result, row = _evaluate(stream, list(label_columns), readings, windows, where, version, start)
        done = read_evaluation(con, row["evaluation_id"])
    if len(done):
        return StreamEvaluation(done.iloc[0].to_dict(), result, stored=False)
    tags = {"model_name": row["model_name"], "model_versions": row["model_versions"],
            "label_columns": row["label_columns"], "range_start": row["range_start"].isoformat(),
            "range_end": row["range_end"].isoformat(), "evaluation_id": row["evaluation_id"]}
    logged = {**result.metrics(), **{k: float(v) for k, v in result.counts().items()}}
    row["mlflow_run_id"] = registry.log_evaluation(tracking_uri, artifact_root, stream, logged, tags, result.events)

    def store(con) -> pd.DataFrame:
        write_evaluation(con, row)
        return read_evaluation(con, row["evaluation_id"])

    stored = write(warehouse, store)
    return StreamEvaluation(stored.iloc[0].to_dict(), result, stored=True)


def _evaluate(stream: str, label_columns: list[str], readings: pd.DataFrame, windows: pd.DataFrame, where: str,
              version: int | None, start: pd.Timestamp | None) -> tuple[LabelEvaluation, dict]:
    """The evaluation of labeled readings against the alarms of the stored windows, and its
    `evaluations` row (without the MLflow run id)."""
    if not readings["labeled"].any():
        raise EvaluationError(f"stream '{stream}' has no labeled readings (a label column {label_columns} "
                              f"> 0) {where}")
    of_version = f" of model version {version}" if version is not None else ""
    in_range = windows
    if start is not None:
        in_range = in_range[in_range["window_end"] >= pd.Timestamp(start)]
    if in_range.empty:
        raise EvaluationError(f"stream '{stream}' has no scored windows{of_version} {where}; "
                              f"run `aemon score {stream}` first")
    frame = _with_alarms(readings, windows)
    if not frame["labeled"].any():
        raise EvaluationError(f"stream '{stream}': the labeled readings {where} lie after the last scored window "
                              f"({windows['window_end'].max()}); run `aemon score {stream}` first")
    result = evaluate_alarms(frame)
    versions = ",".join(str(v) for v in sorted({int(v) for v in windows["model_version"]}))
    row = {
        "stream": stream, "model_name": ",".join(sorted(set(windows["model_name"]))), "model_versions": versions,
        "label_columns": ",".join(label_columns), "range_start": frame["timestamp"].min(),
        "range_end": frame["timestamp"].max(), **result.counts(), **result.metrics(),
    }
    return result, {"evaluation_id": _evaluation_id(row), **row}


def _with_alarms(readings: pd.DataFrame, windows: pd.DataFrame) -> pd.DataFrame:
    """Readings (asset, timestamp, labeled) up to each asset's last scored window, with their alarm state."""
    parts = []
    for asset, part in readings.groupby("asset", sort=True):
        own = windows[windows["asset"] == asset]
        if own.empty:
            continue
        part = part[part["timestamp"] <= own["window_end"].max()].copy()
        part["alarm"] = point_alarms(part["timestamp"], own["window_end"], own["flagged"])
        parts.append(part)
    if not parts:
        return readings.iloc[:0].assign(alarm=pd.Series(dtype=bool))
    return pd.concat(parts, ignore_index=True)


def _evaluation_id(row: dict) -> str:
    """A hash of what an evaluation covers and found: the same inputs give the same id."""
    def plain(value):
        if isinstance(value, pd.Timestamp):
            return value.isoformat()
        if isinstance(value, float):
            return None if value != value else round(value, 12)
        return value if isinstance(value, (str, int)) else str(value)
    text = json.dumps({k: plain(v) for k, v in sorted(row.items())}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
