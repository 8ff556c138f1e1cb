"""The Conv1d autoencoder and the VAE as torch modules: shapes, the closed-form KL, the VAE's bounds."""
import math

import pytest
import torch
from torch import nn

from aemodels.conv1d import Conv1dAutoencoder, conv_lengths
from aemodels.vae import VAE, gaussian_kl


@pytest.mark.parametrize("window_size", [1, 2, 3, 7, 13, 30, 31])
@pytest.mark.parametrize("channels", [(8,), (8, 16), (4, 8, 16)])
def test_conv_autoencoder_keeps_the_shape_for_odd_sizes(window_size, channels):
    model = Conv1dAutoencoder(window_size, 5, channels, kernel_size=3, latent=4)
    x = torch.randn(6, 5, window_size)
    assert model(x).shape == x.shape
    assert model.encode(x).shape == (6, 4)


def test_conv_lengths_halve_rounding_up():
    assert conv_lengths(30, 3) == [30, 15, 8, 4]
    assert conv_lengths(1, 2) == [1, 1, 1]


def test_conv_autoencoder_layers_and_output_activation():
    model = Conv1dAutoencoder(30, 7, (16, 32), kernel_size=5, latent=8, dropout=0.1, output_activation="sigmoid")
    convs = [m for m in model.encoder if isinstance(m, nn.Conv1d)]
    assert [(m.in_channels, m.out_channels, m.stride[0]) for m in convs] == [(7, 16, 2), (16, 32, 2)]
    ups = [m for m in model.decoder if isinstance(m, nn.ConvTranspose1d)]
    assert [(m.in_channels, m.out_channels) for m in ups] == [(32, 16), (16, 7)]
    out = model(torch.randn(3, 7, 30) * 10)
    assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("kwargs, message", [
    ({"kernel_size": 4}, "kernel_size=4, must be an odd int"),
    ({"channels": ()}, "channels=()"),
    ({"channels": (8, 0)}, r"channels\[1\]=0"),
    ({"activation": "tanh"}, "activation='tanh'"),
    ({"output_activation": "softmax"}, "output_activation='softmax'"),
])
def test_conv_autoencoder_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Conv1dAutoencoder(**{"window_size": 30, "n_sensors": 7, **kwargs})


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
@pytest.mark.parametrize("window_size, n_sensors", [(1, 1), (7, 3), (30, 7), (13, 2)])
def test_vae_shapes(architecture, window_size, n_sensors):
    model = VAE(window_size, n_sensors, architecture, hidden=(16,), channels=(8, 16), latent=3)
    x = torch.randn(4, window_size, n_sensors)
    mu, logvar = model.posterior(x)
    assert mu.shape == logvar.shape == (4, 3)
    assert model(x).shape == x.shape and model.encode(x).shape == (4, 3)
    assert model.decode(torch.randn(2, 5, 3)).shape == (2, 5, window_size, n_sensors)
    eps = torch.randn(6, 3)
    assert model.negative_elbo(x, eps).shape == (4,) and model.log_likelihood(x, eps).shape == (4,)
    assert model.loss(x, x, 1.0).shape == ()


def test_vae_rejects_an_unknown_architecture():
    with pytest.raises(ValueError, match="architecture='rnn'"):
        VAE(30, 7, "rnn")


def test_closed_form_kl_equals_a_monte_carlo_estimate():
    generator = torch.Generator().manual_seed(0)
    mu = torch.randn(5, 4, generator=generator, dtype=torch.float64)
    logvar = torch.randn(5, 4, generator=generator, dtype=torch.float64) * 0.5
    std = torch.exp(0.5 * logvar)
    z = mu + std * torch.randn(200_000, 5, 4, generator=generator, dtype=torch.float64)  # (S, B, d)
    log_q = torch.distributions.Normal(mu, std).log_prob(z).sum(-1)
    log_p = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    monte_carlo = (log_q - log_p).mean(0)
    closed = gaussian_kl(mu, logvar)
    torch.testing.assert_close(closed, monte_carlo, rtol=0.02, atol=0.01)
    assert torch.all(gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3)) == 0)


def test_vae_gaussian_log_likelihood_is_the_normal_density():
    model = VAE(4, 2, hidden=(8,), latent=2)
    with torch.no_grad():
        model.log_scale.copy_(torch.tensor([0.3, -0.2]))
    x, mean = torch.randn(3, 4, 2), torch.randn(3, 4, 2)
    expected = torch.distributions.Normal(mean, torch.exp(model.log_scale)).log_prob(x).sum((-2, -1))
    torch.testing.assert_close(model.log_px_z(x, mean), expected)


def test_iwae_bound_tightens_with_samples_and_one_sample_is_the_elbo():
    torch.manual_seed(0)
    model = VAE(6, 2, hidden=(16,), latent=2).eval()
    x = torch.randn(8, 6, 2)
    with torch.no_grad():
        many = torch.randn(2000, 2)
        # K = 1: a one-sample ELBO estimate (KL by Monte Carlo); its mean is the ELBO with the closed-form KL.
        one_sample = torch.stack([model.log_likelihood(x, many[k:k + 1]) for k in range(len(many))]).mean(0)
        torch.testing.assert_close(one_sample, -model.negative_elbo(x, many), rtol=0.01, atol=0.05)
        elbo = -model.negative_elbo(x, many)  # E_q[log p(x|z)] - KL, averaged over the same draws
        iwae = model.log_likelihood(x, many)
    assert torch.all(iwae >= elbo - 1e-4)
    assert math.isfinite(iwae.sum().item())
