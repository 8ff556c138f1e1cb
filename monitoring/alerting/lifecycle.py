"""An incident's life, from the flagged windows that make it to the operator who closes it.

States: `open` -> (`acknowledged`) -> `recovered` -> `closed`.

Time is the stream's data time, the asset's watermark W (the end of its last scored
window), so a replayed or late file follows the same rules as a live feed. With `last`
the end of the incident's last flagged window:
- open while W - last < rule.recovery: new flagged windows extend it;
- recovered once the asset scored normal for rule.recovery; a flag that merges into it
  before it closes reopens it (same id, event `reopened`);
- closed once W - last >= rule.merge_gap + the window's length: no later window (they
  end after W, so start after W minus a window) can merge into it; a new flag is a new
  incident. It also closes when the asset had no new window for rule.stale_after (wall
  time, reason "no data"), when an operator closes it, when a rescoring no longer flags
  its windows ("cleared") or when late windows merge it into an older one ("merged").
- acknowledged: an operator has seen it; it stays so while open (escalations still alert)
  and recovers and closes as an open one does.
Severity escalates (event `escalated`) when the peak crosses rule.escalation_levels.

Ids are stable: an incident keeps the id it was born with (a hash of stream, asset and its
first window's start) for as long as its windows overlap those of its stored self, across
scoring runs, late readings and rescoring by a new champion. Closed incidents are history:
scoring never revises them. Every change is one row appended to `incident_log` (the next
revision) and flagged `notify` when it raises an alert (opened, escalated, recovered,
reopened, acknowledged, closed); `extended` changes are logged quietly. A first scoring of
an asset's history records the incidents it finds already closed without alerting anyone.
"""
from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pandas as pd

from monitoring.alerting.incidents import LEVEL_NAMES, IncidentRule, merge_incidents
from monitoring.errors import IncidentError
from monitoring.store.connection import Warehouse, write
from monitoring.store.incident_records import (
    ACTIVE,
    INCIDENT_FIELDS,
    LOG_FIELDS,
    existing_incident_ids,
    find_incidents,
    incident_id,
    incidents_near,
    now,
    save_incident_changes,
)
from monitoring.store.results import latest_flagged_windows, watermark_rows

ALERTING_EVENTS = ("opened", "escalated", "recovered", "reopened", "acknowledged", "closed")
STATS = ["start", "end", "n_windows", "peak_score", "peak_severity", "top_sensors", "directions", "model_versions"]
MAX_CHAIN_STEPS = 1000
CHAIN_MARGIN = pd.Timedelta(hours=2)  # read before `since` with the merge gap: where a run of flags usually begins


@dataclass(frozen=True)
class IncidentSummary:
    active: int  # open, acknowledged or recovered after the run
    open: int  # open or acknowledged (not yet recovered)
    changes: int  # incident_log rows the run appended
    alerts: int  # of which raise an alert
    windows_read: int = 0  # flagged windows the refresh read back from the warehouse


def level_name(level: int) -> str:
    return LEVEL_NAMES[min(max(level, 1), len(LEVEL_NAMES)) - 1]


