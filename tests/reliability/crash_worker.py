"""The processes the crash trials kill: a fork server that imports the library once and,
per request, forks a child running one step of a flow (the same library calls, in the same
order, as flows/ingest.py, flows/train.py, flows/score.py and flows/drift.py, without
Prefect), optionally SIGKILLs it at a given moment, and reports how it ended.

Run as `python -m tests.reliability.crash_worker`; requests are JSON lines on stdin, replies
JSON lines on stdout:

    {"step": "ingest" | "train" | "score" | "drift" | "inspect", "config": <aemon.toml>,
     "args": {...}, "kill": null | {"phase": <phase>, "delay": <seconds after it began>}}
    -> {"pid": ..., "killed": bool, "exit": <code or -signal>, "marks": {phase: seconds}}

A child reports the start of each phase of its step (`PHASES`) and `done` after its last
write. The server never opens a store itself, so every child starts with nothing cached:
a killed child is a process that died, not a thread or a simulated exception. Forking
from a server that has imported torch, MLflow and DuckDB makes a trial cost the step's own
time instead of an interpreter start (about 8 s on 2 cores)."""
from __future__ import annotations

import json
import os
import pickle
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from flows.config import detector_params, load_config
from monitoring.alerting import scoring
from monitoring.evaluation import stream_drift
from monitoring.models import fitting, promotion, registry
from monitoring.models.gate import Contender, decide
from monitoring.store import data_quality, ingestion, readings, results

STREAM = "pumps"
# The phases each step reports, in order; a trial's kill moment is counted from one of them.
PHASES = {
    "ingest": ["ingest"],
    "train": ["prepare", "fit", "register", "gate"],
    "score": ["score"],
    "drift": ["check"],
    "inspect": ["inspect"],
}

Mark = Callable[[str], None]


def ingest(config_path: str, mark: Mark, args: dict) -> None:
    """flows/ingest.py: scan the inbox, ingest every pending file."""
    mark("ingest")
    config = load_config(config_path)
    schema = config.stream(STREAM).stream_schema()
    scan = ingestion.scan_inbox(config.warehouse, STREAM, config.inbox(STREAM))
    for path in scan.pending:
        ingestion.ingest_file(config.warehouse, STREAM, schema, path)


def train(config_path: str, mark: Mark, args: dict) -> None:
    """flows/train.py: readings -> quality report -> training data -> fits (one after the
    other here; the flow runs them in a process pool) -> registry and gate."""
    mark("prepare")
    config = load_config(config_path)
    settings = config.stream(STREAM)
    start = settings.train.start
    end = pd.Timestamp(args["train_end"]) if args.get("train_end") else settings.train.end
    labels = list(settings.label_columns)
    frame = readings.load_readings(config.warehouse, STREAM, start=start, end=end)
    sensors = readings.sensor_columns(config.warehouse, STREAM, list(settings.sensors), labels)
    past = results.past_incidents(config.warehouse, STREAM)
    quality = data_quality.assess_stream(config.warehouse, STREAM, sensors, settings.window.interval_s,
                                         settings.window.gap_limit_s)
    data = fitting.prepare_training(
        frame, stream=STREAM, sensors=sensors, spec=settings.window, label_columns=labels, start=start, end=end,
        val_fraction=settings.train.val_fraction, holdout_fraction=settings.train.holdout_fraction,
        train_stride=settings.train.stride, exclusions=settings.exclusions.build(), excluded_intervals=past,
        differenced=list(settings.differenced),
    )
    mark("fit")
    rule = settings.threshold.rule()
    candidates = []
    for kind in settings.detectors.kinds:
        params = detector_params(settings.detectors, kind)
        params.setdefault("progress", False)
        candidates.append(fitting.fit_candidate(data, kind, params, rule))
    # promotion.register_training, its calls one by one so that a kill can aim between the
    # registration of the versions and the gate's decision
    mark("register")
    uri = config.mlflow_tracking_uri
    run_id, versions = registry.log_training(uri, config.mlflow_artifact_root, data, candidates, quality=quality)
    mark("gate")
    contenders = [Contender(versions[c.kind].version, c.kind, c.evaluation.metrics, c.val_loss) for c in candidates]
    labeled = bool(candidates[0].evaluation.anomalous.any())
    decision = decide(contenders, promotion.champion_contender(uri, data.stream, data.evaluation), labeled)
    registry.record_decision(uri, data.stream, decision, run_id)
    registry.resolve_alias(uri, STREAM)


def score(config_path: str, mark: Mark, args: dict) -> None:
    """flows/score.py: the champion scores the new windows (one transaction). Alert delivery
    (Prefect events, webhooks) is the flow's and not part of the trial."""
    mark("score")
    config = load_config(config_path)
    settings = config.stream(STREAM)
    model, version = registry.load_model(config.mlflow_tracking_uri, STREAM)
    scoring.score_model(config.warehouse, STREAM, model, version, exclusions=settings.exclusions.build(),
                        incidents=settings.alerts.rule())


def drift(config_path: str, mark: Mark, args: dict) -> None:
    """flows/drift.py: one drift check (MLflow run + drift_checks rows); retraining, which
    the flow starts as a separate run, is off."""
    mark("check")
    config = load_config(config_path)
    settings = config.stream(STREAM)
    stream_drift.check_stream(config.warehouse, config.mlflow_tracking_uri, config.mlflow_artifact_root, STREAM,
                              settings.drift.rule(), label_columns=list(settings.label_columns),
                              exclusions=settings.exclusions.build(), retrain=False)


def inspect(config_path: str, mark: Mark, args: dict) -> None:
    """Read everything a trial compares (tests/reliability/crash_trials.py) into a pickle at
    args["out"]; reads only."""
    from tests.reliability.crash_trials import read_state

    mark("inspect")
    state = read_state(load_config(config_path), load=bool(args.get("load")))
    Path(args["out"]).write_bytes(pickle.dumps(state))


STEPS = {"ingest": ingest, "train": train, "score": score, "drift": drift, "inspect": inspect}


def _child(request: dict, marks_fd: int) -> None:
    os.dup2(2, 1)  # stdout is the server's reply channel
    start = time.monotonic()

    def mark(phase: str) -> None:
        os.write(marks_fd, f"{phase} {time.monotonic() - start:.6f}\n".encode())

    code = 0
    try:
        STEPS[request["step"]](request["config"], mark, request.get("args") or {})
        mark("done")
    except BaseException:  # the child reports any failure as its exit code; nothing is swallowed
        traceback.print_exc()
        code = 1
    sys.stderr.flush()
    os._exit(code)


def run_request(request: dict) -> dict[str, Any]:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        _child(request, write_fd)
    os.close(write_fd)
    kill = request.get("kill")
    marks: dict[str, float] = {}
    killed = False
    begun = time.monotonic()
    with os.fdopen(read_fd) as pipe:
        for line in pipe:
            phase, at = line.split()
            marks[phase] = float(at)
            if kill and phase == kill["phase"] and not killed:
                time.sleep(kill["delay"])
                os.kill(pid, signal.SIGKILL)  # an exited child is a zombie until reaped: the pid is still its own
                killed = True  # then read on: the marks it wrote before it died (`done` if it finished)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return {"pid": pid, "killed": killed and code == -signal.SIGKILL, "exit": code, "marks": marks,
            "wall_s": time.monotonic() - begun}


def serve() -> None:
    for line in sys.stdin:
        if not line.strip():
            continue
        reply = run_request(json.loads(line))
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    serve()
