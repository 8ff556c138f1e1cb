"""Incremental scoring: two runs over data that arrives in two parts write exactly what
one run over all of it writes."""
import pandas as pd
import pytest

from features.readers import StreamSchema
from features.synthetic import SENSORS
from features.windows import WindowSpec
from monitoring import warehouse
from monitoring.ingest import ingest_file
from monitoring.scoring import score_stream
from monitoring.training import train_bundle

SPEC = WindowSpec(size=20, stride=7)
SCHEMA = StreamSchema(sensors=tuple(SENSORS), label_columns=("label",))


@pytest.fixture(scope="module")
def bundle(small_stream):
    return train_bundle(small_stream.readings, stream="pumps", sensors=list(SENSORS), spec=SPEC,
                        detector_params={"epochs": 3, "hidden": (32,), "latent": 4, "n_threads": 1},
                        label_columns=["label"]).bundle


def run(db, bundle, **kwargs):
    return score_stream(db, "pumps", bundle.score_readings, bundle.spec, bundle.input_columns(),
                        "pumps-detector", 1, **kwargs)


def scored(db):
    with warehouse.connect(db) as con:
        return (con.execute("SELECT asset, window_start, window_end, score FROM scores ORDER BY ALL").df(),
                con.execute("SELECT asset, window_start FROM anomalies ORDER BY ALL").df(),
                warehouse.get_watermarks(con, "pumps"))


def test_two_incremental_runs_equal_one_full_run(tmp_path, small_stream, bundle):
    frame = small_stream.readings
    cut = frame["timestamp"].min() + pd.Timedelta(hours=37, minutes=13)
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    frame[frame["timestamp"] < cut].to_csv(tmp_path / "a" / "early.csv", index=False)
    frame[frame["timestamp"] >= cut].to_csv(tmp_path / "a" / "late.csv", index=False)
    frame.to_csv(tmp_path / "b" / "all.csv", index=False)

    inc = tmp_path / "inc.duckdb"
    ingest_file(inc, tmp_path / "lake-inc", "pumps", SCHEMA, tmp_path / "a" / "early.csv")
    first = run(inc, bundle)
    marks = scored(inc)[2]
    assert all(mark < cut for mark in marks.values())
    ingest_file(inc, tmp_path / "lake-inc", "pumps", SCHEMA, tmp_path / "a" / "late.csv")
    second = run(inc, bundle)
    assert second.windows_scored > 0 and second.scores_written == second.windows_scored
    assert run(inc, bundle).windows_scored == 0  # nothing new: nothing scored

    full = tmp_path / "full.duckdb"
    ingest_file(full, tmp_path / "lake-full", "pumps", SCHEMA, tmp_path / "b" / "all.csv")
    once = run(full, bundle)
    assert first.scores_written + second.scores_written == once.scores_written
    a, b = scored(inc), scored(full)
    pd.testing.assert_frame_equal(a[0], b[0])
    pd.testing.assert_frame_equal(a[1], b[1])
    assert a[2] == b[2]


def test_a_lake_without_a_model_sensor_is_refused_with_the_difference(tmp_path, small_stream, bundle):
    from monitoring.errors import BundleInputError

    narrow = StreamSchema(sensors=tuple(s for s in SENSORS if s != "flow_rate"), label_columns=("label",))
    small_stream.readings.drop(columns=["flow_rate"]).to_csv(tmp_path / "old.csv", index=False)
    db = tmp_path / "w.duckdb"
    ingest_file(db, tmp_path / "lake", "pumps", narrow, tmp_path / "old.csv")
    with pytest.raises(BundleInputError, match=r"lacks columns \['flow_rate'\] that model pumps-detector v1 needs"):
        run(db, bundle)
