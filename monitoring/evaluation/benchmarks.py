"""Benchmarks on public labeled data (SKAB, NAB), run through aemon's own code path.

Each file is imported with the normal ingest (monitoring.store.datasets), trained with the
normal training code (monitoring.models.fitting: scaler, windows, detector, threshold rule) on
the file's training part only, and scored by the normal scoring code
(monitoring.alerting.scoring.score_stream), which writes its windows to the bench's DuckDB file.
Point alarms are then read back causally (monitoring.evaluation.labeled.point_alarms): a reading's
alarm is the flag of the latest window that ends at or before it, as in a live monitor.
The labels of the scored part are read only to compute the metrics.

Protocols:
- SKAB: per file, the first 400 rows are the normal training part and the rest is scored;
  a model and scaler per file; TP / FP / FN / TN pooled over all files; the changepoint
  NAB score uses 60-second windows to the right of each true changepoint, with predicted
  changepoints where the alarm's incident opens or recovers (`events`; with 1 and 1, where
  the alarm switches on or off, as SKAB's notebooks derive them).
  A file without labels (anomaly-free.csv: the rig running normally) is not part of the
  protocol; it is cut into parts of an experiment's length, each scored the same way, and
  their false-alarm rate is reported beside the protocol's ("FAR on normal days"): the
  labelled files hold about 170 normal rows after their training part, too few to show
  how often a model trained on 400 rows alarms as the rig drifts over an ordinary day.
- NAB: per file, the probationary period (min(15 % of rows, 750)) is the training part
  and is not scored; detections are alarm onsets; windows come from windows.json.
"""
from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from aemodels.detector import DEFAULT_KINDS, DETECTOR_KINDS, make_detector, param_defaults
from aemodels.errors import DetectorInputError, ThresholdFitError, UnknownParameterError
from aemodels.thresholds import ThresholdRule
from features.errors import WindowError
from features.importers import (
    SKAB_SENSORS,
    DataSetError,
    nab_files,
    nab_windows,
    skab_asset,
    skab_files,
    split_rows,
)
from features.windows import WindowSpec
from monitoring.alerting.adaptive import AlarmRule
from monitoring.alerting.scoring import score_stream
from monitoring.errors import BenchSettingError, TrainingDataError
from monitoring.evaluation.labeled import point_alarms
from monitoring.evaluation.metrics import (
    NAB_PROFILES,
    NabFileScore,
    PointCounts,
    changepoint_windows,
    incident_events,
    nab_file_score,
    nab_normalised,
    nab_probationary_rows,
    onsets,
    point_counts,
)
from monitoring.models.bundle import ModelBundle
from monitoring.models.defaults import STREAM_DETECTOR_DEFAULTS, TrainingSplit, check_calibration_folds
from monitoring.models.fitting import fit_bundle, prepare_training
from monitoring.models.registry import log_benchmark
from monitoring.store.connection import Warehouse, connect
from monitoring.store.datasets import import_file
from monitoring.store.readings import read_readings
from monitoring.store.results import read_scores

SKAB_TRAIN_ROWS = 400
# a part of a file without labels: about an experiment's length (valve1 and valve2 files hold
# 995-1,154 rows, median 1,140.5)
SKAB_NORMAL_PART_ROWS = 1150
SKAB_CHANGEPOINT_WINDOW = pd.Timedelta(seconds=60)
ENSEMBLE = "ensemble"
ENSEMBLE_RULES = ("mean", "vote")


