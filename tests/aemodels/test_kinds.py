"""The detector API, the same for every kind: make_detector, fit / score / contributions /
encode / save / load, and the VAE's density and generation methods. (The kinds fitted
without gradient training, pca and knn, have their own checks in test_classic.py.)"""
import json

import numpy as np
import pytest
import torch

from aemodels import (
    DEFAULT_KINDS,
    DETECTOR_KINDS,
    BaseDetector,
    Conv1dDetector,
    NotFittedError,
    UnknownParameterError,
    VAEDetector,
    detector_class,
    make_detector,
    point_scores,
)
from aemodels.errors import DetectorInputError

WINDOW, SENSORS = 15, 3  # an odd window on purpose
SMALL = {
    "mlp_ae": {"hidden": (32, 16), "latent": 4},
    "cnn_ae": {"channels": (8, 16), "latent": 4},
    "vae": {"hidden": (32, 16), "latent": 4, "kl_warmup_epochs": 3, "n_score_samples": 4},
    "pca": {"explained_variance": 0.9},
    "knn": {"n_neighbors": 4},
}
AUTOENCODERS = DEFAULT_KINDS  # the kinds trained by gradient descent
FAST = {"epochs": 12, "batch_size": 64, "learning_rate": 3e-3, "n_threads": 1}


@pytest.fixture(scope="module")
def windows(make_windows):
    rng = np.random.default_rng(0)
    return {name: make_windows(rng, n, WINDOW, SENSORS) for name, n in [("train", 512), ("val", 256), ("test", 64)]}


@pytest.fixture(scope="module")
def fitted(windows):
    return {kind: make_detector(kind, **SMALL[kind], **FAST).fit(windows["train"], windows["val"])
            for kind in DETECTOR_KINDS}


def test_kinds_and_make_detector():
    assert DETECTOR_KINDS == ("mlp_ae", "cnn_ae", "vae", "pca", "knn")
    assert [type(make_detector(k)).kind for k in DETECTOR_KINDS] == list(DETECTOR_KINDS)
    assert isinstance(make_detector("cnn_ae"), Conv1dDetector) and isinstance(make_detector("vae"), VAEDetector)
    assert make_detector("vae", latent=3, score_method="iwae").get_params()["score_method"] == "iwae"
    with pytest.raises(ValueError, match=r"kind='lstm'; expected one of \['mlp_ae', 'cnn_ae', 'vae', 'pca', 'knn'\]"):
        make_detector("lstm")
    with pytest.raises(UnknownParameterError, match="kind 'cnn_ae' has no parameter 'hidden'") as err:
        make_detector("cnn_ae", hidden=(8,))
    assert isinstance(err.value, TypeError) and isinstance(err.value, ValueError)


@pytest.mark.parametrize("kind", DETECTOR_KINDS)
def test_param_names_are_the_constructor_arguments_with_defaults(kind):
    cls = detector_class(kind)
    names = cls.param_names()
    assert len(names) == len(set(names))
    assert {"activation", "dropout", "output_activation", "epochs", "denoise", "random_state",
            "n_threads", "score_threads", "device", "error_scaling", "threshold"} <= set(names)
    assert ("latent" in names) == (kind in AUTOENCODERS)
    params = make_detector(kind).get_params()
    assert list(params) == names
    json.dumps({**params, "threshold": params["threshold"].to_dict()})  # plain values, the rule as its fields
    assert make_detector(kind, **params).get_params() == params


@pytest.mark.parametrize("kind", DETECTOR_KINDS)
def test_fit_and_every_output_shape(fitted, windows, kind):
    detector = fitted[kind]
    X = windows["test"]
    assert detector.window_size_ == WINDOW and detector.n_features_in_ == SENSORS
    assert all({"epoch", "train_loss", "val_loss"} <= set(row) for row in detector.history_)
    assert 1 <= detector.best_epoch_ <= len(detector.history_)
    scores = detector.score(X)
    assert scores.shape == (len(X),) and scores.dtype == np.float64 and np.all(np.isfinite(scores))
    assert detector.predict(X).dtype == bool
    np.testing.assert_array_equal(detector.predict(X), scores > detector.threshold_)
    assert detector.reconstruct(X).shape == X.shape
    assert detector.contributions(X).shape == (len(X), SENSORS)
    assert detector.encode(X).shape == (len(X), detector.model_.latent)
    assert detector.model_.latent == 4 or kind == "pca"
    both = detector.score_with_contributions(X)
    np.testing.assert_array_equal(both[0], scores)
    np.testing.assert_array_equal(both[1], detector.contributions(X))
    np.testing.assert_array_equal(detector.val_scores_, detector.score(windows["val"]))


