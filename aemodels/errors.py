"""Named errors of the aemodels package."""


class NotFittedError(RuntimeError):
    """Detector used before fit()."""


class DetectorInputError(ValueError):
    """Input windows have the wrong shape, dtype or non-finite values."""
