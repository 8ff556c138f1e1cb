import os
import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from features.readers import StreamSchema
from features.synthetic import SENSORS
from monitoring.errors import WarehouseError
from monitoring.store.audit import read_quarantine
from monitoring.store.connection import Warehouse, close_all, connect, query, quote_identifier, table_counts
from monitoring.store.ingestion import ingest_file, list_inbox, scan_inbox
from monitoring.store.readings import count_readings, existing_times, list_assets, read_readings
from monitoring.store.schema import SCHEMA_VERSION, TABLES, schema_version

SCHEMA = StreamSchema(sensors=tuple(SENSORS), label_columns=("label",))


@pytest.fixture
def lakehouse(tmp_path, small_stream):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    frame = small_stream.readings
    first = frame[frame["asset"] == "pump-01"]
    first.to_csv(inbox / "pump-01.csv", index=False)
    frame[frame["asset"] == "pump-02"].to_parquet(inbox / "pump-02.parquet", index=False)
    warehouse = Warehouse.at(tmp_path / "home")
    return warehouse, Path(warehouse.data_path), inbox


def ingest_all(db, inbox, **kwargs):
    return [ingest_file(db, "pumps", SCHEMA, path, **kwargs) for path in list_inbox(inbox)]


def test_files_land_in_the_lake_and_the_view(lakehouse, small_stream):
    db, lake, inbox = lakehouse
    results = ingest_all(db, inbox)
    assert [r.status for r in results] == ["ok", "ok"]
    assert sum(r.rows_accepted for r in results) == len(small_stream.readings)
    assert all(r.rows_in == r.rows_accepted + r.rows_quarantined for r in results)
    with connect(db) as con:
        lake_frame = read_readings(con, "pumps")
        assert list_assets(con, "pumps") == ["pump-01", "pump-02"]
    expected = small_stream.readings.sort_values(["asset", "timestamp"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(
        lake_frame[list(SENSORS)], expected[list(SENSORS)], check_dtype=False
    )
    assert (lake_frame["timestamp"].to_numpy() == expected["timestamp"].to_numpy()).all()
    parts = sorted(p.name for p in (lake / "lake" / "pumps").rglob("*.parquet"))
    assert len(parts) == 2 and all(p.startswith("part-") for p in parts)  # one per file, registered as written
    assert not list(lake.rglob(".quarantine-*"))


def test_ingesting_again_or_under_another_name_adds_nothing(lakehouse):
    db, _lake, inbox = lakehouse
    ingest_all(db, inbox)
    def counts():  # the manifest (inbox_files) notes the copy's name: no data
        with connect(db) as con:
            return {k: v for k, v in table_counts(con).items() if k != "inbox_files"}, count_readings(con, "pumps")

    before = counts()
    shutil.copy(inbox / "pump-01.csv", inbox / "copy-of-pump-01.csv")
    again = ingest_all(db, inbox)
    assert {r.status for r in again} == {"skipped"}
    assert counts() == before


def test_a_bad_file_is_recorded_and_does_not_stop_the_others(lakehouse):
    db, _lake, inbox = lakehouse
    (inbox / "a-broken.csv").write_text("timestamp,asset,vibration_rms\n2026-01-01,p1,1\n")
    results = {r.file.split("/")[-1]: r for r in ingest_all(db, inbox)}
    assert results["a-broken.csv"].status == "rejected"
    assert "missing ['motor_current'" in results["a-broken.csv"].error
    assert results["pump-01.csv"].status == results["pump-02.parquet"].status == "ok"
    with connect(db) as con:
        batches = con.execute("SELECT file, status, error FROM ingest_batches ORDER BY file").df()
    assert list(batches["status"]) == ["rejected", "ok", "ok"]
    # a rejected file is not retried on every run, only when asked
    assert ingest_all(db, inbox)[0].status == "skipped"
    assert ingest_all(db, inbox, retry_rejected=True)[0].status == "rejected"


def test_identifiers_are_validated_before_sql(tmp_path):
    with pytest.raises(WarehouseError, match="not allowed"):
        quote_identifier('pumps"; DROP TABLE scores; --')
    with connect(Warehouse.at(tmp_path / "w")) as con, pytest.raises(WarehouseError, match="no readings yet"):
        read_readings(con, "pumps")


def test_read_only_query_cannot_write(tmp_path):
    db = Warehouse.at(tmp_path / "w")
    with connect(db):
        pass
    assert query(db, "SELECT count(*) AS n FROM anomalies")["n"].tolist() == [0]
    with pytest.raises(WarehouseError, match="query failed"):
        query(db, "DROP TABLE anomalies")


def lake_of(db, stream="pumps"):
    with connect(db) as con:
        return read_readings(con, stream)


def test_a_file_overlapping_the_lake_adds_only_new_readings(lakehouse, small_stream):
    db, _lake, inbox = lakehouse
    ingest_all(db, inbox)
    frame = small_stream.readings
    one = frame[frame["asset"] == "pump-01"]
    overlap = one.iloc[-10:].copy()
    extra = overlap.assign(timestamp=overlap["timestamp"] + pd.Timedelta(minutes=10))
    pd.concat([overlap, extra]).to_csv(inbox / "resend.csv", index=False)
    result = ingest_file(db, "pumps", SCHEMA, inbox / "resend.csv")
    assert (result.rows_in, result.rows_accepted, result.rows_quarantined, result.rows_duplicate) == (20, 10, 10, 10)
    with connect(db) as con:
        reasons = read_quarantine(con, "pumps")["reason"]
    assert reasons.str.contains("is already in the lake; kept the first one").all()
    assert len(lake_of(db)) == len(frame) + 10
    assert not lake_of(db).duplicated(["asset", "timestamp"]).any()


def test_a_retried_file_supersedes_its_earlier_quarantine(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("timestamp,asset,a\n2026-01-01,p1,1\n")
    schema = StreamSchema(sensors=("a", "b"))
    db = Warehouse.at(tmp_path / "w")
    assert ingest_file(db, "s", schema, path).status == "rejected"
    assert ingest_file(db, "s", schema, path, retry_rejected=True).status == "rejected"
    with connect(db) as con:
        q = read_quarantine(con, "s")
    assert len(q) == 1 and q["batch_id"].iloc[0].endswith("-retry1")
    fixed = StreamSchema(sensors=("a",))
    assert ingest_file(db, "s", fixed, path, retry_rejected=True).status == "ok"
    with connect(db) as con:
        assert read_quarantine(con, "s").empty


def test_a_big_file_is_read_in_chunks_with_the_same_result(tmp_path, small_stream):
    frame = small_stream.readings.sample(frac=1.0, random_state=0)  # shuffled: out of order across chunks
    dupes = frame.iloc[:25]
    pd.concat([frame, dupes]).to_csv(tmp_path / "big.csv", index=False)
    chunked = ingest_file(Warehouse.at(tmp_path / "c"), "pumps", SCHEMA, tmp_path / "big.csv", chunk_rows=500)
    whole = ingest_file(Warehouse.at(tmp_path / "w"), "pumps", SCHEMA, tmp_path / "big.csv")
    assert (chunked.rows_in, chunked.rows_accepted, chunked.rows_quarantined) == (len(frame) + 25, len(frame), 25)
    assert (whole.rows_accepted, whole.rows_quarantined) == (chunked.rows_accepted, chunked.rows_quarantined)
    pd.testing.assert_frame_equal(lake_of(Warehouse.at(tmp_path / "c")), lake_of(Warehouse.at(tmp_path / "w")))
    assert len(list((tmp_path / "c").rglob("part-*.parquet"))) > len(list((tmp_path / "w").rglob("part-*.parquet")))


def test_a_failure_late_in_a_file_leaves_nothing_in_the_lake(tmp_path):
    rows = "".join(f"2026-01-01T00:{m:02d}:00,p1,{m},1,0\n" for m in range(50))
    path = tmp_path / "x.csv"
    path.write_bytes(("timestamp,asset,a,b,label\n" + rows).encode() + b"2026-01-01T01:00:00,p\xe9,1,1,0\n")
    result = ingest_file(Warehouse.at(tmp_path / "w"), "s", StreamSchema(sensors=("a", "b"),
                         label_columns=("label",)), path, chunk_rows=10)
    assert result.status == "rejected" and "not UTF-8" in result.error
    assert (result.rows_in, result.rows_quarantined) == (51, 51)
    assert not list(tmp_path.rglob("part-*.parquet")) and not list(tmp_path.rglob(".quarantine-*"))


def test_wide_and_long_layouts_give_identical_lakes(tmp_path, small_stream):
    frame = small_stream.readings.iloc[:400]
    frame.to_csv(tmp_path / "wide.csv", index=False)
    long = frame.melt(id_vars=["timestamp", "asset", "label"], value_vars=list(SENSORS), var_name="sensor",
                      value_name="value")
    long = long[["timestamp", "asset", "sensor", "value", "label"]].sample(frac=1.0, random_state=1)
    long.to_csv(tmp_path / "long.csv", index=False)
    long_schema = StreamSchema(sensors=tuple(SENSORS), label_columns=("label",), layout="long")
    w = ingest_file(Warehouse.at(tmp_path / "w"), "pumps", SCHEMA, tmp_path / "wide.csv")
    g = ingest_file(Warehouse.at(tmp_path / "g"), "pumps", long_schema, tmp_path / "long.csv")
    assert (w.rows_in, w.rows_accepted) == (400, 400)
    assert (g.rows_in, g.rows_accepted, g.rows_quarantined) == (400 * len(SENSORS), 400 * len(SENSORS), 0)
    pd.testing.assert_frame_equal(lake_of(Warehouse.at(tmp_path / "w")), lake_of(Warehouse.at(tmp_path / "g")))


def test_long_layout_quarantines_every_long_row_of_a_bad_reading(tmp_path):
    text = ("timestamp,asset,sensor,value\n2026-01-01T00:00:00,p1,a,1\n2026-01-01T00:00:00,p1,b,2\n"
            "2026-01-01T00:01:00,p1,a,x\n2026-01-01T00:01:00,p1,b,4\n2026-01-01T00:01:00,p1,b,5\n")
    (tmp_path / "l.csv").write_text(text)
    schema = StreamSchema(sensors=("a", "b"), layout="long")
    r = ingest_file(Warehouse.at(tmp_path / "w"), "s", schema, tmp_path / "l.csv")
    assert (r.rows_in, r.rows_accepted, r.rows_quarantined) == (5, 2, 3)
    with connect(Warehouse.at(tmp_path / "w")) as con:
        q = read_quarantine(con, "s")
    assert q["row_number"].tolist() == [3, 4, 5]
    assert q["reason"].tolist()[2] == "data row 5: sensor 'b' repeated for asset 'p1' at 2026-01-01 00:01:00"
    assert q["reason"].tolist()[0] == "data row 3, column 'a': value 'x' is not a number"
    (tmp_path / "u.csv").write_text("timestamp,asset,sensor,value\n2026-01-01,p1,a,1\n2026-01-01,p1,c,1\n")
    r = ingest_file(Warehouse.at(tmp_path / "w"), "s", schema, tmp_path / "u.csv")
    assert r.status == "rejected"
    assert "sensors differ from the stream schema: missing ['b'], unexpected ['c']" in r.error


def test_a_renamed_sensor_is_accepted_once_the_alias_is_configured(tmp_path):
    (tmp_path / "new.csv").write_text("timestamp,asset,a,b_v2\n2026-01-01,p1,1,2\n")
    plain = StreamSchema(sensors=("a", "b"))
    aliased = StreamSchema(sensors=("a", "b"), column_aliases=(("b_v2", "b"),))
    db = Warehouse.at(tmp_path / "w")
    assert ingest_file(db, "s", plain, tmp_path / "new.csv").status == "rejected"
    assert ingest_file(db, "s", aliased, tmp_path / "new.csv", retry_rejected=True).status == "ok"
    assert lake_of(db, "s")["b"].tolist() == [2.0]


def test_ignored_columns_are_dropped_at_read_and_never_stored(tmp_path):
    """An export's extra columns (a comment, a changepoint flag) named in ignore_columns are
    dropped from CSV and Parquet files alike, may be absent, never become sensors under
    all_numeric, and count as fields of a malformed line; without the setting the same file
    is refused. A column both kept and ignored is a schema error."""
    from features.errors import SchemaError

    text = ("timestamp,asset,a,comment,b,changepoint\n2026-01-01T00:00:00,p1,1,\"valve, swapped\",2,0\n"
            "2026-01-01T00:01:00,p1,3,,4,1\n2026-01-01T00:02:00,p1,5,x\n")
    (tmp_path / "extra.csv").write_text(text)
    pd.DataFrame({"timestamp": pd.to_datetime(["2026-01-01T00:03:00"]), "asset": ["p1"], "a": [7.0],
                  "b": [8.0], "comment": ["ok"]}).to_parquet(tmp_path / "extra.parquet", index=False)
    (tmp_path / "plain.csv").write_text("timestamp,asset,a,b\n2026-01-01T00:04:00,p1,9,10\n")
    # a file with nothing to quarantine takes the typed read, the others the text read
    (tmp_path / "clean.csv").write_text("timestamp,changepoint,asset,a,b\n2026-01-01T00:05:00,0,p1,11,12\n")
    db = Warehouse.at(tmp_path / "w")
    refused = ingest_file(db, "s", StreamSchema(sensors=("a", "b")), tmp_path / "extra.csv")
    assert refused.status == "rejected" and refused.error.endswith(
        "unexpected ['comment', 'changepoint']; expected ['timestamp', 'asset', 'a', 'b']; a column the stream "
        "should not keep goes in the stream's ignore_columns, a renamed one in column_aliases"), refused.error

    schema = StreamSchema(sensors=("a", "b"), ignore_columns=("comment", "changepoint"))
    results = [ingest_file(db, "s", schema, tmp_path / name, retry_rejected=True)
               for name in ("extra.csv", "extra.parquet", "plain.csv", "clean.csv")]
    assert [(r.status, r.rows_accepted, r.rows_quarantined) for r in results] == [
        ("ok", 2, 1), ("ok", 1, 0), ("ok", 1, 0), ("ok", 1, 0)], results
    lake = lake_of(db, "s")
    assert list(lake.columns) == ["timestamp", "asset", "a", "b"]
    assert lake["a"].tolist() == [1.0, 3.0, 7.0, 9.0, 11.0] and lake["b"].tolist() == [2.0, 4.0, 8.0, 10.0, 12.0]
    with connect(db) as con:
        reasons = read_quarantine(con, "s")["reason"].tolist()
    assert reasons == ["data row 3: 4 fields, expected 6 (a cut-off or malformed line)"], reasons

    numeric = StreamSchema(all_numeric=True, asset_column=None, asset_id="m1", ignore_columns=("comment",))
    (tmp_path / "n.csv").write_text("timestamp,x,comment,y\n2026-01-01T00:00:00,1,left open,2\n")
    assert ingest_file(db, "n", numeric, tmp_path / "n.csv").status == "ok"
    assert list(lake_of(db, "n").columns) == ["timestamp", "asset", "x", "y"]
    with pytest.raises(SchemaError, match=r"ignore_columns \['b'\] are also columns the stream keeps"):
        StreamSchema(sensors=("a", "b"), ignore_columns=("b",))


def test_all_numeric_sensors_and_a_changed_export_is_refused(tmp_path):
    schema = StreamSchema(all_numeric=True, asset_column=None, asset_id="m1")
    (tmp_path / "one.csv").write_text("timestamp,x,y\n2026-01-01T00:00:00,1,2\n")
    (tmp_path / "two.csv").write_text("timestamp,x,y,z\n2026-01-01T00:01:00,1,2,3\n")
    db = Warehouse.at(tmp_path / "w")
    assert ingest_file(db, "s", schema, tmp_path / "one.csv").status == "ok"
    r = ingest_file(db, "s", schema, tmp_path / "two.csv")
    assert r.status == "rejected" and "columns differ from the stream's lake: missing [], unexpected ['z']" in r.error
    assert list(lake_of(db, "s").columns) == ["timestamp", "asset", "x", "y"]


def test_time_zone_and_format_of_the_stream(tmp_path):
    (tmp_path / "x.csv").write_text("when;a\n01.07.2026 14:00;1\n01.07.2026 15:00;2\n")
    schema = StreamSchema(sensors=("a",), timestamp_column="when", asset_column=None, asset_id="m1",
                          timestamp_format="%d.%m.%Y %H:%M", timezone="Europe/Berlin")
    r = ingest_file(Warehouse.at(tmp_path / "w"), "s", schema, tmp_path / "x.csv")
    assert r.status == "ok"
    assert lake_of(Warehouse.at(tmp_path / "w"), "s")["timestamp"].tolist() == [
        pd.Timestamp("2026-07-01T12:00:00"), pd.Timestamp("2026-07-01T13:00:00")]


def test_tabular_records_get_increasing_record_times(tmp_path):
    schema = StreamSchema(sensors=("a", "b"), timestamp_column=None, asset_column=None, asset_id="batch")
    (tmp_path / "r1.csv").write_text("a,b\n1,2\n3,4\n")
    (tmp_path / "r2.csv").write_text("b,a\n6,5\n")
    db = Warehouse.at(tmp_path / "w")
    assert ingest_file(db, "t", schema, tmp_path / "r1.csv").rows_accepted == 2
    assert ingest_file(db, "t", schema, tmp_path / "r2.csv").rows_accepted == 1
    frame = lake_of(db, "t")
    assert frame["a"].tolist() == [1.0, 3.0, 5.0] and frame["timestamp"].is_monotonic_increasing


def test_a_long_file_is_pivoted_whole_even_with_small_chunks(tmp_path, small_stream):
    frame = small_stream.readings.iloc[:300]
    long = frame.melt(id_vars=["timestamp", "asset", "label"], value_vars=list(SENSORS), var_name="sensor",
                      value_name="value").sample(frac=1.0, random_state=2)
    long[["timestamp", "asset", "sensor", "value", "label"]].to_csv(tmp_path / "long.csv", index=False)
    schema = StreamSchema(sensors=tuple(SENSORS), label_columns=("label",), layout="long")
    r = ingest_file(Warehouse.at(tmp_path / "w"), "pumps", schema, tmp_path / "long.csv", chunk_rows=100)
    assert (r.rows_accepted, r.rows_quarantined) == (300 * len(SENSORS), 0)
    assert len(lake_of(Warehouse.at(tmp_path / "w"))) == 300


def test_the_schema_is_brought_up_to_date_once_per_version(tmp_path):
    db = Warehouse.at(tmp_path / "warehouse")
    with connect(db) as con:
        assert schema_version(con) == SCHEMA_VERSION
        assert set(table_counts(con)) == set(TABLES)
        con.execute("DROP TABLE evaluations")  # would come back if a connection re-ran the DDL
    with connect(db) as con:
        assert "evaluations" not in {r[0] for r in con.execute("SHOW TABLES").fetchall()}
        con.execute("DROP TABLE aemon_schema")  # a catalog written before versions were recorded
    close_all()  # as a new process finds it
    with connect(db) as con:
        assert schema_version(con) == SCHEMA_VERSION
        assert set(table_counts(con)) == set(TABLES)  # every table there again


def test_duplicates_are_looked_up_in_the_lake_table_and_in_staged_parts(lakehouse, small_stream):
    db, lake, inbox = lakehouse
    ingest_all(db, inbox)
    first = small_stream.readings[small_stream.readings["asset"] == "pump-01"]
    lo, hi = first["timestamp"].iloc[10], first["timestamp"].iloc[19]
    with connect(db) as con:
        found = existing_times(con, "pumps", "pump-01", lo, hi)
    assert list(found) == list(first["timestamp"].iloc[10:20])
    parts = sorted((lake / "lake" / "pumps").glob("part-*.parquet"))
    with duckdb.connect() as memory:  # staged parts: any connection reads them
        found = existing_times(memory, parts, "pump-01", lo, hi)
    assert list(found) == list(first["timestamp"].iloc[10:20])


def scan(db, inbox, **kwargs):
    return scan_inbox(db, "pumps", inbox, **kwargs)


def test_files_unchanged_since_their_ingest_are_passed_over_without_being_read(lakehouse):
    db, _lake, inbox = lakehouse
    first = scan(db, inbox)
    assert (first.pending, first.n_unchanged) == (list_inbox(inbox), 0)
    assert [r.status for r in ingest_all(db, inbox)] == ["ok", "ok"]
    assert (scan(db, inbox).pending, scan(db, inbox).n_unchanged) == ([], 2)
    # the manifest goes by name, size and mtime: a file rewritten with both kept is not read
    path = inbox / "pump-01.csv"
    before = path.stat()
    text = path.read_text()
    path.write_text(text.replace("pump-01", "pump-99"))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert scan(db, inbox).n_unchanged == 2
    # a new mtime: the file is read again, and its content (changed) is ingested
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))
    assert scan(db, inbox).pending == [path]
    changed = ingest_file(db, "pumps", SCHEMA, path)
    assert changed.status == "ok" and changed.rows_accepted > 0
    assert scan(db, inbox).n_unchanged == 2
    # touched but the same content: hashed once, skipped, then unchanged again
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 2 * 10**9))
    assert ingest_file(db, "pumps", SCHEMA, path).status == "skipped"
    assert scan(db, inbox).pending == []


