"""A fully connected autoencoder over flattened windows."""
from __future__ import annotations

import numbers

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}


def _mlp(dims: list[int], activation: str, dropout: float) -> nn.Sequential:
    """Linear layers through `dims`, activation (+ dropout) between them, none after the last."""
    layers: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(d_in, d_out))
        if i < len(dims) - 2:
            layers.append(ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class MLPAutoencoder(nn.Module):
    """n_inputs -> hidden... -> latent -> reversed(hidden)... -> n_inputs.

    The latent code and the output are linear (no activation), so the network can
    reproduce standardised readings of either sign.
    """

    def __init__(self, n_inputs: int, hidden: tuple[int, ...] = (64, 32), latent: int = 8,
                 activation: str = "relu", dropout: float = 0.0):
        super().__init__()
        hidden = tuple(hidden)
        for name, value in [("n_inputs", n_inputs), ("latent", latent)] + [
                (f"hidden[{i}]", h) for i, h in enumerate(hidden)]:
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"MLPAutoencoder {name}={value!r}, must be an int >= 1")
        n_inputs, latent, hidden = int(n_inputs), int(latent), tuple(int(h) for h in hidden)
        if activation not in ACTIVATIONS:
            raise ValueError(f"MLPAutoencoder activation={activation!r}, must be one of {sorted(ACTIVATIONS)}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MLPAutoencoder dropout={dropout!r}, must be in [0, 1)")
        self.n_inputs = n_inputs
        self.latent = latent
        self.encoder = _mlp([n_inputs, *hidden, latent], activation, dropout)
        self.decoder = _mlp([latent, *reversed(hidden), n_inputs], activation, dropout)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)  # (B, n_inputs) -> (B, latent)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))  # (B, n_inputs) -> (B, latent) -> (B, n_inputs)
