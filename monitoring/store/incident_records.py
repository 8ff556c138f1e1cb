"""Incidents as stored: their current state (`incidents`, one row per incident id), their
history (`incident_log`, appended, never rewritten), which alerts were delivered on which
channel (`alert_deliveries`), and each stream's feed status (`feed_status`).

A change to an incident is one new `incident_log` row (its next revision) and the
replacement of its `incidents` row, in the caller's transaction: the table always shows
the latest revision, and the log shows how it got there."""
from __future__ import annotations

import hashlib

import duckdb
import pandas as pd

from monitoring.errors import WarehouseError
from monitoring.store.connection import insert_missing, quote_identifier, scalar, transaction
from monitoring.store.schema import KEYS

INCIDENT_FIELDS = ["incident_id", "stream", "asset", "start", "end", "n_windows", "peak_score", "peak_severity",
                   "top_sensors", "model_versions", "status", "updated_at", "severity_level", "directions",
                   "opened_at", "closed_at", "closed_reason", "acknowledged_by", "acknowledged_at", "revision"]
LOG_FIELDS = ["incident_id", "revision", "stream", "asset", "event", "status", "start", "end", "n_windows",
              "peak_severity", "severity_level", "top_sensors", "directions", "model_versions", "reason", "actor",
              "notify", "logged_at"]
ACTIVE = ("open", "acknowledged", "recovered")


def incident_id(stream: str, asset: str, start, n: int = 1) -> str:
    """The id an incident is born with: a hash of its stream, asset and first window's start
    (the same in SQL: schema.MIGRATIONS[2]), so scoring the same history again gives the
    same ids; later changes of its start keep the id it was born with. `n`: the n-th
    incident born at that start (an earlier one was closed), whose hash also takes `#n`."""
    stamp = pd.Timestamp(start).strftime("%Y-%m-%dT%H:%M:%S.%f") + (f"#{n}" if n > 1 else "")
    return hashlib.md5(f"{stream}\x1f{asset}\x1f{stamp}".encode()).hexdigest()[:12]


def now(con: duckdb.DuckDBPyConnection) -> pd.Timestamp:
    """The warehouse's clock (current_localtimestamp, as the tables' DEFAULTs use)."""
    return pd.Timestamp(scalar(con, "SELECT current_localtimestamp()"))


def read_incidents(con: duckdb.DuckDBPyConnection, stream: str | None = None, *,
                   statuses: tuple[str, ...] | None = None, asset: str | None = None) -> pd.DataFrame:
    """Incidents (of a stream, with a status among `statuses`, of an asset) by asset and start."""
    clauses: list[str] = []
    params: list = []
    if stream is not None:
        clauses.append("stream = ?")
        params.append(stream)
    if statuses is not None:
        clauses.append("list_contains(?, status)")
        params.append(list(statuses))
    if asset is not None:
        clauses.append("asset = ?")
        params.append(asset)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    return con.execute(f"SELECT * FROM incidents {where} ORDER BY stream, asset, start", params).df()


def incidents_near(con: duckdb.DuckDBPyConnection, stream: str, since: pd.Timestamp | None,
                   assets: list[str] | None = None) -> pd.DataFrame:
    """The stream's active incidents and every other one ending at or after `since` (all of
    them when None), by asset and start: what a refresh of the windows from `since` on can
    touch (an incident born at a window's start holds that start between its start and end).
    `assets`: only the incidents of those assets."""
    only, names = ("", []) if assets is None else ("AND list_contains(?, asset) ", [[str(a) for a in assets]])
    if since is None:
        return con.execute(f"SELECT * FROM incidents WHERE stream = ? {only}ORDER BY stream, asset, start",
                           [stream, *names]).df()
    return con.execute(f"SELECT * FROM incidents WHERE stream = ? {only}AND (list_contains(?, status) OR "
                       "\"end\" >= ?) ORDER BY stream, asset, start",
                       [stream, *names, list(ACTIVE), _plain_time(since)]).df()


def existing_incident_ids(con: duckdb.DuckDBPyConnection, ids: list[str]) -> set[str]:
    """Which of `ids` the incidents table holds."""
    if not ids:
        return set()
    rows = con.execute("SELECT incident_id FROM incidents WHERE list_contains(?, incident_id)", [ids]).fetchall()
    return {r[0] for r in rows}


def _plain_time(value: pd.Timestamp):
    """`value` as a Python datetime for a bound `>= value`: floored to the microsecond (a
    bound no later than asked), at most pd.Timestamp.max."""
    return min(pd.Timestamp(value), pd.Timestamp.max).floor("us").to_pydatetime()


def find_incidents(con: duckdb.DuckDBPyConnection, prefix: str) -> pd.DataFrame:
    """Incidents whose id starts with `prefix` (ids are shown shortened, as git's are)."""
    return con.execute("SELECT * FROM incidents WHERE starts_with(incident_id, ?) ORDER BY incident_id",
                       [prefix]).df()


