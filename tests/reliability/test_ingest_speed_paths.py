"""The fast ingest path (CSV read in blocks on all cores, clean chunks validated on Arrow
arrays and written without pandas) stores exactly what the row-by-row validation stores,
and hands every chunk that needs a verdict to it."""
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

import features.readers as readers
from features.readers import StreamSchema, inspect_file, read_chunks
from features.validation import FileState, read_readings, validate_chunk, validate_clean
from monitoring.store.audit import read_quarantine
from monitoring.store.connection import Warehouse, connect
from monitoring.store.ingestion import ingest_file
from monitoring.store.readings import read_readings as lake_readings

SENSORS = ("a", "b")
HEADER = "timestamp,asset,a,b,label"


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def clean_lines(n: int, start: str = "2026-01-01T00:00:00", asset: str = "m1") -> list[str]:
    times = pd.date_range(start, periods=n, freq="s")
    return [f"{t.isoformat()},{asset},{i * 0.5 - 3:.4f},{1e3 - i:.3e},{i % 2}" for i, t in enumerate(times)]


def typed_chunks(path: Path, schema: StreamSchema, chunk_rows: int = 1 << 20):
    source, resolved = inspect_file(path, schema)
    return resolved, list(read_chunks(source, resolved, mode="typed", chunk_rows=chunk_rows))


SCHEMA = StreamSchema(sensors=SENSORS, label_columns=("label",))


def test_a_clean_chunk_on_arrow_equals_the_row_by_row_validation(tmp_path):
    lines = clean_lines(50)
    lines[3] = field(lines[3], 1, "  m1 ")  # padded asset ids are the same asset
    lines[7] = field(lines[7], 4, "")  # no label: 0
    lines[11] = field(lines[11], 4, "NaN")  # read as missing by the typed read: 0 as well
    lines[9] = field(lines[9], 0, "2026-01-01T00:00:09.250000")
    path = write(tmp_path, "clean.csv", "\n".join([HEADER, *lines]) + "\n")
    resolved, chunks = typed_chunks(path, SCHEMA)
    (chunk,) = chunks
    clean = validate_clean(chunk, resolved, FileState())
    assert clean is not None and clean.asset == "m1"
    slow = validate_chunk(chunk, resolved, FileState(), path)
    assert slow.quarantine.empty
    expected = pa.Table.from_pandas(slow.accepted.drop(columns="_row"), preserve_index=False)
    assert clean.table.schema.types == [pa.timestamp("us"), pa.string(), pa.float64(), pa.float64(), pa.int8()]
    assert clean.table.column_names == expected.column_names
    for name in expected.column_names:
        got, want = clean.table.column(name).to_pylist(), expected.column(name).to_pylist()
        assert got == want, name
    assert clean.table.column("label").to_pylist()[7] == clean.table.column("label").to_pylist()[11] == 0


def field(line: str, index: int, value: str) -> str:
    """The line with its index-th field (timestamp, asset, a, b, label) replaced."""
    fields = line.split(",")
    fields[index] = value
    return ",".join(fields)


@pytest.mark.parametrize(("index", "value"), [
    (2, "nan"), (2, "inf"), (2, ""),  # a reading that is not a number, not finite, missing
    (0, ""), (0, "1960-01-01T00:00:00"), (0, "2999-01-01T00:00:00"),  # no time, too early, in the far future
    (1, "m2"), (1, " "), (1, "m\x001"),  # another asset, an empty asset id, NUL bytes
    (0, "2026-01-01T00:00:04"), (0, "2026-01-01T00:00:01"),  # a repeated time, a time out of order
    (4, "inf"), (4, "1e999"),  # a label that is not finite
])
def test_a_chunk_that_needs_a_verdict_goes_to_the_row_by_row_validation(tmp_path, index, value):
    lines = clean_lines(20)
    lines[5] = field(lines[5], index, value)
    path = write(tmp_path, "bad.csv", "\n".join([HEADER, *lines]) + "\n")
    resolved, chunks = typed_chunks(path, SCHEMA)
    state = FileState()
    assert validate_clean(chunks[0], resolved, state) is None
    assert not state.last_seen and state.n_out_of_order == 0  # the row-by-row validation starts afresh


