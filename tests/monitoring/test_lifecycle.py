"""Incident lifecycle: open -> acknowledged -> recovered -> closed, reopen, escalate, stable
ids and history. Property tests drive monitoring.alerting.lifecycle.reconcile with random
flag sequences delivered in random chunks, as scoring runs would deliver them."""
from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitoring.alerting.incidents import IncidentRule, merge_incidents
from monitoring.alerting.lifecycle import (
    acknowledge,
    close_incident,
    reconcile,
    refresh_incidents,
    store_incidents,
)
from monitoring.errors import IncidentError
from monitoring.store.connection import Warehouse, connect, write
from monitoring.store.incident_records import ACTIVE, read_incident_log, read_incidents
from monitoring.store.results import write_window_results

T = pd.Timestamp("2026-01-01")
STRIDE = pd.Timedelta(minutes=10)
SIZE = pd.Timedelta(minutes=30)
RULE = IncidentRule(merge_gap=pd.Timedelta(minutes=30), min_windows=2, min_peak_severity=1.5,
                    recover_after=pd.Timedelta(minutes=10), escalation_levels=(3.0, 6.0))
AT = pd.Timestamp("2026-06-01")  # wall time: never stale
ALLOWED = {  # event -> the statuses an incident may be in before it
    "opened": {None},
    "extended": {"open", "acknowledged", "recovered"},
    "escalated": {"open", "acknowledged", "recovered"},
    "recovered": {"open", "acknowledged"},
    "reopened": {"recovered"},
    "acknowledged": {"open", "recovered"},
    "closed": {"open", "acknowledged", "recovered"},
}


def windows(severities: list[float], asset: str = "p1") -> pd.DataFrame:
    """One window per stride; severity 0 means not flagged (scored normal)."""
    rows = []
    for i, sev in enumerate(severities):
        start = T + i * STRIDE
        rows.append({"asset": asset, "window_start": start, "window_end": start + SIZE, "score": max(sev, 0.5),
                     "threshold": 1.0, "severity": max(sev, 0.5), "is_anomaly": sev >= 1.0, "top_sensors": "a,b",
                     "contributions": '{"a": 1.0, "b": -0.5}', "model_version": 1})
    return pd.DataFrame(rows)


class Memory:
    """The stored state reconcile works on, kept in memory: what store_incidents does with tables."""

    def __init__(self):
        self.states: dict[str, dict] = {}
        self.log: list[dict] = []

    def run(self, scored: pd.DataFrame, first: bool) -> pd.DataFrame:
        active = pd.DataFrame([s for s in self.states.values() if s["status"] in ACTIVE])
        if active.empty:
            active = pd.DataFrame(columns=["incident_id", "asset", "start", "end", "status", "opened_at"])
        closed = pd.DataFrame([s for s in self.states.values() if s["status"] == "closed"],
                              columns=["asset", "start", "end"])
        flagged = scored[scored["is_anomaly"]]
        candidates = merge_incidents(flagged, RULE, closed=closed)
        marks = {a: g["window_end"].max() for a, g in scored.groupby("asset")}
        states, log = reconcile("s", candidates, active, RULE, marks=marks, updated=dict.fromkeys(marks, AT),
                                at=AT, first_assets=frozenset(marks) if first else frozenset(),
                                taken=frozenset(self.states), span=SIZE)
        for state in states.to_dict("records"):
            self.states[state["incident_id"]] = state
        self.log += log.to_dict("records")
        return log


def replay(severities: list[float], cuts: list[int]) -> Memory:
    """Score the windows in runs ending at each cut (a run sees every window so far)."""
    memory = Memory()
    scored = windows(severities)
    for n, cut in enumerate([*sorted(set(cuts)), len(severities)]):
        if cut == 0:
            continue
        memory.run(scored.iloc[:cut], first=n == 0)
    return memory


severity = st.one_of(st.just(0.0), st.just(0.0), st.floats(1.0, 8.0))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(severity, min_size=1, max_size=40), st.lists(st.integers(0, 40), max_size=6))
def test_incidents_and_ids_do_not_depend_on_how_the_history_arrives(severities, cuts):
    cuts = [c for c in cuts if c < len(severities)]
    whole = replay(severities, [])
    chunked = replay(severities, cuts)
    fields = ["incident_id", "start", "end", "n_windows", "status", "severity_level"]

    def final(memory):
        return sorted(tuple(str(s[f]) for f in fields) for s in memory.states.values())
    assert final(chunked) == final(whole)
    assert len(whole.states) == len(merge_incidents(windows(severities)[lambda f: f["is_anomaly"]], RULE))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(severity, min_size=1, max_size=40), st.lists(st.integers(0, 40), max_size=6))
