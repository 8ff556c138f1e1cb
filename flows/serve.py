"""`aemon serve`: every configured stream's ingest, score, train and drift-check flows on their
schedules, and the warehouse's daily upkeep, in this one process (a Prefect Runner). The single-machine alternative to
`prefect deploy` + a worker; it needs a Prefect API whose scheduler runs (a `prefect
server`, or Prefect Cloud) named by PREFECT_API_URL.

Shutdown. SIGINT (Ctrl-C) and SIGTERM (`kill`, `systemctl stop`, `docker stop`) both stop
it cleanly: no new runs are taken, every run in progress is cancelled (its process
stopped, its state set to Cancelled, which releases its deployment's concurrency slot at
once) and the schedules are paused; then the process exits with code 0. Prefect 3.8.8's
own `serve` does not: its SIGTERM handler calls `Runner.stop()` from inside the event loop,
where that returns a coroutine nobody awaits, so a run in progress stays Running and holds
its slot until the lease expires (about 5 minutes); and on SIGINT asyncio cancels the
runner without cancelling its runs. Here both signals are handled on the runner's event
loop, which awaits `Runner.astop()` (cancel every run, stop polling).

Scoring is event-driven as well as scheduled: an ingest run that accepted rows emits
`aemon.readings.ingested` about `aemon.stream.<stream>`, and that event triggers the stream's
score deployment, so an alert does not wait for the score interval (kept as the fallback).
Runs do not pile up: the ingest emits at most one event per run; the trigger fires at once on
an event, then ignores the stream's events for SCORE_TRIGGER_WITHIN (a burst is one run;
readings that run started too early to see wait for the next event or the schedule); and
one score run at a time (concurrency limit 1) with ENQUEUE: a run that finds the slot taken
waits for it rather than being cancelled, which would leave its readings to the schedule.
The server retries a waiting run after `PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS`
(Prefect's default 30 s; the README recommends 5).
"""
from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any

from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import RunnerDeployment
from prefect.events import DeploymentEventTrigger
from prefect.logging import get_logger
from prefect.runner import Runner
from prefect.schedules import Cron, Interval

from flows.config import AemonConfig
from flows.drift import check_drift
from flows.ingest import READINGS_INGESTED, ingest_readings, stream_resource
from flows.maintain import maintain_warehouse
from flows.score import score_stream
from flows.train import train_detectors

SCORE_TRIGGER_WITHIN = timedelta(seconds=10)
ONE_AT_A_TIME = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE)


def score_trigger(stream: str) -> DeploymentEventTrigger:
    """Run the stream's score deployment when its readings were ingested."""
    return DeploymentEventTrigger(
        name=f"{stream}-score-on-ingest",
        expect={READINGS_INGESTED},
        match={"prefect.resource.id": stream_resource(stream)["prefect.resource.id"]},
        posture="Reactive", threshold=1, within=SCORE_TRIGGER_WITHIN,
    )


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
                name=f"{stream}-score", parameters=params, concurrency_limit=ONE_AT_A_TIME,
                schedules=[Interval(plan.score_every_s, timezone=plan.timezone)],
                triggers=[score_trigger(stream)] if plan.score_on_ingest else [],
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


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def serve_streams(config: AemonConfig, config_path: str | None = None) -> None:
    """Serve every stream's deployments until SIGINT or SIGTERM, then shut down cleanly."""
    serve_deployments(stream_deployments(config, config_path))


def serve_deployments(deployments: list[RunnerDeployment]) -> None:
    runner = Runner(pause_on_shutdown=True)
    for deployment in deployments:
        runner.add_deployment(deployment)
    asyncio.run(run_until_stopped(runner))


async def run_until_stopped(runner: Runner) -> None:
    """Run `runner` until a stop signal; then cancel its runs in progress and stop it."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    served = asyncio.create_task(runner.start())

    def handle(signum: int) -> None:
        get_logger("aemon.serve").info("%s received: cancelling the runs in progress and stopping",
                                       signal.Signals(signum).name)
        stop.set()

    def install() -> None:
        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, handle, signum)

    install()
    # Runner.start() puts its own SIGTERM handler in place as it starts: ours replace it.
    while not runner.started and not served.done():
        await asyncio.sleep(0.05)
    install()
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({served, stopped}, return_when=asyncio.FIRST_COMPLETED)
    try:
        if stop.is_set() and runner.started:
            await runner.astop()  # every run in progress cancelled (state Cancelled), the loops stopped
        await served  # leaves the runner: its schedules paused
    finally:
        stopped.cancel()
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)
