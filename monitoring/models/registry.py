"""MLflow tracking and model registry for aemon's detectors.

Layout:
- one experiment per stream; per training a parent run (range, data hash, data-quality
  report, the gate's decision) with one child run per detector (hyperparameters, window
  spec, per-epoch losses, thresholds, evaluation metrics, figures, the model bundle);
- one registered model per stream (`<stream>-detector`); every candidate of a training is
  a version, tagged with its detector kind, threshold rule and value, training range and
  data hash;
- aliases `champion` (what scoring uses) and `challenger` set by the gate
  (monitoring.models.gate); the registered model's tag `champion_history` lists the versions
  that were champion, oldest first, so `rollback` walks back one step at a time.

The scoring side resolves an alias to a version number first, then loads that exact
version, so a promotion that happens mid-run cannot mix two versions.

A process killed mid-way (kill -9, a lost machine) cannot close what it opened: MLflow has
no transaction across runs, versions and aliases. So every run and version aemon creates
carries the tag `aemon.process` (host, pid and the process's start time), and the next
aemon run in the stream's experiment (ensure_experiment) recovers what a process that no
longer exists left behind: its runs still RUNNING end as KILLED (the models they were
logging, left PENDING, as FAILED), and its versions the gate never judged (no `gate.role`;
registration writes the version, then the gate's tags, then the aliases) are tagged
`aemon.incomplete`. `compare_versions` shows such a version as incomplete, `promote`
refuses it, and no alias ever points at one. A process on another host cannot be checked
from here: its leftovers are left alone. The SQLite store itself is made in one step
(ensure_store).
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import mlflow.artifacts
import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.entities import LoggedModelStatus, Metric
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import PyFuncModel
from mlflow.tracking import MlflowClient
from mlflow.tracking.context.registry import resolve_tags
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from monitoring.errors import GateError, RegistryError, TrackingUnavailableError
from monitoring.models import plots
from monitoring.models.bundle import BundleModel, ModelBundle
from monitoring.models.fitting import Candidate, Evaluation, TrainingData
from monitoring.models.gate import GateDecision, criterion_name
from monitoring.models.listing import CHALLENGER, CHAMPION, HISTORY_TAG, MODEL_SUFFIX, model_name, models_table
from monitoring.store.mlflow_tables import RegisteredModelRow
from monitoring.store.redaction import redact

# MLflow retries a request to an unreachable server for about four minutes by default (7
# retries, backoff factor 2), and the task around it retries that again: a scheduled run
# stopped for a quarter of an hour before saying why. aemon's defaults give up after ~15 s
# (retries after 1, 2, 4 and 8 s); set the variables to choose otherwise.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "4")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
# MLflow prints "View run at <tracking URI>/..." after each run, credentials included when the
# URI carries them; in every process that logs to MLflow (CLI, `aemon serve`, a Prefect worker)
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

# What MLflow's errors say when the store is not there (requests/urllib3, SQLAlchemy).
_UNREACHABLE = ("Max retries exceeded", "Connection refused", "Failed to establish a new connection",
                "Name or service not known", "Read timed out", "unable to open database file")

PROCESS_TAG = "aemon.process"  # host:pid:start of the process that created a run or version
INCOMPLETE_TAG = "aemon.incomplete"  # a version whose registration its process did not finish
# Explicit requirements: MLflow's inference of them imports and probes the model, which is slow.
PIP_REQUIREMENTS = [
    "torch==2.13.0", "mlflow==3.17.2", "numpy", "pandas", "scipy", "pyarrow",
]


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: int
    run_id: str
    threshold: float
    aliases: tuple[str, ...] = ()
    kind: str = ""


@contextlib.contextmanager
def tracking(tracking_uri: str) -> Iterator[MlflowClient]:
    """Point MLflow's fluent API (process-wide) at `tracking_uri` and give a client for it."""
    ensure_store(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    yield client_for(tracking_uri)


def client_for(tracking_uri: str) -> MlflowClient:
    ensure_store(tracking_uri)
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def unreachable(tracking_uri: str, exc: BaseException) -> TrackingUnavailableError | None:
    """The error to raise when `exc` says the tracking store cannot be reached, else None."""
    text = f"{exc} {exc.__cause__ or ''}"
    if not any(marker in text for marker in _UNREACHABLE):
        return None
    return TrackingUnavailableError(
        f"the MLflow tracking store {redact(tracking_uri)} cannot be reached; nothing was written. Start "
        "the tracking server or fix `tracking_uri` (MLflow's retries: MLFLOW_HTTP_REQUEST_MAX_RETRIES)")


def ensure_store(tracking_uri: str) -> None:
    """Create a SQLite tracking store whole or not at all. MLflow creates its tables in a
    chain of migrations on first use, and a process killed during them leaves a database
    that no later run can open ("table _alembic_tmp_params already exists"): the tables are
    made in a temporary file that is then linked into place, so the store either does not
    exist yet or is complete."""
    if not tracking_uri.startswith("sqlite:///"):
        return
    path = Path(tracking_uri.removeprefix("sqlite:///"))
    if path.exists():
        return
    from mlflow.store.db.utils import _initialize_tables, create_sqlalchemy_engine

    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a process killed while it made them
        pid = stale.name.removeprefix(f".{path.name}.").removesuffix(".tmp")
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            stale.unlink(missing_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)
    engine = create_sqlalchemy_engine(f"sqlite:///{temporary}")
    try:
        _initialize_tables(engine)
    finally:
        engine.dispose()
    try:
        os.link(temporary, path)  # never replaces a store another process completed first
    except FileExistsError:
        pass
    finally:
        temporary.unlink()


def ensure_experiment(client: MlflowClient, stream: str, artifact_root: str | None) -> str:
    """The stream's experiment (created on first use), after recovering what killed aemon
    processes left in it (recover_interrupted)."""
    experiment = client.get_experiment_by_name(stream)
    if experiment is not None:
        recover_interrupted(client, experiment.experiment_id, model_name(stream))
        return experiment.experiment_id
    location = None
    if artifact_root:
        location = artifact_root.rstrip("/") + "/" + stream
    return client.create_experiment(stream, artifact_location=location)


def _start_ticks(pid: int | str) -> str:
    """A process's start time (clock ticks since boot, /proc/<pid>/stat field 22): with the
    pid it names one process, as pids are reused. '' where /proc is not there."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return "" if fields[0] == "Z" else fields[19]  # a zombie has ended


def process_tags() -> dict[str, str]:
    """This process as the PROCESS_TAG value `host:pid:start`."""
    pid = os.getpid()
    return {PROCESS_TAG: f"{socket.gethostname()}:{pid}:{_start_ticks(pid)}"}


def process_ended(tag: str | None) -> bool:
    """Whether the process a PROCESS_TAG names has ended. False when unknown: no tag (made by
    an earlier release or another tool), or a process on another host."""
    if not tag or tag.count(":") < 2:
        return False
    host, pid, start = tag.rsplit(":", 2)
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's process: it runs
        pass
    return bool(start) and _start_ticks(pid) != start  # the pid now names another process, or a zombie


def interrupted(tags: dict[str, str], aliases: dict[int, list[str]], history: list[int], version: int) -> bool:
    """Whether a version's registration was cut short: its process ended before the gate
    judged it, or before the champion alias its verdict implied was set."""
    if tags.get(INCOMPLETE_TAG) == "true":
        return True
    if not process_ended(tags.get(PROCESS_TAG)):
        return False
    role = tags.get("gate.role")
    return role is None or (role == CHAMPION and version not in history and CHAMPION not in aliases.get(version, []))


def recover_interrupted(client: MlflowClient, experiment_id: str, name: str) -> None:
    """End the runs of the experiment left RUNNING by a process that has ended (status
    KILLED), mark the models such a run was logging FAILED (MLflow leaves them PENDING), and
    tag the versions of `name` such a process left half-registered INCOMPLETE_TAG (see
    `interrupted`)."""
    for run in client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'",
                                  max_results=1000):
        if process_ended(run.data.tags.get(PROCESS_TAG)):
            client.set_terminated(run.info.run_id, "KILLED")
    # a model whose logging was cut short stays PENDING; its run has ended without it
    for logged in client.search_logged_models([experiment_id]):
        if (logged.status == LoggedModelStatus.PENDING and logged.source_run_id
                and client.get_run(logged.source_run_id).info.status in ("KILLED", "FAILED")):
            client.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
    try:
        model = client.get_registered_model(name)
    except MlflowException:
        return
    aliases = _aliases_by_version(model.aliases)
    history = [int(v) for v in json.loads(model.tags.get(HISTORY_TAG, "[]"))]
    for mv in client.search_model_versions(f"name = '{name}'"):
        if mv.tags.get(INCOMPLETE_TAG) != "true" and interrupted(mv.tags, aliases, history, int(mv.version)):
            client.set_model_version_tag(name, str(mv.version), INCOMPLETE_TAG, "true")


def _aliases_by_version(aliases: dict[str, str] | None) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for alias, version in (aliases or {}).items():
        out.setdefault(int(version), []).append(alias)
    return out


def _ms(seconds: float) -> int:
    """Unix seconds -> MLflow's run times (Unix milliseconds)."""
    return round(seconds * 1000)


def _param(value) -> str:
    text = str(value)
    return text if len(text) <= 6000 else text[:5997] + "..."


def input_example(bundle: ModelBundle, readings: pd.DataFrame) -> pd.DataFrame:
    """A few readings of one asset, enough for one window and a half: the bundle's input example."""
    first = readings[readings["asset"] == readings["asset"].iloc[0]]
    n = bundle.spec.size + bundle.spec.stride
    # Tabular records: a file's first record sits on a whole second and the next ones a
    # microsecond apart; MLflow checks an example by parsing every time with the format of
    # the first, so the example is taken from the last records, which all have a fraction.
    rows = first.tail(n) if bundle.spec.size == 1 else first.head(n)
    return rows[bundle.input_columns()].reset_index(drop=True)


def _log_bundle_model(client: MlflowClient, bundle: ModelBundle, example: pd.DataFrame, name: str,
                      tags: dict[str, str]) -> int:
    """Log the bundle as the active run's pyfunc model and register it as a new version of
    `name` carrying `tags`. The network is saved in eval mode (the detector keeps it so),
    with explicit requirements. Registered through the client: MLflow's fluent
    registration prints to the console."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = bundle.save(Path(tmp) / "bundle")
        info = mlflow.pyfunc.log_model(
            name=bundle.detector.kind,  # the run's logged model is named by its kind: mlp_ae, cnn_ae, vae
            python_model=BundleModel(),
            artifacts={"bundle": str(folder)},
            input_example=example,
            pip_requirements=PIP_REQUIREMENTS,
        )
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description=f"aemon detectors of stream '{bundle.stream}'")
    mv = client.create_model_version(name, source=info.model_uri, run_id=info.run_id,
                                     tags={**tags, **process_tags()}, model_id=info.model_id)
    return int(mv.version)


def _version_tags(bundle: ModelBundle, training_range: str, data_hash: str) -> dict[str, str]:
    return {
        "detector": bundle.detector.kind,
        "threshold_method": bundle.threshold_rule,
        "threshold": repr(bundle.threshold),
        "training_range": training_range,
        "data_hash": data_hash,
        "window_size": str(bundle.spec.size),
        "window_stride": str(bundle.spec.stride),
    }


def _evaluation_metrics(bundle: ModelBundle, metrics: dict) -> dict[str, float]:
    logged = {"threshold": bundle.threshold, "val_far": metrics["far"]}
    logged.update({f"threshold.{k}": v for k, v in bundle.thresholds.items()})
    logged.update({k: metrics[k] for k in ("precision", "recall", "f1", "far", "mar", "pr_auc") if k in metrics})
    logged.update({f"eval.{k}": metrics[k] for k in ("n_normal", "n_anomalous")})
    return {k: float(v) for k, v in logged.items() if v is not None and np.isfinite(v)}


def log_training(
    tracking_uri: str,
    artifact_root: str | None,
    data: TrainingData,
    candidates: list[Candidate],
    *,
    quality: pd.DataFrame | None = None,
) -> tuple[str, dict[str, RegisteredVersion]]:
    """Log one training (a parent run, a child run per candidate with its parameters, losses,
    metrics and figures) and register every candidate as a version. `quality`: the stream's
    data-quality report, attached to the parent run as data_quality/report.csv. Returns the
    parent run id and the versions by detector kind."""
    if not candidates:
        raise RegistryError("no detectors were trained; configure at least one kind")
    kinds = [c.kind for c in candidates]
    if len(set(kinds)) != len(kinds):
        raise RegistryError(f"one candidate per detector kind in a training; got {kinds}")
    name = model_name(data.stream)
    training_range = f"{data.start.isoformat()}/{data.end.isoformat()}"
    with tracking(tracking_uri) as client:
        experiment_id = ensure_experiment(client, data.stream, artifact_root)
        versions: dict[str, RegisteredVersion] = {}
        # The runs span the fits (made before anything is logged): the parent starts when the
        # first fit did, each child run is the interval of its own fit.
        fit_starts = [c.fit_started for c in candidates if c.fit_started is not None]
        parent_id = client.create_run(experiment_id, start_time=_ms(min(fit_starts)) if fit_starts else None,
                                      tags=resolve_tags(process_tags()),
                                      run_name=f"train {data.end:%Y-%m-%d %H:%M}").info.run_id
        with mlflow.start_run(run_id=parent_id) as parent:
            mlflow.set_tags({"role": "training", "stream": data.stream, "detectors": ",".join(kinds)})
            mlflow.log_params({k: _param(v) for k, v in data.params.items()})
            if quality is not None:
                mlflow.log_text(quality.to_csv(index=False), "data_quality/report.csv")
            example = input_example(candidates[0].bundle, data.evaluation.readings)
            for cand in candidates:
                child_id = client.create_run(
                    experiment_id, run_name=cand.kind,
                    tags=resolve_tags({MLFLOW_PARENT_RUN_ID: parent_id, **process_tags()}),
                    start_time=_ms(cand.fit_started) if cand.fit_started is not None else None).info.run_id
                with mlflow.start_run(run_id=child_id, nested=True) as child:
                    mlflow.set_tags({"role": "candidate", "stream": data.stream, "detector": cand.kind})
                    mlflow.log_params({k: _param(v) for k, v in cand.params.items()})
                    # every epoch's losses in one call (MLflow splits it into batches): one
                    # store transaction, not one an epoch
                    now = _ms(time.time())
                    client.log_batch(child_id, metrics=[
                        Metric(k, float(v), now, int(row["epoch"]))
                        for row in cand.detector.history_ for k, v in row.items() if k != "epoch" and v is not None])
                    mlflow.log_metrics({
                        **_evaluation_metrics(cand.bundle, cand.evaluation.metrics),
                        "best_val_loss": cand.val_loss, "best_epoch": float(cand.detector.best_epoch_),
                        "fit_seconds": cand.fit_seconds,
                    })
                    with tempfile.TemporaryDirectory() as tmp:
                        for path in _figure_paths(cand, Path(tmp)):
                            mlflow.log_artifact(str(path), artifact_path="figures")
                    version = _log_bundle_model(client, cand.bundle, example, name,
                                                _version_tags(cand.bundle, training_range, data.data_hash))
                    versions[cand.kind] = RegisteredVersion(name, version, child.info.run_id, cand.bundle.threshold,
                                                            kind=cand.kind)
                if cand.fit_ended is not None:
                    client.set_terminated(child_id, "FINISHED", end_time=_ms(cand.fit_ended))
    return parent.info.run_id, versions


def _figure_paths(candidate: Candidate, folder: Path) -> list[Path]:
    """The candidate's figures as files in `folder`: those it carries (drawn where it was
    fitted), else drawn now."""
    if candidate.figures is None:
        return plots.candidate_figures(candidate, folder)
    paths = [folder / name for name in candidate.figures]
    for path in paths:
        path.write_bytes(candidate.figures[path.name])
    return paths


def log_recalibration(
    tracking_uri: str,
    artifact_root: str | None,
    bundle: ModelBundle,
    source: RegisteredVersion,
    evaluation: Evaluation,
    readings: pd.DataFrame,
    n_windows: int,
) -> RegisteredVersion:
    """Log a recalibration of version `source` (its network, `bundle`'s new threshold, set
    on `n_windows` normal windows of `readings`) as a run, and register `bundle` as a new
    version tagged with where it came from."""
    window = f"{readings['timestamp'].min().isoformat()}/{readings['timestamp'].max().isoformat()}"
    stream = bundle.stream
    name = model_name(stream)
    with tracking(tracking_uri) as client:
        experiment_id = ensure_experiment(client, stream, artifact_root)
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"recalibrate v{source.version}",
                              tags=process_tags()) as run:
            mlflow.set_tags({"role": "recalibration", "stream": stream, "detector": bundle.detector.kind,
                             "recalibrated_from": str(source.version)})
            mlflow.log_params({"recalibrated_from": source.version, "threshold.rule": bundle.threshold_rule,
                               "recalibration.range": window, "calibration.n_windows": n_windows})
            mlflow.log_metrics(_evaluation_metrics(bundle, evaluation.metrics))
            with tempfile.TemporaryDirectory() as tmp:
                title = plots.evaluation_title(f"{bundle.detector.kind} recalibrated", evaluation.windows.start,
                                               evaluation.anomalous)
                histogram = plots.score_histogram(evaluation.scores, evaluation.anomalous, bundle.thresholds,
                                                  bundle.threshold, title, Path(tmp) / "score_histogram.png")
                mlflow.log_artifact(str(histogram), artifact_path="figures")
            source_tags = client.get_model_version(name, str(source.version)).tags
            tags = {**_version_tags(bundle, source_tags.get("training_range", ""), source_tags.get("data_hash", "")),
                    "recalibrated_from": str(source.version), "recalibration_range": window}
            version = _log_bundle_model(client, bundle, input_example(bundle, readings), name, tags)
    return RegisteredVersion(name, version, run.info.run_id, bundle.threshold, kind=bundle.detector.kind)


def record_decision(tracking_uri: str, stream: str, decision: GateDecision, run_id: str | None = None) -> None:
    """Set the aliases and gate tags a decision implies; with `run_id`, also tag that
    (training) run with the champion, whether it was promoted, and why."""
    client = client_for(tracking_uri)
    _apply_decision(client, model_name(stream), decision)
    if run_id is not None:
        for key, value in {"gate.champion": str(decision.champion.version), "gate.promoted": str(decision.promoted),
                           "gate.reason": decision.reason}.items():
            client.set_tag(run_id, key, value)


def with_aliases(tracking_uri: str, versions: dict[str, RegisteredVersion]) -> dict[str, RegisteredVersion]:
    """The versions as the registry has them now, with their aliases."""
    client = client_for(tracking_uri)
    out = {}
    for kind, v in versions.items():
        mv = client.get_model_version(v.name, str(v.version))
        out[kind] = RegisteredVersion(v.name, v.version, v.run_id, v.threshold, tuple(mv.aliases), kind)
    return out


def _apply_decision(client: MlflowClient, name: str, decision: GateDecision) -> None:
    criterion = criterion_name(decision.labeled)
    for rank, contender in enumerate(decision.ranking, start=1):
        role = ("champion" if decision.promoted and contender is decision.nominee
                else "challenger" if contender is decision.challenger else "registered")
        tags = {"gate.rank": str(rank), "gate.criterion": criterion,
                "gate.score": ", ".join(f"{v:.6g}" for v in contender.key(decision.labeled))}
        if contender is decision.nominee:
            tags["gate.reason"] = decision.reason
        tags["gate.role"] = role  # last: a version with a role has all its gate tags
        for key, value in tags.items():
            client.set_model_version_tag(name, str(contender.version), key, value)
    if decision.challenger is not None:
        client.set_registered_model_alias(name, CHALLENGER, str(decision.challenger.version))
    if decision.promoted:
        _set_champion(client, name, decision.nominee.version)


def _history(client: MlflowClient, name: str) -> list[int]:
    tags = client.get_registered_model(name).tags
    return [int(v) for v in json.loads(tags.get(HISTORY_TAG, "[]"))]


def _set_champion(client: MlflowClient, name: str, version: int) -> None:
    history = _history(client, name)
    current = _alias_version(client, name, CHAMPION)
    if current is not None and (not history or history[-1] != current):
        history.append(current)  # the alias was moved outside aemon (e.g. in the MLflow UI)
    if not history or history[-1] != version:
        history.append(version)
    client.set_registered_model_alias(name, CHAMPION, str(version))
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
    if _alias_version(client, name, CHALLENGER) == version:
        client.delete_registered_model_alias(name, CHALLENGER)


def _alias_version(client: MlflowClient, name: str, alias: str) -> int | None:
    try:
        return int(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def _require_model(client: MlflowClient, stream: str) -> str:
    name = model_name(stream)
    try:
        client.get_registered_model(name)
    except MlflowException as exc:
        raise unreachable(client.tracking_uri, exc) or RegistryError(
            f"no registered model '{name}'; run `aemon train {stream}` first") from exc
    return name


def promote(tracking_uri: str, stream: str, version: int) -> RegisteredVersion:
    """Make `version` the champion by hand (no gate); the previous champion stays in the history."""
    client = client_for(tracking_uri)
    name = _require_model(client, stream)
    try:
        mv = client.get_model_version(name, str(version))
    except MlflowException as exc:
        raise RegistryError(f"'{name}' has no version {version}") from exc
    model = client.get_registered_model(name)
    if interrupted(mv.tags, _aliases_by_version(model.aliases), _history(client, name), int(version)):
        raise RegistryError(f"'{name}' version {version} is incomplete: the training that registered it was "
                            "interrupted; promote a complete version (see `aemon models compare`)")
    _set_champion(client, name, int(version))
    return resolve_alias(tracking_uri, stream)


def rollback(tracking_uri: str, stream: str) -> tuple[int, RegisteredVersion]:
    """Put the previous champion back in one step; returns (replaced version, new champion).
    Repeated rollbacks walk further back through the champion history."""
    client = client_for(tracking_uri)
    name = _require_model(client, stream)
    history = _history(client, name)
    current = _alias_version(client, name, CHAMPION)
    if current is None:
        raise GateError(f"'{name}' has no champion to roll back")
    if not history or history[-1] != current:
        history.append(current)
    replaced = history.pop()
    existing = {int(mv.version) for mv in client.search_model_versions(f"name = '{name}'")}
    while history and history[-1] not in existing:
        history.pop()  # a version deleted since it was champion
    if not history:
        raise GateError(f"'{name}' has no earlier champion than version {replaced} to roll back to")
    client.set_registered_model_alias(name, CHAMPION, str(history[-1]))
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
    client.set_model_version_tag(name, str(replaced), "rolled_back", "true")
    return replaced, resolve_alias(tracking_uri, stream)


def list_models(tracking_uri: str) -> pd.DataFrame:
    """One row per registered aemon model: name, number of versions, champion, challenger
    (listing.models_table), through MLflow's client."""
    client = client_for(tracking_uri)
    rows = []
    for rm in client.search_registered_models():
        if not rm.name.endswith(MODEL_SUFFIX):
            continue
        versions = client.search_model_versions(f"name = '{rm.name}'")
        aliases = {str(alias): int(v) for alias, v in (rm.aliases or {}).items()}
        rows.append(RegisteredModelRow(rm.name, len(versions), aliases, dict(rm.tags or {})))
    return models_table(rows)