def test_every_history_follows_the_state_machine(severities, cuts):
    memory = replay(severities, [c for c in cuts if c < len(severities)])
    by_id: dict[str, list[dict]] = {}
    for row in memory.log:
        by_id.setdefault(row["incident_id"], []).append(row)
    for rows in by_id.values():
        assert [r["revision"] for r in rows] == list(range(1, len(rows) + 1))
        status = None
        for row in rows:
            assert status in ALLOWED[row["event"]], (row["event"], status)
            status = row["status"]
        assert status == memory.states[rows[0]["incident_id"]]["status"]
        # severity never falls, and each rise is one escalated event
        levels = [r["severity_level"] for r in rows]
        assert levels == sorted(levels)
        assert sum(r["event"] == "escalated" for r in rows) == len(set(levels)) - 1


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(severity, min_size=1, max_size=30))
def test_a_run_with_nothing_new_changes_nothing(severities):
    memory = replay(severities, [])
    again = memory.run(windows(severities), first=False)
    assert again.empty


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.floats(1.5, 8.0), min_size=3, max_size=12), st.floats(1.5, 8.0))
def test_rescoring_an_active_incident_keeps_its_id(severities, new_peak):
    memory = Memory()
    scored = windows(severities)
    memory.run(scored, first=False)
    (before,) = memory.states
    rescored = scored.copy()
    rescored.loc[rescored.index[-1], ["score", "severity"]] = new_peak  # a new champion scores it again
    memory.run(rescored, first=False)
    assert set(memory.states) == {before}


def test_open_recover_reopen_and_close_in_data_time():
    memory = Memory()
    sev = [2.0, 2.0, 2.0] + [0.0] * 2  # 3 flags, then 20 minutes of normal windows
    log = memory.run(windows(sev), first=False)
    assert log["event"].tolist() == ["opened", "recovered"]
    (state,) = memory.states.values()
    assert state["status"] == "recovered" and log["notify"].all()
    sev += [4.0]  # flags again within the merge gap: the same incident reopens, and escalates
    log = memory.run(windows(sev), first=False)
    assert log["event"].tolist() == ["reopened", "escalated"] and len(memory.states) == 1
    assert log["reason"].iloc[1] == "warning -> major"
    sev += [0.0] * 9  # merge gap + a window's length of normal windows: closed (recovery implied)
    log = memory.run(windows(sev), first=False)
    assert log["event"].tolist() == ["closed"] and log["reason"].tolist() == ["recovered"]
    sev += [2.0, 2.0]  # later flags are a new incident
    memory.run(windows(sev), first=False)
    assert len(memory.states) == 2
    assert sorted(s["status"] for s in memory.states.values()) == ["closed", "open"]


def test_a_first_scoring_of_history_records_old_incidents_without_alerting():
    memory = Memory()
    log = memory.run(windows([2.0, 2.0, 2.0] + [0.0] * 20 + [2.0, 2.0]), first=True)
    quiet = log[log["incident_id"] == log["incident_id"].iloc[0]]
    assert quiet["event"].tolist() == ["opened", "closed"] and not quiet["notify"].any()
    assert log[log["incident_id"] != log["incident_id"].iloc[0]]["notify"].all()  # the current one alerts


def test_a_feed_that_stops_closes_its_incidents_after_stale_after():
    rule = IncidentRule(stale_after=pd.Timedelta(hours=2), min_windows=1)
    scored = windows([2.0, 2.0])
    candidates = merge_incidents(scored, rule)
    marks = {"p1": scored["window_end"].max()}
    states, log = reconcile("s", candidates, pd.DataFrame(), rule, marks=marks, updated={"p1": AT}, at=AT)
    assert states["status"].tolist() == ["open"]
    later = AT + pd.Timedelta(hours=3)
    states, log = reconcile("s", candidates, states, rule, marks=marks, updated={"p1": AT}, at=later)
    assert log["event"].tolist() == ["closed"] and log["reason"].iloc[0].startswith("no data")


def test_incident_rule_checks_its_settings():
    with pytest.raises(ValueError, match="recover_after"):
        IncidentRule(merge_gap=pd.Timedelta(minutes=5), recover_after=pd.Timedelta(minutes=10))
    with pytest.raises(ValueError, match="escalation_levels"):
        IncidentRule(escalation_levels=(6.0, 3.0))
    assert [IncidentRule().level(s) for s in (1.5, 3.0, 5.9, 6.0, 60.0)] == [1, 2, 2, 3, 3]


