"""Incremental scoring: two runs over data that arrives in two parts write exactly what
one run over all of it writes."""
import pandas as pd
import pytest

from features.readers import StreamSchema
from features.synthetic import SENSORS
from features.windows import WindowSpec
from monitoring.alerting.scoring import score_stream
from monitoring.models.fitting import train_bundle
from monitoring.store.connection import Warehouse, connect
from monitoring.store.ingestion import ingest_file
from monitoring.store.results import get_rescore_ranges, get_watermarks, read_anomalies

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
    with connect(db) as con:
        return (con.execute("SELECT asset, window_start, window_end, score FROM scores ORDER BY ALL").df(),
                con.execute("SELECT asset, window_start FROM anomalies ORDER BY ALL").df(),
                get_watermarks(con, "pumps"))


def test_two_incremental_runs_equal_one_full_run(tmp_path, small_stream, bundle):
    frame = small_stream.readings
    cut = frame["timestamp"].min() + pd.Timedelta(hours=37, minutes=13)
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    frame[frame["timestamp"] < cut].to_csv(tmp_path / "a" / "early.csv", index=False)
    frame[frame["timestamp"] >= cut].to_csv(tmp_path / "a" / "late.csv", index=False)
    frame.to_csv(tmp_path / "b" / "all.csv", index=False)

    inc = Warehouse.at(tmp_path / "inc")
    ingest_file(inc, "pumps", SCHEMA, tmp_path / "a" / "early.csv")
    first = run(inc, bundle)
    marks = scored(inc)[2]
    assert all(mark < cut for mark in marks.values())
    ingest_file(inc, "pumps", SCHEMA, tmp_path / "a" / "late.csv")
    second = run(inc, bundle)
    assert second.windows_scored > 0 and second.scores_written == second.windows_scored
    assert run(inc, bundle).windows_scored == 0  # nothing new: nothing scored

    full = Warehouse.at(tmp_path / "full")
    ingest_file(full, "pumps", SCHEMA, tmp_path / "b" / "all.csv")
    once = run(full, bundle)
    assert first.scores_written + second.scores_written == once.scores_written
    a, b = scored(inc), scored(full)
    pd.testing.assert_frame_equal(a[0], b[0])
    pd.testing.assert_frame_equal(a[1], b[1])
    assert a[2] == b[2]


def test_until_scores_only_what_had_arrived_by_then(tmp_path, small_stream, bundle):
    """A replay in data time: runs bounded by `until` write what runs over the data as it
    arrived would write, and together what one full run writes."""
    frame = small_stream.readings
    cut = frame["timestamp"].min() + pd.Timedelta(hours=37, minutes=13)
    frame.to_csv(tmp_path / "all.csv", index=False)
    db = Warehouse.at(tmp_path / "w")
    ingest_file(db, "pumps", SCHEMA, tmp_path / "all.csv")
    first = run(db, bundle, until=cut)
    marks = scored(db)[2]
    assert first.windows_scored > 0 and all(mark <= cut for mark in marks.values())
    assert scored(db)[0]["window_end"].max() <= cut
    second = run(db, bundle)
    full = Warehouse.at(tmp_path / "full")
    ingest_file(full, "pumps", SCHEMA, tmp_path / "all.csv")
    assert first.scores_written + second.scores_written == run(full, bundle).scores_written
    pd.testing.assert_frame_equal(scored(db)[0], scored(full)[0])


def test_a_lake_without_a_model_sensor_is_refused_with_the_difference(tmp_path, small_stream, bundle):
    from monitoring.errors import BundleInputError

    narrow = StreamSchema(sensors=tuple(s for s in SENSORS if s != "flow_rate"), label_columns=("label",))
    small_stream.readings.drop(columns=["flow_rate"]).to_csv(tmp_path / "old.csv", index=False)
    db = Warehouse.at(tmp_path / "w")
    ingest_file(db, "pumps", narrow, tmp_path / "old.csv")
    with pytest.raises(BundleInputError, match=r"lacks columns \['flow_rate'\] that model pumps-detector v1 needs"):
        run(db, bundle)


