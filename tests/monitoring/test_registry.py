"""Trainings, model bundles, the gate, rollback and recalibration through a real MLflow
SQLite store under tmp_path, for every installed detector kind."""

import json

import matplotlib.image
import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from aemodels.detector import VAEDetector, detector_kinds
from aemodels.thresholds import ThresholdRule, conformal_threshold
from features.synthetic import SENSORS
from features.windows import WindowSpec
from monitoring.errors import BundleInputError, GateError, RegistryError
from monitoring.models import promotion, registry
from monitoring.models.bundle import ModelBundle
from monitoring.models.fitting import fit_candidate, prepare_training, recalibration_data

SPEC = WindowSpec(size=20, stride=10)
KINDS = detector_kinds()
FAST = {"epochs": 3, "n_threads": 1}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def new_store(root):
    return f"sqlite:///{root / 'mlflow.db'}", (root / "artifacts").as_uri()


@pytest.fixture(scope="module")
def data(small_stream):
    return prepare_training(small_stream.readings, stream="pumps", sensors=list(SENSORS), spec=SPEC,
                            label_columns=["label"], train_stride=2)


@pytest.fixture(scope="module")
def candidates(data):
    return [fit_candidate(data, kind, FAST, ThresholdRule()) for kind in KINDS]


@pytest.fixture(scope="module")
def loser(data):
    """A detector whose threshold is far above every score: it finds nothing (F1 = 0)."""
    return fit_candidate(data, KINDS[0], FAST, ThresholdRule(coefficient=1000.0))


@pytest.fixture(scope="module")
def store(tmp_path_factory, data, candidates):
    uri, artifacts = new_store(tmp_path_factory.mktemp("mlflow"))
    report = pd.DataFrame({"sensor": ["a", "b"], "grade": ["high", "low"]})
    outcome = promotion.register_training(uri, artifacts, data, candidates, quality=report)
    return uri, artifacts, outcome


def readings(small_stream):
    return small_stream.readings[["timestamp", "asset", *SENSORS]]


def test_the_training_has_labels_so_the_gate_uses_label_metrics(data, candidates):
    assert data.evaluation.has_labels
    for cand in candidates:
        assert cand.evaluation.anomalous.any() and (~cand.evaluation.anomalous).any()
        assert {"precision", "recall", "f1", "far", "mar", "pr_auc"} <= set(cand.evaluation.metrics)


def test_bundle_saved_and_loaded_scores_identically(tmp_path, candidates, small_stream):
    for cand in candidates:
        again = ModelBundle.load(cand.bundle.save(tmp_path / cand.kind))
        pd.testing.assert_frame_equal(again.score_readings(readings(small_stream)),
                                      cand.bundle.score_readings(readings(small_stream)))
        assert again.threshold == cand.bundle.threshold and again.thresholds == cand.bundle.thresholds


def test_every_registered_version_scores_like_its_in_memory_detector(store, candidates, small_stream):
    uri, _, outcome = store
    for cand in candidates:
        version = outcome.versions[cand.kind]
        with registry.tracking(uri):
            model = mlflow.pyfunc.load_model(f"models:/pumps-detector/{version.version}")
        scored = model.predict(readings(small_stream))
        windows, _ = cand.bundle.windows(readings(small_stream))
        np.testing.assert_array_equal(scored["score"].to_numpy(), cand.detector.score(windows.X))
        assert (scored["is_anomaly"] == (scored["score"] > cand.bundle.threshold)).all()
        assert {"severity", "contributions", "top_sensors"} <= set(scored.columns)


def test_champion_alias_resolves_through_models_uri(store):
    uri, _, outcome = store
    champion = registry.resolve_alias(uri, "pumps")
    assert champion.version == outcome.decision.champion.version and "champion" in champion.aliases
    with registry.tracking(uri):
        by_alias = mlflow.pyfunc.load_model("models:/pumps-detector@champion")
    assert registry.loaded_bundle(by_alias).detector.kind == champion.kind
    if len(KINDS) > 1:
        challenger = registry.resolve_alias(uri, "pumps", "challenger")
        assert challenger.version == outcome.decision.challenger.version != champion.version


