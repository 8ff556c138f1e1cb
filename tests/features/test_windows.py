import numpy as np
import pandas as pd
import pytest

from features.errors import WindowError
from features.scaling import StandardScaler
from features.windows import WindowSpec, make_windows, window_frame, window_starts


def grid(n, start="2026-01-01T00:00:00", step_s=60):
    return (pd.Timestamp(start) + pd.to_timedelta(np.arange(n) * step_s, unit="s")).to_numpy("datetime64[ns]")


def test_windows_hold_consecutive_rows_in_time_order():
    values = np.arange(20 * 3, dtype=float).reshape(20, 3)
    X, starts = make_windows(values, grid(20), WindowSpec(size=5, stride=2))
    assert X.shape == (len(starts), 5, 3) and X.dtype == np.float32
    assert list(starts) == [0, 2, 4, 6, 8, 10, 12, 14]
    np.testing.assert_array_equal(X[1], values[2:7])


def test_window_starts_sit_on_the_absolute_grid_whatever_the_first_row():
    spec = WindowSpec(size=4, stride=3)
    ts = grid(30)
    full = ts[window_starts(ts, spec)]
    later = ts[7:]
    partial = later[window_starts(later, spec)]
    assert set(partial) <= set(full)
    assert set(full[full >= later[0]]) == set(partial)


def test_no_window_spans_a_gap():
    ts = np.concatenate([grid(10), grid(10, start="2026-01-01T01:00:00")])
    values = np.zeros((20, 1))
    _, starts = make_windows(values, ts, WindowSpec(size=4, stride=1))
    assert len(starts) == 2 * (10 - 4 + 1)
    assert all(start + 3 < 10 or start >= 10 for start in starts)


def test_too_short_series_gives_no_window():
    X, starts = make_windows(np.zeros((3, 2)), grid(3), WindowSpec(size=5, stride=1))
    assert X.shape == (0, 5, 2) and len(starts) == 0


def test_duplicate_timestamps_are_refused():
    ts = grid(6)
    ts[3] = ts[2]
    with pytest.raises(WindowError, match="strictly increasing"):
        window_starts(ts, WindowSpec(size=2, stride=1))


@pytest.mark.parametrize("kwargs, message", [
    ({"size": 0}, "size=0"), ({"stride": 0}, "stride=0"), ({"interval_s": 0}, "interval_s=0"),
    ({"interval_s": 60, "max_gap_s": 30}, "max_gap_s=30"),
])
def test_bad_window_spec_names_the_setting(kwargs, message):
    with pytest.raises(WindowError, match=message):
        WindowSpec(**kwargs)


def test_window_frame_keeps_assets_apart():
    frame = pd.DataFrame({
        "timestamp": np.concatenate([grid(12), grid(12)]),
        "asset": ["a"] * 12 + ["b"] * 12,
        "x": np.concatenate([np.zeros(12), np.ones(12)]),
    })
    ws = window_frame(frame, ["x"], WindowSpec(size=6, stride=3))
    assert len(ws) == 6
    for asset, value in (("a", 0.0), ("b", 1.0)):
        assert (ws.X[ws.asset == asset] == value).all()
    np.testing.assert_array_equal(ws.end - ws.start, np.full(6, np.timedelta64(5 * 60, "s")))


def test_scaler_round_trips_and_standardises(rng):
    values = rng.normal([10, -3, 0], [2, 0.5, 0.0], size=(500, 3))
    scaler = StandardScaler().fit(values, ["a", "b", "c"])
    z = scaler.transform(values)
    np.testing.assert_allclose(z[:, :2].mean(axis=0), 0, atol=1e-9)
    np.testing.assert_allclose(z[:, :2].std(axis=0), 1, atol=1e-9)
    assert np.isfinite(z).all()  # the constant sensor keeps scale 1
    again = StandardScaler.from_dict(scaler.to_dict())
    np.testing.assert_array_equal(again.transform(values), z)


def test_sub_second_grid_cuts_one_window_per_stride():
    spec = WindowSpec(size=10, stride=10, interval_s=0.1)
    ts = pd.Timestamp("2026-01-01").to_datetime64() + np.arange(1000) * np.timedelta64(100, "ms")
    starts = window_starts(ts, spec)
    assert len(starts) == 100 and set(np.diff(starts)) == {10}
