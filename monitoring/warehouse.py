"""The DuckDB warehouse: one view per stream over the Parquet lake, and the tables
aemon writes (ingest audit, window scores, anomalies, scoring watermarks).

Every write is idempotent: tables carry primary keys and inserts skip rows that are
already there, so re-running a flow never duplicates a row. Connections are short-lived
(one per call) because DuckDB allows one writing process per file.
"""
from __future__ import annotations

import math
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import duckdb
import pandas as pd

from monitoring import lake
from monitoring.errors import WarehouseError

IDENTIFIER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-]{0,127}$")

TABLES = {
    "ingest_batches": """
        CREATE TABLE IF NOT EXISTS ingest_batches (
            batch_id VARCHAR PRIMARY KEY,
            stream VARCHAR NOT NULL,
            file VARCHAR NOT NULL,
            file_hash VARCHAR NOT NULL,
            rows_in BIGINT NOT NULL,
            rows_accepted BIGINT NOT NULL,
            rows_quarantined BIGINT NOT NULL,
            status VARCHAR NOT NULL,
            error VARCHAR,
            rows_duplicate BIGINT NOT NULL DEFAULT 0,
            rows_out_of_order BIGINT NOT NULL DEFAULT 0,
            rows_late BIGINT NOT NULL DEFAULT 0,
            ingested_at TIMESTAMP NOT NULL DEFAULT current_localtimestamp()
        )""",
    "quarantine": """
        CREATE TABLE IF NOT EXISTS quarantine (
            batch_id VARCHAR NOT NULL,
            stream VARCHAR NOT NULL,
            file VARCHAR NOT NULL,
            row_number BIGINT NOT NULL,
            "column" VARCHAR,
            reason VARCHAR NOT NULL,
            raw VARCHAR,
            quarantined_at TIMESTAMP NOT NULL DEFAULT current_localtimestamp(),
            PRIMARY KEY (batch_id, row_number)
        )""",
    "rescore_ranges": """
        CREATE TABLE IF NOT EXISTS rescore_ranges (
            stream VARCHAR NOT NULL,
            asset VARCHAR NOT NULL,
            start TIMESTAMP NOT NULL,
            "end" TIMESTAMP NOT NULL,
            batch_id VARCHAR NOT NULL,
            PRIMARY KEY (stream, asset, batch_id)
        )""",
    "data_quality": """
        CREATE TABLE IF NOT EXISTS data_quality (
            stream VARCHAR NOT NULL,
            sensor VARCHAR NOT NULL,
            n_readings BIGINT NOT NULL,
            missing_pct DOUBLE NOT NULL,
            n_gaps BIGINT NOT NULL,
            largest_gap_s DOUBLE,
            n_duplicates BIGINT NOT NULL,
            n_quarantined BIGINT NOT NULL,
            flatline_pct DOUBLE NOT NULL,
            monotonic VARCHAR,
            interval_s DOUBLE,
            min_value DOUBLE,
            max_value DOUBLE,
            grade VARCHAR NOT NULL,
            advice VARCHAR NOT NULL,
            computed_at TIMESTAMP NOT NULL DEFAULT current_localtimestamp(),
            PRIMARY KEY (stream, sensor)
        )""",
    "scores": """
        CREATE TABLE IF NOT EXISTS scores (
            stream VARCHAR NOT NULL,
            asset VARCHAR NOT NULL,
            window_start TIMESTAMP NOT NULL,
            window_end TIMESTAMP NOT NULL,
            score DOUBLE NOT NULL,
            threshold DOUBLE NOT NULL,
            is_anomaly BOOLEAN NOT NULL,
            model_name VARCHAR NOT NULL,
            model_version INTEGER NOT NULL,
            scored_at TIMESTAMP NOT NULL DEFAULT current_localtimestamp(),
            PRIMARY KEY (stream, asset, window_start, model_name, model_version)
        )""",
    "anomalies": """
        CREATE TABLE IF NOT EXISTS anomalies (
            stream VARCHAR NOT NULL,
            asset VARCHAR NOT NULL,
            window_start TIMESTAMP NOT NULL,
            window_end TIMESTAMP NOT NULL,
            score DOUBLE NOT NULL,
            threshold DOUBLE NOT NULL,
            model_name VARCHAR NOT NULL,
            model_version INTEGER NOT NULL,
            top_sensors VARCHAR NOT NULL,
            contributions JSON NOT NULL,
            detected_at TIMESTAMP NOT NULL DEFAULT current_localtimestamp(),
            severity DOUBLE,  -- the model's own scale: 1 at the threshold (ModelBundle.severity)
            PRIMARY KEY (stream, asset, window_start, model_name, model_version)
        )""",
    "incidents": """
        CREATE TABLE IF NOT EXISTS incidents (
            stream VARCHAR NOT NULL,
            asset VARCHAR NOT NULL,
            start TIMESTAMP NOT NULL,  -- first flagged window's start
            "end" TIMESTAMP NOT NULL,  -- last flagged window's end
            n_windows INTEGER NOT NULL,
            peak_score DOUBLE NOT NULL,
            peak_severity DOUBLE NOT NULL,
            top_sensors VARCHAR NOT NULL,
            model_versions VARCHAR NOT NULL,  -- the versions whose flags it merges, e.g. '3' or '3,5'
            status VARCHAR NOT NULL,  -- open: the next scoring run may still extend it; closed
            updated_at TIMESTAMP NOT NULL DEFAULT current_localtimestamp(),
            PRIMARY KEY (stream, asset, start)
        )""",
    "evaluations": """
        CREATE TABLE IF NOT EXISTS evaluations (
            evaluation_id VARCHAR PRIMARY KEY,  -- a hash of what was evaluated: the same inputs, the same id
            stream VARCHAR NOT NULL,
            model_name VARCHAR NOT NULL,
            model_versions VARCHAR NOT NULL,  -- the versions whose windows were evaluated, e.g. '3' or '3,5'
            label_columns VARCHAR NOT NULL,
            range_start TIMESTAMP NOT NULL,  -- first and last reading evaluated
            range_end TIMESTAMP NOT NULL,
            evaluated_at TIMESTAMP NOT NULL DEFAULT current_localtimestamp(),
            n_assets BIGINT NOT NULL,
            n_rows BIGINT NOT NULL,
            n_labeled_rows BIGINT NOT NULL,
            n_events BIGINT NOT NULL,  -- runs of labeled readings
            n_detected_events BIGINT NOT NULL,
            n_alarms BIGINT NOT NULL,  -- alarm onsets
            tp BIGINT NOT NULL,
            fp BIGINT NOT NULL,
            fn BIGINT NOT NULL,
            tn BIGINT NOT NULL,
            "precision" DOUBLE,  -- NULL: undefined (0 / 0)
            recall DOUBLE,
            f1 DOUBLE,
            far DOUBLE,
            mar DOUBLE,
            f1_point_adjusted DOUBLE,
            event_precision DOUBLE,
            event_recall DOUBLE,
            event_f1 DOUBLE,
            nab_standard DOUBLE,
            nab_low_fp DOUBLE,
            nab_low_fn DOUBLE,
            mean_delay_s DOUBLE,
            mean_forewarning_s DOUBLE,
            mlflow_run_id VARCHAR
        )""",
    "watermarks": """
        CREATE TABLE IF NOT EXISTS watermarks (
            stream VARCHAR NOT NULL,
            asset VARCHAR NOT NULL,
            last_window_end TIMESTAMP NOT NULL,
            model_version INTEGER NOT NULL,
            updated_at TIMESTAMP NOT NULL DEFAULT current_localtimestamp(),
            PRIMARY KEY (stream, asset)
        )""",
}

