"""How cross-fitted calibration moves the thresholds NAB's bench sets: per file, one detector
kind trained as `aemon bench nab` trains it (the file's probationary rows, NAB's bench
settings), its threshold from the calibration windows alone and cross-fitted in `--folds`
folds (monitoring.models.fitting.cross_fitted_values); the ratio of the two per category.
The files are read as the CSVs hold them (no warehouse), one seed.

    .venv/bin/python bench/calibration_thresholds.py ../shared/data/nab ../shared/data/nab-dev/realTraffic
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from features.importers import nab_files
from features.windows import WindowSpec
from monitoring.evaluation.benchmarks import BenchSettings
from monitoring.evaluation.metrics import nab_probationary_rows
from monitoring.models.fitting import fit_bundle, prepare_training


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", help="NAB-layout folders (a category each)")
    parser.add_argument("--kind", default="mlp_ae")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    settings = BenchSettings.for_dataset("nab")
    params = settings.params_of(args.kind, args.seed)
    started, rows = time.perf_counter(), []
    for folder in args.folders:
        for path, asset in nab_files(folder):
            readings = pd.read_csv(path, parse_dates=["timestamp"]).assign(asset=asset)
            steps = readings["timestamp"].diff().dt.total_seconds()
            step = float(steps[steps > 0].median())  # as the bench: the file's median step
            spec = WindowSpec(size=settings.window, stride=1, interval_s=step,
                              max_gap_s=step * settings.max_gap_intervals)
            data = prepare_training(readings.iloc[:nab_probationary_rows(len(readings))], stream="nab",
                                    sensors=["value"], spec=spec, val_fraction=settings.val_fraction,
                                    holdout_fraction=0.0, train_stride=1)
            plain, _ = fit_bundle(data, args.kind, params, settings.threshold)
            crossed, _ = fit_bundle(data, args.kind, params, settings.threshold, args.folds)
            rows.append({"category": Path(folder).name, "file": asset,
                         "ratio": crossed.detector.threshold_ / plain.detector.threshold_})
    table = pd.DataFrame(rows)
    summary = table.groupby("category")["ratio"].describe()[["count", "25%", "50%", "75%"]]
    print(f"{args.kind}, seed {args.seed}: cross-fitted ({args.folds} folds) / calibration-window threshold")
    print(summary.round(2).to_string())
    print(f"all {len(table)} files: median {table['ratio'].median():.2f}, higher on {int((table['ratio'] > 1).sum())}; "
          f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
