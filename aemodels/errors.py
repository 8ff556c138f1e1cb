"""Named errors of the aemodels package."""


class NotFittedError(RuntimeError):
    """Detector used before fit()."""


class DetectorInputError(ValueError):
    """Input windows have the wrong shape, dtype or non-finite values."""


class ThresholdFitError(ValueError):
    """Too few calibration scores for the threshold rule: above the initial quantile to fit
    a peaks-over-threshold tail, or in all to bound a conformal false-alarm rate."""


class UnknownParameterError(TypeError, ValueError):
    """A detector parameter that the detector kind does not have."""


class ModelFileError(ValueError):
    """A saved detector's file is not what save() writes (damaged, or an arbitrary pickle)."""
