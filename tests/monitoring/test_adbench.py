"""The ADBench benchmark end to end on two small sets made from aemon's own synthetic records
(ADBench's .npz layout in tmp_path): real ingest into the lake, training, scoring into DuckDB,
the metrics, ranks and the out-of-fold choice."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.importers import DataSetError, adbench_files, adbench_split, load_adbench
from features.synthetic_records import RECORD_FEATURES, generate_records
from flows.baselines import make_baseline
from monitoring.errors import BenchSettingError
from monitoring.evaluation.adbench import AdbenchSettings, choose_out_of_fold, comparisons, ranks, run_adbench
from monitoring.store.connection import Warehouse, connect

FAST = {**AdbenchSettings().detector_params, "epochs": 20}


class DistanceToMean:
    """A classic detector in PyOD's shape without PyOD: the distance to the training mean."""

    def fit(self, X):
        self.mean_ = X.mean(axis=0)
        self.threshold_ = float(np.quantile(self.decision_function(X), 0.9))
        return self

    def decision_function(self, X):
        return np.linalg.norm(X - self.mean_, axis=1)


def write_set(path: Path, n: int, fraction: float, seed: int) -> None:
    records = generate_records(n, fraction, seed)
    np.savez(path, X=records[list(RECORD_FEATURES)].to_numpy(), y=records["label"].to_numpy())


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("adbench")
    write_set(root / "1_pumps.npz", 1200, 0.05, 1)
    write_set(root / "2_valves.npz", 800, 0.10, 2)
    return root


@pytest.fixture(scope="module")
def result(sets, tmp_path_factory):
    work = tmp_path_factory.mktemp("work")
    settings = AdbenchSettings(kinds=("mlp_ae", "cnn_ae"), baselines=("distance",), seeds=(0,),
                               detector_params=FAST)
    return run_adbench(sets, settings, work_dir=work, baselines={"distance": lambda seed: DistanceToMean()}), work


def test_every_record_goes_through_the_ingest_and_the_scoring(result):
    res, work = result
    assert set(res.rows["set"]) == {"1_pumps", "2_valves"} and set(res.rows["fit"]) == {"normal", "unsupervised"}
    with connect(Warehouse.at(work)) as con:
        lake = con.execute('SELECT count(*) FROM lake."adbench-1_pumps"').fetchone()[0]
        scored = con.execute("SELECT model_name, count(*) FROM scores WHERE stream = 'adbench-1_pumps' "
                             "GROUP BY ALL ORDER BY ALL").fetchall()
    assert lake == 1200
    assert scored == [(f"bench-{k}-{f}", 1200) for k in ("cnn_ae", "mlp_ae") for f in ("normal", "unsupervised")]


def test_the_split_is_stratified_70_30(result):
    rows = result[0].rows
    pumps = rows[rows["set"] == "1_pumps"].iloc[0]
    assert (pumps["n_train"], pumps["n_test"]) == (840, 360)  # 60 anomalies: 18 tested; 1140 normal: 342


def test_detectors_find_the_synthetic_anomalies_and_f1_stays_below_its_ceiling(result):
    rows = result[0].rows
    normal = rows[(rows["fit"] == "normal") & (rows["family"] == "aemon")]
    # the MLP learns the flow-current relation from a few hundred records in 20 epochs; the CNN
    # (features as channels of length 1) more slowly
    assert (normal.loc[normal["detector"] == "mlp_ae", "roc_auc"] >= 0.95).all(), normal
    assert (normal["roc_auc"] >= 0.7).all(), normal[["set", "detector", "roc_auc"]]
    assert (rows.loc[rows["family"] == "aemon", "pr_auc"] > 0.3).all()
    assert (rows["f1"] <= rows["best_f1"] + 1e-12).all() and (rows["best_f1"] <= 1).all()
    assert {f"f1_p{q}" for q in ("90", "95", "97.5", "99", "99.5")} <= set(rows.columns)


def test_summary_ranks_and_tests(result):
    res = result[0]
    summary = res.summary("normal")
    assert list(summary.index) == ["mlp_ae", "cnn_ae", "distance"]
    assert summary["rank"].between(1, 3).all() and summary["rank"].sum() == pytest.approx(6)
    per_set = res.per_set("normal")
    assert per_set.shape == (2, 3)
    # the baseline saw the same records: its flags come from its own threshold, its F1 below its ceiling
    distance = res.rows[res.rows["detector"] == "distance"]
    assert (distance["f1"] <= distance["best_f1"]).all() and (distance["roc_auc"] > 0.5).all()
    assert summary.loc["cnn_ae", "roc_auc"] == pytest.approx(per_set["cnn_ae"].mean())


