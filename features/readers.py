"""Reading sensor export files (CSV with any common delimiter, Parquet) as a stream of
raw chunks, in bounded memory.

A file is first checked as a whole (is it CSV or Parquet at all, is it UTF-8 text, is it
empty, do its columns match the stream schema); a problem there rejects the file. Then
its rows come out in chunks of `chunk_rows` for `features.validation` to check row by
row. CSV is read a block at a time, Parquet one row group batch at a time, so a 10 GB
export never sits in memory whole.

Two CSV modes: `typed` lets pyarrow parse numbers and timestamps while reading, blocks of
whole lines each parsed on all cores (`pyarrow.csv.read_csv`); `text` reads every field
as text with pyarrow's streaming reader, on one thread so that malformed lines are met in
order, so a bad value can be quarantined with its raw content. The ingest tries `typed`
first and re-reads the file as `text` as soon as anything in it needs a row-level verdict.
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import re
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
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
# Files that are another format altogether, known by their first bytes: rejected whole, named.
# Magic bytes are long enough (or patterns) that no CSV header starts with them.
MAGIC_FORMATS: tuple[tuple[bytes | re.Pattern[bytes], str, str], ...] = (  # (first bytes, what it is, what to do)
    (b"\x1f\x8b", "a gzip file", "decompress it first"),
    (re.compile(rb"BZh[1-9]1AY&SY"), "a bzip2 file", "decompress it first"),
    (b"\xfd7zXZ\x00", "an xz file", "decompress it first"),
    (b"\x28\xb5\x2f\xfd", "a zstd file", "decompress it first"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive", "extract it first"),
    (b"PK\x03\x04", "a ZIP archive (or an xlsx/ods workbook)", "extract it, or save the sheet as CSV"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an Excel 97-2003 workbook (OLE2 document)", "save the sheet as CSV"),
    (b"%PDF-", "a PDF document", ""),
    (b"\x89PNG\r\n\x1a\n", "a PNG image", ""),
    (b"\xff\xd8\xff", "a JPEG image", ""),
    (re.compile(rb"GIF8[79]a"), "a GIF image", ""),
    (b"\x7fELF", "an ELF executable", ""),
    (b"SQLite format 3\x00", "an SQLite database", "export the table as CSV"),
    (b"ARROW1", "an Arrow IPC file", "write it as Parquet"),
)
DEFAULT_ACCEPT_FROM = "1970-01-01"
DEFAULT_ACCEPT_AHEAD_HOURS = 24.0
# the accepted range stays inside the span of nanosecond timestamps (1677-09-21 to 2262-04-11),
# which time-grid and window arithmetic downstream use
EARLIEST_ACCEPTED = pd.Timestamp("1678-01-01")
LATEST_ACCEPTED = pd.Timestamp("2262-01-01")
MAX_AHEAD_HOURS = 24.0 * 366 * 100
# The typed CSV read takes the file in blocks of whole lines of TYPED_BLOCK_BYTES, and pyarrow
# parses each in parallel pieces of TYPED_PARSE_BYTES (sizes measured by bench/ingest_throughput.py)
TYPED_BLOCK_BYTES = 32 << 20
TYPED_PARSE_BYTES = 1 << 20


@dataclass(frozen=True)
class StreamSchema:
    """What the files of one stream look like.

    `sensors` lists the sensor columns; an empty tuple with `all_numeric=True` takes every
    column that is not the timestamp, asset or a label as a sensor. `column_aliases` maps a
    header name in the files to the stream's name (a sensor renamed by a firmware update).
    `timestamp_column=None` declares tabular records with no time order: each row gets a
    synthetic, strictly increasing timestamp (see features.validation). `ignore_columns`
    names columns the files may carry that the stream does not keep (an export's comment or
    quality-flag column): dropped at read, never stored, never a sensor."""

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
    # readings before `accept_from` (naive UTC) or later than `accept_ahead_hours` after now
    # are quarantined: a clock reset to 1970 or a year-9999 sentinel is a fault, not a reading
    accept_from: str = DEFAULT_ACCEPT_FROM
    accept_ahead_hours: float = DEFAULT_ACCEPT_AHEAD_HOURS
    ignore_columns: tuple[str, ...] = ()  # names after column_aliases

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
            if not NAME.fullmatch(name) or name in ("timestamp", "asset", "date"):
                raise SchemaError(
                    f"column name {name!r} cannot be a lake column; use letters, digits, '_' or '-' "
                    "(map it with column_aliases), and not timestamp, asset or date"
                )
        if self.id_column and self.id_column in (*self.sensors, *self.label_columns):
            raise SchemaError(f"id_column {self.id_column!r} is also a sensor or label; a record id is neither")
        kept = [*self.fixed_columns, *self.sensors,
                *([self.sensor_column, self.value_column] if self.layout == "long" else [])]
        both = [c for c in self.ignore_columns if c in kept]
        if both:
            raise SchemaError(f"ignore_columns {both} are also columns the stream keeps (timestamp, asset, record "
                              "id, sensor or label); a column is either kept or ignored")
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
        try:
            start = pd.Timestamp(self.accept_from)
        except (TypeError, ValueError) as exc:
            raise SchemaError(f"accept_from {self.accept_from!r} is not a timestamp; expected ISO form like "
                              f"{DEFAULT_ACCEPT_FROM}") from exc
        if start is pd.NaT or start.tz is not None or not EARLIEST_ACCEPTED <= start < LATEST_ACCEPTED:
            raise SchemaError(f"accept_from {self.accept_from!r}; expected a time without offset (UTC) from "
                              f"{EARLIEST_ACCEPTED.date()} to before {LATEST_ACCEPTED.date()}")
        if not 0 <= self.accept_ahead_hours <= MAX_AHEAD_HOURS:
            raise SchemaError(f"accept_ahead_hours {self.accept_ahead_hours}; expected 0 to {MAX_AHEAD_HOURS:.0f} "
                              "(readings later than now + this many hours are a clock fault)")

    def accepted_range(self, now: pd.Timestamp | None = None) -> tuple[pd.Timestamp, pd.Timestamp]:
        """(earliest, latest) reading time accepted, naive UTC: `accept_from` to now plus
        `accept_ahead_hours` (never past LATEST_ACCEPTED)."""
        now = pd.Timestamp.now(tz="UTC").tz_localize(None) if now is None else now
        latest = min(now + pd.Timedelta(hours=self.accept_ahead_hours), LATEST_ACCEPTED)
        return pd.Timestamp(self.accept_from), latest.floor("s")

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
        fixed = {*self.fixed_columns, *self.ignore_columns}
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
        what = binary_format(head, "Parquet")
        if what is not None:
            raise SchemaError(f"{path}: {what}")
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


def binary_format(head: bytes, expected: str = "CSV") -> str | None:
    """What a file is when its first bytes are another format's magic bytes (gzip, ZIP,
    PNG, PDF, ...) and what to do: `a gzip file, not CSV; decompress it first`; else None."""
    for magic, what, advice in MAGIC_FORMATS:
        if head.startswith(magic) if isinstance(magic, bytes) else magic.match(head):
            return f"{what}, not {expected}" + (f"; {advice}" if advice else "")
    return None


def _inspect_csv(path: Path, head: bytes, aliases: dict) -> SourceFile:
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise SchemaError(f"{path}: UTF-16 text; expected UTF-8 (re-export the file as UTF-8 CSV)")
    what = binary_format(head)
    if what is not None:
        raise SchemaError(f"{path}: {what}")
    skip = 3 if head.startswith(b"\xef\xbb\xbf") else 0
    # NUL bytes in the header: binary content. NUL bytes in a data line are that line's
    # problem, wherever it is: the line is quarantined (read_chunks), the others kept.
    first = head[skip:].lstrip(b" \t\r\n").split(b"\n", 1)[0]
    if b"\x00" in first:
        raise SchemaError(f"{path}: binary content (NUL bytes in the header line); expected a CSV text file "
                          "or Parquet")
    try:
        text = head[skip:].replace(b"\x00", b" ").decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - skip - 4:  # not just a multi-byte character cut by the 64 KiB read
            raise SchemaError(
                f"{path}: not UTF-8 text at byte {exc.start + skip}; expected a UTF-8 CSV"
            ) from exc
        text = head[skip: skip + exc.start].replace(b"\x00", b" ").decode("utf-8")
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
    # a trailing delimiter leaves one unnamed empty column; ignored columns may or may not be there
    named = [c for c in columns if c and c not in schema.ignore_columns]
    expected = schema.source_columns
    missing = [c for c in expected if c not in named]
    if schema.labels_optional:
        missing = [c for c in missing if c not in schema.label_columns]
    unexpected = [c for c in named if c not in expected]
    dupes = sorted({c for c in named if named.count(c) > 1})
    if missing or unexpected or dupes or sum(not c for c in columns) > 1:
        extra = f", repeated {dupes}" if dupes else ""
        hint = ("; a column the stream should not keep goes in the stream's ignore_columns, a renamed one in "
                "column_aliases") if unexpected else ""
        raise SchemaError(
            f"{path}: columns differ from the stream schema: missing {missing}, unexpected {unexpected}{extra}; "
            f"expected {expected}{hint}"
        )


@dataclass(frozen=True)
class Chunk:
    table: pa.Table  # the rows, with the stream's column names
    rows: np.ndarray  # data row number of each row: line number in the file - 1 (the header is line 1)
    invalid: list  # (data row, text, n_fields) of lines with the wrong number of fields
    broken: list = field(default_factory=list)  # (data row, text, reason) of lines that are not text
    fields: int = 0  # fields of a line of the file (ignored columns included); 0: the table's columns

    @property
    def n_fields(self) -> int:
        return self.fields or self.table.num_columns


def read_chunks(source: SourceFile, schema: StreamSchema, *, mode: str = "text",
                chunk_rows: int = 1 << 20) -> Iterator[Chunk]:
    """The file's rows, about `chunk_rows` at a time, with the stream's column names.

    mode "text": every CSV field as a string (nulls only for empty fields), rows numbered
    by their line in the file. mode "typed": sensors and labels as float64, the timestamp
    parsed by pyarrow (ISO 8601 or the schema's format); raises pyarrow.ArrowInvalid on the
    first value it cannot convert, and numbers rows by their position only (blank lines
    not counted): the typed read is for files with nothing to quarantine.

    A long-layout file comes as one chunk: the rows of one (asset, timestamp) may lie
    anywhere in it, and it is pivoted whole. The schema's ignore_columns are dropped."""
    if schema.layout == "long":
        chunk_rows = 1 << 62
    if source.kind == "parquet":
        pf = pq.ParquetFile(source.path)
        first = 1
        for batch in pf.iter_batches(batch_size=chunk_rows):
            table = _drop_ignored(pa.Table.from_batches([batch]).rename_columns(source.columns), schema)
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
        broken: list = []
    else:
        convert = pacsv.ConvertOptions(
            column_types={c: pa.string() for c in names}, null_values=[""], strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        )
        blank, broken = _scan_lines(source)
        blank = np.union1d(blank, np.asarray([r for r, _, _ in broken], dtype=np.int64)).astype(np.int64)
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

    parse = pacsv.ParseOptions(delimiter=source.delimiter, ignore_empty_lines=True, invalid_row_handler=on_invalid)
    next_row = 1  # data row number of the next line not yet accounted for
    with contextlib.ExitStack() as stack:
        reader: Iterator[pa.RecordBatch]
        if mode == "typed":
            reader = _typed_batches(source, names, parse, convert)
            batch_schema = pa.schema([(c, convert.column_types[c]) for c in names])
        else:
            # The text read is single-threaded so that lines reach the handler in order. Blocks
            # are small (1 MiB): the streaming reader parses several ahead, so its memory is a
            # multiple of the block size (16 MiB blocks cost ~500 MB, 1 MiB blocks ~60 MB, and
            # read as fast). A native Arrow file: reads do not go through Python (and its lock);
            # lines with NUL bytes reach pyarrow as blank lines (quarantined as broken).
            block = int(min(1 << 20, max(1 << 14, chunk_rows * source.line_bytes)))
            read = pacsv.ReadOptions(column_names=names, skip_rows=1, block_size=block, use_threads=False)
            fh = stack.enter_context(_BlankedLines(source, {r for r, _, _ in broken}) if broken
                                     else pa.OSFile(str(source.path), "rb"))
            if not broken:
                fh.seek(source.skip_bytes)
            stream = pacsv.open_csv(fh, read_options=read, parse_options=parse, convert_options=convert)
            reader, batch_schema = stream, stream.schema
        pending: list[pa.RecordBatch] = []
        n_pending = 0

        def flush() -> Chunk:
            nonlocal next_row, n_pending
            table = _drop_unnamed(pa.Table.from_batches(pending, schema=batch_schema))
            fields = table.num_columns  # a line's fields: the unnamed trailing one not counted, as before
            table = _drop_ignored(table, schema)
            skipped = np.union1d(blank, skipped_lines).astype(np.int64)
            rows = _row_numbers(next_row, table.num_rows, skipped)
            chunk = Chunk(table, rows, list(invalid), list(broken), fields)
            broken.clear()  # reported once, with the first chunk
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
        if pending or invalid or broken:
            yield flush()


def _typed_batches(source: SourceFile, names: list[str], parse: pacsv.ParseOptions,
                   convert: pacsv.ConvertOptions, block_bytes: int | None = None) -> Iterator[pa.RecordBatch]:
    """The typed read: the file in blocks of whole lines, each parsed by pyarrow's
    multithreaded table reader (all cores on one block; pyarrow's streaming reader parses
    on one), the next block read and parsed on a background thread while the caller works
    on this one. Two block buffers, reused (fresh memory for each block costs as much as
    reading it): one being parsed while the other is filled."""
    options = [pacsv.ReadOptions(column_names=names, skip_rows=skip, block_size=TYPED_PARSE_BYTES)
               for skip in (1, 0)]  # the header is in the first block only
    size = block_bytes or TYPED_BLOCK_BYTES
    buffers = [bytearray(size), bytearray(size)]

    def parsed(block: memoryview, first: bool) -> pa.Table:
        return pacsv.read_csv(pa.py_buffer(block), read_options=options[0 if first else 1], parse_options=parse,
                              convert_options=convert)

    with open(source.path, "rb", buffering=0) as fh, \
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="aemon-csv") as pool:
        fh.seek(source.skip_bytes)
        ahead: Future | None = None
        tail = b""  # the start of a line cut by the end of the previous block
        n_blocks = 0
        at_end = False
        while not at_end:
            slot = n_blocks % 2  # the other buffer's block may still be parsing
            buf = buffers[slot]
            if len(buf) < 2 * len(tail):  # a line longer than half a block
                buf = buffers[slot] = bytearray(4 * len(tail))
            buf[:len(tail)] = tail
            end = len(tail) + _fill(fh, memoryview(buf)[len(tail):])
            at_end = end < len(buf)
            cut = end if at_end else (buf.rfind(b"\n", 0, end) + 1 or buf.rfind(b"\r", 0, end) + 1)
            tail = bytes(buf[cut:end])
            if cut == 0:
                continue  # no line end in the whole buffer: a larger one next
            future = pool.submit(parsed, memoryview(buf)[:cut], n_blocks == 0)
            n_blocks += 1
            if ahead is not None:
                yield from ahead.result().to_batches()
            ahead = future
        if ahead is not None:
            yield from ahead.result().to_batches()


