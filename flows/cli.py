"""The `aemon` command line: a thin layer over the flows and the library.

A user mistake (bad config, unknown stream, a stream with no data or no model yet) is
one line on stderr and exit code 2, never a traceback. Prefect and the flows are
imported inside the commands, after the environment defaults below are in place.
"""
from __future__ import annotations

import errno
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click
import typer
from rich.markup import escape

from flows.render import (
    console,
    err_console,
    print_adbench,
    print_batches,
    print_bench,
    print_demo,
    print_drift,
    print_evaluation,
    print_folds,
    print_frame,
    print_nab_categories,
    print_quality,
    print_query,
    print_training,
)
from monitoring.store.redaction import redact

if TYPE_CHECKING:  # imported by the commands that need it: it loads torch
    import pandas as pd

    from flows.config import AemonConfig

app = typer.Typer(help="aemon: streaming sensor anomaly monitor.", no_args_is_help=True, add_completion=False)

ConfigOption = typer.Option(None, "--config", "-c", help="TOML config file (default: $AEMON_CONFIG or ./aemon.toml).")

# Prefect's ephemeral API needs ~20 s to start on 2 cores; anonymous usage analytics stay off.
# `aemon serve` looks for runs to start every 2 s, not Prefect's 10: a score run that an
# ingest's event triggered is created "now", and waits for that look (scheduled runs are
# fetched ahead and start on time either way); one small API query per look.
ENV_DEFAULTS = {
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_RUNNER_POLL_FREQUENCY": "2",
}


# Usage errors (an unknown option, an extra argument): click's, or those of the click that
# typer releases from 0.20 on vendor (typer._click), which derive from typer.TyperException.
USAGE_ERRORS: tuple[type[Exception], ...] = (click.ClickException, typer.TyperException)

STORAGE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EROFS, errno.EDQUOT, errno.EACCES}


def user_errors() -> tuple[type[Exception], ...]:
    from flows.errors import DOMAIN_ERRORS

    return DOMAIN_ERRORS


def report_batches(title: str, results: list[dict]) -> None:
    """The audit of ingested files; exit code 1 with a one-line summary when a file was
    rejected or rows were quarantined (they are in the quarantine table)."""
    problem = print_batches(title, results)
    if problem is not None:
        fail(problem, code=1)


def fail(message: str, code: int = 2) -> NoReturn:
    print_error(message)
    raise typer.Exit(code)


