"""Ingesting one file: content hash -> whole-file checks -> chunked row validation ->
staged lake parts -> commit + audit row + quarantine, all or nothing per file.

Every row of a file ends in exactly one place: the lake, or `quarantine` with its reason
and raw content (`rows_in = rows_accepted + rows_quarantined`, checked on every batch).
A file is known by the SHA-256 of its content, so the same readings under another name
are not ingested twice, and a row whose (asset, timestamp) is already in the lake is
quarantined as a duplicate rather than stored twice. A rejected file (not CSV or Parquet,
wrong encoding, empty, columns that differ from the stream schema) stays where it is,
with an audit row naming the reason and its rows, when readable, in quarantine; it is not
retried until asked (`retry_rejected`), so a scheduled ingest does not log the same
failure every few minutes.

The cost of a scheduled ingest does not grow with the files left in the inbox: every
processed file is noted in the inbox manifest (`inbox_files`) with the size and
modification time it had when it was hashed, and `scan_inbox` passes over a file whose
name, size and mtime are unchanged without reading it. A file that changed (or is new) is
hashed again, so the same content under another name is still known by its hash.

The inbox is a folder or an object-store URI (`s3://bucket/prefix`): an object is named by its
URI, its size and last-modified time stand for a file's stat, and its rows are read from a
local copy (monitoring.store.inbox says how and why); everything else is the same.
"""
from __future__ import annotations

import shutil
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.errors import SchemaError
from features.readers import (
    SUPPORTED_SUFFIXES,
    SourceFile,
    StreamSchema,
    binary_format,
    file_digest,
    inspect_file,
    read_chunks,
    read_raw_lines,
)
from features.validation import (
    ChunkResult,
    CleanChunk,
    FileState,
    accept_clean,
    label_intervals,
    move_to_quarantine,
    raw_json,
    validate_chunk,
    validate_clean,
)
from monitoring.store import lake
from monitoring.store.audit import (
    batch_status,
    clear_quarantine_of,
    inbox_manifest,
    load_quarantine,
    record_batch,
    record_inbox_file,
    write_quarantine,
)
from monitoring.store.connection import Warehouse, connect, is_uri, quote_identifier, write
from monitoring.store.inbox import InboxObject, archive_object, fetched, list_objects
from monitoring.store.readings import (
    asset_time_ranges,
    existing_times,
    lake_columns,
    register_parts,
    registered_parts,
)
from monitoring.store.results import add_rescore_range, get_watermarks

CHUNK_ROWS = 1 << 19

# A file of an inbox: a local path, or the URI of an object (`s3://bucket/prefix/name.csv`).
InboxPath = Path | str


@dataclass(frozen=True)
class BatchResult:
    batch_id: str
    stream: str
    file: str
    file_hash: str
    rows_in: int
    rows_accepted: int
    rows_quarantined: int
    status: str  # "ok", "rejected", or "skipped" (content already ingested)
    error: str | None = None
    rows_duplicate: int = 0
    rows_out_of_order: int = 0
    rows_late: int = 0  # accepted rows at or before an asset's scoring watermark (rescored)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def in_lake(self) -> bool:
        """The file's content is in the lake: ingested now, or before (under any name)."""
        return self.status == "ok" or (self.status == "skipped" and self.error == "content already ok")


class RetryAsText(Exception):
    """The fast typed read met something that needs a row-level verdict; read the file as text."""


def list_inbox(inbox: Path | str) -> list[InboxPath]:
    """Files waiting in a stream's inbox, oldest name first; hidden and partial files are
    skipped, and so are files of other types (they are not exports). An inbox URI lists the
    objects directly under it."""
    return [entry for entry, _, _ in _inbox_entries(inbox)]


def file_name(path: InboxPath) -> str:
    """The name of an inbox file without its folder or prefix (for messages)."""
    return path.rsplit("/", 1)[-1] if isinstance(path, str) else path.name