@pytest.mark.parametrize("kind", AUTOENCODERS)
def test_loss_decreases(fitted, kind):
    losses = [row["train_loss"] for row in fitted[kind].history_]
    val = [row["val_loss"] for row in fitted[kind].history_]
    assert losses[-1] < losses[0] and min(val) < val[0]


@pytest.mark.parametrize("kind", DETECTOR_KINDS)
def test_scores_do_not_depend_on_batching(fitted, windows, kind):
    detector = fitted[kind]
    whole = detector.score(windows["test"])
    detector.inference_batch_size = 7
    try:
        np.testing.assert_allclose(detector.score(windows["test"]), whole, rtol=1e-5)
    finally:
        del detector.inference_batch_size


@pytest.mark.parametrize("kind", DETECTOR_KINDS)
def test_a_pushed_sensor_scores_higher_and_leads_the_contributions(fitted, windows, kind):
    detector = fitted[kind]
    X = windows["test"][:16]
    pushed = X.copy()
    pushed[:, :, 2] -= 1.0  # sensor 2 reads 1.0 below normal over the whole window
    assert np.all(detector.score(pushed) > detector.score(X))
    contributions = detector.contributions(pushed)
    assert np.all(np.argmax(np.abs(contributions), axis=1) == 2)
    assert np.all(contributions[:, 2] < 0)


@pytest.mark.parametrize("kind", DETECTOR_KINDS)
def test_save_load_reproduces_everything_bit_for_bit(fitted, windows, kind, tmp_path):
    detector = fitted[kind]
    detector.save(tmp_path)
    loaded = BaseDetector.load(tmp_path)
    assert type(loaded) is type(detector) and loaded.get_params() == detector.get_params()
    X = windows["test"]
    for method in ("score", "contributions", "reconstruct", "encode", "predict"):
        assert np.array_equal(getattr(loaded, method)(X), getattr(detector, method)(X)), method
    assert loaded.threshold_ == detector.threshold_ and loaded.history_ == detector.history_