def reconcile(stream: str, candidates: pd.DataFrame, active: pd.DataFrame, rule: IncidentRule, *,
              marks: dict[str, pd.Timestamp], updated: dict[str, pd.Timestamp], at: pd.Timestamp,
              first_assets: frozenset[str] = frozenset(), taken: frozenset[str] = frozenset(),
              span: pd.Timedelta = pd.Timedelta(0)) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The new states (INCIDENT_FIELDS) and log rows (LOG_FIELDS) that the merged
    `candidates` (merge_incidents over every flagged window since the active incidents began)
    make of the stream's `active` incidents. Pure: the caller reads and stores.

    marks: each asset's watermark after the run; updated: when it last moved (wall time);
    at: now (wall time); first_assets: assets scored for the first time in this run;
    taken: ids already used by the stream's incidents; span: a window's length (end - start)."""
    states: list[dict] = []
    log: list[dict] = []
    used = set(taken)
    claimed: set[str] = set()
    active = active.sort_values(["asset", "opened_at", "start"], na_position="last") if len(active) else active
    for c in candidates.sort_values(["asset", "start"]).to_dict("records"):
        same = active[(active["asset"] == c["asset"]) & ~active["incident_id"].isin(claimed)] if len(active) else active
        overlapping = same[(same["start"] <= c["end"]) & (same["end"] >= c["start"])] if len(same) else same
        status, reason = _natural_status(c, rule, marks.get(c["asset"]), updated.get(c["asset"]), at, span)
        if len(overlapping):
            holder = overlapping.iloc[0].to_dict()
            claimed |= set(overlapping["incident_id"])
            state, events = _evolve(holder, c, status, reason, rule)
            for other in overlapping.iloc[1:].to_dict("records"):
                _close(other, f"merged into {holder['incident_id']}", at, states, log)
        else:
            new_id = _fresh_id(stream, c["asset"], c["start"], used)
            used.add(new_id)
            state = {"incident_id": new_id, "stream": stream, "status": "open", "opened_at": at, "closed_at": None,
                     "closed_reason": None, "acknowledged_by": None, "acknowledged_at": None, "revision": 0,
                     "severity_level": rule.level(c["peak_severity"]), **{k: c[k] for k in ["asset", *STATS]}}
            quiet = c["asset"] in first_assets and status == "closed"  # history found by a first scoring
            events = [("opened", "open", None, not quiet)]
            if status != "open":
                events.append((status, status, reason, not quiet))
        _append(state, events, at, states, log)
    if len(active):
        for gone in active[~active["incident_id"].isin(claimed)].to_dict("records"):
            _close(gone, "cleared: the latest scoring no longer flags it as an incident", at, states, log)
    return _frame(states, INCIDENT_FIELDS), _frame(log, LOG_FIELDS)


def _natural_status(c: dict, rule: IncidentRule, mark: pd.Timestamp | None, updated: pd.Timestamp | None,
                    at: pd.Timestamp, span: pd.Timedelta) -> tuple[str, str | None]:
    """What the scored windows say of a merged incident: open, recovered or closed (reason)."""
    if mark is None:
        return "open", None
    if updated is not None and at - updated >= rule.stale_after:
        return "closed", f"no data: no new window scored since {updated:%Y-%m-%d %H:%M}"
    quiet = pd.Timestamp(mark) - pd.Timestamp(c["end"])
    if quiet >= rule.merge_gap + span:
        return "closed", "recovered"
    if quiet >= rule.recovery:
        return "recovered", None
    return "open", None


def _evolve(stored: dict, c: dict, natural: str, reason: str | None,
            rule: IncidentRule) -> tuple[dict, list[tuple[str, str, str | None, bool]]]:
    """The stored active incident updated with its merged windows, and the events that makes."""
    state = {**stored, **{k: c[k] for k in STATS}}
    previous = stored["status"]
    events: list[tuple[str, str, str | None, bool]] = []
    status = previous
    if natural == "open" and previous == "recovered":
        status = "open"
        events.append(("reopened", status, None, True))
    level = rule.level(c["peak_severity"])
    if level > int(stored["severity_level"]):
        state["severity_level"] = level
        events.append(("escalated", status, f"{level_name(int(stored['severity_level']))} -> {level_name(level)}",
                       True))
    if natural in ("recovered", "closed") and natural != previous:
        events.append((natural, natural, reason, True))
    changed = any(_differs(stored[k], c[k]) for k in STATS)
    if not events and changed:
        events.append(("extended", status, None, False))
    return state, events


def _differs(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return not (pd.isna(a) and pd.isna(b)) and a != b
    return pd.Timestamp(a) != pd.Timestamp(b) if isinstance(a, (pd.Timestamp,)) else a != b


def _close(stored: dict, reason: str, at: pd.Timestamp, states: list[dict], log: list[dict]) -> None:
    _append(dict(stored), [("closed", "closed", reason, True)], at, states, log)


def _append(state: dict, events: list[tuple[str, str, str | None, bool]], at: pd.Timestamp,
            states: list[dict], log: list[dict], actor: str = "aemon") -> None:
    if not events:
        return
    for event, status, reason, notify in events:
        state["revision"] = int(state["revision"]) + 1
        state["status"] = status
        if status == "closed":
            state["closed_at"], state["closed_reason"] = at, reason
        log.append({**{k: state[k] for k in LOG_FIELDS if k in state}, "event": event, "reason": reason,
                    "actor": actor, "notify": bool(notify), "logged_at": at})
    state["updated_at"] = at
    states.append(state)


def _fresh_id(stream: str, asset: str, start, used: set[str]) -> str:
    n = 1
    new_id = _nth_id(stream, asset, start, n)
    while new_id in used:  # another incident was born at the same start (then closed): keep ids unique
        n += 1
        new_id = _nth_id(stream, asset, start, n)
    return new_id


def _nth_id(stream: str, asset: str, start, n: int) -> str:
    """The id of the n-th incident born at `start` on `asset`."""
    return incident_id(stream, asset, start, n)


def _taken_ids(con: duckdb.DuckDBPyConnection, stream: str, candidates: pd.DataFrame, known: set[str]) -> frozenset:
    """`known` and the stored ids a fresh id of a candidate could collide with (_fresh_id's
    chain of ids for its asset and start), found by id, whatever the incident's span now."""
    taken = set(known)
    depth = {(str(a), pd.Timestamp(s)): 1 for a, s in zip(candidates["asset"], candidates["start"], strict=True)}
    while depth:
        ids = {key: _nth_id(stream, key[0], key[1], n) for key, n in depth.items()}
        taken |= existing_incident_ids(con, sorted(i for i in set(ids.values()) if i not in taken))
        depth = {key: n + 1 for key, n in depth.items() if ids[key] in taken}
    return frozenset(taken)


