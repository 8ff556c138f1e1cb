"""What scoring and evaluation write: watermarks and the ranges to rescore, window scores,
anomalies, incidents and evaluations, and the reads that decide which scoring of a window
counts."""
from __future__ import annotations

import math
from typing import NamedTuple

import duckdb
import pandas as pd
import pyarrow as pa

from monitoring.errors import WarehouseError
from monitoring.store.connection import Warehouse, connect, insert_missing, quote_identifier, scalar, transaction
from monitoring.store.incident_records import read_incidents
from monitoring.store.schema import KEYS


def get_watermarks(con: duckdb.DuckDBPyConnection, stream: str) -> dict[str, pd.Timestamp]:
    rows = con.execute("SELECT asset, last_window_end FROM watermarks WHERE stream = ?", [stream]).fetchall()
    return {asset: pd.Timestamp(end) for asset, end in rows}


def watermark_updates(con: duckdb.DuckDBPyConnection, stream: str) -> dict[str, pd.Timestamp]:
    """When each asset's watermark last moved (wall time): when it last had new windows scored."""
    rows = con.execute("SELECT asset, updated_at FROM watermarks WHERE stream = ?", [stream]).fetchall()
    return {asset: pd.Timestamp(at) for asset, at in rows}

def watermark_rows(con: duckdb.DuckDBPyConnection, stream: str) -> tuple[dict[str, pd.Timestamp],
                                                                         dict[str, pd.Timestamp]]:
    """get_watermarks and watermark_updates in one query."""
    rows = con.execute("SELECT asset, last_window_end, updated_at FROM watermarks WHERE stream = ?",
                       [stream]).fetchall()
    return ({asset: pd.Timestamp(end) for asset, end, _ in rows},
            {asset: pd.Timestamp(at) for asset, _, at in rows})


def add_rescore_range(con: duckdb.DuckDBPyConnection, stream: str, asset: str, start, end, batch_id: str) -> None:
    columns = ["stream", "asset", "start", "end", "batch_id"]
    source = "(SELECT " + ", ".join(f"? AS {quote_identifier(c)}" for c in columns) + ")"
    insert_missing(con, "rescore_ranges", source, columns, KEYS["rescore_ranges"],
                   params=[stream, asset, pd.Timestamp(start).to_pydatetime(), pd.Timestamp(end).to_pydatetime(),
                           batch_id])

def get_rescore_ranges(con: duckdb.DuckDBPyConnection, stream: str) -> pd.DataFrame:
    return con.execute(
        'SELECT asset, start, "end", batch_id FROM rescore_ranges WHERE stream = ? ORDER BY asset, start', [stream]
    ).df()

def clear_rescore_ranges(con: duckdb.DuckDBPyConnection, stream: str, asset: str, batch_ids: list[str]) -> None:
    if batch_ids:
        con.execute("DELETE FROM rescore_ranges WHERE stream = ? AND asset = ? AND list_contains(?, batch_id)",
                    [stream, asset, batch_ids]).fetchall()

