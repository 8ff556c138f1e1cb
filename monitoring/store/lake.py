"""The Parquet lake: validated readings, one folder per stream, partitioned by date.

Each part is written to a temporary file in its final folder and renamed into place
(`os.replace` is atomic on one filesystem), so a reader never sees half a file. Part
names carry the ingest batch id, so writing the same batch again replaces, never adds.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.validation import QUARANTINE_COLUMNS


def stream_root(lake_root: Path, stream: str) -> Path:
    return Path(lake_root) / stream


def stage_parts(frame: pd.DataFrame, lake_root: Path, stream: str, batch_id: str, seq: int) -> list[tuple[Path, Path]]:
    """Write a readings frame as hidden temporary Parquet parts, one per date, in their final
    folders; return (temporary, final) pairs for `commit_parts` or `abort_parts`. Views never
    see a staged part: they read `part-*.parquet` only."""
    root = stream_root(lake_root, stream)
    staged = []
    for date, part in _by_date(frame):
        folder = root / f"date={date}"
        folder.mkdir(parents=True, exist_ok=True)
        name = f"part-{batch_id}-{seq:05d}.parquet"
        tmp = folder / f".{name}.tmp-{os.getpid()}"
        table = pa.Table.from_pandas(part.reset_index(drop=True), preserve_index=False)
        # dictionary encoding pays off for the asset id, not for float readings
        pq.write_table(table, tmp, use_dictionary=["asset"])
        staged.append((tmp, folder / name))
    return staged


def _by_date(frame: pd.DataFrame):
    """(YYYY-MM-DD, rows of that date) of a readings frame; contiguous slices when the
    frame is in time order (the usual case), a group-by otherwise."""
    days = frame["timestamp"].to_numpy().astype("datetime64[D]")
    if len(days) and np.all(days[1:] >= days[:-1]):
        unique, first = np.unique(days, return_index=True)
        bounds = [*first, len(days)]
        for i, day in enumerate(unique):
            yield str(day), frame.iloc[bounds[i]: bounds[i + 1]]
        return
    for day, part in frame.groupby(days, sort=True):
        yield str(np.datetime64(day, "D")), part


def commit_parts(staged: list[tuple[Path, Path]]) -> list[Path]:
    """Rename staged parts into place (atomic per part). Part names derive from the content
    hash, so committing the same file again replaces its parts, never adds to them."""
    for tmp, final in staged:
        os.replace(tmp, final)
    return [final for _, final in staged]


def abort_parts(staged: list[tuple[Path, Path]]) -> None:
    for tmp, _ in staged:
        tmp.unlink(missing_ok=True)


QUARANTINE_SCHEMA = pa.schema([("row", pa.int64()), ("column", pa.string()), ("reason", pa.string()),
                               ("raw", pa.string())])


class QuarantineStage:
    """Quarantined rows of a file in progress, appended to a hidden Parquet file next to the
    stream's lake and loaded into the warehouse in one statement when the file is done: the
    rows of a big bad file never sit in memory together, and the warehouse is not held open."""

    def __init__(self, lake_root: Path, stream: str, batch_id: str):
        folder = stream_root(lake_root, stream)
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f".quarantine-{batch_id}.parquet.tmp-{os.getpid()}"
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


def has_parts(lake_root: Path, stream: str) -> bool:
    root = stream_root(lake_root, stream)
    return root.exists() and any(root.glob("date=*/part-*.parquet"))


def parts_glob(lake_root: Path, stream: str) -> str:
    return str(stream_root(lake_root, stream).resolve() / "date=*" / "part-*.parquet")
