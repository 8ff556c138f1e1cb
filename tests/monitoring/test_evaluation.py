"""Alarm states from stored window flags (causal) and the pooled evaluation on labels."""
import numpy as np
import pandas as pd
import pytest

from monitoring.evaluation import alarm_onsets, evaluate_alarms, point_alarms
from monitoring.metrics import PointCounts

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


def test_unsorted_readings_are_refused():
    with pytest.raises(ValueError, match="sorted"):
        point_alarms(minutes(2, 1), minutes(1), [True])


def test_alarm_onsets_are_rising_edges():
    assert alarm_onsets([1, 1, 0, 1, 0, 0, 1, 1]).tolist() == [bool(v) for v in [1, 0, 0, 1, 0, 0, 1, 0]]


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
