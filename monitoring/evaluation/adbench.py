"""ADBench's classical tabular sets, run through aemon's own code path, beside PyOD's classic
detectors on the same splits.

Per set and seed: ADBench's stratified 70 / 30 split (features.importers.adbench_split); the
records of the split, training part first, are written as one Parquet export and ingested
with the normal ingest into a tabular stream (one per set, one asset per seed); the training
part is read back from the lake and prepared by the normal training code (scaler, windows of
one record, a calibration part that sets the threshold), each kind is fitted (fit_bundle), and
the normal scoring code (score_stream) writes every record's score and flag to the bench's
DuckDB file, from which the test part's are read back. Labels are read only for the metrics
and, in the `normal` setting, to keep labelled training records out of training as any
stream does.

Settings (ADBench's README): `normal` fits on the normal training records only (a monitor's
one-class setting); `unsupervised` fits on every training record with its label hidden.
Metrics on the test part: ROC AUC, PR AUC (average precision), F1 / precision / recall at the
detector's own threshold, and the best F1 any threshold gives. The baselines get the same
standardised records and PyOD's own defaults; their "own threshold" is PyOD's (contamination
0.1 of the training scores).
"""
from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from aemodels.detector import DETECTOR_KINDS
from aemodels.thresholds import ThresholdRule
from features.importers import (
    ADBENCH_LABEL,
    adbench_files,
    adbench_records,
    adbench_sensors,
    adbench_split,
    load_adbench,
)
from features.readers import StreamSchema
from features.scaling import StandardScaler
from monitoring.alerting.scoring import score_stream
from monitoring.errors import BenchSettingError
from monitoring.evaluation.benchmarks import DetectorGrid
from monitoring.evaluation.metrics import best_f1, point_counts, roc_auc
from monitoring.evaluation.ranking import friedman_p, holm, wilcoxon_p
from monitoring.models.defaults import TABULAR_DETECTOR_DEFAULTS, TABULAR_SPEC, TABULAR_THRESHOLD, TrainingSplit
from monitoring.models.fitting import fit_bundle, prepare_training
from monitoring.models.gate import average_precision
from monitoring.models.registry import log_benchmark
from monitoring.store.connection import Warehouse, connect
from monitoring.store.ingestion import ingest_file
from monitoring.store.readings import read_readings
from monitoring.store.results import read_scores

FITS = ("normal", "unsupervised")
# the classic detectors of the comparison (PyOD; flows.baselines makes them)
BASELINES = ("IForest", "ECOD", "PCA", "KNN", "AutoEncoder", "VAE")


class Baseline(Protocol):
    """A classic detector as PyOD's: fit on records, a score per record (higher: more
    anomalous), and its own threshold on that score."""

    threshold_: float

    def fit(self, X: np.ndarray) -> Any: ...

    def decision_function(self, X: np.ndarray) -> np.ndarray: ...
# percentiles of the calibration scores at which F1 is also recorded (choosing the default)
F1_PERCENTILES = (90.0, 95.0, 97.5, 99.0, 99.5)


@dataclass(frozen=True)
class AdbenchSettings(DetectorGrid):
    """One configuration, fixed for every set of a run."""

    kinds: tuple[str, ...] = tuple(DETECTOR_KINDS)
    baselines: tuple[str, ...] = BASELINES  # names; run_adbench gets a maker for each
    fits: tuple[str, ...] = FITS
    seeds: tuple[int, ...] = (0, 1, 2)
    sets: tuple[str, ...] = ()  # names (6_cardio or cardio); empty: every set in the folder
    test_fraction: float = 0.3
    # the last part of the training records (in their random order): early stopping and threshold
    val_fraction: float = TrainingSplit.val_fraction
    detector_params: dict = field(default_factory=lambda: {**TABULAR_DETECTOR_DEFAULTS, "n_threads": 1,
                                                           "progress": False})
    kind_params: dict = field(default_factory=dict)
    threshold: ThresholdRule = TABULAR_THRESHOLD

    def validate(self) -> AdbenchSettings:
        """Refuse settings that cannot work before any set is read (one named problem)."""
        if not self.kinds and not self.baselines:
            raise BenchSettingError("kinds and baselines are both empty; nothing to run")
        bad_fits = [f for f in self.fits if f not in FITS]
        if not self.fits or bad_fits:
            raise BenchSettingError(f"fits: {list(self.fits)}; expected some of {list(FITS)}")
        self.refuse([("test_fraction", 0 < self.test_fraction < 1, "between 0 and 1"),
                     ("val_fraction", 0 < self.val_fraction < 1, "between 0 and 1")], 1)
        return self


