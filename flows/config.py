"""aemon's one configuration: a typed model loaded from one TOML file, with defaults that
work with no file at all (the embedded demo stream, everything under AEMON_HOME).

Where the file comes from: see flows.locations (which also reads the warehouse settings
alone, for the commands that need nothing else).
Library defaults live in the packages (features.windows.WindowSpec, aemodels'
detector arguments and ThresholdRule, monitoring.alerting.incidents.IncidentRule,
monitoring.models.fitting's TrainingSplit); this module only combines them.
"""
from __future__ import annotations

import re
from dataclasses import fields
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from aemodels.thresholds import ThresholdMethod, ThresholdRule
from features.errors import SchemaError
from features.exclusions import ExclusionInterval, Exclusions, parse_rule
from features.readers import DEFAULT_ACCEPT_AHEAD_HOURS, DEFAULT_ACCEPT_FROM, StreamSchema
from features.synthetic import SENSORS
from features.windows import WindowSpec
from flows.locations import (
    DEFAULT_HOME,
    DEMO_STREAM_NAME,
    ConfigError,
    WarehouseSettings,
    describe,
    read_config,
    resolve_home,
    validate_cron,
)
from flows.secret_blocks import apply_secrets, check_secrets
from monitoring.alerting.adaptive import AlarmRule
from monitoring.alerting.incidents import IncidentRule
from monitoring.errors import InboxError
from monitoring.evaluation.drift_detection import DriftRule
from monitoring.models.defaults import (
    STREAM_DETECTOR_DEFAULTS,
    TABULAR_DETECTOR_DEFAULTS,
    TABULAR_KINDS,
    TABULAR_SPEC,
    TABULAR_THRESHOLD,
    TrainingSplit,
    check_calibration_folds,
)
from monitoring.store.connection import Warehouse, is_uri
from monitoring.store.inbox import check_inbox_uri

STREAM_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-]{0,63}$")


class Settings(BaseModel):
    # NaN and infinity are no setting's value: a bound such as `gt=0` lets NaN through
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# -- detectors and thresholds ---------------------------------------------------------------
# The settings of each detector kind are built from the detector class's own constructor
# (aemodels.detector.param_defaults), so names and defaults are never listed twice; its
# `threshold` argument is the stream's [threshold] table, one rule for every kind.
# [streams.<s>.detectors] holds `kinds` (which to train) and settings shared by every
# kind (e.g. epochs, n_threads); [streams.<s>.detectors.<kind>] overrides them per kind.
# The detector classes import torch (a second of start-up), so the model of the table is
# built on first use, and a command that neither trains nor scores (`aemon ingest`) loads
# the configuration without it: load_config(..., detectors=False).


def _annotation(default: object) -> Any:
    if isinstance(default, bool):
        return bool
    if isinstance(default, (int, float, str)):
        return float if isinstance(default, float) else type(default)
    if isinstance(default, tuple):
        return tuple[int, ...] if all(isinstance(v, int) for v in default) else tuple
    return Any  # None or anything else: the detector checks the value when it is built


THRESHOLD_PARAM = "threshold"  # a detector argument set by the stream's [threshold] table


def _kind_settings(kind: str) -> type[Settings]:
    from aemodels.detector import param_defaults

    defaults = {**param_defaults(kind), **{k: v for k, v in STREAM_DETECTOR_DEFAULTS.items()
                                            if k in param_defaults(kind)}}
    fields: dict[str, Any] = {name: (_annotation(default), default) for name, default in defaults.items()
                              if name != THRESHOLD_PARAM}
    return create_model(f"{kind}_settings", __base__=Settings, __doc__=f"Arguments of the {kind!r} detector.",
                        **fields)


def _shared_settings() -> dict[str, Any]:
    """Settings every installed kind accepts, optional at the [detectors] level."""
    from aemodels.detector import detector_kinds, param_defaults

    per_kind = [param_defaults(kind) for kind in detector_kinds()]
    shared = [name for name in per_kind[0] if all(name in d for d in per_kind) and name != THRESHOLD_PARAM]
    return {name: (_annotation(per_kind[0][name]) | None, None) for name in shared}


def _all_kinds() -> tuple[str, ...]:
    from aemodels.detector import detector_kinds

    return detector_kinds()


def _default_kinds() -> tuple[str, ...]:
    from aemodels.detector import DEFAULT_KINDS

    return DEFAULT_KINDS


