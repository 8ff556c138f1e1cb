"""The lake: each stream's readings as the DuckLake table `lake."<stream>"`, whose Parquet
files live under the warehouse's data path.

An ingest stages a file's rows as Parquet parts in the table's folder, then registers them
(`ducklake_add_data_files`) in the same transaction as the file's audit row and quarantine:
readers see all of a file or none of it, and the rows are written once (no copy). A part
that was staged but never registered (a run killed mid-file) is invisible to every reader;
the next ingest of the stream removes it with the run's other leftovers (`stale_staging`),
and the maintenance flow's `ducklake_delete_orphaned_files` removes what is older still.

The data path is a folder or an object-store URI (`s3://bucket/prefix`). On an object store
parts are written through fsspec (s3fs, credentials and endpoint from the environment:
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL) and named
by their URI; a staged object is only visible once complete (an upload is atomic).
"""
from __future__ import annotations

import os
import re
import socket
import time
import uuid
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.validation import QUARANTINE_COLUMNS
from monitoring.errors import WarehouseError
from monitoring.store.connection import is_uri, quote_identifier, require_s3_credentials

# A staged file: a local path, or the URI of an object (`s3://bucket/key`).
StagedPath = Path | str

# Every staged file names the run that wrote it: host and process id. A run killed while it
# stages leaves its files behind; the next ingest removes them. Whether their run is gone is
# known for certain only on the same host (is the process alive?), so a file of this host
# whose process is gone is removed at once, whatever its age (a big file takes minutes to
# stage, so age alone would either wait long or delete a part a live run is about to
# register). A file of another host sharing the folder, or named by an earlier release
# (no owner in the name), is removed only once it is older than FOREIGN_STALE_HOURS: no
# ingest stages one file for that long.
FOREIGN_STALE_HOURS = 24
OWNER = re.compile(r"-(?P<host>[A-Za-z0-9]{1,32})\.(?P<pid>\d+)-[0-9a-f]{8}\.parquet$")


# How parts are encoded (measured by bench/ingest_throughput.py): Snappy, which keeps real
# sensor readings to about a third of their size for little CPU; dictionary encoding for the
# asset id only (it costs float readings time and saves nothing); timestamps, which mostly
# step by a fixed period, delta-encoded (a tenth of the plain size, and faster to write).
# Statistics stay on every column: DuckLake keeps them to prune files by range.
PART_CODEC = "snappy"
PART_OPTIONS: dict = {"compression": PART_CODEC, "use_dictionary": ["asset"],
                      "column_encoding": {"timestamp": "DELTA_BINARY_PACKED"}}


def host_tag() -> str:
    """This machine's name as it appears in staged file names."""
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32] or "host"


def owner_tag() -> str:
    return f"{host_tag()}.{os.getpid()}"


def process_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def is_stale(path: Path, now: float | None = None) -> bool:
    """Whether a staged file's run is gone (see the rule above)."""
    try:
        return _stale(path.name, lambda: path.stat().st_mtime, now)
    except FileNotFoundError:  # its run finished meanwhile
        return False


def _stale(name: str, mtime: Any, now: float | None = None) -> bool:
    match = OWNER.search(name)
    if match is not None and match["host"] == host_tag():
        return not process_alive(int(match["pid"]))
    return (time.time() if now is None else now) - mtime() > FOREIGN_STALE_HOURS * 3600


def stale_staging(data_path: str | Path, stream: str) -> tuple[list[StagedPath], list[StagedPath]]:
    """Files a dead run staged in the stream's folder: (lake parts, hidden quarantine stages).
    Parts may have been registered before their run died: the caller keeps those."""
    folder = stream_root(data_path, stream)
    if isinstance(folder, str):
        return _stale_objects(folder)
    if not folder.is_dir():
        return [], []
    parts: list[StagedPath] = sorted(p for p in folder.glob("part-*.parquet") if is_stale(p))
    stages: list[StagedPath] = sorted(p for p in folder.glob(".quarantine-*.parquet") if is_stale(p))
    return parts, stages


def _stale_objects(folder: str) -> tuple[list[StagedPath], list[StagedPath]]:
    fs, key = object_store(folder)
    try:
        listing = fs.ls(key, detail=True, refresh=True)
    except FileNotFoundError:
        return [], []
    except store_errors() as exc:
        raise WarehouseError(f"cannot list {folder}: {_os_message(exc)}") from None
    parts: list[StagedPath] = []
    stages: list[StagedPath] = []
    scheme = folder.split("://", 1)[0]
    for entry in listing:
        name = str(entry["name"]).rsplit("/", 1)[-1]
        modified = entry.get("LastModified") or entry.get("mtime")
        if not name.endswith(".parquet") or not _stale(name, partial(_timestamp, modified)):
            continue
        uri = f"{scheme}://{entry['name']}"
        if name.startswith("part-"):
            parts.append(uri)
        elif name.startswith(".quarantine-"):
            stages.append(uri)
    return sorted(parts, key=str), sorted(stages, key=str)


