"""Training a stream's detectors: normal windows -> fitted detectors -> model bundles,
each evaluated on the same held-out windows.

The training range is split in time order, never shuffled:

    | train (1 - val_fraction)         | calibration          | holdout            |
                                       |<------------ val_fraction ------------->|

- train: the windows the networks learn from;
- calibration: early stopping, validation loss, and the thresholds (percentiles, POT);
- holdout (the last `holdout_fraction` of the validation part): the recent normal windows
  on which the false-alarm rate is measured and the promotion gate compares versions.

Rows with a label, rows inside an exclusion interval (maintenance, a known bad feed, a
past incident) are left out of every normal set. Labeled windows anywhere in the range
are the anomalous side of the evaluation, also where they overlap an exclusion (a labeled
fault that already raised an incident still counts); other excluded windows are in
neither side.
"""
from __future__ import annotations

import copy
import hashlib
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pandas as pd

from aemodels.base import BaseDetector
from aemodels.detector import make_detector
from aemodels.errors import DetectorInputError
from aemodels.thresholds import ThresholdRule
from features.differencing import difference
from features.exclusions import EXCLUDED, exclusion_mask
from features.scaling import StandardScaler
from features.training_set import labeled_mask, make_training_set, thin_windows
from features.windows import WindowSet, WindowSpec
from monitoring.errors import TrainingDataError
from monitoring.models.bundle import ModelBundle
from monitoring.models.defaults import TrainingSplit, check_calibration_folds
from monitoring.models.gate import window_metrics

LABELED = "_aemon_labeled"
MIN_CALIBRATION_WINDOWS = 10


def data_hash(frame: pd.DataFrame) -> str:
    """A content hash of the training readings, to tell later which data a version saw."""
    return hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()).hexdigest()[:16]


@dataclass(frozen=True)
class EvaluationData:
    """Readings of a range with their label and exclusion marks, and where the holdout starts."""

    readings: pd.DataFrame  # timestamp, asset, sensors..., LABELED, EXCLUDED
    holdout_start: pd.Timestamp
    stride: int | None = None  # window stride of the evaluation; None: each bundle's own

    @property
    def has_labels(self) -> bool:
        return bool(self.readings[LABELED].any())


@dataclass(frozen=True)
class Evaluation:
    """A bundle's scores on the evaluation windows (holdout normal + labeled anomalous)."""

    windows: WindowSet  # scaled
    scores: np.ndarray
    anomalous: np.ndarray
    threshold: float
    metrics: dict[str, float]


def evaluate_bundle(bundle: ModelBundle, data: EvaluationData) -> Evaluation:
    windows, marks = bundle.windows(data.readings, stride=data.stride, extra_columns=(LABELED, EXCLUDED))
    anomalous = marks[:, :, 0].max(axis=1) > 0 if len(windows) else np.zeros(0, dtype=bool)
    excluded = marks[:, :, 1].max(axis=1) > 0 if len(windows) else np.zeros(0, dtype=bool)
    keep = anomalous | (~excluded & (windows.start >= np.datetime64(data.holdout_start, "ns")))
    windows, anomalous = windows.take(keep), anomalous[keep]
    if not (~anomalous).any():
        raise TrainingDataError(
            f"no normal windows after {data.holdout_start} to evaluate on; widen the range or lower holdout_fraction")
    scores = bundle.detector.score(windows.X)
    return Evaluation(windows, scores, anomalous, bundle.threshold, window_metrics(scores, anomalous, bundle.threshold))


@dataclass(frozen=True)
class TrainingData:
    stream: str
    sensors: list[str]
    spec: WindowSpec
    scaler: StandardScaler
    train: WindowSet
    calibration: WindowSet
    evaluation: EvaluationData
    params: dict  # what every candidate logs: window spec, scaler, range, split, data hash
    data_hash: str
    start: pd.Timestamp
    end: pd.Timestamp
    differenced: list[str] = field(default_factory=list)