class DetectorGrid:
    """What the settings of every benchmark share (SKAB / NAB here, ADBench in
    evaluation.adbench): the kinds, their parameters per seed, the threshold rule, and the
    checks that refuse a setting before any data is read. Mixed into frozen dataclasses."""

    kinds: tuple[str, ...]
    seeds: tuple[int, ...]
    detector_params: dict
    kind_params: dict
    threshold: ThresholdRule

    def params_of(self, kind: str, seed: int) -> dict:
        """A kind's parameters: the shared ones it has (NAB's `latent` is the autoencoders',
        not pca's or knn's; a name no kind has is kept, so the kind refuses it), its own
        ones, the seed."""
        own = set(param_defaults(kind))
        anyone = {name for k in DETECTOR_KINDS for name in param_defaults(k)}
        shared = {k: v for k, v in self.detector_params.items() if k in own or k not in anyone}
        return {**shared, **self.kind_params.get(kind, {}), "random_state": seed}

    def to_params(self) -> dict:
        flat = asdict(cast(Any, self))
        flat["threshold"] = self.threshold.name
        return {k: json.dumps(v) if isinstance(v, (dict, list, tuple)) else v for k, v in flat.items()}

    def refuse(self, checks: list[tuple[str, bool, str]], window: int) -> None:
        """One named problem: a (setting, ok, expected) check that fails, or a detector
        parameter its kind refuses (the threshold rule checked its own fields when made)."""
        unknown = [k for k in self.kinds if k not in DETECTOR_KINDS]
        if unknown:
            raise BenchSettingError(f"kinds: unknown {unknown}; expected some of {list(DETECTOR_KINDS)}")
        for name, ok, expected in [*checks, ("seeds", len(self.seeds) > 0, "at least one")]:
            if not ok:
                raise BenchSettingError(f"{name}={getattr(self, name)!r}, expected {expected}")
        for kind in self.kinds:
            try:
                make_detector(kind, **self.params_of(kind, self.seeds[0])).validate_params(window, 1)
            except (UnknownParameterError, TypeError, ValueError) as exc:
                raise BenchSettingError(f"detector_params / kind_params.{kind}: {exc}") from None


@dataclass(frozen=True)
class EventRule:
    """SKAB's predicted changepoints: the rows where the alarm's incident opens (a run of
    alarms, gaps under `recover_rows`, reaches `open_rows` alarm rows) or recovers (after
    `recover_rows` normal rows), as metrics.incident_events gives them. 1 and 1: every switch
    of the alarm, on or off, as SKAB's notebooks derive changepoints."""

    open_rows: int = 1
    recover_rows: int = 1

    def __post_init__(self):
        for name in ("open_rows", "recover_rows"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}={value!r}, expected a whole number >= 1")


