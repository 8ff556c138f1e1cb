"""Alarm states from stored window flags (causal) and the pooled evaluation on labels."""
import numpy as np
import pandas as pd
import pytest

from monitoring.evaluation.labeled import evaluate_alarms, point_alarms
from monitoring.evaluation.metrics import PointCounts
from monitoring.store.connection import Warehouse, connect
from monitoring.store.results import latest_window_flags, write_window_results

T0 = pd.Timestamp("2026-01-01")


def minutes(*values):
    return pd.DatetimeIndex([T0 + pd.Timedelta(minutes=v) for v in values])


def test_a_flagged_window_never_flags_readings_before_it_ends():
    readings = minutes(*range(10))
    # windows ending at minutes 3 (flagged), 5 (clear), 7 (flagged)
    alarms = point_alarms(readings, minutes(3, 5, 7), [True, False, True])
    assert alarms.tolist() == [False, False, False, True, True, False, False, True, True, True]


def test_alarm_state_follows_the_latest_window_whatever_the_order_given():
    readings = minutes(0, 4, 6, 9)
    ends, flags = minutes(7, 3, 5), [True, True, False]
    assert point_alarms(readings, ends, flags).tolist() == [False, True, False, True]
    assert point_alarms(readings, ends[:0], []).tolist() == [False] * 4  # nothing scored: no alarm


def test_a_window_ending_between_readings_takes_effect_at_the_next_reading():
    readings = minutes(0, 10, 20)
    assert point_alarms(readings, [T0 + pd.Timedelta(minutes=10, seconds=1)], [True]).tolist() == [False, False, True]


def test_readings_and_windows_in_different_time_units():
    readings = np.array(["2026-01-01T00:00:00", "2026-01-01T00:01:00", "2026-01-01T00:02:00"], dtype="datetime64[us]")
    ends = np.array(["2026-01-01T00:01:00"], dtype="datetime64[ns]")
    assert point_alarms(readings, ends, [True]).tolist() == [False, True, True]
    assert point_alarms(readings.astype("datetime64[s]"), ends, [True]).tolist() == [False, True, True]


def test_unsorted_readings_are_refused():
    with pytest.raises(ValueError, match="sorted"):
        point_alarms(minutes(2, 1), minutes(1), [True])


def test_evaluate_alarms_pools_assets():
    ts = minutes(*range(8))
    frame = pd.concat([
        pd.DataFrame({"asset": "a", "timestamp": ts, "labeled": [0, 0, 1, 1, 1, 0, 0, 0],
                      "alarm": [0, 0, 0, 1, 1, 1, 0, 0]}),
        pd.DataFrame({"asset": "b", "timestamp": ts, "labeled": [0] * 8, "alarm": [0, 1, 0, 0, 0, 0, 0, 0]}),
    ]).astype({"labeled": bool, "alarm": bool})
    result = evaluate_alarms(frame)
    # a: tp 3, 4; fp 5; fn 2; tn 0, 1, 6, 7. b: fp 1, tn 7 rows
    assert result.points == PointCounts(tp=2, fp=2, fn=1, tn=11)
    assert result.adjusted == PointCounts(tp=3, fp=2, fn=0, tn=11)
    assert (result.event_counts.tp, result.event_counts.fp, result.event_counts.fn) == (1, 1, 0)
    assert result.n_alarms == 2 and result.n_assets == 2 and result.n_rows == 16
    assert result.events["detected"].tolist() == [True]
    metrics = result.metrics()
    assert metrics["mean_delay_s"] == 60.0 and metrics["mean_forewarning_s"] == 60.0
    # NAB: window a rows 2-4 (width 3) found at row 3: S(-(4 - 3 + 1) / 3) / S(-1); b's onset at
    # row 1 has no window before it: -0.11
    position = -2 / 3
    tp_score = (2 / (1 + np.exp(5 * position)) - 1) / (2 / (1 + np.exp(-5)) - 1)
    assert metrics["nab_standard"] == pytest.approx(100 * (tp_score - 0.11 + 1) / 2)


def scored_windows(asset, ends, flags, excluded=None):
    ends = minutes(*ends)
    return pd.DataFrame({
        "asset": asset, "window_start": ends - pd.Timedelta(minutes=2), "window_end": ends, "score": 1.0,
        "threshold": 0.5, "is_anomaly": flags, "severity": 2.0, "top_sensors": "a", "contributions": "{}",
        "excluded": excluded if excluded is not None else [False] * len(flags),
    })


def test_latest_window_flags_take_each_windows_latest_scoring(tmp_path):


    with connect(Warehouse.at(tmp_path / "w")) as con:
        write_window_results(con, "s", scored_windows("p1", [3, 4, 5, 6], [True] * 4), "s-detector", 1)
        # a retrained version rescored windows ending at 5 and 6 later: it clears them
        write_window_results(con, "s", scored_windows("p1", [5, 6], [False, False]), "s-detector", 2)
        write_window_results(con, "s", scored_windows("p2", [4], [True], excluded=[True]), "s-detector", 1)
        latest = latest_window_flags(con, "s")
        only_v1 = latest_window_flags(con, "s", version=1)
        from_5 = latest_window_flags(con, "s", start=T0 + pd.Timedelta(minutes=5))
    p1 = latest[latest["asset"] == "p1"]
    assert p1["flagged"].tolist() == [True, True, False, False] and p1["model_version"].tolist() == [1, 1, 2, 2]
    assert latest[latest["asset"] == "p2"]["flagged"].tolist() == [False]  # excluded: never flagged
    assert only_v1[only_v1["asset"] == "p1"]["flagged"].tolist() == [True] * 4
    # from minute 5: the windows ending then and after, plus the last one before (the opening state)
    assert from_5[from_5["asset"] == "p1"]["window_end"].tolist() == list(minutes(4, 5, 6))
    assert from_5[from_5["asset"] == "p2"]["window_end"].tolist() == list(minutes(4))
