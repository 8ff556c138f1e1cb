"""Files a killed ingest left while staging (hidden quarantine stages, lake parts never
registered) are removed by the stream's next ingest, and never seen by SQL over the lake;
files a live run is staging are left alone."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from flows.cli import app
from flows.config import load_config
from monitoring.store import lake
from monitoring.store.connection import query


def dead_pid() -> int:
    """The id of a process that has ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def leave(path: Path, frame: pd.DataFrame, hours_old: float = 0.0) -> Path:
    frame.to_parquet(path, index=False)
    if hours_old:
        then = time.time() - hours_old * 3600
        os.utime(path, (then, then))
    return path


def count(warehouse) -> int:
    return int(query(warehouse, 'SELECT count(*) AS n FROM lake."pumps"')["n"].item())


def test_leftovers_of_a_killed_run_go_with_the_next_ingest(aemon_home, prefect_harness, small_stream):
    home, config = aemon_home
    cfg = load_config(config)
    inbox = home / "inbox" / "pumps"
    inbox.mkdir(parents=True)
    readings = small_stream.readings
    readings.iloc[:200].to_csv(inbox / "one.csv", index=False)
    assert CliRunner().invoke(app, ["ingest", "pumps", "--config", str(config)]).exit_code == 0
    assert count(cfg.warehouse) == 200

    folder = lake.stream_root(cfg.warehouse.data_path, "pumps")
    here, gone = lake.host_tag(), dead_pid()
    rows = readings.iloc[200:260].copy()
    rows["timestamp"] = rows["timestamp"].astype("datetime64[us]")
    quarantined = pd.DataFrame({"row": [3], "column": ["a"], "reason": ["r"], "raw": ["{}"]})
    dead = [  # a run killed mid-file on this host, a moment ago
        leave(folder / f"part-0123456789abcdef-00000-{here}.{gone}-0badc0de.parquet", rows),
        leave(folder / f".quarantine-0123456789abcdef-{here}.{gone}-0badc0de.parquet", quarantined),
        # parts named before owners were named, and one of another host: by age (two days)
        leave(folder / "part-fedcba9876543210-00000-00000000.parquet", rows, hours_old=48),
        leave(folder / f"part-fedcba9876543210-00001-otherhost.{gone}-00000001.parquet", rows, hours_old=48),
    ]
    alive = [  # a live run (this process) staging now, however long ago it started
        leave(folder / f"part-aaaaaaaaaaaaaaaa-00000-{here}.{os.getpid()}-00000002.parquet", rows, hours_old=48),
        leave(folder / f".quarantine-aaaaaaaaaaaaaaaa-{here}.{os.getpid()}-00000002.parquet", quarantined,
              hours_old=48),
        leave(folder / f"part-bbbbbbbbbbbbbbbb-00000-otherhost.{gone}-00000003.parquet", rows),  # young: maybe live
    ]
    assert count(cfg.warehouse) == 200  # staged, unregistered parts are invisible to SQL

    readings.iloc[200:300].to_csv(inbox / "two.csv", index=False)
    result = CliRunner().invoke(app, ["ingest", "pumps", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert [p for p in dead if p.exists()] == []
    assert all(p.exists() for p in alive)
    assert count(cfg.warehouse) == 300  # the new file whole, none of the leftovers' rows
    parts = {p.name for p in folder.glob("part-*.parquet")}
    registered = set(query(cfg.warehouse, "SELECT data_file FROM ducklake_list_files(current_database(), 'pumps', "
                                          "schema => 'lake')")["data_file"].map(lambda f: Path(f).name))
    assert parts - registered == {p.name for p in alive if p.name.startswith("part-")}


def test_registered_parts_of_a_run_that_has_ended_stay(tmp_path, small_stream):
    from monitoring.store.connection import Warehouse
    from monitoring.store.ingestion import remove_stale_staging

    small_stream.readings.iloc[:100].to_csv(tmp_path / "a.csv", index=False)
    script = ("import sys; from features.readers import StreamSchema; from features.synthetic import SENSORS; "
              "from monitoring.store.connection import Warehouse; from monitoring.store.ingestion import ingest_file; "
              "r = ingest_file(Warehouse.at(sys.argv[1]), 'pumps', "
              "StreamSchema(sensors=tuple(SENSORS), label_columns=('label',)), sys.argv[2]); "
              "assert r.status == 'ok', r")
    run = subprocess.run([sys.executable, "-c", script, str(tmp_path / "home"), str(tmp_path / "a.csv")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    warehouse = Warehouse.at(tmp_path / "home")
    folder = lake.stream_root(warehouse.data_path, "pumps")
    (part,) = folder.glob("part-*.parquet")
    assert lake.is_stale(part)  # its process has ended ...
    assert remove_stale_staging(warehouse, "pumps") == []  # ... but it is registered: part of the lake
    assert part.exists() and count(warehouse) == 100
