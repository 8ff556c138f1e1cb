"""Metrics on hand-computed cases: every expected number below is worked out in the comments."""
import math

import numpy as np
import pandas as pd
import pytest

from monitoring.errors import MetricsInputError
from monitoring.evaluation.metrics import (
    NAB_PROFILES,
    EventCounts,
    NabProfile,
    PointCounts,
    best_f1,
    changepoint_detections,
    changepoint_windows,
    detection_times,
    events,
    incident_events,
    label_windows,
    mean_delay,
    mean_forewarning,
    nab_file_score,
    nab_normalised,
    nab_probationary_rows,
    onsets,
    overlap_f1,
    point_adjust,
    point_counts,
    roc_auc,
)

T0 = pd.Timestamp("2026-01-01")


def stamps(n, step="1s"):
    return pd.date_range(T0, periods=n, freq=step)


def rows(n, *on):
    mask = np.zeros(n, dtype=bool)
    mask[list(on)] = True
    return mask


# ---------------------------------------------------------------- pointwise (SKAB)

def test_skab_point_metrics_on_ten_points():
    y_true = [0, 0, 0, 1, 1, 1, 1, 0, 0, 0]
    y_pred = [0, 1, 0, 1, 1, 1, 0, 0, 0, 0]
    counts = point_counts(y_true, y_pred)
    # tp rows 3-5, fp row 1, fn row 6, tn rows 0, 2, 7, 8, 9
    assert counts == PointCounts(tp=3, fp=1, fn=1, tn=5)
    assert counts.f1 == pytest.approx(3 / (3 + (1 + 1) / 2))  # 0.75
    assert counts.far == pytest.approx(1 / 6)
    assert counts.mar == pytest.approx(1 / 4)
    assert counts.precision == pytest.approx(0.75) and counts.recall == pytest.approx(0.75)


def test_skab_f1_differs_from_the_harmonic_mean_only_in_name():
    counts = PointCounts(tp=2, fp=6, fn=0, tn=2)
    p, r = counts.precision, counts.recall  # 0.25, 1.0
    assert counts.f1 == pytest.approx(2 * p * r / (p + r)) == pytest.approx(2 / (2 + 3))


def test_pooling_sums_counts_not_ratios():
    first = point_counts([0, 0, 0, 1, 1, 1, 1, 0, 0, 0], [0, 1, 0, 1, 1, 1, 0, 0, 0, 0])
    second = point_counts([0] * 10, [1, 1] + [0] * 8)  # a normal file with two false alarms: F1 0
    pooled = first + second
    assert pooled == PointCounts(tp=3, fp=3, fn=1, tn=13)
    assert pooled.f1 == pytest.approx(3 / (3 + 2))  # 0.6, not the mean (0.75 + 0) / 2
    assert pooled.far == pytest.approx(3 / 16)
    assert sum([first, second], PointCounts(0, 0, 0, 0)) == pooled


def test_undefined_ratios_are_nan():
    nothing = PointCounts(tp=0, fp=0, fn=0, tn=5)
    assert math.isnan(nothing.precision) and math.isnan(nothing.recall) and math.isnan(nothing.f1)
    assert math.isnan(nothing.mar)
    assert nothing.far == 0.0


def test_bad_inputs_name_the_argument():
    with pytest.raises(MetricsInputError, match="y_pred: 3 rows, expected 4"):
        point_counts([0, 1, 1, 0], [0, 1, 1])
    with pytest.raises(MetricsInputError, match="y_true: row 1 is NaN"):
        point_counts([0, np.nan], [0, 1])
    with pytest.raises(MetricsInputError, match=r"row 2 .* goes back in time"):
        detection_times([0, 1, 1], [0, 1, 1], [T0, T0 + pd.Timedelta("2s"), T0 + pd.Timedelta("1s")])


def test_events_are_runs_of_true():
    assert events([1, 1, 0, 1, 0, 0, 1]).tolist() == [[0, 1], [3, 3], [6, 6]]
    assert events([0, 0]).shape == (0, 2)


