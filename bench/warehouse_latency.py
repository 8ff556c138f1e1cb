"""Scoring-run commit latency and a reader's query latency: the single-file DuckDB
warehouse of earlier releases against the DuckLake warehouse, measured in the same run
with the same work.

A scoring run writes `--assets` x `--windows` scored windows (2 % flagged, each with its
per-sensor contributions) and advances the watermarks, in one transaction, `--runs` times.
Each store is measured twice: alone, and while a reader in another process polls a
query every 50 ms (the README's anomalies-per-asset query). The single-file store's
writer opens the file for each run and its reader opens it read-only for each query, as
the earlier release's flows and `aemon sql` did; a lock conflict is counted, not retried.
The DuckLake reader holds one connection for the whole phase (as a DuckDB shell or a
notebook would), and the first query of a new connection is timed too.

    .venv/bin/python bench/warehouse_latency.py               # 40 runs of 3 x 200 windows
    .venv/bin/python bench/warehouse_latency.py --runs 10     # a quicker look
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

READER_QUERY = ("SELECT asset, count(*) AS anomalies, max(score) AS worst FROM anomalies "
                "GROUP BY asset ORDER BY asset")

READER = """
import json, sys, time, pathlib
kind, target, stop, out = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3]), sys.argv[4]
query = {query!r}
latencies, failures = [], 0
if kind == "ducklake":
    from monitoring.store.connection import Warehouse, query_rows, _open
    warehouse = Warehouse.at(target)
    started = time.perf_counter()
    query_rows(warehouse, query)  # a new connection: load the extensions, attach, query
    cold = time.perf_counter() - started
    con = _open(warehouse, read_only=True)  # then one connection held for the whole phase
    print("ready", flush=True)
    while not stop.exists():
        started = time.perf_counter()
        con.execute(query).fetchall()
        latencies.append(time.perf_counter() - started)
        time.sleep(0.05)
else:
    import duckdb
    from monitoring.store.legacy import legacy_query
    started = time.perf_counter()
    legacy_query(target, query)
    cold = time.perf_counter() - started
    print("ready", flush=True)
    while not stop.exists():
        started = time.perf_counter()
        try:
            legacy_query(target, query)
            latencies.append(time.perf_counter() - started)
        except duckdb.Error:
            failures += 1  # the writer holds the file
        time.sleep(0.05)
json.dump({{"cold_s": cold, "latencies": latencies, "failures": failures}}, open(out, "w"))
"""


def scored_run(run: int, assets: int, windows: int, seed: int = 0):
    """One scoring run's windows: the columns write_window_results takes."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed + run)
    frames = []
    for a in range(assets):
        start = pd.Timestamp("2026-01-01") + pd.Timedelta(minutes=10 * windows * run)
        starts = start + pd.to_timedelta(np.arange(windows) * 10, unit="min")
        flagged = rng.random(windows) < 0.02
        frames.append(pd.DataFrame({
            "stream": "pumps", "asset": f"pump-{a:02d}", "window_start": starts,
            "window_end": starts + pd.Timedelta(minutes=10), "score": rng.gamma(2.0, 1.0, windows),
            "threshold": 5.0, "is_anomaly": flagged, "severity": rng.gamma(2.0, 1.0, windows),
            "model_name": "pumps-detector", "model_version": 1, "excluded": False,
            "top_sensors": "motor_temp,flow_rate,vibration_rms",
            "contributions": '{"motor_temp": 0.5, "flow_rate": 0.3, "vibration_rms": 0.2}',
        }))
    return pd.concat(frames, ignore_index=True)


def write_ducklake(warehouse, frame) -> None:
    from monitoring.store.connection import write
    from monitoring.store.results import write_window_results

    columns = [c for c in frame.columns if c not in ("stream", "model_name", "model_version")]
    write(warehouse, lambda con: write_window_results(con, "pumps", frame[columns], "pumps-detector", 1))


