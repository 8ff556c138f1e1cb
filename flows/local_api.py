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

import contextlib
import contextvars
import fcntl
import hashlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def start_local_api() -> None:
    """Start the ephemeral API now (one server for the whole command), one process at a
    time while the database is new; the flow runs that follow in this process use it.
    Nothing to do with a PREFECT_API_URL."""
    begin_local_api()()


def begin_local_api() -> Callable[[], None]:
    """start_local_api in two halves: the server process starts booting now, in the
    background, and the function returned waits until it answers and names it as the API
    (raising what its start raised). Between the two, this process goes on with its own
    start-up (imports, reading data) on the other core. Call the function before the first
    flow run; calling it again does nothing."""
    import prefect.main  # noqa: F401  (Prefect's logging set up, as a flow's import does: the start is logged)
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return lambda: None
    from prefect.server.api.server import SubprocessASGIServer  # imported here: not in a thread beside others

    server = SubprocessASGIServer()
    failure: list[BaseException] = []

    def start() -> None:
        try:
            _start(server)
        except BaseException as exc:  # re-raised by wait(), in the caller's thread
            failure.append(exc)

    # The thread only starts the server process and polls its health URL: it holds the
    # GIL for moments, and the settings naming the API are entered by wait(), in the
    # caller's thread (Prefect's settings are context variables).
    thread = threading.Thread(target=contextvars.copy_context().run, args=(start,), name="aemon-local-api",
                              daemon=True)
    thread.start()
    named: list[bool] = []

    def wait() -> None:
        thread.join()
        if failure:
            raise failure[0]
        if not named:
            _name_as_api(server.api_url)
            named.append(True)

    return wait


def _start(server: Any) -> None:
    """Start `server` (a SubprocessASGIServer) and wait until it answers: under an
    exclusive lock the first time this Prefect release meets the database."""
    import prefect
    from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL, PREFECT_HOME

    home = Path(PREFECT_HOME.value())
    home.mkdir(parents=True, exist_ok=True)
    marker = ready_marker(home, prefect.__version__, str(PREFECT_API_DATABASE_CONNECTION_URL.value()))
    if marker.exists():
        server.start()
    else:
        with open(home / LOCK_NAME, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the process ends
            # the server answers its health check only once its start-up (the migrations) is done
            server.start()
            marker.touch()


def _name_as_api(url: Any) -> None:
    """Make the started server the API of this process and of the processes it starts. A
    task run in a worker process (the train flow's fits, a process pool) reads its settings
    from the flow's: without a URL there, each worker started a temporary server of its own
    (three for a training of three kinds: 4 s and ~250 MB each). The server still stops
    when this process exits."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    os.environ["PREFECT_API_URL"] = str(url)
    _API_SETTINGS.enter_context(temporary_settings(updates={PREFECT_API_URL: str(url)}))
