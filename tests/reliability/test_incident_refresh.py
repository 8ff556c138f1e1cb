"""Incidents refreshed incrementally: each scoring run reads only the flagged windows and the
incidents it can reach, yet its incidents, ids and log equal those of a refresh that
re-reads the whole history every run, and what a run reads does not grow with history."""
from __future__ import annotations

import pandas as pd

from monitoring.alerting.incidents import IncidentRule, merge_incidents
from monitoring.alerting.lifecycle import reconcile, store_incidents
from monitoring.store.connection import Warehouse, connect, write
from monitoring.store.incident_records import ACTIVE, incident_id, read_incidents
from monitoring.store.results import write_window_results

T = pd.Timestamp("2026-01-01")
STRIDE = pd.Timedelta(minutes=10)
SIZE = pd.Timedelta(minutes=30)
RULE = IncidentRule(merge_gap=pd.Timedelta(minutes=30), min_windows=2, min_peak_severity=1.5,
                    recover_after=pd.Timedelta(minutes=10), escalation_levels=(3.0, 6.0))
PERIOD = 40  # windows: a fault, a blip and quiet, again and again
CHUNK = 30  # windows per scoring run; lcm(PERIOD, CHUNK) = 4 runs
RUNS = 24
FIELDS = ["incident_id", "asset", "start", "end", "n_windows", "peak_severity", "severity_level", "status",
          "closed_reason", "top_sensors", "directions", "revision"]


def severity(i: int, asset: int) -> float:
    """0 = scored normal; >= 1 flagged. Per period: a fault of 6 windows rising past the
    escalation levels, then two lone blips (too short to be incidents)."""
    k = (i + 7 * asset) % PERIOD
    if 5 <= k < 11:
        return [1.2, 2.0, 3.5, 6.5, 2.0, 1.1][k - 5]
    return 1.2 if k in (20, 31) else 0.0


def long_fault(i: int, asset: int) -> float:
    """A run of 60 weak flags (10 h, too weak for an incident, longer than a refresh reads
    ahead of its first change) that then rises past the alarm level: the incident it makes
    begins where the weak run began."""
    k = (i + 13 * asset) % 100
    return 1.2 if 10 <= k < 70 else 2.5 if 70 <= k < 73 else 0.0


def history(pattern=severity, n: int = CHUNK * RUNS) -> pd.DataFrame:
    rows = []
    for asset in range(2):
        for i in range(n):
            sev = pattern(i, asset)
            start = T + i * STRIDE
            rows.append({"asset": f"p{asset}", "window_start": start, "window_end": start + SIZE,
                         "score": max(sev, 0.5), "threshold": 1.0, "severity": max(sev, 0.5), "is_anomaly": sev >= 1,
                         "top_sensors": "a,b", "contributions": '{"a": 1.0, "b": -0.5}' if sev >= 1 else None})
    return pd.DataFrame(rows)


def chunks(frame: pd.DataFrame, size: int = CHUNK):
    for run in range(RUNS):
        lo, hi = T + run * size * STRIDE, T + (run + 1) * size * STRIDE
        yield frame[(frame["window_start"] >= lo) & (frame["window_start"] < hi)]


class FullRefresh:
    """The reference: every run merges every flagged window of the history so far against
    every stored incident (all closed spans, all ids), in memory."""

    def __init__(self):
        self.states: dict[str, dict] = {}
        self.events: list[tuple] = []

    def run(self, scored: pd.DataFrame, first: bool) -> None:
        active = pd.DataFrame([s for s in self.states.values() if s["status"] in ACTIVE])
        if active.empty:
            active = pd.DataFrame(columns=["incident_id", "asset", "start", "end", "status", "opened_at"])
        closed = pd.DataFrame([s for s in self.states.values() if s["status"] == "closed"],
                              columns=["asset", "start", "end"])
        candidates = merge_incidents(scored[scored["is_anomaly"]].assign(model_version=1), RULE, closed=closed)
        marks = {a: g["window_end"].max() for a, g in scored.groupby("asset")}
        at = pd.Timestamp.now()
        states, log = reconcile("s", candidates, active, RULE, marks=marks, updated=dict.fromkeys(marks, at), at=at,
                                first_assets=frozenset(marks) if first else frozenset(),
                                taken=frozenset(self.states), span=SIZE)
        for state in states.to_dict("records"):
            self.states[state["incident_id"]] = state
        self.events += [(r["incident_id"], r["revision"], r["event"], r["status"]) for r in log.to_dict("records")]


