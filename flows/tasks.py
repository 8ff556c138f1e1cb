"""Prefect tasks: each a thin wrapper of one library call.

The training, registry and scoring code (torch, MLflow) is imported by the tasks that use
it, so a flow that needs none of them (ingest) starts without it.

Tasks pass frames and models in memory, so Prefect's input hashing for caching is
turned off (NO_CACHE). Tasks that touch the warehouse or MLflow retry transient failures;
the usual one is a busy tracking server, or a warehouse commit that met another writer's
more often than the store's own retries allow. Every write is idempotent, so a retried task never duplicates a row.
"""
from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import pandas as pd
from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import FlowRun, TaskRun
from prefect.deployments import run_deployment
from prefect.states import State

from flows import notify
from flows.errors import DOMAIN_ERRORS
from monitoring.store import data_quality, ingestion, maintenance, readings, results
from monitoring.store.redaction import redact

if TYPE_CHECKING:
    from aemodels.thresholds import ThresholdRule
    from features.exclusions import Exclusions
    from features.readers import StreamSchema
    from flows.config import AemonConfig
    from monitoring.alerting import scoring
    from monitoring.alerting.adaptive import AlarmRule
    from monitoring.alerting.alerts import Alert
    from monitoring.alerting.incidents import IncidentRule
    from monitoring.evaluation import stream_drift
    from monitoring.evaluation.drift_detection import DriftRule
    from monitoring.models import fitting, promotion, registry
    from monitoring.models.gate import GateDecision
    from monitoring.store.connection import Warehouse

P = ParamSpec("P")
R = TypeVar("R")
logger = logging.getLogger("aemon.steps")  # steps run in this process (in_process): no flow run to log to


def is_transient(error: BaseException) -> bool:
    """An I/O failure (a locked file, a busy tracking server, a dropped S3 connection) that a
    retry may get past; not a domain error such as a stream without readings or a missing
    model, which fails the same way every time, and not an interrupt."""
    return isinstance(error, Exception) and not isinstance(error, DOMAIN_ERRORS)


