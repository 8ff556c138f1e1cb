"""One drift check of a stream against its champion (monitoring.evaluation.drift_detection), end to
end: read the champion, its training range's readings and the recent readings, compare,
count drifting checks in a row, decide, log the check to MLflow and store its rows in
`drift_checks`. Starting the retraining is the flow's job (flows/drift.py)."""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

import pandas as pd

from monitoring.evaluation.drift_detection import (
    ALERT_RATE,
    SCORE,
    DriftDecision,
    DriftRule,
    decide,
    detect_drift,
    drift_inputs,
    drift_streak,
)
from monitoring.models import registry
from monitoring.store.connection import Warehouse, connect, write
from monitoring.store.drift_checks import read_check_history, read_drift_check, write_drift_check
from monitoring.store.readings import read_readings, read_recent_readings
from monitoring.store.results import read_incidents


@dataclass(frozen=True)
class DriftCheck:
    check_id: str
    stream: str
    model_name: str
    model_version: int
    checked_at: pd.Timestamp
    recent_start: pd.Timestamp
    recent_end: pd.Timestamp
    rows: pd.DataFrame  # the stored rows (drift_checks)
    decision: DriftDecision
    mlflow_run_id: str

    def summary(self) -> dict:
        """The check as plain values (a flow's result, the CLI's JSON)."""
        features = self.rows.drop(columns=["check_id", "stream", "checked_at", "model_name", "model_version",
                                           "recent_start", "recent_end", "check_drifted", "streak", "holds",
                                           "retrain_requested", "decision", "mlflow_run_id"], errors="ignore")
        return {
            "check_id": self.check_id, "stream": self.stream, "model_name": self.model_name,
            "model_version": self.model_version, "checked_at": self.checked_at.isoformat(),
            "recent_start": self.recent_start.isoformat(), "recent_end": self.recent_end.isoformat(),
            "drifted": self.decision.drifted, "streak": self.decision.streak, "holds": self.decision.holds,
            "retrain_requested": self.decision.retrain, "decision": self.decision.reason,
            "mlflow_run_id": self.mlflow_run_id,
            "features": [{k: (None if pd.isna(v) else v.item() if hasattr(v, "item") else v) for k, v in row.items()}
                         for row in features.to_dict("records")],
        }


def check_stream(warehouse: Warehouse, tracking_uri: str, artifact_root: str | None, stream: str, rule: DriftRule,
                 *, label_columns: list[str] | tuple[str, ...] = (), exclusions=None, retrain: bool = True,
                 now: pd.Timestamp | None = None) -> DriftCheck:
    """Compare the last `rule.recent_hours` of the stream's readings (up to its latest one)
    with the champion's training range and calibration scores; store and log the check.

    Drift holds after `rule.hold_checks` drifting checks in a row of the same champion on new
    readings, counted since the last check that asked for a retraining; the decision asks
    for one when drift holds, `retrain` is on and the cooldown has passed."""
    model, version = registry.load_model(tracking_uri, stream)
    bundle = registry.loaded_bundle(model)
    start, end = registry.version_training_range(tracking_uri, version)
    recent = read_recent_readings(warehouse, stream, rule.recent_hours / 24)
    with connect(warehouse) as con:
        reference = read_readings(con, stream, start=start, end=end)
        incidents = read_incidents(con, stream)[["asset", "start", "end"]]
        history = read_check_history(con, stream)
    inputs = drift_inputs(bundle, reference, recent, label_columns=label_columns, exclusions=exclusions,
                          excluded_intervals=incidents, holdout_far=registry.version_metric(tracking_uri, version,
                                                                                            "val_far"))
    features = detect_drift(inputs, rule)
    drifted = bool(features["drifted"].any())
    recent_start, recent_end = pd.Timestamp(recent["timestamp"].min()), pd.Timestamp(recent["timestamp"].max())
    now = pd.Timestamp.now(tz="UTC").tz_localize(None) if now is None else pd.Timestamp(now)
    requests = history[history["retrain_requested"].astype(bool)]
    since = None if requests.empty else now - pd.Timestamp(requests["checked_at"].iloc[0])
    if not requests.empty:  # the streak starts again after a check that asked for a retraining
        history = history[history["checked_at"] > requests["checked_at"].iloc[0]]
    same_champion = history[history["model_version"] == version.version]
    decision = decide(drifted, drift_streak(same_champion, drifted, recent_end), rule, retrain=retrain,
                      since_last_request=since)
    check_id = uuid.uuid4().hex[:16]
    run_id = registry.log_drift_check(
        tracking_uri, artifact_root, stream, drift_metrics(features, decision),
        {"check_id": check_id, "model_version": str(version.version), "drifted": str(decision.drifted),
         "holds": str(decision.holds), "retrain_requested": str(decision.retrain),
         "recent_range": f"{recent_start.isoformat()}/{recent_end.isoformat()}"},
        features)
    rows = features.assign(
        check_id=check_id, stream=stream, checked_at=now, model_name=version.name, model_version=version.version,
        recent_start=recent_start, recent_end=recent_end, check_drifted=decision.drifted, streak=decision.streak,
        holds=decision.holds, retrain_requested=decision.retrain, decision=decision.reason, mlflow_run_id=run_id)

    def store(con) -> pd.DataFrame:
        write_drift_check(con, rows)
        return read_drift_check(con, check_id)

    stored = write(warehouse, store)
    return DriftCheck(check_id, stream, version.name, version.version, now, recent_start, recent_end, stored,
                      decision, run_id)


def metric_name(feature: str) -> str:
    """A feature as MLflow accepts it in a metric name (letters, digits, _ - . / and space)."""
    return {SCORE: "score", ALERT_RATE: "alert_rate"}.get(feature, re.sub(r"[^A-Za-z0-9_\-./ ]", "_", feature))


def drift_metrics(features: pd.DataFrame, decision: DriftDecision) -> dict[str, float]:
    """Per sensor `psi.<s>`, `ks.<s>`, `p.<s>`; `psi.score`, `ks.score`; `alert_rate` and
    `alert_rate.implied`; the check's `drifted`, `n_drifted`, `streak`, `retrain_requested`."""
    metrics: dict[str, float] = {}
    for row in features.itertuples(index=False):
        name = metric_name(row.feature)
        if row.kind == "alert_rate":
            metrics.update({"alert_rate": row.recent_value, "alert_rate.implied": row.reference_value,
                            "p.alert_rate": row.p_value})
        else:
            metrics.update({f"psi.{name}": row.psi, f"ks.{name}": row.statistic, f"p.{name}": row.p_value})
    metrics.update({"drifted": float(decision.drifted), "n_drifted": float(features["drifted"].sum()),
                    "streak": float(decision.streak), "retrain_requested": float(decision.retrain)})
    return metrics
