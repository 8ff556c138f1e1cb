"""ingest-readings: every new file in a stream's inbox -> the stream's lake table.

A run that accepted at least one row emits the Prefect event `aemon.readings.ingested`
(resource `aemon.stream.<stream>`, payload: the files with rows accepted and the count),
which triggers the stream's score deployment (flows/serve.py, prefect.yaml): an alert need
not wait for the score schedule. A run that found nothing new emits nothing."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from prefect import flow, get_run_logger
from prefect.events import emit_event

from flows import tasks
from flows.config import load_config
from flows.notify import alert_on_failure
from monitoring.store.ingestion import file_name

if TYPE_CHECKING:
    from flows.config import AemonConfig

READINGS_INGESTED = "aemon.readings.ingested"


def stream_resource(stream: str) -> dict[str, str]:
    """The Prefect resource a stream's events are about."""
    return {"prefect.resource.id": f"aemon.stream.{stream}", "prefect.resource.name": stream}


@flow(name="ingest-readings", on_failure=[alert_on_failure], on_crashed=[alert_on_failure])
def ingest_readings(stream: str, config_path: str | None = None, retry_rejected: bool = False) -> list[dict]:
    """Ingest the new and changed files in the stream's inbox (`<home>/inbox/<stream>/` by
    default; a folder or an s3:// URI); returns one audit dict
    per file ingested. Files unchanged since their last ingest (same name, size and
    modification time) are not read again: they are one summary line in the log. With the
    stream's `archive` set, every file whose content is in the lake is moved there."""
    config = load_config(config_path, detectors=False)  # an ingest never builds a detector
    results = ingest_inbox(config, stream, retry_rejected, tasks, get_run_logger())
    accepted = [r for r in results if r["rows_accepted"] > 0]
    if accepted:
        emit_event(READINGS_INGESTED, resource=stream_resource(stream), payload={
            "stream": stream, "files": [r["file"] for r in accepted],
            "rows_accepted": sum(r["rows_accepted"] for r in accepted),
        })
    return results


def ingest_inbox(config: AemonConfig, stream: str, retry_rejected: bool, steps: Any,
                 logger: logging.Logger | logging.LoggerAdapter) -> list[dict]:
    """The ingest flow's steps: `steps` is flows.tasks (each step a Prefect task of the flow
    run) or flows.tasks.IN_PROCESS (the same functions called directly: `aemon ingest`
    with no Prefect API configured, where no server would record the run or act on its event)."""
    settings = config.stream(stream)
    results = []
    removed = steps.remove_stale_staging(config.warehouse, stream)
    if removed:
        logger.info("removed %d files left by an interrupted ingest: %s", len(removed),
                    ", ".join(file_name(p) for p in removed[:5]) + (", ..." if len(removed) > 5 else ""))
    scan = steps.scan_inbox(config.warehouse, stream, config.inbox(stream), retry_rejected=retry_rejected)
    archive = config.archive(stream)
    if scan.n_unchanged:
        logger.info("%d files unchanged since their last ingest", scan.n_unchanged)
    if archive is not None:
        for path in scan.unchanged:  # ingested before the archive was set
            steps.archive_file(path, archive)
    for path in scan.pending:
        # A bad file never stops the others: its problem is recorded in its batch row.
        result = steps.ingest_file(
            config.warehouse, stream, settings.stream_schema(), path, retry_rejected=retry_rejected
        )
        if result.status == "rejected":
            logger.warning("%s rejected: %s", file_name(path), result.error)
        elif result.rows_quarantined:
            logger.warning("%s: %d rows accepted, %d quarantined (see the quarantine table)",
                           file_name(path), result.rows_accepted, result.rows_quarantined)
        else:
            logger.info("%s %s: %d rows", file_name(path), result.status, result.rows_accepted)
        if archive is not None and result.in_lake:  # a rejected file stays, to be fixed
            steps.archive_file(path, archive)
        results.append(result.to_dict())
    return results
