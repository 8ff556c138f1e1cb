"""[runner] kind = "dask": train and score fan out by groups of assets on a real Dask
LocalCluster of 2 worker processes, and leave the same tables, models and thresholds as
the default runner (one scoring task over every asset, the fits in a process pool)."""
from __future__ import annotations

import subprocess
import sys

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
from monitoring.store.ingestion import ingest_file

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
    ingest_readings("pumps", config_path=str(path))
    trained = train_detectors("pumps", config_path=str(path), train_end=clean_end.to_pydatetime())
    first = score.score_stream("pumps", config_path=str(path))
    again = score.score_stream("pumps", config_path=str(path))  # nothing new: nothing written
    with connect(config.warehouse) as con:
        tables = {name: con.execute(f"SELECT {columns} FROM {name} ORDER BY ALL").df()
                  for name, columns in TABLES.items()}
    versions = registry.compare_versions(config.mlflow_tracking_uri, "pumps")
    return {"trained": trained, "first": first, "again": again, "tables": tables, "versions": versions}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, prefect_harness):
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("AEMON_HOME", raising=False)
        mp.delenv("AEMON_CONFIG", raising=False)
        default = run_home(tmp_path_factory.mktemp("default"), "", mp)
        dask = run_home(tmp_path_factory.mktemp("dask"), DASK, mp)
    dask["task_runs"] = scoring_task_runs()
    return default, dask


def scoring_task_runs() -> list[tuple[str, str]]:
    """(name, state) of the scoring tasks the Prefect API recorded (the workers report them)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="score-pump")))
    return sorted((run.name, run.state_name or "") for run in runs)


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
