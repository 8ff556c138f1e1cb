import dataclasses

import numpy as np
import pandas as pd
import pytest

from features.synthetic import (
    FAULT_KINDS,
    NOISE_STD,
    SENSORS,
    SyntheticSpec,
    SyntheticStream,
    generate_stream,
)

SPEC = SyntheticSpec(n_assets=2, days=4.0, interval_s=60, seed=3)


@pytest.fixture(scope="module")
def stream() -> SyntheticStream:
    return generate_stream(SPEC)


@pytest.fixture(scope="module")
def clean() -> pd.DataFrame:
    return generate_stream(dataclasses.replace(SPEC, faults_per_kind=0)).readings


def fault_rows(readings: pd.DataFrame, fault) -> pd.Series:
    return ((readings["asset"] == fault.asset) & (readings["timestamp"] >= fault.start)
            & (readings["timestamp"] <= fault.end))


def faults_of(stream: SyntheticStream, kind: str) -> list:
    rows = list(stream.faults[stream.faults["kind"] == kind].itertuples())
    assert rows, f"no {kind} fault generated"
    return rows


def test_readings_have_columns_dtypes_and_a_regular_sorted_grid(stream):
    r = stream.readings
    assert list(r.columns) == ["timestamp", "asset", *SENSORS, "label"]
    assert r["timestamp"].dtype == np.dtype("datetime64[ns]")
    assert pd.api.types.is_string_dtype(r["asset"])
    assert all(r[name].dtype == np.float64 for name in SENSORS)
    assert r["label"].dtype == np.int8
    assert sorted(r["asset"].unique()) == ["pump-01", "pump-02"]
    assert len(r) == 2 * 4 * 24 * 60
    assert r.equals(r.sort_values(["asset", "timestamp"], kind="stable"))
    for _, g in r.groupby("asset"):
        assert g["timestamp"].iloc[0] == pd.Timestamp("2026-01-05T00:00:00")
        assert (g["timestamp"].diff().iloc[1:] == pd.Timedelta(seconds=60)).all()
    assert not r[list(SENSORS)].isna().any().any()


def test_faults_table_has_columns_and_dtypes(stream):
    f = stream.faults
    assert list(f.columns) == ["fault_id", "asset", "kind", "sensors", "start", "end"]
    assert list(f["fault_id"]) == list(range(len(f)))
    assert f["start"].dtype == f["end"].dtype == np.dtype("datetime64[ns]")
    assert f.equals(f.sort_values(["asset", "start"], kind="stable"))
    assert set(",".join(f["sensors"]).split(",")) <= set(SENSORS)


def test_same_seed_gives_identical_frames_and_other_seeds_differ(stream):
    again = generate_stream(SPEC)
    pd.testing.assert_frame_equal(stream.readings, again.readings)
    pd.testing.assert_frame_equal(stream.faults, again.faults)
    other = generate_stream(dataclasses.replace(SPEC, seed=SPEC.seed + 1))
    assert not np.allclose(stream.readings[list(SENSORS)], other.readings[list(SENSORS)])
    assert not stream.faults["start"].equals(other.faults["start"])


def test_every_kind_is_injected_faults_per_kind_times_per_asset():
    spec = dataclasses.replace(SPEC, days=7.0, faults_per_kind=2)
    f = generate_stream(spec).faults
    assert len(f) == spec.n_assets * len(FAULT_KINDS) * spec.faults_per_kind
    counts = f.groupby(["asset", "kind"]).size()
    assert set(counts.index.get_level_values("kind")) == set(FAULT_KINDS)
    assert (counts == 2).all()


def test_faults_start_after_the_clean_part_and_spare_the_final_hour(stream):
    t = stream.readings["timestamp"]
    t0, t1 = t.min(), t.max()
    assert (stream.faults["start"] >= t0 + SPEC.fault_start_fraction * (t1 - t0)).all()
    assert (stream.faults["end"] <= t1 - pd.Timedelta(hours=1)).all()
    assert (stream.faults["end"] >= stream.faults["start"]).all()


def test_faults_of_an_asset_are_at_least_two_hours_apart(stream):
    for _, g in stream.faults.groupby("asset"):
        gaps = g["start"].iloc[1:].to_numpy() - g["end"].iloc[:-1].to_numpy()
        assert (gaps > pd.Timedelta(hours=2)).all()


def test_labels_are_one_exactly_inside_fault_intervals(stream):
    r = stream.readings
    expected = np.zeros(len(r), dtype=np.int8)
    for fault in stream.faults.itertuples():
        expected[fault_rows(r, fault).to_numpy()] = 1
    np.testing.assert_array_equal(r["label"].to_numpy(), expected)


def test_sensors_move_together_as_designed(clean):
    for _, g in clean.groupby("asset"):
        corr = g[list(SENSORS)].corr()
        assert corr.loc["flow_rate", "motor_current"] > 0.9
        assert corr.loc["flow_rate", "discharge_pressure"] < -0.5
        assert corr.loc["flow_rate", "vibration_rms"] > 0.8
        assert corr.loc["motor_current", "motor_temp"] > 0.5