@dataclass(frozen=True)
class BenchSettings(DetectorGrid):
    """One configuration of the detectors, fixed for every file of a benchmark.

    window: samples per window (the interval is each file's median step);
    max_gap_intervals: steps up to this many intervals are filled on the grid, longer ones
    split the series; detector_params: shared hyperparameters, each given to the kinds that
    have it, kind_params: per kind; ensemble: also report an ensemble of the kinds
    (`ensemble_rule`)."""

    kinds: tuple[str, ...] = tuple(DEFAULT_KINDS)
    window: int = 40
    max_gap_intervals: float = 5.0
    # the last part of the training rows: early stopping and the threshold
    val_fraction: float = TrainingSplit.val_fraction
    # 1: the threshold from the calibration windows alone; k >= 3: cross-fitted over every
    # training row (monitoring.models.fitting.cross_fitted_values), k - 1 more fits per kind
    calibration_folds: int = 1
    # the stream defaults, on one thread (seeds run one after another), no progress bar;
    # training (epochs, batch size, ...) as the detectors' own defaults
    detector_params: dict = field(default_factory=lambda: {**STREAM_DETECTOR_DEFAULTS, "n_threads": 1,
                                                           "progress": False})
    kind_params: dict = field(default_factory=dict)
    threshold: ThresholdRule = ThresholdRule(percentile=99.0, coefficient=1.3)
    # which windows above the threshold raise an alarm (monitoring.alerting.adaptive)
    alarm: AlarmRule = AlarmRule()
    # SKAB's rig: the motor body and fluid temperatures drift for minutes and stay shifted
    # after a fault, and the vibration RMS of both accelerometers drifts over an ordinary day
    # (anomaly-free.csv, Accelerometer1RMS: a mean of 0.203 g over its first 250 rows, 0.217 g
    # over its last, 2 h 46 min later; 12.6 times its spread over its first 400); the detectors see
    # their changes (features.differencing). Chosen with the FAR on normal days (README:
    # "False alarms on normal days"). Ignored where a data set has no such sensor.
    differenced: tuple[str, ...] = ("Temperature", "Thermocouple", "Accelerometer1RMS", "Accelerometer2RMS")
    ensemble: bool = True
    # how the ensemble decides: "vote" (a majority of the members raise an alarm, each under
    # `alarm` on its own score history; with two members, both) or "mean" (the mean severity
    # of the members above 1, scored as a model of its own under `alarm`). Chosen out of fold:
    # every fold of both benchmarks chose the vote (NAB, one category held out in turn: pooled
    # 60.55 against 58.69; SKAB valve1 <-> valve2: F1 0.869 against 0.867 with FAR and MAR
    # lower too, the changepoint score 0.9 lower; README: "The ensemble: a vote")
    ensemble_rule: str = "vote"
    seeds: tuple[int, ...] = (0, 1, 2)  # a file has 400 training rows: figures move with the seed
    # NAB: alarms less than this many rows apart are one incident with one detection (its
    # first row), as aemon merges flagged windows into incidents
    merge_rows: int = 0
    # SKAB: which rows are predicted changepoints. An alarm that stays on through a fault
    # flickers, and each flicker is two changepoints that score as false alarms; the
    # incident's opened and recovered events are not. Chosen out of fold by the changepoint
    # score: valve1 <-> valve2, every fold chose events over every switch (ensemble 40.20 out
    # of fold against 30.68; README: "Changepoints: the incident's events")
    events: EventRule = EventRule(open_rows=8, recover_rows=20)

    def validate(self) -> BenchSettings:
        """Refuse settings that cannot work before any file is read (one named problem), so a
        bad value is never mistaken for a file too short to train."""
        if not self.kinds:
            raise BenchSettingError(f"kinds: none given; expected some of {list(DETECTOR_KINDS)}")
        self.refuse([("window", self.window >= 1, ">= 1"),
                     ("max_gap_intervals", self.max_gap_intervals >= 1, ">= 1"),
                     ("val_fraction", 0 < self.val_fraction < 1, "between 0 and 1"),
                     ("merge_rows", self.merge_rows >= 0, ">= 0"),
                     ("ensemble_rule", self.ensemble_rule in ENSEMBLE_RULES, f"one of {list(ENSEMBLE_RULES)}")],
                    self.window)
        try:
            check_calibration_folds(self.calibration_folds)  # the stream config's check
        except ValueError as exc:
            raise BenchSettingError(str(exc)) from None
        for kind in self.kinds if self.calibration_folds > 1 else ():
            try:
                make_detector(kind, **self.params_of(kind, self.seeds[0])).check_pooled_calibration()
            except DetectorInputError as exc:
                raise BenchSettingError(f"calibration_folds={self.calibration_folds} with {kind}: {exc}") from None
        return self

    @classmethod
    def for_dataset(cls, dataset: str) -> BenchSettings:
        """The defaults of a benchmark, fixed once for every file (README: "How good is it on
        public labeled data")."""
        if dataset == "skab":
            return cls()
        if dataset == "nab":
            base = cls()
            return cls(**NAB_DEFAULTS, detector_params={**base.detector_params, **NAB_DETECTOR_PARAMS})
        raise ValueError(f"unknown benchmark {dataset!r}; expected 'skab' or 'nab'")

    @property
    def detectors(self) -> list[str]:
        return [*self.kinds, *([ENSEMBLE] if self.ensemble and len(self.kinds) > 1 else [])]


# NAB's series are univariate, minutes to an hour apart, and most drift in level over weeks
# while the model sees only the probationary period: alarms are adaptive (a window must
# also stand out from the series' own score history, which follows the drift), windows are
# shorter, alarms less than `merge_rows` apart are one detection, and the latent code is
# 2 wide (a window holds 10 values: with 8 latent units a network nearly copies its input,
# anomalies included). The value is seen as it is, not differenced: with adaptive alarms,
# leaving one category out in turn, the levels scored higher on the held-out category for
# cnn_ae, the VAE and the ensemble (pooled out of fold +4.3, +5.1, +2.8; mlp_ae -3.4), as a
# level that shifts and stays is itself a fault (README: "Levels or changes").
NAB_DEFAULTS: dict[str, Any] = {"window": 10, "differenced": (), "merge_rows": 100,
                                "alarm": AlarmRule("adaptive")}