def write_window_results(
    con: duckdb.DuckDBPyConnection,
    stream: str,
    windows: pd.DataFrame,
    model_name: str,
    model_version: int,
    sums: dict[str, StoredSums] | None = None,
) -> dict[str, int]:
    """Write scored windows (all to `scores`, flagged ones to `anomalies`) and advance the
    watermarks, in one transaction. Returns the number of rows actually inserted.

    `sums`: adaptive-alarm history sums to store with the assets' watermarks (score_history_from).
    `sums` given for an asset replace its stored ones (the run that gives them has summed
    what it writes); otherwise they are cleared when this write scores a window of their
    model that starts before their `before` (a rescoring or a late window changes what they sum)."""
    needed = {"asset", "window_start", "window_end", "score", "threshold", "is_anomaly", "severity",
              "top_sensors", "contributions"}
    missing = needed - set(windows.columns)
    if missing:
        raise WarehouseError(f"scored windows lack columns {sorted(missing)}")
    frame = windows[sorted(needed)].copy()
    # optional: `excluded` (touches an excluded reading), `rescore` (replace the stored row)
    frame["excluded"] = windows["excluded"].astype(bool) if "excluded" in windows.columns else False
    frame["rescore"] = windows["rescore"].astype(bool) if "rescore" in windows.columns else False
    frame["stream"] = stream
    frame["model_name"] = model_name
    frame["model_version"] = int(model_version)
    # scores through Arrow without the text columns only anomalies keep (no Python object per
    # window to scan); anomalies as the few flagged rows
    flagged = frame.loc[frame["is_anomaly"].astype(bool) & ~frame["excluded"], ANOMALY_COLUMNS]
    with transaction(con):
        con.register("new_windows", pa.Table.from_pandas(frame[[*SCORE_COLUMNS, "rescore"]], preserve_index=False))
        con.register("new_anomalies", flagged)
        con.register("new_sums", _sums_frame(sums or {}))
        for table in ("scores", "anomalies") if frame["rescore"].any() else ():
            scalar(con,
                f"DELETE FROM {table} t USING new_windows n WHERE n.rescore AND t.stream = n.stream AND "
                "t.asset = n.asset AND t.window_start = n.window_start AND t.model_name = n.model_name AND "
                "t.model_version = n.model_version"
            )
        since = ("window_start", pd.Timestamp(frame["window_start"].min()).to_pydatetime()) if len(frame) else None
        n_scores = insert_missing(con, "scores", "new_windows", SCORE_COLUMNS, KEYS["scores"], since=since)
        n_anomalies = insert_missing(
            con, "anomalies", "new_anomalies", ANOMALY_COLUMNS,
            KEYS["anomalies"], select={"contributions": "n.contributions::JSON"}, since=since)
        # per sums column: the new sums where they stand, else the stored ones unless this write
        # scores their model's windows from before their `before`, else none
        fresh = "n.p_asset IS NOT NULL"
        kept = "w.sums_model IS NOT NULL AND NOT (w.sums_model = n.model_name AND n.first_start < w.sums_before)"
        sums_set = ", ".join(f"sums_{c} = CASE WHEN {fresh} THEN n.p_{c} WHEN {kept} THEN w.sums_{c} END"
                             for c in SUMS_COLUMNS)
        scalar(con,
            "MERGE INTO watermarks w USING (SELECT n.*, p.asset AS p_asset, "
            + ", ".join(f"p.{c} AS p_{c}" for c in SUMS_COLUMNS) + " FROM (SELECT stream, asset, "
            "max(window_end) AS last_window_end, min(window_start) AS first_start, "
            "any_value(model_version) AS model_version, any_value(model_name) AS model_name FROM new_windows "
            "GROUP BY stream, asset) n LEFT JOIN new_sums p ON n.asset = p.asset) n "
            "ON w.stream = n.stream AND w.asset = n.asset "
            "WHEN MATCHED THEN UPDATE SET "
            "last_window_end = greatest(w.last_window_end, n.last_window_end), "
            "model_version = CASE WHEN n.last_window_end > w.last_window_end THEN n.model_version "
            "ELSE w.model_version END, "
            "updated_at = CASE WHEN n.last_window_end > w.last_window_end THEN current_localtimestamp() "
            "ELSE w.updated_at END, "
            + sums_set + " "
            "WHEN NOT MATCHED THEN INSERT (stream, asset, last_window_end, model_version, "
            + ", ".join(f"sums_{c}" for c in SUMS_COLUMNS) + ") VALUES (n.stream, n.asset, n.last_window_end, "
            "n.model_version, "
            + ", ".join(f"CASE WHEN {fresh} THEN n.p_{c} END" for c in SUMS_COLUMNS) + ")"
        )
        con.unregister("new_windows")
        con.unregister("new_anomalies")
        con.unregister("new_sums")
    return {"scores": int(n_scores), "anomalies": int(n_anomalies)}

SUMS_COLUMNS = ("model", "before", "cutoff", "count", "total", "total_sq")


def _sums_frame(sums: dict[str, StoredSums]) -> pd.DataFrame:
    """The sums to store, one row per asset, columns asset and SUMS_COLUMNS (typed when empty)."""
    return pd.DataFrame({
        "asset": pd.Series(list(sums), dtype=object),
        "model": pd.Series([v.model for v in sums.values()], dtype=object),
        "before": pd.to_datetime(pd.Series([v.before for v in sums.values()], dtype="datetime64[us]")),
        "cutoff": pd.to_datetime(pd.Series([v.cutoff for v in sums.values()], dtype="datetime64[us]")),
        "count": pd.Series([v.n for v in sums.values()], dtype="int64"),
        "total": pd.Series([v.total for v in sums.values()], dtype="float64"),
        "total_sq": pd.Series([v.total_sq for v in sums.values()], dtype="float64")})


SCORE_COLUMNS = ["stream", "asset", "window_start", "window_end", "score", "threshold", "is_anomaly", "model_name",
                 "model_version", "excluded"]
ANOMALY_COLUMNS = ["stream", "asset", "window_start", "window_end", "score", "threshold", "model_name",
                   "model_version", "top_sensors", "contributions", "severity"]


