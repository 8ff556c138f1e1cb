"""The demo: generate -> ingest -> train -> score on the embedded defaults, then compare
the detected incidents with the injected faults.

Training uses the clean first part of the generated history (before the first fault),
the way a monitor is commissioned on known-good data; scoring covers everything.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from features.synthetic import SyntheticSpec, generate_stream
from flows.config import AemonConfig
from flows.ingest import ingest_readings
from flows.score import score_stream
from flows.train import train_detectors
from monitoring.evaluation.labeled import IncidentEvaluation, evaluate_incidents
from monitoring.store.connection import connect
from monitoring.store.incident_records import read_incidents
from monitoring.store.readings import count_readings

DEMO_STREAM = "pumps"


@dataclass(frozen=True)
class DemoResult:
    evaluation: IncidentEvaluation
    incidents: pd.DataFrame
    ingest: list[dict]
    train: dict
    score: dict
    n_rows: int


def write_inbox(config: AemonConfig, spec: SyntheticSpec) -> tuple[list[Path], pd.DataFrame, pd.Timestamp]:
    """Generate the stream and drop it in the inbox as exports would arrive: one file per
    asset, CSV for most, Parquet for the last. Returns (files, faults, end of clean history)."""
    data = generate_stream(spec)
    inbox = config.local_inbox(DEMO_STREAM)
    inbox.mkdir(parents=True, exist_ok=True)
    assets = sorted(data.readings["asset"].unique())
    paths = []
    for i, asset in enumerate(assets):
        part = data.readings[data.readings["asset"] == asset]
        if i == len(assets) - 1:
            path = inbox / f"{asset}.parquet"
            part.to_parquet(path, index=False)
        else:
            path = inbox / f"{asset}.csv"
            part.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%S")
        paths.append(path)
    t0, t1 = data.readings["timestamp"].min(), data.readings["timestamp"].max()
    clean_end = t0 + (t1 - t0) * spec.fault_start_fraction - pd.Timedelta(seconds=spec.interval_s)
    return paths, data.faults, clean_end


def run_demo(
    config: AemonConfig,
    spec: SyntheticSpec,
    config_path: str | None = None,
    step: Callable[[str], None] = lambda name: None,
) -> DemoResult:
    step("generate")
    _, faults, clean_end = write_inbox(config, spec)
    step("ingest")
    ingested = ingest_readings(DEMO_STREAM, config_path=config_path)
    step("train")
    trained = train_detectors(DEMO_STREAM, config_path=config_path, train_end=clean_end.to_pydatetime())
    step("score")
    # full=True: a demo run again after a retrain rescores the whole history with the new champion.
    scored = score_stream(DEMO_STREAM, config_path=config_path, full=True)
    step("evaluate")
    with connect(config.warehouse) as con:
        incidents = read_incidents(con, DEMO_STREAM)  # written by the score flow
        n_rows = count_readings(con, DEMO_STREAM)
    evaluation = evaluate_incidents(incidents, faults)
    return DemoResult(evaluation, incidents, ingested, trained, scored, n_rows)
