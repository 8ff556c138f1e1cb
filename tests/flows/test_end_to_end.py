"""The whole path on real components: files -> ingest flow -> Parquet lake + DuckDB ->
train flow -> MLflow SQLite registry -> score flow -> anomalies in DuckDB."""
from __future__ import annotations

import shutil
from pathlib import Path

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
from monitoring.errors import EvaluationError, IncidentError
from monitoring.evaluation.labeled import evaluate_incidents
from monitoring.models import registry
from monitoring.store.connection import connect
from monitoring.store.readings import count_readings, read_readings
from monitoring.store.results import read_evaluations
from monitoring.store.schema import TABLES
from tests.flows.prefect_events import read_events


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
    assert run["scored"]["incidents"] == int((stored["status"] != "closed").sum())
    assert len(stored) > 0 and stored["incident_id"].is_unique
    merged = merge_incidents(run["before"]["anomalies"], run["config"].stream("pumps").alerts.rule())
    columns = ["asset", "start", "end", "n_windows", "top_sensors"]
    pd.testing.assert_frame_equal(stored[columns].reset_index(drop=True), merged[columns].reset_index(drop=True),
                                  check_dtype=False)
    assert set(stored["model_versions"]) == {str(run["trained"]["version"])}
    # in data time: closed once no later window can merge in, recovered after rule.recovery of normal scores
    marks = run["before"]["watermarks"].set_index("asset")["last_window_end"]
    rule = run["config"].stream("pumps").alerts.rule()
    anomalies = run["before"]["anomalies"]
    span = (anomalies["window_end"] - anomalies["window_start"]).max()
    quiet = stored["asset"].map(marks) - stored["end"]
    expected = ["closed" if q >= rule.merge_gap + span else "recovered" if q >= rule.recovery else "open"
                for q in quiet]
    assert stored["status"].tolist() == expected
    # the first scoring of history records the closed ones without alerting anyone
    log = run["before"]["incident_log"]
    assert set(log["incident_id"]) == set(stored["incident_id"])
    closed = set(stored.loc[stored["status"] == "closed", "incident_id"])
    assert not log[log["incident_id"].isin(closed)]["notify"].any()
    assert log[~log["incident_id"].isin(closed)]["notify"].all()


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
    """Runs last in this module: it registers new versions. The retraining cross-fits its
    thresholds (the stream's [train] table, calibration_folds = 3), and every candidate's run
    says so."""
    config = run["config"]
    incidents = run["before"]["incidents"]
    cross_fitted = run["root"] / "cross-fitted.toml"
    cross_fitted.write_text(Path(run["config_path"]).read_text() + "\n[streams.pumps.train]\ncalibration_folds = 3\n")
    retrained = train_detectors("pumps", config_path=str(cross_fitted))
    champion = registry.resolve_alias(config.mlflow_tracking_uri, "pumps")
    assert (retrained["version"], retrained["kind"]) == (champion.version, champion.kind)
    assert retrained["threshold"] == champion.threshold  # also when the gate kept the earlier champion
    client = MlflowClient(tracking_uri=config.mlflow_tracking_uri)
    parent = client.get_run(retrained["run_id"])
    assert parent.data.params["train.n_excluded_intervals"] == str(len(incidents))
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(c.data.params["detector.kind"] for c in children) == sorted(config.stream("pumps").detectors.kinds)
    assert {c.data.params["calibration.folds"] for c in children} == {"3"}
    report = client.download_artifacts(parent.info.run_id, "data_quality/report.csv")
    quality = pd.read_csv(report)
    assert sorted(quality["sensor"]) == sorted(config.stream("pumps").sensors)
    assert set(quality["grade"]) <= {"high", "medium", "low"}


# -- alerts: after the retraining above, a new file arrives ---------------------------

@pytest.fixture(scope="module")
def live(run):
    """After the history was scored, a file with a fault lands (the next four hours of one
    pump, a discharge pressure surge in them); the schedule's ingest and score take it."""
    from features.synthetic import SENSORS

    config, lake = run["config"], run["before"]["lake.pumps"]
    asset = sorted(lake["asset"].unique())[0]
    tail = lake[lake["asset"] == asset].tail(240)[["timestamp", "asset", *SENSORS, "label"]].reset_index(drop=True)
    tail["timestamp"] += tail["timestamp"].iloc[-1] - tail["timestamp"].iloc[0] + pd.Timedelta(minutes=1)
    fault = tail.index[150:200]
    sensor = "discharge_pressure"
    tail.loc[fault, sensor] += 8 * lake[sensor].std()
    tail.loc[fault, "label"] = 1
    path = config.inbox("pumps") / "live-1.csv"
    tail.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%S")
    ingested = ingest_readings("pumps", config_path=run["config_path"])
    scored = score_stream("pumps", config_path=run["config_path"])
    with connect(config.warehouse) as con:
        log = con.execute("SELECT * FROM incident_log ORDER BY logged_at, incident_id, revision").df()
    new = log[~log.set_index(["incident_id", "revision"]).index.isin(
        run["before"]["incident_log"].set_index(["incident_id", "revision"]).index)]
    return {"asset": asset, "sensor": sensor, "ingested": ingested, "scored": scored, "log": new,
            "start": tail.loc[fault[0], "timestamp"]}


