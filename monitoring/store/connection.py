"""Connections to the DuckDB warehouse, transactions, and the validation of the names
(streams, columns) that SQL cannot take as parameters.

One connection per flow step: DuckDB allows one writing process per file, so a step opens
the warehouse, does its reads and writes, and closes it. The tables are created or
migrated when a file is first opened at a new schema version (store.schema), not on
every connect.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from monitoring.errors import WarehouseError
from monitoring.store.schema import TABLES, ensure_schema

IDENTIFIER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-]{0,127}$")

def scalar(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> Any:
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
        ensure_schema(con)
        yield con
    finally:
        con.close()


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

def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    return scalar(con, f"SELECT count(*) FROM {quote_identifier(table)}")

def table_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    return {name: _count(con, name) for name in TABLES}

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