def test_onsets_and_changepoint_detections():
    pred = [1, 1, 0, 1, 0, 0, 1, 1]
    assert onsets(pred).tolist() == [bool(v) for v in [1, 0, 0, 1, 0, 0, 1, 0]]
    # SKAB: abs(diff) with the first row kept: switching on and off
    assert changepoint_detections(pred).tolist() == [bool(v) for v in [1, 0, 1, 1, 1, 0, 1, 0]]
    assert changepoint_detections([0, 0, 1]).tolist() == [False, False, True]


def test_incident_events_open_after_persistence_and_recover_after_quiet_rows():
    pred = np.array([0, 1, 0, 1, 1, 1, 0, 1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0], dtype=bool)
    # 1 and 1: every switch, as SKAB's notebooks derive changepoints
    assert incident_events(pred).tolist() == changepoint_detections(pred).tolist()
    # a run (gaps under 3 rows) opens on its third alarm row; it recovers on its third
    # normal row in a row; the lone alarm at row 13 never opens one
    rows = np.flatnonzero(incident_events(pred, open_rows=3, recover_rows=3)).tolist()
    assert rows == [4, 11]
    # causal: an event never moves when later rows change
    assert np.flatnonzero(incident_events(pred[:12], 3, 3)).tolist() == [4, 11]
    # a gap of recover_rows ends the run: its alarms no longer count toward the next one
    assert not incident_events([1, 1, 0, 0, 0, 1], open_rows=3, recover_rows=3).any()
    with pytest.raises(MetricsInputError, match="open_rows=0, recover_rows=3: expected both >= 1"):
        incident_events(pred, open_rows=0, recover_rows=3)


def test_point_adjust_fills_detected_events_only():
    y_true = [0, 1, 1, 1, 0, 0, 1, 1, 0]
    y_pred = [0, 0, 1, 0, 0, 1, 0, 0, 0]
    # event rows 1-3 has a flag at 2: all of it counts; event rows 6-7 has none; the fp at 5 stays
    assert point_adjust(y_true, y_pred).tolist() == [bool(v) for v in [0, 1, 1, 1, 0, 1, 0, 0, 0]]
    adjusted = point_counts(y_true, point_adjust(y_true, y_pred))
    assert adjusted == PointCounts(tp=3, fp=1, fn=2, tn=3)


# ---------------------------------------------------------------- events (Orion overlap segment)

def test_overlap_split_prediction_counts_one_true_event():
    y_true = rows(10, 2, 3, 4, 5, 6, 7)
    y_pred = rows(10, 2, 3, 5, 6)  # two predicted events inside one true event
    assert overlap_f1(y_true, y_pred) == EventCounts(tp=1, fp=0, fn=0)


def test_overlap_merged_prediction_earns_both_true_events():
    y_true = rows(10, 1, 2, 5, 6)
    y_pred = rows(10, 1, 2, 3, 4, 5, 6)
    assert overlap_f1(y_true, y_pred) == EventCounts(tp=2, fp=0, fn=0)


def test_overlap_false_event_and_missed_event():
    y_true = rows(12, 2, 3, 8, 9)
    y_pred = rows(12, 2, 5)  # hits the first event; row 5 is a false event; 8-9 missed
    counts = overlap_f1(y_true, y_pred)
    assert counts == EventCounts(tp=1, fp=1, fn=1)
    assert counts.precision == 0.5 and counts.recall == 0.5 and counts.f1 == pytest.approx(0.5)


def test_overlap_needs_a_shared_row_and_works_on_timestamps():
    adjacent = overlap_f1(rows(8, 2, 3), rows(8, 4, 5))
    assert adjacent == EventCounts(tp=0, fp=1, fn=1)
    assert adjacent.precision == 0 and math.isnan(adjacent.f1)  # 0 / 0, as Orion's _f1_score
    assert overlap_f1(rows(8, 2, 3, 4), rows(8, 4, 5, 6)) == EventCounts(tp=1, fp=0, fn=0)
    irregular = pd.DatetimeIndex([T0 + pd.Timedelta(seconds=s) for s in [0, 1, 5, 6, 30, 31, 32, 90]])
    assert overlap_f1(rows(8, 2, 3), rows(8, 4, 5), irregular) == EventCounts(tp=0, fp=1, fn=1)
    assert overlap_f1(rows(8, 2, 3, 4), rows(8, 4, 5), irregular) == EventCounts(tp=1, fp=0, fn=0)


