"""Task behaviour that flows rely on."""
import pytest


def test_io_tasks_retry_transient_failures_but_not_domain_errors(prefect_harness):
    from prefect import flow

    from flows import tasks
    from monitoring.errors import WarehouseError

    attempts = {"domain": 0, "io": 0}

    @tasks.io_task(retry_delay_seconds=0)
    def missing_stream():
        attempts["domain"] += 1
        raise WarehouseError("stream 'x' has no readings yet")

    @tasks.io_task(retry_delay_seconds=0)
    def locked_file():
        attempts["io"] += 1
        if attempts["io"] < 3:
            raise OSError("database is locked")
        return "read"

    @flow
    def both():
        with pytest.raises(WarehouseError):
            missing_stream()
        return locked_file()

    assert both() == "read"
    assert attempts == {"domain": 1, "io": 3}
