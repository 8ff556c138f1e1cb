"""Ingest throughput and peak memory: aemon's ingest of a generated sensor export against
pandas doing the same work on the same file, measured in the same run.

The same work: pandas `read_csv` with the timestamp column parsed (`parse_dates`, ISO 8601,
the format aemon reads), then `to_parquet` with the codec aemon's lake parts use
(`monitoring.store.lake.PART_CODEC`, Snappy), so both sides parse every field and write
compressed Parquet. The ratio printed is against that baseline. pandas' default (timestamps
left as text, same codec) is printed too, as a second line: it does less work. aemon
validates every row on top (the baseline validates nothing) and hashes the file.

Each contender runs in its own child process, one after the other, interleaved over
`--rounds` rounds; each keeps its best round (the machine may be shared: the 1-minute load
average is printed before the run). Peak resident memory is the child's high-water mark
(`VmHWM` of /proc/self/status; `ru_maxrss` would include the parent's memory copied at
fork), time the wall clock of the work inside the child: imports, and for aemon opening
the warehouse (loading DuckDB's extensions, creating the catalog: once per process and
home, shown by --profile), are excluded.

`--threads N [M ...]`: each contender runs pinned to N cores (`sched_setaffinity`), with
pyarrow's CPU and I/O thread pools set to N. pandas' C parser is single-threaded whatever
N is (pyarrow only converts and writes its frame); aemon's typed CSV read parses blocks on
all of pyarrow's threads. The file is generated in a temporary folder (never in the
repository) at two sizes, to show whether peak memory grows with the file. `--profile`
prints where aemon's time goes (each stage's wall time on its own thread: the Parquet
writes and the next block's parse run beside the main thread, so stages overlap).

    .venv/bin/python bench/ingest_throughput.py                       # 10M and 2.5M rows x 8 sensors
    .venv/bin/python bench/ingest_throughput.py --rows 2500000 --threads 1 2 --profile
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # this checkout's packages, in the children too
sys.path.insert(0, str(ROOT))
SENSORS = [f"s{i}" for i in range(8)]
CONTENDERS = {  # kind -> label
    "pandas": "pandas same work",
    "pandas-default": "pandas default (no dates)",
    "aemon": "aemon ingest",
}


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


class StageClock:
    """Wall time per stage of aemon's ingest, each on the thread that runs it: library
    functions wrapped for the measurement (nothing in the library changes)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    def wrap(self, module, name: str, stage: str) -> None:
        fn = getattr(module, name)

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(stage, time.perf_counter() - started)

        setattr(module, name, timed)

    def wrap_generator(self, module, name: str, stage: str) -> None:
        fn = getattr(module, name)

        def timed(*args, **kwargs):
            items = fn(*args, **kwargs)
            while True:
                started = time.perf_counter()
                try:
                    item = next(items)
                except StopIteration:
                    self.add(stage, time.perf_counter() - started)
                    return
                self.add(stage, time.perf_counter() - started)
                yield item

        setattr(module, name, timed)


def run_aemon(path: Path, work: Path, profile: bool) -> dict:
    import features.readers as readers
    import monitoring.store.ingestion as ingestion
    from features.readers import StreamSchema
    from monitoring.store import lake
    from monitoring.store.connection import Warehouse, connect

    warehouse = Warehouse.at(work)
    started = time.perf_counter()
    with connect(warehouse):  # load the extensions, create the catalog: once per process and home
        pass
    clock = StageClock()
    clock.add("open warehouse (not timed)", time.perf_counter() - started)
    if profile:
        clock.wrap(ingestion, "file_digest", "hash (SHA-256, beside the warehouse open)")
        clock.wrap_generator(ingestion, "read_chunks", "read + parse CSV (main thread waits)")
        clock.wrap(readers.pacsv, "read_csv", "parse blocks (pyarrow, prefetch thread)")
        clock.wrap(ingestion, "validate_clean", "validate on Arrow")
        clock.wrap(ingestion, "validate_chunk", "validate on pandas (rows with a verdict)")
        clock.wrap(lake, "stage_parts", "write Parquet parts (writer thread)")
        clock.wrap(ingestion, "write", "commit: register parts + audit")
    schema = StreamSchema(sensors=tuple(SENSORS), asset_column=None, asset_id="m1")
    started, cpu = time.perf_counter(), time.process_time()
    result = ingestion.ingest_file(warehouse, "bench", schema, path)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    assert result.status == "ok" and result.rows_quarantined == 0, result
    return {"seconds": seconds, "cpu_s": cpu, "rows": result.rows_accepted, "stages": clock.seconds}


def run_pandas(path: Path, work: Path, parse_dates: bool) -> dict:
    import pandas as pd

    from monitoring.store.lake import PART_CODEC

    started, cpu = time.perf_counter(), time.process_time()
    dates = {"parse_dates": ["timestamp"], "date_format": "ISO8601"} if parse_dates else {}
    frame = pd.read_csv(path, **dates)
    frame.to_parquet(work / "baseline.parquet", index=False, compression=PART_CODEC)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"seconds": seconds, "cpu_s": cpu, "rows": len(frame), "timestamp_dtype": str(frame["timestamp"].dtype)}


