"""`aemon replay`: a recorded file (CSV or Parquet, in the stream's schema) fed into the
stream's inbox as a live sensor would deliver it. The chunking and the time shift are
features.time_chunks; this module reads the file, waits, and writes each chunk atomically: to a
hidden temporary name (the ingest skips hidden files) renamed into place, so the ingest
never sees half a chunk.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from features.readers import StreamSchema, inspect_file
from features.time_chunks import cut_chunks, format_times, read_times, release_delays, shift_times


@dataclass(frozen=True)
class Recording:
    """A recorded file read whole: its rows (CSV fields kept as the text they were), their
    data times (naive UTC) and how to write a chunk of it back."""

    path: Path
    frame: pd.DataFrame
    times: pd.Series
    kind: str  # "csv" or "parquet"
    delimiter: str = ","


@dataclass(frozen=True)
class ReplayedChunk:
    path: Path
    rows: int
    first: pd.Timestamp  # data time of its first reading, as written (naive UTC)
    due_s: float  # when it was due, seconds after the replay's start
    written_s: float  # when it was in place, seconds after the replay's start


def read_recording(path: Path, schema: StreamSchema) -> Recording:
    """The file checked against the stream's schema as the ingest checks it (columns that
    differ are a SchemaError naming the file, what is missing and what is unexpected)."""
    source, schema = inspect_file(path, schema)
    if source.kind == "parquet":
        frame = pd.read_parquet(path)
    else:
        frame = pd.read_csv(path, sep=source.delimiter, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    frame.columns = source.columns[:len(frame.columns)]  # stripped and aliased, as the ingest names them
    frame = frame[[c for c in frame.columns if c]]  # a trailing delimiter's unnamed column
    return Recording(Path(path), frame, read_times(frame, schema, str(path)), source.kind, source.delimiter)


def replay_file(
    path: Path,
    schema: StreamSchema,
    inbox: Path,
    *,
    speed: float = 1.0,
    chunk_s: float = 60.0,
    shift_to: pd.Timestamp | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    on_chunk: Callable[[ReplayedChunk], None] = lambda chunk: None,
) -> list[ReplayedChunk]:
    """Write `path`'s rows into `inbox` in chunks of `chunk_s` seconds of data time, chunk i
    at t0 + (its data time - the first) / speed (speed 0: all at once). With `shift_to`,
    every time moves by one offset so the first reading is at `shift_to` (naive UTC).
    `clock` and `sleep` are the wall clock; tests pass a fake one."""
    recording = read_recording(path, schema)
    chunks = cut_chunks(recording.times, chunk_s)
    delays = release_delays(chunks, speed)
    frame, times = recording.frame, recording.times
    if shift_to is not None:
        times = shift_times(times, shift_to)
        column = schema.timestamp_column
        assert column is not None  # read_times refused a stream without one
        frame = frame.assign(**{column: format_times(times, frame[column], schema).to_numpy()})
    inbox.mkdir(parents=True, exist_ok=True)
    suffix = ".parquet" if recording.kind == "parquet" else ".csv"
    stamp = pd.Timestamp.now("UTC").strftime("%Y%m%dT%H%M%S")
    t0 = clock()
    written = []
    for i, (chunk, delay) in enumerate(zip(chunks, delays, strict=True)):
        wait = t0 + delay - clock()
        if wait > 0:
            sleep(wait)
        target = inbox / f"{recording.path.stem}-replay-{stamp}-{i:05d}{suffix}"
        write_atomically(frame.iloc[chunk.positions], target, recording.kind, recording.delimiter)
        done = ReplayedChunk(target, len(chunk.positions), times.iloc[chunk.positions].min(), delay, clock() - t0)
        on_chunk(done)
        written.append(done)
    return written


def write_atomically(rows: pd.DataFrame, target: Path, kind: str, delimiter: str = ",") -> None:
    """Write to a hidden temporary file beside `target`, then rename it into place."""
    temporary = target.with_name(f".{target.name}.part")
    try:
        if kind == "parquet":
            rows.to_parquet(temporary, index=False)
        else:
            rows.to_csv(temporary, index=False, sep=delimiter)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