# (column, metric of the version's run)
COMPARE_METRICS = (("threshold", "threshold"), ("val_far", "val_far"), ("f1", "f1"), ("pr_auc", "pr_auc"),
                   ("val_loss", "best_val_loss"))


# The gate's verdict on a version when it was registered (its tag gate.role), as compare
# shows it: a verdict of that day, not a role now. Who is champion now is the alias: a
# version promoted then ("champion" in its tag) may have been replaced since. A version whose
# registration was cut short (`interrupted`) is "incomplete"; one being registered now, "pending".
GATE_VERDICTS = {"champion": "promoted", "challenger": "runner-up", "registered": "not promoted"}
INCOMPLETE = "incomplete"
PENDING = "pending"


def gate_verdict(tags: dict[str, str], aliases: dict[int, list[str]], history: list[int], version: int) -> str:
    if interrupted(tags, aliases, history, version):
        return INCOMPLETE
    role = tags.get("gate.role", "")
    if not role and PROCESS_TAG in tags:
        return PENDING
    return GATE_VERDICTS.get(role, role)


def compare_versions(tracking_uri: str, stream: str) -> pd.DataFrame:
    """Every version of the stream's model with its kind, aliases (`champion`: the version
    scoring uses now), threshold rule, the metrics of its run and the gate's verdict when it
    was registered, newest first."""
    client = client_for(tracking_uri)
    name = _require_model(client, stream)
    model = client.get_registered_model(name)
    aliases = _aliases_by_version(model.aliases)  # search results carry no aliases; the registered model has them all
    history = [int(v) for v in json.loads(model.tags.get(HISTORY_TAG, "[]"))]
    rows = []
    for mv in client.search_model_versions(f"name = '{name}'"):
        metrics = client.get_run(mv.run_id).data.metrics if mv.run_id else {}
        rows.append({
            "version": int(mv.version), "aliases": ",".join(sorted(aliases.get(int(mv.version), []))),
            "detector": mv.tags.get("detector", ""),
            "rule": mv.tags.get("threshold_method", ""),
            **{column: metrics.get(metric, float("nan")) for column, metric in COMPARE_METRICS},
            "gate": gate_verdict(mv.tags, aliases, history, int(mv.version)),
            "training range": _short_range(mv.tags.get("training_range", "")),
        })
    return pd.DataFrame(rows).sort_values("version", ascending=False).reset_index(drop=True)


