"""A model version's way to `champion`: register what a training or a recalibration
produced, evaluate the current champion on the same windows, let the gate decide
(monitoring.models.gate), and record the decision in the registry (monitoring.models.registry).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from aemodels.thresholds import ThresholdRule
from features.exclusions import Exclusions
from monitoring.errors import BundleInputError, RegistryError
from monitoring.models import registry
from monitoring.models.bundle import ModelBundle
from monitoring.models.fitting import (
    Candidate,
    Evaluation,
    EvaluationData,
    TrainingData,
    best_val_loss,
    evaluate_bundle,
    recalibrated,
    recalibration_data,
)
from monitoring.models.gate import Contender, GateDecision, decide


@dataclass(frozen=True)
class TrainingOutcome:
    parent_run_id: str
    versions: dict[str, registry.RegisteredVersion]  # by detector kind
    decision: GateDecision


def register_training(
    tracking_uri: str,
    artifact_root: str | None,
    data: TrainingData,
    candidates: list[Candidate],
    *,
    quality: pd.DataFrame | None = None,
) -> TrainingOutcome:
    """Log one training and register every candidate as a version (registry.log_training),
    then let the gate set the aliases against the current champion."""
    run_id, versions = registry.log_training(tracking_uri, artifact_root, data, candidates, quality=quality)
    decision = training_decision(candidates, {k: v.version for k, v in versions.items()},
                                 champion_contender(tracking_uri, data.stream, data.evaluation))
    registry.record_decision(tracking_uri, data.stream, decision, run_id)
    return TrainingOutcome(run_id, registry.with_aliases(tracking_uri, versions), decision)


def training_decision(candidates: list[Candidate], versions: dict[str, int],
                      champion: Contender | None) -> GateDecision:
    """The gate's decision between a training's candidates (numbered by `versions`, by kind)
    and the current champion evaluated on the same windows (contender_of; None: none)."""
    contenders = [Contender(versions[c.kind], c.kind, c.evaluation.metrics, c.val_loss) for c in candidates]
    return decide(contenders, champion, bool(candidates[0].evaluation.anomalous.any()))


def recalibration_decision(bundle: ModelBundle, evaluation: Evaluation, version: int,
                           champion: Contender | None) -> GateDecision:
    """The gate's decision between a recalibrated `bundle` (registered as `version`, scored
    on the windows of `evaluation`) and the champion it came from, evaluated on the same
    windows (contender_of)."""
    contender = Contender(version, bundle.detector.kind, evaluation.metrics, best_val_loss(bundle.detector))
    return decide([contender], champion, bool(evaluation.anomalous.any()))


def champion_contender(tracking_uri: str, stream: str, evaluation: EvaluationData) -> Contender | None:
    """The current champion, evaluated on the same windows as the candidates; None when
    there is no champion, or when it cannot read the current sensor schema (then any
    candidate replaces it)."""
    try:
        model, version = registry.load_model(tracking_uri, stream)
    except RegistryError:
        return None
    return contender_of(registry.loaded_bundle(model), version.version, evaluation)


def contender_of(bundle: ModelBundle, version: int, evaluation: EvaluationData) -> Contender | None:
    """A registered bundle as the gate sees it, on `evaluation`'s windows; None when it
    cannot read the current sensor schema."""
    try:
        ev = evaluate_bundle(bundle, evaluation)
    except BundleInputError:
        return None
    return Contender(version, bundle.detector.kind, ev.metrics, best_val_loss(bundle.detector))


def register_recalibration(
    tracking_uri: str,
    artifact_root: str | None,
    champion: ModelBundle,
    source: registry.RegisteredVersion,
    calibration: np.ndarray,
    evaluation: EvaluationData,
    rule: ThresholdRule,
) -> tuple[registry.RegisteredVersion, GateDecision]:
    """A new version with the network of `champion` (registered as `source`) and a
    threshold set by `rule` on the normal windows `calibration`, through the same gate as a
    training, against that champion."""
    bundle = recalibrated(champion, calibration, rule)
    ev = evaluate_bundle(bundle, evaluation)
    version = registry.log_recalibration(tracking_uri, artifact_root, bundle, source, ev, evaluation.readings,
                                         len(calibration))
    decision = recalibration_decision(bundle, ev, version.version, contender_of(champion, source.version, evaluation))
    registry.record_decision(tracking_uri, champion.stream, decision)
    return version, decision


def recalibrate_champion(
    tracking_uri: str,
    artifact_root: str | None,
    stream: str,
    frame: pd.DataFrame,
    rule: ThresholdRule,
    *,
    label_columns: list[str],
    holdout_fraction: float,
    stride: int | None,
    exclusions: Exclusions | None = None,
    excluded_intervals: pd.DataFrame | None = None,
) -> tuple[registry.RegisteredVersion, GateDecision]:
    """The stream's champion with its threshold refitted on the recent normal windows of
    `frame` (monitoring.models.fitting.recalibration_data), registered through the gate."""
    model, source = registry.load_model(tracking_uri, stream)
    champion = registry.loaded_bundle(model)
    calibration, evaluation = recalibration_data(
        champion, frame, label_columns=label_columns, holdout_fraction=holdout_fraction,
        stride=stride, exclusions=exclusions, excluded_intervals=excluded_intervals,
    )
    return register_recalibration(tracking_uri, artifact_root, champion, source, calibration, evaluation, rule)