def prepare_training(
    frame: pd.DataFrame,
    *,
    stream: str,
    sensors: list[str],
    spec: WindowSpec,
    label_columns: Sequence[str] = (),
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
    val_fraction: float = TrainingSplit.val_fraction,
    holdout_fraction: float = TrainingSplit.holdout_fraction,
    train_stride: int | None = None,
    exclusions=None,
    excluded_intervals: pd.DataFrame | None = None,
    differenced: list[str] | tuple[str, ...] = (),
    max_train_windows: int | None = None,
) -> TrainingData:
    """Scaled train / calibration windows and the evaluation data of one training range.

    `exclusions` and `excluded_intervals` (see exclusion_mask): rows that are never normal
    training or evaluation data, such as machine-off readings, maintenance, past incidents.
    `differenced`: slow sensors the detectors see as changes (features.differencing); the
    evaluation readings stay as read, since the bundle differences what it scores.
    `max_train_windows`: when the range gives more training windows than this, every k-th
    is kept (features.training_set.thin_windows: the stride raised k-fold), so the cost of a
    fit stops growing with the length of the range; the calibration windows are all kept."""
    if not 0 <= holdout_fraction < 1:
        raise TrainingDataError(f"holdout_fraction={holdout_fraction}, must be >= 0 and < 1 (0: no holdout, "
                                "every validation window calibrates; such a training cannot be evaluated)")
    frame = frame.copy()
    frame[EXCLUDED] = exclusion_mask(frame, exclusions, excluded_intervals).astype(np.float64)
    data = make_training_set(
        difference(frame, list(differenced)), sensors, spec, label_columns=[*label_columns, EXCLUDED], start=start,
        end=end, val_fraction=val_fraction, train_stride=train_stride,
    )
    train, thinning = thin_windows(data.train, max_train_windows)
    used = frame[(frame["timestamp"] >= data.start) & (frame["timestamp"] <= data.end)]
    val_start = pd.Timestamp(data.val.start.min())
    holdout_start = val_start + (data.end - val_start) * (1 - holdout_fraction)
    calibration = data.val.take(data.val.end < np.datetime64(holdout_start, "ns") if holdout_fraction else
                                np.ones(len(data.val), dtype=bool))
    if len(calibration) < MIN_CALIBRATION_WINDOWS:
        raise TrainingDataError(
            f"only {len(calibration)} calibration windows between {val_start} and {holdout_start}; need >= "
            f"{MIN_CALIBRATION_WINDOWS}: widen the training range, raise val_fraction or lower holdout_fraction")
    readings = used[["timestamp", "asset", *sensors]].copy()
    readings[LABELED] = labeled_mask(used, list(label_columns)).astype(np.float64)
    readings[EXCLUDED] = used[EXCLUDED].to_numpy()
    digest = data_hash(used[["timestamp", "asset", *sensors]])
    params = {
        **{f"window.{k}": v for k, v in asdict(spec).items()},
        "stream": stream,
        "sensors": ",".join(sensors),
        "scaler": "standard (per sensor mean / std of the training rows)",
        "train.start": str(data.start),
        "train.end": str(data.end),
        "train.val_fraction": val_fraction,
        "train.holdout_fraction": holdout_fraction,
        "train.holdout_start": str(holdout_start),
        "train.stride": (train_stride or spec.stride) * thinning,
        "train.n_windows": len(train),
        "train.n_windows_before_limit": len(data.train),
        "train.max_windows": max_train_windows or "none",
        "calibration.n_windows": len(calibration),
        "train.n_windows_excluded": data.n_excluded_labeled,
        "train.n_excluded_intervals": 0 if excluded_intervals is None else len(excluded_intervals),
        "train.data_hash": digest,
        "differenced": ",".join(differenced) or "none",
    }
    return TrainingData(stream, list(sensors), spec, data.scaler, train, calibration,
                        EvaluationData(readings.reset_index(drop=True), holdout_start, train_stride), params, digest,
                        data.start, data.end, list(differenced))


@dataclass(frozen=True)
class Candidate:
    """One fitted detector of a training, as a bundle, evaluated on the shared windows."""

    kind: str
    bundle: ModelBundle
    evaluation: Evaluation
    params: dict
    fit_seconds: float
    # wall-clock interval of the fit (Unix seconds): the span of the candidate's MLflow run
    fit_started: float | None = None
    fit_ended: float | None = None
    # the run's figures as {file name: PNG bytes}, when rendered where the fit ran (see
    # fit_candidate); None: the registry renders them when it logs the candidate
    figures: dict[str, bytes] | None = None

    @property
    def detector(self) -> BaseDetector:
        return self.bundle.detector

    @property
    def val_loss(self) -> float:
        return best_val_loss(self.detector)


