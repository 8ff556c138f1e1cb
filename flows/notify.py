"""Alerts out of aemon: Prefect events (what automations trigger on), an optional signed
webhook, a markdown + table artifact per scoring run, and the hooks that alert when a flow
fails. What an alert says is monitoring.alerting.alerts; this module only carries it.

Incident alerts come from the warehouse's outbox (incident_log rows not yet delivered on a
channel), so an alert that could not be sent (a webhook down, the API unreachable) goes
out with the next scoring run: at least once. Each Prefect event's id is derived from the
alert's id, so a resent event is the same event.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import urllib.error
import urllib.request
import uuid
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import pandas as pd
from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.events import emit_event
from prefect.exceptions import MissingContextError

from flows.config import AemonConfig, WebhookSettings, load_config
from flows.locations import ConfigError
from flows.render import sensors_with_direction
from monitoring.alerting.alerts import (
    Alert,
    check_feed,
    flow_failure_alert,
    pending_incident_alerts,
    record_delivered,
)
from monitoring.alerting.lifecycle import level_name
from monitoring.store.connection import Warehouse, connect
from monitoring.store.incident_records import ACTIVE, read_incidents

if TYPE_CHECKING:  # scoring imports the model registry (MLflow), which sending an alert never needs
    from monitoring.alerting.scoring import ScoreResult

EVENT_CHANNEL = "prefect-event"
WEBHOOK_CHANNEL = "webhook"
ALERT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://aemon/alerts")


class WebhookError(RuntimeError):
    """The webhook could not be reached or refused an alert (its URL is never in the message)."""


def _logger() -> logging.Logger | logging.LoggerAdapter:
    try:
        return get_run_logger()
    except MissingContextError:  # a hook or a command outside a run
        return logging.getLogger("aemon.alerts")


def event_id(alert: Alert, warehouse: Warehouse | None) -> uuid.UUID:
    """The alert's event id: the same each time the alert is delivered again (Prefect keeps
    one event per id), and different for the same alert of another warehouse. Two
    warehouses can hold the same incident (the demo in two homes), and a Prefect server
    that already holds all of a batch of event ids fails to store that batch (its SQLite
    writer inserts an empty row list), logging a traceback at every flush."""
    scope = "" if warehouse is None else f"{warehouse.catalog}\n{warehouse.data_path}\n"
    return uuid.uuid5(ALERT_NAMESPACE, scope + alert.alert_id)


def emit(alert: Alert, warehouse: Warehouse | None) -> bool:
    """The alert as a Prefect event; False when no event could be emitted."""
    event = emit_event(alert.event, resource=alert.resource, related=alert.related, payload=alert.payload,
                       id=event_id(alert, warehouse))
    return event is not None


def webhook_target(settings: WebhookSettings) -> tuple[str, bytes | None]:
    """The URL and the signing key, read where the settings say (environment, Secret block)."""
    url = settings.url or os.environ.get(settings.url_env or "", "")
    if not url:
        raise WebhookError(f"webhook.url_env names {settings.url_env!r}, which is not set in the environment")
    if urlsplit(url).scheme not in ("http", "https"):
        raise WebhookError(f"webhook.url_env {settings.url_env!r}: expected an http:// or https:// URL")
    secret: str | None = None
    if settings.secret_block:
        from prefect.blocks.system import Secret

        block = cast(Secret, Secret.load(settings.secret_block))  # a Secret, called outside an event loop
        secret = str(block.get())
    elif settings.secret_env:
        secret = os.environ.get(settings.secret_env)
    return url, None if not secret else secret.encode()


def signature(body: bytes, key: bytes) -> str:
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def post(settings: WebhookSettings, alert: Alert) -> None:
    """POST one alert; raises WebhookError naming only the host on a failure."""
    url, key = webhook_target(settings)
    body = json.dumps(alert.message(), sort_keys=True, default=str).encode()
    headers = {"Content-Type": "application/json", "X-Aemon-Event": alert.event, "X-Aemon-Delivery": alert.alert_id}
    if key:
        headers["X-Aemon-Signature"] = signature(body, key)
    host = urlsplit(url).netloc.rsplit("@", 1)[-1]  # never the path or credentials: they may be the secret
    # urllib, not httpx: httpx logs every request's full URL at INFO, into the run's logs
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=settings.timeout_s) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        raise WebhookError(f"webhook at {host}: {type(exc).__name__}") from None
    if status >= 300:
        raise WebhookError(f"webhook at {host} answered {status} to {alert.event}")


def send(config: AemonConfig, alert: Alert) -> dict[str, bool]:
    """One alert (not from the outbox: a stalled feed, a failed flow) on every channel."""
    sent = {EVENT_CHANNEL: emit(alert, config.warehouse)}
    if config.webhook.enabled:
        try:
            post(config.webhook, alert)
            sent[WEBHOOK_CHANNEL] = True
        except WebhookError as exc:
            _logger().warning("alert %s not delivered: %s", alert.event, exc)
            sent[WEBHOOK_CHANNEL] = False
    return sent


def deliver_pending(config: AemonConfig, stream: str | None = None) -> dict[str, int]:
    """Deliver the incident alerts still in the outbox on every channel; returns per channel
    how many went out. A webhook failure stops that channel for this run (order is kept)."""
    warehouse = config.warehouse
    counts = {}
    channels = [EVENT_CHANNEL] + ([WEBHOOK_CHANNEL] if config.webhook.enabled else [])
    for channel in channels:
        done: list[str] = []
        for alert in pending_incident_alerts(warehouse, channel, stream):
            if channel == EVENT_CHANNEL:
                if not emit(alert, warehouse):
                    break
            else:
                try:
                    post(config.webhook, alert)
                except WebhookError as exc:
                    _logger().warning("%d alerts wait for the next run: %s",
                                             len(pending_incident_alerts(warehouse, channel, stream)) - len(done), exc)
                    break
            done.append(alert.alert_id)
        record_delivered(warehouse, done, channel)
        counts[channel] = len(done)
    return counts


def feed_check(config: AemonConfig, stream: str) -> Alert | None:
    """Alert when the stream's feed stalled or resumed (stall_after_intervals ingest intervals)."""
    settings = config.stream(stream)
    intervals = settings.alerts.stall_after_intervals
    if intervals <= 0:
        return None
    alert = check_feed(config.warehouse, stream, pd.Timedelta(seconds=intervals * settings.schedule.ingest_every_s))
    if alert is not None:
        send(config, alert)
    return alert


