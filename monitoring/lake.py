"""The Parquet lake: validated readings, one folder per stream, partitioned by date.

Each part is written to a temporary file in its final folder and renamed into place
(`os.replace` is atomic on one filesystem), so a reader never sees half a file. Part
names carry the ingest batch id, so writing the same batch again replaces, never adds.
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def stream_root(lake_root: Path, stream: str) -> Path:
    return Path(lake_root) / stream


def write_parts(frame: pd.DataFrame, lake_root: Path, stream: str, batch_id: str) -> list[Path]:
    """Write a normalised readings frame as one Parquet part per date; return the paths."""
    root = stream_root(lake_root, stream)
    paths = []
    dates = frame["timestamp"].dt.strftime("%Y-%m-%d")
    for date, part in frame.groupby(dates, sort=True):
        folder = root / f"date={date}"
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / f"part-{batch_id}.parquet"
        tmp = folder / f".part-{batch_id}.parquet.tmp-{os.getpid()}"
        table = pa.Table.from_pandas(part.reset_index(drop=True), preserve_index=False)
        pq.write_table(table, tmp)
        os.replace(tmp, final)
        paths.append(final)
    return paths


def has_parts(lake_root: Path, stream: str) -> bool:
    root = stream_root(lake_root, stream)
    return root.exists() and any(root.glob("date=*/part-*.parquet"))


def parts_glob(lake_root: Path, stream: str) -> str:
    return str(stream_root(lake_root, stream).resolve() / "date=*" / "part-*.parquet")