def _inbox_entries(inbox: Path | str) -> list[tuple[InboxPath, int, int]]:
    """(file, size in bytes, modification time in ns) of every file in the inbox: one stat a
    file, or one listing of the objects under an inbox URI."""
    if isinstance(inbox, str) and is_uri(inbox):
        return [(o.uri, o.size, o.mtime_ns) for o in list_objects(inbox)]
    folder = Path(inbox)
    if not folder.exists():
        return []
    files = sorted(
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in SUPPORTED_SUFFIXES
    )
    entries: list[tuple[InboxPath, int, int]] = []
    for path in files:
        stat = path.stat()
        entries.append((path, stat.st_size, stat.st_mtime_ns))
    return entries


@dataclass(frozen=True)
class InboxScan:
    """What a stream's inbox holds: the files to ingest, and those passed over because their
    name, size and modification time are those they had when last processed: content in
    the lake (`unchanged`) or content rejected and not to be retried (`rejected`)."""

    pending: list[InboxPath]
    unchanged: list[InboxPath]
    rejected: list[InboxPath]

    @property
    def n_unchanged(self) -> int:
        return len(self.unchanged) + len(self.rejected)


def scan_inbox(warehouse: Warehouse, stream: str, inbox: Path | str, *, retry_rejected: bool = False) -> InboxScan:
    """The inbox's files less those unchanged since their last ingest (by the manifest): one
    stat per file (one listing of an inbox URI) and one query, no file read. A file whose
    content was rejected counts as unchanged unless `retry_rejected`."""
    quote_identifier(stream)
    entries = _inbox_entries(inbox)
    if not entries or not warehouse.exists():
        return InboxScan([entry for entry, _, _ in entries], [], [])
    with connect(warehouse) as con:
        manifest = inbox_manifest(con, stream)
    done = {"ok", "rejected"} if not retry_rejected else {"ok"}
    scan = InboxScan([], [], [])
    for path, size, mtime_ns in entries:
        known = manifest.get(str(path))
        if known is None or known[:2] != (size, mtime_ns) or known[3] not in done:
            scan.pending.append(path)
        else:
            (scan.unchanged if known[3] == "ok" else scan.rejected).append(path)
    return scan


def remove_stale_staging(warehouse: Warehouse, stream: str) -> list[lake.StagedPath]:
    """Remove what runs killed while staging left in the stream's folder: hidden quarantine
    stages and lake parts never registered (store.lake.is_stale says whose run is gone).
    Returns the files removed. Readers never saw them: a part is read once registered."""
    quote_identifier(stream)
    parts, stages = lake.stale_staging(warehouse.data_path, stream)
    if parts:
        with connect(warehouse) as con:
            registered = registered_parts(con, stream)
        parts = [p for p in parts
                 if str(p) not in registered and (isinstance(p, str) or str(p.resolve()) not in registered)]
    removed = [*parts, *stages]
    lake.abort_parts(removed)
    return removed


def archive_file(path: InboxPath, folder: Path | str) -> InboxPath | None:
    """Move an ingested file out of the inbox into `folder` (a stream's `archive`); a name
    already there gets a numbered suffix, so no archived file is overwritten. An object of an
    inbox URI is copied into the archive URI, then deleted (monitoring.store.inbox); None when
    another run archived it first."""
    if isinstance(path, str):
        return archive_object(path, str(folder))
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    n = 1
    while target.exists():
        target = folder / f"{path.stem}.{n}{path.suffix}"
        n += 1
    shutil.move(path, target)
    return target


def file_schema(schema: StreamSchema, path: Path, asset: str | None) -> StreamSchema:
    """The schema for one file: a fixed asset id may be given per file (an importer) or be a
    template naming the file (`{file}` -> the file's name without suffix)."""
    if asset is not None:
        return replace(schema, asset_column=None, asset_id=asset)
    if schema.asset_id and "{file}" in schema.asset_id:
        return replace(schema, asset_id=schema.asset_id.replace("{file}", path.stem))
    return schema