def _frame(rows: list[dict], columns: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=columns)
    for column in ("opened_at", "closed_at", "acknowledged_at", "updated_at", "logged_at", "start", "end"):
        if column in frame:
            frame[column] = pd.to_datetime(frame[column])
    return frame


# -- with the warehouse -------------------------------------------------------------------

def flagged_since(con: duckdb.DuckDBPyConnection, stream: str, since: pd.Timestamp | None,
                  gap: pd.Timedelta, assets: list[str] | None = None) -> pd.DataFrame:
    """The latest flagged windows ending at or after `since`, and the earlier ones that merge
    with them (a run of flags that began before `since`), so runs are never cut. One query
    reads a margin before `since` as well, where the run usually begins; only a run that
    reaches further back costs another. `assets`: only those assets' windows."""
    if since is None:
        return latest_flagged_windows(con, stream, assets=assets)
    fetched = since - (2 * gap + CHAIN_MARGIN)
    pool = latest_flagged_windows(con, stream, since=fetched, assets=assets)
    ends = pd.to_datetime(pool["window_end"])
    windows = pool[ends >= since]
    lo = since
    for _ in range(MAX_CHAIN_STEPS):
        if windows.empty:
            break
        firsts = windows.groupby("asset")["window_start"].min()
        reach = pd.Timestamp(firsts.min()) - gap
        if reach >= lo:
            break
        earlier = (pool[(ends >= reach) & (ends < lo)] if reach >= fetched
                   else latest_flagged_windows(con, stream, since=reach, until=lo, assets=assets))
        chained = earlier[pd.to_datetime(earlier["asset"].map(firsts)) - gap <= earlier["window_end"]]
        if chained.empty:
            break
        windows = pd.concat([chained, windows], ignore_index=True)
        lo = reach
    return windows.reset_index(drop=True)


def store_incidents(con: duckdb.DuckDBPyConnection, stream: str, rule: IncidentRule = IncidentRule(), *,
                    changed: dict[str, pd.Timestamp] | None = None,
                    first_assets: frozenset[str] = frozenset(),
                    assets: list[str] | None = None) -> IncidentSummary:
    """Bring the stream's incidents up to date with its scored windows, in the caller's
    transaction (a scoring run's, so it sees that run's windows).

    changed: per asset, the start of the earliest window this run scored (new or rescored);
    only flagged windows from there on, and those of active incidents, are merged again, so
    the cost follows what changed, not the length of history. None: every window after the
    closed incidents (after the rule changed).

    assets: only the incidents of those assets (each asset's incidents are its own: a
    scoring split by asset merges each part's in its own transaction); None: every asset."""
    if changed is None:
        near = incidents_near(con, stream, None, assets)
        windows = flagged_since(con, stream, None, rule.merge_gap, assets)
    else:  # the incidents the changed windows can reach (nothing changed: the active ones)
        reach = min((pd.Timestamp(t) for t in changed.values()), default=pd.Timestamp.max) - rule.merge_gap
        near = incidents_near(con, stream, reach, assets)
        starts = [pd.Timestamp(t) for t in changed.values()] + [pd.Timestamp(t) for t in
                                                                 near.loc[near["status"].isin(ACTIVE), "start"]]
        if not starts:
            return IncidentSummary(0, 0, 0, 0)
        windows = flagged_since(con, stream, min(starts) - rule.merge_gap, rule.merge_gap, assets)
        first = _first_start(windows)
        if first is not None and first < reach:  # a run of flags reached further back: so do its neighbours
            near = incidents_near(con, stream, first, assets)
    active = near[near["status"].isin(ACTIVE)].reset_index(drop=True)
    closed = near.loc[near["status"] == "closed", ["asset", "start", "end"]].sort_values(["asset", "end"])
    candidates = merge_incidents(windows, rule, closed=closed.reset_index(drop=True))
    marks, updated = watermark_rows(con, stream)
    if assets is not None:
        marks = {a: t for a, t in marks.items() if a in set(assets)}
        updated = {a: t for a, t in updated.items() if a in set(assets)}
    taken = _taken_ids(con, stream, candidates, set(near["incident_id"]))
    states, log = reconcile(stream, candidates, active, rule, marks=marks, updated=updated, at=now(con),
                            first_assets=first_assets, taken=taken, span=_span(windows))
    save_incident_changes(con, states, log)
    after = pd.concat([active.loc[~active["incident_id"].isin(states["incident_id"]), ["status"]],
                       states.loc[states["status"].isin(ACTIVE), ["status"]]], ignore_index=True)
    return IncidentSummary(len(after), int(after["status"].isin(["open", "acknowledged"]).sum()), len(log),
                           int(log["notify"].sum()) if len(log) else 0, len(windows))


