"""NAB over several categories, and settings chosen on some folds and reported on another.

A benchmark's defaults chosen on the files they are reported on score higher than they would
on new data. Here every candidate configuration of a small grid runs once over every file
(the normal bench path: benchmarks.run_skab / run_nab), each file's result is kept, and the
folds only pool those results:

- NAB, leave one category out: for each category, the candidate with the best pooled score
  over the *other* categories is chosen and its score on the held-out category reported;
  the out-of-fold corpus score pools every category's files, each scored under the
  candidate its own fold chose.
- SKAB, one folder against the other (valve1 -> valve2, valve2 -> valve1): the same, with
  the folders as groups.

In-sample (the candidate chosen on all groups, scored on all of them) stands beside it: the
gap is what choosing on the reported files adds.

Scores pool files, never average groups: NAB normalises 100 * (S - S_null) / (S_perfect -
S_null) over the pooled files' windows (metrics.nab_normalised), SKAB sums TP / FP / FN / TN.
A category with no window (NAB's artificialNoAnomaly) has no normalised score of its own;
its raw score (false positives only) still lowers every pool it is part of.
"""
from __future__ import annotations

import json
import math
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from features.importers import NAB_WINDOWS, DataSetError, skab_files
from monitoring.errors import BenchSettingError
from monitoring.evaluation.benchmarks import BenchRow, BenchSettings, run_nab, run_skab, with_assignments
from monitoring.evaluation.metrics import NAB_PROFILES, NabFileScore, PointCounts, nab_normalised

# A small grid around the defaults, one setting changed at a time (each candidate is a full
# bench run over every file: on 2 cores a few candidates are what fits).
BUILTIN_GRID: dict[str, tuple[tuple[str, ...], ...]] = {
    "nab": (
        (),
        ("threshold.coefficient=1.1",),
        ("threshold.coefficient=1.6",),
        ("merge_rows=50",),
        ("merge_rows=200",),
        ("window=20",),
        ("detector_params.latent=4",),
        ("alarm.mode=threshold",),
        ("alarm.z=2",),
        ("alarm.z=3",),
        ("ensemble_rule=mean",),
    ),
    "skab": (
        (),
        ("threshold.coefficient=1.1",),
        ("threshold.coefficient=1.5",),
        ("window=30",),
        ("window=50",),
        ("detector_params.latent=16",),
        ("alarm.mode=adaptive",),
        ('differenced=["Temperature","Thermocouple"]',),  # the accelerometers' levels seen as they are
        ("ensemble_rule=mean",),
    ),
}
# what a fold chooses by: the benchmark's headline score
DEFAULT_BY = {"nab": "nab_standard", "skab": "f1"}
# SKAB: a fold chooses only among the candidates whose false-alarm rate on normal days (the
# recordings without labels, scored in parts: benchmarks.run_skab) is at most this many
# percent (when none is, among those with the lowest): the goal's FAR <= 10 %, which the
# labelled files alone cannot check
# (about 170 normal rows follow each file's training part). The limit reads the same normal
# recording in every fold, so it is in-sample there; the labelled folds stay held out.
DEFAULT_FAR_NORMAL_LIMIT = {"skab": 10.0}
METRICS = {"nab": ("nab_standard", "nab_low_fp", "nab_low_fn"),
           "skab": ("f1", "far", "mar", "nab_standard", "nab_low_fp", "nab_low_fn")}
# lower is better for these; every other metric: higher
LOWER_IS_BETTER = {"far", "mar"}
DEFAULT_CANDIDATE = "defaults"
POOLED = "pooled"


# ------------------------------------------------------------------ groups of files


