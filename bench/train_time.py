"""Wall time of `aemon train pumps` on the demo's home, from the shell prompt to the answer,
and where it goes.

A temporary home gets the demo (`aemon demo`: 14 days of 3 pumps, a champion); then
`aemon train pumps` runs --rounds times as the installed `aemon` does (a new Python process,
no Prefect API configured: the command starts and stops Prefect's temporary server). Each
round prints its wall and CPU seconds (user + system of the command and its children), the
1-minute load average before it, and its phases from the run's own log timestamps:
until Prefect's server answers, until the training windows are ready, until the last fit
ends, the registration and the gate, and the command's end. The goal is 30 s.

    .venv/bin/python bench/train_time.py
    .venv/bin/python bench/train_time.py --rounds 5
"""
from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

GOAL_S = 30.0
STAMP = re.compile(r"^(\d\d:\d\d:\d\d\.\d{3}) \| \w+ +\| (.*)$")
PHASES = (  # (name, a pattern of the log line that ends it)
    ("server", r"Started temporary server"),
    ("windows", r"Task run 'prepare-training-data"),
    ("fits", r"Task run 'fit-"),
    ("register", r"Task run 'register-training"),
)


def run_logged(args: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, float, str]:
    """Run a command: (wall s, CPU s of it and its children, its start as a Unix time, output)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started_at, started = time.time(), time.perf_counter()
    done = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, started_at, done.stdout + done.stderr


def phases(output: str, started_at: float, wall: float) -> dict[str, float]:
    """Seconds from the command's start to the last log line of each phase, and to its end."""
    start = datetime.fromtimestamp(started_at)
    ends: dict[str, float] = {}
    for line in output.splitlines():
        match = STAMP.match(line)
        if not match:
            continue
        clock = datetime.strptime(match.group(1), "%H:%M:%S.%f").time()
        moment = datetime.combine(start.date(), clock)
        if moment < start - timedelta(hours=12):  # the log crossed midnight
            moment += timedelta(days=1)
        for name, pattern in PHASES:
            if re.search(pattern, match.group(2)):
                ends[name] = (moment - start).total_seconds()
    ends["end"] = wall
    return ends


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    aemon = str(Path(sys.executable).with_name("aemon"))
    with tempfile.TemporaryDirectory(prefix="aemon-train-") as tmp:
        work = Path(tmp)
        env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "AEMON_CONFIG")}
        env.update(AEMON_HOME=str(work / ".aemon"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
                   PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120", PREFECT_LOGGING_LEVEL="INFO")
        print("setting up: aemon demo ...", flush=True)
        run_logged([aemon, "demo"], env, work)
        names = [name for name, _ in PHASES] + ["end"]
        print(f"\n{os.cpu_count()} CPUs; seconds from the command's start to the end of each phase")
        print(f"{'round':>5}{'load':>6}{'wall s':>8}{'CPU s':>7}  " + "".join(f"{n:>10}" for n in names))
        walls = []
        for i in range(args.rounds):
            load = os.getloadavg()[0]
            wall, cpu, started_at, output = run_logged([aemon, "train", "pumps"], env, work)
            ends = phases(output, started_at, wall)
            walls.append(wall)
            print(f"{i + 1:>5}{load:>6.2f}{wall:>8.2f}{cpu:>7.1f}  "
                  + "".join(f"{ends[n]:>10.2f}" if n in ends else f"{'-':>10}" for n in names), flush=True)
        best, median = min(walls), statistics.median(walls)
        print(f"\nbest {best:.2f} s, median {median:.2f} s of {args.rounds}; goal <= {GOAL_S:g} s: "
              f"{'met' if median <= GOAL_S else 'not met'} (median); 1-min load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
