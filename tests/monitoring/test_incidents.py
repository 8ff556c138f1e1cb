import pandas as pd

from monitoring.alerting.incidents import IncidentRule, merge_incidents
from monitoring.evaluation.labeled import evaluate_incidents
from monitoring.store.connection import Warehouse, connect
from monitoring.store.incident_records import read_incidents
from monitoring.store.results import write_window_results

T = pd.Timestamp("2026-01-01")


def window(asset, start_min, score=2.0, top="a,b"):
    return {"asset": asset, "window_start": T + pd.Timedelta(minutes=start_min),
            "window_end": T + pd.Timedelta(minutes=start_min + 29), "score": score, "threshold": 1.0,
            "top_sensors": top}


def test_overlapping_windows_merge_and_lone_blips_drop():
    flagged = pd.DataFrame([window("p1", 0), window("p1", 10, 5.0), window("p1", 20),
                            window("p1", 300), window("p2", 0), window("p2", 10, top="c,a")])
    incidents = merge_incidents(flagged, IncidentRule(merge_gap=pd.Timedelta(minutes=5), min_windows=2,
                                                      min_peak_severity=1.0))
    assert list(incidents["asset"]) == ["p1", "p2"]
    first = incidents.iloc[0]
    assert first["start"] == T and first["end"] == T + pd.Timedelta(minutes=49)
    assert first["n_windows"] == 3 and first["peak_score"] == 5.0 and first["peak_severity"] == 5.0
    assert first["top_sensors"] == "a"


def test_precision_over_incidents_and_recall_over_faults():
    incidents = pd.DataFrame({
        "asset": ["p1", "p1", "p2"],
        "start": [T, T + pd.Timedelta(hours=5), T],
        "end": [T + pd.Timedelta(hours=1), T + pd.Timedelta(hours=6), T + pd.Timedelta(hours=1)],
        "peak_score": [3.0, 2.0, 5.0],
        "top_sensors": ["a,b", "c", "d"],
    })
    faults = pd.DataFrame({
        "asset": ["p1", "p1", "p3"],
        "kind": ["spike", "drift", "stuck"],
        "start": [T + pd.Timedelta(minutes=30), T + pd.Timedelta(hours=10), T],
        "end": [T + pd.Timedelta(minutes=31), T + pd.Timedelta(hours=11), T + pd.Timedelta(hours=1)],
    })
    ev = evaluate_incidents(incidents, faults)
    assert ev.faults["found"].tolist() == [True, False, False]
    assert ev.n_incidents == 3 and ev.n_true_incidents == 1
    assert ev.precision == 1 / 3 and ev.recall == 1 / 3
    assert ev.faults["delay"].iloc[0] == pd.Timedelta(0)
    assert ev.faults["top_sensors"].tolist() == ["a,b", "", ""]


def test_an_incident_needs_an_alarm_level_peak():
    flagged = pd.DataFrame([window("p1", 0, 1.2), window("p1", 10, 1.4), window("p1", 20, 1.3),
                            window("p2", 0, 1.2), window("p2", 10, 3.0), window("p2", 20, 1.1)])
    incidents = merge_incidents(flagged, IncidentRule(min_windows=3, min_peak_severity=1.5))
    assert list(incidents["asset"]) == ["p2"]


def test_stored_severity_ranks_incidents_for_scores_of_any_sign():
    """A density model's scores (-log p) can be negative: score / threshold means nothing
    there, the severity the model wrote does."""
    flagged = pd.DataFrame({
        "asset": ["p1"] * 3,
        "window_start": pd.date_range("2026-01-01", periods=3, freq="10min"),
        "score": [-150.0, -140.0, -145.0],
        "threshold": [-157.0] * 3,
        "severity": [1.1, 1.3, 1.2],
        "top_sensors": ["a"] * 3,
    })
    flagged["window_end"] = flagged["window_start"] + pd.Timedelta(minutes=10)
    assert merge_incidents(flagged, IncidentRule(min_windows=3, min_peak_severity=1.5)).empty
    kept = merge_incidents(flagged, IncidentRule(min_windows=3, min_peak_severity=1.2))
    assert kept["peak_severity"].tolist() == [1.3]


def scored(start_mins, flagged, version, score=3.0):
    rows = []
    for m in start_mins:
        w = window("p1", m, score)
        rows.append({**w, "is_anomaly": m in flagged, "severity": score, "contributions": "{}"})
    return pd.DataFrame(rows)


def test_stored_incidents_follow_the_latest_scoring_and_rerun_idempotently(tmp_path):
    from monitoring.alerting.lifecycle import refresh_incidents

    db = Warehouse.at(tmp_path / "w")
    rule = IncidentRule(merge_gap=pd.Timedelta(minutes=5), min_windows=2, min_peak_severity=1.0)
    starts = list(range(0, 600, 10))
    with connect(db) as con:
        # version 1 flags two runs of windows: minutes 0-20 and 300-320
        write_window_results(con, "s", scored(starts, {0, 10, 20, 300, 310, 320}, 1), "s-detector", 1)
    assert refresh_incidents(db, "s", rule).changes == 4  # each opened, then closed
    with connect(db) as con:
        first = read_incidents(con, "s")
    assert first["start"].tolist() == [T, T + pd.Timedelta(minutes=300)]
    assert first["model_versions"].tolist() == ["1", "1"] and first["status"].tolist() == ["closed", "closed"]
    assert refresh_incidents(db, "s", rule).changes == 0  # nothing new: no row changes

    with connect(db) as con:
        # version 2 rescores the second run and clears it, and flags the newest windows
        later = [s for s in starts if s >= 300] + [600, 610]
        write_window_results(con, "s", scored(later, {600, 610}, 2), "s-detector", 2)
    refresh_incidents(db, "s", rule)
    with connect(db) as con:
        second = read_incidents(con, "s")
        assert len(read_incidents(con, "other")) == 0
    # closed incidents are history (what was alerted), never rewritten by a later scoring
    assert second["start"].tolist() == [T, T + pd.Timedelta(minutes=300), T + pd.Timedelta(minutes=600)]
    assert second["model_versions"].tolist() == ["1", "1", "2"]
    assert second["status"].tolist() == ["closed", "closed", "open"]  # the newest reaches the watermark