def read_scores(con: duckdb.DuckDBPyConnection, stream: str, model_name: str, model_version: int,
                asset: str) -> pd.DataFrame:
    """The windows one model version scored on one asset, in time order."""
    return con.execute(
        "SELECT window_start, window_end, score, threshold, is_anomaly, excluded FROM scores WHERE stream = ? "
        "AND model_name = ? AND model_version = ? AND asset = ? ORDER BY window_end",
        [stream, model_name, int(model_version), asset]).df()

class StoredSums(NamedTuple):
    """An asset's adaptive-alarm history as a scoring run stores it with the asset's watermark:
    over the windows `model` scored (each window's latest scoring, excluded ones left out)
    that start before `before`, the count `n`, sum and sum of squares of log(score / threshold);
    taken by a run whose new windows ended from `cutoff` on."""

    model: str
    before: pd.Timestamp
    cutoff: pd.Timestamp
    n: int
    total: float
    total_sq: float


class AssetHistory(NamedTuple):
    """An asset's log-scores before a cutoff: the count, sum and sum of squares of all but the
    latest `recent`, those latest ones in time order, and the latest start of a window among
    them all (None when there is none)."""

    n: int
    total: float
    total_sq: float
    recent: list[float]
    last_start: pd.Timestamp | None = None


def watermarks_and_sums(con: duckdb.DuckDBPyConnection, stream: str) -> tuple[dict[str, pd.Timestamp],
                                                                               dict[str, StoredSums]]:
    """get_watermarks, and the adaptive-alarm history sums stored beside them, in one query."""
    rows = con.execute("SELECT asset, last_window_end, sums_model, sums_before, sums_cutoff, sums_count, sums_total, "
                       "sums_total_sq FROM watermarks WHERE stream = ?", [stream]).fetchall()
    return ({asset: pd.Timestamp(end) for asset, end, *_ in rows},
            {asset: StoredSums(model, pd.Timestamp(before), pd.Timestamp(cutoff), int(n), float(t), float(t2))
             for asset, _, model, before, cutoff, n, t, t2 in rows if model is not None})


def score_history(con: duckdb.DuckDBPyConnection, stream: str, model_name: str,
                  cutoffs: dict[str, pd.Timestamp], recent: int) -> dict[str, AssetHistory]:
    """Per asset, its stored windows scored by `model_name` (any version: a window's latest
    scoring counts) that end before the asset's cutoff and touch no excluded reading, as
    log(score / threshold) (monitoring.alerting.adaptive): the latest `recent` of them in
    time order, and the count, sum and sum of squares of the others. Reads every such window
    (score_history_from reads only those after the sums a run stored)."""
    return score_history_from(con, stream, model_name, cutoffs, recent, {})[0]


def score_history_from(con: duckdb.DuckDBPyConnection, stream: str, model_name: str,
                       cutoffs: dict[str, pd.Timestamp], recent: int,
                       stored: dict[str, StoredSums]) -> tuple[dict[str, AssetHistory], dict[str, StoredSums]]:
    """score_history continued from the sums an earlier run stored (watermarks_and_sums):
    for an asset whose sums are of this model and were taken at or before its cutoff, only
    the windows starting from their `before` are read, so a run's cost does not grow with the
    asset's history. Sums stay valid while no window starting before `before` is scored
    again (write_window_results clears them then). Also returns, per asset, the sums this
    history gives for the next run to store: over the windows starting before the first of
    the latest `recent` ones (with recent 0, all of them).

    One query over the assets' scores; DuckLake reads only the files of windows from the
    earliest `before` on when every asset has usable sums."""
    if not cutoffs:
        return {}, {}
    usable = {asset: sums for asset, sums in stored.items()
              if asset in cutoffs and sums.model == model_name and sums.cutoff <= pd.Timestamp(cutoffs[asset])}
    histories, sums = _history_query(con, stream, model_name, cutoffs, recent, usable)
    # an asset whose latest windows are no longer all after its sums (rescored away): read it all
    short = {asset for asset in usable if len(histories.get(asset, AssetHistory(0, 0.0, 0.0, [])).recent) < recent}
    if short:
        again, again_sums = _history_query(con, stream, model_name, {a: cutoffs[a] for a in short}, recent, {})
        for asset in short:
            histories.pop(asset, None)
            sums.pop(asset, None)
        histories.update(again)
        sums.update(again_sums)
    for asset, base in usable.items():  # an asset with sums but no window after them
        if asset not in histories and asset not in short:
            histories[asset] = AssetHistory(base.n, base.total, base.total_sq, [],
                                            base.before - pd.Timedelta(microseconds=1))
    return histories, sums


