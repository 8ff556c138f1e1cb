"""`aemon init`: a complete aemon.toml to start from, the demo stream `pumps` spelt out.

A configuration file replaces the built-in streams with its own `[streams.*]` tables, so a
user who adds a stream to an empty file loses `pumps`. The starter file holds `pumps` as
the built-in default has it, every setting with its default value and a comment, and loads
to exactly the configuration aemon uses with no file at all (a test checks this). Values
are read from the settings models, never typed here twice; a setting whose default is
"unset" (TOML has no null) or that is better left to its fallback (a detector argument,
which would override the shared [detectors] setting) is written as a comment.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from aemodels.detector import detector_kinds, param_defaults
from flows.config import (
    THRESHOLD_PARAM,
    AemonConfig,
    DetectorKinds,
    demo_stream,
    detector_params,
)
from flows.locations import CONFIG_FILE, DEFAULT_HOME, WarehouseSettings
from flows.secret_blocks import SECRET_VARIABLES

DEMO_NAME = "pumps"

# One line on each setting (README.md, "Configuration", says more).
NOTES: dict[str, str] = {
    "home": "home of inbox/, the warehouse and mlflow.db; relative to this file ($AEMON_HOME overrides it)",
    "tracking_uri": "MLflow tracking server (default: sqlite:///<home>/mlflow.db)",
    "artifact_root": "where new MLflow experiments keep artifacts (default: <home>/mlartifacts)",
    "warehouse.catalog": "sqlite:<path> (default: sqlite:<home>/warehouse.sqlite) or postgres:<libpq string>",
    "warehouse.data_path": "the Parquet files: a folder or object-store URI (default: <home>/warehouse)",
    "warehouse.retries": "commits that met another writer's are run again this many times",
    "warehouse.lock_timeout_s": "longest wait (s) for another process's write before giving up with an error",
    "warehouse.snapshot_retention_days": "older snapshots expire; their files are removed",
    "warehouse.maintain_cron": "when `aemon serve` runs the warehouse upkeep (UTC)",
    "sensors": "the sensor columns of every file",
    "all_numeric": "true with sensors = []: every other numeric column is a sensor",
    "timestamp_column": "\"\" for tabular records with no time order (then window.size = 1)",
    "id_column": "tabular records: a record id kept in the lake (text), not a sensor",
    "timestamp_format": "strptime format of the timestamps (default: ISO 8601)",
    "timezone": "zone of timestamps written without an offset",
    "asset_column": "the column naming the asset (or set asset_id)",
    "asset_id": "a fixed asset id for every row; \"{file}\" stands for the file's name",
    "label_columns": "columns marking known anomalies (1 = anomalous): kept out of training, used to evaluate",
    "differenced": "slow sensors the detectors see as changes between readings",
    "layout": "wide (a column per sensor) or long (sensor and value columns)",
    "sensor_column": "long layout: the column naming the sensor",
    "value_column": "long layout: the column holding the reading",
    "column_aliases": "name in the files -> name in the stream, e.g. { \"Pressure\" = \"suction_pressure\" }",
    "ignore_columns": "columns the files carry that the stream does not keep (a comment, a flag): dropped at read",
    "duplicates": "which of repeated timestamps is kept: first, last or drop",
    "accept_from": "readings before this time (UTC) are quarantined: a clock reset, not a reading",
    "accept_ahead_hours": "readings later than now + this many hours are quarantined (a clock fault)",
    "inbox": "where the stream's files land: a folder or s3://bucket/prefix (default: <home>/inbox/<stream>)",
    "archive": "move each ingested file here, e.g. \"archive/pumps\" (under home; s3://... for an s3:// inbox); "
               "unset: files stay in the inbox",
    "window.size": "readings per window",
    "window.stride": "readings between the starts of two scored windows",
    "window.interval_s": "seconds between readings on the regular grid",
    "window.max_gap_s": "longest gap bridged inside a window (default: 1.5 x interval_s)",
    "window.align": "put each asset on the regular grid of interval_s before cutting windows",
    "detectors.kinds": "which detectors a training fits; the gate picks the champion among them",
    "threshold.method": "percentile (of held-out normal scores), pot (extreme-value fit) or conformal "
                        "(a bound on the false-alarm rate)",
    "threshold.percentile": "percentile of the calibration scores",
    "threshold.coefficient": "the threshold is the percentile (or POT level, or conformal bound) times this",
    "threshold.pot_risk": "pot: target false-alarm rate",
    "threshold.pot_initial_quantile": "pot: quantile above which the tail is fitted",
    "threshold.conformal_alpha": "conformal: the false-alarm rate per window to stay under",
    "threshold.conformal_confidence": "conformal: how sure, over the calibration windows drawn, that it stays under",
    "threshold.recalibrate_days": "`aemon threshold recalibrate`: the last this many days of readings",
    "train.start": "training range start, inclusive (default: the first reading)",
    "train.end": "training range end (default: the last reading)",
    "train.val_fraction": "last part of the range: validation and threshold calibration",
    "train.stride": "stride of training windows, denser than scoring's (unset: the window's stride)",
    "train.holdout_fraction": "last part of the validation range, held out to compare versions",
    "train.calibration_folds": "1: thresholds from the calibration windows; k >= 3: cross-fitted over the whole "
                               "range (k - 1 more fits per detector)",
    "alerts.merge_gap_minutes": "flagged windows closer than this merge into one incident",
    "alerts.min_windows": "an incident needs at least this many flagged windows",
    "alerts.min_peak_severity": "... and a peak severity (score / threshold) of at least this",
    "alerts.recover_after_minutes": "normal scores this long after the last flag: recovered (unset: gap / 3)",
    "alerts.escalation_levels": "severities at which an incident escalates to major, then critical",
    "alerts.stale_after_hours": "no new scored window for this long: the asset's incidents close (\"no data\")",
    "alerts.stall_after_intervals": "no rows accepted for this many ingest intervals: the feed is stalled (0: never)",
    "alerts.alarm": "threshold (every window above it is flagged) or adaptive (only those that also stand out "
                    "from the asset's own score history)",
    "alerts.adaptive_windows": "adaptive: the mean log-score of this many latest windows ...",
    "alerts.adaptive_z": "adaptive: ... must exceed the history's mean by this many standard deviations",
    "alerts.adaptive_min_history": "adaptive: windows of history needed first (until then the threshold alone)",
    "webhook.url": "POST every alert as signed JSON here (or url_env: a variable holding the URL, a secret)",
    "webhook.secret_env": "environment variable holding the HMAC-SHA256 signing key",
    "webhook.secret_block": "or a Prefect Secret block holding it",
    "runner.kind": "where train and score run their tasks: default (this process) or dask (a Dask cluster, by asset)",
    "runner.address": "dask: \"\" for a local cluster on 127.0.0.1, or an existing scheduler's \"tcp://host:port\"",
    "runner.n_workers": "dask, local cluster: worker processes",
    "runner.threads_per_worker": "dask, local cluster: threads per worker (and torch threads per fit)",
    "runner.assets_per_task": "dask: assets per task (0: 4 tasks per worker thread)",
    "runner.dashboard": "dask, local cluster: serve its dashboard on http://127.0.0.1:8787",
    "schedule.ingest_every_s": "`aemon serve`: ingest the inbox this often",
    "schedule.score_every_s": "`aemon serve`: score new windows this often",
    "schedule.train_cron": "`aemon serve`: retrain (cron, in schedule.timezone)",
    "schedule.timezone": "zone of the schedule",
    "exclusions.rules": "machine-off rules such as \"motor_current < 0.1\"; any match keeps a reading out",
    "exclusions.intervals": "maintenance intervals: [{ start = 2026-01-05T08:00:00Z, end = ..., reason = \"...\" }]",
}

HEADER = f"""\
# aemon configuration, written by `aemon init`.
#
# Every value here is aemon's built-in default: this file loads to exactly the
# configuration aemon uses with no file at all. A file's [streams.*] tables replace the
# built-in streams, so the demo stream `{DEMO_NAME}` is spelt out below: keep it, change it,
# or delete it, and add your own streams next to it as [streams.<name>] tables (a stream
# names at least its sensors; every other setting has the default shown for `{DEMO_NAME}`,
# except tabular records, timestamp_column = "", which have their own: see the README).
# Commented lines show a default that is "unset" or left to a fallback; uncomment to set.
"""


def toml_value(value: Any) -> str:
    """A Python default as a TOML value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (str, Path)):
        return json.dumps(str(value))  # JSON's escapes are TOML's
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        pairs = ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items())
        return f"{{ {pairs} }}" if pairs else "{}"
    raise TypeError(f"no TOML form for {value!r}")


