"""The MLP autoencoder detector: windows are flattened and reconstructed by an MLP."""
from __future__ import annotations

from torch import nn

from aemodels.base import BaseDetector
from aemodels.mlp import MLPAutoencoder


class AutoencoderDetector(BaseDetector):
    """Anomaly detector scoring a window by its MLP-autoencoder reconstruction error.

    X is (n_windows, window_size, n_sensors), already scaled. Fitted attributes:
    n_features_in_, window_size_, model_, history_, best_epoch_, val_scores_, threshold_.
    `n_threads` caps torch's CPU threads while training and scoring (restored after);
    small models run fastest on 1 thread, especially when several processes share the CPUs.
    """

    kind = "mlp_ae"

    def __init__(self, hidden=(64, 32), latent=8, activation="relu", dropout=0.0,
                 epochs=60, batch_size=128, learning_rate=1e-3, weight_decay=0.0, patience=10, grad_clip=1.0,
                 threshold_percentile=99.0, threshold_coefficient=1.0,
                 random_state=0, n_threads=None, device="auto"):
        self.hidden = hidden
        self.latent = latent
        self.activation = activation
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.patience = patience
        self.grad_clip = grad_clip
        self.threshold_percentile = threshold_percentile
        self.threshold_coefficient = threshold_coefficient
        self.random_state = random_state
        self.n_threads = n_threads
        self.device = device

    def _build_model(self, window_size: int, n_sensors: int) -> nn.Module:
        return MLPAutoencoder(window_size * n_sensors, tuple(self.hidden), self.latent,
                              self.activation, self.dropout)
