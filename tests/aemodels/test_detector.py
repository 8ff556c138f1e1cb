"""Contract tests of AutoencoderDetector: fit / score / predict / contributions / save / load."""
import copy
import dataclasses
import json

import numpy as np
import pytest
import torch

from aemodels.base import BaseDetector
from aemodels.detector import AutoencoderDetector
from aemodels.errors import DetectorInputError, NotFittedError
from aemodels.thresholds import ThresholdRule, percentile_threshold
from aemodels.training import TrainConfig

WINDOW, SENSORS = 16, 3
# Small models train much faster on one thread, and do not stall when the CPUs are shared.
FAST = {"hidden": (32, 16), "latent": 4, "epochs": 8, "batch_size": 64, "learning_rate": 3e-3, "n_threads": 1}


@pytest.fixture(scope="module")
def windows(make_windows):
    rng = np.random.default_rng(0)
    return {name: make_windows(rng, n, WINDOW, SENSORS) for name, n in [("train", 512), ("val", 256), ("test", 64)]}


@pytest.fixture(scope="module")
def fitted(windows):
    detector = AutoencoderDetector(**FAST)
    returned = detector.fit(windows["train"], windows["val"])
    return detector, returned


def test_fit_returns_self_and_sets_fitted_attributes(fitted, windows):
    detector, returned = fitted
    assert returned is detector
    assert detector.n_features_in_ == SENSORS and detector.window_size_ == WINDOW
    assert isinstance(detector.model_, torch.nn.Module) and not detector.model_.training
    assert 1 <= len(detector.history_) <= FAST["epochs"]
    assert 1 <= detector.best_epoch_ <= len(detector.history_)
    assert set(detector.history_[0]) == {"epoch", "train_loss", "val_loss"}


def test_threshold_is_percentile_of_validation_scores(fitted, windows):
    detector, _ = fitted
    np.testing.assert_array_equal(detector.val_scores_, detector.score(windows["val"]))
    assert detector.threshold_ == percentile_threshold(detector.val_scores_, 99.0)
    assert 0 < detector.threshold_ < 0.02  # noise variance is 0.0025: the model must have learnt the sinusoids


def test_threshold_from_training_scores_without_validation(windows):
    detector = AutoencoderDetector(**{**FAST, "epochs": 1}, threshold=ThresholdRule(percentile=95.0, coefficient=1.2))
    detector.fit(windows["train"])
    np.testing.assert_array_equal(detector.val_scores_, detector.score(windows["train"]))
    assert detector.threshold_ == np.percentile(detector.val_scores_, 95.0) * 1.2
    assert all(h["val_loss"] is None for h in detector.history_)


def test_score_predict_reconstruct_outputs(fitted, windows):
    detector, _ = fitted
    X = windows["test"]
    scores = detector.score(X)
    assert scores.shape == (len(X),) and scores.dtype == np.float64
    recon = detector.reconstruct(X)
    assert recon.shape == X.shape and recon.dtype == np.float32
    # the residual is taken in float32, the network's precision (squares summed in float64)
    np.testing.assert_allclose(scores, ((X.astype(np.float64) - recon) ** 2).mean(axis=(1, 2)), rtol=1e-6)
    labels = detector.predict(X)
    assert labels.dtype == bool
    np.testing.assert_array_equal(labels, scores > detector.threshold_)


def test_inference_is_batched_consistently(fitted, windows):
    detector, _ = fitted
    X = windows["test"]
    whole = detector.score(X)
    detector.inference_batch_size = 5  # instance override; odd size leaves a short last batch
    try:
        np.testing.assert_allclose(detector.score(X), whole, rtol=1e-6)
    finally:
        del detector.inference_batch_size


def test_accepts_float64_and_lists(fitted, windows):
    detector, _ = fitted
    X = windows["test"][:3]
    np.testing.assert_array_equal(detector.score(X.astype(np.float64)), detector.score(X))
    np.testing.assert_array_equal(detector.score(X.tolist()), detector.score(X))


def test_empty_input_gives_empty_outputs(fitted):
    detector, _ = fitted
    empty = np.zeros((0, WINDOW, SENSORS), np.float32)
    assert detector.score(empty).shape == (0,)
    assert detector.predict(empty).shape == (0,)
    assert detector.contributions(empty).shape == (0, SENSORS)
    assert detector.reconstruct(empty).shape == (0, WINDOW, SENSORS)


