"""The errors that mean a mistake in the input, the configuration or the order of steps
(a bad file, an empty training range, no model yet). They fail the same way every time:
tasks do not retry them, and the CLI shows them as one line instead of a traceback."""
from aemodels.errors import (
    DetectorInputError,
    ModelFileError,
    NotFittedError,
    ThresholdFitError,
    UnknownParameterError,
)
from features.errors import FeaturesError
from flows.locations import ConfigError
from monitoring.errors import MonitoringError

DOMAIN_ERRORS: tuple[type[Exception], ...] = (
    ConfigError, FeaturesError, MonitoringError, DetectorInputError, ModelFileError, NotFittedError, ThresholdFitError,
    UnknownParameterError,
)