def _history_query(con: duckdb.DuckDBPyConnection, stream: str, model_name: str, cutoffs: dict[str, pd.Timestamp],
                   recent: int, usable: dict[str, StoredSums]) -> tuple[dict[str, AssetHistory],
                                                                       dict[str, StoredSums]]:
    assets = list(cutoffs)
    bounds = pd.DataFrame({"asset": assets, "cutoff": pd.to_datetime([cutoffs[a] for a in assets]),
                           "lo": pd.to_datetime([usable[a].before if a in usable else pd.NaT for a in assets])})
    # a constant lower bound lets DuckLake skip the files of older windows; only when every asset has one
    everyone = len(usable) == len(assets)
    floor = " AND s.window_start >= ?" if everyone else ""
    params: list = [stream, model_name, *([min(u.before for u in usable.values()).to_pydatetime()] if everyone else []),
                    recent, recent, recent, recent, recent, recent]
    con.register("history_cutoffs", bounds)
    try:
        rows = con.execute(
            "WITH latest AS (SELECT s.asset, s.window_start, s.window_end, s.score, s.threshold, s.excluded "
            "FROM scores s JOIN history_cutoffs c ON s.asset = c.asset AND s.window_end < c.cutoff "
            "AND (c.lo IS NULL OR s.window_start >= c.lo) "
            f"WHERE s.stream = ? AND s.model_name = ?{floor} "
            "QUALIFY row_number() OVER (PARTITION BY s.asset, s.window_start "
            "ORDER BY s.scored_at DESC, s.model_version DESC) = 1), "
            "s AS (SELECT asset, window_start, window_end, "
            "ln(greatest(score, 1e-12)) - ln(greatest(threshold, 1e-12)) AS x, "
            "row_number() OVER (PARTITION BY asset ORDER BY window_end DESC) AS back FROM latest WHERE NOT excluded), "
            # the next sums: the windows starting before the first of the latest `recent` (all, with none)
            "b AS (SELECT asset, CASE WHEN ? > 0 THEN min(window_start) FILTER (WHERE back <= ?) "
            "ELSE max(window_start) + INTERVAL 1 MICROSECOND END AS before FROM s GROUP BY asset) "
            "SELECT s.asset, count(*) FILTER (WHERE back > ?), coalesce(sum(x) FILTER (WHERE back > ?), 0), "
            "coalesce(sum(x * x) FILTER (WHERE back > ?), 0), "
            "coalesce(list(x ORDER BY window_end) FILTER (WHERE back <= ?), []), any_value(b.before), "
            "count(*) FILTER (WHERE window_start < b.before), "
            "coalesce(sum(x) FILTER (WHERE window_start < b.before), 0), "
            "coalesce(sum(x * x) FILTER (WHERE window_start < b.before), 0), max(window_start) "
            "FROM s JOIN b ON s.asset = b.asset GROUP BY s.asset",
            params).fetchall()
    finally:
        con.unregister("history_cutoffs")
    histories: dict[str, AssetHistory] = {}
    sums: dict[str, StoredSums] = {}
    for asset, n, t, t2, xs, before, n_b, t_b, t2_b, last in rows:
        asset = str(asset)
        base = usable.get(asset, StoredSums(model_name, pd.NaT, pd.NaT, 0, 0.0, 0.0))
        histories[asset] = AssetHistory(base.n + int(n), base.total + float(t), base.total_sq + float(t2),
                                        [float(v) for v in xs], pd.Timestamp(last))
        if before is not None:
            sums[asset] = StoredSums(model_name, pd.Timestamp(before), pd.Timestamp(cutoffs[asset]),
                                     base.n + int(n_b), base.total + float(t_b), base.total_sq + float(t2_b))
    return histories, sums


def read_anomalies(con: duckdb.DuckDBPyConnection, stream: str) -> pd.DataFrame:
    return con.execute(
        "SELECT * FROM anomalies WHERE stream = ? ORDER BY asset, window_start", [stream]
    ).df()

# A window scored several times (a retrain, a full rescore): its most recent scoring decides.
LATEST_SCORING = ("QUALIFY row_number() OVER (PARTITION BY asset, window_start "
                  "ORDER BY scored_at DESC, model_version DESC) = 1")

def asset_clause(assets: list[str] | None, column: str = "asset") -> tuple[str, list]:
    """` AND <column> IN (?, ...)` and its parameters for a query of some assets ('' for all)."""
    if assets is None:
        return "", []
    if not assets:
        return " AND false", []
    return f" AND {column} IN ({', '.join('?' * len(assets))})", [str(a) for a in assets]


