"""The kinds fitted without gradient training, pca and knn, against reference computations in
numpy (float64, written out here), and their own contracts: the training subset of knn,
each training window left out of its own calibration score, buffers of fitted size that
save and load, the statistics of pca, and their settings."""
import json

import numpy as np
import pytest
import torch

from aemodels import (
    BaseDetector,
    DetectorInputError,
    KNNDetector,
    ModelFileError,
    PCADetector,
    ThresholdFitError,
    make_detector,
)
from aemodels.thresholds import ThresholdRule, conformal_threshold

WINDOW, SENSORS = 6, 3


@pytest.fixture(scope="module")
def windows(make_windows):
    rng = np.random.default_rng(1)
    return {name: make_windows(rng, n, WINDOW, SENSORS, noise=0.1) for name, n in
            [("train", 400), ("val", 150), ("test", 40)]}


def flat(X):
    return X.reshape(len(X), -1).astype(np.float64)  # (n, L, C) -> (n, L*C)


def reference_pca(X_train, explained):
    """mean, axes (D, k) and variances (k,) by numpy's eigh of the covariance."""
    data = flat(X_train)
    mean = data.mean(axis=0)
    values, vectors = np.linalg.eigh(np.cov(data, rowvar=False))
    values, vectors = values[::-1], vectors[:, ::-1]
    k = int(np.searchsorted(np.cumsum(values) / values.sum(), explained - 1e-9)) + 1
    return mean, vectors[:, :k], values[:k]


def residual_stats(X, reconstruction):
    """The per-sensor mean squared residual (n, C) and the sign of x - x_hat's mean per sensor."""
    residual = X.astype(np.float64) - reconstruction.reshape(X.shape)
    return np.square(residual).mean(axis=1), np.sign(residual.mean(axis=1))


@pytest.mark.parametrize("statistic", ["q", "t2", "combined"])
def test_pca_matches_numpy(windows, statistic):
    train, val, test = windows["train"], windows["val"], windows["test"]
    detector = make_detector("pca", explained_variance=0.9, statistic=statistic).fit(train, val)
    mean, axes, variances = reference_pca(train, 0.9)
    assert detector.model_.latent == axes.shape[1] < WINDOW * SENSORS

    def stats(X):
        z = (flat(X) - mean) @ axes
        q = residual_stats(X, z @ axes.T + mean)[0].mean(axis=1)
        return q, (z ** 2 / variances).sum(axis=1)

    q, t2 = stats(test)
    q_val, t2_val = stats(val)
    expected = {"q": q, "t2": t2,
                "combined": q / np.percentile(q_val, 99) + t2 / np.percentile(t2_val, 99)}[statistic]
    np.testing.assert_allclose(detector.score(test), expected, rtol=2e-3)
    # the coordinates agree up to each axis' sign
    np.testing.assert_allclose(np.abs(detector.encode(test)), np.abs((flat(test) - mean) @ axes), atol=2e-4)
    np.testing.assert_allclose(detector.threshold_, np.percentile(detector.score(val), 99), rtol=1e-12)
    history = detector.history_
    assert len(history) == 1 and detector.best_epoch_ == 1
    assert history[0]["val_loss"] == pytest.approx(stats(val)[0].mean(), rel=2e-3)


def test_pca_explained_variance_sets_the_axes(windows):
    counts = [make_detector("pca", explained_variance=v).fit(windows["train"]).model_.latent
              for v in (0.5, 0.9, 0.99, 1.0)]
    assert counts == sorted(counts) and counts[0] >= 1 and counts[-1] == WINDOW * SENSORS
    assert counts[0] < counts[-1]


