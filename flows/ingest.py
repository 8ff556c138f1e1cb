"""ingest-readings: every new file in a stream's inbox -> the stream's lake table."""
from __future__ import annotations

from prefect import flow, get_run_logger

from flows import tasks
from flows.config import load_config
from flows.notify import alert_on_failure


@flow(name="ingest-readings", on_failure=[alert_on_failure], on_crashed=[alert_on_failure])
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
    return results