def _short_range(text: str) -> str:
    """'2026-01-05T00:00:00/2026-01-11T23:59:00' -> '2026-01-05 00:00 .. 01-11 23:59'."""
    if "/" not in text:
        return text
    start, end = (pd.Timestamp(part) for part in text.split("/", 1))
    return f"{start:%Y-%m-%d %H:%M} .. {end:%m-%d %H:%M}"


def resolve_alias(tracking_uri: str, stream: str, alias: str = CHAMPION) -> RegisteredVersion:
    name = model_name(stream)
    client = client_for(tracking_uri)
    try:
        mv = client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        raise unreachable(tracking_uri, exc) or RegistryError(
            f"no model version '{name}@{alias}' in {redact(tracking_uri)}; run `aemon train {stream}` first"
        ) from exc
    threshold = mv.tags.get("threshold")
    return RegisteredVersion(
        name, int(mv.version), mv.run_id or "", float(threshold) if threshold is not None else float("nan"),
        tuple(mv.aliases), mv.tags.get("detector", ""),
    )


@dataclass(frozen=True)
class LoadedModel:
    """A registered version as scoring uses it: its bundle (network, scaler, window spec,
    sensors, thresholds), read from the version's `artifacts/bundle` folder, JSON and
    weights-only tensors. MLflow's `pyfunc.load_model` would unpickle the version's
    `python_model.pkl` (CloudPickle) first, running whatever code a tampered artifact
    store put there; nothing in it is needed to score, so it is never read."""

    bundle: ModelBundle

    def predict(self, readings: pd.DataFrame) -> pd.DataFrame:
        return self.bundle.score_readings(readings)


