"""MLflow tracking and model registry for aemon's detectors.

One experiment per stream, one registered model per stream (`<stream>-detector`), each
version a pyfunc ModelBundle tagged with its threshold. The scoring side resolves an
alias to a version number first, then loads that exact version, so a promotion that
happens mid-run cannot mix two versions.
"""
from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import mlflow
import mlflow.pyfunc
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from monitoring.bundle import BundleModel, ModelBundle
from monitoring.errors import RegistryError

CHAMPION = "champion"
# Explicit requirements: MLflow's inference of them imports and probes the model, which is slow.
PIP_REQUIREMENTS = [
    "torch==2.13.0", "mlflow==3.17.2", "numpy", "pandas", "scipy", "pyarrow",
]


def model_name(stream: str) -> str:
    return f"{stream}-detector"


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: int
    run_id: str
    threshold: float
    aliases: tuple[str, ...] = ()


@contextlib.contextmanager
def tracking(tracking_uri: str) -> Iterator[MlflowClient]:
    """Point MLflow's fluent API (process-wide) at `tracking_uri` and give a client for it."""
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    yield MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def ensure_experiment(client: MlflowClient, stream: str, artifact_root: str | None) -> str:
    experiment = client.get_experiment_by_name(stream)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    if artifact_root:
        location = artifact_root.rstrip("/") + "/" + stream
    return client.create_experiment(stream, artifact_location=location)


def log_bundle(
    tracking_uri: str,
    artifact_root: str | None,
    bundle: ModelBundle,
    *,
    params: dict,
    history: list[dict],
    input_example: pd.DataFrame,
    tags: dict | None = None,
    alias: str = CHAMPION,
) -> RegisteredVersion:
    """Log a training run with its model bundle, register a new version and point `alias` at it."""
    name = model_name(bundle.stream)
    with tracking(tracking_uri) as client:
        experiment_id = ensure_experiment(client, bundle.stream, artifact_root)
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"train-{bundle.detector.kind}") as run:
            mlflow.log_params({k: _param(v) for k, v in params.items()})
            for row in history:
                metrics = {k: float(v) for k, v in row.items() if k != "epoch" and v is not None}
                mlflow.log_metrics(metrics, step=int(row["epoch"]))
            mlflow.log_metric("threshold", bundle.threshold)
            mlflow.set_tags({"stream": bundle.stream, "detector": bundle.detector.kind, **(tags or {})})
            with tempfile.TemporaryDirectory() as tmp:
                folder = bundle.save(Path(tmp) / "bundle")
                info = mlflow.pyfunc.log_model(
                    name="model",
                    python_model=BundleModel(),
                    artifacts={"bundle": str(folder)},
                    input_example=input_example[bundle.input_columns()],
                    pip_requirements=PIP_REQUIREMENTS,
                    registered_model_name=name,
                )
        version = int(info.registered_model_version)
        version_tags = {
            "threshold": repr(bundle.threshold),
            "detector": bundle.detector.kind,
            "window_size": str(bundle.spec.size),
            "window_stride": str(bundle.spec.stride),
            **(tags or {}),
        }
        for key, value in version_tags.items():
            client.set_model_version_tag(name, str(version), key, str(value))
        client.set_registered_model_alias(name, alias, str(version))
        return RegisteredVersion(name, version, run.info.run_id, bundle.threshold, (alias,))


def _param(value) -> str:
    text = str(value)
    return text if len(text) <= 6000 else text[:5997] + "..."


def resolve_alias(tracking_uri: str, stream: str, alias: str = CHAMPION) -> RegisteredVersion:
    name = model_name(stream)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        mv = client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        raise RegistryError(
            f"no model version '{name}@{alias}' in {tracking_uri}; run `aemon train {stream}` first"
        ) from exc
    threshold = mv.tags.get("threshold")
    return RegisteredVersion(
        name, int(mv.version), mv.run_id, float(threshold) if threshold is not None else float("nan"),
        tuple(mv.aliases),
    )


def load_model(tracking_uri: str, stream: str, alias: str = CHAMPION) -> tuple[mlflow.pyfunc.PyFuncModel, RegisteredVersion]:
    """The pyfunc model behind `models:/<stream>-detector@alias`, pinned to the resolved version."""
    version = resolve_alias(tracking_uri, stream, alias)
    with tracking(tracking_uri):
        model = mlflow.pyfunc.load_model(f"models:/{version.name}/{version.version}")
    return model, version


def loaded_bundle(model: mlflow.pyfunc.PyFuncModel) -> ModelBundle:
    return model.unwrap_python_model().bundle
