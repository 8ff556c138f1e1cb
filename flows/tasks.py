"""Prefect tasks: each a thin wrapper of one library call.

Tasks pass frames and models in memory, so Prefect's input hashing for caching is
turned off (NO_CACHE). Tasks that touch the warehouse or MLflow retry transient failures;
the usual one is DuckDB's file lock while another process (a scheduled ingest during a
score run) writes. Every write is idempotent, so a retried task never duplicates a row.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from features.exclusions import Exclusions
from features.readers import StreamSchema
from features.windows import WindowSpec
from flows.errors import DOMAIN_ERRORS
from monitoring import incidents, ingest, quality, registry, scoring, training, warehouse
from monitoring.incidents import IncidentRule


def retry_transient(task, task_run, state) -> bool:
    """Retry I/O failures (a locked file, a busy tracking server), not domain errors such as
    a stream without readings or a missing model: those fail the same way every time."""
    error = state.result(raise_on_failure=False)
    return isinstance(error, Exception) and not isinstance(error, DOMAIN_ERRORS)


io_task = partial(
    task, cache_policy=NO_CACHE, retries=3, retry_delay_seconds=[2, 5, 10], retry_condition_fn=retry_transient
)
compute_task = partial(task, cache_policy=NO_CACHE)


@io_task(name="list-inbox")
def list_inbox(inbox: Path) -> list[Path]:
    return ingest.list_inbox(inbox)


@io_task(name="ingest-file")
def ingest_file(db_path: Path, lake_root: Path, stream: str, schema: StreamSchema, path: Path,
                retry_rejected: bool = False) -> ingest.BatchResult:
    return ingest.ingest_file(db_path, lake_root, stream, schema, path, retry_rejected=retry_rejected)


@io_task(name="load-readings")
def load_readings(db_path: Path, stream: str, start=None, end=None) -> pd.DataFrame:
    with warehouse.connect(db_path) as con:
        return warehouse.read_readings(con, stream, start=start, end=end)


@io_task(name="load-recent-readings")
def load_recent_readings(db_path: Path, stream: str, days: float, start=None, end=None) -> pd.DataFrame:
    return training.read_recent_readings(db_path, stream, days, start=start, end=end)


@compute_task(name="prepare-training-data")
def prepare_training(frame: pd.DataFrame, **kwargs) -> training.TrainingData:
    return training.prepare_training(frame, **kwargs)


@compute_task(name="fit-detector", task_run_name="fit-{kind}")
def fit_detector(data: training.TrainingData, kind: str, params: dict, rule) -> training.Candidate:
    return training.fit_candidate(data, kind, params, rule)


@io_task(name="register-training")
def register_training(tracking_uri: str, artifact_root: str, data: training.TrainingData,
                      candidates: list[training.Candidate], quality: pd.DataFrame | None = None):
    return registry.register_training(tracking_uri, artifact_root, data, candidates, quality=quality)


@io_task(name="stream-sensors")
def stream_sensors(db_path: Path, stream: str, listed: list[str], label_columns: list[str]) -> list[str]:
    return training.sensor_columns(db_path, stream, listed, label_columns)


@io_task(name="assess-quality")
def assess_quality(db_path: Path, stream: str, sensors: list[str], interval_s: float, gap_limit_s: float) -> pd.DataFrame:
    return quality.assess_stream(db_path, stream, sensors, interval_s, gap_limit_s)


@io_task(name="load-past-incidents")
def past_incidents(db_path: Path, stream: str) -> pd.DataFrame:
    with warehouse.connect(db_path) as con:
        return warehouse.read_incidents(con, stream)[["asset", "start", "end"]]


@io_task(name="refresh-incidents")
def refresh_incidents(db_path: Path, stream: str, rule: IncidentRule) -> pd.DataFrame:
    return incidents.refresh_incidents(db_path, stream, rule)


@io_task(name="recalibrate-threshold")
def recalibrate_threshold(tracking_uri: str, artifact_root: str, stream: str, frame: pd.DataFrame, rule, *,
                          label_columns: list[str], holdout_fraction: float, stride: int | None,
                          exclusions=None, excluded_intervals: pd.DataFrame | None = None):
    model, source = registry.load_model(tracking_uri, stream)
    champion = registry.loaded_bundle(model)
    scores, evaluation = training.recalibration_data(
        champion, frame, label_columns=label_columns, holdout_fraction=holdout_fraction,
        stride=stride, exclusions=exclusions, excluded_intervals=excluded_intervals,
    )
    return registry.register_recalibration(tracking_uri, artifact_root, champion, source, scores, evaluation, rule)


@io_task(name="resolve-champion")
def resolve_champion(tracking_uri: str, stream: str) -> registry.RegisteredVersion:
    return registry.resolve_alias(tracking_uri, stream)


@io_task(name="load-champion")
def load_champion(tracking_uri: str, stream: str):
    return registry.load_model(tracking_uri, stream)


@io_task(name="score-windows")
def score_windows(db_path: Path, stream: str, model, version: registry.RegisteredVersion,
                  full: bool = False, exclusions: Exclusions | None = None) -> scoring.ScoreResult:
    bundle = registry.loaded_bundle(model)
    spec: WindowSpec = bundle.spec
    return scoring.score_stream(
        db_path, stream, model.predict, spec, bundle.input_columns(), version.name, version.version, full=full,
        exclusions=exclusions,
    )
