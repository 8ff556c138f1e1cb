"""Scale-out: N assets x 8 sensors at 1 Hz for one hour, scored on the default runner and
on a Dask cluster of 2 workers, and the warehouse's write throughput with concurrent writers.

One run:

(a) ingest: the readings (N x 3,600 rows, one Parquet file per 100 assets) ingested by
    `aemon ingest` in each home: in-process (the default with no Prefect API: no flow run),
    then as a flow run on each runner: kind = "default" (the files one after the other),
    kind = "dask" (a LocalCluster started by the command: the files read, validated and
    staged in parallel tasks, committed in order by the flow) and kind = "dask" with
    `address` (the bench's cluster, below). Given: the command's wall time and its ingest
    step (from the command's log: the inbox scanned -> the last file committed; a local
    cluster's start is in the step), rows/s of each, and the peak memory of each process.
(b) train once (`aemon train`: one MLP autoencoder, 2 epochs), then `aemon score` in each
    home: [runner] kind = "default" (one task, one transaction), kind = "dask" (a
    LocalCluster of --workers processes x 1 thread started by the command, assets spread 4
    tasks a thread) and kind = "dask" with `address` (the same cluster, started by the
    bench before the commands: warm workers, as a long-running cluster's). Each
    command is run twice (the second finds nothing new). Given: the command's wall time and
    its scoring step (from the command's log: the champion loaded -> the scoring task, or
    the groups' results combined, finished; a local cluster's start is in the step).
(c) peak memory: the resident set of the command's process and of each process it starts
    (Prefect's API server, each Dask worker), sampled every 0.1 s.
(d) store write throughput: 1, 2 and 4 processes each committing 1, 25 or 250 assets'
    scored windows at a time (a scoring task's commit: scores, anomalies, watermarks) into
    one warehouse; rows/s and commits/s of all writers together. Writers serialise on the
    warehouse's write lock (a SQLite catalog admits one writer), so this is the ceiling of
    a fan-out's commits, whatever the workers.

    PYTHONPATH=. .venv/bin/python bench/dask_scale.py --assets 20
    PYTHONPATH=. .venv/bin/python bench/dask_scale.py --assets 1000 --workers 2 --skip-writers
    PYTHONPATH=. .venv/bin/python bench/dask_scale.py --assets 1000 --workers 2   # the target size
"""
from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

from monitoring.store.connection import Warehouse, connect, table_counts, write
from monitoring.store.results import write_window_results

STREAM = "plant"
SENSORS = [f"s{i}" for i in range(8)]
SECONDS = 3600
WINDOW = (30, 10)  # size, stride: 357 windows per asset-hour
REPO = Path(__file__).resolve().parents[1]


def readings(n_assets: int, seed: int = 0) -> pd.DataFrame:
    """N assets x 8 sensors, 1 Hz for one hour: slow sines with noise, one phase per asset."""
    rng = np.random.default_rng(seed)
    t = np.arange(SECONDS)
    times = pd.Timestamp("2026-03-02T00:00:00") + pd.to_timedelta(t, unit="s")
    frames = []
    for a in range(n_assets):
        phase = rng.uniform(0, 2 * np.pi, size=len(SENSORS))
        values = np.sin(2 * np.pi * t[:, None] / 600 + phase) + 0.05 * rng.standard_normal((SECONDS, len(SENSORS)))
        frame = pd.DataFrame(values.astype("float64"), columns=SENSORS)
        frame.insert(0, "asset", f"asset-{a:05d}")
        frame.insert(0, "timestamp", times)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def write_home(root: Path, name: str, runner: str, workers: int, address: str = "") -> Path:
    home = root / name
    (home / "inbox" / STREAM).mkdir(parents=True)
    shared = root / "mlflow"
    shared.mkdir(exist_ok=True)
    sensors = ", ".join(f'"{s}"' for s in SENSORS)
    text = (f'home = "{home.as_posix()}"\ntracking_uri = "sqlite:///{(shared / "mlflow.db").as_posix()}"\n'
            f'artifact_root = "{(shared / "artifacts").as_uri()}"\n\n'
            f"[streams.{STREAM}]\nsensors = [{sensors}]\n\n"
            f"[streams.{STREAM}.window]\nsize = {WINDOW[0]}\nstride = {WINDOW[1]}\ninterval_s = 1.0\n\n"
            f'[streams.{STREAM}.detectors]\nkinds = ["mlp_ae"]\nepochs = 2\nn_threads = 1\n')
    if runner == "dask" and address:
        text += f'\n[runner]\nkind = "dask"\naddress = "{address}"\n'
    elif runner == "dask":
        text += f'\n[runner]\nkind = "dask"\nn_workers = {workers}\nthreads_per_worker = 1\n'
    path = home / "aemon.toml"
    path.write_text(text)
    return path


