"""Nearest normal training windows as a detector (no gradient training).

The model remembers up to `max_windows` normal training windows (a random subset, seeded by
random_state, when there are more). A window's "reconstruction" is the mean of its
`n_neighbors` nearest remembered windows (Euclidean distance over the flattened window), so
the score is the squared distance to that mean, per sensor and scaled as the other kinds
scale their reconstruction error, and the contributions are the signed per-sensor
differences. Distances are computed in batches as ||x||² - 2 x·t + ||t||² (one matmul per
batch against the remembered windows), on the scoring threads.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from aemodels.base import BaseDetector, residual_sums, torch_threads, windows_tensor
from aemodels.checks import check_int
from aemodels.errors import DetectorInputError
from aemodels.network import Autoencoder, FittedBuffers
from aemodels.pca import reconstruction_mse

NO_WINDOW = -1  # in `exclude`: a query window that is none of the remembered ones


class KNNModel(FittedBuffers):
    """x_hat = the mean of the n_neighbors nearest of the remembered windows (N, D)."""

    windows: torch.Tensor
    squared_norms: torch.Tensor

    def __init__(self, n_inputs: int, n_neighbors: int) -> None:
        super().__init__()
        self.n_neighbors = int(n_neighbors)
        self.register_buffer("windows", torch.zeros(0, n_inputs))  # (N, D), N known once fitted
        # ||t||² of each remembered window: derived, not saved (recomputed on load)
        self.register_buffer("squared_norms", torch.zeros(0), persistent=False)

    @property
    def latent(self) -> int:  # type: ignore[override]
        return self.n_neighbors

    def remember(self, windows: torch.Tensor) -> None:
        self.windows = windows.float().contiguous()
        self.squared_norms = self.windows.square().sum(dim=1)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.squared_norms = self.windows.square().sum(dim=1)

    def neighbours(self, x: torch.Tensor, exclude: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Squared distances (B, k), ascending, and indices (B, k) of the nearest remembered
        windows of x (B, D); exclude (B,): a remembered window's index that row may not use
        (itself, when the remembered windows are scored), or NO_WINDOW."""
        distances = torch.addmm(self.squared_norms.unsqueeze(0), x, self.windows.T, alpha=-2.0)  # (B, N)
        distances.add_(x.square().sum(dim=1, keepdim=True)).clamp_(min=0.0)  # rounding can go below 0
        if exclude is not None:
            rows = torch.nonzero(exclude != NO_WINDOW).squeeze(1)
            distances[rows, exclude[rows]] = torch.inf
        return torch.topk(distances, self.n_neighbors, dim=1, largest=False, sorted=True)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The distances to the n_neighbors nearest remembered windows, ascending, (B, k)."""
        return self.neighbours(x)[0].sqrt()

    def forward(self, x: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
        _, index = self.neighbours(x, exclude)
        return self.windows[index].mean(dim=1)  # (B, k, D) -> (B, D)

    def check_inputs(self, n_inputs: int) -> None:
        if self.windows.ndim != 2 or self.windows.shape[1] != n_inputs or len(self.windows) < self.n_neighbors:
            raise ValueError(f"remembered windows {tuple(self.windows.shape)}; expected (N, {n_inputs}) "
                             f"with N >= n_neighbors={self.n_neighbors}")


class KNNDetector(BaseDetector):
    """The mean of the nearest normal training windows as the reconstruction.

    n_neighbors: how many nearest windows are averaged (10: on ADBench's 18 sets a mean ROC AUC
    of 0.879 against 0.879 for 5, and SKAB's F1 0.855 against 0.847); max_windows: how many training
    windows are remembered at most (a random subset, seeded by random_state, beyond it: the
    memory of the model and the cost of a score grow with it). With no X_val, the
    calibration scores are the training windows' own, each left out of its neighbours.
    encode() gives the distances to the nearest windows. The training settings (epochs,
    learning_rate, activation, dropout, ...) are accepted and unused; n_threads caps torch's
    threads while fitting and calibrating, score_threads while scoring.
    """

    kind = "knn"
    model_: KNNModel
    inference_batch_size = 256  # a (256, N) distance block: 16 MiB at N = 16,384

    def __init__(self, n_neighbors: int = 10, max_windows: int = 16384, **kwargs: Any) -> None:
        self.n_neighbors = n_neighbors
        self.max_windows = max_windows
        super().__init__(**kwargs)

    def _check_params(self) -> None:
        super()._check_params()
        check_int("KNNDetector n_neighbors", self.n_neighbors, 1)
        check_int("KNNDetector max_windows", self.max_windows, 1)
        if self.max_windows < self.n_neighbors + 1:
            raise ValueError(f"KNNDetector max_windows={self.max_windows!r}, must be >= n_neighbors + 1 = "
                             f"{self.n_neighbors + 1}")

    def _build_model(self, window_size: int, n_sensors: int) -> KNNModel:
        return KNNModel(window_size * n_sensors, self.n_neighbors)

    def _fit_model(self, X_train, X_val, config) -> tuple[Autoencoder, list[dict], int]:
        n, window_size, n_sensors = X_train.shape
        if n < self.n_neighbors + 1:
            raise DetectorInputError(f"X_train has {n} windows; the knn detector with n_neighbors="
                                     f"{self.n_neighbors} expects at least n_neighbors + 1 = {self.n_neighbors + 1}")
        if n > self.max_windows:
            kept = np.sort(np.random.default_rng(self.random_state).choice(n, self.max_windows, replace=False))
        else:
            kept = np.arange(n)
        # where each training window is among the remembered ones (NO_WINDOW: not kept)
        self._own = np.full(n, NO_WINDOW, np.int64)
        self._own[kept] = np.arange(len(kept))
        self._calibrate_on_train = X_val is None
        model = self._build_model(window_size, n_sensors)
        model.remember(torch.from_numpy(self._to_model_input(X_train[kept])))
        # the passes below score with the fitted model, on the training's threads
        self.model_, self.window_size_, self.n_features_in_ = model, window_size, n_sensors
        self._fitting = True
        try:
            with torch_threads(self.n_threads):
                sample = kept[:4096]  # the training loss on (at most) 4,096 remembered windows, each left out
                train_loss = float(np.abs(self._left_out(X_train[sample], self._own[sample])).mean())
                val_loss = None if X_val is None else reconstruction_mse(model, X_val)
        finally:
            self._fitting = False
        return model, [{"epoch": 1, "train_loss": train_loss, "val_loss": val_loss}], 1

    def _left_out(self, X: np.ndarray, own: np.ndarray) -> np.ndarray:
        """Unscaled signed per-sensor squared errors (n, C) of training windows X, each left out
        of its own neighbours (own: its index among the remembered windows, or NO_WINDOW)."""
        scale, self.sensor_scale_ = getattr(self, "sensor_scale_", None), None
        offset = 0

        def batch(b: np.ndarray) -> np.ndarray:
            nonlocal offset
            x = windows_tensor(b)
            exclude = torch.from_numpy(own[offset:offset + len(b)])
            offset += len(b)
            flipped = self.model_(x.reshape(len(x), -1), exclude).view(x.shape).sub_(x)  # (b, L*C) -> (b, L, C)
            mse, sign = self._sensor_arrays(*residual_sums(flipped))
            return sign * mse

        try:
            return self._map_batches(X, batch, np.empty((0, X.shape[2])))
        finally:
            self.sensor_scale_ = scale

    def _calibration_contributions(self, calibration: np.ndarray) -> np.ndarray:
        if self._calibrate_on_train:
            return self._left_out(calibration, self._own)
        return super()._calibration_contributions(calibration)

    def _calibration_scores(self, calibration: np.ndarray) -> np.ndarray:
        if self._calibrate_on_train:  # the unscaled mean squared error: what score() gives
            return np.abs(self._left_out(calibration, self._own)).mean(axis=1)
        return super()._calibration_scores(calibration)

    def _calibrate(self, calibration: np.ndarray) -> None:
        try:
            super()._calibrate(calibration)
        finally:
            del self._own, self._calibrate_on_train
