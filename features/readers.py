"""Reading sensor export files (CSV with any common delimiter, Parquet) as a stream of
raw chunks, in bounded memory.

A file is first checked as a whole (is it CSV or Parquet at all, is it UTF-8 text, is it
empty, do its columns match the stream schema); a problem there rejects the file. Then
its rows come out in chunks of `chunk_rows` for `features.validation` to check row by
row. CSV is read with pyarrow's streaming reader (`pyarrow.csv.open_csv`), Parquet one
row group batch at a time, so a 10 GB export never sits in memory whole.

Two CSV modes: `typed` lets pyarrow parse numbers and timestamps while reading (fast,
multi-threaded); `text` reads every field as text so a bad value can be quarantined with
its raw content. The ingest tries `typed` first and re-reads the file as `text` as soon
as anything in it needs a row-level verdict.
"""
from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from features.errors import SchemaError

SUPPORTED_SUFFIXES = (".csv", ".txt", ".tsv", ".parquet", ".pq")
PARQUET_SUFFIXES = (".parquet", ".pq")
PARQUET_MAGIC = b"PAR1"
LAYOUTS = ("wide", "long")
DUPLICATE_POLICIES = ("first", "last", "drop")
NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-]{0,127}$")


@dataclass(frozen=True)
class StreamSchema:
    """What the files of one stream look like.

    `sensors` lists the sensor columns; an empty tuple with `all_numeric=True` takes every
    column that is not the timestamp, asset or a label as a sensor. `column_aliases` maps a
    header name in the files to the stream's name (a sensor renamed by a firmware update).
    `timestamp_column=None` declares tabular records with no time order: each row gets a
    synthetic, strictly increasing timestamp (see features.validation)."""

    sensors: tuple[str, ...] = ()
    timestamp_column: str | None = "timestamp"
    asset_column: str | None = "asset"
    asset_id: str | None = None  # the asset of every row when the files have no asset column
    label_columns: tuple[str, ...] = field(default_factory=tuple)
    all_numeric: bool = False
    timestamp_format: str | None = None  # strptime format; None: ISO 8601 (any offset)
    timezone: str = "UTC"  # zone of timestamps written without an offset
    layout: str = "wide"  # "wide" (one column per sensor) or "long" (sensor, value columns)
    sensor_column: str = "sensor"  # long layout only
    value_column: str = "value"  # long layout only
    column_aliases: tuple[tuple[str, str], ...] = ()  # (name in the file, name in the stream)
    duplicates: str = "first"  # which of rows sharing (asset, timestamp) is kept
    labels_optional: bool = False  # a file without the label columns is unlabelled (labels 0)
    id_column: str | None = None  # a record id kept in the lake as text (tabular records), not a sensor

    def __post_init__(self):
        if not self.sensors and not self.all_numeric:
            raise SchemaError("stream schema lists no sensors; list them or set all_numeric")
        if (self.asset_column is None) == (self.asset_id is None):
            raise SchemaError("stream schema needs exactly one of asset_column or asset_id")
        if self.layout not in LAYOUTS:
            raise SchemaError(f"layout {self.layout!r}; expected one of {LAYOUTS}")
        if self.layout == "long" and (self.all_numeric or not self.sensors):
            raise SchemaError("a long-layout stream must list its sensors")
        if self.duplicates not in DUPLICATE_POLICIES:
            raise SchemaError(f"duplicates policy {self.duplicates!r}; expected one of {DUPLICATE_POLICIES}")
        for name in (*self.sensors, *self.label_columns, *([self.id_column] if self.id_column else [])):
            if not NAME.match(name) or name in ("timestamp", "asset", "date"):
                raise SchemaError(
                    f"column name {name!r} cannot be a lake column; use letters, digits, '_' or '-' "
                    "(map it with column_aliases), and not timestamp, asset or date"
                )
        if self.id_column and self.id_column in (*self.sensors, *self.label_columns):
            raise SchemaError(f"id_column {self.id_column!r} is also a sensor or label; a record id is neither")
        if self.timestamp_format is not None:
            try:  # a format pandas cannot use fails here, not on the first file
                pd.to_datetime(pd.Series(["2026-01-01"]), format=self.timestamp_format, errors="coerce")
            except ValueError as exc:
                raise SchemaError(f"timestamp_format {self.timestamp_format!r} is not a strptime format ({exc})") \
                    from exc
        try:
            pd.Timestamp("2026-01-01").tz_localize(self.timezone)
        except (KeyError, ValueError) as exc:
            raise SchemaError(f"timezone {self.timezone!r} is not a known time zone ({exc})") from exc

    @property
    def fixed_columns(self) -> list[str]:
        """Source columns that are not sensors: timestamp, asset, record id, labels."""
        ts = [self.timestamp_column] if self.timestamp_column else []
        asset = [self.asset_column] if self.asset_column else []
        record = [self.id_column] if self.id_column else []
        return [*ts, *asset, *record, *self.label_columns]

    @property
    def source_columns(self) -> list[str]:
        keys = [c for c in self.fixed_columns if c not in self.label_columns]
        if self.layout == "long":
            return [*keys, self.sensor_column, self.value_column, *self.label_columns]
        return [*keys, *self.sensors, *self.label_columns]

    @property
    def lake_columns(self) -> list[str]:
        return ["timestamp", "asset", *([self.id_column] if self.id_column else []), *self.sensors,
                *self.label_columns]

    def resolve(self, columns: list[str]) -> StreamSchema:
        """The schema with `all_numeric` sensors taken from a file's columns."""
        if not self.all_numeric or self.sensors:
            return self
        fixed = set(self.fixed_columns)
        sensors = tuple(c for c in columns if c not in fixed)
        if not sensors:
            raise SchemaError(f"no sensor columns besides {sorted(fixed)}")
        return replace(self, sensors=sensors, all_numeric=False)


