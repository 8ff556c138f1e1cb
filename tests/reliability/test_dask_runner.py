"""[runner] kind = "dask": ingest fans out by groups of files, train and score by groups of
assets, on a real Dask LocalCluster of 2 worker processes, and leave the same lake,
quarantine, audit, tables, models and thresholds as the default runner (one file after
the other, one scoring task over every asset, the fits in a process pool)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from features.readers import StreamSchema
from features.synthetic import SENSORS, SyntheticSpec, generate_stream
from features.windows import WindowSpec
from flows import score
from flows.config import load_config
from flows.demo import write_inbox
from flows.fanout import split_assets
from flows.ingest import ingest_readings
from flows.train import train_detectors
from monitoring.alerting.incidents import IncidentRule
from monitoring.alerting.scoring import ScoreResult, score_stream
from monitoring.models import registry
from monitoring.models.fitting import train_bundle
from monitoring.store.connection import Warehouse, connect
from monitoring.store.ingestion import commit_staged, ingest_file, list_inbox, stage_file

SPEC = SyntheticSpec(n_assets=4, days=4.0, interval_s=60, seed=3)
DETECTORS = "\n[streams.pumps.detectors]\nn_threads = 1\nepochs = 3\n"
DASK = ('\n[runner]\nkind = "dask"\nn_workers = 2\nthreads_per_worker = 1\n'
        "assets_per_task = 1\n")  # one asset a task: 4 groups over 2 workers
# what each table is compared on: every column but those the warehouse's clock fills
TABLES = {
    "scores": "* EXCLUDE (scored_at)",
    "anomalies": "* EXCLUDE (detected_at)",
    "watermarks": "* EXCLUDE (updated_at)",
    "incidents": "* EXCLUDE (updated_at, opened_at, closed_at)",
    "incident_log": "* EXCLUDE (logged_at)",
    "rescore_ranges": "*",
}
# the ingest's tables: files by name (the homes differ), without the clocks and mtimes
INGEST_TABLES = {
    "readings": "* FROM lake.pumps",
    "ingest_batches": "* EXCLUDE (ingested_at) FROM ingest_batches",
    "quarantine": "* EXCLUDE (quarantined_at) FROM quarantine",
    "inbox_files": "* EXCLUDE (seen_at, mtime_ns) FROM inbox_files",
}


def messy_files(inbox: Path) -> None:
    """Beside the stream's clean files: a copy of one under another name, a file repeating
    half of another's readings (some of them bad), and a file of the wrong columns. The
    lake ends as the clean files alone would leave it, whichever file comes first."""
    shutil.copy(inbox / "pump-01.csv", inbox / "pump-01-copy.csv")
    half = pd.read_csv(inbox / "pump-02.csv", dtype=str)
    half = half.iloc[: len(half) // 2].copy()
    half.loc[half.index[5:9], SENSORS[0]] = "n/a"
    half.to_csv(inbox / "pump-02-again.csv", index=False)
    pd.DataFrame({"when": ["2026-01-01"], "value": [1.0]}).to_csv(inbox / "wrong-columns.csv", index=False)


def ingest_tables(warehouse: Warehouse, inbox: Path) -> dict[str, pd.DataFrame]:
    """The ingest's tables, the inbox's path left out of file names and messages."""
    with connect(warehouse) as con:
        tables = {name: con.execute(f"SELECT {query} ORDER BY ALL").df() for name, query in INGEST_TABLES.items()}
    for frame in tables.values():
        for column in ("file", "error", "reason"):
            if column in frame:
                frame[column] = frame[column].str.replace(f"{inbox}/", "", regex=False)
    return {name: frame.sort_values(list(frame.columns), ignore_index=True) for name, frame in tables.items()}


def run_home(root, extra: str, mp: pytest.MonkeyPatch) -> dict:
    """Ingest, train and score the same synthetic stream in a home of its own."""
    home = root / "home"
    home.mkdir(parents=True)
    path = home / "aemon.toml"
    sensors = ", ".join(f'"{s}"' for s in SENSORS)
    path.write_text(f'home = "{home.as_posix()}"\n\n[streams.pumps]\nsensors = [{sensors}]\n'
                    f'label_columns = ["label"]\n{DETECTORS}{extra}')
    mp.chdir(root)
    config = load_config(path)
    _, _, clean_end = write_inbox(config, SPEC)
    messy_files(config.inbox("pumps"))
    ingested = [{k: v.replace(f"{config.inbox('pumps')}/", "") if isinstance(v, str) else v for k, v in r.items()}
                for r in ingest_readings("pumps", config_path=str(path))]
    lake = ingest_tables(config.warehouse, config.inbox("pumps"))
    trained = train_detectors("pumps", config_path=str(path), train_end=clean_end.to_pydatetime())
    first = score.score_stream("pumps", config_path=str(path))
    again = score.score_stream("pumps", config_path=str(path))  # nothing new: nothing written
    with connect(config.warehouse) as con:
        tables = {name: con.execute(f"SELECT {columns} FROM {name} ORDER BY ALL").df()
                  for name, columns in TABLES.items()}
    versions = registry.compare_versions(config.mlflow_tracking_uri, "pumps")
    return {"trained": trained, "first": first, "again": again, "tables": tables, "versions": versions,
            "ingested": ingested, "lake": lake}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, prefect_harness):
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("AEMON_HOME", raising=False)
        mp.delenv("AEMON_CONFIG", raising=False)
        default = run_home(tmp_path_factory.mktemp("default"), "", mp)
        dask = run_home(tmp_path_factory.mktemp("dask"), DASK, mp)
    dask["task_runs"] = task_runs("score-pump")
    dask["staging_runs"] = task_runs("stage-")
    return default, dask


def task_runs(prefix: str) -> list[tuple[str, str]]:
    """(name, state) of the tasks named `prefix`... the Prefect API recorded (the workers
    report them)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_=prefix)))
    return sorted((run.name, run.state_name or "") for run in runs if run.name.startswith(prefix))


