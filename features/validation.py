"""Row-level validation: a chunk of raw rows -> accepted rows in the lake layout plus
quarantined rows, each with the reason and the raw content.

Nothing is dropped silently: every input row is either accepted or quarantined, and the
chunk result says how many of each (`n_in == len(accepted) + len(quarantine)`).
Reasons name the data row (1-based, header and blank lines not counted), the column and
what was expected: `data row 2, column 'a': value 'one' is not a number`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.errors import SchemaError
from features.exclusions import rows_in_intervals
from features.readers import Chunk, StreamSchema

QUARANTINE_COLUMNS = ["row", "column", "reason", "raw"]
OFFSET = r"(?:Z|[+-]\d\d:?\d\d)\s*$"


@dataclass
class ChunkResult:
    accepted: pd.DataFrame  # lake layout, sorted by asset and time
    quarantine: pd.DataFrame  # QUARANTINE_COLUMNS
    n_in: int
    n_duplicates: int = 0
    n_out_of_order: int = 0
    # source rows accepted (a long file has several per lake row); -1: one per accepted row
    n_accepted: int = -1

    def __post_init__(self) -> None:
        if self.n_accepted < 0:
            self.n_accepted = len(self.accepted)
        assert self.n_in == self.n_accepted + len(self.quarantine), "rows lost in validation"


@dataclass
class FileState:
    """What validation remembers between the chunks of one file: the latest time seen per
    asset (rows before it are out of order across chunks) and the next synthetic record
    time of a tabular stream."""

    last_seen: dict = field(default_factory=dict)
    next_record_time: pd.Timestamp | None = None
    n_out_of_order: int = 0
    accepted_range: tuple[pd.Timestamp, pd.Timestamp] | None = None  # fixed at the file's first chunk


def _is_text(series: pd.Series) -> bool:
    return pd.api.types.is_string_dtype(series) or series.dtype == object


def raw_json(record: dict) -> str:
    """A row's fields as JSON text, every value as written (missing values as null): the
    raw content kept with a quarantined row."""
    return json.dumps({k: (None if _missing(v) else str(v)) for k, v in record.items()}, ensure_ascii=False)


def _raw_records(raw: pd.DataFrame, positions: np.ndarray) -> list[str]:
    """Raw content of some rows of a chunk."""
    return [raw_json(record) for record in raw.iloc[positions].to_dict(orient="records")]


def _missing(value) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and np.isnan(value))


def parse_timestamps(raw: pd.Series, schema: StreamSchema) -> pd.Series:
    """Naive-UTC datetime64[us] of raw timestamps; NaT where a value cannot be parsed."""
    if pd.api.types.is_datetime64_any_dtype(raw):
        ts = raw
        if ts.dt.tz is None and schema.timezone == "UTC":
            return ts.astype("datetime64[us]")
        if ts.dt.tz is None:
            ts = ts.dt.tz_localize(schema.timezone, ambiguous="NaT", nonexistent="NaT")
        return ts.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[us]")
    if not _is_text(raw):
        raise SchemaError(f"timestamp column has type {raw.dtype}; expected text or timestamps")
    text = raw.astype("string").str.strip()
    fmt = schema.timestamp_format
    if schema.timezone == "UTC":
        # no guessing for other forms: 03/04/2026 is March in one plant and April in the next,
        # so they need an explicit timestamp_format
        ts = pd.to_datetime(text, errors="coerce", utc=True, format=fmt or "ISO8601")
    else:
        has_offset = text.str.contains(OFFSET, regex=True, na=False)
        ts = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns, UTC]")
        if has_offset.any():
            ts[has_offset] = pd.to_datetime(text[has_offset], errors="coerce", utc=True, format=fmt or "ISO8601")
        local = ~has_offset & text.notna()
        if local.any():
            naive = pd.to_datetime(text[local], errors="coerce", format=fmt or "ISO8601")
            ts[local] = naive.dt.tz_localize(schema.timezone, ambiguous="NaT", nonexistent="NaT").dt.tz_convert("UTC")
    return ts.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[us]")


def _numbers(raw: pd.Series) -> pd.Series:
    if _is_text(raw):
        text = raw.astype("string").str.strip()
        fast = _cast_numbers(text)
        return fast if fast is not None else pd.to_numeric(text, errors="coerce").astype("float64")
    if pd.api.types.is_bool_dtype(raw) or pd.api.types.is_numeric_dtype(raw):
        return raw.astype("float64")
    return pd.to_numeric(raw, errors="coerce").astype("float64")


def _cast_numbers(text: pd.Series) -> pd.Series | None:
    """pyarrow's cast of text to float64 where it gives what pd.to_numeric gives (ten times
    faster); None when a value needs pd.to_numeric: one pyarrow refuses (pd.to_numeric
    decides: NaN or, for forms pyarrow does not read, a number), or a negative zero
    (pd.to_numeric reads "-0" as the integer 0)."""
    try:
        values = pc.cast(pa.array(text), pa.float64()).to_numpy(zero_copy_only=False)  # nulls -> NaN
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if np.signbit(values[values == 0]).any():
        return None
    return pd.Series(values, index=text.index, dtype="float64")


def validate_frame(raw: pd.DataFrame, schema: StreamSchema, rows: np.ndarray, state: FileState) -> ChunkResult:
    """Validate one chunk of source rows (source column names; text or typed values).
    `rows` holds each row's 1-based data row number in the file."""
    n = len(raw)
    reason = np.full(n, None, dtype=object)
    column = np.full(n, None, dtype=object)
    flagged = np.zeros(n, dtype=bool)

    def flag(mask: np.ndarray, name: str, message) -> None:
        """Record the first problem of each row (later checks do not overwrite it)."""
        if not mask.any():
            return
        new = mask & ~flagged
        if new.any():
            flagged[new] = True
            idx = np.flatnonzero(new)
            column[idx] = name
            reason[idx] = [message(i) for i in idx] if callable(message) else message

    for name in raw.columns:  # binary garbage in a text value (a Parquet string, a typed CSV read)
        if _is_text(raw[name]):
            nul = raw[name].astype("string").str.contains("\x00", regex=False).fillna(False).to_numpy(dtype=bool)
            flag(nul, name, f"column '{name}': NUL bytes in the value (binary content); expected text")

    out = pd.DataFrame(index=raw.index)
    if schema.timestamp_column is None:
        start = state.next_record_time
        out["timestamp"] = (start + pd.to_timedelta(np.arange(n), unit="us")).astype("datetime64[us]")
        state.next_record_time = start + pd.Timedelta(microseconds=n)
    else:
        name = schema.timestamp_column
        ts_raw = raw[name]
        ts = parse_timestamps(ts_raw, schema)
        bad = ts.isna().to_numpy()
        empty = ts_raw.isna().to_numpy() | (
            (ts_raw.astype("string").str.strip() == "").fillna(True).to_numpy() if _is_text(ts_raw) else False
        )
        flag(bad & empty, name, lambda i: f"column '{name}': empty timestamp")
        expected = f"format {schema.timestamp_format!r}" if schema.timestamp_format else "ISO 8601"
        zone = ("" if schema.timezone == "UTC"
                else f" in {schema.timezone} (ambiguous or nonexistent local times refused)")
        flag(bad, name, lambda i: f"column '{name}': value {str(ts_raw.iloc[i])!r} is not a timestamp "
                                  f"(expected {expected}{zone})")
        if state.accepted_range is None:
            state.accepted_range = schema.accepted_range()
        lo, hi = state.accepted_range
        outside = ~bad & ((ts < lo) | (ts > hi)).fillna(False).to_numpy()
        flag(outside, name, lambda i: f"column '{name}': timestamp {str(ts_raw.iloc[i])!r} is outside the accepted "
                                      f"range {lo} to {hi} (UTC; the stream's accept_from and accept_ahead_hours)")
        out["timestamp"] = ts
    if schema.asset_column:
        name = schema.asset_column
        assets = raw[name].astype("string").str.strip()
        flag((assets.isna() | (assets == "")).fillna(True).to_numpy(), name, f"column '{name}': empty asset id")
        out["asset"] = assets.fillna("").astype(str)
    else:
        out["asset"] = schema.asset_id
    if schema.id_column:
        name = schema.id_column
        ids = raw[name].astype("string").str.strip()
        flag((ids.isna() | (ids == "")).fillna(True).to_numpy(), name, f"column '{name}': empty record id")
        out[name] = ids.fillna("").astype(str)
    for name in schema.sensors:
        values = _numbers(raw[name])
        arr = values.to_numpy()
        absent = raw[name].isna().to_numpy()
        if _is_text(raw[name]):
            absent = absent | (raw[name].astype("string").str.strip() == "").fillna(True).to_numpy()
        flag(absent, name, f"column '{name}': missing reading; expected a number")
        flag(np.isnan(arr), name,
             lambda i, s=raw[name], c=name: f"column '{c}': value {str(s.iloc[i])!r} is not a number")
        flag(~np.isfinite(arr), name, lambda i, c=name, a=arr: f"column '{c}': value {a[i]} is not finite")
        out[name] = values
    for name in schema.label_columns:
        if name not in raw.columns:  # schema.labels_optional: an unlabelled file
            out[name] = 0.0
            continue
        values = _numbers(raw[name])
        present = raw[name].notna().to_numpy().copy()
        if _is_text(raw[name]):
            present &= (raw[name].astype("string").str.strip() != "").fillna(False).to_numpy()
        flag(present & ~np.isfinite(values.to_numpy()), name,
             lambda i, s=raw[name], c=name: f"column '{c}': label {str(s.iloc[i])!r} is not a number")
        out[name] = values.fillna(0)

    ok = ~flagged
    accepted = out if ok.all() else out[ok]
    accepted["_row"] = rows[ok]
    ordered = _strictly_ordered(accepted)
    if ordered:  # the common case (one asset, time strictly increasing): no duplicates, nothing to sort
        n_late = _count_out_of_order_ordered(accepted, state)
        keep_mask = np.ones(len(accepted), dtype=bool)
    else:
        # Out of order: earlier than a row before it of the same asset (in this chunk or an earlier one).
        n_late = _count_out_of_order(accepted, state)
        keep_mask = _duplicate_mask(accepted, schema.duplicates)
    state.n_out_of_order += n_late
    dup_idx = np.flatnonzero(~keep_mask)
    dup_reasons = []
    if len(dup_idx):
        first_row = accepted.groupby(["asset", "timestamp"], sort=False)["_row"].transform(
            "last" if schema.duplicates == "last" else "first").to_numpy()
        for i in dup_idx:
            other = "" if schema.duplicates == "drop" else f" (data row {first_row[i]} kept)"
            dup_reasons.append(
                f"duplicate timestamp {accepted['timestamp'].iloc[i]} for asset '{accepted['asset'].iloc[i]}'"
                f"{other}; duplicates policy '{schema.duplicates}'"
            )
    dup_positions = np.flatnonzero(ok)[dup_idx]
    if not keep_mask.all():
        accepted = accepted[keep_mask]

    bad_positions = np.flatnonzero(~ok)
    positions = np.concatenate([bad_positions, dup_positions]).astype(np.int64)
    quarantine = pd.DataFrame({
        "row": rows[positions].astype(np.int64),
        "column": list(column[bad_positions]) + [schema.timestamp_column] * len(dup_positions),
        "reason": [f"data row {r}, {m}" for r, m in zip(rows[bad_positions], reason[bad_positions], strict=True)]
                  + [f"data row {r}: {m}" for r, m in zip(rows[dup_positions], dup_reasons, strict=True)],
        "raw": _raw_records(raw, positions),
    })
    for name in schema.label_columns:
        accepted[name] = accepted[name].astype("int8")
    if not ordered:
        accepted = accepted.sort_values(["asset", "timestamp"], kind="stable")
    accepted = accepted.reset_index(drop=True)
    return ChunkResult(accepted[[*schema.lake_columns, "_row"]],
                       quarantine.sort_values("row", kind="stable").reset_index(drop=True),
                       n, n_duplicates=len(dup_idx), n_out_of_order=n_late)


