"""Concurrent runs on one warehouse and one MLflow store, as real processes: two ingests of
one inbox, ingest and scoring at once, scoring while a retraining promotes a new champion,
and a reader holding its connection throughout. Nothing is lost or stored twice, each
reader sees whole files, and the result equals that of the same work done one at a time."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from monitoring.store.connection import Warehouse, client_sql, close_all, connect
from monitoring.store.ingestion import ingest_file

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("concurrency_worker.py")
N_FILES = 8

pytestmark = pytest.mark.slow


def start(config: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    return subprocess.Popen([sys.executable, str(WORKER), str(config), *args], cwd=config.parent, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 300) -> list[dict]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"{proc.args[3:]} exited {proc.returncode}:\n{err[-3000:]}"
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [line for line in lines if "seconds" not in line]  # the last line times the whole step


def split_files(frame: pd.DataFrame, folder: Path, n: int = N_FILES) -> list[Path]:
    """The readings as `n` files in time order (the exports of a feed)."""
    folder.mkdir(parents=True, exist_ok=True)
    edges = pd.date_range(frame["timestamp"].min(), frame["timestamp"].max() + pd.Timedelta(seconds=1),
                          periods=n + 1)
    paths = []
    for i in range(n):
        part = frame[(frame["timestamp"] >= edges[i]) & (frame["timestamp"] < edges[i + 1])]
        paths.append(folder / f"part-{i:02d}.csv")
        part.to_csv(paths[-1], index=False)
    return paths


def lake_state(warehouse: Warehouse) -> dict:
    close_all()
    with connect(warehouse) as con:
        return {
            "readings": con.execute('SELECT * FROM lake."pumps" ORDER BY asset, timestamp').df(),
            "batches": con.execute("SELECT file_hash, status, rows_in, rows_accepted, rows_quarantined "
                                   "FROM ingest_batches ORDER BY ALL").df(),
            "quarantined": con.execute("SELECT count(*) FROM quarantine").fetchone()[0],
        }


def scoring_state(warehouse: Warehouse) -> dict:
    close_all()
    with connect(warehouse) as con:
        return {
            "scores": con.execute("SELECT asset, window_start, window_end, score, is_anomaly, model_version "
                                  "FROM scores ORDER BY ALL").df(),
            "anomalies": con.execute("SELECT asset, window_start, model_version FROM anomalies ORDER BY ALL").df(),
            "watermarks": con.execute("SELECT asset, last_window_end, model_version FROM watermarks ORDER BY ALL").df(),
            "incidents": con.execute('SELECT asset, start, "end", n_windows FROM incidents ORDER BY ALL').df(),
        }


def keys_unique(warehouse: Warehouse, table: str, keys: str) -> None:
    with connect(warehouse) as con:
        doubled = con.execute(f"SELECT {keys}, count(*) n FROM {table} GROUP BY ALL HAVING n > 1").fetchall()
    assert not doubled, f"{table} holds rows twice: {doubled[:3]}"


class Reader:
    """A DuckDB client (as a notebook would hold one) attached read-only for the whole test;
    every query sees one committed snapshot."""

    def __init__(self, warehouse: Warehouse):
        self.con = duckdb.connect()
        for statement in client_sql(warehouse):
            self.con.execute(statement)
        self.seen: list[tuple[int, int]] = []

    def look(self) -> None:
        self.seen.append(self.con.execute(
            'SELECT (SELECT count(*) FROM lake."pumps"), (SELECT coalesce(sum(rows_accepted), 0) '
            "FROM ingest_batches WHERE stream = 'pumps' AND status = 'ok')").fetchone())


def watch(reader: Reader, procs: list[subprocess.Popen]) -> None:
    while any(p.poll() is None for p in procs):
        reader.look()
        time.sleep(0.05)
    reader.look()


def test_two_ingests_of_one_inbox_store_each_file_once_and_readers_see_whole_files(
        tmp_path, small_stream, config_writer):
    config = config_writer(tmp_path / "home")
    files = split_files(small_stream.readings, tmp_path / "home" / "inbox" / "pumps")
    warehouse = Warehouse.at(tmp_path / "home")
    from flows.config import load_config

    schema_config = load_config(config)
    ingest_file(warehouse, "pumps", schema_config.stream("pumps").stream_schema(), files[0])  # the table exists
    reader = Reader(warehouse)
    procs = [start(config, "ingest", "pumps"), start(config, "ingest", "pumps")]
    watch(reader, procs)
    reports = [finish(p) for p in procs]

    # every file was ingested by exactly one of the two runs; the other found it done
    done = [r["file"] for report in reports for r in report if r.get("status") == "ok"]
    assert sorted(done) == [f.name for f in files[1:]]
    # the reader always saw the lake and its audit agree: whole files, never part of one
    assert all(rows == audited for rows, audited in reader.seen), reader.seen
    counts = [rows for rows, _ in reader.seen]
    assert counts == sorted(counts) and counts[-1] == len(small_stream.readings)
    reader.con.close()

    # the same files ingested one at a time give the same lake, audit and quarantine
    alone = Warehouse.at(tmp_path / "alone")
    for path in files:
        ingest_file(alone, "pumps", schema_config.stream("pumps").stream_schema(), path)
    together, single = lake_state(warehouse), lake_state(alone)
    pd.testing.assert_frame_equal(together["readings"], single["readings"])
    pd.testing.assert_frame_equal(together["batches"], single["batches"])
    assert together["quarantined"] == single["quarantined"] == 0
    keys_unique(warehouse, 'lake."pumps"', "asset, timestamp")


def move(paths: list[Path], inbox: Path) -> None:
    inbox.mkdir(parents=True, exist_ok=True)
    for path in paths:
        path.rename(inbox / path.name)


def until_done(flag: Path, procs: list[subprocess.Popen]) -> list[list[dict]]:
    """Wait for `procs`, then raise `flag` (the scoring loop runs once more and stops)."""
    reports = [finish(p) for p in procs]
    flag.touch()
    return reports


def test_ingest_scoring_and_a_promotion_at_once_lose_no_window_and_score_none_twice(
        tmp_path, small_stream, config_writer):
    from flows.config import load_config

    home, other = tmp_path / "home", tmp_path / "alone"
    config = config_writer(home)
    inbox = home / "inbox" / "pumps"
    files = split_files(small_stream.readings, tmp_path / "feed")
    move(files[:4], inbox)
    finish(start(config, "ingest", "pumps"))
    assert finish(start(config, "train", "pumps"))[0]["version"] == 1  # the first version is champion
    finish(start(config, "score", "pumps"))
    warehouse = load_config(config).warehouse

    # 1. ingest and scoring at once: the loop scores while files land, then once more
    move(files[4:6], inbox)
    flag = tmp_path / "ingested"
    scorer = start(config, "score", "pumps", "--until", str(flag))
    until_done(flag, [start(config, "ingest", "pumps")])
    runs = finish(scorer)
    assert len(runs) >= 2 and all(r["version"] == 1 for r in runs)

    # the same readings scored in one run by the same model, in another warehouse
    reference = home.parent / "reference.toml"
    text = config.read_text().replace(f'home = "{home.as_posix()}"', f'home = "{other.as_posix()}"\n'
                                      f'tracking_uri = "{load_config(config).mlflow_tracking_uri}"\n'
                                      f'artifact_root = "{load_config(config).mlflow_artifact_root}"')
    reference.write_text(text)
    alone = load_config(reference).warehouse
    schema = load_config(reference).stream("pumps").stream_schema()
    for path in files[:6]:
        ingest_file(alone, "pumps", schema, inbox / path.name)
    finish(start(reference, "score", "pumps"))
    a, b = scoring_state(warehouse), scoring_state(alone)
    for table in ("scores", "anomalies", "watermarks", "incidents"):
        pd.testing.assert_frame_equal(a[table], b[table], obj=table)

    # 2. scoring while a retraining promotes a new champion, with readings still landing
    move(files[6:7], inbox)
    flag = tmp_path / "promoted"
    scorer = start(config, "score", "pumps", "--until", str(flag))
    trained, _ = until_done(flag, [start(config, "train", "pumps", "--promote"), start(config, "ingest", "pumps")])
    runs = finish(scorer)
    assert trained[0]["version"] == 2 and runs[-1]["version"] == 2
    move(files[7:], inbox)  # the next file is scored by the new champion
    finish(start(config, "ingest", "pumps"))
    assert finish(start(config, "score", "pumps"))[0]["version"] == 2
    for path in files[6:]:
        ingest_file(alone, "pumps", schema, inbox / path.name)
    finish(start(reference, "score", "pumps", "--runs", "1"))
    a, b = scoring_state(warehouse), scoring_state(alone)
    # every window was scored exactly once, by v1 or by v2: none lost across the switch
    windows = ["asset", "window_start", "window_end"]
    pd.testing.assert_frame_equal(a["scores"][windows].sort_values(windows, ignore_index=True),
                                  b["scores"][windows].sort_values(windows, ignore_index=True))
    marks = ["asset", "last_window_end"]
    pd.testing.assert_frame_equal(a["watermarks"][marks], b["watermarks"][marks])
    assert set(a["scores"]["model_version"]) <= {1, 2} and 2 in set(a["scores"]["model_version"])
    keys_unique(warehouse, "scores", "stream, asset, window_start, model_name, model_version")
    keys_unique(warehouse, "anomalies", "stream, asset, window_start, model_name, model_version")
    with connect(warehouse) as con:  # every anomaly is a flagged score of the same version
        assert con.execute("SELECT count(*) FROM anomalies a ANTI JOIN scores s USING "
                           "(stream, asset, window_start, model_name, model_version)").fetchone()[0] == 0
    close_all()
