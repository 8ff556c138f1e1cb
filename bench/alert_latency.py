"""Alert latency of `aemon serve`: from a file landing in the inbox to (a) its rows in the
lake, (b) a new row in the `incidents` table and (c) the `aemon.incident.opened` event, with
scoring triggered by the ingest's `aemon.readings.ingested` event (mode `on`) and by the
score timer alone (mode `off`, `score_on_ingest = false`), measured in the same run.

Set-up: a real `prefect server` on 127.0.0.1 with a temporary PREFECT_HOME; a home whose
`pumps` stream holds 3 days of clean synthetic readings of 2 pumps (features.synthetic),
ingested, trained (the MLP autoencoder, few epochs) and scored. Then `aemon serve` runs
with ingest every 30 s and score every 60 s, and each drop is the next 2 hours of the same
pumps (one file, written to a hidden name and renamed into the inbox) with a spike injected
into pump-01's motor current 15 minutes in, sized as features.synthetic sizes its spikes
(beyond the clean range by 12 noise sigmas or 1.5 x the sensor's spread). Drops land at a
random phase of the ingest timer (seeded). (a) and (b) are polled every 0.5 s with the
warehouse's read-only query (`aemon sql`'s path); (c) is the event's own `occurred` time,
read back through the Prefect client's events API, "not seen" when none came within the
time limit. PREFECT_RUNNER_POLL_FREQUENCY (how often `serve` looks for runs to start,
Prefect's default 10 s) is --poll (default 2 s): a triggered run waits for that poll. The
server's PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS (how long a run that found
its deployment's slot taken waits before trying again; Prefect's default 30 s) is
--slot-wait (default 5 s): a triggered score run that meets a scheduled one waits that long.

    .venv/bin/python bench/alert_latency.py                    # 3 drops per mode, ~15 min
    .venv/bin/python bench/alert_latency.py --drops 5 --json
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from features.synthetic import NOISE_STD, SENSORS, SyntheticSpec, generate_stream
from monitoring.store.connection import Warehouse, query_rows

BIN = Path(sys.executable).parent
STREAM = "pumps"
HISTORY_DAYS = 3.0
DROP_HOURS = 2.0
SPIKE_AT_MIN, SPIKE_ASSET, SPIKE_SENSOR = 15, "pump-01", "motor_current"
INGEST_EVERY_S, SCORE_EVERY_S = 30, 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(process: subprocess.Popen, sig: int = signal.SIGINT, timeout: float = 60) -> None:
    """Signal a process group started with start_new_session; kill it if it lingers."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, sig)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout)


