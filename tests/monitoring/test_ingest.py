import shutil

import pandas as pd
import pytest

from features.readers import StreamSchema
from features.synthetic import SENSORS
from monitoring import warehouse
from monitoring.errors import WarehouseError
from monitoring.ingest import ingest_file, list_inbox

SCHEMA = StreamSchema(sensors=tuple(SENSORS), label_columns=("label",))


@pytest.fixture
def lakehouse(tmp_path, small_stream):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    frame = small_stream.readings
    first = frame[frame["asset"] == "pump-01"]
    first.to_csv(inbox / "pump-01.csv", index=False)
    frame[frame["asset"] == "pump-02"].to_parquet(inbox / "pump-02.parquet", index=False)
    return tmp_path / "warehouse.duckdb", tmp_path / "lake", inbox


def ingest_all(db, lake, inbox, **kwargs):
    return [ingest_file(db, lake, "pumps", SCHEMA, path, **kwargs) for path in list_inbox(inbox)]


def test_files_land_in_the_lake_and_the_view(lakehouse, small_stream):
    db, lake, inbox = lakehouse
    results = ingest_all(db, lake, inbox)
    assert [r.status for r in results] == ["ok", "ok"]
    assert sum(r.rows_accepted for r in results) == len(small_stream.readings)
    assert all(r.rows_in == r.rows_accepted + r.rows_quarantined for r in results)
    with warehouse.connect(db) as con:
        lake_frame = warehouse.read_readings(con, "pumps")
        assert warehouse.list_assets(con, "pumps") == ["pump-01", "pump-02"]
    expected = small_stream.readings.sort_values(["asset", "timestamp"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(
        lake_frame[list(SENSORS)], expected[list(SENSORS)], check_dtype=False
    )
    assert (lake_frame["timestamp"].to_numpy() == expected["timestamp"].to_numpy()).all()
    parts = sorted(p.name for p in lake.rglob("*.parquet"))
    assert parts and all(p.startswith("part-") for p in parts)
    assert not list(lake.rglob("*.tmp-*"))


def test_ingesting_again_or_under_another_name_adds_nothing(lakehouse):
    db, lake, inbox = lakehouse
    ingest_all(db, lake, inbox)
    with warehouse.connect(db) as con:
        before = warehouse.table_counts(con), warehouse.count_readings(con, "pumps")
    shutil.copy(inbox / "pump-01.csv", inbox / "copy-of-pump-01.csv")
    again = ingest_all(db, lake, inbox)
    assert {r.status for r in again} == {"skipped"}
    with warehouse.connect(db) as con:
        assert (warehouse.table_counts(con), warehouse.count_readings(con, "pumps")) == before


def test_a_bad_file_is_recorded_and_does_not_stop_the_others(lakehouse):
    db, lake, inbox = lakehouse
    (inbox / "a-broken.csv").write_text("timestamp,asset,vibration_rms\n2026-01-01,p1,1\n")
    results = {r.file.split("/")[-1]: r for r in ingest_all(db, lake, inbox)}
    assert results["a-broken.csv"].status == "rejected"
    assert "missing ['motor_current'" in results["a-broken.csv"].error
    assert results["pump-01.csv"].status == results["pump-02.parquet"].status == "ok"
    with warehouse.connect(db) as con:
        batches = con.execute("SELECT file, status, error FROM ingest_batches ORDER BY file").df()
    assert list(batches["status"]) == ["rejected", "ok", "ok"]
    # a rejected file is not retried on every run, only when asked
    assert ingest_all(db, lake, inbox)[0].status == "skipped"
    assert ingest_all(db, lake, inbox, retry_rejected=True)[0].status == "rejected"


def test_identifiers_are_validated_before_sql(tmp_path):
    with pytest.raises(WarehouseError, match="not allowed"):
        warehouse.quote_identifier('pumps"; DROP TABLE scores; --')
    with warehouse.connect(tmp_path / "w.duckdb") as con:
        with pytest.raises(WarehouseError, match="no readings yet"):
            warehouse.read_readings(con, "pumps")


def test_read_only_query_cannot_write(tmp_path):
    db = tmp_path / "w.duckdb"
    with warehouse.connect(db):
        pass
    assert warehouse.query(db, "SELECT count(*) AS n FROM anomalies")["n"].tolist() == [0]
    with pytest.raises(WarehouseError, match="query failed"):
        warehouse.query(db, "DROP TABLE anomalies")
