"""Components that fail under a run: a writer that hangs holding the warehouse, conflicts
that do not go away, a disk that fills up mid-file, an MLflow store that is down or has no
champion. Each ends in one clear error; none leaves the warehouse corrupt or half written."""
from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import duckdb
import pytest

from monitoring.errors import WarehouseError
from monitoring.store.connection import Warehouse, close_all, connect, table_counts, write

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("concurrency_worker.py")


def python(code: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def test_a_writer_that_hangs_holding_the_warehouse_stops_others_only_for_the_lock_timeout(tmp_path):
    warehouse = Warehouse.at(tmp_path / "home")
    write(warehouse, lambda con: con.execute("SELECT 1"))  # the catalog exists
    holder = python(f"""
        import time
        from monitoring.store.connection import Warehouse, connect
        with connect(Warehouse.at({str(tmp_path / 'home')!r}), write=True):
            print("holding", flush=True)
            time.sleep(120)
    """)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        impatient = replace(warehouse, lock_timeout_s=1.0)
        with pytest.raises(WarehouseError, match=rf"being written by process {holder.pid} .*not free within 1 s "
                                                 r"\(warehouse.lock_timeout_s\)"):
            write(impatient, lambda con: con.execute("SELECT 1"))
        with connect(impatient) as con:  # readers never wait for the lock
            assert table_counts(con)["ingest_batches"] == 0
    finally:
        holder.kill()
        holder.wait()
    # a holder killed (-9) releases the lock with its process
    assert write(replace(warehouse, lock_timeout_s=5.0), lambda con: con.execute("SELECT 42").fetchone()[0]) == 42


def test_a_conflict_that_persists_is_retried_a_bounded_number_of_times_then_named(tmp_path):
    warehouse = replace(Warehouse.at(tmp_path / "home"), retries=3)
    attempts = []

    def conflicting(con):
        attempts.append(1)
        con.execute("CREATE TABLE IF NOT EXISTS half_done (x INTEGER)")
        raise duckdb.TransactionException("TransactionContext Error: Failed to commit: write-write conflict")

    with pytest.raises(WarehouseError, match=r"met another writer's 4 times in .* s and was given up "
                                             r"\(warehouse.retries = 3\): TransactionContext Error"):
        write(warehouse, conflicting)
    assert len(attempts) == 4
    with connect(warehouse) as con:  # every attempt was rolled back whole
        assert con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'half_done'"
                           ).fetchone()[0] == 0
    close_all()


def _limited(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@pytest.mark.slow
@pytest.mark.parametrize("limit", [0, 20_000, 200_000])
def test_a_disk_that_fills_up_mid_ingest_fails_the_run_and_corrupts_nothing(tmp_path, small_stream, config_writer,
                                                                          limit):
    """A process that may write no file beyond `limit` bytes (RLIMIT_FSIZE: the disk is full
    for it): the ingest fails with the OS error naming the problem; a run with room converges
    to the lake of an ingest that never failed."""
    home = tmp_path / "home"
    config = config_writer(home)
    inbox = home / "inbox" / "pumps"
    inbox.mkdir(parents=True)
    frame = small_stream.readings
    half = len(frame) // 2
    frame.iloc[:half].to_csv(inbox / "a.csv", index=False)
    frame.iloc[half:].to_csv(inbox / "b.csv", index=False)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = [sys.executable, str(WORKER), str(config), "ingest", "pumps"]
    full = subprocess.run(run, env=env, capture_output=True, text=True, preexec_fn=_limited(limit), timeout=300)
    assert full.returncode != 0
    assert "File too large" in full.stderr or "disk" in full.stderr.lower(), full.stderr[-2000:]

    again = subprocess.run(run, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    warehouse = Warehouse.at(home)
    close_all()
    with connect(warehouse) as con:
        rows = con.execute('SELECT count(*), count(DISTINCT (asset, timestamp)) FROM lake."pumps"').fetchone()
        audit = con.execute("SELECT count(*), sum(rows_accepted) FROM ingest_batches WHERE status = 'ok'").fetchone()
        assert con.execute("SELECT count(*) FROM quarantine").fetchone()[0] == 0
    assert rows == (len(frame), len(frame)) and audit == (2, len(frame))
    close_all()


def test_a_command_that_meets_a_full_disk_says_so_in_one_line(tmp_path):
    """`aemon init` writes its files with no room at all: one line saying so, no traceback."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", "from flows.cli import main; main()", "init", "--config",
                             str(tmp_path / "aemon.toml")], env=env, capture_output=True, text=True, timeout=120,
                            preexec_fn=_limited(0), cwd=tmp_path)
    assert result.returncode == 3, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: File too large (errno EFBIG): the disk is full"), lines


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("store", ["down", "no champion"])
def test_scoring_without_its_model_store_stops_with_one_line_and_writes_nothing(tmp_path, small_stream, config_writer,
                                                                              store):
    home = tmp_path / "home"
    tracking = f'tracking_uri = "http://127.0.0.1:{free_port()}"\n' if store == "down" else ""
    config = config_writer(home)
    config.write_text(tracking + config.read_text())
    inbox = home / "inbox" / "pumps"
    inbox.mkdir(parents=True)
    small_stream.readings.to_csv(inbox / "a.csv", index=False)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PREFECT_HOME": str(tmp_path / "prefect")}
    ingest = subprocess.run([sys.executable, str(WORKER), str(config), "ingest", "pumps"], env=env,
                            capture_output=True, text=True, timeout=300)
    assert ingest.returncode == 0, ingest.stderr[-2000:]
    close_all()
    with connect(Warehouse.at(home)) as con:
        before = table_counts(con)
    close_all()

    command = [sys.executable, "-c", "from flows.cli import main; main()", "score", "pumps", "--config", str(config)]
    scored = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert scored.returncode != 0
    errors = [line for line in scored.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, scored.stderr[-3000:]
    assert "Traceback" not in scored.stderr
    expected = "cannot be reached; nothing was written" if store == "down" else "run `aemon train pumps` first"
    assert expected in errors[0]
    with connect(Warehouse.at(home)) as con:
        after = table_counts(con)
    written = {t: after[t] - before[t] for t in ("scores", "anomalies", "incidents", "watermarks")}
    assert written == dict.fromkeys(written, 0)
    close_all()