def peak_rss_mb() -> float:
    """This process's peak resident set size (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    raise SystemExit("no VmHWM in /proc/self/status: this benchmark needs Linux")


def pin(threads: int) -> None:
    """Run this process on `threads` cores, with pyarrow's pools that size."""
    import pyarrow as pa

    cores = sorted(os.sched_getaffinity(0))
    if threads > len(cores):
        raise SystemExit(f"--threads {threads}: this machine gives the process {len(cores)} cores")
    os.sched_setaffinity(0, cores[:threads])
    pa.set_cpu_count(threads)
    pa.set_io_thread_count(threads)


def child(kind: str, path: Path, work: Path, threads: int, profile: bool) -> dict:
    """Run one contender in a child process; return its timing and peak RSS."""
    command = [sys.executable, __file__, "--child", kind, str(path), str(work), str(threads)]
    path_entries = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]  # this checkout first
    proc = subprocess.run(command + (["--profile"] if profile else []), capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(path_entries)})
    if proc.returncode:
        raise SystemExit(f"{kind} child failed with exit code {proc.returncode}:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000_000, 2_500_000])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; each contender's best is kept")
    parser.add_argument("--threads", type=int, nargs="+", default=[len(os.sched_getaffinity(0))],
                        help="cores (and pyarrow threads) per contender, one run each (default: all)")
    parser.add_argument("--profile", action="store_true", help="print where aemon's time goes")
    parser.add_argument("--child", nargs=4, metavar=("KIND", "FILE", "WORK", "THREADS"), help=argparse.SUPPRESS)
    parser.add_argument("--generate", nargs=2, metavar=("FILE", "ROWS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        generate(Path(args.generate[0]), int(args.generate[1]))
        return
    if args.child:
        kind, path, work, threads = args.child
        pin(int(threads))
        if kind == "aemon":
            result = run_aemon(Path(path), Path(work), args.profile)
        else:
            result = run_pandas(Path(path), Path(work), parse_dates=kind == "pandas")
        print(json.dumps({**result, "peak_rss_mb": peak_rss_mb()}))
        return
    from monitoring.store.lake import PART_CODEC

    load1 = os.getloadavg()[0]
    print(f"1-minute load average before the run: {load1:.2f} on {os.cpu_count()} cores; "
          f"best of {args.rounds} interleaved rounds; Parquet codec for both sides: {PART_CODEC}")
    print(f"{'rows':>11} {'file MB':>8} {'threads':>7} {'contender':<26} {'seconds':>8} {'rows/s':>12} "
          f"{'peak RSS MB':>12} {'CPU s':>6}")
    summary = []
    for n_rows in args.rows:
        with tempfile.TemporaryDirectory(prefix="aemon-bench-") as tmp_name:
            tmp = Path(tmp_name)
            path = tmp / "export.csv"
            # generated in a child too, so the generator's memory is nobody's peak
            subprocess.run([sys.executable, __file__, "--generate", str(path), str(n_rows)], check=True)
            size_mb = path.stat().st_size / 2**20
            for threads in args.threads:
                best: dict[str, dict] = {}
                for round_no in range(args.rounds):
                    kinds = list(CONTENDERS)
                    kinds = kinds[round_no % len(kinds):] + kinds[:round_no % len(kinds)]  # rotate who goes first
                    for kind in kinds:
                        work = tmp / f"{kind}-{threads}-{round_no}"
                        work.mkdir()
                        r = child(kind, path, work, threads, args.profile and kind == "aemon")
                        assert r["rows"] == n_rows, r
                        if kind not in best or r["seconds"] < best[kind]["seconds"]:
                            best[kind] = r
                        subprocess.run(["rm", "-rf", str(work)], check=True)  # keep the disk and page cache lean
                for kind, label in CONTENDERS.items():
                    r = best[kind]
                    print(f"{n_rows:>11,} {size_mb:>8.0f} {threads:>7} {label:<26} {r['seconds']:>8.2f} "
                          f"{n_rows / r['seconds']:>12,.0f} {r['peak_rss_mb']:>12.0f} {r['cpu_s']:>6.2f}", flush=True)
                if args.profile:
                    print(f"{'':>11} aemon's stages in its best round ({best['aemon']['seconds']:.2f} s):")
                    for stage, seconds in best["aemon"]["stages"].items():
                        print(f"{'':>13} {stage:<46} {seconds:>6.2f} s")
                summary.append((n_rows, threads, best))
    print()
    for n_rows, threads, best in summary:
        aemon, same, default = best["aemon"], best["pandas"], best["pandas-default"]
        print(f"{n_rows:>11,} rows, {threads} thread(s): aemon {same['seconds'] / aemon['seconds']:.2f}x the "
              f"same-work baseline's rows/s ({default['seconds'] / aemon['seconds']:.2f}x pandas' default), "
              f"peak RSS {aemon['peak_rss_mb']:.0f} MB = {aemon['peak_rss_mb'] / same['peak_rss_mb']:.2f}x the "
              "baseline's")
    sizes = sorted({n for n, _, _ in summary})
    if len(sizes) > 1:
        threads = summary[0][1]
        rss = {n: best["aemon"]["peak_rss_mb"] for n, t, best in summary if t == threads}
        print(f"aemon peak RSS at {sizes[-1]:,} rows / at {sizes[0]:,} rows ({threads} thread(s)): "
              f"{rss[sizes[-1]] / rss[sizes[0]]:.2f} (file {sizes[-1] / sizes[0]:.0f}x larger)")


if __name__ == "__main__":
    main()