def _fill(fh, view: memoryview) -> int:
    """Read into `view` until it is full or the file ends; the number of bytes read."""
    n = 0
    while n < len(view):
        got = fh.readinto(view[n:])
        if not got:
            break
        n += got
    return n


def _row_numbers(first: int, n: int, skipped: np.ndarray) -> np.ndarray:
    """Data row numbers of n rows read in order from row `first` on, stepping over the
    rows in `skipped` (blank lines and lines with the wrong number of fields)."""
    skipped = skipped[skipped >= first]
    if not len(skipped):
        return np.arange(first, first + n, dtype=np.int64)
    candidates = np.arange(first, first + n + len(skipped), dtype=np.int64)
    return np.setdiff1d(candidates, skipped, assume_unique=True)[:n]


_BLANK = np.zeros(256, dtype=bool)
_BLANK[list(b" \t\n\r\x0b\x0c")] = True  # what bytes.strip() strips


def _scan_lines(source: SourceFile, block_bytes: int = 8 << 20) -> tuple[np.ndarray, list]:
    """Data row numbers of blank lines (pyarrow skips them; the row numbers must not), and
    (data row, text, reason) of lines with NUL bytes: binary garbage in a text file. Lines
    end at a newline; a blank line holds nothing that bytes.strip() keeps. Scanned a block
    at a time with numpy: only lines that start with whitespace or hold a NUL byte are
    looked at one by one."""
    found: list[int] = []
    broken = []

    def scan(block: bytes, first: int) -> None:
        """The lines of `block` (each ending at a newline but maybe the last), data row `first` on."""
        data = np.frombuffer(block, dtype=np.uint8)
        ends = np.flatnonzero(data == 10) + 1
        if not len(ends) or ends[-1] != len(data):
            ends = np.append(ends, len(data))
        starts = np.concatenate([[0], ends[:-1]])
        maybe_blank = np.flatnonzero(_BLANK[data[starts]])
        with_nul = np.searchsorted(ends, np.flatnonzero(data == 0), side="right")
        for line in np.union1d(maybe_blank, with_nul):
            text = block[starts[line]:ends[line]]
            row = first + int(line)
            if not text.strip():
                found.append(row)
            elif b"\x00" in text:
                broken.append((row, printable(text), f"data row {row}: NUL bytes in the line (binary content in a "
                                                     "text file); expected a CSV line"))

    with open(source.path, "rb") as fh:
        fh.seek(source.skip_bytes)
        fh.readline()
        row = 1
        tail = b""
        while data := fh.read(block_bytes):
            data = tail + data if tail else data
            cut = data.rfind(b"\n") + 1
            tail = data[cut:]
            if cut:
                scan(data[:cut], row)
                row += data.count(b"\n", 0, cut)
        if tail:
            scan(tail, row)
    return np.asarray(found, dtype=np.int64), broken


