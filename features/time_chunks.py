"""Replaying a recorded file as a live sensor would deliver it: the rows cut into chunks
of data time, each released at the wall time its data time implies, optionally shifted so
that the first reading is "now". Pure functions over frames; the file writing and the
waiting live with the caller (flows/replay.py).

A chunk holds the rows whose time falls in [first + i * chunk_s, first + (i + 1) * chunk_s);
empty intervals (a gap in the recording) give no chunk. Inside a chunk the rows keep their
order in the file, so a file whose assets are interleaved stays interleaved.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.errors import SchemaError
from features.readers import StreamSchema
from features.validation import parse_timestamps


@dataclass(frozen=True)
class ReplayChunk:
    """Rows `positions` (into the recorded frame, in file order) of data times starting
    `offset_s` seconds after the recording's first reading."""

    offset_s: float
    positions: np.ndarray


def read_times(frame: pd.DataFrame, schema: StreamSchema, source: str) -> pd.Series:
    """The timestamps of a recorded frame as naive UTC, parsed as the ingest parses them;
    a timestamp that does not parse is an error naming `source` and the data row."""
    column = schema.timestamp_column
    if column is None:
        raise SchemaError(f"{source}: the stream has no timestamp column (tabular records); replay needs data times")
    times = parse_timestamps(frame[column].reset_index(drop=True), schema)
    bad = np.flatnonzero(times.isna().to_numpy())
    if len(bad):
        value = frame[column].iloc[bad[0]]
        raise SchemaError(
            f"{source}: data row {bad[0] + 1}, column {column!r}: {value!r} is not a timestamp "
            f"({len(bad)} rows in all); expected {schema.timestamp_format or 'ISO 8601'} to replay the file"
        )
    return times


def cut_chunks(times: pd.Series, chunk_s: float) -> list[ReplayChunk]:
    """Chunks of `chunk_s` seconds of data time covering every row once, in time order."""
    if not chunk_s > 0:
        raise ValueError(f"chunk length {chunk_s!r} s; expected > 0")
    if len(times) == 0:
        return []
    elapsed = (times - times.min()).dt.total_seconds().to_numpy()
    index = np.floor(elapsed / chunk_s).astype(np.int64)
    order = np.argsort(index, kind="stable")  # by chunk, file order inside one
    bounds = np.flatnonzero(np.diff(index[order])) + 1
    return [ReplayChunk(float(index[part[0]] * chunk_s), part) for part in np.split(order, bounds)]


def release_delays(chunks: list[ReplayChunk], speed: float) -> list[float]:
    """Seconds after the replay's start at which each chunk is due: data time / speed; all
    at once (0) for speed 0."""
    if speed < 0:
        raise ValueError(f"speed {speed!r}; expected >= 0 (0: no waiting)")
    return [0.0 if speed == 0 else chunk.offset_s / speed for chunk in chunks]


def shift_times(times: pd.Series, first: pd.Timestamp) -> pd.Series:
    """The same times moved so that the earliest is `first`; spacing is kept exactly."""
    return times + (pd.Timestamp(first) - times.min())


def format_times(times: pd.Series, like: pd.Series, schema: StreamSchema) -> pd.Series:
    """Naive-UTC times in the form of the recorded column `like`, so that the stream's ingest
    reads them back as the same instants. Timestamps (Parquet) stay timestamps, naive in the
    stream's zone or aware as they were; text is written in the stream's timestamp_format and
    zone when it has one, else ISO 8601 with an explicit UTC offset."""
    aware = times.dt.tz_localize("UTC")
    if pd.api.types.is_datetime64_any_dtype(like):
        if like.dt.tz is not None:
            return aware.dt.tz_convert(like.dt.tz).astype(like.dtype)
        return aware.dt.tz_convert(schema.timezone).dt.tz_localize(None).astype(like.dtype)
    if schema.timestamp_format:
        return aware.dt.tz_convert(schema.timezone).dt.strftime(schema.timestamp_format)
    return aware.map(lambda t: t.isoformat())