def _strictly_ordered(frame: pd.DataFrame) -> bool:
    """One asset whose timestamps strictly increase: the shape of almost every export chunk."""
    if frame.empty:
        return True
    assets = frame["asset"]
    ts = frame["timestamp"].to_numpy()
    return bool((assets.iloc[0] == assets.iloc[-1]) and (assets == assets.iloc[0]).all() and np.all(ts[1:] > ts[:-1]))


def _count_out_of_order_ordered(frame: pd.DataFrame, state: FileState) -> int:
    if frame.empty:
        return 0
    asset = frame["asset"].iloc[0]
    ts = frame["timestamp"].to_numpy()
    before = state.last_seen.get(asset)
    state.last_seen[asset] = ts[-1] if before is None else max(before, ts[-1])
    return 0 if before is None else int((ts < before).sum())


def _count_out_of_order(frame: pd.DataFrame, state: FileState) -> int:
    """Rows earlier than a row before them of the same asset (in this chunk or an earlier one)."""
    n = 0
    for asset, ts in frame.groupby("asset", sort=False)["timestamp"]:
        values = ts.to_numpy()
        before = state.last_seen.get(asset)
        seen = values if before is None else np.concatenate([[before], values])
        running = np.maximum.accumulate(seen)
        n += int((seen[1:] < running[:-1]).sum())
        state.last_seen[asset] = running[-1]
    return n