@contextlib.contextmanager
def prefect_server(work: Path, slot_wait_s: float):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({"PREFECT_HOME": str(work / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": str(slot_wait_s)})
    api = f"http://127.0.0.1:{port}/api"
    with open(work / "server.log", "w") as log:
        process = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port",
                                    str(port)], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 180
            while True:
                try:
                    with urllib.request.urlopen(f"{api}/health", timeout=2):
                        break
                except OSError as err:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"prefect server did not start; see {work / 'server.log'}") from err
                    time.sleep(0.5)
            yield {**env, "PREFECT_API_URL": api}
        finally:
            stop(process, signal.SIGTERM)


def write_config(home: Path, score_on_ingest: bool) -> Path:
    sensors = ", ".join(f'"{s}"' for s in SENSORS)
    path = home / "aemon.toml"
    path.write_text(
        f'home = "{home.as_posix()}"\n\n[streams.{STREAM}]\nsensors = [{sensors}]\nlabel_columns = ["label"]\n\n'
        f'[streams.{STREAM}.detectors]\nkinds = ["mlp_ae"]\nepochs = 15\nn_threads = 1\n\n'
        f'[streams.{STREAM}.schedule]\ningest_every_s = {INGEST_EVERY_S}\nscore_every_s = {SCORE_EVERY_S}\n'
        f'score_on_ingest = {"true" if score_on_ingest else "false"}\n'
    )
    return path


def aemon(env: dict, *args: str, timeout: float = 900) -> None:
    result = subprocess.run([str(BIN / "aemon"), *args], env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"aemon {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")


def with_spike(drop: pd.DataFrame, clean: pd.DataFrame) -> pd.DataFrame:
    """The drop with a 3-reading spike in SPIKE_ASSET's SPIKE_SENSOR, SPIKE_AT_MIN minutes in."""
    drop = drop.copy()
    history = clean.loc[clean["asset"] == SPIKE_ASSET, SPIKE_SENSOR]
    jump = max(12 * NOISE_STD[SPIKE_SENSOR], 1.5 * float(history.std()))
    rows = drop.index[drop["asset"] == SPIKE_ASSET][SPIKE_AT_MIN:SPIKE_AT_MIN + 3]
    drop.loc[rows, SPIKE_SENSOR] = float(history.max()) + jump + np.random.default_rng(0).normal(
        0, NOISE_STD[SPIKE_SENSOR], len(rows))
    drop.loc[rows, "label"] = 1
    return drop


def land(frame: pd.DataFrame, inbox: Path, name: str) -> float:
    """Write to a hidden name, rename into the inbox (the ingest never sees half a file); the wall time it landed."""
    temporary = inbox / f".{name}.part"
    frame.to_csv(temporary, index=False, date_format="%Y-%m-%dT%H:%M:%S")
    os.replace(temporary, inbox / name)
    return time.time()


class PrefectApi:
    """The Prefect server's API through the Prefect client, in this process (imported once
    PREFECT_API_URL names the server)."""

    def __init__(self, env: dict):
        for key in ("PREFECT_API_URL", "PREFECT_HOME"):
            os.environ[key] = env[key]
        from prefect.client.orchestration import get_client

        self.client = get_client(sync_client=True)
        self.client.__enter__()

    def close(self) -> None:
        self.client.__exit__(None, None, None)

    def events_since(self, name: str, since: datetime, resource_prefix: str) -> list[datetime]:
        """When events named `name` about a resource starting with `resource_prefix` occurred since `since`."""
        from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter

        page = self.client.read_events(EventFilter(occurred=EventOccurredFilter(since=since),
                                                   event=EventNameFilter(name=[name])), limit=50)
        return [e.occurred for e in page.events if e.resource.id.startswith(resource_prefix)]

    def runs_since(self, flow: str, since: datetime) -> list:
        """Finished runs of `flow` that started after `since`."""
        from prefect.client.schemas.filters import (
            FlowFilter,
            FlowFilterName,
            FlowRunFilter,
            FlowRunFilterStartTime,
            FlowRunFilterState,
            FlowRunFilterStateType,
        )
        from prefect.client.schemas.objects import StateType

        return self.client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow])),
            flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(after_=since),
                                          state=FlowRunFilterState(type=FlowRunFilterStateType(
                                              any_=[StateType.COMPLETED, StateType.FAILED]))),
            limit=200)

    def overdue(self, late_s: float = 20.0) -> int:
        """Runs still waiting (scheduled, or for their deployment's slot) `late_s` after they were due."""
        from prefect.client.schemas.filters import (
            FlowRunFilter,
            FlowRunFilterExpectedStartTime,
            FlowRunFilterState,
            FlowRunFilterStateType,
        )
        from prefect.client.schemas.objects import StateType

        due = datetime.now(UTC) - timedelta(seconds=late_s)
        return len(self.client.read_flow_runs(flow_run_filter=FlowRunFilter(
            expected_start_time=FlowRunFilterExpectedStartTime(before_=due),
            # not PENDING: a run a stopped serve process left pending is run by no one
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))),
            limit=200))

    def score_runs(self) -> dict[str, int]:
        """score-stream runs by how they started: the schedule, or the trigger; and those cancelled."""
        from prefect.client.schemas.filters import FlowFilter, FlowFilterName

        runs = self.client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["score-stream"])),
                                          limit=200)
        return {"scheduled": sum(1 for r in runs if r.auto_scheduled),
                "triggered": sum(1 for r in runs if not r.auto_scheduled),
                "cancelled": sum(1 for r in runs if r.state is not None and r.state.type.value == "CANCELLED")}


def count(warehouse: Warehouse, sql: str, params: list) -> int:
    return int(query_rows(warehouse, sql, params)[1][0][0])


