"""Moving a warehouse of an earlier release (one DuckDB file, `warehouse.duckdb`, with views
over a Parquet lake under `<home>/lake/<stream>/date=*/`) into the DuckLake catalog: every
table's rows and every stream's readings are copied in one transaction, then the old file
is renamed `warehouse.duckdb.upgraded` (kept, not deleted; the old lake folder too).

Readings are read from the old lake's Parquet parts, which any DuckDB reads. The tables
are read from the old file, or, when a newer DuckDB wrote it (this release's DuckDB cannot
open a DuckDB 2 file), from that file's `EXPORT DATABASE ... (FORMAT parquet)` folder.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import duckdb

from monitoring.errors import WarehouseError
from monitoring.store.connection import (
    Warehouse,
    connect,
    literal,
    quote_identifier,
    scalar,
    transaction,
    view_name,
)
from monitoring.store.schema import DERIVED_COLUMNS, TABLES


def upgrade_legacy(warehouse: Warehouse, export_dir: Path | None = None) -> dict[str, int]:
    """Copy the legacy warehouse's tables (from the file, or from `export_dir`) and its lake's
    readings into the (new or empty) catalog; returns the rows copied per table (readings
    as `lake.<stream>`)."""
    legacy = warehouse.legacy
    if legacy is None or not legacy.exists():
        raise WarehouseError(f"no warehouse of an earlier release to upgrade (looked for {legacy})")
    if export_dir is not None and not Path(export_dir).is_dir():
        raise WarehouseError(f"--from-export {export_dir}: no such folder; expected the folder written by "
                             f"EXPORT DATABASE '{export_dir}' (FORMAT parquet)")
    # the catalog may not exist yet: connect creates it; the legacy check is skipped for it
    fresh = replace(warehouse, legacy=None)
    copied: dict[str, int] = {}
    with connect(fresh, write=True) as con:
        if export_dir is None:
            try:
                con.execute(f"ATTACH {literal(str(legacy))} AS legacy (READ_ONLY)")
            except duckdb.IOException as exc:
                raise WarehouseError(_newer_file(legacy, exc)) from exc
        try:
            with transaction(con):
                for table in TABLES:
                    copied[table] = _copy_table(con, table, export_dir)
                for stream, parts in _lake_streams(legacy.parent / "lake"):
                    _refuse_existing(con, stream)
                    con.execute(f"CREATE TABLE {view_name(stream)} AS SELECT * EXCLUDE (date) FROM "
                                f"read_parquet({literal(parts)}, hive_partitioning = true, union_by_name = true) "
                                "ORDER BY asset, timestamp")
                    copied[f"lake.{stream}"] = int(scalar(con, f"SELECT count(*) FROM {view_name(stream)}"))
        finally:
            if export_dir is None:
                con.execute("DETACH legacy")
    legacy.rename(Path(str(legacy) + ".upgraded"))
    return copied


def _newer_file(legacy: Path, exc: Exception) -> str:
    export = legacy.parent / "legacy-export"
    return (f"{legacy} cannot be read by this release's DuckDB {duckdb.__version__} ({str(exc).splitlines()[0]}); "
            f"export it with the DuckDB release that wrote it, e.g. `duckdb {legacy} -c \"EXPORT DATABASE "
            f"'{export}' (FORMAT parquet)\"`, then run `aemon warehouse upgrade --from-export {export}`")


def _lake_streams(lake_root: Path) -> list[tuple[str, str]]:
    """(stream, glob of its Parquet parts) of the old lake folder."""
    if not lake_root.is_dir():
        return []
    return [(folder.name, str(folder.resolve() / "date=*" / "part-*.parquet"))
            for folder in sorted(lake_root.iterdir())
            if folder.is_dir() and any(folder.glob("date=*/part-*.parquet"))]


def _refuse_existing(con, stream: str) -> None:
    if scalar(con, "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
                   "AND schema_name = 'lake' AND table_name = ?", [stream]):
        raise WarehouseError(f"the catalog already has readings of stream '{stream}'; upgrade into a new catalog")


def _copy_table(con, table: str, export_dir: Path | None) -> int:
    """The legacy table's rows into the catalog's, by column name (columns the old release
    did not have take their defaults); skipped when the legacy warehouse lacks the table."""
    if export_dir is None:
        source = f"legacy.main.{quote_identifier(table)}"
        old = {r[0] for r in con.execute("SELECT column_name FROM duckdb_columns() WHERE database_name = 'legacy' "
                                         "AND schema_name = 'main' AND table_name = ?", [table]).fetchall()}
    else:
        path = Path(export_dir) / f"{table}.parquet"
        if not path.exists():
            return 0
        source = f"read_parquet({literal(str(path))})"
        old = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
    if not old:
        return 0
    new = [r[0] for r in con.execute("SELECT column_name FROM duckdb_columns() WHERE database_name = "
                                     "current_database() AND schema_name = 'main' AND table_name = ? "
                                     "ORDER BY column_index", [table]).fetchall()]
    if scalar(con, f"SELECT count(*) FROM {quote_identifier(table)}"):
        raise WarehouseError(f"the catalog's table {table} already has rows; upgrade into a new catalog")
    derived = {c: e for c, e in DERIVED_COLUMNS.get(table, {}).items() if c not in old}
    kept = [c for c in new if c in old]
    listed = ", ".join(quote_identifier(c) for c in [*kept, *derived])
    values = ", ".join([*(quote_identifier(c) for c in kept), *derived.values()])
    con.execute(f"INSERT INTO {quote_identifier(table)} ({listed}) SELECT {values} FROM {source}")
    return int(scalar(con, f"SELECT count(*) FROM {quote_identifier(table)}"))