def test_knn_matches_brute_force_numpy(windows):
    train, val, test = windows["train"], windows["val"], windows["test"]
    detector = make_detector("knn", n_neighbors=7).fit(train, val)
    distances = ((flat(test)[:, None, :] - flat(train)[None, :, :]) ** 2).sum(axis=2)  # (n_test, n_train)
    nearest = np.argsort(distances, axis=1)[:, :7]
    reconstruction = flat(train)[nearest].mean(axis=1)
    mse, sign = residual_stats(test, reconstruction)
    np.testing.assert_allclose(detector.score(test), mse.mean(axis=1), rtol=1e-4)
    np.testing.assert_allclose(detector.contributions(test), sign * mse, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(detector.reconstruct(test), reconstruction.reshape(test.shape), atol=1e-5)
    np.testing.assert_allclose(detector.encode(test), np.sqrt(np.sort(distances, axis=1)[:, :7]), rtol=1e-3)


def test_knn_leaves_each_training_window_out_of_its_own_calibration_score(windows):
    train = windows["train"][:200]
    detector = make_detector("knn", n_neighbors=3).fit(train)  # no X_val: calibrated on the training windows
    distances = ((flat(train)[:, None, :] - flat(train)[None, :, :]) ** 2).sum(axis=2)
    np.fill_diagonal(distances, np.inf)
    nearest = np.argsort(distances, axis=1)[:, :3]
    expected = residual_stats(train, flat(train)[nearest].mean(axis=1))[0].mean(axis=1)
    np.testing.assert_allclose(detector.val_scores_, expected, rtol=1e-4)
    # scored as new windows, each training window is its own nearest: lower scores
    assert detector.score(train).mean() < expected.mean()


def test_knn_remembers_a_seeded_subset_of_at_most_max_windows(windows):
    train = windows["train"]
    a, b, c = (make_detector("knn", max_windows=100, random_state=seed).fit(train) for seed in (3, 3, 4))
    assert a.model_.windows.shape == (100, WINDOW * SENSORS)
    assert torch.equal(a.model_.windows, b.model_.windows) and not torch.equal(a.model_.windows, c.model_.windows)
    rows = {tuple(r) for r in flat(train).astype(np.float32).tolist()}
    assert all(tuple(r) in rows for r in a.model_.windows.numpy().tolist())  # training windows, as they were
    # the left-out calibration also holds for the windows that were not kept (nothing to leave out)
    assert np.all(np.isfinite(a.val_scores_)) and len(a.val_scores_) == len(train)


@pytest.mark.parametrize("kind, params", [("pca", {"statistic": "combined"}), ("pca", {"error_scaling": "sensor"}),
                                          ("knn", {"error_scaling": "sensor", "max_windows": 120})])
def test_save_load_round_trip_with_buffers_of_fitted_size(windows, tmp_path, kind, params):
    detector = make_detector(kind, **params).fit(windows["train"], windows["val"])
    detector.save(tmp_path)
    saved = torch.load(tmp_path / "model.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in saved.values())
    loaded = BaseDetector.load(tmp_path)
    assert type(loaded) is type(detector) and loaded.get_params() == detector.get_params()
    X = windows["test"]
    for method in ("score", "contributions", "reconstruct", "encode", "predict"):
        assert np.array_equal(getattr(loaded, method)(X), getattr(detector, method)(X)), method
    assert loaded.threshold_ == detector.threshold_ and loaded.history_ == detector.history_
    # weights of another window shape are refused by name
    config = json.loads((tmp_path / "config.json").read_text())
    config["fitted"]["n_features_in_"] = SENSORS + 1
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFileError, match=r"model.pt: .*expected"):
        BaseDetector.load(tmp_path)


@pytest.mark.parametrize("kind, params", [("pca", {"statistic": "q"}),
                                          ("pca", {"statistic": "q", "error_scaling": "sensor"}), ("knn", {}),
                                          ("knn", {"error_scaling": "sensor"})])
def test_contributions_add_up_to_the_score_and_point_the_way(windows, kind, params):
    detector = make_detector(kind, **params).fit(windows["train"], windows["val"])
    X = windows["test"][:16].copy()
    X[:, :, 1] += 1.5  # sensor 1 reads high
    score, contributions = detector.score_with_contributions(X)
    np.testing.assert_allclose(np.abs(contributions).mean(axis=1), score, rtol=1e-12)
    # knn's neighbours of a shifted window are the windows nearest to it as shifted: they
    # spread part of the shift over the other sensors; it still leads over the windows
    if kind == "pca":
        assert np.all(np.argmax(np.abs(contributions), axis=1) == 1)
    else:
        assert np.argmax(np.abs(contributions).mean(axis=0)) == 1
    assert np.all(contributions[:, 1] > 0) and np.all(detector.predict(X))


def test_t2_and_combined_contributions_are_the_residuals(windows):
    q = make_detector("pca", statistic="q").fit(windows["train"], windows["val"])
    t2 = make_detector("pca", statistic="t2").fit(windows["train"], windows["val"])
    combined = make_detector("pca").fit(windows["train"], windows["val"])
    assert combined.statistic == "combined"
    X = windows["test"]
    for other in (t2, combined):
        np.testing.assert_array_equal(other.contributions(X), q.contributions(X))
        score, contributions = other.score_with_contributions(X)
        np.testing.assert_array_equal(score, other.score(X))
        np.testing.assert_array_equal(contributions, q.contributions(X))


@pytest.mark.parametrize("kind", ["pca", "knn"])
def test_threshold_rules_and_recalibration(windows, kind):
    rule = ThresholdRule(percentile=95.0, coefficient=1.2)
    detector = make_detector(kind, threshold=rule).fit(windows["train"], windows["val"])
    assert detector.threshold_ == pytest.approx(1.2 * np.percentile(detector.score(windows["val"]), 95))
    assert set(detector.thresholds_) >= {"p95", "p99", "p99.9"}
    state = {k: v.clone() for k, v in detector.model_.state_dict().items()}
    detector.recalibrate(windows["test"], ThresholdRule(percentile=50.0))
    assert detector.threshold_ == pytest.approx(np.percentile(detector.score(windows["test"]), 50))
    assert all(torch.equal(state[k], v) for k, v in detector.model_.state_dict().items())  # the model stays


def test_a_conformal_rule_sets_its_order_statistic_and_is_saved_with_the_detector(windows, tmp_path):
    rule = ThresholdRule(method="conformal", conformal_alpha=0.05, conformal_confidence=0.9, coefficient=1.2)
    detector = make_detector("pca", threshold=rule).fit(windows["train"], windows["val"])  # 150 calibration windows
    val = detector.score(windows["val"])
    assert detector.threshold_ == pytest.approx(1.2 * conformal_threshold(val, 0.05, 0.9))
    assert np.sum(val * 1.2 > detector.threshold_) == 3  # k = 147: smallest with P(Bin(150, 0.95) >= k) <= 0.1
    assert detector.thresholds_["conformal"] == detector.threshold_
    detector.save(tmp_path / "m")
    loaded = BaseDetector.load(tmp_path / "m")
    assert loaded.threshold == rule and loaded.threshold_ == detector.threshold_
    too_strict = ThresholdRule(method="conformal", conformal_alpha=0.001)
    with pytest.raises(ThresholdFitError, match="needs at least 2302 calibration scores; got 150"):
        make_detector("pca", threshold=too_strict).fit(windows["train"], windows["val"])


@pytest.mark.parametrize("kind", ["pca", "knn"])
def test_scoring_restores_the_torch_threads(windows, kind):
    before = torch.get_num_threads()
    detector = make_detector(kind, n_threads=1, score_threads=1).fit(windows["train"], windows["val"])
    detector.score(windows["test"])
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("kind, params, message", [
    ("pca", {"explained_variance": 0.0}, r"explained_variance=0.0, must be in \(0, 1\]"),
    ("pca", {"explained_variance": 1.5}, "explained_variance=1.5"),
    ("pca", {"statistic": "spe"}, r"statistic='spe', must be one of \['q', 't2', 'combined'\]"),
    ("pca", {"output_activation": "sigmoid"}, "its reconstruction is linear"),
    ("knn", {"n_neighbors": 0}, "n_neighbors=0, must be an int >= 1"),
    ("knn", {"max_windows": 10}, r"max_windows=10, must be >= n_neighbors \+ 1 = 11"),
    ("knn", {"n_neighbors": 2.5}, "n_neighbors=2.5"),
])
def test_bad_settings_are_named(windows, kind, params, message):
    with pytest.raises(ValueError, match=message):
        make_detector(kind, **params).fit(windows["train"][:32])
    with pytest.raises(ValueError, match=message):
        make_detector(kind, **params).validate_params(WINDOW, SENSORS)


def test_knn_needs_more_training_windows_than_neighbours(windows):
    with pytest.raises(DetectorInputError, match=r"X_train has 5 windows; .* at least n_neighbors \+ 1 = 6"):
        make_detector("knn", n_neighbors=5).fit(windows["train"][:5])
    assert isinstance(make_detector("knn"), KNNDetector) and isinstance(make_detector("pca"), PCADetector)
