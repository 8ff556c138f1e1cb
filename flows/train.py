"""train-detectors: normal windows of a stream -> detector + threshold -> MLflow registry."""
from __future__ import annotations

from datetime import datetime

from prefect import flow, get_run_logger

from flows import tasks
from flows.config import load_config


@flow(name="train-detectors")
def train_detectors(
    stream: str,
    config_path: str | None = None,
    train_start: datetime | None = None,
    train_end: datetime | None = None,
) -> dict:
    """Train the stream's detector on its training range and register it as `<stream>-detector@champion`.

    `train_start` / `train_end` override the configured training range."""
    config = load_config(config_path)
    settings = config.stream(stream)
    start = train_start or settings.train.start
    end = train_end or settings.train.end
    frame = tasks.load_readings(config.db_path, stream, start=start, end=end)
    trained = tasks.fit_detector(
        frame,
        stream=stream,
        sensors=list(settings.sensors),
        spec=settings.window,
        detector_params=settings.detector.model_dump(),
        label_columns=list(settings.label_columns),
        start=start,
        end=end,
        val_fraction=settings.train.val_fraction,
        train_stride=settings.train.stride,
    )
    version = tasks.register_model(config.mlflow_tracking_uri, config.mlflow_artifact_root, trained)
    get_run_logger().info("registered %s version %d, threshold %.6g", version.name, version.version, version.threshold)
    return {
        "model_name": version.name,
        "version": version.version,
        "run_id": version.run_id,
        "threshold": version.threshold,
        "epochs": len(trained.history),
        "train_windows": trained.params["train.n_windows"],
        "val_windows": trained.params["val.n_windows"],
    }