def test_a_fault_in_a_new_file_opens_an_incident_and_alerts_through_events_and_artifacts(run, live):
    from prefect.client.orchestration import get_client

    log = live["log"]
    alerting = log[log["notify"]]
    opened_rows = alerting[alerting["event"] == "opened"]
    assert opened_rows["asset"].tolist() == [live["asset"]], log[["asset", "event", "start"]]
    assert live["scored"]["alerts_sent"]["prefect-event"] == len(alerting)
    ids = set(alerting["incident_id"])
    def ours(found: list) -> list:
        return [e for e in found if e.resource.get("aemon.incident.id") in ids]

    events = ours(read_events("aemon.incident.", until=lambda found: len(ours(found)) >= len(alerting)))
    assert sorted((e.event, e.resource.id) for e in events) == sorted(
        (f"aemon.incident.{r.event}", f"aemon.stream.pumps.asset.{r.asset}") for r in alerting.itertuples())
    opened = next(e for e in events if e.event == "aemon.incident.opened")
    payload = opened.payload
    assert payload["incident_id"] in set(alerting["incident_id"]) and payload["stream"] == "pumps"
    champion = registry.resolve_alias(run["config"].mlflow_tracking_uri, "pumps")  # after the retraining above
    assert payload["model_version"] == champion.version and payload["severity"] >= 1.5
    assert payload["top_sensors"][0] == {"sensor": live["sensor"], "direction": "above"}
    assert opened.resource["aemon.incident.id"] == payload["incident_id"]
    with connect(run["config"].warehouse) as con:
        delivered = con.execute("SELECT count(*) FROM alert_deliveries WHERE channel = 'prefect-event' AND "
                                "list_contains(?, split_part(alert_id, '/', 1))", [list(ids)]).fetchone()
    assert delivered == (len(alerting),)
    with get_client(sync_client=True) as client:
        scoring = client.read_latest_artifacts()
    keys = {a.key for a in scoring}
    assert {"pumps-scoring", "pumps-incidents"} <= keys
    summary = next(a for a in scoring if a.key == "pumps-scoring")
    assert "active incidents" in str(summary.data)


def test_alerts_go_to_a_signed_webhook_once_and_wait_while_it_fails(run, live, monkeypatch, caplog):
    import hashlib
    import hmac
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    received: list[tuple[dict, str]] = []
    answer = {"code": 500}

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if answer["code"] == 200:
                received.append((json.loads(body), self.headers["X-Aemon-Signature"]))
                received[-1][0]["_raw"] = body.decode()
            self.send_response(answer["code"])
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    token = "s3cr3t-path-token"
    monkeypatch.setenv("AEMON_TEST_HOOK_URL", f"http://127.0.0.1:{server.server_port}/hooks/{token}")
    monkeypatch.setenv("AEMON_WEBHOOK_SECRET", "signing-key")
    path = run["root"] / "home" / "aemon-webhook.toml"
    path.write_text(Path(run["config_path"]).read_text() + '\n[webhook]\nurl_env = "AEMON_TEST_HOOK_URL"\n')
    try:
        caplog.set_level("INFO")
        failing = score_stream("pumps", config_path=str(path))
        assert failing["alerts_sent"]["webhook"] == 0 and not received
        assert token not in caplog.text and "127.0.0.1" in caplog.text  # the host is named, the URL never
        answer["code"] = 200
        sent = score_stream("pumps", config_path=str(path))
        log = live["log"]  # the first scoring's history never alerted
        assert sent["alerts_sent"]["webhook"] == int(log["notify"].sum()) == len(received)
        for message, header in received:
            raw = message.pop("_raw").encode()
            assert header == "sha256=" + hmac.new(b"signing-key", raw, hashlib.sha256).hexdigest()
        assert {m["event"] for m, _ in received} <= {f"aemon.incident.{e}" for e in log["event"]}
        again = score_stream("pumps", config_path=str(path))
        assert again["alerts_sent"]["webhook"] == 0 and len(received) == int(log["notify"].sum())
    finally:
        server.shutdown()
        path.unlink()


