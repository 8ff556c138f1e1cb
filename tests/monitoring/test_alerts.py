"""What alerts say and when they are due: the outbox of incident changes, a stalled feed."""
from __future__ import annotations

import pandas as pd

from monitoring.alerting.alerts import check_feed, pending_incident_alerts, record_delivered
from monitoring.alerting.incidents import IncidentRule
from monitoring.alerting.lifecycle import store_incidents
from monitoring.store.connection import Warehouse, write
from monitoring.store.results import write_window_results

T = pd.Timestamp("2026-01-01")
RULE = IncidentRule(merge_gap=pd.Timedelta(minutes=30), min_windows=2)


def flagged(n: int, severity: float = 2.0) -> pd.DataFrame:
    starts = [T + pd.Timedelta(minutes=10 * i) for i in range(n)]
    return pd.DataFrame({"asset": "p1", "window_start": starts, "window_end": [s + pd.Timedelta(minutes=30)
                                                                              for s in starts],
                         "score": severity, "threshold": 1.0, "is_anomaly": True, "severity": severity,
                         "top_sensors": "flow,pressure", "contributions": '{"flow": -2.0, "pressure": 0.5}'})


def score(db: Warehouse, frame: pd.DataFrame) -> None:
    def run(con):
        write_window_results(con, "s", frame, "s-detector", 1)
        store_incidents(con, "s", RULE, changed={"p1": frame["window_start"].min()})
    write(db, run)


def test_the_outbox_holds_each_alert_until_its_channel_delivered_it(tmp_path):
    db = Warehouse.at(tmp_path / "w")
    score(db, flagged(3))
    (opened,) = pending_incident_alerts(db, "webhook")
    assert opened.event == "aemon.incident.opened"
    assert opened.resource["prefect.resource.id"] == "aemon.stream.s.asset.p1"
    payload = opened.payload
    assert payload["top_sensors"] == [{"sensor": "flow", "direction": "below"}]
    assert (payload["model_version"], payload["level"], payload["severity"]) == (1, "warning", 2.0)
    assert opened.message()["id"] == f"{payload['incident_id']}/1"
    record_delivered(db, [opened.alert_id], "webhook")
    assert pending_incident_alerts(db, "webhook") == []
    assert len(pending_incident_alerts(db, "prefect-event")) == 1  # each channel on its own
    score(db, flagged(4, severity=4.0))  # escalates
    assert [a.event for a in pending_incident_alerts(db, "webhook")] == ["aemon.incident.escalated"]
    assert [a.event for a in pending_incident_alerts(db, "prefect-event")] == ["aemon.incident.opened",
                                                                                "aemon.incident.escalated"]


def add_batch(db: Warehouse, batch: str, ago: pd.Timedelta, rows: int = 10) -> None:
    write(db, lambda con: con.execute(
        "INSERT INTO ingest_batches (batch_id, stream, file, file_hash, rows_in, rows_accepted, rows_quarantined, "
        "status, ingested_at) VALUES (?, 's', 'f.csv', ?, ?, ?, 0, 'ok', current_localtimestamp() - ?)",
        [batch, batch, rows, rows, ago.to_pytimedelta()]).fetchall())


def test_a_feed_alerts_once_when_it_stalls_and_once_when_it_resumes(tmp_path):
    db = Warehouse.at(tmp_path / "w")
    stall = pd.Timedelta(minutes=30)
    assert check_feed(db, "s", stall) is None  # nothing ever arrived: not a stall
    add_batch(db, "b1", pd.Timedelta(minutes=5))
    assert check_feed(db, "s", stall) is None  # fresh data: ok, nothing to say
    add_batch(db, "b0", pd.Timedelta(hours=2), rows=0)  # an old batch that accepted nothing changes nothing
    assert check_feed(db, "s", stall) is None
    later = Warehouse.at(tmp_path / "w2")
    add_batch(later, "b1", pd.Timedelta(hours=1))
    alert = check_feed(later, "s", stall)
    assert alert is not None and alert.event == "aemon.stream.stalled"
    assert alert.resource["prefect.resource.id"] == "aemon.stream.s" and alert.payload["stall_after_s"] == 1800
    assert check_feed(later, "s", stall) is None  # said once
    add_batch(later, "b2", pd.Timedelta(0))
    resumed = check_feed(later, "s", stall)
    assert resumed is not None and resumed.event == "aemon.stream.resumed"
