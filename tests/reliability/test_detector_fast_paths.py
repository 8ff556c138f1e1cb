"""The detectors' fast scoring paths give the reference computation's values: channels-last
convolutions as matmuls, float32 per-sensor errors, the VAE's mean-decoding score, the
finiteness check done on the results, and scoring on its own thread count."""
import json

import numpy as np
import pytest
import torch
from torch import nn

from aemodels import DetectorInputError, make_detector
from aemodels.base import TORCH_THREADS, BaseDetector
from aemodels.conv1d import Conv1dAutoencoder, conv1d_channels_last, conv_lengths, conv_transpose1d_channels_last
from aemodels.mlp import MLPAutoencoder
from aemodels.vae import VAE

FAST = {"epochs": 2, "n_threads": 1, "progress": False, "random_state": 0}


def windows(n: int = 300, length: int = 16, sensors: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = 0.3 * np.arange(length)[None, :, None] + rng.uniform(0, 6, (n, 1, 1))
    X = np.sin(t + np.linspace(0, 2, sensors)) + rng.normal(0, 0.05, (n, length, sensors))
    return X.astype(np.float32)


@pytest.mark.parametrize("c_in, c_out, k, stride, length", [
    (7, 16, 5, 2, 30), (16, 32, 5, 2, 15), (3, 4, 3, 2, 31), (2, 5, 7, 1, 12), (1, 2, 1, 2, 9)])
def test_channels_last_conv_matches_conv1d(c_in, c_out, k, stride, length):
    torch.manual_seed(0)
    conv = nn.Conv1d(c_in, c_out, k, stride=stride, padding=k // 2)
    x = torch.randn(37, length, c_in)
    reference = conv(x.transpose(1, 2)).transpose(1, 2)
    out = conv1d_channels_last(x, conv)
    assert out.shape == reference.shape
    torch.testing.assert_close(out, reference, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("c_in, c_out, k, length_out", [
    (32, 16, 5, 15), (16, 7, 5, 30), (8, 3, 3, 31), (4, 2, 7, 12), (2, 1, 1, 9), (5, 3, 9, 40)])
def test_channels_last_transposed_conv_matches_conv_transpose1d(c_in, c_out, k, length_out):
    torch.manual_seed(1)
    length_in = conv_lengths(length_out, 1)[-1]
    conv = nn.ConvTranspose1d(c_in, c_out, k, stride=2, padding=k // 2,
                              output_padding=length_out - (2 * length_in - 1))
    x = torch.randn(29, length_in, c_in)
    reference = conv(x.transpose(1, 2)).transpose(1, 2)
    out = conv_transpose1d_channels_last(x, conv)
    assert out.shape == reference.shape == (29, length_out, c_out)
    torch.testing.assert_close(out, reference, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("channels, k, length, sensors", [((16, 32), 5, 30, 7), ((4, 8, 16), 3, 17, 2)])
def test_conv_autoencoder_windows_path_matches_its_modules_and_their_gradients(channels, k, length, sensors):
    torch.manual_seed(2)
    model = Conv1dAutoencoder(length, sensors, channels, k, latent=4, activation="gelu")
    x = torch.randn(23, length, sensors)
    reference = model(x.transpose(1, 2)).transpose(1, 2)
    torch.testing.assert_close(model.forward_windows(x), reference, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.encode_windows(x), model.encode(x.transpose(1, 2)), atol=1e-5, rtol=1e-5)
    # training runs the windows path too: the same gradients as the modules'
    grads = []
    for forward in (lambda: model(x.transpose(1, 2)).transpose(1, 2), lambda: model.forward_windows(x)):
        model.zero_grad()
        (forward() - x).square().mean().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for reference_grad, grad in zip(*grads, strict=True):
        torch.testing.assert_close(grad, reference_grad, atol=1e-5, rtol=1e-4)


def test_conv_vae_runs_its_convolutions_channels_last_with_the_modules_values():
    torch.manual_seed(3)
    vae = VAE(20, 3, "conv", channels=(8, 16), kernel_size=5, latent=4).eval()
    x = torch.randn(11, 20, 3)
    mu_ref, logvar_ref = vae.encoder(x).chunk(2, dim=-1)  # the modules in their own layout
    mu, logvar = vae.posterior(x)
    torch.testing.assert_close(mu, mu_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logvar, logvar_ref.clamp(-12, 8), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(vae.decode(mu), vae.decoder(mu), atol=1e-5, rtol=1e-5)


def reference_errors(detector: BaseDetector, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-sensor MSE and signed contributions from reconstruct() in float64 NumPy."""
    residual = X.astype(np.float64) - detector.reconstruct(X).astype(np.float64)  # (n, L, C)
    mse = (residual ** 2).mean(axis=1)
    if detector.sensor_scale_ is not None:
        mse = mse / detector.sensor_scale_
    return mse, np.where(residual.sum(axis=1) >= 0, 1.0, -1.0) * mse


@pytest.mark.parametrize("kind", ["mlp_ae", "cnn_ae", "vae"])
@pytest.mark.parametrize("scaling", ["none", "sensor"])
def test_scores_and_contributions_match_the_float64_reference(kind, scaling):
    X = windows()
    detector = make_detector(kind, error_scaling=scaling, **FAST).fit(X[:200])
    mse, contributions = reference_errors(detector, X[200:])
    score, contrib = detector.score_with_contributions(X[200:])
    np.testing.assert_allclose(contrib, contributions, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(detector.contributions(X[200:]), contributions, rtol=1e-4, atol=1e-7)
    if kind != "vae" or scaling == "sensor":  # the reconstruction error is the score
        np.testing.assert_allclose(score, mse.mean(axis=1), rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(detector.score(X[200:]), mse.mean(axis=1), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("output_activation", ["identity", "sigmoid"])
def test_vae_mean_score_is_the_elbo_at_the_posterior_mean_and_deterministic(output_activation):
    X = windows()
    if output_activation == "sigmoid":
        X = (X - X.min()) / (X.max() - X.min())
    detector = make_detector("vae", output_activation=output_activation, **FAST).fit(X[:200])
    assert detector.score_method == "mean" and detector._score_batch_size() == detector.inference_batch_size
    with torch.inference_mode():  # the negative ELBO with the one draw eps = 0: z = mu
        reference = detector.model_.negative_elbo(torch.from_numpy(X[200:]), torch.zeros(1, 8)).double().numpy()
    score = detector.score(X[200:])
    np.testing.assert_allclose(score, reference, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(detector.score(X[200:]), score)  # the same on every call
    detector.inference_batch_size = 7  # and whatever the batches
    np.testing.assert_allclose(detector.score(X[200:]), score, rtol=1e-6)
    both, _ = detector.score_with_contributions(X[200:])
    np.testing.assert_allclose(both, score, rtol=1e-6)


def test_vae_sampled_scores_are_still_there():
    X = windows()
    detector = make_detector("vae", score_method="elbo", n_score_samples=4, **FAST).fit(X[:200])
    eps = detector._eps(4)
    with torch.inference_mode():
        reference = detector.model_.negative_elbo(torch.from_numpy(X[200:]), eps).double().numpy()
    np.testing.assert_allclose(detector.score(X[200:]), reference, rtol=1e-6)
    assert detector._score_batch_size() == detector.inference_batch_size // 4


@pytest.mark.parametrize("kind", ["mlp_ae", "cnn_ae", "vae"])
@pytest.mark.parametrize("method", ["score", "contributions", "score_with_contributions", "predict"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_a_non_finite_reading_is_named_by_every_scoring_call(kind, method, value):
    X = windows()
    detector = make_detector(kind, **FAST).fit(X[:200])
    bad = X[200:].copy()
    bad[17, 15, 2] = value  # the last step of the last sensor
    bad[40, 0, 0] = value
    with pytest.raises(DetectorInputError, match=r"X has 2 non-finite values .* first at "
                                                 r"\[window, step, sensor\] = \[17, 15, 2\]"):
        getattr(detector, method)(bad)


def test_scoring_runs_on_score_threads_and_fitting_on_n_threads(tmp_path):
    X = windows()
    detector = make_detector("mlp_ae", score_threads=2, **FAST).fit(X[:200])
    hooks: list[int] = []

    def network_threads(module, *_):  # every forward pass of a whole network, training or not
        if isinstance(module, MLPAutoencoder):
            hooks.append(torch.get_num_threads())

    handle = nn.modules.module.register_module_forward_hook(network_threads)
    try:
        detector.fit(X[:200])
    finally:
        handle.remove()
    assert len(hooks) > 2 and set(hooks) == {1}  # training and its calibration pass: n_threads
    hooks.clear()
    detector.model_.register_forward_hook(lambda *_: hooks.append(torch.get_num_threads()))
    detector.score(X[200:])
    assert hooks and set(hooks) == {2}
    detector.save(tmp_path / "d")
    loaded = BaseDetector.load(tmp_path / "d")
    assert loaded.score_threads == 2 and loaded.n_threads == 1
    # a model saved before score_threads existed scores on every thread torch starts with
    config = json.loads((tmp_path / "d" / "config.json").read_text())
    del config["params"]["score_threads"]
    (tmp_path / "d" / "config.json").write_text(json.dumps(config))
    old = BaseDetector.load(tmp_path / "d")
    assert old.score_threads == 0 and old._inference_threads() == TORCH_THREADS
    old.model_.register_forward_hook(lambda *_: hooks.append(torch.get_num_threads()))
    hooks.clear()
    old.score(X[200:])
    assert set(hooks) == {TORCH_THREADS}


@pytest.mark.parametrize("value", [-1, 1.5, "all"])
def test_score_threads_must_be_a_count(value):
    with pytest.raises(ValueError, match="score_threads"):
        make_detector("mlp_ae", score_threads=value, **FAST).fit(windows(50))


def test_score_threads_is_a_stream_setting_shared_or_per_kind():
    from flows.config import detector_params, detectors_model

    DetectorsSettings = detectors_model()

    settings = DetectorsSettings(**{"score_threads": 2, "vae": {"score_threads": 1}})
    assert detector_params(settings, "mlp_ae")["score_threads"] == 2
    assert detector_params(settings, "vae")["score_threads"] == 1
    assert make_detector("cnn_ae", **detector_params(DetectorsSettings(), "cnn_ae")).score_threads == 0
    with pytest.raises(ValueError, match="score_threads=-1, must be an int >= 0"):
        make_detector("mlp_ae", **detector_params(DetectorsSettings(score_threads=-1), "mlp_ae")).validate_params()


@pytest.mark.parametrize("kind", ["mlp_ae", "cnn_ae", "vae"])
def test_read_only_windows_score_without_warnings_and_stay_unchanged(kind):
    import warnings

    X = windows()
    detector = make_detector(kind, **FAST).fit(X[:200])
    expected = detector.score_with_contributions(X[200:])
    frozen = X[200:].copy()
    frozen.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns when it wraps a read-only array
        got = detector.score_with_contributions(frozen)
        np.testing.assert_array_equal(detector.score(frozen), expected[0])
        detector.encode(frozen)
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    np.testing.assert_array_equal(frozen, X[200:])  # the windows are never written
