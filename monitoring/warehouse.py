"""The DuckDB warehouse: one view per stream over the Parquet lake, and the tables
aemon writes (ingest audit, window scores, anomalies, scoring watermarks).

Every write is idempotent: tables carry primary keys and inserts skip rows that are
already there, so re-running a flow never duplicates a row. Connections are short-lived
(one per call) because DuckDB allows one writing process per file.
"""
from __future__ import annotations

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
            ingested_at TIMESTAMP NOT NULL DEFAULT current_localtimestamp()
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
        for ddl in TABLES.values():
            con.execute(ddl)
        # anomalies created before severity was stored get the column (NULL: score / threshold)
        con.execute("ALTER TABLE anomalies ADD COLUMN IF NOT EXISTS severity DOUBLE")
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


def record_batch(con: duckdb.DuckDBPyConnection, batch: dict) -> None:
    con.execute(
        "INSERT INTO ingest_batches (batch_id, stream, file, file_hash, rows_in, rows_accepted, "
        "rows_quarantined, status, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        [batch[k] for k in ("batch_id", "stream", "file", "file_hash", "rows_in", "rows_accepted",
                            "rows_quarantined", "status", "error")],
    ).fetchall()


def list_assets(con: duckdb.DuckDBPyConnection, stream: str) -> list[str]:
    if not has_view(con, stream):
        return []
    rows = con.execute(f"SELECT DISTINCT asset FROM {view_name(stream)} ORDER BY asset").fetchall()
    return [r[0] for r in rows]


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
    clauses, params = [], []
    if asset is not None:
        clauses.append("asset = ?")
        params.append(asset)
    if after is not None:
        clauses.append("timestamp > ?")
        params.append(pd.Timestamp(after).to_pydatetime())
    if start is not None:
        clauses.append("timestamp >= ?")
        params.append(pd.Timestamp(start).to_pydatetime())
    if end is not None:
        clauses.append("timestamp <= ?")
        params.append(pd.Timestamp(end).to_pydatetime())
    where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
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
    frame["stream"] = stream
    frame["model_name"] = model_name
    frame["model_version"] = int(model_version)
    con.execute("BEGIN TRANSACTION")
    committed = False
    try:
        con.register("new_windows", frame)
        n_scores = scalar(con, 
            "INSERT INTO scores (stream, asset, window_start, window_end, score, threshold, is_anomaly, "
            "model_name, model_version) SELECT stream, asset, window_start, window_end, score, threshold, "
            "is_anomaly, model_name, model_version FROM new_windows ON CONFLICT DO NOTHING"
        )
        n_anomalies = scalar(con, 
            "INSERT INTO anomalies (stream, asset, window_start, window_end, score, threshold, model_name, "
            "model_version, top_sensors, contributions, severity) SELECT stream, asset, window_start, window_end, "
            "score, threshold, model_name, model_version, top_sensors, contributions::JSON, severity FROM new_windows "
            "WHERE is_anomaly ON CONFLICT DO NOTHING"
        )
        scalar(con, 
            "INSERT INTO watermarks (stream, asset, last_window_end, model_version) "
            "SELECT stream, asset, max(window_end), any_value(model_version) FROM new_windows GROUP BY stream, asset "
            "ON CONFLICT (stream, asset) DO UPDATE SET last_window_end = excluded.last_window_end, "
            "model_version = excluded.model_version, updated_at = current_localtimestamp() "
            "WHERE excluded.last_window_end > watermarks.last_window_end"
        )
        con.unregister("new_windows")
        con.execute("COMMIT")
        committed = True
    finally:
        if not committed:  # any error: undo the partial write, the error itself goes on
            con.execute("ROLLBACK")
    return {"scores": int(n_scores), "anomalies": int(n_anomalies)}


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    return scalar(con, f"SELECT count(*) FROM {quote_identifier(table)}")


def table_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    return {name: _count(con, name) for name in TABLES}


def read_anomalies(con: duckdb.DuckDBPyConnection, stream: str) -> pd.DataFrame:
    return con.execute(
        "SELECT * FROM anomalies WHERE stream = ? ORDER BY asset, window_start", [stream]
    ).df()


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