NAB_DETECTOR_PARAMS = {"latent": 2}


@dataclass(frozen=True)
class BenchRow:
    """One detector's pooled result over a benchmark's files."""

    detector: str
    files: int
    rows: int
    nab: dict[str, float]
    counts: PointCounts | None = None  # SKAB only: pooled pointwise counts
    per_file: pd.DataFrame | None = field(default=None, repr=False, compare=False)  # seed, asset, counts per file
    untrained: tuple[str, ...] = ()  # files whose training part could not be windowed: they never fire
    # SKAB: pooled counts over the parts of the files without labels (all normal), if any
    normal: PointCounts | None = None
    normal_parts: int = 0
    # SKAB: predicted changepoints (the incident's events, `events`) on those parts, all of them
    # false: the mean over seeds, and the parts' scored data time in hours
    normal_events: float = 0.0
    normal_hours: float = 0.0
    unscored: tuple[str, ...] = ()  # recordings without labels too short to leave rows after training

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"detector": self.detector}
        if self.counts is not None:
            out.update(f1=self.counts.f1, far=100 * self.counts.far, mar=100 * self.counts.mar)
        out.update({f"nab_{p}": self.nab[p] for p in NAB_PROFILES})
        out["files"] = self.files
        if self.counts is not None:
            out["rows"] = self.rows
        if self.normal is not None:
            out.update(far_normal=100 * self.normal.far, normal_parts=self.normal_parts,
                       normal_rows=int(self.normal.fp + self.normal.tn),
                       events_per_hour_normal=self.normal_events / self.normal_hours if self.normal_hours
                       else float("nan"))
        return out


@dataclass
class EnsembleBundle:
    """The mean severity of several bundles over the same windows: each member's score
    divided by its own threshold scale (ModelBundle.severity), so 1 is every member at its
    threshold; the ensemble flags a window whose mean severity exceeds 1."""

    members: list[ModelBundle]

    def score_readings(self, frame: pd.DataFrame) -> pd.DataFrame:
        scored = [m.score_readings(frame, all_contributions=True) for m in self.members]
        base = scored[0].copy()
        for other in scored[1:]:
            if not np.array_equal(other["window_end"].to_numpy(), base["window_end"].to_numpy()):
                raise ValueError("ensemble members cut different windows; they need one window spec")
        severity = np.mean([s["severity"].to_numpy() for s in scored], axis=0)
        strongest = np.argmax([s["severity"].to_numpy() for s in scored], axis=0)
        base["score"] = severity
        base["severity"] = severity
        base["threshold"] = 1.0
        base["is_anomaly"] = severity > 1.0
        for column in ("top_sensors", "contributions"):
            base[column] = [scored[k][column].iat[i] for i, k in enumerate(strongest)]
        return base


@dataclass(frozen=True)
class _File:
    asset: str
    readings: pd.DataFrame  # timestamp, asset, sensors, labels; sorted
    train_rows: int
    spec: WindowSpec
    windows: pd.DataFrame | None = None  # NAB: labelled windows from windows.json
    source: Path | None = None  # the file imported as this asset


def _median_step_s(timestamps: pd.Series) -> float:
    steps = timestamps.diff().dt.total_seconds().dropna()
    steps = steps[steps > 0]
    return float(steps.median()) if len(steps) else 1.0


def _spec(readings: pd.DataFrame, settings: BenchSettings) -> WindowSpec:
    step = _median_step_s(readings["timestamp"])
    return WindowSpec(size=settings.window, stride=1, interval_s=step, max_gap_s=step * settings.max_gap_intervals)


def _models(file: _File, sensors: list[str], settings: BenchSettings, seed: int, stream: str,
            label_columns: list[str]) -> Iterator[tuple[str, object]]:
    """(detector name, something with score_readings) for every detector of the settings."""
    train = file.readings.iloc[:file.train_rows]
    data = prepare_training(train, stream=stream, sensors=sensors, spec=file.spec, label_columns=label_columns,
                            val_fraction=settings.val_fraction, holdout_fraction=0.0,
                            train_stride=1, differenced=[s for s in settings.differenced if s in sensors])
    bundles = []
    for kind in settings.kinds:
        bundle, _ = fit_bundle(data, kind, settings.params_of(kind, seed), settings.threshold,
                               settings.calibration_folds)
        bundles.append(bundle)
        yield kind, bundle
    if ENSEMBLE in settings.detectors:
        # "vote" has no model of its own: _run counts the members' alarms
        yield ENSEMBLE, EnsembleBundle(bundles) if settings.ensemble_rule == "mean" else None