# Columns added after a table's first release: warehouses created earlier gain them on connect.
MIGRATIONS = [
    "ALTER TABLE ingest_batches ADD COLUMN IF NOT EXISTS rows_duplicate BIGINT DEFAULT 0",
    "ALTER TABLE ingest_batches ADD COLUMN IF NOT EXISTS rows_out_of_order BIGINT DEFAULT 0",
    "ALTER TABLE ingest_batches ADD COLUMN IF NOT EXISTS rows_late BIGINT DEFAULT 0",
    "ALTER TABLE scores ADD COLUMN IF NOT EXISTS excluded BOOLEAN DEFAULT false",
    # anomalies written before severity was stored: NULL, read as score / threshold
    "ALTER TABLE anomalies ADD COLUMN IF NOT EXISTS severity DOUBLE",
]


def scalar(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None):
    """The single value of a query. Fetches the whole result: DuckDB 2 refuses further work
    on a connection while a result is only partly fetched."""
    return con.execute(sql, params or []).fetchall()[0][0]


def quote_identifier(name: str) -> str:
    """Validate a stream or column name and quote it for SQL."""
    if not isinstance(name, str) or not IDENTIFIER.match(name):
        raise WarehouseError(
            f"identifier {name!r} is not allowed; expected letters, digits, '_' or '-' (max 128, not starting with '-')"
        )
    return '"' + name + '"'


