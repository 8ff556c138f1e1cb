"""The detectors (MLP autoencoder, 1-D CNN autoencoder, VAE; and, fitted without gradient
training, PCA and nearest neighbours: aemodels.pca, aemodels.knn) and make_detector.

All share BaseDetector's API (fit / score / predict / contributions / encode / save / load);
each adds its own hyperparameters. X is (n_windows, window_size, n_sensors), already scaled.
Fitted attributes: n_features_in_, window_size_, model_, history_, best_epoch_, val_scores_, threshold_.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import nn

from aemodels.base import BaseDetector, residual_sums, windows_tensor
from aemodels.checks import check_int, check_real
from aemodels.conv1d import Conv1dAutoencoder
from aemodels.errors import DetectorInputError, UnknownParameterError
from aemodels.knn import KNNDetector
from aemodels.mlp import MLPAutoencoder
from aemodels.network import Autoencoder
from aemodels.pca import PCADetector
from aemodels.vae import ARCHITECTURES, VAE, gaussian_kl

DETECTOR_KINDS = ("mlp_ae", "cnn_ae", "vae", "pca", "knn")
# What a stream trains when its configuration names no kinds: the autoencoders. pca and knn
# are picked by name (`kinds`); knn scores a window against every remembered training window.
DEFAULT_KINDS = ("mlp_ae", "cnn_ae", "vae")
__all__ = ["DEFAULT_KINDS", "DETECTOR_KINDS", "AutoencoderDetector", "Conv1dDetector", "KNNDetector", "PCADetector",
           "VAEDetector", "detector_class", "detector_kinds", "make_detector", "param_defaults"]
VAE_SCORE_METHODS = ("mean", "elbo", "iwae")


class AutoencoderDetector(BaseDetector):
    """Scores a window by the reconstruction error of an MLP autoencoder over the flattened window.

    hidden: encoder layer widths (the decoder mirrors them); latent: code size.
    `n_threads` caps torch's CPU threads while training, `score_threads` while scoring (both
    restored after); several fits sharing the CPUs run fastest on a thread each.
    """

    kind = "mlp_ae"

    def __init__(self, hidden: tuple[int, ...] = (64, 32), latent: int = 8, **kwargs: Any) -> None:
        self.hidden = hidden
        self.latent = latent
        super().__init__(**kwargs)

    def _build_model(self, window_size: int, n_sensors: int) -> Autoencoder:
        return MLPAutoencoder(window_size * n_sensors, tuple(self.hidden), self.latent,
                              self.activation, self.dropout, self.output_activation)



class Conv1dDetector(BaseDetector):
    """Scores a window by the reconstruction error of a 1-D convolutional autoencoder.

    channels: output channels of the stride-2 Conv1d blocks (each halves the window);
    kernel_size: odd; latent: size of the dense bottleneck.

    The network trains and scores on the windows as they are, channels last
    (Conv1dAutoencoder.forward_windows, no transposed copies): training runs the convolutions
    as matmuls, scoring as oneDNN convolutions of channels_last views (twice as fast there).
    """

    kind = "cnn_ae"
    model_: Conv1dAutoencoder

    def __init__(self, channels: tuple[int, ...] = (16, 32), kernel_size: int = 5, latent: int = 8,
                 **kwargs: Any) -> None:
        self.channels = channels
        self.kernel_size = kernel_size
        self.latent = latent
        super().__init__(**kwargs)

    def _build_model(self, window_size: int, n_sensors: int) -> Autoencoder:
        return Conv1dAutoencoder(window_size, n_sensors, tuple(self.channels), self.kernel_size, self.latent,
                                 self.activation, self.dropout, self.output_activation)

    def _to_model_input(self, X: np.ndarray) -> np.ndarray:
        return X  # windows as they are, (n, L, C): forward_windows runs channels last

    def _from_model_output(self, out: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        return out

    def _forward(self, model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        assert isinstance(model, Conv1dAutoencoder), "a Conv1dDetector trains the network its _build_model made"
        return model.forward_windows(inputs)

    def _reconstruct_windows(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(self.model_, x)

    def _flipped_residual(self, x: torch.Tensor) -> torch.Tensor:
        return self.model_.residual_windows(x)  # the subtraction done as the last layer writes

    def _encode_batch(self, X: np.ndarray) -> np.ndarray:
        return self.model_.encode_windows(windows_tensor(X)).numpy()  # (b, L, C) -> (b, latent)


class VAEDetector(BaseDetector):
    """A variational autoencoder as a density model of normal windows.

    architecture: "mlp" (hidden widths) or "conv" (channels, kernel_size) encoder and decoder;
    latent: size of z; beta: weight of the KL term (beta-VAE); kl_warmup_epochs: the KL weight
    rises linearly from beta / kl_warmup_epochs to beta over these first epochs (0: none;
    validation losses always use the full beta). The score is -log p(x) in nats per window:
    score_method "mean" = -log p(x|z) + KL(q(z|x) || p(z)) at z = the posterior mean (one decode
    per window, the one contributions() use: the fastest), "elbo" = the negative ELBO averaged
    over n_score_samples draws of z, "iwae" = minus the importance-weighted log-likelihood with
    n_score_samples samples. The draws are the same for every window and call (seeded by
    random_state), so every score is deterministic and does not depend on how windows are
    batched. contributions() use the reconstruction at the posterior mean.
    """

    kind = "vae"
    model_: VAE

    def __init__(self, architecture: str = "mlp", hidden: tuple[int, ...] = (64, 32),
                 channels: tuple[int, ...] = (16, 32), kernel_size: int = 5, latent: int = 8, beta: float = 1.0,
                 kl_warmup_epochs: int = 10, score_method: str = "mean", n_score_samples: int = 16,
                 **kwargs: Any) -> None:
        self.architecture = architecture
        self.hidden = hidden
        self.channels = channels
        self.kernel_size = kernel_size
        self.latent = latent
        self.beta = beta
        self.kl_warmup_epochs = kl_warmup_epochs
        self.score_method = score_method
        self.n_score_samples = n_score_samples
        super().__init__(**kwargs)

    def _check_params(self) -> None:
        super()._check_params()
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"VAEDetector architecture={self.architecture!r}, must be one of {list(ARCHITECTURES)}")
        check_real("VAEDetector beta", self.beta, 0)
        check_int("kl_warmup_epochs", self.kl_warmup_epochs, 0)
        if self.score_method not in VAE_SCORE_METHODS:
            raise ValueError(f"VAEDetector score_method={self.score_method!r}, "
                             f"must be one of {list(VAE_SCORE_METHODS)}")
        check_int("n_score_samples", self.n_score_samples, 1)

    def _build_model(self, window_size: int, n_sensors: int) -> VAE:
        return VAE(window_size, n_sensors, self.architecture, tuple(self.hidden), tuple(self.channels),
                   self.kernel_size, self.latent, self.activation, self.dropout, self.output_activation)

    def _to_model_input(self, X: np.ndarray) -> np.ndarray:
        return X  # the VAE takes windows as they are, (n, L, C)

    def _from_model_output(self, out: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        return out

    # -- training ----------------------------------------------------------------------

    def _on_epoch(self, epoch: int) -> None:
        warmup = self.kl_warmup_epochs
        self._kl_weight = self.beta * (min(1.0, epoch / warmup) if warmup else 1.0)

    def _loss(self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        # Validation (eval mode) always uses the full beta, so early stopping compares like with like.
        assert isinstance(model, VAE), "a VAEDetector trains the VAE its _build_model made"
        return model.loss(inputs, targets, self._kl_weight if model.training else self.beta)

    # -- scores ------------------------------------------------------------------------

    def _eps(self, n_samples: int) -> torch.Tensor:
        """(K, latent) standard normal draws, the same on every call (common random numbers)."""
        generator = torch.Generator().manual_seed(self.random_state)
        return torch.randn(n_samples, self.model_.latent, generator=generator)

    def _reconstruct_windows(self, x: torch.Tensor) -> torch.Tensor:
        return self.model_(x)  # the decoder mean at the posterior mean, (b, L, C)

    def _mean_decoding(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """score_method "mean" with the per-sensor errors of the same decoding: the score (b,)
        and the two (b, C) arrays of _sensor_errors, from one encode and one decode per window."""
        x, model = windows_tensor(X), self.model_
        mu, logvar = model.posterior(x)
        x_mean = model.decode(mu)
        nll = -model.log_px_z(x, x_mean) if model.bernoulli else None
        sums, squares = residual_sums(x_mean.sub_(x))
        if nll is None:
            nll = model.nll_from_squares(squares)
        mse, sign = self._sensor_arrays(sums, squares)
        return (nll + gaussian_kl(mu, logvar)).double().numpy(), mse, sign

    def _score_batch(self, X: np.ndarray) -> np.ndarray:
        if self.error_scaling == "sensor":  # scaled reconstruction errors of the mean decoding
            return super()._score_batch(X)
        if self.score_method == "mean":
            return self._mean_decoding(X)[0]
        x, eps = self._model_input(X), self._eps(self.n_score_samples)
        if self.score_method == "elbo":
            return self.model_.negative_elbo(x, eps).double().numpy()
        return -self.model_.log_likelihood(x, eps).double().numpy()

    def _score_and_contributions_batch(self, X: np.ndarray) -> np.ndarray:
        if self.error_scaling == "sensor":
            return super()._score_and_contributions_batch(X)
        if self.score_method == "mean":
            score, mse, sign = self._mean_decoding(X)
            return np.column_stack([score, sign * mse])
        return np.column_stack([self._score_batch(X), self._contributions_batch(X)])

    def _sample_batch_size(self, n_samples: int) -> int:
        """Windows per batch when each is decoded n_samples times (bounds memory at inference_batch_size decodes)."""
        return max(1, self.inference_batch_size // n_samples)

    def _score_batch_size(self) -> int:
        # the sampled scores (-log p(x) in nats, see score_method) decode each window n_score_samples times
        if self.error_scaling == "sensor" or self.score_method == "mean":
            return self.inference_batch_size
        return self._sample_batch_size(self.n_score_samples)

    def log_likelihood(self, X: ArrayLike, n_samples: int = 100) -> np.ndarray:
        """Importance-weighted estimate of log p(x) per window with n_samples draws from q(z|x),
        (n_windows,) float64.

        A lower bound on log p(x) that tightens as n_samples grows (n_samples=1 is the ELBO)."""
        check_int("n_samples", n_samples, 1)
        X = self._check_input(X)
        eps = self._eps(n_samples)
        return self._map_batches(X, lambda b: self.model_.log_likelihood(self._model_input(b), eps).double().numpy(),
                                 np.empty(0), self._sample_batch_size(n_samples))

    # -- generation --------------------------------------------------------------------

    def _decode(self, z: np.ndarray) -> np.ndarray:
        z = np.ascontiguousarray(z, dtype=np.float32)
        return self._map_batches(z, lambda b: self.model_.decode(torch.from_numpy(b)).numpy(),
                                 np.empty((0, self.window_size_, self.n_features_in_), np.float32))

    def sample(self, n: int, random_state: int | None = None) -> np.ndarray:
        """n windows decoded from z ~ N(0, I) (decoder means), (n, window_size, n_sensors) float32."""
        self._check_is_fitted()
        check_int("n", n, 0)
        z = np.random.default_rng(random_state).standard_normal((n, self.model_.latent))
        return self._decode(z)

    def interpolate(self, a: ArrayLike, b: ArrayLike, steps: int = 10) -> np.ndarray:
        """Windows decoded along the straight line between the latent means of windows a and b.

        a, b: (window_size, n_sensors) or (1, window_size, n_sensors). Returns (steps, window_size,
        n_sensors) float32; the first and last are the reconstructions of a and b."""
        check_int("steps", steps, 2)
        ends = []
        for name, w in (("a", a), ("b", b)):
            w = np.asarray(w)
            ends.append(self._check_input(w[None] if w.ndim == 2 else w, name))
            if len(ends[-1]) != 1:
                raise DetectorInputError(f"{name} has {len(ends[-1])} windows; expected one window")
        mu = self.encode(np.concatenate(ends)).astype(np.float64)  # (2, latent)
        t = np.linspace(0.0, 1.0, steps)[:, None]  # (steps, 1)
        return self._decode((1 - t) * mu[0] + t * mu[1])


def detector_kinds() -> tuple[str, ...]:
    """Every detector kind, in display order (the autoencoders, then the kinds without gradient training)."""
    return DETECTOR_KINDS


def detector_class(kind: str) -> type[BaseDetector]:
    """The detector class of a kind; ValueError naming the kinds there are."""
    kinds = BaseDetector._kinds
    if kind not in kinds:
        raise ValueError(f"detector kind={kind!r}; expected one of {list(DETECTOR_KINDS)}")
    return kinds[kind]


def param_defaults(kind: str) -> dict[str, Any]:
    """The constructor arguments of a kind with their defaults."""
    return detector_class(kind).param_defaults()


def make_detector(kind: str, **params: Any) -> BaseDetector:
    """A new, unfitted detector of `kind` ("mlp_ae", "cnn_ae", "vae", "pca" or "knn") with the given parameters."""
    cls = detector_class(kind)
    names = cls.param_names()
    unknown = [name for name in params if name not in names]
    if unknown:
        raise UnknownParameterError(f"detector kind {kind!r} has no parameter {unknown[0]!r}; "
                                    f"its parameters are {names}")
    return cls(**params)
