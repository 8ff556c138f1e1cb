"""A stream's inbox on an object store (`s3://bucket/prefix`): listing, fetching and archiving
its objects with the semantics of a local inbox folder (monitoring.store.ingestion).

What an object is to the ingest: its URI is its name (in `ingest_batches`, `quarantine` and
the inbox manifest `inbox_files`), its size and last-modified time are its "stat", and its
content is read from a local copy. Why a copy: an ingest reads a file several times (hash,
header check, a typed read that may fall back to a text read, the raw lines of a rejected
file), and the readers stream from a seekable local file in bounded memory; one download per
object to a temporary folder (removed when the file is done) costs one GET, where reading
through the store would cost a request per pass and per range.

Why objects stay where they are: as with a local inbox, the warehouse's manifest records every
object processed (same URI, size and last-modified time: not read again), and the content
hash in `ingest_batches` keeps a copy under another key from being ingested twice; concurrent
ingests of one inbox are settled by that hash under the warehouse's write lock, exactly as for
local files. Deleting or moving objects is not needed for exactly-once ingest, and is a
permission many inbox buckets do not grant. With `archive` set (an s3:// URI), an object
whose content is in the lake is copied there (a server-side copy) and only then deleted: S3
has no rename; a run stopped between the two leaves the object in the inbox, unchanged, and
the next run copies it again over the identical archived copy and deletes it.

S3's last-modified time has a resolution of one second: an object rewritten with the same size
within the second it was last ingested looks unchanged until its size or time changes (a
local file's modification time is in nanoseconds). Exports are written once under a new name
in practice; `--retry-rejected` and a new key both read the object again.

Credentials and endpoint come from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL), read by s3fs as by the lake's writer; never the URI.
"""
from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from features.readers import SUPPORTED_SUFFIXES
from monitoring.errors import InboxError
from monitoring.store.connection import S3_KEY_ENV, is_uri

INBOX_STORES = ("s3",)  # URI schemes an inbox may have
BUCKET = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")


def check_inbox_uri(uri: str, setting: str = "inbox") -> str:
    """`s3://bucket[/prefix]`, or one InboxError naming the setting and what was expected."""
    if not is_uri(uri):
        raise InboxError(f"{setting} {uri!r}: expected a folder or s3://bucket/prefix")
    scheme, rest = uri.split("://", 1)
    if scheme.lower() not in INBOX_STORES:
        raise InboxError(f"{setting} {uri!r}: the scheme {scheme!r} is not supported; "
                         "expected a folder or s3://bucket/prefix")
    bucket = rest.split("/", 1)[0]
    if "@" in bucket or ":" in bucket:
        raise InboxError(f"{setting}: expected s3://bucket/prefix without credentials; credentials come from "
                         f"the environment, never the URI ({', '.join(S3_KEY_ENV)})")
    if not BUCKET.fullmatch(bucket):
        raise InboxError(f"{setting} {uri!r}: {bucket!r} is not a bucket name; expected s3://bucket/prefix")
    return uri


@dataclass(frozen=True)
class InboxObject:
    """An object of an inbox on an object store: its URI, size and last-modified time (ns)."""

    uri: str
    size: int
    mtime_ns: int

    @property
    def name(self) -> str:
        return self.uri.rsplit("/", 1)[-1]


def _filesystem(uri: str) -> tuple[Any, str]:
    """(the fsspec filesystem of the URI, the URI's path within it)."""
    import fsspec

    missing = [name for name in S3_KEY_ENV if not os.environ.get(name)]
    if missing:
        raise InboxError(f"the inbox {uri} is on S3 but {' and '.join(missing)} "
                         f"{'is' if len(missing) == 1 else 'are'} not set; set both in the environment")
    try:
        return fsspec.core.url_to_fs(uri)
    except (ImportError, ValueError) as exc:
        raise InboxError(f"inbox {uri}: {exc}") from None


def _store_errors() -> tuple[type[BaseException], ...]:
    from botocore.exceptions import BotoCoreError, ClientError

    return OSError, BotoCoreError, ClientError


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _mtime_ns(entry: dict) -> int:
    modified: Any = entry.get("LastModified") or entry.get("mtime")
    if hasattr(modified, "timestamp"):
        return int(modified.timestamp()) * 1_000_000_000 + modified.microsecond * 1000
    return int(float(modified or 0) * 1e9)


