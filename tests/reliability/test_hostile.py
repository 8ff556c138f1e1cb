"""Hostile and broken input beyond ingestion: every setting malformed in turn, unknown
streams, degenerate training data, odd names. Each ends in one line naming the setting,
stream or sensor and what was expected, and a non-zero exit; never a traceback."""
from __future__ import annotations

import dataclasses
import json
import math
import re
import typing
from pathlib import Path

import annotated_types as at
import pytest
from pydantic import BaseModel

from flows.config import AemonConfig
from tests.reliability.cli_runs import one_line_error, run_cli

STREAM = "pumps"
BASE = {"streams": {STREAM: {"sensors": ["pressure", "flow"]}}}


# -- a TOML writer for the generated files (tomllib only reads) --------------------------------


@dataclasses.dataclass(frozen=True)
class Raw:
    """A value written as is: TOML the writer would not produce (a table where a number goes)."""

    text: str


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _value(value: object) -> str:
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


def to_toml(data: dict, prefix: tuple[str, ...] = ()) -> str:
    """Tables as [a.b] headers, everything else inline."""
    scalars = [f"{_key(k)} = {_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    lines = ([f"[{'.'.join(_key(p) for p in prefix)}]"] if prefix and scalars else []) + scalars
    text = "\n".join(lines) + ("\n" if lines else "")
    for k, v in data.items():
        if isinstance(v, dict):
            text += "\n" + to_toml(v, (*prefix, k))
    return text


def with_setting(path: tuple[str, ...], value: object) -> dict:
    """BASE with one setting replaced (or added)."""
    data = json.loads(json.dumps(BASE))
    table = data
    for part in path[:-1]:
        table = table.setdefault(part, {})
    table[path[-1]] = value
    return data


# -- the cases, generated from the configuration model ----------------------------------------


def _is_table(annotation: object) -> bool:
    return isinstance(annotation, type) and (issubclass(annotation, BaseModel) or dataclasses.is_dataclass(annotation))


def _fields(table: type) -> list[tuple[str, object, list]]:
    if issubclass(table, BaseModel):
        return [(info.alias or name, info.annotation, list(info.metadata)) for name, info in table.model_fields.items()]
    hints = typing.get_type_hints(table)
    return [(f.name, hints[f.name], []) for f in dataclasses.fields(table)]


def settings_tree(table: type = AemonConfig, prefix: tuple[str, ...] = ()):
    """(path, annotation, constraints, is_table) of every table and setting of the configuration."""
    yield prefix, table, [], True
    for key, annotation, metadata in _fields(table):
        path = (*prefix, key)
        args = typing.get_args(annotation)
        if _is_table(annotation):
            yield from settings_tree(annotation, path)
        elif typing.get_origin(annotation) is dict and args and _is_table(args[1]):
            yield from settings_tree(args[1], (*path, STREAM))
        else:
            yield path, annotation, metadata, False


def _base_type(annotation: object) -> object:
    """int for `int | None`, tuple for `tuple[str, ...]`, the annotation otherwise."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, type(int | None)) and len(args) == 1:
        return _base_type(args[0])
    return typing.get_origin(annotation) or annotation


def wrong_type(annotation: object) -> object | None:
    """A value of the wrong kind for a setting, or None where any value is taken."""
    base = _base_type(annotation)
    if base is typing.Any:
        return None
    if base in (int, float):
        return "many"
    if base is bool:
        return "maybe"
    if base in (tuple, dict, list):
        return Raw("true")
    return Raw("{ bogus = 1 }")  # a table where a string, path, time or name goes


def out_of_range(annotation: object, metadata: list) -> list[object]:
    """Values beyond a number setting's bounds: just past each declared bound, and for every
    real number NaN and infinity (which no bound check of the form `x < low` catches)."""
    base = _base_type(annotation)
    if base not in (int, float):
        return []
    values: list[object] = []
    for bound in metadata:
        if isinstance(bound, at.Gt):
            values.append(bound.gt)
        elif isinstance(bound, at.Ge):
            values.append(bound.ge - 1)
        elif isinstance(bound, at.Lt):
            values.append(bound.lt)
        elif isinstance(bound, at.Le):
            values.append(bound.le + 1)
    if base is float:
        values += [math.nan, math.inf, -math.inf]
    return values


def config_cases() -> list:
    cases = []
    for path, annotation, metadata, is_table in settings_tree():
        if is_table:
            cases.append(pytest.param(with_setting((*path, "bogus_setting"), 1), ".".join((*path, "bogus_setting")),
                                      "unknown setting", id=".".join((*path, "bogus_setting"))))
            if path:
                cases.append(pytest.param(with_setting(path, Raw("5")), ".".join(path), "",
                                          id=".".join(path) + "=5"))
            continue
        dotted = ".".join(path)
        wrong = wrong_type(annotation)
        if wrong is not None:
            cases.append(pytest.param(with_setting(path, wrong), dotted, "", id=f"{dotted}=wrong-type"))
        for value in out_of_range(annotation, metadata):
            cases.append(pytest.param(with_setting(path, value), dotted, "", id=f"{dotted}={value}"))
    return cases


# Values of the right type that no setting of that name takes: the checks behind the types.
SEMANTIC_CASES = [
    (("streams", STREAM, "detectors", "kinds"), ["mlp_ae", "forest"]),
    (("streams", STREAM, "detectors", "kinds"), []),
    (("streams", STREAM, "detectors", "epochs"), 0),
    (("streams", STREAM, "detectors", "mlp_ae", "batch_size"), 0),
    (("streams", STREAM, "detectors", "mlp_ae", "hidden"), [64, 0]),
    (("streams", STREAM, "detectors", "cnn_ae", "kernel_size"), 4),
    (("streams", STREAM, "detectors", "vae", "architecture"), "transformer"),
    (("streams", STREAM, "detectors", "vae", "score_method"), "vibes"),
    (("streams", STREAM, "detectors", "activation"), "sparkle"),
    (("streams", STREAM, "detectors", "dropout"), 1.0),
    (("streams", STREAM, "detectors", "device"), "quantum:0"),
    (("streams", STREAM, "detectors", "denoise"), "blur"),
    (("streams", STREAM, "detectors", "error_scaling"), "loud"),
    (("streams", STREAM, "detectors", "random_state"), -1),
    (("streams", STREAM, "detectors", "n_threads"), 0),
    (("streams", STREAM, "detectors", "n_threads"), "many"),
    (("streams", STREAM, "detectors", "progress"), "sometimes"),
    (("streams", STREAM, "window", "size"), 0),
    (("streams", STREAM, "window", "stride"), -3),
    (("streams", STREAM, "window", "max_gap_s"), 1.0),
    (("streams", STREAM, "threshold", "method"), "gut-feeling"),
    (("streams", STREAM, "threshold", "percentile"), 100.5),
    (("streams", STREAM, "threshold", "pot_risk"), 0.5),
    (("streams", STREAM, "alerts", "escalation_levels"), [0.5]),
    (("streams", STREAM, "schedule", "train_cron"), "every sunday"),
    (("streams", STREAM, "train", "start"), "the beginning"),
    (("streams", STREAM, "timezone"), "Mars/Olympus_Mons"),
    (("streams", STREAM, "layout"), "diagonal"),
    (("streams", STREAM, "duplicates"), "both"),
    (("streams", STREAM, "ignore_columns"), ["timestamp"]),
    (("streams", STREAM, "differenced"), ["torque"]),
    (("streams", STREAM, "exclusions", "rules"), ["pressure >>> 3"]),
    (("streams", STREAM, "exclusions", "intervals"), [{"start": "2026-01-02T00:00:00", "end": "2026-01-01T00:00:00"}]),
    (("streams", STREAM, "exclusions", "intervals"), [{"start": "2026-01-01T00:00:00"}]),
    (("streams",), 5),
    (("streams",), ["pumps"]),
    (("warehouse", "catalog"), "mysql:aemon"),
    (("warehouse", "maintain_cron"), "daily"),
    (("webhook", "url"), "ftp://alerts.example"),
    (("runner", "kind"), "spark"),
    (("runner", "address"), "scheduler:8786"),
    (("runner", "address"), "tcp://127.0.0.1:8786"),  # with kind "default": no scheduler is used
]


def semantic_cases() -> list:
    return [pytest.param(with_setting(path, value), ".".join(path), "", id=f"{'.'.join(path)}={value!r}")
            for path, value in SEMANTIC_CASES]


def names_setting(message: str, key: str) -> bool:
    """The message names the setting: its whole dotted path, or the table a check sits on
    (`streams.pumps.threshold: ...`) followed by the rest of the path's names."""
    parts = key.split(".")
    if key in message:
        return True
    for cut in range(len(parts) - 1, 0, -1):
        table = ".".join(parts[:cut])
        if f"{table}: " in message:
            rest = message.split(f"{table}: ", 1)[1]
            return all(part in rest for part in parts[cut:])
    return False


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.delenv("AEMON_CONFIG", raising=False)
    monkeypatch.delenv("AEMON_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home"


def write_config(path: Path, data: dict, home: Path) -> Path:
    path.write_text(to_toml({"home": home.as_posix(), **data}), encoding="utf-8")
    return path


@pytest.mark.parametrize("data, key, expected", config_cases() + semantic_cases())
def test_every_malformed_setting_is_one_line_naming_it(home, tmp_path, capsys, monkeypatch, data, key, expected):
    config = write_config(tmp_path / "aemon.toml", data, home)
    code, _, err = run_cli(capsys, monkeypatch, "quality", STREAM, "--config", str(config))
    message = one_line_error(err)
    assert code == 2
    assert message.startswith(f"error: {config}: ") and expected in message, message
    assert names_setting(message, key), (config.read_text(), message)


# The commands that read only the warehouse settings (no torch, no Prefect) check what they read.
WAREHOUSE_COMMANDS = [("sql", "SELECT 1"), ("warehouse", "attach"), ("warehouse", "maintain"), ("incidents", "list"),
                      ("status",)]


@pytest.mark.parametrize("command", WAREHOUSE_COMMANDS, ids=" ".join)
@pytest.mark.parametrize("text, named", [
    ("home = 5\n", "home: expected a folder path"),
    ("home = { a = 1 }\n", "home: expected a folder path"),
    ("warehouse = 5\n", "warehouse: expected a table of settings"),
    ("[warehouse]\nretries = -1\n", "warehouse.retries: Input should be greater than or equal to 0"),
    ("[warehouse]\nsnapshot_retention_days = nan\n", "warehouse.snapshot_retention_days: Input should be a finite"),
    ("[warehouse]\ncatalog = 'oracle:x'\n", "warehouse.catalog: 'oracle:x': expected 'sqlite:<path>'"),
    ("[warehouse]\nshelf = 1\n", "warehouse.shelf: unknown setting"),
], ids=["home-int", "home-table", "warehouse-int", "retries", "nan", "catalog", "unknown"])
def test_warehouse_commands_name_a_bad_setting(home, tmp_path, capsys, monkeypatch, command, text, named):
    config = tmp_path / "aemon.toml"
    config.write_text(text, encoding="utf-8")
    code, _, err = run_cli(capsys, monkeypatch, *command, "--config", str(config))
    assert code == 2 and one_line_error(err) .startswith(f"error: {config}: {named}"), err


@pytest.mark.parametrize("command", [("quality", STREAM), ("sql", "SELECT 1")], ids=" ".join)
def test_toml_syntax_error_names_the_file_and_line(home, tmp_path, capsys, monkeypatch, command):
    config = tmp_path / "aemon.toml"
    config.write_text('home = "x"\n\n[streams.pumps\nsensors = ["a"]\n', encoding="utf-8")
    code, _, err = run_cli(capsys, monkeypatch, *command, "--config", str(config))
    message = one_line_error(err)
    assert code == 2 and message.startswith(f"error: {config}: not valid TOML") and "line 3" in message, message


@pytest.mark.parametrize("command", [("quality", STREAM), ("sql", "SELECT 1"), ("models", "list")], ids=" ".join)
def test_missing_config_file_is_one_line(home, tmp_path, capsys, monkeypatch, command):
    missing = tmp_path / "nowhere" / "aemon.toml"
    code, _, err = run_cli(capsys, monkeypatch, *command, "--config", str(missing))
    assert code == 2 and one_line_error(err) == f"error: config file {missing} does not exist"


def test_missing_config_file_from_the_environment_is_one_line(home, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("AEMON_CONFIG", str(tmp_path / "gone.toml"))
    code, _, err = run_cli(capsys, monkeypatch, "quality", STREAM)
    assert code == 2 and one_line_error(err) == f"error: config file {tmp_path / 'gone.toml'} does not exist"


def test_config_file_that_is_a_folder_or_not_utf8_is_one_line(home, tmp_path, capsys, monkeypatch):
    folder = tmp_path / "conf.d"
    folder.mkdir()
    code, _, err = run_cli(capsys, monkeypatch, "quality", STREAM, "--config", str(folder))
    assert code == 2 and one_line_error(err).startswith(f"error: {folder}: "), err
    latin = tmp_path / "latin.toml"
    latin.write_bytes('[streams.pumps]\nsensors = ["Druck \xfc"]\n'.encode("latin-1"))
    code, _, err = run_cli(capsys, monkeypatch, "quality", STREAM, "--config", str(latin))
    assert code == 2 and one_line_error(err).startswith(f"error: {latin}: not valid TOML"), err


def test_empty_config_file_means_the_defaults(home, tmp_path, capsys, monkeypatch):
    """An empty file is valid TOML with no settings: the built-in defaults and demo stream."""
    config = tmp_path / "aemon.toml"
    config.write_text("", encoding="utf-8")
    code, _, err = run_cli(capsys, monkeypatch, "quality", "pumps", "--config", str(config))
    assert code == 2 and one_line_error(err).startswith("error: stream 'pumps' has no readings yet"), err
    code, _, err = run_cli(capsys, monkeypatch, "quality", "valves", "--config", str(config))
    assert code == 2 and one_line_error(err) == ("error: stream 'valves' is not configured; "
                                                 "configured streams: ['pumps']")


# -- degenerate training data: train and score work with a sane result, or stop in one line ----

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from aemodels.thresholds import ThresholdRule  # noqa: E402
from features.errors import FeaturesError, SchemaError, WindowError  # noqa: E402
from features.windows import WindowSpec  # noqa: E402

SPEC = WindowSpec(size=20, stride=10)
FAST = {"epochs": 2, "n_threads": 1, "progress": False}


def sensor_frame(n: int = 1500, b=None) -> pd.DataFrame:
    """Two sensors, one asset, a reading a minute; `b` replaces sensor b (a value or n -> values)."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"timestamp": pd.date_range("2026-01-01", periods=n, freq="60s"), "asset": "p1",
                          "a": np.sin(np.arange(n) / 20) + rng.normal(0, 0.05, n), "b": rng.normal(size=n)})
    if b is not None:
        frame["b"] = b(n) if callable(b) else b
    return frame


def train(frame: pd.DataFrame):
    from monitoring.models.fitting import fit_candidate, prepare_training

    data = prepare_training(frame, stream="s", sensors=["a", "b"], spec=SPEC, train_stride=2)
    return data, fit_candidate(data, "mlp_ae", FAST, ThresholdRule())


@pytest.fixture(scope="module")
def trained():
    return train(sensor_frame())


@pytest.mark.parametrize("name, b", [
    ("constant", 5.0),
    ("denormal", lambda n: np.random.default_rng(1).normal(size=n) * 1e-308),
    ("float32-max", lambda n: np.random.default_rng(1).normal(size=n) * 1e38),
    ("huge-constant-offset", lambda n: 1e300 + np.zeros(n)),
])
def test_degenerate_sensors_train_to_a_finite_threshold(name, b):
    """A zero-variance sensor keeps scale 1 (it counts only when it moves); tiny and huge
    but finite readings scale like any other."""
    data, candidate = train(sensor_frame(b=b))
    assert np.isfinite(data.train.X).all() and np.isfinite(data.calibration.X).all()
    assert np.isfinite(candidate.bundle.threshold) and candidate.bundle.threshold > 0
    assert all(np.isfinite(v) for v in candidate.bundle.thresholds.values())
    assert np.isfinite(data.scaler.scale_).all() and (data.scaler.scale_ > 0).all()
    if name in ("constant", "huge-constant-offset"):
        assert data.scaler.scale_[1] == 1.0


@pytest.mark.parametrize("b, message", [
    (np.nan, "sensors ['b'] have no finite readings in the"),
    (lambda n: np.random.default_rng(1).normal(1e308, 1e306, n), "sensors ['b']: readings up to 1.0"),
    (lambda n: np.full(n, -1e308), "sensors ['b']: readings up to 1e+308 in magnitude overflow"),
    (lambda n: np.where(np.arange(n) % 2, 1e308, -1e308), "sensors ['b']: readings up to 1e+308"),
], ids=["all-nan", "1e308", "-1e308", "alternating-1e308"])
def test_unscalable_sensors_stop_training_naming_the_sensor(b, message):
    with pytest.raises(SchemaError) as raised:
        train(sensor_frame(b=b))
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_fewer_readings_than_one_window_stops_in_one_line():
    with pytest.raises(WindowError, match=r"only 0 training windows .*need >= 20 \(window size 20"):
        train(sensor_frame(n=15))


@pytest.mark.parametrize("value", [1e308, -1e308, 3.5e38, 1e30])
def test_an_extreme_reading_scores_finite_and_flags_only_its_windows(trained, value):
    """Readings beyond float32 after scaling used to stop the scoring of the whole batch (or
    score inf); they are clipped at Z_LIMIT standard deviations: flagged, finite."""
    _, candidate = trained
    frame = sensor_frame(n=400)
    frame.loc[200:205, "b"] = value
    result = candidate.bundle.score_readings(frame[["timestamp", "asset", "a", "b"]])
    assert np.isfinite(result["score"]).all() and np.isfinite(result["severity"]).all()
    hit = (result["window_start"] <= frame["timestamp"][205]) & (result["window_end"] >= frame["timestamp"][200])
    assert result.loc[hit, "is_anomaly"].all()
    assert result.loc[~hit, "is_anomaly"].mean() < 0.2


def test_training_on_too_few_readings_is_one_line_from_the_cli(aemon_home, prefect_harness, capsys, monkeypatch,
                                                              small_stream):
    """End to end: `aemon train` on a stream holding less than one window of readings."""
    from flows.config import load_config
    from monitoring.store.ingestion import ingest_file

    home, config = aemon_home
    cfg = load_config(config)
    small_stream.readings.head(10).to_csv(home / "few.csv", index=False)
    ingest_file(cfg.warehouse, "pumps", cfg.stream("pumps").stream_schema(), home / "few.csv")
    code, _, err = run_cli(capsys, monkeypatch, "train", "pumps", "--config", str(config))
    assert "Traceback" not in err
    (message,) = [line for line in err.splitlines() if line.startswith("error: ")]  # after Prefect's run log
    assert code == 2 and "training windows" in message and "window size 30" in message, message
    assert issubclass(WindowError, FeaturesError)


# -- names: unicode and spaces -----------------------------------------------------------------


def test_asset_ids_with_unicode_and_spaces_are_data(aemon_home, small_stream):
    from flows.config import load_config
    from monitoring.store.connection import connect
    from monitoring.store.ingestion import ingest_file

    home, config = aemon_home
    cfg = load_config(config)
    frame = small_stream.readings.head(200).copy()
    frame["asset"] = np.where(np.arange(len(frame)) % 2, "pump 1", "Pumpe-ü (Halle 2)")
    frame.to_csv(home / "u.csv", index=False, encoding="utf-8")
    result = ingest_file(cfg.warehouse, "pumps", cfg.stream("pumps").stream_schema(), home / "u.csv")
    assert (result.status, result.rows_accepted) == ("ok", 200), result
    with connect(cfg.warehouse) as con:
        assets = sorted(r[0] for r in con.execute('SELECT DISTINCT asset FROM lake."pumps"').fetchall())
    assert assets == ["Pumpe-ü (Halle 2)", "pump 1"]


def test_sensor_names_with_unicode_and_spaces_are_mapped_or_refused(home, tmp_path, capsys, monkeypatch):
    """A sensor name is an identifier (letters, digits, '_', '-'); a header such as
    `Druck (bar) ü` is mapped to one with column_aliases, else refused in one line."""
    config = tmp_path / "aemon.toml"
    config.write_text('[streams.pumps]\nsensors = ["Druck (bar) ü"]\n', encoding="utf-8")
    code, _, err = run_cli(capsys, monkeypatch, "quality", "pumps", "--config", str(config))
    assert code == 2
    assert one_line_error(err) == (f"error: {config}: streams.pumps: column name 'Druck (bar) ü' cannot be a lake "
                                   "column; use letters, digits, '_' or '-' (map it with column_aliases), and not "
                                   "timestamp, asset or date")
    config.write_text('[streams.pumps]\nsensors = ["druck_bar"]\ncolumn_aliases = { "Druck (bar) ü" = "druck_bar" }\n',
                      encoding="utf-8")
    from flows.config import load_config

    assert load_config(config).stream("pumps").stream_schema().column_aliases == (("Druck (bar) ü", "druck_bar"),)


@pytest.mark.parametrize("name", ["pümpe", "pump 1", "pumps.v2", "Ωmega"])
def test_stream_names_with_unicode_or_spaces_are_refused_in_one_line(home, tmp_path, capsys, monkeypatch, name):
    """The rule: a stream name is ASCII letters, digits, '_' and '-' (it names a folder, a SQL
    table and an MLflow model)."""
    config = tmp_path / "aemon.toml"
    config.write_text(f'[streams."{name}"]\nsensors = ["a"]\n', encoding="utf-8")
    code, _, err = run_cli(capsys, monkeypatch, "quality", name, "--config", str(config))
    assert code == 2 and one_line_error(err) == (f"error: {config}: streams: stream name {name!r}: use letters, "
                                                 "digits, '_' and '-' (max 64)")


# -- unknown stream names, on every command that takes one ------------------------------------

STREAM_COMMANDS = [("ingest", "{s}"), ("quality", "{s}"), ("evaluate", "{s}"), ("train", "{s}"), ("score", "{s}"),
                   ("drift", "{s}"), ("replay", "{file}", "--stream", "{s}"), ("models", "compare", "{s}"),
                   ("models", "promote", "{s}", "1"), ("models", "rollback", "{s}"),
                   ("threshold", "recalibrate", "{s}")]


@pytest.mark.parametrize("command", STREAM_COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_unknown_stream_is_one_line_on_every_command(home, tmp_path, capsys, monkeypatch, command):
    config = write_config(tmp_path / "aemon.toml", BASE, home)
    (tmp_path / "rec.csv").write_text("timestamp,asset,pressure,flow\n")
    args = [a.format(s="valves", file=tmp_path / "rec.csv") for a in command]
    code, _, err = run_cli(capsys, monkeypatch, *args, "--config", str(config))
    assert code == 2
    assert one_line_error(err) == "error: stream 'valves' is not configured; configured streams: ['pumps']"


def test_unknown_stream_of_incidents_list_is_one_line(aemon_home, capsys, monkeypatch):
    """`incidents list STREAM` lists a stream's incidents, also of a stream no longer in the
    config; a name that is neither configured nor in the warehouse is a mistake."""
    from flows.config import load_config
    from monitoring.store.connection import connect

    _, config = aemon_home
    with connect(load_config(config).warehouse):
        pass  # the warehouse exists, without incidents
    code, out, _ = run_cli(capsys, monkeypatch, "incidents", "list", "pumps", "--config", str(config))
    assert code == 0 and "no active incidents" in out
    code, _, err = run_cli(capsys, monkeypatch, "incidents", "list", "valves", "--config", str(config))
    assert code == 2 and one_line_error(err) == ("error: stream 'valves' is not configured and has no incidents; "
                                                 "configured streams: ['pumps']")


def test_unknown_stream_of_status_is_one_line(aemon_home, capsys, monkeypatch):
    """`status STREAM` of a configured stream with nothing ingested says so; a name neither
    configured nor in the warehouse is a mistake, and a warehouse not created yet is named."""
    from flows.config import load_config
    from monitoring.store.connection import connect

    _, config = aemon_home
    code, _, err = run_cli(capsys, monkeypatch, "status", "--config", str(config))
    assert code == 2 and one_line_error(err).startswith("error: no warehouse at ")
    with connect(load_config(config).warehouse):
        pass  # the warehouse exists, empty
    code, out, _ = run_cli(capsys, monkeypatch, "status", "pumps", "--config", str(config))
    assert code == 0 and "nothing ingested yet: `aemon ingest pumps`" in out
    code, _, err = run_cli(capsys, monkeypatch, "status", "valves", "--config", str(config))
    assert code == 2 and one_line_error(err) == ("error: stream 'valves' is not configured and the warehouse holds "
                                                 "nothing of it; configured streams: ['pumps']")


def test_a_config_asking_for_an_enormous_network_loads_without_building_it(tmp_path):
    """The detector arguments are checked at load on shapes only (torch's meta device): a
    network of 8e10 weights is not allocated to check a config file."""
    from flows.config import load_config

    config = tmp_path / "aemon.toml"
    config.write_text('[streams.pumps]\nsensors = ["a", "b"]\n[streams.pumps.detectors.mlp_ae]\n'
                      'hidden = [200000, 200000]\n', encoding="utf-8")
    assert load_config(config).stream("pumps").detectors.mlp_ae.hidden == (200000, 200000)
