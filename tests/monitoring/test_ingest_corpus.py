"""A corpus of bad export files, one per case, each with its exact outcome: status, rows
in / accepted / quarantined, and the message or quarantine reason. Every row of every
file ends in the lake or in quarantine (checked for each file)."""
import io

import numpy as np
import pandas as pd
import pytest

from features.readers import StreamSchema
from monitoring.store.audit import read_quarantine
from monitoring.store.connection import Warehouse, connect
from monitoring.store.ingestion import ingest_file
from monitoring.store.readings import count_readings, read_readings

SCHEMA = StreamSchema(sensors=("a", "b"), label_columns=("label",))
HEADER = "timestamp,asset,a,b,label\n"
GOOD = "2026-01-01T00:00:00,p1,1,2,0\n2026-01-01T00:01:00,p1,3,4,0\n"


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


PARQUET_NAN = parquet_bytes(pd.DataFrame({
    "timestamp": pd.to_datetime(["2026-01-01T00:00:00", "2026-01-01T00:01:00", "2026-01-01T00:02:00"]),
    "asset": ["p1", "p1", "p1"], "a": [1.0, np.nan, 3.0], "b": [2.0, 2.0, np.inf], "label": [0, 0, 0]}))
PARQUET_RENAMED = parquet_bytes(pd.DataFrame({
    "timestamp": pd.to_datetime(["2026-01-01T00:00:00"]), "asset": ["p1"], "a": [1.0], "b_new": [2.0], "label": [0]}))

