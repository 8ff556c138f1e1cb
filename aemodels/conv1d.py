"""A 1-D convolutional autoencoder: sensors are channels, the window is the time axis."""
from __future__ import annotations

import torch
from torch import nn

from aemodels.checks import is_int
from aemodels.mlp import ACTIVATIONS, OUTPUT_ACTIVATIONS, check_network_args
from aemodels.network import Autoencoder


def conv_lengths(window_size: int, n_blocks: int) -> list[int]:
    """Sequence lengths after each stride-2 block, window_size first: 30 -> [30, 15, 8, 4]."""
    lengths = [window_size]
    for _ in range(n_blocks):
        lengths.append((lengths[-1] - 1) // 2 + 1)  # 'same' padding, stride 2: ceil(L / 2)
    return lengths


def check_conv_args(owner: str, window_size: int, n_sensors: int, channels: tuple[int, ...], kernel_size: int,
                    latent: int, activation: str, dropout: float, output_activation: str) -> None:
    check_network_args(owner, {"window_size": window_size, "n_sensors": n_sensors, "latent": latent,
                               **{f"channels[{i}]": c for i, c in enumerate(channels)}},
                       activation, dropout, output_activation)
    if not channels:
        raise ValueError(f"{owner} channels=(), must name at least one convolution block")
    if not is_int(kernel_size) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"{owner} kernel_size={kernel_size!r}, must be an odd int >= 1")


def conv_encoder(window_size: int, n_sensors: int, channels: tuple[int, ...], kernel_size: int, n_out: int,
                 activation: str, dropout: float) -> nn.Sequential:
    """(B, C, L) -> strided Conv1d blocks -> flatten -> Linear -> (B, n_out)."""
    layers: list[nn.Module] = []
    for c_in, c_out in zip((n_sensors, *channels[:-1]), channels, strict=True):
        layers += [nn.Conv1d(c_in, c_out, kernel_size, stride=2, padding=kernel_size // 2),
                   ACTIVATIONS[activation]()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
    n_flat = channels[-1] * conv_lengths(window_size, len(channels))[-1]
    layers += [nn.Flatten(), nn.Linear(n_flat, n_out)]  # (B, channels[-1], L_last) -> (B, n_flat) -> (B, n_out)
    return nn.Sequential(*layers)


def conv_decoder(n_in: int, window_size: int, n_sensors: int, channels: tuple[int, ...], kernel_size: int,
                 activation: str, dropout: float, output_activation: str) -> nn.Sequential:
    """(B, n_in) -> Linear -> unflatten -> ConvTranspose1d blocks -> (B, C, L), mirroring conv_encoder.

    Each transposed block doubles the length, minus one where the encoder rounded an odd
    length up (output_padding), so any window_size comes back exactly."""
    lengths = conv_lengths(window_size, len(channels))
    layers: list[nn.Module] = [nn.Linear(n_in, channels[-1] * lengths[-1]), ACTIVATIONS[activation](),
                               nn.Unflatten(1, (channels[-1], lengths[-1]))]  # (B, c*L_last) -> (B, c, L_last)
    outs = (*reversed(channels[:-1]), n_sensors)
    for i, (c_in, c_out) in enumerate(zip(reversed(channels), outs, strict=True)):
        l_in, l_out = lengths[-1 - i], lengths[-2 - i]
        layers.append(nn.ConvTranspose1d(c_in, c_out, kernel_size, stride=2, padding=kernel_size // 2,
                                         output_padding=l_out - (2 * l_in - 1)))
        if i < len(channels) - 1:
            layers.append(ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    if output_activation != "identity":
        layers.append(OUTPUT_ACTIVATIONS[output_activation]())
    return nn.Sequential(*layers)


class Conv1dAutoencoder(Autoencoder):
    """(B, n_sensors, window_size) -> strided convolutions -> dense latent -> transposed convolutions -> same shape."""

    def __init__(self, window_size: int, n_sensors: int, channels: tuple[int, ...] = (16, 32), kernel_size: int = 5,
                 latent: int = 8, activation: str = "relu", dropout: float = 0.0, output_activation: str = "identity"):
        super().__init__()
        channels = tuple(channels)
        check_conv_args("Conv1dAutoencoder", window_size, n_sensors, channels, kernel_size, latent,
                        activation, dropout, output_activation)
        self.window_size, self.n_sensors, self.latent = int(window_size), int(n_sensors), int(latent)
        self.encoder = conv_encoder(window_size, n_sensors, channels, kernel_size, latent, activation, dropout)
        self.decoder = conv_decoder(latent, window_size, n_sensors, channels, kernel_size, activation, dropout,
                                    output_activation)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)  # (B, C, L) -> (B, latent)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))  # (B, C, L) -> (B, latent) -> (B, C, L)