@pytest.mark.filterwarnings("error::RuntimeWarning")  # an int64 overflow would give a random sign
def test_overlap_on_timestamps_far_apart():
    ts = stamps(20_000, "1h")  # distances of ~1e16 ns: their product does not fit in int64
    y_true, y_pred = rows(20_000, 10, 11, 12), rows(20_000, 15_000, 15_001)
    assert overlap_f1(y_true, y_pred, ts) == EventCounts(tp=0, fp=1, fn=1)
    assert overlap_f1(y_true, y_pred | rows(20_000, 12), ts) == EventCounts(tp=1, fp=1, fn=0)


def test_overlap_without_predictions_has_nan_precision():
    counts = overlap_f1(rows(5, 1), rows(5))
    assert counts == EventCounts(tp=0, fp=0, fn=1)
    assert math.isnan(counts.precision) and counts.recall == 0 and math.isnan(counts.f1)


# ---------------------------------------------------------------- delay and forewarning

def test_detection_times_per_true_event():
    ts = stamps(12, "10s")
    y_true = rows(12, 2, 3, 4, 5, 8, 9)
    y_pred = rows(12, 0, 4, 5)  # row 0 is outside every event: it never counts as a detection
    table = detection_times(y_true, y_pred, ts)
    assert list(table["detected"]) == [True, False]
    first = table.iloc[0]
    assert first["start"] == ts[2] and first["end"] == ts[5] and first["first_alarm"] == ts[4]
    assert first["delay"] == pd.Timedelta("20s") and first["forewarning"] == pd.Timedelta("10s")
    assert pd.isna(table.iloc[1]["first_alarm"]) and pd.isna(table.iloc[1]["delay"])
    assert mean_forewarning(table) == 10.0 and mean_delay(table) == 20.0


def test_mean_forewarning_is_nan_when_nothing_is_detected():
    table = detection_times(rows(6, 2, 3), rows(6, 0), stamps(6))
    assert math.isnan(mean_forewarning(table)) and math.isnan(mean_delay(table))


# ---------------------------------------------------------------- NAB (numenta/NAB sweeper)

N = 600
TS = stamps(N, "1min")
WINDOW = pd.DataFrame({"start": [TS[100]], "end": [TS[199]]})  # rows 100-199, width 100


def nab(*detected, windows=WINDOW, **kwargs):
    return nab_file_score(TS, rows(N, *detected), windows, **kwargs)


def test_nab_detection_at_left_edge_scores_tp_weight():
    score = nab(100)
    for name in NAB_PROFILES:
        assert score.raw[name] == pytest.approx(1.0)  # tp_weight, by the sweeper's / maxTP scaling
    assert (score.tp, score.fp, score.fn, score.n_windows) == (1, 0, 0, 1)


def test_nab_detection_at_right_edge_scores_near_zero():
    # position -(199 - 199 + 1) / 100 = -0.01: (2 sigmoid(0.05) - 1) / (2 sigmoid(5) - 1) = 0.0253
    score = nab(199).raw["standard"]
    assert 0 < score < 0.03
    assert nab(150).raw["standard"] > nab(180).raw["standard"] > score  # earlier is better


def test_nab_right_edge_tp_and_next_row_fp_cancel_out():
    # NAB's own check (tests/integration/true_positive_test.py, testTruePositiveAtRightEdgeOfWindow):
    # with unit weights, TP at the right edge + FP just after + 1 (that run's missed window) ~ 0
    unit = {"unit": NabProfile(1.0, 1.0, 1.0)}
    total = nab(199, profiles=unit).raw["unit"] + nab(200, profiles=unit).raw["unit"] + 1
    assert total == pytest.approx(0.0, abs=1e-3)