def test_ranks_share_ties_and_wilcoxon_compares_each_kind():
    per_set = pd.DataFrame({"a": [0.9, 0.8, 0.7, 0.95, 0.85, 0.9], "b": [0.8, 0.8, 0.6, 0.9, 0.8, 0.7],
                            "c": [0.7, 0.6, 0.5, 0.8, 0.7, 0.6]})
    assert ranks(per_set).iloc[1].tolist() == [1.5, 1.5, 3.0]
    friedman, tests = comparisons(per_set, ["a"])
    assert friedman < 0.05
    against_c = tests[tests["against"] == "c"].iloc[0]
    assert against_c["median_diff"] == pytest.approx(0.2) and against_c["p"] == pytest.approx(0.03125)
    assert against_c["p_holm"] >= against_c["p"]


def test_out_of_fold_choice_never_sees_the_set_it_reports():
    # "x" wins on average only because of set s0; on every other set "y" is better
    scores = pd.DataFrame({"x": [1.0, 0.5, 0.5, 0.5], "y": [0.2, 0.6, 0.6, 0.6]}, index=["s0", "s1", "s2", "s3"])
    chosen = choose_out_of_fold(scores, folds=4)
    assert chosen.loc["s0", "chosen"] == "y" and chosen.loc["s0", "value"] == pytest.approx(0.2)
    assert chosen.loc["s1", "chosen"] == "x"  # without s1, x's s0 still carries it
    with pytest.raises(BenchSettingError, match="folds=5"):
        choose_out_of_fold(scores, folds=5)


def test_adbench_inputs_are_checked(tmp_path, sets):
    np.savez(tmp_path / "3_bad.npz", X=np.ones((4, 2)), y=np.array([0, 1, 2, 0]))
    with pytest.raises(DataSetError, match=r"3_bad.npz: y has values other than 0 and 1: \[2\]"):
        load_adbench(tmp_path / "3_bad.npz")
    np.savez(tmp_path / "4_bad.npz", X=np.ones((4, 2)))
    with pytest.raises(DataSetError, match=r"arrays \['y'\] missing"):
        load_adbench(tmp_path / "4_bad.npz")
    with pytest.raises(DataSetError, match="no ADBench set 'cardio'"):
        adbench_files(sets, ["cardio"])
    assert [name for _, name in adbench_files(sets, ["valves"])] == ["2_valves"]
    with pytest.raises(BenchSettingError, match="baseline 'SVM'"):
        make_baseline("SVM", 0)
    with pytest.raises(BenchSettingError, match="fits"):
        AdbenchSettings(fits=("semi",), baselines=()).validate()
    with pytest.raises(BenchSettingError, match=r"baselines \['KNN'\] named in the settings but not given"):
        run_adbench(sets, AdbenchSettings(kinds=("mlp_ae",), baselines=("KNN",)))


def test_split_keeps_each_class_share():
    y = np.r_[np.zeros(90, bool), np.ones(10, bool)]
    train, test = adbench_split(y, seed=3)
    assert len(test) == 30 and y[test].sum() == 3 and len(np.intersect1d(train, test)) == 0
    assert sorted(np.r_[train, test]) == list(range(100))
    assert not np.array_equal(adbench_split(y, seed=4)[1], test)


def test_cli_prints_one_json_line_per_detector_and_logs_to_mlflow(sets, tmp_path, monkeypatch):
    from flows.cli import app

    monkeypatch.setenv("AEMON_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("AEMON_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["bench", "adbench", "--data", str(sets), "--json", "--kinds", "mlp_ae",
                                      "--baselines", "none", "--seeds", "0", "--fits", "normal", "--epochs", "5",
                                      "--sets", "pumps", "--out", str(tmp_path / "rows.csv")])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(line["fit"], line["detector"]) for line in lines] == [("normal", "mlp_ae")]
    assert {"roc_auc", "pr_auc", "f1", "best_f1", "f1_gap", "rank"} <= set(lines[0])
    rows = pd.read_csv(tmp_path / "rows.csv")
    assert rows["roc_auc"].iloc[0] == pytest.approx(lines[0]["roc_auc"])
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("bench-adbench")
    runs = client.search_runs([experiment.experiment_id])
    assert any(r.data.tags.get("detector") == "mlp_ae (normal)" for r in runs)


def test_cli_refuses_a_bad_setting_in_one_line(sets, tmp_path, monkeypatch):
    from flows.cli import app

    monkeypatch.setenv("AEMON_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(app, ["bench", "adbench", "--data", str(sets), "--baselines", "SVM"])
    assert result.exit_code == 2 and "baseline 'SVM'" in result.output
    result = CliRunner().invoke(app, ["bench", "adbench", "--data", str(sets), "--sets", "cardio", "--kinds",
                                      "mlp_ae", "--baselines", "none"])
    assert result.exit_code == 2 and "no ADBench set 'cardio'" in result.output