def file_digest(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """SHA-256 of a file's content, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class SourceFile:
    """A file that passed the whole-file checks: its format and its (aliased) header."""

    path: Path
    kind: str  # "csv" or "parquet"
    columns: list[str]  # names after stripping and aliasing, in file order
    raw_columns: list[str]  # names as written in the file
    delimiter: str = ","
    skip_bytes: int = 0  # a UTF-8 byte-order mark
    line_bytes: float = 100.0  # average length of the first lines, to size read blocks


def inspect_file(path: str | Path, schema: StreamSchema) -> tuple[SourceFile, StreamSchema]:
    """Whole-file checks: format, encoding, emptiness, header against the schema.
    Returns the file description and the schema resolved against it (all_numeric)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise SchemaError(f"{path}: unsupported file type '{suffix}'; expected one of {SUPPORTED_SUFFIXES}")
    with open(path, "rb") as fh:
        head = fh.read(64 * 1024)
    if not head.strip():
        raise SchemaError(f"{path}: file is empty; expected a header row and readings")
    aliases = dict(schema.column_aliases)
    if suffix in PARQUET_SUFFIXES or head.startswith(PARQUET_MAGIC):
        if not head.startswith(PARQUET_MAGIC):
            raise SchemaError(f"{path}: not a Parquet file (no PAR1 magic bytes); expected Parquet or CSV")
        try:
            raw = pq.ParquetFile(path).schema_arrow.names
        except (pa.ArrowInvalid, OSError) as exc:
            raise SchemaError(f"{path}: not a readable Parquet file ({exc})") from exc
        source = SourceFile(path, "parquet", [aliases.get(c.strip(), c.strip()) for c in raw], list(raw))
    else:
        source = _inspect_csv(path, head, aliases)
    schema = schema.resolve([c for c in source.columns if c])
    check_columns(path, source.columns, schema)
    return source, schema


def _inspect_csv(path: Path, head: bytes, aliases: dict) -> SourceFile:
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise SchemaError(f"{path}: UTF-16 text; expected UTF-8 (re-export the file as UTF-8 CSV)")
    if b"\x00" in head:
        raise SchemaError(f"{path}: binary content (NUL bytes); expected a CSV text file or Parquet")
    skip = 3 if head.startswith(b"\xef\xbb\xbf") else 0
    try:
        text = head[skip:].decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - skip - 4:  # not just a multi-byte character cut by the 64 KiB read
            raise SchemaError(
                f"{path}: not UTF-8 text at byte {exc.start + skip}; expected a UTF-8 CSV"
            ) from exc
        text = head[skip: skip + exc.start].decode("utf-8")
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise SchemaError(f"{path}: file is empty; expected a header row and readings")
    try:
        delimiter = csv.Sniffer().sniff(lines[0], delimiters=",;\t|").delimiter
    except csv.Error:
        delimiter = ","
    header = next(csv.reader([lines[0]], delimiter=delimiter))
    if len(header) < 2:
        raise SchemaError(
            f"{path}: header {lines[0][:80]!r} has a single column; expected a delimited header "
            "(',', ';', tab or '|')"
        )
    raw = [c.strip() for c in header]
    columns = [aliases.get(c, c) for c in raw]
    line_bytes = len(text.encode("utf-8")) / max(len(text.splitlines()), 1)
    return SourceFile(path, "csv", columns, header, delimiter, skip, line_bytes)


def check_columns(path: Path, columns: list[str], schema: StreamSchema) -> None:
    """A file's columns must be the schema's: never a silent realignment."""
    named = [c for c in columns if c]  # a trailing delimiter leaves one unnamed empty column
    expected = schema.source_columns
    missing = [c for c in expected if c not in named]
    if schema.labels_optional:
        missing = [c for c in missing if c not in schema.label_columns]
    unexpected = [c for c in named if c not in expected]
    dupes = sorted({c for c in named if named.count(c) > 1})
    if missing or unexpected or dupes or len(columns) - len(named) > 1:
        extra = f", repeated {dupes}" if dupes else ""
        raise SchemaError(
            f"{path}: columns differ from the stream schema: missing {missing}, unexpected {unexpected}{extra}; "
            f"expected {expected}"
        )


@dataclass(frozen=True)
class Chunk:
    table: pa.Table  # the rows, with the stream's column names
    rows: np.ndarray  # data row number of each row: line number in the file - 1 (the header is line 1)
    invalid: list  # (data row, text, n_fields) of lines with the wrong number of fields


def read_chunks(source: SourceFile, schema: StreamSchema, *, mode: str = "text",
                chunk_rows: int = 1 << 20) -> Iterator[Chunk]:
    """The file's rows, about `chunk_rows` at a time, with the stream's column names.

    mode "text": every CSV field as a string (nulls only for empty fields), rows numbered
    by their line in the file. mode "typed": sensors and labels as float64, the timestamp
    parsed by pyarrow (ISO 8601 or the schema's format); raises pyarrow.ArrowInvalid on the
    first value it cannot convert, and numbers rows by their position only (blank lines
    not counted): the typed read is for files with nothing to quarantine.

    A long-layout file comes as one chunk: the rows of one (asset, timestamp) may lie
    anywhere in it, and it is pivoted whole."""
    if schema.layout == "long":
        chunk_rows = 1 << 62
    if source.kind == "parquet":
        pf = pq.ParquetFile(source.path)
        first = 1
        for batch in pf.iter_batches(batch_size=chunk_rows):
            table = pa.Table.from_batches([batch]).rename_columns(source.columns)
            yield Chunk(table, np.arange(first, first + table.num_rows, dtype=np.int64), [])
            first += table.num_rows
        return
    names = [c if c else f"_unnamed_{i}" for i, c in enumerate(source.columns)]
    if mode == "typed":
        types = {c: pa.float64() for c in [*schema.sensors, *schema.label_columns] if schema.layout == "wide"}
        if schema.layout == "long":
            types[schema.value_column] = pa.float64()
        if schema.timestamp_column:
            types[schema.timestamp_column] = pa.timestamp("us")
        for c in names:
            types.setdefault(c, pa.string())
        convert = pacsv.ConvertOptions(
            column_types=types, strings_can_be_null=False,
            timestamp_parsers=[schema.timestamp_format] if schema.timestamp_format else None,
        )
        blank = np.empty(0, dtype=np.int64)
    else:
        convert = pacsv.ConvertOptions(
            column_types={c: pa.string() for c in names}, null_values=[""], strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        )
        blank = _blank_lines(source)
    invalid: list = []  # lines with the wrong number of fields, not yet reported in a chunk
    skipped_lines: list = []  # every such line so far: later rows are numbered around them

    # pyarrow numbers rows without the blank lines it skips: the k-th non-blank data line is
    # line k + (blank lines before it), i.e. k + #{i: blank[i] - i <= k}
    blank_shift = blank - np.arange(len(blank))

    def on_invalid(row) -> str:
        number = None
        if row.number is not None:
            k = row.number - 1
            number = int(k + np.searchsorted(blank_shift, k, side="right"))
        invalid.append((number, row.text, row.actual_columns))
        if number is not None:
            skipped_lines.append(number)
        return "skip"

    # The text read is single-threaded so that lines reach the handler in order. Blocks are
    # small (1 MiB): the streaming reader parses several ahead, so its memory is a multiple of
    # the block size (16 MiB blocks cost ~500 MB, 1 MiB blocks ~60 MB, and read as fast).
    block = int(min(1 << 20, max(1 << 14, chunk_rows * source.line_bytes)))
    read = pacsv.ReadOptions(column_names=names, skip_rows=1, block_size=block, use_threads=mode == "typed")
    parse = pacsv.ParseOptions(delimiter=source.delimiter, ignore_empty_lines=True, invalid_row_handler=on_invalid)
    next_row = 1  # data row number of the next line not yet accounted for
    # a native Arrow file: reads do not go through Python (and its lock)
    with pa.OSFile(str(source.path), "rb") as fh:
        fh.seek(source.skip_bytes)
        reader = pacsv.open_csv(fh, read_options=read, parse_options=parse, convert_options=convert)
        pending: list[pa.RecordBatch] = []
        n_pending = 0

        def flush() -> Chunk:
            nonlocal next_row, n_pending
            table = _drop_unnamed(pa.Table.from_batches(pending, schema=reader.schema))
            skipped = np.union1d(blank, skipped_lines).astype(np.int64)
            rows = _row_numbers(next_row, table.num_rows, skipped)
            chunk = Chunk(table, rows, list(invalid))
            if table.num_rows:
                next_row = int(rows[-1]) + 1
            invalid.clear()
            pending.clear()
            n_pending = 0
            return chunk

        for batch in reader:
            offset = 0
            while offset < batch.num_rows:
                take = min(batch.num_rows - offset, chunk_rows - n_pending)
                pending.append(batch.slice(offset, take))
                n_pending += take
                offset += take
                if n_pending >= chunk_rows:
                    yield flush()
        if pending or invalid:
            yield flush()


def _row_numbers(first: int, n: int, skipped: np.ndarray) -> np.ndarray:
    """Data row numbers of n rows read in order from row `first` on, stepping over the
    rows in `skipped` (blank lines and lines with the wrong number of fields)."""
    skipped = skipped[skipped >= first]
    candidates = np.arange(first, first + n + len(skipped), dtype=np.int64)
    return np.setdiff1d(candidates, skipped, assume_unique=True)[:n]


def _blank_lines(source: SourceFile) -> np.ndarray:
    """Data row numbers of blank lines (pyarrow skips them; the row numbers must not)."""
    found = []
    with open(source.path, "rb") as fh:
        fh.seek(source.skip_bytes)
        fh.readline()
        for i, line in enumerate(fh, start=1):
            if not line.strip():
                found.append(i)
    return np.asarray(found, dtype=np.int64)


def _drop_unnamed(table: pa.Table) -> pa.Table:
    return table.drop_columns([c for c in table.column_names if c.startswith("_unnamed_")])


def read_raw_lines(path: Path, batch: int = 50_000) -> Iterator[list[str]]:
    """The data lines of a text file (header and blank lines left out), decoded with
    replacement characters (UTF-16 when the file starts with its byte-order mark, else
    UTF-8): what goes to quarantine when the file itself is rejected."""
    with open(path, "rb") as fh:
        bom = fh.read(2)
    encoding = "utf-16" if bom in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
    with open(path, encoding=encoding, errors="replace", newline="") as fh:
        fh.readline()
        lines: list[str] = []
        for line in fh:
            text = line.rstrip("\r\n")
            if text.strip():
                lines.append(text)
            if len(lines) >= batch:
                yield lines
                lines = []
        if lines:
            yield lines
