"""`aemon models list|compare|promote|rollback` and `aemon threshold recalibrate` on a real
home: a DuckDB lake, an MLflow SQLite store, Prefect's test harness."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

from aemodels.thresholds import ThresholdRule
from features.readers import StreamSchema
from features.synthetic import SENSORS
from flows.cli import app
from flows.config import load_config
from monitoring.models import promotion, registry
from monitoring.models.fitting import fit_candidate, prepare_training
from monitoring.store.ingestion import ingest_file


@pytest.fixture(scope="module")
def home(tmp_path_factory, small_stream, config_writer):
    """Two trainings registered in the home's store: v1 (finds nothing), then v2 (promoted)."""
    root = tmp_path_factory.mktemp("models-cli")
    config_path = config_writer(root / "home")
    config = load_config(config_path)
    csv = root / "readings.csv"
    small_stream.readings.to_csv(csv, index=False)
    ingest_file(config.warehouse, "pumps",
                StreamSchema(sensors=tuple(SENSORS), label_columns=("label",)), csv)
    settings = config.stream("pumps")
    data = prepare_training(small_stream.readings, stream="pumps", sensors=list(SENSORS), spec=settings.window,
                            label_columns=["label"], train_stride=2)
    params = {"epochs": 3, "n_threads": 1}
    for rule in (ThresholdRule(coefficient=1000.0), ThresholdRule()):
        promotion.register_training(config.mlflow_tracking_uri, config.mlflow_artifact_root, data,
                                   [fit_candidate(data, "mlp_ae", params, rule)])
    return config, str(config_path)


def invoke(*args):
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_list_compare_promote_and_rollback(home):
    config, path = home
    listed = invoke("models", "list", "--config", path)
    assert "pumps-detector" in listed and "1 2" in listed  # the champion history
    compared = invoke("models", "compare", "pumps", "--config", path)
    for column in ("version", "aliases", "detector", "rule", "val_far", "f1", "pr_auc", "training range"):
        assert column in compared
    assert "champion" in compared and "mlp_ae" in compared

    assert "champion is now version 1" in invoke("models", "promote", "pumps", "1", "--config", path)
    assert registry.resolve_alias(config.mlflow_tracking_uri, "pumps").version == 1
    assert "version 1 rolled back; champion is version 2" in invoke("models", "rollback", "pumps", "--config", path)
    assert registry.resolve_alias(config.mlflow_tracking_uri, "pumps").version == 2


def test_rollback_without_an_earlier_champion_is_one_line(tmp_path, config_writer):
    path = str(config_writer(tmp_path / "home"))
    result = CliRunner().invoke(app, ["models", "rollback", "pumps", "--config", path])
    assert result.exit_code != 0
    assert isinstance(result.exception, registry.RegistryError) and "aemon train pumps" in str(result.exception)


def test_recalibrate_registers_the_champion_network_through_the_gate(home, prefect_harness):
    config, path = home
    before = registry.resolve_alias(config.mlflow_tracking_uri, "pumps")
    output = invoke("threshold", "recalibrate", "pumps", "--config", path)
    assert "registered pumps-detector v3" in output
    client = registry.client_for(config.mlflow_tracking_uri)
    tags = client.get_model_version("pumps-detector", "3").tags
    assert tags["recalibrated_from"] == str(before.version) and tags["gate.role"] in ("champion", "challenger")
    assert f"champion is v{registry.resolve_alias(config.mlflow_tracking_uri, 'pumps').version}" in output