def latest_flagged_windows(con: duckdb.DuckDBPyConnection, stream: str, since: pd.Timestamp | None = None,
                           until: pd.Timestamp | None = None, assets: list[str] | None = None) -> pd.DataFrame:
    """Flagged windows as the latest scoring of each window says: when a window was scored by
    several model versions (a retrain, a full rescore), its most recent score decides, so a
    window the new champion clears no longer counts, whatever an older version said. Only
    windows ending at or after `since` and before `until`, and of `assets`, when given."""
    lo = None if since is None else pd.Timestamp(since).to_pydatetime()
    hi = None if until is None else pd.Timestamp(until).to_pydatetime()
    only, names = asset_clause(assets)
    only_a, _ = asset_clause(assets, "a.asset")
    return con.execute(
        "WITH latest AS (SELECT stream, asset, window_start, model_name, model_version, is_anomaly, excluded "
        f"FROM scores WHERE stream = ?{only} AND (?::TIMESTAMP IS NULL OR window_end >= ?) "
        f"AND (?::TIMESTAMP IS NULL OR window_end < ?) {LATEST_SCORING}) "
        "SELECT a.* FROM anomalies a JOIN latest l USING (stream, asset, window_start, model_name, model_version) "
        f"WHERE l.is_anomaly AND NOT l.excluded AND a.stream = ?{only_a} "
        "AND (?::TIMESTAMP IS NULL OR a.window_end >= ?) AND (?::TIMESTAMP IS NULL OR a.window_end < ?) "
        "ORDER BY a.asset, a.window_start",
        [stream, *names, lo, lo, hi, hi, stream, *names, lo, lo, hi, hi],
    ).df()

def latest_window_flags(con: duckdb.DuckDBPyConnection, stream: str, start: pd.Timestamp | None = None,
                        end: pd.Timestamp | None = None, version: int | None = None) -> pd.DataFrame:
    """Each scored window's latest row (as latest_flagged_windows decides: the newest
    scoring, then the highest version), flagged = is_anomaly and not excluded. Windows that
    end between start and end, plus per asset the last one ending before start (the alarm
    state the range opens with). `version`: only that model version's rows."""
    by_version = " AND model_version = ?" if version is not None else ""
    latest = (
        "WITH latest AS (SELECT asset, window_start, window_end, is_anomaly AND NOT excluded AS flagged, "
        f"model_name, model_version FROM scores WHERE stream = ?{by_version} {LATEST_SCORING}) "
    )
    params: list = [stream] + ([int(version)] if version is not None else [])
    lo = pd.Timestamp(start).to_pydatetime() if start is not None else None
    hi = pd.Timestamp(end).to_pydatetime() if end is not None else None
    inside = "SELECT * FROM latest WHERE (? IS NULL OR window_end >= ?) AND (? IS NULL OR window_end <= ?)"
    before = ("SELECT * FROM latest WHERE window_end < ? QUALIFY row_number() OVER "
              "(PARTITION BY asset ORDER BY window_end DESC, window_start DESC) = 1")
    sql = latest + inside + (f" UNION ALL {before}" if lo is not None else "") + " ORDER BY asset, window_end"
    params += [lo, lo, hi, hi] + ([lo] if lo is not None else [])
    return con.execute(sql, params).df()

def write_evaluation(con: duckdb.DuckDBPyConnection, row: dict) -> int:
    """Store one evaluation (keys: columns of `evaluations`); a row with the same
    evaluation_id is kept as it is. Returns the number of rows written (0 or 1)."""
    columns = list(row)
    values = [None if isinstance(v, float) and math.isnan(v) else v for v in row.values()]  # NaN -> NULL: undefined
    source = "(SELECT " + ", ".join(f"? AS {quote_identifier(c)}" for c in columns) + ")"
    return insert_missing(con, "evaluations", source, columns, KEYS["evaluations"], params=values)

def read_evaluations(con: duckdb.DuckDBPyConnection, stream: str) -> pd.DataFrame:
    return con.execute("SELECT * FROM evaluations WHERE stream = ? ORDER BY evaluated_at", [stream]).df()


def read_evaluation(con: duckdb.DuckDBPyConnection, evaluation_id: str) -> pd.DataFrame:
    """The stored evaluation with this id (no row, or one)."""
    return con.execute("SELECT * FROM evaluations WHERE evaluation_id = ?", [evaluation_id]).df()


def past_incidents(warehouse: Warehouse, stream: str) -> pd.DataFrame:
    """asset, start and end of the stream's incidents (kept out of training as never normal)."""
    with connect(warehouse) as con:
        return read_incidents(con, stream)[["asset", "start", "end"]]
