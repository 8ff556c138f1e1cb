"""`aemon serve`: every configured stream's ingest, score, train and drift-check flows on their
schedules, and the warehouse's daily upkeep, in this one process (Prefect's `serve`). The single-machine alternative to
`prefect deploy` + a worker; it needs a Prefect API whose scheduler runs (a `prefect
server`, or Prefect Cloud) named by PREFECT_API_URL.
"""
from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from prefect import serve
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron, Interval

from flows.config import AemonConfig
from flows.drift import check_drift
from flows.ingest import ingest_readings
from flows.maintain import maintain_warehouse
from flows.score import score_stream
from flows.train import train_detectors


def stream_deployments(config: AemonConfig, config_path: str | None = None) -> list[RunnerDeployment]:
    deployments = []
    for stream, settings in sorted(config.streams.items()):
        params = {"stream": stream, "config_path": config_path}
        plan = settings.schedule
        deployments += [
            ingest_readings.to_deployment(
                name=f"{stream}-ingest", parameters=params, concurrency_limit=1,
                schedules=[Interval(plan.ingest_every_s, timezone=plan.timezone)],
            ),
            score_stream.to_deployment(
                name=f"{stream}-score", parameters=params, concurrency_limit=1,
                schedules=[Interval(plan.score_every_s, timezone=plan.timezone)],
            ),
            train_detectors.to_deployment(
                name=f"{stream}-train", parameters=params, concurrency_limit=1,
                schedules=[Cron(plan.train_cron, timezone=plan.timezone)],
            ),
            check_drift.to_deployment(
                name=f"{stream}-drift", parameters=params, concurrency_limit=1,
                schedules=[Interval(settings.drift.every_s, timezone=plan.timezone)],
            ),
        ]
    upkeep = config.warehouse_settings
    deployments.append(maintain_warehouse.to_deployment(
        name="warehouse-maintain", parameters={"config_path": config_path}, concurrency_limit=1,
        schedules=[Cron(upkeep.maintain_cron, timezone="UTC")],
    ))
    return [_built(d) for d in deployments]


def _built(deployment: RunnerDeployment | Coroutine[Any, Any, RunnerDeployment]) -> RunnerDeployment:
    """`to_deployment` called outside an event loop returns the deployment itself (inside
    one, a coroutine: Prefect dispatches on the caller); aemon builds them synchronously."""
    if not isinstance(deployment, RunnerDeployment):
        raise TypeError(f"expected a built deployment, got {type(deployment).__name__}: call it outside an event loop")
    return deployment


def serve_streams(config: AemonConfig, config_path: str | None = None) -> None:
    serve(*stream_deployments(config, config_path))