@pytest.mark.slow
def test_dask_ingest_leaves_the_default_runners_lake_quarantine_and_audit(runs):
    default, dask = runs
    lake = default["lake"]
    statuses = {r["file"]: r["status"] for r in default["ingested"]}
    assert statuses["wrong-columns.csv"] == "rejected" and "skipped" in statuses.values()  # not trivially equal
    assert lake["quarantine"]["reason"].str.contains("already in the lake").any()
    assert lake["quarantine"]["reason"].str.contains("n/a|not a number", regex=True).any()
    # the 7 files read on the workers, one task a file (2 threads x 4 groups), all recorded
    assert [name for name, _ in dask["staging_runs"]] == sorted(
        f"stage-{name}.." for name in statuses)
    assert {state for _, state in dask["staging_runs"]} == {"Completed"}
    assert dask["ingested"] == default["ingested"]  # per file: status, rows in / accepted / quarantined
    for name in INGEST_TABLES:
        pd.testing.assert_frame_equal(dask["lake"][name], lake[name], check_exact=True, obj=name)


@pytest.mark.slow
def test_dask_tables_equal_the_default_runners(runs):
    default, dask = runs
    assert len(default["tables"]["anomalies"]) > 0 and len(default["tables"]["incidents"]) > 0  # not trivially equal
    assert sorted(default["tables"]["watermarks"]["asset"]) == ["pump-01", "pump-02", "pump-03", "pump-04"]
    # two runs of one task per asset, each reported to the flow's API from a worker process
    assert [name for name, _ in dask["task_runs"]] == sorted([f"score-pump-0{i}.." for i in range(1, 5)] * 2)
    assert {state for _, state in dask["task_runs"]} == {"Completed"}
    for name in TABLES:
        pd.testing.assert_frame_equal(dask["tables"][name], default["tables"][name], check_exact=True, obj=name)


@pytest.mark.slow
def test_dask_results_and_models_equal_the_default_runners(runs):
    default, dask = runs
    assert dask["first"] == default["first"]  # counts: windows, scores, anomalies, incidents, alerts
    assert dask["first"]["windows_scored"] > 0
    assert dask["again"]["scores_written"] == 0 and default["again"]["scores_written"] == 0
    trained = {k: v for k, v in default["trained"].items() if k not in ("run_id",)}
    other = {k: v for k, v in dask["trained"].items() if k not in ("run_id",)}
    for result in (trained, other):
        result["candidates"] = [{k: v for k, v in c.items() if k != "fit_seconds"} for c in result["candidates"]]
    assert other == trained  # same versions, thresholds, metrics, epochs, gate decision
    pd.testing.assert_frame_equal(dask["versions"], default["versions"], check_exact=True)  # thresholds, metrics


def tables_of(warehouse: Warehouse) -> dict[str, pd.DataFrame]:
    with connect(warehouse) as con:
        return {name: con.execute(f"SELECT {columns} FROM {name} ORDER BY ALL").df()
                for name, columns in TABLES.items()}


