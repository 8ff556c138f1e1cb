"""Ingest throughput and peak memory: aemon's ingest of a generated sensor export against a
plain pandas `read_csv` + `to_parquet` of the same file, measured in the same run.

Each contender runs in its own child process; its peak resident memory is the child's
high-water mark (`VmHWM` of /proc/self/status, read by the child when its work is done;
`ru_maxrss` would include the parent's memory copied at fork), its time the wall clock of
the work inside the child (imports excluded). The file is generated in a temporary folder
(never in the repository) at two sizes, to show whether peak memory grows with the file.

    .venv/bin/python bench/ingest_throughput.py                 # 10M and 2.5M rows x 8 sensors
    .venv/bin/python bench/ingest_throughput.py --rows 1000000  # a quicker look
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SENSORS = [f"s{i}" for i in range(8)]


def generate(path: Path, n_rows: int, seed: int = 0, block: int = 1_000_000) -> None:
    """timestamp + 8 float sensors, 1 s apart, written in blocks (bounded memory)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(seed)
    start = np.datetime64("2026-01-01T00:00:00", "s")
    with pacsv.CSVWriter(path, pa.schema([("timestamp", pa.string()), *[(s, pa.float64()) for s in SENSORS]]),
                         write_options=pacsv.WriteOptions(quoting_style="none")) as writer:
        for first in range(0, n_rows, block):
            n = min(block, n_rows - first)
            ts = (start + np.arange(first, first + n)).astype(str)
            values = np.round(rng.normal(50.0, 5.0, size=(n, len(SENSORS))), 4)
            columns = [pa.array(ts)] + [pa.array(values[:, j]) for j in range(len(SENSORS))]
            writer.write_table(pa.Table.from_arrays(columns, names=["timestamp", *SENSORS]))


def run_aemon(path: Path, work: Path) -> dict:
    from features.readers import StreamSchema
    from monitoring.store.connection import Warehouse
    from monitoring.store.ingestion import ingest_file

    schema = StreamSchema(sensors=tuple(SENSORS), asset_column=None, asset_id="m1")
    started = time.perf_counter()
    result = ingest_file(Warehouse.at(work), "bench", schema, path)
    seconds = time.perf_counter() - started
    assert result.status == "ok" and result.rows_quarantined == 0, result
    return {"seconds": seconds, "rows": result.rows_accepted}


def run_pandas(path: Path, work: Path) -> dict:
    import pandas as pd

    started = time.perf_counter()
    frame = pd.read_csv(path)
    frame.to_parquet(work / "baseline.parquet", index=False)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": len(frame)}


def peak_rss_mb() -> float:
    """This process's peak resident set size (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    raise SystemExit("no VmHWM in /proc/self/status: this benchmark needs Linux")


def child(kind: str, path: Path, work: Path) -> dict:
    """Run one contender in a child process; return its timing and peak RSS."""
    proc = subprocess.run([sys.executable, __file__, "--child", kind, str(path), str(work)],
                          capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{kind} child failed with exit code {proc.returncode}:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000_000, 2_500_000])
    parser.add_argument("--child", nargs=3, metavar=("KIND", "FILE", "WORK"), help=argparse.SUPPRESS)
    parser.add_argument("--generate", nargs=2, metavar=("FILE", "ROWS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        generate(Path(args.generate[0]), int(args.generate[1]))
        return
    if args.child:
        kind, path, work = args.child
        fn = run_aemon if kind == "aemon" else run_pandas
        result = fn(Path(path), Path(work))
        print(json.dumps({**result, "peak_rss_mb": peak_rss_mb()}))
        return
    print(f"{'rows':>11} {'file MB':>8} {'contender':<24} {'seconds':>8} {'rows/s':>12} {'peak RSS MB':>12}")
    summary = []
    for n_rows in args.rows:
        with tempfile.TemporaryDirectory(prefix="aemon-bench-") as tmp_name:
            tmp = Path(tmp_name)
            path = tmp / "export.csv"
            # generated in a child too, so the generator's memory is nobody's peak
            subprocess.run([sys.executable, __file__, "--generate", str(path), str(n_rows)], check=True)
            size_mb = path.stat().st_size / 2**20
            results = {}
            for kind, label in (("pandas", "pandas read_csv+to_parquet"), ("aemon", "aemon ingest")):
                work = tmp / kind
                work.mkdir()
                r = child(kind, path, work)
                assert r["rows"] == n_rows, r
                results[kind] = r
                print(f"{n_rows:>11,} {size_mb:>8.0f} {label:<24} {r['seconds']:>8.2f} "
                      f"{n_rows / r['seconds']:>12,.0f} {r['peak_rss_mb']:>12.0f}", flush=True)
            speed = results["pandas"]["seconds"] / results["aemon"]["seconds"]
            memory = results["aemon"]["peak_rss_mb"] / results["pandas"]["peak_rss_mb"]
            summary.append((n_rows, speed, memory, results["aemon"]["peak_rss_mb"]))
    print()
    for n_rows, speed, memory, rss in summary:
        print(f"{n_rows:>11,} rows: aemon {speed:.2f}x the baseline's rows/s, "
              f"peak RSS {rss:.0f} MB = {memory:.2f}x the baseline's")
    if len(summary) > 1:
        big, small = max(summary), min(summary)
        print(f"aemon peak RSS at {big[0]:,} rows / at {small[0]:,} rows: {big[3] / small[3]:.2f} "
              f"(file {big[0] / small[0]:.0f}x larger)")


if __name__ == "__main__":
    main()