def test_versions_carry_kind_threshold_range_and_data_hash(store, data):
    uri, _, outcome = store
    client = MlflowClient(tracking_uri=uri)
    for kind, version in outcome.versions.items():
        tags = client.get_model_version("pumps-detector", str(version.version)).tags
        assert tags["detector"] == kind and tags["threshold_method"] == "p99"
        assert float(tags["threshold"]) == version.threshold
        assert tags["data_hash"] == data.data_hash and tags["training_range"].startswith(str(data.start.date()))
        assert tags["gate.role"] in ("champion", "challenger", "registered")


def test_child_runs_carry_the_comparison_metrics(store, data):
    uri, artifacts, outcome = store
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("pumps")
    assert experiment.artifact_location.startswith(artifacts)
    children = client.search_runs([experiment.experiment_id], "tags.role = 'candidate'")
    assert sorted(r.data.tags["detector"] for r in children) == sorted(KINDS)
    for run in children:
        assert run.data.tags["mlflow.parentRunId"] == outcome.parent_run_id
        metrics = run.data.metrics
        for name in ("threshold", "threshold.p95", "threshold.p99", "threshold.p99.9", "val_far", "precision",
                     "recall", "f1", "far", "mar", "pr_auc", "best_val_loss"):
            assert np.isfinite(metrics[name]), name
        assert metrics["threshold.p95"] <= metrics["threshold.p99"] <= metrics["threshold.p99.9"]
        assert metrics["threshold"] == metrics["threshold.p99"]
        params = run.data.params
        assert params["window.size"] == "20" and params["train.data_hash"] == data.data_hash
        assert params["detector.epochs"] == "3" and params["train.start"] == str(data.start)
        history = client.get_metric_history(run.info.run_id, "val_loss")
        assert [m.step for m in history] == list(range(1, len(history) + 1))
    parent = client.get_run(outcome.parent_run_id)
    assert parent.data.tags["gate.champion"] == str(outcome.decision.champion.version)
    assert [a.path for a in client.list_artifacts(outcome.parent_run_id, "data_quality")] == \
        ["data_quality/report.csv"]


def test_figures_are_valid_pngs(store, candidates, tmp_path):
    uri, _, outcome = store
    client = MlflowClient(tracking_uri=uri)
    for cand in candidates:
        run_id = outcome.versions[cand.kind].run_id
        names = {a.path.split("/")[-1] for a in client.list_artifacts(run_id, "figures")}
        expected = {"loss_curves.png", "score_histogram.png", "worst_windows.png", "latent_space.png"}
        expected |= {"samples.png"} if isinstance(cand.detector, VAEDetector) else set()
        assert names == expected
        folder = client.download_artifacts(run_id, "figures", str(tmp_path / cand.kind))
        for name in names:
            path = f"{folder}/{name}"
            with open(path, "rb") as fh:
                assert fh.read(8) == PNG_MAGIC
            image = matplotlib.image.imread(path)
            assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_gate_both_ways_and_rollback_through_the_champion_history(tmp_path, data, candidates, loser):
    uri, artifacts = new_store(tmp_path)
    first = promotion.register_training(uri, artifacts, data, [loser])
    assert first.decision.promoted and first.decision.reason.startswith("the stream had no champion: best of ")
    weak = first.versions[loser.kind].version
    assert loser.evaluation.metrics["f1"] == 0.0

    better = promotion.register_training(uri, artifacts, data, candidates)
    assert better.decision.promoted, better.decision.reason
    best = better.decision.champion.version
    assert registry.resolve_alias(uri, "pumps").version == best

    again = promotion.register_training(uri, artifacts, data, [loser])
    assert not again.decision.promoted and "does not beat champion" in again.decision.reason
    third = again.versions[loser.kind].version
    assert registry.resolve_alias(uri, "pumps").version == best
    assert registry.resolve_alias(uri, "pumps", "challenger").version == third

    listed = registry.list_models(uri)
    assert listed.loc[0, "champion_history"] == f"{weak} {best}"
    table = registry.compare_versions(uri, "pumps")
    assert list(table["version"]) == sorted(table["version"], reverse=True)
    assert table.loc[table["version"] == best, "aliases"].item() == "champion"

    replaced, champion = registry.rollback(uri, "pumps")
    assert (replaced, champion.version) == (best, weak)
    with pytest.raises(GateError, match="no earlier champion"):
        registry.rollback(uri, "pumps")
    assert registry.promote(uri, "pumps", third).version == third
    assert registry.promote(uri, "pumps", best).version == best
    assert registry.rollback(uri, "pumps")[1].version == third
    assert registry.rollback(uri, "pumps")[1].version == weak
    with pytest.raises(RegistryError, match="no version 99"):
        registry.promote(uri, "pumps", 99)


