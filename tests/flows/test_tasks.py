"""Task behaviour that flows rely on."""
from pathlib import Path

import pytest

from monitoring.store.connection import connect
from monitoring.store.readings import count_readings


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


def test_steps_run_in_process_retry_as_their_tasks_do():
    """`aemon ingest` without a Prefect API calls the tasks' functions directly (IN_PROCESS):
    they get the tasks' retries there too, transient failures only, with the tasks' delays;
    a step a retry would repeat (commit-files) is called once."""
    from flows import tasks
    from monitoring.errors import WarehouseError

    attempts = {"domain": 0, "io": 0, "down": 0}

    @tasks.io_task(retry_delay_seconds=[0.01, 0.02])
    def blip() -> str:
        attempts["io"] += 1
        if attempts["io"] < 4:
            raise OSError("Connection reset by peer")
        return "listed"

    @tasks.io_task(retry_delay_seconds=0)
    def missing_stream():
        attempts["domain"] += 1
        raise WarehouseError("stream 'x' has no readings yet")

    @tasks.io_task(retry_delay_seconds=0)
    def down():
        attempts["down"] += 1
        raise OSError("no route to host")

    import logging

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(logging.WARNING)
    logging.getLogger("aemon.steps").addHandler(handler)
    try:
        assert tasks.in_process(blip)() == "listed"  # 3 failures, then the 4th attempt (retries=3)
    finally:
        logging.getLogger("aemon.steps").removeHandler(handler)
    # the delays as Prefect reads the list: the last one repeats
    assert [r.getMessage().rsplit(" in ", 1)[1] for r in records] == ["0.01 s", "0.02 s", "0.02 s"]
    assert "blip failed (OSError: Connection reset by peer); retrying" in records[0].getMessage()
    with pytest.raises(WarehouseError):
        tasks.in_process(missing_stream)()
    with pytest.raises(OSError, match="no route to host"):
        tasks.in_process(down)()
    assert attempts == {"io": 4, "domain": 1, "down": 4}
    # the ingest's own steps: retried as in a flow run, but for the commit, which is not retried there either
    assert tasks.IN_PROCESS.scan_inbox is not tasks.scan_inbox.fn
    assert tasks.IN_PROCESS.commit_files is tasks.commit_files.fn


def test_ingest_waits_out_another_process_holding_the_write_lock(aemon_home, prefect_harness, small_stream):
    import subprocess
    import sys

    from flows.config import load_config
    from flows.ingest import ingest_readings


    _, config_path = aemon_home
    config = load_config(config_path)
    inbox = config.inbox("pumps")
    inbox.mkdir(parents=True)
    small_stream.readings.head(1000).to_csv(inbox / "part.csv", index=False)
    with connect(config.warehouse):
        pass
    # Another process takes the write lock (a long upkeep run) and keeps it for 3 seconds.
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import time; from monitoring.store.connection import Warehouse, connect\n"
         f"with connect(Warehouse.at({str(config.home)!r}), write=True):\n"
         "    print('locked', flush=True); time.sleep(3)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        results = ingest_readings("pumps", config_path=str(config_path))
    finally:
        holder.wait(timeout=30)
    assert [r["status"] for r in results] == ["ok"]
    with connect(config.warehouse) as con:
        assert count_readings(con, "pumps") == 1000


def test_ingest_logs_one_line_for_the_files_unchanged_since_their_ingest(aemon_home, prefect_harness, small_stream):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    from flows.config import load_config
    from flows.ingest import ingest_readings

    _, config_path = aemon_home
    config = load_config(config_path)
    inbox = config.inbox("pumps")
    inbox.mkdir(parents=True)
    for i in range(3):
        small_stream.readings.iloc[i * 100:(i + 1) * 100].to_csv(inbox / f"part-{i}.csv", index=False)
    assert [r["status"] for r in ingest_readings("pumps", config_path=str(config_path))] == ["ok"] * 3
    small_stream.readings.iloc[300:400].to_csv(inbox / "part-3.csv", index=False)
    state = ingest_readings("pumps", config_path=str(config_path), return_state=True)
    results = state.result()
    assert [(r["file"], r["status"]) for r in results] == [(str(inbox / "part-3.csv"), "ok")]
    APILogHandler().flush()  # the run's log, as the Prefect UI shows it
    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    messages = [log.message for log in logs]
    assert messages.count("3 files unchanged since their last ingest") == 1
    assert "part-3.csv ok: 100 rows" in messages
    assert not [m for m in messages if "skipped" in m or "part-0" in m]


def test_a_stream_with_an_archive_moves_its_ingested_files_there(tmp_path, config_writer, prefect_harness,
                                                                 small_stream):
    from flows.config import load_config
    from flows.ingest import ingest_readings

    home = tmp_path / "home"
    config_path = config_writer(home)
    inbox = load_config(config_path).inbox("pumps")
    inbox.mkdir(parents=True)
    small_stream.readings.iloc[:100].to_csv(inbox / "early.csv", index=False)
    assert [r["status"] for r in ingest_readings("pumps", config_path=str(config_path))] == ["ok"]
    # the archive set later: a file ingested before goes too; a rejected file stays, to be fixed
    config_path.write_text(config_path.read_text().replace("[streams.pumps]\n", '[streams.pumps]\narchive = "done"\n'))
    config = load_config(config_path)
    assert config.archive("pumps") == home / "done"
    small_stream.readings.iloc[100:200].to_csv(inbox / "late.csv", index=False)
    (inbox / "broken.csv").write_text("timestamp,asset\n2026-01-01,p1\n")
    (inbox / "broken-copy.csv").write_text("timestamp,asset\n2026-01-01,p1\n")  # known, rejected content
    results = ingest_readings("pumps", config_path=str(config_path))
    assert sorted((Path(r["file"]).name, r["status"]) for r in results) == [
        ("broken-copy.csv", "rejected"), ("broken.csv", "skipped"), ("late.csv", "ok")]
    assert sorted(p.name for p in inbox.iterdir()) == ["broken-copy.csv", "broken.csv"]
    assert sorted(p.name for p in (home / "done").iterdir()) == ["early.csv", "late.csv"]
    with connect(config.warehouse) as con:
        assert count_readings(con, "pumps") == 200
