"""The classic detectors tabular users reach for first, from PyOD (the optional `bench`
extra), as the ADBench benchmark's baselines (monitoring.evaluation.adbench fits and scores
them on the same records, split and seed as aemon's detectors, standardised by the same
scaler). This layer composes an optional dependency; the library never imports PyOD.

PyOD is imported when a baseline is made, never at import time: the core does not need it.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from monitoring.errors import BenchSettingError
from monitoring.evaluation.adbench import BASELINES


class OneThread:
    """A PyOD detector fitted on one torch thread (as aemon's detectors in the bench: no
    oversubscription of the cores), with PyOD's own score and threshold."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def fit(self, X: np.ndarray) -> OneThread:
        with torch_threads(1):
            self.model.fit(X)
        self.threshold_ = float(self.model.threshold_)  # the contamination (0.1) quantile of the training scores
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        with torch_threads(1):
            return np.asarray(self.model.decision_function(X), dtype=np.float64)


def make_baseline(name: str, seed: int) -> OneThread:
    """A PyOD detector with its own defaults (as ADBench runs them), seeded where it takes a
    seed, quiet, on one thread."""
    return OneThread(_pyod(name, seed))


def _pyod(name: str, seed: int) -> Any:
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


def baseline_factories(names: tuple[str, ...]) -> dict[str, Any]:
    """name -> make(seed), for monitoring.evaluation.adbench.run_adbench; an unknown name or a
    missing PyOD is refused here, before any set is read."""
    for name in names:
        _pyod(name, 0)
    return {name: (lambda seed, name=name: make_baseline(name, seed)) for name in names}


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