def test_a_chunk_earlier_than_the_chunk_before_it_goes_to_the_row_by_row_validation(tmp_path):
    lines = clean_lines(10, "2026-01-01T00:01:00") + clean_lines(10, "2026-01-01T00:00:30")
    path = write(tmp_path, "late.csv", "\n".join([HEADER, *lines]) + "\n")
    resolved, chunks = typed_chunks(path, SCHEMA, chunk_rows=10)
    state = FileState()
    first = validate_clean(chunks[0], resolved, state)
    assert first is not None
    state.last_seen[first.asset] = first.last
    assert validate_clean(chunks[1], resolved, state) is None


@pytest.mark.parametrize("block", [40, 97, 4096])
def test_the_block_read_gives_the_rows_pyarrow_reads_from_the_whole_file(tmp_path, monkeypatch, block):
    lines = clean_lines(300)
    lines[10] = ""  # blank lines are skipped
    lines[11] = ""
    lines[50] = field(lines[50], 1, " m1" + " " * 150)  # a line longer than a block
    text = "\ufeff" + "\r\n".join([HEADER, *lines])  # byte-order mark, CRLF, no newline at the end
    path = write(tmp_path, "blocks.csv", text)
    monkeypatch.setattr(readers, "TYPED_BLOCK_BYTES", block)
    monkeypatch.setattr(readers, "TYPED_PARSE_BYTES", 512)  # pyarrow: a line within two
    _, chunks = typed_chunks(path, SCHEMA, chunk_rows=37)
    got = pa.concat_tables([c.table for c in chunks])
    types = {"timestamp": pa.timestamp("us"), "asset": pa.string(), "a": pa.float64(), "b": pa.float64(),
             "label": pa.float64()}
    whole = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=False))
    assert got.num_rows == 298 and [c.table.num_rows for c in chunks[:-1]] == [37] * (len(chunks) - 1)
    assert got.to_pylist() == whole.to_pylist()


def test_a_file_ingested_fast_holds_what_the_row_by_row_validation_accepts(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "TYPED_BLOCK_BYTES", 1000)  # many blocks, lines cut between them
    lines = clean_lines(400, asset=" pump-1")
    path = write(tmp_path, "pump.csv", "\n".join([HEADER, *lines]) + "\n")
    warehouse = Warehouse.at(tmp_path / "home")
    result = ingest_file(warehouse, "pumps", SCHEMA, path, chunk_rows=64)
    assert (result.status, result.rows_in, result.rows_accepted, result.rows_quarantined) == ("ok", 400, 400, 0)
    expected, quarantined = read_readings(path, SCHEMA, chunk_rows=64)
    assert quarantined.empty
    with connect(warehouse) as con:
        stored = lake_readings(con, "pumps")
    assert list(stored.columns[:5]) == ["timestamp", "asset", "a", "b", "label"]
    assert (stored["timestamp"].to_numpy() == expected["timestamp"].to_numpy()).all()
    assert (stored["asset"] == "pump-1").all()
    np.testing.assert_array_equal(stored[["a", "b"]].to_numpy(), expected[["a", "b"]].to_numpy())
    np.testing.assert_array_equal(stored["label"].to_numpy(), expected["label"].to_numpy())


def test_rows_out_of_order_across_chunks_are_counted_as_before(tmp_path):
    lines = clean_lines(30, "2026-01-01T00:01:00") + clean_lines(30, "2026-01-01T00:00:00")
    path = write(tmp_path, "late.csv", "\n".join([HEADER, *lines]) + "\n")
    result = ingest_file(Warehouse.at(tmp_path / "home"), "pumps", SCHEMA, path, chunk_rows=30)
    # the second chunk is all earlier than the first: 30 rows out of order, all kept, none repeated
    assert (result.status, result.rows_accepted, result.rows_out_of_order, result.rows_quarantined) == (
        "ok", 60, 30, 0)


