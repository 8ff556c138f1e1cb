"""SKAB and NAB importers on a few real files of ../shared/data, read in place."""
import re
from pathlib import Path

import pandas as pd
import pytest

from features.importers import SKAB_SENSORS, DataSetError, nab_windows, skab_files
from monitoring.store.connection import Warehouse, connect
from monitoring.store.datasets import import_file
from monitoring.store.readings import list_assets, read_readings

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
SKAB, NAB = DATA / "skab", DATA / "nab"


def test_skab_files_become_assets_with_labels(tmp_path):
    db = Warehouse.at(tmp_path / "w")
    raw = pd.read_csv(SKAB / "valve1" / "0.csv", sep=";")
    result = import_file(db, "skab", SKAB / "valve1" / "0.csv")
    free = import_file(db, "skab", SKAB / "anomaly-free" / "anomaly-free.csv")
    assert (result.status, result.rows_in, result.rows_accepted, result.rows_quarantined) == (
        "ok", len(raw), len(raw), 0)
    assert free.status == "ok" and free.rows_accepted == 9405
    with connect(db) as con:
        frame = read_readings(con, "skab", asset="valve1-0")
        assert list_assets(con, "skab") == ["anomaly-free", "valve1-0"]
        assert con.execute("SELECT sum(anomaly) FROM lake.skab WHERE asset = 'anomaly-free'").fetchall() == [(0,)]
    assert list(frame.columns) == ["timestamp", "asset", *SKAB_SENSORS, "anomaly", "changepoint"]
    assert int(frame["anomaly"].sum()) == int(raw["anomaly"].sum())
    assert int(frame["changepoint"].sum()) == int(raw["changepoint"].sum())
    assert frame["VolumeFlowRateRMS"].tolist() == raw["Volume Flow RateRMS"].tolist()
    assert frame["timestamp"].iloc[0] == pd.Timestamp(raw["datetime"].iloc[0])
    # the same file again, even from another path, adds nothing
    assert import_file(db, "skab", SKAB / "valve1" / ".." / "valve1" / "0.csv").status == "skipped"


def test_nab_windows_become_labels_and_repeated_timestamps_are_quarantined(tmp_path):
    db = Warehouse.at(tmp_path / "w")
    name = "ec2_request_latency_system_failure.csv"
    raw = pd.read_csv(NAB / name, parse_dates=["timestamp"])
    result = import_file(db, "nab", NAB / name)
    n_repeated = int(raw.duplicated("timestamp").sum())
    assert n_repeated == 11  # as the data set's README says
    assert (result.rows_in, result.rows_accepted, result.rows_quarantined, result.rows_duplicate) == \
        (len(raw), len(raw) - 11, 11, 11)
    windows = nab_windows(NAB, name)
    assert len(windows) == 3
    with connect(db) as con:
        frame = read_readings(con, "nab")
    inside = pd.Series(False, index=frame.index)
    for w in windows.itertuples():
        inside |= frame["timestamp"].between(w.start, w.end)
    assert (frame["label"] == inside.astype("int8")).all() and inside.sum() > 0
    assert frame["asset"].unique().tolist() == ["ec2_request_latency_system_failure"]


def test_nab_step_back_in_time_is_sorted(tmp_path):
    result = import_file(Warehouse.at(tmp_path / "w"), "nab",
                         NAB / "machine_temperature_system_failure.csv")
    assert result.status == "ok" and result.rows_out_of_order > 0
    assert result.rows_in == result.rows_accepted + result.rows_quarantined == 22695
    with connect(Warehouse.at(tmp_path / "w")) as con:
        ts = read_readings(con, "nab")["timestamp"]
    assert ts.is_monotonic_increasing and ts.is_unique


def test_layout_errors_are_named(tmp_path):
    with pytest.raises(DataSetError, match="no SKAB files"):
        skab_files(tmp_path)
    with pytest.raises(DataSetError, match=re.escape("windows.json: missing")):
        nab_windows(tmp_path, "x.csv")
    (tmp_path / "windows.json").write_text('[["2026-01-01", "2026-01-02"]]')
    with pytest.raises(DataSetError, match="expected an object mapping file names"):
        nab_windows(tmp_path, "x.csv")
    (tmp_path / "windows.json").write_text('{"cat/x.csv": [["2026-01-01", "not a time"]]}')
    with pytest.raises(DataSetError, match=r"the windows of x.csv must be \[start, end\] pairs"):
        nab_windows(tmp_path, "x.csv")
    assert [a for _, a in skab_files(SKAB)][:3] == ["anomaly-free", "valve1-0", "valve1-1"]


def test_split_rows_keeps_every_row_in_order_and_each_part_imports_as_an_asset(tmp_path):
    from features.importers import skab_asset, split_rows

    source = SKAB / "anomaly-free" / "anomaly-free.csv"
    parts = split_rows(source, 2000, tmp_path / "anomaly-free")
    # 9,405 rows: three parts of 2,000, and the last 1,405 join the fourth (no part shorter than asked)
    sizes = [len(pd.read_csv(p, sep=";")) for p in parts]
    assert sizes == [2000, 2000, 2000, 3405]
    joined = pd.concat([pd.read_csv(p, sep=";") for p in parts], ignore_index=True)
    pd.testing.assert_frame_equal(joined, pd.read_csv(source, sep=";"))
    assert [skab_asset(p) for p in parts] == [f"anomaly-free-{i}" for i in range(4)]
    db = Warehouse.at(tmp_path / "w")
    results = [import_file(db, "skab", p) for p in parts]
    assert [r.rows_accepted for r in results] == sizes
    with connect(db) as con:
        assert list_assets(con, "skab") == [f"anomaly-free-{i}" for i in range(4)]
    # a file shorter than one part is one part; nonsense sizes are refused
    assert len(split_rows(source, 20000, tmp_path / "one")) == 1
    with pytest.raises(ValueError, match="rows: 0"):
        split_rows(source, 0, tmp_path / "none")
    header_only = tmp_path / "empty.csv"
    header_only.write_text("datetime;Current\n")
    with pytest.raises(DataSetError, match=r"empty\.csv: no data rows"):
        split_rows(header_only, 10, tmp_path / "e")
