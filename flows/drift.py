"""check-drift: the stream's recent inputs, scores and alert rate against its champion's
training and calibration (monitoring.evaluation.drift_detection) -> drift_checks rows and an
MLflow run; when drift holds, an `aemon.stream.drift` alert, and the train deployment (or,
outside a deployment, the train flow) runs and its gate decides whether the new model
replaces the champion."""
from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.runtime import deployment

from flows import notify, tasks
from flows.config import load_config
from flows.notify import alert_on_failure
from flows.train import train_detectors
from monitoring.alerting.alerts import drift_alert


def train_deployment_name(stream: str) -> str:
    """The stream's train deployment, as prefect.yaml and `aemon serve` name it."""
    return f"train-detectors/{stream}-train"


@flow(name="check-drift", on_failure=[alert_on_failure], on_crashed=[alert_on_failure])
def check_drift(stream: str, config_path: str | None = None, retrain: bool | None = None) -> dict:
    """Compare the last `drift.recent_hours` of readings with the champion; store and log the
    check. When drift holds (`drift.hold_checks` drifting checks in a row on new readings)
    and retraining is on (`retrain`, default the stream's `drift.retrain`), start a training:
    under a deployment the stream's train deployment is scheduled (a worker runs it), else
    the train flow runs here as a subflow."""
    config = load_config(config_path)
    settings = config.stream(stream)
    retrain = settings.drift.retrain if retrain is None else retrain
    check = tasks.check_drift(config.warehouse, config.mlflow_tracking_uri, config.mlflow_artifact_root, stream,
                              settings.drift.rule(), label_columns=list(settings.label_columns),
                              exclusions=settings.exclusions.build(), retrain=retrain)
    logger = get_run_logger()
    drifted = check.rows.loc[check.rows["drifted"], "feature"].tolist()
    logger.info("%s v%d, readings %s .. %s: drifted %s; %s", check.model_name, check.model_version,
                check.recent_start, check.recent_end, ",".join(drifted) or "nothing", check.decision.reason)
    result = check.summary()
    result["training"] = None
    if check.decision.holds and check.decision.streak == settings.drift.rule().hold_checks:  # once, as it starts
        notify.send(config, drift_alert(stream, check.check_id, check.model_name, check.model_version, drifted,
                                        check.decision.reason, check.decision.retrain))
    if check.decision.retrain:
        if deployment.id is not None:
            name = train_deployment_name(stream)
            result["training"] = {"deployment": name, "flow_run_id": tasks.run_train_deployment(name)}
            logger.info("scheduled %s (flow run %s)", name, result["training"]["flow_run_id"])
        else:
            result["training"] = train_detectors(stream, config_path=config_path)
    return result