def list_objects(uri: str) -> list[InboxObject]:
    """The objects directly under the inbox URI (not in deeper "folders"), oldest name first;
    hidden and partial names and other file types are skipped, as in a local inbox. A prefix
    with no objects is an empty inbox; a bucket that does not exist is one InboxError."""
    fs, key = _filesystem(uri)
    scheme = uri.split("://", 1)[0]
    try:
        listing = fs.ls(key.rstrip("/"), detail=True, refresh=True)
    except FileNotFoundError as exc:
        bucket = key.split("/", 1)[0]
        if "bucket" in str(exc).lower() or not fs.exists(bucket):
            raise InboxError(f"inbox {uri}: the bucket {bucket!r} does not exist") from None
        return []  # S3 has no folders: a prefix with no objects yet
    except PermissionError as exc:
        raise InboxError(f"inbox {uri}: access denied ({_first_line(exc)})") from None
    except _store_errors() as exc:
        raise InboxError(f"cannot list the inbox {uri}: {_first_line(exc)}") from None
    found = []
    for entry in listing:
        name = str(entry["name"]).rsplit("/", 1)[-1]
        if entry.get("type") != "file" or name.startswith(".") or Path(name).suffix.lower() not in SUPPORTED_SUFFIXES:
            continue
        found.append(InboxObject(f"{scheme}://{entry['name']}", int(entry.get("size") or 0), _mtime_ns(entry)))
    return sorted(found, key=lambda o: o.uri)


def stat_object(uri: str) -> InboxObject:
    fs, key = _filesystem(uri)
    try:
        entry = fs.info(key, refresh=True)
    except FileNotFoundError:
        raise InboxError(f"{uri}: no such object in the inbox (removed meanwhile?)") from None
    except _store_errors() as exc:
        raise InboxError(f"cannot read {uri}: {_first_line(exc)}") from None
    return InboxObject(uri, int(entry.get("size") or 0), _mtime_ns(entry))


@contextmanager
def fetched(uri: str) -> Iterator[tuple[Path, InboxObject]]:
    """(a local copy of the object, under its own name in a temporary folder; the object's
    size and last-modified time, taken before the copy: an object replaced meanwhile differs
    from its manifest row and is read again by the next run). The copy is removed on exit."""
    found = stat_object(uri)
    fs, key = _filesystem(uri)
    with tempfile.TemporaryDirectory(prefix="aemon-inbox-") as folder:
        local = Path(folder) / found.name
        try:
            fs.get_file(key, str(local))  # streamed to disk in blocks, not held in memory
        except FileNotFoundError:
            raise InboxError(f"{uri}: no such object in the inbox (removed meanwhile?)") from None
        except _store_errors() as exc:
            raise InboxError(f"cannot read {uri}: {_first_line(exc)}") from None
        yield local, found


def archive_object(uri: str, folder: str) -> str | None:
    """Copy an ingested object into the archive URI (server-side), then delete it from the
    inbox; returns the archived URI, or None when the object is gone (another run archived
    it). A key already in the archive with other content gets a numbered suffix; one with the
    same content (ETag) is the copy of an earlier, interrupted archive and is replaced."""
    fs, key = _filesystem(uri)
    scheme = folder.split("://", 1)[0]
    base = folder.split("://", 1)[1].rstrip("/")
    name = key.rsplit("/", 1)[-1]
    stem, dot, suffix = name.rpartition(".")
    target = f"{base}/{name}"
    n = 1
    try:
        source = _info_or_none(fs, key)
        if source is None:
            return None
        while (existing := _info_or_none(fs, target)) is not None and not _same_object(existing, source):
            target = f"{base}/{stem}.{n}{dot}{suffix}"
            n += 1
        fs.copy(key, target)
        fs.rm(key)
    except FileNotFoundError:
        return None  # archived by another run meanwhile
    except _store_errors() as exc:
        raise InboxError(f"cannot archive {uri} into {folder}: {_first_line(exc)}") from None
    return f"{scheme}://{target}"


def _info_or_none(fs: Any, key: str) -> dict | None:
    try:
        return fs.info(key, refresh=True)
    except FileNotFoundError:
        return None


def _same_object(a: dict, b: dict) -> bool:
    """Whether two objects hold the same content: by ETag (kept by a server-side copy), else by size."""
    if a.get("ETag") and b.get("ETag"):
        return bool(a["ETag"] == b["ETag"])
    return bool(a.get("size") == b.get("size"))
