"""Scoring runs the 1-D convolutions through oneDNN on channels_last views (transposed ones as
stride-1 phase convolutions, weights made once per set of parameter values) and its ReLUs
in place: the values of the plain nn.Conv1d / nn.ConvTranspose1d modules, the caller's windows
untouched, and the saved weights as before. Training's matmuls keep the unfold's gradients bit
for bit."""
import numpy as np
import pytest
import torch
from torch import nn

from aemodels import conv1d, make_detector
from aemodels.base import BaseDetector
from aemodels.conv1d import Conv1dAutoencoder, channels_last_forward, conv1d_image, conv_lengths, conv_transpose1d_image
from aemodels.vae import VAE

FAST = {"epochs": 3, "n_threads": 1, "progress": False, "random_state": 0}


def windows(n: int = 400, length: int = 30, sensors: int = 7, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = 0.3 * np.arange(length)[None, :, None] + rng.uniform(0, 6, (n, 1, 1))
    X = np.sin(t + np.linspace(0, 2, sensors)) + rng.normal(0, 0.05, (n, length, sensors))
    return X.astype(np.float32)


@pytest.mark.parametrize("c_in, c_out, k, stride, length", [
    (7, 16, 5, 2, 30), (16, 32, 5, 2, 15), (3, 4, 3, 2, 31), (2, 5, 7, 1, 12), (1, 2, 1, 2, 9), (1, 1, 5, 2, 4)])
def test_image_convolution_matches_conv1d(c_in, c_out, k, stride, length):
    torch.manual_seed(0)
    conv = nn.Conv1d(c_in, c_out, k, stride=stride, padding=k // 2)
    x = torch.randn(37, length, c_in)
    with torch.inference_mode():
        reference = conv(x.transpose(1, 2)).transpose(1, 2)
        out = conv1d_image(x, conv)
        assert out.shape == reference.shape
        torch.testing.assert_close(out, reference, atol=1e-5, rtol=1e-5)
        # a window tensor that is not contiguous (a crop) gives the same values
        torch.testing.assert_close(conv1d_image(torch.cat([x, x], 1)[:, :length], conv), reference,
                                   atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("c_in, c_out, k, length_out", [
    (32, 16, 5, 15), (16, 7, 5, 30), (8, 3, 3, 31), (8, 3, 3, 30), (4, 2, 7, 12), (2, 1, 1, 9), (5, 3, 9, 40),
    (3, 2, 11, 7)])
def test_image_transposed_convolution_matches_conv_transpose1d(c_in, c_out, k, length_out):
    # k = 3 and 7 reach one more step on one side than the other: the phase convolution pads both
    torch.manual_seed(1)
    length_in = conv_lengths(length_out, 1)[-1]
    conv = nn.ConvTranspose1d(c_in, c_out, k, stride=2, padding=k // 2,
                              output_padding=length_out - (2 * length_in - 1))
    x = torch.randn(29, length_in, c_in)
    with torch.inference_mode():
        reference = conv(x.transpose(1, 2)).transpose(1, 2)
        out = conv_transpose1d_image(x, conv)
    assert out.shape == reference.shape == (29, length_out, c_out)
    torch.testing.assert_close(out, reference, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("activation, dropout", [("relu", 0.0), ("relu", 0.2), ("gelu", 0.1)])
def test_inference_pass_matches_the_modules_and_leaves_the_windows_alone(activation, dropout, fused, monkeypatch):
    if not fused:  # a torch built without oneDNN's fused convolution: F.conv2d, then the ReLU in place
        monkeypatch.setattr(conv1d, "_CONV_POINTWISE", None)
    elif conv1d._CONV_POINTWISE is None:
        pytest.skip("this torch has no oneDNN fused convolution")
    torch.manual_seed(2)
    model = Conv1dAutoencoder(17, 3, (4, 8, 16), 3, latent=4, activation=activation, dropout=dropout).eval()
    x = torch.randn(23, 17, 3)
    before = x.clone()
    with torch.inference_mode():
        reference = model(x.transpose(1, 2)).transpose(1, 2)
        torch.testing.assert_close(model.forward_windows(x), reference, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model.encode_windows(x), model.encode(x.transpose(1, 2)), atol=1e-5, rtol=1e-5)
        # a ReLU straight on the input (nothing before it that made a tensor) must not overwrite it
        torch.testing.assert_close(channels_last_forward(nn.Sequential(nn.Dropout(0.5).eval(), nn.ReLU()), x),
                                   before.relu())
    torch.testing.assert_close(x, before, rtol=0, atol=0)


def test_conv_vae_inference_matches_its_modules():
    torch.manual_seed(3)
    vae = VAE(20, 3, "conv", channels=(8, 16), kernel_size=5, latent=4).eval()
    x = torch.randn(11, 20, 3)
    with torch.inference_mode():
        mu_ref, logvar_ref = vae.encoder(x).chunk(2, dim=-1)  # the modules in their own layout
        mu, logvar = vae.posterior(x)
        torch.testing.assert_close(mu, mu_ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(logvar, logvar_ref.clamp(-12, 8), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(vae.decode(mu), vae.decoder(mu), atol=1e-5, rtol=1e-5)


def reference_scores(detector: BaseDetector, X: np.ndarray) -> np.ndarray:
    """The reconstruction MSE of each window from the plain nn.Conv1d / nn.ConvTranspose1d
    modules on (B, C, L), in float64."""
    model = detector.model_
    with torch.no_grad():
        x = torch.from_numpy(X)
        recon = model(x.transpose(1, 2)).transpose(1, 2)  # (B, L, C) -> (B, C, L) -> (B, L, C)
    return ((X.astype(np.float64) - recon.double().numpy()) ** 2).mean(axis=(1, 2))


def test_trained_cnn_scores_match_the_plain_module_path_and_survive_save_and_load(tmp_path):
    X = windows()
    detector = make_detector("cnn_ae", score_threads=1, **FAST).fit(X[:300])
    reference = reference_scores(detector, X[300:])
    scores = detector.score(X[300:])
    torch.testing.assert_close(scores, reference, rtol=1e-4, atol=1e-7)
    both, contributions = detector.score_with_contributions(X[300:])
    torch.testing.assert_close(both, reference, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(np.abs(contributions).mean(axis=1), reference, rtol=1e-4, atol=1e-7)
    # the saved weights are the plain modules' own, as in models saved before
    state = detector.model_.state_dict()
    assert {name: tuple(t.shape) for name, t in state.items()} == {
        "encoder.0.weight": (16, 7, 5), "encoder.0.bias": (16,), "encoder.2.weight": (32, 16, 5),
        "encoder.2.bias": (32,), "encoder.5.weight": (8, 256), "encoder.5.bias": (8,),
        "decoder.0.weight": (256, 8), "decoder.0.bias": (256,), "decoder.3.weight": (32, 16, 5),
        "decoder.3.bias": (16,), "decoder.5.weight": (16, 7, 5), "decoder.5.bias": (7,)}
    detector.save(tmp_path / "cnn")
    loaded = BaseDetector.load(tmp_path / "cnn")
    np.testing.assert_array_equal(loaded.score(X[300:]), scores)
    # a state_dict put into a freshly built network (how a registry model is loaded) scores the same
    fresh = make_detector("cnn_ae", score_threads=1, **FAST)
    fresh.model_ = Conv1dAutoencoder(30, 7).eval()
    fresh.model_.load_state_dict(state)
    fresh.window_size_, fresh.n_features_in_, fresh.sensor_scale_ = 30, 7, None
    np.testing.assert_array_equal(fresh.score(X[300:]), scores)


def test_training_still_takes_gradients_through_the_matmul_path():
    torch.manual_seed(4)
    model = Conv1dAutoencoder(30, 7)
    x = torch.randn(9, 30, 7)
    loss = (model.forward_windows(x) - x).square().mean()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("length, channels, k, stride, left, right", [
    (30, 7, 5, 2, 2, 2), (15, 16, 5, 2, 2, 2), (8, 32, 3, 1, 1, 1), (9, 3, 1, 2, 0, 0), (12, 2, 7, 3, 0, 3),
    (10, 4, 2, 1, 1, 0)])
def test_im2col_is_unfold_bit_for_bit_gradient_included(length, channels, k, stride, left, right):
    # training's values stay those of the pad and unfold it replaces, to the last bit: the same trained weights
    torch.manual_seed(7)
    x = torch.randn(11, length, channels)
    l_out = (length + left + right - k) // stride + 1
    grad = torch.randn(11 * l_out, k * channels)
    results = []
    for patches_of in (lambda t: nn.functional.pad(t, (0, 0, left, right)).unfold(1, k, stride).transpose(2, 3)
                       .reshape(11 * l_out, k * channels),
                       lambda t: conv1d._Im2col.apply(t, k, stride, left, right)):
        leaf = x.clone().requires_grad_(True)
        patches = patches_of(leaf)
        patches.backward(grad)
        results.append((patches.detach(), leaf.grad))
    (reference, reference_grad), (patches, patches_grad) = results
    assert torch.equal(patches, reference) and torch.equal(patches_grad, reference_grad)


def test_scoring_weights_follow_the_parameters(tmp_path):
    # the inference path makes its weights once per set of parameter values: an optimizer step
    # (fused Adam, as training runs it) or a load_state_dict after a scoring pass is seen by the next one
    torch.manual_seed(6)
    model = Conv1dAutoencoder(30, 7).eval()
    x = torch.randn(5, 30, 7)

    def check() -> None:
        with torch.inference_mode():
            reference = model(x.transpose(1, 2)).transpose(1, 2)
            torch.testing.assert_close(model.forward_windows(x), reference, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(model.residual_windows(x), reference - x, atol=1e-5, rtol=1e-5)

    check()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1, fused=True)
    (model.forward_windows(x) - x).square().mean().backward()
    optimizer.step()
    check()
    other = Conv1dAutoencoder(30, 7)
    model.load_state_dict(other.state_dict())
    check()
    with torch.no_grad():
        model.decoder[0].weight = nn.Parameter(torch.randn_like(model.decoder[0].weight))  # replaced, not changed
    check()


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("length, output_activation", [(30, "identity"), (29, "identity"), (30, "sigmoid")])
def test_residual_is_the_reconstruction_minus_the_windows(length, output_activation, fused, monkeypatch):
    # 30: the last transposed convolution subtracts as it writes; 29 (its output cropped) and a
    # sigmoid after it: the subtraction follows
    if not fused:
        monkeypatch.setattr(conv1d, "_CONV_POINTWISE", None)
    torch.manual_seed(5)
    model = Conv1dAutoencoder(length, 7, output_activation=output_activation).eval()
    x = torch.randn(31, length, 7)
    before = x.clone()
    with torch.inference_mode():
        reference = model(x.transpose(1, 2)).transpose(1, 2) - x
        residual = model.residual_windows(x)
    assert residual.shape == x.shape
    torch.testing.assert_close(residual, reference, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(x, before, rtol=0, atol=0)
    # with gradients on (training), the same values from the matmul path
    torch.testing.assert_close(model.residual_windows(x).detach(), reference, atol=1e-5, rtol=1e-5)