def best_val_loss(detector: BaseDetector) -> float:
    """The lowest validation loss of a detector's training (NaN when it had no validation set)."""
    losses = [row["val_loss"] for row in detector.history_ if row.get("val_loss") is not None]
    return float(min(losses)) if losses else float("nan")


def recalibrated(bundle: ModelBundle, calibration: np.ndarray, rule: ThresholdRule) -> ModelBundle:
    """A copy of `bundle` whose detector set its threshold by `rule` on the windows
    `calibration` (the network and its scaling unchanged)."""
    bundle = copy.deepcopy(bundle)
    bundle.detector.recalibrate(calibration, rule)
    return bundle


def fit_bundle(data: TrainingData, kind: str, params: dict, rule: ThresholdRule,
               calibration_folds: int = 1) -> tuple[ModelBundle, float]:
    """Fit one detector kind on the training windows and set its threshold by `rule` on the
    calibration windows: the bundle and the seconds the fit took. With calibration_folds
    k >= 3 the threshold (and the sensor scales) are cross-fitted over the whole range
    instead (cross_fitted_values): k - 1 more fits."""
    if "threshold" in params:
        raise TrainingDataError("'threshold' comes from the stream's threshold rule, not from the detector parameters")
    try:
        check_calibration_folds(calibration_folds)
    except ValueError as exc:
        raise TrainingDataError(str(exc)) from None
    detector = make_detector(kind, **params, threshold=rule)
    if calibration_folds > 1:  # refused before the first fit: settings that cannot pool, a range too short
        try:
            detector.check_pooled_calibration()
        except DetectorInputError as exc:
            raise TrainingDataError(f"calibration_folds={calibration_folds}: {exc}") from None
        cross_fit_blocks(data.train, calibration_folds)
    started = time.perf_counter()
    detector.fit(data.train.X, data.calibration.X)
    if calibration_folds > 1:
        detector.calibrate_on(cross_fitted_values(data, kind, params, rule, detector, calibration_folds))
    seconds = time.perf_counter() - started
    bundle = ModelBundle(stream=data.stream, sensors=list(data.sensors), spec=data.spec, scaler=data.scaler,
                         detector=detector, differenced=list(data.differenced))
    return bundle, seconds


def cross_fitted_values(data: TrainingData, kind: str, params: dict, rule: ThresholdRule, detector: BaseDetector,
                        folds: int) -> np.ndarray:
    """Calibration values (BaseDetector.calibration_values) of every window of the range,
    each from a detector that did not train on it, the range cut into `folds` folds: the
    calibration windows' from `detector`, and for each of `folds - 1` consecutive blocks of
    the training windows (with the default split and 5 folds, a fifth of the range each),
    the block's from a detector of the same kind and parameters fitted on the training
    windows that share no reading time with the block (early stopping on the calibration
    windows, as `detector`).

    Why: a detector's calibration windows are the last `val_fraction` of its range, so a
    threshold set on them alone never sees a cycle longer than that part (a day's load on
    a two-day range), and a few dozen windows make a loose percentile. Cross-fitting sets it
    on windows from the whole range, still each scored by a model that never saw it. The
    held-out block's windows of other assets at the same time are left out of its fit too."""
    train = data.train
    values = [detector.calibration_values(data.calibration.X)]
    for block, rest in cross_fit_blocks(train, folds):
        fold = make_detector(kind, **params, threshold=rule).fit(train.X[rest], data.calibration.X)
        values.append(fold.calibration_values(train.X[block]))
    return np.concatenate(values)