def test_status_shows_how_far_each_asset_is_ingested_and_scored(run):
    """`aemon status --json` against the warehouse's own tables, read independently here."""
    import json

    with connect(run["config"].warehouse) as con:
        lake = read_readings(con, "pumps")
        marks = dict(con.execute("SELECT asset, last_window_end FROM watermarks WHERE stream = 'pumps'").fetchall())
        versions = dict(con.execute("SELECT asset, arg_max(model_version, window_end) FROM scores "
                                    "WHERE stream = 'pumps' GROUP BY asset").fetchall())
        active = dict(con.execute("SELECT asset, count(*) FILTER (WHERE status IN ('open', 'acknowledged', "
                                  "'recovered')) FROM incidents WHERE stream = 'pumps' GROUP BY asset").fetchall())
        files = con.execute("SELECT DISTINCT file FROM ingest_batches WHERE stream = 'pumps' AND rows_accepted > 0"
                            ).fetchall()
        quarantined = con.execute("SELECT count(*) FROM quarantine WHERE stream = 'pumps'").fetchone()[0]
    result = CliRunner().invoke(app, ["status", "pumps", "--json", "--config", run["config_path"]])
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    assert got["files"] == len(files) >= len(run["files"]) and got["quarantined_rows"] == quarantined
    assert [a["asset"] for a in got["assets"]] == sorted(lake["asset"].unique())
    for row in got["assets"]:
        times = lake.loc[lake["asset"] == row["asset"], "timestamp"]
        mark = pd.Timestamp(marks[row["asset"]])
        assert row["readings"] == len(times) and row["last_reading"] == times.max().isoformat()
        assert row["scored_through"] == mark.isoformat() and row["unscored_readings"] == int((times > mark).sum())
        assert row["model_version"] == versions[row["asset"]] and row["model_version"] >= run["trained"]["version"]
        assert row["active_incidents"] == active.get(row["asset"], 0)


def test_incidents_commands_list_show_ack_and_close(run, live):
    path = run["config_path"]
    runner = CliRunner()
    listed = runner.invoke(app, ["incidents", "list", "--all", "--config", path])
    assert listed.exit_code == 0, listed.output
    assert live["log"]["incident_id"].iloc[0] in listed.output
    incident = live["log"]["incident_id"].iloc[0]
    shown = runner.invoke(app, ["incidents", "show", incident[:7], "--config", path])
    assert shown.exit_code == 0 and "opened" in shown.output, shown.output
    acked = runner.invoke(app, ["incidents", "ack", incident[:7], "--by", "ana", "--config", path])
    assert acked.exit_code == 0 and "acknowledged by ana" in acked.output, acked.output
    closed = runner.invoke(app, ["incidents", "close", incident, "--by", "ana", "--note", "valve swapped",
                                 "--config", path])
    assert closed.exit_code == 0 and "closed by ana: valve swapped" in closed.output, closed.output
    again = runner.invoke(app, ["incidents", "close", incident, "--config", path])
    assert isinstance(again.exception, IncidentError) and "already closed" in str(again.exception)
    # the default listing leaves the closed ones out and says how many, and how to list them
    with connect(load_config(path).warehouse) as con:
        n_closed = int(con.execute("SELECT count(*) FROM incidents WHERE status = 'closed'").fetchone()[0])
    active = runner.invoke(app, ["incidents", "list", "--config", path])
    assert active.exit_code == 0 and n_closed >= 1, active.output
    assert f"{n_closed} closed (`aemon incidents list --all` lists them too)" in " ".join(active.output.split())
    missing = runner.invoke(app, ["incidents", "show", "zzzz", "--config", path])
    assert isinstance(missing.exception, IncidentError)
    assert "no incident has an id starting with 'zzzz'" in str(missing.exception)
    # the manual changes are alerts of the next scoring run
    sent = score_stream("pumps", config_path=path)
    assert sent["alerts_sent"]["prefect-event"] == 2


def readme_section(title: str) -> str:
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    start = text.index(f"## {title}")
    return text[start:text.index("\n## ", start + 1)]


def test_the_readme_operator_queries_run_and_its_automation_is_valid(run, live):
    import yaml
    from prefect.events.schemas.automations import AutomationCore

    from monitoring.store.connection import query_rows

    section = readme_section("Incidents and alerts")
    sql = section.split("```sql\n")[1].split("```")[0]
    incident = live["log"]["incident_id"].iloc[0]
    queries = [q.strip().replace("3f9c0a1b2c3d", incident) for q in sql.split(";") if q.strip()]
    results = {}
    for query in queries:
        comment = query.splitlines()[0]
        results[comment] = query_rows(run["config"].warehouse, query)[1]
    assert len(results) == 5
    assert results["-- top sensors per incident, with their direction"]
    assert results["-- scores around an incident: an hour either side"]
    assert results["-- how an incident evolved"][0][2] == "opened"
    automation = yaml.safe_load(section.split("```yaml\n")[1].split("```")[0])
    parsed = AutomationCore.model_validate(automation)
    assert parsed.trigger.expect == {"aemon.incident.opened", "aemon.incident.escalated", "aemon.incident.reopened"}