def view_name(stream: str) -> str:
    """The qualified name of a stream's readings view: lake."<stream>"."""
    return f"lake.{quote_identifier(stream)}"


@contextmanager
def connect(db_path: str | Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection with every aemon table present; closed on exit."""
    Path(db_path).parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(db_path))
    try:
        con.execute("CREATE SCHEMA IF NOT EXISTS lake")
        for ddl in [*TABLES.values(), *MIGRATIONS]:
            con.execute(ddl)
        yield con
    finally:
        con.close()


def refresh_view(con: duckdb.DuckDBPyConnection, stream: str, lake_root: Path) -> None:
    """(Re)create the stream's view over its Parquet parts."""
    if not lake.has_parts(lake_root, stream):
        return
    glob = lake.parts_glob(lake_root, stream)
    # DDL cannot take parameters; the path is ours (home folder) and is escaped as a literal.
    literal = "'" + glob.replace("'", "''") + "'"
    con.execute(
        f"CREATE OR REPLACE VIEW {view_name(stream)} AS "
        f"SELECT * EXCLUDE (date) FROM read_parquet({literal}, hive_partitioning = true, union_by_name = true)"
    )


def has_view(con: duckdb.DuckDBPyConnection, stream: str) -> bool:
    quote_identifier(stream)
    return bool(scalar(con, "SELECT count(*) FROM duckdb_views() WHERE schema_name = 'lake' AND view_name = ?", [stream]))


def batch_status(con: duckdb.DuckDBPyConnection, stream: str, file_hash: str) -> tuple[str | None, int]:
    """(status of the latest batch of this content for the stream or None, number of batches of it)."""
    rows = con.execute(
        "SELECT status, count(*) OVER () FROM ingest_batches WHERE stream = ? AND file_hash = ? "
        "ORDER BY ingested_at DESC LIMIT 1",
        [stream, file_hash],
    ).fetchall()
    return (rows[0][0], int(rows[0][1])) if rows else (None, 0)


BATCH_COLUMNS = ("batch_id", "stream", "file", "file_hash", "rows_in", "rows_accepted", "rows_quarantined",
                 "status", "error", "rows_duplicate", "rows_out_of_order", "rows_late")


def record_batch(con: duckdb.DuckDBPyConnection, batch: dict) -> None:
    """Write a batch's audit row. The invariant of ingestion is checked here, on every batch."""
    if batch["rows_in"] != batch["rows_accepted"] + batch["rows_quarantined"]:
        raise WarehouseError(
            f"batch {batch['batch_id']} of {batch['file']}: rows in {batch['rows_in']} != accepted "
            f"{batch['rows_accepted']} + quarantined {batch['rows_quarantined']}"
        )
    con.execute(
        f"INSERT INTO ingest_batches ({', '.join(BATCH_COLUMNS)}) VALUES ({', '.join('?' * len(BATCH_COLUMNS))}) "
        "ON CONFLICT DO NOTHING",
        [batch.get(k, 0) for k in BATCH_COLUMNS],
    ).fetchall()


def write_quarantine(con: duckdb.DuckDBPyConnection, stream: str, batch_id: str, file: str,
                     rows: pd.DataFrame) -> int:
    """Quarantined rows (columns row, column, reason, raw) of one batch; idempotent by row."""
    if rows.empty:
        return 0
    frame = rows[["row", "column", "reason", "raw"]].astype(
        {"row": "int64", "column": "string", "reason": "string", "raw": "string"})  # None stays NULL
    frame.insert(0, "file", file)
    frame.insert(0, "stream", stream)
    frame.insert(0, "batch_id", batch_id)
    con.register("new_quarantine", frame)
    try:
        return int(scalar(
            con, 'INSERT INTO quarantine (batch_id, stream, file, row_number, "column", reason, raw) '
                 'SELECT batch_id, stream, file, "row", "column", reason, raw FROM new_quarantine ON CONFLICT DO NOTHING'
        ))
    finally:
        con.unregister("new_quarantine")


def load_quarantine(con: duckdb.DuckDBPyConnection, stream: str, batch_id: str, file: str, path: Path) -> int:
    """Quarantined rows staged in a Parquet file (monitoring.lake.QuarantineStage) -> quarantine."""
    if not Path(path).exists():
        return 0
    return int(scalar(
        con, 'INSERT INTO quarantine (batch_id, stream, file, row_number, "column", reason, raw) '
             'SELECT ?, ?, ?, "row", "column", reason, raw FROM read_parquet(?) ON CONFLICT DO NOTHING',
        [batch_id, stream, file, str(path)],
    ))


def clear_quarantine_of(con: duckdb.DuckDBPyConnection, stream: str, file_hash: str) -> None:
    """Drop the quarantine of earlier, rejected attempts at this content: a retry supersedes them."""
    con.execute(
        "DELETE FROM quarantine WHERE stream = ? AND batch_id IN "
        "(SELECT batch_id FROM ingest_batches WHERE stream = ? AND file_hash = ? AND status = 'rejected')",
        [stream, stream, file_hash],
    ).fetchall()


def read_quarantine(con: duckdb.DuckDBPyConnection, stream: str) -> pd.DataFrame:
    return con.execute(
        'SELECT batch_id, file, row_number, "column", reason, raw FROM quarantine WHERE stream = ? '
        "ORDER BY file, row_number", [stream]).df()


def asset_time_ranges(con: duckdb.DuckDBPyConnection, stream: str) -> dict[str, tuple[pd.Timestamp, pd.Timestamp]]:
    """(first, last) reading time per asset of a stream's lake."""
    if not has_view(con, stream):
        return {}
    rows = con.execute(
        f"SELECT asset, min(timestamp), max(timestamp) FROM {view_name(stream)} GROUP BY asset").fetchall()
    return {a: (pd.Timestamp(lo), pd.Timestamp(hi)) for a, lo, hi in rows}


def existing_times(con: duckdb.DuckDBPyConnection, source: str | list[str], asset: str,
                   start: pd.Timestamp, end: pd.Timestamp) -> pd.Series:
    """Timestamps of one asset between start and end (inclusive) in a stream's view (a stream
    name) or in a list of Parquet files (parts staged by the ingest in progress)."""
    if isinstance(source, str):
        relation, params = view_name(source), []
    else:
        relation, params = "read_parquet(?)", [[str(p) for p in source]]
    rows = con.execute(
        f"SELECT timestamp FROM {relation} WHERE asset = ? AND timestamp BETWEEN ? AND ?",
        [*params, asset, pd.Timestamp(start).to_pydatetime(), pd.Timestamp(end).to_pydatetime()],
    ).fetchall()
    return pd.Series([r[0] for r in rows], dtype="datetime64[us]")


def lake_columns(con: duckdb.DuckDBPyConnection, stream: str) -> list[str]:
    if not has_view(con, stream):
        return []
    return [r[0] for r in con.execute(f"DESCRIBE {view_name(stream)}").fetchall()]


def add_rescore_range(con: duckdb.DuckDBPyConnection, stream: str, asset: str, start, end, batch_id: str) -> None:
    con.execute(
        'INSERT INTO rescore_ranges (stream, asset, start, "end", batch_id) VALUES (?, ?, ?, ?, ?) '
        "ON CONFLICT DO NOTHING",
        [stream, asset, pd.Timestamp(start).to_pydatetime(), pd.Timestamp(end).to_pydatetime(), batch_id],
    ).fetchall()


def get_rescore_ranges(con: duckdb.DuckDBPyConnection, stream: str) -> pd.DataFrame:
    return con.execute(
        'SELECT asset, start, "end", batch_id FROM rescore_ranges WHERE stream = ? ORDER BY asset, start', [stream]
    ).df()


def clear_rescore_ranges(con: duckdb.DuckDBPyConnection, stream: str, asset: str, batch_ids: list[str]) -> None:
    if batch_ids:
        con.execute("DELETE FROM rescore_ranges WHERE stream = ? AND asset = ? AND list_contains(?, batch_id)",
                    [stream, asset, batch_ids]).fetchall()


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """One transaction around the block: committed when it ends normally, rolled back on any
    error (the error itself goes on unchanged), so a failed write leaves nothing half done."""
    con.execute("BEGIN TRANSACTION")
    committed = False
    try:
        yield
        con.execute("COMMIT")
        committed = True
    finally:
        if not committed:
            con.execute("ROLLBACK")


def write_quality(con: duckdb.DuckDBPyConnection, stream: str, report: pd.DataFrame) -> None:
    """Replace a stream's data-quality rows with a fresh report (features.quality)."""
    frame = report.copy()
    frame.insert(0, "stream", stream)
    columns = ", ".join(quote_identifier(c) for c in frame.columns)
    with transaction(con):
        con.execute("DELETE FROM data_quality WHERE stream = ?", [stream]).fetchall()
        con.register("new_quality", frame)
        con.execute(f"INSERT INTO data_quality ({columns}) SELECT {columns} FROM new_quality").fetchall()
        con.unregister("new_quality")


def read_quality(con: duckdb.DuckDBPyConnection, stream: str) -> pd.DataFrame:
    return con.execute("SELECT * EXCLUDE (stream) FROM data_quality WHERE stream = ? ORDER BY sensor", [stream]).df()


def quarantine_counts(con: duckdb.DuckDBPyConnection, stream: str) -> dict[str, int]:
    """Quarantined rows per column (the column a row's first problem was found in)."""
    rows = con.execute('SELECT "column", count(*) FROM quarantine WHERE stream = ? GROUP BY 1', [stream]).fetchall()
    return {c or "": int(n) for c, n in rows}


def duplicate_count(con: duckdb.DuckDBPyConnection, stream: str) -> int:
    return int(scalar(con, "SELECT coalesce(sum(rows_duplicate), 0) FROM ingest_batches WHERE stream = ?", [stream]))


def list_assets(con: duckdb.DuckDBPyConnection, stream: str) -> list[str]:
    if not has_view(con, stream):
        return []
    rows = con.execute(f"SELECT DISTINCT asset FROM {view_name(stream)} ORDER BY asset").fetchall()
    return [r[0] for r in rows]


def _reading_filter(asset: str | None = None, after=None, start=None, end=None) -> tuple[str, list]:
    """A WHERE clause with parameters over a lake view: one asset, `after` exclusive,
    `start` / `end` inclusive (each optional)."""
    conditions = [("asset = ?", asset), ("timestamp > ?", after), ("timestamp >= ?", start), ("timestamp <= ?", end)]
    clauses = [sql for sql, value in conditions if value is not None]
    params = [value if sql.startswith("asset") else pd.Timestamp(value).to_pydatetime()
              for sql, value in conditions if value is not None]
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def read_readings(
    con: duckdb.DuckDBPyConnection,
    stream: str,
    *,
    asset: str | None = None,
    after: pd.Timestamp | None = None,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Readings of a stream ordered by asset and time. `after` is exclusive, `start`/`end` inclusive."""
    if not has_view(con, stream):
        raise WarehouseError(f"stream '{stream}' has no readings yet; run `aemon ingest {stream}` first")
    where, params = _reading_filter(asset=asset, after=after, start=start, end=end)
    sql = f"SELECT * FROM {view_name(stream)}{where} ORDER BY asset, timestamp"
    return con.execute(sql, params).df()


def get_watermarks(con: duckdb.DuckDBPyConnection, stream: str) -> dict[str, pd.Timestamp]:
    rows = con.execute("SELECT asset, last_window_end FROM watermarks WHERE stream = ?", [stream]).fetchall()
    return {asset: pd.Timestamp(end) for asset, end in rows}


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
    with transaction(con):
        con.register("new_windows", frame)
        for table in ("scores", "anomalies"):
            scalar(con,
                f"DELETE FROM {table} t USING new_windows n WHERE n.rescore AND t.stream = n.stream AND "
                "t.asset = n.asset AND t.window_start = n.window_start AND t.model_name = n.model_name AND "
                "t.model_version = n.model_version"
            )
        n_scores = scalar(con,
            "INSERT INTO scores (stream, asset, window_start, window_end, score, threshold, is_anomaly, "
            "model_name, model_version, excluded) SELECT stream, asset, window_start, window_end, score, threshold, "
            "is_anomaly, model_name, model_version, excluded FROM new_windows ON CONFLICT DO NOTHING"
        )
        n_anomalies = scalar(con,
            "INSERT INTO anomalies (stream, asset, window_start, window_end, score, threshold, model_name, "
            "model_version, top_sensors, contributions, severity) SELECT stream, asset, window_start, window_end, "
            "score, threshold, model_name, model_version, top_sensors, contributions::JSON, severity FROM new_windows "
            "WHERE is_anomaly AND NOT excluded ON CONFLICT DO NOTHING"
        )
        scalar(con,
            "INSERT INTO watermarks (stream, asset, last_window_end, model_version) "
            "SELECT stream, asset, max(window_end), any_value(model_version) FROM new_windows GROUP BY stream, asset "
            "ON CONFLICT (stream, asset) DO UPDATE SET last_window_end = excluded.last_window_end, "
            "model_version = excluded.model_version, updated_at = current_localtimestamp() "
            "WHERE excluded.last_window_end > watermarks.last_window_end"
        )
        con.unregister("new_windows")
    return {"scores": int(n_scores), "anomalies": int(n_anomalies)}


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    return scalar(con, f"SELECT count(*) FROM {quote_identifier(table)}")


def table_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    return {name: _count(con, name) for name in TABLES}


def read_anomalies(con: duckdb.DuckDBPyConnection, stream: str) -> pd.DataFrame:
    return con.execute(
        "SELECT * FROM anomalies WHERE stream = ? ORDER BY asset, window_start", [stream]
    ).df()


def read_scores(con: duckdb.DuckDBPyConnection, stream: str, model_name: str, model_version: int,
                asset: str) -> pd.DataFrame:
    """The windows one model version scored on one asset, in time order."""
    return con.execute(
        "SELECT window_start, window_end, score, threshold, is_anomaly, excluded FROM scores WHERE stream = ? "
        "AND model_name = ? AND model_version = ? AND asset = ? ORDER BY window_end",
        [stream, model_name, int(model_version), asset]).df()


# A window scored several times (a retrain, a full rescore): its most recent scoring decides.
LATEST_SCORING = ("QUALIFY row_number() OVER (PARTITION BY asset, window_start "
                  "ORDER BY scored_at DESC, model_version DESC) = 1")


def latest_flagged_windows(con: duckdb.DuckDBPyConnection, stream: str) -> pd.DataFrame:
    """Flagged windows as the latest scoring of each window says: when a window was scored by
    several model versions (a retrain, a full rescore), its most recent score decides, so a
    window the new champion clears no longer counts, whatever an older version said."""
    return con.execute(
        "WITH latest AS (SELECT stream, asset, window_start, model_name, model_version, is_anomaly, excluded "
        f"FROM scores WHERE stream = ? {LATEST_SCORING}) "
        "SELECT a.* FROM anomalies a JOIN latest l USING (stream, asset, window_start, model_name, model_version) "
        "WHERE l.is_anomaly AND NOT l.excluded ORDER BY a.asset, a.window_start",
        [stream],
    ).df()


def read_labeled_readings(con: duckdb.DuckDBPyConnection, stream: str, label_columns: list[str],
                          start: pd.Timestamp | None = None, end: pd.Timestamp | None = None) -> pd.DataFrame:
    """asset, timestamp and `labeled` (any label column > 0) of a stream's readings between
    start and end (inclusive), ordered by asset and time."""
    if not label_columns:
        raise WarehouseError(f"stream '{stream}': no label columns given")
    missing = [c for c in label_columns if c not in lake_columns(con, stream)]
    if missing:
        raise WarehouseError(f"stream '{stream}': label columns {missing} are not in the lake; it has "
                             f"{lake_columns(con, stream)}")
    labeled = " OR ".join(f"coalesce(TRY_CAST({quote_identifier(c)} AS DOUBLE), 0) > 0" for c in label_columns)
    where, params = _reading_filter(start=start, end=end)
    return con.execute(f"SELECT asset, timestamp, ({labeled}) AS labeled FROM {view_name(stream)}{where} "
                       "ORDER BY asset, timestamp", params).df()


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
    listed = ", ".join(quote_identifier(c) for c in columns)
    values = [None if isinstance(v, float) and math.isnan(v) else v for v in row.values()]  # NaN -> NULL: undefined
    return int(scalar(con, f"INSERT INTO evaluations ({listed}) VALUES ({', '.join('?' * len(columns))}) "
                           "ON CONFLICT DO NOTHING", values))


def read_evaluations(con: duckdb.DuckDBPyConnection, stream: str) -> pd.DataFrame:
    return con.execute("SELECT * FROM evaluations WHERE stream = ? ORDER BY evaluated_at", [stream]).df()


def replace_incidents(con: duckdb.DuckDBPyConnection, stream: str, incidents: pd.DataFrame) -> int:
    """Make `incidents` (columns of the incidents table but stream and updated_at) the
    stream's incidents, in one transaction: rows that changed or vanished are replaced,
    unchanged rows stay as they are (with their updated_at). Returns the rows written."""
    columns = ["asset", "start", "end", "n_windows", "peak_score", "peak_severity", "top_sensors",
               "model_versions", "status"]
    missing = set(columns) - set(incidents.columns)
    if missing:
        raise WarehouseError(f"incidents lack columns {sorted(missing)}")
    with transaction(con):
        con.register("new_incidents", incidents[columns])
        same = " AND ".join(f"n.{quote_identifier(c)} IS NOT DISTINCT FROM i.{quote_identifier(c)}" for c in columns)
        scalar(con, f"DELETE FROM incidents i WHERE i.stream = ? AND NOT EXISTS "
                    f"(SELECT 1 FROM new_incidents n WHERE {same})", [stream])
        listed = ", ".join(quote_identifier(c) for c in columns)
        n = scalar(con, f"INSERT INTO incidents (stream, {listed}) SELECT ?, {listed} FROM new_incidents "
                        "ON CONFLICT DO NOTHING", [stream])
        con.unregister("new_incidents")
    return int(n)


def read_incidents(con: duckdb.DuckDBPyConnection, stream: str) -> pd.DataFrame:
    return con.execute("SELECT * FROM incidents WHERE stream = ? ORDER BY asset, start", [stream]).df()


def numeric_columns(con: duckdb.DuckDBPyConnection, stream: str) -> list[str]:
    """The lake's numeric columns, in lake order (for streams that take every numeric column)."""
    if not has_view(con, stream):
        return []
    numeric = ("DOUBLE", "FLOAT", "REAL", "DECIMAL", "INTEGER", "BIGINT", "SMALLINT", "TINYINT", "HUGEINT")
    return [name for name, kind, *_ in con.execute(f"DESCRIBE {view_name(stream)}").fetchall()
            if str(kind).upper().startswith(numeric)]


def count_readings(con: duckdb.DuckDBPyConnection, stream: str) -> int:
    if not has_view(con, stream):
        return 0
    return scalar(con, f"SELECT count(*) FROM {view_name(stream)}")


def query(db_path: str | Path, sql: str, params: list | None = None) -> pd.DataFrame:
    """Run one read-only query against the warehouse file (users' SQL from the CLI)."""
    if not Path(db_path).exists():
        raise WarehouseError(f"no warehouse at {db_path}; run `aemon ingest STREAM` or `aemon demo` first")
    try:
        con = duckdb.connect(str(db_path), read_only=True)
    except duckdb.Error as exc:
        raise WarehouseError(f"cannot open {db_path} read-only (is a flow writing to it?): {exc}") from exc
    try:
        return con.execute(sql, params or []).df()
    except duckdb.Error as exc:
        raise WarehouseError(f"query failed: {exc}") from exc
    finally:
        con.close()