def test_recalibration_registers_the_same_network_with_a_new_threshold(tmp_path, data, candidates, small_stream):
    uri, artifacts = new_store(tmp_path)
    promotion.register_training(uri, artifacts, data, candidates[:1])
    champion_model, champion = registry.load_model(uri, "pumps")
    rule = ThresholdRule(percentile=95.0)
    frame = small_stream.readings[small_stream.readings["timestamp"] >= small_stream.readings["timestamp"].median()]
    champion_bundle = registry.loaded_bundle(champion_model)
    calibration, evaluation = recalibration_data(champion_bundle, frame, label_columns=["label"], stride=2)
    version, decision = promotion.register_recalibration(uri, artifacts, champion_bundle, champion, calibration,
                                                         evaluation, rule)
    assert version.version == champion.version + 1
    assert version.threshold == pytest.approx(np.percentile(champion_bundle.detector.score(calibration), 95))
    new_model, _ = registry.load_model(uri, "pumps", "champion" if decision.promoted else "challenger")
    new, old = registry.loaded_bundle(new_model), registry.loaded_bundle(champion_model)
    for (name, a), (_, b) in zip(new.detector.model_.state_dict().items(), old.detector.model_.state_dict().items(),
                                 strict=True):
        assert np.array_equal(a.numpy(), b.numpy()), name
    tags = MlflowClient(tracking_uri=uri).get_model_version("pumps-detector", str(version.version)).tags
    assert tags["recalibrated_from"] == str(champion.version) and tags["threshold_method"] == "p95"
    assert new.threshold_rule == "p95" and new.threshold == version.threshold


def test_a_conformal_recalibration_is_registered_with_its_rule_and_every_threshold(tmp_path, data, candidates,
                                                                                   small_stream):
    uri, artifacts = new_store(tmp_path)
    promotion.register_training(uri, artifacts, data, candidates[:1])
    champion_model, champion = registry.load_model(uri, "pumps")
    champion_bundle = registry.loaded_bundle(champion_model)
    calibration, evaluation = recalibration_data(champion_bundle, small_stream.readings, label_columns=["label"],
                                                 stride=2)
    rule = ThresholdRule(method="conformal", conformal_alpha=0.05, conformal_confidence=0.8)
    version, _ = promotion.register_recalibration(uri, artifacts, champion_bundle, champion, calibration,
                                                  evaluation, rule)
    scores = champion_bundle.detector.score(calibration)
    assert version.threshold == pytest.approx(conformal_threshold(scores, 0.05, 0.8))
    client = MlflowClient(tracking_uri=uri)
    tags = client.get_model_version("pumps-detector", str(version.version)).tags
    assert tags["threshold_method"] == "conformal(alpha=0.05,confidence=0.8)"
    metrics = client.get_run(client.get_model_version("pumps-detector", str(version.version)).run_id).data.metrics
    assert metrics["threshold.conformal"] == pytest.approx(version.threshold)
    assert {"threshold.p95", "threshold.p99", "threshold.p99.9"} <= set(metrics)


def test_readings_that_differ_from_the_schema_are_refused_with_the_difference(candidates, small_stream):
    bundle = candidates[0].bundle
    frame = readings(small_stream).drop(columns=["flow_rate"]).assign(valve=1.0)
    with pytest.raises(BundleInputError, match=r"missing \['flow_rate'\]; unexpected \['valve'\]"):
        bundle.score_readings(frame)


def test_missing_model_is_explained(store):
    uri, _, _ = store
    with pytest.raises(RegistryError, match="aemon train other"):
        registry.resolve_alias(uri, "other")
    with pytest.raises(RegistryError, match="aemon train other"):
        registry.rollback(uri, "other")