def json_line(record: dict) -> str:
    """One --json line: strict JSON, so a figure that does not exist (NAB's score of a
    category without windows, the defaults' score of a detector they do not run) is null,
    not the NaN that json.dumps writes and jq and most JSON readers refuse."""
    import json
    import math

    def strict(value: object) -> object:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: strict(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [strict(v) for v in value]
        return value

    return json.dumps(strict(record), allow_nan=False, default=str)


def print_error(message: object) -> None:
    """One line on stderr; a password in a URI or connection string it names is masked."""
    # escaped: a name in the message such as "[/x]" is text, not rich markup
    err_console.print(f"[bold red]error:[/] {escape(redact(str(message)))}", highlight=False, soft_wrap=True)


def load(config: Path | None, *, detectors: bool = True):
    from flows.config import load_config

    return load_config(config, detectors=detectors)


def require_readings(cfg: AemonConfig, stream: str) -> None:
    from monitoring.store.connection import connect
    from monitoring.store.readings import has_view

    ready = False
    if cfg.warehouse.exists():
        with connect(cfg.warehouse) as con:
            ready = has_view(con, stream)
    if not ready:
        fail(f"stream '{stream}' has no readings yet; put files in {cfg.inbox(stream)} and run `aemon ingest {stream}`")


def parse_bounds(**values: str | None) -> dict:
    """ISO time options as datetimes; a value that is not a time is a one-line error naming the option."""
    import pandas as pd

    bounds = {}
    for name, value in values.items():
        if value is not None:
            try:
                bounds[name] = pd.Timestamp(value).to_pydatetime()
            except ValueError:
                fail(f"--{name} {value!r} is not a timestamp; expected ISO form like 2026-01-05T00:00:00")
    return bounds


InitPathOption = typer.Option(None, "--config", "-c", help="Where to write it (default: ./aemon.toml).")
ForceOption = typer.Option(False, "--force", help="Replace an existing file.")


@app.command()
def init(config: Path | None = InitPathOption, force: bool = ForceOption):
    """Write a complete aemon.toml to start from, every setting with its default and a comment.

    The demo stream `pumps` is spelt out (a file's streams replace the built-in one)."""
    from flows.locations import ConfigError
    from flows.starter import write_starter

    try:
        path = write_starter(config, force=force)
    except ConfigError as exc:
        fail(str(exc))
    console.print(f"wrote {path}: the built-in defaults and the demo stream 'pumps'; add your streams "
                  "as [streams.<name>] tables", highlight=False, soft_wrap=True, markup=False)


@app.command()
def ingest(
    stream: str,
    config: Path | None = ConfigOption,
    retry_rejected: bool = typer.Option(False, help="Try again files whose content was rejected before."),
    flow_run: bool | None = typer.Option(
        None, "--flow-run/--in-process",
        help="Run as a Prefect flow run (Prefect's temporary local API when no PREFECT_API_URL is set), or the "
             "same steps in this process. Default: a flow run when a Prefect API is configured or runner.kind is "
             "\"dask\" (the files are read on the cluster), else in-process."),
):
    """Ingest every new file in the stream's inbox into the lake."""
    cfg = load(config, detectors=False)  # the stream's files, not its detectors (no torch)
    cfg.stream(stream)
    from flows.local_api import api_configured

    if flow_run is None:
        flow_run = api_configured() or cfg.runner.kind == "dask"
    if flow_run:
        api_ready = begin_local_api()  # Prefect's server boots while the flow's code is imported
        from flows.ingest import ingest_readings

        quiet_libraries()
        api_ready()
        results = ingest_readings(stream, config_path=str(config) if config else None, retry_rejected=retry_rejected)
    else:  # no server to record the run or act on its event: the flow's steps, without Prefect's temporary API
        from flows import tasks
        from flows.ingest import ingest_inbox

        results = ingest_inbox(cfg, stream, retry_rejected, tasks.IN_PROCESS, command_logger("ingest"))
    if not results:
        console.print(f"no new or changed files in {cfg.inbox(stream)} (files already ingested are not read again)",
                      markup=False)
        return
    report_batches(f"ingest {stream}", results)


@app.command()
def quality(stream: str, config: Path | None = ConfigOption):
    """Data-quality report of a stream per sensor (stored in the data_quality table)."""
    from monitoring.store.data_quality import assess_stream

    cfg = load(config)
    settings = cfg.stream(stream)
    require_readings(cfg, stream)
    report = assess_stream(cfg.warehouse, stream, list(settings.sensors), settings.window.interval_s,
                           settings.window.gap_limit_s)
    print_quality(stream, report)


@app.command()
def evaluate(
    stream: str,
    config: Path | None = ConfigOption,
    start: str | None = typer.Option(None, help="Start of the range (ISO time); default: the first reading."),
    end: str | None = typer.Option(None, help="End of the range (ISO time); default: the last scored reading."),
    version: int | None = typer.Option(None, help="Evaluate only this model version's windows (default: the "
                                                     "latest scoring of each window)."),
):
    """Score aemon's stored alarms against the stream's label columns (stored in the evaluations table and MLflow)."""
    from monitoring.evaluation.labeled import evaluate_stream

    cfg = load(config)
    settings = cfg.stream(stream)
    if not settings.label_columns:
        fail(f"stream '{stream}' has no label_columns in the config; evaluate compares alarms with labeled "
             "readings (a label column > 0)")
    bounds = parse_bounds(start=start, end=end)
    require_readings(cfg, stream)
    quiet_libraries()
    evaluation = evaluate_stream(cfg.warehouse, cfg.mlflow_tracking_uri, cfg.mlflow_artifact_root, stream,
                                 list(settings.label_columns), start=bounds.get("start"), end=bounds.get("end"),
                                 version=version)
    print_evaluation(evaluation.row, evaluation.stored)


import_app = typer.Typer(help="Import a public benchmark data set (read in place) through the normal ingest.",
                         no_args_is_help=True)
app.add_typer(import_app, name="import")
DataOption = typer.Option(..., "--data", help="Folder of the data set (read in place, never copied).")


def _import(dataset: str, data: Path, stream: str | None, config: Path | None) -> None:
    from monitoring.store.datasets import import_dataset

    cfg = load(config)
    name = stream or dataset
    results = [r.to_dict() for r in import_dataset(cfg.warehouse, dataset, data, stream=name)]
    console.print(f"lake table lake.{name} in {redact(cfg.warehouse.catalog)}; to train on it, declare it in the "
                  f"config (see README, 'Benchmark data sets')", highlight=False, soft_wrap=True, markup=False)
    report_batches(f"import {dataset} -> {name}", results)


@import_app.command("skab")
def import_skab(data: Path = DataOption, stream: str | None = typer.Option(None, help="Stream name (default skab)."),
                config: Path | None = ConfigOption):
    """SKAB: a folder of <experiment>/<n>.csv (';'-separated, datetime, anomaly/changepoint labels)."""
    _import("skab", data, stream, config)


@import_app.command("nab")
def import_nab(data: Path = DataOption, stream: str | None = typer.Option(None, help="Stream name (default nab)."),
               config: Path | None = ConfigOption):
    """NAB: a folder of timestamp,value CSVs with windows.json (labelled anomaly windows)."""
    _import("nab", data, stream, config)


bench_app = typer.Typer(help="Benchmark the detectors on a public labeled data set (read in place).",
                        no_args_is_help=True)
app.add_typer(bench_app, name="bench")
JsonOption = typer.Option(False, "--json", help="One JSON object per detector and line; nothing else on stdout.")
PerFileOption = typer.Option(None, "--per-file", help="Also write each detector's figures per file and seed to this "
                                                      "CSV (with --mode both: both modes, in a column `mode`), to "
                                                      "see which files a change moves.")
WorkOption = typer.Option(None, "--work", help="Keep the bench lake and DuckDB file here (default: a temporary "
                                              "folder, removed afterwards).")
SeedsOption = typer.Option(None, "--seeds", help="Comma-separated seeds (default 0,1,2); figures are the mean "
                                                  "over them.")
KindsOption = typer.Option(None, "--kinds", help="Comma-separated detector kinds of mlp_ae, cnn_ae, vae, pca, "
                                                  "knn (default: the first three, plus the ensemble: where most of "
                                                  "them alarm; ensemble_rule=mean: their mean severity).")
SetOption = typer.Option(None, "--set", help="Change a bench setting for an experiment, KEY=VALUE (JSON value), "
                                             "repeatable: window=30, threshold.coefficient=1.2, "
                                             "detector_params.error_scaling=none.")


FoldsOption = typer.Option(False, "--folds", help="Choose among a small grid of configurations on some folds and "
                                                   "report on the held-out one (SKAB: valve1 <-> valve2; NAB: leave "
                                                   "one category out), in-sample beside out-of-fold.")
GridOption = typer.Option(None, "--grid", help="With --folds: one candidate configuration, space-separated "
                                               "KEY=VALUE like --set (repeatable; the defaults are always one); "
                                               "default: a small built-in grid.")
GridFileOption = typer.Option(None, "--grid-file", help="With --folds: candidates from a file, one per line.")
ByOption = typer.Option(None, "--by", help="With --folds: the score a fold chooses by (default: f1 for SKAB, "
                                           "nab_standard for NAB).")
FarNormalOption = typer.Option(None, "--far-normal-limit", help="With --folds: choose only among the candidates "
                                                              "whose FAR on normal days (the recordings without "
                                                              "labels) is at most this many percent; when none "
                                                              "is, among those with the lowest (default 10; 100 "
                                                              "turns it off).")
ModeOption = typer.Option("one-shot", "--mode", help="one-shot: train once on each file's training part (the "
                                                     "published protocol); replay: the monitor as it runs, fed "
                                                     "in data time with scoring, retraining and the promotion "
                                                     "gate (settings: --set replay.KEY=VALUE); both.")
MODES = ("one-shot", "replay", "both")


def _bench_settings(dataset: str, seeds: str | None, kinds: str | None, assignments: list[str] | None):
    """The bench settings of the options (replay.* assignments are the replay's, see _replay_settings)."""
    from monitoring.errors import BenchSettingError
    from monitoring.evaluation import benchmarks

    try:
        seed_list = tuple(int(s) for s in seeds.split(",") if s.strip()) if seeds else ()
    except ValueError:
        fail(f"--seeds {seeds!r}: expected comma-separated integers like 0,1,2")
    try:  # a bad setting: one line, before any file is read
        return benchmarks.with_overrides(
            benchmarks.with_assignments(benchmarks.BenchSettings.for_dataset(dataset),
                                        [a for a in assignments or [] if not a.startswith("replay.")]),
            seeds=seed_list or None, kinds=tuple(k.strip() for k in kinds.split(",") if k.strip()) if kinds else None,
        ).validate()
    except BenchSettingError as exc:
        fail(str(exc))


def _replay_settings(dataset: str, assignments: list[str] | None):
    from monitoring.errors import BenchSettingError
    from monitoring.evaluation import benchmarks, replay_bench

    replay_sets = [a.removeprefix("replay.") for a in assignments or [] if a.startswith("replay.")]
    try:
        return benchmarks.with_assignments(replay_bench.ReplaySettings.for_dataset(dataset), replay_sets).validate()
    except BenchSettingError as exc:
        fail(str(exc))


def _no_per_file(path: Path | None) -> None:
    if path is not None:
        fail(f"--per-file {path}: not with --folds, which prints each fold's figures instead")


def _one_shot_only(mode: str, assignments: list[str] | None, what: str) -> None:
    """--folds and several NAB categories run the one-shot protocol only: say so before any run."""
    if mode not in MODES:
        fail(f"--mode {mode!r}: expected one of {', '.join(MODES)}")
    if mode != "one-shot":
        fail(f"--mode {mode}: {what} runs the one-shot protocol only; replay one folder at a time")
    replay_sets = [a for a in assignments or [] if a.startswith("replay.")]
    if replay_sets:
        fail(f"--set {replay_sets[0]}: replay settings need --mode replay or both, which {what} does not run")


def _per_file_target(path: Path | None) -> None:
    """Refuse a --per-file path that cannot be written before any file is trained."""
    if path is None:
        return
    if path.is_dir() or not path.parent.is_dir():
        fail(f"--per-file {path}: expected a CSV file path in an existing folder")
    existed = path.exists()
    try:  # not writable (permissions, a read-only disk): said now, not after the run
        path.open("a").close()
        if not existed:  # the check leaves nothing behind: a run that fails writes no file
            path.unlink()
    except OSError as exc:
        fail(f"--per-file {path}: cannot write it ({exc.strerror})")


def _write_per_file(path: Path | None, frames: list[pd.DataFrame]) -> None:
    import pandas as pd

    if path is None:
        return
    try:
        pd.concat(frames, ignore_index=True).to_csv(path, index=False)
    except OSError as exc:  # the figures above and in MLflow stay; only the file is missing
        fail(f"--per-file {path}: cannot write it ({exc.strerror})")
    err_console.print(f"per file: {path}", highlight=False, markup=False)


def _bench(dataset: str, data: Path, as_json: bool, work: Path | None, seeds: str | None, kinds: str | None,
           assignments: list[str] | None, config: Path | None, mode: str = "one-shot",
           per_file: Path | None = None) -> None:
    from monitoring.evaluation import benchmarks, folds, replay_bench

    cfg = load(config)
    if mode not in MODES:
        fail(f"--mode {mode!r}: expected one of {', '.join(MODES)}")
    settings = _bench_settings(dataset, seeds, kinds, assignments)
    replay = _replay_settings(dataset, assignments)
    _per_file_target(per_file)
    quiet_libraries()
    frames = []
    for current in ("one-shot", "replay") if mode == "both" else (mode,):
        started = time.perf_counter()
        with err_console.status(f"bench {dataset} ({current})") as status:
            def progress(message: str, label: str = f"bench {dataset} ({current})", shown=status) -> None:
                shown.update(f"{label}: {message}")

            if current == "replay":
                rows = replay_bench.run_replay(dataset, data, settings, replay, work_dir=work, progress=progress)
            else:
                run = benchmarks.run_skab if dataset == "skab" else benchmarks.run_nab
                rows = run(data, settings, work_dir=work, progress=progress)
        seconds = time.perf_counter() - started
        frame = folds.per_file_frame(rows, dataset).drop(columns="group")
        frame.insert(0, "mode", current)
        frames.append(frame)
        if current == "replay":
            replay_bench.log_replay(cfg.mlflow_tracking_uri, cfg.mlflow_artifact_root, dataset, data, settings,
                                    replay, rows, seconds)
        else:
            benchmarks.log_bench(cfg.mlflow_tracking_uri, cfg.mlflow_artifact_root, dataset, data, settings, rows,
                                 seconds)
        if as_json:
            for row in rows:
                extra = {"mode": current, **(replay_bench.replay_summary(row) if current == "replay" else {})}
                print(json_line({**row.to_dict(), **(extra if mode != "one-shot" else {})}))
            continue
        print_bench(dataset, rows, seconds, mode=current)
        if current == "replay":
            for row in rows:
                n = replay_bench.replay_summary(row)
                err_console.print(f"{row.detector}: {n['retrains']} retrains ({n['retrains_promoted']} promoted by "
                                  f"the gate, {n['retrains_failed']} too short to train), {n['recalibrations']} "
                                  f"recalibrations ({n['recalibrations_promoted']} promoted)", highlight=False,
                                  markup=False)
        for problem in rows[0].untrained if rows else ():
            err_console.print(f"[yellow]warning:[/] not trained, counted as never firing: {escape(problem)}",
                              highlight=False, soft_wrap=True)
        for problem in rows[0].unscored if rows else ():
            err_console.print(f"[yellow]warning:[/] not part of the FAR on normal days: {escape(problem)}",
                              highlight=False, soft_wrap=True)
    _write_per_file(per_file, frames)


def _bench_nab_categories(data: list[Path], as_json: bool, work: Path | None, seeds: str | None,
                          kinds: str | None, assignments: list[str] | None, config: Path | None,
                          per_file_path: Path | None = None) -> None:
    """NAB over several categories: a row per category and detector, and the pooled corpus."""

    from features.importers import DataSetError
    from monitoring.evaluation import folds
    from monitoring.models.registry import log_benchmark

    cfg = load(config)
    settings = _bench_settings("nab", seeds, kinds, assignments)
    try:
        categories = folds.nab_categories(data)
    except DataSetError as exc:
        fail(str(exc))
    _per_file_target(per_file_path)
    quiet_libraries()
    started = time.perf_counter()
    with err_console.status("bench nab") as status:
        per_file = folds.run_nab_categories(categories, settings, work_dir=work,
                                            progress=lambda message: status.update(f"bench nab: {message}"))
    seconds = time.perf_counter() - started
    table = folds.group_table(per_file)
    log_benchmark(cfg.mlflow_tracking_uri, cfg.mlflow_artifact_root, "nab", ",".join(str(d) for d in data),
                  {**settings.to_params(), "categories": ",".join(name for name, _ in categories),
                   "files": int(table[table["group"] == folds.POOLED]["files"].iloc[0])},
                  folds.category_log_rows(table), seconds)
    _write_per_file(per_file_path, [per_file.rename(columns={"group": "category"})])
    if as_json:
        for record in table.to_dict("records"):
            print(json_line(record))
        return
    print_nab_categories(table, [name for name, _ in categories], seconds)


def _bench_folds(dataset: str, data: list[Path], as_json: bool, work: Path | None, seeds: str | None,
                 kinds: str | None, assignments: list[str] | None, grid: list[str] | None, grid_file: Path | None,
                 by: str | None, config: Path | None, far_normal_limit: float | None = None) -> None:
    from features.importers import DataSetError
    from monitoring.errors import BenchSettingError
    from monitoring.evaluation import folds
    from monitoring.models.registry import log_benchmark

    cfg = load(config)
    base = _bench_settings(dataset, seeds, kinds, assignments)
    by = by or folds.DEFAULT_BY[dataset]
    if by not in folds.METRICS[dataset]:
        fail(f"--by {by}: expected one of {list(folds.METRICS[dataset])}")
    if far_normal_limit is None:
        far_normal_limit = folds.DEFAULT_FAR_NORMAL_LIMIT.get(dataset)
    elif not 0 <= far_normal_limit <= 100:
        fail(f"--far-normal-limit {far_normal_limit}: expected a percentage between 0 and 100")
    try:
        candidates = folds.parse_grid(grid or [], grid_file) if grid or grid_file else folds.builtin_grid(dataset)
        folds.candidate_settings(base, candidates)
        if dataset == "nab" and len(folds.nab_categories(data)) < 2:
            fail(f"--folds leaves one NAB category out: give at least two, got {[str(d) for d in data]}")
    except (BenchSettingError, DataSetError) as exc:
        fail(str(exc))
    quiet_libraries()
    started = time.perf_counter()
    with err_console.status(f"bench {dataset} --folds") as status:
        try:
            results = folds.run_folds(dataset, data, base, candidates, work_dir=work,
                                      progress=lambda message: status.update(f"bench {dataset} --folds: {message}"))
            if work is not None:  # every candidate's per-file figures, for SQL / pandas afterwards
                results.to_csv(Path(work) / "folds-per-file.csv", index=False)
            report = folds.cross_validate(results, by, far_normal_limit)
        except DataSetError as exc:
            fail(str(exc))
    seconds = time.perf_counter() - started
    params, rows = folds.fold_log_rows(report)
    log_benchmark(cfg.mlflow_tracking_uri, cfg.mlflow_artifact_root, f"{dataset}-folds",
                  ",".join(str(d) for d in data), {**base.to_params(), **params}, rows, seconds)
    if as_json:
        for record in report.summary.to_dict("records"):
            print(json_line(record))
        for record in report.folds.to_dict("records"):
            print(json_line(record))
        return
    print_folds(dataset, report, seconds)


@bench_app.command("skab")
def bench_skab(data: Path = DataOption, as_json: bool = JsonOption, work: Path | None = WorkOption,
               seeds: str | None = SeedsOption, kinds: str | None = KindsOption,
               assignments: list[str] | None = SetOption, use_folds: bool = FoldsOption,
               grid: list[str] | None = GridOption, grid_file: Path | None = GridFileOption,
               by: str | None = ByOption, config: Path | None = ConfigOption, mode: str = ModeOption,
               far_normal_limit: float | None = FarNormalOption, per_file: Path | None = PerFileOption):
    """SKAB's protocol: F1 / FAR / MAR and the changepoint score, pooled over the valve files.

    Per file, train on the first 400 rows and score the rest.

    Pooled over the files: F1 / FAR / MAR and the changepoint NAB score (60 s windows right of each changepoint).

    A file without labels (anomaly-free.csv) is scored in parts of an experiment's length: the FAR on normal days.
    """
    if use_folds:
        _one_shot_only(mode, assignments, "--folds")
        _no_per_file(per_file)
        _bench_folds("skab", [data], as_json, work, seeds, kinds, assignments, grid, grid_file, by, config,
                     far_normal_limit)
        return
    _bench("skab", data, as_json, work, seeds, kinds, assignments, config, mode, per_file)


NabDataOption = typer.Option(..., "--data", help="A NAB category folder (CSVs and windows.json), or a folder of "
                                                 "them; repeatable. Read in place, never copied.")


@bench_app.command("nab")
def bench_nab(data: list[Path] = NabDataOption, as_json: bool = JsonOption, work: Path | None = WorkOption,
              seeds: str | None = SeedsOption, kinds: str | None = KindsOption,
              assignments: list[str] | None = SetOption, use_folds: bool = FoldsOption,
              grid: list[str] | None = GridOption, grid_file: Path | None = GridFileOption,
              by: str | None = ByOption, config: Path | None = ConfigOption, mode: str = ModeOption,
              per_file: Path | None = PerFileOption):
    """NAB's scorer on NAB-layout folders: a normalised score per profile, per category and pooled.

    Each folder holds series and windows.json: train on each file's probationary period, score the rest.

    One normalised score per profile; several categories: a row per category and the pooled corpus.
    """
    if use_folds:
        _one_shot_only(mode, assignments, "--folds")
        _no_per_file(per_file)
        _bench_folds("nab", data, as_json, work, seeds, kinds, assignments, grid, grid_file, by, config)
        return
    if len(data) == 1 and any(data[0].glob("*.csv")):
        _bench("nab", data[0], as_json, work, seeds, kinds, assignments, config, mode, per_file)
        return
    _one_shot_only(mode, assignments, "several NAB categories")
    _bench_nab_categories(data, as_json, work, seeds, kinds, assignments, config, per_file)


SetsOption = typer.Option(None, "--sets", help="Comma-separated set names (6_cardio or cardio; default: every .npz "
                                                "in the folder).")
BaselinesOption = typer.Option(None, "--baselines", help="Comma-separated PyOD baselines (default IForest,ECOD,PCA,"
                                                         "KNN,AutoEncoder,VAE), or none.")
FitsOption = typer.Option(None, "--fits", help="normal (fit on normal training records), unsupervised (training "
                                               "anomalies unlabelled), or both (default).")
EpochsOption = typer.Option(None, "--epochs", help="Training epochs of aemon's detectors (default: the tabular "
                                                   "defaults).")
OutOption = typer.Option(None, "--out", help="Also write every (setting, set, seed, detector) row to this CSV file.")
TabularKindsOption = typer.Option(None, "--kinds", help="Comma-separated detector kinds of mlp_ae, cnn_ae, vae, "
                                                         "pca, knn (default: all), or none.")


@bench_app.command("adbench")
def bench_adbench(
    data: Path = DataOption, as_json: bool = JsonOption, work: Path | None = WorkOption,
    seeds: str | None = SeedsOption, kinds: str | None = TabularKindsOption, sets: str | None = SetsOption,
    baselines: str | None = BaselinesOption, fits: str | None = FitsOption, epochs: int | None = EpochsOption,
    out: Path | None = OutOption, assignments: list[str] | None = SetOption, config: Path | None = ConfigOption,
):
    """ADBench's protocol on its classical tabular sets, beside PyOD's classic detectors.

    Per set and seed a stratified 70 / 30 split through aemon's ingest, training and scoring.

    ROC AUC, PR AUC, F1 at each detector's own threshold, ranks.
    """

    from features.importers import DataSetError, adbench_files
    from flows.baselines import baseline_factories
    from monitoring.errors import BenchSettingError
    from monitoring.evaluation import adbench, benchmarks

    cfg = load(config)

    def names(text: str | None) -> tuple[str, ...] | None:
        if text is None:
            return None
        return () if text.strip() == "none" else tuple(k.strip() for k in text.split(",") if k.strip())

    try:
        seed_list = tuple(int(s) for s in seeds.split(",") if s.strip()) if seeds else ()
    except ValueError:
        fail(f"--seeds {seeds!r}: expected comma-separated integers like 0,1,2")
    try:  # a bad setting: one line, before any set is read
        settings = benchmarks.with_assignments(adbench.AdbenchSettings(), assignments or [])
        if epochs is not None:
            settings = benchmarks.with_assignments(settings, [f"detector_params.epochs={epochs}"])
        settings = benchmarks.with_overrides(settings, seeds=seed_list or None, kinds=names(kinds), sets=names(sets),
                                             baselines=names(baselines), fits=names(fits)).validate()
        adbench_files(data, settings.sets)  # the folder and the named sets exist
        makers = baseline_factories(settings.baselines)  # PyOD installed, names known
    except (BenchSettingError, DataSetError) as exc:
        fail(str(exc))
    quiet_libraries()
    with err_console.status("bench adbench") as status:
        result = adbench.run_adbench(data, settings, work_dir=work, out=out, baselines=makers,
                                     progress=lambda message: status.update(f"bench adbench: {message}"))
    adbench.log_adbench(cfg.mlflow_tracking_uri, cfg.mlflow_artifact_root, data, result)
    if as_json:
        for fit in settings.fits:
            for detector, values in result.summary(fit).iterrows():
                print(json_line({"fit": fit, "detector": detector, **values.to_dict()}))
        return
    print_adbench(result)


@app.command()
def train(
    stream: str,
    config: Path | None = ConfigOption,
    start: str | None = typer.Option(None, help="Start of the training range (ISO time); overrides the config."),
    end: str | None = typer.Option(None, help="End of the training range (ISO time); overrides the config."),
):
    """Train the stream's detectors, register each, and let the gate pick champion / challenger."""
    cfg = load(config, detectors=False)  # without torch: the server's boot waits only for what it needs
    cfg.stream(stream)
    bounds = parse_bounds(start=start, end=end)
    require_readings(cfg, stream)
    api_ready = begin_local_api()  # Prefect's server boots while the training code is imported
    cfg = load(config)  # the detector tables checked (torch imported) while it boots
    from flows.train import train_detectors
    from monitoring.models import promotion  # noqa: F401  (the flow's register task imports it: MLflow, matplotlib)
    from monitoring.models.registry import client_for

    client_for(cfg.mlflow_tracking_uri)  # MLflow store opened now (schema check, 0.5 s), kept for the registration
    quiet_libraries()
    api_ready()

    result = train_detectors(
        stream, config_path=str(config) if config else None,
        train_start=bounds.get("start"), train_end=bounds.get("end"),
    )
    print_training(result)


@app.command()
def score(
    stream: str,
    config: Path | None = ConfigOption,
    full: bool = typer.Option(False, help="Rescore all history, not only windows after the watermark."),
):
    """Score new windows with the champion model and write anomalies to DuckDB."""
    cfg = load(config, detectors=False)
    cfg.stream(stream)
    require_readings(cfg, stream)
    api_ready = begin_local_api()  # Prefect's server boots while the scoring code is imported
    from monitoring.models import registry

    cfg = load(config)
    registry.resolve_alias(cfg.mlflow_tracking_uri, stream)
    from flows.score import score_stream

    quiet_libraries()
    api_ready()

    result = score_stream(stream, config_path=str(config) if config else None, full=full)
    console.print(
        f"{stream}: model version {result['model_version']}, {result['windows_scored']} windows scored, "
        f"{result['anomalies_written']} new anomalous windows", markup=False,
    )


@app.command()
def drift(
    stream: str,
    config: Path | None = ConfigOption,
    retrain: bool | None = typer.Option(None, "--retrain/--no-retrain",
                                        help="Train when drift holds (default: the stream's drift.retrain)."),
    as_json: bool = typer.Option(False, "--json", help="The check as one JSON object; nothing else on stdout."),
):
    """Compare recent readings, scores and alert rate with the champion; retrain when drift holds.

    The check is stored (drift_checks table, MLflow); a retrain goes through the gate."""
    import json

    cfg = load(config, detectors=False)
    cfg.stream(stream)
    require_readings(cfg, stream)
    api_ready = begin_local_api()  # Prefect's server boots while the drift code is imported
    from monitoring.models import registry

    cfg = load(config)
    registry.resolve_alias(cfg.mlflow_tracking_uri, stream)
    from flows.drift import check_drift

    quiet_libraries()
    api_ready()
    result = check_drift(stream, config_path=str(config) if config else None, retrain=retrain)
    if as_json:
        print(json.dumps(result, default=str))
        return
    print_drift(result)
    if result["training"] is not None:
        print_training(result["training"])


@app.command()
def serve(config: Path | None = ConfigOption):
    """Run every stream's ingest, score, train and drift-check flows on their schedules until stopped.

    Needs a Prefect API with a scheduler (PREFECT_API_URL, e.g. `prefect server start --host 127.0.0.1`)."""
    from prefect.settings import get_current_settings

    cfg = load(config)
    if not get_current_settings().api.url:
        fail("aemon serve needs a Prefect server: start one (`prefect server start --host 127.0.0.1`) and set "
             "PREFECT_API_URL=http://127.0.0.1:4200/api; Prefect's temporary local API runs no scheduler")
    from flows.serve import serve_streams

    quiet_libraries()
    serve_streams(cfg, str(config.resolve()) if config else None)


RecordingArgument = typer.Argument(..., help="Recorded readings, CSV or Parquet, in the stream's schema.")


@app.command()
def replay(
    file: Path = RecordingArgument,
    stream: str = typer.Option(..., "--stream", "-s", help="The stream whose inbox receives the chunks."),
    speed: float = typer.Option(1.0, min=0, help="Data seconds per wall second (60: an hour of data a minute); "
                                "0 writes every chunk at once."),
    chunk: float = typer.Option(60.0, min=0.001, help="Seconds of data per chunk (one inbox file each)."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="--no-wait writes every chunk at once (as --speed 0)."),
    shift: bool = typer.Option(True, "--shift-to-now/--keep-times",
                               help="Move every time by one offset so the first reading is now (default), or keep "
                                    "the recorded times (a recording the lake does not hold yet)."),
    config: Path | None = ConfigOption,
):
    """Feed a recorded file into a stream's inbox in timed chunks, as a live sensor would."""
    import pandas as pd

    from flows.replay import ReplayedChunk, replay_file

    cfg = load(config)
    settings = cfg.stream(stream)
    if not file.is_file():
        fail(f"{file}: no such file; expected a recorded CSV or Parquet file")
    inbox = cfg.local_inbox(stream)

    def report(done: ReplayedChunk) -> None:
        console.print(f"{done.written_s:8.1f} s  {done.path.name}  {done.rows} rows from {done.first}",
                      highlight=False, markup=False)

    shift_to = pd.Timestamp.now("UTC").tz_localize(None).floor("s") if shift else None
    written = replay_file(file, settings.stream_schema(), inbox, speed=speed if wait else 0.0, chunk_s=chunk,
                          shift_to=shift_to, on_chunk=report)
    console.print(f"{sum(c.rows for c in written)} rows in {len(written)} files written to {inbox}", highlight=False,
                  markup=False)


@app.command()
def sql(query: str, config: Path | None = ConfigOption):
    """Run a read-only SQL query against the warehouse and print the result.

    No Prefect API is needed; flows may write meanwhile: the query reads one committed snapshot."""
    from flows.locations import load_warehouse
    from monitoring.store.connection import query_rows

    warehouse, _ = load_warehouse(config)  # the warehouse settings only: no torch, no Prefect, no pandas
    print_query(*query_rows(warehouse, query))


@app.command("status")
def status(
    stream: str | None = typer.Argument(None, help="Only this stream (default: every configured stream)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per stream and line; nothing else on stdout."),
    config: Path | None = ConfigOption,
):
    """Where each stream stands: ingested files, readings and scoring per asset, active incidents.

    Read from the warehouse alone (no Prefect API, no MLflow), while flows write."""
    from flows.locations import stream_names
    from flows.render import print_stream_status
    from monitoring.store.connection import connect
    from monitoring.store.overview import stream_status

    configured = stream_names(config)
    warehouse = _incidents_warehouse(config)
    with connect(warehouse) as con:
        found = [stream_status(con, name) for name in ([stream] if stream is not None else configured)]
    if stream is not None and stream not in configured and not found[0].files and found[0].assets.empty:
        fail(f"stream {stream!r} is not configured and the warehouse holds nothing of it; configured streams: "
             f"{configured}")
    for one in found:
        if as_json:
            print(json_line(one.to_dict()))
        else:
            print_stream_status(one)


warehouse_app = typer.Typer(help="The warehouse: connect from any DuckDB client, upgrade, upkeep.",
                            no_args_is_help=True)
app.add_typer(warehouse_app, name="warehouse")


@warehouse_app.command("attach")
def warehouse_attach(
    config: Path | None = ConfigOption,
    online: bool = typer.Option(False, help="INSTALL the extensions from DuckDB's repository instead of loading "
                                             "the files installed with aemon."),
):
    """Print the SQL that any DuckDB client (CLI, Python, a BI tool) runs to read the warehouse.

    Read-only, on the latest committed snapshot, never delaying a flow."""
    from flows.locations import load_warehouse
    from monitoring.store.connection import client_sql

    warehouse, _ = load_warehouse(config)
    statements = client_sql(warehouse, offline=not online)
    print(";\n".join(statements) + ";")


FromExportOption = typer.Option(
    None, help="Read the old tables from this EXPORT DATABASE (FORMAT parquet) folder: for a warehouse.duckdb "
               "written by a newer DuckDB than this release's.")


@warehouse_app.command("upgrade")
def warehouse_upgrade(config: Path | None = ConfigOption, from_export: Path | None = FromExportOption):
    """Move a warehouse of an earlier release (warehouse.duckdb) into the DuckLake catalog."""
    from flows.locations import load_warehouse
    from monitoring.store.upgrade import upgrade_legacy

    warehouse, _ = load_warehouse(config)
    copied = upgrade_legacy(warehouse, from_export)
    for table, n in copied.items():
        console.print(f"{table}: {n} rows", highlight=False, markup=False)
    console.print(f"upgraded into {redact(warehouse.catalog)}; the old file is kept as {warehouse.legacy}.upgraded",
                  highlight=False, soft_wrap=True, markup=False)


@warehouse_app.command("maintain")
def warehouse_maintain(config: Path | None = ConfigOption):
    """Run the warehouse's upkeep now; `aemon serve` runs it daily.

    Merges small files, expires old snapshots and removes orphaned files."""
    from flows.locations import load_warehouse
    from monitoring.store.maintenance import maintain

    warehouse, settings = load_warehouse(config)
    result = maintain(warehouse, settings.snapshot_retention_days)
    console.print(f"data files {result.files_before} -> {result.files_after}, snapshots {result.snapshots_before} "
                  f"-> {result.snapshots_after}, {result.files_removed} files removed", highlight=False, markup=False)


@app.command()
def demo(
    config: Path | None = ConfigOption,
    days: float = typer.Option(14.0, help="Days of synthetic history."),
    assets: int = typer.Option(3, help="Number of pumps."),
    seed: int = typer.Option(7, help="Seed of the synthetic data."),
):
    """Generate a pump stream with injected faults, ingest, train, score, and report what was found."""
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    api_ready = begin_local_api()  # Prefect's server boots while the demo's code is imported
    from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

    from features.synthetic import SyntheticSpec
    from flows.demo import DEMO_STREAM, run_demo

    quiet_libraries()
    api_ready()

    cfg = load(config)
    cfg.local_inbox(DEMO_STREAM)  # the demo writes files there: an s3:// inbox is one line, before any step

    spec = SyntheticSpec(n_assets=assets, days=days, seed=seed)
    labels = {
        "generate": "generating synthetic pump data",
        "ingest": "ingesting files into the lake (starting Prefect's local API)",
        "train": "training the detectors in parallel and registering them in MLflow",
        "score": "scoring all windows with the champion",
        "evaluate": "matching incidents with the injected faults",
    }
    started = time.perf_counter()
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console) as progress:
        started_steps: list[TaskID] = []

        def step(name: str) -> None:
            if started_steps:
                progress.update(started_steps[-1], completed=1, total=1)
            started_steps.append(progress.add_task(labels[name], total=None))

        result = run_demo(cfg, spec, config_path=str(config) if config else None, step=step)
        progress.update(started_steps[-1], completed=1, total=1)
    print_demo(cfg, result, time.perf_counter() - started)