def _line(key: str, value: Any, note: str | None, commented: bool = False) -> list[str]:
    """A setting with its note; unset (None) or `commented`, as a comment."""
    lines = [f"# {note}"] if note else []
    if value is None:
        lines.append(f"# {key} =  (unset)")
    else:
        lines.append(f"{'# ' if commented else ''}{key} = {toml_value(value)}")
    return lines


def _table(name: str, items: Iterable[tuple[str, Any]], prefix: str, commented: Iterable[str] = ()) -> list[str]:
    hidden = set(commented)
    lines = ["", f"[{name}]"]
    for key, value in items:
        lines += _line(key, value, NOTES.get(f"{prefix}{key}"), commented=key in hidden)
    return lines


def _fields(settings: Any) -> list[tuple[str, Any]]:
    """(name, value) of a settings model or dataclass, in declaration order."""
    if dataclasses.is_dataclass(settings):
        return [(f.name, getattr(settings, f.name)) for f in dataclasses.fields(settings)]
    return [(name, getattr(settings, name)) for name in type(settings).model_fields]


def _detector_lines(stream: str, detectors: DetectorKinds) -> list[str]:
    """[detectors]: `kinds`, then the settings every kind shares and each kind's own, as
    comments: set in [detectors] a value applies to every kind, in [detectors.<kind>] to one."""
    kinds = list(detector_kinds())
    params = {kind: detector_params(detectors, kind) for kind in kinds}
    defaults = {kind: {**param_defaults(kind), **params[kind]} for kind in kinds}
    shared = [k for k in defaults[kinds[0]] if k != THRESHOLD_PARAM and all(k in defaults[c] for c in kinds)
              and all(defaults[c][k] == defaults[kinds[0]][k] for c in kinds)]
    lines = ["", f"[streams.{stream}.detectors]", f"# {NOTES['detectors.kinds']}",
             f"kinds = {toml_value(detectors.kinds)}",
             "# Settings of every kind (the detectors' defaults; uncomment to change them for all):"]
    for key in shared:
        lines += _line(key, defaults[kinds[0]][key], None, commented=True)
    for kind in kinds:
        own = [k for k in defaults[kind] if k not in shared and k != THRESHOLD_PARAM]
        lines += ["", f"# [streams.{stream}.detectors.{kind}]  (this kind only; overrides the shared settings)"]
        for key in own:
            lines += _line(key, defaults[kind][key], None, commented=True)
    return lines


