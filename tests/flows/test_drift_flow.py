"""check-drift on real components: a small stream ingested and trained through the flows, then
checked on stationary readings (no drift, no training) and after a level shift of one sensor
(drift, held over two checks on new readings, then the train flow runs and its gate decides);
rows in drift_checks, a `drift-check` run per check in MLflow, and `aemon drift`."""
from __future__ import annotations

import json

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from prefect import flow
from prefect.client.orchestration import get_client
from typer.testing import CliRunner

from features.synthetic import SyntheticSpec, generate_stream
from flows import tasks
from flows.cli import app
from flows.config import load_config
from flows.drift import check_drift, train_deployment_name
from flows.ingest import ingest_readings
from flows.train import train_detectors
from monitoring.models import registry
from monitoring.store.connection import connect
from tests.flows.prefect_events import read_events

CONFIG = """
[streams.pumps.detectors]
n_threads = 1
kinds = ["mlp_ae"]
epochs = 15

[streams.pumps.drift]
hold_checks = 2
"""
SHIFTED = "motor_current"


@pytest.fixture(scope="module")
def run(tmp_path_factory, prefect_harness, config_writer):
    root = tmp_path_factory.mktemp("drift")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.delenv("AEMON_HOME", raising=False)
        mp.delenv("AEMON_CONFIG", raising=False)
        config_path = str(config_writer(root / "home", extra=CONFIG))
        config = load_config(config_path)
        readings = generate_stream(SyntheticSpec(n_assets=2, days=5, faults_per_kind=0, seed=3)).readings
        t0 = readings["timestamp"].min()
        day = [t0 + pd.Timedelta(days=d) for d in (3, 4, 4.5)]
        sd = readings.loc[readings["timestamp"] <= day[0], SHIFTED].std()
        shifted = readings.assign(**{SHIFTED: readings[SHIFTED] + 2 * sd})
        inbox = config.inbox("pumps")
        inbox.mkdir(parents=True)

        def arrive(name: str, part: pd.DataFrame) -> None:
            part.to_csv(inbox / name, index=False, date_format="%Y-%m-%dT%H:%M:%S")
            ingest_readings("pumps", config_path=config_path)

        arrive("history.csv", readings[readings["timestamp"] <= day[1]])
        trained = train_detectors("pumps", config_path=config_path, train_end=day[0].to_pydatetime())
        stationary = check_drift("pumps", config_path=config_path)
        arrive("shift-1.csv", shifted[(shifted["timestamp"] > day[1]) & (shifted["timestamp"] <= day[2])])
        first = check_drift("pumps", config_path=config_path)
        arrive("shift-2.csv", shifted[shifted["timestamp"] > day[2]])
        second = check_drift("pumps", config_path=config_path)
        yield {"config": config, "config_path": config_path, "trained": trained, "stationary": stationary,
               "first": first, "second": second, "mp": mp}


def test_stationary_readings_do_not_drift_or_train(run):
    stationary = run["stationary"]
    assert not stationary["drifted"] and stationary["training"] is None, stationary
    assert stationary["model_version"] == run["trained"]["version"] == 1
    assert stationary["decision"] == "no drift"


def test_a_shift_drifts_and_holds_on_the_second_check_on_new_readings(run):
    first, second = run["first"], run["second"]
    drifted = [f["feature"] for f in first["features"] if f["drifted"] and f["kind"] == "sensor"]
    assert drifted == [SHIFTED]
    assert (first["streak"], first["holds"], first["retrain_requested"], first["training"]) == (1, False, False, None)
    assert (second["streak"], second["holds"], second["retrain_requested"]) == (2, True, True)

    def ours(found: list) -> list:
        return [e for e in found if e.payload["check_id"] == second["check_id"]]

    alerts = ours(read_events("aemon.stream.drift", until=lambda found: bool(ours(found))))
    assert len(alerts) == 1 and alerts[0].resource.id == "aemon.stream.pumps"
    assert alerts[0].payload["retrain_requested"] and alerts[0].payload["drifted"]
    assert second["recent_end"] > first["recent_end"]


def test_drift_that_holds_runs_the_train_flow_and_its_gate_decides(run):
    training = run["second"]["training"]
    versions = {c["version"] for c in training["candidates"]}
    assert versions == {2}
    assert training["reason"]  # the gate's decision, whichever way it went
    client = MlflowClient(run["config"].mlflow_tracking_uri)
    assert len(client.search_model_versions("name = 'pumps-detector'")) == 2
    assert registry.resolve_alias(run["config"].mlflow_tracking_uri, "pumps").version == training["version"]