incidents_app = typer.Typer(help="Incidents: list, show, acknowledge, close.", no_args_is_help=True)
app.add_typer(incidents_app, name="incidents")
ByOption = typer.Option(None, "--by", help="Who does it (default: the login name).")
NoteOption = typer.Option(None, "--note", help="A note kept in the incident's history.")


def _incidents_warehouse(config: Path | None):
    """The warehouse (settings only: no torch, no Prefect), refusing one that does not exist yet."""
    from flows.locations import load_warehouse

    warehouse, _ = load_warehouse(config)
    if not warehouse.exists():
        fail(f"no warehouse at {warehouse.catalog} yet; run `aemon ingest STREAM` and `aemon score STREAM` first")
    return warehouse


@incidents_app.command("list")
def incidents_list(
    stream: str | None = typer.Argument(None, help="Only this stream's incidents."),
    all_: bool = typer.Option(False, "--all", help="Closed incidents too (default: open, acknowledged, recovered)."),
    config: Path | None = ConfigOption,
):
    """Incidents by stream, asset and start: id, status, level, severity, top sensors.

    The arrow beside a sensor: its reading above or below what the model expects."""
    from flows.locations import stream_names
    from flows.render import print_incidents
    from monitoring.store.connection import connect
    from monitoring.store.incident_records import ACTIVE, read_incidents

    with connect(_incidents_warehouse(config)) as con:
        rows = read_incidents(con, stream, statuses=None if all_ else ACTIVE)
        every = len(rows) if all_ else len(read_incidents(con, stream))
    if stream is not None and not every and stream not in stream_names(config):
        # a typo, not a quiet stream: a stream no longer configured still lists its incidents
        fail(f"stream {stream!r} is not configured and has no incidents; configured streams: "
             f"{stream_names(config)}")
    print_incidents(rows, "incidents" if all_ else "active incidents", closed=every - len(rows))


