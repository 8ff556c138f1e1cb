"""The training loop shared by the autoencoder detectors.

Adam on shuffled mini-batches (a seeded generator), gradient-norm clipping, early
stopping on the validation loss with the best weights restored. The loss defaults to
the mean squared reconstruction error; a model with another objective (a VAE's negative
ELBO) passes its own `loss_fn`.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aemodels.errors import DetectorInputError

LossFn = Callable[[nn.Module, torch.Tensor], torch.Tensor]  # (model, batch) -> scalar mean loss


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"TrainConfig {name}={value!r}, must be an int >= {minimum}")


def _check_float(name: str, value, *, positive: bool) -> None:
    ok = (not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))
          and math.isfinite(value) and (value > 0 if positive else value >= 0))
    if not ok:
        raise ValueError(f"TrainConfig {name}={value!r}, must be a finite number {'> 0' if positive else '>= 0'}")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 5  # epochs without a better val_loss before stopping; 0 disables early stopping
    grad_clip: float = 1.0  # max gradient norm; 0 disables clipping
    seed: int = 0
    n_threads: int | None = None  # torch.set_num_threads while training; previous value restored
    device: str = "auto"  # "auto": cuda when available, else cpu

    def __post_init__(self):
        _check_int("epochs", self.epochs, 1)
        _check_int("batch_size", self.batch_size, 1)
        _check_float("learning_rate", self.learning_rate, positive=True)
        _check_float("weight_decay", self.weight_decay, positive=False)
        _check_int("patience", self.patience, 0)
        _check_float("grad_clip", self.grad_clip, positive=False)
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"TrainConfig seed={self.seed!r}, must be an int >= 0")
        if self.n_threads is not None:
            _check_int("n_threads", self.n_threads, 1)
        if not isinstance(self.device, str):
            raise ValueError(f"TrainConfig device={self.device!r}, must be 'auto' or a torch device string like 'cpu', 'cuda:0'")
        if self.device != "auto":
            try:
                torch.device(self.device)
            except RuntimeError:
                raise ValueError(
                    f"TrainConfig device={self.device!r}, must be 'auto' or a torch device string like 'cpu', 'cuda:0'"
                ) from None


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


def reconstruction_loss(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """Mean squared error between a batch and its reconstruction."""
    return F.mse_loss(model(batch), batch)


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
            total += loss_fn(model, batch).double() * len(batch)
    return total.item() / len(X)


def train_autoencoder(model: nn.Module, X_train: np.ndarray, X_val: np.ndarray | None,
                      config: TrainConfig, *, loss_fn: LossFn | None = None) -> TrainResult:
    """Train `model` to reconstruct the rows of X_train (n, n_inputs); return the loss history.

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
            history, best_epoch = _fit(model.to(device), x_train, x_val, config, loss_fn)
    finally:
        torch.set_num_threads(previous_threads)
        model.to(home)
    model.eval()
    return TrainResult(history=history, best_epoch=best_epoch)


def _fit(model: nn.Module, x_train: torch.Tensor, x_val: torch.Tensor | None, config: TrainConfig,
         loss_fn: LossFn) -> tuple[list[dict], int]:
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    shuffler = torch.Generator().manual_seed(config.seed)
    n = len(x_train)
    history: list[dict] = []
    best_epoch, best_loss, best_state = 0, math.inf, None

    for epoch in range(1, config.epochs + 1):
        model.train()
        total = torch.zeros((), dtype=torch.float64, device=x_train.device)
        order = torch.randperm(n, generator=shuffler).to(x_train.device)
        for start in range(0, n, config.batch_size):
            batch = x_train[order[start:start + config.batch_size]]
            loss = loss_fn(model, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            total += loss.detach().double() * len(batch)
        train_loss = total.item() / n
        if not math.isfinite(train_loss):
            raise FloatingPointError(
                f"training loss is {train_loss} at epoch {epoch}; expected a finite loss "
                f"(lower learning_rate={config.learning_rate} or check the input scaling)")

        val_loss = None if x_val is None else _mean_loss(model, x_val, config.batch_size, loss_fn)
        history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss})

        if val_loss is None:
            best_epoch = epoch
            continue
        if val_loss < best_loss:
            best_epoch, best_loss = epoch, val_loss
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        elif config.patience and epoch - best_epoch >= config.patience:
            break

    if best_state is not None:
        model.load_state_dict(best_state)
    return history, best_epoch