def replay(db: Warehouse, frame: pd.DataFrame, size: int) -> tuple[list[int], pd.DataFrame, FullRefresh]:
    """Score `frame` in runs of `size` windows, incidents refreshed incrementally, and the
    same runs with the full refresh in memory; (flagged windows each run read, stored
    incidents, the reference)."""
    reference = FullRefresh()
    seen = frame.iloc[0:0]
    reads = []
    for n, chunk in enumerate(chunks(frame, size)):
        def run(con, chunk=chunk, first=n == 0):
            write_window_results(con, "s", chunk, "s-detector", 1)
            changed = {a: g["window_start"].min() for a, g in chunk.groupby("asset")}
            return store_incidents(con, "s", RULE, changed=changed,
                                   first_assets=frozenset(changed) if first else frozenset())
        summary = write(db, run)
        reads.append(summary.windows_read)
        seen = pd.concat([seen, chunk])
        reference.run(seen, first=n == 0)
        with connect(db) as con:
            stored = read_incidents(con, "s")
        assert summary.active == int(stored["status"].isin(ACTIVE).sum())
    assert_same(db, reference)
    return reads, stored, reference


def assert_same(db: Warehouse, reference: FullRefresh) -> None:
    with connect(db) as con:
        stored = read_incidents(con, "s")
        events = con.sql("SELECT incident_id, revision, event, status FROM incident_log ORDER BY ALL").fetchall()
    expected = pd.DataFrame(list(reference.states.values()))
    key = ["asset", "start"]
    got = stored[FIELDS].sort_values(key).reset_index(drop=True)
    want = expected[FIELDS].sort_values(key).reset_index(drop=True)
    want["start"], want["end"] = pd.to_datetime(want["start"]), pd.to_datetime(want["end"])
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    assert sorted(events) == sorted(reference.events)


def test_incremental_refresh_equals_a_full_refresh_and_reads_a_bounded_history(tmp_path):
    frame = history()
    reads, stored, _ = replay(Warehouse.at(tmp_path / "w"), frame, CHUNK)
    assert len(stored) == len(merge_incidents(frame[frame["is_anomaly"]], RULE)) >= 2 * RUNS * CHUNK // PERIOD
    # what a run reads repeats with the pattern (every 4 runs) instead of growing with history
    flagged_total = int(frame["is_anomaly"].sum())
    assert reads[4:8] == reads[-4:], reads
    assert max(reads) <= 2 * 2 * 8 < flagged_total / 5, (reads, flagged_total)  # per asset: a run and a chunk


def test_runs_of_flags_longer_than_a_read_ahead_are_followed_back_as_a_full_refresh_does(tmp_path):
    frame = history(long_fault, 5 * RUNS)
    reads, stored, _ = replay(Warehouse.at(tmp_path / "w"), frame, 5)
    assert len(stored) == len(merge_incidents(frame[frame["is_anomaly"]], RULE))
    assert max(reads) >= 60  # the weak run was read back when the alarm came


def test_a_refresh_reads_from_the_earliest_change_not_from_the_first_window(tmp_path):
    db = Warehouse.at(tmp_path / "w")
    frame = history()
    parts = list(chunks(frame))
    write(db, lambda con: write_window_results(con, "s", pd.concat(parts[:-1]), "s-detector", 1))
    write(db, lambda con: store_incidents(con, "s", RULE))  # the whole history once (a rule change's refresh)

    def last(con):
        write_window_results(con, "s", parts[-1], "s-detector", 1)
        changed = {a: g["window_start"].min() for a, g in parts[-1].groupby("asset")}
        return store_incidents(con, "s", RULE, changed=changed)
    summary = write(db, last)
    in_last = int(parts[-1]["is_anomaly"].sum())
    assert in_last <= summary.windows_read <= in_last + 2 * 8  # and the run of flags it continues, if any


def test_the_nth_incident_born_at_one_start_has_its_own_id():
    first, second = incident_id("s", "p1", T), incident_id("s", "p1", T, 2)
    assert first != second and len(second) == 12
    assert incident_id("s", "p1", T, 2) == second


def test_a_run_reads_and_writes_through_one_connection_of_a_process_new_to_the_warehouse(tmp_path):
    from dataclasses import replace

    from monitoring.store.connection import close_all, scalar

    db = replace(Warehouse.at(tmp_path / "w"), lock_timeout_s=5.0)
    with connect(db):
        pass
    close_all()  # as a new process: the catalog exists, this process has not opened it yet
    with connect(db) as con:  # a reading connection that brought the schema up holds no lock after
        assert write(db, lambda c: scalar(c, "SELECT count(*) FROM scores"), con=con) == 0
