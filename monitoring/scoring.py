"""Incremental scoring of a stream with a loaded model.

Per asset, only readings after the watermark (the end of the last scored window) are
scored, plus one window of history so the first new window is complete. Window starts
sit on the absolute time grid, so this cuts exactly the windows a full pass would cut;
rows already written are skipped by primary key, so a re-run adds nothing.

Readings that arrived late (at or before a watermark, recorded by the ingest in
`rescore_ranges`) are revisited: the windows over them are scored again and replace the
earlier rows. Windows that touch an excluded reading (features.exclusions: machine off,
maintenance) are scored and stored with `excluded = true`, but never flagged, so they
raise no anomaly and no incident.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from features.exclusions import Exclusions, windows_touching
from features.windows import WindowSpec
from monitoring import warehouse
from monitoring.errors import BundleInputError


@dataclass(frozen=True)
class ScoreResult:
    stream: str
    model_version: int
    windows_scored: int
    scores_written: int
    anomalies_written: int


def score_stream(
    db_path: Path,
    stream: str,
    predict: Callable[[pd.DataFrame], pd.DataFrame],
    spec: WindowSpec,
    input_columns: list[str],
    model_name: str,
    model_version: int,
    *,
    full: bool = False,
    exclusions: Exclusions | None = None,
    assets: list[str] | None = None,
) -> ScoreResult:
    """Score the new readings of every asset of `stream` (or only of `assets`)."""
    with warehouse.connect(db_path) as con:
        assets = warehouse.list_assets(con, stream) if assets is None else list(assets)
        marks = {} if full else warehouse.get_watermarks(con, stream)
        pending = warehouse.get_rescore_ranges(con, stream)
    results = []
    for asset in assets:
        mark = marks.get(asset)
        revisit = pending[pending["asset"] == asset]
        lo = mark if mark is None or revisit.empty else min(mark, pd.Timestamp(revisit["start"].min()))
        after = None if lo is None else lo - pd.Timedelta(seconds=spec.size * spec.interval_s)
        with warehouse.connect(db_path) as con:
            readings = warehouse.read_readings(con, stream, asset=asset, after=after)
        if len(readings) < spec.size:
            continue
        missing = [c for c in input_columns if c not in readings.columns]
        if missing:
            raise BundleInputError(
                f"the lake of stream '{stream}' lacks columns {missing} that model {model_name} v{model_version} "
                f"needs; it has {list(readings.columns)}"
            )
        scored = predict(readings[input_columns]).copy()
        scored["rescore"] = False
        if mark is not None:
            again = np.zeros(len(scored), dtype=bool)
            for r in revisit.itertuples(index=False):
                again |= (scored["window_end"] >= r.start).to_numpy() & (scored["window_start"] <= r.end).to_numpy()
            scored["rescore"] = again & (scored["window_end"] <= mark).to_numpy()
            scored = scored[(scored["window_end"] > mark) | scored["rescore"]]
        scored["excluded"] = False
        if exclusions and len(scored):
            excluded = exclusions.mask(readings)
            scored["excluded"] = windows_touching(readings, excluded, scored["asset"].to_numpy(),
                                                  scored["window_start"].to_numpy(), scored["window_end"].to_numpy())
            scored["is_anomaly"] = scored["is_anomaly"] & ~scored["excluded"]
        if len(scored) or not revisit.empty:
            results.append((asset, scored, list(revisit["batch_id"])))
    written = {"scores": 0, "anomalies": 0}
    n_windows = 0
    for asset, scored, revisited in results:
        n_windows += len(scored)
        with warehouse.connect(db_path) as con:
            counts = warehouse.write_window_results(con, stream, scored, model_name, model_version)
            warehouse.clear_rescore_ranges(con, stream, asset, revisited)
        written = {k: written[k] + counts[k] for k in written}
    return ScoreResult(stream, model_version, n_windows, written["scores"], written["anomalies"])