def _kinds_field(value: tuple[str, ...]) -> tuple[str, ...]:
    kinds = _all_kinds()
    if not value:
        raise ValueError("list at least one detector kind")
    unknown = [k for k in value if k not in kinds]
    if unknown:
        raise ValueError(f"unknown detector kinds {unknown}; expected some of {list(kinds)}")
    if len(set(value)) != len(value):
        raise ValueError(f"detector kinds {list(value)} repeat a kind")
    return tuple(value)


class DetectorKinds(Settings):
    """The part of [streams.<s>.detectors] that does not depend on the installed kinds."""

    kinds: tuple[str, ...] = Field(default_factory=_default_kinds)  # the autoencoders; pca, knn by name

    @field_validator("kinds")
    @classmethod
    def _kinds(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _kinds_field(value)


@cache
def detectors_model() -> type[DetectorKinds]:
    """The model of a [detectors] table (DetectorKinds and every kind's arguments), built
    from the detector classes on first use."""
    per_kind: dict[str, Any] = {kind: (_kind_settings(kind), _kind_settings(kind)()) for kind in _all_kinds()}
    return create_model("DetectorsSettings", __base__=DetectorKinds,
                        __doc__="Which detectors a training fits, and their arguments.",
                        **_shared_settings(), **per_kind)


if TYPE_CHECKING:  # a type checker sees the static part; _valid_detectors validates the whole table
    DetectorsTable = DetectorKinds
else:
    DetectorsTable = Any


def detector_params(settings: DetectorKinds, kind: str) -> dict[str, Any]:
    """The arguments a kind is built with: the stream defaults (STREAM_DETECTOR_DEFAULTS),
    shared settings given in [detectors], then the kind's own table; only settings written
    there, so the detector's own defaults apply to the rest."""
    from aemodels.detector import param_defaults

    shared = {k: getattr(settings, k) for k in settings.model_fields_set if k not in ("kinds", *_all_kinds())}
    own = getattr(settings, kind)
    stream_defaults = {k: v for k, v in STREAM_DETECTOR_DEFAULTS.items() if k in param_defaults(kind)}
    return {**stream_defaults, **shared, **{k: getattr(own, k) for k in own.model_fields_set}}


class ThresholdSettings(Settings):
    """The stream's [threshold] table: the fields of aemodels.thresholds.ThresholdRule, with
    its defaults and its checks (one rule for config, training and the registry), and what
    recalibration reads."""

    method: ThresholdMethod = ThresholdRule.method
    percentile: float = ThresholdRule.percentile
    coefficient: float = ThresholdRule.coefficient
    pot_risk: float = ThresholdRule.pot_risk
    pot_initial_quantile: float = ThresholdRule.pot_initial_quantile
    conformal_alpha: float = ThresholdRule.conformal_alpha
    conformal_confidence: float = ThresholdRule.conformal_confidence
    # `aemon threshold recalibrate`: the last `recalibrate_days` of readings.
    recalibrate_days: float = Field(7.0, gt=0)

    @model_validator(mode="after")
    def _valid_rule(self) -> ThresholdSettings:
        self.rule()  # the rule's own checks, named by the table: "streams.x.threshold: ..."
        return self

    def rule(self) -> ThresholdRule:
        return ThresholdRule(**{f.name: getattr(self, f.name) for f in fields(ThresholdRule)})


class TrainSettings(Settings):
    """The training range and how it is split (defaults: monitoring.models.defaults.TrainingSplit)."""

    start: datetime | None = None  # training range, inclusive; None: from the first reading
    end: datetime | None = None  # None: up to the last reading
    val_fraction: float = Field(TrainingSplit.val_fraction, gt=0, lt=1)
    # Stride of training windows; denser than scoring's stride: overlapping windows are
    # extra examples for free. None: the window's own stride.
    stride: int | None = Field(TrainingSplit.stride, ge=1)
    # At most this many training windows: a longer range keeps every k-th window (the
    # stride raised k-fold), so a fit costs no more than this many windows an epoch. None: all.
    max_windows: int | None = Field(TrainingSplit.max_windows, ge=100)
    # The last part of the validation range, held out from threshold calibration: the
    # recent normal windows on which versions are compared (see monitoring.models.fitting).
    holdout_fraction: float = Field(TrainingSplit.holdout_fraction, gt=0, lt=1)
    # 1: thresholds (and sensor scales) from the calibration windows alone; k >= 3:
    # cross-fitted over the whole range, each window scored by a fit that did not see it
    # (monitoring.models.fitting.cross_fitted_values): k - 1 more fits per detector.
    calibration_folds: int = Field(TrainingSplit.calibration_folds, ge=1)

    @field_validator("calibration_folds")
    @classmethod
    def _folds(cls, value: int) -> int:
        check_calibration_folds(value)
        return value


class AlertSettings(Settings):
    """How flagged windows become incidents and how incidents live (monitoring.alerting.incidents
    .IncidentRule and .lifecycle, whose defaults these are), and when a feed counts as stalled."""

    merge_gap_minutes: float = Field(IncidentRule.merge_gap.total_seconds() / 60, ge=0)
    min_windows: int = Field(IncidentRule.min_windows, ge=1)
    min_peak_severity: float = Field(IncidentRule.min_peak_severity, ge=1)
    # data time of normal scores before an incident counts as recovered; unset: a third of the merge gap
    recover_after_minutes: float | None = Field(None, ge=0)
    escalation_levels: tuple[float, ...] = IncidentRule.escalation_levels  # severities: -> major -> critical
    stale_after_hours: float = Field(IncidentRule.stale_after.total_seconds() / 3600, gt=0)
    # no rows accepted for this many ingest intervals: the feed is stalled (an alert); 0: never
    stall_after_intervals: float = Field(6.0, ge=0)
    # which windows above the threshold are flagged: "threshold" (all of them) or "adaptive"
    # (only those that also stand out from the asset's own score history,
    # monitoring.alerting.adaptive.AlarmRule, whose defaults these are)
    alarm: str = Field(AlarmRule.mode, pattern="^(threshold|adaptive)$")
    adaptive_windows: int = Field(AlarmRule.short_windows, ge=1)
    adaptive_z: float = AlarmRule.z
    adaptive_min_history: int = Field(AlarmRule.min_windows, ge=2)

    @model_validator(mode="after")
    def _valid_rule(self) -> AlertSettings:
        try:
            self.rule()
            self.alarm_rule()
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        return self

    def alarm_rule(self) -> AlarmRule:
        return AlarmRule(self.alarm, self.adaptive_windows, self.adaptive_z, self.adaptive_min_history)

    def rule(self) -> IncidentRule:
        recover = None if self.recover_after_minutes is None else pd.Timedelta(minutes=self.recover_after_minutes)
        return IncidentRule(pd.Timedelta(minutes=self.merge_gap_minutes), self.min_windows, self.min_peak_severity,
                            recover, tuple(self.escalation_levels), pd.Timedelta(hours=self.stale_after_hours))


class ScheduleSettings(Settings):
    """When `aemon serve` runs the stream's flows (prefect.yaml holds the same for workers)."""

    ingest_every_s: float = Field(300.0, gt=0)
    score_every_s: float = Field(900.0, gt=0)
    train_cron: str = "0 3 * * 0"
    timezone: str = "UTC"
    # also score as soon as an ingest run accepted rows (the `aemon.readings.ingested` event);
    # score_every_s stays as the fallback
    score_on_ingest: bool = True

    @field_validator("train_cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        return validate_cron(value)


class DriftSettings(Settings):
    """The stream's [drift] table: what the check-drift flow compares and when it retrains
    (monitoring.evaluation.drift_detection.DriftRule, whose defaults and checks these are), whether
    drift that holds starts the train flow, and how often `aemon serve` checks."""

    recent_hours: float = Field(DriftRule.recent_hours, gt=0)
    alpha: float = Field(DriftRule.alpha, gt=0, lt=1)
    psi_threshold: float = Field(DriftRule.psi_threshold, gt=0)
    n_bins: int = Field(DriftRule.n_bins, ge=2)
    alert_rate_ratio: float = Field(DriftRule.alert_rate_ratio, ge=1)
    min_samples: int = Field(DriftRule.min_samples, ge=2)
    hold_checks: int = Field(DriftRule.hold_checks, ge=1)
    cooldown_hours: float = Field(DriftRule.cooldown_hours, ge=0)
    retrain: bool = True  # drift that holds runs the train deployment (or flow); its gate decides
    every_s: float = Field(3600.0, gt=0)  # `aemon serve`: how often (prefect.yaml holds the same for workers)

    def rule(self) -> DriftRule:
        return DriftRule(**{f.name: getattr(self, f.name) for f in fields(DriftRule)})


def _no_nul(folder: Path | None) -> Path | None:
    """A folder setting the file system can take (a NUL byte would fail at the first use)."""
    if folder is not None and "\x00" in str(folder):
        raise ValueError(f"{str(folder)!r} contains a NUL byte; expected a folder path")
    return folder


def _naive_utc(value: datetime) -> pd.Timestamp:
    """A config time in the lake's form: naive UTC (a time written without an offset is UTC)."""
    stamp = pd.Timestamp(value)
    return stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo is not None else stamp


class ExclusionIntervalSettings(Settings):
    start: datetime
    end: datetime
    asset: str | None = None  # None: every asset of the stream
    reason: str = ""

    @model_validator(mode="after")
    def _ordered(self):
        if _naive_utc(self.end) < _naive_utc(self.start):
            raise ValueError(f"exclusion interval ends ({self.end}) before it starts ({self.start})")
        return self


class ExclusionSettings(Settings):
    """Readings kept out of training and alerting (features.exclusions)."""

    rules: tuple[str, ...] = ()  # machine-off rules such as "Current < 0.1"; any match excludes
    intervals: tuple[ExclusionIntervalSettings, ...] = ()

    @field_validator("rules")
    @classmethod
    def _rules(cls, rules: tuple[str, ...]) -> tuple[str, ...]:
        for rule in rules:
            parse_rule(rule)
        return rules

    def build(self) -> Exclusions:
        intervals = [ExclusionInterval(_naive_utc(i.start), _naive_utc(i.end), i.asset, i.reason)
                     for i in self.intervals]
        return Exclusions.parse(list(self.rules), intervals)


def _tabular_defaults(data: dict) -> dict:
    """A tabular stream's defaults where its table leaves a setting out: windows of one
    record, every record trained on and scored (TABULAR_SPEC), the detector kind, settings and
    threshold rule chosen on ADBench (monitoring.models.fitting), and each flagged record an
    incident of its own (records have no time order to merge along)."""
    data = dict(data)
    window = data.get("window")
    if isinstance(window, dict):
        data["window"] = {"size": TABULAR_SPEC.size, "stride": TABULAR_SPEC.stride, "align": TABULAR_SPEC.align,
                          **window}
    elif window is None:
        data["window"] = TABULAR_SPEC
    train = data.get("train", {})
    if isinstance(train, dict):
        data["train"] = {"stride": 1, "max_windows": None, **train}
    detectors = data.get("detectors", {})
    if isinstance(detectors, dict):
        data["detectors"] = {"kinds": TABULAR_KINDS, **TABULAR_DETECTOR_DEFAULTS, **detectors}
    data.setdefault("threshold", TABULAR_THRESHOLD.to_dict())
    alerts = data.get("alerts", {})
    if isinstance(alerts, dict):
        data["alerts"] = {"merge_gap_minutes": 0.0, "min_windows": 1, "min_peak_severity": 1.0,
                          "recover_after_minutes": 0.0, **alerts}
    return data


CHECK_DETECTORS = "check_detectors"  # validation context: False keeps [detectors] tables unchecked


def _empty_table() -> Any:
    return {}


class StreamSettings(Settings):
    """A stream: where its files land and what they look like (features.readers.StreamSchema)."""

    sensors: tuple[str, ...] = ()  # empty with all_numeric = true: every other column is a sensor
    all_numeric: bool = False
    timestamp_column: str | None = "timestamp"  # None: tabular records with no time order (window.size 1)
    id_column: str | None = None  # tabular records: a record id kept in the lake (text), not a sensor
    timestamp_format: str | None = None  # strptime format; None: ISO 8601
    timezone: str = "UTC"  # zone of timestamps written without an offset
    asset_column: str | None = "asset"
    asset_id: str | None = None  # a fixed asset id; "{file}" stands for the file's name
    label_columns: tuple[str, ...] = ()
    # slow sensors (thermal channels) the detectors see as changes between readings
    # (features.differencing): their drift and a level kept after a fault are not anomalies
    differenced: tuple[str, ...] = ()
    layout: str = Field("wide", pattern="^(wide|long)$")
    sensor_column: str = "sensor"  # long layout
    value_column: str = "value"  # long layout
    column_aliases: dict[str, str] = {}  # name in the files -> name in the stream (a renamed sensor)
    ignore_columns: tuple[str, ...] = ()  # columns of the files the stream does not keep (after column_aliases)
    duplicates: str = Field("first", pattern="^(first|last|drop)$")  # which of repeated timestamps is kept
    # readings outside [accept_from, now + accept_ahead_hours] (UTC) are quarantined
    accept_from: str = DEFAULT_ACCEPT_FROM
    accept_ahead_hours: float = DEFAULT_ACCEPT_AHEAD_HOURS
    # default: <home>/inbox/<stream>; a folder (relative: under home) or s3://bucket/prefix
    inbox: Path | str | None = None
    # move each ingested file here (relative: under home; with an s3:// inbox, an s3:// URI); None: files stay
    archive: Path | str | None = None
    exclusions: ExclusionSettings = ExclusionSettings()
    window: WindowSpec = WindowSpec()
    # the [detectors] table: a detectors_model() instance, or the table as written when the
    # configuration was loaded with detectors=False (typed by its static part, DetectorKinds)
    detectors: DetectorsTable = Field(default_factory=_empty_table, validate_default=True)
    threshold: ThresholdSettings = ThresholdSettings()
    train: TrainSettings = TrainSettings()
    alerts: AlertSettings = AlertSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    drift: DriftSettings = DriftSettings()

    @model_validator(mode="before")
    @classmethod
    def _unset_columns(cls, data):
        """TOML has no null: an empty string unsets a column. A fixed asset_id replaces the
        default asset column unless one is named explicitly."""
        if isinstance(data, dict):
            data = {k: (None if k in ("timestamp_column", "asset_column", "asset_id", "id_column") and v == "" else v)
                    for k, v in data.items()}
            if data.get("asset_id") is not None and "asset_column" not in data:
                data["asset_column"] = None
            if "timestamp_column" in data and data["timestamp_column"] is None:
                data = _tabular_defaults(data)
        return data

    @field_validator("accept_from", mode="before")
    @classmethod
    def _toml_date(cls, value):
        """A TOML date or date-time (accept_from = 1990-01-01, unquoted) as ISO text."""
        if isinstance(value, date | datetime):
            if isinstance(value, datetime) and value.tzinfo is not None:
                raise ValueError(f"accept_from {value.isoformat()} has an offset; give it in UTC without one")
            return value.isoformat()
        return value

    @field_validator("inbox", "archive", mode="before")
    @classmethod
    def _folder(cls, value: Any, info: ValidationInfo) -> Any:
        """A folder (a Path), or an object-store URI kept as text (`s3://bucket/prefix`)."""
        if isinstance(value, str) and is_uri(value):
            try:
                return check_inbox_uri(value, info.field_name or "inbox")
            except InboxError as exc:
                raise ValueError(str(exc)) from None
        if isinstance(value, str | Path):
            return _no_nul(Path(value))
        return value

    @model_validator(mode="after")
    def _archive_beside_inbox(self):
        """An archive on the inbox's side: objects are archived into a URI, files into a folder."""
        if self.archive is not None and isinstance(self.archive, str) != isinstance(self.inbox, str):
            where = "an s3:// URI" if isinstance(self.inbox, str) else "a folder"
            raise ValueError(f"archive {str(self.archive)!r}: the inbox is {str(self.inbox or 'a folder')!r}, so "
                             f"the archive must be {where} too")
        return self

    @model_validator(mode="after")
    def _one_asset_source(self):
        if (self.asset_column is None) == (self.asset_id is None):
            raise ValueError("set exactly one of asset_column (a column naming the asset) or asset_id (a fixed id)")
        return self

    @model_validator(mode="after")
    def _differenced_are_sensors(self):
        unknown = [s for s in self.differenced if self.sensors and s not in self.sensors]
        if unknown:
            raise ValueError(f"differenced: {unknown} are not among the stream's sensors {list(self.sensors)}")
        return self

    @field_validator("detectors", mode="before")
    @classmethod
    def _valid_detectors(cls, detectors: Any, info: ValidationInfo) -> Any:
        """The table validated by detectors_model(), then each kind's arguments as the detector
        itself checks them, with this stream's window and sensors when they are valid (a bad
        value stops here, not in a training run). Kept as written, unchecked, when the
        configuration is loaded with detectors=False."""
        if info.context and info.context.get(CHECK_DETECTORS) is False:
            return detectors
        from aemodels.detector import make_detector

        if not isinstance(detectors, DetectorKinds):
            detectors = detectors_model().model_validate(detectors)
        window = info.data.get("window")
        n_sensors = max(1, len(info.data.get("sensors") or ()))
        for kind in detectors.kinds:
            try:
                make_detector(kind, **detector_params(detectors, kind)).validate_params(
                    window.size if window is not None else None, n_sensors)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{kind}: {exc}") from None
        return detectors

    @model_validator(mode="after")
    def _valid_schema(self):
        if self.timestamp_column is None and self.window.size != 1:
            raise ValueError(f"timestamp_column is unset (tabular records) but window.size == {self.window.size}; "
                             "tabular records have no time order, set window.size = 1")
        if self.timestamp_column is None and (self.window.stride != 1 or self.train.stride not in (None, 1)):
            raise ValueError(f"timestamp_column is unset (tabular records) but window.stride == {self.window.stride}"
                             f" and train.stride == {self.train.stride}; every record is scored and trained on, "
                             "set both to 1 (their default for tabular records)")
        if self.timestamp_column is None and self.alerts.alarm == "adaptive":
            raise ValueError("alerts.alarm = \"adaptive\" compares a window with the ones before it, but "
                             "timestamp_column is unset (tabular records have no time order); use \"threshold\"")
        if self.id_column is not None and self.timestamp_column is not None:
            raise ValueError(f"id_column = {self.id_column!r} is for tabular records; this stream has "
                             f"timestamp_column = {self.timestamp_column!r} (set timestamp_column = \"\")")
        try:
            self.stream_schema()
        except SchemaError as exc:
            raise ValueError(str(exc)) from None
        return self

    def stream_schema(self) -> StreamSchema:
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
            ignore_columns=tuple(self.ignore_columns),
            duplicates=self.duplicates,
            id_column=self.id_column,
            accept_from=self.accept_from,
            accept_ahead_hours=self.accept_ahead_hours,
        )


class WebhookSettings(Settings):
    """[webhook]: every alert (incident opened, escalated, recovered, reopened, acknowledged,
    closed; a stalled feed; a failed flow) POSTed as JSON. The URL and the signing secret
    may be secrets (a chat webhook's URL is one): give them through the environment or a
    Prefect Secret block; they are never logged."""

    url: str | None = None
    url_env: str | None = None  # an environment variable holding the URL
    secret_env: str | None = "AEMON_WEBHOOK_SECRET"  # HMAC-SHA256 key: X-Aemon-Signature header
    secret_block: str | None = None  # a Prefect Secret block holding the key (instead of secret_env)
    timeout_s: float = Field(10.0, gt=0)

    @model_validator(mode="after")
    def _one_url(self) -> WebhookSettings:
        if self.url is not None and self.url_env is not None:
            raise ValueError("set url or url_env, not both")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        return self

    @property
    def enabled(self) -> bool:
        return self.url is not None or self.url_env is not None


DASK_ADDRESS = re.compile(r"^(tcp|tls)://[A-Za-z0-9_.\-\[\]:]+:[0-9]{1,5}$")


class RunnerSettings(Settings):
    """[runner]: where the tasks of a training or a scoring run. `default`: the flow's own
    runners (scoring in one task over every asset, the fits in a process pool). `dask`: a
    Dask cluster, the work split by asset (each task reads only its own assets' readings):
    a local cluster of `n_workers` processes x `threads_per_worker` bound to 127.0.0.1 when
    `address` is empty, else the scheduler at `address` (tcp://host:port)."""

    kind: Literal["default", "dask"] = "default"
    address: str = ""
    n_workers: int = Field(2, ge=1, le=1024)
    threads_per_worker: int = Field(1, ge=1, le=256)
    assets_per_task: int = Field(0, ge=0)  # 0: the assets spread over 4 tasks per worker thread
    dashboard: bool = False  # a local cluster's dashboard at http://127.0.0.1:8787

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        if value and not DASK_ADDRESS.fullmatch(value):
            raise ValueError(f"address {value!r}: expected '' (a local cluster) or the scheduler's "
                             "'tcp://host:port'")
        return value

    @model_validator(mode="after")
    def _address_for_dask(self) -> RunnerSettings:
        if self.address and self.kind != "dask":
            raise ValueError(f"address {self.address!r} is set but kind is {self.kind!r}; set kind = \"dask\" "
                             "to use a Dask scheduler")
        return self


DEMO_STREAM_TABLE: dict[str, Any] = {"sensors": SENSORS, "label_columns": ("label",)}


@cache
def demo_stream() -> StreamSettings:
    """The built-in stream: the demo's pumps."""
    return StreamSettings(**DEMO_STREAM_TABLE)


class AemonConfig(Settings):
    home: Path = DEFAULT_HOME
    tracking_uri: str | None = None  # default: sqlite:///<home>/mlflow.db
    artifact_root: str | None = None  # default: <home>/mlartifacts
    warehouse_settings: WarehouseSettings = Field(WarehouseSettings(), alias="warehouse")
    webhook: WebhookSettings = WebhookSettings()
    runner: RunnerSettings = RunnerSettings()
    streams: dict[str, StreamSettings] = Field(default_factory=lambda: {DEMO_STREAM_NAME: demo_stream()})
    # environment variable -> Prefect Secret block holding its value (flows.secret_blocks)
    secrets: dict[str, str] = Field(default_factory=dict)

    @field_validator("home")
    @classmethod
    def _home(cls, value: Path) -> Path:
        _no_nul(value)
        return value

    @field_validator("streams")
    @classmethod
    def _stream_names(cls, streams: dict) -> dict:
        for name in streams:
            if not STREAM_NAME.fullmatch(name):
                raise ValueError(f"stream name {name!r}: use letters, digits, '_' and '-' (max 64)")
        return streams

    @property
    def warehouse(self) -> Warehouse:
        """The warehouse: by default a SQLite catalog and Parquet files under home."""
        return self.warehouse_settings.warehouse(self.home)

    def inbox(self, stream: str) -> Path | str:
        """The stream's inbox: a folder, or an object-store URI (`s3://bucket/prefix`)."""
        settings = self.streams.get(stream)
        if settings is not None and settings.inbox is not None:
            if isinstance(settings.inbox, str):
                return settings.inbox
            return settings.inbox if settings.inbox.is_absolute() else self.home / settings.inbox
        return self.home / "inbox" / stream

    def local_inbox(self, stream: str) -> Path:
        """The stream's inbox folder, for commands that write files into it (demo, replay);
        a ConfigError when the inbox is on an object store."""
        inbox = self.inbox(stream)
        if isinstance(inbox, str):
            raise ConfigError(f"streams.{stream}.inbox is {inbox}; this command writes files into a local inbox "
                              "folder (upload them to the bucket instead)")
        return inbox

    def archive(self, stream: str) -> Path | str | None:
        """Where the stream's ingested files are moved, or None (they stay in the inbox)."""
        folder = self.stream(stream).archive
        if folder is None or isinstance(folder, str):
            return folder
        return folder if folder.is_absolute() else self.home / folder

    @property
    def mlflow_tracking_uri(self) -> str:
        return self.tracking_uri or f"sqlite:///{(self.home / 'mlflow.db').as_posix()}"

    @property
    def mlflow_artifact_root(self) -> str | None:
        """Where new experiments keep artifacts: `artifact_root`, else <home>/mlartifacts for
        the embedded store; with a configured tracking server, None: the server decides."""
        if self.artifact_root:
            return self.artifact_root
        return None if self.tracking_uri else (self.home / "mlartifacts").as_uri()

    def stream(self, name: str) -> StreamSettings:
        if name not in self.streams:
            raise ConfigError(f"stream {name!r} is not configured; configured streams: {sorted(self.streams)}")
        return self.streams[name]


def load_config(path: str | Path | None = None, *, detectors: bool = True) -> AemonConfig:
    """Load and validate the configuration; every problem is one ConfigError naming the setting.
    `detectors=False` leaves the streams' [detectors] tables as written, unchecked, and
    imports no detector code (torch): for commands that neither train nor score."""
    data, base, source = read_config(path)
    secrets = check_secrets(data.get("secrets", {}), str(source or "default configuration"))
    if "streams" not in data:  # the built-in stream, checked like a declared one
        data = {**data, "streams": {DEMO_STREAM_NAME: DEMO_STREAM_TABLE}}
    try:
        config = AemonConfig.model_validate(data, context={CHECK_DETECTORS: detectors})
    except ValidationError as exc:
        raise ConfigError(describe(exc, source)) from None
    apply_secrets(secrets)  # once a process, only when configured: the credentials the clients read
    return config.model_copy(update={"home": resolve_home(config.home, base)})
