"""The DuckLake warehouse: readers beside writers, retried commits, the upkeep, and the
upgrade of a single-file warehouse of an earlier release."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from features.readers import StreamSchema
from features.synthetic import SENSORS
from monitoring.errors import WarehouseError
from monitoring.store.connection import Warehouse, client_sql, close_all, connect, query_rows, table_counts, write
from monitoring.store.ingestion import ingest_file
from monitoring.store.legacy import add_legacy_rows, add_legacy_view, create_legacy
from monitoring.store.maintenance import maintain
from monitoring.store.readings import count_readings, read_readings
from monitoring.store.results import read_evaluations, write_evaluation
from monitoring.store.schema import SCHEMA_VERSION
from monitoring.store.upgrade import upgrade_legacy
from tests.conftest import V2_INCIDENTS, make_v2_catalog

SCHEMA = StreamSchema(sensors=tuple(SENSORS), label_columns=("label",))
ROOT = Path(__file__).resolve().parents[2]


def evaluation_row(i: int) -> dict:
    return {"evaluation_id": f"e{i}", "stream": "s", "model_name": "m", "model_versions": "1", "label_columns": "label",
            "range_start": pd.Timestamp("2026-01-01").to_pydatetime(),
            "range_end": pd.Timestamp("2026-01-02").to_pydatetime(), "n_assets": 1, "n_rows": 10,
            "n_labeled_rows": 1, "n_events": 1, "n_detected_events": 1, "n_alarms": 1, "tp": 1, "fp": 0, "fn": 0,
            "tn": 9}


def test_a_commit_that_meets_another_writer_is_retried_whole(tmp_path):
    warehouse = Warehouse.at(tmp_path)
    calls = []

    def work(con):
        calls.append(1)
        write_evaluation(con, evaluation_row(len(calls)))
        if len(calls) == 1:  # what DuckLake raises when another writer committed first
            raise duckdb.TransactionException("Failed to commit: Transaction conflict")
        return "done"

    assert write(warehouse, work) == "done"
    with connect(warehouse) as con:
        assert read_evaluations(con, "s")["evaluation_id"].tolist() == ["e2"]  # the first attempt left nothing

    def broken(con):
        calls.append(1)
        raise duckdb.BinderException("no such column")  # not transient: never retried

    calls.clear()
    with pytest.raises(duckdb.BinderException):
        write(warehouse, broken)
    assert len(calls) == 1


def test_writers_in_threads_each_commit_once(tmp_path):
    warehouse = Warehouse.at(tmp_path)
    errors = []

    def writer(i):
        try:
            for j in range(5):
                write(warehouse, lambda con, k=i * 10 + j: write_evaluation(con, evaluation_row(k)))
                write(warehouse, lambda con, k=i * 10 + j: write_evaluation(con, evaluation_row(k)))  # again: no-op
        except Exception as exc:  # pragma: no cover - reported by the assertion
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    with connect(warehouse) as con:
        ids = read_evaluations(con, "s")["evaluation_id"]
    assert len(ids) == 20 and ids.is_unique


HOLD_CATALOG = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA journal_mode=" + sys.argv[2])
db.execute("BEGIN IMMEDIATE")
db.execute("CREATE TABLE someone_else (x INTEGER)")
print("holding", flush=True)
time.sleep(float(sys.argv[3]))
db.execute("COMMIT")
"""