@dataclass(frozen=True)
class AdbenchResult:
    """Every (fit, set, seed, detector) row, and the run's settings and time."""

    rows: pd.DataFrame
    settings: AdbenchSettings
    seconds: float

    def per_set(self, fit: str, metric: str = "roc_auc") -> pd.DataFrame:
        """sets x detectors: the metric's mean over seeds."""
        frame = self.rows[self.rows["fit"] == fit]
        table = frame.pivot_table(index="set", columns="detector", values=metric, aggfunc="mean", sort=False)
        return table[[d for d in self.detectors if d in table.columns]]

    @property
    def detectors(self) -> list[str]:
        return [*self.settings.kinds, *self.settings.baselines]

    def summary(self, fit: str) -> pd.DataFrame:
        """One row per detector: the mean over sets of each metric (each set's mean over
        seeds), and the average rank by ROC AUC (1 = best; ties share the mean rank)."""
        means = {m: self.per_set(fit, m).mean() for m in
                 ("roc_auc", "pr_auc", "f1", "precision", "recall", "best_f1", "fit_s")}
        table = pd.DataFrame(means)
        table["f1_gap"] = table["best_f1"] - table["f1"]
        table["rank"] = ranks(self.per_set(fit)).mean()
        return table.loc[[d for d in self.detectors if d in table.index]]


def ranks(per_set: pd.DataFrame) -> pd.DataFrame:
    """Each set's rank of every detector, 1 = highest value; ties share their mean rank."""
    return per_set.rank(axis=1, ascending=False, method="average")


def comparisons(per_set: pd.DataFrame, kinds: list[str]) -> tuple[float, pd.DataFrame]:
    """Friedman's test over all detectors (p-value), and each aemon kind against each other
    detector: Wilcoxon signed-rank over the sets' values, Holm-corrected per kind, with the
    median difference."""
    complete = per_set.dropna()
    friedman = friedman_p(complete.to_numpy()) if complete.shape[1] >= 3 and len(complete) >= 2 else float("nan")
    rows = []
    for kind in [k for k in kinds if k in complete.columns]:
        others = [c for c in complete.columns if c != kind]
        diffs = [(complete[kind] - complete[other]).to_numpy() for other in others]
        p = [wilcoxon_p(d) for d in diffs]
        rows += [{"detector": kind, "against": other, "median_diff": float(np.median(d)), "p": pi, "p_holm": ph}
                 for other, d, pi, ph in zip(others, diffs, p, holm(p), strict=True)]
    return friedman, pd.DataFrame(rows, columns=["detector", "against", "median_diff", "p", "p_holm"])


def _metrics(truth: np.ndarray, scores: np.ndarray, flags: np.ndarray) -> dict[str, float]:
    counts = point_counts(truth, flags)
    precision = counts.tp / (counts.tp + counts.fp) if counts.tp + counts.fp else 0.0
    recall = counts.tp / (counts.tp + counts.fn) if counts.tp + counts.fn else float("nan")
    return {"roc_auc": roc_auc(truth, scores), "pr_auc": average_precision(scores, truth),
            "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
            "precision": precision, "recall": recall, "best_f1": best_f1(truth, scores)}


@contextmanager
def _home(work_dir: Path | None) -> Iterator[Path]:
    if work_dir is not None:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
        yield Path(work_dir)
        return
    with tempfile.TemporaryDirectory(prefix="aemon-adbench-") as temporary:
        yield Path(temporary)


def _quiet(_: str) -> None:
    pass