def _first_start(windows: pd.DataFrame) -> pd.Timestamp | None:
    return None if windows.empty else pd.Timestamp(windows["window_start"].min())


def _span(windows: pd.DataFrame) -> pd.Timedelta:
    if windows.empty:
        return pd.Timedelta(0)
    return pd.Timedelta((pd.to_datetime(windows["window_end"]) - pd.to_datetime(windows["window_start"])).max())


def refresh_incidents(warehouse: Warehouse, stream: str, rule: IncidentRule = IncidentRule()) -> IncidentSummary:
    """store_incidents over every window after the closed incidents, in a transaction of its
    own (after the incident rule changed)."""
    return write(warehouse, lambda con: store_incidents(con, stream, rule))


def resolve_incident(con: duckdb.DuckDBPyConnection, prefix: str) -> dict:
    """The one incident whose id starts with `prefix`."""
    found = find_incidents(con, prefix) if prefix else pd.DataFrame()
    if len(found) == 0:
        raise IncidentError(f"no incident has an id starting with {prefix!r}; `aemon incidents list` shows them")
    if len(found) > 1:
        raise IncidentError(f"{len(found)} incidents have ids starting with {prefix!r} "
                            f"({', '.join(found['incident_id'][:5])}); give more of the id")
    return found.iloc[0].to_dict()


def acknowledge(warehouse: Warehouse, prefix: str, actor: str, note: str | None = None) -> dict:
    """Mark an open or recovered incident acknowledged by `actor` (event acknowledged)."""
    def change(con: duckdb.DuckDBPyConnection) -> dict:
        state = resolve_incident(con, prefix)
        if state["status"] not in ("open", "recovered"):
            raise IncidentError(f"incident {state['incident_id']} is {state['status']}; only an open or recovered "
                                "incident can be acknowledged")
        at = now(con)
        state.update(acknowledged_by=actor, acknowledged_at=at)
        status = "acknowledged" if state["status"] == "open" else state["status"]
        return _manual(con, state, "acknowledged", status, note, actor, at)
    return write(warehouse, change)


def close_incident(warehouse: Warehouse, prefix: str, actor: str, note: str | None = None) -> dict:
    """Close an active incident by hand (event closed, reason: who closed it and why)."""
    def change(con: duckdb.DuckDBPyConnection) -> dict:
        state = resolve_incident(con, prefix)
        if state["status"] == "closed":
            raise IncidentError(f"incident {state['incident_id']} is already closed ({state['closed_reason']})")
        reason = f"closed by {actor}" + (f": {note}" if note else "")
        return _manual(con, state, "closed", "closed", reason, actor, now(con))
    return write(warehouse, change)


def _manual(con: duckdb.DuckDBPyConnection, state: dict, event: str, status: str, reason: str | None, actor: str,
            at: pd.Timestamp) -> dict:
    states: list[dict] = []
    log: list[dict] = []
    _append(state, [(event, status, reason, True)], at, states, log, actor=actor)
    save_incident_changes(con, _frame(states, INCIDENT_FIELDS), _frame(log, LOG_FIELDS))
    return states[0]
