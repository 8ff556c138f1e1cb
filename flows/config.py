"""aemon's one configuration: a typed model loaded from one TOML file, with defaults that
work with no file at all (the embedded demo stream, everything under AEMON_HOME).

Where the file comes from: the `--config` option, else $AEMON_CONFIG, else ./aemon.toml
when it exists, else nothing. $AEMON_HOME, when set, overrides `home`.
Library defaults live in the packages (features.windows.WindowSpec, aemodels'
detector arguments, monitoring.incidents.IncidentRule); this module only combines them.
"""
from __future__ import annotations

import os
import re
import tomllib
from datetime import datetime
from pathlib import Path

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from features.errors import SchemaError
from features.exclusions import ExclusionInterval, Exclusions
from features.readers import StreamSchema
from features.synthetic import SENSORS
from features.windows import WindowSpec
from monitoring.incidents import IncidentRule

STREAM_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-]{0,63}$")
DEFAULT_HOME = Path(".aemon")
CONFIG_FILE = "aemon.toml"


class ConfigError(ValueError):
    """The configuration file or a setting in it is invalid."""


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DetectorSettings(Settings):
    """Arguments of aemodels.AutoencoderDetector (same names, same defaults)."""

    hidden: tuple[int, ...] = (64, 32)
    latent: int = Field(8, ge=1)
    activation: str = Field("relu", pattern="^(relu|gelu)$")
    dropout: float = Field(0.0, ge=0, lt=1)
    epochs: int = Field(60, ge=1)
    batch_size: int = Field(128, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    patience: int = Field(10, ge=1)
    grad_clip: float = Field(1.0, ge=0)
    threshold_percentile: float = Field(99.0, gt=0, le=100)
    threshold_coefficient: float = Field(1.0, gt=0)
    random_state: int = 0
    n_threads: int | None = Field(None, ge=1)
    device: str = "auto"


class TrainSettings(Settings):
    start: datetime | None = None  # training range, inclusive; None: from the first reading
    end: datetime | None = None  # None: up to the last reading
    val_fraction: float = Field(0.2, gt=0, lt=1)
    # Stride of training windows; denser than scoring's stride: overlapping windows are
    # extra examples for free. None: the window's own stride.
    stride: int | None = Field(2, ge=1)


class AlertSettings(Settings):
    """How flagged windows become incidents (see monitoring.incidents)."""

    merge_gap_minutes: float = Field(30.0, ge=0)
    min_windows: int = Field(3, ge=1)
    min_peak_severity: float = Field(1.5, ge=1)

    def rule(self) -> IncidentRule:
        return IncidentRule(pd.Timedelta(minutes=self.merge_gap_minutes), self.min_windows, self.min_peak_severity)


class ScheduleSettings(Settings):
    """When `aemon serve` runs the stream's flows (prefect.yaml holds the same for workers)."""

    ingest_every_s: float = Field(300.0, gt=0)
    score_every_s: float = Field(900.0, gt=0)
    train_cron: str = "0 3 * * 0"
    timezone: str = "UTC"

    @field_validator("train_cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        from prefect.schedules import validate_cron_string

        validate_cron_string(value)
        return value


class ExclusionIntervalSettings(Settings):
    start: datetime
    end: datetime
    asset: str | None = None  # None: every asset of the stream
    reason: str = ""


class ExclusionSettings(Settings):
    """Readings kept out of training and alerting (features.exclusions)."""

    rules: tuple[str, ...] = ()  # machine-off rules such as "Current < 0.1"; any match excludes
    intervals: tuple[ExclusionIntervalSettings, ...] = ()

    @field_validator("rules")
    @classmethod
    def _rules(cls, rules: tuple[str, ...]) -> tuple[str, ...]:
        from features.exclusions import parse_rule

        for rule in rules:
            parse_rule(rule)
        return rules

    def build(self) -> Exclusions:
        intervals = [ExclusionInterval(pd.Timestamp(i.start), pd.Timestamp(i.end), i.asset, i.reason)
                     for i in self.intervals]
        return Exclusions.parse(list(self.rules), intervals)


class StreamSettings(Settings):
    """A stream: where its files land and what they look like (features.readers.StreamSchema)."""

    sensors: tuple[str, ...] = ()  # empty with all_numeric = true: every other column is a sensor
    all_numeric: bool = False
    timestamp_column: str | None = "timestamp"  # None: tabular records with no time order (window.size 1)
    timestamp_format: str | None = None  # strptime format; None: ISO 8601
    timezone: str = "UTC"  # zone of timestamps written without an offset
    asset_column: str | None = "asset"
    asset_id: str | None = None  # a fixed asset id; "{file}" stands for the file's name
    label_columns: tuple[str, ...] = ()
    layout: str = Field("wide", pattern="^(wide|long)$")
    sensor_column: str = "sensor"  # long layout
    value_column: str = "value"  # long layout
    column_aliases: dict[str, str] = {}  # name in the files -> name in the stream (a renamed sensor)
    duplicates: str = Field("first", pattern="^(first|last|drop)$")  # which of repeated timestamps is kept
    inbox: Path | None = None  # default: <home>/inbox/<stream>
    exclusions: ExclusionSettings = ExclusionSettings()
    window: WindowSpec = WindowSpec()
    detector: DetectorSettings = DetectorSettings()
    train: TrainSettings = TrainSettings()
    alerts: AlertSettings = AlertSettings()
    schedule: ScheduleSettings = ScheduleSettings()

    @model_validator(mode="before")
    @classmethod
    def _unset_columns(cls, data):
        """TOML has no null: an empty string unsets a column. A fixed asset_id replaces the
        default asset column unless one is named explicitly."""
        if isinstance(data, dict):
            data = {k: (None if k in ("timestamp_column", "asset_column", "asset_id") and v == "" else v)
                    for k, v in data.items()}
            if data.get("asset_id") is not None and "asset_column" not in data:
                data["asset_column"] = None
        return data

    @model_validator(mode="after")
    def _one_asset_source(self):
        if (self.asset_column is None) == (self.asset_id is None):
            raise ValueError("set exactly one of asset_column (a column naming the asset) or asset_id (a fixed id)")
        return self

    @model_validator(mode="after")
    def _valid_schema(self):
        if self.timestamp_column is None and self.window.size != 1:
            raise ValueError(f"timestamp_column is unset (tabular records) but window.size == {self.window.size}; "
                             "tabular records have no time order, set window.size = 1")
        try:
            self.schema()
        except SchemaError as exc:
            raise ValueError(str(exc)) from None
        return self

    def schema(self) -> StreamSchema:
        return StreamSchema(
            sensors=tuple(self.sensors),
            timestamp_column=self.timestamp_column,
            asset_column=self.asset_column,
            asset_id=self.asset_id,
            label_columns=tuple(self.label_columns),
            all_numeric=self.all_numeric,
            timestamp_format=self.timestamp_format,
            timezone=self.timezone,
            layout=self.layout,
            sensor_column=self.sensor_column,
            value_column=self.value_column,
            column_aliases=tuple(self.column_aliases.items()),
            duplicates=self.duplicates,
        )


DEMO_STREAM = StreamSettings(sensors=SENSORS, label_columns=("label",))


class AemonConfig(Settings):
    home: Path = DEFAULT_HOME
    tracking_uri: str | None = None  # default: sqlite:///<home>/mlflow.db
    artifact_root: str | None = None  # default: <home>/mlartifacts
    streams: dict[str, StreamSettings] = {"pumps": DEMO_STREAM}

    @field_validator("streams")
    @classmethod
    def _stream_names(cls, streams: dict) -> dict:
        for name in streams:
            if not STREAM_NAME.match(name):
                raise ValueError(f"stream name {name!r}: use letters, digits, '_' and '-' (max 64)")
        return streams

    @property
    def db_path(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def lake_root(self) -> Path:
        return self.home / "lake"

    def inbox(self, stream: str) -> Path:
        settings = self.streams.get(stream)
        if settings is not None and settings.inbox is not None:
            return settings.inbox if settings.inbox.is_absolute() else self.home / settings.inbox
        return self.home / "inbox" / stream

    @property
    def mlflow_tracking_uri(self) -> str:
        return self.tracking_uri or f"sqlite:///{(self.home / 'mlflow.db').as_posix()}"

    @property
    def mlflow_artifact_root(self) -> str:
        return self.artifact_root or (self.home / "mlartifacts").as_uri()

    def stream(self, name: str) -> StreamSettings:
        if name not in self.streams:
            raise ConfigError(f"stream {name!r} is not configured; configured streams: {sorted(self.streams)}")
        return self.streams[name]


def find_config_file(path: str | Path | None = None) -> Path | None:
    if path is not None:
        return Path(path)
    if os.environ.get("AEMON_CONFIG"):
        return Path(os.environ["AEMON_CONFIG"])
    local = Path.cwd() / CONFIG_FILE
    return local if local.exists() else None


def load_config(path: str | Path | None = None) -> AemonConfig:
    """Load and validate the configuration; every problem is one ConfigError naming the setting."""
    source = find_config_file(path)
    data: dict = {}
    base = Path.cwd()
    if source is not None:
        if not source.exists():
            raise ConfigError(f"config file {source} does not exist")
        try:
            data = tomllib.loads(source.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{source}: not valid TOML ({exc})") from exc
        base = source.resolve().parent
    if os.environ.get("AEMON_HOME"):
        data["home"] = os.environ["AEMON_HOME"]
        base = Path.cwd()
    try:
        config = AemonConfig(**data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None
    home = config.home if config.home.is_absolute() else (base / config.home)
    return config.model_copy(update={"home": home.resolve()})


def _describe(exc: ValidationError, source: Path | None) -> str:
    where = str(source) if source else "default configuration"
    problems = []
    for error in exc.errors():
        location = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
            message = "unknown setting"
        problems.append(f"{location}: {message}")
    return f"{where}: " + "; ".join(problems)
