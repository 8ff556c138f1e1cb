"""Prefect's ephemeral API, started once per machine at a time on its first use.

With no PREFECT_API_URL, every flow run starts a temporary Prefect server, which creates
and migrates Prefect's database (SQLite under PREFECT_HOME) as it starts. Two commands
started at once on a machine where that database does not exist yet would both migrate it
together, and one of them prints a traceback from the half-migrated tables. So the first
start of each Prefect release against a database is done under an exclusive file lock; a
marker file then records that the database is set up, and later starts (whose migrations
find nothing to do) take no lock and run side by side.
"""
from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from flows.locations import ConfigError

LOCK_NAME = ".aemon-api-setup.lock"
# The settings that name the started server as this process's API (entered once, kept).
_API_SETTINGS = contextlib.ExitStack()


def ready_marker(home: Path, version: str, database_url: str) -> Path:
    """The file that says this Prefect release has set up this database."""
    key = hashlib.sha256(f"{version}\n{database_url}".encode()).hexdigest()[:16]
    return home / f".aemon-api-ready-{key}"


def api_configured() -> bool:
    """Whether a Prefect API is configured (PREFECT_API_URL in the environment or the active
    Prefect profile): a server that records flow runs and acts on their events."""
    from prefect.settings import PREFECT_API_URL

    return bool(PREFECT_API_URL.value())


class LocalApiError(ConfigError):
    """Prefect's temporary server did not start: one line naming what to change (the start-up
    timeout, a configured API instead), not a traceback."""


def begin_local_api() -> Callable[[], None]:
    """Start the ephemeral API (one server for the whole command, one process at a time while
    the database is new) in two halves: the server process starts booting now, and the
    function returned waits until it answers and names it as the API of the flow runs that
    follow (raising what its start raised). Between the two, this process goes on with its
    own start-up (imports, reading data) on the other core. Call the function before the
    first flow run; calling it again does nothing. Nothing to do with a PREFECT_API_URL."""
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return lambda: None
    server = LocalServer()
    server.launch()
    named: list[bool] = []

    def wait() -> None:
        if not named:
            server.wait_ready()
            _name_as_api(server.api_url)
            named.append(True)

    return wait


class LocalServer:
    """Prefect's temporary server, started as Prefect's own SubprocessASGIServer starts it
    (uvicorn serving prefect.server.api.server:create_app on 127.0.0.1, a free port from
    8000-8999, the UI off, this process's settings in its environment) and stopped when
    this process exits. Written here rather than used from Prefect because that class lives
    in the module of Prefect's whole API app: importing it took 1.4 s on two cores (of a
    3.1 s start before the server could boot), while the server process imports the app
    anyway. Launched before this process imports Prefect's engine, the server boots on one
    core while the command's imports run on the other."""

    PORTS = range(8000, 9000)
    PORT_IN_USE = 3  # uvicorn's exit status when its port is taken between the check and the bind

    def __init__(self) -> None:
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._lock: IO[str] | None = None
        self._marker: Path | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def launch(self) -> None:
        """Start the server process. The first start of this Prefect release against its
        database takes an exclusive file lock, held until the server answers (its
        migrations done)."""
        import prefect
        from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL, PREFECT_HOME

        home = Path(PREFECT_HOME.value())
        home.mkdir(parents=True, exist_ok=True)
        marker = ready_marker(home, prefect.__version__, str(PREFECT_API_DATABASE_CONNECTION_URL.value()))
        if not marker.exists():
            self._lock = open(home / LOCK_NAME, "a")  # noqa: SIM115  (held past this call: closed by wait_ready)
            fcntl.flock(self._lock, fcntl.LOCK_EX)  # released by wait_ready, or when the process ends
            self._marker = marker
        self._spawn()
        atexit.register(self.stop)

    def _spawn(self) -> None:
        import prefect
        from prefect.settings import get_current_settings

        self.port = _free_port(self.PORTS)
        env = {**os.environ, **get_current_settings().to_environment_variables(exclude_unset=True),
               "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--app-dir", str(prefect.__module_path__.parent),
             "--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(self.port),
             "--log-level", "error", "--lifespan", "on"],
            env=env,
        )

    def wait_ready(self) -> None:
        """Wait until the server answers its health check (PREFECT_SERVER_EPHEMERAL_STARTUP_
        TIMEOUT_SECONDS at most), relaunching on another port if its port was taken."""
        import httpx
        import prefect.main  # noqa: F401  (Prefect's logging set up, as a flow's import does: the start is logged)
        from prefect.logging import get_logger
        from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS

        assert self.process is not None, "launch() first"
        limit = float(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value())
        deadline = time.monotonic() + limit
        with httpx.Client() as client:
            while True:
                status = self.process.poll()
                if status == self.PORT_IN_USE:
                    self._spawn()
                elif status is not None:
                    raise LocalApiError(f"Prefect's temporary server exited with status {status} while starting "
                                        f"on 127.0.0.1:{self.port} (its messages are above); or set PREFECT_API_URL "
                                        "to a running Prefect server")
                try:
                    if client.get(f"{self.api_url}/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise LocalApiError(f"Prefect's temporary server did not answer on 127.0.0.1:{self.port} within "
                                        f"{limit:g} s: raise PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, or "
                                        "set PREFECT_API_URL to a running Prefect server")
                time.sleep(0.05)
        if self._marker is not None:
            self._marker.touch()
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        get_logger().info("Started temporary server on http://127.0.0.1:%d", self.port)

    def stop(self) -> None:
        """Stop the server (at this process's exit): SIGTERM, then SIGKILL after 5 s."""
        if self.process is None:
            return
        process, self.process = self.process, None
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _free_port(ports: range) -> int:
    """A port of `ports` that 127.0.0.1 can bind now, chosen at random (as Prefect does: two
    commands starting at once rarely pick the same one, and the loser relaunches)."""
    for _ in range(20):
        port = random.choice(ports)
        with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise LocalApiError(f"no free port for Prefect's temporary server in {ports.start}-{ports.stop - 1} on "
                        "127.0.0.1; set PREFECT_API_URL to a running Prefect server")


def _name_as_api(url: Any) -> None:
    """Make the started server the API of this process and of the processes it starts. A
    task run in a worker process (the train flow's fits, a process pool) reads its settings
    from the flow's: without a URL there, each worker started a temporary server of its own
    (three for a training of three kinds: 4 s and ~250 MB each). The server still stops
    when this process exits."""
    from prefect.context import refresh_global_settings_context
    from prefect.settings import PREFECT_API_URL, temporary_settings

    os.environ["PREFECT_API_URL"] = str(url)
    # and of this process's other threads (Prefect's log and event forwarding among them),
    # which read the global settings, made from the environment: without this, one of them
    # started a second temporary server of its own on its first call
    refresh_global_settings_context()
    # No flow run heartbeats: they tell a lasting server that a run's process is alive, and
    # this server ends with the command; each flow run's end waited up to 1 s for its
    # heartbeat thread's sleep.
    _API_SETTINGS.enter_context(temporary_settings(updates={PREFECT_API_URL: str(url),
                                                            "flows.heartbeat_frequency": None}))
