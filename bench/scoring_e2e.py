"""End-to-end scoring against the forward pass of the same model, and the incident refresh as history grows.

One run measures, on the synthetic pump stream (window 30 x 7 sensors, stride 10, one torch
thread as production scores):

(a) forward windows/s: the champion's detector scoring the already-windowed, scaled float32
    windows (`detector.score(X)`), no warehouse;
(b) end-to-end windows/s: `score_stream` from the store to the store over the same readings:
    read the readings, cut and scale the windows, score them with contributions, write
    scores, anomalies and watermarks and merge the incidents, in one scoring run.

(b) / (a) is the share of the forward pass the scoring path keeps (goal >= 50 %), at the
demo's size (3 pumps x 14 days, about 6k windows) and ten times it (30 pumps). Each
end-to-end repeat scores a fresh warehouse (ingested before the clock starts) in a process
that has opened it, as a scheduled `aemon serve` does; best of --repeats. The column
"with contributions" is the pass scoring really makes (`score_with_contributions`).

What bounds the share at these sizes is fixed cost, not windows: a DuckLake statement reads
its snapshot and file lists from the catalog (about 8-15 ms each here, whatever the rows),
a run makes about fifteen (reads, three inserts, the incident refresh) and a commit; the
MLP's forward pass over the demo's 6k windows takes under 10 ms.

(b0) the same end-to-end run with the model's outputs replayed: the detector's scores and
    contributions for those windows computed once beforehand and handed back at no cost, so
    the run is the store, the windows and the incidents alone. (b) minus (b0) is what the
    model costs inside a run; (b0) is the floor any model's scoring run stands on.

(c) incident refresh as history grows: a fixed day of new readings scored (with incidents)
after 1x and 10x history already scored (--history-factors), in one run or in runs of
--days-per-run days, optionally followed by the warehouse upkeep (--upkeep); the run's time
and the flagged windows its incident refresh read should stay flat. With --alarm adaptive
every run also reads the assets' score history (from the sums the run before stored).

    .venv/bin/python bench/scoring_e2e.py
    .venv/bin/python bench/scoring_e2e.py --repeats 3 --history-days 14
    .venv/bin/python bench/scoring_e2e.py --sizes 3 --history-factors 1 10 50 --days-per-run 7 --upkeep --alarm adaptive
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from features.readers import StreamSchema
from features.synthetic import SENSORS, SyntheticSpec, generate_stream
from features.windows import WindowSpec
from monitoring.alerting.adaptive import MODES, AlarmRule
from monitoring.alerting.incidents import IncidentRule
from monitoring.alerting.scoring import ScoreResult, score_stream
from monitoring.models.bundle import ModelBundle
from monitoring.models.fitting import train_bundle
from monitoring.store.connection import Warehouse, close_all, connect
from monitoring.store.incident_records import read_incidents
from monitoring.store.ingestion import ingest_file
from monitoring.store.maintenance import maintain
from monitoring.store.readings import read_readings

STREAM = "pumps"
SPEC = WindowSpec(size=30, stride=10, interval_s=60.0)
SCHEMA = StreamSchema(sensors=tuple(SENSORS), label_columns=("label",))
GOAL = 0.5


def train(readings: pd.DataFrame) -> ModelBundle:
    """A briefly trained MLP autoencoder (the demo's default kind), one torch thread."""
    params = {"epochs": 3, "n_threads": 1, "progress": False}
    return train_bundle(readings, stream=STREAM, sensors=list(SENSORS), spec=SPEC, detector_params=params,
                        label_columns=["label"], train_stride=SPEC.stride).bundle


def fresh_warehouse(root: Path, csv: Path) -> Warehouse:
    """A new warehouse holding the readings of `csv`."""
    home = Path(tempfile.mkdtemp(dir=root))
    warehouse = Warehouse.at(home)
    result = ingest_file(warehouse, STREAM, SCHEMA, csv)
    assert result.status == "ok", result
    return warehouse


ALARM = AlarmRule()  # --alarm


def score(warehouse: Warehouse, bundle: ModelBundle, until: pd.Timestamp | None = None) -> ScoreResult:
    return score_stream(warehouse, STREAM, bundle.score_readings, bundle.spec, bundle.input_columns(),
                        f"{STREAM}-detector", 1, incidents=IncidentRule(), alarm=ALARM, until=until)


def forward_rate(bundle: ModelBundle, readings: pd.DataFrame, repeats: int) -> tuple[int, float, float]:
    """(windows, best windows/s of the detector's scoring of the windows alone, the same
    with per-sensor contributions)."""
    windows, _ = bundle.windows(readings)
    X = windows.X
    bundle.detector.score(X[:256])  # warm-up
    best = min(_timed(lambda: bundle.detector.score(X)) for _ in range(max(repeats, 3)))
    both = min(_timed(lambda: bundle.detector.score_with_contributions(X)) for _ in range(max(repeats, 3)))
    return len(X), len(X) / best, len(X) / both


class Replayed:
    """The detector with its `score_with_contributions` answered from a cache: the first call
    for a batch of windows runs the real model, later calls with the same windows return
    its outputs (checked by shape and a sample of values). Everything else is the detector's."""

    def __init__(self, detector):
        self._detector = detector
        self._cache: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}

    def __getattr__(self, name):
        return getattr(self._detector, name)

    def score_with_contributions(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        key = (X.shape, float(X[:: max(1, len(X) // 64)].sum()))
        if key not in self._cache:
            self._cache[key] = self._detector.score_with_contributions(X)
        return self._cache[key]


def _timed(work) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def end_to_end(root: Path, bundle: ModelBundle, frame: pd.DataFrame, repeats: int) -> tuple[int, float, float]:
    """(windows scored, best windows/s, best seconds) of score_stream over fresh warehouses."""
    csv = root / f"stream-{frame['asset'].nunique()}.csv"
    frame.to_csv(csv, index=False)
    best, windows = float("inf"), 0
    for _ in range(repeats):
        warehouse = fresh_warehouse(root, csv)
        with connect(warehouse):  # the process has the warehouse open, as a scheduled run's has
            pass
        started = time.perf_counter()
        result = score(warehouse, bundle)
        best = min(best, time.perf_counter() - started)
        windows = result.windows_scored
        close_all()
        shutil.rmtree(Path(warehouse.data_path).parent, ignore_errors=True)
    return windows, windows / best, best


def lake_readings(warehouse: Warehouse) -> pd.DataFrame:
    with connect(warehouse) as con:
        return read_readings(con, STREAM)


def history_refresh(root: Path, bundle: ModelBundle, days: float, repeats: int,
                    factors: tuple[int, ...] = (1, 10), days_per_run: float = 0.0,
                    upkeep: bool = False) -> list[dict]:
    """Score a fixed new day after each factor x `days` of scored history (scored in one run, or
    in runs of `days_per_run` days); per size the best run."""
    most = max(factors)
    faults = max(1, round(days * most / 10))  # per kind and asset: faults all along the history
    span = most * days + 1
    start = pd.Timestamp(SyntheticSpec.start)
    if start + pd.Timedelta(days=span) > pd.Timestamp.now():  # readings from the future are quarantined
        start = (pd.Timestamp.now() - pd.Timedelta(days=span + 1)).normalize()
    full = generate_stream(SyntheticSpec(n_assets=3, days=span, seed=7, fault_start_fraction=0.02,
                                         faults_per_kind=faults, start=start.isoformat())).readings
    t0 = full["timestamp"].min()
    cut = t0 + pd.Timedelta(days=most * days)
    chunk = full[full["timestamp"] >= cut]
    chunk_csv = root / "chunk.csv"
    chunk.to_csv(chunk_csv, index=False)
    rows = []
    for factor in factors:
        history = full[(full["timestamp"] >= cut - pd.Timedelta(days=factor * days)) & (full["timestamp"] < cut)]
        history_csv = root / f"history-{factor}.csv"
        history.to_csv(history_csv, index=False)
        best: tuple[float, ScoreResult, int] | None = None
        for _ in range(repeats):
            warehouse = fresh_warehouse(root, history_csv)
            # the history scored in runs of `days_per_run` days each, as a schedule would (or in one)
            step = pd.Timedelta(days=days_per_run)
            ends = [*(pd.date_range(history["timestamp"].min() + step, cut, freq=step, inclusive="left")
                      if days_per_run else []), None]
            runs = [score(warehouse, bundle, until=end) for end in ends]
            if upkeep:  # what the maintain-warehouse flow does on its schedule: files merged, snapshots expired
                close_all()
                maintain(warehouse, 1e-9)
            before = ScoreResult(STREAM, 1, sum(r.windows_scored for r in runs), 0,
                                 sum(r.anomalies_written for r in runs))
            assert ingest_file(warehouse, STREAM, SCHEMA, chunk_csv).status == "ok"
            started = time.perf_counter()
            result = score(warehouse, bundle)
            took = time.perf_counter() - started
            if best is None or took < best[0]:
                with connect(warehouse) as con:
                    stored = len(read_incidents(con, STREAM))
                best = (took, result, stored)
            close_all()
            shutil.rmtree(Path(warehouse.data_path).parent, ignore_errors=True)
        assert best is not None
        took, result, stored = best
        rows.append({"history": f"{factor}x ({factor * days:g} days, {before.windows_scored} windows, "
                                f"{before.anomalies_written} flagged, {stored} incidents)",
                     "new windows": result.windows_scored, "run s": took,
                     "flagged windows read": result.flagged_read, "active incidents": result.incidents})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="end-to-end runs per size (best is kept)")
    parser.add_argument("--days", type=float, default=14.0, help="days of readings per pump")
    parser.add_argument("--sizes", type=int, nargs="+", default=[3, 30], help="pumps per size")
    parser.add_argument("--history-days", type=float, default=7.0, help="the 1x history of (c), days")
    parser.add_argument("--history-factors", type=int, nargs="+", default=[1, 10],
                        help="the histories of (c), in multiples of --history-days")
    parser.add_argument("--days-per-run", type=float, default=0.0,
                        help="score the history of (c) in runs of this many days each (default: in one run)")
    parser.add_argument("--upkeep", action="store_true",
                        help="run the warehouse upkeep (merge files, expire snapshots) after the history of (c)")
    parser.add_argument("--alarm", choices=MODES, default="threshold",
                        help="the alarm rule's mode (adaptive: each run also reads the assets' score history)")
    args = parser.parse_args()
    global ALARM
    ALARM = AlarmRule(args.alarm)

    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores; one torch thread; "
          f"alarm {ALARM.mode}")
    big = generate_stream(SyntheticSpec(n_assets=max(args.sizes), days=args.days, seed=7)).readings
    started = time.perf_counter()
    bundle = train(big)
    print(f"trained mlp_ae in {time.perf_counter() - started:.1f} s (3 epochs)\n")

    root = Path(tempfile.mkdtemp(prefix="aemon-scoring-e2e-"))
    try:
        replayed = replace(bundle, detector=cast(Any, Replayed(bundle.detector)))
        print(f"{'pumps':>5} {'windows':>8} {'forward w/s':>12} {'with contributions':>19} {'end-to-end w/s':>15} "
              f"{'run ms':>8} {'share':>6}  {'replayed run ms':>15} {'model in run':>12}  goal >= {GOAL:.0%}")
        for n_assets in args.sizes:
            frame = big[big["asset"].isin(sorted(big["asset"].unique())[:n_assets])].reset_index(drop=True)
            n_forward, forward, with_contributions = forward_rate(bundle, frame, args.repeats)
            n_e2e, e2e, took = end_to_end(root, bundle, frame, args.repeats)
            assert n_e2e == n_forward, (n_e2e, n_forward)
            # the first replayed run fills the cache with the real outputs; the best of the rest is kept
            n_floor, _, floor = end_to_end(root, replayed, frame, max(2, args.repeats) + 1)
            assert n_floor == n_e2e, (n_floor, n_e2e)
            print(f"{n_assets:>5} {n_e2e:>8} {forward:>12,.0f} {with_contributions:>19,.0f} {e2e:>15,.0f} "
                  f"{took * 1e3:>8.0f} {e2e / forward:>6.0%}  {floor * 1e3:>15.0f} "
                  f"{max(0.0, took - floor) / took:>12.0%}")
        factors = sorted(set(args.history_factors))
        print(f"\n(c) a new day scored after {', '.join(f'{f}x' for f in factors)} history (incident refresh included)")
        for row in history_refresh(root, bundle, args.history_days, args.repeats, tuple(factors), args.days_per_run,
                                   args.upkeep):
            print("  " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
        load = os.getloadavg()
        print(f"\nload average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    finally:
        close_all()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
