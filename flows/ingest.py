"""ingest-readings: every new file in a stream's inbox -> the stream's lake table.

A run that accepted at least one row emits the Prefect event `aemon.readings.ingested`
(resource `aemon.stream.<stream>`, payload: the files with rows accepted and the count),
which triggers the stream's score deployment (flows/serve.py, prefect.yaml): an alert need
not wait for the score schedule. A run that found nothing new emits nothing."""
from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from prefect import flow, get_run_logger
from prefect.events import emit_event

from flows import fanout, tasks
from flows.config import load_config
from flows.notify import alert_on_failure
from monitoring.store.ingestion import InboxPath, file_name

if TYPE_CHECKING:
    from flows.config import AemonConfig
    from monitoring.store.ingestion import BatchResult

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
    if config.runner.kind == "dask" and steps is not tasks.IN_PROCESS and len(scan.pending) > 1:
        ingested: Iterable[BatchResult] = ingest_on_dask(config, stream, scan.pending, retry_rejected)
    else:
        # A bad file never stops the others: its problem is recorded in its batch row.
        ingested = (steps.ingest_file(config.warehouse, stream, settings.stream_schema(), path,
                                      retry_rejected=retry_rejected) for path in scan.pending)
    for path, result in zip(scan.pending, ingested, strict=True):
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


def ingest_on_dask(config: AemonConfig, stream: str, paths: list[InboxPath],
                   retry_rejected: bool) -> list[BatchResult]:
    """The files read, validated and staged as Parquet parts in parallel tasks on the Dask
    cluster ([runner]), each task its own contiguous group of files, against the lake as it
    was before; then committed in the flow, in file order, one short write transaction each
    (the warehouse takes one writer at a time), while the cluster, whose workers own the
    staged parts, still runs. What ingesting them one by one leaves: a file whose readings
    may repeat an earlier one's of the run is staged again after the commits
    (store.ingestion.commit_staged)."""
    schema = config.stream(stream).stream_schema()
    with fanout.dask_runner(config.runner) as runner:
        groups = fanout.split_assets(paths, 0, fanout.worker_threads(runner))
        futures = [runner.submit(tasks.stage_files, {
            "warehouse": config.warehouse, "stream": stream, "schema": schema, "paths": group,
            "retry_rejected": retry_rejected}) for group in groups]
        for future in futures:  # every group ends (staged or not) before any commit
            future.wait()
        staged, failed = [], None
        for future in futures:
            try:
                staged += future.result()
            except Exception as exc:  # the other groups' files are committed all the same
                failed = failed or exc
        results = tasks.commit_files(config.warehouse, stream, schema, staged, retry_rejected)
    if failed is not None:
        raise failed
    return results
