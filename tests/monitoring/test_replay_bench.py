"""The benchmarks' replay mode on a small synthetic stream: scoring in chunks of data time,
retraining on the cadence through the promotion gate, past incidents kept out of training,
and nothing learned from readings after the chunk being scored."""
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from aemodels.thresholds import ThresholdRule
from features.readers import StreamSchema
from features.synthetic import SENSORS, SyntheticSpec, generate_stream
from monitoring.errors import BenchSettingError
from monitoring.evaluation.benchmarks import BenchSettings, _File, _spec, with_assignments
from monitoring.evaluation.replay_bench import ReplaySettings, _retrain, replay_file
from monitoring.models.fitting import fit_bundle, prepare_training
from monitoring.store.connection import Warehouse, connect
from monitoring.store.ingestion import ingest_file
from monitoring.store.readings import read_readings
from monitoring.store.results import past_incidents, read_scores

SETTINGS = BenchSettings(kinds=("mlp_ae",), window=10, seeds=(0,), ensemble=False,
                         detector_params={**BenchSettings().detector_params, "epochs": 20, "hidden": [32],
                                          "latent": 3})
HOUR = 3600.0
# one asset, 3 days every 2 minutes, faults after the first 40 %
SPEC = SyntheticSpec(n_assets=1, days=3.0, interval_s=120, fault_start_fraction=0.4, seed=5)
TRAIN_ROWS = 720  # the first day train the first champion
REPLAY = ReplaySettings(score_every_s=4 * HOUR, train_every_s=12 * HOUR, merge_gap_s=0.5 * HOUR,
                        recalibrate_span_s=12 * HOUR)


def _ingested(tmp_path, name: str) -> tuple[Warehouse, _File]:
    frame = generate_stream(SPEC).readings
    path = tmp_path / "pumps.csv"
    if not path.exists():
        frame.to_csv(path, index=False)
    warehouse = Warehouse.at(tmp_path / name)
    ingest_file(warehouse, "pumps", StreamSchema(sensors=tuple(SENSORS), label_columns=("label",)), path)
    with connect(warehouse) as con:
        readings = read_readings(con, "pumps").sort_values("timestamp").reset_index(drop=True)
    return warehouse, _File("pump-01", readings, TRAIN_ROWS, _spec(readings, SETTINGS))


def _replay(tmp_path, name: str, replay: ReplaySettings, settings: BenchSettings = SETTINGS):
    warehouse, file = _ingested(tmp_path, name)
    return (replay_file(warehouse, "pumps", file, list(SENSORS), settings, replay, "mlp_ae", 0), warehouse,
            file.readings)


def _thresholds(warehouse: Warehouse, version: int) -> set[float]:
    with connect(warehouse) as con:
        return set(read_scores(con, "pumps", "replay-mlp_ae", version, "pump-01")["threshold"])


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    return _replay(tmp_path_factory.mktemp("replay"), "a", REPLAY)


def test_retrains_fire_on_the_cadence_in_data_time(replayed):
    result, _, readings = replayed
    t0 = readings["timestamp"].iloc[0]
    retrains = [e for e in result.events if e.action == "retrain"]
    # 24 h (when the first champion is trained), 36 h, 48 h, 60 h after the first reading (72 h: the end)
    assert [(e.at - t0) / pd.Timedelta(hours=1) for e in retrains] == [24, 36, 48, 60]
    assert all(e.version > 0 for e in retrains), [e.reason for e in retrains]
    # chunks end every 4 hours of data time and at the end of the file
    hours = [(c.until - t0) / pd.Timedelta(hours=1) for c in result.chunks]
    assert hours == [24, 28, 32, 36, 40, 44, 48, 52, 56, 60, 64, 68, pytest.approx(72, abs=0.05)]


def test_nothing_is_learned_or_scored_after_the_chunk(replayed):
    result, _, _ = replayed
    for chunk in result.chunks:
        assert chunk.last_window_end is None or chunk.last_window_end <= chunk.until
    for event in result.events:
        assert event.data_end is not None and event.data_end <= event.at
        # the candidate is first used by the chunk after its training time
        later = [c for c in result.chunks if c.until > event.at]
        earlier = [c for c in result.chunks if c.until <= event.at]
        assert all(c.version != event.version for c in earlier)
        if event.promoted:
            assert later[0].version == event.version


def test_the_gate_decides_and_a_refused_candidate_never_scores(replayed):
    result, _, _ = replayed
    retrains = [e for e in result.events if e.action == "retrain"]
    refused = [e for e in retrains if not e.promoted]
    assert refused, [e.reason for e in retrains]
    assert all("does not beat champion" in e.reason for e in refused)
    used = {c.version for c in result.chunks}
    assert not used & {e.version for e in refused}
    assert used == {1, *(e.version for e in retrains if e.promoted)}


def test_past_incidents_are_kept_out_of_training(replayed):
    result, warehouse, _ = replayed
    incidents = past_incidents(warehouse, "pumps")
    assert len(incidents) > 0
    later = [e for e in result.events if e.action == "retrain" and e.n_incidents > 0]
    assert later and all(e.n_excluded_windows > 0 for e in later)
    # the retrains only knew the incidents that had started by then
    for event in later:
        assert event.n_incidents <= int((incidents["start"] <= event.at).sum())


def test_the_scoring_chunk_changes_no_flag(tmp_path, replayed):
    result, _, _ = replayed
    coarse, _, _ = _replay(tmp_path, "b", replace(REPLAY, score_every_s=12 * HOUR))
    assert len(coarse.chunks) < len(result.chunks)
    np.testing.assert_array_equal(coarse.alarms, result.alarms)
    assert [(e.at, e.promoted) for e in coarse.events] == [(e.at, e.promoted) for e in result.events]