# name, content, status, rows in, accepted, quarantined, regex for the batch error (rejected) or
# for every quarantine reason (ok)
CORPUS = [
    ("missing_column.csv", "timestamp,asset,a,label\n2026-01-01,p1,1,0\n", "rejected", 1, 0, 1,
     r"columns differ from the stream schema: missing \['b'\], unexpected \[\]"),
    ("extra_column.csv", "timestamp,asset,a,b,c,label\n2026-01-01,p1,1,2,3,0\n", "rejected", 1, 0, 1,
     r"missing \[\], unexpected \['c'\]"),
    ("renamed_sensor.csv", "timestamp,asset,a,b_v2,label\n2026-01-01,p1,1,2,0\n", "rejected", 1, 0, 1,
     r"missing \['b'\], unexpected \['b_v2'\]"),
    ("repeated_column.csv", "timestamp,asset,a,b,a,label\n2026-01-01,p1,1,2,1,0\n", "rejected", 1, 0, 1,
     r"repeated \['a'\]"),
    ("renamed.parquet", PARQUET_RENAMED, "rejected", 1, 0, 1, r"missing \['b'\], unexpected \['b_new'\]"),
    ("empty.csv", "", "rejected", 0, 0, 0, r"file is empty; expected a header row and readings"),
    ("blank.csv", "\n\n  \n", "rejected", 0, 0, 0, r"file is empty"),
    ("header_only.csv", HEADER, "rejected", 0, 0, 0, r"file has a header but no rows"),
    ("latin1.csv", (HEADER + "2026-01-01,pümp,1,2,0\n").encode("latin-1"), "rejected", 1, 0, 1,
     r"not UTF-8 text at byte 38; expected a UTF-8 CSV"),
    ("utf16.csv", (HEADER + GOOD).encode("utf-16"), "rejected", 2, 0, 2, r"UTF-16 text; expected UTF-8"),
    ("image.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), "rejected", 0, 0, 0,
     r"a PNG image, not CSV$"),
    ("text.parquet", HEADER + GOOD, "rejected", 2, 0, 2, r"not a Parquet file \(no PAR1 magic bytes\)"),
    ("truncated.parquet", PARQUET_NAN[: len(PARQUET_NAN) // 2], "rejected", 0, 0, 0, r"not a readable Parquet file"),
    ("notes.json", '{"a": 1}', "rejected", 0, 0, 0, r"unsupported file type '.json'"),
    ("prose.csv", "These are not readings\nat all\n", "rejected", 1, 0, 1, r"has a single column"),
    ("bad_number.csv", HEADER + GOOD + "2026-01-01T00:02:00,p1,one,2,0\n", "ok", 3, 2, 1,
     r"data row 3, column 'a': value 'one' is not a number"),
    ("decimal_comma.csv", HEADER + "2026-01-01T00:02:00,p1,\"1,5\",2,0\n" + GOOD, "ok", 3, 2, 1,
     r"data row 1, column 'a': value '1,5' is not a number"),
    ("bad_timestamp.csv", HEADER + "yesterday,p1,1,2,0\n" + GOOD, "ok", 3, 2, 1,
     r"data row 1, column 'timestamp': value 'yesterday' is not a timestamp \(expected ISO 8601\)"),
    ("empty_timestamp.csv", HEADER + GOOD + ",p1,1,2,0\n", "ok", 3, 2, 1,
     r"data row 3, column 'timestamp': empty timestamp"),
    ("nan.csv", HEADER + GOOD + "2026-01-01T00:02:00,p1,1,NaN,0\n", "ok", 3, 2, 1,
     r"data row 3, column 'b': value 'NaN' is not a number"),
    ("inf.csv", HEADER + GOOD + "2026-01-01T00:02:00,p1,-inf,2,0\n", "ok", 3, 2, 1,
     r"data row 3, column 'a': value -inf is not finite"),
    ("missing_value.csv", HEADER + "2026-01-01T00:02:00,p1,1,,0\n" + GOOD, "ok", 3, 2, 1,
     r"data row 1, column 'b': missing reading; expected a number"),
    ("empty_asset.csv", HEADER + GOOD + "2026-01-01T00:02:00, ,1,2,0\n", "ok", 3, 2, 1,
     r"data row 3, column 'asset': empty asset id"),
    ("bad_label.csv", HEADER + GOOD + "2026-01-01T00:02:00,p1,1,2,yes\n", "ok", 3, 2, 1,
     r"data row 3, column 'label': label 'yes' is not a number"),
    ("duplicates.csv", HEADER + GOOD + "2026-01-01T00:01:00,p1,9,9,0\n", "ok", 3, 2, 1,
     r"data row 3: duplicate timestamp 2026-01-01 00:01:00 for asset 'p1' \(data row 2 kept\); "
     r"duplicates policy 'first'"),
    ("cut_off.csv", HEADER + GOOD + "2026-01-01T00:02:00,p1,5", "ok", 3, 2, 1,
     r"data row 3: 3 fields, expected 5 \(a cut-off or malformed line\)"),
    ("blank_lines.csv", HEADER + GOOD + "\n\n2026-01-01T00:05:00,p1,x,2,0\n2026-01-01T00:06:00,p1,1,2,0\n",
     "ok", 4, 3, 1,
     r"data row 5, column 'a': value 'x' is not a number"),
    ("bad_values.parquet", PARQUET_NAN, "ok", 3, 1, 2,
     r"data row (2, column 'a': missing reading|3, column 'b': value inf is not finite)"),
    ("every_row_bad.csv", HEADER + "x,p1,1,2,0\ny,p1,1,2,0\n", "ok", 2, 0, 2, r"data row \d, column 'timestamp'"),
]


@pytest.mark.parametrize("name, content, status, rows_in, accepted, quarantined, pattern", CORPUS,
                         ids=[c[0] for c in CORPUS])
def test_bad_file_outcome(tmp_path, name, content, status, rows_in, accepted, quarantined, pattern):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    db = Warehouse.at(tmp_path / "w")
    result = ingest_file(db, "s", SCHEMA, path)
    assert (result.status, result.rows_in, result.rows_accepted, result.rows_quarantined) == \
        (status, rows_in, accepted, quarantined), result.error
    with connect(db) as con:
        q = read_quarantine(con, "s")
        n_lake = count_readings(con, "s")
        audit = con.execute(
            "SELECT rows_in, rows_accepted, rows_quarantined, status, error FROM ingest_batches").fetchall()
    assert audit == [(rows_in, accepted, quarantined, status, result.error)]
    assert len(q) == quarantined and n_lake == accepted
    assert path.exists()  # a file is never moved or deleted, rejected or not
    if status == "rejected":
        assert str(path) in result.error
        assert pd.Series([result.error]).str.contains(pattern).all(), result.error
        assert (q["reason"] == result.error).all() and q["column"].isna().all()
    else:
        assert result.error is None
        assert q["reason"].str.match(pattern).all(), q["reason"].tolist()
        assert q["raw"].notna().all()


def test_corpus_has_at_least_25_cases():
    assert len(CORPUS) >= 25


def test_quarantined_row_keeps_its_raw_content(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text(HEADER + GOOD + "2026-01-01T00:02:00,p1,one,2,0\n")
    ingest_file(Warehouse.at(tmp_path / "w"), "s", SCHEMA, path)
    with connect(Warehouse.at(tmp_path / "w")) as con:
        q = read_quarantine(con, "s")
    assert q[["row_number", "column", "file"]].values.tolist() == [[3, "a", str(path)]]
    assert q["raw"].iloc[0] == '{"timestamp": "2026-01-01T00:02:00", "asset": "p1", "a": "one", "b": "2", "label": "0"}'


def test_out_of_order_rows_are_sorted_and_counted(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text(HEADER + "2026-01-01T00:02:00,p1,5,6,0\n" + GOOD)
    result = ingest_file(Warehouse.at(tmp_path / "w"), "s", SCHEMA, path)
    assert (result.status, result.rows_accepted, result.rows_quarantined, result.rows_out_of_order) == ("ok", 3, 0, 2)
    with connect(Warehouse.at(tmp_path / "w")) as con:
        frame = read_readings(con, "s")
    assert frame["a"].tolist() == [1.0, 3.0, 5.0]


@pytest.mark.parametrize("policy, kept, reason", [
    ("first", [3.0], r"data row 3: duplicate .* \(data row 2 kept\); duplicates policy 'first'"),
    ("last", [9.0], r"data row 2: duplicate .* \(data row 3 kept\); duplicates policy 'last'"),
    ("drop", [], r"data row [23]: duplicate timestamp 2026-01-01 00:01:00 for asset 'p1'; duplicates policy 'drop'"),
])
def test_duplicate_policy(tmp_path, policy, kept, reason):
    path = tmp_path / "x.csv"
    path.write_text(HEADER + GOOD + "2026-01-01T00:01:00,p1,9,9,0\n")
    schema = StreamSchema(sensors=("a", "b"), label_columns=("label",), duplicates=policy)
    result = ingest_file(Warehouse.at(tmp_path / "w"), "s", schema, path)
    assert result.rows_duplicate == 2 - len(kept) and result.rows_quarantined == 2 - len(kept)
    with connect(Warehouse.at(tmp_path / "w")) as con:
        frame = read_readings(con, "s")
        q = read_quarantine(con, "s")
    assert frame.loc[frame["timestamp"] == pd.Timestamp("2026-01-01T00:01:00"), "a"].tolist() == kept
    assert q["reason"].str.match(reason).all(), q["reason"].tolist()
