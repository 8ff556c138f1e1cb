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
        "        print(json.dumps({'runs': [[r.name, r.state.type.value] for r in runs],\n"
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
    assert sorted(state for _, state in seen["runs"]) == ["COMPLETED"] * 3, seen["runs"]
    schedules = seen["deployments"]
    assert schedules["pumps-ingest"][0]["interval"] == 300.0
    assert schedules["pumps-score"][0]["interval"] == 900.0
    assert schedules["pumps-train"][0]["cron"] == "0 3 * * 0"

    with connect(config.warehouse) as con:
        assert count_readings(con, "pumps") == 2 * 4 * 1440
        assert table_counts(con)["scores"] > 0
    champion = registry.resolve_alias(config.mlflow_tracking_uri, "pumps")
    assert champion.version == 1 and champion.threshold > 0


def test_aemon_serve_runs_the_flows_on_their_schedules(scheduling_server, tmp_path, config_writer, small_spec):
    config_path = config_writer(tmp_path / "home", extra="[streams.pumps.schedule]\ningest_every_s = 3\n")
    config = load_config(config_path)
    write_inbox(config, small_spec)
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
        finally:
            stop(process, signal.SIGINT)
    assert set(served["deployments"]) == {"pumps-ingest", "pumps-score", "pumps-train", "warehouse-maintain"}
    assert served["deployments"]["pumps-ingest"][0]["interval"] == 3.0
    assert list((Path(config.warehouse.data_path) / "lake" / "pumps").glob("part-*.parquet"))
    with connect(config.warehouse) as con:
        assert count_readings(con, "pumps") == 2 * 4 * 1440


def test_aemon_serve_without_a_server_says_what_to_do(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    result = subprocess.run([str(BIN / "aemon"), "serve"], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert "aemon serve needs a Prefect server" in result.stderr
