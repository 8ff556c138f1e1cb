import inspect
from pathlib import Path

import pytest

from aemodels.detector import AutoencoderDetector
from flows.config import AemonConfig, ConfigError, DetectorSettings, load_config


def test_defaults_work_with_no_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AEMON_HOME", raising=False)
    monkeypatch.delenv("AEMON_CONFIG", raising=False)
    config = load_config()
    assert config.home == (tmp_path / ".aemon").resolve()
    assert config.db_path == config.home / "warehouse.duckdb"
    assert config.mlflow_tracking_uri == f"sqlite:///{config.home / 'mlflow.db'}"
    assert config.mlflow_artifact_root == (config.home / "mlartifacts").as_uri()
    assert config.inbox("pumps") == config.home / "inbox" / "pumps"
    assert "pumps" in config.streams
    assert not (tmp_path / ".aemon").exists()  # loading the config writes nothing


def test_home_from_environment_and_relative_to_the_file(tmp_path, monkeypatch):
    monkeypatch.delenv("AEMON_HOME", raising=False)
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "aemon.toml"
    path.write_text('home = "data"\n')
    assert load_config(path).home == tmp_path / "conf" / "data"
    monkeypatch.setenv("AEMON_HOME", str(tmp_path / "elsewhere"))
    assert load_config(path).home == tmp_path / "elsewhere"


def test_detector_settings_mirror_the_detector_defaults():
    signature = inspect.signature(AutoencoderDetector.__init__)
    defaults = {k: p.default for k, p in signature.parameters.items() if k != "self"}
    settings = DetectorSettings().model_dump()
    assert set(settings) == set(defaults)
    for key, value in defaults.items():
        assert settings[key] == (tuple(value) if isinstance(value, list) else value), key


@pytest.mark.parametrize("text, message", [
    ("[streams.pumps]\nsensors = ['a']\n[streams.pumps.window]\nsize = 0\n", "streams.pumps.window: window size=0"),
    ("[streams.pumps]\nsensors = ['a']\nwindw = 3\n", "streams.pumps.windw: unknown setting"),
    ("[streams.'bad name']\nsensors = ['a']\n", "stream name 'bad name'"),
    ("[streams.pumps]\nsensors = ['a']\n[streams.pumps.detector]\nactivation = 'tanh'\n",
     "streams.pumps.detector.activation"),
    ("[streams.pumps]\nsensors = ['a']\nasset_id = 'p1'\nasset_column = 'pump'\n", "set exactly one of asset_column"),
    ("home = \n", "not valid TOML"),
    ("[streams.pumps]\nsensors = ['a']\n[streams.pumps.schedule]\ntrain_cron = 'every sunday'\n",
     "streams.pumps.schedule.train_cron"),
])
def test_bad_settings_are_named(tmp_path, text, message):
    path = tmp_path / "aemon.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="aemon.toml") as info:
        load_config(path)
    assert message in str(info.value)


def test_unknown_stream_lists_the_configured_ones():
    with pytest.raises(ConfigError, match=r"stream 'valves' is not configured; configured streams: \['pumps'\]"):
        AemonConfig().stream("valves")


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_the_readme_example_config_loads(tmp_path):
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    example = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "aemon.toml"
    path.write_text(example)
    stream = load_config(path).stream("line3")
    assert stream.timestamp_column == "datetime" and stream.window.size == 30
    assert stream.train.end is not None and stream.detector.latent == 8


@pytest.mark.parametrize("text, message", [
    ("[streams.s]\nsensors = ['a']\n[streams.s.exclusions]\nrules = ['a < one']\n",
     "streams.s.exclusions.rules: exclusion rule 'a < one' is not understood"),
    ("[streams.s]\nsensors = ['a']\ntimestamp_column = ''\n", "tabular records have no time order, set window.size = 1"),
    ("[streams.s]\nsensors = ['a']\nlayout = 'diagonal'\n", "streams.s.layout"),
    ("[streams.s]\nsensors = ['a b']\n", "column name 'a b' cannot be a lake column"),
    ("[streams.s]\nsensors = ['a']\ntimezone = 'Mars/Olympus'\n", "timezone 'Mars/Olympus' is not a known time zone"),
    ("[streams.s]\nsensors = ['a']\nduplicates = 'both'\n", "streams.s.duplicates"),
])
def test_bad_stream_settings_are_named(tmp_path, text, message):
    path = tmp_path / "aemon.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert message in str(info.value)


def test_stream_with_exclusions_inbox_and_aliases(tmp_path):
    import pandas as pd

    path = tmp_path / "aemon.toml"
    path.write_text(
        "[streams.skab]\nsensors = ['Current', 'Pressure']\ntimestamp_column = 'datetime'\n"
        "asset_id = '{file}'\ninbox = '/data/exports/skab'\ncolumn_aliases = {'Current A' = 'Current'}\n"
        "[streams.skab.exclusions]\nrules = ['Current < 0.1']\n"
        "intervals = [{start = 2026-01-01T00:00:00, end = 2026-01-02T00:00:00, reason = 'overhaul'}]\n"
    )
    config = load_config(path)
    stream = config.stream("skab")
    assert config.inbox("skab") == Path("/data/exports/skab")
    assert stream.schema().column_aliases == (("Current A", "Current"),)
    exclusions = stream.exclusions.build()
    frame = pd.DataFrame({"timestamp": pd.to_datetime(["2026-01-01 12:00", "2026-01-03 00:00"]), "asset": "x",
                          "Current": [1.0, 0.05], "Pressure": [1.0, 1.0]})
    assert exclusions.mask(frame).tolist() == [True, True]


def test_every_readme_config_example_loads(tmp_path):
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    examples = [block.split("```", 1)[0] for block in readme.split("```toml\n")[1:]]
    assert len(examples) >= 3
    for i, example in enumerate(examples):
        path = tmp_path / f"example{i}.toml"
        path.write_text(example)
        assert load_config(path).streams
