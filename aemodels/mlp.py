"""A fully connected autoencoder over flattened windows."""
from __future__ import annotations

import itertools

import torch
from torch import nn

from aemodels.checks import check_int, check_real
from aemodels.network import Autoencoder

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}
# "sigmoid" is for data scaled to [0, 1], trained with binary cross-entropy.
OUTPUT_ACTIVATIONS = {"identity": nn.Identity, "sigmoid": nn.Sigmoid}


def check_network_args(owner: str, sizes: dict, activation: str, dropout: float,
                       output_activation: str = "identity") -> None:
    """ValueError naming the first bad argument of a network: sizes are ints >= 1."""
    for name, value in sizes.items():
        check_int(f"{owner} {name}", value, 1)
    if activation not in ACTIVATIONS:
        raise ValueError(f"{owner} activation={activation!r}, must be one of {sorted(ACTIVATIONS)}")
    check_real(f"{owner} dropout", dropout, 0, 1, high_open=True)
    if output_activation not in OUTPUT_ACTIVATIONS:
        raise ValueError(f"{owner} output_activation={output_activation!r}, "
                         f"must be one of {sorted(OUTPUT_ACTIVATIONS)}")


def mlp(dims: list[int], activation: str, dropout: float, last_activation: bool = False) -> nn.Sequential:
    """Linear layers through `dims`, activation (+ dropout) between them (and after the last one if asked)."""
    layers: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(itertools.pairwise(dims)):
        layers.append(nn.Linear(d_in, d_out))
        if last_activation or i < len(dims) - 2:
            layers.append(ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class MLPAutoencoder(Autoencoder):
    """n_inputs -> hidden... -> latent -> reversed(hidden)... -> n_inputs.

    The latent code is linear; the output is linear (standardised readings of either sign)
    or a sigmoid (readings scaled to [0, 1]).
    """

    def __init__(self, n_inputs: int, hidden: tuple[int, ...] = (64, 32), latent: int = 8,
                 activation: str = "relu", dropout: float = 0.0, output_activation: str = "identity"):
        super().__init__()
        hidden = tuple(hidden)
        check_network_args("MLPAutoencoder", {"n_inputs": n_inputs, "latent": latent,
                                              **{f"hidden[{i}]": h for i, h in enumerate(hidden)}},
                           activation, dropout, output_activation)
        n_inputs, latent, hidden = int(n_inputs), int(latent), tuple(int(h) for h in hidden)
        self.n_inputs = n_inputs
        self.latent = latent
        self.encoder = mlp([n_inputs, *hidden, latent], activation, dropout)
        self.decoder = mlp([latent, *reversed(hidden), n_inputs], activation, dropout)
        if output_activation != "identity":  # appended only when needed: no parameters, same state_dict keys
            self.decoder.append(OUTPUT_ACTIVATIONS[output_activation]())

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)  # (B, n_inputs) -> (B, latent)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))  # (B, n_inputs) -> (B, latent) -> (B, n_inputs)
