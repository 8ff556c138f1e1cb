"""Replay's pure parts: chunks of data time, release delays, shifted times."""
import numpy as np
import pandas as pd
import pytest

from features.errors import SchemaError
from features.readers import StreamSchema
from features.time_chunks import cut_chunks, format_times, read_times, release_delays, shift_times
from features.validation import parse_timestamps

SCHEMA = StreamSchema(sensors=("a",))


def times(*seconds: float) -> pd.Series:
    return pd.Series(pd.Timestamp("2026-01-05T10:00:00") + pd.to_timedelta(list(seconds), unit="s"))


def test_chunks_cover_every_row_once_in_time_order_keeping_file_order_inside():
    # two assets interleaved, a gap of 5 minutes, and one row out of order
    t = times(0, 0, 30, 30, 60, 60, 90, 400, 410, 20)
    chunks = cut_chunks(t, chunk_s=60)
    covered = np.concatenate([c.positions for c in chunks])
    assert sorted(covered) == list(range(len(t)))  # every row, once
    assert [c.positions.tolist() for c in chunks] == [[0, 1, 2, 3, 9], [4, 5, 6], [7, 8]]
    assert [c.offset_s for c in chunks] == [0.0, 60.0, 360.0]  # the empty minutes give no chunk
    for chunk in chunks:
        elapsed = (t.iloc[chunk.positions] - t.min()).dt.total_seconds()
        assert ((elapsed >= chunk.offset_s) & (elapsed < chunk.offset_s + 60)).all()


def test_chunks_of_a_long_recording_partition_it(small_stream):
    t = small_stream.readings["timestamp"].reset_index(drop=True)
    chunks = cut_chunks(t, chunk_s=3600)
    covered = np.concatenate([c.positions for c in chunks])
    assert len(covered) == len(t) and len(set(covered.tolist())) == len(t)
    firsts = [t.iloc[c.positions].min() for c in chunks]
    assert firsts == sorted(firsts) and len(chunks) == 4 * 24


def test_release_delays_are_data_time_over_speed():
    chunks = cut_chunks(times(0, 60, 120, 600), chunk_s=60)
    assert release_delays(chunks, speed=60) == [0.0, 1.0, 2.0, 10.0]
    assert release_delays(chunks, speed=1) == [0.0, 60.0, 120.0, 600.0]
    assert release_delays(chunks, speed=0) == [0.0] * 4
    with pytest.raises(ValueError, match="speed -1"):
        release_delays(chunks, speed=-1)
    with pytest.raises(ValueError, match="chunk length 0"):
        cut_chunks(times(0), chunk_s=0)


def test_shifted_times_keep_their_spacing_and_start_at_the_given_time():
    t = times(0, 1, 61, 3600, 3600.5)
    now = pd.Timestamp("2026-12-03T20:00:00")
    shifted = shift_times(t, now)
    assert shifted.min() == now
    assert (shifted.diff().dropna() == t.diff().dropna()).all()


@pytest.mark.parametrize("schema", [
    SCHEMA,
    StreamSchema(sensors=("a",), timezone="Europe/Berlin"),
    StreamSchema(sensors=("a",), timestamp_format="%d.%m.%Y %H:%M:%S", timezone="Europe/Berlin"),
])
def test_formatted_times_read_back_as_the_same_instants(schema):
    t = times(0, 60, 3600)
    like = pd.Series(["x"] * 3)
    assert (parse_timestamps(format_times(t, like, schema), schema) == t).all()
    typed = t.dt.tz_localize("UTC").dt.tz_convert(schema.timezone).dt.tz_localize(None)  # Parquet, naive local
    assert (parse_timestamps(format_times(t, typed, schema), schema) == t).all()


def test_a_timestamp_that_does_not_parse_names_the_file_and_row():
    frame = pd.DataFrame({"timestamp": ["2026-01-05T10:00:00", "yesterday"], "asset": ["p", "p"], "a": ["1", "2"]})
    with pytest.raises(SchemaError, match=r"rec\.csv: data row 2, column 'timestamp': 'yesterday' is not a timestamp"):
        read_times(frame, SCHEMA, "rec.csv")
    tabular = StreamSchema(sensors=("a",), timestamp_column=None)
    with pytest.raises(SchemaError, match="no timestamp column"):
        read_times(frame, tabular, "rec.csv")
