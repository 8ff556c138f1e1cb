"""The ingest flow announces new readings with a Prefect event (the score deployment's trigger),
and stays silent when nothing new arrived."""
from __future__ import annotations

import pytest
from prefect.events.clients import AssertingEventsClient
from prefect.events.worker import EventsWorker

from flows.config import load_config
from flows.ingest import READINGS_INGESTED, ingest_readings


@pytest.fixture
def events(monkeypatch):
    """Prefect's own recording events client (prefect.testing.fixtures.asserting_events_worker):
    every event a flow run emits, kept for the test instead of sent."""
    worker = EventsWorker.instance(AssertingEventsClient)
    monkeypatch.setattr(EventsWorker, "instance", lambda *_: worker)

    def emitted(name: str) -> list:
        worker.wait_until_empty()
        assert isinstance(worker._client, AssertingEventsClient)
        return [e for e in worker._client.events if e.event == name]

    try:
        yield emitted
    finally:
        worker.drain()


def test_an_ingest_that_accepts_rows_emits_one_event_and_one_that_finds_nothing_new_none(
        aemon_home, prefect_harness, small_stream, events):
    _, config_path = aemon_home
    config = load_config(config_path)
    inbox = config.inbox("pumps")
    inbox.mkdir(parents=True)
    frame = small_stream.readings.head(1000)
    frame.head(600).to_csv(inbox / "a.csv", index=False)
    frame.tail(400).to_csv(inbox / "b.csv", index=False)

    ingest_readings("pumps", config_path=str(config_path))
    (event,) = events(READINGS_INGESTED)
    assert event.resource.id == "aemon.stream.pumps"
    assert event.payload == {"stream": "pumps", "files": [str(inbox / "a.csv"), str(inbox / "b.csv")],
                             "rows_accepted": 1000}
    # emitted inside the flow run: Prefect relates it to the run
    assert "flow-run" in {r.role for r in event.related}

    ingest_readings("pumps", config_path=str(config_path))  # the same files again: skipped
    frame.tail(5).to_csv(inbox / "repeat.csv", index=False)  # readings the lake holds: quarantined
    ingest_readings("pumps", config_path=str(config_path))
    assert len(events(READINGS_INGESTED)) == 1  # still only the first run's