def _ingest_split(home: Path, stream: str, name: str, seed: int, X: np.ndarray, y: np.ndarray,
                  train: np.ndarray, test: np.ndarray) -> pd.DataFrame:
    """The split's records through the normal ingest; read back from the lake in record order."""
    asset = f"seed-{seed}"
    export = home / "exports" / name / f"{asset}.parquet"
    export.parent.mkdir(parents=True, exist_ok=True)
    adbench_records(X, y, train, test).to_parquet(export, index=False)
    schema = StreamSchema(sensors=tuple(adbench_sensors(X.shape[1])), timestamp_column=None, asset_column=None,
                          asset_id=asset, label_columns=(ADBENCH_LABEL,))
    result = ingest_file(Warehouse.at(home), stream, schema, export, asset=asset)
    if result.status == "rejected" or result.rows_quarantined:
        raise BenchSettingError(f"{name} seed {seed}: the ingest did not take every record ({result.error})")
    with connect(Warehouse.at(home)) as con:
        readings = read_readings(con, stream, asset=asset)
    return readings.sort_values("timestamp").reset_index(drop=True)


def _aemon_rows(home: Path, stream: str, readings: pd.DataFrame, n_train: int, sensors: list[str],
                settings: AdbenchSettings, fit: str, seed: int) -> Iterator[dict]:
    asset = str(readings["asset"].iloc[0])
    train = readings.iloc[:n_train]
    truth = readings[ADBENCH_LABEL].to_numpy()[n_train:] > 0
    data = prepare_training(train, stream=stream, sensors=sensors, spec=TABULAR_SPEC,
                            label_columns=[ADBENCH_LABEL] if fit == "normal" else [],
                            val_fraction=settings.val_fraction, holdout_fraction=0.0, train_stride=1)
    for kind in settings.kinds:
        bundle, seconds = fit_bundle(data, kind, settings.params_of(kind, seed), settings.threshold)
        model_name = f"bench-{kind}-{fit}"
        score_stream(Warehouse.at(home), stream, bundle.score_readings, TABULAR_SPEC,
                     ["timestamp", "asset", *sensors], model_name, seed + 1, full=True, assets=[asset])
        with connect(Warehouse.at(home)) as con:
            scored = read_scores(con, stream, model_name, seed + 1, asset)
        if len(scored) != len(readings) or not np.array_equal(scored["window_end"].to_numpy(),
                                                              readings["timestamp"].to_numpy()):
            raise AssertionError(f"{stream} {asset}: {len(scored)} scored windows for {len(readings)} records")
        scores = scored["score"].to_numpy(dtype=np.float64)[n_train:]
        flags = scored["is_anomaly"].to_numpy(dtype=bool)[n_train:]
        row = {"detector": kind, "family": "aemon", "fit_s": seconds, "threshold": bundle.threshold,
               **_metrics(truth, scores, flags)}
        calibration = np.asarray(bundle.detector.val_scores_, dtype=np.float64)
        for q in F1_PERCENTILES:  # other percentiles of the same calibration scores, for choosing the rule
            row[f"f1_p{q:g}"] = _metrics(truth, scores, scores > np.percentile(calibration, q))["f1"]
        yield row


def _baseline_rows(readings: pd.DataFrame, n_train: int, sensors: list[str],
                   baselines: Mapping[str, Callable[[int], Baseline]], fit: str, seed: int) -> Iterator[dict]:
    train = readings.iloc[:n_train]
    if fit == "normal":
        train = train[train[ADBENCH_LABEL] <= 0]
    scaler = StandardScaler().fit(train[sensors].to_numpy(np.float64), sensors)
    X_train = scaler.transform(train[sensors].to_numpy(np.float64))
    X_test = scaler.transform(readings[sensors].to_numpy(np.float64)[n_train:])
    truth = readings[ADBENCH_LABEL].to_numpy()[n_train:] > 0
    for name, make in baselines.items():
        started = time.perf_counter()
        model = make(seed)
        model.fit(X_train)
        seconds = time.perf_counter() - started
        scores = np.asarray(model.decision_function(X_test), dtype=np.float64)
        flags = scores > float(model.threshold_)
        yield {"detector": name, "family": "pyod", "fit_s": seconds, **_metrics(truth, scores, flags)}