def test_nab_only_the_first_detection_in_a_window_counts():
    assert nab(150, 160, 170).raw == nab(150).raw
    assert nab(150, 160, 170).fp == 0


def test_nab_missed_window_costs_fn_weight():
    score = nab()
    assert score.raw == {"standard": -1.0, "low_fp": -1.0, "low_fn": -2.0}
    assert (score.tp, score.fn) == (0, 1)


def test_nab_false_positive_long_after_a_window_costs_fp_weight():
    # row 550: |199 - 550| / (100 - 1) = 3.5 widths past the window, beyond 3: the full cost
    score = nab(550)
    for name, profile in NAB_PROFILES.items():
        assert score.raw[name] == pytest.approx(-profile.fn_weight - profile.fp_weight, abs=1e-12)
    assert score.fp == 1


def test_nab_false_positive_before_any_window_costs_fp_weight():
    assert nab(10).raw["low_fp"] == pytest.approx(-1.0 - 0.22)


def test_nab_false_positive_just_after_a_window_costs_less():
    just_after = -1.0 - nab(200).raw["standard"]  # cost beyond the missed window
    later = -1.0 - nab(260).raw["standard"]
    assert 0 < just_after < 0.11 / 10
    assert just_after < later < 0.11


def test_nab_probationary_rows_are_not_scored():
    assert nab(10, probationary_rows=50).raw == nab().raw  # the fp at row 10 is not scored
    assert nab(100, probationary_rows=150).raw == nab().raw  # nor is a detection inside it
    early = nab(10, windows=pd.DataFrame({"start": [TS[5]], "end": [TS[20]]}), probationary_rows=50)
    assert (early.n_windows, early.n_windows_unscored) == (0, 1)
    assert early.raw == {"standard": 0.0, "low_fp": 0.0, "low_fn": 0.0}


def test_nab_probationary_length():
    assert nab_probationary_rows(1000) == 150
    assert nab_probationary_rows(10_000) == 750
    assert nab_probationary_rows(7) == 1


def test_nab_one_row_window_does_not_divide_by_zero():
    one = pd.DataFrame({"start": [TS[100]], "end": [TS[100]]})
    assert nab(100, windows=one).raw["standard"] == pytest.approx(1.0)
    after = nab(101, windows=one).raw["standard"]  # distance 2.0 as NAB's scorer.py sets it
    assert after == pytest.approx(-1.0 + 0.11 * (2 / (1 + math.exp(10)) - 1))


def test_nab_windows_and_timestamps_in_different_time_units():
    seconds = TS.to_numpy().astype("datetime64[s]")
    windows = pd.DataFrame({"start": WINDOW["start"].astype("datetime64[ns]"),
                            "end": WINDOW["end"].astype("datetime64[ns]")})
    assert nab_file_score(seconds, rows(N, 100), windows).raw == nab(100).raw
    assert nab_file_score(seconds, rows(N, 100), windows, scoring="skab").tp == 1


def test_nab_rejects_overlapping_windows():
    windows = pd.DataFrame({"start": [TS[10], TS[15]], "end": [TS[20], TS[30]]})
    with pytest.raises(MetricsInputError, match=r"window 1 starts .* before window 0 ends"):
        nab(12, windows=windows)


TWO_WINDOWS = pd.DataFrame({"start": [TS[100], TS[400]], "end": [TS[199], TS[449]]})


def test_nab_normalised_null_is_zero_and_perfect_is_hundred():
    files = [nab(windows=TWO_WINDOWS), nab(windows=WINDOW)]
    assert nab_normalised(files) == {name: pytest.approx(0.0) for name in NAB_PROFILES}
    perfect = [nab(100, 400, windows=TWO_WINDOWS), nab(100, windows=WINDOW)]
    assert nab_normalised(perfect) == {name: pytest.approx(100.0) for name in NAB_PROFILES}


