"""Adaptive alarms: a window above its threshold is flagged only when it also stands out
from its asset's own score history; the rule is causal, incremental runs equal one run,
and the store carries the history between runs, as sums a run reads on from."""
import re

import numpy as np
import pandas as pd
import pytest

from features.readers import StreamSchema
from features.synthetic import SENSORS
from features.windows import WindowSpec
from monitoring.alerting import scoring
from monitoring.alerting.adaptive import AlarmRule, AlarmRuleError, History, adaptive_mask, log_scores
from monitoring.alerting.scoring import score_stream
from monitoring.errors import BenchSettingError
from monitoring.evaluation.benchmarks import BenchSettings, with_assignments
from monitoring.models.fitting import train_bundle
from monitoring.store.connection import Warehouse, connect
from monitoring.store.ingestion import ingest_file
from monitoring.store.results import read_scores, score_history, score_history_from, watermarks_and_sums
from monitoring.store.schema import SCHEMA_VERSION, schema_version

SPEC = WindowSpec(size=20, stride=7)
SCHEMA = StreamSchema(sensors=tuple(SENSORS), label_columns=("label",))


def naive(scores, rule: AlarmRule) -> np.ndarray:
    """The rule's definition, window by window."""
    x = np.log(np.maximum(np.asarray(scores, dtype=float), 1e-12))
    k, out = rule.short_windows, np.zeros(len(x), dtype=bool)
    for i in range(len(x)):
        base, short = x[:max(i - k + 1, 0)], x[max(i - k + 1, 0):i + 1]
        if len(base) < rule.min_windows:
            continue
        sd = base.std(ddof=1)
        out[i] = short.mean() > base.mean() if sd == 0 else (short.mean() - base.mean()) / sd > rule.z
    return out