def run_adbench(data_dir: str | Path, settings: AdbenchSettings | None = None, *, work_dir: Path | None = None,
                progress: Callable[[str], None] = _quiet, out: Path | None = None,
                baselines: Mapping[str, Callable[[int], Baseline]] | None = None) -> AdbenchResult:
    """ADBench's protocol on the `.npz` sets of `data_dir` (see the module docstring).
    `baselines`: name -> make(seed) of every classic detector named in `settings.baselines`
    (flows.baselines makes PyOD's); `out`: a CSV file that gets every row as soon as its set
    is done."""
    settings = (settings or AdbenchSettings()).validate()
    baselines = dict(baselines or {})
    missing = [b for b in settings.baselines if b not in baselines]
    if missing:
        raise BenchSettingError(f"baselines {missing} named in the settings but not given; expected a maker for "
                                f"each of {list(settings.baselines)}")
    baselines = {name: baselines[name] for name in settings.baselines}
    files = adbench_files(data_dir, settings.sets)
    started = time.perf_counter()
    rows = []
    with _home(work_dir) as home:
        for i, (path, name) in enumerate(files):
            X, y = load_adbench(path)
            stream = f"adbench-{name}"
            sensors = adbench_sensors(X.shape[1])
            for seed in settings.seeds:
                progress(f"{name} ({i + 1}/{len(files)}), seed {seed}")
                train, test = adbench_split(y, seed, settings.test_fraction)
                readings = _ingest_split(home, stream, name, seed, X, y, train, test)
                for fit in settings.fits:
                    base = {"fit": fit, "set": name, "seed": seed, "n_train": len(train), "n_test": len(test)}
                    if settings.kinds:
                        rows += [{**base, **r} for r in
                                 _aemon_rows(home, stream, readings, len(train), sensors, settings, fit, seed)]
                    rows += [{**base, **r} for r in
                             _baseline_rows(readings, len(train), sensors, baselines, fit, seed)]
            if out is not None:
                pd.DataFrame(rows).to_csv(out, index=False)
    return AdbenchResult(pd.DataFrame(rows), settings, time.perf_counter() - started)


def log_adbench(tracking_uri: str, artifact_root: str | None, data_dir: str | Path, result: AdbenchResult) -> str:
    """One MLflow run (experiment `bench-adbench`) with a child run per setting and detector."""
    rows = []
    for fit in result.settings.fits:
        summary = result.summary(fit)
        for detector, values in summary.iterrows():
            rows.append({"detector": f"{detector} ({fit})", **values.to_dict()})
    return log_benchmark(tracking_uri, artifact_root, "adbench", str(data_dir),
                         {**result.settings.to_params(), "sets": result.rows["set"].nunique()}, rows, result.seconds)


def choose_out_of_fold(scores: pd.DataFrame, folds: int = 3, seed: int = 0) -> pd.DataFrame:
    """Leave-some-sets-out choice among candidate configurations.

    `scores`: sets x candidates (a metric, higher is better). The sets are dealt into `folds`
    groups at random; for each group, the candidate with the best mean over the *other* sets
    is chosen and its value on the group's sets is kept. Returns one row per set: its fold,
    the candidate chosen without it, and that candidate's value on it (the out-of-fold
    figure, never tuned on the set it is reported on)."""
    if folds < 2 or folds > len(scores):
        raise BenchSettingError(f"folds={folds}, expected 2 ... {len(scores)} (the number of sets)")
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(scores), dtype=int)
    fold_of[rng.permutation(len(scores))] = np.arange(len(scores)) % folds
    rows = []
    for k in range(folds):
        held = fold_of == k
        chosen = str(scores[~held].mean().idxmax())
        for name in scores.index[held]:
            rows.append({"set": name, "fold": k, "chosen": chosen, "value": float(scores.loc[name, chosen])})
    return pd.DataFrame(rows).set_index("set").loc[scores.index]
