"""A worker process for the concurrency tests: runs what a flow runs (the same library calls
in the same order as flows/ingest.py, flows/train.py and flows/score.py) without Prefect, so
that several real processes can meet on one warehouse and one MLflow store in a few seconds.

    python concurrency_worker.py CONFIG ingest STREAM
    python concurrency_worker.py CONFIG score STREAM [--until FILE] [--runs N]
    python concurrency_worker.py CONFIG train STREAM [--promote] [--epochs N]

Each prints one JSON line per unit of work on stdout; exit status 0 when all of it succeeded.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def ingest(config, stream: str) -> None:
    from monitoring.store import ingestion

    settings = config.stream(stream)
    schema = settings.stream_schema()
    scan = ingestion.scan_inbox(config.warehouse, stream, config.inbox(stream))
    for path in scan.pending:
        result = ingestion.ingest_file(config.warehouse, stream, schema, path)
        print(json.dumps({"file": path.name, "status": result.status, "accepted": result.rows_accepted,
                          "quarantined": result.rows_quarantined}), flush=True)


def score(config, stream: str, until: Path | None, runs: int) -> None:
    from monitoring.alerting.scoring import score_model
    from monitoring.models import registry

    settings = config.stream(stream)
    done = 0
    while True:
        # read before the run (one more run after it), and only after a first run: a loop
        # that starts after the flag was raised still scores, then once more
        finished = until is not None and done > 0 and until.exists()
        model, version = registry.load_model(config.mlflow_tracking_uri, stream)
        result = score_model(config.warehouse, stream, model, version, exclusions=settings.exclusions.build(),
                             incidents=settings.alerts.rule())
        done += 1
        print(json.dumps({"version": version.version, "scored": result.windows_scored}), flush=True)
        if (until is None and done >= runs) or finished:
            return


def train(config, stream: str, promote: bool, epochs: int) -> None:
    from monitoring.models import fitting, promotion, registry
    from monitoring.store import readings, results

    settings = config.stream(stream)
    frame = readings.load_readings(config.warehouse, stream)
    labels = list(settings.label_columns)
    sensors = readings.sensor_columns(config.warehouse, stream, list(settings.sensors), labels)
    data = fitting.prepare_training(
        frame, stream=stream, sensors=sensors, spec=settings.window, label_columns=labels, start=None, end=None,
        val_fraction=settings.train.val_fraction, holdout_fraction=settings.train.holdout_fraction,
        train_stride=settings.train.stride, exclusions=settings.exclusions.build(),
        excluded_intervals=results.past_incidents(config.warehouse, stream), differenced=list(settings.differenced))
    params = {"epochs": epochs, "hidden": (32,), "latent": 4, "n_threads": 1, "progress": False}
    candidate = fitting.fit_candidate(data, "mlp_ae", params, settings.threshold.rule())
    outcome = promotion.register_training(config.mlflow_tracking_uri, config.mlflow_artifact_root, data,
                                          [candidate])
    version = outcome.versions["mlp_ae"].version
    if promote:
        registry.promote(config.mlflow_tracking_uri, stream, version)
    print(json.dumps({"version": version, "promoted": promote or outcome.decision.promoted}), flush=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("step", choices=["ingest", "score", "train"])
    parser.add_argument("stream")
    parser.add_argument("--until", type=Path)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--promote", action="store_true")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args(argv)
    from flows.config import load_config

    config = load_config(args.config)
    started = time.perf_counter()
    if args.step == "ingest":
        ingest(config, args.stream)
    elif args.step == "score":
        score(config, args.stream, args.until, args.runs)
    else:
        train(config, args.stream, args.promote, args.epochs)
    print(json.dumps({"seconds": round(time.perf_counter() - started, 2)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
