"""Readings: each stream's table `lake."<stream>"` (its Parquet parts, registered by the
ingest) and the queries that read it."""
from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from monitoring.errors import TrainingDataError, WarehouseError
from monitoring.store.connection import Warehouse, connect, quote_identifier, scalar, view_name


def register_parts(con: duckdb.DuckDBPyConnection, stream: str, parts: list[Path | str]) -> None:
    """Add staged Parquet parts to the stream's readings table (created from the first part's
    columns on the stream's first ingest). Run inside the ingest's commit transaction."""
    if not parts:
        return
    table = view_name(stream)
    if not has_view(con, stream):
        con.execute(f"CREATE TABLE IF NOT EXISTS {table} AS SELECT * FROM read_parquet(?) LIMIT 0",
                    [str(parts[0])]).fetchall()
    for part in parts:
        con.execute("CALL ducklake_add_data_files(current_database(), ?, ?, schema => 'lake')",
                    [stream, str(part)]).fetchall()


def registered_parts(con: duckdb.DuckDBPyConnection, stream: str) -> set[str]:
    """Paths of the data files of the stream's readings table (as DuckLake records them)."""
    if not has_view(con, stream):
        return set()
    rows = con.execute("SELECT data_file FROM ducklake_list_files(current_database(), ?, schema => 'lake')",
                       [stream]).fetchall()
    return {str(r[0]) for r in rows}


def has_view(con: duckdb.DuckDBPyConnection, stream: str) -> bool:
    """Whether the stream has a readings table (its first file has been ingested)."""
    quote_identifier(stream)
    return bool(scalar(con, "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
                            "AND schema_name = 'lake' AND table_name = ?", [stream]))

def asset_time_ranges(con: duckdb.DuckDBPyConnection, stream: str) -> dict[str, tuple[pd.Timestamp, pd.Timestamp]]:
    """(first, last) reading time per asset of a stream's lake."""
    if not has_view(con, stream):
        return {}
    rows = con.execute(
        f"SELECT asset, min(timestamp), max(timestamp) FROM {view_name(stream)} GROUP BY asset").fetchall()
    return {a: (pd.Timestamp(lo), pd.Timestamp(hi)) for a, lo, hi in rows}

def existing_times(con: duckdb.DuckDBPyConnection, source: str | list[Path | str], asset: str,
                   start: pd.Timestamp, end: pd.Timestamp) -> pd.Series:
    """Timestamps of one asset between start and end (inclusive) in a stream's readings table
    (`source` a stream name) or in Parquet parts (a list: those staged by the ingest in
    progress)."""
    if isinstance(source, str):
        relation, params = view_name(source), []
    else:
        relation, params = "read_parquet(?, union_by_name = true)", [[str(p) for p in source]]
    rows = con.execute(
        f"SELECT timestamp FROM {relation} WHERE asset = ? AND timestamp BETWEEN ? AND ?",
        [*params, asset, pd.Timestamp(start).to_pydatetime(), pd.Timestamp(end).to_pydatetime()],
    ).fetchall()
    return pd.Series([r[0] for r in rows], dtype="datetime64[us]")

def lake_columns(con: duckdb.DuckDBPyConnection, stream: str) -> list[str]:
    if not has_view(con, stream):
        return []
    return [r[0] for r in con.execute(f"DESCRIBE {view_name(stream)}").fetchall()]

def numeric_columns(con: duckdb.DuckDBPyConnection, stream: str) -> list[str]:
    """The lake's numeric columns, in lake order (for streams that take every numeric column)."""
    if not has_view(con, stream):
        return []
    numeric = ("DOUBLE", "FLOAT", "REAL", "DECIMAL", "INTEGER", "BIGINT", "SMALLINT", "TINYINT", "HUGEINT")
    return [name for name, kind, *_ in con.execute(f"DESCRIBE {view_name(stream)}").fetchall()
            if str(kind).upper().startswith(numeric)]

def list_assets(con: duckdb.DuckDBPyConnection, stream: str) -> list[str]:
    if not has_view(con, stream):
        return []
    rows = con.execute(f"SELECT DISTINCT asset FROM {view_name(stream)} ORDER BY asset").fetchall()
    return [r[0] for r in rows]