def stream_root(data_path: str | Path, stream: str) -> StagedPath:
    """The folder of a stream's readings table (DuckLake's layout: <data path>/<schema>/<table>):
    a Path, or a URI on an object store. The stream name is an identifier (letters, digits,
    '_', '-'): never a path out of the lake."""
    quote_identifier(stream)
    if is_uri(str(data_path)):
        return f"{str(data_path).rstrip('/')}/lake/{stream}"
    return Path(data_path) / "lake" / stream


def object_store(uri: str) -> tuple[Any, str]:
    """(the fsspec filesystem of an object-store URI, the URI's path within it). s3fs takes
    its credentials and endpoint from the environment, as DuckDB's secret does."""
    import fsspec

    require_s3_credentials()
    try:
        return fsspec.core.url_to_fs(uri)
    except (ImportError, ValueError) as exc:
        raise WarehouseError(f"warehouse data path {uri}: {exc}") from None


def store_errors() -> tuple[type[BaseException], ...]:
    """What an object store's client raises for a store that cannot be reached or refuses
    (s3fs turns most refusals into OSError; botocore's connection errors pass through)."""
    from botocore.exceptions import BotoCoreError, ClientError

    return OSError, BotoCoreError, ClientError


def _timestamp(modified: Any) -> float:
    return modified.timestamp() if hasattr(modified, "timestamp") else float(modified or time.time())


def _os_message(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _open_object(uri: str) -> Any:
    fs, key = object_store(uri)
    return fs.open(key, "wb")


def stage_parts(frame: pd.DataFrame | pa.Table, data_path: str | Path, stream: str, batch_id: str,
                seq: int) -> list[StagedPath]:
    """Write readings (a frame, or an Arrow table in the lake layout) as one Parquet part in
    the stream's folder; the part stays invisible until `ducklake_add_data_files` registers
    it. Names are unique per attempt, so two runs ingesting the same file never touch each
    other's parts."""
    folder = stream_root(data_path, stream)
    name = f"part-{batch_id}-{seq:05d}-{owner_tag()}-{uuid.uuid4().hex[:8]}.parquet"
    table = (frame if isinstance(frame, pa.Table)
             else pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False))
    # the table's timestamps are microseconds, DuckDB's TIMESTAMP
    index = table.schema.get_field_index("timestamp")
    if index >= 0 and table.schema.field(index).type != pa.timestamp("us"):
        table = table.set_column(index, "timestamp", table.column(index).cast(pa.timestamp("us")))
    if isinstance(folder, str):
        uri = f"{folder}/{name}"
        try:
            with _open_object(uri) as handle:  # the object appears once the upload completes
                pq.write_table(table, handle, **PART_OPTIONS)
        except store_errors() as exc:
            raise WarehouseError(f"cannot write {uri}: {_os_message(exc)}") from None
        return [uri]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    pq.write_table(table, path, **PART_OPTIONS)
    return [path]


def abort_parts(staged: list[StagedPath]) -> None:
    for path in staged:
        remove_staged(path)


def remove_staged(path: StagedPath) -> None:
    if isinstance(path, str) and is_uri(path):
        fs, key = object_store(path)
        try:
            fs.rm(key)
        except FileNotFoundError:
            pass
        except store_errors() as exc:
            raise WarehouseError(f"cannot remove {path}: {_os_message(exc)}") from None
        return
    Path(path).unlink(missing_ok=True)


QUARANTINE_SCHEMA = pa.schema([("row", pa.int64()), ("column", pa.string()), ("reason", pa.string()),
                               ("raw", pa.string())])


class QuarantineStage:
    """Quarantined rows of a file in progress, appended to a hidden Parquet file next to the
    stream's lake and loaded into the warehouse in one statement when the file is done: the
    rows of a big bad file never sit in memory together, and the warehouse is not held open."""

    def __init__(self, data_path: str | Path, stream: str, batch_id: str):
        folder = stream_root(data_path, stream)
        name = f".quarantine-{batch_id}-{owner_tag()}-{uuid.uuid4().hex[:8]}.parquet"
        self.path: StagedPath
        if isinstance(folder, str):
            self.path = f"{folder}/{name}"
        else:
            folder.mkdir(parents=True, exist_ok=True)
            self.path = folder / name
        self._writer: pq.ParquetWriter | None = None
        self._handle: Any = None
        self.written = False  # rows were added: the file exists once closed

    def add(self, rows: pd.DataFrame) -> None:
        if rows.empty:
            return
        if self._writer is None:
            if isinstance(self.path, str):
                self._handle = _open_object(self.path)
                self._writer = pq.ParquetWriter(self._handle, QUARANTINE_SCHEMA)
            else:
                self._writer = pq.ParquetWriter(self.path, QUARANTINE_SCHEMA)
            self.written = True
        frame = rows[QUARANTINE_COLUMNS].astype(
            {"row": "int64", "column": object, "reason": object, "raw": object})
        self._writer.write_table(pa.Table.from_pandas(frame, schema=QUARANTINE_SCHEMA, preserve_index=False))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def discard(self) -> None:
        self.close()
        if self.written:
            remove_staged(self.path)
        elif not isinstance(self.path, str):
            self.path.unlink(missing_ok=True)