def _duplicate_mask(frame: pd.DataFrame, policy: str) -> np.ndarray:
    """True for the rows kept among rows sharing (asset, timestamp)."""
    keys = ["asset", "timestamp"]
    if policy == "drop":
        return ~frame.duplicated(keys, keep=False).to_numpy()
    return ~frame.duplicated(keys, keep="last" if policy == "last" else "first").to_numpy()


def pivot_long(raw: pd.DataFrame, schema: StreamSchema, rows: np.ndarray, path):
    """Long rows (timestamp, asset, sensor, value) -> wide rows. Returns the wide frame (the
    timestamp already parsed), each wide row's data row number (its first long row), the
    long rows quarantined on the way (bad timestamp or asset, repeated sensor) and the
    (data row, asset, timestamp) key of every long row that went into the wide frame."""
    sensor_names = raw[schema.sensor_column].astype("string").str.strip()
    unknown = sorted(set(sensor_names.dropna()) - set(schema.sensors))
    missing = sorted(set(schema.sensors) - set(sensor_names.dropna()))
    if unknown or missing:
        raise SchemaError(
            f"{path}: sensors differ from the stream schema: missing {missing}, unexpected {unknown}; "
            f"expected {list(schema.sensors)}"
        )
    long = pd.DataFrame({"_row": rows, "sensor": sensor_names, "value": raw[schema.value_column]})
    reasons = np.full(len(raw), None, dtype=object)
    columns = np.full(len(raw), None, dtype=object)
    name = schema.timestamp_column
    ts = parse_timestamps(raw[name], schema)
    bad_ts = ts.isna().to_numpy()
    reasons[bad_ts] = [f"data row {r}, column '{name}': value {str(v)!r} is not a timestamp"
                       for r, v in zip(rows[bad_ts], raw[name][bad_ts], strict=True)]
    columns[bad_ts] = name
    long["timestamp"] = ts
    if schema.asset_column:
        assets = raw[schema.asset_column].astype("string").str.strip()
        bad_asset = (assets.isna() | (assets == "")).fillna(True).to_numpy() & (reasons == None)  # noqa: E711
        reasons[bad_asset] = [f"data row {r}, column '{schema.asset_column}': empty asset id" for r in rows[bad_asset]]
        columns[bad_asset] = schema.asset_column
        long["asset"] = assets.fillna("")
    else:
        long["asset"] = schema.asset_id
    for label in schema.label_columns:  # an unlabelled file (schema.labels_optional): label 0
        long[label] = raw[label] if label in raw.columns else 0
    ok = reasons == None  # noqa: E711
    repeated = long[ok].duplicated(["asset", "timestamp", "sensor"], keep="first").to_numpy()
    rep_idx = np.flatnonzero(ok)[repeated]
    reasons[rep_idx] = [f"data row {r}: sensor '{s}' repeated for asset '{a}' at {t}"
                        for r, s, a, t in zip(rows[rep_idx], long["sensor"].iloc[rep_idx],
                                              long["asset"].iloc[rep_idx], long["timestamp"].iloc[rep_idx],
                                              strict=True)]
    columns[rep_idx] = schema.sensor_column
    bad = reasons != None  # noqa: E711
    good = long[~bad]
    quarantine = pd.DataFrame({"row": rows[bad].astype(np.int64), "column": columns[bad], "reason": reasons[bad],
                               "raw": _raw_records(raw, np.flatnonzero(bad))})
    wide = good.pivot(index=["asset", "timestamp"], columns="sensor", values="value")
    wide = wide.reindex(columns=list(schema.sensors))
    wide.columns.name = None
    for label in schema.label_columns:
        values = pd.to_numeric(good[label].astype("string").str.strip(), errors="coerce")
        wide[label] = good.assign(_l=values).groupby(["asset", "timestamp"])["_l"].max()
    wide["_first"] = good.groupby(["asset", "timestamp"])["_row"].min()
    wide = wide.sort_values("_first").reset_index()
    out_rows = wide.pop("_first").to_numpy()
    wide = wide.rename(columns={"timestamp": name})
    wide = wide.rename(columns={"asset": schema.asset_column}) if schema.asset_column else wide.drop(columns="asset")
    return wide, out_rows, quarantine, good[["_row", "asset", "timestamp"]]