def test_severity_is_one_at_the_threshold_for_every_kind(candidates, small_stream):
    for cand in candidates:
        bundle = cand.bundle
        at = bundle.severity(np.array([bundle.threshold]))
        assert at == pytest.approx([1.0]), cand.kind
        scored = bundle.score_readings(readings(small_stream))
        assert ((scored["severity"] > 1) == scored["is_anomaly"]).all(), cand.kind
        if bundle.detector.val_scores_.min() >= 0:
            np.testing.assert_allclose(scored["severity"], scored["score"] / bundle.threshold)


def test_a_bundle_saved_before_grid_alignment_loads_without_it(candidates, tmp_path):
    folder = candidates[0].bundle.save(tmp_path / "bundle")
    meta = json.loads((folder / "bundle.json").read_text())
    assert meta["window"].pop("align") is True
    (folder / "bundle.json").write_text(json.dumps(meta))
    assert ModelBundle.load(folder).spec.align is False


def test_each_logged_model_is_named_by_its_kind(store, candidates):
    uri, _, outcome = store
    client = MlflowClient(tracking_uri=uri)
    logged = client.search_logged_models(experiment_ids=[client.get_experiment_by_name("pumps").experiment_id])
    names = {m.source_run_id: m.name for m in logged}
    for cand in candidates:
        assert names[outcome.versions[cand.kind].run_id] == cand.kind


def test_each_child_run_spans_its_fit_and_the_parent_all_of_them(store, candidates):
    uri, _, outcome = store
    client = MlflowClient(tracking_uri=uri)
    for cand in candidates:
        info = client.get_run(outcome.versions[cand.kind].run_id).info
        assert (info.start_time, info.end_time) == (round(cand.fit_started * 1000), round(cand.fit_ended * 1000))
        assert abs((info.end_time - info.start_time) / 1000 - cand.fit_seconds) < 0.05
    parent = client.get_run(outcome.parent_run_id).info
    assert parent.start_time == round(min(c.fit_started for c in candidates) * 1000)
    assert parent.end_time >= max(round(c.fit_ended * 1000) for c in candidates)


def histogram_title(client, run_id, tmp_path) -> str:
    from PIL import Image

    path = client.download_artifacts(run_id, "figures/score_histogram.png", str(tmp_path))
    return Image.open(path).text["Title"]


def test_the_score_histogram_says_what_it_plots(store, candidates, tmp_path, data):
    uri, _, outcome = store
    client = MlflowClient(tracking_uri=uri)
    holdout = f"{pd.Timestamp(data.evaluation.holdout_start):%Y-%m-%d}"
    for cand in candidates:
        title = histogram_title(client, outcome.versions[cand.kind].run_id, tmp_path / cand.kind)
        assert title.startswith(f"{cand.kind}: scores of holdout windows from {holdout}")
        assert title.endswith("vs labeled windows")
    # a range without labels: the title says so, and no labeled windows are drawn
    assert registry.plots.evaluation_title("mlp_ae", np.array(["2026-01-05T10:00"], dtype="datetime64[ns]"),
                                           np.array([False])) == \
        "mlp_ae: scores of holdout windows from 2026-01-05 10:00 (no labeled windows in the range)"


def test_compare_marks_only_the_current_champion_after_another_version_takes_the_alias(tmp_path, data, loser,
                                                                                      candidates):
    uri, artifacts = new_store(tmp_path)
    first = promotion.register_training(uri, artifacts, data, [loser])  # v1: champion, gate.role champion
    weak = first.versions[loser.kind].version
    better = promotion.register_training(uri, artifacts, data, candidates)
    assert better.decision.promoted
    best = better.decision.champion.version
    table = registry.compare_versions(uri, "pumps")
    assert table.loc[table["aliases"].str.contains("champion"), "version"].tolist() == [best]
    assert not table.drop(columns="aliases").isin(["champion"]).any().any(), table
    assert table.set_index("version").loc[weak, "gate"] == "promoted"  # its verdict then, not a role now
    registry.promote(uri, "pumps", weak)  # by hand
    table = registry.compare_versions(uri, "pumps")
    assert table.loc[table["aliases"].str.contains("champion"), "version"].tolist() == [weak]
    assert not table.drop(columns="aliases").isin(["champion"]).any().any(), table
