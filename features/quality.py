"""The data-quality report of a stream, per sensor, in the spirit of Amazon Lookout for
Equipment's data-quality page: how much is missing, gaps, duplicates, flatlines,
monotonic (counter-like) sensors, the effective sampling interval and the value range,
and a grade (high / medium / low) with advice.

Missing % compares the readings kept with the readings the stream's interval promises
between each asset's first and last reading; rows quarantined at ingest (a bad value in
that sensor) are counted separately.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

SHORT_GAP_READINGS = 3  # a step of at most this many intervals: one or two readings missing
QUALITY_COLUMNS = ["sensor", "n_readings", "missing_pct", "n_gaps", "largest_gap_s", "n_duplicates",
                   "n_quarantined", "flatline_pct", "monotonic", "interval_s", "min_value", "max_value",
                   "grade", "advice"]


@dataclass(frozen=True)
class QualityThresholds:
    flatline_run: int = 30  # identical consecutive readings that make a flatline
    medium_missing_pct: float = 5.0
    low_missing_pct: float = 30.0
    medium_flatline_pct: float = 10.0
    low_flatline_pct: float = 50.0
    interval_tolerance: float = 0.1  # effective interval off the configured one by more than this share


def _flat_count(values: np.ndarray, run: int) -> int:
    """Readings that sit in runs of at least `run` identical consecutive values."""
    if len(values) < run:
        return 0
    change = np.concatenate([[True], values[1:] != values[:-1]])
    starts = np.flatnonzero(change)
    lengths = np.diff(np.concatenate([starts, [len(values)]]))
    return int(lengths[lengths >= run].sum())


def _monotonic(series_by_asset: list[np.ndarray]) -> str | None:
    directions = set()
    for values in series_by_asset:
        if len(values) < 3:
            continue
        steps = np.diff(values)
        if np.all(steps >= 0) and np.any(steps > 0):
            directions.add("increasing")
        elif np.all(steps <= 0) and np.any(steps < 0):
            directions.add("decreasing")
        else:
            return None
    return directions.pop() if len(directions) == 1 else None


def quality_report(
    frame: pd.DataFrame,
    sensors: list[str],
    interval_s: float,
    gap_limit_s: float,
    *,
    n_duplicates: int = 0,
    quarantined: dict[str, int] | None = None,
    thresholds: QualityThresholds = QualityThresholds(),
) -> pd.DataFrame:
    """One row per sensor (QUALITY_COLUMNS) for a lake-layout frame (timestamp, asset, sensors)."""
    quarantined = quarantined or {}
    frame = frame.sort_values(["asset", "timestamp"], kind="stable")
    groups = [g for _, g in frame.groupby("asset", sort=True)]
    expected = 0
    gaps: list[float] = []
    steps: list[np.ndarray] = []
    for g in groups:
        t = g["timestamp"].to_numpy(dtype="datetime64[ns]").astype(np.int64) / 1e9
        if len(t):
            expected += round(float((t[-1] - t[0]) / interval_s)) + 1
        d = np.diff(t)
        steps.append(d)
        gaps += list(d[d > gap_limit_s])
    all_steps = np.concatenate(steps) if steps else np.empty(0)
    effective = float(np.median(all_steps)) if len(all_steps) else None
    rows = []
    for sensor in sensors:
        per_asset = [g[sensor].to_numpy(dtype=np.float64) for g in groups]
        values = np.concatenate(per_asset) if per_asset else np.empty(0)
        values_ok = values[np.isfinite(values)]
        n = len(values_ok)
        missing = 100.0 * max(expected - n, 0) / expected if expected else 100.0
        flat = sum(_flat_count(v[np.isfinite(v)], thresholds.flatline_run) for v in per_asset)
        flat_pct = 100.0 * flat / n if n else 0.0
        mono = _monotonic(per_asset)
        row = {
            "sensor": sensor, "n_readings": n, "missing_pct": round(missing, 3), "n_gaps": len(gaps),
            "largest_gap_s": max(gaps) if gaps else None, "n_duplicates": int(n_duplicates),
            "n_quarantined": int(quarantined.get(sensor, 0)), "flatline_pct": round(flat_pct, 3),
            "monotonic": mono, "interval_s": effective,
            "min_value": float(values_ok.min()) if n else None, "max_value": float(values_ok.max()) if n else None,
            # advice only (not stored): gaps of one or two missing readings, which a wider
            # gap tolerance fills by interpolation instead of splitting the series there
            "short_gaps": [g for g in gaps if g <= SHORT_GAP_READINGS * interval_s],
        }
        row["grade"], row["advice"] = grade(row, interval_s, thresholds)
        rows.append(row)
    return pd.DataFrame(rows, columns=QUALITY_COLUMNS)


def grade(row: dict, interval_s: float, t: QualityThresholds) -> tuple[str, str]:
    """(grade, advice) of one sensor's statistics."""
    low, medium = [], []
    if row["n_readings"] == 0:
        return "low", "no readings: check the export includes this sensor"
    if row["missing_pct"] >= t.low_missing_pct:
        low.append(f"{row['missing_pct']:.1f}% of readings missing: check the export and the sensor's logging")
    elif row["missing_pct"] >= t.medium_missing_pct:
        medium.append(f"{row['missing_pct']:.1f}% of readings missing")
    if row["flatline_pct"] >= t.low_flatline_pct:
        low.append(f"{row['flatline_pct']:.0f}% flatline: a stuck or disconnected sensor; consider leaving it out")
    elif row["flatline_pct"] >= t.medium_flatline_pct:
        medium.append(f"{row['flatline_pct']:.0f}% flatline: check for stuck periods")
    if row["monotonic"]:
        low.append(f"monotonically {row['monotonic']}: a counter, not a condition signal; "
                   "use its rate of change or leave it out")
    if row["n_gaps"]:
        plural = "s split" if row["n_gaps"] != 1 else " splits"
        advice = (f"{row['n_gaps']} gap{plural} the series (largest {row['largest_gap_s']:.0f} s); "
                  "no window spans a gap")
        short = row.get("short_gaps") or []
        if short:
            which = "it is" if row["n_gaps"] == 1 else f"{len(short)} of them {'is' if len(short) == 1 else 'are'}"
            advice += (f"; {which} at most {max(short):g} s (one or two readings missing): "
                       f"window.max_gap_s = {max(short):g} fills such gaps by interpolation")
        medium.append(advice)
    if row["interval_s"] and abs(row["interval_s"] - interval_s) > t.interval_tolerance * interval_s:
        medium.append(f"effective interval {row['interval_s']:g} s, configured {interval_s:g} s: "
                      "set window.interval_s to the export's interval")
    if row["n_quarantined"]:
        medium.append(f"{row['n_quarantined']} rows quarantined for bad values in this sensor (see quarantine)")
    if row["n_duplicates"]:
        medium.append(f"{row['n_duplicates']} duplicate timestamps in the stream (see quarantine)")
    if low:
        return "low", "; ".join(low + medium)
    if medium:
        return "medium", "; ".join(medium)
    return "high", "no issues found"
