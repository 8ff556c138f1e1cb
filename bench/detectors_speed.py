"""Training and scoring speed of the three detectors, each next to a like-for-like PyOD model, and the roofline.

Everything is measured in this run, on --threads torch threads (2 by default; aemon's
detectors get n_threads and score_threads = --threads), on identical windows of the
synthetic pump stream (window 30 x 7 sensors, standard-scaled). Each detector is set
against the same network in PyOD:

- mlp_ae (hidden (64, 32), latent 8) against PyOD's AutoEncoder(hidden_neuron_list=[64, 32, 8]);
- vae (MLP encoder and decoder (64, 32), latent 8) against PyOD's VAE(encoder_neuron_list=[64, 32],
  decoder_neuron_list=[32, 64], latent_dim=8): the same layers (PyOD's mean and log-variance
  heads are two Linear(32, 8), aemon's one Linear(32, 16));
- cnn_ae (Conv1d 7 -> 16 -> 32, kernel 5, stride 2, Linear to a latent of 8, mirrored by
  ConvTranspose1d) against the same layers as plain torch modules (nn.Conv1d and
  nn.ConvTranspose1d on (B, C, L), `PlainConvAE` below) hosted by PyOD's AutoEncoder, whose
  `build_model` is replaced: PyOD has no 1-D convolutional autoencoder, and this way the
  network trains and scores through PyOD's own data loading, training loop and scoring.

Every PyOD model: no batch norm, no dropout, no preprocessing, no weight decay, Adam at
lr 1e-3, training batches of 128, as aemon's detectors. Measured:

- train s/epoch: the time between consecutive epochs of a fit (no validation set, no early
  stopping), taken from each library's per-epoch hook (our `_on_epoch`, PyOD's `epoch_update`),
  so set-up and the final scoring of the training set are not counted;
- score windows/s: aemon's score(X) over --score windows (its batches of
  inference_batch_size = 2048 windows); PyOD's decision_function on the same windows flattened
  to L*C features, with batch_size = aemon's (the comparison the goal is about) and with
  PyOD's default (the model's batch_size, 128); and "torch loop": PyOD's fitted network
  scored the way a user would write it, batched forward passes of 2048 windows under
  inference_mode (no DataLoader) and the mean squared error in NumPy;
- roofline windows/s: the torch matmul FLOP/s measured here (a 2048 x 2048 float32 matmul)
  divided by the FLOPs of one forward pass of the network per window, counted by torch's
  FlopCounterMode on the plain torch model (PyOD's), so a faster formulation of the same
  layers is not credited with extra FLOPs.

Each number is the best of --rounds interleaved rounds (see main); the load average is
printed before and after.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python bench/detectors_speed.py
"""
from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from aemodels import DEFAULT_KINDS, make_detector
from aemodels.base import BaseDetector
from features.synthetic import SENSORS, SyntheticSpec, generate_stream
from features.training_set import make_training_set
from features.windows import WindowSpec

THREADS = 2
TRAIN_BATCH = 128
GOALS = "goals: train s/epoch <= PyOD's; score >= 5x PyOD's windows/s at equal batch and >= 50 % of the roofline"


def synthetic_windows(n_train: int, n_score: int) -> tuple[np.ndarray, np.ndarray]:
    data = generate_stream(SyntheticSpec(n_assets=3, days=14.0, seed=0, faults_per_kind=0))
    windows = make_training_set(data.readings, list(SENSORS), WindowSpec(size=30, stride=1), val_fraction=0.1).train.X
    rng = np.random.default_rng(0)
    return windows[rng.choice(len(windows), n_train, replace=False)], windows[rng.choice(len(windows), n_score)]


def seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def matmul_flops(n: int = 2048) -> float:
    """FLOP/s of one float32 n x n matmul on the current torch threads."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up
    return 2 * n ** 3 / seconds(lambda: torch.mm(a, b))


class PlainConvAE(nn.Module):
    """cnn_ae's default network as plain torch layers on flattened windows (B, L*C), as PyOD feeds them:
    (B, L, C) -> (B, C, L) -> Conv1d(7, 16, 5, 2, 2) -> ReLU -> Conv1d(16, 32, 5, 2, 2) -> ReLU ->
    Linear(32 * 8, 8) -> Linear(8, 32 * 8) -> ReLU -> ConvTranspose1d(32, 16, 5, 2, 2) -> ReLU ->
    ConvTranspose1d(16, 7, 5, 2, 2, output_padding=1) -> (B, L, C) -> (B, L*C)."""

    def __init__(self, window: int, n_sensors: int, channels: tuple[int, int] = (16, 32), kernel: int = 5,
                 latent: int = 8):
        super().__init__()
        self.window, self.n_sensors = window, n_sensors
        lengths = [window]
        for _ in channels:
            lengths.append((lengths[-1] - 1) // 2 + 1)  # 30 -> 15 -> 8
        c1, c2 = channels
        pad = kernel // 2
        self.encoder = nn.Sequential(
            nn.Conv1d(n_sensors, c1, kernel, 2, pad), nn.ReLU(), nn.Conv1d(c1, c2, kernel, 2, pad), nn.ReLU(),
            nn.Flatten(), nn.Linear(c2 * lengths[2], latent))
        self.decoder = nn.Sequential(
            nn.Linear(latent, c2 * lengths[2]), nn.ReLU(), nn.Unflatten(1, (c2, lengths[2])),
            nn.ConvTranspose1d(c2, c1, kernel, 2, pad, output_padding=lengths[1] - (2 * lengths[2] - 1)), nn.ReLU(),
            nn.ConvTranspose1d(c1, n_sensors, kernel, 2, pad, output_padding=lengths[0] - (2 * lengths[1] - 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        windows = x.view(len(x), self.window, self.n_sensors).transpose(1, 2)  # (B, C, L)
        return self.decoder(self.encoder(windows)).transpose(1, 2).reshape(len(x), -1)


def pyod_model(kind: str, epochs: int, window: int, n_sensors: int):
    """The like-for-like PyOD detector of a kind (unfitted)."""
    from pyod.models.auto_encoder import AutoEncoder  # the bench extra
    from pyod.models.vae import VAE

    common = {"batch_norm": False, "dropout_rate": 0.0, "preprocessing": False, "batch_size": TRAIN_BATCH,
              "lr": 1e-3, "epoch_num": epochs, "verbose": 0, "random_state": 0, "device": "cpu",
              "optimizer_params": {"weight_decay": 0.0}}
    if kind == "mlp_ae":
        return AutoEncoder(hidden_neuron_list=[64, 32, 8], **common)
    if kind == "vae":
        return VAE(encoder_neuron_list=[64, 32], decoder_neuron_list=[32, 64], latent_dim=8, **common)

    class ConvAutoEncoder(AutoEncoder):  # PyOD's harness around the plain conv layers
        def build_model(self):
            self.model = PlainConvAE(window, n_sensors)

    return ConvAutoEncoder(**common)


def torch_loop_scores(network: nn.Module, X: np.ndarray, batch: int) -> np.ndarray:
    """What a user writes around a torch model: batched forward passes, the MSE in NumPy."""
    network.eval()
    scores = []
    with torch.inference_mode():
        for start in range(0, len(X), batch):
            xb = X[start:start + batch]
            out = network(torch.from_numpy(xb))
            recon = (out[0] if isinstance(out, tuple) else out).numpy()  # PyOD's VAE returns (x, mu, logvar)
            scores.append(((xb - recon) ** 2).mean(axis=1))
    return np.concatenate(scores)


def forward_flops_per_window(network: nn.Module, X: np.ndarray) -> float:
    batch = torch.from_numpy(X[:256])
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        network(batch)
    return counter.get_total_flops() / len(batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=8192, help="training windows")
    parser.add_argument("--score", type=int, default=65536, help="windows to score")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per fit")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; each number is the best round")
    parser.add_argument("--threads", type=int, default=THREADS, help="torch threads (the goals are for 2)")
    parser.add_argument("--kinds", default=",".join(DEFAULT_KINDS), help="autoencoder kinds, comma-separated")
    args = parser.parse_args()
    kinds = [k for k in args.kinds.split(",") if k]
    load_before = os.getloadavg()[0]
    torch.set_num_threads(args.threads)
    X_train, X_score = synthetic_windows(args.train, args.score)
    window, n_sensors = X_train.shape[1:]
    flat_train, flat_score = X_train.reshape(len(X_train), -1), X_score.reshape(len(X_score), -1)  # (n, L*C)

    def pyod_fit(kind: str, stamps: list[float]):
        model = pyod_model(kind, args.epochs, window, n_sensors)
        model.epoch_update = lambda: stamps.append(time.perf_counter())  # called after each epoch
        return model.fit(flat_train)

    def ours_fit(kind: str, stamps: list[float]) -> BaseDetector:
        detector = make_detector(kind, epochs=args.epochs, patience=0, device="cpu", n_threads=args.threads,
                                 score_threads=args.threads, progress=False)
        hook = detector._on_epoch  # called before each epoch

        def on_epoch(epoch: int) -> None:
            stamps.append(time.perf_counter())
            hook(epoch)

        detector._on_epoch = on_epoch  # type: ignore[method-assign]  # wraps this instance's hook to time epochs
        return detector.fit(X_train)

    # Every quantity is measured once per round, all of them interleaved, and the best is kept:
    # on a shared machine the load changes from second to second, and interleaving gives ours
    # and PyOD's the same chances.
    ours = {kind: ours_fit(kind, []) for kind in kinds}  # warm-up, and the models that are scored
    pyod = {kind: pyod_fit(kind, []) for kind in kinds}
    batch = {kind: ours[kind]._score_batch_size() for kind in kinds}
    def scorer(kind: str, side: str) -> Callable[[], object]:
        if side == "ours":
            return lambda: ours[kind].score(X_score)
        if side == "pyod":
            return lambda: pyod[kind].decision_function(flat_score, batch_size=batch[kind])
        if side == "pyod default":
            return lambda: pyod[kind].decision_function(flat_score)
        return lambda: torch_loop_scores(pyod[kind].model, flat_score, batch[kind])

    sides = ("ours", "pyod", "pyod default", "torch loop")
    scorers = {(kind, side): scorer(kind, side) for kind in kinds for side in sides}
    epoch_best: dict[tuple[str, str], float] = {}
    score_best = {key: float("inf") for key in scorers}
    flops = 0.0
    for _ in range(args.rounds):
        flops = max(flops, matmul_flops())
        for kind in kinds:
            for side, fit in (("ours", ours_fit), ("pyod", pyod_fit)):
                stamps: list[float] = []
                fit(kind, stamps)
                epoch_best[kind, side] = min(epoch_best.get((kind, side), float("inf")), float(np.min(np.diff(stamps))))
            for side in sides:
                score_best[kind, side] = min(score_best[kind, side], seconds(scorers[kind, side]))
    load_after = os.getloadavg()[0]

    def rate(kind: str, side: str) -> float:
        return len(X_score) / score_best[kind, side]

    print(f"load average: {load_before:.2f} before, {load_after:.2f} after the run, on {os.cpu_count()} CPUs; "
          f"best of {args.rounds} interleaved rounds")
    print(f"torch {torch.__version__}, {args.threads} threads; matmul {flops / 1e9:.1f} GFLOP/s; "
          f"{len(X_train)} training windows, {len(X_score)} scored, window {window} x {n_sensors}")
    print("training (batches of 128)")
    print(f"{'detector':8s} {'s/epoch':>8s} {'PyOD':>8s} {'vs PyOD':>8s}")
    for kind in kinds:
        ours_s, pyod_s = epoch_best[kind, "ours"], epoch_best[kind, "pyod"]
        print(f"{kind:8s} {ours_s:8.3f} {pyod_s:8.3f} {ours_s / pyod_s:7.2f}x")
    print("scoring, windows/s (PyOD and the torch loop at aemon's batch; PyOD default: batch_size 128)")
    print(f"{'detector':8s} {'batch':>5s} {'aemon':>10s} {'PyOD':>9s} {'vs PyOD':>8s} {'PyOD dflt':>10s} {'vs':>6s} "
          f"{'torch loop':>10s} {'vs':>6s} {'kFLOP/win':>9s} {'roofline':>10s} {'of roofline':>11s}")
    for kind in kinds:
        per_window = forward_flops_per_window(pyod[kind].model, flat_score)
        roofline = flops / per_window
        ours_rate = rate(kind, "ours")
        print(f"{kind:8s} {batch[kind]:5d} {ours_rate:10,.0f} {rate(kind, 'pyod'):9,.0f} "
              f"{ours_rate / rate(kind, 'pyod'):7.1f}x {rate(kind, 'pyod default'):10,.0f} "
              f"{ours_rate / rate(kind, 'pyod default'):5.1f}x {rate(kind, 'torch loop'):10,.0f} "
              f"{ours_rate / rate(kind, 'torch loop'):5.1f}x {per_window / 1e3:9.1f} {roofline:10,.0f} "
              f"{ours_rate / roofline:11.1%}")
    print(GOALS)


if __name__ == "__main__":
    main()