def measure_drop(api: PrefectApi, warehouse: Warehouse, inbox: Path, drop: pd.DataFrame, name: str,
                 timeout: float) -> dict:
    start, end = drop["timestamp"].min(), drop["timestamp"].max()
    landed = land(drop, inbox, name)
    since = datetime.fromtimestamp(landed, UTC) - timedelta(seconds=1)
    seen: dict[str, float | None] = {"lake": None, "incident": None, "event": None, "ingested_event": None}
    load = os.getloadavg()[0]
    while time.time() - landed < timeout:
        now = time.time() - landed
        if seen["lake"] is None and count(warehouse, 'SELECT count(*) FROM lake."pumps" WHERE timestamp BETWEEN ? '
                                          'AND ?', [start, end]) == len(drop):
            seen["lake"] = now
        if seen["incident"] is None and count(warehouse, "SELECT count(*) FROM incidents WHERE stream = ? AND "
                                              'asset = ? AND "end" BETWEEN ? AND ?',  # its windows reach back
                                              [STREAM, SPIKE_ASSET, start, end]) > 0:
            seen["incident"] = now
        for key, event in (("event", "aemon.incident.opened"), ("ingested_event", "aemon.readings.ingested")):
            if seen[key] is None and seen["lake"] is not None:
                found = api.events_since(event, since, f"aemon.stream.{STREAM}")
                if found:
                    seen[key] = min(t.timestamp() for t in found) - landed
        if seen["incident"] is not None and (seen["event"] is not None or now - seen["incident"] > 15):
            break  # the event, if the score flow emits one, comes with the incident
        time.sleep(0.5)
    return {**seen, "load": load}


def wait_until_served(api: PrefectApi, serve: subprocess.Popen, log: Path, timeout: float = 600) -> None:
    """Until runs of both flows that this serve process started have finished and no run is
    overdue. (A serve process stopped while submitting a run leaves the deployment's
    concurrency slot taken until its lease expires, 300 s by default: the runs of the next
    process queue up behind it until then.)"""
    since, deadline = datetime.now(UTC), time.monotonic() + timeout
    while not (api.runs_since("ingest-readings", since) and api.runs_since("score-stream", since)
               and api.overdue() == 0):
        if serve.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"aemon serve did not finish an ingest and a score run; see {log}")
        time.sleep(2)


def phases(runs: list) -> dict[str, float | None]:
    """Median seconds of a flow's runs from due (a trigger's run is due when created) to running
    (the runner's poll, a process start) and from running to done."""
    waits = [(r.start_time - r.expected_start_time).total_seconds() for r in runs if r.start_time]
    durations = [(r.end_time - r.start_time).total_seconds() for r in runs if r.start_time and r.end_time]
    return {"to_running_s": statistics.median(waits) if waits else None,
            "running_s": statistics.median(durations) if durations else None, "n": len(runs)}


def run_mode(mode: str, env: dict, api: PrefectApi, home: Path, warehouse: Warehouse, inbox: Path,
             drops: list[pd.DataFrame], timeout: float, rng: random.Random, work: Path) -> list[dict]:
    config = write_config(home, score_on_ingest=mode == "on")
    log = work / f"serve-{mode}.log"
    with open(log, "w") as out:
        serve = subprocess.Popen([str(BIN / "aemon"), "serve", "--config", str(config)], env=env, stdout=out,
                                 stderr=subprocess.STDOUT, start_new_session=True)
    results = []
    try:
        wait_until_served(api, serve, log)
        runs_before, measured_from = api.score_runs(), datetime.now(UTC)
        for i, drop in enumerate(drops):
            time.sleep(rng.uniform(0, INGEST_EVERY_S))  # land at a random phase of the ingest timer
            result = measure_drop(api, warehouse, inbox, drop, f"drop-{mode}-{i:02d}.csv", timeout)
            results.append({"mode": mode, "drop": i, **result})
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
        runs_after = api.score_runs()
        scores = api.runs_since("score-stream", measured_from)
        breakdown = {"ingest": phases(api.runs_since("ingest-readings", measured_from)),
                     "score (schedule)": phases([r for r in scores if r.auto_scheduled]),
                     "score (trigger)": phases([r for r in scores if not r.auto_scheduled])}
        for r in results:
            r["score_runs"] = {k: runs_after[k] - runs_before[k] for k in runs_after}
            r["phases"] = breakdown
    finally:
        stop(serve)
    return results


