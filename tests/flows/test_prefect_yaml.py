"""Every deployment in prefect.yaml points at a real flow and its parameters validate."""
from pathlib import Path

import pytest
import yaml
from prefect.flows import Flow, load_flow_from_entrypoint

ROOT = Path(__file__).resolve().parents[2]
DEPLOYMENTS = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]


def test_every_flow_has_a_deployment():
    entrypoints = {d["entrypoint"] for d in DEPLOYMENTS}
    assert entrypoints == {
        "flows/ingest.py:ingest_readings", "flows/score.py:score_stream", "flows/train.py:train_detectors",
        "flows/maintain.py:maintain_warehouse", "flows/drift.py:check_drift",
    }


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=[d["name"] for d in DEPLOYMENTS])
def test_entrypoint_resolves_and_parameters_validate(deployment, monkeypatch):
    monkeypatch.chdir(ROOT)
    flow = load_flow_from_entrypoint(deployment["entrypoint"])
    assert isinstance(flow, Flow)
    validated = flow.validate_parameters(deployment.get("parameters", {}))
    if "stream" in flow.parameters.properties:  # the warehouse's upkeep is not per stream
        assert validated["stream"] == "pumps"
    assert deployment["work_pool"]["name"]
    (schedule,) = deployment["schedules"]
    assert ("interval" in schedule) != ("cron" in schedule)


def test_schedules_are_interval_for_ingest_score_and_drift_and_cron_for_train():
    kinds = {d["entrypoint"].split(":")[1]: set(d["schedules"][0]) for d in DEPLOYMENTS}
    assert "interval" in kinds["ingest_readings"] and "interval" in kinds["score_stream"]
    assert "interval" in kinds["check_drift"]
    assert "cron" in kinds["train_detectors"] and "cron" in kinds["maintain_warehouse"]


def test_bad_parameters_are_refused():
    flow = load_flow_from_entrypoint(str(ROOT / "flows/score.py") + ":score_stream")
    with pytest.raises(Exception, match="stream"):
        flow.validate_parameters({})


def test_drift_retrains_through_the_train_deployment_of_this_file():
    from flows.drift import train_deployment_name

    train = next(d for d in DEPLOYMENTS if d["entrypoint"] == "flows/train.py:train_detectors")
    drift = next(d for d in DEPLOYMENTS if d["entrypoint"] == "flows/drift.py:check_drift")
    assert train_deployment_name(drift["parameters"]["stream"]) == f"train-detectors/{train['name']}"
    assert drift["schedules"][0]["interval"] == 3600


def test_score_is_triggered_by_ingested_readings_as_aemon_serve_does(tmp_path, config_writer):
    """The trigger in prefect.yaml validates as Prefect's deploy reads it, and is the one
    `aemon serve` builds; the interval stays as the fallback, one run at a time, queued."""
    from prefect.events import DeploymentTriggerTypes
    from pydantic import TypeAdapter

    from flows.config import load_config
    from flows.ingest import READINGS_INGESTED
    from flows.serve import stream_deployments

    (deployment,) = [d for d in DEPLOYMENTS if d["name"] == "pumps-score"]
    (spec,) = deployment["triggers"]
    trigger = TypeAdapter(DeploymentTriggerTypes).validate_python(spec)
    assert trigger.expect == {READINGS_INGESTED} and trigger.enabled
    assert trigger.match.model_dump() == {"prefect.resource.id": "aemon.stream.pumps"}
    assert deployment["schedules"] == [{"interval": 900}]
    assert deployment["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}
    assert all(not d.get("triggers") for d in DEPLOYMENTS if d is not deployment)

    served = {d.name: d for d in stream_deployments(load_config(config_writer(tmp_path / "home")))}
    score = served["pumps-score"]
    (built,) = score.triggers
    assert built.model_dump(mode="json") == trigger.model_dump(mode="json")
    assert score.concurrency_limit == 1 and score.concurrency_options.collision_strategy.value == "ENQUEUE"
    assert [s.schedule.interval.total_seconds() for s in score.schedules] == [900.0]
    assert all(not d.triggers for name, d in served.items() if name != "pumps-score")


def test_the_score_trigger_can_be_turned_off_per_stream(tmp_path, config_writer):
    from flows.config import load_config
    from flows.serve import stream_deployments

    path = config_writer(tmp_path / "home", extra="[streams.pumps.schedule]\nscore_on_ingest = false\n")
    served = {d.name: d for d in stream_deployments(load_config(path))}
    assert served["pumps-score"].triggers == [] and served["pumps-score"].concurrency_limit == 1
