"""The lake: each stream's readings as the DuckLake table `lake."<stream>"`, whose Parquet
files live under the warehouse's data path.

An ingest stages a file's rows as Parquet parts in the table's folder, then registers them
(`ducklake_add_data_files`) in the same transaction as the file's audit row and quarantine:
readers see all of a file or none of it, and the rows are written once (no copy). A part
that was staged but never registered (a run killed mid-file) is invisible to every reader
and is removed by the maintenance flow (`ducklake_delete_orphaned_files`).
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.validation import QUARANTINE_COLUMNS
from monitoring.store.connection import quote_identifier


def stream_root(data_path: str | Path, stream: str) -> Path:
    """The folder of a stream's readings table (DuckLake's layout: <data path>/<schema>/<table>).
    The stream name is an identifier (letters, digits, '_', '-'): never a path out of the lake."""
    quote_identifier(stream)
    return Path(data_path) / "lake" / stream


def stage_parts(frame: pd.DataFrame, data_path: str | Path, stream: str, batch_id: str, seq: int) -> list[Path]:
    """Write a readings frame as one Parquet part in the stream's folder; the part stays
    invisible until `ducklake_add_data_files` registers it. Names are unique per attempt,
    so two runs ingesting the same file never touch each other's parts."""
    folder = stream_root(data_path, stream)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"part-{batch_id}-{seq:05d}-{uuid.uuid4().hex[:8]}.parquet"
    table = pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
    # the table's timestamps are microseconds, DuckDB's TIMESTAMP
    index = table.schema.get_field_index("timestamp")
    if index >= 0 and table.schema.field(index).type != pa.timestamp("us"):
        table = table.set_column(index, "timestamp", table.column(index).cast(pa.timestamp("us")))
    # dictionary encoding pays off for the asset id, not for float readings
    pq.write_table(table, path, use_dictionary=["asset"])
    return [path]


def abort_parts(staged: list[Path]) -> None:
    for path in staged:
        Path(path).unlink(missing_ok=True)


QUARANTINE_SCHEMA = pa.schema([("row", pa.int64()), ("column", pa.string()), ("reason", pa.string()),
                               ("raw", pa.string())])


class QuarantineStage:
    """Quarantined rows of a file in progress, appended to a hidden Parquet file next to the
    stream's lake and loaded into the warehouse in one statement when the file is done: the
    rows of a big bad file never sit in memory together, and the warehouse is not held open."""

    def __init__(self, data_path: str | Path, stream: str, batch_id: str):
        folder = stream_root(data_path, stream)
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f".quarantine-{batch_id}-{os.getpid()}-{uuid.uuid4().hex[:8]}.parquet"
        self._writer: pq.ParquetWriter | None = None

    def add(self, rows: pd.DataFrame) -> None:
        if rows.empty:
            return
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, QUARANTINE_SCHEMA)
        frame = rows[QUARANTINE_COLUMNS].astype(
            {"row": "int64", "column": object, "reason": object, "raw": object})
        self._writer.write_table(pa.Table.from_pandas(frame, schema=QUARANTINE_SCHEMA, preserve_index=False))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def discard(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)
