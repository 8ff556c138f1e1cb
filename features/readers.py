"""Reading sensor export files (CSV with any common delimiter, Parquet) into the
stream's normalised layout: `timestamp` (naive UTC), `asset`, one float column per
sensor, then the label columns.

Files are checked against the stream schema before anything is kept: a missing or
unexpected column rejects the file with the difference listed, never a silent
realignment.
"""
from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from features.errors import SchemaError

SUPPORTED_SUFFIXES = (".csv", ".txt", ".parquet", ".pq")


@dataclass(frozen=True)
class StreamSchema:
    sensors: tuple[str, ...]
    timestamp_column: str = "timestamp"
    asset_column: str | None = "asset"
    asset_id: str | None = None  # the asset of every row when the files have no asset column
    label_columns: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self):
        if not self.sensors:
            raise SchemaError("stream schema lists no sensors; expected at least one")
        if (self.asset_column is None) == (self.asset_id is None):
            raise SchemaError("stream schema needs exactly one of asset_column or asset_id")

    @property
    def source_columns(self) -> list[str]:
        asset = [self.asset_column] if self.asset_column else []
        return [self.timestamp_column, *asset, *self.sensors, *self.label_columns]

    @property
    def lake_columns(self) -> list[str]:
        return ["timestamp", "asset", *self.sensors, *self.label_columns]


def file_digest(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """SHA-256 of a file's content, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def sniff_delimiter(path: Path) -> str:
    with open(path, "r", encoding="utf-8", newline="") as fh:
        head = fh.read(64 * 1024)
    if not head.strip():
        raise SchemaError(f"{path}: file is empty; expected a header row and readings")
    try:
        return csv.Sniffer().sniff(head.splitlines()[0], delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def read_table(path: str | Path) -> pa.Table:
    """The raw table of a CSV or Parquet file, all CSV columns read as text."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise SchemaError(f"{path}: unsupported file type '{suffix}'; expected one of {SUPPORTED_SUFFIXES}")
    if suffix in (".parquet", ".pq"):
        try:
            return pq.read_table(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise SchemaError(f"{path}: not a readable Parquet file ({exc})") from exc
    try:
        delimiter = sniff_delimiter(path)
    except UnicodeDecodeError as exc:
        raise SchemaError(f"{path}: not UTF-8 text at byte {exc.start}; expected a UTF-8 CSV") from exc
    with open(path, "r", encoding="utf-8") as fh:
        header = next(csv.reader([fh.readline()], delimiter=delimiter))
    convert = pacsv.ConvertOptions(column_types={name.strip(): pa.string() for name in header})
    try:
        return pacsv.read_csv(
            path,
            parse_options=pacsv.ParseOptions(delimiter=delimiter),
            convert_options=convert,
        )
    except pa.ArrowInvalid as exc:
        raise SchemaError(f"{path}: cannot parse as CSV with delimiter {delimiter!r} ({exc})") from exc


def check_columns(path: Path, columns: list[str], schema: StreamSchema) -> None:
    expected = schema.source_columns
    missing = [c for c in expected if c not in columns]
    unexpected = [c for c in columns if c not in expected]
    if missing or unexpected:
        raise SchemaError(
            f"{path}: columns differ from the stream schema: missing {missing}, unexpected {unexpected}; "
            f"expected {expected}"
        )


def _first_bad(path: Path, column: str, raw: pd.Series, parsed: pd.Series, expected: str) -> None:
    if pd.api.types.is_string_dtype(raw) or raw.dtype == object:
        # an empty field is a missing value (reported as such later), not a malformed one
        bad = parsed.isna() & raw.notna() & (raw.astype("string").str.strip() != "")
    else:
        bad = parsed.isna() & raw.notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise SchemaError(
            f"{path}: data row {row + 1}, column '{column}': value {raw.iloc[row]!r} is not {expected} "
            f"({int(bad.sum())} such rows)"
        )


def read_readings(path: str | Path, schema: StreamSchema) -> pd.DataFrame:
    """Read and validate one file; return the frame in the lake layout, sorted by asset and time."""
    path = Path(path)
    table = read_table(path)
    columns = [c.strip() for c in table.column_names]
    table = table.rename_columns(columns)
    check_columns(path, columns, schema)
    if table.num_rows == 0:
        raise SchemaError(f"{path}: file has a header but no rows")
    raw = table.to_pandas()

    out = pd.DataFrame(index=raw.index)
    ts_raw = raw[schema.timestamp_column]
    ts = pd.to_datetime(ts_raw, errors="coerce", utc=True, format="mixed")
    _first_bad(path, schema.timestamp_column, ts_raw, ts, "a timestamp")
    if ts.isna().any():
        row = int(np.flatnonzero(ts.isna().to_numpy())[0])
        raise SchemaError(f"{path}: data row {row + 1}, column '{schema.timestamp_column}': empty timestamp")
    out["timestamp"] = ts.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[us]")
    if schema.asset_column:
        assets = raw[schema.asset_column].astype("string").str.strip()
        if assets.isna().any() or (assets == "").any():
            row = int(np.flatnonzero((assets.isna() | (assets == "")).to_numpy())[0])
            raise SchemaError(f"{path}: data row {row + 1}, column '{schema.asset_column}': empty asset id")
        out["asset"] = assets.astype(str)
    else:
        out["asset"] = schema.asset_id
    for column in [*schema.sensors, *schema.label_columns]:
        values = pd.to_numeric(raw[column], errors="coerce")
        _first_bad(path, column, raw[column], values, "a number")
        out[column] = values.astype("float64")
    finite = np.isfinite(out[list(schema.sensors)].to_numpy())
    if not finite.all():
        row, col = (int(i) for i in np.argwhere(~finite)[0])
        raise SchemaError(
            f"{path}: data row {row + 1}, column '{schema.sensors[col]}': missing or non-finite reading"
        )
    for column in schema.label_columns:
        out[column] = out[column].fillna(0).astype("int8")
    duplicated = out.duplicated(["asset", "timestamp"])
    if duplicated.any():
        row = int(np.flatnonzero(duplicated.to_numpy())[0])
        raise SchemaError(
            f"{path}: data row {row + 1}: duplicate timestamp {out['timestamp'].iloc[row]} for asset "
            f"'{out['asset'].iloc[row]}' ({int(duplicated.sum())} duplicates)"
        )
    return out.sort_values(["asset", "timestamp"], kind="stable").reset_index(drop=True)
