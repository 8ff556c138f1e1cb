"""False-trigger and detection rates of the drift check on the synthetic pump stream.

Per seed: a stream with no faults, an mlp_ae trained on its first `--train-days` with the
stream defaults (the champion), then hourly drift checks (a `--recent-hours` window up to
each hour) over the following days, as the check-drift flow runs them (the library path:
monitoring.evaluation.drift_detection, no Prefect, MLflow or DuckDB). Scenarios:

- stationary: the readings as generated. A drifting check is a false drift; drift holding
  (`hold_checks` drifting checks in a row) is a false trigger of retraining.
- level: from `--shift-day` on, one sensor of every asset shifted by `--level` times its
  reference standard deviation.
- scale: from `--shift-day` on, one sensor's deviations from its reference mean times `--scale`.

For the shifted scenarios it prints the share of checks whose recent window lies wholly
after the shift that drift, and the hours from the shift to drift holding.

    .venv/bin/python bench/drift_rates.py --seeds 0 1 2 3 4 5
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from aemodels.thresholds import ThresholdRule
from features.synthetic import SENSORS, SyntheticSpec, generate_stream
from features.windows import WindowSpec
from monitoring.evaluation.drift_detection import DriftRule, decide, detect_drift, drift_inputs, drift_streak
from monitoring.models.defaults import STREAM_DETECTOR_DEFAULTS, TrainingSplit
from monitoring.models.fitting import train_bundle


def shifted(readings: pd.DataFrame, reference: pd.DataFrame, scenario: str, sensor: str, start: pd.Timestamp,
            level: float, scale: float) -> pd.DataFrame:
    out = readings.copy()
    after = out["timestamp"] >= start
    mean, std = reference[sensor].mean(), reference[sensor].std()
    if scenario == "level":
        out.loc[after, sensor] += level * std
    elif scenario == "scale":
        out.loc[after, sensor] = mean + (out.loc[after, sensor] - mean) * scale
    return out


def run(seed: int, args: argparse.Namespace, rule: DriftRule) -> list[dict]:
    spec = SyntheticSpec(n_assets=args.assets, days=args.days, faults_per_kind=0, seed=seed)
    readings = generate_stream(spec).readings
    t0 = readings["timestamp"].min()
    train_end = t0 + pd.Timedelta(days=args.train_days)
    reference = readings[readings["timestamp"] <= train_end]
    split = TrainingSplit()
    trained = train_bundle(reference, stream="pumps", sensors=list(SENSORS), spec=WindowSpec(), kind="mlp_ae",
                           detector_params={**STREAM_DETECTOR_DEFAULTS, "epochs": args.epochs, "n_threads": 1,
                                            "progress": False},
                           rule=ThresholdRule(), label_columns=["label"], val_fraction=split.val_fraction,
                           holdout_fraction=split.holdout_fraction, train_stride=split.stride)
    shift_at = t0 + pd.Timedelta(days=args.shift_day)
    rows = []
    for scenario in ("stationary", "level", "scale"):
        data = shifted(readings, reference, scenario, args.sensor, shift_at, args.level, args.scale)
        history = pd.DataFrame(columns=["recent_end", "drifted"])
        last_request = None
        first = int((args.train_days + args.recent_hours / 24) * 24) + 1
        for hour in range(first, int(args.days * 24) + 1):
            end = t0 + pd.Timedelta(hours=hour)
            recent = data[(data["timestamp"] > end - pd.Timedelta(hours=rule.recent_hours))
                          & (data["timestamp"] <= end)]
            inputs = drift_inputs(trained.bundle, reference, recent, label_columns=["label"],
                                  holdout_far=trained.evaluation.metrics["far"])
            checked = detect_drift(inputs, rule)
            drifted = bool(checked["drifted"].any())
            decision = decide(drifted, drift_streak(history, drifted, end), rule, retrain=True,
                              since_last_request=None if last_request is None else end - last_request)
            history = pd.concat([pd.DataFrame({"recent_end": [end], "drifted": [drifted]}), history],
                                ignore_index=True)
            if decision.retrain:  # as check_stream does: the streak starts again after a request
                last_request, history = end, history.iloc[:0]
            rows.append({"seed": seed, "scenario": scenario, "end": end, "drifted": drifted,
                         "holds": decision.holds, "retrain": decision.retrain,
                         "after_shift": end - pd.Timedelta(hours=rule.recent_hours) >= shift_at,
                         "hours_since_shift": (end - shift_at).total_seconds() / 3600,
                         "features": ",".join(checked.loc[checked["drifted"], "feature"])})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    parser.add_argument("--assets", type=int, default=3)
    parser.add_argument("--days", type=float, default=12.0)
    parser.add_argument("--train-days", type=float, default=7.0)
    parser.add_argument("--shift-day", type=float, default=9.0)
    parser.add_argument("--recent-hours", type=float, default=DriftRule.recent_hours)
    parser.add_argument("--sensor", default="motor_current")
    parser.add_argument("--level", type=float, default=1.0, help="level shift, in reference standard deviations")
    parser.add_argument("--scale", type=float, default=1.5, help="factor on deviations from the reference mean")
    parser.add_argument("--epochs", type=int, default=60, help="the detector's default: 60")
    parser.add_argument("--psi", type=float, default=DriftRule.psi_threshold)
    args = parser.parse_args()
    rule = DriftRule(recent_hours=args.recent_hours, psi_threshold=args.psi)
    started = time.perf_counter()
    table = pd.DataFrame([row for seed in args.seeds for row in run(seed, args, rule)])
    stationary = table[table["scenario"] == "stationary"]
    per_seed = stationary.groupby("seed").agg(checks=("drifted", "size"), drifting=("drifted", "sum"),
                                              holding=("holds", "sum"), retrainings=("retrain", "sum"))
    print(f"stationary: {len(stationary)} hourly checks over {len(args.seeds)} seeds")
    print(per_seed.to_string())
    print(f"false drift rate per check {stationary['drifted'].mean():.4f}; checks where drift holds "
          f"{stationary['holds'].mean():.4f}; seeds with a false trigger "
          f"{int((per_seed['holding'] > 0).sum())} of {len(per_seed)}; retrainings started (cooldown "
          f"{rule.cooldown_hours:g} h) {int(per_seed['retrainings'].sum())} in "
          f"{len(stationary) / 24:.0f} stream-days of hourly checks")
    blamed = stationary.loc[stationary["drifted"], "features"].str.split(",").explode().value_counts()
    if len(blamed):
        print("features of the false drifts: " + ", ".join(f"{k} {v}" for k, v in blamed.items()))
    for scenario in ("level", "scale"):
        part = table[(table["scenario"] == scenario)]
        after = part[part["after_shift"]]
        delays = [g.loc[g["holds"] & (g["hours_since_shift"] > 0), "hours_since_shift"].min()
                  for _, g in part.groupby("seed")]
        found = [d for d in delays if np.isfinite(d)]
        amount = f"+{args.level:g} sd" if scenario == "level" else f"x{args.scale:g}"
        print(f"{scenario} ({args.sensor} {amount}): detection per check after the shift {after['drifted'].mean():.3f}"
              f"; drift held in {len(found)} of {len(delays)} seeds, median {np.median(found) if found else np.nan:.0f}"
              f" h after the shift")
        features = after.loc[after["drifted"], "features"].str.split(",").explode().value_counts()
        print(f"  features that drifted in those {len(after)} checks: "
              + ", ".join(f"{k} {v}" for k, v in features.items()))
    print(f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
