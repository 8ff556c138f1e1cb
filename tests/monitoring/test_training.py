"""Choosing training, calibration and evaluation windows: time order, labels, exclusions."""
import re

import numpy as np
import pandas as pd
import pytest

from features.exclusions import EXCLUDED
from features.synthetic import SENSORS
from features.windows import WindowSpec
from monitoring.errors import TrainingDataError
from monitoring.models.fitting import prepare_training

SPEC = WindowSpec(size=20, stride=10)


def prepare(frame, **kwargs):
    return prepare_training(frame, stream="pumps", sensors=list(SENSORS), spec=SPEC, label_columns=["label"],
                            train_stride=2, **kwargs)


def overlaps(ws, asset, start, end):
    return (ws.asset == asset) & (ws.start <= np.datetime64(end, "ns")) & (ws.end >= np.datetime64(start, "ns"))


def test_split_is_in_time_order(small_stream):
    data = prepare(small_stream.readings)
    assert data.train.end.max() < data.calibration.start.min()
    assert data.calibration.end.max() < np.datetime64(data.evaluation.holdout_start, "ns")
    assert data.params["train.data_hash"] == data.data_hash and len(data.data_hash) == 16


class MachineOff:
    """Any object with mask(frame) works as `exclusions` (features.exclusions.Exclusions does)."""

    def __init__(self, asset, start, end):
        self.asset, self.start, self.end = asset, pd.Timestamp(start), pd.Timestamp(end)

    def mask(self, frame):
        return (frame["asset"] == self.asset) & frame["timestamp"].between(self.start, self.end)


def test_excluded_intervals_and_rules_are_never_normal_data(small_stream):
    frame = small_stream.readings
    asset = frame["asset"].iloc[0]
    t0 = frame["timestamp"].min()
    incident = (t0 + pd.Timedelta(hours=10), t0 + pd.Timedelta(hours=14))
    off = (t0 + pd.Timedelta(hours=30), t0 + pd.Timedelta(hours=31))
    base = prepare(frame)
    data = prepare(frame, exclusions=MachineOff(asset, *off),
                   excluded_intervals=pd.DataFrame({"asset": [asset], "start": [incident[0]], "end": [incident[1]]}))
    for start, end in (incident, off):
        assert overlaps(base.train, asset, start, end).any()
        assert not overlaps(data.train, asset, start, end).any()
    assert len(data.train) < len(base.train)
    marked = data.evaluation.readings
    assert marked.loc[marked[EXCLUDED] > 0, "asset"].unique().tolist() == [asset]
    assert data.params["train.n_excluded_intervals"] == 1


def test_too_short_a_range_is_explained(small_stream):
    frame = small_stream.readings
    short = frame[frame["timestamp"] < frame["timestamp"].min() + pd.Timedelta(hours=3)]
    with pytest.raises((TrainingDataError, ValueError), match="windows"):
        prepare(short)


def test_labeled_windows_count_as_anomalous_even_inside_a_past_incident(small_stream):
    from aemodels.thresholds import ThresholdRule
    from monitoring.models.fitting import evaluate_bundle, fit_candidate

    frame = small_stream.readings
    faults = small_stream.faults
    fast = {"epochs": 2, "n_threads": 1, "hidden": (16,), "latent": 4}
    plain = prepare(frame)
    candidate = fit_candidate(plain, "mlp_ae", fast, ThresholdRule())
    # the faults already raised incidents: excluded from normal data, still labeled anomalies
    incidents = faults[["asset", "start", "end"]]
    excluded = prepare(frame, excluded_intervals=incidents)
    before = evaluate_bundle(candidate.bundle, plain.evaluation)
    after = evaluate_bundle(candidate.bundle, excluded.evaluation)
    assert before.anomalous.sum() > 0
    assert after.anomalous.sum() == before.anomalous.sum()


def test_differenced_sensors_train_and_score_as_changes(small_stream, tmp_path):
    from aemodels.thresholds import ThresholdRule
    from features.differencing import difference
    from monitoring.models.bundle import ModelBundle
    from monitoring.models.fitting import fit_bundle

    frame = small_stream.readings
    slow = [SENSORS[0]]
    data = prepare(frame, differenced=slow)
    assert data.differenced == slow and data.params["differenced"] == slow[0]
    plain = prepare(frame)
    changed = difference(frame, slow)
    # the scaler saw the changes, not the levels, of the slow sensor
    assert data.scaler.mean_[0] == pytest.approx(0.0, abs=changed[slow[0]].std())
    assert data.scaler.scale_[0] < plain.scaler.scale_[0]
    bundle, _ = fit_bundle(data, "mlp_ae", {"epochs": 2, "n_threads": 1}, ThresholdRule())
    assert bundle.differenced == slow
    # the bundle differences raw readings itself, like the training did
    raw = bundle.score_readings(frame[bundle.input_columns()])
    windows, _ = bundle.windows(frame)
    by_hand = data.scaler.transform(changed[list(SENSORS)].to_numpy())
    assert np.allclose(windows.X[0], by_hand[frame.index[(frame["asset"] == windows.asset[0])]][:SPEC.size], atol=1e-5)
    loaded = ModelBundle.load(bundle.save(tmp_path / "bundle"))
    assert loaded.differenced == slow
    pd.testing.assert_frame_equal(loaded.score_readings(frame[bundle.input_columns()]), raw)


def test_no_holdout_calibrates_on_every_validation_window(small_stream):
    with_holdout = prepare(small_stream.readings)
    without = prepare(small_stream.readings, holdout_fraction=0.0)
    assert len(without.calibration) > len(with_holdout.calibration)
    assert without.calibration.end.max() > with_holdout.calibration.end.max()  # up to the range's end
    with pytest.raises(TrainingDataError, match=re.escape("holdout_fraction=1.0")):
        prepare(small_stream.readings, holdout_fraction=1.0)