@pytest.mark.parametrize("kind", AUTOENCODERS)
def test_same_seed_same_weights(windows, kind):
    X = windows["train"][:128]
    kwargs = {**SMALL[kind], **FAST, "epochs": 2, "dropout": 0.1, "denoise": "gaussian"}
    a, b, c = (make_detector(kind, **kwargs, random_state=seed).fit(X) for seed in (3, 3, 4))
    sa, sb, sc = (d.model_.state_dict() for d in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    np.testing.assert_array_equal(a.score(windows["test"]), b.score(windows["test"]))


@pytest.mark.parametrize("kind", DETECTOR_KINDS)
@pytest.mark.parametrize("method", ["score", "predict", "contributions", "reconstruct", "encode",
                                    "score_with_contributions"])
def test_not_fitted_is_a_named_error(windows, kind, method):
    with pytest.raises(NotFittedError, match="is not fitted; call fit"):
        getattr(make_detector(kind), method)(windows["test"])


@pytest.mark.parametrize("kind", AUTOENCODERS)
def test_sigmoid_output_with_cross_entropy_on_unit_scaled_data(windows, kind):
    X = (windows["train"][:256] + 1.5) / 3.0  # into [0, 1]
    assert X.min() >= 0 and X.max() <= 1
    detector = make_detector(kind, **SMALL[kind], **{**FAST, "epochs": 4}, output_activation="sigmoid").fit(X)
    recon = detector.reconstruct(X)
    assert recon.min() >= 0 and recon.max() <= 1
    assert detector.history_[-1]["train_loss"] < detector.history_[0]["train_loss"]
    with pytest.raises(DetectorInputError, match="output_activation='sigmoid' expects readings scaled to"):
        make_detector(kind, output_activation="sigmoid").fit(windows["train"])


@pytest.mark.parametrize("denoise", ["gaussian", "mask"])
def test_denoising_trains_on_corrupted_inputs_against_clean_targets(windows, denoise):
    X = windows["train"][:256]
    clean = make_detector("mlp_ae", **SMALL["mlp_ae"], **{**FAST, "epochs": 3}).fit(X)
    noisy = make_detector("mlp_ae", **SMALL["mlp_ae"], **{**FAST, "epochs": 3}, denoise=denoise,
                          noise_level=0.3).fit(X)
    # same seed, same data: only the corruption differs, and it makes the training loss higher
    assert noisy.history_[0]["train_loss"] > clean.history_[0]["train_loss"]


@pytest.mark.parametrize("kwargs, message", [
    ({"denoise": "blur"}, "denoise='blur'"),
    ({"denoise": "mask", "noise_level": 1.0}, "noise_level=1.0"),
    ({"progress": "yes"}, "progress='yes'"),
])
def test_bad_training_settings_are_named(windows, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_detector("mlp_ae", **kwargs).fit(windows["train"][:32])


def test_progress_bar_only_when_asked_or_on_a_terminal(windows, capsys):
    X = windows["train"][:64]
    make_detector("mlp_ae", **{**FAST, "epochs": 2}).fit(X)  # stderr is captured: not a terminal
    assert capsys.readouterr().err == ""
    make_detector("mlp_ae", **{**FAST, "epochs": 2}, progress=True).fit(X)
    err = capsys.readouterr().err
    assert "epoch 2/2" in err and "train" in err


# -- the VAE ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def vae(fitted):
    return fitted["vae"]


def refit_free(detector, **params):
    """The fitted detector with other parameters (no training)."""
    other = make_detector(detector.kind, **{**detector.get_params(), **params})
    other.__dict__.update({k: v for k, v in vars(detector).items() if k.endswith("_")})
    return other


def test_vae_score_methods_and_log_likelihood(vae, windows):
    X = windows["test"]
    iwae = refit_free(vae, score_method="iwae")
    np.testing.assert_allclose(iwae.score(X), -vae.log_likelihood(X, n_samples=vae.n_score_samples), rtol=1e-6)
    # both estimate -log p(x) in nats; with many samples the importance-weighted bound is the tighter (lower) one
    elbo = refit_free(vae, score_method="elbo", n_score_samples=256).score(X)
    iwae = refit_free(vae, score_method="iwae", n_score_samples=256).score(X)
    assert np.all(iwae <= elbo) and np.all(elbo - iwae < 0.1 * np.abs(elbo))
    assert vae.log_likelihood(X, n_samples=7).shape == (len(X),)
    pushed = X.copy()
    pushed[:, 3, 0] += 2.0
    assert np.all(vae.log_likelihood(pushed) < vae.log_likelihood(X))


def test_vae_kl_warmup_reaches_beta(vae):
    assert vae._kl_weight == vae.beta
    vae._on_epoch(1)
    try:
        assert vae._kl_weight == pytest.approx(vae.beta / vae.kl_warmup_epochs)
    finally:
        vae._on_epoch(vae.kl_warmup_epochs)


def test_vae_sample_and_interpolate(vae, windows):
    samples = vae.sample(50, random_state=0)
    assert samples.shape == (50, WINDOW, SENSORS) and samples.dtype == np.float32
    np.testing.assert_array_equal(vae.sample(50, random_state=0), samples)
    assert not np.array_equal(vae.sample(50, random_state=1), samples)
    # samples look like training data: the (amplitude-ordered) per-sensor spread is learnt
    spread = samples.std(axis=(0, 1))
    assert spread[0] > spread[2]
    a, b = windows["test"][0], windows["test"][1]
    path = vae.interpolate(a, b, steps=5)
    assert path.shape == (5, WINDOW, SENSORS)
    np.testing.assert_allclose(path[0], vae.reconstruct(a[None])[0], atol=1e-5)
    np.testing.assert_allclose(path[-1], vae.reconstruct(b[None])[0], atol=1e-5)
    with pytest.raises(ValueError, match="steps=1"):
        vae.interpolate(a, b, steps=1)
    with pytest.raises(DetectorInputError, match="a has 2 windows"):
        vae.interpolate(windows["test"][:2], b)


@pytest.mark.parametrize("kwargs, message", [
    ({"score_method": "mc"}, "score_method='mc'"), ({"beta": -1.0}, "beta=-1.0"),
    ({"architecture": "rnn"}, "architecture='rnn'"), ({"n_score_samples": 0}, "n_score_samples=0"),
    ({"kl_warmup_epochs": -1}, "kl_warmup_epochs=-1"),
])
def test_vae_rejects_bad_settings(windows, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_detector("vae", **kwargs).fit(windows["train"][:32])


def test_conv_vae_fits_and_reloads(windows, tmp_path):
    detector = make_detector("vae", architecture="conv", channels=(8, 16), latent=4, **{**FAST, "epochs": 3})
    detector.fit(windows["train"][:256], windows["val"][:64])
    detector.save(tmp_path)
    np.testing.assert_array_equal(BaseDetector.load(tmp_path).score(windows["test"]), detector.score(windows["test"]))


# -- point scores ----------------------------------------------------------------------

def test_point_scores_mean_and_max_by_hand():
    scores, starts = np.array([1.0, 3.0, 10.0]), np.array([0, 2, 3])
    # windows of 3 over 8 points: [0..2] = 1, [2..4] = 3, [3..5] = 10; points 6, 7 uncovered
    np.testing.assert_array_equal(point_scores(scores, starts, 3, 8, how="mean"),
                                  [1, 1, 2, 6.5, 6.5, 10, np.nan, np.nan])
    np.testing.assert_array_equal(point_scores(scores, starts, 3, 8, how="max"),
                                  [1, 1, 3, 10, 10, 10, np.nan, np.nan])
    assert make_detector("mlp_ae").point_scores is point_scores  # the same function as a method
    assert np.isnan(point_scores(np.empty(0), np.empty(0), 3, 4)).all()


@pytest.mark.parametrize("args, message", [
    ((np.ones(2), np.array([0, 6]), 3, 8), "within the n_points=8"),
    ((np.ones(2), np.array([0]), 3, 8), "same length"),
    ((np.ones(2), np.array([0.0, 1.0]), 3, 8), "integer positions"),
    ((np.ones(2), np.array([0, 1]), 0, 8), "window_length=0"),
])
def test_point_scores_rejects_bad_input(args, message):
    with pytest.raises(ValueError, match=message):
        point_scores(*args)
    with pytest.raises(ValueError, match="how='median'"):
        point_scores(np.ones(1), np.array([0]), 3, 8, how="median")


@pytest.mark.parametrize("scaling", ["sensor", "none"])
@pytest.mark.parametrize("kind", DETECTOR_KINDS)
def test_calibration_values_pooled_back_set_what_fit_set(windows, kind, scaling):
    """calibrate_on(calibration_values(X_val)) reproduces fit's own calibration; values from
    another fit of the kind move the threshold to theirs; wrong shapes are refused."""
    params = {**SMALL[kind], **FAST, "epochs": 3, "error_scaling": scaling, **({"statistic": "q"} if kind == "pca"
                                                                               else {})}
    detector = make_detector(kind, **params).fit(windows["train"], windows["val"])
    values = detector.calibration_values(windows["val"])
    assert values.shape == (len(windows["val"]), SENSORS if scaling == "sensor" else 1)
    again = make_detector(kind, **params).fit(windows["train"], windows["val"]).calibrate_on(values)
    np.testing.assert_allclose(again.threshold_, detector.threshold_, rtol=1e-9)
    if scaling == "sensor":
        np.testing.assert_allclose(again.sensor_scale_, detector.sensor_scale_, rtol=1e-9)
    else:
        assert again.sensor_scale_ is None
    np.testing.assert_allclose(again.score(windows["test"]), detector.score(windows["test"]), rtol=1e-6)
    shifted = again.calibrate_on(values + values.max(axis=0))  # the same spread, every error higher
    assert shifted.threshold_ > detector.threshold_  # the values given decide, not the fit's own
    with pytest.raises(DetectorInputError, match=r"calibration values have shape \(4,\)"):
        detector.calibrate_on(np.ones(4))


def test_pcas_combined_statistic_does_not_pool_its_calibration(windows):
    detector = make_detector("pca", **SMALL["pca"]).fit(windows["train"], windows["val"])
    with pytest.raises(DetectorInputError, match="statistic='combined' fits its limits"):
        detector.calibration_values(windows["val"])
