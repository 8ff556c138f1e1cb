"""score-stream: new windows of a stream, scored by the champion -> scores, anomalies and
incidents in DuckDB."""
from __future__ import annotations

from dataclasses import asdict

from prefect import flow, get_run_logger

from flows import tasks
from flows.config import load_config
from flows.notify import alert_on_failure


@flow(name="score-stream", on_failure=[alert_on_failure], on_crashed=[alert_on_failure])
def score_stream(stream: str, config_path: str | None = None, full: bool = False) -> dict:
    """Score windows after each asset's watermark with `<stream>-detector@champion`.

    `full=True` rescores all history (rows already written for this version are kept, not duplicated).
    Then the incident changes go out as alerts (Prefect events, the webhook), a stalled or
    resumed feed too, and the run publishes a summary and the active incidents as artifacts."""
    config = load_config(config_path)
    settings = config.stream(stream)
    model, version = tasks.load_champion(config.mlflow_tracking_uri, stream)
    # one transaction: the run's scores, anomalies, watermarks and incidents commit together
    result = tasks.score_windows(config.warehouse, stream, model, version, full=full,
                                 exclusions=settings.exclusions.build(), incidents=settings.alerts.rule())
    feed = tasks.check_feed(config, stream)
    sent = tasks.deliver_alerts(config, stream)
    tasks.publish_scoring(config, stream, result, sent, feed)
    get_run_logger().info(
        "%s v%d: %d windows scored, %d new anomalies; %d active incidents (%d not recovered), %d changes, "
        "%d alerts sent", version.name, version.version, result.windows_scored, result.anomalies_written,
        result.incidents, result.open_incidents, result.incident_changes, sum(sent.values()),
    )
    return {**asdict(result), "alerts_sent": sent, "feed": None if feed is None else feed.payload["status"]}
