"""ingest-readings: every new file in a stream's inbox -> the stream's lake table.

A run that accepted at least one row emits the Prefect event `aemon.readings.ingested`
(resource `aemon.stream.<stream>`, payload: the files with rows accepted and the count),
which triggers the stream's score deployment (flows/serve.py, prefect.yaml): an alert need
not wait for the score schedule. A run that found nothing new emits nothing."""
from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.events import emit_event

from flows import tasks
from flows.config import load_config

READINGS_INGESTED = "aemon.readings.ingested"


def stream_resource(stream: str) -> dict[str, str]:
    """The Prefect resource a stream's events are about."""
    return {"prefect.resource.id": f"aemon.stream.{stream}", "prefect.resource.name": stream}


@flow(name="ingest-readings")
def ingest_readings(stream: str, config_path: str | None = None, retry_rejected: bool = False) -> list[dict]:
    """Ingest the files waiting in `<home>/inbox/<stream>/`; returns one audit dict per file."""
    config = load_config(config_path)
    settings = config.stream(stream)
    logger = get_run_logger()
    results = []
    for path in tasks.list_inbox(config.inbox(stream)):
        # A bad file never stops the others: its problem is recorded in its batch row.
        result = tasks.ingest_file(
            config.warehouse, stream, settings.stream_schema(), path, retry_rejected=retry_rejected
        )
        if result.status == "rejected":
            logger.warning("%s rejected: %s", path.name, result.error)
        elif result.rows_quarantined:
            logger.warning("%s: %d rows accepted, %d quarantined (see the quarantine table)",
                           path.name, result.rows_accepted, result.rows_quarantined)
        else:
            logger.info("%s %s: %d rows", path.name, result.status, result.rows_accepted)
        results.append(result.to_dict())
    accepted = [r for r in results if r["rows_accepted"] > 0]
    if accepted:
        emit_event(READINGS_INGESTED, resource=stream_resource(stream), payload={
            "stream": stream, "files": [r["file"] for r in accepted],
            "rows_accepted": sum(r["rows_accepted"] for r in accepted),
        })
    return results
