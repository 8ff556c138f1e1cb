"""Incremental scoring of a stream with a loaded model.

Per asset, only readings after the watermark (the end of the last scored window) are
scored, plus one window of history so the first new window is complete. Window starts
sit on the absolute time grid, so this cuts exactly the windows a full pass would cut;
rows already written are skipped by key, so a re-run adds nothing.

Readings that arrived late (at or before a watermark, recorded by the ingest in
`rescore_ranges`) are revisited: the windows over them are scored again and replace the
earlier rows. Windows that touch an excluded reading (features.exclusions: machine off,
maintenance) are scored and stored with `excluded = true`, but never flagged, so they
raise no anomaly and no incident. With an adaptive alarm rule (monitoring.alerting.adaptive)
a window above its threshold is flagged only if it also stands out from the asset's own
score history (the windows' latest scoring by any version of the model).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

from features.exclusions import Exclusions, windows_touching
from features.windows import WindowSpec
from monitoring.alerting.adaptive import AlarmRule, History, adaptive_mask, log_scores
from monitoring.alerting.incidents import IncidentRule
from monitoring.alerting.lifecycle import IncidentSummary, store_incidents
from monitoring.errors import BundleInputError
from monitoring.models.registry import LoadedModel, RegisteredVersion, loaded_bundle
from monitoring.store.connection import Warehouse, connect, write
from monitoring.store.readings import list_assets, read_readings
from monitoring.store.results import (
    AssetHistory,
    StoredSums,
    clear_rescore_ranges,
    get_rescore_ranges,
    score_history_from,
    watermarks_and_sums,
    write_window_results,
)


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

    @classmethod
    def combined(cls, stream: str, model_version: int, parts: list[ScoreResult]) -> ScoreResult:
        """One result of a run scored in parts of disjoint assets: each count summed."""
        counts = [sum(getattr(p, f) for p in parts) for f in ("windows_scored", "scores_written",
                  "anomalies_written", "incidents", "open_incidents", "incident_changes", "alerts", "flagged_read")]
        return cls(stream, model_version, *counts)


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
    until: pd.Timestamp | None = None,
    alarm: AlarmRule | None = None,
) -> ScoreResult:
    """Score the new readings of every asset of `stream` (or only of `assets`: only their
    readings are read, only their incidents merged). `until`: only readings at or before
    this time are read, as if later ones had not arrived yet (a replay of recorded data in
    data time, monitoring.evaluation.replay_bench). `alarm`: which windows above their
    threshold are flagged (default: all of them). Readings are read and scored with no
    lock held; then one transaction writes every asset's scores, anomalies and watermark,
    clears the late ranges it revisited and, with an `incidents` rule, merges the assets'
    incidents: a reader sees the whole run or none of it."""
    only = None if assets is None else sorted(str(a) for a in assets)
    with connect(warehouse) as con:  # one connection for the run: it reads, then writes under the lock
        assets = list_assets(con, stream) if only is None else only
        marks, stored_sums = ({}, {}) if full else watermarks_and_sums(con, stream)
        pending = get_rescore_ranges(con, stream)
        pending = pending[pending["asset"].isin(assets)]
        recent = _recent_readings(con, stream, assets, marks, pending, spec, only is not None, until)
        # every asset's windows in one pass of the model, one frame: no per-asset Python
        scored, ready = _score_assets(stream, recent, predict, spec, input_columns, model_name, model_version,
                                      marks, pending, exclusions)
        sums: dict[str, StoredSums] = {}
        if alarm is not None and alarm.adaptive and len(scored):
            scored, sums = _adaptive_flags(con, stream, scored, alarm, model_name, stored_sums,
                                           None if full else marks)
        counts = scored["asset"].value_counts()
        batches = [(asset, list(pending.loc[pending["asset"] == asset, "batch_id"])) for asset in ready
                   if counts.get(asset, 0) or (pending["asset"] == asset).any()]
        changed = {str(a): pd.Timestamp(t)
                   for a, t in scored.groupby("asset", sort=True)["window_start"].min().items()}
        first_assets = frozenset(a for a in changed if a not in marks) if not full else frozenset()

        def commit(con: duckdb.DuckDBPyConnection) -> ScoreResult:
            # every asset's windows in one write: one lookup of the stored keys, not one per asset
            written = (write_window_results(con, stream, scored, model_name, model_version, sums) if len(scored)
                       else {"scores": 0, "anomalies": 0})
            for asset, batch_ids in batches:
                clear_rescore_ranges(con, stream, asset, batch_ids)
            summary = (store_incidents(con, stream, incidents, changed=changed, first_assets=first_assets,
                                       assets=only)
                       if incidents is not None else IncidentSummary(0, 0, 0, 0))
            return ScoreResult(stream, model_version, len(scored), written["scores"],
                               written["anomalies"], summary.active, summary.open, summary.changes, summary.alerts,
                               summary.windows_read)

        if not batches and incidents is None:
            return ScoreResult(stream, model_version, 0, 0, 0)
        return write(warehouse, commit, con=con)


def _recent_readings(con: duckdb.DuckDBPyConnection, stream: str, assets: list[str], marks: dict,
                     pending: pd.DataFrame, spec: WindowSpec, some: bool = False,
                     until: pd.Timestamp | None = None) -> pd.DataFrame:
    """The readings each asset's windows to score need: from one window before the earliest
    of its watermark and its late ranges (`pending`), or all of them for an asset never
    scored. Every asset is read in one query from the earliest of their starts (one scan of
    the files, not one per asset), in no particular order (the windowing sorts each asset).
    `some`: `assets` are part of the stream's, and the query reads only theirs; `until`: none
    after this time."""
    lookback = pd.Timedelta(seconds=spec.size * spec.interval_s)
    late = pending.groupby("asset")["start"].min()
    after: dict[str, pd.Timestamp | None] = {}
    for asset in assets:
        mark = marks.get(asset)
        lo = mark if mark is None or asset not in late.index else min(mark, pd.Timestamp(late[asset]))
        after[asset] = None if lo is None else lo - lookback
    if not after:
        return pd.DataFrame(columns=["timestamp", "asset"])
    known = {a: t for a, t in after.items() if t is not None}
    earliest = min(known.values()) if len(known) == len(after) else None
    only = next(iter(after)) if len(after) == 1 else None  # one asset: the query keeps only it
    frame = read_readings(con, stream, asset=only, after=earliest, end=until, ordered=False,
                          assets=list(after) if some and only is None else None)
    if only is None:
        frame = frame[frame["asset"].isin(list(after))]
    if known and (earliest is None or len(set(known.values())) > 1):
        bounds = pd.to_datetime(frame["asset"].map(known))
        frame = frame[bounds.isna().to_numpy() | (frame["timestamp"] > bounds).to_numpy()]
    return frame.reset_index(drop=True)


def _score_assets(stream: str, readings: pd.DataFrame, predict: Callable[[pd.DataFrame], pd.DataFrame],
                  spec: WindowSpec, input_columns: list[str], model_name: str, model_version: int, marks: dict,
                  pending: pd.DataFrame, exclusions: Exclusions | None) -> tuple[pd.DataFrame, list[str]]:
    """The windows to write, of every asset with at least a window of readings (the second
    value, sorted): those after the asset's watermark, and those over its late readings
    (`pending`) marked to replace their stored rows. `readings`: each asset's readings from
    a window before the earliest of these (_recent_readings)."""
    counts = readings["asset"].value_counts()
    ready = sorted(str(a) for a in counts.index[counts >= spec.size])
    if not ready:
        return pd.DataFrame(columns=["asset", "window_start", "window_end", "is_anomaly"]), []
    missing = [c for c in input_columns if c not in readings.columns]
    if missing:
        raise BundleInputError(
            f"the lake of stream '{stream}' lacks columns {missing} that model {model_name} v{model_version} "
            f"needs; it has {list(readings.columns)}"
        )
    if len(ready) < len(counts):
        readings = readings[readings["asset"].isin(ready)].reset_index(drop=True)
    scored = predict(readings[input_columns]).copy()
    scored["rescore"] = False
    mark = pd.to_datetime(scored["asset"].map({a: marks[a] for a in ready if a in marks}))
    if mark.notna().any():
        start, end = scored["window_start"].to_numpy(), scored["window_end"].to_numpy()
        asset = scored["asset"].to_numpy()
        again = np.zeros(len(scored), dtype=bool)
        for r in pending.itertuples(index=False):
            again |= (asset == r.asset) & (end >= np.datetime64(r.start)) & (start <= np.datetime64(r.end))
        marked = mark.notna().to_numpy()
        old = marked & (scored["window_end"] <= mark).to_numpy()
        scored["rescore"] = again & old
        scored = scored[~old | again].reset_index(drop=True)
    scored["excluded"] = False
    if exclusions and len(scored):
        excluded = exclusions.mask(readings)
        scored["excluded"] = windows_touching(readings, excluded, scored["asset"].to_numpy(),
                                              scored["window_start"].to_numpy(), scored["window_end"].to_numpy())
        scored["is_anomaly"] = scored["is_anomaly"] & ~scored["excluded"]
    return scored, ready


def _adaptive_flags(con: duckdb.DuckDBPyConnection, stream: str, scored: pd.DataFrame, rule: AlarmRule,
                    model_name: str, stored: dict[str, StoredSums],
                    marks: dict[str, pd.Timestamp] | None) -> tuple[pd.DataFrame, dict[str, StoredSums]]:
    """`scored` with the flags of windows that do not stand out from their asset's history
    cleared, and the history sums to store for the next run. Each asset's windows that touch
    no excluded reading form its sequence, after the history stored before the earliest of
    them by any version of the model (rows this run replaces excluded), read on from the sums
    `stored` by an earlier run where they hold.

    The sums stored go on over this run's windows but the latest short_windows - 1, so the
    next run reads only those; only for an asset whose stored windows all end before this
    run's (`marks`: the watermarks this run started from; None: a full rescore, which stores
    none), since a window scored again changes what the sums hold."""
    scored = scored.reset_index(drop=True)
    live = scored.loc[~scored["excluded"].to_numpy(dtype=bool),
                      ["asset", "window_start", "window_end", "score", "threshold"]]
    if live.empty:
        return scored, {}
    starts = live.groupby("asset")["window_end"].min()
    cutoffs = {str(a): pd.Timestamp(t) for a, t in starts.items()}
    firsts = scored.groupby("asset")["window_end"].min()  # excluded windows too: any rescored window counts
    history, sums = score_history_from(con, stream, model_name, cutoffs, rule.short_windows - 1, stored)
    keep = np.zeros(len(scored), dtype=bool)
    after: dict[str, StoredSums] = {}
    for asset, part in live.groupby("asset", sort=False):
        asset = str(asset)
        part = part.sort_values("window_end", kind="stable")
        past = history.get(asset, AssetHistory(0, 0.0, 0.0, []))
        x = log_scores(part["score"].to_numpy(), part["threshold"].to_numpy())
        mask = adaptive_mask(part["score"].to_numpy(), rule, History(past.n, past.total, past.total_sq,
                                                                     np.asarray(past.recent)),
                             part["threshold"].to_numpy())
        keep[part.index.to_numpy()[mask]] = True
        if marks is None or (asset in marks and pd.Timestamp(firsts[asset]) <= marks[asset]):
            continue
        held = rule.short_windows - 1  # the latest windows the next run reads again
        window_starts = pd.to_datetime(part["window_start"]).reset_index(drop=True)
        before = (None if len(x) < max(held, 1) else window_starts.iloc[len(x) - held] if held
                  else window_starts.iloc[-1] + pd.Timedelta(microseconds=1))
        if before is not None and (past.last_start is None or past.last_start < before):
            summed = np.concatenate([np.asarray(past.recent, dtype=np.float64), x[:len(x) - held]])
            ends = pd.to_datetime(part["window_end"]).iloc[:len(x) - held]
            after[asset] = StoredSums(model_name, before,
                                      (ends.max() if len(ends) else cutoffs[asset]) + pd.Timedelta(microseconds=1),
                                      past.n + len(summed), past.total + float(summed.sum()),
                                      past.total_sq + float((summed * summed).sum()))
        elif asset in sums:
            after[asset] = sums[asset]
    scored["is_anomaly"] = scored["is_anomaly"].to_numpy(dtype=bool) & keep
    return scored, after


def score_model(warehouse: Warehouse, stream: str, model: LoadedModel, version: RegisteredVersion, *,
                full: bool = False, exclusions: Exclusions | None = None,
                incidents: IncidentRule | None = None, assets: list[str] | None = None,
                alarm: AlarmRule | None = None) -> ScoreResult:
    """score_stream with a registered version loaded from MLflow (registry.load_model): its
    pyfunc predicts, its bundle gives the window spec and the input columns."""
    bundle = loaded_bundle(model)
    return score_stream(warehouse, stream, model.predict, bundle.spec, bundle.input_columns(), version.name,
                        version.version, full=full, exclusions=exclusions, incidents=incidents, assets=assets,
                        alarm=alarm)