def ingest_file(
    warehouse: Warehouse,
    stream: str,
    schema: StreamSchema,
    path: InboxPath,
    *,
    retry_rejected: bool = False,
    asset: str | None = None,
    labels: pd.DataFrame | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> BatchResult:
    """Ingest one file into the stream. `asset` fixes the asset id of every row; `labels`
    (columns start, end[, asset]) adds a `label` column that is 1 inside the intervals.
    `path`: a local file, or the URI of an object in an inbox on an object store (read from
    a local copy, recorded under its URI)."""
    staged = stage_file(warehouse, stream, schema, path, retry_rejected=retry_rejected, asset=asset,
                        labels=labels, chunk_rows=chunk_rows)
    return staged if isinstance(staged, BatchResult) else commit_file(warehouse, staged)


@dataclass
class StagedFile:
    """A file read, validated and staged (`stage_file`), not yet in the lake: its parts and
    quarantine stage are invisible until `commit_file` registers them with its audit row.
    Travels between processes (a staging task on a Dask worker, the commit in the flow's)."""

    warehouse: Warehouse
    source: InboxPath  # what was asked for: a local path or an object's URI
    name: str  # what it is recorded as: the path, or the URI
    size: int  # the file's size and mtime before its hash: its manifest row
    mtime_ns: int
    digest: str
    seen: str | None  # the content's status before this run ("rejected": retried)
    base: BatchResult
    problem: str | None  # a file-level rejection (the file was not read into parts)
    result: BatchResult | None = None  # the staged outcome, when the rows were read
    quarantine: lake.QuarantineStage | None = None
    late_ranges: dict | None = None
    parts: list[lake.StagedPath] = field(default_factory=list)
    footprint: dict[str, tuple] = field(default_factory=dict)  # asset -> first, last accepted time

    def discard(self) -> None:
        """Remove what was staged (the file is not committed, or is staged again later)."""
        if self.quarantine is not None:
            self.quarantine.discard()
        lake.abort_parts(self.parts)

    def overlaps(self, footprint: dict[str, list[tuple]]) -> bool:
        """Whether an accepted reading of this file may be one of `footprint`'s (asset ->
        intervals of times accepted by other files)."""
        return any(lo <= hi2 and lo2 <= hi for asset, (lo, hi) in self.footprint.items()
                   for lo2, hi2 in footprint.get(asset, ()))


def stage_file(
    warehouse: Warehouse,
    stream: str,
    schema: StreamSchema,
    path: InboxPath,
    *,
    retry_rejected: bool = False,
    asset: str | None = None,
    labels: pd.DataFrame | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> StagedFile | BatchResult:
    """Read, validate and stage one file (or inbox object) against the lake as it is now,
    with no write lock held: a StagedFile for `commit_file`, or the BatchResult of content
    already ingested."""
    quote_identifier(stream)
    options: dict[str, Any] = {"retry_rejected": retry_rejected, "asset": asset, "labels": labels,
                               "chunk_rows": chunk_rows}
    if isinstance(path, str) and is_uri(path):
        with fetched(path) as (local, found):
            return _stage_file(warehouse, stream, schema, path, local, found, **options)
    path = Path(path)
    stat = path.stat()  # before the hash: a file changed while it is read differs from its manifest row
    return _stage_file(warehouse, stream, schema, path, path, InboxObject(str(path), stat.st_size, stat.st_mtime_ns),
                       **options)


def _stage_file(warehouse: Warehouse, stream: str, schema: StreamSchema, source_path: InboxPath, path: Path,
                found: InboxObject, *, retry_rejected: bool, asset: str | None, labels: pd.DataFrame | None,
                chunk_rows: int) -> StagedFile | BatchResult:
    """stage_file of a local file `path`, recorded as `found.uri` (the path itself, or the
    URI of the object it is a copy of) with the size and modification time in `found`."""
    name = found.uri
    schema = file_schema(schema, path, asset)
    problem = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="aemon-hash") as pool:
        hashing = pool.submit(file_digest, path)  # hashed while the warehouse opens (hashlib frees the GIL)
        with connect(warehouse) as con:
            digest = hashing.result()
            seen, attempts = batch_status(con, stream, digest)
            known = seen == "ok" or (seen == "rejected" and not retry_rejected)
            noted = inbox_manifest(con, stream, name).get(name, ())[:3] == (found.size, found.mtime_ns, digest)

    batch_id = digest[:16]
    if known:
        if not noted:  # known content under a name not in the manifest yet
            write(warehouse, partial(record_inbox_file, stream=stream, file=name, size_bytes=found.size,
                                     mtime_ns=found.mtime_ns, file_hash=digest))
        return BatchResult(batch_id, stream, name, digest, 0, 0, 0, "skipped", f"content already {seen}")
    with connect(warehouse) as con:
        if seen == "rejected":
            batch_id = f"{batch_id}-retry{attempts}"
        try:
            source, resolved = inspect_file(path, schema)
            _check_lake_columns(con, stream, path, resolved, labels is not None)
        except SchemaError as exc:
            problem = str(exc)
        ranges = asset_time_ranges(con, stream)
        marks = get_watermarks(con, stream)
    if problem is not None and name != str(path):  # the object's URI, not the local copy's path
        problem = problem.replace(str(path), name)
    base = BatchResult(batch_id, stream, name, digest, 0, 0, 0, "ok")
    staged = StagedFile(warehouse, source_path, name, found.size, found.mtime_ns, digest, seen, base, problem)
    if problem is None:
        modes = ["typed", "text"] if source.kind == "csv" and resolved.layout == "wide" else ["text"]
        for mode in modes:
            try:
                (staged.result, staged.quarantine, staged.late_ranges, staged.parts,
                 staged.footprint) = _ingest_rows(base, source, resolved, warehouse, labels, mode, chunk_rows,
                                                  ranges, marks)
                break
            except RetryAsText:
                continue
            except (SchemaError, pa.ArrowInvalid) as exc:
                if mode == "text":
                    staged.problem = _file_error(path, exc).replace(str(path), name)
    return staged


def commit_file(warehouse: Warehouse, staged: StagedFile) -> BatchResult:
    """One short write transaction: the staged parts registered with the file's audit row,
    quarantine and late ranges (or its rejection): a file is in the lake whole, with its
    audit, or not at all. A content another run committed meanwhile is skipped."""
    if staged.result is None and isinstance(staged.source, str) and is_uri(staged.source):
        # a rejected object's readable rows go to quarantine: read from a fresh local copy
        with fetched(staged.source) as (local, _):
            return _commit_file(warehouse, staged, local)
    return _commit_file(warehouse, staged, Path(staged.source))


def _commit_file(warehouse: Warehouse, staged: StagedFile, path: Path) -> BatchResult:
    stream, name, digest, base = staged.base.stream, staged.name, staged.digest, staged.base

    def commit(con: duckdb.DuckDBPyConnection) -> BatchResult:
        now, _ = batch_status(con, stream, digest)
        record_inbox_file(con, stream, name, staged.size, staged.mtime_ns, digest)
        if now == "ok":  # another run committed this content meanwhile
            return BatchResult(base.batch_id, stream, name, digest, 0, 0, 0, "skipped", "content already ok")
        if staged.seen == "rejected":
            clear_quarantine_of(con, stream, digest)
        if staged.result is None:
            assert staged.problem is not None, "a file that was not read has a reason"  # text mode never retries
            result = _reject(con, base, path, staged.problem)
        else:
            result = staged.result
            register_parts(con, stream, staged.parts)
            assert staged.quarantine is not None and staged.late_ranges is not None
            load_quarantine(con, stream, base.batch_id, name,
                            staged.quarantine.path if staged.quarantine.written else None)
            for late_asset, (start, end, _) in staged.late_ranges.items():
                add_rescore_range(con, stream, late_asset, start, end, base.batch_id)
        record_batch(con, result.to_dict())
        return result

    registered = False
    try:
        result = write(warehouse, commit)
        registered = result.status == "ok"
    finally:
        if staged.quarantine is not None:
            staged.quarantine.discard()
        if not registered:
            lake.abort_parts(staged.parts)
    return result


def stage_files(warehouse: Warehouse, stream: str, schema: StreamSchema, paths: list[InboxPath], *,
                retry_rejected: bool = False) -> list[StagedFile | BatchResult]:
    """`stage_file` of each path, in order; what was staged is removed if one fails."""
    staged: list[StagedFile | BatchResult] = []
    try:
        for path in paths:
            staged.append(stage_file(warehouse, stream, schema, path, retry_rejected=retry_rejected))
    except BaseException:
        for done in staged:
            if isinstance(done, StagedFile):
                done.discard()
        raise
    return staged


def commit_staged(warehouse: Warehouse, stream: str, schema: StreamSchema, staged: list[StagedFile | BatchResult],
                  *, retry_rejected: bool = False) -> list[BatchResult]:
    """Commit files staged side by side (each against the lake as it was before any of
    them), in order, one transaction each, leaving what ingesting them one after the other
    leaves. A file whose accepted readings may repeat an earlier file's of this batch (same
    asset, overlapping times) was checked against a lake without them: its stage is
    discarded and it is ingested again, after the others, in order, so a reading is stored
    once and the first file keeps it. Returns one result per file, in order."""
    results: list[BatchResult | None] = []
    footprint: dict[str, list[tuple]] = {}  # accepted by the earlier files, committed or not
    again: list[int] = []
    try:
        for i, item in enumerate(staged):
            if isinstance(item, BatchResult):
                results.append(item)
                continue
            if item.overlaps(footprint):
                item.discard()
                again.append(i)
                results.append(None)
            else:
                results.append(commit_file(warehouse, item))
            for asset, interval in item.footprint.items():
                footprint.setdefault(asset, []).append(interval)
    except BaseException:
        for item in staged[len(results):]:
            if isinstance(item, StagedFile):
                item.discard()
        raise
    for i in again:
        item = staged[i]
        assert isinstance(item, StagedFile)
        results[i] = ingest_file(warehouse, stream, schema, item.source, retry_rejected=retry_rejected)
    return [r for r in results if r is not None]


def _file_error(path: Path, exc: Exception) -> str:
    text = str(exc)
    if "invalid UTF8" in text or "UTF-8" in text:
        return f"{path}: not UTF-8 text ({text.splitlines()[0]}); expected a UTF-8 CSV"
    return text if text.startswith(str(path)) else f"{path}: cannot read as CSV ({text.splitlines()[0]})"


def _check_lake_columns(con, stream: str, path: Path, schema: StreamSchema, labelled: bool) -> None:
    """The lake of a stream keeps one set of columns: a file whose sensors differ from the
    stream's (an `all_numeric` stream whose export gained a column) is refused."""
    existing = lake_columns(con, stream)
    if not existing:
        return
    expected = [*schema.lake_columns, *(["label"] if labelled else [])]
    missing = [c for c in existing if c not in expected]
    unexpected = [c for c in expected if c not in existing]
    if missing or unexpected:
        raise SchemaError(
            f"{path}: columns differ from the stream's lake: missing {missing}, unexpected {unexpected}; "
            f"the lake has {existing}"
        )


def _ingest_rows(base: BatchResult, source: SourceFile, schema: StreamSchema, warehouse: Warehouse,
                 labels: pd.DataFrame | None, mode: str, chunk_rows: int, ranges: dict, marks: dict):
    """Read, validate and stage every row of a file as Parquet parts (not yet in the lake).
    Returns (batch result, staged quarantine, late ranges per asset, staged parts, the
    first and last accepted time per asset)."""
    stream = base.stream
    state = FileState(next_record_time=_next_record_time(ranges))
    writer = PartWriter(warehouse.data_path, stream, base.batch_id)
    quarantined = lake.QuarantineStage(warehouse.data_path, stream, base.batch_id)
    counts = {"in": 0, "accepted": 0, "quarantined": 0, "duplicate": 0}
    late_ranges: dict[str, tuple] = {}
    footprint: dict[str, tuple] = {}
    staged = None
    # a reading connection for duplicate lookups: it sees the lake as of the file's start
    with connect(warehouse) if ranges else duckdb.connect() as lookup:
        try:
            for seq, chunk in enumerate(read_chunks(source, schema, mode=mode, chunk_rows=chunk_rows)):
                if mode == "typed" and chunk.invalid:
                    raise RetryAsText
                clean = validate_clean(chunk, schema, state)
                if clean is not None and labels is None and not _needs_lookup(clean, ranges, marks):
                    # the common chunk: nothing to quarantine, check in the lake or rescore; Arrow throughout
                    accept_clean(clean, state)
                    _widen(footprint, clean.asset, pd.Timestamp(clean.first), pd.Timestamp(clean.last))
                    writer.submit(clean.table, seq)
                    counts["in"] += clean.table.num_rows
                    counts["accepted"] += clean.table.num_rows
                    continue
                before = dict(state.last_seen)
                result = validate_chunk(chunk, schema, state, source.path)
                result = _drop_known(lookup, result, stream, ranges, before, lambda: writer.staged_paths)
                if mode == "typed" and len(result.quarantine):
                    raise RetryAsText
                accepted = result.accepted.drop(columns="_row")
                if labels is not None:
                    accepted["label"] = label_intervals(accepted, labels)
                _note_late(accepted, marks, late_ranges)
                for name, times in accepted.groupby("asset", sort=False)["timestamp"]:
                    _widen(footprint, str(name), times.min(), times.max())
                if len(accepted):
                    writer.submit(accepted, seq)
                quarantined.add(result.quarantine)
                counts["in"] += result.n_in
                counts["accepted"] += result.n_accepted
                counts["quarantined"] += len(result.quarantine)
                counts["duplicate"] += result.n_duplicates
            if counts["in"] == 0:
                raise SchemaError(f"{source.path}: file has a header but no rows")
            quarantined.close()
            staged = writer.finish()
        finally:
            if staged is None:
                writer.abort()
                quarantined.discard()
    batch = replace(base, rows_in=counts["in"], rows_accepted=counts["accepted"],
                    rows_quarantined=counts["quarantined"], rows_duplicate=counts["duplicate"],
                    rows_out_of_order=state.n_out_of_order, rows_late=sum(n for _, _, n in late_ranges.values()))
    return batch, quarantined, late_ranges, staged, footprint


def _widen(footprint: dict[str, tuple], asset: str, first: pd.Timestamp, last: pd.Timestamp) -> None:
    lo, hi = footprint.get(asset, (first, last))
    footprint[asset] = (min(lo, first), max(hi, last))


class PartWriter:
    """Stages a file's lake parts on a background thread, so Parquet encoding of one chunk
    overlaps reading and validating the next (pyarrow releases the GIL in both)."""

    def __init__(self, data_path: str | Path, stream: str, batch_id: str):
        self.args = (data_path, stream, batch_id)
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aemon-parts")
        self.pending: list[Future] = []
        self.staged: list[lake.StagedPath] = []

    def submit(self, frame: pd.DataFrame | pa.Table, seq: int) -> None:
        # one chunk being written while the next is read: memory stays at about two chunks
        while len(self.pending) >= 1:
            done = self.pending.pop(0)
            self.staged += done.result()
        self.pending.append(self.pool.submit(lake.stage_parts, frame, *self.args, seq))

    def _drain(self) -> None:
        pending, self.pending = self.pending, []
        wait(pending)
        for future in pending:  # keep every part that was written, so abort() can remove it
            if future.exception() is None:
                self.staged += future.result()
        for future in pending:
            future.result()  # the first write error, if any, goes on

    @property
    def staged_paths(self) -> list[lake.StagedPath]:
        """Paths of the parts staged so far (waits for the writes in flight)."""
        self._drain()
        return list(self.staged)

    def finish(self) -> list[lake.StagedPath]:
        self._drain()
        self.pool.shutdown()
        return self.staged

    def abort(self) -> None:
        try:
            self._drain()
        finally:
            self.pool.shutdown()
            lake.abort_parts(self.staged)


def _needs_lookup(clean: CleanChunk, ranges: dict, marks: dict) -> bool:
    """Whether a clean chunk's times meet the lake's range of its asset (a stored reading may
    repeat: `_drop_known` looks) or its scoring watermark (`_note_late` notes a rescore)."""
    stored = ranges.get(clean.asset)
    if stored is not None and not (clean.last < stored[0] or clean.first > stored[1]):
        return True
    mark = marks.get(clean.asset)
    return mark is not None and clean.first <= mark


def _next_record_time(ranges: dict) -> pd.Timestamp:
    """Synthetic time of the next tabular record: after every record already in the lake and
    not before now, so records of later files always sort after earlier ones."""
    now = pd.Timestamp.now(tz="UTC").tz_localize(None).floor("s")
    last = max((hi for _, hi in ranges.values()), default=None)
    return now if last is None or last < now else last + pd.Timedelta(microseconds=1)


def _drop_known(lookup: duckdb.DuckDBPyConnection, result: ChunkResult, stream: str, ranges: dict,
                before: dict, staged: Callable[[], list[lake.StagedPath]]) -> ChunkResult:
    """Quarantine accepted rows whose (asset, timestamp) is already in the stream's lake or in
    an earlier chunk of this file: a reading is stored once. `lookup`: a reading connection,
    one per file."""
    frame = result.accepted
    if frame.empty:
        return result
    ts_min = frame["timestamp"].min()
    if not ranges and (not before or ts_min > max(before.values())):
        return result  # nothing stored yet at or after these times: no lookup needed
    mask = np.zeros(len(frame), dtype=bool)
    reasons = np.full(len(frame), None, dtype=object)
    for asset, idx in frame.groupby("asset", sort=False).indices.items():
        ts = frame["timestamp"].iloc[idx]
        checks = []
        if asset in ranges:
            checks.append((stream, *ranges[asset], "is already in the lake"))
        if asset in before and ts.min() <= before[asset]:
            checks.append((staged(), ts.min(), before[asset], "is already in an earlier part of this file"))
        for source, lo, hi, what in checks:
            if ts.max() < lo or ts.min() > hi or (isinstance(source, list) and not source):
                continue
            known = existing_times(lookup, source, asset, max(ts.min(), lo), min(ts.max(), hi))
            hit = ts.isin(known).to_numpy() & ~mask[idx]
            mask[idx[hit]] = True
            reasons[idx[hit]] = [f"data row {r}: reading of asset '{asset}' at {t} {what}; kept the first one"
                                 for r, t in zip(frame["_row"].iloc[idx[hit]], ts[hit], strict=True)]
    return move_to_quarantine(result, mask, list(reasons[mask]))


def _note_late(frame: pd.DataFrame, marks: dict, late: dict) -> None:
    """Accepted rows at or before an asset's scoring watermark: scoring must revisit them."""
    if not marks:
        return
    for asset, ts in frame.groupby("asset", sort=False)["timestamp"]:
        mark = marks.get(asset)
        if mark is None:
            continue
        old = ts[ts <= mark]
        if len(old):
            start, _, n = late.get(asset, (old.min(), mark, 0))
            late[asset] = (min(start, old.min()), mark, n + len(old))


def _reject(con, base: BatchResult, path: Path, reason: str) -> BatchResult:
    """A file-level problem: the file stays where it is; its rows, when they can be read at
    all, go to quarantine with the reason, so the audit still adds up."""
    n = 0
    for first, raws in _raw_rows(path):
        rows = pd.DataFrame({"row": np.arange(first, first + len(raws), dtype=np.int64), "column": None,
                             "reason": reason, "raw": raws})
        n += write_quarantine(con, base.stream, base.batch_id, base.file, rows)
    return replace(base, rows_in=n, rows_quarantined=n, status="rejected", error=reason)


def _raw_rows(path: Path):
    """(first data row number, raw rows) batches of a file that is rejected whole."""
    with open(path, "rb") as fh:
        head = fh.read(64)
    if head.startswith(b"PAR1"):
        try:
            pf = pq.ParquetFile(path)
        except (pa.ArrowInvalid, OSError):
            return
        first = 1
        for batch in pf.iter_batches(batch_size=50_000):
            records = batch.to_pylist()
            yield first, [raw_json(r) for r in records]
            first += len(records)
        return
    if binary_format(head) is not None:
        return  # another format altogether (gzip, ZIP, an image): there are no rows to keep
    first = 1
    for lines in read_raw_lines(path):
        yield first, lines
        first += len(lines)