# -- with the warehouse --------------------------------------------------------------------

def scored_rows(severities: list[float], version: int = 1, asset: str = "p1") -> pd.DataFrame:
    frame = windows(severities, asset)
    frame["model_version"] = version
    return frame


def score(db: Warehouse, frame: pd.DataFrame, version: int = 1, first: bool = False):
    def run(con):
        write_window_results(con, "s", frame, "s-detector", version)
        changed = {a: g["window_start"].min() for a, g in frame.groupby("asset")}
        return store_incidents(con, "s", RULE, changed=changed,
                               first_assets=frozenset(changed) if first else frozenset())
    return write(db, run)


def test_stored_incidents_keep_history_and_ids_through_rescoring(tmp_path):
    db = Warehouse.at(tmp_path / "w")
    sev = [0.0, 2.0, 2.0, 2.0]
    summary = score(db, scored_rows(sev))
    assert (summary.active, summary.open, summary.alerts) == (1, 1, 1)
    with connect(db) as con:
        (incident,) = read_incidents(con, "s").to_dict("records")
    # a new champion rescores the same windows: same incident, same id, its severity rises
    sev2 = [0.0, 2.0, 7.0, 2.0, 0.0, 0.0]
    score(db, scored_rows(sev2, version=2), version=2)
    with connect(db) as con:
        (after,) = read_incidents(con, "s").to_dict("records")
        log = read_incident_log(con, incident["incident_id"])
    assert after["incident_id"] == incident["incident_id"]
    assert after["peak_severity"] == 7.0 and after["severity_level"] == 3 and after["model_versions"] == "2"
    assert log["event"].tolist() == ["opened", "escalated", "recovered"]
    assert after["directions"] == "above" and after["top_sensors"] == "a"
    # re-running the same scoring appends nothing
    assert score(db, scored_rows(sev2, version=2), version=2).changes == 0


def test_a_rescoring_that_clears_an_active_incident_closes_it_with_the_reason(tmp_path):
    db = Warehouse.at(tmp_path / "w")
    score(db, scored_rows([2.0, 2.0, 2.0]))
    score(db, scored_rows([0.0, 0.0, 0.0, 0.0], version=2), version=2)
    with connect(db) as con:
        (row,) = read_incidents(con, "s").to_dict("records")
    assert row["status"] == "closed" and row["closed_reason"].startswith("cleared")


def test_acknowledge_and_close_by_hand(tmp_path):
    db = Warehouse.at(tmp_path / "w")
    score(db, scored_rows([2.0, 2.0, 2.0]))
    with connect(db) as con:
        incident = read_incidents(con, "s")["incident_id"].iloc[0]
    with pytest.raises(IncidentError, match="no incident"):
        acknowledge(db, "zzzz", "ana")
    state = acknowledge(db, incident[:6], "ana", "on it")
    assert state["status"] == "acknowledged" and state["acknowledged_by"] == "ana"
    # flags keep coming: it stays acknowledged
    score(db, scored_rows([2.0, 2.0, 2.0, 2.0]))
    with connect(db) as con:
        assert read_incidents(con, "s")["status"].tolist() == ["acknowledged"]
    closed = close_incident(db, incident, "ana", "valve replaced")
    assert closed["status"] == "closed" and closed["closed_reason"] == "closed by ana: valve replaced"
    with pytest.raises(IncidentError, match="already closed"):
        close_incident(db, incident, "ana")
    # the flags that go on after a manual close are a new incident
    score(db, scored_rows([2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0]))
    with connect(db) as con:
        rows = read_incidents(con, "s")
        log = read_incident_log(con, incident)
    assert sorted(rows["status"]) == ["closed", "open"]
    assert log["event"].tolist() == ["opened", "acknowledged", "extended", "closed"]
    assert log["actor"].tolist() == ["aemon", "ana", "aemon", "ana"]


def test_refresh_after_a_rule_change_leaves_closed_history_alone(tmp_path):
    db = Warehouse.at(tmp_path / "w")
    sev = [2.0, 2.0, 2.0] + [0.0] * 12 + [2.0]
    score(db, scored_rows(sev))
    with connect(db) as con:
        before = read_incidents(con, "s")
    assert before["status"].tolist() == ["closed"]
    looser = IncidentRule(merge_gap=RULE.merge_gap, min_windows=1, min_peak_severity=1.0)
    refresh_incidents(db, "s", looser)
    with connect(db) as con:
        after = read_incidents(con, "s")
    assert len(after) == 2  # the lone flag after the closed incident is one now
    assert after.iloc[0]["revision"] == before.iloc[0]["revision"]
