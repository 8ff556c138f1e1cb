"""The whole path on real components: files -> ingest flow -> Parquet lake + DuckDB ->
train flow -> MLflow SQLite registry -> score flow -> anomalies in DuckDB."""
from __future__ import annotations

import shutil

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from flows.cli import app
from flows.config import load_config
from flows.demo import write_inbox
from flows.ingest import ingest_readings
from flows.score import score_stream
from flows.train import train_detectors
from monitoring.alerting.incidents import merge_incidents
from monitoring.errors import EvaluationError
from monitoring.evaluation.labeled import evaluate_incidents
from monitoring.models import registry
from monitoring.store.connection import connect
from monitoring.store.readings import count_readings, read_readings
from monitoring.store.results import read_evaluations
from monitoring.store.schema import TABLES


def snapshot(warehouse) -> dict[str, pd.DataFrame]:
    with connect(warehouse) as con:
        tables = {name: con.execute(f"SELECT * FROM {name} ORDER BY ALL").df() for name in TABLES}
        tables["lake.pumps"] = read_readings(con, "pumps")
    return tables


@pytest.fixture(scope="module")
def run(tmp_path_factory, prefect_harness, small_spec, config_writer):
    root = tmp_path_factory.mktemp("e2e")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.delenv("AEMON_HOME", raising=False)
        mp.delenv("AEMON_CONFIG", raising=False)
        config_path = str(config_writer(root / "home"))
        config = load_config(config_path)
        files, faults, clean_end = write_inbox(config, small_spec)
        ingested = ingest_readings("pumps", config_path=config_path)
        trained = train_detectors("pumps", config_path=config_path, train_end=clean_end.to_pydatetime())
        scored = score_stream("pumps", config_path=config_path)
        before = snapshot(config.warehouse)
        yield {
            "root": root, "config": config, "config_path": config_path, "files": files, "faults": faults,
            "ingested": ingested, "trained": trained, "scored": scored, "before": before, "mp": mp,
        }


def test_ingest_takes_every_file_once(run):
    assert [r["status"] for r in run["ingested"]] == ["ok"] * len(run["files"])
    lake = run["before"]["lake.pumps"]
    assert len(lake) == sum(r["rows_accepted"] for r in run["ingested"])
    assert lake["asset"].nunique() == run["faults"]["asset"].nunique()
    assert len(run["before"]["ingest_batches"]) == len(run["files"])


def test_injected_faults_are_found_at_incident_level(run):
    anomalies = run["before"]["anomalies"]
    assert (anomalies["model_version"] == run["trained"]["version"]).all()
    settings = run["config"].stream("pumps")
    incidents = merge_incidents(anomalies, settings.alerts.rule())
    evaluation = evaluate_incidents(incidents, run["faults"])
    missed = evaluation.faults.loc[~evaluation.faults["found"], ["asset", "kind", "sensors"]]
    assert evaluation.recall >= 0.8, f"missed faults:\n{missed}"
    assert evaluation.precision >= 0.8, f"{evaluation.n_incidents} incidents, {evaluation.n_true_incidents} true"


def test_score_flow_stores_the_incidents_its_flags_merge_into(run):
    stored = run["before"]["incidents"].sort_values(["asset", "start"]).reset_index(drop=True)
    assert run["scored"]["incidents"] == len(stored) > 0
    merged = merge_incidents(run["before"]["anomalies"], run["config"].stream("pumps").alerts.rule())
    columns = ["asset", "start", "end", "n_windows", "top_sensors"]
    pd.testing.assert_frame_equal(stored[columns].reset_index(drop=True), merged[columns].reset_index(drop=True),
                                  check_dtype=False)
    assert set(stored["model_versions"]) == {str(run["trained"]["version"])}
    # the last incident of an asset whose flags reach its watermark may still grow; others are closed
    marks = run["before"]["watermarks"].set_index("asset")["last_window_end"]
    gap = run["config"].stream("pumps").alerts.rule().merge_gap
    expected = ["open" if r.end + gap >= marks[r.asset] else "closed" for r in stored.itertuples()]
    assert stored["status"].tolist() == expected


