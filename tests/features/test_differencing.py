"""Slow sensors seen as changes between readings, per asset in time order."""
import numpy as np
import pandas as pd
import pytest

from features.differencing import difference
from features.errors import SchemaError


def test_difference_is_per_asset_in_time_order_and_leaves_other_sensors():
    frame = pd.DataFrame({
        "timestamp": pd.to_datetime(["2026-01-01 00:02", "2026-01-01 00:00", "2026-01-01 00:01",
                                     "2026-01-01 00:00", "2026-01-01 00:01"]),
        "asset": ["a", "a", "a", "b", "b"],
        "temp": [13.0, 10.0, 11.5, 50.0, 49.0],
        "flow": [1.0, 2.0, 3.0, 4.0, 5.0],
    })
    out = difference(frame, ["temp"])
    assert out["temp"].tolist() == [1.5, 0.0, 1.5, 0.0, -1.0]  # each asset's first reading: 0
    assert out["flow"].tolist() == frame["flow"].tolist()
    assert frame["temp"].tolist() == [13.0, 10.0, 11.5, 50.0, 49.0]  # the input is not changed
    assert difference(frame, []) is frame


def test_difference_names_a_missing_sensor():
    frame = pd.DataFrame({"timestamp": pd.to_datetime(["2026-01-01"]), "asset": ["a"], "flow": [1.0]})
    with pytest.raises(SchemaError, match=r"\['temp'\] are not in the readings"):
        difference(frame, ["temp"])


def test_a_drifting_sensor_differenced_is_stationary():
    t = pd.date_range("2026-01-01", periods=600, freq="s")
    drift = np.linspace(20.0, 80.0, 600)
    frame = pd.DataFrame({"timestamp": t, "asset": "a", "temp": drift})
    changes = difference(frame, ["temp"])["temp"].to_numpy()[1:]
    np.testing.assert_allclose(changes, 60.0 / 599)