def bursty(n=1200, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    s = np.exp(rng.normal(size=n) * 0.3)
    s[600:605] *= 20  # a short burst
    s[900:] *= 1.5  # a lasting shift: stands out at first, then becomes the history
    return s


@pytest.mark.parametrize("rule", [AlarmRule("adaptive"), AlarmRule("adaptive", 1, 3.0, 50),
                                  AlarmRule("adaptive", 10, 2.0, 200)])
def test_the_mask_is_the_rule_window_by_window(rule):
    s = bursty()
    got = adaptive_mask(s, rule)
    np.testing.assert_array_equal(got, naive(s, rule))
    assert got[600:605].any() and not got[:rule.min_windows].any()
    assert got[900:].sum() < 100  # a lasting shift is absorbed, not flagged to the end


def test_a_constant_history_flags_any_rise_and_nothing_else():
    s = np.ones(300)
    s[250] = 1.01
    got = adaptive_mask(s, AlarmRule("adaptive", 1, 2.5, 100))
    assert list(np.flatnonzero(got)) == [250]


@pytest.mark.parametrize("cuts", [(1,), (50, 51, 700), (2, 3, 4, 1199)])
def test_chunks_with_their_history_equal_one_pass(cuts):
    rule, s = AlarmRule("adaptive"), bursty(seed=1)
    whole = adaptive_mask(s, rule)
    x, k, parts = log_scores(s), rule.short_windows, []
    for a, b in zip((0, *cuts), (*cuts, len(s)), strict=True):
        base, recent = x[:max(a - k + 1, 0)], x[max(a - k + 1, 0):a]
        parts.append(adaptive_mask(s[a:b], rule, History(len(base), base.sum(), (base ** 2).sum(), recent)))
    np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_a_history_longer_than_the_short_stretch_is_refused():
    with pytest.raises(ValueError, match="short_windows - 1"):
        adaptive_mask(np.ones(5), AlarmRule("adaptive", 3), History(10, 0.0, 0.0, np.zeros(3)))


@pytest.mark.parametrize("kwargs, named", [({"mode": "likely"}, "mode"), ({"short_windows": 0}, "short_windows"),
                                           ({"z": float("nan")}, "z"), ({"min_windows": 1}, "min_windows")])
def test_bad_rules_are_refused_by_name(kwargs, named):
    with pytest.raises(AlarmRuleError, match=f"^{named}:"):
        AlarmRule(**kwargs)


@pytest.fixture(scope="module")
def bundle(small_stream):
    return train_bundle(small_stream.readings, stream="pumps", sensors=list(SENSORS), spec=SPEC,
                        detector_params={"epochs": 3, "hidden": (32,), "latent": 4, "n_threads": 1},
                        label_columns=["label"]).bundle


def run(db, bundle, version=1, **kwargs):
    return score_stream(db, "pumps", bundle.score_readings, bundle.spec, bundle.input_columns(),
                        "pumps-detector", version, **kwargs)


def stored(db) -> pd.DataFrame:
    with connect(db) as con:
        return con.execute("SELECT asset, window_start, window_end, score, threshold, is_anomaly FROM scores "
                           "ORDER BY asset, window_end").df()


@pytest.fixture(scope="module")
def lake(tmp_path_factory, small_stream):
    folder = tmp_path_factory.mktemp("adaptive")
    small_stream.readings.to_csv(folder / "all.csv", index=False)
    return folder / "all.csv"


def test_stored_flags_are_the_threshold_and_the_rule_over_each_assets_history(tmp_path, lake, bundle):
    plain, adaptive = Warehouse.at(tmp_path / "plain"), Warehouse.at(tmp_path / "adaptive")
    rule = AlarmRule("adaptive", 3, 1.5, 20)
    for db in (plain, adaptive):
        ingest_file(db, "pumps", SCHEMA, lake)
    run(plain, bundle)
    run(adaptive, bundle, alarm=rule)
    a, b = stored(plain), stored(adaptive)
    pd.testing.assert_frame_equal(a.drop(columns="is_anomaly"), b.drop(columns="is_anomaly"))  # same scores
    expected = np.concatenate([
        (part["score"] > part["threshold"]).to_numpy()
        & adaptive_mask(part["score"].to_numpy(), rule, thresholds=part["threshold"].to_numpy())
        for _, part in a.groupby("asset", sort=True)])
    np.testing.assert_array_equal(b["is_anomaly"].to_numpy(), expected)
    assert 0 < b["is_anomaly"].sum() < a["is_anomaly"].sum()  # the rule keeps some flags, clears others


def test_incremental_runs_carry_the_history_and_equal_one_run(tmp_path, lake, bundle, small_stream):
    rule = AlarmRule("adaptive", 3, 1.5, 20)
    start = small_stream.readings["timestamp"].min()
    one, inc = Warehouse.at(tmp_path / "one"), Warehouse.at(tmp_path / "inc")
    for db in (one, inc):
        ingest_file(db, "pumps", SCHEMA, lake)
    run(one, bundle, alarm=rule)
    for hours in (5, 23, 37):
        run(inc, bundle, alarm=rule, until=start + pd.Timedelta(hours=hours))
    run(inc, bundle, alarm=rule)
    pd.testing.assert_frame_equal(stored(inc), stored(one))


def test_the_history_is_per_asset_and_model_and_ends_before_the_cutoff(tmp_path, lake, bundle):
    db = Warehouse.at(tmp_path / "w")
    ingest_file(db, "pumps", SCHEMA, lake)
    run(db, bundle)
    with connect(db) as con:
        asset = sorted(stored(db)["asset"].unique())[0]
        scores = read_scores(con, "pumps", "pumps-detector", 1, asset)
        cutoff = pd.Timestamp(scores["window_end"].iloc[60])
        got = score_history(con, "pumps", "pumps-detector", {asset: cutoff}, 2)
        other = score_history(con, "pumps", "other-detector", {asset: cutoff}, 2)
    x = log_scores(scores["score"].to_numpy()[:60], scores["threshold"].to_numpy()[:60])
    n, total, total_sq, recent, _ = got[asset]
    assert n == 58 and recent == pytest.approx(list(x[58:]))
    assert (total, total_sq) == (pytest.approx(x[:58].sum()), pytest.approx((x[:58] ** 2).sum()))
    assert other == {}


def test_a_new_version_continues_the_history_of_the_windows_latest_scoring(tmp_path, lake, bundle, small_stream):
    """After a retrain the new version's windows are judged against the asset's history
    (the windows' latest scoring, on the severity's scale), not from nothing."""
    rule = AlarmRule("adaptive", 3, 1.5, 20)
    cut = small_stream.readings["timestamp"].min() + pd.Timedelta(hours=30)
    one, two = Warehouse.at(tmp_path / "one"), Warehouse.at(tmp_path / "two")
    for db in (one, two):
        ingest_file(db, "pumps", SCHEMA, lake)
    run(one, bundle, alarm=rule)
    run(two, bundle, alarm=rule, until=cut)
    run(two, bundle, version=2, alarm=rule)  # the same network as version 2: the same flags
    a, b = stored(one), stored(two)
    pd.testing.assert_frame_equal(a, b)
    with connect(two) as con:
        versions = con.execute("SELECT DISTINCT model_version FROM scores ORDER BY 1").fetchall()
    assert versions == [(1,), (2,)]


def test_the_nab_bench_alarms_adaptively_and_a_setting_switches_it_back():
    assert BenchSettings.for_dataset("nab").alarm == AlarmRule("adaptive")
    assert BenchSettings.for_dataset("skab").alarm == AlarmRule()
    settings = with_assignments(BenchSettings.for_dataset("nab"), ["alarm.mode=threshold", "alarm.z=3"])
    assert settings.alarm == AlarmRule("threshold", z=3.0)
    with pytest.raises(BenchSettingError, match=re.escape("alarm.<mode|short_windows|z|min_windows>")):
        with_assignments(settings, ["alarm.level=2"])
    with pytest.raises(BenchSettingError, match="short_windows"):
        with_assignments(settings, ["alarm.short_windows=0"])


def history_sums(db) -> pd.DataFrame:
    with connect(db) as con:
        return con.execute("SELECT asset, sums_model, sums_before, sums_cutoff, sums_count FROM watermarks "
                           "ORDER BY asset").df()


def histories(db, model="pumps-detector", recent=2):
    """(every window read, from the stored sums on) for cutoffs just after each watermark."""
    with connect(db) as con:
        marks, sums = watermarks_and_sums(con, "pumps")
        cutoffs = {a: m + pd.Timedelta(minutes=1) for a, m in marks.items()}
        return (score_history(con, "pumps", model, cutoffs, recent),
                score_history_from(con, "pumps", model, cutoffs, recent, sums)[0])


def same_history(db, recent=2):
    """histories(db), checked equal: the sums stand for the windows they sum."""
    full, fast = histories(db, recent=recent)
    assert full.keys() == fast.keys() and len(full) == 2
    for asset, want in full.items():
        got = fast[asset]
        assert (got.n, got.recent) == (want.n, pytest.approx(want.recent))
        assert (got.total, got.total_sq) == (pytest.approx(want.total), pytest.approx(want.total_sq))
    return full, fast


def test_a_run_stores_its_history_as_sums_and_the_next_reads_only_the_windows_after_them(
        tmp_path, lake, bundle, small_stream):
    rule = AlarmRule("adaptive", 3, 1.5, 20)
    db = Warehouse.at(tmp_path / "w")
    ingest_file(db, "pumps", SCHEMA, lake)
    start = small_stream.readings["timestamp"].min()
    run(db, bundle, alarm=rule, until=start + pd.Timedelta(hours=30))
    first = history_sums(db)  # the run's own windows, but the latest two, which the next run reads
    assert (first["sums_model"] == "pumps-detector").all() and (first["sums_count"] > 100).all()
    same_history(db)
    run(db, bundle, alarm=rule, until=start + pd.Timedelta(hours=60))
    sums = history_sums(db)
    assert (sums["sums_count"] > first["sums_count"]).all() and (sums["sums_before"] > first["sums_before"]).all()
    full, fast = same_history(db)
    # the windows the sums stand for are not read again: scores changed in place under them move
    # the history read in full, not the one read from the sums
    with connect(db, write=True) as con:
        con.execute("UPDATE scores SET score = score * 10 WHERE window_start < ?",
                    [sums["sums_before"].min().to_pydatetime()])
    moved, same = histories(db)
    assert all(moved[a].total > full[a].total + 1 for a in full)
    assert all(same[a] == fast[a] for a in fast)
    _, other = histories(db, "other-detector")  # sums are of one model
    assert other == {}


def test_late_readings_clear_the_sums_and_every_run_flags_as_one_that_reads_everything(
        tmp_path, small_stream, bundle, monkeypatch):
    rule = AlarmRule("adaptive", 3, 1.5, 20)
    frame = small_stream.readings
    first = frame["asset"].iloc[0]
    t0 = frame["timestamp"].min()
    late = (frame["asset"] == first) & (frame["timestamp"] >= t0 + pd.Timedelta(hours=40)) \
        & (frame["timestamp"] < t0 + pd.Timedelta(hours=41))
    tail = frame["timestamp"] >= t0 + pd.Timedelta(hours=80)
    for name, part in (("early", ~late & ~tail), ("late", late), ("tail", tail)):
        frame[part].to_csv(tmp_path / f"{name}.csv", index=False)
    with_sums, without = Warehouse.at(tmp_path / "sums"), Warehouse.at(tmp_path / "none")

    def scenario(db) -> list[pd.DataFrame]:
        ingest_file(db, "pumps", SCHEMA, tmp_path / "early.csv")
        for hours in (25, 50, 79):
            run(db, bundle, alarm=rule, until=t0 + pd.Timedelta(hours=hours))
        seen = [history_sums(db)]
        assert ingest_file(db, "pumps", SCHEMA, tmp_path / "late.csv").rows_late == 60
        run(db, bundle, alarm=rule)  # scores the windows over the late hour
        seen.append(history_sums(db))
        same_history(db)  # sums left standing would miss the late hour's windows
        ingest_file(db, "pumps", SCHEMA, tmp_path / "tail.csv")
        run(db, bundle, alarm=rule)
        same_history(db)
        return [*seen, history_sums(db), stored(db)]

    sums_before, sums_late, sums_after, flags = scenario(with_sums)
    assert sums_before["sums_model"].notna().all()
    # the late hour's windows start before the first asset's sums: cleared; the other's kept
    assert sums_late.set_index("asset")["sums_model"].isna().to_dict() == {first: True, frame["asset"].iloc[-1]: False}
    assert sums_after["sums_model"].notna().all()  # the next run sums the whole history again
    real = scoring.watermarks_and_sums
    monkeypatch.setattr(scoring, "watermarks_and_sums", lambda con, stream: (real(con, stream)[0], {}))
    *_, reference = scenario(without)  # every run reads every window
    pd.testing.assert_frame_equal(flags, reference)
    assert flags["is_anomaly"].sum() > 0


def test_a_catalog_before_the_sums_gains_them_and_keeps_its_watermarks(tmp_path):
    from tests.conftest import make_v2_catalog

    db = Warehouse.at(tmp_path / "w")
    make_v2_catalog(db, "INSERT INTO watermarks (stream, asset, last_window_end, model_version) "
                        "VALUES ('pumps', 'pump-01', '2026-01-02 00:00:00', 3)")
    with connect(db) as con:
        assert schema_version(con) == SCHEMA_VERSION == 4
        marks, sums = watermarks_and_sums(con, "pumps")
    assert marks == {"pump-01": pd.Timestamp("2026-01-02")} and sums == {}


def test_runs_with_fewer_windows_than_the_short_stretch_keep_the_sums_and_flag_as_one_run(
        tmp_path, lake, bundle, small_stream):
    rule = AlarmRule("adaptive", 10, 1.5, 20)  # 9 windows held back; a half-hour run scores about 4
    start = small_stream.readings["timestamp"].min()
    one, inc = Warehouse.at(tmp_path / "one"), Warehouse.at(tmp_path / "inc")
    for db in (one, inc):
        ingest_file(db, "pumps", SCHEMA, lake)
    run(one, bundle, alarm=rule)
    run(inc, bundle, alarm=rule, until=start + pd.Timedelta(hours=30))
    first = history_sums(inc)
    for half_hours in range(61, 67):
        run(inc, bundle, alarm=rule, until=start + pd.Timedelta(minutes=30 * half_hours))
        same_history(inc, recent=9)
    assert (history_sums(inc)["sums_before"] >= first["sums_before"]).all()
    run(inc, bundle, alarm=rule)
    pd.testing.assert_frame_equal(stored(inc), stored(one))
