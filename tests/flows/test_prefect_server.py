"""Production path: a real `prefect server` on 127.0.0.1, `prefect deploy --all` from this
repository's prefect.yaml, and a process worker running the ingest, train and score
deployments one after the other. Slow (a server start), still part of `make test`."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from flows.config import load_config
from flows.demo import write_inbox
from monitoring.models import registry
from monitoring.store.connection import connect, table_counts
from monitoring.store.readings import count_readings

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(process: subprocess.Popen, sig: int, timeout: float = 60) -> None:
    """Signal a process group started with start_new_session; kill it if it lingers."""
    os.killpg(process.pid, sig)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout)


@contextlib.contextmanager
def prefect_server(tmp_path, scheduler: bool):
    """A `prefect server` on a free port of 127.0.0.1; yields the environment that points at it."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "true" if scheduler else "false",
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
    })
    with open(tmp_path / "server.log", "w") as log:
        process = subprocess.Popen(
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        api = f"http://127.0.0.1:{port}/api"
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    with urllib.request.urlopen(f"{api}/health", timeout=2):
                        break
                except OSError as err:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(
                            f"prefect server did not start:\n{(tmp_path / 'server.log').read_text()}") from err
                    time.sleep(0.5)
            yield {**env, "PREFECT_API_URL": api}
        finally:
            stop(process, signal.SIGTERM)


@pytest.fixture
def server(tmp_path):
    """No automatic runs from the deployment schedules: the test triggers each run itself."""
    with prefect_server(tmp_path, scheduler=False) as env:
        yield env


@pytest.fixture
def scheduling_server(tmp_path):
    with prefect_server(tmp_path, scheduler=True) as env:
        yield env


def prefect(env, *args, timeout=300) -> str:
    result = subprocess.run([str(BIN / "prefect"), "--no-prompt", *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"prefect {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def run_deployment(env, name: str) -> None:
    prefect(env, "deployment", "run", name)
    prefect(env, "worker", "start", "--pool", "aemon", "--run-once")


def flow_run_states(env) -> list[tuple[str, str]]:
    code = (
        "import asyncio, json\n"
        "from prefect.client.orchestration import get_client\n"
        "async def main():\n"
        "    async with get_client() as client:\n"
        "        runs = await client.read_flow_runs()\n"
        "        deployments = await client.read_deployments()\n"
        "        names = {d.id: d.name for d in deployments}\n"
        "        print(json.dumps({'runs': [[names.get(r.deployment_id), r.state.type.value] for r in runs],\n"
        "                          'deployments': {d.name: [s.schedule.model_dump(mode='json') for s in d.schedules]\n"
        "                                          for d in deployments}}))\n"
        "asyncio.run(main())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_deployments_run_on_a_real_server_with_a_process_worker(server, tmp_path, config_writer, small_spec):
    config_path = config_writer(tmp_path / "home")
    env = {**server, "AEMON_CONFIG": str(config_path)}
    config = load_config(config_path)
    write_inbox(config, small_spec)

    prefect(env, "work-pool", "create", "aemon", "--type", "process")
    prefect(env, "deploy", "--all")
    for name in ("ingest-readings/pumps-ingest", "train-detectors/pumps-train", "score-stream/pumps-score"):
        run_deployment(env, name)

    seen = flow_run_states(env)
    # and the ingest's aemon.readings.ingested event started a fourth run through the trigger
    # of prefect.yaml: a score run, which fails when the worker runs it before the training
    # (no model yet; what the worker picks up first is not fixed)
    runs = sorted(map(tuple, seen["runs"]))
    assert [r for r in runs if r != ("pumps-score", "FAILED")] in (
        [("pumps-ingest", "COMPLETED"), ("pumps-score", "COMPLETED"), ("pumps-train", "COMPLETED")],
        [("pumps-ingest", "COMPLETED"), ("pumps-score", "COMPLETED"), ("pumps-score", "COMPLETED"),
         ("pumps-train", "COMPLETED")],
    ) and len(runs) == 4, runs
    schedules = seen["deployments"]
    assert schedules["pumps-ingest"][0]["interval"] == 300.0
    assert schedules["pumps-score"][0]["interval"] == 900.0
    assert schedules["pumps-train"][0]["cron"] == "0 3 * * 0"

    with connect(config.warehouse) as con:
        assert count_readings(con, "pumps") == 2 * 4 * 1440
        assert table_counts(con)["scores"] > 0
    champion = registry.resolve_alias(config.mlflow_tracking_uri, "pumps")
    assert champion.version == 1 and champion.threshold > 0

    # a recording with a fault, replayed into the inbox as a live feed: the worker's ingest and
    # score runs open an incident and its aemon.incident.opened event reaches the server
    def opened_ids() -> set[str]:
        with connect(config.warehouse) as con:
            rows = con.execute("SELECT incident_id FROM incident_log WHERE event = 'opened' AND notify").fetchall()
        return {r[0] for r in rows}

    before = opened_ids()
    recording = replay_recording(config, tmp_path / "recording.csv")
    out = subprocess.run([str(BIN / "aemon"), "replay", str(recording), "--stream", "pumps", "--no-wait",
                          "--chunk", "3600"], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    run_deployment(env, "ingest-readings/pumps-ingest")
    for _ in range(3):  # the trigger's run or this one: whichever the worker takes first scores the new files
        run_deployment(env, "score-stream/pumps-score")
        opened = opened_ids() - before
        if opened:
            break
    assert len(opened) == 1, opened
    (incident,) = opened
    events = [e for e in server_events(env, "aemon.incident.opened", incident)
              if e["payload"]["incident_id"] == incident]
    assert len(events) == 1, events
    assert events[0]["resource"]["prefect.resource.id"] == "aemon.stream.pumps.asset.pump-01"
    assert events[0]["payload"]["top_sensors"][0]["sensor"] == "discharge_pressure"


def replay_recording(config, path: Path) -> Path:
    """Four hours of pump-01 from the lake with a discharge pressure surge in them."""
    from features.synthetic import SENSORS
    from monitoring.store.readings import read_readings

    with connect(config.warehouse) as con:
        lake = read_readings(con, "pumps", asset="pump-01")
    tail = lake.tail(240)[["timestamp", "asset", *SENSORS, "label"]].reset_index(drop=True)
    fault = tail.index[150:200]
    tail.loc[fault, "discharge_pressure"] += 8 * lake["discharge_pressure"].std()
    tail.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%S")
    return path


def server_events(env, name: str, incident: str, timeout: float = 90) -> list[dict]:
    """Events of that name the server holds (it persists them in batches: wait for the incident's)."""
    code = (
        "import json, sys\n"
        "from prefect.client.orchestration import get_client\n"
        "from prefect.events.filters import EventFilter, EventNameFilter\n"
        "with get_client(sync_client=True) as client:\n"
        "    page = client.read_events(EventFilter(event=EventNameFilter(name=[sys.argv[1]])), limit=50)\n"
        "    print(json.dumps([e.model_dump(mode='json') for e in page.events]))\n"
    )
    deadline = time.monotonic() + timeout
    while True:
        out = subprocess.run([sys.executable, "-c", code, name], env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        events = json.loads(out.stdout.strip().splitlines()[-1])
        if any(e["payload"].get("incident_id") == incident for e in events) or time.monotonic() > deadline:
            return events
        time.sleep(3)


def test_aemon_serve_runs_the_flows_on_their_schedules(scheduling_server, tmp_path, config_writer, small_spec):
    config_path = config_writer(tmp_path / "home", extra="[streams.pumps.schedule]\ningest_every_s = 3\n")
    config = load_config(config_path)
    write_inbox(config, small_spec)
    from monitoring.store.connection import client_sql

    with connect(config.warehouse, write=True):
        pass
    # a DuckDB shell open on the warehouse the whole time (it used to make every run fail)
    shell = subprocess.Popen([str(BIN / "duckdb"), "-cmd", ";".join(client_sql(config.warehouse))],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    with open(tmp_path / "serve.log", "w") as log:
        process = subprocess.Popen([str(BIN / "aemon"), "serve", "--config", str(config_path)], env=scheduling_server,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 180
            while True:  # until a scheduled ingest run has completed
                served = flow_run_states(scheduling_server)
                if "COMPLETED" in {state for _, state in served["runs"]}:
                    break
                assert process.poll() is None, (tmp_path / "serve.log").read_text()
                assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
                time.sleep(2)
            assert shell.poll() is None
            out, _ = shell.communicate(".mode csv\nSELECT count(*) FROM lake.pumps;\n", timeout=60)
        finally:
            stop(process, signal.SIGINT)
            if shell.poll() is None:
                shell.kill()
    assert out.split() == ["count_star()", str(2 * 4 * 1440)], out
    assert set(served["deployments"]) == {"pumps-ingest", "pumps-score", "pumps-train", "pumps-drift",
                                          "warehouse-maintain"}
    assert served["deployments"]["pumps-ingest"][0]["interval"] == 3.0
    assert served["deployments"]["pumps-drift"][0]["interval"] == 3600.0
    assert list((Path(config.warehouse.data_path) / "lake" / "pumps").glob("part-*.parquet"))
    with connect(config.warehouse) as con:
        assert count_readings(con, "pumps") == 2 * 4 * 1440


def score_runs(env) -> list[dict]:
    """The score-stream runs: who started them (the schedule, or not: the trigger), state, parameters."""
    code = (
        "import json\n"
        "from prefect.client.orchestration import get_client\n"
        "from prefect.client.schemas.filters import FlowFilter, FlowFilterName\n"
        "with get_client(sync_client=True) as client:\n"
        "    runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=['score-stream'])))\n"
        "    print(json.dumps([{'auto_scheduled': r.auto_scheduled, 'state': r.state.type.value,\n"
        "                       'parameters': r.parameters} for r in runs]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_aemon_serve_scores_as_soon_as_an_ingest_accepted_readings(scheduling_server, tmp_path, config_writer,
                                                                   small_stream):
    """The ingest's aemon.readings.ingested event starts a score run through the deployment
    trigger, long before the score schedule (an hour here) would."""
    config_path = config_writer(tmp_path / "home", extra="[streams.pumps.schedule]\ningest_every_s = 3\n"
                                                          "score_every_s = 3600\n")
    config = load_config(config_path)
    inbox = config.inbox("pumps")
    inbox.mkdir(parents=True)
    small_stream.readings.head(2000).to_csv(inbox / "part.csv", index=False)
    env = {**scheduling_server, "PREFECT_RUNNER_POLL_FREQUENCY": "2"}
    with open(tmp_path / "serve.log", "w") as log:
        process = subprocess.Popen([str(BIN / "aemon"), "serve", "--config", str(config_path)], env=env,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 240
            while True:  # until a score run that the schedule did not start has finished
                triggered = [r for r in score_runs(env) if not r["auto_scheduled"]]
                if any(r["state"] in ("COMPLETED", "FAILED") for r in triggered):
                    break
                assert process.poll() is None, (tmp_path / "serve.log").read_text()
                assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
                time.sleep(2)
        finally:
            stop(process, signal.SIGINT)
    # no model yet: the run fails on that, which is not the point; it ran, for this stream, once
    (run,) = triggered
    assert run["parameters"] == {"stream": "pumps", "config_path": str(config_path.resolve())}
    with connect(config.warehouse) as con:
        assert count_readings(con, "pumps") == 2000


def test_aemon_serve_without_a_server_says_what_to_do(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    result = subprocess.run([str(BIN / "aemon"), "serve"], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert "aemon serve needs a Prefect server" in result.stderr


# A DuckDB client in its own process (as the DuckDB CLI, a notebook or a BI tool would be):
# it attaches the warehouse with `aemon warehouse attach`'s SQL, keeps that one connection,
# and polls counts and invariants that hold only between whole runs.
READER = '''
import json, pathlib, sys, time
import duckdb
statements, out, stop = json.loads(sys.argv[1]), open(sys.argv[2], "w"), pathlib.Path(sys.argv[3])
con = duckdb.connect(config={"autoinstall_known_extensions": "false", "autoload_known_extensions": "false"})
for statement in statements:
    con.execute(statement)
print("attached", flush=True)
CHECK = """SELECT
  (SELECT count(*) FROM lake.pumps),
  (SELECT coalesce(sum(rows_accepted), 0) FROM ingest_batches WHERE stream = 'pumps'),
  (SELECT count(*) FROM quarantine WHERE stream = 'pumps'),
  (SELECT coalesce(sum(rows_quarantined), 0) FROM ingest_batches WHERE stream = 'pumps'),
  (SELECT count(*) FROM scores),
  (SELECT count(*) FROM anomalies),
  (SELECT count(*) FROM watermarks w WHERE w.last_window_end IS DISTINCT FROM
     (SELECT max(window_end) FROM scores s WHERE s.stream = w.stream AND s.asset = w.asset)),
  (SELECT count(*) FROM anomalies a WHERE NOT EXISTS (SELECT 1 FROM scores s WHERE s.stream = a.stream
     AND s.asset = a.asset AND s.window_start = a.window_start AND s.model_version = a.model_version)),
  (SELECT count(*) FROM incidents)
"""
DETAIL = ["SELECT batch_id, file, rows_in, rows_accepted, rows_quarantined, status FROM ingest_batches ORDER BY 1",
          "SELECT batch_id, count(*) FROM quarantine GROUP BY 1 ORDER BY 1",
          "SELECT snapshot_id, changes FROM ducklake_snapshots(current_database()) ORDER BY 1 DESC LIMIT 4"]
while not stop.exists():
    con.execute("BEGIN TRANSACTION")  # the check and, when it fails, its detail: one snapshot
    try:
        row = list(con.execute(CHECK).fetchall()[0])
        if row[0] != row[1] or row[2] != row[3]:  # what the reader saw, for the failure's message
            row.append([[list(map(str, r)) for r in con.execute(q).fetchall()] for q in DETAIL])
    except duckdb.CatalogException:  # no readings table before the first ingest
        row = None
    con.execute("ROLLBACK")
    out.write(json.dumps(row) + "\\n")
    out.flush()
    time.sleep(0.05)
print("done", flush=True)
'''
COUNTS = ["readings", "accepted", "quarantined", "audited_quarantine", "scores", "anomalies", "stale_watermarks",
          "orphan_anomalies", "incidents"]


def aemon(env, *args) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "aemon"), *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def finished(*runs: tuple[subprocess.Popen, int]) -> None:
    """Wait for each (process, expected exit code)."""
    for process, code in runs:
        out, _ = process.communicate(timeout=600)
        assert process.returncode == code, f"{process.args} exited {process.returncode}:\n{out}"


def test_flows_in_other_processes_share_the_warehouse_with_a_reader_holding_it_open(
        server, tmp_path, config_writer, small_stream):
    """A reader process keeps one connection open and polls while ingest, train, score and
    the upkeep run in other processes, two at a time: every flow succeeds, and every state
    the reader sees is between whole runs (the lake matches its audit rows, the watermarks
    match the scores, no anomaly without its score)."""
    from monitoring.store.connection import client_sql

    config_path = config_writer(tmp_path / "home")
    config = load_config(config_path)
    env = {**server, "AEMON_CONFIG": str(config_path)}
    readings = small_stream.readings
    cut = readings["timestamp"].min() + (readings["timestamp"].max() - readings["timestamp"].min()) * 0.6
    inbox, later = config.inbox("pumps"), tmp_path / "later"
    inbox.mkdir(parents=True), later.mkdir()
    for asset, part in readings.groupby("asset"):
        part[part["timestamp"] < cut].to_csv(inbox / f"{asset}-early.csv", index=False)
        # the later file repeats the early file's last 5 rows: quarantined as already in the lake
        part[part["timestamp"] >= cut].pipe(lambda p, a=part: pd.concat([a[a["timestamp"] < cut].tail(5), p])) \
            .to_csv(later / f"{asset}-late.csv", index=False)
    with connect(config.warehouse, write=True):
        pass  # an empty catalog for the reader to attach

    stop = tmp_path / "stop"
    # and a DuckDB shell, open on the warehouse from before the first run to after the last
    shell = subprocess.Popen([str(BIN / "duckdb"), "-cmd", ";".join(client_sql(config.warehouse))],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    reader = subprocess.Popen([sys.executable, "-c", READER, json.dumps(client_sql(config.warehouse)),
                               str(tmp_path / "seen.jsonl"), str(stop)], stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "attached"
        finished((aemon(env, "ingest", "pumps"), 0))
        for path in later.iterdir():
            path.rename(inbox / path.name)
        # exit code 1: the ingest reports the rows it quarantined
        finished((aemon(env, "train", "pumps"), 0), (aemon(env, "ingest", "pumps"), 1))
        finished((aemon(env, "score", "pumps"), 0), (aemon(env, "warehouse", "maintain"), 0))
        assert reader.poll() is None and shell.poll() is None  # both held their connections through every run
        out, _ = shell.communicate(".mode csv\nSELECT count(*) FROM lake.pumps;\nSELECT count(*) FROM scores;\n",
                                   timeout=60)
    finally:
        stop.touch()
        reader.wait(timeout=60)
        if shell.poll() is None:
            shell.kill()
    seen = [json.loads(line) for line in (tmp_path / "seen.jsonl").read_text().splitlines()]
    states = [dict(zip([*COUNTS, "detail"][:len(row)], row, strict=True)) for row in seen if row is not None]
    for state in states:
        assert state["readings"] == state["accepted"], state  # a file's rows and its audit row: together
        assert state["quarantined"] == state["audited_quarantine"], state
        assert state["stale_watermarks"] == 0 and state["orphan_anomalies"] == 0, state  # a scoring run: whole
    distinct = {tuple(s.values()) for s in states}
    assert len(distinct) >= 3  # it saw the runs commit, one by one, on its open connection
    final = states[-1]
    assert final["readings"] == len(readings) and final["quarantined"] == 5 * readings["asset"].nunique()
    assert final["scores"] > 0 and final["incidents"] >= 0
    with connect(config.warehouse) as con:
        assert table_counts(con)["scores"] == final["scores"]
    assert out.split() == ["count_star()", str(len(readings)), "count_star()", str(final["scores"])], out


SERVED_RUNS = '''
import asyncio, json, sys
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound
async def main():
    async with get_client() as client:
        try:
            deployment = await client.read_deployment_by_name(sys.argv[1])
        except ObjectNotFound:
            print("null")
            return
        runs = await client.read_flow_runs()
        limit = deployment.global_concurrency_limit
        print(json.dumps({"runs": [[str(r.id), r.state.type.value] for r in runs if r.deployment_id == deployment.id],
                          "active_slots": limit.active_slots if limit else None}))
asyncio.run(main())
'''


def served_runs(env, deployment: str) -> dict | None:
    """The deployment's flow runs (id, state type) and its concurrency slots in use; None
    before the deployment exists."""
    out = subprocess.run([sys.executable, "-c", SERVED_RUNS, deployment], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def wait_for(what, check, log: Path, process: subprocess.Popen, timeout: float = 240):
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert process.poll() is None, f"aemon serve exited {process.returncode}:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"no {what} within {timeout} s:\n{log.read_text()}"
        time.sleep(1)


def test_aemon_serve_stops_on_sigterm_and_sigint_cancelling_its_runs_and_freeing_their_slots(
        server, tmp_path, config_writer, small_spec):
    """A training run in progress when `aemon serve` gets SIGTERM (then, served again, SIGINT)
    is cancelled and its deployment's concurrency slot released: serve exits promptly, and
    the next run of the deployment starts at once instead of waiting for the slot's lease."""
    # epochs enough that a training is still running when the signal comes
    config_path = config_writer(tmp_path / "home", extra="[streams.pumps.detectors]\nn_threads = 1\nepochs = 500\n")
    config = load_config(config_path)
    write_inbox(config, small_spec)
    env = {**server, "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    ingest, train = "ingest-readings/pumps-ingest", "train-detectors/pumps-train"
    for sig, codes in ((signal.SIGTERM, (0,)), (signal.SIGINT, (0, 130))):
        log = tmp_path / f"serve-{sig.name}.log"
        with open(log, "w") as out:
            process = subprocess.Popen([str(BIN / "aemon"), "serve", "--config", str(config_path)], env=env,
                                       stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for("deployments", lambda: served_runs(env, train) is not None, log, process)
            if sig == signal.SIGTERM:  # the readings the trainings fit on
                prefect(env, "deployment", "run", ingest)
                wait_for("ingest", lambda: "COMPLETED" in {s for _, s in served_runs(env, ingest)["runs"]},
                         log, process)
            before = {run for run, _ in served_runs(env, train)["runs"]}
            prefect(env, "deployment", "run", train)
            asked = time.monotonic()
            running = wait_for("running training", lambda known=before: [
                r for r, s in served_runs(env, train)["runs"] if r not in known and s == "RUNNING"], log, process)
            started_after = time.monotonic() - asked
            assert started_after < 120, started_after  # not held back by an earlier run's slot (a 300 s lease)
            time.sleep(3)  # well into the fit
            if sig == signal.SIGTERM:  # as `kill PID` or `docker stop` send it: to aemon serve alone
                os.kill(process.pid, sig)
            else:  # as Ctrl-C in a terminal sends it: to the whole process group, flow runs included
                os.killpg(process.pid, sig)
            sent = time.monotonic()
            code = process.wait(timeout=90)
            assert code in codes, f"exit {code}:\n{log.read_text()}"
            assert time.monotonic() - sent < 60, log.read_text()
        finally:
            if process.poll() is None:
                stop(process, signal.SIGKILL)
        seen = served_runs(env, train)
        states = dict(seen["runs"])
        assert states[running[0]] in ("CANCELLED", "CRASHED"), (states, log.read_text())
        assert seen["active_slots"] == 0, (seen, log.read_text())
