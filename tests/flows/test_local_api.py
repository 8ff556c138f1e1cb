"""aemon's start of Prefect's temporary server (flows.local_api.LocalServer), in a process of
its own with no Prefect settings of this test session: a taken port is given up for
another, the server answers before it is named as the API, flow runs against it send no
heartbeats, and it stops when the command's process exits."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent("""
    import socket
    import httpx
    import flows.local_api as local_api

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    busy = taken.getsockname()[1]
    ports = iter([busy, local_api._free_port(range(8000, 9000))])
    local_api._free_port = lambda _ports: next(ports)  # the first pick is taken when uvicorn binds

    ready = local_api.begin_local_api()
    ready()
    from prefect.settings import PREFECT_API_URL, get_current_settings
    from prefect import flow

    @flow
    def hello() -> int:
        return 1

    assert hello() == 1
    print("busy", busy)
    print("api", PREFECT_API_URL.value())
    print("heartbeat", get_current_settings().flows.heartbeat_frequency)
    print("health", httpx.get(PREFECT_API_URL.value() + "/health").status_code)
    import os
    from pathlib import Path
    children = [d.name for d in Path("/proc").iterdir() if d.name.isdigit() and (d / "stat").exists()
                and (d / "stat").read_text().split(") ")[-1].split()[1] == str(os.getpid())
                and b"uvicorn" in (d / "cmdline").read_bytes()]
    print("pid", ",".join(children), flush=True)
""")


def lines(out: str) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in out.splitlines() if line.split(" ", 1)[0] in
                {"busy", "api", "heartbeat", "health", "pid"})


@pytest.mark.slow
def test_the_temporary_server_moves_off_a_taken_port_and_stops_with_the_command(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AEMON_"))}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120", PREFECT_LOGGING_LEVEL="INFO",
               PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    out = lines(done.stdout)
    assert out["api"].startswith("http://127.0.0.1:") and out["api"].endswith("/api")
    assert f":{out['busy']}/" not in out["api"]  # uvicorn could not bind the taken port: relaunched elsewhere
    assert out["health"] == "200"
    assert out["heartbeat"] == "None"  # nothing watches a temporary server's heartbeats
    text = done.stdout + done.stderr
    assert text.count("Started temporary server") == 1 and "Starting temporary server" not in text
    assert any((tmp_path / "prefect").glob(".aemon-api-ready-*"))  # the new database marked as set up
    servers = out["pid"].split(",")
    assert len(servers) == 1, servers  # one uvicorn child: the one on the taken port exited
    server = Path(f"/proc/{servers[0]}")
    deadline = time.monotonic() + 10  # stopped at the command's exit
    while server.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not server.exists()


@pytest.mark.slow
def test_a_server_that_does_not_answer_in_time_is_one_line_naming_the_setting(tmp_path):
    config = tmp_path / "aemon.toml"
    config.write_text(f'home = "{(tmp_path / "home").as_posix()}"\n[streams.s]\nsensors = ["a"]\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AEMON_"))}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="1",  # a new database takes longer to set up
               PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    done = subprocess.run([sys.executable, "-c", "from flows.cli import main; main()", "ingest", "s", "--flow-run",
                           "--config", str(config)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "did not answer on 127.0.0.1:" in done.stderr
    assert "raise PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS" in done.stderr