def printable(line: bytes) -> str:
    """A raw line as text to keep in quarantine: bytes that are not UTF-8 and NUL bytes escaped."""
    text = line.decode("utf-8", errors="backslashreplace").rstrip("\r\n")
    return text.replace("\x00", "\\x00")


class _BlankedLines(io.RawIOBase):
    """A CSV file read from after its byte-order mark, with some data lines (numbered as
    data rows: the header is row 0) given as empty lines."""

    def __init__(self, source: SourceFile, rows: set[int]):
        self._fh = open(source.path, "rb")  # noqa: SIM115 (closed with this stream)
        self._fh.seek(source.skip_bytes)
        self._rows = rows
        self._row = -1
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        while not self._buffer:
            line = self._fh.readline()
            if not line:
                return 0
            self._row += 1
            self._buffer = b"\n" if self._row in self._rows else line
        n = min(len(target), len(self._buffer))
        target[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n

    def close(self) -> None:
        self._fh.close()
        super().close()


def _drop_unnamed(table: pa.Table) -> pa.Table:
    return table.drop_columns([c for c in table.column_names if c.startswith("_unnamed_")])


def _drop_ignored(table: pa.Table, schema: StreamSchema) -> pa.Table:
    return table.drop_columns([c for c in table.column_names if c in schema.ignore_columns])


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
            text = line.rstrip("\r\n").replace("\x00", "\\x00")
            if text.strip():
                lines.append(text)
            if len(lines) >= batch:
                yield lines
                lines = []
        if lines:
            yield lines