@dataclass(frozen=True)
class CleanChunk:
    """A chunk with nothing to quarantine, all of one asset, its times strictly increasing
    and after every earlier row of that asset in the file: the shape of almost every
    export chunk, validated on its Arrow arrays and kept as Arrow for the lake."""

    table: pa.Table  # lake layout
    asset: str
    first: np.datetime64  # the chunk's earliest and latest time
    last: np.datetime64


def validate_clean(chunk: Chunk, schema: StreamSchema, state: FileState) -> CleanChunk | None:
    """The chunk in the lake layout when `validate_chunk` would accept every row of it as
    it is (same values, same order); None when any row needs a verdict or a reordering,
    or the chunk's types are not those of a typed read (validate_chunk then decides).
    Does not change `state`: the caller that keeps the chunk calls `accept_clean`."""
    table = chunk.table
    n = table.num_rows
    ts_name = schema.timestamp_column
    if (n == 0 or chunk.invalid or chunk.broken or schema.layout != "wide" or ts_name is None
            or schema.timezone != "UTC" or schema.id_column):
        return None
    types = {f.name: f.type for f in table.schema}
    expected = {ts_name: pa.timestamp("us"), **{c: pa.float64() for c in (*schema.sensors, *schema.label_columns)}}
    if schema.asset_column:
        expected[schema.asset_column] = pa.string()
    if set(types) - set(expected) or any(types.get(c, t) != t for c, t in expected.items()) \
            or any(c not in types for c in expected if c not in schema.label_columns):
        return None
    # every value must pass: no missing value anywhere, finite readings (a sum is finite only
    # when every term is: NaN or an infinity makes it NaN or infinite), finite labels
    if any(table.column(c).null_count for c in types if c not in schema.label_columns):
        return None
    for name in (*schema.sensors, *schema.label_columns):
        if name in types and not np.isfinite(pc.sum(table.column(name)).as_py() or 0.0):
            return None
    if schema.asset_column:
        # validate_frame's checks on the distinct values only: NUL bytes, stripped, not empty
        raw_assets = pd.Series(pc.unique(table.column(schema.asset_column)).to_pylist(), dtype="string")
        assets = set(raw_assets.str.strip())
        if len(assets) != 1 or "" in assets or raw_assets.str.contains("\x00", regex=False).any():
            return None
        asset = str(assets.pop())
    else:
        asset = str(schema.asset_id)
    ts = table.column(ts_name).combine_chunks().to_numpy()  # (n,) datetime64[us]
    if n > 1 and not np.all(ts[1:] > ts[:-1]):
        return None
    if state.accepted_range is None:
        state.accepted_range = schema.accepted_range()
    lo, hi = state.accepted_range
    before = state.last_seen.get(asset)
    if ts[0] < lo or ts[-1] > hi or (before is not None and ts[0] <= before):
        return None
    columns = {"timestamp": pa.array(ts), "asset": pa.repeat(pa.scalar(asset), n)}
    for name in schema.sensors:
        columns[name] = table.column(name)
    for name in schema.label_columns:  # as validate_frame: missing labels are 0, then int8
        values = (table.column(name).fill_null(0.0).to_numpy() if name in types
                  else np.zeros(n, dtype=np.float64))
        columns[name] = pa.array(values.astype("int8"))
    return CleanChunk(pa.table(columns), asset, ts[0], ts[-1])