def _alarms(warehouse: Warehouse, stream: str, file: _File, model, name: str, version: int,
            alarm: AlarmRule) -> np.ndarray:
    """Score one file with the normal scoring code and read its point alarms back."""
    columns = ["timestamp", "asset", *(model.members[0] if isinstance(model, EnsembleBundle) else model).sensors]
    score_stream(warehouse, stream, model.score_readings, file.spec, columns, f"bench-{name}", version,
                 full=True, assets=[file.asset], alarm=alarm)
    with connect(warehouse) as con:
        scores = read_scores(con, stream, f"bench-{name}", version, file.asset)
    flagged = scores["is_anomaly"].to_numpy(dtype=bool) & ~scores["excluded"].to_numpy(dtype=bool)
    return point_alarms(file.readings["timestamp"], scores["window_end"], flagged)


def majority(alarms: list[np.ndarray], rows: int) -> np.ndarray:
    """Rows where more than half of the members' point alarms are on (with two members, both).
    The members cut the same windows, so a majority of their rows is one of their windows."""
    if not alarms:
        return np.zeros(rows, dtype=bool)
    return np.sum(alarms, axis=0) * 2 > len(alarms)


def _run(files: list[_File], warehouse: Warehouse, stream: str, sensors: list[str], label_columns: list[str],
         settings: BenchSettings, judge: Callable[[_File, np.ndarray], tuple[PointCounts | None, NabFileScore]],
         progress: Callable[[str], None]) -> list[BenchRow]:
    counts: dict[str, list[PointCounts]] = {d: [] for d in settings.detectors}
    nab: dict[str, list[NabFileScore]] = {d: [] for d in settings.detectors}
    per_file: dict[str, list[dict]] = {d: [] for d in settings.detectors}
    untrained: list[str] = []
    for seed in settings.seeds:
        for i, file in enumerate(files):
            progress(f"seed {seed}: {file.asset} ({i + 1}/{len(files)})")
            try:
                models = list(_models(file, sensors, settings, seed, stream, label_columns))
            except (TrainingDataError, WindowError) as exc:
                # scored as a detector that never fires, and reported: a file is never dropped
                progress(f"{file.asset}: not trained ({exc})")
                untrained.append(f"{file.asset} (seed {seed}): {exc}")
                models = [(name, None) for name in settings.detectors]
            except ThresholdFitError as exc:
                # the threshold rule asks more of this file's calibration windows than they hold:
                # a setting that cannot work here, named with the file (no file is dropped)
                raise BenchSettingError(f"threshold on {file.asset} (seed {seed}): {exc}") from None
            members: list[np.ndarray] = []  # the kinds' point alarms on this file, for a vote
            for name, model in models:
                if name == ENSEMBLE and settings.ensemble_rule == "vote":
                    alarms = majority(members, len(file.readings))
                elif model is None:
                    alarms = np.zeros(len(file.readings), dtype=bool)
                else:
                    alarms = _alarms(warehouse, stream, file, model, name, seed + 1, settings.alarm)
                if name != ENSEMBLE:
                    members.append(alarms)
                pointwise, nab_score = judge(file, alarms)
                if pointwise is not None:
                    counts[name].append(pointwise)
                nab[name].append(nab_score)
                per_file[name].append({
                    "seed": seed, "asset": file.asset, "alarm_rows": int(alarms[file.train_rows:].sum()),
                    **({f"point_{k}": getattr(pointwise, k) for k in ("tp", "fp", "fn", "tn")} if pointwise else {}),
                    "nab_tp": nab_score.tp, "nab_fp": nab_score.fp, "nab_fn": nab_score.fn,
                    **{f"nab_raw_{p}": nab_score.raw[p] for p in NAB_PROFILES},
                    "nab_windows": nab_score.n_windows, "nab_windows_unscored": nab_score.n_windows_unscored})
    rows = []
    scored_rows = sum(len(f.readings) - f.train_rows for f in files)
    for name in settings.detectors:
        pooled = sum(counts[name][1:], counts[name][0]) if counts[name] else None
        if pooled is not None and len(settings.seeds) > 1:  # the mean over seeds, as counts
            pooled = _mean_counts(pooled, len(settings.seeds))
        rows.append(BenchRow(name, len(files), scored_rows, nab_normalised(nab[name]), pooled,
                             pd.DataFrame(per_file[name]), tuple(untrained)))
    return rows


