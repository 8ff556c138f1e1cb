"""What scoring and evaluation write: watermarks and the ranges to rescore, window scores,
anomalies, incidents and evaluations, and the reads that decide which scoring of a window
counts."""
from __future__ import annotations

import math

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
) -> dict[str, int]:
    """Write scored windows (all to `scores`, flagged ones to `anomalies`) and advance the
    watermarks, in one transaction. Returns the number of rows actually inserted."""
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
        scalar(con,
            "MERGE INTO watermarks w USING (SELECT stream, asset, max(window_end) AS last_window_end, "
            "any_value(model_version) AS model_version FROM new_windows GROUP BY stream, asset) n "
            "ON w.stream = n.stream AND w.asset = n.asset "
            "WHEN MATCHED AND n.last_window_end > w.last_window_end THEN UPDATE SET "
            "last_window_end = n.last_window_end, model_version = n.model_version, "
            "updated_at = current_localtimestamp() "
            "WHEN NOT MATCHED THEN INSERT (stream, asset, last_window_end, model_version) "
            "VALUES (n.stream, n.asset, n.last_window_end, n.model_version)"
        )
        con.unregister("new_windows")
        con.unregister("new_anomalies")
    return {"scores": int(n_scores), "anomalies": int(n_anomalies)}

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

def score_history(con: duckdb.DuckDBPyConnection, stream: str, model_name: str,
                  cutoffs: dict[str, pd.Timestamp], recent: int) -> dict[str, tuple[int, float, float, list[float]]]:
    """Per asset, its stored windows scored by `model_name` (any version: a window's latest
    scoring counts) that end before the asset's cutoff and touch no excluded reading, as
    log(score / threshold) (monitoring.alerting.adaptive): the latest `recent` of them in
    time order, and the count, sum and sum of squares of the others. One aggregate over
    these assets' scores."""
    if not cutoffs:
        return {}
    bounds = pd.DataFrame({"asset": list(cutoffs), "cutoff": pd.to_datetime(list(cutoffs.values()))})
    con.register("history_cutoffs", bounds)
    try:
        rows = con.execute(
            "WITH latest AS (SELECT s.asset, s.window_end, s.score, s.threshold, s.excluded FROM scores s "
            "JOIN history_cutoffs c ON s.asset = c.asset AND s.window_end < c.cutoff "
            "WHERE s.stream = ? AND s.model_name = ? "
            "QUALIFY row_number() OVER (PARTITION BY s.asset, s.window_start "
            "ORDER BY s.scored_at DESC, s.model_version DESC) = 1), "
            "s AS (SELECT asset, window_end, ln(greatest(score, 1e-12)) - ln(greatest(threshold, 1e-12)) AS x, "
            "row_number() OVER (PARTITION BY asset ORDER BY window_end DESC) AS back FROM latest WHERE NOT excluded) "
            "SELECT asset, count(*) FILTER (WHERE back > ?), coalesce(sum(x) FILTER (WHERE back > ?), 0), "
            "coalesce(sum(x * x) FILTER (WHERE back > ?), 0), "
            "coalesce(list(x ORDER BY window_end) FILTER (WHERE back <= ?), []) FROM s GROUP BY asset",
            [stream, model_name, recent, recent, recent, recent]).fetchall()
    finally:
        con.unregister("history_cutoffs")
    return {str(a): (int(n), float(t), float(t2), [float(v) for v in xs]) for a, n, t, t2, xs in rows}


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
