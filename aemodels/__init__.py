"""Autoencoder anomaly detectors over sensor windows (torch, numpy, scipy only).

The names below are imported on first use (PEP 562): `aemodels.thresholds`, `aemodels.errors`
and `aemodels.checks` do not need torch, and a program that reads only them (a configuration
loader, a command line) starts without importing it.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# name -> the submodule that defines it
_EXPORTS = {
    "BaseDetector": "base", "point_scores": "base",
    "Conv1dAutoencoder": "conv1d",
    "DEFAULT_KINDS": "detector", "DETECTOR_KINDS": "detector", "AutoencoderDetector": "detector",
    "Conv1dDetector": "detector", "KNNDetector": "knn", "PCADetector": "pca",
    "VAEDetector": "detector", "detector_class": "detector", "detector_kinds": "detector",
    "make_detector": "detector", "param_defaults": "detector",
    "DetectorInputError": "errors", "ModelFileError": "errors", "NotFittedError": "errors",
    "ThresholdFitError": "errors", "UnknownParameterError": "errors",
    "MLPAutoencoder": "mlp",
    "ThresholdRule": "thresholds", "percentile_threshold": "thresholds", "persistence": "thresholds",
    "pot_threshold": "thresholds", "conformal_threshold": "thresholds",
    "TrainConfig": "training",
    "VAE": "vae",
}
__all__ = ["DEFAULT_KINDS", "DETECTOR_KINDS", "VAE", "AutoencoderDetector", "BaseDetector", "Conv1dAutoencoder",
           "Conv1dDetector", "DetectorInputError", "KNNDetector", "MLPAutoencoder", "ModelFileError", "NotFittedError",
           "PCADetector", "ThresholdFitError", "ThresholdRule", "TrainConfig", "UnknownParameterError", "VAEDetector",
           "conformal_threshold", "detector_class", "detector_kinds", "make_detector", "param_defaults",
           "percentile_threshold", "persistence", "point_scores", "pot_threshold"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'aemodels' has no attribute {name!r}")
    return getattr(importlib.import_module(f"aemodels.{module}"), name)


if TYPE_CHECKING:
    from aemodels.base import BaseDetector, point_scores
    from aemodels.conv1d import Conv1dAutoencoder
    from aemodels.detector import (
        DEFAULT_KINDS,
        DETECTOR_KINDS,
        AutoencoderDetector,
        Conv1dDetector,
        VAEDetector,
        detector_class,
        detector_kinds,
        make_detector,
        param_defaults,
    )
    from aemodels.errors import (
        DetectorInputError,
        ModelFileError,
        NotFittedError,
        ThresholdFitError,
        UnknownParameterError,
    )
    from aemodels.knn import KNNDetector
    from aemodels.mlp import MLPAutoencoder
    from aemodels.pca import PCADetector
    from aemodels.thresholds import (
        ThresholdRule,
        conformal_threshold,
        percentile_threshold,
        persistence,
        pot_threshold,
    )
    from aemodels.training import TrainConfig
    from aemodels.vae import VAE