def test_a_bad_row_in_a_late_chunk_is_quarantined_and_the_rest_kept(tmp_path):
    lines = clean_lines(200)
    lines[150] = field(lines[150], 2, "oops")
    path = write(tmp_path, "bad.csv", "\n".join([HEADER, *lines]) + "\n")
    warehouse = Warehouse.at(tmp_path / "home")
    result = ingest_file(warehouse, "pumps", SCHEMA, path, chunk_rows=50)
    assert (result.rows_in, result.rows_accepted, result.rows_quarantined) == (200, 199, 1)
    with connect(warehouse) as con:
        quarantine = read_quarantine(con, "pumps")
    assert list(quarantine["reason"]) == ["data row 151, column 'a': value 'oops' is not a number"]


def test_lake_parts_are_encoded_for_readings(tmp_path):
    path = write(tmp_path, "pump.csv", "\n".join([HEADER, *clean_lines(100)]) + "\n")
    warehouse = Warehouse.at(tmp_path / "home")
    assert ingest_file(warehouse, "pumps", SCHEMA, path).status == "ok"
    (part,) = Path(warehouse.data_path).rglob("part-*.parquet")
    meta = pq.ParquetFile(part).metadata.row_group(0)
    columns = {meta.column(i).path_in_schema: meta.column(i) for i in range(meta.num_columns)}
    assert {c.compression for c in columns.values()} == {"SNAPPY"}
    assert "DELTA_BINARY_PACKED" in columns["timestamp"].encodings
    assert any("DICT" in e for e in columns["asset"].encodings)
    assert not any("DICT" in e for e in columns["a"].encodings)  # float readings: plain
    assert all(c.is_stats_set for c in columns.values())  # DuckLake prunes files by these


def test_numbers_read_from_text_are_those_pandas_reads(tmp_path):
    # pyarrow's cast reads most of them; what it refuses, or reads otherwise ("-0": pandas
    # reads the integer 0), goes to pd.to_numeric
    odd = ["1e5", "+1", ".5", "5.", "-0", "-0.0", "00012", "9007199254740993", "1e-400", "1e400", " 2.5 ",
           "1_000", "0x10", "1,5", "Infinity", "-inf", "nan", "12345678901234567890123", "4.9e-324"]
    times = pd.date_range("2026-01-01", periods=len(odd), freq="s")
    text = "\n".join([HEADER, *[f'{t.isoformat()},m1,"{v}",1,0' for t, v in zip(times, odd, strict=True)]])
    path = write(tmp_path, "odd.csv", text + "\n")
    for chunk_rows in (1, 4, 100):  # chunks pyarrow reads whole, and chunks that need pandas
        accepted, quarantined = read_readings(path, SCHEMA, chunk_rows=chunk_rows)
        # pandas reads a chunk at a time, and how depends on the chunk ("-0" alone is 0.0, beside 1.5 -0.0)
        expected = np.concatenate([
            pd.to_numeric(pd.Series(odd[i:i + chunk_rows], dtype="string").str.strip(), errors="coerce")
            .astype("float64").to_numpy() for i in range(0, len(odd), chunk_rows)])
        keep = np.isfinite(expected)
        got = accepted["a"].to_numpy()
        np.testing.assert_array_equal(got, expected[keep])
        assert (np.signbit(got) == np.signbit(expected[keep])).all()
        assert sorted(quarantined["row"]) == [i + 1 for i in np.flatnonzero(~keep)]


@pytest.mark.parametrize("block", [1, 5, 64, 1 << 20])
def test_blank_and_binary_lines_are_found_where_they_are(tmp_path, block):
    lines = [b"h,a", b"1,2", b"", b"  \t", b"\r", b"3,4", b"x\x00y", b"\x00", b" \x00", b"\x0b\x0c", b"5,6", b"\x1c"]
    raw = b"\xef\xbb\xbf" + b"\n".join(lines) + b"\n \n7,\x008"  # the last line has no newline
    path = write(tmp_path, "lines.csv", raw)
    source = readers.SourceFile(path, "csv", ["h", "a"], ["h", "a"], skip_bytes=3)
    blank, broken = readers._scan_lines(source, block_bytes=block)
    data_lines = raw[3:].split(b"\n")[1:]
    assert list(blank) == [i for i, line in enumerate(data_lines, start=1) if not line.strip()]
    assert [(row, text) for row, text, _ in broken] == [
        (i, readers.printable(line)) for i, line in enumerate(data_lines, start=1) if line.strip() and b"\x00" in line]
    assert [row for row, _, _ in broken] == [6, 7, 8, 13]
