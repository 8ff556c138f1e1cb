"""Model bundles through a real MLflow SQLite store under tmp_path."""
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from features.synthetic import SENSORS
from features.windows import WindowSpec
from monitoring import registry
from monitoring.bundle import ModelBundle
from monitoring.errors import BundleInputError, RegistryError
from monitoring.training import train_bundle

SPEC = WindowSpec(size=20, stride=10)
PARAMS = {"epochs": 3, "hidden": (32,), "latent": 4}


@pytest.fixture(scope="module")
def trained(small_stream):
    return train_bundle(small_stream.readings, stream="pumps", sensors=list(SENSORS), spec=SPEC,
                        detector_params=PARAMS, label_columns=["label"])


@pytest.fixture(scope="module")
def store(tmp_path_factory, trained):
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    artifacts = (root / "artifacts").as_uri()
    first = registry.log_bundle(uri, artifacts, trained.bundle, params=trained.params, history=trained.history,
                                input_example=trained.input_example, tags=trained.tags)
    return uri, artifacts, first


def test_bundle_saved_and_loaded_scores_identically(tmp_path, trained, small_stream):
    bundle = trained.bundle
    again = ModelBundle.load(bundle.save(tmp_path / "b"))
    a = bundle.score_readings(small_stream.readings)
    b = again.score_readings(small_stream.readings)
    pd.testing.assert_frame_equal(a, b)
    assert again.threshold == bundle.threshold and again.sensors == list(SENSORS)


def test_registry_model_scores_like_the_in_memory_bundle(store, trained, small_stream):
    uri, _, first = store
    model, version = registry.load_model(uri, "pumps")
    assert version.version == first.version
    readings = small_stream.readings[["timestamp", "asset", *SENSORS]]
    from_registry = model.predict(readings)
    in_memory = trained.bundle.score_readings(readings)
    np.testing.assert_array_equal(from_registry["score"].to_numpy(), in_memory["score"].to_numpy())
    assert (from_registry["is_anomaly"] == (from_registry["score"] > version.threshold)).all()


def test_alias_moves_to_the_newest_version_and_tags_carry_the_threshold(store, trained):
    uri, artifacts, first = store
    second = registry.log_bundle(uri, artifacts, trained.bundle, params=trained.params, history=trained.history,
                                 input_example=trained.input_example, tags=trained.tags)
    assert second.version == first.version + 1
    champion = registry.resolve_alias(uri, "pumps")
    assert champion.version == second.version and champion.threshold == trained.bundle.threshold
    client = MlflowClient(tracking_uri=uri)
    mv = client.get_model_version("pumps-detector", str(second.version))
    assert mv.tags["detector"] == "mlp_ae" and mv.tags["data_hash"] == trained.tags["data_hash"]
    experiment = client.get_experiment_by_name("pumps")
    assert experiment.artifact_location.startswith(artifacts)


def test_missing_model_and_wrong_readings_are_explained(store, small_stream, trained):
    uri, _, _ = store
    with pytest.raises(RegistryError, match="aemon train other"):
        registry.resolve_alias(uri, "other")
    with pytest.raises(BundleInputError, match=r"lack columns \['flow_rate'\]"):
        trained.bundle.score_readings(small_stream.readings.drop(columns=["flow_rate"]))
