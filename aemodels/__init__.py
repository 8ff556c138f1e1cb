"""Autoencoder anomaly detectors over sensor windows (torch, numpy, scipy only)."""
from aemodels.base import BaseDetector, point_scores
from aemodels.conv1d import Conv1dAutoencoder
from aemodels.detector import (
    DETECTOR_KINDS,
    AutoencoderDetector,
    Conv1dDetector,
    VAEDetector,
    detector_class,
    detector_kinds,
    make_detector,
    param_defaults,
)
from aemodels.errors import DetectorInputError, ModelFileError, NotFittedError, ThresholdFitError, UnknownParameterError
from aemodels.mlp import MLPAutoencoder
from aemodels.thresholds import ThresholdRule, percentile_threshold, persistence, pot_threshold
from aemodels.training import TrainConfig
from aemodels.vae import VAE

__all__ = ["DETECTOR_KINDS", "VAE", "AutoencoderDetector", "BaseDetector", "Conv1dAutoencoder", "Conv1dDetector",
           "DetectorInputError", "MLPAutoencoder", "ModelFileError", "NotFittedError", "ThresholdFitError",
           "ThresholdRule", "TrainConfig", "UnknownParameterError", "VAEDetector", "detector_class", "detector_kinds",
           "make_detector", "param_defaults", "percentile_threshold", "persistence", "point_scores", "pot_threshold"]
