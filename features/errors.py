"""Named errors of the features package."""


class FeaturesError(ValueError):
    """Base class of the errors raised by features."""


class SchemaError(FeaturesError):
    """A file or frame does not have the columns or types the stream schema expects."""


class WindowError(FeaturesError):
    """Windows cannot be cut as asked (bad spec or too little data)."""
