"""Wall time of the commands a user waits for, from the shell prompt to the answer.

A temporary home gets the demo (`aemon demo --days 4 --assets 2`: a lake, a champion in
MLflow, incidents); then each command runs as the installed `aemon` does (a new Python
process), --rounds times, interleaved, and the best and median wall times are printed next
to the floor measured in the same run: a Python process that imports DuckDB and answers the
same SQL from the same warehouse (the least any command that reads the warehouse can cost).

`aemon ingest` is timed on a new 1,147-row file each round, in both modes: in-process (the
default with no Prefect API configured) and `--flow-run` (Prefect's temporary local API,
started and stopped by the command); `aemon score` (a flow: the new file's windows) too.
With `--server`, the flow commands are timed again against one `prefect server` on
127.0.0.1 started by the bench (PREFECT_API_URL set, as README "Set-up" describes): the API
every command then reuses instead of starting its own.

    .venv/bin/python bench/cli_startup.py
    .venv/bin/python bench/cli_startup.py --rounds 3 --server
"""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

GOALS = {"sql": 1.0, "models list": 1.0, "incidents list": 1.0, "ingest (in-process)": 3.0}
SQL = "SELECT count(*) FROM anomalies"


def run(args: list[str], env: dict[str, str], cwd: Path, ok: tuple[int, ...] = (0,)) -> float:
    started = time.perf_counter()
    done = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode not in ok:
        raise SystemExit(f"{' '.join(args)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return seconds


def floor_command(home: Path) -> list[str]:
    """A bare Python process: DuckDB, the warehouse attached read-only, the same query."""
    from monitoring.store.connection import Warehouse, client_sql

    attach = ";".join(client_sql(Warehouse.at(home), offline=True))
    code = f"import duckdb; c = duckdb.connect(); c.execute({attach!r}); print(c.execute({SQL!r}).fetchall())"
    return [sys.executable, "-c", code]


def new_file(source: pd.DataFrame, inbox: Path, round_: int) -> None:
    """1,147 readings (19 h) of one pump, moved a day further than the previous file."""
    frame = source.head(1147).copy()
    frame["timestamp"] = pd.to_datetime(frame["timestamp"]) + pd.Timedelta(days=round_ + 5)
    frame.to_csv(inbox / f"new-{round_:03d}.csv", index=False)


@contextlib.contextmanager
def prefect_server(work: Path, env: dict[str, str]) -> Iterator[str]:
    """A `prefect server` on a free port of 127.0.0.1 for the bench; yields its API URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log_path = work / "prefect-server.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen([str(Path(sys.executable).with_name("prefect")), "server", "start", "--host",
                                    "127.0.0.1", "--port", str(port)], env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    api = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{api}/health", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"prefect server did not start:\n{log_path.read_text()}") from None
                time.sleep(0.5)
        yield api
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--server", action="store_true", help="also time the flow commands against a prefect server")
    args = parser.parse_args()
    aemon = str(Path(sys.executable).with_name("aemon"))
    with tempfile.TemporaryDirectory(prefix="aemon-startup-") as tmp:
        work = Path(tmp)
        home = work / ".aemon"
        env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "AEMON_CONFIG")}
        env.update(AEMON_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
                   PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120")
        print("setting up: aemon demo --days 4 --assets 2 ...", flush=True)
        run([aemon, "demo", "--days", "4", "--assets", "2"], env, work)
        inbox = home / "inbox" / "pumps"
        source = pd.read_csv(next(inbox.glob("*.csv")))
        commands: dict[str, list[str] | None] = {
            "python + duckdb (floor)": floor_command(home),
            "aemon --help": [aemon, "--help"],
            "sql": [aemon, "sql", SQL],
            "models list": [aemon, "models", "list"],
            "incidents list": [aemon, "incidents", "list"],
            "ingest (in-process)": None,
            "ingest --flow-run": None,
            "score (a flow)": [aemon, "score", "pumps"],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        load = os.getloadavg()[0]
        files = iter(range(10_000))

        def time_rounds(commands: dict[str, list[str] | None], env: dict[str, str], label: str = "") -> None:
            for _ in range(args.rounds):
                for name, command in commands.items():
                    if command is None:  # ingest: a new file each time
                        new_file(source, inbox, next(files))
                        extra = [] if name == "ingest (in-process)" else ["--flow-run"]
                        command = [aemon, "ingest", "pumps", *extra]
                    times.setdefault(name + label, []).append(run(command, env, work))

        time_rounds(commands, env)
        if args.server:
            with prefect_server(work, {**env, "PREFECT_HOME": str(work / "prefect-home")}) as api:
                flows = {"ingest --flow-run": None, "score (a flow)": [aemon, "score", "pumps"]}
                time_rounds(flows, {**env, "PREFECT_API_URL": api}, " [server]")
        print(f"\n1-min load average: {load:.2f} before, {os.getloadavg()[0]:.2f} after, on {os.cpu_count()} CPUs; "
              f"{args.rounds} rounds, interleaved")
        floor = min(times["python + duckdb (floor)"])
        print(f"{'command':<32}{'best s':>8}{'median s':>10}{'x floor':>9}{'goal s':>8}  met (median)")
        for name, seconds in times.items():
            goal = GOALS.get(name)
            best, median = min(seconds), statistics.median(seconds)
            verdict = "" if goal is None else ("yes" if median <= goal else "no")
            print(f"{name:<32}{best:>8.2f}{median:>10.2f}{best / floor:>9.2f}"
                  f"{'' if goal is None else f'<= {goal:g}':>8}  {verdict}")


if __name__ == "__main__":
    main()