def test_nab_normalised_half():
    # one of two windows found at its left edge: standard S = 1 - 1 = 0 of [-2, 2] -> 50;
    # low FN S = 1 - 2 = -1 of [-4, 2] -> 50
    half = nab_normalised([nab(100, windows=TWO_WINDOWS)])
    assert half["standard"] == pytest.approx(50.0) and half["low_fn"] == pytest.approx(50.0)
    assert math.isnan(nab_normalised([nab(3, windows=WINDOW.iloc[:0])])["standard"])


# ---------------------------------------------------------------- SKAB's changepoint variant (tsad)

def test_skab_scoring_edges_and_flat_false_positives():
    ts = stamps(300)
    cps = rows(300, 100)
    windows = changepoint_windows(ts, cps)  # [100 s, 160 s]
    assert windows.iloc[0]["start"] == ts[100] and windows.iloc[0]["end"] == ts[160]

    def skab(*on):
        return nab_file_score(ts, rows(300, *on), windows, scoring="skab")

    assert skab(100).raw == {name: pytest.approx(1.0) for name in NAB_PROFILES}  # A_tp at the left edge
    assert skab(160).raw["low_fp"] == pytest.approx(-0.22)  # A_fp at the right edge
    assert skab(130).raw["standard"] == pytest.approx((1 + 0.11) * 0.5 - 0.11, abs=2e-3)  # middle
    # any detection outside the window costs the full A_fp, even the next second
    assert skab(161).raw["standard"] == pytest.approx(-1.0 - 0.11) == skab(299).raw["standard"]
    assert skab(100, 120, 140).raw == skab(100).raw
    with pytest.raises(MetricsInputError, match="no probationary period"):
        nab_file_score(ts, rows(300, 100), windows, scoring="skab", probationary_rows=10)


def test_changepoint_windows_merge_or_cut_like_tsad():
    ts = stamps(300)
    cps = rows(300, 10, 40, 200)  # windows [10, 70] and [40, 100] overlap
    merged = changepoint_windows(ts, cps)
    assert list(merged["start"]) == [ts[10], ts[200]] and list(merged["end"]) == [ts[100], ts[260]]
    cut = changepoint_windows(ts, cps, overlap="cut_right")
    assert list(cut["start"]) == [ts[10], ts[70], ts[200]] and list(cut["end"]) == [ts[70], ts[100], ts[260]]


def test_label_windows_are_runs_of_labels():
    ts = stamps(10, "5min")
    windows = label_windows(ts, rows(10, 1, 2, 3, 7))
    assert list(windows["start"]) == [ts[1], ts[7]] and list(windows["end"]) == [ts[3], ts[7]]
    score = nab_file_score(ts, rows(10, 1), windows)
    assert (score.tp, score.fn, score.n_windows) == (1, 1, 2)


def test_roc_auc_counts_ties_half():
    # pairs (anomalous, normal): (0.35 > 0.1) yes, (0.35 > 0.4) no, (0.8 > both) yes yes -> 3 of 4
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert roc_auc([0, 1, 0, 1], [1.0, 1.0, 1.0, 1.0]) == pytest.approx(0.5)  # every pair tied
    assert roc_auc([1, 1, 0], [3.0, 2.0, 2.0]) == pytest.approx(0.75)  # (3 > 2) 1, (2 = 2) 0.5
    assert math.isnan(roc_auc([0, 0], [1.0, 2.0]))
    with pytest.raises(MetricsInputError, match="scores: 2 values for 3 labels"):
        roc_auc([0, 1, 0], [1.0, 2.0])


def test_best_f1_is_the_best_cut_of_the_ranking():
    # ranking 1 0 1 0: top 1 -> F1 2/3; top 3 -> tp 2, 3 flagged, 2 true: 2*2 / (3 + 2) = 0.8; top 4 -> 4/6
    assert best_f1([1, 0, 1, 0], [4.0, 3.0, 2.0, 1.0]) == pytest.approx(0.8)
    # a tie cannot be split: both records of score 2 are flagged together (tp 1 of 2 flagged, 1 true: 2/3)
    assert best_f1([0, 1], [2.0, 2.0]) == pytest.approx(2 / 3)
    assert math.isnan(best_f1([0, 0], [1.0, 2.0]))
