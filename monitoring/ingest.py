"""Ingesting one file: content hash -> validation -> atomic lake parts -> audit row.

A file is known by the SHA-256 of its content, so the same readings under another name
are not ingested twice. A rejected file leaves an audit row with the reason and is not
retried until asked (`retry_rejected`), so a scheduled ingest does not log the same
failure every few minutes.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from features.errors import FeaturesError
from features.readers import SUPPORTED_SUFFIXES, StreamSchema, file_digest, read_readings
from monitoring import lake, warehouse


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

    def to_dict(self) -> dict:
        return asdict(self)


def list_inbox(inbox: Path) -> list[Path]:
    """Files waiting in a stream's inbox, oldest name first; hidden and partial files are skipped."""
    if not inbox.exists():
        return []
    return sorted(
        p for p in inbox.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in SUPPORTED_SUFFIXES
    )


def ingest_file(
    db_path: Path,
    lake_root: Path,
    stream: str,
    schema: StreamSchema,
    path: Path,
    *,
    retry_rejected: bool = False,
) -> BatchResult:
    warehouse.quote_identifier(stream)
    digest = file_digest(path)
    batch_id = digest[:16]
    with warehouse.connect(db_path) as con:
        seen, attempts = warehouse.batch_status(con, stream, digest)
    if seen == "ok" or (seen == "rejected" and not retry_rejected):
        return BatchResult(batch_id, stream, str(path), digest, 0, 0, 0, "skipped", f"content already {seen}")
    if seen == "rejected":
        batch_id = f"{batch_id}-retry{attempts}"
    try:
        frame = read_readings(path, schema)
    except FeaturesError as exc:
        result = BatchResult(batch_id, stream, str(path), digest, _count_rows(path), 0, 0, "rejected", str(exc))
    else:
        lake.write_parts(frame, lake_root, stream, digest[:16])
        result = BatchResult(batch_id, stream, str(path), digest, len(frame), len(frame), 0, "ok")
    with warehouse.connect(db_path) as con:
        warehouse.record_batch(con, result.to_dict())
        if result.status == "ok":
            warehouse.refresh_view(con, stream, lake_root)
    return result


def _count_rows(path: Path) -> int:
    """Data rows of a rejected file, for the audit row (0 when it cannot be read as text)."""
    if path.suffix.lower() not in (".csv", ".txt"):
        return 0
    try:
        with open(path, "rb") as fh:
            return max(sum(1 for line in fh if line.strip()) - 1, 0)
    except OSError:
        return 0