def starter_config() -> str:
    """The text of a complete aemon.toml with the built-in defaults and the demo stream."""
    defaults = AemonConfig()
    lines = HEADER.splitlines()
    lines += ["", *_line("home", DEFAULT_HOME, NOTES["home"], commented=True)]
    lines += _line("tracking_uri", None, NOTES["tracking_uri"]) + _line("artifact_root", None, NOTES["artifact_root"])
    lines += ["# credentials from Prefect Secret blocks, VARIABLE = \"block-name\", read into the environment when",
              "# a command or flow starts (unset: the environment only); variables: " + ", ".join(SECRET_VARIABLES[:3]),
              "#   " + ", ".join(SECRET_VARIABLES[3:]),
              '# secrets = { AWS_SECRET_ACCESS_KEY = "aemon-s3-secret-key", PGPASSWORD = "aemon-postgres-password" }']
    warehouse: WarehouseSettings = defaults.warehouse_settings
    lines += _table("warehouse", _fields(warehouse), "warehouse.")
    lines += _table("webhook", _fields(defaults.webhook), "webhook.")
    lines += _table("runner", _fields(defaults.runner), "runner.")
    stream = defaults.streams[DEMO_NAME]
    assert stream == demo_stream(), "the built-in streams are the demo stream"
    tables = {"exclusions", "window", "detectors", "threshold", "train", "alerts", "schedule", "drift"}
    plain = [(k, v) for k, v in _fields(stream) if k not in tables]
    # only what the demo stream sets is written as a value; the rest are its defaults, shown
    set_here = {"sensors", "label_columns"}
    lines += _table(f"streams.{DEMO_NAME}", plain, "", commented=[k for k, _ in plain if k not in set_here])
    lines += _table(f"streams.{DEMO_NAME}.window", _fields(stream.window), "window.")
    lines += _detector_lines(DEMO_NAME, stream.detectors)
    for name in ("threshold", "train", "alerts", "schedule", "drift", "exclusions"):
        items = _fields(getattr(stream, name))
        lines += _table(f"streams.{DEMO_NAME}.{name}", items, f"{name}.")
    return "\n".join(lines) + "\n"


def write_starter(path: Path | None = None, *, force: bool = False) -> Path:
    """Write the starter file (default ./aemon.toml); an existing file is kept unless `force`."""
    from flows.locations import ConfigError

    target = Path(path) if path is not None else Path.cwd() / CONFIG_FILE
    if target.exists() and not force:
        raise ConfigError(f"{target} already exists; keep it, or run `aemon init --force` to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(starter_config(), encoding="utf-8")
    return target
