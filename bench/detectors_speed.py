"""Training and scoring speed of the three detectors, next to PyOD's AutoEncoder and the roofline.

Everything is measured in this run, on 2 torch threads, on identical windows of the synthetic
pump stream (window 30 x 7 sensors, standard-scaled):

- train s/epoch: fit with E1 and E2 epochs (no validation set, no early stopping), best of
  --repeats each; the difference over E2 - E1 cancels the fixed costs (set-up, final scoring
  of the training set);
- score windows/s: best of several passes of score(X) over `--score` windows
  (PyOD: decision_function on the same windows flattened to L*C features);
- roofline windows/s: the torch matmul FLOP/s measured here (a large float32 matmul) divided
  by the FLOPs one window costs in the scoring path (counted by torch's FlopCounterMode:
  matmuls and convolutions; the VAE decodes each window n_score_samples times).

PyOD's AutoEncoder gets the MLP detector's layer sizes (hidden (64, 32), latent 8:
hidden_neuron_list=[64, 32, 8]), its batch size and learning rate, no batch norm, no dropout
and no preprocessing, so both train the same network on the same data.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python bench/detectors_speed.py
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from aemodels import DETECTOR_KINDS, make_detector
from features.synthetic import SENSORS, SyntheticSpec, generate_stream
from features.training_set import make_training_set
from features.windows import WindowSpec

THREADS = 2
GOALS = "goals: train s/epoch <= PyOD's; score >= 5x PyOD's windows/s and >= 50 % of the roofline"


def synthetic_windows(n_train: int, n_score: int) -> tuple[np.ndarray, np.ndarray]:
    data = generate_stream(SyntheticSpec(n_assets=3, days=14.0, seed=0, faults_per_kind=0))
    windows = make_training_set(data.readings, list(SENSORS), WindowSpec(size=30, stride=1), val_fraction=0.1).train.X
    rng = np.random.default_rng(0)
    return windows[rng.choice(len(windows), n_train, replace=False)], windows[rng.choice(len(windows), n_score)]


def best_time(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def matmul_flops(n: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of a float32 n x n matmul on the current torch threads (best of `repeats`)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up
    return 2 * n ** 3 / best_time(lambda: torch.mm(a, b), repeats)


def per_epoch(fit, e1: int, e2: int, repeats: int) -> float:
    """Seconds per epoch: (best time of an E2-epoch fit - best of an E1-epoch fit) / (E2 - E1)."""
    fit(1)  # warm-up (first-call allocations, oneDNN primitives)
    t1 = best_time(lambda: fit(e1), repeats)
    t2 = best_time(lambda: fit(e2), repeats)
    return (t2 - t1) / (e2 - e1)


def scoring_flops_per_window(detector, X: np.ndarray) -> float:
    batch = X[:256]
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        detector._score_batch(batch)
    return counter.get_total_flops() / len(batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=8192, help="training windows")
    parser.add_argument("--score", type=int, default=65536, help="windows to score")
    parser.add_argument("--epochs", type=int, nargs=2, default=(2, 6), metavar=("E1", "E2"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=THREADS, help="torch threads (the goals are for 2)")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    torch.set_num_threads(args.threads)
    X_train, X_score = synthetic_windows(args.train, args.score)
    flat_train, flat_score = X_train.reshape(len(X_train), -1), X_score.reshape(len(X_score), -1)  # (n, L*C)
    e1, e2 = args.epochs

    from pyod.models.auto_encoder import AutoEncoder  # the bench extra

    def pyod(epochs: int) -> AutoEncoder:
        return AutoEncoder(hidden_neuron_list=[64, 32, 8], batch_norm=False, dropout_rate=0.0, preprocessing=False,
                           batch_size=128, lr=1e-3, epoch_num=epochs, verbose=0, random_state=0,
                           device="cpu").fit(flat_train)

    pyod_epoch = per_epoch(pyod, e1, e2, args.repeats)
    baseline = pyod(1)
    baseline.decision_function(flat_score[:1024])  # warm-up
    pyod_rate = len(flat_score) / best_time(lambda: baseline.decision_function(flat_score), args.repeats)
    flops = matmul_flops()

    print(f"load average before the run: {load:.2f} on {os.cpu_count()} CPUs")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; matmul {flops / 1e9:.1f} GFLOP/s; "
          f"{len(X_train)} training windows, {len(X_score)} scored, window {X_train.shape[1]} x {X_train.shape[2]}")
    print(f"PyOD AutoEncoder [64, 32, 8]: train {pyod_epoch:.3f} s/epoch, score {pyod_rate:,.0f} windows/s")
    header = (f"{'detector':8s} {'train s/epoch':>13s} {'vs PyOD':>8s} {'score win/s':>12s} {'vs PyOD':>8s} "
              f"{'kFLOP/win':>10s} {'roofline win/s':>15s} {'of roofline':>12s}")
    print(header)
    for kind in DETECTOR_KINDS:
        def ours(epochs: int, kind=kind):
            return make_detector(kind, epochs=epochs, patience=0, device="cpu").fit(X_train)

        epoch = per_epoch(ours, e1, e2, args.repeats)
        detector = ours(1)
        detector.score(X_score[:1024])  # warm-up
        rate = len(X_score) / best_time(lambda: detector.score(X_score), args.repeats)
        per_window = scoring_flops_per_window(detector, X_score)
        roofline = flops / per_window
        print(f"{kind:8s} {epoch:13.3f} {epoch / pyod_epoch:7.2f}x {rate:12,.0f} {rate / pyod_rate:7.1f}x "
              f"{per_window / 1e3:10.1f} {roofline:15,.0f} {rate / roofline:11.1%}")
    print(GOALS)


if __name__ == "__main__":
    main()