def test_scoring_asset_by_asset_in_any_order_writes_what_one_run_writes(tmp_path):
    """The library under the fan-out, without Dask: each asset scored (and its incidents
    merged) in a transaction of its own, in reverse order, over data arriving in two parts,
    leaves the tables one run over every asset leaves, row for row."""
    frame = generate_four()
    spec = WindowSpec(size=20, stride=7)
    bundle = train_bundle(frame[frame["timestamp"] < frame["timestamp"].min() + pd.Timedelta(days=1)],
                          stream="pumps", sensors=list(SENSORS), spec=spec, label_columns=["label"],
                          detector_params={"epochs": 2, "hidden": (16,), "latent": 4, "n_threads": 1}).bundle
    cut = frame["timestamp"].min() + pd.Timedelta(hours=61, minutes=13)  # among the faults
    frame[frame["timestamp"] < cut].to_csv(tmp_path / "early.csv", index=False)
    frame[frame["timestamp"] >= cut].to_csv(tmp_path / "late.csv", index=False)
    schema = StreamSchema(sensors=tuple(SENSORS), label_columns=("label",))
    whole, split = Warehouse.at(tmp_path / "whole"), Warehouse.at(tmp_path / "split")
    assets = sorted(frame["asset"].unique())

    def score_some(warehouse: Warehouse, only: list[str] | None) -> ScoreResult:
        return score_stream(warehouse, "pumps", bundle.score_readings, bundle.spec, bundle.input_columns(),
                            "pumps-detector", 1, incidents=IncidentRule(), assets=only)

    totals = []
    for part in ("early.csv", "late.csv"):
        for warehouse in (whole, split):
            assert ingest_file(warehouse, "pumps", schema, tmp_path / part).status == "ok"
        one = score_some(whole, None)
        parts = [score_some(split, [asset]) for asset in reversed(assets)]
        totals.append((one, ScoreResult.combined("pumps", 1, parts)))
    for one, combined in totals:
        assert combined == one
    assert totals[1][0].windows_scored > 0 and totals[1][0].incident_changes > 0
    a, b = tables_of(split), tables_of(whole)
    assert len(b["incidents"]) > 0 and b["watermarks"]["asset"].tolist() == assets
    for name in TABLES:
        pd.testing.assert_frame_equal(a[name], b[name], check_exact=True, obj=name)


def generate_four() -> pd.DataFrame:
    return generate_stream(SPEC).readings


def test_split_assets_keeps_every_asset_once_in_order():
    assets = [f"a{i:02d}" for i in range(10)][::-1]
    assert split_assets(assets, 3, 2) == [["a00", "a01", "a02"], ["a03", "a04", "a05"], ["a06", "a07", "a08"],
                                          ["a09"]]
    groups = split_assets(assets, 0, 2)  # 4 groups per thread: 8 groups of at most 2
    assert [a for g in groups for a in g] == sorted(assets) and max(len(g) for g in groups) == 2
    assert split_assets([], 0, 2) == []


@pytest.mark.parametrize(("table", "expected"), [
    ('kind = "spark"', "runner.kind: Input should be 'default' or 'dask'"),
    ('kind = "dask"\naddress = "scheduler:8786"', "runner.address: address 'scheduler:8786': expected ''"),
    ('address = "tcp://127.0.0.1:8786"', "is set but kind is 'default'"),
    ('kind = "dask"\nn_workers = 0', "runner.n_workers: Input should be greater than or equal to 1"),
])
def test_a_bad_runner_setting_is_one_clear_line(aemon_home, table, expected):
    _, path = aemon_home
    path.write_text(path.read_text() + f"\n[runner]\n{table}\n")
    result = subprocess.run([sys.executable, "-c", "from flows.cli import main; main()", "score", "pumps",
                             "--config", str(path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and expected in lines[0], result.stderr
    assert "Traceback" not in result.stdout


def test_files_staged_side_by_side_commit_as_one_after_the_other(tmp_path, small_stream):
    """The library under the ingest fan-out, without Dask: every file staged against the
    empty lake (as parallel tasks stage them), then committed in order, leaves what
    ingesting them one after the other leaves: a reading repeated by a later file is
    quarantined, not stored twice, and a copy is skipped."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    frame = small_stream.readings
    for asset in ("pump-01", "pump-02"):
        frame[frame["asset"] == asset].to_csv(inbox / f"{asset}.csv", index=False)
    messy_files(inbox)
    schema = StreamSchema(sensors=tuple(SENSORS), label_columns=("label",))
    paths = list_inbox(inbox)
    one, side = Warehouse.at(tmp_path / "one"), Warehouse.at(tmp_path / "side")
    expected = [ingest_file(one, "pumps", schema, path) for path in paths]
    staged = [stage_file(side, "pumps", schema, path) for path in paths]
    got = commit_staged(side, "pumps", schema, staged)
    assert [r.status for r in got] == [r.status for r in expected]
    assert [(r.rows_in, r.rows_accepted, r.rows_quarantined, r.rows_duplicate) for r in got] == [
        (r.rows_in, r.rows_accepted, r.rows_quarantined, r.rows_duplicate) for r in expected]
    assert sum(r.rows_duplicate for r in got) > 0  # the repeated readings were found
    a, b = ingest_tables(side, inbox), ingest_tables(one, inbox)
    assert len(b["readings"]) == len(frame[frame["asset"].isin(["pump-01", "pump-02"])])
    for name in INGEST_TABLES:
        pd.testing.assert_frame_equal(a[name], b[name], check_exact=True, obj=name)
    leftovers = sorted(p.name for p in (tmp_path / "side").rglob("*.parquet") if p.name.startswith((".", "part-")))
    registered = sorted(p.name for p in (tmp_path / "one").rglob("*.parquet") if p.name.startswith((".", "part-")))
    assert len(leftovers) == len(registered)  # no stage of a discarded or deferred file left behind
