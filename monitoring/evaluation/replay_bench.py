"""Replay mode of the SKAB / NAB benchmarks: the monitor users run, fed one file in data time.

The one-shot protocol (monitoring.evaluation.benchmarks) trains once on a file's first rows and
scores the rest with that model. A running stream does more: it scores new readings on a
schedule, retrains on a cron with everything seen so far (past incidents left out), lets the
promotion gate decide whether the new version replaces the champion, and can refit the
champion's threshold. The replay does the same to each file, causally, with the product's own
functions:

- the file is imported once with the normal ingest; scoring reads it up to "now" only
  (score_stream's `until`), chunk by chunk: every `score_every_s` of data time and at every
  retrain or recalibration time, each chunk scored by the champion of that moment, with the
  stream's incident merging (IncidentRule, `merge_gap_s`);
- the first champion is the one-shot model (same training part, same fit), so the two modes
  flag the same windows until the first retrain;
- every `train_every_s` of data time from the file's first reading (the training cron mapped to
  data time), a candidate is trained on the readings up to then (prepare_training with the
  stream's split: val_fraction, holdout_fraction, train stride, max windows; the past
  incidents of the warehouse as excluded intervals, as flows.train does) and fitted
  (fit_candidate); the gate (promotion.training_decision) compares it with the champion on the
  candidate's held-out recent windows and promotes it or keeps the champion. A range too short
  to train (TrainingDataError, WindowError) keeps the champion, as a failed training run does;
- every `recalibrate_every_s` (0: never), the champion's threshold is refitted on the last
  `recalibrate_span_s` of readings (recalibration_data, recalibrated) and goes through the
  gate the same way (promotion.recalibration_decision).

Label columns never reach training, the gate or scoring: only the metrics read them.
Versions are numbered per file (v1: the first champion) and live in memory, not in MLflow: the
gate sees exactly what register_training / register_recalibration give it, without a
registry write per retrain.

Data time vs the stream's schedule: a stream's cadences are wall-clock times of a live feed
(ScheduleSettings.train_cron "0 3 * * 0": weekly; score_every_s 900; recalibrate_days 7;
AlertSettings.merge_gap_minutes 30). Recorded data replays them in its own clock: a cadence
of P seconds fires every P seconds of data time (timestamps of the file). NAB's series are
minutes to an hour apart over weeks to a year, so its defaults are the stream's as they are
(train weekly, recalibration off, merge gap 30 min); SKAB's experiments last about 20 minutes
at 1 Hz, where a weekly cron never fires, so its cadences are seconds (see ReplaySettings).
The scoring chunk changes no result (windows are cut on the absolute grid, chunks end at every
retrain time, and incidents are merged before each retrain); it sets only how often
score_stream runs, i.e. the cost.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from aemodels.errors import ThresholdFitError
from features.errors import WindowError
from monitoring.alerting.incidents import IncidentRule
from monitoring.alerting.scoring import score_stream
from monitoring.errors import BenchSettingError, TrainingDataError
from monitoring.evaluation.benchmarks import (
    BenchRow,
    BenchSettings,
    NabFileScore,
    PointCounts,
    _File,
    _mean_counts,
    _quiet,
    run_nab,
    run_skab,
)
from monitoring.evaluation.labeled import point_alarms
from monitoring.evaluation.metrics import nab_normalised
from monitoring.models.bundle import ModelBundle
from monitoring.models.defaults import TrainingSplit
from monitoring.models.fitting import (
    evaluate_bundle,
    fit_bundle,
    fit_candidate,
    prepare_training,
    recalibrated,
    recalibration_data,
)
from monitoring.models.promotion import contender_of, recalibration_decision, training_decision
from monitoring.models.registry import log_benchmark
from monitoring.store.connection import Warehouse, connect
from monitoring.store.datasets import import_file
from monitoring.store.results import past_incidents, read_scores

WEEK_S = 7 * 24 * 3600.0


@dataclass(frozen=True)
class ReplaySettings:
    """How a replay maps the stream's schedule onto a file's data time (all in seconds of
    data time, from the file's first reading). 0 turns a cadence off."""

    score_every_s: float = 120.0  # one score_stream run per chunk (cost only, see the module doc)
    train_every_s: float = 600.0  # the training cron's period
    recalibrate_every_s: float = 0.0  # the threshold recalibration's period; 0: never
    recalibrate_span_s: float = 300.0  # recalibration reads this much recent data (recalibrate_days)
    merge_gap_s: float = 120.0  # incidents: flagged windows closer than this merge (merge_gap_minutes)
    exclude_past_incidents: bool = True
    # the stream's training split (monitoring.models.defaults.TrainingSplit); 0: none
    val_fraction: float = TrainingSplit.val_fraction
    holdout_fraction: float = TrainingSplit.holdout_fraction
    train_stride: int = TrainingSplit.stride or 1
    max_train_windows: int = TrainingSplit.max_windows or 0

    @classmethod
    def for_dataset(cls, dataset: str) -> ReplaySettings:
        if dataset == "skab":
            # a 20-minute experiment at 1 Hz, 400 s of training part: a retrain every 10 minutes
            # (of 300 s, 600 s, and 300 s with a recalibration every 150 s, the best F1 on
            # valve1; README, "Replay")
            return cls()
        if dataset == "nab":
            # the stream's own schedule in data time: weekly training, 30-minute incident gap;
            # a scoring run per week of data (any chunk gives the same flags; a shorter one costs more)
            return cls(score_every_s=WEEK_S, train_every_s=WEEK_S, recalibrate_span_s=WEEK_S,
                       merge_gap_s=1800.0)
        raise ValueError(f"unknown benchmark {dataset!r}; expected 'skab' or 'nab'")

    def validate(self) -> ReplaySettings:
        checks = [("score_every_s", self.score_every_s > 0, "> 0"),
                  ("train_every_s", self.train_every_s >= 0, ">= 0 (0: never)"),
                  ("recalibrate_every_s", self.recalibrate_every_s >= 0, ">= 0 (0: never)"),
                  ("recalibrate_span_s", self.recalibrate_span_s > 0, "> 0"),
                  ("merge_gap_s", self.merge_gap_s >= 0, ">= 0"),
                  ("val_fraction", 0 < self.val_fraction < 1, "between 0 and 1"),
                  ("holdout_fraction", 0 < self.holdout_fraction < 1, "between 0 and 1"),
                  ("train_stride", self.train_stride >= 1, ">= 1"),
                  ("max_train_windows", self.max_train_windows >= 0, ">= 0 (0: no limit)")]
        for name, ok, expected in checks:
            if not ok:
                raise BenchSettingError(f"replay.{name}={getattr(self, name)!r}, expected {expected}")
        return self

    def to_params(self) -> dict:
        return {f"replay.{k}": v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class ReplayEvent:
    """A retrain or a recalibration at data time `at`, and what the gate made of it."""

    at: pd.Timestamp
    action: str  # "retrain" or "recalibrate"
    version: int  # the candidate's version (0: none, the training failed)
    promoted: bool
    reason: str
    data_end: pd.Timestamp | None = None  # the last reading the candidate learned from
    n_incidents: int = 0  # past incidents passed as excluded intervals
    n_excluded_windows: int = 0  # training-range windows left out for touching one


@dataclass(frozen=True)
class ScoredChunk:
    """One score_stream run: readings up to `until`, scored by `version`."""

    until: pd.Timestamp
    version: int
    windows: int
    last_window_end: pd.Timestamp | None


@dataclass
class FileReplay:
    alarms: np.ndarray
    chunks: list[ScoredChunk] = field(default_factory=list)
    events: list[ReplayEvent] = field(default_factory=list)

    def count(self, action: str, promoted: bool | None = None, failed: bool = False) -> int:
        return sum(1 for e in self.events if e.action == action and (e.version == 0) == failed
                   and (promoted is None or e.promoted == promoted))


def _fire_times(t0: pd.Timestamp, t1: pd.Timestamp, every_s: float) -> list[pd.Timestamp]:
    if every_s <= 0:
        return []
    step = pd.Timedelta(seconds=every_s)
    return list(pd.date_range(t0 + step, t1, freq=step)) if t0 + step <= t1 else []


def replay_file(warehouse: Warehouse, stream: str, file: _File, sensors: list[str], settings: BenchSettings,
                replay: ReplaySettings, kind: str, seed: int) -> FileReplay:
    """Replay one file (its readings already in `stream`'s lake) with one detector kind: the
    point alarms the monitor showed, every scoring run and every retrain / recalibration."""
    readings = file.readings[["timestamp", "asset", *sensors]]  # no label column past this line
    times = readings["timestamp"]
    t0, t1 = times.iloc[0], times.iloc[-1]
    differenced = [s for s in settings.differenced if s in sensors]
    params = settings.params_of(kind, seed)
    model_name = f"replay-{kind}"
    rule = IncidentRule(merge_gap=pd.Timedelta(seconds=replay.merge_gap_s))

    # the first champion: the one-shot model, trained on the file's training part
    first = prepare_training(readings.iloc[:file.train_rows], stream=stream, sensors=sensors, spec=file.spec,
                             val_fraction=settings.val_fraction, holdout_fraction=0.0, train_stride=1,
                             differenced=differenced)
    champion, _ = fit_bundle(first, kind, params, settings.threshold, settings.calibration_folds)
    version, next_version = 1, 2
    born = times.iloc[file.train_rows - 1]

    retrains = set(_fire_times(t0, t1, replay.train_every_s))
    recalibrations = set(_fire_times(t0, t1, replay.recalibrate_every_s))
    boundaries = sorted({*_fire_times(t0, t1, replay.score_every_s), *retrains, *recalibrations, t1})
    out = FileReplay(np.zeros(len(readings), dtype=bool))
    versions = {version}
    for now in boundaries:
        if now < born:  # no model yet: nothing is scored
            continue
        result = score_stream(warehouse, stream, champion.score_readings, file.spec, champion.input_columns(),
                              model_name, version, assets=[file.asset], incidents=rule, until=now,
                              alarm=settings.alarm)
        with connect(warehouse) as con:
            scored = read_scores(con, stream, model_name, version, file.asset)
        out.chunks.append(ScoredChunk(now, version, result.windows_scored,
                                      scored["window_end"].max() if len(scored) else None))
        if now <= born or now == t1:
            continue
        seen = readings[times <= now]
        past = past_incidents(warehouse, stream) if replay.exclude_past_incidents else None
        if now in retrains:
            event, bundle = _retrain(seen, now, stream, file, sensors, settings, replay, kind, params, differenced,
                                     past, champion, version, next_version)
            out.events.append(event)
            next_version += event.version > 0
            if event.promoted and bundle is not None:
                champion, version = bundle, event.version
                versions.add(version)
        if now in recalibrations:
            event, bundle = _recalibrate(seen, now, replay, settings, past, champion, version, next_version)
            out.events.append(event)
            next_version += event.version > 0
            if event.promoted and bundle is not None:
                champion, version = bundle, event.version
                versions.add(version)
    with connect(warehouse) as con:
        scores = pd.concat([read_scores(con, stream, model_name, v, file.asset) for v in sorted(versions)])
    scores = scores.sort_values("window_end", kind="stable")
    flagged = scores["is_anomaly"].to_numpy(dtype=bool) & ~scores["excluded"].to_numpy(dtype=bool)
    out.alarms = point_alarms(times, scores["window_end"], flagged)
    return out


def _retrain(seen: pd.DataFrame, now: pd.Timestamp, stream: str, file: _File, sensors: list[str],
             settings: BenchSettings, replay: ReplaySettings, kind: str, params: dict, differenced: list[str],
             past: pd.DataFrame | None, champion: ModelBundle, version: int,
             candidate_version: int) -> tuple[ReplayEvent, ModelBundle | None]:
    """flows.train's training on the readings seen by `now`, then the gate against the champion."""
    try:
        data = prepare_training(seen, stream=stream, sensors=sensors, spec=file.spec, end=now,
                                val_fraction=replay.val_fraction, holdout_fraction=replay.holdout_fraction,
                                train_stride=replay.train_stride, excluded_intervals=past, differenced=differenced,
                                max_train_windows=replay.max_train_windows or None)
        candidate = fit_candidate(data, kind, params, settings.threshold, calibration_folds=settings.calibration_folds)
        decision = training_decision([candidate], {kind: candidate_version},
                                     contender_of(champion, version, data.evaluation))
    except (TrainingDataError, WindowError, ThresholdFitError) as exc:  # as a failed run: the champion stays
        return ReplayEvent(now, "retrain", 0, False, str(exc)), None
    return ReplayEvent(now, "retrain", candidate_version, decision.promoted, decision.reason, data.end,
                       0 if past is None else len(past), int(data.params["train.n_windows_excluded"])), \
        candidate.bundle


def _recalibrate(seen: pd.DataFrame, now: pd.Timestamp, replay: ReplaySettings, settings: BenchSettings,
                 past: pd.DataFrame | None, champion: ModelBundle, version: int,
                 candidate_version: int) -> tuple[ReplayEvent, ModelBundle | None]:
    """flows.train's recalibration on the last `recalibrate_span_s` seen by `now`, then the gate."""
    recent = seen[seen["timestamp"] > now - pd.Timedelta(seconds=replay.recalibrate_span_s)]
    try:
        calibration, evaluation = recalibration_data(champion, recent, holdout_fraction=replay.holdout_fraction,
                                                     stride=replay.train_stride, excluded_intervals=past)
        bundle = recalibrated(champion, calibration, settings.threshold)
        decision = recalibration_decision(bundle, evaluate_bundle(bundle, evaluation), candidate_version,
                                          contender_of(champion, version, evaluation))
    except (TrainingDataError, WindowError, ThresholdFitError) as exc:  # as a failed run: the champion stays
        return ReplayEvent(now, "recalibrate", 0, False, str(exc)), None
    return ReplayEvent(now, "recalibrate", candidate_version, decision.promoted, decision.reason,
                       pd.Timestamp(recent["timestamp"].max()), 0 if past is None else len(past)), bundle


Importer = Callable[[Warehouse, str, _File], None]  # (warehouse, stream, file): the asset's file into the lake


def replay_run(replay: ReplaySettings, importer: Importer, files: list[_File], warehouse: Warehouse, stream: str,
               sensors: list[str], label_columns: list[str], settings: BenchSettings,
               judge: Callable[[_File, np.ndarray], tuple[PointCounts | None, NabFileScore]],
               progress: Callable[[str], None]) -> list[BenchRow]:
    """A benchmarks.Runner: every file replayed per kind and seed, each (kind, seed) in a
    stream of its own (`<stream>-replay-<kind>-<seed>`: its own watermarks and incidents).
    No ensemble: a stream has one champion."""
    rows = []
    scored_rows = sum(len(f.readings) - f.train_rows for f in files)
    for kind in settings.kinds:
        counts: list[PointCounts] = []
        nab: list[NabFileScore] = []
        per_file: list[dict] = []
        untrained: list[str] = []
        for seed in settings.seeds:
            name = f"{stream}-replay-{kind}-{seed}"
            for i, file in enumerate(files):
                progress(f"replay {kind} seed {seed}: {file.asset} ({i + 1}/{len(files)})")
                importer(warehouse, name, file)
                try:
                    result = replay_file(warehouse, name, file, sensors, settings, replay, kind, seed)
                except (TrainingDataError, WindowError) as exc:  # the first model: as the one-shot run
                    progress(f"{file.asset}: not trained ({exc})")
                    untrained.append(f"{file.asset} (seed {seed}): {exc}")
                    result = FileReplay(np.zeros(len(file.readings), dtype=bool))
                except ThresholdFitError as exc:  # as the one-shot run: a setting that cannot work here
                    raise BenchSettingError(f"threshold on {file.asset} (seed {seed}): {exc}") from None
                pointwise, nab_score = judge(file, result.alarms)
                if pointwise is not None:
                    counts.append(pointwise)
                nab.append(nab_score)
                per_file.append({
                    "seed": seed, "asset": file.asset, "alarm_rows": int(result.alarms[file.train_rows:].sum()),
                    "chunks": len(result.chunks),
                    "retrains": result.count("retrain") + result.count("retrain", failed=True),
                    "retrains_promoted": result.count("retrain", True),
                    "retrains_failed": result.count("retrain", failed=True),
                    "recalibrations": result.count("recalibrate") + result.count("recalibrate", failed=True),
                    "recalibrations_promoted": result.count("recalibrate", True),
                    **({f"point_{k}": getattr(pointwise, k) for k in ("tp", "fp", "fn", "tn")} if pointwise else {}),
                    "nab_tp": nab_score.tp, "nab_fp": nab_score.fp, "nab_fn": nab_score.fn,
                    "nab_raw_standard": nab_score.raw["standard"]})
        pooled = sum(counts[1:], counts[0]) if counts else None
        if pooled is not None and len(settings.seeds) > 1:
            pooled = _mean_counts(pooled, len(settings.seeds))
        rows.append(BenchRow(kind, len(files), scored_rows, nab_normalised(nab), pooled, pd.DataFrame(per_file),
                             tuple(untrained)))
    return rows


def replay_summary(row: BenchRow) -> dict[str, int]:
    """Retrains, promotions, failures and recalibrations of a replayed detector, summed over
    files and seeds."""
    frame = row.per_file
    keys = ("retrains", "retrains_promoted", "retrains_failed", "recalibrations", "recalibrations_promoted")
    return {k: int(frame[k].sum()) if frame is not None and k in frame else 0 for k in keys}


def _importer(dataset: str, data_dir: str | Path) -> Importer:
    """The normal import of an asset's file (datasets.import_file), into any stream."""

    def load(warehouse: Warehouse, stream: str, file: _File) -> None:
        if file.source is None:
            raise ValueError(f"{file.asset}: no source file to replay")
        import_file(warehouse, dataset, file.source, stream=stream, data_dir=None if dataset == "skab" else data_dir)

    return load


def run_replay(dataset: str, data_dir: str | Path, settings: BenchSettings | None = None,
               replay: ReplaySettings | None = None, *, work_dir: Path | None = None,
               progress: Callable[[str], None] = _quiet) -> list[BenchRow]:
    """`aemon bench skab|nab --mode replay`: the benchmark's files, protocol and metrics, each
    file replayed in data time (see the module doc)."""
    replay = (replay or ReplaySettings.for_dataset(dataset)).validate()
    if dataset == "skab":
        return run_skab(data_dir, settings, work_dir=work_dir, progress=progress,
                        runner=partial(replay_run, replay, _importer(dataset, data_dir)))
    if dataset == "nab":
        return run_nab(data_dir, settings, work_dir=work_dir, progress=progress,
                       runner=partial(replay_run, replay, _importer(dataset, data_dir)))
    raise ValueError(f"unknown benchmark {dataset!r}; expected 'skab' or 'nab'")


def log_replay(tracking_uri: str, artifact_root: str | None, dataset: str, data_dir: str | Path,
               settings: BenchSettings, replay: ReplaySettings, rows: list[BenchRow], seconds: float) -> str:
    """As benchmarks.log_bench, in experiment `bench-<dataset>-replay`, with the replay's
    settings and each detector's retrain / promotion counts."""
    return log_benchmark(tracking_uri, artifact_root, f"{dataset}-replay", str(data_dir),
                         {**settings.to_params(), **replay.to_params(), "files": rows[0].files if rows else 0},
                         [{**row.to_dict(), **replay_summary(row)} for row in rows], seconds)
