"""Hostile and broken input at ingest: timestamps outside any plausible range, binary content
in a text file, files that are another format altogether. Every row ends in the lake or in
quarantine with a reason naming its row and column; a file that is not CSV is named as what it is."""
from __future__ import annotations

import gzip
import io
import math
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from features.errors import SchemaError
from features.readers import StreamSchema
from flows.config import load_config
from flows.locations import ConfigError
from monitoring.store.audit import read_quarantine
from monitoring.store.connection import Warehouse, connect, query
from monitoring.store.ingestion import ingest_file

SCHEMA = StreamSchema(sensors=("a", "b"))
HEADER = "timestamp,asset,a,b\n"


def good_lines(n: int, start: str = "2026-01-01") -> list[str]:
    times = pd.date_range(start, periods=n, freq="10s")
    return [f"{t.isoformat()},p1,{i},{2 * i}" for i, t in enumerate(times)]


def quarantine(warehouse: Warehouse, stream: str) -> pd.DataFrame:
    with connect(warehouse) as con:
        return read_quarantine(con, stream)


def lake_times(warehouse: Warehouse, stream: str) -> pd.Series:
    return query(warehouse, f'SELECT timestamp FROM lake."{stream}" ORDER BY timestamp')["timestamp"]


# --- timestamps outside the accepted range ---------------------------------------------------

def far_times() -> list[str]:
    future = (pd.Timestamp.now(tz="UTC").tz_localize(None) + pd.Timedelta(days=3)).floor("s")
    return ["9999-12-31 23:59:59", "1500-01-01", future.isoformat(), "1969-12-31T23:59:59"]


def write_far_times(path: Path, kind: str) -> None:
    """Four good rows, then the four implausible ones (data rows 5 to 8), then two good ones."""
    times = [*[line.split(",")[0] for line in good_lines(4)], *far_times(),
             *[line.split(",")[0] for line in good_lines(2, start="2026-02-01")]]
    frame = pd.DataFrame({"timestamp": times, "asset": "p1", "a": range(10), "b": 1.5})
    if kind == "csv-text":  # a bad number elsewhere: the file is read as text from the start
        frame["a"] = frame["a"].astype(object)
        frame.loc[9, "a"] = "n/a"
    if kind == "parquet-typed":  # real timestamps, microseconds: year 9999 and 1500 fit
        frame["timestamp"] = pd.to_datetime(frame["timestamp"], format="ISO8601").astype("datetime64[us]")
    if kind.startswith("parquet"):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)


@pytest.mark.parametrize("kind", ["csv-typed", "csv-text", "parquet-text", "parquet-typed"])
def test_timestamps_outside_the_range_are_quarantined_by_row(tmp_path, kind):
    warehouse = Warehouse.at(tmp_path / "home")
    path = tmp_path / ("far.parquet" if kind.startswith("parquet") else "far.csv")
    write_far_times(path, kind)
    result = ingest_file(warehouse, "s", SCHEMA, path)
    n_bad = 5 if kind == "csv-text" else 4
    assert (result.status, result.rows_in, result.rows_quarantined) == ("ok", 10, n_bad)
    bad = quarantine(warehouse, "s")
    rows = bad.loc[bad["column"] == "timestamp", "row_number"].tolist()
    assert rows == [5, 6, 7, 8]
    reasons = bad.loc[bad["column"] == "timestamp", "reason"].tolist()
    assert reasons[0].startswith("data row 5, column 'timestamp': timestamp '9999-12-31 23:59:59")
    assert "is outside the accepted range 1970-01-01 00:00:00 to " in reasons[0]
    assert "accept_from and accept_ahead_hours" in reasons[0]
    assert reasons[1].startswith("data row 6, column 'timestamp': timestamp '1500-01-01")
    times = lake_times(warehouse, "s")
    assert times.min() >= pd.Timestamp("2026-01-01") and times.max() < pd.Timestamp("2026-03-01")


def test_the_quality_report_counts_only_plausible_readings(tmp_path):
    # year 9999 and 1500 once reached the lake and turned the missing share to "-0.00 %"
    from monitoring.store.data_quality import assess_stream

    times = [*pd.date_range("2026-01-01", periods=100, freq="60s").strftime("%Y-%m-%dT%H:%M:%S"),
             "9999-12-31 23:59:59", "1500-01-01"]
    pd.DataFrame({"timestamp": times, "asset": "p1", "a": 1.0, "b": 2.0}).to_csv(tmp_path / "x.csv", index=False)
    warehouse = Warehouse.at(tmp_path / "home")
    assert ingest_file(warehouse, "s", SCHEMA, tmp_path / "x.csv").rows_quarantined == 2
    report = assess_stream(warehouse, "s", ["a", "b"], 60, 90)
    assert report["n_readings"].tolist() == [100, 100]
    assert [math.copysign(1.0, v) for v in report["missing_pct"]] == [1.0, 1.0]  # 0.0, not -0.0
    assert report["missing_pct"].tolist() == [0.0, 0.0]


