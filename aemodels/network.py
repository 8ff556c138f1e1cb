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


class FittedBuffers(Autoencoder):
    """An Autoencoder fitted without gradients, whose state is buffers of shapes known only
    once fitted (the principal axes kept, the training windows remembered). A new module
    holds empty buffers; loading a state_dict takes the saved shapes (torch would refuse a
    size mismatch), then `check_inputs` checks they fit the windows."""

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        for name, buffer in self._buffers.items():
            saved = state_dict.get(prefix + name)
            if buffer is not None and isinstance(saved, torch.Tensor) and saved.shape != buffer.shape:
                self._buffers[name] = torch.empty(saved.shape, dtype=buffer.dtype, device=buffer.device)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def check_inputs(self, n_inputs: int) -> None:
        """ValueError unless the buffers are those of a model fitted on n_inputs values per window."""
        raise NotImplementedError(f"{type(self).__name__} must implement check_inputs")
