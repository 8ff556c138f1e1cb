"""Detection quality on the synthetic pump stream across seeds.

Runs the library path of the demo in memory (no Prefect, MLflow or DuckDB): train each
detector kind on the clean first part with a stream's defaults (the same library defaults
the configuration starts from: window, threshold rule, training split, alert rule and
STREAM_DETECTOR_DEFAULTS), score everything,
merge flagged windows into incidents, match them with the injected faults, and mark the
kind the promotion gate (no labels) would make champion. Prints one line per seed and
kind and the means, so a change to a detector, the threshold, the alert rule or the gate
can be judged on more than the one seed the demo shows.

    .venv/bin/python bench/synthetic_seeds.py --days 14 --assets 3 --seeds 7 8 9 [--kinds mlp_ae vae]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd

from aemodels.detector import detector_kinds, param_defaults
from aemodels.thresholds import ThresholdRule
from features.synthetic import SENSORS, SyntheticSpec, generate_stream
from features.windows import WindowSpec
from monitoring.alerting.incidents import IncidentRule, merge_incidents
from monitoring.evaluation.labeled import evaluate_incidents
from monitoring.models.defaults import STREAM_DETECTOR_DEFAULTS, TrainingSplit
from monitoring.models.fitting import train_bundle
from monitoring.models.gate import Contender, decide


def run(seed: int, days: float, assets: int, kinds: list[str], extra: dict | None = None) -> list[dict]:
    spec = SyntheticSpec(n_assets=assets, days=days, seed=seed)
    data = generate_stream(spec)
    readings = data.readings
    t0, t1 = readings["timestamp"].min(), readings["timestamp"].max()
    clean_end = t0 + (t1 - t0) * spec.fault_start_fraction - pd.Timedelta(seconds=spec.interval_s)
    split = TrainingSplit()
    faulty = None
    rows: list[dict] = []
    for kind in kinds:
        started = time.perf_counter()
        stream_defaults = {k: v for k, v in STREAM_DETECTOR_DEFAULTS.items() if k in param_defaults(kind)}
        trained = train_bundle(
            readings[readings["timestamp"] <= clean_end], stream="pumps", sensors=list(SENSORS), spec=WindowSpec(),
            kind=kind, detector_params={**stream_defaults, **(extra or {})}, rule=ThresholdRule(),
            label_columns=["label"], val_fraction=split.val_fraction,
            holdout_fraction=split.holdout_fraction, train_stride=split.stride,
        )
        train_s = time.perf_counter() - started
        scored = trained.bundle.score_readings(readings[trained.bundle.input_columns()])
        incidents = merge_incidents(scored[scored["is_anomaly"]], IncidentRule())
        ev = evaluate_incidents(incidents, data.faults)
        late = (scored["window_start"] > clean_end).to_numpy()
        if faulty is None:  # windows overlapping an injected fault (the same windows for every kind)
            faulty = np.zeros(len(scored), dtype=bool)
            for f in data.faults.itertuples():
                faulty |= ((scored["asset"] == f.asset) & (scored["window_start"] <= f.end)
                           & (scored["window_end"] >= f.start)).to_numpy()
        rows.append({
            "seed": seed, "kind": kind, "precision": ev.precision, "recall": ev.recall, "incidents": ev.n_incidents,
            "val_far": trained.evaluation.metrics["far"],
            "false_window_rate": float(scored.loc[late & ~faulty, "is_anomaly"].mean()),
            "missed": ",".join(ev.faults.loc[~ev.faults["found"], "kind"]), "train_s": train_s,
            "contender": Contender(len(rows) + 1, kind, trained.evaluation.metrics, trained.val_loss),
        })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=14.0)
    parser.add_argument("--assets", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 8, 9])
    parser.add_argument("--kinds", nargs="+", default=list(detector_kinds()))
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="detector parameters for every kind, a JSON value each (error_scaling=none)")
    args = parser.parse_args()
    extra = {}
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            extra[key] = json.loads(value)
        except json.JSONDecodeError:
            extra[key] = value
    rows = [row for seed in args.seeds for row in run(seed, args.days, args.assets, args.kinds, extra)]
    table = pd.DataFrame(rows)
    table["gate"] = ""
    for _, group in table.groupby("seed"):  # the kind the promotion gate makes champion
        pick = decide(list(group["contender"]), champion=None, labeled=False).nominee.kind
        table.loc[group.index[group["kind"] == pick], "gate"] = "champion"
    print(table.drop(columns=["contender"]).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    means = table.groupby("kind", sort=False)[["precision", "recall", "val_far", "false_window_rate"]].mean()
    picked = table[table["gate"] == "champion"]
    print("\nmean over seeds")
    print(means.to_string(float_format=lambda v: f"{v:.3f}"))
    print(f"the gate's champions: precision {picked['precision'].mean():.3f}, recall {picked['recall'].mean():.3f}")


if __name__ == "__main__":
    main()
