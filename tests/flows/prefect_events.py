"""Reading back the events a run emitted, through the Prefect API."""
from __future__ import annotations

from collections.abc import Callable


def read_events(prefix: str, timeout: float = 90.0, until: Callable[[list], bool] | None = None) -> list:
    """Events whose name starts with `prefix`, read back from the Prefect API. The server
    persists events in batches, and other tests of the session emit some too: wait until
    `until(events)` holds (default: some events, their count stable for two reads)."""
    import time

    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all()
    deadline, seen, stable = time.monotonic() + timeout, -1, 0
    events: list = []
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            page = client.read_events(EventFilter(event=EventNameFilter(prefix=[prefix])), limit=50)
            events = list(page.events)
            while page.next_page:
                page = client.read_events_page(str(page.next_page))
                events += page.events
            stable = stable + 1 if len(events) == seen else 0
            if until(events) if until is not None else (stable >= 2 and events):
                return events
            seen = len(events)
            time.sleep(1.0)
    return events