def test_the_same_content_under_another_name_is_known_by_hash_then_by_the_manifest(lakehouse):
    db, _lake, inbox = lakehouse
    ingest_all(db, inbox)
    shutil.copy(inbox / "pump-01.csv", inbox / "copy-of-pump-01.csv")
    assert scan(db, inbox).pending == [inbox / "copy-of-pump-01.csv"]
    assert ingest_file(db, "pumps", SCHEMA, inbox / "copy-of-pump-01.csv").status == "skipped"
    assert (scan(db, inbox).pending, scan(db, inbox).n_unchanged) == ([], 3)
    with connect(db) as con:
        assert con.execute("SELECT count(*) FROM ingest_batches").fetchone()[0] == 2  # no audit row for a copy


def test_a_rejected_file_is_passed_over_until_retried(lakehouse):
    db, _lake, inbox = lakehouse
    (inbox / "a-broken.csv").write_text("timestamp,asset,vibration_rms\n2026-01-01,p1,1\n")
    ingest_all(db, inbox)
    assert scan(db, inbox).n_unchanged == 3
    assert scan(db, inbox, retry_rejected=True).pending == [inbox / "a-broken.csv"]


def test_a_catalog_at_schema_version_2_gains_the_inbox_manifest(tmp_path):
    from tests.conftest import make_v2_catalog

    db = Warehouse.at(tmp_path / "warehouse")
    make_v2_catalog(db)
    with connect(db) as con:
        assert schema_version(con) == SCHEMA_VERSION == 4
        assert "inbox_files" in table_counts(con)


def test_an_archived_file_leaves_the_inbox_and_never_overwrites_another(tmp_path):
    from monitoring.store.ingestion import archive_file

    inbox, archive = tmp_path / "inbox", tmp_path / "archive" / "pumps"
    inbox.mkdir()
    for text in ("first", "second"):
        (inbox / "a.csv").write_text(text)
        archive_file(inbox / "a.csv", archive)
    assert not list(inbox.iterdir())
    assert {p.name: p.read_text() for p in archive.iterdir()} == {"a.csv": "first", "a.1.csv": "second"}
