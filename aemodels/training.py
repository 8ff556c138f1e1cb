"""The training loop shared by the autoencoder detectors.

Adam on shuffled mini-batches (a seeded generator), gradient-norm clipping, early
stopping on the validation loss with the best weights restored, optional denoising
(Gaussian noise on, or masking of, the training inputs; the target stays clean). The loss
defaults to the mean squared reconstruction error; a model with another objective (a VAE's
negative ELBO) passes its own `loss_fn`.
"""
from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aemodels.checks import check_int, check_real
from aemodels.errors import DetectorInputError

# (model, inputs, targets) -> scalar mean loss; inputs are the (possibly corrupted) targets.
# The model's `training` flag tells a loss whether it is called on a training batch.
LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
DENOISE = ("none", "gaussian", "mask")


def _check_int(name: str, value: object, minimum: int) -> None:
    check_int(f"TrainConfig {name}", value, minimum)


def _check_float(name: str, value: object, *, positive: bool) -> None:
    check_real(f"TrainConfig {name}", value, 0, low_open=positive)


@dataclass(frozen=True)
class TrainConfig:
    """How a network is trained. Its defaults are the detectors' defaults too (BaseDetector
    takes them from here): the one source of training defaults."""

    epochs: int = 60
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 10  # epochs without a better val_loss before stopping; 0 disables early stopping
    grad_clip: float = 1.0  # max gradient norm; 0 disables clipping
    seed: int = 0
    n_threads: int | None = None  # torch.set_num_threads while training; previous value restored
    device: str = "auto"  # "auto": cuda when available, else cpu
    # Denoising: "gaussian" adds N(0, noise_level^2) to each training input value, "mask" zeroes
    # a noise_level fraction of them; the loss compares with the clean window.
    denoise: str = "none"
    noise_level: float = 0.1
    progress: bool | None = None  # a one-line progress bar on stderr; None: when stderr is a terminal

    def __post_init__(self):
        _check_int("epochs", self.epochs, 1)
        _check_int("batch_size", self.batch_size, 1)
        _check_float("learning_rate", self.learning_rate, positive=True)
        _check_float("weight_decay", self.weight_decay, positive=False)
        _check_int("patience", self.patience, 0)
        _check_float("grad_clip", self.grad_clip, positive=False)
        _check_int("seed", self.seed, 0)
        if self.n_threads is not None:
            _check_int("n_threads", self.n_threads, 1)
        if not isinstance(self.device, str):
            raise ValueError(f"TrainConfig device={self.device!r}, must be 'auto' or a torch device string "
                             "like 'cpu', 'cuda:0'")
        if self.device != "auto":
            try:
                torch.device(self.device)
            except RuntimeError:
                raise ValueError(
                    f"TrainConfig device={self.device!r}, must be 'auto' or a torch device string like 'cpu', 'cuda:0'"
                ) from None
        if self.denoise not in DENOISE:
            raise ValueError(f"TrainConfig denoise={self.denoise!r}, must be one of {list(DENOISE)}")
        _check_float("noise_level", self.noise_level, positive=False)
        if self.denoise == "mask" and not self.noise_level < 1:
            raise ValueError(f"TrainConfig noise_level={self.noise_level!r}, must be < 1 (a fraction) "
                             "with denoise='mask'")
        if self.progress not in (None, True, False):
            raise ValueError(f"TrainConfig progress={self.progress!r}, must be True, False or None (auto)")


@dataclass(frozen=True)
class TrainResult:
    history: list[dict]  # per epoch: {"epoch": int (from 1), "train_loss": float, "val_loss": float | None}
    best_epoch: int  # epoch whose weights the model holds; the last one when there is no X_val


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; a named cuda device must be available."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} but CUDA is not available; use 'cpu' or 'auto'")
    return device