class Peaks:
    """Peak resident memory of a process and of each process it starts, sampled in a thread."""

    def __init__(self, pid: int):
        self.root = psutil.Process(pid)
        self.peaks: dict[int, tuple[str, int]] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while not self.stop.is_set():
            try:
                processes = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                return
            for p in processes:
                try:
                    rss = p.memory_info().rss
                    label = self._label(p)
                except psutil.Error:
                    continue
                old = self.peaks.get(p.pid, (label, 0))
                # an exiting process's command line reads empty: it keeps the label it had
                self.peaks[p.pid] = (old[0] or label, max(old[1], rss))
            time.sleep(0.1)

    def _label(self, p: psutil.Process) -> str:
        if p.pid == self.root.pid:
            return "command"
        line = " ".join(p.cmdline())
        if "resource_tracker" in line:
            return "multiprocessing resource tracker"
        if "spawn_main" in line:
            return "dask worker"
        if "uvicorn" in line or "prefect" in line:
            return "prefect api"
        return line[:60]

    def finish(self) -> dict[str, list[int]]:
        self.stop.set()
        self.thread.join()
        grouped: dict[str, list[int]] = {}
        for label, rss in self.peaks.values():
            if not label or label.startswith("file -b"):  # unreadable, or a short-lived `file` run by a library
                continue
            grouped.setdefault(label, []).append(rss)
        return grouped


def aemon(args: list[str], config: Path, watch: bool = False) -> tuple[float, str, dict[str, list[int]]]:
    """Run an aemon command as the installed one runs: (seconds, its output, peak memory)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "AEMON_CONFIG": str(config)}
    env.pop("AEMON_HOME", None)
    command = [sys.executable, "-c", "from flows.cli import main; main()", *args, "--config", str(config)]
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=config.parent, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    peaks = Peaks(process.pid) if watch else None
    output, _ = process.communicate()
    seconds = time.perf_counter() - started
    memory = peaks.finish() if peaks else {}
    if process.returncode != 0:
        raise SystemExit(f"aemon {' '.join(args)} exited {process.returncode}:\n{output[-3000:]}")
    return seconds, output, memory


FINISHED = re.compile(r"^(\d\d:\d\d:\d\d\.\d+) \| INFO\s+\| Task run '([a-z\-]+?)-[0-9a-z]*' - Finished in state "
                      "Completed", re.M)


def scoring_seconds(output: str) -> float:
    """From the end of the champion's load to the end of the scoring (the one task, or the
    groups' results combined), from the command's log: the scoring itself, a Dask cluster's
    start included, without Python's and Prefect's start and stop."""
    ends = {name: pd.Timestamp(f"2000-01-01 {at}") for at, name in FINISHED.findall(output)}
    last = ends.get("combine-scoring", ends.get("score-windows"))
    if "load-champion" not in ends or last is None:
        return float("nan")
    return (last - ends["load-champion"]).total_seconds()


def ingest_seconds(output: str) -> float:
    """From the inbox scanned to the last file committed, from the command's log (a flow run)."""
    ends = {name: pd.Timestamp(f"2000-01-01 {at}") for at, name in FINISHED.findall(output)}
    last = ends.get("commit-files", ends.get("ingest-file"))
    if "scan-inbox" not in ends or last is None:
        return float("nan")
    return (last - ends["scan-inbox"]).total_seconds()


