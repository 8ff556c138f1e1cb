"""Named errors of the monitoring package."""


class MonitoringError(RuntimeError):
    """Base class of the errors raised by monitoring."""


class WarehouseError(MonitoringError):
    """The DuckDB warehouse or the Parquet lake cannot do what was asked."""


class InboxError(MonitoringError):
    """A stream's inbox on an object store cannot be listed or read (no bucket, no credentials)."""


class RegistryError(MonitoringError):
    """MLflow has no model, version or alias where one was expected."""


class TrackingUnavailableError(RegistryError):
    """The MLflow tracking store cannot be reached (server down, wrong address, no such file)."""


class BundleInputError(MonitoringError, ValueError):
    """Readings given to a model bundle do not match its sensor schema."""


class TrainingDataError(MonitoringError, ValueError):
    """The training or recalibration range cannot give the windows a detector needs."""


class GateError(MonitoringError):
    """A promotion or rollback the registry's history does not allow."""


class MetricsInputError(MonitoringError, ValueError):
    """Labels, predictions, timestamps or windows given to a metric do not fit together."""


class EvaluationError(MonitoringError, ValueError):
    """A range with no labeled readings or no scored windows to evaluate."""


class BenchSettingError(MonitoringError, ValueError):
    """A benchmark setting (a `--set KEY=VALUE`, a kind, a detector parameter) that cannot work."""


class IncidentError(MonitoringError, ValueError):
    """An incident id that matches none or several, or a change its state does not allow."""


class DriftInputError(MonitoringError, ValueError):
    """A drift setting, or a champion or readings a drift check cannot compare."""