def load_model(tracking_uri: str, stream: str, alias: str = CHAMPION) -> tuple[LoadedModel, RegisteredVersion]:
    """The version behind `models:/<stream>-detector@alias`, pinned to the resolved version
    (a promotion meanwhile cannot mix two versions), loaded without unpickling anything."""
    version = resolve_alias(tracking_uri, stream, alias)
    with tracking(tracking_uri), tempfile.TemporaryDirectory(prefix="aemon-model-") as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(f"models:/{version.name}/{version.version}", dst_path=tmp)
        except MlflowException as exc:
            raise unreachable(tracking_uri, exc) or RegistryError(
                f"cannot read the files of {version.name} v{version.version}: {exc}") from exc
        folder = Path(local) / "artifacts" / "bundle"
        if not (folder / "bundle.json").exists():
            raise RegistryError(f"{version.name} v{version.version} has no bundle (artifacts/bundle/bundle.json); "
                                "it was not registered by aemon, or its files are incomplete")
        bundle = ModelBundle.load(folder)
    return LoadedModel(bundle), version


def loaded_bundle(model: LoadedModel | PyFuncModel) -> ModelBundle:
    """The bundle of a loaded version (load_model), or of a pyfunc model loaded by MLflow itself."""
    if isinstance(model, LoadedModel):
        return model.bundle
    return model.unwrap_python_model().bundle