def phase(kind: str, target: Path, runs: int, first_run: int, assets: int, windows: int, reader: bool,
          work: Path) -> dict:
    """`runs` scoring runs on one store, with or without a reader process polling."""
    from monitoring.store.connection import Warehouse
    from monitoring.store.legacy import legacy_write_run

    stop, out = work / f"stop-{kind}-{reader}", work / f"reader-{kind}-{reader}.json"
    process = None
    if reader:
        code = READER.format(query=READER_QUERY)
        process = subprocess.Popen([sys.executable, "-c", code, kind, str(target), str(stop), str(out)],
                                   stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    latencies, failures, errors = [], 0, set()
    for run in range(first_run, first_run + runs):
        frame = scored_run(run, assets, windows)
        started = time.perf_counter()
        try:
            if kind == "ducklake":
                write_ducklake(Warehouse.at(target), frame)
            else:
                legacy_write_run(target, frame)
            latencies.append(time.perf_counter() - started)
        except Exception as exc:  # the single-file store's lock conflict: counted, not retried
            failures += 1
            errors.add(str(exc).splitlines()[0][:100])
        time.sleep(0.05)
    result = {"store": kind, "reader": reader, "runs": runs, **summary(latencies, "commit"),
              "commit_failures": failures, "errors": sorted(errors)}
    if process is not None:
        stop.touch()
        process.wait(timeout=120)
        seen = json.loads(out.read_text())
        result.update({**summary(seen["latencies"], "query"), "query_failures": seen["failures"],
                       "first_query_s": seen["cold_s"]})
    return result


def summary(values: list[float], name: str) -> dict:
    if not values:
        return {f"{name}_n": 0}
    ordered = sorted(values)
    return {f"{name}_n": len(values), f"{name}_best_ms": 1000 * ordered[0],
            f"{name}_median_ms": 1000 * statistics.median(ordered),
            f"{name}_p95_ms": 1000 * ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--assets", type=int, default=3)
    parser.add_argument("--windows", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from monitoring.store.connection import Warehouse, connect
    from monitoring.store.legacy import create_legacy

    load = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory(prefix="aemon-bench-wh-") as tmp:
        work = Path(tmp)
        legacy, home = work / "warehouse.duckdb", work / "ducklake"
        create_legacy(legacy)
        with connect(Warehouse.at(home), write=True):
            pass
        run = 0
        for reader in (False, True):
            for kind, target in (("single-file", legacy), ("ducklake", home)):
                rows.append(phase(kind, target, args.runs, run, args.assets, args.windows, reader, work))
            run += args.runs
    if args.json:
        print(json.dumps({"load_1min": load, "rows": rows}, indent=2))
        return
    print(f"{args.runs} scoring runs of {args.assets} x {args.windows} windows per store; 1-min load {load:.2f} "
          f"on {os.cpu_count()} cores")
    print(f"{'store':<12} {'reader':<7} {'commit median':>14} {'p95':>8} {'failed':>7} {'query median':>13} "
          f"{'p95':>8} {'failed':>7} {'1st query':>10}")
    for r in rows:
        query = (f"{r.get('query_median_ms', float('nan')):>11.1f} ms {r.get('query_p95_ms', float('nan')):>5.1f} ms "
                 f"{r.get('query_failures', 0):>7} {1000 * r.get('first_query_s', float('nan')):>7.1f} ms"
                 if r["reader"] else "")
        commit = (f"{r.get('commit_median_ms', float('nan')):>11.1f} ms {r.get('commit_p95_ms', float('nan')):>5.1f} ms"
                  if r.get("commit_n") else f"{'-':>14} {'-':>8}")
        print(f"{r['store']:<12} {'yes' if r['reader'] else 'no':<7} {commit} {r['commit_failures']:>7} {query}")
        for error in r["errors"]:
            print(f"    {error}")


if __name__ == "__main__":
    main()
