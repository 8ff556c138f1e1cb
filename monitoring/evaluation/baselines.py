"""The classic detectors tabular users reach for first, from PyOD (the optional `bench`
extra), as the ADBench benchmark's baselines: each fitted and scored on the same records,
split and seed as aemon's detectors, standardised by the same scaler (training part only).

PyOD is imported when a baseline is made, never at import time: the core does not need it.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import numpy as np

from monitoring.errors import BenchSettingError

BASELINES = ("IForest", "ECOD", "PCA", "KNN", "AutoEncoder", "VAE")


class Baseline(Protocol):
    def fit(self, X: np.ndarray) -> Any: ...

    def decision_function(self, X: np.ndarray) -> np.ndarray: ...

    threshold_: float  # PyOD's own: the contamination (0.1) quantile of the training scores


def make_baseline(name: str, seed: int) -> Baseline:
    """A PyOD detector with its own defaults (as ADBench runs them), seeded where it takes a
    seed, quiet, on one thread."""
    if name not in BASELINES:
        raise BenchSettingError(f"baseline {name!r}: expected some of {list(BASELINES)}")
    try:
        if name == "IForest":
            from pyod.models.iforest import IForest
            return IForest(random_state=seed)
        if name == "ECOD":
            from pyod.models.ecod import ECOD
            return ECOD()
        if name == "PCA":
            from pyod.models.pca import PCA
            return PCA(random_state=seed)
        if name == "KNN":
            from pyod.models.knn import KNN
            return KNN()
        if name == "AutoEncoder":
            from pyod.models.auto_encoder import AutoEncoder
            return AutoEncoder(random_state=seed, verbose=0, device="cpu")
        from pyod.models.vae import VAE
        return VAE(random_state=seed, verbose=0, device="cpu")
    except ImportError as exc:
        raise BenchSettingError(f"the baselines need PyOD ({exc.name} is not installed): "
                                "`.venv/bin/pip install -e '.[bench]'`, or run with --baselines none") from None


def check_baselines(names: tuple[str, ...]) -> None:
    """Refuse an unknown name or a missing PyOD before any set is read."""
    for name in names:
        make_baseline(name, 0)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """PyOD's deep detectors on `n` torch threads, the previous number restored."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