def test_excluded_windows_are_scored_but_never_flagged(tmp_path, small_stream, bundle):
    from features.exclusions import Exclusions
    from monitoring.alerting.incidents import merge_incidents

    small_stream.readings.to_csv(tmp_path / "all.csv", index=False)
    plain, excl = Warehouse.at(tmp_path / "plain"), Warehouse.at(tmp_path / "excl")
    for db in (plain, excl):
        ingest_file(db, "pumps", SCHEMA, tmp_path / "all.csv")
    run(plain, bundle)
    flagged = scored(plain)[1]
    assert len(flagged) > 0
    # exclude everything around the first flagged window of each asset by a machine-off rule and an interval
    first = flagged.groupby("asset")["window_start"].min()
    interval_asset, interval_start = first.index[0], first.iloc[0]
    from features.exclusions import ExclusionInterval
    exclusions = Exclusions.parse(
        ["motor_current < -1e9"],  # a rule that matches nothing: rules are parsed and applied
        [ExclusionInterval(interval_start - pd.Timedelta(hours=6), interval_start + pd.Timedelta(hours=6),
                           asset=interval_asset)],
    )
    run(excl, bundle, exclusions=exclusions)
    with connect(excl) as con:
        rows = con.execute("SELECT asset, window_start, window_end, is_anomaly, excluded FROM scores").df()
        anomalies = read_anomalies(con, "pumps")
    inside = (rows["asset"] == interval_asset) & (rows["window_end"] >= interval_start - pd.Timedelta(hours=6)) & (
        rows["window_start"] <= interval_start + pd.Timedelta(hours=6))
    assert inside.any() and rows.loc[inside, "excluded"].all() and not rows.loc[~inside, "excluded"].any()
    assert not rows.loc[inside, "is_anomaly"].any()
    assert len(rows) == len(scored(plain)[0])  # scored all the same
    hit = (anomalies["asset"] == interval_asset) & (anomalies["window_start"] == interval_start)
    assert not hit.any()
    assert len(merge_incidents(anomalies)) <= len(merge_incidents(scored_anomalies(plain)))


def scored_anomalies(db):
    with connect(db) as con:
        return read_anomalies(con, "pumps")


def test_rows_older_than_the_watermark_are_accepted_and_rescored(tmp_path, small_stream, bundle):
    frame = small_stream.readings
    asset = frame["asset"].iloc[0]
    one = frame[frame["asset"] == asset]
    hole = (one["timestamp"] >= one["timestamp"].iloc[300]) & (one["timestamp"] < one["timestamp"].iloc[360])
    (tmp_path / "a").mkdir()
    one[~hole].to_csv(tmp_path / "a" / "first.csv", index=False)
    one[hole].to_csv(tmp_path / "a" / "late.csv", index=False)
    db = Warehouse.at(tmp_path / "w")
    ingest_file(db, "pumps", SCHEMA, tmp_path / "a" / "first.csv")
    run(db, bundle)
    before = scored(db)[0]
    late = ingest_file(db, "pumps", SCHEMA, tmp_path / "a" / "late.csv")
    assert (late.status, late.rows_accepted, late.rows_late) == ("ok", 60, 60)
    with connect(db) as con:
        ranges = get_rescore_ranges(con, "pumps")
    assert ranges["start"].tolist() == [one["timestamp"].iloc[300]]
    second = run(db, bundle)
    assert second.scores_written > 0
    after = scored(db)[0]
    new = after.merge(before, how="left", indicator=True, on=["asset", "window_start", "window_end"])
    filled = new[new["_merge"] == "left_only"]
    assert len(filled) > 0 and (filled["window_start"] < one["timestamp"].iloc[360]).all()
    with connect(db) as con:
        assert get_rescore_ranges(con, "pumps").empty
    # the result equals one run over the complete file
    full = Warehouse.at(tmp_path / "full")
    one.to_csv(tmp_path / "all.csv", index=False)
    ingest_file(full, "pumps", SCHEMA, tmp_path / "all.csv")
    run(full, bundle)
    pd.testing.assert_frame_equal(after, scored(full)[0], check_exact=False, rtol=1e-6)
