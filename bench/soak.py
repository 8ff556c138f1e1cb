"""Soak: a plant's day through ingest and scheduled scoring, in one long-running process.

200 assets x 8 sensors at 1 Hz for 24 hours (17.3 M readings) arrive as one export per hour;
after each file, the scheduled scoring run scores what is new with the registered champion.
The soak process prints ingest rows/s, scoring windows/s and its memory at 25, 50 and 100 %
of the day: the peak resident set so far (VmHWM) and the resident set now (VmRSS), which
stay flat as the history in the warehouse grows when nothing holds on to old data. Each
hour's export also carries a few broken lines (a non-numeric value) and repeated lines
(readings already in the file): at the end, the rows read must equal the rows in the lake
plus the rows in quarantine, and the audit must say the same.

The export files are generated first (a child process, so the generator is nobody's peak);
the champion is trained on the first hour in another child (a detector training is not a
steady-state cost), then the soak child ingests and scores hours 1..23. Everything lives
in a temporary folder.

    .venv/bin/python bench/soak.py                           # 200 assets, 24 h (about 10 min on 2 cores)
    .venv/bin/python bench/soak.py --assets 20 --hours 4     # a quick look
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

SENSORS = [f"s{i}" for i in range(8)]
STREAM = "soak"
BROKEN_PER_HOUR = 7
REPEATED_PER_HOUR = 5
START = "2026-03-02T00:00:00"


def memory_mb() -> dict[str, float]:
    """This process's peak (VmHWM) and current (VmRSS) resident set, Linux."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key = line.split(":")[0]
        if key in ("VmHWM", "VmRSS"):
            out[key] = int(line.split()[1]) / 1024
    return out


def generate_hour(path: Path, hour: int, n_assets: int, seed: int = 0) -> int:
    """One hour of every asset as one CSV export, plus broken and repeated lines; returns the
    data rows written."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng([seed, hour])
    base = np.datetime64(START, "s") + hour * 3600
    secs = np.arange(3600)
    stamps = (base + secs).astype(str)
    level = np.random.default_rng(seed).normal(50.0, 5.0, size=(n_assets, len(SENSORS)))
    day = np.sin(2 * np.pi * (hour * 3600 + secs) / 86400.0)
    columns: dict[str, list] = {"timestamp": [], "asset": [], **{s: [] for s in SENSORS}}
    for a in range(n_assets):
        values = level[a] + 3.0 * day[:, None] + rng.normal(0.0, 1.0, size=(3600, len(SENSORS)))
        if (a + hour) % 37 == 0:  # a fault: one sensor off for ten minutes
            values[1200:1800, a % len(SENSORS)] += 12.0
        columns["timestamp"].append(stamps)
        columns["asset"].append(np.full(3600, f"pump-{a:04d}"))
        for j, s in enumerate(SENSORS):
            columns[s].append(np.round(values[:, j], 3))
    table = pa.table({k: np.concatenate(v) for k, v in columns.items()})
    pacsv.write_csv(table, path, write_options=pacsv.WriteOptions(quoting_style="none"))
    with open(path, "a") as fh:
        for i in range(REPEATED_PER_HOUR):  # the same reading twice: kept once, the repeat quarantined
            fh.write(",".join([str(stamps[i]), "pump-0000", *(f"{v:.3f}" for v in level[0])]) + "\n")
        for i in range(BROKEN_PER_HOUR):  # a value a sensor cannot have
            fh.write(",".join([str(stamps[-1 - i]), f"pump-{n_assets + i:04d}", "ERR", *["1.0"] * 7]) + "\n")
    return table.num_rows + REPEATED_PER_HOUR + BROKEN_PER_HOUR


def settings():
    from features.readers import StreamSchema
    from features.windows import WindowSpec

    return StreamSchema(sensors=tuple(SENSORS)), WindowSpec(size=30, stride=10, interval_s=1.0)


def locations(home: Path):
    from monitoring.store.connection import Warehouse

    return Warehouse.at(home), f"sqlite:///{home / 'mlflow.db'}", (home / "mlartifacts").as_uri()


def train(home: Path, feed: Path) -> dict:
    """Ingest hour 0 and register a champion trained on it."""
    from aemodels.thresholds import ThresholdRule
    from monitoring.models import fitting, promotion
    from monitoring.store import readings
    from monitoring.store.ingestion import ingest_file

    warehouse, tracking, artifacts = locations(home)
    schema, spec = settings()
    result = ingest_file(warehouse, STREAM, schema, feed / "hour-00.csv")
    frame = readings.load_readings(warehouse, STREAM)
    data = fitting.prepare_training(frame, stream=STREAM, sensors=SENSORS, spec=spec, train_stride=5)
    params = {"epochs": 3, "hidden": (64,), "latent": 8, "n_threads": os.cpu_count() or 1, "progress": False}
    candidate = fitting.fit_candidate(data, "mlp_ae", params, ThresholdRule(percentile=99.9))
    outcome = promotion.register_training(tracking, artifacts, data, [candidate])
    return {"rows_in": result.rows_in, "version": outcome.versions["mlp_ae"].version}


def soak(home: Path, feed: Path, hours: int) -> dict:
    """Ingest and score hours 1..hours-1, one file and one scoring run at a time."""
    from monitoring.alerting.incidents import IncidentRule
    from monitoring.alerting.scoring import score_model
    from monitoring.models import registry
    from monitoring.store.ingestion import ingest_file

    warehouse, tracking, _ = locations(home)
    schema, _ = settings()
    checkpoints = {max(1, round(hours * f) - 1): f for f in (0.25, 0.5, 1.0)}
    totals = {"rows_in": 0, "rows_accepted": 0, "rows_quarantined": 0, "windows": 0, "ingest_s": 0.0, "score_s": 0.0}
    marks = []
    last = dict(totals)
    for hour in range(1, hours):
        started = time.perf_counter()
        result = ingest_file(warehouse, STREAM, schema, feed / f"hour-{hour:02d}.csv")
        ingested = time.perf_counter()
        model, version = registry.load_model(tracking, STREAM)  # as each scheduled run does
        loaded = time.perf_counter()  # scoring's time: windows to the warehouse, not the model's load
        scored = score_model(warehouse, STREAM, model, version, incidents=IncidentRule())
        done = time.perf_counter()
        assert result.status == "ok", result
        totals["rows_in"] += result.rows_in
        totals["rows_accepted"] += result.rows_accepted
        totals["rows_quarantined"] += result.rows_quarantined
        totals["windows"] += scored.windows_scored
        totals["ingest_s"] += ingested - started
        totals["score_s"] += done - loaded
        if hour in checkpoints:
            step = {k: totals[k] - last[k] for k in totals}
            marks.append({"fraction": checkpoints[hour], "hour": hour + 1, **memory_mb(),
                          "ingest_rows_s": step["rows_in"] / step["ingest_s"],
                          "score_windows_s": step["windows"] / step["score_s"],
                          "last_hour_ingest_s": ingested - started, "last_hour_score_s": done - loaded})
            last = dict(totals)
    return {**totals, "marks": marks}


def audit(home: Path) -> dict:
    """The lake, quarantine and audit as a user's SQL sees them (`aemon sql`)."""
    from monitoring.store.connection import query_rows, view_name

    warehouse, _, _ = locations(home)
    _, rows = query_rows(warehouse, f"""
        SELECT (SELECT count(*) FROM {view_name(STREAM)}),
               (SELECT count(*) FROM quarantine WHERE stream = ?),
               (SELECT count(*) FROM incidents WHERE stream = ?),
               sum(rows_in), sum(rows_accepted), sum(rows_quarantined)
        FROM ingest_batches WHERE stream = ?""", [STREAM] * 3)
    names = ["lake", "quarantine", "incidents", "audit_in", "audit_accepted", "audit_quarantined"]
    return dict(zip(names, rows[0], strict=True))