def accept_clean(clean: CleanChunk, state: FileState) -> None:
    """Note a kept clean chunk in the file's state, as validate_chunk would have."""
    state.last_seen[clean.asset] = clean.last


def validate_chunk(chunk: Chunk, schema: StreamSchema, state: FileState, path) -> ChunkResult:
    """Validate a chunk read by features.readers.read_chunks, lines with the wrong number
    of fields included (quarantined with their text)."""
    result = _validate_rows(chunk.table, chunk.rows, schema, state, path)
    if not chunk.invalid and not chunk.broken:
        return result
    n_columns = chunk.n_fields
    malformed = pd.DataFrame({
        "row": np.array([r if r is not None else -1 for r, _, _ in chunk.invalid]
                        + [r for r, _, _ in chunk.broken], dtype=np.int64),
        "column": [None] * (len(chunk.invalid) + len(chunk.broken)),
        "reason": [f"data row {r}: {n} fields, expected {n_columns} (a cut-off or malformed line)"
                   for r, _, n in chunk.invalid] + [reason for _, _, reason in chunk.broken],
        "raw": [text for _, text, _ in chunk.invalid] + [text for _, text, _ in chunk.broken],
    })
    quarantine = pd.concat([result.quarantine, malformed], ignore_index=True).sort_values("row").reset_index(drop=True)
    return ChunkResult(result.accepted, quarantine, result.n_in + len(malformed), result.n_duplicates,
                       result.n_out_of_order, n_accepted=result.n_accepted)


