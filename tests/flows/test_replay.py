"""`aemon replay`: timed, atomic chunks in the inbox that ingest to the same lake rows as the whole file."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from features.errors import SchemaError
from flows.config import load_config
from flows.replay import read_recording, replay_file, write_atomically
from monitoring.store.connection import connect
from monitoring.store.ingestion import list_inbox
from monitoring.store.readings import read_readings


class FakeClock:
    """Wall time that moves only when the replay sleeps; it keeps what was in the inbox then."""

    def __init__(self, inbox: Path):
        self.now, self.inbox, self.sleeps, self.seen = 1000.0, inbox, [], []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.seen.append(sorted(p.name for p in self.inbox.iterdir()))
        self.now += seconds


@pytest.fixture
def recording(tmp_path, small_stream) -> Path:
    """Two hours of two pumps, interleaved by time as one export of a site would be."""
    frame = small_stream.readings
    frame = frame[frame["timestamp"] < frame["timestamp"].min() + pd.Timedelta(hours=2)]
    path = tmp_path / "recorded.csv"
    frame.sort_values(["timestamp", "asset"]).to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%S")
    return path


@pytest.fixture
def schema(aemon_home):
    _, config_path = aemon_home
    config = load_config(config_path)
    return config.stream("pumps").stream_schema()


def test_chunks_are_written_at_their_data_time_over_speed(recording, schema, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    clock = FakeClock(inbox)
    written = replay_file(recording, schema, inbox, speed=60, chunk_s=600, clock=clock, sleep=clock.sleep)
    # 2 hours of data in 10-minute chunks at 60x: one chunk every 10 wall seconds
    assert [c.due_s for c in written] == [10.0 * i for i in range(12)]
    assert [c.written_s for c in written] == [10.0 * i for i in range(12)]
    assert clock.sleeps == [10.0] * 11
    assert [c.rows for c in written] == [2 * 10] * 12
    # the inbox, each time the replay waited: only whole chunks, one more each time
    assert [len(names) for names in clock.seen] == list(range(1, 12))
    assert all(not name.startswith(".") for names in clock.seen for name in names)
    assert [p.name for p in list_inbox(inbox)] == [c.path.name for c in written]  # names sort in data order

    recorded = pd.read_csv(recording)
    replayed = pd.concat([pd.read_csv(c.path) for c in written], ignore_index=True)
    pd.testing.assert_frame_equal(replayed, recorded)  # every row once, in order, values untouched


def test_speed_zero_writes_everything_without_waiting(recording, schema, tmp_path):
    clock = FakeClock(tmp_path)
    written = replay_file(recording, schema, tmp_path / "inbox", speed=0, clock=clock, sleep=clock.sleep)
    assert clock.sleeps == [] and len(written) == 120  # default chunk: a minute of data


def test_a_late_replay_does_not_sleep_to_catch_up(recording, schema, tmp_path):
    """A slow write never makes the replay sleep a negative time or fall further behind."""
    class SlowClock(FakeClock):
        def __call__(self) -> float:
            self.now += 7.0  # each look at the clock costs 7 s
            return self.now

    clock = SlowClock(tmp_path)
    replay_file(recording, schema, tmp_path / "inbox", speed=60, chunk_s=600, clock=clock, sleep=clock.sleep)
    assert all(0 < s <= 10 for s in clock.sleeps)


def test_shifted_replay_starts_now_and_keeps_the_spacing(recording, schema, tmp_path):
    now = pd.Timestamp("2026-12-03T20:00:00")
    written = replay_file(recording, schema, tmp_path / "inbox", speed=0, chunk_s=3600, shift_to=now)
    replayed = pd.concat([pd.read_csv(c.path) for c in written], ignore_index=True)
    recorded = pd.read_csv(recording)
    times = pd.to_datetime(replayed["timestamp"], utc=True, format="ISO8601").dt.tz_localize(None)
    assert times.min() == now and written[0].first == now
    original = pd.to_datetime(recorded["timestamp"])
    assert ((times - times.min()) == (original - original.min())).all()
    pd.testing.assert_frame_equal(replayed.drop(columns="timestamp"), recorded.drop(columns="timestamp"))


def test_parquet_replays_as_parquet_with_shifted_timestamps(small_stream, schema, tmp_path):
    frame = small_stream.readings.head(600)
    path = tmp_path / "recorded.parquet"
    frame.to_parquet(path, index=False)
    now = pd.Timestamp("2026-12-03T20:00:00")
    written = replay_file(path, schema, tmp_path / "inbox", speed=0, chunk_s=3600, shift_to=now)
    assert all(c.path.suffix == ".parquet" for c in written)
    replayed = pd.concat([pd.read_parquet(c.path) for c in written], ignore_index=True)
    assert replayed["timestamp"].min() == now and len(replayed) == 600
    shift = now - frame["timestamp"].min()
    pd.testing.assert_series_equal(replayed["timestamp"], frame["timestamp"].reset_index(drop=True) + shift,
                                   check_dtype=False)


def test_a_failed_write_leaves_nothing_in_the_inbox(tmp_path):
    rows = pd.DataFrame({"a": [1, "two", {"x": 3}]})  # no Parquet type holds these together
    with pytest.raises(Exception):  # noqa: B017 (pyarrow's own error; the point is what is left)
        write_atomically(rows, tmp_path / "chunk.parquet", "parquet")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / ".chunk.csv.part").write_text("timestamp,asset\n2026-01-01T00:00:00,")  # half written
    assert list_inbox(tmp_path) == []  # a temporary name is never ingested


def test_a_file_whose_columns_differ_is_named_with_what_differs(schema, tmp_path):
    path = tmp_path / "other.csv"
    pd.DataFrame({"timestamp": ["2026-01-01T00:00:00"], "asset": ["p"], "Pressure": [1.0]}).to_csv(path, index=False)
    with pytest.raises(SchemaError, match=r"other\.csv: columns differ from the stream schema: missing \["):
        read_recording(path, schema)


def test_cli_replay_refuses_a_file_of_another_schema_in_one_line(aemon_home, tmp_path):
    _, config_path = aemon_home
    path = tmp_path / "other.csv"
    pd.DataFrame({"timestamp": ["2026-01-01T00:00:00"], "asset": ["p"], "Pressure": [1.0]}).to_csv(path, index=False)
    env = {**os.environ, "AEMON_CONFIG": str(config_path)}
    run = [sys.executable, "-c", "from flows.cli import main; main()", "replay"]
    result = subprocess.run([*run, str(path), "--stream", "pumps"], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"error: {path}: columns differ from the stream schema: missing [" in result.stderr.replace("\n", "")
    assert "unexpected ['Pressure']" in result.stderr.replace("\n", "")
    missing = subprocess.run([*run, str(tmp_path / "nope.csv"), "--stream", "pumps"], env=env, capture_output=True,
                             text=True, timeout=120)
    assert missing.returncode == 2 and "nope.csv: no such file" in missing.stderr


def test_a_replayed_file_ingests_to_the_same_lake_rows_as_the_whole_file(
        tmp_path, recording, prefect_harness, config_writer):
    from flows.ingest import ingest_readings

    lakes = []
    for name in ("whole", "replayed"):
        config_path = config_writer(tmp_path / name)
        config = load_config(config_path)
        inbox = config.inbox("pumps")
        if name == "whole":
            inbox.mkdir(parents=True)
            (inbox / recording.name).write_bytes(recording.read_bytes())
        else:
            replay_file(recording, config.stream("pumps").stream_schema(), inbox, speed=0, chunk_s=300)
        results = ingest_readings("pumps", config_path=str(config_path))
        assert {r["status"] for r in results} == {"ok"} and sum(r["rows_quarantined"] for r in results) == 0
        with connect(config.warehouse) as con:
            lakes.append((len(results), read_readings(con, "pumps")))
    (n_whole, whole), (n_replayed, replayed) = lakes
    assert n_whole == 1 and n_replayed == 24
    assert len(whole) == 2 * 120
    pd.testing.assert_frame_equal(replayed, whole)
