"""The single-file warehouse of earlier releases (`warehouse.duckdb`): the tables with
primary keys in one DuckDB file, which admits one writing process and, while it writes, no
other process at all. Kept to make such files in tests of `aemon warehouse upgrade`, and
as the baseline of bench/warehouse_latency.py; aemon itself writes DuckLake only."""
from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from monitoring.store.connection import quote_identifier
from monitoring.store.schema import KEYS, TABLES


def legacy_ddl(table: str) -> str:
    """A table's DDL as the single-file warehouse had it: with its primary key."""
    ddl = TABLES[table].rstrip()
    keys = ", ".join(quote_identifier(k) for k in KEYS[table])
    return ddl[: ddl.rindex(")")] + f",\n            PRIMARY KEY ({keys})\n        )"


def create_legacy(path: str | Path) -> None:
    """An empty single-file warehouse (every table, the `lake` schema)."""
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS lake")
        for table in TABLES:
            con.execute(legacy_ddl(table))
        con.execute("CREATE TABLE IF NOT EXISTS aemon_schema (version INTEGER NOT NULL, "
                    "applied_at TIMESTAMP NOT NULL DEFAULT current_localtimestamp())")
        con.execute("INSERT INTO aemon_schema (version) VALUES (1)")


def add_legacy_rows(path: str | Path, table: str, frame: pd.DataFrame) -> None:
    """Rows into a table of a single-file warehouse (columns by name)."""
    with duckdb.connect(str(path)) as con:
        con.register("legacy_rows", frame)
        listed = ", ".join(quote_identifier(c) for c in frame.columns)
        con.execute(f"INSERT INTO {quote_identifier(table)} ({listed}) SELECT {listed} FROM legacy_rows")


def add_legacy_view(path: str | Path, stream: str, parts: str) -> None:
    """A stream's readings view over Parquet parts, as the single-file warehouse had them."""
    with duckdb.connect(str(path)) as con:
        literal = "'" + parts.replace("'", "''") + "'"
        con.execute(f"CREATE OR REPLACE VIEW lake.{quote_identifier(stream)} AS SELECT * EXCLUDE (date) "
                    f"FROM read_parquet({literal}, hive_partitioning = true, union_by_name = true)")


def legacy_write_run(path: str | Path, windows: pd.DataFrame) -> None:
    """One scoring run's write as the single-file warehouse did it: open the file, insert
    scores and anomalies (skipping keys already there), advance the watermarks, in one
    transaction; close. `windows`: the columns of `scores` plus top_sensors, contributions
    and severity."""
    with duckdb.connect(str(path)) as con:
        con.register("new_windows", windows)
        con.execute("BEGIN TRANSACTION")
        con.execute("INSERT INTO scores (stream, asset, window_start, window_end, score, threshold, is_anomaly, "
                    "model_name, model_version, excluded) SELECT stream, asset, window_start, window_end, score, "
                    "threshold, is_anomaly, model_name, model_version, excluded FROM new_windows "
                    "ON CONFLICT DO NOTHING")
        con.execute("INSERT INTO anomalies (stream, asset, window_start, window_end, score, threshold, model_name, "
                    "model_version, top_sensors, contributions, severity) SELECT stream, asset, window_start, "
                    "window_end, score, threshold, model_name, model_version, top_sensors, contributions::JSON, "
                    "severity FROM new_windows WHERE is_anomaly ON CONFLICT DO NOTHING")
        con.execute("INSERT INTO watermarks (stream, asset, last_window_end, model_version) "
                    "SELECT stream, asset, max(window_end), any_value(model_version) FROM new_windows "
                    "GROUP BY stream, asset ON CONFLICT (stream, asset) DO UPDATE SET "
                    "last_window_end = excluded.last_window_end, model_version = excluded.model_version")
        con.execute("COMMIT")


def legacy_query(path: str | Path, sql: str) -> list[tuple]:
    """A reader's query on a single-file warehouse (read-only, as `aemon sql` opened it)."""
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(sql).fetchall()