def count_readings(con: duckdb.DuckDBPyConnection, stream: str) -> int:
    if not has_view(con, stream):
        return 0
    return scalar(con, f"SELECT count(*) FROM {view_name(stream)}")

def _reading_filter(asset: str | None = None, after=None, start=None, end=None,
                    assets: list[str] | None = None) -> tuple[str, list]:
    """A WHERE clause with parameters over a lake view: one asset, `after` exclusive,
    `start` / `end` inclusive, some assets (each optional)."""
    conditions = [("asset = ?", asset), ("timestamp > ?", after), ("timestamp >= ?", start), ("timestamp <= ?", end)]
    clauses = [sql for sql, value in conditions if value is not None]
    params = [value if sql.startswith("asset") else pd.Timestamp(value).to_pydatetime()
              for sql, value in conditions if value is not None]
    if assets is not None:  # a list of literals the planner can push into the scan, not list_contains
        clauses.append(f"asset IN ({', '.join('?' * len(assets))})" if assets else "false")
        params += [str(a) for a in assets]
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

def read_readings(
    con: duckdb.DuckDBPyConnection,
    stream: str,
    *,
    asset: str | None = None,
    after: pd.Timestamp | None = None,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
    ordered: bool = True,
    assets: list[str] | None = None,
) -> pd.DataFrame:
    """Readings of a stream ordered by asset and time (in no particular order unless
    `ordered`: sorting costs more than reading). `after` is exclusive, `start`/`end` inclusive;
    `asset` / `assets`: only that asset's / those assets' readings."""
    if not has_view(con, stream):
        raise WarehouseError(f"stream '{stream}' has no readings yet; run `aemon ingest {stream}` first")
    where, params = _reading_filter(asset=asset, after=after, start=start, end=end, assets=assets)
    if ordered:
        return con.execute(f"SELECT * FROM {view_name(stream)}{where} ORDER BY asset, timestamp", params).df()
    # through Arrow: about twice as fast as .df() for wide reads (strings are not made one by one)
    return con.execute(f"SELECT * FROM {view_name(stream)}{where}", params).to_arrow_table().to_pandas()

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


def load_readings(warehouse: Warehouse, stream: str, *, start: pd.Timestamp | None = None,
                  end: pd.Timestamp | None = None, assets: list[str] | None = None) -> pd.DataFrame:
    """Readings of a stream (of `assets` only, when given) between start and end (inclusive),
    ordered by asset and time."""
    with connect(warehouse) as con:
        return read_readings(con, stream, start=start, end=end, assets=assets)


def join_parts(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Readings read in parts of disjoint, ascending assets (load_readings of each) as the
    one frame a single read gives: ordered by asset and time, a fresh index."""
    frames = [p for p in parts if len(p)] or parts[:1]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["timestamp", "asset"])


def stream_assets(warehouse: Warehouse, stream: str) -> list[str]:
    """The assets of a stream's readings, sorted (none before its first ingest)."""
    with connect(warehouse) as con:
        return list_assets(con, stream)


def sensor_columns(warehouse: Warehouse, stream: str, listed: list[str], label_columns: list[str]) -> list[str]:
    """The sensors a stream trains on: those listed in its configuration, or, for a stream
    that takes every numeric column, the lake's numeric columns but labels."""
    if listed:
        return list(listed)
    with connect(warehouse) as con:
        return [c for c in numeric_columns(con, stream) if c not in set(label_columns)]


def read_recent_readings(warehouse: Warehouse, stream: str, days: float, *, start: pd.Timestamp | None = None,
                         end: pd.Timestamp | None = None) -> pd.DataFrame:
    """Readings of [start, end]; by default the last `days` up to the stream's latest reading."""
    with connect(warehouse) as con:
        if not has_view(con, stream):
            raise TrainingDataError(f"stream '{stream}' has no readings yet; run `aemon ingest {stream}` first")
        if end is None:
            end = scalar(con, f"SELECT max(timestamp) FROM {view_name(stream)}")
            if end is None:
                raise TrainingDataError(f"stream '{stream}' has no readings to recalibrate on")
        end = pd.Timestamp(end)
        start = pd.Timestamp(start) if start is not None else end - pd.Timedelta(days=days)
        return read_readings(con, stream, start=start, end=end)
