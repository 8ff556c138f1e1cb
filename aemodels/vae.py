"""A variational autoencoder over sensor windows, with an MLP or a convolutional encoder/decoder.

The encoder gives the mean and log-variance of a diagonal Gaussian q(z|x); z is drawn by
reparameterisation (z = mu + sigma * eps); the prior is N(0, I). The decoder gives the mean
of p(x|z): a Gaussian with a learnt standard deviation per sensor (identity output), or a
Bernoulli (sigmoid output, readings scaled to [0, 1]). All methods take and return windows
as (B, window_size, n_sensors).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from aemodels.conv1d import WindowTranspose, channels_last_forward, check_conv_args, conv_decoder, conv_encoder
from aemodels.mlp import OUTPUT_ACTIVATIONS, check_network_args, mlp
from aemodels.network import Autoencoder

ARCHITECTURES = ("mlp", "conv")
LOG_2PI = math.log(2 * math.pi)
LOGVAR_RANGE = (-12.0, 8.0)  # keeps exp(logvar) finite while training


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) in closed form, summed over the last axis: (B, d) -> (B,)."""
    return 0.5 * torch.sum(mu ** 2 + logvar.exp() - 1.0 - logvar, dim=-1)


class VAE(Autoencoder):
    def __init__(self, window_size: int, n_sensors: int, architecture: str = "mlp", hidden: tuple[int, ...] = (64, 32),
                 channels: tuple[int, ...] = (16, 32), kernel_size: int = 5, latent: int = 8,
                 activation: str = "relu", dropout: float = 0.0, output_activation: str = "identity"):
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(f"VAE architecture={architecture!r}, must be one of {list(ARCHITECTURES)}")
        hidden, channels = tuple(hidden), tuple(channels)
        self.window_size, self.n_sensors, self.latent = int(window_size), int(n_sensors), int(latent)
        self.architecture = architecture
        if architecture == "mlp":
            n_inputs = window_size * n_sensors
            check_network_args("VAE", {"window_size": window_size, "n_sensors": n_sensors, "latent": latent,
                                       **{f"hidden[{i}]": h for i, h in enumerate(hidden)}},
                               activation, dropout, output_activation)
            # (B, L, C) -> (B, L*C) -> (B, 2 * latent)
            self.encoder = nn.Sequential(nn.Flatten(), *mlp([n_inputs, *hidden, 2 * latent], activation, dropout))
            # (B, latent) -> (B, L*C) -> (B, L, C)
            self.decoder = nn.Sequential(*mlp([latent, *reversed(hidden), n_inputs], activation, dropout),
                                         nn.Unflatten(1, (window_size, n_sensors)))
        else:
            check_conv_args("VAE", window_size, n_sensors, channels, kernel_size, latent, activation, dropout,
                            output_activation)
            # (B, L, C) -> (B, C, L) -> (B, 2 * latent)
            self.encoder = nn.Sequential(WindowTranspose(), *conv_encoder(window_size, n_sensors, channels, kernel_size,
                                                                     2 * latent, activation, dropout))
            # (B, latent) -> (B, C, L) -> (B, L, C)
            self.decoder = nn.Sequential(*conv_decoder(latent, window_size, n_sensors, channels, kernel_size,
                                                       activation, dropout, "identity"), WindowTranspose())
        self.bernoulli = output_activation == "sigmoid"
        if not self.bernoulli:
            self.log_scale = nn.Parameter(torch.zeros(n_sensors))  # log std of p(x|z), per sensor
        self.output = OUTPUT_ACTIVATIONS[output_activation]()

    def _run(self, layers: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        """The encoder or decoder; convolutions run channels last on the windows as they are
        (the same values as the modules in their (B, C, L) layout, fewer copies, matmul speed)."""
        return channels_last_forward(layers, x) if self.architecture == "conv" else layers(x)

    # -- the two distributions ---------------------------------------------------------

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(z|x): (B, L, C) -> (B, d), (B, d)."""
        mu, logvar = self._run(self.encoder, x).chunk(2, dim=-1)
        return mu, logvar.clamp(*LOGVAR_RANGE)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Mean of p(x|z): (..., d) -> (..., L, C)."""
        lead = z.shape[:-1]
        out = self.output(self._run(self.decoder, z.reshape(-1, self.latent)))
        return out.reshape(*lead, self.window_size, self.n_sensors)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.posterior(x)[0]  # (B, L, C) -> (B, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The deterministic reconstruction: the decoder mean at the posterior mean, (B, L, C)."""
        return self.decode(self.encode(x))

    def log_px_z(self, x: torch.Tensor, x_mean: torch.Tensor) -> torch.Tensor:
        """log p(x|z) summed over the window: x (B, L, C), x_mean (..., B, L, C) -> (..., B)."""
        if self.bernoulli:
            return -F.binary_cross_entropy(x_mean, x.expand_as(x_mean), reduction="none").sum(dim=(-2, -1))
        squares = ((x - x_mean) * torch.exp(-self.log_scale)).square().sum(dim=(-2, -1))
        return -0.5 * squares - self.window_size * (self.log_scale.sum() + 0.5 * self.n_sensors * LOG_2PI)

    def nll_from_squares(self, squares: torch.Tensor) -> torch.Tensor:
        """-log p(x|z) of the Gaussian decoding from the per-sensor sums over the window of the
        squared residual x - x_mean, (B, C) -> (B,): the same value as -log_px_z, one pass fewer."""
        assert not self.bernoulli, "a Bernoulli decoding has no squared-residual form"
        return (0.5 * (squares * torch.exp(-2 * self.log_scale)).sum(dim=-1)
                + self.window_size * (self.log_scale.sum() + 0.5 * self.n_sensors * LOG_2PI))

    # -- objectives --------------------------------------------------------------------

    def loss(self, inputs: torch.Tensor, targets: torch.Tensor, kl_weight: float) -> torch.Tensor:
        """Training loss per window value: (-log p(targets|z) + kl_weight * KL) / (L * C), one z per window."""
        mu, logvar = self.posterior(inputs)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        per_window = -self.log_px_z(targets, self.decode(z)) + kl_weight * gaussian_kl(mu, logvar)
        return per_window.mean() / (self.window_size * self.n_sensors)

    def _samples(self, x: torch.Tensor, eps: torch.Tensor):
        mu, logvar = self.posterior(x)
        z = mu + torch.exp(0.5 * logvar) * eps[:, None, :]  # (K, 1, d) -> (K, B, d)
        return mu, logvar, z, self.log_px_z(x, self.decode(z))  # log p(x|z): (K, B)

    def negative_elbo(self, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """-ELBO averaged over the K draws eps (K, d) of the noise: (B, L, C) -> (B,)."""
        mu, logvar, _, log_px_z = self._samples(x, eps)
        return -log_px_z.mean(dim=0) + gaussian_kl(mu, logvar)

    def log_likelihood(self, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Importance-weighted estimate of log p(x) with K = len(eps) samples from q(z|x) (Burda et al.):

            log p(x) ~ logsumexp_k [log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log K,

        a lower bound that tightens towards log p(x) as K grows. (B, L, C) -> (B,)."""
        _, logvar, z, log_px_z = self._samples(x, eps)
        log_pz = -0.5 * (z ** 2 + LOG_2PI).sum(dim=-1)
        log_qz = -0.5 * (eps[:, None, :] ** 2 + logvar + LOG_2PI).sum(dim=-1)
        return torch.logsumexp(log_px_z + log_pz - log_qz, dim=0) - math.log(len(eps))