def test_daily_swing_is_many_noise_std_and_flow_peaks_in_daytime(clean):
    for _, g in clean.groupby("asset"):
        hourly = g.groupby(g["timestamp"].dt.hour)[list(SENSORS)].mean()
        swing = (hourly.max() - hourly.min()) / pd.Series(dict(NOISE_STD))
        assert (swing > 8).all(), swing
        assert 8 <= hourly["flow_rate"].idxmax() <= 20


def test_clean_data_equals_faulted_data_outside_fault_intervals(stream, clean):
    r = stream.readings
    outside = r["label"] == 0
    pd.testing.assert_frame_equal(r[outside], clean[outside])
    assert clean["label"].eq(0).all()


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_each_fault_kind_changes_its_sensors_only(stream, clean, kind):
    r = stream.readings
    for fault in faults_of(stream, kind):
        rows = fault_rows(r, fault)
        sensors = fault.sensors.split(",")
        changed = [name for name in SENSORS if not r.loc[rows, name].equals(clean.loc[rows, name])]
        assert changed and set(changed) <= set(sensors)
        if kind == "broken_correlation":
            assert len(sensors) == 2 and len(changed) == 1
        else:
            assert changed == sensors


def test_stuck_sensor_is_constant_and_departs_from_the_truth(stream, clean):
    r = stream.readings
    for fault in faults_of(stream, "stuck"):
        rows, name = fault_rows(r, fault), fault.sensors
        assert rows.sum() >= 120 and r.loc[rows, name].nunique() == 1
        departure = (r.loc[rows, name] - clean.loc[rows, name]).abs().max()
        assert departure > 8 * NOISE_STD[name]


def test_spike_leaves_the_clean_range_of_its_sensor(stream, clean):
    r = stream.readings
    for fault in faults_of(stream, "spike"):
        rows, name = fault_rows(r, fault), fault.sensors
        assert 1 <= rows.sum() <= 3
        normal = clean.loc[clean["asset"] == fault.asset, name]
        values = r.loc[rows, name]
        assert ((values > normal.max()) | (values < normal.min())).all()


@pytest.mark.parametrize("kind, noise_units, spread_units", [
    ("level_shift", (6, 10), (0.8, 1.2)), ("drift", (10, 15), (1.5, 2.0)),
])
def test_shift_and_drift_are_sized_in_noise_and_in_normal_variation(stream, clean, kind, noise_units, spread_units):
    r = stream.readings
    for fault in faults_of(stream, kind):
        rows, name = fault_rows(r, fault), fault.sensors
        offset = (r.loc[rows, name] - clean.loc[rows, name]).abs().max()
        sigma = NOISE_STD[name]
        spread = clean.loc[clean["asset"] == fault.asset, name].std()  # ~ the noise-free std used
        assert offset >= noise_units[0] * sigma - 1e-9
        assert offset >= 0.98 * spread_units[0] * spread
        assert offset <= max(noise_units[1] * sigma, 1.02 * spread_units[1] * spread) + 1e-9


def test_noise_burst_multiplies_the_noise(stream, clean):
    r = stream.readings
    for fault in faults_of(stream, "noise_burst"):
        rows, name = fault_rows(r, fault), fault.sensors
        assert 30 <= rows.sum() <= 90  # minutes, at interval_s=60
        extra = (r.loc[rows, name] - clean.loc[rows, name]).std()
        assert extra > 4 * NOISE_STD[name]


def test_broken_correlation_stays_in_range_but_breaks_the_ratio(stream, clean):
    r = stream.readings
    for fault in faults_of(stream, "broken_correlation"):
        rows = fault_rows(r, fault)
        normal = clean[clean["asset"] == fault.asset]
        for name in fault.sensors.split(","):
            assert r.loc[rows, name].between(normal[name].min(), normal[name].max()).all()
        ratio = (r.loc[rows, "flow_rate"] / r.loc[rows, "motor_current"]).mean()
        clean_ratio = (clean.loc[rows, "flow_rate"] / clean.loc[rows, "motor_current"]).mean()
        assert abs(ratio / clean_ratio - 1) > 0.2


def test_default_spec_generates_three_assets_for_two_weeks():
    s = generate_stream()
    assert len(s.readings) == 3 * 14 * 24 * 60
    assert len(s.faults) == 3 * len(FAULT_KINDS)


@pytest.mark.parametrize("field, value", [
    ("n_assets", 0), ("days", 0), ("interval_s", 0), ("fault_start_fraction", 1.0),
    ("fault_start_fraction", -0.1), ("faults_per_kind", -1), ("seed", -1), ("start", "not a time"),
])
def test_invalid_spec_raises_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"{field}="):
        SyntheticSpec(**{field: value})


def test_spec_too_short_for_its_faults_raises():
    with pytest.raises(ValueError, match="faulted part too short"):
        SyntheticSpec(days=2.0, fault_start_fraction=0.5)
    SyntheticSpec(days=2.0, faults_per_kind=0)  # no faults, no constraint
