"""The upkeep DuckLake needs, run by the `maintain-warehouse` flow: small files merged, old
snapshots expired and their files removed, and parts that an interrupted ingest staged but
never registered deleted. (The catalog inlines no rows, so there is nothing to flush:
see store.schema.)

Every scoring run and ingest commits a snapshot with a few small files; left alone, a
month of runs is thousands of files and catalog rows that every query plans over.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from monitoring.store.connection import CATALOG_ALIAS, Warehouse, connect, scalar

# a part staged by an ingest still running is younger than this: never an orphan
ORPHAN_AGE_HOURS = 24


@dataclass(frozen=True)
class MaintenanceResult:
    files_before: int
    files_after: int
    snapshots_before: int
    snapshots_after: int
    files_removed: int

    def to_dict(self) -> dict:
        return asdict(self)


def _files(con) -> int:
    """Data files of the current snapshot, every table."""
    return int(scalar(con, f"SELECT coalesce(sum(file_count), 0) FROM ducklake_table_info('{CATALOG_ALIAS}')"))


def _snapshots(con) -> int:
    return int(scalar(con, f"SELECT count(*) FROM ducklake_snapshots('{CATALOG_ALIAS}')"))


def maintain(warehouse: Warehouse, retention_days: float) -> MaintenanceResult:
    """Compact, expire and clean up. Holds the write lock while it runs: writers wait for
    it (they do not fail), readers never do."""
    with connect(warehouse, write=True) as con:
        files_before, snapshots_before = _files(con), _snapshots(con)
        con.execute(f"CALL ducklake_merge_adjacent_files('{CATALOG_ALIAS}')").fetchall()
        older = f"now() - INTERVAL {float(retention_days) * 86400:.0f} SECOND"
        con.execute(f"CALL ducklake_expire_snapshots('{CATALOG_ALIAS}', older_than => {older})").fetchall()
        removed = len(con.execute(
            f"CALL ducklake_cleanup_old_files('{CATALOG_ALIAS}', older_than => {older})").fetchall())
        removed += len(con.execute(
            f"CALL ducklake_delete_orphaned_files('{CATALOG_ALIAS}', "
            f"older_than => now() - INTERVAL {ORPHAN_AGE_HOURS} HOUR)").fetchall())
        return MaintenanceResult(files_before, _files(con), snapshots_before, _snapshots(con), removed)
