"""What every detector's network is: a torch module whose forward pass reconstructs its
input and whose `encode` gives the latent means, `latent` wide. The MLP, 1-D CNN and VAE
networks derive from it, so the detector API can rely on both."""
from __future__ import annotations

import torch
from torch import nn


class Autoencoder(nn.Module):
    latent: int  # width of the code `encode` returns

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The latent means of a batch of model inputs, (B, latent)."""
        raise NotImplementedError(f"{type(self).__name__} must implement encode")