@pytest.mark.parametrize("journal", ["WAL", "DELETE"])
def test_a_new_catalog_whose_file_another_connection_is_writing_is_created_when_it_is_free(tmp_path, journal):
    """DuckLake creates its SQLite catalog without waiting on a busy file (`database is
    locked` at once, as when Dask workers opened a new home together): the first connection
    waits until the file is free, then creates the tables and opens."""
    warehouse = Warehouse.at(tmp_path)
    assert warehouse.sqlite_path is not None
    holder = subprocess.Popen([sys.executable, "-c", HOLD_CATALOG, str(warehouse.sqlite_path), journal, "1.5"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        started = time.monotonic()
        with connect(warehouse) as con:
            assert con.execute("SELECT count(*) FROM watermarks").fetchone() == (0,)
        assert holder.poll() is not None or time.monotonic() - started >= 1.0  # it waited for the holder
    finally:
        holder.wait(timeout=30)
    assert holder.returncode == 0
    close_all()
    with connect(warehouse, write=True) as con:  # the catalog is whole: tables, schema version, writes
        write_evaluation(con, evaluation_row(1))
        assert read_evaluations(con, "s")["evaluation_id"].tolist() == ["e1"]


def test_a_reader_in_another_process_is_not_held_up_by_the_write_lock(tmp_path, small_stream):
    warehouse = Warehouse.at(tmp_path)
    small_stream.readings.to_csv(tmp_path / "all.csv", index=False)
    ingest_file(warehouse, "pumps", SCHEMA, tmp_path / "all.csv")
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import time; from monitoring.store.connection import Warehouse, connect\n"
         f"with connect(Warehouse.at({str(tmp_path)!r}), write=True):\n"
         "    print('locked', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        columns, rows = query_rows(warehouse, "SELECT count(*) AS n FROM lake.pumps")
        assert holder.poll() is None  # answered while the writer still holds the lock
        assert columns == ["n"] and rows == [(len(small_stream.readings),)]
        with pytest.raises(WarehouseError, match="query failed"):  # users' SQL cannot write
            query_rows(warehouse, "DELETE FROM lake.pumps")
    finally:
        holder.kill()
        holder.wait()


def test_any_duckdb_client_reads_with_the_printed_statements(tmp_path, small_stream):
    warehouse = Warehouse.at(tmp_path)
    small_stream.readings.to_csv(tmp_path / "all.csv", index=False)
    ingest_file(warehouse, "pumps", SCHEMA, tmp_path / "all.csv")
    with duckdb.connect(config={"autoinstall_known_extensions": "false"}) as client:
        for statement in client_sql(warehouse):
            client.execute(statement)
        assert client.execute("SELECT count(*) FROM lake.pumps").fetchall() == [(len(small_stream.readings),)]
        with pytest.raises(duckdb.Error, match=r"read-only|read only"):
            client.execute("DELETE FROM ingest_batches")


def test_the_upkeep_merges_small_files_and_removes_orphaned_parts(tmp_path, small_stream):
    warehouse = Warehouse.at(tmp_path / "home")
    frame = small_stream.readings
    for i, (_day, part) in enumerate(frame.groupby(frame["timestamp"].dt.date)):
        part.to_csv(tmp_path / f"day-{i}.csv", index=False)
        ingest_file(warehouse, "pumps", SCHEMA, tmp_path / f"day-{i}.csv")
    folder = Path(warehouse.data_path) / "lake" / "pumps"
    orphan = folder / "part-deadbeef-00000-00000000.parquet"  # staged by an ingest killed before its commit
    frame.head(5).to_parquet(orphan)
    old = time.time() - 3 * 86400
    os.utime(orphan, (old, old))
    with connect(warehouse) as con:
        before, counts = read_readings(con, "pumps"), table_counts(con)
    result = maintain(warehouse, retention_days=7)
    assert result.files_after < result.files_before
    assert not orphan.exists()
    with connect(warehouse) as con:
        pd.testing.assert_frame_equal(read_readings(con, "pumps"), before)
        assert table_counts(con) == counts


def test_a_single_file_warehouse_is_named_then_upgraded_whole(tmp_path, small_stream):
    home = tmp_path / "home"
    home.mkdir()
    legacy = home / "warehouse.duckdb"
    create_legacy(legacy)
    frame = small_stream.readings.head(100).copy()
    frame["date"] = frame["timestamp"].dt.date.astype(str)
    lake = home / "lake" / "pumps"
    for date, part in frame.groupby("date"):
        (lake / f"date={date}").mkdir(parents=True)
        part.drop(columns="date").to_parquet(lake / f"date={date}" / "part-x.parquet", index=False)
    add_legacy_view(legacy, "pumps", str(lake / "date=*" / "part-*.parquet"))
    add_legacy_rows(legacy, "ingest_batches", pd.DataFrame([{
        "batch_id": "b1", "stream": "pumps", "file": "x.csv", "file_hash": "h", "rows_in": 100,
        "rows_accepted": 100, "rows_quarantined": 0, "status": "ok"}]))
    add_legacy_rows(legacy, "watermarks", pd.DataFrame([{
        "stream": "pumps", "asset": "pump-01", "last_window_end": pd.Timestamp("2026-01-01 01:00"),
        "model_version": 1}]))
    warehouse = Warehouse.at(home)
    with pytest.raises(WarehouseError, match="earlier release; run `aemon warehouse upgrade`"), connect(warehouse):
        pass
    with pytest.raises(WarehouseError, match="earlier release"):  # `aemon sql` too, not "no warehouse"
        query_rows(warehouse, "SELECT 1")
    copied = upgrade_legacy(warehouse)
    assert copied["ingest_batches"] == 1 and copied["watermarks"] == 1 and copied["lake.pumps"] == 100
    assert not legacy.exists() and (home / "warehouse.duckdb.upgraded").exists()
    close_all()
    with connect(warehouse) as con:
        assert count_readings(con, "pumps") == 100
        lake_rows = read_readings(con, "pumps")
        assert con.execute("SELECT rows_accepted FROM ingest_batches").fetchall() == [(100,)]
    expected = frame.drop(columns="date").sort_values(["asset", "timestamp"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(lake_rows[expected.columns.tolist()], expected, check_dtype=False)
    with pytest.raises(WarehouseError, match="no warehouse of an earlier release"):
        upgrade_legacy(warehouse)


def test_a_single_file_warehouse_this_duckdb_cannot_open_is_upgraded_from_its_export(tmp_path, small_stream):
    home = tmp_path / "home"
    home.mkdir()
    legacy = home / "warehouse.duckdb"
    create_legacy(legacy)
    add_legacy_rows(legacy, "ingest_batches", pd.DataFrame([{
        "batch_id": "b1", "stream": "pumps", "file": "x.csv", "file_hash": "h", "rows_in": 100,
        "rows_accepted": 100, "rows_quarantined": 0, "status": "ok"}]))
    part = small_stream.readings.head(100)
    (home / "lake" / "pumps" / "date=2026-01-01").mkdir(parents=True)
    part.to_parquet(home / "lake" / "pumps" / "date=2026-01-01" / "part-x.parquet", index=False)
    export = home / "legacy-export"
    with duckdb.connect(str(legacy), read_only=True) as con:  # what the DuckDB that wrote the file would do
        con.execute(f"EXPORT DATABASE '{export}' (FORMAT parquet)")
    legacy.write_bytes(b"\x00" * 4096 + b"written by a DuckDB this release cannot read")
    warehouse = Warehouse.at(home)
    with pytest.raises(WarehouseError, match=r"EXPORT DATABASE .* then run `aemon warehouse upgrade --from-export"):
        upgrade_legacy(warehouse)
    assert legacy.exists()  # nothing done, and the home is still refused until it is upgraded
    with pytest.raises(WarehouseError, match="earlier release"), connect(warehouse):
        pass
    copied = upgrade_legacy(warehouse, export)
    assert copied["ingest_batches"] == 1 and copied["lake.pumps"] == 100
    close_all()
    with connect(warehouse) as con:
        assert count_readings(con, "pumps") == 100


V2_ROWS = ("INSERT INTO incidents VALUES ('pumps', 'pump-01', '2026-01-01 10:00:00', '2026-01-01 11:00:00', 5, 9.0, "
           "3.5, 'Pressure', '1', 'closed', '2026-01-02 00:00:00'), ('pumps', 'pump-02', '2026-01-03 10:00:00.5', "
           "'2026-01-03 11:00:00', 4, 7.0, 2.0, 'Flow', '1', 'open', '2026-01-04 00:00:00')")


def test_a_catalog_of_schema_version_2_is_migrated_with_incident_ids(tmp_path):
    from monitoring.store.incident_records import incident_id, read_incident_log, read_incidents

    warehouse = Warehouse.at(tmp_path / "home")
    make_v2_catalog(warehouse, V2_ROWS)
    with connect(warehouse, write=True) as con:
        rows = read_incidents(con, "pumps")
        assert con.execute("SELECT max(version) FROM aemon_schema").fetchall() == [(SCHEMA_VERSION,)]
        assert read_incident_log(con, rows["incident_id"].iloc[0]).empty  # the log starts with the next change
    assert rows["incident_id"].tolist() == [incident_id("pumps", r.asset, r.start) for r in rows.itertuples()]
    assert rows["closed_reason"].tolist()[0] == "recovered" and rows["closed_at"].notna().tolist() == [True, False]
    assert rows["revision"].tolist() == [1, 1] and rows["severity_level"].tolist() == [1, 1]


def test_incidents_of_an_earlier_release_get_their_ids_in_the_upgrade(tmp_path):
    from monitoring.store.incident_records import incident_id, read_incidents

    home = tmp_path / "home"
    home.mkdir()
    legacy = home / "warehouse.duckdb"
    create_legacy(legacy)
    with duckdb.connect(str(legacy)) as con:
        con.execute("DROP TABLE incidents")
        con.execute(V2_INCIDENTS)
        con.execute(V2_ROWS)
    warehouse = Warehouse.at(home)
    assert upgrade_legacy(warehouse)["incidents"] == 2
    close_all()
    with connect(warehouse) as con:
        rows = read_incidents(con, "pumps")
    assert rows["incident_id"].tolist() == [incident_id("pumps", r.asset, r.start) for r in rows.itertuples()]
    assert rows["opened_at"].tolist() == rows["updated_at"].tolist()