def cross_fit_blocks(train: WindowSet, folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(a block's window indices, a mask of the windows its fit trains on) for `folds - 1`
    consecutive blocks of the training windows (see cross_fitted_values), or a
    TrainingDataError before any fit when a block's fit would have too few windows."""
    if folds - 1 > len(train):
        raise TrainingDataError(f"calibration_folds={folds}: more folds than the {len(train)} training windows; "
                                "lower calibration_folds or widen the training range")
    blocks = []
    for block in np.array_split(np.argsort(train.start, kind="stable"), folds - 1):
        lo, hi = train.start[block].min(), train.end[block].max()
        rest = (train.end < lo) | (train.start > hi)
        if rest.sum() < MIN_CALIBRATION_WINDOWS:
            raise TrainingDataError(
                f"calibration_folds={folds}: only {int(rest.sum())} training windows outside a held-out block of "
                f"{len(block)}; need >= {MIN_CALIBRATION_WINDOWS}: lower calibration_folds or widen the training range")
        blocks.append((block, rest))
    return blocks


def fit_candidate(data: TrainingData, kind: str, params: dict, rule: ThresholdRule, *,
                  figures: bool = False, calibration_folds: int = 1) -> Candidate:
    """fit_bundle, then the bundle evaluated on the held-out (and labeled) windows; with
    `figures`, also its MLflow figures (monitoring.models.plots), rendered here: a fit in a
    worker process draws them there, beside the other fits, not after them all."""
    started = time.time()
    bundle, seconds = fit_bundle(data, kind, params, rule, calibration_folds)
    ended = time.time()
    logged = {
        **{f"detector.{k}": v for k, v in bundle.detector.get_params().items() if k != "threshold"},
        "detector.kind": kind,
        "threshold.rule": rule.name,
        **{f"threshold.{k}": v for k, v in rule.to_dict().items()},
        "calibration.folds": calibration_folds,
        **data.params,
    }
    candidate = Candidate(kind, bundle, evaluate_bundle(bundle, data.evaluation), logged, seconds, started, ended)
    if figures:
        from monitoring.models.plots import figure_files  # matplotlib: only where figures are drawn

        candidate = replace(candidate, figures=figure_files(candidate))
    return candidate


def train_bundle(frame: pd.DataFrame, *, stream: str, sensors: list[str], spec: WindowSpec, detector_params: dict,
                 kind: str = "mlp_ae", rule: ThresholdRule | None = None, **split) -> Candidate:
    """One detector kind trained on `frame` in one call (notebooks, tests); `split`: the
    other arguments of prepare_training."""
    data = prepare_training(frame, stream=stream, sensors=sensors, spec=spec, **split)
    return fit_candidate(data, kind, detector_params, rule or ThresholdRule())


def recalibration_data(
    bundle: ModelBundle,
    frame: pd.DataFrame,
    *,
    label_columns: Sequence[str] = (),
    holdout_fraction: float = TrainingSplit.holdout_fraction,
    stride: int | None = None,
    exclusions=None,
    excluded_intervals: pd.DataFrame | None = None,
) -> tuple[np.ndarray, EvaluationData]:
    """The recent normal windows of `frame` before its holdout, scaled by `bundle` (to set a
    new threshold on) and the evaluation data (holdout + labeled windows) for the gate."""
    if frame.empty:
        raise TrainingDataError("no readings in the recalibration range")
    t0, t1 = frame["timestamp"].min(), frame["timestamp"].max()
    holdout_start = t0 + (t1 - t0) * (1 - holdout_fraction)
    readings = frame[["timestamp", "asset", *bundle.sensors]].copy()
    readings[LABELED] = labeled_mask(frame, list(label_columns)).astype(np.float64)
    readings[EXCLUDED] = exclusion_mask(frame, exclusions, excluded_intervals).astype(np.float64)
    windows, marks = bundle.windows(readings, stride=stride, extra_columns=(LABELED, EXCLUDED))
    normal = marks.max(axis=(1, 2)) == 0 if len(windows) else np.zeros(0, dtype=bool)
    calibration = windows.take(normal & (windows.end < np.datetime64(holdout_start, "ns")))
    if len(calibration) < MIN_CALIBRATION_WINDOWS:
        raise TrainingDataError(
            f"only {len(calibration)} normal windows between {t0} and {holdout_start} to recalibrate on; need >= "
            f"{MIN_CALIBRATION_WINDOWS}: widen the range")
    return calibration.X, EvaluationData(readings.reset_index(drop=True), holdout_start, stride)