# what trains and scores the files of a benchmark: _run, or a replay (replay_bench)
Runner = Callable[[list[_File], Warehouse, str, list[str], list[str], BenchSettings,
                   Callable[[_File, np.ndarray], tuple[PointCounts | None, NabFileScore]], Callable[[str], None]],
                  list[BenchRow]]


def _mean_counts(total: PointCounts, n: int) -> PointCounts:
    # the ratios of summed counts equal those of the per-seed mean counts
    return PointCounts(total.tp / n, total.fp / n, total.fn / n, total.tn / n)


@contextmanager
def _home(work_dir: Path | None) -> Iterator[Warehouse]:
    """The warehouse of one bench run: under `work_dir`, kept, or in a temporary folder
    removed afterwards."""
    if work_dir is not None:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
        yield Warehouse.at(work_dir)
        return
    with tempfile.TemporaryDirectory(prefix="aemon-bench-") as temporary:
        yield Warehouse.at(temporary)


def _read_asset(warehouse: Warehouse, stream: str, asset: str) -> pd.DataFrame:
    with connect(warehouse) as con:
        return read_readings(con, stream, asset=asset).sort_values("timestamp").reset_index(drop=True)


def _has_labels(path: Path) -> bool:
    with open(path, encoding="utf-8-sig") as handle:
        header = handle.readline().strip().split(";")
    return "anomaly" in header and "changepoint" in header


def _quiet(_: str) -> None:
    pass


def run_skab(data_dir: str | Path, settings: BenchSettings | None = None, *, work_dir: Path | None = None,
             progress: Callable[[str], None] = _quiet, runner: Runner = _run) -> list[BenchRow]:
    """SKAB's protocol on every labeled CSV under `data_dir` (files without labels, such as
    anomaly-free.csv, are not part of it). `runner`: how the files are trained and scored
    (default: once each; monitoring.evaluation.replay_bench: replayed in data time)."""
    stream = "skab"
    settings = (settings or BenchSettings.for_dataset("skab")).validate()
    with _home(work_dir) as warehouse, tempfile.TemporaryDirectory(prefix="aemon-normal-") as parts_dir:
        files, normal, short = [], [], []
        for path, asset in skab_files(data_dir):
            if _has_labels(path):
                files.append(_skab_file(warehouse, stream, path, asset, settings))
                continue
            # a recording without labels (anomaly-free.csv): parts scored for the FAR on normal days
            for part in split_rows(path, SKAB_NORMAL_PART_ROWS, Path(parts_dir) / asset):
                scored = _skab_file(warehouse, stream, part, skab_asset(part), settings)
                if len(scored.readings) > scored.train_rows:
                    normal.append(scored)
                else:  # nothing after its training rows: no rate to report
                    short.append(f"{scored.asset} ({path}): {len(scored.readings)} readings, none after the "
                                 f"{scored.train_rows} that train")
        if not files:
            raise DataSetError(f"{data_dir}: no labeled SKAB files (with anomaly and changepoint columns)")

        def judge(file: _File, alarms: np.ndarray) -> tuple[PointCounts, NabFileScore]:
            test = file.readings.iloc[file.train_rows:]
            predicted = alarms[file.train_rows:]
            truth = test["anomaly"].to_numpy() > 0
            windows = changepoint_windows(test["timestamp"], test["changepoint"].to_numpy() > 0,
                                          SKAB_CHANGEPOINT_WINDOW, overlap="cut_right")
            changepoints = nab_file_score(test["timestamp"], _changepoints(predicted, settings.events), windows,
                                          scoring="skab")
            return point_counts(truth, predicted), changepoints

        rows = runner(files, warehouse, stream, list(SKAB_SENSORS), ["anomaly", "changepoint"], settings, judge,
                      progress)
        rows = [replace(r, unscored=tuple(short)) for r in rows]
        if not normal:
            return rows

        def judge_normal(file: _File, alarms: np.ndarray) -> tuple[PointCounts, NabFileScore]:
            test = file.readings.iloc[file.train_rows:]
            predicted = alarms[file.train_rows:]
            no_windows = changepoint_windows(test["timestamp"], np.zeros(len(test), dtype=bool),
                                             SKAB_CHANGEPOINT_WINDOW, overlap="cut_right")
            return (point_counts(np.zeros(len(test), dtype=bool), predicted),
                    nab_file_score(test["timestamp"], _changepoints(predicted, settings.events), no_windows,
                                   scoring="skab"))

        normal_rows = {r.detector: r for r in runner(normal, warehouse, stream, list(SKAB_SENSORS), [], settings,
                                                      judge_normal, lambda m: progress(f"normal days: {m}"))}
        hours = sum(_scored_hours(f) for f in normal)
        # a part too short to train counts as never firing, and is reported as the files are
        return [replace(r, normal=normal_rows[r.detector].counts, normal_parts=len(normal),
                        normal_events=_mean_over_seeds(normal_rows[r.detector].per_file, "nab_fp"),
                        normal_hours=hours, untrained=r.untrained + normal_rows[r.detector].untrained)
                if r.detector in normal_rows else r for r in rows]