def child(*args: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{args[0]} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--assets", type=int, default=200)
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, home, feed, *rest = args.child
        if kind == "generate":
            n = sum(generate_hour(Path(feed) / f"hour-{h:02d}.csv", h, int(rest[1])) for h in range(int(rest[0])))
            out = {"rows": n}
        elif kind == "train":
            out = train(Path(home), Path(feed))
        elif kind == "soak":
            out = {**soak(Path(home), Path(feed), int(rest[0])), **audit(Path(home))}
        print(json.dumps(out, default=float))
        return
    if args.hours < 4:
        raise SystemExit("--hours must be at least 4 (memory is reported at 25, 50 and 100 % of them)")
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="aemon-soak-") as tmp_name:
        home, feed = Path(tmp_name) / "home", Path(tmp_name) / "feed"
        feed.mkdir()
        started = time.perf_counter()
        generated = child("generate", str(home), str(feed), str(args.hours), str(args.assets))
        print(f"{args.assets} assets x {len(SENSORS)} sensors x {args.hours} h at 1 s: {generated['rows']:,} rows in "
              f"{args.hours} hourly files ({time.perf_counter() - started:.0f} s to generate); "
              f"load average {load:.1f} on {os.cpu_count()} cores", flush=True)
        trained = child("train", str(home), str(feed))
        print(f"hour 1 ingested and champion v{trained['version']} trained on it", flush=True)
        r = child("soak", str(home), str(feed), str(args.hours))
    print(f"\n{'of the day':>10} {'ingest rows/s':>14} {'score windows/s':>16} {'hour ingest s':>14} "
          f"{'hour score s':>13} {'peak RSS MB':>12} {'RSS MB':>8}")
    for m in r["marks"]:
        print(f"{m['fraction']:>10.0%} {m['ingest_rows_s']:>14,.0f} {m['score_windows_s']:>16,.0f} "
              f"{m['last_hour_ingest_s']:>14.2f} {m['last_hour_score_s']:>13.2f} {m['VmHWM']:>12.0f} "
              f"{m['VmRSS']:>8.0f}")
    first, final = r["marks"][0], r["marks"][-1]
    rows_in = trained["rows_in"] + r["rows_in"]
    print(f"\nsoak: {r['rows_in']:,} rows ingested at {r['rows_in'] / r['ingest_s']:,.0f} rows/s, "
          f"{r['windows']:,} windows scored at {r['windows'] / r['score_s']:,.0f} windows/s; "
          f"{r['incidents']} incidents")
    print(f"peak RSS at 100 % / at 25 %: {final['VmHWM'] / first['VmHWM']:.2f}; "
          f"RSS now at 100 % / at 25 %: {final['VmRSS'] / first['VmRSS']:.2f}")
    balanced = rows_in == r["lake"] + r["quarantine"] == r["audit_in"]
    print(f"rows in {rows_in:,} = lake {r['lake']:,} + quarantine {r['quarantine']:,}: {balanced} "
          f"(audit: {r['audit_in']:,} in, {r['audit_accepted']:,} accepted, {r['audit_quarantined']:,} quarantined)")
    if not balanced:
        raise SystemExit("rows were lost or doubled")


if __name__ == "__main__":
    main()
