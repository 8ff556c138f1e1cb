import numpy as np
import pandas as pd

from features.grid import align_to_grid
from features.quality import quality_report
from features.windows import WindowSpec, window_frame


def test_readings_snap_to_the_grid_and_short_gaps_fill():
    t = pd.to_datetime(["2026-01-01 00:00:00.4", "2026-01-01 00:01:00", "2026-01-01 00:01:59.7",
                        "2026-01-01 00:04:00", "2026-01-01 00:10:00"], format="ISO8601").to_numpy()
    values = np.array([[0.0], [1.0], [2.0], [4.0], [10.0]])
    grid, out = align_to_grid(t, values, interval_s=60, gap_limit_s=150)
    minutes = ((grid - grid[0]) / np.timedelta64(60, "s")).tolist()
    assert minutes == [0, 1, 2, 3, 4, 10]  # 2 -> 4 is within tolerance (filled), 4 -> 10 is not
    assert out[:, 0].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 10.0]


def test_no_window_spans_a_gap_longer_than_the_tolerance():
    ts = list(pd.date_range("2026-01-01", periods=10, freq="min")) + \
        list(pd.date_range("2026-01-01 00:30", periods=10, freq="min"))
    jitter = pd.to_timedelta(np.tile([0, 2, -3, 1, 0], 4), unit="s")
    frame = pd.DataFrame({"timestamp": pd.DatetimeIndex(ts) + jitter, "asset": "p1", "x": np.arange(20.0)})
    ws = window_frame(frame, ["x"], WindowSpec(size=5, stride=1, interval_s=60, max_gap_s=120))
    assert len(ws) == 12
    assert all((e - s) == np.timedelta64(240, "s") for s, e in zip(ws.start, ws.end, strict=True))
    assert not any(s < np.datetime64("2026-01-01T00:30") < e for s, e in zip(ws.start, ws.end, strict=True))


def test_quality_report_finds_known_defects():
    ts = pd.date_range("2026-01-01", periods=200, freq="min")
    keep = np.ones(200, dtype=bool)
    keep[50:60] = False  # one 11-minute gap: 10 missing readings
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "timestamp": ts, "asset": "p1",
        "good": rng.normal(size=200),
        "stuck": np.where(np.arange(200) < 150, 5.0, rng.normal(size=200)),
        "counter": np.arange(200.0),
    })[keep]
    report = quality_report(frame, ["good", "stuck", "counter"], interval_s=60, gap_limit_s=90,
                            n_duplicates=3, quarantined={"good": 2}).set_index("sensor")
    assert report.loc["good", "missing_pct"] == 5.0 and report.loc["good", "n_gaps"] == 1
    assert report.loc["good", "largest_gap_s"] == 660.0 and report.loc["good", "interval_s"] == 60.0
    assert report.loc["good", "n_quarantined"] == 2 and report.loc["good", "n_duplicates"] == 3
    assert report.loc["stuck", "flatline_pct"] == round(100 * 140 / 190, 3)
    assert report.loc["counter", "monotonic"] == "increasing" and pd.isna(report.loc["good", "monotonic"])
    assert report.loc["counter", "min_value"] == 0.0 and report.loc["counter", "max_value"] == 199.0
    assert report.loc["good", "grade"] == "medium"
    assert "1 gap splits the series (largest 660 s)" in report.loc["good", "advice"]
    assert report.loc["stuck", "grade"] == "low" and "flatline" in report.loc["stuck", "advice"]
    assert report.loc["counter", "grade"] == "low" and "counter" in report.loc["counter", "advice"]
    assert "at most" not in report.loc["good", "advice"]  # 10 readings missing: no tolerance to suggest
    # a logger that drops a reading now and then: each missing one splits the series at the
    # default tolerance (1.5 intervals); the advice names the tolerance that fills them
    jitter = frame.iloc[:50].drop(index=frame.index[[5, 17, 30, 31]])  # 3 gaps: 1, 1 and 2 readings missing
    shown = quality_report(jitter, ["good"], 60, 90).set_index("sensor").loc["good", "advice"]
    assert shown == ("8.0% of readings missing; 3 gaps split the series (largest 180 s); no window spans a gap; "
                     "3 of them are at most 180 s (one or two readings missing): window.max_gap_s = 180 fills such "
                     "gaps by interpolation"), shown
    clean = quality_report(frame.iloc[:50], ["good"], 60, 90).set_index("sensor")
    assert clean.loc["good", "grade"] == "high" and clean.loc["good", "advice"] == "no issues found"
