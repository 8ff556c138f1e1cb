"""The detector API shared by the autoencoders: validate, fit, score, explain, save, load.

`BaseDetector` does everything that does not depend on the network and holds the
hyperparameters every detector has (activation, dropout, output activation, training,
threshold). A detector subclass sets `kind`, takes its own hyperparameters in `__init__`
(stored as plain attributes, scikit-learn style, the rest passed on to BaseDetector) and
implements `_build_model`, whose network has `forward` (the reconstruction) and `encode`
(the latent means). It may also override:

- `_to_model_input` / `_from_model_output`: windows (n, L, C) <-> what the network eats
  and returns (default: flattened (n, L*C), as the MLP wants);
- `_reconstruct_windows`: the reconstruction of a tensor of windows (b, L, C), what scoring
  runs (default: the network on the flattened windows);
- `_loss`: the training objective (default: mean squared reconstruction error, or binary
  cross-entropy with a sigmoid output);
- `_score_batch` (and then `_score_and_contributions_batch`): the anomaly score of a batch
  of windows (default: reconstruction MSE).
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import json
import pickle
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import ArrayLike
from torch import nn

from aemodels.checks import check_int
from aemodels.errors import DetectorInputError, ModelFileError, NotFittedError
from aemodels.network import Autoencoder, FittedBuffers
from aemodels.thresholds import ThresholdRule
from aemodels.training import TrainConfig, TrainResult, train_autoencoder

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.pt"
VAL_SCORES_FILE = "val_scores.npy"


def _plain(value: object) -> object:
    """JSON fallback for the parameters: numpy scalars and arrays (np.int64(8) -> 8), the
    threshold rule (its fields)."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    if isinstance(value, ThresholdRule):
        return value.to_dict()
    raise TypeError(f"{type(value).__name__} {value!r} is not JSON-serialisable")


def point_scores(window_scores, window_starts, window_length: int, n_points: int, how: str = "mean") -> np.ndarray:
    """Scores per point (timestamp) from scores per window: the mean or max over the windows covering it.

    Window i covers points window_starts[i] ... window_starts[i] + window_length - 1 of a series of
    n_points. Points no window covers get NaN. Returns (n_points,) float64.
    """
    if how not in ("mean", "max"):
        raise ValueError(f"point_scores how={how!r}, must be 'mean' or 'max'")
    for name, value, minimum in (("window_length", window_length, 1), ("n_points", n_points, 0)):
        check_int(f"point_scores {name}", value, minimum)
    scores = np.asarray(window_scores, dtype=np.float64)
    starts = np.asarray(window_starts)
    if scores.ndim != 1 or starts.shape != scores.shape:
        raise ValueError(f"point_scores: window_scores {scores.shape} and window_starts {starts.shape} "
                         "must be 1-D arrays of the same length")
    if starts.size and not np.issubdtype(starts.dtype, np.integer):
        raise ValueError(f"point_scores window_starts have dtype {starts.dtype}; expected integer positions")
    if starts.size and (starts.min() < 0 or starts.max() + window_length > n_points):
        raise ValueError(f"point_scores: windows start at {starts.min()} ... {starts.max()} with length "
                         f"{window_length}; expected all within the n_points={n_points} points")
    starts = starts.astype(np.int64)
    covered = (starts[:, None] + np.arange(window_length)).ravel()  # (n_windows, L) -> (n_windows * L,)
    per_point = np.repeat(scores, window_length)  # (n_windows,) -> (n_windows * L,)
    counts = np.bincount(covered, minlength=n_points)
    if how == "mean":
        sums = np.bincount(covered, weights=per_point, minlength=n_points)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(counts > 0, sums / counts, np.nan)
    out = np.full(n_points, -np.inf)
    np.maximum.at(out, covered, per_point)
    return np.where(counts > 0, out, np.nan)


def windows_tensor(X: np.ndarray) -> torch.Tensor:
    """Checked windows as a tensor sharing their memory (a copy only of a read-only array:
    torch tensors are writable)."""
    return torch.from_numpy(np.require(X, np.float32, ["C", "W"]))


