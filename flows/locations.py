"""Where aemon's things are: the config file, the home folder and the warehouse, read
without the rest of the configuration (which loads the detectors, and with them torch), so
`aemon sql` and `aemon warehouse` answer in a fraction of a second.

Where the file comes from: the `--config` option, else $AEMON_CONFIG, else ./aemon.toml
when it exists, else nothing. $AEMON_HOME, when set, overrides `home`.
"""
from __future__ import annotations

import importlib.util
import os
import tomllib
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from monitoring.errors import WarehouseError
from monitoring.store.connection import Warehouse, check_data_path
from monitoring.store.redaction import redact

DEFAULT_HOME = Path(".aemon")
CONFIG_FILE = "aemon.toml"
DEMO_STREAM_NAME = "pumps"  # the built-in stream (flows.config.DEMO_STREAM)


class ConfigError(ValueError):
    """The configuration file or a setting in it is invalid."""


class Settings(BaseModel):
    # NaN and infinity are no setting's value: a bound such as `gt=0` lets NaN through
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class WarehouseSettings(Settings):
    """Where the warehouse lives (monitoring.store.connection.Warehouse) and how its upkeep
    runs (the `maintain-warehouse` flow)."""

    # `sqlite:<path>` (default: sqlite:<home>/warehouse.sqlite) or `postgres:<libpq string>`,
    # e.g. "postgres:dbname=aemon host=127.0.0.1 user=aemon" (the password from PGPASSWORD)
    catalog: str | None = None
    # the Parquet files: a folder or s3://bucket/prefix (default: <home>/warehouse); S3 credentials
    # and endpoint from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL (never the URI)
    data_path: str | None = None
    retries: int = Field(8, ge=0, le=100)  # commits that met another writer's are run again
    lock_timeout_s: float = Field(300.0, gt=0)  # longest wait for another process's write
    snapshot_retention_days: float = Field(7.0, gt=0)  # older snapshots expire; their files are removed
    maintain_cron: str = "17 2 * * *"  # when `aemon serve` runs the upkeep (daily, 02:17 UTC)

    @field_validator("catalog")
    @classmethod
    def _catalog(cls, value: str | None) -> str | None:
        if value is not None and value.split(":", 1)[0] not in ("sqlite", "postgres"):
            raise ValueError(redact(f"{value!r}: expected 'sqlite:<path>' or 'postgres:<connection string>'"))
        return value

    @field_validator("data_path")
    @classmethod
    def _data_path(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                check_data_path(value)
            except WarehouseError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("maintain_cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        return validate_cron(value)

    def warehouse(self, home: Path) -> Warehouse:
        """The warehouse these settings name; by default a SQLite catalog and Parquet files
        under home (where a warehouse of an earlier release is looked for too)."""
        default = Warehouse.at(home)
        return Warehouse(self.catalog or default.catalog, self.data_path or default.data_path,
                         default.legacy if self.catalog is None else None, retries=self.retries,
                         lock_timeout_s=self.lock_timeout_s)


@cache
def _croniter() -> ModuleType:
    """The cron parser Prefect's schedules use (its vendored croniter), loaded from its file:
    importing it the usual way imports all of Prefect first (0.7 s), and every command reads
    the cron settings, including those that never start a flow (`aemon sql`)."""
    package = importlib.util.find_spec("prefect")  # locates the package without importing it
    if package is None or not package.submodule_search_locations:
        raise ImportError("prefect is not installed")
    path = Path(next(iter(package.submodule_search_locations))) / "_vendor" / "croniter" / "croniter.py"
    spec = importlib.util.spec_from_file_location("aemon_vendored_croniter", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"no cron parser at {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def validate_cron(value: str) -> str:
    """A cron string Prefect's CronSchedule accepts, by its rules (prefect's
    validate_cron_string): five valid fields, no random ("R") or hashed ("H") expressions."""
    if not _croniter().croniter.is_valid(value):
        raise ValueError(f'Invalid cron string: "{value}"')
    if any(field.casefold() in ("r", "h") for field in value.split()):
        raise ValueError(f'Random and Hashed expressions are unsupported, received: "{value}"')
    return value


def find_config_file(path: str | Path | None = None) -> Path | None:
    if path is not None:
        return Path(path)
    if os.environ.get("AEMON_CONFIG"):
        return Path(os.environ["AEMON_CONFIG"])
    local = Path.cwd() / CONFIG_FILE
    return local if local.exists() else None


def read_config(path: str | Path | None = None) -> tuple[dict[str, Any], Path, Path | None]:
    """(the file's settings with $AEMON_HOME applied, the folder a relative home is under,
    the file or None)."""
    source = find_config_file(path)
    data: dict[str, Any] = {}
    base = Path.cwd()
    if source is not None:
        if not source.exists():
            raise ConfigError(f"config file {source} does not exist")
        try:
            text = source.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{source}: not valid TOML (not UTF-8 text: {exc})") from None
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read the config file ({exc.strerror})") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: not valid TOML ({exc})") from None
        base = source.resolve().parent
    if os.environ.get("AEMON_HOME"):
        data["home"] = os.environ["AEMON_HOME"]
        base = Path.cwd()
    return data, base, source


def resolve_home(home: str | Path, base: Path) -> Path:
    home = Path(home)
    return (home if home.is_absolute() else base / home).resolve()


def describe(exc: ValidationError, source: Path | None, prefix: str = "") -> str:
    """A validation error as one line naming each setting and what was expected."""
    where = str(source) if source else "default configuration"
    problems = []
    for error in exc.errors():
        location = ".".join(str(part) for part in (prefix, *error["loc"]) if part != "") or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
            message = "unknown setting"
        problems.append(f"{location}: {message}")
    return f"{where}: " + "; ".join(problems)


def stream_names(path: str | Path | None = None) -> list[str]:
    """The configured streams' names, read without the rest of the configuration (the
    built-in demo stream when the file declares none)."""
    streams = read_config(path)[0].get("streams")
    return sorted(streams) if isinstance(streams, dict) else [DEMO_STREAM_NAME]


def load_warehouse(path: str | Path | None = None) -> tuple[Warehouse, WarehouseSettings]:
    """The warehouse of the configuration, reading only `home` and `[warehouse]`."""
    data, base, source = read_config(path)
    _apply_secrets(data, source)
    try:
        settings = WarehouseSettings(**data.get("warehouse", {}))
    except ValidationError as exc:
        raise ConfigError(describe(exc, source, "warehouse")) from None
    except TypeError:
        raise ConfigError(f"{source}: warehouse: expected a table of settings") from None
    return settings.warehouse(_home(data, base, source)), settings


def _apply_secrets(data: dict[str, Any], source: Path | None) -> None:
    """The `[secrets]` table's Secret blocks into the environment (flows.secret_blocks), only when
    the file has one: otherwise nothing is imported and no API is called."""
    if "secrets" in data:
        from flows.secret_blocks import apply_secrets, check_secrets

        apply_secrets(check_secrets(data["secrets"], str(source or "default configuration")))


def _home(data: dict[str, Any], base: Path, source: Path | None) -> Path:
    home = data.get("home", DEFAULT_HOME)
    if not isinstance(home, (str, Path)):
        raise ConfigError(f"{source or 'default configuration'}: home: expected a folder path (a string), "
                          f"got {home!r}")
    if "\x00" in str(home):
        raise ConfigError(f"{source or 'default configuration'}: home: {str(home)!r} contains a NUL byte; "
                          "expected a folder path")
    return resolve_home(home, base)


def load_tracking_uri(path: str | Path | None = None) -> str:
    """The MLflow tracking URI of the configuration (flows.config.AemonConfig.mlflow_tracking_uri),
    reading only `home` and `tracking_uri`."""
    data, base, source = read_config(path)
    _apply_secrets(data, source)
    uri = data.get("tracking_uri")
    if uri is not None and not isinstance(uri, str):
        raise ConfigError(f"{source or 'default configuration'}: tracking_uri: expected a URI (a string), got {uri!r}")
    return uri or f"sqlite:///{(_home(data, base, source) / 'mlflow.db').as_posix()}"