def test_rerunning_ingest_and_score_changes_no_table(run):
    config_path = run["config_path"]
    assert ingest_readings("pumps", config_path=config_path) == []  # every file unchanged: none read again
    rescored = score_stream("pumps", config_path=config_path)
    assert rescored["scores_written"] == 0 and rescored["anomalies_written"] == 0
    full = score_stream("pumps", config_path=config_path, full=True)
    assert full["windows_scored"] > 0 and full["anomalies_written"] == 0 and full["scores_written"] == 0
    after = snapshot(run["config"].warehouse)
    for name, frame in run["before"].items():
        pd.testing.assert_frame_equal(after[name], frame, obj=name)


def test_same_content_under_another_name_is_not_ingested_again(run):
    config, first = run["config"], run["files"][0]
    copy = config.inbox("pumps") / ("renamed-" + first.name)
    shutil.copy(first, copy)
    try:
        results = {r["file"]: r for r in ingest_readings("pumps", config_path=run["config_path"])}
        assert results[str(copy)]["status"] == "skipped"
        with connect(config.warehouse) as con:
            assert count_readings(con, "pumps") == len(run["before"]["lake.pumps"])
    finally:
        copy.unlink()


def test_champion_alias_resolves_to_a_version_carrying_its_threshold(run):
    config = run["config"]
    version = registry.resolve_alias(config.mlflow_tracking_uri, "pumps")
    assert version.version == run["trained"]["version"]
    assert "champion" in version.aliases
    model, _ = registry.load_model(config.mlflow_tracking_uri, "pumps")
    bundle = registry.loaded_bundle(model)
    assert bundle.threshold == version.threshold == run["trained"]["threshold"]
    assert set(run["before"]["scores"]["threshold"]) == {bundle.threshold}
    client = MlflowClient(tracking_uri=config.mlflow_tracking_uri)
    run_data = client.get_run(version.run_id).data
    assert run_data.metrics["threshold"] == pytest.approx(bundle.threshold)
    losses = client.get_metric_history(version.run_id, "train_loss")
    champion = next(c for c in run["trained"]["candidates"] if c["version"] == version.version)
    assert len(losses) == champion["epochs"] and losses[-1].value < losses[0].value
    assert sorted(c["kind"] for c in run["trained"]["candidates"]) == sorted(config.stream("pumps").detectors.kinds)
    assert run_data.params["threshold.percentile"] == "99.0" and run_data.params["threshold.rule"] == "p99"


def test_nothing_is_written_outside_home(run):
    entries = {p.name for p in run["root"].iterdir()}
    assert entries == {"home"}, entries
    home = {p.name for p in (run["root"] / "home").iterdir()}
    assert {"warehouse.sqlite", "warehouse", "mlflow.db", "inbox", "mlartifacts"} <= home