def residual_sums(flipped: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sensor sums over each window of the residual x_hat - x (b, L, C) and of its square:
    two (b, C) float32 tensors; the residual is squared in place.

    In torch, in float32, while the batch is in cache: no float64 copies of the windows (which
    would cost more than the network) and no pass per window in Python. The sums over the
    window are matmuls with a (L * C, C) 0/1 matrix: faster than a reduction over the middle
    axis (sum(dim=1): 1.4x; linalg.vector_norm: 15x)."""
    batch, steps, sensors = flipped.shape
    per_sensor = _per_sensor(steps, sensors, flipped.dtype)
    flat = flipped.reshape(batch, steps * sensors)
    sums = flat @ per_sensor
    return sums, flat.square_() @ per_sensor


@functools.lru_cache(maxsize=32)
def _per_sensor(steps: int, sensors: int, dtype: torch.dtype) -> torch.Tensor:
    """The (L * C, C) 0/1 matrix whose matmul sums each sensor over a flattened window, made
    once per shape (outside inference mode, so any later pass may use it)."""
    with torch.inference_mode(False):
        return torch.eye(sensors, dtype=dtype).repeat(steps, 1)


@contextlib.contextmanager
def torch_threads(n_threads: int | None) -> Iterator[None]:
    """torch's CPU threads set to n_threads (None: left as they are) inside the block, restored after."""
    previous = torch.get_num_threads()
    if n_threads is not None:
        torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


ERROR_SCALINGS = ("none", "sensor")
# The torch threads a process starts with (torch's default: the cores it may use, or
# OMP_NUM_THREADS): what score_threads=0 scores on.
TORCH_THREADS = torch.get_num_threads()
DEFAULT_THRESHOLD = ThresholdRule()  # p99 of the calibration scores
TRAIN = TrainConfig()  # the training defaults of every detector


class BaseDetector:
    kind: ClassVar[str] = ""
    model_: Autoencoder  # fitted network (eval mode, CPU)
    sensor_scale_: np.ndarray | None  # per-sensor error spreads (error_scaling="sensor"), set by calibration
    inference_batch_size: int = 2048  # windows per forward pass; measured best for the default models on CPU
    _fitting: bool = False  # while fit() scores its calibration windows (on the training's threads)
    _kinds: ClassVar[dict[str, type[BaseDetector]]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.kind:
            BaseDetector._kinds[cls.kind] = cls
        if "__init__" in vars(cls):
            # The full signature (own arguments, then BaseDetector's keyword-only ones) for
            # inspect.signature, help() and editors, instead of (..., **kwargs).
            init = vars(cls)["__init__"]
            own = [p for p in inspect.signature(init).parameters.values() if p.kind is not p.VAR_KEYWORD]
            shared = [p for p in inspect.signature(BaseDetector.__init__).parameters.values() if p.name != "self"]
            init.__signature__ = inspect.Signature(own + [p for p in shared if p.name not in {q.name for q in own}])

    def __init__(self, *, activation: str = "relu", dropout: float = 0.0, output_activation: str = "identity",
                 epochs: int = TRAIN.epochs, batch_size: int = TRAIN.batch_size,
                 learning_rate: float = TRAIN.learning_rate, weight_decay: float = TRAIN.weight_decay,
                 patience: int = TRAIN.patience, grad_clip: float = TRAIN.grad_clip, denoise: str = TRAIN.denoise,
                 noise_level: float = TRAIN.noise_level, threshold: ThresholdRule = DEFAULT_THRESHOLD,
                 error_scaling: str = "none", random_state: int = TRAIN.seed, n_threads: int | None = TRAIN.n_threads,
                 score_threads: int = 0, device: str = TRAIN.device, progress: bool | None = TRAIN.progress) -> None:
        """Hyperparameters every detector has.

        activation: "relu" | "gelu" between layers; dropout: rate after each hidden layer;
        output_activation: "identity" (standardised data, MSE) or "sigmoid" (data scaled to [0, 1],
        binary cross-entropy). Training (aemodels.training.TrainConfig): epochs, batch_size,
        learning_rate, weight_decay, patience (early stopping on X_val), grad_clip, denoise
        ("none" | "gaussian" | "mask") with noise_level, random_state, n_threads (torch CPU threads
        while training, and while fit scores its calibration windows), device ("auto": CUDA when
        present), progress (None: a bar when stderr is a terminal). score_threads: torch CPU threads
        when scoring (score, contributions, reconstruct, encode); 0: the threads torch starts with
        (all the cores it may use). It is saved with the model, apart from n_threads, so a model
        trained on one thread beside other fits still scores on every core it is given.
        threshold: the aemodels.thresholds.ThresholdRule that `fit` (and `recalibrate`) apply
        to the calibration scores (default: their 99th percentile).
        error_scaling: "none" (the score is the mean squared error over all sensors, or a VAE's
        own -log p) or "sensor" (each sensor's squared error divided by its spread over the
        validation windows, then averaged: a sensor the network always reconstructs poorly no
        longer drowns a shift in one it reconstructs well).
        """
        self.activation = activation
        self.dropout = dropout
        self.output_activation = output_activation
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.patience = patience
        self.grad_clip = grad_clip
        self.denoise = denoise
        self.noise_level = noise_level
        self.threshold = threshold
        self.error_scaling = error_scaling
        self.random_state = random_state
        self.n_threads = n_threads
        self.score_threads = score_threads
        self.device = device
        self.progress = progress

    # -- parameters --------------------------------------------------------------------

    @classmethod
    def param_defaults(cls) -> dict[str, Any]:
        """{constructor argument: default}, the detector's own arguments first, then BaseDetector's."""
        defaults: dict = {}
        for klass in cls.__mro__[:cls.__mro__.index(BaseDetector) + 1]:
            if "__init__" in vars(klass):
                for p in inspect.signature(vars(klass)["__init__"]).parameters.values():
                    if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                        defaults.setdefault(p.name, p.default)
        return defaults

    @classmethod
    def param_names(cls) -> list[str]:
        """The constructor argument names (what get_params() returns and make_detector accepts)."""
        return list(cls.param_defaults())

    def get_params(self) -> dict[str, Any]:
        """The constructor arguments, as given."""
        return {name: getattr(self, name) for name in self.param_names()}

    def __repr__(self) -> str:
        defaults = self.param_defaults()
        changed = [f"{k}={v!r}" for k, v in self.get_params().items() if v != defaults.get(k)]
        return f"{type(self).__name__}({', '.join(changed)})"

    def _train_config(self) -> TrainConfig:
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, learning_rate=self.learning_rate,
                           weight_decay=self.weight_decay, patience=self.patience, grad_clip=self.grad_clip,
                           seed=self.random_state, n_threads=self.n_threads, device=self.device,
                           denoise=self.denoise, noise_level=self.noise_level, progress=self.progress)

    def validate_params(self, window_size: int | None = None, n_sensors: int = 1) -> None:
        """Check the hyperparameters (ValueError naming the first bad one) without training;
        with a window size, also build the network once, which checks its own arguments."""
        self._check_params()
        self._train_config()  # the training settings check themselves (TrainConfig)
        if window_size is not None:
            with torch.device("meta"):  # shapes only: no memory for the weights, however large
                self._build_model(window_size, n_sensors)

    def _check_params(self) -> None:
        """Validate hyperparameters before any training (raises ValueError)."""
        if not isinstance(self.threshold, ThresholdRule):
            raise ValueError(f"threshold={self.threshold!r}, expected an aemodels.thresholds.ThresholdRule")
        if self.error_scaling not in ERROR_SCALINGS:
            raise ValueError(f"error_scaling={self.error_scaling!r}, expected one of {list(ERROR_SCALINGS)}")
        check_int("random_state", self.random_state, 0)  # TrainConfig's `seed`, named as the user sets it
        check_int("score_threads", self.score_threads, 0)

    # -- hooks for subclasses ----------------------------------------------------------

    def _build_model(self, window_size: int, n_sensors: int) -> Autoencoder:
        raise NotImplementedError(f"{type(self).__name__} must implement _build_model")

    def _to_model_input(self, X: np.ndarray) -> np.ndarray:
        return X.reshape(len(X), -1)  # (n, L, C) -> (n, L*C)

    def _from_model_output(self, out: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        return out.reshape(shape)  # (n, L*C) -> (n, L, C)

    def _forward(self, model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        """The network's reconstruction of what _to_model_input gave (default: its forward pass)."""
        return model(inputs)

    def _loss(self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The training loss of a batch: MSE, or binary cross-entropy with a sigmoid output."""
        if self.output_activation == "sigmoid":
            return F.binary_cross_entropy(self._forward(model, inputs), targets)
        return F.mse_loss(self._forward(model, inputs), targets)

    def _on_epoch(self, epoch: int) -> None:
        """Called before each training epoch (from 1); a schedule such as a KL warm-up goes here."""

    def _model_input(self, X: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.require(self._to_model_input(X), np.float32, ["C", "W"]))

    def _reconstruct_batch(self, X: np.ndarray) -> np.ndarray:
        """(b, L, C) float32 -> (b, L, C) float32 reconstruction."""
        return self._from_model_output(self._forward(self.model_, self._model_input(X)).numpy(), X.shape)

    def _encode_batch(self, X: np.ndarray) -> np.ndarray:
        return self.model_.encode(self._model_input(X)).numpy()  # (b, L, C) -> (b, latent)

    def _reconstruct_windows(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction of windows x (b, L, C) float32: a new (b, L, C) tensor (any strides)."""
        return self.model_(x.reshape(len(x), -1)).view(x.shape)  # (b, L*C) in and out

    def _flipped_residual(self, x: torch.Tensor) -> torch.Tensor:
        """x_hat - x for windows x (b, L, C) float32: a new (b, L, C) tensor."""
        return self._reconstruct_windows(x).sub_(x)

    def _sensor_errors(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-sensor mean squared residual x - x_hat and the sign of its mean: two (b, C) float64 arrays."""
        return self._sensor_arrays(*residual_sums(self._flipped_residual(windows_tensor(X))))

    def _sensor_arrays(self, sums: torch.Tensor, squares: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(per-sensor mean squared error, scaled by sensor_scale_ if any; sign of the mean residual
        x - x_hat), two (b, C) float64 arrays, from residual_sums."""
        return self._sensor_mse(squares), np.where(sums.numpy() > 0, -1.0, 1.0)

    def _sensor_mse(self, squares: torch.Tensor) -> np.ndarray:
        """Per-sensor sums of squared residuals (b, C) -> mean squared errors, scaled by
        sensor_scale_ if any, (b, C) float64."""
        mse = squares.double().numpy() / self.window_size_
        scale = getattr(self, "sensor_scale_", None)
        return mse if scale is None else mse / scale

    def _score_batch(self, X: np.ndarray) -> np.ndarray:
        """The mean over sensors of _sensor_errors' errors, (b,) float64, without the signs
        (the same values, so abs(contributions).mean(axis=1) stays the score exactly)."""
        flipped = self._flipped_residual(windows_tensor(X))  # (b, L, C)
        batch, steps, sensors = flipped.shape
        per_sensor = _per_sensor(steps, sensors, flipped.dtype)  # (L * C, C), as residual_sums
        squares = flipped.reshape(batch, steps * sensors).square_() @ per_sensor
        return self._sensor_mse(squares).mean(axis=1)  # (b, C) -> (b,)

    def _contributions_batch(self, X: np.ndarray) -> np.ndarray:
        mse, sign = self._sensor_errors(X)
        return sign * mse

    def _score_and_contributions_batch(self, X: np.ndarray) -> np.ndarray:
        """(b, 1 + C): the score, then the signed contributions, from one network pass.
        A detector whose score is not the reconstruction MSE overrides this with _score_batch."""
        mse, sign = self._sensor_errors(X)
        return np.column_stack([mse.mean(axis=1), sign * mse])

    # -- validation --------------------------------------------------------------------

    def _check_is_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit(X_train) first")

    @staticmethod
    def _check_windows(X, name: str, window_shape: tuple[int, int] | None = None,
                       fitted_on: str = "X_train", min_windows: int = 1, finite: bool = True) -> np.ndarray:
        """X as a C-contiguous float32 array (n_windows, window_size, n_sensors), or a DetectorInputError."""
        X = np.asarray(X)
        expected = "(n_windows, window_size, n_sensors)"
        if X.dtype == object or not (np.issubdtype(X.dtype, np.integer) or np.issubdtype(X.dtype, np.floating)):
            raise DetectorInputError(f"{name} has dtype {X.dtype}; expected a real numeric array {expected}")
        if X.ndim != 3:
            raise DetectorInputError(f"{name} has shape {X.shape} ({X.ndim}-D); expected a 3-D array {expected}")
        if X.shape[1] < 1 or X.shape[2] < 1:
            raise DetectorInputError(f"{name} has shape {X.shape}; window_size and n_sensors must be >= 1")
        if window_shape is not None and X.shape[1:] != window_shape:
            raise DetectorInputError(
                f"{name} has shape {X.shape}, windows of (window_size, n_sensors) = {X.shape[1:]}; "
                f"expected {window_shape} as in {fitted_on}")
        if X.shape[0] < min_windows:
            raise DetectorInputError(f"{name} has {X.shape[0]} windows; expected at least {min_windows}")
        X = np.ascontiguousarray(X, dtype=np.float32)
        n_bad = int(np.count_nonzero(~np.isfinite(X))) if finite else 0
        if n_bad:
            first = tuple(int(i) for i in np.argwhere(~np.isfinite(X))[0])
            raise DetectorInputError(
                f"{name} has {n_bad} non-finite values (NaN or inf, or beyond float32 range), first at "
                f"[window, step, sensor] = {list(first)}; expected finite readings (impute or drop those windows)")
        return X

    def _check_input(self, X, name: str = "X", finite: bool = True) -> np.ndarray:
        """X checked against the fitted window shape. finite=False leaves out the pass that looks
        for NaN and inf: for scores, where any such reading makes its window's result non-finite
        (the reading enters the residual itself), and _check_results looks then."""
        self._check_is_fitted()
        return self._check_windows(X, name, (self.window_size_, self.n_features_in_),
                                   fitted_on="fit", min_windows=0, finite=finite)

    def _check_results(self, X: np.ndarray, results: np.ndarray, name: str = "X") -> np.ndarray:
        """results (computed with _check_input(finite=False)), or the DetectorInputError naming the
        first non-finite reading of X when a result is not finite and X has one."""
        if not np.isfinite(results).all():
            self._check_windows(X, name)
        return results

    # -- fit / inference ---------------------------------------------------------------

    def fit(self, X_train: ArrayLike, X_val: ArrayLike | None = None) -> Self:
        """Train on normal windows X_train (n_windows, window_size, n_sensors); return self.

        X_val (held-out normal windows; X_train when there is none) calibrates: the
        `threshold` rule sets threshold_ on their scores, and with error_scaling="sensor"
        they fix each sensor's error scale.
        """
        self._check_params()
        config = self._train_config()
        X_train = self._check_windows(X_train, "X_train")
        _, window_size, n_sensors = X_train.shape
        if X_val is not None:
            X_val = self._check_windows(X_val, "X_val", (window_size, n_sensors))
        if self.output_activation == "sigmoid":
            for name, X in (("X_train", X_train), ("X_val", X_val)):
                if X is not None and (X.min() < 0 or X.max() > 1):
                    raise DetectorInputError(
                        f"{name} has values in [{X.min():.4g}, {X.max():.4g}]; output_activation='sigmoid' expects "
                        "readings scaled to [0, 1] (a min-max scaler), or use output_activation='identity'")

        model, history, best_epoch = self._fit_model(X_train, X_val, config)
        self.model_ = model.cpu().float().eval()
        self.window_size_ = window_size
        self.n_features_in_ = n_sensors
        self.history_ = history
        self.best_epoch_ = best_epoch
        self._fitting = True  # the calibration passes run on the training's threads
        try:
            self._calibrate(X_train if X_val is None else X_val)
        finally:
            self._fitting = False
        return self

    def _fit_model(self, X_train: np.ndarray, X_val: np.ndarray | None,
                   config: TrainConfig) -> tuple[Autoencoder, list[dict], int]:
        """The fitted model, its training history (a row per epoch: epoch, train_loss,
        val_loss) and best epoch. Default: the network of _build_model trained by gradient
        descent (aemodels.training)."""
        _, window_size, n_sensors = X_train.shape
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.random_state)
            model = self._build_model(window_size, n_sensors)
        result: TrainResult = train_autoencoder(
            model, self._to_model_input(X_train), None if X_val is None else self._to_model_input(X_val),
            config, loss_fn=self._loss, on_epoch=self._on_epoch)
        return model, result.history, result.best_epoch

    def _calibrate(self, calibration: np.ndarray) -> None:
        """sensor_scale_ (with error_scaling="sensor") and the threshold from the scores of the
        calibration windows (X_val, or X_train when fit had none)."""
        self.sensor_scale_ = None
        if self.error_scaling == "sensor":
            # (n, C) per-sensor squared errors
            self._calibrate_values(np.abs(self._calibration_contributions(calibration)))
        else:
            self._set_threshold(self._calibration_scores(calibration))

    def _calibrate_values(self, values: np.ndarray) -> None:
        """sensor_scale_ and the threshold from calibration_values' (n, C) unscaled per-sensor
        errors (error_scaling="sensor"), or the threshold from their (n, 1) scores."""
        if self.error_scaling != "sensor":
            self.sensor_scale_ = None
            self._set_threshold(values[:, 0])
            return
        spread = values.std(axis=0)
        # a sensor with no spread (constant, or one window) keeps its raw error
        self.sensor_scale_ = np.where(spread > 1e-12, spread, 1.0)
        self._set_threshold((values / self.sensor_scale_).mean(axis=1))  # = score(calibration), one pass fewer

    def calibration_values(self, X: ArrayLike) -> np.ndarray:
        """What calibration sets the threshold on, for normal windows X this detector did not
        train on: their per-sensor squared errors before any sensor scaling, (n, C) float64,
        with error_scaling="sensor", else their scores, (n, 1).

        The values of several detectors of one kind and parameters, each on windows it did
        not train on, pool: calibrate_on sets a detector's sensor scales and threshold from
        them (cross-fitted calibration, which covers a whole training range with windows
        no detector saw, where a detector's own calibration windows cover its last part)."""
        self._check_is_fitted()
        self.check_pooled_calibration()
        X = self._check_windows(X, "X", (self.window_size_, self.n_features_in_), fitted_on="fit")
        if self.error_scaling != "sensor":
            return self.score(X)[:, None]
        errors = np.abs(self.contributions(X))
        return errors if self.sensor_scale_ is None else errors * self.sensor_scale_

    def calibrate_on(self, values: ArrayLike) -> Self:
        """Set sensor_scale_ (error_scaling="sensor") and threshold_ from calibration_values
        pooled over detectors of this kind and parameters (see calibration_values); the
        network stays as fitted. Returns self."""
        self._check_is_fitted()
        self.check_pooled_calibration()
        width = self.n_features_in_ if self.error_scaling == "sensor" else 1
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != width or not len(values):
            raise DetectorInputError(f"calibration values have shape {values.shape}; expected (n >= 1, {width}), "
                                     "as calibration_values gives them")
        if not np.isfinite(values).all():
            raise DetectorInputError("calibration values are not all finite")
        self._calibrate_values(values)
        return self

    def check_pooled_calibration(self) -> None:
        """A DetectorInputError where this detector's settings cannot calibrate on pooled
        values (calibration_values / calibrate_on): a calibration that fits more than the
        threshold and the sensor scales (PCA's "t2" and "combined" statistics fit limits)."""

    def _calibration_contributions(self, calibration: np.ndarray) -> np.ndarray:
        """contributions() of the calibration windows (a detector that remembers its training
        windows leaves each one out of its own reconstruction here)."""
        return self.contributions(calibration)

    def _calibration_scores(self, calibration: np.ndarray) -> np.ndarray:
        """score() of the calibration windows (see _calibration_contributions)."""
        return self.score(calibration)

    def recalibrate(self, X: ArrayLike, threshold: ThresholdRule | None = None) -> Self:
        """Set threshold_ anew on the scores of normal windows X (recent readings), by
        `threshold` (which becomes the detector's rule) or the detector's own rule; the
        network and the sensor error scales stay as fitted. Returns self."""
        self._check_is_fitted()
        if threshold is not None:
            self.threshold = threshold
            self._check_params()
        X = self._check_windows(X, "X", (self.window_size_, self.n_features_in_), fitted_on="fit")
        self._set_threshold(self.score(X))
        return self

    def _set_threshold(self, calibration_scores: np.ndarray) -> None:
        """val_scores_, threshold_ (by the `threshold` rule) and thresholds_ (every reported
        threshold: p95 / p99 / p99.9 / POT) from the scores of the calibration windows."""
        self.val_scores_ = np.asarray(calibration_scores, dtype=np.float64)
        self.threshold_ = self.threshold.apply(self.val_scores_)
        self.thresholds_ = self.threshold.all_thresholds(self.val_scores_)

    def _inference_threads(self) -> int:
        """Torch threads for a pass over windows: score_threads (0: TORCH_THREADS), or n_threads
        while fit() scores its calibration windows."""
        if self._fitting and self.n_threads is not None:
            return self.n_threads
        return self.score_threads or TORCH_THREADS

    def _map_batches(self, X: np.ndarray, fn: Callable[[np.ndarray], np.ndarray], empty: np.ndarray,
                     batch_size: int | None = None) -> np.ndarray:
        """fn over batches of batch_size (default inference_batch_size) windows, on CPU, on
        _inference_threads() torch threads."""
        if len(X) == 0:
            return empty
        batch_size = batch_size or self.inference_batch_size
        with torch_threads(self._inference_threads()), torch.inference_mode():
            parts = [fn(X[i:i + batch_size]) for i in range(0, len(X), batch_size)]
        return np.concatenate(parts)

    def score(self, X: ArrayLike) -> np.ndarray:
        """Anomaly score per window, (n_windows,) float64; higher is more anomalous."""
        X = self._check_input(X, finite=False)
        scores = self._map_batches(X, self._score_batch, np.empty(0), self._score_batch_size())
        return self._check_results(X, scores.astype(np.float64, copy=False))

    def _score_batch_size(self) -> int:
        """Windows per batch when scoring (a detector that decodes each window several times
        takes fewer at once)."""
        return self.inference_batch_size

    def predict(self, X: ArrayLike) -> np.ndarray:
        """True where a window's score is above threshold_, (n_windows,) bool."""
        return self.score(X) > self.threshold_

    def reconstruct(self, X: ArrayLike) -> np.ndarray:
        """The network's reconstruction of each window, same shape as X, float32."""
        X = self._check_input(X)
        return self._map_batches(X, self._reconstruct_batch, np.empty(X.shape, np.float32))

    def encode(self, X: ArrayLike) -> np.ndarray:
        """The latent code of each window (the posterior mean for a VAE), (n_windows, latent) float32."""
        X = self._check_input(X)
        return self._map_batches(X, self._encode_batch, np.empty((0, self.model_.latent), np.float32))

    point_scores = staticmethod(point_scores)

    def contributions(self, X: ArrayLike) -> np.ndarray:
        """Per-sensor share of each window's score, (n_windows, n_sensors) float64.

        Magnitude: the sensor's mean squared error over the window. Sign: the direction of
        its mean residual x - x_hat (positive = reading above its reconstruction).
        abs(contributions).mean(axis=1) equals score for the reconstruction-error score.
        """
        X = self._check_input(X, finite=False)
        return self._check_results(X, self._map_batches(X, self._contributions_batch,
                                                        np.empty((0, self.n_features_in_))))

    def score_with_contributions(self, X: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """score(X) and contributions(X) together, at the cost of one pass (what scoring needs)."""
        X = self._check_input(X, finite=False)
        both = self._check_results(X, self._map_batches(X, self._score_and_contributions_batch,
                                                        np.empty((0, 1 + self.n_features_in_)),
                                                        self._score_batch_size()))
        return both[:, 0], both[:, 1:]

    # -- persistence -------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Write the detector to directory `path`: config.json, model.pt (state_dict), val_scores.npy."""
        self._check_is_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        config = {
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "params": self.get_params(),
            "fitted": {
                "window_size_": self.window_size_,
                "n_features_in_": self.n_features_in_,
                "threshold_": self.threshold_,
                "thresholds_": self.thresholds_,
                "best_epoch_": self.best_epoch_,
                "history_": self.history_,
                "sensor_scale_": None if self.sensor_scale_ is None else self.sensor_scale_.tolist(),
            },
        }
        (path / CONFIG_FILE).write_text(json.dumps(config, indent=2, default=_plain))
        torch.save(self.model_.state_dict(), path / WEIGHTS_FILE)
        np.save(path / VAL_SCORES_FILE, self.val_scores_, allow_pickle=False)

    @classmethod
    def load(cls, path: str | Path) -> BaseDetector:
        """Read a detector written by save(). On BaseDetector, the saved `kind` picks the class."""
        path = Path(path)
        config = json.loads((path / CONFIG_FILE).read_text())
        if config.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path / CONFIG_FILE}: format_version={config.get('format_version')!r}; "
                             f"expected {FORMAT_VERSION}")
        kind = config.get("kind")
        if cls is BaseDetector:
            if kind not in BaseDetector._kinds:
                raise ValueError(f"{path / CONFIG_FILE}: kind={kind!r}; expected one of {sorted(BaseDetector._kinds)}")
            cls = BaseDetector._kinds[kind]
        elif kind != cls.kind:
            raise ValueError(f"{path / CONFIG_FILE}: kind={kind!r}; {cls.__name__} expects {cls.kind!r}")

        # JSON turns tuples into lists; constructor arguments are scalars or tuples, and the
        # threshold rule, saved as its fields.
        params: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in config["params"].items()}
        if isinstance(params.get("threshold"), dict):
            params["threshold"] = ThresholdRule(**params["threshold"])
        if "threshold_percentile" in params:  # saved before the rule was a parameter: a percentile rule
            params["threshold"] = ThresholdRule(percentile=params.pop("threshold_percentile"),
                                                coefficient=params.pop("threshold_coefficient", 1.0))
        detector = cls(**params)
        fitted = config["fitted"]
        model = detector._build_model(fitted["window_size_"], fitted["n_features_in_"])
        model.load_state_dict(_load_weights(path / WEIGHTS_FILE))
        if isinstance(model, FittedBuffers):
            try:
                model.check_inputs(fitted["window_size_"] * fitted["n_features_in_"])
            except ValueError as exc:
                raise ModelFileError(f"{path / WEIGHTS_FILE}: {exc}") from None
        detector.model_ = model.cpu().float().eval()
        detector.window_size_ = fitted["window_size_"]
        detector.n_features_in_ = fitted["n_features_in_"]
        detector.threshold_ = fitted["threshold_"]
        detector.best_epoch_ = fitted["best_epoch_"]
        detector.history_ = fitted["history_"]
        scale = fitted.get("sensor_scale_")  # absent in detectors saved before error_scaling existed
        detector.sensor_scale_ = None if scale is None else np.asarray(scale, dtype=np.float64)
        try:
            detector.val_scores_ = np.load(path / VAL_SCORES_FILE, allow_pickle=False)
        except ValueError as exc:  # an object array: a pickle inside, never loaded
            raise ModelFileError(f"{path / VAL_SCORES_FILE}: not the scores save() writes ({exc})") from None
        # saved before thresholds_ was fitted state: recomputed from the calibration scores
        thresholds = fitted.get("thresholds_")
        detector.thresholds_ = (dict(thresholds) if thresholds is not None
                                else detector.threshold.all_thresholds(detector.val_scores_))
        return detector


def _load_weights(path: Path) -> dict[str, torch.Tensor]:
    """A state_dict written by save(): tensors only (`weights_only`), so a file that holds any
    other pickled object is refused, never run."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelFileError(f"{path}: not a weights file save() wrote; refused to load it ({reason})") from None