def test_long_layout_quarantines_far_timestamps_too(tmp_path):
    schema = StreamSchema(sensors=("a", "b"), layout="long")
    path = tmp_path / "long.csv"
    path.write_text("timestamp,asset,sensor,value\n2026-01-01T00:00:00,p1,a,1\n2026-01-01T00:00:00,p1,b,2\n"
                    "9999-12-31T00:00:00,p1,a,1\n9999-12-31T00:00:00,p1,b,2\n")
    warehouse = Warehouse.at(tmp_path / "home")
    result = ingest_file(warehouse, "s", schema, path)
    assert (result.rows_in, result.rows_accepted, result.rows_quarantined) == (4, 2, 2)
    assert quarantine(warehouse, "s")["row_number"].tolist() == [3, 4]
    assert lake_times(warehouse, "s").tolist() == [pd.Timestamp("2026-01-01")]


def test_the_accepted_range_is_set_per_stream(tmp_path):
    config = tmp_path / "aemon.toml"
    config.write_text(f'home = "{(tmp_path / "home").as_posix()}"\n'
                      '[streams.old]\nsensors = ["a", "b"]\naccept_from = 1950-06-01\n'
                      '[streams.recent]\nsensors = ["a", "b"]\naccept_from = "2026-01-01T00:00:30"\n'
                      'accept_ahead_hours = 0\n')
    cfg = load_config(config)
    path = tmp_path / "x.csv"
    soon = (pd.Timestamp.now(tz="UTC").tz_localize(None) + pd.Timedelta(hours=2)).floor("s")
    path.write_text(HEADER + "1960-01-01T00:00:00,p1,1,2\n" + "\n".join(good_lines(6))
                    + f"\n{soon.isoformat()},p1,1,2\n")
    old = ingest_file(cfg.warehouse, "old", cfg.stream("old").stream_schema(), path)
    assert (old.rows_accepted, old.rows_quarantined) == (8, 0)  # 2 hours ahead: inside the default day
    recent = ingest_file(cfg.warehouse, "recent", cfg.stream("recent").stream_schema(), path)
    assert (recent.rows_accepted, recent.rows_quarantined) == (3, 5)  # 1960, 00:00:00 to 00:00:20, and soon
    reasons = quarantine(cfg.warehouse, "recent")["reason"].tolist()
    assert all("outside the accepted range 2026-01-01 00:00:30 to" in r for r in reasons)


@pytest.mark.parametrize("setting, message", [
    ('accept_from = "1500-01-01"', "accept_from '1500-01-01'; expected a time without offset (UTC) from 1678-01-01"),
    ('accept_from = "soon"', "accept_from 'soon' is not a timestamp"),
    ("accept_from = 2026-01-01T00:00:00+02:00", "has an offset; give it in UTC"),
    ("accept_ahead_hours = -1", "accept_ahead_hours -1.0; expected 0 to"),
    ("accept_ahead_hours = 1e9", "accept_ahead_hours 1000000000.0; expected 0 to"),
])
def test_a_bad_range_setting_is_named(tmp_path, setting, message):
    config = tmp_path / "aemon.toml"
    config.write_text(f'[streams.s]\nsensors = ["a"]\n{setting}\n')
    with pytest.raises(ConfigError, match=r"streams\.s") as caught:
        load_config(config)
    assert message in str(caught.value).replace("\n", "")


def test_the_default_range_is_inside_nanosecond_timestamps():
    lo, hi = StreamSchema(sensors=("a",)).accepted_range()
    assert lo == pd.Timestamp("1970-01-01")
    now = pd.Timestamp.now(tz="UTC").tz_localize(None)
    assert now + pd.Timedelta(hours=23) < hi <= now + pd.Timedelta(hours=24)
    lo.as_unit("ns"), hi.as_unit("ns")  # raise when outside
    with pytest.raises(SchemaError, match="accept_from"):
        StreamSchema(sensors=("a",), accept_from="1600-01-01")


# --- binary content -------------------------------------------------------------------------

def with_garbage(lines: list[str], at: int) -> bytes:
    """The file with data row `at` (1-based) cut and filled with NUL bytes and other bytes."""
    lines = list(lines)
    lines[at - 1] = lines[at - 1][:15] + "\x00\x00\x01\x02junk\x00\x00"
    return (HEADER + "\n".join(lines) + "\n").encode()