def _validate_rows(table: pa.Table, rows: np.ndarray, schema: StreamSchema, state: FileState, path) -> ChunkResult:
    raw = table.to_pandas()
    if schema.layout == "wide":
        return validate_frame(raw, schema, rows, state)
    wide, wide_rows, long_quarantine, keys = pivot_long(raw, schema, rows, path)
    result = validate_frame(wide, replace(schema, layout="wide"), wide_rows, state)
    # A long file is counted in its own rows: a wide row quarantined quarantines each of
    # the long rows it was made of, with the same reason.
    reason_of = dict(zip(result.quarantine["row"],
                         zip(result.quarantine["column"], result.quarantine["reason"], strict=True), strict=True))
    first_of_key = keys.groupby(["asset", "timestamp"])["_row"].transform("min").to_numpy()
    hit = np.array([r in reason_of for r in first_of_key], dtype=bool)
    long_rows = keys["_row"].to_numpy()[hit]
    expanded = pd.DataFrame({
        "row": long_rows.astype(np.int64),
        "column": [reason_of[r][0] for r in first_of_key[hit]],
        "reason": [reason_of[r][1] for r in first_of_key[hit]],
        "raw": _raw_records(raw, np.searchsorted(rows, long_rows)),
    })
    quarantine = pd.concat([long_quarantine, expanded], ignore_index=True).sort_values("row").reset_index(drop=True)
    return ChunkResult(result.accepted, quarantine, len(raw), result.n_duplicates, result.n_out_of_order,
                       n_accepted=len(raw) - len(quarantine))


def move_to_quarantine(result: ChunkResult, mask: np.ndarray, reasons: list[str]) -> ChunkResult:
    """Quarantine accepted rows after the fact (a duplicate of a row already in the lake);
    their raw content is the row as accepted."""
    if not mask.any():
        return result
    moved = result.accepted[mask]
    raw = [raw_json(rec) for rec in moved.drop(columns="_row").to_dict(orient="records")]
    extra = pd.DataFrame({"row": moved["_row"].to_numpy(np.int64), "column": "timestamp", "reason": reasons,
                          "raw": raw})
    quarantine = pd.concat([result.quarantine, extra], ignore_index=True).sort_values("row").reset_index(drop=True)
    return ChunkResult(result.accepted[~mask].reset_index(drop=True), quarantine, result.n_in,
                       result.n_duplicates + int(mask.sum()), result.n_out_of_order,
                       n_accepted=result.n_accepted - int(mask.sum()))


def label_intervals(frame: pd.DataFrame, intervals: pd.DataFrame) -> np.ndarray:
    """int8 label per row: 1 inside any [start, end] interval (columns start, end, and
    optionally asset), else 0. Turns labelled windows (NAB's windows.json) into row labels."""
    return rows_in_intervals(frame, intervals).astype(np.int8)


def read_readings(path, schema: StreamSchema, chunk_rows: int = 1 << 20) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A whole file validated in memory: (accepted rows in the lake layout, quarantined rows).
    For files that fit in memory (tests, notebooks); the ingest streams instead."""
    from features.readers import inspect_file, read_chunks

    source, resolved = inspect_file(path, schema)
    state = FileState(next_record_time=pd.Timestamp("1970-01-01"))
    accepted, quarantined = [], []
    for chunk in read_chunks(source, resolved, mode="text", chunk_rows=chunk_rows):
        result = validate_chunk(chunk, resolved, state, path)
        accepted.append(result.accepted.drop(columns="_row"))
        quarantined.append(result.quarantine)
    frame = pd.concat(accepted, ignore_index=True).sort_values(["asset", "timestamp"], kind="stable")
    return frame.reset_index(drop=True), pd.concat(quarantined, ignore_index=True)