def retry_transient(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect's retry condition for io_task: retry a transient failure (is_transient)."""
    return is_transient(state.result(raise_on_failure=False))


def io_task(name: str | None = None, **options: Any) -> Callable[[Callable[P, R]], Task[P, R]]:
    """A task that reads or writes the warehouse or MLflow: retried on transient failures.
    `options`: any other argument of prefect.task, or one of these replaced."""
    settings: dict[str, Any] = {"cache_policy": NO_CACHE, "retries": 3, "retry_delay_seconds": [2, 5, 10],
                                "retry_condition_fn": retry_transient, **options}
    return task(name=name, **settings)


def compute_task(name: str | None = None, **options: Any) -> Callable[[Callable[P, R]], Task[P, R]]:
    """A task that only computes: a failure is not transient, so it is not retried."""
    settings: dict[str, Any] = {"cache_policy": NO_CACHE, **options}
    return task(name=name, **settings)


@io_task("scan-inbox")
def scan_inbox(warehouse: Warehouse, stream: str, inbox: Path | str,
               retry_rejected: bool = False) -> ingestion.InboxScan:
    return ingestion.scan_inbox(warehouse, stream, inbox, retry_rejected=retry_rejected)


@io_task("remove-stale-staging")
def remove_stale_staging(warehouse: Warehouse, stream: str) -> list[Path | str]:
    return ingestion.remove_stale_staging(warehouse, stream)


@io_task("archive-file")
def archive_file(path: ingestion.InboxPath, folder: Path | str) -> ingestion.InboxPath | None:
    return ingestion.archive_file(path, folder)


@io_task("ingest-file")
def ingest_file(warehouse: Warehouse, stream: str, schema: StreamSchema, path: ingestion.InboxPath,
                retry_rejected: bool = False) -> ingestion.BatchResult:
    return ingestion.ingest_file(warehouse, stream, schema, path, retry_rejected=retry_rejected)


def _stage_run_name() -> str:
    """stage-<first file>.., for a group of local files or inbox objects."""
    from prefect.runtime import task_run

    paths = task_run.parameters.get("paths") or ["?"]
    return f"stage-{ingestion.file_name(paths[0])}.."


@io_task("stage-files", task_run_name=_stage_run_name)
def stage_files(warehouse: Warehouse, stream: str, schema: StreamSchema, paths: list[ingestion.InboxPath],
                retry_rejected: bool = False) -> list[ingestion.StagedFile | ingestion.BatchResult]:
    return ingestion.stage_files(warehouse, stream, schema, paths, retry_rejected=retry_rejected)


# Not retried: a retry would commit again the files staged for it (the store's own write
# retries cover a busy catalog); what it leaves uncommitted is removed.
@compute_task("commit-files")
def commit_files(warehouse: Warehouse, stream: str, schema: StreamSchema,
                 staged: list[ingestion.StagedFile | ingestion.BatchResult],
                 retry_rejected: bool = False) -> list[ingestion.BatchResult]:
    return ingestion.commit_staged(warehouse, stream, schema, staged, retry_rejected=retry_rejected)


@io_task("load-readings")
def load_readings(warehouse: Warehouse, stream: str, start: pd.Timestamp | None = None,
                  end: pd.Timestamp | None = None) -> pd.DataFrame:
    return readings.load_readings(warehouse, stream, start=start, end=end)


@io_task("load-asset-readings", task_run_name="load-readings-{assets[0]}..")
def load_asset_readings(warehouse: Warehouse, stream: str, assets: list[str], start: pd.Timestamp | None = None,
                        end: pd.Timestamp | None = None) -> pd.DataFrame:
    return readings.load_readings(warehouse, stream, start=start, end=end, assets=assets)


@compute_task("join-readings")
def join_readings(parts: list[pd.DataFrame]) -> pd.DataFrame:
    return readings.join_parts(parts)


@io_task("stream-assets")
def stream_assets(warehouse: Warehouse, stream: str) -> list[str]:
    return readings.stream_assets(warehouse, stream)


@io_task("load-recent-readings")
def load_recent_readings(warehouse: Warehouse, stream: str, days: float, start: pd.Timestamp | None = None,
                         end: pd.Timestamp | None = None) -> pd.DataFrame:
    return readings.read_recent_readings(warehouse, stream, days, start=start, end=end)


@compute_task("prepare-training-data")
def prepare_training(frame: pd.DataFrame, **kwargs: Any) -> fitting.TrainingData:
    from monitoring.models import fitting

    return fitting.prepare_training(frame, **kwargs)


@compute_task("fit-detector", task_run_name="fit-{kind}")
def fit_detector(data: fitting.TrainingData, kind: str, params: dict[str, Any],
                 rule: ThresholdRule, calibration_folds: int = 1) -> fitting.Candidate:
    from monitoring.models import fitting

    return fitting.fit_candidate(data, kind, params, rule, figures=True, calibration_folds=calibration_folds)


@io_task("register-training")
def register_training(tracking_uri: str, artifact_root: str | None, data: fitting.TrainingData,
                      candidates: list[fitting.Candidate],
                      quality: pd.DataFrame | None = None) -> promotion.TrainingOutcome:
    from monitoring.models import promotion

    return promotion.register_training(tracking_uri, artifact_root, data, candidates, quality=quality)


@io_task("stream-sensors")
def stream_sensors(warehouse: Warehouse, stream: str, listed: list[str], label_columns: list[str]) -> list[str]:
    return readings.sensor_columns(warehouse, stream, listed, label_columns)


@io_task("assess-quality")
def assess_quality(warehouse: Warehouse, stream: str, sensors: list[str], interval_s: float,
                   gap_limit_s: float) -> pd.DataFrame:
    return data_quality.assess_stream(warehouse, stream, sensors, interval_s, gap_limit_s)


@io_task("load-past-incidents")
def past_incidents(warehouse: Warehouse, stream: str) -> pd.DataFrame:
    return results.past_incidents(warehouse, stream)


@io_task("maintain-warehouse")
def maintain_warehouse(warehouse: Warehouse, retention_days: float) -> maintenance.MaintenanceResult:
    return maintenance.maintain(warehouse, retention_days)


@io_task("recalibrate-threshold")
def recalibrate_threshold(tracking_uri: str, artifact_root: str | None, stream: str, frame: pd.DataFrame,
                          rule: ThresholdRule, *, label_columns: list[str], holdout_fraction: float,
                          stride: int | None, exclusions: Exclusions | None = None,
                          excluded_intervals: pd.DataFrame | None = None,
                          ) -> tuple[registry.RegisteredVersion, GateDecision]:
    from monitoring.models import promotion

    return promotion.recalibrate_champion(
        tracking_uri, artifact_root, stream, frame, rule, label_columns=label_columns,
        holdout_fraction=holdout_fraction, stride=stride, exclusions=exclusions, excluded_intervals=excluded_intervals,
    )


@io_task("resolve-champion")
def resolve_champion(tracking_uri: str, stream: str) -> registry.RegisteredVersion:
    from monitoring.models import registry

    return registry.resolve_alias(tracking_uri, stream)


@io_task("load-champion")
def load_champion(tracking_uri: str, stream: str) -> tuple[registry.LoadedModel, registry.RegisteredVersion]:
    from monitoring.models import registry

    return registry.load_model(tracking_uri, stream)


@io_task("check-feed")
def check_feed(config: AemonConfig, stream: str) -> Alert | None:
    return notify.feed_check(config, stream)


@io_task("deliver-alerts")
def deliver_alerts(config: AemonConfig, stream: str) -> dict[str, int]:
    return notify.deliver_pending(config, stream)


@io_task("publish-scoring")
def publish_scoring(config: AemonConfig, stream: str, result: scoring.ScoreResult, sent: dict[str, int],
                    feed: Alert | None) -> None:
    notify.publish_scoring(stream, result, notify.active_incidents(config.warehouse, stream), sent, feed)


@io_task("score-windows")
def score_windows(warehouse: Warehouse, stream: str, model: registry.LoadedModel, version: registry.RegisteredVersion,
                  full: bool = False, exclusions: Exclusions | None = None,
                  incidents: IncidentRule | None = None, alarm: AlarmRule | None = None) -> scoring.ScoreResult:
    from monitoring.alerting import scoring

    return scoring.score_model(warehouse, stream, model, version, full=full, exclusions=exclusions,
                               incidents=incidents, alarm=alarm)


@io_task("score-assets", task_run_name="score-{assets[0]}..")
def score_assets(warehouse: Warehouse, stream: str, model: registry.LoadedModel, version: registry.RegisteredVersion,
                 assets: list[str], full: bool = False, exclusions: Exclusions | None = None,
                 incidents: IncidentRule | None = None, alarm: AlarmRule | None = None) -> scoring.ScoreResult:
    from monitoring.alerting import scoring

    return scoring.score_model(warehouse, stream, model, version, full=full, exclusions=exclusions,
                               incidents=incidents, assets=assets, alarm=alarm)


@compute_task("combine-scoring")
def combine_scoring(stream: str, version: registry.RegisteredVersion,
                    parts: list[scoring.ScoreResult]) -> scoring.ScoreResult:
    from monitoring.alerting import scoring

    return scoring.ScoreResult.combined(stream, version.version, parts)


@io_task("check-drift")
def check_drift(warehouse: Warehouse, tracking_uri: str, artifact_root: str | None, stream: str, rule: DriftRule, *,
                label_columns: list[str], exclusions: Exclusions | None, retrain: bool) -> stream_drift.DriftCheck:
    from monitoring.evaluation import stream_drift

    return stream_drift.check_stream(warehouse, tracking_uri, artifact_root, stream, rule,
                                     label_columns=label_columns, exclusions=exclusions, retrain=retrain)


def in_process(step: Task[P, R]) -> Callable[P, R]:
    """A task's function to call directly, retried as the task would be: up to its `retries`
    times after its `retry_delay_seconds`, on a transient error (is_transient, the rule
    retry_transient gives Prefect). Prefect applies that policy only inside a flow run, so a
    step run in this process (a blip of S3 or a locked catalog during `aemon ingest` without
    a Prefect API) gets it here."""
    fn = step.fn
    if not step.retries:
        return fn
    delays = step.retry_delay_seconds
    waits = list(delays) if isinstance(delays, list) else [float(delays or 0)] * step.retries
    waits = (waits + waits[-1:] * step.retries)[:step.retries]  # a shorter list repeats its last delay, as Prefect's

    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        for wait in waits:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                logger.warning("%s failed (%s: %s); retrying in %g s", step.name, type(exc).__name__,
                               redact(str(exc)), wait)
                time.sleep(wait)
        return fn(*args, **kwargs)

    return call


class InProcess:
    """The tasks' own functions, called directly (attribute access mirrors this module):
    a flow's steps run in this process without a Prefect API (flows.ingest.ingest_inbox),
    with the tasks' retries (in_process)."""

    def __getattr__(self, name: str) -> Any:
        step = globals()[name]
        return in_process(step) if isinstance(step, Task) else step


IN_PROCESS = InProcess()


# Not retried: a retry after the API accepted the run would schedule a second training.
@compute_task("run-train-deployment")
def run_train_deployment(name: str) -> str:
    """Schedule a run of the deployment `name` (flow/deployment) and return its flow run id,
    without waiting for it (timeout=0): a worker, or `aemon serve`, runs it."""
    run = run_deployment(name, timeout=0)
    if not isinstance(run, FlowRun):  # a coroutine: called from inside an event loop
        raise TypeError(f"run_deployment returned {type(run).__name__}; call it outside an event loop")
    return str(run.id)
