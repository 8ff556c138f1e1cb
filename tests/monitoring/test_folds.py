"""NAB over several categories and settings chosen on folds: category folders and their
names, corpus pooling, and choices that read only the training folds (fake per-file scores,
no training), then one small real run over two synthetic categories."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.importers import DataSetError
from monitoring.errors import BenchSettingError
from monitoring.evaluation import folds
from monitoring.evaluation.benchmarks import BenchSettings
from monitoring.evaluation.metrics import NAB_PROFILES

FAST = {**BenchSettings().detector_params, "epochs": 5}


def _file(candidate: str, group: str, asset: str, *, raw: float = 0.0, windows: int = 0, tp: int = 0, fp: int = 0,
          fn: int = 0, tn: int = 0, detector: str = "vae") -> dict:
    """One per-file row as the bench keeps it (NAB raw score per profile, windows; point counts)."""
    return {"candidate": candidate, "detector": detector, "group": group, "seed": 0, "asset": asset,
            **{f"nab_raw_{p}": raw for p in NAB_PROFILES}, "nab_windows": windows, "nab_windows_unscored": 0,
            "nab_tp": 0, "nab_fp": 0, "nab_fn": 0,
            "point_tp": tp, "point_fp": fp, "point_fn": fn, "point_tn": tn}


def _f1_frame(table: dict[str, dict[str, tuple[int, int]]]) -> pd.DataFrame:
    """candidate -> group -> (tp, errors) with 10 positive rows per group: F1 = tp / (tp + errors / 2)."""
    rows = []
    for candidate, per_group in table.items():
        for group, (tp, errors) in per_group.items():
            rows.append(_file(candidate, group, f"{group}-0", tp=tp, fn=10 - tp, fp=errors - (10 - tp), tn=100))
    return pd.DataFrame(rows)


def test_the_corpus_pools_windows_not_category_scores():
    frame = pd.DataFrame([
        _file("defaults", "one", "a", raw=1.0, windows=1),     # its window detected at the left edge
        _file("defaults", "three", "b", raw=-3.0, windows=3),  # three windows missed
        _file("defaults", "none", "c", raw=-0.22, windows=0),  # no window: two false positives
    ])
    table = folds.group_table(frame).set_index("group")
    assert table.loc["one", "nab_standard"] == pytest.approx(100.0)
    assert table.loc["three", "nab_standard"] == pytest.approx(0.0)
    assert np.isnan(table.loc["none", "nab_standard"]) and table.loc["none", "nab_raw_standard"] == pytest.approx(-0.22)
    # 100 * (S - S_null) / (S_perfect - S_null) over the pool: (-2.22 + 4) / (4 + 4), not the mean of 100 and 0
    assert table.loc[folds.POOLED, "nab_standard"] == pytest.approx(100 * 1.78 / 8)
    assert table.loc[folds.POOLED, "files"] == 3 and table.loc[folds.POOLED, "windows"] == 4


def test_a_fold_chooses_on_the_other_groups_only():
    # the defaults win on g1 and g2, "coef" wins clearly on g3 alone
    results = _f1_frame({"defaults": {"g1": (9, 2), "g2": (9, 2), "g3": (1, 18)},
                         "coef": {"g1": (5, 10), "g2": (5, 10), "g3": (10, 0)}})
    report = folds.cross_validate(results, "f1")
    by_fold = report.folds.set_index("held_out")
    # held out g3: chosen on g1 + g2, where the defaults are better, though coef is best on g3
    assert by_fold.loc["g3", "chosen"] == "defaults" and by_fold.loc["g3", "best_on_held_out"] == "coef"
    assert by_fold.loc["g3", "held_out_score"] == pytest.approx(1 / (1 + 9))
    # held out g1: g2 + g3 pooled favour coef (15 tp, 10 errors) over the defaults (10 tp, 20 errors)
    assert by_fold.loc["g1", "chosen"] == "coef" and by_fold.loc["g1", "held_out_score"] == pytest.approx(5 / 10)
    summary = report.summary.iloc[0]
    assert summary["in_sample_choice"] == "coef"  # 20 tp / 20 errors pooled beats 19 tp / 22 errors
    # out of fold: g1 and g2 under coef, g3 under the defaults, pooled as counts
    assert summary["out_of_fold_f1"] == pytest.approx(11 / (11 + 38 / 2))
    assert summary["in_sample_f1"] == pytest.approx(20 / (20 + 20 / 2))


def test_the_printed_folds_name_each_candidate_by_number_and_spell_it_out_once():
    from flows.render import console, print_folds

    # brackets too: shown as typed, not read as rich markup
    long = "kinds=[mlp_ae,knn] threshold.method=conformal threshold.conformal_alpha=0.1 differenced=[Temperature]"
    results = _f1_frame({"defaults": {"g1": (9, 2), "g2": (9, 2), "g3": (1, 18)},
                         long: {"g1": (5, 10), "g2": (5, 10), "g3": (10, 0)}})
    with console.capture() as captured:
        print_folds("skab", folds.cross_validate(results, "f1"), 12.0)
    lines = captured.get().splitlines()
    legend = [line for line in lines if long in line]
    assert len(legend) == 1 and "#1" in legend[0]  # whole, on one line of the legend, and nowhere else
    fold_rows = [line for line in lines if line.startswith("│ vae") and ("g1" in line or "g3" in line)]
    assert "#1" in fold_rows[0] and "defaults" in fold_rows[-1]  # held out g1 chose it, held out g3 the defaults
    assert any("in-sample (#1)" in line for line in lines)


def test_the_held_out_groups_scores_never_move_its_choice():
    results = _f1_frame({"defaults": {"g1": (9, 2), "g2": (8, 4), "g3": (1, 18)},
                         "coef": {"g1": (6, 8), "g2": (7, 6), "g3": (2, 16)}})
    before = folds.cross_validate(results, "f1").folds.set_index("held_out")
    changed = results.copy()
    held_out = (changed["group"] == "g3") & (changed["candidate"] == "coef")
    changed.loc[held_out, ["point_tp", "point_fn", "point_fp"]] = [10, 0, 0]  # coef now perfect on g3
    after = folds.cross_validate(changed, "f1").folds.set_index("held_out")
    assert after.loc["g3", "chosen"] == before.loc["g3", "chosen"] == "defaults"
    assert after.loc["g3", "best_on_held_out"] == "coef"


def test_a_far_normal_limit_chooses_only_among_the_candidates_within_it():
    # "coef" has the better F1 everywhere but alarms on 40 % of normal days; "diff" stays within
    results = _f1_frame({"defaults": {"g1": (9, 2), "g2": (9, 2)}, "coef": {"g1": (10, 0), "g2": (10, 0)},
                         "diff": {"g1": (8, 3), "g2": (9, 3)}})
    results["far_normal"] = results["candidate"].map({"defaults": 45.0, "coef": 40.0, "diff": 8.0})
    unlimited = folds.cross_validate(results, "f1")
    assert set(unlimited.folds["chosen"]) == {"coef"}
    limited = folds.cross_validate(results, "f1", far_normal_limit=10.0)
    by_fold = limited.folds.set_index("held_out")
    assert set(by_fold["chosen"]) == {"diff"} and set(by_fold["best_on_held_out"]) == {"diff"}
    assert by_fold.loc["g1", "held_out_score"] == pytest.approx(8 / (8 + 3 / 2))
    assert set(by_fold["chosen_far_normal"]) == {8.0} and set(by_fold["default_far_normal"]) == {45.0}
    summary = limited.summary.iloc[0]
    assert summary["in_sample_choice"] == "diff" and summary["in_sample_far_normal"] == 8.0
    assert summary["defaults_far_normal"] == 45.0
    # none within the limit: the nearest to it, whatever the others' F1 (every candidate when tied)
    results["far_normal"] = results["candidate"].map({"defaults": 45.0, "coef": 40.0, "diff": 12.0})
    assert set(folds.cross_validate(results, "f1", far_normal_limit=10.0).folds["chosen"]) == {"diff"}
    results["far_normal"] = 50.0
    assert set(folds.cross_validate(results, "f1", far_normal_limit=10.0).folds["chosen"]) == {"coef"}
    # without a normal recording (NaN) the choice is by the score alone
    results["far_normal"] = np.nan
    assert set(folds.cross_validate(results, "f1", far_normal_limit=10.0).folds["chosen"]) == {"coef"}


def test_ties_and_missing_scores_keep_the_defaults():
    tie = _f1_frame({"defaults": {"a": (5, 5), "b": (5, 5)}, "other": {"a": (5, 5), "b": (5, 5)}})
    assert set(folds.cross_validate(tie, "f1").folds["chosen"]) == {"defaults"}
    # a training group without windows has no NAB score: NaN is never chosen over a number
    nab = pd.DataFrame([_file("defaults", "quiet", "q", raw=-0.11), _file("defaults", "real", "r", raw=0.5, windows=1),
                        _file("x", "quiet", "q", raw=0.0), _file("x", "real", "r", raw=-1.0, windows=1)])
    chosen, score = folds.choose(nab, "vae", ["quiet"], "nab_standard")
    assert chosen == "defaults" and np.isnan(score)
    assert folds.choose(nab, "vae", ["quiet", "real"], "nab_standard")[0] == "defaults"


def test_run_grid_with_a_fake_scorer_chooses_by_the_training_folds():
    """The whole selection path with a scorer that reads the candidate's settings and trains
    nothing: a high coefficient is best on the held-out group only."""
    candidates = folds.parse_grid(["threshold.coefficient=2.0", "threshold.coefficient=1.1"])
    assert [c.name for c in candidates] == ["defaults", "threshold.coefficient=2.0", "threshold.coefficient=1.1"]
    settings = folds.candidate_settings(BenchSettings(kinds=("vae",), seeds=(0,)), candidates)

    def fake(setting: BenchSettings, index: int) -> pd.DataFrame:
        high = setting.threshold.coefficient > 1.5
        return pd.DataFrame([_file("", g, f"{g}-0", tp=tp, fn=10 - tp, fp=2, tn=50) for g, tp in
                             (("valve1", 3 if high else 8), ("valve2", 10 if high else 6))]).drop(columns="candidate")

    results = folds.run_grid(candidates, settings, fake)
    by_fold = folds.cross_validate(results, "f1").folds.set_index("held_out")
    assert by_fold.loc["valve2", "chosen"] != "threshold.coefficient=2.0"  # chosen on valve1
    assert by_fold.loc["valve2", "best_on_held_out"] == "threshold.coefficient=2.0"
    assert by_fold.loc["valve1", "chosen"] == "threshold.coefficient=2.0"  # chosen on valve2


def test_grid_text_and_files_are_checked_before_any_run(tmp_path):
    grid = tmp_path / "grid.txt"
    grid.write_text("# candidates\nwindow=20 merge_rows=50\n\ndefaults\nthreshold.coefficient=1.2  # higher\n")
    names = [c.name for c in folds.parse_grid([], grid)]
    assert names == ["defaults", "window=20 merge_rows=50", "threshold.coefficient=1.2"]
    with pytest.raises(BenchSettingError, match="'window20' is not KEY=VALUE"):
        folds.parse_grid(["window20"])
    with pytest.raises(BenchSettingError, match="grid candidate 'window=0'"):
        folds.candidate_settings(BenchSettings(), folds.parse_grid(["window=0"]))
    with pytest.raises(BenchSettingError, match=r"--grid-file .*missing\.txt: cannot read"):
        folds.parse_grid([], tmp_path / "missing.txt")


def strict_json(line: str) -> dict:
    """A --json line read as strict JSON: NaN or Infinity in it fails the test."""
    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in a --json line: not JSON")

    return json.loads(line, parse_constant=refuse)


def _series(folder: Path, category: str, name: str, n: int = 1200, spike_at: int | None = 800) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(name))
    t = pd.date_range("2026-01-01", periods=n, freq="5min")
    value = np.sin(np.arange(n) / 12.0) + 0.05 * rng.standard_normal(n)
    windows = []
    if spike_at is not None:
        value[spike_at:spike_at + 5] += 6.0
        windows = [[str(t[spike_at - 10]), str(t[spike_at + 10])]]
    pd.DataFrame({"timestamp": t.strftime("%Y-%m-%d %H:%M:%S"), "value": value}).to_csv(folder / name, index=False)
    path = folder / "windows.json"
    known = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**known, f"{category}/{name}": windows}))


def test_categories_come_from_folders_and_parents(tmp_path):
    _series(tmp_path / "dev" / "b_folder", "realB", "b.csv")
    _series(tmp_path / "dev" / "quiet", "artificialQuiet", "q.csv", spike_at=None)
    _series(tmp_path / "known", "realKnown", "k.csv")
    (tmp_path / "dev" / "README.md").write_text("not a category")
    found = folds.nab_categories([tmp_path / "known", tmp_path / "dev"])
    # named by their windows.json keys, whatever the folder is called
    assert found == [("realKnown", tmp_path / "known"), ("realB", tmp_path / "dev" / "b_folder"),
                     ("artificialQuiet", tmp_path / "dev" / "quiet")]
    with pytest.raises(DataSetError, match="category given twice: \\['realKnown'\\]"):
        folds.nab_categories([tmp_path / "known", tmp_path / "known"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataSetError, match="empty: no NAB series"):
        folds.nab_categories([tmp_path / "empty"])
    with pytest.raises(DataSetError, match="nowhere: not a folder"):
        folds.nab_categories([tmp_path / "nowhere"])


def test_published_rows_are_per_category_and_pooled_only_for_the_six():
    six = sorted(folds.NAB_PUBLISHED_POOLED_CATEGORIES)
    assert len(six) == 6 and folds.nab_published("realTraffic", six)["CAD OSE"][0] == pytest.approx(91.17)
    assert folds.nab_published(folds.POOLED, six)["ARTime"][0] == pytest.approx(76.73)
    assert folds.nab_published(folds.POOLED, ["realKnownCause", "realTraffic"]) == {}


def test_nab_over_two_synthetic_categories_and_their_folds(tmp_path, monkeypatch):
    """Real ingest, training and scoring of two tiny categories through the CLI: a row per
    category, the pooled row, and leave-one-category-out over a two-candidate grid."""
    from flows.cli import app

    _series(tmp_path / "data" / "one", "catOne", "s1.csv")
    _series(tmp_path / "data" / "two", "catTwo", "s2.csv", spike_at=900)
    _series(tmp_path / "data" / "none", "catNone", "s3.csv", spike_at=None)  # no window: no normalised score
    monkeypatch.setenv("AEMON_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("AEMON_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    common = ["--kinds", "mlp_ae", "--seeds", "0", "--set", "detector_params.epochs=5", "--json"]
    result = CliRunner().invoke(app, ["bench", "nab", "--data", str(tmp_path / "data"), *common])
    assert result.exit_code == 0, result.output
    rows = {line["group"]: line for line in map(strict_json, result.stdout.splitlines())}
    assert set(rows) == {"catOne", "catTwo", "catNone", folds.POOLED}
    assert rows["catNone"]["nab_standard"] is None  # strict JSON: null, not NaN
    assert rows[folds.POOLED]["files"] == 3 and rows[folds.POOLED]["windows"] == 2
    per_category = pd.DataFrame([rows["catOne"], rows["catTwo"], rows["catNone"]])
    assert rows[folds.POOLED]["nab_raw_standard"] == pytest.approx(per_category["nab_raw_standard"].sum())

    # a candidate may change the detectors: `pca` and the vote exist only under it
    result = CliRunner().invoke(app, ["bench", "nab", "--folds", "--data", str(tmp_path / "data" / "one"),
                                      "--data", str(tmp_path / "data" / "two"), "--grid", "merge_rows=0",
                                      "--grid", "kinds=[mlp_ae,pca]", *common])
    assert result.exit_code == 0, result.output
    lines = [strict_json(line) for line in result.stdout.splitlines()]
    summaries = [line for line in lines if "in_sample_choice" in line]
    fold_rows = [line for line in lines if "held_out" in line]
    summary = summaries[0]
    assert [s["detector"] for s in summaries] == ["mlp_ae", "pca", "ensemble"]
    assert summary["detector"] == "mlp_ae" and {"in_sample_nab_standard", "out_of_fold_nab_standard"} <= set(summary)
    assert summaries[1]["defaults_nab_standard"] is None  # the defaults run no `pca`
    assert [f["held_out"] for f in fold_rows if f["detector"] == "mlp_ae"] == ["catOne", "catTwo"]
    assert all(f["chosen"] in ("defaults", "merge_rows=0", "kinds=[mlp_ae,pca]") for f in fold_rows)
    assert all(f["default_score"] is None and f["chosen"] == "kinds=[mlp_ae,pca]"
               for f in fold_rows if f["detector"] == "pca")
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("bench-nab-folds")
    parent = [r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get("role") == "benchmark"]
    assert parent[0].data.params["chosen.mlp_ae.catOne"] == fold_rows[0]["chosen"]


def test_skab_groups_are_its_folders(tmp_path):
    for folder in ("valve1", "valve2"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "0.csv").write_text("datetime;anomaly;changepoint\n")
    assert folds.skab_groups(tmp_path) == {"valve1-0": "valve1", "valve2-0": "valve2"}


def test_folds_refuse_bad_options_before_any_run(tmp_path, monkeypatch):
    from flows.cli import app

    _series(tmp_path / "one", "catOne", "s1.csv")
    monkeypatch.setenv("AEMON_HOME", str(tmp_path / "home"))
    runner = CliRunner()
    result = runner.invoke(app, ["bench", "nab", "--folds", "--data", str(tmp_path / "one")])
    assert result.exit_code == 2 and "give at least two" in result.output
    result = runner.invoke(app, ["bench", "nab", "--folds", "--data", str(tmp_path / "one"), "--by", "f1"])
    assert result.exit_code == 2 and "--by f1: expected one of ['nab_standard'" in result.output
    result = runner.invoke(app, ["bench", "nab", "--folds", "--data", str(tmp_path / "one"), "--grid", "window=0"])
    assert result.exit_code == 2 and "grid candidate 'window=0': window=0, expected >= 1" in result.output


def test_folds_and_several_categories_refuse_the_replay_mode(tmp_path, monkeypatch):
    from flows.cli import app

    _series(tmp_path / "one", "catOne", "s1.csv")
    _series(tmp_path / "two", "catTwo", "s2.csv")
    monkeypatch.setenv("AEMON_HOME", str(tmp_path / "home"))
    runner = CliRunner()
    result = runner.invoke(app, ["bench", "nab", "--folds", "--mode", "replay", "--data", str(tmp_path / "one"),
                                 "--data", str(tmp_path / "two")])
    assert result.exit_code == 2 and "--mode replay: --folds runs the one-shot protocol only" in result.output
    result = runner.invoke(app, ["bench", "nab", "--mode", "both", "--data", str(tmp_path / "one"),
                                 "--data", str(tmp_path / "two")])
    assert result.exit_code == 2 and "several NAB categories runs the one-shot protocol only" in result.output
    result = runner.invoke(app, ["bench", "nab", "--set", "replay.train_every_s=60", "--data", str(tmp_path / "one"),
                                 "--data", str(tmp_path / "two")])
    assert result.exit_code == 2 and "--set replay.train_every_s=60: replay settings need --mode" in result.output
    result = runner.invoke(app, ["bench", "skab", "--folds", "--far-normal-limit", "140", "--data", str(tmp_path)])
    assert result.exit_code == 2 and "--far-normal-limit 140.0: expected a percentage between 0 and 100" in \
        result.output
    result = runner.invoke(app, ["bench", "skab", "--folds", "--mode", "sideways", "--data", str(tmp_path)])
    assert result.exit_code == 2 and "--mode 'sideways': expected one of one-shot, replay, both" in result.output
