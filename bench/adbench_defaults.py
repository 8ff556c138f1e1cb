"""Choosing the tabular defaults out-of-fold on ADBench's classical sets (leave-some-sets-out).

Every candidate setting of the detectors is run with `monitoring.evaluation.adbench` (aemon's
ingest, training and scoring; the `normal` fit; no baselines), giving each (candidate, kind)
a ROC AUC per set. The sets are dealt into folds; for each fold the configuration with the
best mean ROC AUC on the *other* sets is chosen and reported on the fold's sets, and the
threshold percentile with the best mean F1 on the other sets likewise. So every reported
figure comes from a choice made without the set it is measured on. The default written into
`monitoring.models.fitting` is the choice on all sets; the out-of-fold figures are what it is
expected to give on sets it has not seen.

    .venv/bin/python bench/adbench_defaults.py --data ../shared/data/adbench --seeds 0 --out /tmp/adbench-grid.csv
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import pandas as pd

from aemodels.detector import DEFAULT_KINDS
from monitoring.evaluation.adbench import F1_PERCENTILES, AdbenchSettings, choose_out_of_fold, run_adbench

# Candidates: detector settings over the stream defaults, each for the autoencoders (DEFAULT_KINDS)
# unless it names its `kinds`.
CANDIDATES: dict[str, dict] = {
    # the kinds without gradient training: knn with 5 or 10 neighbours, pca by Q or Q + T²
    "knn5": {"kinds": ("knn",), "error_scaling": "sensor", "n_neighbors": 5},
    "knn10": {"kinds": ("knn",), "error_scaling": "sensor", "n_neighbors": 10},
    "knn5-none": {"kinds": ("knn",), "error_scaling": "none", "n_neighbors": 5},
    "knn10-none": {"kinds": ("knn",), "error_scaling": "none", "n_neighbors": 10},
    "pca-q": {"kinds": ("pca",), "error_scaling": "sensor", "statistic": "q"},
    "pca-combined": {"kinds": ("pca",), "error_scaling": "sensor", "statistic": "combined"},
    "pca-q-none": {"kinds": ("pca",), "error_scaling": "none", "statistic": "q"},
    "pca-combined-0.8": {"kinds": ("pca",), "error_scaling": "sensor", "statistic": "combined",
                         "explained_variance": 0.8},
    "sensor": {"error_scaling": "sensor"},
    "none": {"error_scaling": "none"},
    "narrow": {"error_scaling": "sensor", "latent": 2},
    "narrow-none": {"error_scaling": "none", "latent": 2},
    # regularised as PyOD's AutoEncoder is (dropout 0.2), or trained shorter (it stops at 10 epochs)
    "dropout": {"error_scaling": "sensor", "dropout": 0.2},
    "short": {"error_scaling": "sensor", "epochs": 15},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/adbench")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--candidates", default=",".join(CANDIDATES))
    parser.add_argument("--out", type=Path, help="CSV of every row (appended per candidate); reused when present")
    parser.add_argument("--against", type=Path,
                        help="rows CSV of `aemon bench adbench --fits normal --out FILE` (same seeds): the "
                             "out-of-fold figures ranked among its PyOD baselines, per set and on average")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    seeds = tuple(int(s) for s in args.seeds.split(","))
    done = pd.read_csv(args.out) if args.out and args.out.exists() else pd.DataFrame()
    frames = [done] if len(done) else []
    for name in args.candidates.split(","):
        if len(done) and name in set(done["candidate"]):
            continue
        started = time.perf_counter()
        base = AdbenchSettings()
        params = dict(CANDIDATES[name])
        kinds = tuple(params.pop("kinds", DEFAULT_KINDS))
        settings = AdbenchSettings(seeds=seeds, fits=("normal",), baselines=(), kinds=kinds,
                                   detector_params={**base.detector_params, **params})
        def progress(message: str, candidate: str = name) -> None:
            print(f"  {candidate}: {message}", flush=True)

        result = run_adbench(args.data, settings, progress=progress)
        frames.append(result.rows.assign(candidate=name))
        print(f"{name}: {time.perf_counter() - started:.0f} s", flush=True)
        if args.out:
            pd.concat(frames).to_csv(args.out, index=False)
    rows = pd.concat(frames)
    rows["config"] = rows["candidate"] + "/" + rows["detector"]
    auc = rows.pivot_table(index="set", columns="config", values="roc_auc", aggfunc="mean", sort=False)
    pd.set_option("display.width", 200)
    print("\nROC AUC per set (mean over seeds), every configuration:")
    print(auc.round(3).to_string())
    print("\nmean ROC AUC over all sets:")
    print(auc.mean().sort_values(ascending=False).round(4).to_string())

    chosen = choose_out_of_fold(auc, folds=args.folds)
    print(f"\nout-of-fold choice of the configuration ({args.folds} folds, by mean ROC AUC on the other sets):")
    print(chosen.round(3).to_string())
    print(f"out-of-fold mean ROC AUC: {chosen['value'].mean():.4f}")

    # the threshold percentile, out-of-fold, for the configuration chosen on each fold's other sets
    f1_rows = []
    for fold, group in chosen.groupby("fold"):
        config = group["chosen"].iloc[0]
        own = rows[rows["config"] == config]
        per_set = own.groupby("set", sort=False)[[f"f1_p{q:g}" for q in F1_PERCENTILES] + ["best_f1"]].mean()
        others = per_set.drop(index=group.index)
        best = others.drop(columns="best_f1").mean().idxmax()
        for name in group.index:
            f1_rows.append({"set": name, "fold": fold, "config": config, "percentile": best,
                            "f1": per_set.loc[name, best], "best_f1": per_set.loc[name, "best_f1"]})
    f1 = pd.DataFrame(f1_rows).set_index("set")
    print("\nout-of-fold threshold percentile (by mean F1 on the other sets):")
    print(f1.round(3).to_string())
    print(f"out-of-fold mean F1 {f1['f1'].mean():.4f}, best F1 any threshold {f1['best_f1'].mean():.4f}, "
          f"gap {(f1['best_f1'] - f1['f1']).mean():.4f}")

    if args.against:
        against = pd.read_csv(args.against)
        against = against[(against["fit"] == "normal") & (against["family"] == "pyod")]
        base_auc = against.pivot_table(index="set", columns="detector", values="roc_auc", aggfunc="mean").loc[auc.index]
        table = base_auc.assign(aemon_oof=chosen["value"])
        rank = table.rank(axis=1, ascending=False, method="average")
        print("\nout-of-fold aemon default among the PyOD baselines (ROC AUC, same splits):")
        print(pd.DataFrame({"mean ROC AUC": table.mean(), "avg rank": rank.mean()}).sort_values("avg rank")
              .round(3).to_string())
        base_f1 = against.groupby("detector")[["f1", "best_f1"]].mean()
        print("baselines' F1 at PyOD's own threshold and the best F1:")
        print(base_f1.round(3).to_string())

    overall = str(auc.mean().idxmax())
    own = rows[rows["config"] == overall].groupby("set")[[f"f1_p{q:g}" for q in F1_PERCENTILES]].mean().mean()
    print(json.dumps({"default_on_all_sets": overall, "percentile_on_all_sets": str(own.idxmax()),
                      "candidate_settings": CANDIDATES[overall.split("/")[0]]}))


if __name__ == "__main__":
    main()
