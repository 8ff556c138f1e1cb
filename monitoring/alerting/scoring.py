"""Incremental scoring of a stream with a loaded model.

Per asset, only readings after the watermark (the end of the last scored window) are
scored, plus one window of history so the first new window is complete. Window starts
sit on the absolute time grid, so this cuts exactly the windows a full pass would cut;
rows already written are skipped by key, so a re-run adds nothing.

Readings that arrived late (at or before a watermark, recorded by the ingest in
`rescore_ranges`) are revisited: the windows over them are scored again and replace the
earlier rows. Windows that touch an excluded reading (features.exclusions: machine off,
maintenance) are scored and stored with `excluded = true`, but never flagged, so they
raise no anomaly and no incident.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

from features.exclusions import Exclusions, windows_touching
from features.windows import WindowSpec
from monitoring.alerting.incidents import IncidentRule
from monitoring.alerting.lifecycle import IncidentSummary, store_incidents
from monitoring.errors import BundleInputError
from monitoring.models.registry import LoadedModel, RegisteredVersion, loaded_bundle
from monitoring.store.connection import Warehouse, connect, write
from monitoring.store.readings import list_assets, read_readings
from monitoring.store.results import clear_rescore_ranges, get_rescore_ranges, get_watermarks, write_window_results


@dataclass(frozen=True)
class ScoreResult:
    stream: str
    model_version: int
    windows_scored: int
    scores_written: int
    anomalies_written: int
    incidents: int = 0  # the stream's active incidents after the run (when it merged them)
    open_incidents: int = 0  # of which not yet recovered
    incident_changes: int = 0  # incident_log rows the run appended
    alerts: int = 0  # of which raise an alert
    flagged_read: int = 0  # flagged windows the incident refresh read back (what it cost)


def score_stream(
    warehouse: Warehouse,
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
    incidents: IncidentRule | None = None,
) -> ScoreResult:
    """Score the new readings of every asset of `stream` (or only of `assets`). Readings are
    read and scored with no lock held; then one transaction writes every asset's scores,
    anomalies and watermark, clears the late ranges it revisited and, with an `incidents`
    rule, merges the stream's incidents: a reader sees the whole run or none of it."""
    batches = []
    with connect(warehouse) as con:
        assets = list_assets(con, stream) if assets is None else list(assets)
        marks = {} if full else get_watermarks(con, stream)
        pending = get_rescore_ranges(con, stream)
        revisits = {asset: pending[pending["asset"] == asset] for asset in assets}
        recent = _recent_readings(con, stream, assets, marks, revisits, spec)
    for asset in assets:
        revisit = revisits[asset]
        scored = _score_asset(stream, asset, recent.get(asset), predict, spec, input_columns, model_name,
                              model_version, marks.get(asset), revisit, exclusions)
        if scored is None or not (len(scored) or not revisit.empty):
            continue
        batches.append((asset, scored, list(revisit["batch_id"])))
    changed = {asset: scored["window_start"].min() for asset, scored, _ in batches if len(scored)}
    first_assets = frozenset(a for a in changed if a not in marks) if not full else frozenset()

    def commit(con: duckdb.DuckDBPyConnection) -> ScoreResult:
        # every asset's windows in one write: one lookup of the stored keys, not one per asset
        frames = [scored for _, scored, _ in batches if len(scored)]
        written = (write_window_results(con, stream, pd.concat(frames, ignore_index=True), model_name,
                                        model_version) if frames else {"scores": 0, "anomalies": 0})
        for asset, _, batch_ids in batches:
            clear_rescore_ranges(con, stream, asset, batch_ids)
        summary = (store_incidents(con, stream, incidents, changed=changed, first_assets=first_assets)
                   if incidents is not None else IncidentSummary(0, 0, 0, 0))
        return ScoreResult(stream, model_version, sum(len(s) for _, s, _ in batches), written["scores"],
                           written["anomalies"], summary.active, summary.open, summary.changes, summary.alerts,
                           summary.windows_read)

    if not batches and incidents is None:
        return ScoreResult(stream, model_version, 0, 0, 0)
    return write(warehouse, commit)


def _recent_readings(con: duckdb.DuckDBPyConnection, stream: str, assets: list[str], marks: dict,
                     revisits: dict[str, pd.DataFrame], spec: WindowSpec) -> dict[str, pd.DataFrame]:
    """The readings each asset's windows to score need: from one window before the earliest
    of its watermark and its late ranges, or all of them for an asset never scored. Every
    asset is read in one query from the earliest of their starts (one scan of the files,
    not one per asset) and split here."""
    lookback = pd.Timedelta(seconds=spec.size * spec.interval_s)
    after: dict[str, pd.Timestamp | None] = {}
    for asset in assets:
        mark, revisit = marks.get(asset), revisits[asset]
        lo = mark if mark is None or revisit.empty else min(mark, pd.Timestamp(revisit["start"].min()))
        after[asset] = None if lo is None else lo - lookback
    if not after:
        return {}
    starts = list(after.values())
    earliest = None if any(t is None for t in starts) else min(t for t in starts if t is not None)
    if len(after) == 1:  # one asset: let the query filter it
        asset = next(iter(after))
        return {asset: read_readings(con, stream, asset=asset, after=after[asset])}
    frame = read_readings(con, stream, after=earliest)
    out: dict[str, pd.DataFrame] = {}
    for asset, rows in frame.groupby("asset", sort=False):
        name = str(asset)
        if name in after:
            lo = after[name]
            out[name] = (rows if lo is None else rows[rows["timestamp"] > lo]).reset_index(drop=True)
    return out


def _score_asset(stream: str, asset: str, readings: pd.DataFrame | None,
                 predict: Callable[[pd.DataFrame], pd.DataFrame], spec: WindowSpec, input_columns: list[str],
                 model_name: str, model_version: int, mark: pd.Timestamp | None, revisit: pd.DataFrame,
                 exclusions: Exclusions | None) -> pd.DataFrame | None:
    """The windows of one asset to write: those after its watermark `mark`, and those over
    late readings (`revisit`) marked to replace their stored rows; None when the asset has
    fewer readings than a window. `readings`: the asset's readings from a window before
    the earliest of these (_recent_readings)."""
    if readings is None:
        return None
    if len(readings) < spec.size:
        return None
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
    return scored


def score_model(warehouse: Warehouse, stream: str, model: LoadedModel, version: RegisteredVersion, *,
                full: bool = False, exclusions: Exclusions | None = None,
                incidents: IncidentRule | None = None) -> ScoreResult:
    """score_stream with a registered version loaded from MLflow (registry.load_model): its
    pyfunc predicts, its bundle gives the window spec and the input columns."""
    bundle = loaded_bundle(model)
    return score_stream(warehouse, stream, model.predict, bundle.spec, bundle.input_columns(), version.name,
                        version.version, full=full, exclusions=exclusions, incidents=incidents)