@pytest.mark.parametrize("window_size, n_sensors", [(1, 1), (1, 7), (7, 3), (13, 2), (5, 1)])
def test_shapes_for_odd_window_sizes_and_sensor_counts(window_size, n_sensors):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, window_size, n_sensors)).astype(np.float32)
    detector = AutoencoderDetector(hidden=(8,), latent=2, epochs=1, batch_size=16, n_threads=1).fit(X[:30], X[30:])
    assert detector.model_.n_inputs == window_size * n_sensors
    assert detector.score(X).shape == (40,)
    assert detector.predict(X).shape == (40,)
    assert detector.reconstruct(X).shape == X.shape
    assert detector.contributions(X).shape == (40, n_sensors)


def test_contributions_add_up_to_the_score(fitted, windows):
    detector, _ = fitted
    X = windows["test"]
    contributions = detector.contributions(X)
    assert contributions.shape == (len(X), SENSORS) and contributions.dtype == np.float64
    np.testing.assert_allclose(np.abs(contributions).sum(axis=1) / SENSORS, detector.score(X), rtol=1e-12)


@pytest.mark.parametrize("direction", [+1.0, -1.0])
def test_contributions_point_at_the_pushed_sensor_with_its_direction(fitted, windows, direction):
    detector, _ = fitted
    X = windows["test"][:8].copy()
    X[:, :, 1] += direction * 1.0  # sensor 1 reads 1.0 above (below) normal over the whole window
    contributions = detector.contributions(X)
    assert np.all(np.argmax(np.abs(contributions), axis=1) == 1)
    assert np.all(np.sign(contributions[:, 1]) == direction)


def test_same_seed_same_model_different_seed_differs(windows):
    X = windows["train"][:128]
    kwargs = {**FAST, "epochs": 2, "dropout": 0.1}
    a = AutoencoderDetector(**kwargs, random_state=7).fit(X)
    b = AutoencoderDetector(**kwargs, random_state=7).fit(X)
    c = AutoencoderDetector(**kwargs, random_state=8).fit(X)
    sa, sb, sc = a.model_.state_dict(), b.model_.state_dict(), c.model_.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    np.testing.assert_array_equal(a.score(windows["test"]), b.score(windows["test"]))
    assert a.threshold_ == b.threshold_ and a.history_ == b.history_
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert not np.array_equal(a.score(windows["test"]), c.score(windows["test"]))


def test_fit_does_not_touch_the_global_torch_rng(windows):
    state = torch.get_rng_state()
    AutoencoderDetector(**{**FAST, "epochs": 1}).fit(windows["train"][:64])
    assert torch.equal(torch.get_rng_state(), state)


def test_save_load_reproduces_scores_bit_for_bit(fitted, windows, tmp_path):
    detector, _ = fitted
    detector.save(tmp_path / "model")
    assert {p.name for p in (tmp_path / "model").iterdir()} == {"config.json", "model.pt", "val_scores.npy"}
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["kind"] == "mlp_ae" and config["fitted"]["threshold_"] == detector.threshold_

    loaded = AutoencoderDetector.load(tmp_path / "model")
    X = windows["test"]
    assert np.array_equal(loaded.score(X), detector.score(X))
    assert np.array_equal(loaded.contributions(X), detector.contributions(X))
    assert np.array_equal(loaded.predict(X), detector.predict(X))
    assert loaded.threshold_ == detector.threshold_
    assert (loaded.window_size_, loaded.n_features_in_) == (WINDOW, SENSORS)
    assert loaded.history_ == detector.history_ and loaded.best_epoch_ == detector.best_epoch_
    np.testing.assert_array_equal(loaded.val_scores_, detector.val_scores_)
    assert loaded.get_params() == detector.get_params()

    # BaseDetector.load picks the class from the saved kind
    assert type(BaseDetector.load(tmp_path / "model")) is AutoencoderDetector


def test_load_rejects_another_kind(fitted, tmp_path):
    detector, _ = fitted
    detector.save(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["kind"] = "vae"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="kind='vae'"):
        AutoencoderDetector.load(tmp_path)


