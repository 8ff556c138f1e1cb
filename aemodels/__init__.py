"""Autoencoder anomaly detectors over sensor windows (torch, numpy, scipy only)."""
from aemodels.base import BaseDetector, point_scores
from aemodels.conv1d import Conv1dAutoencoder
from aemodels.detector import (DETECTOR_KINDS, AutoencoderDetector, Conv1dDetector, MLPDetector, VAEDetector,
                               make_detector)
from aemodels.errors import DetectorInputError, NotFittedError, ThresholdFitError, UnknownParameterError
from aemodels.mlp import MLPAutoencoder
from aemodels.thresholds import percentile_threshold, persistence, pot_threshold
from aemodels.training import TrainConfig
from aemodels.vae import VAE

__all__ = ["DETECTOR_KINDS", "make_detector", "BaseDetector", "AutoencoderDetector", "MLPDetector",
           "Conv1dDetector", "VAEDetector", "MLPAutoencoder", "Conv1dAutoencoder", "VAE", "TrainConfig",
           "point_scores", "percentile_threshold", "pot_threshold", "persistence",
           "NotFittedError", "DetectorInputError", "ThresholdFitError", "UnknownParameterError"]