@incidents_app.command("show")
def incidents_show(incident: str = typer.Argument(..., help="An incident id, or the start of one."),
                   config: Path | None = ConfigOption):
    """One incident: its state and its whole history."""
    from flows.render import print_incident
    from monitoring.alerting.lifecycle import resolve_incident
    from monitoring.store.connection import connect
    from monitoring.store.incident_records import read_incident_log

    with connect(_incidents_warehouse(config)) as con:
        state = resolve_incident(con, incident)
        log = read_incident_log(con, state["incident_id"])
    print_incident(state, log)


def _actor(by: str | None) -> str:
    import getpass

    return by or os.environ.get("USER") or getpass.getuser()


@incidents_app.command("ack")
def incidents_ack(incident: str = typer.Argument(..., help="An incident id, or the start of one."),
                  by: str | None = ByOption, note: str | None = NoteOption, config: Path | None = ConfigOption):
    """Acknowledge an open or recovered incident: someone is on it (its alerts go on: escalation, recovery)."""
    from monitoring.alerting.lifecycle import acknowledge

    state = acknowledge(_incidents_warehouse(config), incident, _actor(by), note)
    console.print(f"incident {state['incident_id']} ({state['stream']}/{state['asset']}) acknowledged by "
                  f"{state['acknowledged_by']}; its alert goes out with the stream's next scoring run", markup=False)