def _scored_hours(file: _File) -> float:
    """The data time a file's scored rows cover, each row standing for one step."""
    stamps = file.readings["timestamp"].iloc[file.train_rows:]
    if stamps.empty:
        return 0.0
    return float((stamps.iloc[-1] - stamps.iloc[0] + pd.Timedelta(seconds=file.spec.interval_s))
                 / pd.Timedelta(hours=1))


def _mean_over_seeds(per_file: pd.DataFrame | None, column: str) -> float:
    if per_file is None or per_file.empty:
        return 0.0
    return float(per_file.groupby("seed")[column].sum().mean())


def _changepoints(alarms: np.ndarray, rule: EventRule) -> np.ndarray:
    return incident_events(alarms, rule.open_rows, rule.recover_rows)


def _skab_file(warehouse: Warehouse, stream: str, path: Path, asset: str, settings: BenchSettings) -> _File:
    import_file(warehouse, "skab", path, stream=stream)
    readings = _read_asset(warehouse, stream, asset)
    return _File(asset, readings, SKAB_TRAIN_ROWS, _spec(readings, settings), source=path)


def run_nab(data_dir: str | Path, settings: BenchSettings | None = None, *, work_dir: Path | None = None,
            progress: Callable[[str], None] = _quiet, runner: Runner = _run) -> list[BenchRow]:
    """NAB's scoring on every series in `data_dir` with its windows.json: each file trains on
    its probationary period; detections are alarm onsets after it."""
    stream = "nab"
    settings = (settings or BenchSettings.for_dataset("nab")).validate()
    if settings.events != BenchSettings().events:  # a setting that would change nothing is refused
        raise BenchSettingError("events: SKAB's predicted changepoints; NAB's detections are incident onsets, "
                                "alarms less than merge_rows apart being one (set merge_rows instead)")
    with _home(work_dir) as warehouse:
        files = []
        for path, asset in nab_files(data_dir):
            import_file(warehouse, "nab", path, stream=stream, data_dir=data_dir)
            readings = _read_asset(warehouse, stream, asset)
            files.append(_File(asset, readings, nab_probationary_rows(len(readings)), _spec(readings, settings),
                               nab_windows(data_dir, path.name), source=path))

        def judge(file: _File, alarms: np.ndarray) -> tuple[None, NabFileScore]:
            detections = onsets(alarms, settings.merge_rows)
            return None, nab_file_score(file.readings["timestamp"], detections, file.windows,
                                        probationary_rows=file.train_rows)

        return runner(files, warehouse, stream, ["value"], ["label"], settings, judge, progress)