def read_incident_log(con: duckdb.DuckDBPyConnection, incident: str) -> pd.DataFrame:
    return con.execute("SELECT * FROM incident_log WHERE incident_id = ? ORDER BY revision", [incident]).df()


def closed_spans(con: duckdb.DuckDBPyConnection, stream: str) -> pd.DataFrame:
    """asset, start, end of the stream's closed incidents: history that scoring no longer revises."""
    return con.execute("SELECT asset, start, \"end\" FROM incidents WHERE stream = ? AND status = 'closed' "
                       "ORDER BY asset, \"end\"", [stream]).df()


def save_incident_changes(con: duckdb.DuckDBPyConnection, states: pd.DataFrame, log: pd.DataFrame) -> int:
    """Append `log` (columns LOG_FIELDS) and make `states` (columns INCIDENT_FIELDS) the
    current rows of their incidents, in one transaction. Returns the log rows appended."""
    if log.empty:
        return 0
    for frame, wanted, what in ((states, INCIDENT_FIELDS, "incident states"), (log, LOG_FIELDS, "incident log")):
        missing = set(wanted) - set(frame.columns)
        if missing:
            raise WarehouseError(f"{what} lack columns {sorted(missing)}")
    with transaction(con):
        con.register("new_states", states[INCIDENT_FIELDS])
        con.register("new_log", log[LOG_FIELDS])
        n = insert_missing(con, "incident_log", "new_log", LOG_FIELDS, KEYS["incident_log"])
        scalar(con, "DELETE FROM incidents i USING new_states n WHERE i.incident_id = n.incident_id")
        listed = ", ".join(quote_identifier(c) for c in INCIDENT_FIELDS)
        scalar(con, f"INSERT INTO incidents ({listed}) SELECT {listed} FROM new_states")
        con.unregister("new_states")
        con.unregister("new_log")
    return int(n)


def pending_alerts(con: duckdb.DuckDBPyConnection, channel: str, stream: str | None = None,
                   max_age: pd.Timedelta = pd.Timedelta(days=1)) -> pd.DataFrame:
    """Incident changes that raise an alert (notify) and were not delivered on `channel` yet,
    oldest first, with the incident's current peak score: the outbox a delivery that failed
    is retried from. Changes older than `max_age` are left out: a channel configured today
    is not flooded with last month's alerts (they stay in incident_log)."""
    clause, params = ("AND l.stream = ?", [stream]) if stream is not None else ("", [])
    return con.execute(
        "SELECT l.*, i.peak_score, l.incident_id || '/' || l.revision AS alert_id FROM incident_log l "
        "JOIN incidents i USING (incident_id) WHERE l.notify AND l.logged_at >= current_localtimestamp() - ? "
        "AND NOT EXISTS (SELECT 1 FROM alert_deliveries d WHERE d.alert_id = l.incident_id || '/' || l.revision "
        f"AND d.channel = ?) {clause} ORDER BY l.logged_at, l.incident_id, l.revision",
        [max_age.to_pytimedelta(), channel, *params]).df()


def mark_delivered(con: duckdb.DuckDBPyConnection, alert_ids: list[str], channel: str) -> int:
    if not alert_ids:
        return 0
    frame = pd.DataFrame({"alert_id": alert_ids, "channel": channel})
    con.register("delivered", frame)
    try:
        return insert_missing(con, "alert_deliveries", "delivered", ["alert_id", "channel"], KEYS["alert_deliveries"])
    finally:
        con.unregister("delivered")


def last_data_at(con: duckdb.DuckDBPyConnection, stream: str) -> pd.Timestamp | None:
    """When an ingest last accepted rows of the stream (None: never)."""
    value = scalar(con, "SELECT max(ingested_at) FROM ingest_batches WHERE stream = ? AND rows_accepted > 0",
                   [stream])
    return None if value is None else pd.Timestamp(value)


def read_feed_status(con: duckdb.DuckDBPyConnection, stream: str) -> dict | None:
    rows = con.execute("SELECT status, since, last_data_at FROM feed_status WHERE stream = ?", [stream]).fetchall()
    if not rows:
        return None
    status, since, last = rows[0]
    return {"status": status, "since": pd.Timestamp(since),
            "last_data_at": None if last is None else pd.Timestamp(last)}


def write_feed_status(con: duckdb.DuckDBPyConnection, stream: str, status: str, since: pd.Timestamp,
                      last: pd.Timestamp | None) -> None:
    with transaction(con):
        scalar(con, "DELETE FROM feed_status WHERE stream = ?", [stream])
        scalar(con, "INSERT INTO feed_status (stream, status, since, last_data_at) VALUES (?, ?, ?, ?)",
               [stream, status, since.to_pydatetime(), None if last is None else last.to_pydatetime()])