@pytest.mark.parametrize("at", [2, 3000], ids=["early", "late"])  # inside / far past the first 64 KiB
def test_nul_bytes_quarantine_their_line_wherever_they_are(tmp_path, at):
    lines = good_lines(3000)
    path = tmp_path / "nul.csv"
    path.write_bytes(with_garbage(lines, at))
    warehouse = Warehouse.at(tmp_path / "home")
    result = ingest_file(warehouse, "s", SCHEMA, path)
    assert (result.status, result.rows_in, result.rows_accepted, result.rows_quarantined) == ("ok", 3000, 2999, 1)
    bad = quarantine(warehouse, "s")
    assert bad["row_number"].tolist() == [at]
    assert bad["reason"].item() == f"data row {at}: NUL bytes in the line (binary content in a text file); " \
                                   "expected a CSV line"
    assert bad["raw"].item() == lines[at - 1][:15] + "\\x00\\x00\x01\x02junk\\x00\\x00"
    times = lake_times(warehouse, "s")
    assert len(times) == 2999 and pd.Timestamp(lines[at - 1].split(",")[0]) not in set(times)


def test_nul_bytes_in_a_text_value_are_quarantined_in_typed_reads_too(tmp_path):
    # the asset column is text, so a typed read takes NUL bytes there; they must not reach the lake
    lines = good_lines(5)
    lines[2] = lines[2].replace(",p1,", ",p\x001,")
    path = tmp_path / "asset.parquet"
    frame = pd.read_csv(io.StringIO(HEADER + "\n".join(lines)))
    frame.to_parquet(path, index=False)
    warehouse = Warehouse.at(tmp_path / "home")
    result = ingest_file(warehouse, "s", SCHEMA, path)
    assert (result.rows_accepted, result.rows_quarantined) == (4, 1)
    bad = quarantine(warehouse, "s")
    assert bad["reason"].item() == "data row 3, column 'asset': NUL bytes in the value (binary content); expected text"


def zipped(text: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readings.csv", text)
    return buffer.getvalue()


@pytest.mark.parametrize("name, content, message", [
    ("export.csv", gzip.compress((HEADER + "\n".join(good_lines(10))).encode()),
     "a gzip file, not CSV; decompress it first"),
    ("export.csv", zipped(HEADER + "\n".join(good_lines(10))),
     "a ZIP archive (or an xlsx/ods workbook), not CSV"),
    ("chart.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), "a PNG image, not CSV"),
    ("report.csv", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", "a PDF document, not CSV"),
    ("tool.txt", b"\x7fELF\x02\x01\x01\x00" + bytes(64), "an ELF executable, not CSV"),
    ("old.csv", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(64), "an Excel 97-2003 workbook"),
    ("export.parquet", gzip.compress(b"PAR1 not really"), "a gzip file, not Parquet; decompress it first"),
])
def test_another_format_is_rejected_whole_and_named(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    warehouse = Warehouse.at(tmp_path / "home")
    result = ingest_file(warehouse, "s", SCHEMA, path)
    assert (result.status, result.rows_in, result.rows_accepted) == ("rejected", 0, 0)
    assert result.error == f"{path}: {message}" or result.error.startswith(f"{path}: {message}")
    assert quarantine(warehouse, "s").empty


def test_nul_bytes_in_the_header_reject_the_file_with_its_rows_in_quarantine(tmp_path):
    path = tmp_path / "h.csv"
    path.write_bytes(b"time\x00stamp,asset,a,b\n" + "\n".join(good_lines(3)).encode() + b"\n")
    warehouse = Warehouse.at(tmp_path / "home")
    result = ingest_file(warehouse, "s", SCHEMA, path)
    assert (result.status, result.rows_in, result.rows_quarantined) == ("rejected", 3, 3)
    assert "binary content (NUL bytes in the header line)" in result.error


def test_utf16_files_are_still_rejected_with_their_rows_in_quarantine(tmp_path):
    path = tmp_path / "u.csv"
    path.write_bytes((HEADER + "\n".join(good_lines(3)) + "\n").encode("utf-16"))
    warehouse = Warehouse.at(tmp_path / "home")
    result = ingest_file(warehouse, "s", SCHEMA, path)
    assert (result.status, result.rows_in, result.rows_quarantined) == ("rejected", 3, 3)
    assert "UTF-16 text; expected UTF-8" in result.error
    assert quarantine(warehouse, "s")["raw"].tolist() == good_lines(3)
