"""Training and scoring speed of the three detectors, next to PyOD's AutoEncoder and the roofline.

Everything is measured in this run, on 2 torch threads, on identical windows of the synthetic
pump stream (window 30 x 7 sensors, standard-scaled):

- train s/epoch: the time between consecutive epochs of a fit (no validation set, no early
  stopping), taken from each library's per-epoch hook (our `_on_epoch`, PyOD's `epoch_update`),
  so set-up and the final scoring of the training set are not counted;
- score windows/s: score(X) over `--score` windows
  (PyOD: decision_function on the same windows flattened to L*C features);
- roofline windows/s: the torch matmul FLOP/s measured here (a large float32 matmul) divided
  by the FLOPs one window costs in the scoring path (counted by torch's FlopCounterMode:
  matmuls and convolutions; the VAE decodes each window n_score_samples times).

Each number is the best of --rounds interleaved rounds (see main).

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


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def matmul_flops(n: int = 2048) -> float:
    """FLOP/s of one float32 n x n matmul on the current torch threads."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up
    return 2 * n ** 3 / seconds(lambda: torch.mm(a, b))


def scoring_flops_per_window(detector, X: np.ndarray) -> float:
    batch = X[:256]
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        detector._score_batch(batch)
    return counter.get_total_flops() / len(batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=8192, help="training windows")
    parser.add_argument("--score", type=int, default=65536, help="windows to score")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per fit")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; each number is the best round")
    parser.add_argument("--threads", type=int, default=THREADS, help="torch threads (the goals are for 2)")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    torch.set_num_threads(args.threads)
    X_train, X_score = synthetic_windows(args.train, args.score)
    flat_train, flat_score = X_train.reshape(len(X_train), -1), X_score.reshape(len(X_score), -1)  # (n, L*C)

    from pyod.models.auto_encoder import AutoEncoder  # the bench extra

    def pyod(stamps: list[float]) -> AutoEncoder:
        model = AutoEncoder(hidden_neuron_list=[64, 32, 8], batch_norm=False, dropout_rate=0.0, preprocessing=False,
                            batch_size=128, lr=1e-3, epoch_num=args.epochs, verbose=0, random_state=0, device="cpu")
        model.epoch_update = lambda: stamps.append(time.perf_counter())  # called after each epoch
        return model.fit(flat_train)

    def ours(kind: str, stamps: list[float]):
        detector = make_detector(kind, epochs=args.epochs, patience=0, device="cpu")
        hook = detector._on_epoch  # called before each epoch

        def on_epoch(epoch: int) -> None:
            stamps.append(time.perf_counter())
            hook(epoch)

        detector._on_epoch = on_epoch  # type: ignore[method-assign]  # wraps this instance's hook to time epochs
        return detector.fit(X_train)

    # Every quantity is measured once per round, all of them interleaved, and the best is kept:
    # on a shared machine the load changes from second to second, and interleaving gives ours
    # and PyOD's the same chances.
    names = ["pyod", *DETECTOR_KINDS]
    fit = {name: (lambda stamps, name=name: pyod(stamps) if name == "pyod" else ours(name, stamps)) for name in names}
    fitted = {name: fit[name]([]) for name in names}  # warm-up, and the models that are scored
    score = {name: (lambda name=name: fitted[name].decision_function(flat_score) if name == "pyod"
                    else fitted[name].score(X_score)) for name in names}
    epoch_best = {name: float("inf") for name in names}
    score_best = {name: float("inf") for name in names}
    flops = 0.0
    for _ in range(args.rounds):
        flops = max(flops, matmul_flops())
        for name in names:
            stamps: list[float] = []
            fit[name](stamps)
            epoch_best[name] = min(epoch_best[name], float(np.min(np.diff(stamps))))
            score_best[name] = min(score_best[name], seconds(score[name]))

    def epoch_s(name: str) -> float:
        return epoch_best[name]

    def rate(name: str) -> float:
        return len(X_score) / score_best[name]

    print(f"load average before the run: {load:.2f} on {os.cpu_count()} CPUs; best of {args.rounds} rounds")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; matmul {flops / 1e9:.1f} GFLOP/s; "
          f"{len(X_train)} training windows, {len(X_score)} scored, window {X_train.shape[1]} x {X_train.shape[2]}")
    print(f"PyOD AutoEncoder [64, 32, 8]: train {epoch_s('pyod'):.3f} s/epoch, score {rate('pyod'):,.0f} windows/s")
    print(f"{'detector':8s} {'train s/epoch':>13s} {'vs PyOD':>8s} {'score win/s':>12s} {'vs PyOD':>8s} "
          f"{'kFLOP/win':>10s} {'roofline win/s':>15s} {'of roofline':>12s}")
    for kind in DETECTOR_KINDS:
        per_window = scoring_flops_per_window(fitted[kind], X_score)
        roofline = flops / per_window
        print(f"{kind:8s} {epoch_s(kind):13.3f} {epoch_s(kind) / epoch_s('pyod'):7.2f}x {rate(kind):12,.0f} "
              f"{rate(kind) / rate('pyod'):7.1f}x {per_window / 1e3:10.1f} {roofline:15,.0f} "
              f"{rate(kind) / roofline:11.1%}")
    print(GOALS)


if __name__ == "__main__":
    main()
