"""Autoencoder anomaly detectors over sensor windows (torch, numpy, scipy only)."""
from aemodels.detector import AutoencoderDetector
from aemodels.errors import DetectorInputError, NotFittedError
from aemodels.mlp import MLPAutoencoder
from aemodels.thresholds import percentile_threshold
from aemodels.training import TrainConfig

__all__ = ["AutoencoderDetector", "MLPAutoencoder", "TrainConfig", "percentile_threshold",
           "NotFittedError", "DetectorInputError"]