def test_get_params_are_the_constructor_arguments():
    detector = AutoencoderDetector(hidden=(16, 8), latent=3, activation="gelu", random_state=5)
    params = detector.get_params()
    assert params["hidden"] == (16, 8) and params["latent"] == 3 and params["activation"] == "gelu"
    assert params["random_state"] == 5 and params["device"] == "auto" and params["n_threads"] is None
    assert list(params) == AutoencoderDetector.param_names()
    assert set(params) == {"hidden", "latent", "activation", "dropout", "output_activation", "epochs", "batch_size",
                           "learning_rate", "weight_decay", "patience", "grad_clip", "denoise", "noise_level",
                           "threshold", "error_scaling", "random_state", "n_threads", "score_threads", "device",
                           "progress"}
    json.dumps({**params, "threshold": params["threshold"].to_dict()})  # plain values, the rule as its fields
    assert AutoencoderDetector(**params).get_params() == params
    assert "latent=3" in repr(detector) and "epochs" not in repr(detector)


@pytest.mark.parametrize("method", ["score", "predict", "contributions", "reconstruct"])
def test_not_fitted(method, windows):
    with pytest.raises(NotFittedError, match=r"^AutoencoderDetector is not fitted; call fit\(X_train\) first$"):
        getattr(AutoencoderDetector(), method)(windows["test"])


def test_save_not_fitted(tmp_path):
    with pytest.raises(NotFittedError):
        AutoencoderDetector().save(tmp_path)


def _with_nan(X):
    X = X.copy()
    X[3, 2, 1] = np.nan
    return X


@pytest.mark.parametrize("make_bad, message", [
    (lambda X: X[:, :, 0], r"X_train has shape \(512, 16\) \(2-D\); expected a 3-D array"),
    (lambda X: X[:0], "X_train has 0 windows; expected at least 1"),
    (lambda X: X[:, :0], "window_size and n_sensors must be >= 1"),
    (_with_nan, r"X_train has 1 non-finite values .* first at \[window, step, sensor\] = \[3, 2, 1\]"),
    (lambda X: np.where(X > 0.9, np.inf, X), "non-finite"),
    (lambda X: X.astype(str), "X_train has dtype <U"),
])
def test_fit_rejects_bad_windows(windows, make_bad, message):
    with pytest.raises(DetectorInputError, match=message):
        AutoencoderDetector(**FAST).fit(make_bad(windows["train"]))


def test_fit_rejects_validation_windows_of_another_shape(windows):
    with pytest.raises(DetectorInputError, match=r"X_val has shape \(256, 15, 3\).*expected \(16, 3\)"):
        AutoencoderDetector(**FAST).fit(windows["train"], windows["val"][:, :15])


@pytest.mark.parametrize("bad", [
    lambda X: X[:, :8],  # other window size
    lambda X: X[:, :, :2],  # other sensor count
])
@pytest.mark.parametrize("method", ["score", "predict", "contributions", "reconstruct"])
def test_inference_rejects_windows_of_another_shape(fitted, windows, bad, method):
    detector, _ = fitted
    X = bad(windows["test"])
    expected = rf"X has shape \({X.shape[0]}, {X.shape[1]}, {X.shape[2]}\).*expected \(16, 3\)"
    with pytest.raises(DetectorInputError, match=expected):
        getattr(detector, method)(X)


def test_inference_rejects_nan(fitted, windows):
    detector, _ = fitted
    with pytest.raises(DetectorInputError, match="X has 1 non-finite"):
        detector.score(_with_nan(windows["test"]))


@pytest.mark.parametrize("kwargs, message", [
    ({"activation": "tanh"}, "activation='tanh'"),
    ({"latent": 0}, "latent=0"),
    ({"epochs": 0}, "epochs=0"),
    ({"threshold": "p99"}, "threshold='p99', expected an aemodels.thresholds.ThresholdRule"),
    ({"error_scaling": "max"}, "error_scaling=.max."),
])
def test_fit_rejects_bad_hyperparameters(windows, kwargs, message):
    with pytest.raises(ValueError, match=message):
        AutoencoderDetector(**{**FAST, **kwargs}).fit(windows["train"])


def test_score_with_contributions_equals_the_two_calls(fitted_for_combined):
    detector, X = fitted_for_combined
    scores, contrib = detector.score_with_contributions(X)
    np.testing.assert_array_equal(scores, detector.score(X))
    np.testing.assert_array_equal(contrib, detector.contributions(X))
    with pytest.raises(NotFittedError):
        AutoencoderDetector().score_with_contributions(X)