def artifact_key(stream: str, what: str) -> str:
    """Artifact keys take lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", f"{stream}-{what}".lower()).strip("-")


def active_incidents(warehouse: Warehouse, stream: str) -> pd.DataFrame:
    with connect(warehouse) as con:
        return read_incidents(con, stream, statuses=ACTIVE)


def incident_table(incidents: pd.DataFrame) -> list[dict[str, Any]]:
    return [{"id": r.incident_id, "asset": r.asset, "status": r.status, "level": level_name(int(r.severity_level)),
             "severity": round(float(r.peak_severity), 2), "start": str(r.start), "end": str(r.end),
             "windows": int(r.n_windows), "top sensors": sensors_with_direction(r.top_sensors, r.directions)}
            for r in incidents.itertuples()]


def publish_scoring(stream: str, result: ScoreResult, incidents: pd.DataFrame, sent: dict[str, int],
                    feed: Alert | None) -> None:
    """The scoring run's markdown summary and its table of active incidents, as artifacts."""
    lines = [f"# {stream}: scoring by {result.stream}-detector v{result.model_version}", "",
             f"- windows scored: {result.windows_scored} ({result.anomalies_written} newly flagged)",
             f"- incident changes: {result.incident_changes} ({result.alerts} alerting)",
             f"- active incidents: {result.incidents} ({result.open_incidents} not recovered)",
             "- alerts delivered: " + (", ".join(f"{n} as {c}" for c, n in sent.items()) or "none")]
    if feed is not None:
        lines.append(f"- feed: **{feed.payload['status']}** since {feed.payload['since']}")
    if len(incidents):
        lines += ["", "| id | asset | status | level | severity | start | top sensors |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['id']} | {r['asset']} | {r['status']} | {r['level']} | {r['severity']} | {r['start']} | "
                  f"{r['top sensors']} |" for r in incident_table(incidents)]
    create_markdown_artifact("\n".join(lines), key=artifact_key(stream, "scoring"),
                             description=f"Scoring of stream {stream}")
    create_table_artifact(incident_table(incidents) or [{"id": None, "status": "no active incidents"}],
                          key=artifact_key(stream, "incidents"), description=f"Active incidents of stream {stream}")


def alert_on_failure(flow: Any, flow_run: Any, state: Any) -> None:
    """A flow's on_failure / on_crashed hook: an `aemon.flow.failed` alert on every channel."""
    params = dict(getattr(flow_run, "parameters", {}) or {})
    stream = params.get("stream")
    alert = flow_failure_alert(stream, flow.name, str(flow_run.id), flow_run.name, state.type.value,
                               (state.message or "")[:500])
    try:
        config = load_config(params.get("config_path"))
    except ConfigError:  # a broken config is what failed: still emit the event
        emit(alert, None)
        return
    send(config, alert)
