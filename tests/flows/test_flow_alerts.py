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
