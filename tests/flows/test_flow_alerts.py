"""A flow that fails alerts: an `aemon.flow.failed` event naming the stream and the run."""
from __future__ import annotations

import pytest

from flows.score import score_stream
from monitoring.errors import RegistryError
from tests.flows.prefect_events import read_events


def test_a_failed_score_run_emits_a_flow_failed_event(aemon_home, prefect_harness):
    _, config_path = aemon_home
    with pytest.raises(RegistryError):
        score_stream("pumps", config_path=str(config_path))  # nothing trained yet
    def ours(found: list) -> list:
        return [e for e in found if e.payload.get("flow") == "score-stream"]

    events = ours(read_events("aemon.flow.failed", until=lambda found: bool(ours(found))))
    assert events, "no aemon.flow.failed event"
    event = events[0]
    assert event.resource.id == "aemon.stream.pumps"
    assert event.payload["state"] == "FAILED" and "pumps" in event.payload["message"]


def test_an_alerts_event_id_is_stable_and_differs_between_warehouses(tmp_path):
    """Delivered again, an alert keeps its event id (Prefect keeps one event); the same
    incident in another warehouse (the demo run in a second home) gets another id, so a
    server holding the first never sees a batch of ids it already has."""
    from flows.notify import event_id
    from monitoring.alerting.alerts import Alert, stream_resource
    from monitoring.store.connection import Warehouse

    alert = Alert("pumps/pump-01/2026-01-12T21:18:00/1", "aemon.incident.opened", stream_resource("pumps"), {})
    first, second = Warehouse.at(tmp_path / "a"), Warehouse.at(tmp_path / "b")
    assert event_id(alert, first) == event_id(alert, Warehouse.at(tmp_path / "a"))
    assert event_id(alert, first) != event_id(alert, second)
    assert event_id(alert, None) not in (event_id(alert, first), event_id(alert, second))
