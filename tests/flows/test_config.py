import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from aemodels.detector import DEFAULT_KINDS, detector_class, detector_kinds, param_defaults
from aemodels.thresholds import ThresholdRule
from flows.config import (
    STREAM_DETECTOR_DEFAULTS,
    AemonConfig,
    ConfigError,
    DriftSettings,
    ThresholdSettings,
    detector_params,
    detectors_model,
    load_config,
)
from monitoring.evaluation.drift_detection import DriftRule


def test_defaults_work_with_no_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AEMON_HOME", raising=False)
    monkeypatch.delenv("AEMON_CONFIG", raising=False)
    config = load_config()
    assert config.home == (tmp_path / ".aemon").resolve()
    assert config.warehouse.catalog == f"sqlite:{config.home / 'warehouse.sqlite'}"
    assert config.warehouse.data_path == str(config.home / "warehouse")
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


def test_a_configuration_loaded_without_detectors_imports_no_torch_and_checks_the_rest(tmp_path):
    """`aemon ingest` loads the configuration with detectors=False: no detector code (torch)
    is imported, the [detectors] tables stay as written, every other setting is checked."""
    import json

    path = tmp_path / "aemon.toml"
    path.write_text('[streams.pumps]\nsensors = ["a"]\n[streams.pumps.detectors]\nkinds = ["nonsense"]\n'
                    '[streams.pumps.window]\nsize = 7\n')
    code = ("import json, sys; from flows.config import load_config; "
            f"c = load_config({str(path)!r}, detectors=False).stream('pumps'); "
            "print(json.dumps([c.detectors, c.window.size, 'torch' in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(done.stdout) == [{"kinds": ["nonsense"]}, 7, False]
    with pytest.raises(ConfigError, match=r"streams\.pumps\.detectors\.kinds: .*unknown detector kinds"):
        load_config(path)
    path.write_text('[streams.pumps]\nsensors = ["a"]\n[streams.pumps.window]\nsize = -1\n')
    with pytest.raises(ConfigError, match=r"streams\.pumps\.window"):
        load_config(path, detectors=False)


def test_detector_settings_mirror_each_detector_constructor():
    settings = detectors_model()()
    assert settings.kinds == DEFAULT_KINDS == ("mlp_ae", "cnn_ae", "vae")  # the autoencoders by default
    for kind in detector_kinds():
        own = getattr(settings, kind).model_dump()
        defaults = param_defaults(kind)
        assert set(own) == set(defaults) - {"threshold"}  # the stream's [threshold] table
        for key, value in own.items():
            assert value == STREAM_DETECTOR_DEFAULTS.get(key, defaults[key]), (kind, key)
        # nothing written: the detector's own defaults, but where a stream's differ
        assert detector_params(settings, kind) == STREAM_DETECTOR_DEFAULTS
        detector_class(kind)(**detector_params(settings, kind))


def test_shared_detector_settings_apply_to_every_kind_unless_overridden(tmp_path):
    kind = detector_kinds()[0]
    path = tmp_path / "aemon.toml"
    path.write_text(f"[streams.pumps]\nsensors = ['a']\n[streams.pumps.detectors]\nepochs = 5\nn_threads = 1\n"
                    f"[streams.pumps.detectors.{kind}]\nepochs = 7\n")
    detectors = load_config(path).stream("pumps").detectors
    assert detector_params(detectors, kind) == {**STREAM_DETECTOR_DEFAULTS, "epochs": 7, "n_threads": 1}
    for other in detector_kinds()[1:]:
        assert detector_params(detectors, other) == {**STREAM_DETECTOR_DEFAULTS, "epochs": 5, "n_threads": 1}


@pytest.mark.parametrize("text, message", [
    ("[streams.pumps]\nsensors = ['a']\n[streams.pumps.window]\nsize = 0\n", "streams.pumps.window: window size=0"),
    ("[streams.pumps]\nsensors = ['a']\nwindw = 3\n", "streams.pumps.windw: unknown setting"),
    ("[streams.'bad name']\nsensors = ['a']\n", "stream name 'bad name'"),
    ("[streams.pumps]\nsensors = ['a']\n[streams.pumps.detectors.mlp_ae]\nbeta = 1\n",
     "streams.pumps.detectors.mlp_ae.beta: unknown setting"),
    ("[streams.pumps]\nsensors = ['a']\n[streams.pumps.detectors.mlp_ae]\nepochs = 'many'\n",
     "streams.pumps.detectors.mlp_ae.epochs"),
    ("[streams.pumps]\nsensors = ['a']\n[streams.pumps.detectors]\nkinds = ['svm']\n",
     "streams.pumps.detectors.kinds: unknown detector kinds ['svm']"),
    ("[streams.pumps]\nsensors = ['a']\n[streams.pumps.detectors.mlp_ae]\nthreshold = 90\n",
     "streams.pumps.detectors.mlp_ae.threshold: unknown setting"),
    ("[streams.pumps]\nsensors = ['a']\n[streams.pumps.threshold]\nmethod = 'max'\n",
     "streams.pumps.threshold.method"),
    ("[streams.pumps]\nsensors = ['a']\n[streams.pumps.threshold]\npercentile = 120\n",
     "streams.pumps.threshold: threshold percentile=120.0, must be in (0, 100]"),
    ("[streams.pumps]\nsensors = ['a']\n[streams.pumps.threshold]\nmethod = 'pot'\npot_risk = 0.05\n",
     "streams.pumps.threshold: threshold pot_risk=0.05, must be in (0, 0.02)"),
    ("[streams.pumps]\nsensors = ['a']\n[streams.pumps.threshold]\nmethod = 'conformal'\nconformal_alpha = 5\n",
     "streams.pumps.threshold: threshold conformal_alpha=5.0, must be in (0, 1)"),
    ("[streams.pumps]\nsensors = ['a']\n[streams.pumps.train]\ncalibration_folds = 2\n",
     "streams.pumps.train.calibration_folds: calibration_folds=2, expected 1"),
    ("[streams.pumps]\nsensors = ['a']\nasset_id = 'p1'\nasset_column = 'pump'\n", "set exactly one of asset_column"),
    ("home = \n", "not valid TOML"),
    ("[streams.pumps]\nsensors = ['a']\n[streams.pumps.schedule]\ntrain_cron = 'every sunday'\n",
     "streams.pumps.schedule.train_cron"),
    ("[streams.pumps]\nsensors = ['a']\n[streams.pumps.drift]\nhold_checks = 0\n",
     "streams.pumps.drift.hold_checks: Input should be greater than or equal to 1"),
    ("[streams.pumps]\nsensors = ['a']\n[streams.pumps.drift]\nalpha = 1.5\n", "streams.pumps.drift.alpha"),
    ("[streams.pumps]\nsensors = ['a']\n[streams.pumps.drift]\nretrain = 'sometimes'\n",
     "streams.pumps.drift.retrain"),
    ("[streams.pumps]\nsensors = ['a']\n[streams.pumps.drift]\nwindow_hours = 6\n",
     "streams.pumps.drift.window_hours: unknown setting"),
])
def test_bad_settings_are_named(tmp_path, text, message):
    path = tmp_path / "aemon.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape("aemon.toml")) as info:
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
    assert stream.train.end is not None and stream.detectors.mlp_ae.latent == 8


@pytest.mark.parametrize("text, message", [
    ("[streams.s]\nsensors = ['a']\n[streams.s.exclusions]\nrules = ['a < one']\n",
     "streams.s.exclusions.rules: exclusion rule 'a < one' is not understood"),
    ("[streams.s]\nsensors = ['a']\ntimestamp_column = ''\n[streams.s.window]\nsize = 30\n",
     "tabular records have no time order, set window.size = 1"),
    ("[streams.s]\nsensors = ['a']\ntimestamp_column = ''\nasset_id = 'x'\n[streams.s.window]\nstride = 5\n",
     "window.stride == 5 and train.stride == 1; every record is scored and trained on"),
    ("[streams.s]\nsensors = ['a']\nid_column = 'id'\n", "id_column = 'id' is for tabular records"),
    ("[streams.s]\nsensors = ['a']\ntimestamp_column = ''\nasset_id = 'x'\nid_column = 'a'\n",
     "id_column 'a' is also a sensor or label"),
    ("[streams.s]\nsensors = ['a']\nlayout = 'diagonal'\n", "streams.s.layout"),
    ("[streams.s]\nsensors = ['a']\ntimestamp_format = '%Y-%Q'\n", "timestamp_format '%Y-%Q' is not a strptime format"),
    ("[streams.s]\nsensors = ['a']\n[streams.s.exclusions]\n"
     "intervals = [{start = 2026-01-02T00:00:00, end = 2026-01-01T00:00:00}]\n",
     "streams.s.exclusions.intervals.0: exclusion interval ends (2026-01-01 00:00:00) before it starts"),
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
        "intervals = [{start = 2026-01-01T00:00:00, end = 2026-01-02T02:00:00+02:00, reason = 'overhaul'}]\n"
    )
    config = load_config(path)
    stream = config.stream("skab")
    assert config.inbox("skab") == Path("/data/exports/skab")
    assert stream.stream_schema().column_aliases == (("Current A", "Current"),)
    exclusions = stream.exclusions.build()
    frame = pd.DataFrame({"timestamp": pd.to_datetime(["2026-01-01 12:00", "2026-01-03 00:00"]), "asset": "x",
                          "Current": [1.0, 0.05], "Pressure": [1.0, 1.0]})
    assert exclusions.mask(frame).tolist() == [True, True]
    assert exclusions.intervals[0].end == pd.Timestamp("2026-01-02T00:00:00")  # +02:00 read as UTC


def test_every_readme_config_example_loads(tmp_path):
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    examples = [block.split("```", 1)[0] for block in readme.split("```toml\n")[1:]]
    assert len(examples) >= 3
    for i, example in enumerate(examples):
        path = tmp_path / f"example{i}.toml"
        path.write_text(example)
        assert load_config(path).streams


def test_a_stream_setting_overrides_the_stream_default(tmp_path):
    path = tmp_path / "aemon.toml"
    path.write_text("[streams.pumps]\nsensors = ['a']\n[streams.pumps.detectors.vae]\nerror_scaling = 'none'\n")
    detectors = load_config(path).stream("pumps").detectors
    assert detector_params(detectors, "vae") == {"error_scaling": "none"}
    assert detector_params(detectors, "mlp_ae") == {"error_scaling": "sensor"}


def test_the_threshold_table_is_the_threshold_rule():
    """[threshold] holds ThresholdRule's fields with its defaults (plus what recalibration
    reads), and gives training the rule itself."""
    settings = ThresholdSettings()
    assert set(ThresholdSettings.model_fields) - {"recalibrate_days"} == {f.name for f in fields(ThresholdRule)}
    assert settings.rule() == ThresholdRule()
    assert ThresholdSettings(method="pot", pot_risk=1e-4).rule() == ThresholdRule(method="pot", pot_risk=1e-4)
    assert (ThresholdSettings(method="conformal", conformal_alpha=0.05).rule()
            == ThresholdRule(method="conformal", conformal_alpha=0.05))


def test_a_tabular_stream_gets_the_tabular_defaults_unless_it_sets_them(tmp_path):
    from monitoring.models.defaults import TABULAR_DETECTOR_DEFAULTS, TABULAR_KINDS, TABULAR_SPEC, TABULAR_THRESHOLD

    path = tmp_path / "aemon.toml"
    path.write_text("[streams.r]\nsensors = ['a', 'b']\ntimestamp_column = ''\nid_column = 'id'\nasset_id = 'x'\n"
                    "[streams.s]\nsensors = ['a', 'b']\ntimestamp_column = ''\nasset_id = 'x'\n"
                    "threshold = { percentile = 95.0 }\nalerts = { min_windows = 2 }\n"
                    "[streams.s.detectors]\nerror_scaling = 'sensor'\nkinds = ['vae']\n")
    config = load_config(path)
    r, s = config.stream("r"), config.stream("s")
    assert r.window == TABULAR_SPEC and r.train.stride == 1
    assert r.threshold.rule() == TABULAR_THRESHOLD
    assert (r.alerts.min_windows, r.alerts.merge_gap_minutes, r.alerts.min_peak_severity) == (1, 0.0, 1.0)
    assert detector_params(r.detectors, "mlp_ae") == {**STREAM_DETECTOR_DEFAULTS, **TABULAR_DETECTOR_DEFAULTS}
    assert r.detectors.kinds == TABULAR_KINDS == ("knn",)
    assert r.stream_schema().id_column == "id" and r.stream_schema().lake_columns[:3] == ["timestamp", "asset", "id"]
    assert s.threshold.percentile == 95.0 and s.alerts.min_windows == 2
    assert detector_params(s.detectors, "vae")["error_scaling"] == "sensor" and s.detectors.kinds == ("vae",)


def test_the_drift_table_is_the_drift_rule():
    """[drift] holds DriftRule's fields with its defaults, plus whether to retrain and how often."""
    settings = DriftSettings()
    assert set(DriftSettings.model_fields) - {"retrain", "every_s"} == {f.name for f in fields(DriftRule)}
    assert settings.rule() == DriftRule() and settings.retrain and settings.every_s == 3600
    assert DriftSettings(psi_threshold=0.3, hold_checks=5).rule() == DriftRule(psi_threshold=0.3, hold_checks=5)


def test_aemon_init_writes_a_file_that_loads_to_exactly_the_built_in_defaults(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from features.synthetic import SENSORS
    from flows.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AEMON_HOME", raising=False)
    monkeypatch.delenv("AEMON_CONFIG", raising=False)
    built_in = load_config()  # no file yet
    result = CliRunner().invoke(app, ["init"])
    assert result.exit_code == 0, result.output
    path = tmp_path / "aemon.toml"
    # the message names the tables to add as they are written (not eaten as rich markup)
    assert "add your streams as [streams.<name>] tables" in " ".join(result.output.split())
    text = path.read_text()
    written = load_config(path)
    assert written == built_in and written.model_dump() == built_in.model_dump()
    for kind in detector_kinds():  # the same arguments, and a shared [detectors] setting still reaches every kind
        assert detector_params(written.stream("pumps").detectors, kind) == \
            detector_params(built_in.stream("pumps").detectors, kind)
    assert "[streams.pumps]" in text and all(f'"{s}"' in text for s in SENSORS) and 'label_columns = ["label"]' in text
    for table in ("window", "detectors", "threshold", "train", "alerts", "schedule", "drift"):
        assert f"[streams.pumps.{table}]" in text
    assert "\n[webhook]\n" in text and "\n[runner]\n" in text
    for name, settings in [("", AemonConfig()), *((f"{t}.", getattr(built_in.stream("pumps"), t))
                                                   for t in ("threshold", "train", "alerts", "schedule", "drift")),
                           ("webhook.", built_in.webhook), ("runner.", built_in.runner)]:
        for key in type(settings).model_fields:  # every setting is in the file, set or commented
            if key not in ("streams", "warehouse_settings", "webhook", "runner"):
                assert re.search(rf"^(# )?{key} =", text, re.M), f"{name}{key}"
    # users extend it: a stream added next to pumps keeps pumps; an uncommented shared setting reaches every kind
    assert text.count("\n# epochs = 60\n") == 1
    path.write_text(text.replace("\n# epochs = 60\n", "\nepochs = 5\n") + '\n[streams.valves]\nsensors = ["a", "b"]\n')
    extended = load_config(path)
    assert set(extended.streams) == {"pumps", "valves"}
    assert {detector_params(extended.stream("pumps").detectors, kind)["epochs"] for kind in detector_kinds()} == {5}


def test_aemon_init_keeps_an_existing_file_unless_forced(tmp_path):
    from typer.testing import CliRunner

    from flows.cli import app

    path = tmp_path / "conf" / "aemon.toml"
    assert CliRunner().invoke(app, ["init", "--config", str(path)]).exit_code == 0
    path.write_text('home = "mine"\n')
    refused = CliRunner().invoke(app, ["init", "--config", str(path)])
    assert refused.exit_code == 2 and f"{path} already exists" in refused.output and "--force" in refused.output
    assert path.read_text() == 'home = "mine"\n'
    assert CliRunner().invoke(app, ["init", "--config", str(path), "--force"]).exit_code == 0
    assert "[streams.pumps]" in path.read_text()


def test_the_readme_lists_the_demo_sensors_and_shows_aemon_init():
    from features.synthetic import SENSORS

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Using it on your own data", 1)[1].split("\n## ", 1)[0]
    assert all(f"`{sensor}`" in section for sensor in SENSORS)
    assert "\naemon init " in section and "--force" in section


def test_the_alarm_rule_comes_from_the_alerts_table_and_tabular_records_refuse_adaptive(tmp_path):
    from monitoring.alerting.adaptive import AlarmRule

    path = tmp_path / "aemon.toml"
    path.write_text("[streams.s]\nsensors = ['a']\n[streams.s.alerts]\nalarm = 'adaptive'\nadaptive_z = 3.5\n"
                    "[streams.t]\nsensors = ['a']\n")
    config = load_config(path)
    assert config.stream("s").alerts.alarm_rule() == AlarmRule("adaptive", z=3.5)
    assert config.stream("t").alerts.alarm_rule() == AlarmRule()
    path.write_text("[streams.r]\nsensors = ['a']\ntimestamp_column = ''\nasset_id = 'x'\n"
                    "[streams.r.alerts]\nalarm = 'adaptive'\n")
    with pytest.raises(ConfigError, match="tabular records have no time order"):
        load_config(path)
    path.write_text("[streams.s]\nsensors = ['a']\n[streams.s.alerts]\nalarm = 'sometimes'\n")
    with pytest.raises(ConfigError, match="alarm"):
        load_config(path)