def log_evaluation(tracking_uri: str, artifact_root: str | None, stream: str, metrics: dict[str, float],
                   tags: dict[str, str], events: pd.DataFrame | None = None) -> str:
    """Log an evaluation on labels as a run named `evaluate` in the stream's experiment:
    its metrics (undefined ones, NaN, are left out), tags (stream, model versions, range)
    and, when given, the per-event detection table as evaluation/events.csv. Returns the run id."""
    with tracking(tracking_uri) as client:
        experiment_id = ensure_experiment(client, stream, artifact_root)
        with mlflow.start_run(experiment_id=experiment_id, run_name="evaluate", tags=process_tags()) as run:
            mlflow.set_tags({"role": "evaluation", "stream": stream, **tags})
            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None and np.isfinite(v)})
            if events is not None:
                mlflow.log_text(events.to_csv(index=False), "evaluation/events.csv")
        return run.info.run_id


def version_training_range(tracking_uri: str, version: RegisteredVersion) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The first and last reading of the training range a registered version was trained on
    (its `training_range` tag; a recalibrated version keeps its network's)."""
    tags = client_for(tracking_uri).get_model_version(version.name, str(version.version)).tags
    text = tags.get("training_range", "")
    if "/" not in text:
        raise RegistryError(f"'{version.name}' version {version.version} has no training_range tag "
                            f"(got {text!r}); retrain it with `aemon train`")
    start, end = (pd.Timestamp(part) for part in text.split("/", 1))
    return start, end


def version_metric(tracking_uri: str, version: RegisteredVersion, metric: str) -> float | None:
    """A metric of the run that registered `version` (e.g. val_far); None when it has none."""
    if not version.run_id:
        return None
    value = client_for(tracking_uri).get_run(version.run_id).data.metrics.get(metric)
    return None if value is None else float(value)


def log_drift_check(tracking_uri: str, artifact_root: str | None, stream: str, metrics: dict[str, float],
                    tags: dict[str, str], table: pd.DataFrame) -> str:
    """Log a drift check as a run named `drift-check` (tag role=drift-check) in the stream's
    experiment: its metrics (NaN left out), tags and per-feature table as drift/check.csv.
    Returns the run id."""
    with tracking(tracking_uri) as client:
        experiment_id = ensure_experiment(client, stream, artifact_root)
        with mlflow.start_run(experiment_id=experiment_id, run_name="drift-check", tags=process_tags()) as run:
            mlflow.set_tags({"role": "drift-check", "stream": stream, **tags})
            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None and np.isfinite(v)})
            mlflow.log_text(table.to_csv(index=False), "drift/check.csv")
        return run.info.run_id


def log_benchmark(tracking_uri: str, artifact_root: str | None, dataset: str, data_dir: str, params: dict[str, object],
                  rows: list[dict[str, object]], seconds: float) -> str:
    """One run per benchmark (experiment `bench-<dataset>`) with its settings as parameters
    and a child run per detector with its figures as metrics, so configurations can be
    compared in the MLflow UI. Returns the parent run id."""
    with tracking(tracking_uri) as client:
        experiment_id = ensure_experiment(client, f"bench-{dataset}", artifact_root)
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"bench {dataset}",
                              tags=process_tags()) as parent:
            mlflow.set_tags({"role": "benchmark", "dataset": dataset, "data": data_dir})
            mlflow.log_params(params)
            mlflow.log_metric("seconds", seconds)
            for row in rows:
                detector = str(row["detector"])
                with mlflow.start_run(experiment_id=experiment_id, run_name=detector, nested=True,
                                      tags=process_tags()):
                    mlflow.set_tags({"role": "benchmark-detector", "dataset": dataset, "detector": detector})
                    mlflow.log_metrics({k: float(v) for k, v in row.items()
                                        if isinstance(v, (int, float)) and np.isfinite(v)})
        return parent.info.run_id
