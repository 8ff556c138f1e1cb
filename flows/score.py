"""score-stream: new windows of a stream, scored by the champion -> scores, anomalies and
incidents in DuckDB."""
from __future__ import annotations

from dataclasses import asdict

import pandas as pd
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
    result = tasks.score_windows(config.db_path, stream, model, version, full=full,
                                 exclusions=settings.exclusions.build())
    # annotated: pandas has no type information, so Prefect's typing would take it for a coroutine
    incidents: pd.DataFrame = tasks.refresh_incidents(config.db_path, stream, settings.alerts.rule())
    get_run_logger().info(
        "%s v%d: %d windows scored, %d new anomalies; %d incidents (%d open)", version.name, version.version,
        result.windows_scored, result.anomalies_written, len(incidents), int((incidents["status"] == "open").sum()),
    )
    return {**asdict(result), "incidents": len(incidents)}