def test_every_check_is_stored_as_rows_and_an_mlflow_run(run):
    checks = [run[k] for k in ("stationary", "first", "second")]
    with connect(run["config"].warehouse) as con:
        stored = con.execute("SELECT check_id, feature, drifted, check_drifted, streak, retrain_requested, "
                             "mlflow_run_id, psi FROM drift_checks ORDER BY checked_at, feature").df()
    assert stored.groupby("check_id", sort=False).size().tolist() == [7 + 2] * 3
    by_check = stored.groupby("check_id", sort=False).first()
    assert list(by_check.index) == [c["check_id"] for c in checks]
    assert by_check["check_drifted"].tolist() == [False, True, True]
    assert by_check["retrain_requested"].tolist() == [False, False, True]
    client = MlflowClient(run["config"].mlflow_tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("pumps").experiment_id],
                              "tags.role = 'drift-check'", order_by=["attributes.start_time ASC"])
    assert [r.info.run_id for r in runs] == [c["mlflow_run_id"] for c in checks]
    assert {r.info.run_name for r in runs} == {"drift-check"}
    shifted_psi = stored.loc[(stored["check_id"] == checks[2]["check_id"]) & (stored["feature"] == SHIFTED), "psi"]
    assert runs[2].data.metrics[f"psi.{SHIFTED}"] == pytest.approx(shifted_psi.item())
    assert runs[2].data.metrics["drifted"] == 1.0 and runs[0].data.metrics["drifted"] == 0.0
    assert {"alert_rate", "alert_rate.implied", "psi.score"} <= set(runs[0].data.metrics)


def test_aemon_drift_prints_the_check_as_json_without_retraining(run):
    result = CliRunner().invoke(app, ["drift", "pumps", "--no-retrain", "--json", "--config", run["config_path"]])
    assert result.exit_code == 0, result.output
    check = json.loads(result.output.strip().splitlines()[-1])
    assert check["training"] is None and not check["retrain_requested"]
    assert [f["feature"] for f in check["features"]][-2:] == ["__score__", "__alert_rate__"]


def test_checks_on_the_same_readings_after_a_retraining_request_start_the_streak_again(run):
    """After the check that asked for a retraining the count starts from zero, and a check on
    readings already checked (no new file came) does not advance it."""
    checks = []
    for _ in range(2):
        result = CliRunner().invoke(app, ["drift", "pumps", "--no-retrain", "--json", "--config", run["config_path"]])
        assert result.exit_code == 0, result.output
        checks.append(json.loads(result.output.strip().splitlines()[-1]))
    assert checks[0]["recent_end"] == checks[1]["recent_end"] == run["second"]["recent_end"]
    assert checks[0]["streak"] == checks[1]["streak"] == int(checks[0]["drifted"])
    assert not checks[1]["holds"]


def test_aemon_drift_prints_a_table_and_the_decision(run):
    result = CliRunner().invoke(app, ["drift", "pumps", "--no-retrain", "--config", run["config_path"]])
    assert result.exit_code == 0, result.output
    assert "alert rate" in result.output and "window score" in result.output and SHIFTED in result.output
    assert "retraining is off" in result.output or "no drift" in result.output or "not holding" in result.output


def test_aemon_drift_of_an_unknown_stream_is_one_line(run):
    result = CliRunner().invoke(app, ["drift", "nope", "--config", run["config_path"]])
    assert result.exit_code != 0
    assert "stream 'nope' is not configured" in str(result.exception) + result.output


def test_under_a_deployment_the_train_deployment_is_scheduled(run):
    """The branch a deployed check-drift takes: a run of `train-detectors/<stream>-train`
    scheduled for a worker, not waited for."""
    deployment_id = train_detectors.to_deployment(name="pumps-train", parameters={"stream": "pumps"}).apply()

    @flow
    def schedule() -> str:
        return tasks.run_train_deployment(train_deployment_name("pumps"))

    flow_run_id = schedule()
    with get_client(sync_client=True) as client:
        scheduled = client.read_flow_run(flow_run_id)
    assert scheduled.deployment_id == deployment_id and scheduled.state.is_scheduled()


def test_the_score_flow_applies_the_streams_adaptive_alarm(run):
    """`[streams.<s>.alerts] alarm = "adaptive"`: of the windows above the champion's
    threshold, the score flow flags only those the rule picks over each asset's stored
    history; with a z no window reaches, none of them."""
    from flows.score import score_stream
    from monitoring.alerting.adaptive import AlarmRule, adaptive_mask

    home = run["config"].home
    path = home / "aemon-adaptive.toml"
    path.write_text(f'home = "{home.as_posix()}"\n\n' + (home / "aemon.toml").read_text().split("\n", 2)[2]
                    + '\n[streams.pumps.alerts]\nalarm = "adaptive"\nadaptive_z = 50\nadaptive_min_history = 20\n')
    rule = load_config(str(path)).stream("pumps").alerts.alarm_rule()
    assert rule == AlarmRule("adaptive", 3, 50.0, 20)
    result = score_stream("pumps", config_path=str(path))
    with connect(run["config"].warehouse) as con:
        scores = con.execute("SELECT asset, window_end, score, threshold, is_anomaly, excluded FROM scores "
                             "ORDER BY asset, window_end").df()
    assert len(scores) == result["windows_scored"] > 0 and not scores["excluded"].any()
    above = (scores["score"] > scores["threshold"]).to_numpy()
    expected = above & pd.concat([
        pd.Series(adaptive_mask(part["score"].to_numpy(), rule, thresholds=part["threshold"].to_numpy()),
                  index=part.index) for _, part in scores.groupby("asset")]).sort_index().to_numpy()
    assert (scores["is_anomaly"].to_numpy() == expected).all()
    assert above.sum() > 0 and not scores["is_anomaly"].any()