def log_bench(tracking_uri: str, artifact_root: str | None, dataset: str, data_dir: str | Path,
              settings: BenchSettings, rows: list[BenchRow], seconds: float) -> str:
    """One MLflow run per benchmark (experiment `bench-<dataset>`) with a child run per
    detector, so configurations can be compared in the MLflow UI. Returns the parent run id."""
    return log_benchmark(tracking_uri, artifact_root, dataset, str(data_dir),
                         {**settings.to_params(), "files": rows[0].files if rows else 0},
                         [row.to_dict() for row in rows], seconds)


def with_overrides(settings: Any, **changes) -> Any:
    """`settings` with some fields replaced (None: kept)."""
    return replace(settings, **{k: v for k, v in changes.items() if v is not None})


def with_assignments(settings: Any, assignments: list[str]) -> Any:
    """`settings` changed by `KEY=VALUE` strings (VALUE in JSON, a bare word, or a list of
    bare words `[a,b]`: a JSON list of strings whose quotes a shell or `--grid` removed): a
    field (`window=30`, `kinds=["mlp_ae"]`), a field of a rule (`threshold.coefficient=1.2`,
    `alarm.z=3`, `events.open_rows=8`),
    or one detector parameter (`detector_params.epochs=30`, `kind_params.vae.beta=0.5`)."""
    settable = {f.name for f in fields(settings)}  # BenchSettings, AdbenchSettings
    for text in assignments:
        key, sep, raw = text.partition("=")
        if not sep or not key:
            raise BenchSettingError(f"--set {text!r}: expected KEY=VALUE, e.g. window=30")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            bracketed = raw.startswith("[") and raw.endswith("]")
            value = [w.strip() for w in raw[1:-1].split(",") if w.strip()] if bracketed else raw
        head, _, rest = key.partition(".")
        if head not in settable:
            raise BenchSettingError(f"--set {key}: no such bench setting; expected one of {sorted(settable)}")
        if head in ("threshold", "alarm", "events"):  # a field of a rule: ThresholdRule, AlarmRule, EventRule
            names = [f.name for f in fields(getattr(settings, head))]
            if rest not in names:
                raise BenchSettingError(f"--set {key}: expected {head}.<{'|'.join(names)}>")
            try:
                settings = replace(settings, **{head: replace(getattr(settings, head), **{rest: value})})
            except (TypeError, ValueError) as exc:
                raise BenchSettingError(f"--set {key}={raw}: {exc}") from None
        elif head in ("detector_params", "kind_params") and rest:
            table = json.loads(json.dumps(getattr(settings, head)))  # a deep copy of plain values
            *path, last = rest.split(".")
            node = table
            for part in path:
                node = node.setdefault(part, {})
            node[last] = value
            settings = replace(settings, **{head: table})
        elif rest:
            raise BenchSettingError(f"--set {key}: '{head}' has no fields")
        else:
            if isinstance(value, list):
                value = tuple(value)
            expected = type(getattr(settings, head))
            if expected is float and isinstance(value, int):
                value = float(value)
            if not isinstance(value, expected):
                raise BenchSettingError(f"--set {key}={raw}: expected a {expected.__name__}")
            settings = replace(settings, **{head: value})
    return settings


# Published results quoted for comparison (SKAB's README leaderboard over its 34 files;
# NAB's scoreboard on realKnownCause, standard profile). "-": not published.
PUBLISHED: dict[str, list[tuple[str, tuple[str, ...]]]] = {
    "skab": [
        ("Conv-AE", ("0.78", "13.55", "28.02", "23.61", "21.54", "27.55")),
        ("MSET", ("0.78", "39.73", "14.13", "13.84", "10.22", "17.37")),
        ("LSTM-AE", ("0.74", "29.96", "25.92", "23.51", "20.11", "25.91")),
        ("MSCRED", ("0.36", "49.94", "69.88", "32.42", "16.53", "40.28")),
    ],
    "nab": [
        ("ARTime", ("63.9", "-", "-")),
        ("Numenta HTM", ("55.5", "-", "-")),
        ("Random Cut Forest", ("43.1", "-", "-")),
    ],
}


def published(dataset: str) -> list[tuple[str, tuple[str, ...]]]:
    return PUBLISHED[dataset]