def reconstruction_loss(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean squared error between the targets and the reconstruction of the inputs."""
    return F.mse_loss(model(inputs), targets)


def corrupt(batch: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    """The denoising corruption of a training batch (uses the global, forked and seeded, torch RNG)."""
    if config.denoise == "gaussian" and config.noise_level > 0:
        return batch + config.noise_level * torch.randn_like(batch)
    if config.denoise == "mask" and config.noise_level > 0:
        return batch * (torch.rand_like(batch) >= config.noise_level)
    return batch


class _Progress:
    """A one-line epoch counter with the latest losses, redrawn in place on stderr.

    Written here because aemodels depends on torch, numpy and scipy only."""

    def __init__(self, total: int, enabled: bool | None):
        self.total = total
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.started = time.perf_counter()

    def update(self, row: dict) -> None:
        if not self.enabled:
            return
        val = "" if row["val_loss"] is None else f"  val {row['val_loss']:.5g}"
        elapsed = time.perf_counter() - self.started
        print(f"\repoch {row['epoch']}/{self.total}  train {row['train_loss']:.5g}{val}  {elapsed:.1f}s",
              end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled:
            print(file=sys.stderr, flush=True)


def _as_tensor(name: str, X: np.ndarray, n_inputs: tuple[int, ...] | None, device: torch.device) -> torch.Tensor:
    X = np.asarray(X)
    if X.ndim < 2 or X.shape[0] < 1:
        raise DetectorInputError(f"{name} has shape {X.shape}; expected (n >= 1, n_inputs)")
    if n_inputs is not None and X.shape[1:] != n_inputs:
        raise DetectorInputError(f"{name} has rows of shape {X.shape[1:]}; expected {n_inputs} like X_train")
    return torch.tensor(X, dtype=torch.float32, device=device)


def _mean_loss(model: nn.Module, X: torch.Tensor, batch_size: int, loss_fn: LossFn) -> float:
    """The loss over all of X, in eval mode, as the size-weighted mean of batch losses."""
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=X.device)
    with torch.inference_mode():
        for start in range(0, len(X), batch_size):
            batch = X[start:start + batch_size]
            total += loss_fn(model, batch, batch).double() * len(batch)
    return total.item() / len(X)


def train_autoencoder(model: nn.Module, X_train: np.ndarray, X_val: np.ndarray | None,
                      config: TrainConfig, *, loss_fn: LossFn | None = None,
                      on_epoch: Callable[[int], None] | None = None) -> TrainResult:
    """Train `model` to reconstruct the rows of X_train (n, ...); return the loss history.

    `on_epoch(epoch)`, when given, is called before each epoch (from 1), e.g. for a KL warm-up.

    On return the model holds the weights of `best_epoch`, is in eval() mode and is on the
    device it came in on. The global torch RNG is left as it was: the seed drives only
    this run (shuffling through its own generator, dropout inside a forked RNG).
    """
    loss_fn = reconstruction_loss if loss_fn is None else loss_fn
    device = resolve_device(config.device)
    home = next(model.parameters()).device
    x_train = _as_tensor("X_train", X_train, None, device)
    x_val = None if X_val is None else _as_tensor("X_val", X_val, tuple(x_train.shape[1:]), device)

    previous_threads = torch.get_num_threads()
    if config.n_threads is not None:
        torch.set_num_threads(config.n_threads)
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(config.seed)
            history, best_epoch = _fit(model.to(device), x_train, x_val, config, loss_fn, on_epoch)
    finally:
        torch.set_num_threads(previous_threads)
        model.to(home)
    model.eval()
    return TrainResult(history=history, best_epoch=best_epoch)


def _fit(model: nn.Module, x_train: torch.Tensor, x_val: torch.Tensor | None, config: TrainConfig,
         loss_fn: LossFn, on_epoch: Callable[[int], None] | None) -> tuple[list[dict], int]:
    # fused: one kernel updates every parameter (torch's per-tensor loop costs more than these small layers)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay,
                                 fused=True)
    shuffler = torch.Generator().manual_seed(config.seed)
    history: list[dict] = []
    best_epoch, best_loss, best_state = 0, math.inf, None
    progress = _Progress(config.epochs, config.progress)
    try:
        for epoch in range(1, config.epochs + 1):
            if on_epoch is not None:
                on_epoch(epoch)
            row = _train_epoch(model, optimizer, x_train, config, loss_fn, shuffler, epoch)
            row["val_loss"] = None if x_val is None else _mean_loss(model, x_val, config.batch_size, loss_fn)
            history.append(row)
            progress.update(row)

            if row["val_loss"] is None:
                best_epoch = epoch
                continue
            if row["val_loss"] < best_loss:
                best_epoch, best_loss = epoch, row["val_loss"]
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            elif config.patience and epoch - best_epoch >= config.patience:
                break
    finally:
        progress.close()

    if best_state is not None:
        model.load_state_dict(best_state)
    return history, best_epoch


def _train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, x_train: torch.Tensor, config: TrainConfig,
                 loss_fn: LossFn, shuffler: torch.Generator, epoch: int) -> dict:
    """One pass over shuffled mini-batches; {"epoch", "train_loss"}."""
    n = len(x_train)
    model.train()
    total = torch.zeros((), dtype=torch.float64, device=x_train.device)
    order = torch.randperm(n, generator=shuffler).to(x_train.device)
    for start in range(0, n, config.batch_size):
        batch = x_train[order[start:start + config.batch_size]]
        loss = loss_fn(model, corrupt(batch, config), batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip, foreach=True)
        optimizer.step()
        total += loss.detach().double() * len(batch)
    train_loss = total.item() / n
    if not math.isfinite(train_loss):
        raise FloatingPointError(
            f"training loss is {train_loss} at epoch {epoch}; expected a finite loss "
            f"(lower learning_rate={config.learning_rate} or check the input scaling)")
    return {"epoch": epoch, "train_loss": train_loss}