def test_calibration_folds_reach_the_first_champion_and_every_retrain(tmp_path, replayed):
    """`--set calibration_folds=3` in a replay: the first champion and each retrained
    candidate are cross-fitted, as the stream's training would fit them."""
    folded = replace(SETTINGS, calibration_folds=3)
    _, plain_warehouse, _ = replayed
    warehouse, file = _ingested(tmp_path, "folded")
    result = replay_file(warehouse, "pumps", file, list(SENSORS), folded, replace(REPLAY, train_every_s=0.0),
                         "mlp_ae", 0)
    assert {c.version for c in result.chunks} == {1} and not result.events
    # the first champion: the one-shot training part, cross-fitted over 3 folds
    first = prepare_training(file.readings.iloc[:TRAIN_ROWS], stream="pumps", sensors=list(SENSORS), spec=file.spec,
                             val_fraction=folded.val_fraction, holdout_fraction=0.0, train_stride=1)
    expected, _ = fit_bundle(first, "mlp_ae", folded.params_of("mlp_ae", 0), folded.threshold, 3)
    (threshold,) = _thresholds(warehouse, 1)
    assert threshold == pytest.approx(expected.threshold, rel=1e-9)
    assert threshold != pytest.approx(next(iter(_thresholds(plain_warehouse, 1))), rel=1e-3)
    # a retrain (here at 36 h of data) fits its candidate the same way
    now = file.readings["timestamp"].iloc[0] + pd.Timedelta(hours=36)
    seen = file.readings[file.readings["timestamp"] <= now][["timestamp", "asset", *SENSORS]]
    candidates = {}
    for settings in (SETTINGS, folded):
        event, bundle = _retrain(seen, now, "pumps", file, list(SENSORS), settings, REPLAY, "mlp_ae",
                                 settings.params_of("mlp_ae", 0), [], None, expected, 1, 2)
        assert event.version == 2 and bundle is not None, event.reason
        candidates[settings.calibration_folds] = bundle.threshold
    assert candidates[3] != pytest.approx(candidates[1], rel=1e-3)


def test_a_retrain_whose_threshold_rule_cannot_be_met_fails_and_the_champion_stays(tmp_path):
    """A conformal rule the first model's calibration windows meet (stride 1, no gate holdout)
    but a retrain's fewer ones (stride 2, half the validation part held out for the gate)
    cannot: each retrain fails with the rule's reason, as a failed training run does, and the
    replay flags what a replay without retrains flags."""
    strict = replace(SETTINGS, threshold=ThresholdRule(method="conformal", conformal_alpha=0.02))
    result, _, _ = _replay(tmp_path, "strict", REPLAY, strict)
    retrains = [e for e in result.events if e.action == "retrain"]
    assert len(retrains) == 4
    for event in retrains:
        assert (event.version, event.promoted) == (0, False)
        assert event.reason.startswith("a conformal threshold for alpha=0.02 at confidence=0.9 needs at least 114 "
                                       "calibration scores; got ")
    assert {c.version for c in result.chunks} == {1}
    never, _, _ = _replay(tmp_path, "never", replace(REPLAY, train_every_s=0.0), strict)
    np.testing.assert_array_equal(result.alarms, never.alarms)


def test_bad_replay_settings_are_one_named_line():
    with pytest.raises(BenchSettingError, match=r"replay.score_every_s=0.0, expected > 0"):
        ReplaySettings(score_every_s=0.0).validate()
    with pytest.raises(BenchSettingError, match="no such bench setting"):
        with_assignments(ReplaySettings(), ["train_every=5"])
    assert with_assignments(ReplaySettings(), ["train_every_s=300"]).train_every_s == 300.0


def test_cli_reports_both_modes_side_by_side(tmp_path, monkeypatch):
    """`aemon bench skab --mode both` on one real SKAB file (read in place through a symlink)."""
    import json
    from pathlib import Path

    from typer.testing import CliRunner

    from flows.cli import app

    data = Path(__file__).resolve().parents[3] / "shared" / "data" / "skab"
    (tmp_path / "skab" / "valve1").mkdir(parents=True)
    (tmp_path / "skab" / "valve1" / "1.csv").symlink_to(data / "valve1" / "1.csv")
    monkeypatch.setenv("AEMON_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("AEMON_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    args = ["bench", "skab", "--data", str(tmp_path / "skab"), "--json", "--kinds", "mlp_ae", "--seeds", "0",
            "--set", "detector_params.epochs=5"]
    result = CliRunner().invoke(app, [*args, "--mode", "both", "--set", "replay.train_every_s=500"])
    assert result.exit_code == 0, result.output
    one_shot, replayed = (json.loads(line) for line in result.stdout.splitlines())
    assert (one_shot["mode"], replayed["mode"]) == ("one-shot", "replay")
    assert replayed["retrains"] == 2 and replayed["rows"] == one_shot["rows"]  # at 500 s and 1000 s of data
    if replayed["retrains_promoted"] == 0:  # the first champion is the one-shot model
        assert replayed["f1"] == one_shot["f1"]
    bad = CliRunner().invoke(app, [*args, "--mode", "replay", "--set", "replay.score_every_s=0"])
    assert bad.exit_code == 2 and "replay.score_every_s=0.0, expected > 0" in bad.output
    # a threshold rule the first model's calibration windows cannot meet stops the replay naming the file
    failed = CliRunner().invoke(app, [*args, "--mode", "replay", "--set", "threshold.method=conformal"])
    assert failed.exit_code != 0 and str(failed.exception).startswith("threshold on valve1-1 (seed 0): a conformal")
    bad = CliRunner().invoke(app, [*args, "--mode", "live"])
    assert bad.exit_code == 2 and "--mode 'live': expected one of one-shot, replay, both" in bad.output