@pytest.fixture(scope="module")
def fitted_for_combined():
    X = np.random.default_rng(1).normal(size=(40, 6, 3)).astype(np.float32)
    return AutoencoderDetector(hidden=(8,), latent=2, epochs=2, n_threads=1).fit(X[:30], X[30:]), X[30:]


@pytest.mark.parametrize("kind", ["mlp_ae", "vae"])
def test_sensor_error_scaling_divides_each_sensor_by_its_calibration_spread(windows, kind, tmp_path):
    from aemodels import make_detector

    params = dict(epochs=4, n_threads=1, random_state=0, **({"hidden": (32, 16), "latent": 4}))
    plain = make_detector(kind, **params).fit(windows["train"], windows["val"])
    scaled = make_detector(kind, error_scaling="sensor", **params).fit(windows["train"], windows["val"])
    assert plain.sensor_scale_ is None
    # the same network (same seed and data); only the score differs
    np.testing.assert_array_equal(plain.reconstruct(windows["test"]), scaled.reconstruct(windows["test"]))
    raw = np.abs(plain.contributions(windows["val"]))  # per-sensor squared errors of the calibration windows
    np.testing.assert_allclose(scaled.sensor_scale_, raw.std(axis=0))
    expected = (np.abs(plain.contributions(windows["test"])) / scaled.sensor_scale_).mean(axis=1)
    np.testing.assert_allclose(scaled.score(windows["test"]), expected, rtol=1e-6)
    np.testing.assert_allclose(np.abs(scaled.contributions(windows["test"])).mean(axis=1),
                               scaled.score(windows["test"]), rtol=1e-6)
    assert scaled.threshold_ == pytest.approx(np.percentile(scaled.score(windows["val"]), 99.0))
    scaled.save(tmp_path / "m")
    loaded = type(scaled).load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.sensor_scale_, scaled.sensor_scale_)
    np.testing.assert_array_equal(loaded.score(windows["test"]), scaled.score(windows["test"]))


def test_recalibrate_sets_a_new_threshold_on_new_windows_and_keeps_the_network(fitted, windows):
    detector = copy.deepcopy(fitted[0])
    before = {k: v.clone() for k, v in detector.model_.state_dict().items()}
    rule = ThresholdRule(percentile=95.0, coefficient=1.1)
    assert detector.recalibrate(windows["test"], rule) is detector
    scores = detector.score(windows["test"])
    np.testing.assert_array_equal(detector.val_scores_, scores)
    assert detector.threshold == rule
    assert detector.threshold_ == np.percentile(scores, 95.0) * 1.1
    assert detector.thresholds_["p99"] == np.percentile(scores, 99.0) * 1.1
    for name, weight in detector.model_.state_dict().items():
        assert torch.equal(weight, before[name]), name
    with pytest.raises(DetectorInputError, match="expected \\(16, 3\\)"):
        detector.recalibrate(windows["test"][:, :, :2])
    with pytest.raises(NotFittedError):
        AutoencoderDetector(**FAST).recalibrate(windows["test"])


def test_load_reads_a_detector_saved_with_the_threshold_as_two_parameters(fitted, windows, tmp_path):
    """Versions registered before the threshold rule was a detector parameter stay loadable."""
    detector = fitted[0]
    detector.save(tmp_path / "old")
    path = tmp_path / "old" / "config.json"
    config = json.loads(path.read_text())
    config["params"].pop("threshold")
    config["params"].update(threshold_percentile=97.0, threshold_coefficient=1.2)
    config["fitted"].pop("thresholds_")
    path.write_text(json.dumps(config))
    loaded = AutoencoderDetector.load(tmp_path / "old")
    assert loaded.threshold == ThresholdRule(percentile=97.0, coefficient=1.2)
    assert loaded.threshold_ == detector.threshold_  # the fitted value is kept as saved
    assert loaded.thresholds_["p95"] == pytest.approx(np.percentile(detector.val_scores_, 95.0) * 1.2)
    np.testing.assert_array_equal(loaded.score(windows["test"]), detector.score(windows["test"]))


def test_training_defaults_have_one_source():
    """The detectors' training arguments default to TrainConfig's fields."""
    defaults, train = BaseDetector.param_defaults(), TrainConfig()
    for field in dataclasses.fields(TrainConfig):
        name = "random_state" if field.name == "seed" else field.name
        assert defaults[name] == getattr(train, field.name), name
