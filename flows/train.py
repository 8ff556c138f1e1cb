"""train-detectors: normal windows of a stream -> the configured detectors (in parallel
tasks) -> MLflow (a parent run, a child run per detector) -> registry versions, with the
promotion gate setting `champion` / `challenger`."""
from __future__ import annotations

import atexit
import contextlib
import logging
import multiprocessing
import os
import signal
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prefect import flow, get_run_logger
from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner

from flows import fanout, tasks
from flows.config import AemonConfig, detector_params, load_config
from flows.notify import alert_on_failure

if TYPE_CHECKING:
    import pandas as pd

    from monitoring.models import fitting


def _threads_per_fit(n_fits: int) -> int:
    """Torch threads per detector when `n_fits` train at once: the cores shared out."""
    return max(1, (os.cpu_count() or 1) // max(1, n_fits))


def _start_fit_worker() -> None:
    """In each fit worker: Ctrl-C reaches the whole process group, and stopping is the flow
    process's job (see FitRunner), not a KeyboardInterrupt in the middle of a fit. And the
    worker ends without the interpreter's teardown (see _end_fit_worker)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    atexit.register(_end_fit_worker)


def _end_fit_worker() -> None:
    """The last exit step of a fit worker: os._exit once its logs are flushed. By then its
    results are returned and its queues flushed (multiprocessing does both before the exit
    handlers run), and the handlers registered after this one (Prefect's) have run; what
    is skipped is freeing torch and every imported module one by one, which held the end
    of each training 2 s on two cores (7 s on a loaded machine) while the pool waited."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(0)


class FitRunner(ProcessPoolTaskRunner):
    """The process pool of the fits, stopped with its flow run: when the run is cancelled or
    interrupted (Prefect's TerminationSignal on SIGTERM, KeyboardInterrupt on SIGINT) the
    workers are terminated at once, instead of the pool waiting for every fit in flight to
    end (minutes) and the workers outliving a run its runner had to kill."""

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        if exc_type is not None and not issubclass(exc_type, Exception):
            for worker in multiprocessing.active_children():
                worker.terminate()
        super().__exit__(exc_type, exc_value, traceback)


# Detectors fit in parallel processes, at most three (one per kind). Typed as TaskRunner[Any]:
# Prefect's flow decorator asks for TaskRunner[PrefectFuture], a generic it holds invariant.
FIT_RUNNER: TaskRunner[Any] = FitRunner(max_workers=max(1, min(3, os.cpu_count() or 1)),
                                        initializer=_start_fit_worker)


@flow(name="train-detectors", task_runner=FIT_RUNNER, on_failure=[alert_on_failure], on_crashed=[alert_on_failure])
def train_detectors(
    stream: str,
    config_path: str | None = None,
    train_start: datetime | None = None,
    train_end: datetime | None = None,
    exclude_past_incidents: bool = True,
) -> dict:
    """Train the stream's configured detectors on its training range, register each as a
    version of `<stream>-detector`, and let the gate choose `champion` / `challenger`.

    `train_start` / `train_end` override the configured training range. Never normal data:
    labeled rows, the stream's exclusions (machine-off rules, maintenance intervals) and,
    unless `exclude_past_incidents` is false, the incidents already in the warehouse. The
    stream's data-quality report is attached to the training's MLflow run."""
    config = load_config(config_path)
    settings = config.stream(stream)
    start = train_start or settings.train.start
    end = train_end or settings.train.end
    with contextlib.ExitStack() as stack:
        runner = stack.enter_context(fanout.dask_runner(config.runner)) if config.runner.kind == "dask" else None
        candidates, data, quality = _prepare_and_fit(config, stream, start, end, exclude_past_incidents, runner)
    outcome = tasks.register_training(config.mlflow_tracking_uri, config.mlflow_artifact_root, data, candidates,
                                      quality=quality)
    decision = outcome.decision
    logger = get_run_logger()
    for kind, version in outcome.versions.items():
        logger.info("registered %s v%d (%s), threshold %.6g, aliases %s", version.name, version.version, kind,
                    version.threshold, ",".join(version.aliases) or "-")
    logger.info("gate: v%d %s", decision.nominee.version, decision.reason)
    # the champion after the gate: one of these versions, or the earlier one it kept
    champion = tasks.resolve_champion(config.mlflow_tracking_uri, stream)
    return {
        "model_name": champion.name,
        "version": champion.version,
        "kind": champion.kind,
        "threshold": champion.threshold,
        "promoted": decision.promoted,
        "reason": decision.reason,
        "run_id": outcome.parent_run_id,
        "candidates": [
            {"kind": c.kind, "version": outcome.versions[c.kind].version,
             "aliases": list(outcome.versions[c.kind].aliases), "threshold": c.bundle.threshold,
             "epochs": len(c.detector.history_), "fit_seconds": c.fit_seconds, **c.evaluation.metrics}
            for c in candidates
        ],
        "train_windows": data.params["train.n_windows"],
        "val_windows": data.params["calibration.n_windows"],
    }


def _prepare_and_fit(config: AemonConfig, stream: str, start: datetime | None, end: datetime | None,
                     exclude_past_incidents: bool, runner: TaskRunner[Any] | None,
                     ) -> tuple[list[fitting.Candidate], fitting.TrainingData, pd.DataFrame]:
    """The training data and the fitted candidates: the fits in the flow's process pool, or,
    with a Dask `runner`, the readings read by groups of assets and the fits on its workers."""
    settings = config.stream(stream)
    labels = list(settings.label_columns)
    if runner is None:
        frame = tasks.load_readings(config.warehouse, stream, start=start, end=end)
    else:
        assets = tasks.stream_assets(config.warehouse, stream)
        groups = fanout.split_assets(assets, config.runner.assets_per_task, fanout.worker_threads(runner))
        reads = [runner.submit(tasks.load_asset_readings, {"warehouse": config.warehouse, "stream": stream,
                                                           "assets": group, "start": start, "end": end})
                 for group in groups]
        frame = (tasks.join_readings([r.result() for r in reads]) if reads
                 else tasks.load_readings(config.warehouse, stream, start=start, end=end))
    sensors = tasks.stream_sensors(config.warehouse, stream, list(settings.sensors), labels)
    past = tasks.past_incidents(config.warehouse, stream) if exclude_past_incidents else None
    quality = tasks.assess_quality(config.warehouse, stream, sensors, settings.window.interval_s,
                                   settings.window.gap_limit_s)
    data = tasks.prepare_training(
        frame, stream=stream, sensors=sensors, spec=settings.window,
        label_columns=labels, start=start, end=end,
        val_fraction=settings.train.val_fraction, holdout_fraction=settings.train.holdout_fraction,
        train_stride=settings.train.stride, exclusions=settings.exclusions.build(), excluded_intervals=past,
        differenced=list(settings.differenced), max_train_windows=settings.train.max_windows,
    )
    kinds = list(settings.detectors.kinds)
    rule = settings.threshold.rule()
    folds = settings.train.calibration_folds
    futures = []
    for kind in kinds:
        params = detector_params(settings.detectors, kind)
        params.setdefault("progress", False)  # parallel fits: a terminal bar each would interleave
        if runner is None:
            params.setdefault("n_threads", _threads_per_fit(len(kinds)))
            futures.append(tasks.fit_detector.submit(data, kind, params, rule, folds))
        else:
            params.setdefault("n_threads", config.runner.threads_per_worker)
            futures.append(runner.submit(tasks.fit_detector, {"data": data, "kind": kind, "params": params,
                                                              "rule": rule, "calibration_folds": folds}))
    return [future.result() for future in futures], data, quality


@flow(name="recalibrate-threshold")
def recalibrate_threshold(
    stream: str,
    config_path: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    exclude_past_incidents: bool = True,
) -> dict:
    """Refit the champion's threshold on recent normal windows (default: the last
    `threshold.recalibrate_days` of readings) and register it as a new version of the
    same network, through the same gate as a training. Labeled rows, the stream's
    exclusions and (unless `exclude_past_incidents` is false) past incidents are never
    normal windows."""
    config = load_config(config_path)
    settings = config.stream(stream)
    frame = tasks.load_recent_readings(config.warehouse, stream, settings.threshold.recalibrate_days,
                                       start=start, end=end)
    past = tasks.past_incidents(config.warehouse, stream) if exclude_past_incidents else None
    version, decision = tasks.recalibrate_threshold(
        config.mlflow_tracking_uri, config.mlflow_artifact_root, stream, frame, settings.threshold.rule(),
        label_columns=list(settings.label_columns), holdout_fraction=settings.train.holdout_fraction,
        stride=settings.train.stride, exclusions=settings.exclusions.build(), excluded_intervals=past,
    )
    get_run_logger().info("recalibrated %s v%d: threshold %.6g; gate: %s", version.name, version.version,
                          version.threshold, decision.reason)
    return {"model_name": version.name, "version": version.version, "threshold": version.threshold,
            "promoted": decision.promoted, "reason": decision.reason, "champion": decision.champion.version,
            "aliases": ["champion"] if decision.promoted else
            (["challenger"] if decision.challenger and decision.challenger.version == version.version else [])}
