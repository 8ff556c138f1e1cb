import pandas as pd
import pytest

from features.errors import SchemaError
from features.readers import StreamSchema, file_digest
from features.validation import read_readings

SCHEMA = StreamSchema(sensors=("a", "b"), label_columns=("label",))


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_csv_with_any_common_delimiter(tmp_path, delimiter):
    rows = ["timestamp,asset,a,b,label", "2026-01-01T00:01:00,p2,3,4,1", "2026-01-01T00:00:00,p1,1.5,2,0"]
    path = write(tmp_path, "x.csv", "\n".join(r.replace(",", delimiter) for r in rows) + "\n")
    frame, quarantine = read_readings(path, SCHEMA)
    assert quarantine.empty
    assert list(frame.columns) == ["timestamp", "asset", "a", "b", "label"]
    assert list(frame["asset"]) == ["p1", "p2"]
    assert frame["a"].tolist() == [1.5, 3.0] and frame["label"].tolist() == [0, 1]
    assert frame["timestamp"].iloc[0] == pd.Timestamp("2026-01-01T00:00:00")


def test_time_zones_become_naive_utc(tmp_path):
    path = write(tmp_path, "tz.csv", "timestamp,asset,a,b,label\n2026-01-01T02:00:00+02:00,p1,1,2,0\n")
    assert read_readings(path, SCHEMA)[0]["timestamp"].iloc[0] == pd.Timestamp("2026-01-01T00:00:00")


def test_parquet_reads_like_csv(tmp_path):
    frame = pd.DataFrame({"timestamp": pd.to_datetime(["2026-01-01T00:00:00"]), "asset": ["p1"],
                          "a": [1.0], "b": [2.0], "label": [0]})
    frame.to_parquet(tmp_path / "x.parquet", index=False)
    out, _ = read_readings(tmp_path / "x.parquet", SCHEMA)
    assert out["a"].tolist() == [1.0] and out["asset"].tolist() == ["p1"]


@pytest.mark.parametrize("name, text, message", [
    ("missing.csv", "timestamp,asset,a,label\n2026-01-01,p1,1,0\n",
     r"missing \['b'\], unexpected \[\]"),
    ("extra.csv", "timestamp,asset,a,b,c,label\n2026-01-01,p1,1,2,3,0\n",
     r"missing \[\], unexpected \['c'\]"),
    ("empty.csv", "", r"file is empty"),
    ("notes.json", "{}", r"unsupported file type '.json'"),
])
def test_bad_files_are_refused_with_file_and_column(tmp_path, name, text, message):
    path = write(tmp_path, name, text)
    with pytest.raises(SchemaError, match=message) as info:
        read_readings(path, SCHEMA)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("text, reason", [
    ("2026-01-02,p1,one,2,0", r"data row 2, column 'a': value 'one' is not a number"),
    ("yesterday,p1,1,2,0", r"data row 2, column 'timestamp': value 'yesterday' is not a timestamp"),
    ("2026-01-02,p1,,2,0", r"data row 2, column 'a': missing reading"),
    ("2026-01-01,p1,1,2,0", r"data row 2: duplicate timestamp 2026-01-01 00:00:00 for asset 'p1' \(data row 1 kept\)"),
])
def test_a_bad_row_is_quarantined_and_the_rest_kept(tmp_path, text, reason):
    path = write(tmp_path, "x.csv", f"timestamp,asset,a,b,label\n2026-01-01,p1,1,2,0\n{text}\n2026-01-03,p1,3,4,0\n")
    frame, quarantine = read_readings(path, SCHEMA)
    assert frame["a"].tolist() == [1.0, 3.0]
    assert len(quarantine) == 1 and quarantine["row"].tolist() == [2]
    assert quarantine["reason"].str.match(reason).all(), quarantine["reason"].tolist()


def test_latin1_file_is_named_as_not_utf8(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("timestamp,asset,a,b,label\n2026-01-01,pümp,1,2,0\n".encode("latin-1"))
    with pytest.raises(SchemaError, match="not UTF-8 text at byte 38"):
        read_readings(path, SCHEMA)


def test_digest_depends_on_content_only(tmp_path):
    one = write(tmp_path, "one.csv", "same")
    two = write(tmp_path, "two.csv", "same")
    three = write(tmp_path, "three.csv", "other")
    assert file_digest(one) == file_digest(two) != file_digest(three)


def test_rows_are_numbered_by_line_across_blank_and_cut_off_lines(tmp_path):
    lines = ["timestamp,asset,a,b,label", "2026-01-01T00:00:00,p1,1,2,0", "", "",
             "2026-01-01T00:01:00,p1,1,2", "2026-01-01T00:02:00,p1,zz,2,0", "2026-01-01T00:03:00,p1,1,2,0"]
    frame, quarantine = read_readings(write(tmp_path, "gaps.csv", "\n".join(lines) + "\n"), SCHEMA)
    assert len(frame) == 2
    assert quarantine["row"].tolist() == [4, 5]  # data rows: the header is line 0
    assert quarantine["reason"].str.startswith(("data row 4: 4 fields", "data row 5, column 'a'")).all()


def test_unlabelled_long_file_gets_label_zero(tmp_path):
    schema = StreamSchema(sensors=("a", "b"), label_columns=("label",), layout="long", labels_optional=True)
    text = ("timestamp,asset,sensor,value\n2026-01-01T00:00:00,p1,a,1\n2026-01-01T00:00:00,p1,b,2\n")
    frame, quarantine = read_readings(write(tmp_path, "long.csv", text), schema)
    assert quarantine.empty and frame["label"].tolist() == [0] and frame["b"].tolist() == [2.0]


def test_a_long_file_is_pivoted_whole_whatever_the_chunk_size(tmp_path):
    schema = StreamSchema(sensors=("a", "b"), label_columns=("label",), layout="long")
    lines = ["timestamp,asset,sensor,value,label"]
    for minute in range(3):
        ts = f"2026-01-01T00:0{minute}:00"
        lines += [f"{ts},p1,a,{minute},0", f"{ts},p1,b,{minute + 10},0"]
    frame, quarantine = read_readings(write(tmp_path, "long.csv", "\n".join(lines) + "\n"), schema, chunk_rows=3)
    assert quarantine.empty
    assert frame["a"].tolist() == [0.0, 1.0, 2.0] and frame["b"].tolist() == [10.0, 11.0, 12.0]


def test_non_iso_timestamps_need_a_format_and_are_never_guessed(tmp_path):
    text = "timestamp,asset,a,b,label\n03/04/2026 00:00,p1,1,2,0\n2026-01-01T00:00:00,p1,1,2,0\n"
    path = write(tmp_path, "dates.csv", text)
    frame, quarantine = read_readings(path, SCHEMA)
    assert len(frame) == 1
    assert quarantine["reason"].tolist() == [
        "data row 1, column 'timestamp': value '03/04/2026 00:00' is not a timestamp (expected ISO 8601)"]
    day_first = StreamSchema(sensors=("a", "b"), label_columns=("label",), timestamp_format="%d/%m/%Y %H:%M")
    frame, quarantine = read_readings(
        write(tmp_path, "dates2.csv", text.replace("2026-01-01T00:00:00", "01/01/2026 00:00")), day_first)
    assert quarantine.empty and frame["timestamp"].tolist() == [pd.Timestamp("2026-01-01"), pd.Timestamp("2026-04-03")]