@incidents_app.command("close")
def incidents_close(incident: str = typer.Argument(..., help="An incident id, or the start of one."),
                    by: str | None = ByOption, note: str | None = NoteOption, config: Path | None = ConfigOption):
    """Close an incident by hand; flags that continue after it make a new incident."""
    from monitoring.alerting.lifecycle import close_incident

    state = close_incident(_incidents_warehouse(config), incident, _actor(by), note)
    console.print(f"incident {state['incident_id']} ({state['stream']}/{state['asset']}) {state['closed_reason']}; "
                  "its alert goes out with the stream's next scoring run", markup=False)


models_app = typer.Typer(help="Registered detector versions: list, compare, promote, roll back.",
                         no_args_is_help=True)
threshold_app = typer.Typer(help="Thresholds of the champion model.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(threshold_app, name="threshold")


@models_app.command("list")
def models_list(config: Path | None = ConfigOption):
    """Every stream's registered model: versions, champion, challenger, champion history."""
    from flows.locations import load_tracking_uri
    from monitoring.models.listing import list_models_from_store

    tracking_uri = load_tracking_uri(config)
    frame = list_models_from_store(tracking_uri)  # a SQLite store without importing MLflow
    if frame is None:
        from monitoring.models import registry

        quiet_libraries()
        frame = registry.list_models(tracking_uri)
    if frame.empty:
        console.print(f"no registered models in {redact(tracking_uri)}; run `aemon train STREAM` first", markup=False)
        return
    print_frame(frame)


@models_app.command("compare")
def models_compare(stream: str, config: Path | None = ConfigOption):
    """A table of the stream's versions: detector, aliases, threshold rule and value, metrics."""
    from monitoring.models import registry

    cfg = load(config)
    cfg.stream(stream)
    quiet_libraries()
    print_frame(registry.compare_versions(cfg.mlflow_tracking_uri, stream), title=registry.model_name(stream))


@models_app.command("promote")
def models_promote(stream: str, version: int, config: Path | None = ConfigOption):
    """Make VERSION the champion (by hand, without the gate); `rollback` undoes it."""
    from monitoring.models import registry

    cfg = load(config)
    cfg.stream(stream)
    quiet_libraries()
    champion = registry.promote(cfg.mlflow_tracking_uri, stream, version)
    console.print(f"{champion.name} champion is now version {champion.version} ({champion.kind})", markup=False)


@models_app.command("rollback")
def models_rollback(stream: str, config: Path | None = ConfigOption):
    """Put the previous champion back (again: the one before it)."""
    from monitoring.models import registry

    cfg = load(config)
    cfg.stream(stream)
    quiet_libraries()
    replaced, champion = registry.rollback(cfg.mlflow_tracking_uri, stream)
    console.print(f"{champion.name}: version {replaced} rolled back; champion is version {champion.version} "
                  f"({champion.kind})", markup=False)


@threshold_app.command("recalibrate")
def threshold_recalibrate(
    stream: str,
    config: Path | None = ConfigOption,
    start: str | None = typer.Option(None, help="Start of the recent range (ISO time); default: "
                                                   "threshold.recalibrate_days before its end."),
    end: str | None = typer.Option(None, help="End of the recent range (ISO time); default: the last reading."),
):
    """Refit the champion's threshold on recent normal windows; register it through the gate."""
    cfg = load(config, detectors=False)
    cfg.stream(stream)
    bounds = parse_bounds(start=start, end=end)
    require_readings(cfg, stream)
    api_ready = begin_local_api()  # Prefect's server boots while the training code is imported
    from monitoring.models import registry

    cfg = load(config)
    registry.resolve_alias(cfg.mlflow_tracking_uri, stream)
    from flows.train import recalibrate_threshold

    quiet_libraries()
    api_ready()
    result = recalibrate_threshold(stream, config_path=str(config) if config else None,
                                   start=bounds.get("start"), end=bounds.get("end"))
    console.print(
        f"registered {result['model_name']} v{result['version']} (threshold {result['threshold']:.6g}, aliases "
        f"{','.join(result['aliases']) or '-'}); champion is v{result['champion']}: {result['reason']}",
        highlight=False, soft_wrap=True, markup=False)


class HideUserErrorTracebacks(logging.Filter):
    """Prefect logs every failed task and flow with its traceback. For a user mistake (a
    domain error such as an empty training range) the one-line message is the whole story."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], user_errors()):
            record.exc_info = None
            record.exc_text = None
        return True


def begin_local_api() -> Callable[[], None]:
    """Prefect's ephemeral API (no PREFECT_API_URL; its first start on a machine sets up
    Prefect's database, one command at a time: flows.local_api), in two halves: the server
    starts booting now, on another core, and the function returned waits for it. Call that
    before the first flow run."""
    from flows.local_api import begin_local_api as begin

    return begin()


def command_logger(name: str) -> logging.Logger:
    """The log of a command's steps run in-process (no flow run to log to): lines on
    stderr in the form of Prefect's run logs."""
    logger = logging.getLogger(f"aemon.{name}")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s.%(msecs)03d | %(levelname)-7s | %(name)s - %(message)s",
                                               datefmt="%H:%M:%S"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


def quiet_libraries() -> None:
    """Keep MLflow's informational chatter (table migrations, pickling notes) off the
    console, and user-mistake tracebacks out of Prefect's run logs. Called after MLflow is
    imported: importing it sets its own log levels."""
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # aemon logs its own PythonModel class on purpose (installed code, not a pickled closure).
    logging.getLogger("mlflow.pyfunc").setLevel(logging.ERROR)
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logging.getLogger(name).addFilter(HideUserErrorTracebacks())


def main() -> None:
    for key, value in ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    # User mistakes become one line; any other error keeps its traceback.
    try:
        code = app(standalone_mode=False, prog_name="aemon")
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except USAGE_ERRORS as exc:  # usage errors: click's own message
        exc.show()  # type: ignore[attr-defined]
        sys.exit(exc.exit_code)  # type: ignore[attr-defined]
    except (click.exceptions.Abort, typer.Abort):
        sys.exit(130)
    except user_errors() as exc:
        print_error(exc)
        sys.exit(2)
    except OSError as exc:
        if exc.errno not in STORAGE_ERRNOS:
            raise
        # the disk, not aemon: say so (and which file, when the OS names it); warehouse writes
        # are transactions and lake files are staged, so the same command converges once there is room
        where = escape(f"{exc.filename}: ") if exc.filename else ""
        code_name = errno.errorcode.get(exc.errno, "")
        err_console.print(f"[bold red]error:[/] {where}{escape(str(exc.strerror or exc))} (errno {code_name}): "
                          "the disk is full or not writable; run the command again when it has room",
                          highlight=False, soft_wrap=True)
        sys.exit(3)
    if isinstance(code, int) and code:
        sys.exit(code)
