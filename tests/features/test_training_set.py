import numpy as np
import pytest

from features.errors import WindowError
from features.synthetic import SENSORS
from features.training_set import make_training_set
from features.windows import WindowSpec

SPEC = WindowSpec(size=20, stride=10)


def test_training_windows_avoid_labels_and_validation_follows_training(small_stream):
    frame = small_stream.readings
    data = make_training_set(frame, list(SENSORS), SPEC, label_columns=["label"])
    assert data.n_excluded_labeled > 0
    assert data.train.end.max() < data.val.start.min()
    for part in (data.train, data.val):
        for fault in small_stream.faults.itertuples():
            hit = (part.asset == fault.asset) & (part.start <= np.datetime64(fault.end)) & (
                part.end >= np.datetime64(fault.start))
            assert not hit.any()


def test_scaler_is_fitted_on_the_training_part_only(small_stream):
    frame = small_stream.readings
    data = make_training_set(frame, list(SENSORS), SPEC, label_columns=["label"], val_fraction=0.5)
    t0, t1 = frame["timestamp"].min(), frame["timestamp"].max()
    cutoff = t0 + (t1 - t0) * 0.5
    fit_rows = frame[(frame["timestamp"] < cutoff) & (frame["label"] == 0)]
    np.testing.assert_allclose(data.scaler.mean_, fit_rows[list(SENSORS)].mean().to_numpy())


def test_range_limits_and_too_little_data_is_explained(small_stream):
    frame = small_stream.readings
    end = frame["timestamp"].min() + (frame["timestamp"].max() - frame["timestamp"].min()) / 4
    data = make_training_set(frame, list(SENSORS), SPEC, end=end)
    assert data.val.end.max() <= np.datetime64(end)
    with pytest.raises(WindowError, match="training windows of normal data"):
        make_training_set(frame.head(100), list(SENSORS), SPEC)


def test_a_configured_column_missing_from_the_lake_is_named(small_stream):
    with pytest.raises(WindowError, match=r"readings lack columns \['oil_level'\]"):
        make_training_set(small_stream.readings, [*SENSORS, "oil_level"], SPEC)
