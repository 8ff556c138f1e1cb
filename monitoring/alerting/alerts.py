"""What an alert says, whichever channel carries it (a Prefect event, a webhook): incident
changes from the `incident_log` outbox, a feed that stalled or resumed, a flow that failed.

Incident alerts are delivered at least once: a change is an alert until its delivery on a
channel is recorded (`alert_deliveries`), so a run that fails to deliver leaves it for the
next run. Their event names are `aemon.incident.<event>` on the resource
`aemon.stream.<stream>.asset.<asset>`, the names Prefect automations match on."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from monitoring.alerting.lifecycle import level_name
from monitoring.store.connection import Warehouse, connect, write
from monitoring.store.incident_records import (
    last_data_at,
    mark_delivered,
    now,
    pending_alerts,
    read_feed_status,
    write_feed_status,
)


@dataclass(frozen=True)
class Alert:
    alert_id: str  # '<incident id>/<revision>', or the stream alert's own id
    event: str  # e.g. aemon.incident.opened
    resource: dict[str, str]
    payload: dict[str, Any]
    related: list[dict[str, str]] = field(default_factory=list)

    def message(self) -> dict[str, Any]:
        """The webhook's JSON body."""
        return {"id": self.alert_id, "event": self.event, "resource": self.resource, "payload": self.payload}


def stream_resource(stream: str) -> dict[str, str]:
    return {"prefect.resource.id": f"aemon.stream.{stream}", "prefect.resource.name": stream,
            "prefect.resource.role": "stream"}


def asset_resource(stream: str, asset: str) -> dict[str, str]:
    return {"prefect.resource.id": f"aemon.stream.{stream}.asset.{asset}", "prefect.resource.name": asset}


def _stamp(value) -> str | None:
    return None if value is None or pd.isna(value) else pd.Timestamp(value).isoformat()


def incident_alert(row: dict) -> Alert:
    """The alert of one incident_log row (pending_alerts' columns)."""
    sensors = [s for s in str(row["top_sensors"]).split(",") if s]
    directions = str(row.get("directions") or "").split(",")
    versions = [int(v) for v in str(row["model_versions"]).split(",") if v.strip()]
    level = int(row["severity_level"])
    payload = {
        "incident_id": row["incident_id"],
        "revision": int(row["revision"]),
        "stream": row["stream"],
        "asset": row["asset"],
        "event": row["event"],
        "status": row["status"],
        "severity": round(float(row["peak_severity"]), 4),
        "level": level_name(level),
        "start": _stamp(row["start"]),
        "end": _stamp(row["end"]),
        "n_windows": int(row["n_windows"]),
        "top_sensors": [{"sensor": s, "direction": directions[i] if i < len(directions) else ""}
                        for i, s in enumerate(sensors)],
        "model_version": max(versions) if versions else None,
        "model_versions": versions,
        "reason": None if row.get("reason") is None or pd.isna(row.get("reason")) else row["reason"],
        "actor": row["actor"],
        "at": _stamp(row["logged_at"]),
    }
    resource = {**asset_resource(row["stream"], row["asset"]), "aemon.incident.id": row["incident_id"],
                "aemon.incident.level": level_name(level)}
    return Alert(row["alert_id"], f"aemon.incident.{row['event']}", resource, payload,
                 [stream_resource(row["stream"])])


def pending_incident_alerts(warehouse: Warehouse, channel: str, stream: str | None = None) -> list[Alert]:
    """Incident changes not delivered on `channel` yet, oldest first."""
    with connect(warehouse) as con:
        rows = pending_alerts(con, channel, stream)
    return [incident_alert(row) for row in rows.to_dict("records")]


def record_delivered(warehouse: Warehouse, alert_ids: list[str], channel: str) -> int:
    if not alert_ids:
        return 0
    return write(warehouse, lambda con: mark_delivered(con, alert_ids, channel))


def feed_alert(stream: str, status: str, since: pd.Timestamp, last: pd.Timestamp | None,
               stall_after: pd.Timedelta) -> Alert:
    event = "stalled" if status == "stalled" else "resumed"
    payload = {"stream": stream, "status": status, "since": _stamp(since), "last_data_at": _stamp(last),
               "stall_after_s": stall_after.total_seconds()}
    return Alert(f"{stream}/feed/{event}/{_stamp(since)}", f"aemon.stream.{event}", stream_resource(stream), payload)


def check_feed(warehouse: Warehouse, stream: str, stall_after: pd.Timedelta) -> Alert | None:
    """Record whether the stream's feed is stalled (no rows accepted for `stall_after`, wall
    time) and return the alert when that changed since the last check: stalled, or resumed."""
    def check(con) -> Alert | None:
        at = now(con)
        last = last_data_at(con, stream)
        previous = read_feed_status(con, stream)
        if last is None:
            return None  # nothing ever arrived: a stream being set up, not a stall
        status = "stalled" if at - last >= stall_after else "ok"
        if previous is not None and previous["status"] == status:
            return None
        since = last + stall_after if status == "stalled" else at
        write_feed_status(con, stream, status, since, last)
        if previous is None and status == "ok":
            return None
        return feed_alert(stream, status, since, last, stall_after)
    return write(warehouse, check)


def flow_failure_alert(stream: str | None, flow_name: str, run_id: str, run_name: str, state: str,
                       message: str) -> Alert:
    resource = stream_resource(stream) if stream else {"prefect.resource.id": "aemon", "prefect.resource.name": "aemon"}
    payload = {"stream": stream, "flow": flow_name, "flow_run_id": run_id, "flow_run_name": run_name, "state": state,
               "message": message}
    return Alert(f"flow-run/{run_id}/{state}", "aemon.flow.failed", resource, payload)


def drift_alert(stream: str, check_id: str, model_name: str, model_version: int, drifted: list[str], reason: str,
                retrain: bool) -> Alert:
    """Drift that holds against the champion (monitoring.evaluation's drift check)."""
    payload = {"stream": stream, "check_id": check_id, "model_name": model_name, "model_version": model_version,
               "drifted": drifted, "retrain_requested": retrain, "decision": reason}
    return Alert(f"{stream}/drift/{check_id}", "aemon.stream.drift", stream_resource(stream), payload)