def show_memory(kind: str, groups: dict[str, list[int]]) -> str:
    shown = ", ".join(f"{label} {' / '.join(f'{r / 2**20:.0f}' for r in sorted(rss, reverse=True))}"
                      for label, rss in sorted(groups.items()))
    return f"    {kind:<13} {shown}"


def windows_of(n_assets: int) -> int:
    return n_assets * ((SECONDS - WINDOW[0]) // WINDOW[1] + 1)


def scored_windows(home_config: Path) -> int:
    home = home_config.parent
    with connect(Warehouse.at(home)) as con:
        return table_counts(con)["scores"]


# -- (d) concurrent writers ------------------------------------------------------------------

def window_rows(assets: list[str], n: int) -> pd.DataFrame:
    """`n` scored windows of each of `assets` (one in a thousand flagged)."""
    one = pd.Timestamp("2026-03-02T00:00:00") + pd.to_timedelta(np.arange(n) * WINDOW[1], unit="s")
    start = pd.DatetimeIndex(np.tile(one, len(assets)))  # (n,) -> (len(assets) * n,)
    score = np.tile(np.linspace(0, 1, n), len(assets))
    return pd.DataFrame({
        "asset": np.repeat(assets, n), "window_start": start, "window_end": start + pd.Timedelta(seconds=WINDOW[0] - 1),
        "score": score, "threshold": 0.999, "is_anomaly": score > 0.999,
        "severity": 0.0, "top_sensors": "s0", "contributions": "{}",
    })


def writer(home: str, name: str, n_commits: int, n_rows: int, per_commit: int, barrier) -> None:
    warehouse = Warehouse.at(home)
    with connect(warehouse):
        pass
    frames = [window_rows([f"{name}-{i:04d}-{a:03d}" for a in range(per_commit)], n_rows) for i in range(n_commits)]
    barrier.wait()
    for frame in frames:
        write(warehouse, partial(write_window_results, stream=STREAM, windows=frame, model_name="bench-detector",
                                 model_version=1))


def write_throughput(root: Path, n_writers: int, n_commits: int, n_rows: int, per_commit: int) -> tuple[float, float]:
    """(rows/s, commits/s) of `n_writers` processes making `n_commits` commits each, of
    `per_commit` assets' `n_rows` windows."""
    home = root / f"writers-{n_writers}-{per_commit}"
    with connect(Warehouse.at(home)):  # the catalog created before the clock starts
        pass
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(n_writers + 1)
    processes = [context.Process(target=writer, args=(str(home), f"w{w}", n_commits, n_rows, per_commit, barrier))
                 for w in range(n_writers)]
    for p in processes:
        p.start()
    barrier.wait()
    started = time.perf_counter()
    for p in processes:
        p.join()
        if p.exitcode != 0:
            raise SystemExit(f"a writer exited {p.exitcode}")
    seconds = time.perf_counter() - started
    commits = n_writers * n_commits
    return commits * n_rows * per_commit / seconds, commits / seconds


CLUSTER = """
import sys, time
from distributed import LocalCluster
cluster = LocalCluster(n_workers=int(sys.argv[1]), threads_per_worker=1, processes=True, host="127.0.0.1",
                       dashboard_address=None)
print(cluster.scheduler_address, flush=True)
time.sleep(86400)
"""


@contextlib.contextmanager
def cluster(n_workers: int) -> Iterator[tuple[str, int]]:
    """A LocalCluster in a process of its own, as a long-running cluster is: (its scheduler's
    address, the process id). Its workers' output is discarded."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-c", CLUSTER, str(n_workers)], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        assert process.stdout is not None
        yield process.stdout.readline().strip(), process.pid
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--assets", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--commits", type=int, default=20, help="commits per writer in (d)")
    parser.add_argument("--skip-writers", action="store_true", help="stop after (c)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aemon-dask-bench-") as tmp, cluster(args.workers) as (address, pid):
        root = Path(tmp)
        configs = {kind: write_home(root, kind, kind, args.workers) for kind in ("default", "dask")}
        # a cluster that outlives the commands (`address`): its workers start once
        configs["dask address"] = write_home(root, "address", "dask", args.workers, address)
        configs["in-process"] = write_home(root, "in-process", "default", args.workers)
        frame = readings(args.assets)
        for config in configs.values():
            inbox = config.parent / "inbox" / STREAM
            for i in range(0, args.assets, 100):
                part = frame[frame["asset"].isin([f"asset-{a:05d}" for a in range(i, i + 100)])]
                part.to_parquet(inbox / f"part-{i:05d}.parquet", index=False)
        print(f"{args.assets} assets x {len(SENSORS)} sensors x {SECONDS} s at 1 Hz: {len(frame):,} readings, "
              f"{windows_of(args.assets):,} windows of {WINDOW[0]} s (stride {WINDOW[1]} s); "
              f"1-min load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print(f"(a) ingest of {-(-args.assets // 100)} files   command   rows/s   ingest step   rows/s"
              "   (the step: inbox scanned -> last commit)")
        ingest_memory = {}
        seconds, _, ingest_memory["in-process"] = aemon(["ingest", STREAM, "--in-process"], configs.pop("in-process"),
                                                        watch=True)
        print(f"    in-process   {seconds:7.1f} s {len(frame) / seconds:8,.0f}")
        for kind, config in configs.items():
            workers = Peaks(pid) if kind == "dask address" else None
            seconds, output, ingest_memory[kind] = aemon(["ingest", STREAM, "--flow-run"], config, watch=True)
            if workers is not None:
                ingest_memory[kind].update({k: v for k, v in workers.finish().items() if k == "dask worker"})
            step, n = ingest_seconds(output), len(frame)
            print(f"    {kind:<13}{seconds:7.1f} s {n / seconds:8,.0f} {step:11.1f} s {n / step:8,.0f}")
        print("    peak resident memory of each ingest, MiB")
        for kind, groups in ingest_memory.items():
            print(show_memory(kind, groups))
        cluster_peaks = Peaks(pid)
        seconds, _, _ = aemon(["train", STREAM], configs["default"])
        print(f"    train (mlp_ae, 2 epochs, default runner): {seconds:.1f} s")
        print("(b) score        command   scoring step   windows/s (step)   no-op command   no-op step")
        memory = {}
        for kind, config in configs.items():
            first, output, memory[kind] = aemon(["score", STREAM], config, watch=True)
            step = scoring_seconds(output)
            again, output, _ = aemon(["score", STREAM], config)
            n = scored_windows(config)
            print(f"    {kind:<13}{first:5.1f} s {step:12.1f} s {n / step:18,.0f} {again:13.1f} s "
                  f"{scoring_seconds(output):10.1f} s   ({n:,} windows)")
        print("(c) peak resident memory of the first score run, MiB (dask address: the workers outlive the"
              " command; their peak over the training and scoring)")
        memory["dask address"].update({label: rss for label, rss in cluster_peaks.finish().items()
                                       if label == "dask worker"})
        for kind, groups in memory.items():
            print(show_memory(kind, groups))
        if args.skip_writers:
            return
        print(f"(d) store writes: each commit 1, 25 or 250 assets' {windows_of(1)} windows each (scores, watermarks)")
        for per_commit in (1, 25, 250):
            n_commits = args.commits if per_commit < 100 else max(2, args.commits // 5)
            for n_writers in (1, 2, 4):
                rows, commits = write_throughput(root, n_writers, n_commits, windows_of(1), per_commit)
                print(f"    {per_commit:2d} asset(s) a commit, {n_writers} writer(s): {rows:9,.0f} rows/s, "
                      f"{commits:5.1f} commits/s")


if __name__ == "__main__":
    main()
