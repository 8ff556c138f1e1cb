"""What ingestion records: one audit row per file (`ingest_batches`), the rows it did not
accept (`quarantine`, each with its reason and raw content), and the data-quality report
computed over the lake (`data_quality`)."""
from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from features.validation import QUARANTINE_COLUMNS
from monitoring.errors import WarehouseError
from monitoring.store.connection import insert_missing, quote_identifier, scalar, transaction
from monitoring.store.schema import KEYS

QUARANTINE_TABLE_COLUMNS = ["batch_id", "stream", "file", "row_number", "column", "reason", "raw"]
BATCH_COLUMNS = ("batch_id", "stream", "file", "file_hash", "rows_in", "rows_accepted", "rows_quarantined",
                 "status", "error", "rows_duplicate", "rows_out_of_order", "rows_late")

def batch_status(con: duckdb.DuckDBPyConnection, stream: str, file_hash: str) -> tuple[str | None, int]:
    """(status of the latest batch of this content for the stream or None, number of batches of it)."""
    rows = con.execute(
        "SELECT status, count(*) OVER () FROM ingest_batches WHERE stream = ? AND file_hash = ? "
        "ORDER BY ingested_at DESC LIMIT 1",
        [stream, file_hash],
    ).fetchall()
    return (rows[0][0], int(rows[0][1])) if rows else (None, 0)

def record_batch(con: duckdb.DuckDBPyConnection, batch: dict) -> None:
    """Write a batch's audit row. The invariant of ingestion is checked here, on every batch."""
    if batch["rows_in"] != batch["rows_accepted"] + batch["rows_quarantined"]:
        raise WarehouseError(
            f"batch {batch['batch_id']} of {batch['file']}: rows in {batch['rows_in']} != accepted "
            f"{batch['rows_accepted']} + quarantined {batch['rows_quarantined']}"
        )
    values = ", ".join(f"? AS {quote_identifier(k)}" for k in BATCH_COLUMNS)
    insert_missing(con, "ingest_batches", f"(SELECT {values})", list(BATCH_COLUMNS), KEYS["ingest_batches"],
                   params=[batch.get(k, 0) for k in BATCH_COLUMNS])

def inbox_manifest(con: duckdb.DuckDBPyConnection, stream: str,
                   file: str | None = None) -> dict[str, tuple[int, int, str, str | None]]:
    """The stream's inbox manifest (or its row for `file`): file -> (size in bytes, mtime in
    ns, content hash, status of the latest batch of that content or None)."""
    rows = con.execute(
        "SELECT m.file, m.size_bytes, m.mtime_ns, m.file_hash, (SELECT b.status FROM ingest_batches b "
        "WHERE b.stream = m.stream AND b.file_hash = m.file_hash ORDER BY b.ingested_at DESC LIMIT 1) "
        "FROM inbox_files m WHERE m.stream = ? AND (? IS NULL OR m.file = ?)",
        [stream, file, file],
    ).fetchall()
    return {file: (int(size), int(mtime), digest, status) for file, size, mtime, digest, status in rows}

def record_inbox_file(con: duckdb.DuckDBPyConnection, stream: str, file: str, size_bytes: int, mtime_ns: int,
                      file_hash: str) -> None:
    """Note a file as processed with the size and modification time it had when it was hashed."""
    con.execute("DELETE FROM inbox_files WHERE stream = ? AND file = ?", [stream, file]).fetchall()
    con.execute("INSERT INTO inbox_files (stream, file, size_bytes, mtime_ns, file_hash) VALUES (?, ?, ?, ?, ?)",
                [stream, file, size_bytes, mtime_ns, file_hash]).fetchall()

def duplicate_count(con: duckdb.DuckDBPyConnection, stream: str) -> int:
    return int(scalar(con, "SELECT coalesce(sum(rows_duplicate), 0) FROM ingest_batches WHERE stream = ?", [stream]))

def write_quarantine(con: duckdb.DuckDBPyConnection, stream: str, batch_id: str, file: str,
                     rows: pd.DataFrame) -> int:
    """Quarantined rows (columns row, column, reason, raw) of one batch; idempotent by row."""
    if rows.empty:
        return 0
    frame = rows[QUARANTINE_COLUMNS].astype(
        {"row": "int64", "column": "string", "reason": "string", "raw": "string"})  # None stays NULL
    frame.insert(0, "file", file)
    frame.insert(0, "stream", stream)
    frame.insert(0, "batch_id", batch_id)
    con.register("new_quarantine", frame)
    try:
        return insert_missing(con, "quarantine", "new_quarantine", QUARANTINE_TABLE_COLUMNS, KEYS["quarantine"],
                              select={"row_number": 'n."row"'})
    finally:
        con.unregister("new_quarantine")

def load_quarantine(con: duckdb.DuckDBPyConnection, stream: str, batch_id: str, file: str,
                    path: Path | str | None) -> int:
    """Quarantined rows staged in a Parquet file (monitoring.store.lake.QuarantineStage; a path
    or an object's URI, None when no row was quarantined) -> quarantine."""
    if path is None or (isinstance(path, Path) and not path.exists()):
        return 0
    source = "(SELECT ? AS batch_id, ? AS stream, ? AS file, * FROM read_parquet(?))"
    return insert_missing(con, "quarantine", source, QUARANTINE_TABLE_COLUMNS, KEYS["quarantine"],
                          select={"row_number": 'n."row"'}, params=[batch_id, stream, file, str(path)])

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

def quarantine_counts(con: duckdb.DuckDBPyConnection, stream: str) -> dict[str, int]:
    """Quarantined rows per column (the column a row's first problem was found in)."""
    rows = con.execute('SELECT "column", count(*) FROM quarantine WHERE stream = ? GROUP BY 1', [stream]).fetchall()
    return {c or "": int(n) for c, n in rows}

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