def test_evaluate_scores_the_stored_alarms_against_the_labels(run):
    config, path = run["config"], run["config_path"]
    result = CliRunner().invoke(app, ["evaluate", "pumps", "--config", path])
    assert result.exit_code == 0, result.output
    assert "point-adjusted F1 (optimistic" in result.output and "NAB standard" in result.output
    with connect(config.warehouse) as con:
        stored = read_evaluations(con, "pumps")
        readings = read_readings(con, "pumps")
    assert len(stored) == 1
    row = stored.iloc[0]
    version = run["trained"]["version"]
    assert row["model_versions"] == str(version) and row["model_name"] == "pumps-detector"

    # The same numbers, recomputed here another way: each reading takes the flag of the
    # latest window of its asset that ended at or before it (merge_asof, backward).
    scores = run["before"]["scores"].sort_values("window_end")
    scores = scores.assign(flag=scores["is_anomaly"] & ~scores["excluded"])
    last_end = scores.groupby("asset")["window_end"].max()
    readings = readings[readings["timestamp"] <= readings["asset"].map(last_end)].sort_values("timestamp")
    joined = pd.merge_asof(readings, scores[["asset", "window_end", "flag"]], left_on="timestamp",
                           right_on="window_end", by="asset", direction="backward")
    alarm = joined["flag"].fillna(False).astype(bool)
    labeled = joined["label"] > 0
    tp, fp = int((alarm & labeled).sum()), int((alarm & ~labeled).sum())
    fn, tn = int((~alarm & labeled).sum()), int((~alarm & ~labeled).sum())
    assert (row["tp"], row["fp"], row["fn"], row["tn"]) == (tp, fp, fn, tn)
    assert row["n_rows"] == len(joined) and row["n_labeled_rows"] == int(labeled.sum())
    assert row["f1"] == pytest.approx(tp / (tp + (fn + fp) / 2)) and row["far"] == pytest.approx(fp / (fp + tn))
    assert row["n_events"] == len(run["faults"]) and 0 < row["n_detected_events"] <= row["n_events"]
    assert row["f1_point_adjusted"] >= row["f1"]
    assert -100 < row["nab_standard"] <= 100 and row["mean_forewarning_s"] > 0
    assert row["range_start"] == joined["timestamp"].min() and row["range_end"] == joined["timestamp"].max()

    client = MlflowClient(tracking_uri=config.mlflow_tracking_uri)
    logged = client.get_run(row["mlflow_run_id"])
    assert logged.info.run_name == "evaluate"
    assert logged.info.experiment_id == client.get_experiment_by_name("pumps").experiment_id
    assert logged.data.tags["model_versions"] == str(version) and logged.data.tags["stream"] == "pumps"
    assert logged.data.tags["range_start"] == row["range_start"].isoformat()
    assert logged.data.metrics["f1"] == pytest.approx(row["f1"])
    assert logged.data.metrics["nab_low_fn"] == pytest.approx(row["nab_low_fn"])
    assert logged.data.metrics["tp"] == tp

    again = CliRunner().invoke(app, ["evaluate", "pumps", "--config", path])
    assert again.exit_code == 0 and f"unchanged since evaluation {row['evaluation_id']}" in again.output
    with connect(config.warehouse) as con:
        assert len(read_evaluations(con, "pumps")) == 1
    assert len(client.search_runs([logged.info.experiment_id], "attributes.run_name = 'evaluate'")) == 1


def test_evaluate_without_labels_or_scores_in_range_is_one_line(run):
    path = run["config_path"]
    first = run["before"]["lake.pumps"]["timestamp"].min()
    cases = [
        (["--version", "99"], "has no scored windows of model version 99"),
        (["--end", (first + pd.Timedelta(hours=1)).isoformat()], "has no labeled readings"),
    ]
    for args, message in cases:
        result = CliRunner().invoke(app, ["evaluate", "pumps", "--config", path, *args])
        assert result.exit_code != 0 and isinstance(result.exception, EvaluationError), result.output
        assert message in str(result.exception)


def test_retraining_keeps_past_incidents_out_and_logs_the_quality_report(run):
    """Runs last in this module: it registers new versions."""
    config = run["config"]
    incidents = run["before"]["incidents"]
    retrained = train_detectors("pumps", config_path=run["config_path"])
    champion = registry.resolve_alias(config.mlflow_tracking_uri, "pumps")
    assert (retrained["version"], retrained["kind"]) == (champion.version, champion.kind)
    assert retrained["threshold"] == champion.threshold  # also when the gate kept the earlier champion
    client = MlflowClient(tracking_uri=config.mlflow_tracking_uri)
    parent = client.get_run(retrained["run_id"])
    assert parent.data.params["train.n_excluded_intervals"] == str(len(incidents))
    report = client.download_artifacts(parent.info.run_id, "data_quality/report.csv")
    quality = pd.read_csv(report)
    assert sorted(quality["sensor"]) == sorted(config.stream("pumps").sensors)
    assert set(quality["grade"]) <= {"high", "medium", "low"}