def summary(results: list[dict], key: str) -> str:
    values = [r[key] for r in results if r[key] is not None]
    missing = len(results) - len(values)
    if not values:
        return "not seen"
    text = f"best {min(values):5.1f} s  median {statistics.median(values):5.1f} s"
    return text + (f"  ({missing} not seen)" if missing else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drops", type=int, default=3, help="drops per mode")
    parser.add_argument("--modes", default="on,off", help="on: score triggered by ingest events; off: timer only")
    parser.add_argument("--timeout", type=float, default=150.0, help="seconds to wait for a drop's incident")
    parser.add_argument("--poll", type=int, default=2, help="PREFECT_RUNNER_POLL_FREQUENCY of aemon serve, seconds")
    parser.add_argument("--slot-wait", type=float, default=5.0,
                        help="the server's PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS (Prefect: 30)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    modes = args.modes.split(",")
    work = args.work or Path(tempfile.mkdtemp(prefix="aemon-alert-latency-"))
    work.mkdir(parents=True, exist_ok=True)
    home = work / "home"
    home.mkdir(exist_ok=True)
    load_start = os.getloadavg()

    n_drops = args.drops * len(modes)
    days = HISTORY_DAYS + n_drops * DROP_HOURS / 24
    readings = generate_stream(SyntheticSpec(n_assets=2, days=days, faults_per_kind=0, seed=args.seed)).readings
    cut = readings["timestamp"].min() + pd.Timedelta(days=HISTORY_DAYS)
    history, live = readings[readings["timestamp"] < cut], readings[readings["timestamp"] >= cut]
    slot = ((live["timestamp"] - cut) // pd.Timedelta(hours=DROP_HOURS)).to_numpy()
    drops = [with_spike(live[slot == k], history) for k in range(n_drops)]

    started = time.perf_counter()
    with prefect_server(work, args.slot_wait) as server:
        env = {**server, "AEMON_CONFIG": str(write_config(home, True)),
               "PREFECT_RUNNER_POLL_FREQUENCY": str(args.poll), "PREFECT_LOGGING_LEVEL": "WARNING"}
        inbox = home / "inbox" / STREAM
        inbox.mkdir(parents=True, exist_ok=True)
        history.to_csv(inbox / "history.csv", index=False, date_format="%Y-%m-%dT%H:%M:%S")
        for command in (("ingest", STREAM), ("train", STREAM), ("score", STREAM)):
            aemon(env, *command)
        setup_s = time.perf_counter() - started
        warehouse = Warehouse.at(home)
        rng = random.Random(args.seed)
        api = PrefectApi(env)
        results = []
        try:
            for m, mode in enumerate(modes):
                mine = drops[m * args.drops:(m + 1) * args.drops]
                results += run_mode(mode, env, api, home, warehouse, inbox, mine, args.timeout, rng, work)
        finally:
            api.close()

    if args.json:
        print(json.dumps({"results": results, "load_start": load_start, "setup_s": setup_s}, indent=1))
        return
    print(f"alert latency, aemon serve: ingest every {INGEST_EVERY_S} s, score every {SCORE_EVERY_S} s, "
          f"PREFECT_RUNNER_POLL_FREQUENCY={args.poll}; {args.drops} drops per mode; "
          f"set-up {setup_s:.0f} s; load average at start {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}")
    print(f"{'mode':5} {'drop':>4} {'lake s':>7} {'incident s':>11} {'incident event s':>17} "
          f"{'ingest event s':>15} {'load':>5}")
    fmt = lambda v: "not seen" if v is None else f"{v:.1f}"  # noqa: E731
    for r in results:
        print(f"{r['mode']:5} {r['drop']:4d} {fmt(r['lake']):>7} {fmt(r['incident']):>11} {fmt(r['event']):>17} "
              f"{fmt(r['ingested_event']):>15} {r['load']:5.2f}")
    for mode in modes:
        mine = [r for r in results if r["mode"] == mode]
        runs = mine[-1]["score_runs"] if mine else {}
        print(f"{mode:4} lake: {summary(mine, 'lake')}; incident: {summary(mine, 'incident')}; "
              f"aemon.incident.opened: {summary(mine, 'event')}; score runs {runs}")
        for flow, p in (mine[-1]["phases"] if mine else {}).items():
            if p["n"]:
                print(f"     {flow:16} runs {p['n']:3d}: due -> running {p['to_running_s']:5.1f} s, "
                      f"running -> done {p['running_s']:5.1f} s (medians)")
    print(f"load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}; work folder {work}")


if __name__ == "__main__":
    main()