def nab_categories(paths: Sequence[str | Path]) -> list[tuple[str, Path]]:
    """(category, folder) for NAB folders given as series folders (CSVs with windows.json)
    or as parents whose subfolders are such folders. A category is named by its
    windows.json keys (`realKnownCause/x.csv` -> realKnownCause), else by its folder."""
    found: list[tuple[str, Path]] = []
    for given in paths:
        root = Path(given)
        if not root.is_dir():
            raise DataSetError(f"{root}: not a folder; expected a NAB category folder (CSVs and windows.json) "
                               "or a folder of them")
        if any(root.glob("*.csv")):
            found.append((_category_name(root), root))
            continue
        children = sorted(p for p in root.iterdir() if p.is_dir() and any(p.glob("*.csv")))
        if not children:
            raise DataSetError(f"{root}: no NAB series (*.csv) in it or in its subfolders")
        found += [(_category_name(child), child) for child in children]
    names = [name for name, _ in found]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataSetError(f"NAB category given twice: {repeated} ({[str(p) for n, p in found if n in repeated]})")
    return found


def _category_name(folder: Path) -> str:
    path = folder / NAB_WINDOWS
    if path.exists():
        try:
            keys = list(json.loads(path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, TypeError, ValueError) as exc:
            raise DataSetError(f"{path}: not valid JSON ({exc})") from exc
        prefixes = {k.rsplit("/", 1)[0] for k in keys if "/" in k}
        if len(prefixes) == 1:
            return prefixes.pop()
    return folder.name


def skab_groups(data_dir: str | Path) -> dict[str, str]:
    """asset -> its SKAB folder (valve1, valve2, ...), the folds of SKAB."""
    return {asset: path.parent.name for path, asset in skab_files(data_dir)}


# ------------------------------------------------------------------ pooled scores


def pooled_scores(per_file: pd.DataFrame) -> dict[str, float]:
    """The benchmark's figures over some files' rows of `per_file` (benchmarks' per-file
    frame: one row per seed and file): NAB normalised per profile over the pooled windows,
    the raw standard total, and with point counts SKAB's F1 / FAR % / MAR %."""
    files = [NabFileScore(raw={p: float(r[f"nab_raw_{p}"]) for p in NAB_PROFILES}, n_windows=int(r["nab_windows"]),
                          tp=float(r["nab_tp"]), fp=float(r["nab_fp"]), fn=float(r["nab_fn"]),
                          n_windows_unscored=int(r["nab_windows_unscored"]))
             for r in per_file.to_dict("records")]
    out = {f"nab_{p}": v for p, v in nab_normalised(files).items()}
    n_seeds = max(per_file["seed"].nunique(), 1) if len(per_file) else 1
    out["nab_raw_standard"] = float(per_file["nab_raw_standard"].sum()) / n_seeds if len(per_file) else 0.0
    out["windows"] = float(per_file["nab_windows"].sum() + per_file["nab_windows_unscored"].sum()) / n_seeds \
        if len(per_file) else 0.0
    out["files"] = float(per_file["asset"].nunique()) if len(per_file) else 0.0
    if "point_tp" in per_file.columns:
        counts = PointCounts(*(float(per_file[f"point_{k}"].sum()) for k in ("tp", "fp", "fn", "tn")))
        out.update(f1=counts.f1, far=100 * counts.far, mar=100 * counts.mar)
    return out


def per_file_frame(rows: list[BenchRow], group: str | Callable[[str], str]) -> pd.DataFrame:
    """The per-file frames of one bench run's detectors, with `detector` and `group` columns."""
    frames = []
    for row in rows:
        frame = row.per_file.copy() if row.per_file is not None else pd.DataFrame()
        frame.insert(0, "detector", row.detector)
        frame.insert(1, "group", frame["asset"].map(group) if callable(group) else group)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def group_table(per_file: pd.DataFrame) -> pd.DataFrame:
    """One row per detector and group, then each detector's pooled row (group `pooled`)."""
    records = []
    for detector, frame in per_file.groupby("detector", sort=False):
        for group, part in frame.groupby("group", sort=False):
            records.append({"detector": detector, "group": group, **pooled_scores(part)})
        records.append({"detector": detector, "group": POOLED, **pooled_scores(frame)})
    return pd.DataFrame(records)


# ------------------------------------------------------------------ NAB over several categories


def run_nab_categories(categories: list[tuple[str, Path]], settings: BenchSettings | None = None, *,
                       work_dir: Path | None = None,
                       progress: Callable[[str], None] = lambda _: None) -> pd.DataFrame:
    """Every category through run_nab (one warehouse each, under work_dir/<category> when
    kept); the per-file frame of all of them, `group` = the category."""
    frames = []
    for name, folder in categories:
        rows = run_nab(folder, settings, work_dir=None if work_dir is None else Path(work_dir) / name,
                       progress=_prefixed(progress, name))
        frames.append(per_file_frame(rows, name))
    return pd.concat(frames, ignore_index=True)


def _prefixed(progress: Callable[[str], None], name: str) -> Callable[[str], None]:
    return lambda message: progress(f"{name}: {message}")


# ------------------------------------------------------------------ candidates and folds


@dataclass(frozen=True)
class Candidate:
    """One configuration of the grid: `--set` assignments on top of the base settings."""

    assignments: tuple[str, ...]

    @property
    def name(self) -> str:
        return " ".join(self.assignments) or DEFAULT_CANDIDATE


def parse_grid(texts: Sequence[str] = (), path: str | Path | None = None) -> list[Candidate]:
    """Candidates from `--grid` texts (one candidate each: space-separated KEY=VALUE, or
    `defaults`) and from a file (one candidate per line, `#` comments). The defaults come
    first whether named or not, so a tie keeps them."""
    lines = list(texts)
    if path is not None:
        file = Path(path)
        try:
            lines += file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise BenchSettingError(f"--grid-file {file}: cannot read ({exc.strerror})") from None
    candidates = [Candidate(())]
    for line in lines:
        text = line.split("#", 1)[0].strip()
        if not text or text == DEFAULT_CANDIDATE:
            continue
        try:
            parts = tuple(shlex.split(text))
        except ValueError as exc:
            raise BenchSettingError(f"--grid {line!r}: {exc}") from None
        bad = [p for p in parts if "=" not in p]
        if bad:
            raise BenchSettingError(f"--grid {line!r}: {bad[0]!r} is not KEY=VALUE, e.g. threshold.coefficient=1.2")
        if Candidate(parts) not in candidates:
            candidates.append(Candidate(parts))
    return candidates


def builtin_grid(dataset: str) -> list[Candidate]:
    return [Candidate(a) for a in BUILTIN_GRID[dataset]]


def candidate_settings(base: BenchSettings, candidates: list[Candidate]) -> list[BenchSettings]:
    """Each candidate's settings, all checked before any file is read."""
    out = []
    for candidate in candidates:
        try:
            out.append(with_assignments(base, list(candidate.assignments)).validate())
        except BenchSettingError as exc:
            raise BenchSettingError(f"grid candidate '{candidate.name}': {exc}") from None
    return out


def run_grid(candidates: list[Candidate], settings: list[BenchSettings],
             run: Callable[[BenchSettings, int], pd.DataFrame],
             progress: Callable[[str], None] = lambda _: None) -> pd.DataFrame:
    """`run(settings, index)` of every candidate (a per-file frame with detector and group
    columns), stacked with a `candidate` column."""
    frames = []
    for i, (candidate, setting) in enumerate(zip(candidates, settings, strict=True)):
        progress(f"candidate {i + 1}/{len(candidates)}: {candidate.name}")
        frame = run(setting, i)
        frame.insert(0, "candidate", candidate.name)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _key(value: float, by: str) -> float:
    """A sort key where larger is better and NaN (no windows to normalise by) is worst."""
    if value is None or not math.isfinite(value):
        return -math.inf
    return -value if by in LOWER_IS_BETTER else value


def within_far_normal(results: pd.DataFrame, detector: str, limit: float | None) -> pd.DataFrame:
    """One detector's rows of the candidates whose FAR on normal days (`far_normal`, %) is at
    most `limit`; when none is, those with the lowest (the nearest to the limit: a score
    never buys back a false-alarm rate already over it); every candidate's when no limit is
    given or the run had no normal recording."""
    mine = results[results["detector"] == detector]
    if limit is None or "far_normal" not in mine.columns or mine["far_normal"].isna().all():
        return mine
    within = mine[mine["far_normal"] <= limit]
    return within if len(within) else mine[mine["far_normal"] == mine["far_normal"].min()]


def far_normal_of(results: pd.DataFrame, detector: str, candidate: str) -> float:
    """A candidate's FAR on normal days (%) for one detector; NaN without a normal recording."""
    if "far_normal" not in results.columns:
        return math.nan
    rows = results[(results["detector"] == detector) & (results["candidate"] == candidate)]
    return float(rows["far_normal"].iloc[0]) if len(rows) else math.nan


def choose(results: pd.DataFrame, detector: str, groups: Sequence[str], by: str,
           far_normal_limit: float | None = None) -> tuple[str, float]:
    """The candidate (and its score) with the best `by` pooled over `groups` alone, for one
    detector, among those within the FAR-on-normal-days limit (within_far_normal); ties go
    to the earlier candidate (the defaults come first)."""
    rows = within_far_normal(results, detector, far_normal_limit)
    rows = rows[rows["group"].isin(list(groups))]
    best: tuple[str, float] | None = None
    for candidate, frame in rows.groupby("candidate", sort=False):
        score = pooled_scores(frame)[by]
        if best is None or _key(score, by) > _key(best[1], by):
            best = (str(candidate), score)
    if best is None:
        raise ValueError(f"no results for detector {detector!r} on groups {list(groups)}")
    return best


def _defaults_scores(rows: pd.DataFrame, defaults: str, runs_it: bool, like: dict[str, float]) -> dict[str, float]:
    """The defaults' pooled scores over `rows`, or NaN for every figure of `like` where the
    defaults do not run this detector at all."""
    return pooled_scores(rows[rows["candidate"] == defaults]) if runs_it else dict.fromkeys(like, math.nan)


@dataclass
class FoldReport:
    """Per fold (held-out group): the candidate chosen on the other groups, its score there
    and on the held-out group, and the defaults' and best candidate's held-out score; per
    detector: in-sample, out-of-fold and the defaults, pooled over every group."""

    by: str
    folds: pd.DataFrame
    summary: pd.DataFrame
    candidates: list[str]
    far_normal_limit: float | None = None


def cross_validate(results: pd.DataFrame, by: str, far_normal_limit: float | None = None) -> FoldReport:
    """Leave one group out over `results` (candidate, detector, group and the per-file
    columns). The choice of a fold reads only its training groups' rows (and, with a limit,
    the FAR on normal days of each candidate: see DEFAULT_FAR_NORMAL_LIMIT)."""
    groups = list(dict.fromkeys(results["group"]))
    if len(groups) < 2:
        raise DataSetError(f"folds need at least two groups (categories / folders); got {groups}")
    candidates = list(dict.fromkeys(results["candidate"]))
    fold_rows, summary_rows = [], []
    for detector in dict.fromkeys(results["detector"]):
        mine = results[results["detector"] == detector]
        runs_it = bool((mine["candidate"] == candidates[0]).any())  # False: a grid that changes `kinds` adds it
        held_out_files = []
        for group in groups:
            train = [g for g in groups if g != group]
            chosen, train_score = choose(mine, detector, train, by, far_normal_limit)
            test = mine[mine["group"] == group]
            scored = pooled_scores(test[test["candidate"] == chosen])
            defaults = _defaults_scores(test, candidates[0], runs_it, scored)
            oracle, oracle_score = choose(mine, detector, [group], by, far_normal_limit)
            fold_rows.append({
                "detector": detector, "held_out": group, "chosen": chosen, "train_score": train_score,
                "held_out_score": scored[by], "held_out_raw_standard": scored["nab_raw_standard"],
                "default_score": defaults[by], "default_raw_standard": defaults["nab_raw_standard"],
                "best_on_held_out": oracle, "best_held_out_score": oracle_score,
                "chosen_far_normal": far_normal_of(mine, detector, chosen),
                "default_far_normal": far_normal_of(mine, detector, candidates[0])})
            held_out_files.append(test[test["candidate"] == chosen])
        in_sample, in_sample_score = choose(mine, detector, groups, by, far_normal_limit)
        out_of_fold = pooled_scores(pd.concat(held_out_files, ignore_index=True))
        defaults = _defaults_scores(mine, candidates[0], runs_it, out_of_fold)  # over every group
        in_sample_all = pooled_scores(mine[mine["candidate"] == in_sample])
        summary_rows.append({
            "detector": detector, "in_sample_choice": in_sample,
            **{f"in_sample_{k}": in_sample_all[k] for k in _shown(in_sample_all)},
            **{f"out_of_fold_{k}": out_of_fold[k] for k in _shown(out_of_fold)},
            **{f"defaults_{k}": defaults[k] for k in _shown(defaults)},
            "in_sample_far_normal": far_normal_of(mine, detector, in_sample),
            "defaults_far_normal": far_normal_of(mine, detector, candidates[0])})
        assert math.isclose(in_sample_all[by], in_sample_score, rel_tol=1e-9) or not math.isfinite(in_sample_score)
    return FoldReport(by, pd.DataFrame(fold_rows), pd.DataFrame(summary_rows), candidates, far_normal_limit)


def _shown(scores: dict[str, float]) -> list[str]:
    return [k for k in ("f1", "far", "mar", "nab_standard", "nab_low_fp", "nab_low_fn") if k in scores]


def run_folds(dataset: str, data: Sequence[str | Path], base: BenchSettings, candidates: list[Candidate], *,
              work_dir: Path | None = None, progress: Callable[[str], None] = lambda _: None) -> pd.DataFrame:
    """Every candidate over every file of the benchmark (SKAB: one folder `data`, grouped by
    its subfolders; NAB: the categories of `data`). Returns the stacked per-file results."""
    settings = candidate_settings(base, candidates)

    def work(index: int) -> Path | None:
        return None if work_dir is None else Path(work_dir) / f"candidate-{index}"

    if dataset == "skab":
        if len(data) != 1:
            raise DataSetError("SKAB folds take one --data folder; its subfolders (valve1, valve2) are the folds")
        groups = skab_groups(data[0])

        def run(setting: BenchSettings, index: int) -> pd.DataFrame:
            rows = run_skab(data[0], setting, work_dir=work(index), progress=progress)
            frame = per_file_frame(rows, groups.__getitem__)
            # each detector's FAR on normal days, beside its files (NaN without a normal recording)
            frame["far_normal"] = frame["detector"].map(
                {r.detector: 100 * r.normal.far for r in rows if r.normal is not None}).astype(float)
            return frame
    elif dataset == "nab":
        categories = nab_categories(data)

        def run(setting: BenchSettings, index: int) -> pd.DataFrame:
            return run_nab_categories(categories, setting, work_dir=work(index), progress=progress)
    else:
        raise ValueError(f"unknown benchmark {dataset!r}; expected 'skab' or 'nab'")
    return run_grid(candidates, settings, run, progress)


def fold_log_rows(report: FoldReport) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """MLflow parameters (the grid, what was chosen per fold) and one metrics row per
    detector (in-sample, out-of-fold, defaults, and each held-out group's score)."""
    params: dict[str, Any] = {"by": report.by, "grid": json.dumps(report.candidates),
                              "far_normal_limit": report.far_normal_limit}
    rows = []
    for row in report.summary.to_dict("records"):
        detector = row["detector"]
        params[f"in_sample_choice.{detector}"] = row["in_sample_choice"]
        metrics = {k: v for k, v in row.items() if isinstance(v, float)}
        for fold in report.folds[report.folds["detector"] == detector].to_dict("records"):
            params[f"chosen.{detector}.{fold['held_out']}"] = fold["chosen"]
            metrics[f"held_out.{fold['held_out']}.{report.by}"] = fold["held_out_score"]
            metrics[f"held_out.{fold['held_out']}.defaults_{report.by}"] = fold["default_score"]
        rows.append({"detector": detector, **metrics})
    return params, rows


def category_log_rows(table: pd.DataFrame) -> list[dict[str, Any]]:
    """One metrics row per detector: the pooled figures and each category's."""
    rows = []
    for detector, frame in table.groupby("detector", sort=False):
        row: dict[str, Any] = {"detector": detector}
        for record in frame.to_dict("records"):
            prefix = "" if record["group"] == POOLED else f"{record['group']}."
            row.update({f"{prefix}{k}": v for k, v in record.items() if k not in ("detector", "group")})
        rows.append(row)
    return rows


# ------------------------------------------------------------------ published figures

# NAB's published detectors, scored by NAB's own code at NAB's published per-profile
# thresholds (config/thresholds.json), NAB commit ea702d75cc2258d9d7dd35ca8e5e2539d71f3140,
# as listed in ../shared/data/nab-dev/README.md ("Reference scores of NAB's published
# detectors"; realKnownCause: standard profile only, from the same README). Per category:
# detector -> (standard, reward_low_FP_rate, reward_low_FN_rate); None: not published.
# artificialNoAnomaly has no window, so its figures are raw totals, not normalised.
NAB_PUBLISHED_SOURCE = ("../shared/data/nab-dev/README.md: NAB commit ea702d7, NAB's scorer at NAB's thresholds; "
                        "artificialNoAnomaly: raw totals (no windows)")
Published = tuple[float | None, float | None, float | None]
NAB_PUBLISHED: dict[str, dict[str, Published]] = {
    "realKnownCause": {"ARTime": (63.88, None, None), "Numenta HTM": (55.47, None, None),
                       "CAD OSE": (41.75, None, None), "Random Cut Forest": (43.08, None, None)},
    "artificialNoAnomaly": {"ARTime": (-0.11, -0.22, -0.11), "Numenta HTM": (-0.44, -0.44, -0.44),
                            "CAD OSE": (-0.22, -0.44, -0.44), "Random Cut Forest": (0.0, 0.0, 0.0)},
    "artificialWithAnomaly": {"ARTime": (70.35, 60.56, 74.68), "Numenta HTM": (70.22, 68.43, 74.59),
                              "CAD OSE": (73.00, 67.10, 74.71), "Random Cut Forest": (15.51, 15.51, 31.05)},
    "realAdExchange": {"ARTime": (75.12, 70.80, 78.65), "Numenta HTM": (76.86, 67.71, 79.81),
                       "CAD OSE": (72.02, 70.44, 72.90), "Random Cut Forest": (62.77, 45.88, 65.40)},
    "realTraffic": {"ARTime": (86.86, 81.55, 91.24), "Numenta HTM": (82.51, 75.73, 85.96),
                    "CAD OSE": (91.17, 88.42, 92.70), "Random Cut Forest": (63.83, 36.81, 66.10)},
    "realTweets": {"ARTime": (81.84, 70.08, 87.89), "Numenta HTM": (68.02, 61.06, 72.62),
                   "CAD OSE": (74.48, 73.13, 76.48), "Random Cut Forest": (48.13, 46.90, 62.25)},
    # the six categories above pooled (41 files, 86 windows)
    POOLED: {"ARTime": (76.73, 67.32, 82.16), "Numenta HTM": (68.94, 62.19, 73.48),
             "CAD OSE": (69.34, 66.74, 72.26), "Random Cut Forest": (49.68, 36.08, 58.02)},
}
NAB_PUBLISHED_POOLED_CATEGORIES = frozenset(k for k in NAB_PUBLISHED if k != POOLED)


def nab_published(category: str, categories: Sequence[str]) -> dict[str, Published]:
    """The published rows for a category, or for the pool (only when the pool is exactly
    the six published categories: another pool has no published figure)."""
    if category == POOLED:
        return NAB_PUBLISHED[POOLED] if set(categories) == NAB_PUBLISHED_POOLED_CATEGORIES else {}
    return NAB_PUBLISHED.get(category, {})
