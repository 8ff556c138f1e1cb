"""score-stream: new windows of a stream, scored by the champion -> scores, anomalies and
incidents in DuckDB."""
from __future__ import annotations

from dataclasses import asdict

from prefect import flow, get_run_logger

from flows import tasks
from flows.config import load_config


@flow(name="score-stream")
def score_stream(stream: str, config_path: str | None = None, full: bool = False) -> dict:
    """Score windows after each asset's watermark with `<stream>-detector@champion`.

    `full=True` rescores all history (rows already written for this version are kept, not duplicated)."""
    config = load_config(config_path)
    settings = config.stream(stream)
    model, version = tasks.load_champion(config.mlflow_tracking_uri, stream)
    # one transaction: the run's scores, anomalies, watermarks and incidents commit together
    result = tasks.score_windows(config.warehouse, stream, model, version, full=full,
                                 exclusions=settings.exclusions.build(), incidents=settings.alerts.rule())
    get_run_logger().info(
        "%s v%d: %d windows scored, %d new anomalies; %d incidents (%d open)", version.name, version.version,
        result.windows_scored, result.anomalies_written, result.incidents, result.open_incidents,
    )
    return asdict(result)
