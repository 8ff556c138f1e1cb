"""score-stream: new windows of a stream, scored by the champion -> scores, anomalies and
incidents in DuckDB."""
from __future__ import annotations

from dataclasses import asdict

from prefect import flow, get_run_logger

from flows import fanout, tasks
from flows.config import load_config
from flows.notify import alert_on_failure


@flow(name="score-stream", on_failure=[alert_on_failure], on_crashed=[alert_on_failure])
def score_stream(stream: str, config_path: str | None = None, full: bool = False) -> dict:
    """Score windows after each asset's watermark with `<stream>-detector@champion`.

    `full=True` rescores all history (rows already written for this version are kept, not duplicated).
    With [runner] kind = "dask" the assets are scored in groups, as parallel tasks on a Dask cluster.
    Then the incident changes go out as alerts (Prefect events, the webhook), a stalled or
    resumed feed too, and the run publishes a summary and the active incidents as artifacts."""
    config = load_config(config_path)
    settings = config.stream(stream)
    model, version = tasks.load_champion(config.mlflow_tracking_uri, stream)
    exclusions, rule, alarm = settings.exclusions.build(), settings.alerts.rule(), settings.alerts.alarm_rule()
    assets = tasks.stream_assets(config.warehouse, stream) if config.runner.kind == "dask" else []
    if assets:
        # on a Dask cluster, by groups of assets: each group's scores, anomalies, watermarks
        # and incidents commit together (an asset's incidents are its own)
        with fanout.dask_runner(config.runner) as runner:
            groups = fanout.split_assets(assets, config.runner.assets_per_task, fanout.worker_threads(runner))
            futures = [runner.submit(tasks.score_assets, {
                "warehouse": config.warehouse, "stream": stream, "model": model, "version": version,
                "assets": group, "full": full, "exclusions": exclusions, "incidents": rule,
                "alarm": alarm}) for group in groups]
            for future in futures:  # every group ends (commits or not) before the cluster goes
                future.wait()
            parts = [future.result() for future in futures]
        result = tasks.combine_scoring(stream, version, parts)
    else:
        # one transaction: the run's scores, anomalies, watermarks and incidents commit together
        result = tasks.score_windows(config.warehouse, stream, model, version, full=full,
                                     exclusions=exclusions, incidents=rule, alarm=alarm)
    feed = tasks.check_feed(config, stream)
    sent = tasks.deliver_alerts(config, stream)
    tasks.publish_scoring(config, stream, result, sent, feed)
    get_run_logger().info(
        "%s v%d: %d windows scored, %d new anomalies; %d active incidents (%d not recovered), %d changes, "
        "%d alerts sent", version.name, version.version, result.windows_scored, result.anomalies_written,
        result.incidents, result.open_incidents, result.incident_changes, sum(sent.values()),
    )
    return {**asdict(result), "alerts_sent": sent, "feed": None if feed is None else feed.payload["status"]}
