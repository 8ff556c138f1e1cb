"""Moving a warehouse of an earlier release (one DuckDB file, `warehouse.duckdb`, with
views over a Parquet lake under `<home>/lake`) into the DuckLake catalog: every table's
rows and every stream's readings are copied in one transaction, then the old file is
renamed `warehouse.duckdb.upgraded` (kept, not deleted; the old lake folder too)."""
from __future__ import annotations

from pathlib import Path

from monitoring.errors import WarehouseError
from monitoring.store.connection import Warehouse, connect, literal, quote_identifier, scalar, transaction, view_name
from monitoring.store.schema import TABLES


def upgrade_legacy(warehouse: Warehouse) -> dict[str, int]:
    """Copy the legacy file's tables and readings into the (new or empty) catalog; returns
    the rows copied per table (readings as `lake.<stream>`)."""
    legacy = warehouse.legacy
    if legacy is None or not legacy.exists():
        raise WarehouseError(f"no warehouse of an earlier release to upgrade (looked for {legacy})")
    # the catalog may not exist yet: connect creates it, the legacy check is skipped for it
    fresh = Warehouse(warehouse.catalog, warehouse.data_path, None, warehouse.retries)
    copied: dict[str, int] = {}
    with connect(fresh, write=True) as con:
        con.execute(f"ATTACH {literal(str(legacy))} AS legacy (READ_ONLY)")
        try:
            with transaction(con):
                for table in TABLES:
                    copied[table] = _copy_table(con, table)
                streams = [r[0] for r in con.execute(
                    "SELECT view_name FROM duckdb_views() WHERE database_name = 'legacy' AND schema_name = 'lake'"
                ).fetchall()]
                for stream in streams:
                    if scalar(con, "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
                                   "AND schema_name = 'lake' AND table_name = ?", [stream]):
                        raise WarehouseError(f"the catalog already has readings of stream '{stream}'; "
                                             "upgrade into a new catalog")
                    old = f"legacy.lake.{quote_identifier(stream)}"
                    con.execute(f"CREATE TABLE {view_name(stream)} AS SELECT * FROM {old} ORDER BY asset, timestamp")
                    copied[f"lake.{stream}"] = int(scalar(con, f"SELECT count(*) FROM {view_name(stream)}"))
        finally:
            con.execute("DETACH legacy")
    legacy.rename(Path(str(legacy) + ".upgraded"))
    return copied


def _copy_table(con, table: str) -> int:
    """The legacy table's rows into the catalog's, by column name (columns the old release
    did not have take their defaults); skipped when the legacy file lacks the table."""
    old = {r[0] for r in con.execute("SELECT column_name FROM duckdb_columns() WHERE database_name = 'legacy' "
                                     "AND schema_name = 'main' AND table_name = ?", [table]).fetchall()}
    if not old:
        return 0
    new = [r[0] for r in con.execute("SELECT column_name FROM duckdb_columns() WHERE database_name = "
                                     "current_database() AND schema_name = 'main' AND table_name = ? "
                                     "ORDER BY column_index", [table]).fetchall()]
    if scalar(con, f"SELECT count(*) FROM {quote_identifier(table)}"):
        raise WarehouseError(f"the catalog's table {table} already has rows; upgrade into a new catalog")
    listed = ", ".join(quote_identifier(c) for c in new if c in old)
    source = f"legacy.main.{quote_identifier(table)}"
    con.execute(f"INSERT INTO {quote_identifier(table)} ({listed}) SELECT {listed} FROM {source}")
    return int(scalar(con, f"SELECT count(*) FROM {quote_identifier(table)}"))
