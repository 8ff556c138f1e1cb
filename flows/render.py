"""What the `aemon` commands print: tables of ingested files, data quality, evaluations,
benchmarks, trainings, model versions and query results, and the demo's report. The
commands themselves live in flows.cli; nothing here decides an exit code.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from monitoring.store.redaction import redact

if TYPE_CHECKING:  # imported where used: the CLI starts without pandas
    import pandas as pd

# Console output stays readable when piped: rich would otherwise wrap tables at 80 columns.
WIDTH = None if sys.stdout.isatty() else 140
console = Console(width=WIDTH)
err_console = Console(stderr=True)


def print_batches(title: str, results: list[dict[str, Any]]) -> str | None:
    """The audit of ingested files as a table. Returns a one-line summary when a file was
    rejected or rows were quarantined (they are in the quarantine table), else None."""
    table = Table("file", "status", "rows in", "accepted", "quarantined", "note", title=title)
    paths = [Path(r["file"]) for r in results]
    # names relative to the folder all files share, so valve1/3.csv and valve2/3.csv differ
    root = Path(os.path.commonpath(paths)) if len(paths) > 1 else (paths[0].parent if paths else Path())
    for r, path in zip(results, paths, strict=True):
        table.add_row(Text(str(path.relative_to(root))), r["status"], str(r["rows_in"]), str(r["rows_accepted"]),
                      str(r["rows_quarantined"]), Text(r["error"] or _batch_note(r)))
    console.print(table)
    return batch_summary(results)


def plural(n: int, word: str) -> str:
    """`1 row`, `2 rows`, `0 rows`."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def batch_summary(results: list[dict[str, Any]]) -> str | None:
    """One line on what an ingest did, when a file was rejected or rows were quarantined
    (else None): files ingested / rejected / skipped, rows accepted, rows quarantined
    (those of rejected files included: they are in the quarantine table too)."""
    rejected = [r for r in results if r["status"] == "rejected"]
    n_quarantined = sum(r["rows_quarantined"] for r in results)
    if not (rejected or n_quarantined):
        return None
    statuses = (("ok", "ingested"), ("rejected", "rejected"), ("skipped", "skipped (content seen before)"))
    counts = [f"{n} {label}" for status, label in statuses
              if (n := sum(1 for r in results if r["status"] == status))]
    n_accepted = sum(r["rows_accepted"] for r in results)
    line = (f"{plural(len(results), 'file')}: {', '.join(counts)}; {plural(n_accepted, 'row')} accepted, "
            f"{plural(n_quarantined, 'row')} quarantined")
    if n_quarantined:
        line += " (see the quarantine table)"
    if rejected:
        line += f"; first rejected: {rejected[0]['error']}"
    return line


def _batch_note(r: dict) -> str:
    notes = [f"{r[k]} {label}" for k, label in (("rows_duplicate", "duplicates"),
                                                  ("rows_out_of_order", "out of order (sorted)"),
                                                  ("rows_late", "before the scoring watermark (rescored)"))
             if r.get(k)]
    return ", ".join(notes)


def print_quality(stream: str, report: pd.DataFrame) -> None:
    import pandas as pd

    table = Table("sensor", "grade", "missing %", "gaps", "largest gap s", "flatline %", "monotonic",
                  "interval s", "min", "max", "quarantined", title=f"data quality {stream}")
    colours = {"high": "green", "medium": "yellow", "low": "red"}
    for r in report.itertuples(index=False):
        table.add_row(
            r.sensor, f"[{colours[r.grade]}]{r.grade}[/]", f"{r.missing_pct:.2f}", str(r.n_gaps),
            "" if pd.isna(r.largest_gap_s) else f"{r.largest_gap_s:g}", f"{r.flatline_pct:.1f}",
            "" if pd.isna(r.monotonic) else r.monotonic, "" if pd.isna(r.interval_s) else f"{r.interval_s:g}",
            "" if pd.isna(r.min_value) else f"{r.min_value:.4g}", "" if pd.isna(r.max_value) else f"{r.max_value:.4g}",
            str(r.n_quarantined),
        )
    console.print(table)
    duplicates = int(report["n_duplicates"].iloc[0]) if len(report) else 0
    console.print(f"{duplicates} duplicate timestamps in the stream (quarantined at ingest)", markup=False)
    for r in report.itertuples(index=False):
        if r.grade != "high":
            console.print(f"  [bold]{r.sensor}[/] ({r.grade}): {r.advice}", highlight=False, soft_wrap=True)


def _plain_table(columns, title: str | None = None) -> Table:
    """A table of data: headers and cells are text as stored (a value such as "[/]" is no markup)."""
    table = Table(title=title)
    for column in columns:
        table.add_column(Text(str(column)))
    return table


def print_query(columns: list[str], rows: list[tuple]) -> None:
    table = _plain_table(columns)
    for row in rows:
        table.add_row(*[Text("" if v is None else str(v)) for v in row])
    console.print(table)


EVALUATION_ROWS = [
    ("precision", "pointwise precision"), ("recall", "pointwise recall"),
    ("f1", "pointwise F1 (SKAB: tp / (tp + (fn + fp) / 2))"), ("far", "false alarm rate %, fp / (fp + tn)"),
    ("mar", "missed alarm rate %, fn / (fn + tp)"),
    ("f1_point_adjusted", "point-adjusted F1 (optimistic: one alarm earns the whole event)"),
    ("event_precision", "event precision (overlap)"), ("event_recall", "event recall (overlap)"),
    ("event_f1", "event F1 (overlap)"), ("nab_standard", "NAB standard"), ("nab_low_fp", "NAB reward low FP"),
    ("nab_low_fn", "NAB reward low FN"), ("mean_delay_s", "mean detection delay, s"),
    ("mean_forewarning_s", "mean forewarning (event end - first alarm), s"),
]



def print_evaluation(row: dict, stored: bool) -> None:
    import pandas as pd

    percent = {"far", "mar"}  # stored as fractions, shown as SKAB prints them
    frame = pd.DataFrame([(label, row[key] * (100 if key in percent else 1)) for key, label in EVALUATION_ROWS],
                         columns=["metric", "value"])
    frame["value"] = frame["value"].astype(float)
    print_frame(frame, title=f"{row['stream']}: {row['model_name']} v{row['model_versions']}, "
                             f"{row['range_start']:%Y-%m-%d %H:%M} .. {row['range_end']:%Y-%m-%d %H:%M}")
    console.print(
        f"{row['n_rows']} readings of {row['n_assets']} assets, {row['n_labeled_rows']} labeled; "
        f"{row['n_events']} labeled events, {row['n_detected_events']} detected; {row['n_alarms']} alarms "
        f"(tp {row['tp']}, fp {row['fp']}, fn {row['fn']}, tn {row['tn']})", highlight=False, soft_wrap=True,
        markup=False)
    where = "stored as" if stored else "unchanged since"
    console.print(f"{where} evaluation {row['evaluation_id']} (MLflow run {row['mlflow_run_id']})",
                  highlight=False, soft_wrap=True, markup=False)


def print_bench(dataset: str, rows, seconds: float, mode: str = "one-shot") -> None:
    from monitoring.evaluation.benchmarks import published

    reference = published(dataset) if mode == "one-shot" else []  # the published rows are one-shot
    normal = any(row.normal is not None for row in rows)  # SKAB's recordings without labels, in parts
    columns = ["detector", *([] if dataset == "nab" else ["F1", "FAR %", "MAR %"]),
               "NAB standard", "NAB low FP", "NAB low FN", *(["FAR % normal days"] if normal else [])]
    table = Table(*columns, title=f"{dataset} ({mode}): {rows[0].files if rows else 0} files, {seconds:.0f} s "
                                  "(aemon rows: causal alarms" + ("; published rows: as their authors report)"
                                                                  if reference else ")"))
    for row in rows:
        d = row.to_dict()
        cells = [d["detector"]]
        if dataset != "nab":
            cells += [f"{d['f1']:.3f}", f"{d['far']:.2f}", f"{d['mar']:.2f}"]
        table.add_row(*cells, *(f"{d[k]:.2f}" for k in ("nab_standard", "nab_low_fp", "nab_low_fn")),
                      *([_figure(d.get("far_normal"))] if normal else []))
    for name, values in reference:
        table.add_row(f"[dim]{name} (published)[/]", *(f"[dim]{v}[/]" for v in values), *([""] if normal else []))
    console.print(table)
    if normal:
        first = next(row for row in rows if row.normal is not None)
        console.print(f"FAR % normal days: the files without labels cut into {first.normal_parts} parts of about "
                      f"an experiment's length, {int(first.normal.fp + first.normal.tn):,} scored readings, "
                      "each part scored as an experiment (not part of the published protocol)",
                      highlight=False, soft_wrap=True, markup=False)
        events = ", ".join(f"{d['detector']} {_figure(d.get('events_per_hour_normal'), 1)}"
                           for d in (row.to_dict() for row in rows) if "events_per_hour_normal" in d)
        console.print(f"Changepoints predicted on normal days (incident events, all false), per hour: {events}",
                      highlight=False, soft_wrap=True, markup=False)


def _figure(value, digits: int = 2) -> str:
    return "-" if value is None or value != value else f"{value:.{digits}f}"


def print_nab_categories(table: pd.DataFrame, categories: list[str], seconds: float) -> None:
    """A row per category and detector, then the pooled corpus, with NAB's published rows
    for the same category beside them. A category without windows shows its raw total."""
    from monitoring.evaluation.folds import NAB_PUBLISHED_SOURCE, POOLED, nab_published

    out = Table("category", "detector", "files", "windows", "NAB standard", "NAB low FP", "NAB low FN",
                "raw standard", title=f"nab: {len(categories)} categories, {seconds:.0f} s (published rows dim: "
                                      f"{NAB_PUBLISHED_SOURCE})")
    for group in [*categories, POOLED]:
        part = table[table["group"] == group]
        for record in part.to_dict("records"):
            out.add_row(group, record["detector"], f"{record['files']:.0f}", f"{record['windows']:.0f}",
                        *(_figure(record[k]) for k in ("nab_standard", "nab_low_fp", "nab_low_fn")),
                        _figure(record["nab_raw_standard"]))
        no_windows = len(part) > 0 and part["windows"].iloc[0] == 0
        for name, values in nab_published(group, categories).items():
            shown = ["-", "-", "-", "[dim]" + _figure(values[0]) + "[/]"] if no_windows else \
                [f"[dim]{_figure(v)}[/]" for v in values] + ["-"]
            out.add_row(f"[dim]{group}[/]", f"[dim]{name} (published)[/]", "", "", *shown)
        out.add_section()
    console.print(out)


def _defaults_held_out(fold: dict, by: str) -> str:
    """The defaults' score on a fold's held-out group: the raw total where it has no windows,
    "-" where the defaults do not run the detector (a candidate that changes `kinds`)."""
    if fold["default_raw_standard"] != fold["default_raw_standard"]:
        return "-"
    if fold["default_score"] != fold["default_score"]:
        return f"raw {fold['default_raw_standard']:.2f}"
    return _figure(fold["default_score"], 3 if by == "f1" else 2)


def print_folds(dataset: str, report, seconds: float) -> None:
    """Per fold: the choice made on the other folds and its held-out score; per detector:
    in-sample (chosen on all) beside out-of-fold and the defaults."""
    by = report.by
    normal = report.far_normal_limit is not None and "chosen_far_normal" in report.folds.columns and \
        report.folds["chosen_far_normal"].notna().any()
    among = f" among those with FAR on normal days <= {report.far_normal_limit:g} % (else the lowest)" if normal \
        else ""
    # a candidate is a whole set of settings, too long for a column: the tables name it by
    # number and the legend above them spells it out
    short = {name: name if i == 0 else f"#{i}" for i, name in enumerate(report.candidates)}
    legend = Table("candidate", "settings", title=f"{dataset} --folds: the candidates")
    for name, label in short.items():
        # Text: settings such as kinds=[mlp_ae,knn] are shown as typed, not read as markup
        legend.add_row(label, "the benchmark's defaults" if label == name else Text(name))
    console.print(legend)
    folds = Table(title=f"{dataset} --folds: {len(report.candidates)} candidates, chosen by {by}{among}, "
                        f"{seconds:.0f} s")
    for header in ("detector", "held out", "chosen on the others", "train", "held out score", "defaults held out",
                   "best on held out (in-sample)", *(["FAR % normal days (chosen / defaults)"] if normal else [])):
        folds.add_column(header)
    for r in report.folds.to_dict("records"):
        held = _figure(r["held_out_score"], 3 if by == "f1" else 2)
        if r["held_out_score"] != r["held_out_score"]:  # no windows: the raw total instead
            held = f"raw {r['held_out_raw_standard']:.2f}"
        folds.add_row(r["detector"], r["held_out"], short[r["chosen"]],
                      _figure(r["train_score"], 3 if by == "f1" else 2),
                      held, _defaults_held_out(r, by),
                      f"{short[r['best_on_held_out']]} ({_figure(r['best_held_out_score'], 3 if by == 'f1' else 2)})",
                      *([f"{_figure(r['chosen_far_normal'])} / {_figure(r['default_far_normal'])}"] if normal else []))
    console.print(folds)
    keys = [k for k in ("f1", "far", "mar", "nab_standard", "nab_low_fp", "nab_low_fn")
            if f"out_of_fold_{k}" in report.summary.columns]
    labels = {"f1": "F1", "far": "FAR %", "mar": "MAR %", "nab_standard": "NAB standard", "nab_low_fp": "NAB low FP",
              "nab_low_fn": "NAB low FN"}
    summary = Table("detector", "figures", *(labels[k] for k in keys), *(["FAR % normal days"] if normal else []),
                    title=f"{dataset}: in-sample vs out-of-fold, pooled over all files")
    for r in report.summary.to_dict("records"):
        for label, prefix in ((f"in-sample ({short[r['in_sample_choice']]})", "in_sample_"),
                              ("out-of-fold", "out_of_fold_"), ("defaults", "defaults_")):
            # the normal recording is one: out of fold it is each fold's choice, shown per fold above
            far_normal = [] if not normal else ["" if prefix == "out_of_fold_" else _figure(r[prefix + "far_normal"])]
            summary.add_row(r["detector"], label, *(_figure(r[prefix + k], 3 if k == "f1" else 2) for k in keys),
                            *far_normal)
        summary.add_section()
    console.print(summary)


def print_adbench(result) -> None:
    """Per setting: ROC AUC per set (mean over seeds; rank among all detectors in brackets),
    then the averages, F1 at each detector's own threshold against the best any threshold
    gives, and the significance tests."""
    from monitoring.evaluation.adbench import comparisons, ranks

    kinds = list(result.settings.kinds)
    seeds = ",".join(str(s) for s in result.settings.seeds)
    for fit in result.settings.fits:
        per_set = result.per_set(fit)
        rank = ranks(per_set)
        table = Table("set", *per_set.columns, title=f"ADBench, {fit} fit: ROC AUC (rank), seeds {seeds}")
        for name in per_set.index:
            table.add_row(name, *(f"{per_set.loc[name, d]:.3f} ({rank.loc[name, d]:g})" for d in per_set.columns))
        console.print(table)
        summary = result.summary(fit)
        table = Table("detector", "ROC AUC", "PR AUC", "avg rank", "F1 own thr", "precision", "recall", "best F1",
                      "F1 gap", "fit s", title=f"ADBench, {fit} fit: mean over {len(per_set)} sets")
        for detector, v in summary.iterrows():
            table.add_row(str(detector), *(f"{v[k]:.3f}" for k in ("roc_auc", "pr_auc")), f"{v['rank']:.2f}",
                          *(f"{v[k]:.3f}" for k in ("f1", "precision", "recall", "best_f1", "f1_gap")),
                          f"{v['fit_s']:.2f}")
        console.print(table)
        friedman, tests = comparisons(per_set, kinds)
        lines = [f"Friedman p = {friedman:.3g} over {len(per_set.dropna())} sets"]
        for kind, group in tests.groupby("detector", sort=False):
            shown = ", ".join(f"{r.against} {r.median_diff:+.3f} (p {r.p_holm:.2g})" for r in group.itertuples())
            lines.append(f"{kind} vs: {shown}")
        console.print("Wilcoxon signed-rank on per-set ROC AUC, median difference, Holm-corrected p:\n  "
                      + "\n  ".join(lines), highlight=False, soft_wrap=True)
    console.print(f"{result.seconds:.0f} s", highlight=False, markup=False)


def print_training(result: dict) -> None:
    table = Table("detector", "version", "aliases", "threshold", "epochs", "fit s", "val FAR", "F1", "PR-AUC",
                  title=f"{result['model_name']}: {result['train_windows']} training / "
                        f"{result['val_windows']} calibration windows")
    for c in result["candidates"]:
        table.add_row(c["kind"], str(c["version"]), ",".join(c["aliases"]) or "-", f"{c['threshold']:.4g}",
                      str(c["epochs"]), f"{c['fit_seconds']:.1f}", f"{c['far']:.3f}", _metric(c.get("f1")),
                      _metric(c.get("pr_auc")))
    console.print(table)
    verb = "promoted to champion" if result["promoted"] else "champion unchanged"
    console.print(f"gate: {verb}, champion is v{result['version']} ({result['kind']}); {result['reason']}",
                  highlight=False, soft_wrap=True, markup=False)


def print_drift(result: dict) -> None:
    """A drift check: per sensor KS statistic, p-value against its limit, PSI, medians and
    whether it drifted; then the scores, the alert rate against the implied one, and the decision."""
    table = Table("feature", "test", "statistic", "p", "p limit", "PSI", "recent", "reference", "n recent",
                  "drifted", title=f"drift {result['stream']}: {result['model_name']} v{result['model_version']}, "
                                   f"readings {result['recent_start'][:16]} .. {result['recent_end'][:16]}")
    names = {"__score__": "window score", "__alert_rate__": "alert rate"}
    for f in result["features"]:
        rate = f["kind"] == "alert_rate"
        table.add_row(
            names.get(f["feature"], f["feature"]), f["test"], _number(f["statistic"], rate), _number(f["p_value"]),
            _number(f["p_limit"]), _number(f["psi"]), _number(f["recent_value"], rate),
            _number(f["reference_value"], rate) + (" expected" if rate else ""), str(f["n_recent"]),
            "[red]yes[/]" if f["drifted"] else "no")
    table.caption = ("drifted: p below its limit (alpha / tests) and PSI above drift.psi_threshold; the alert rate: "
                     "p below its limit and at least drift.alert_rate_ratio x the expected rate. recent, reference: "
                     "medians")
    console.print(table)
    for f in result["features"]:
        if f["note"]:
            console.print(f"  {names.get(f['feature'], f['feature'])}: {f['note']}", highlight=False, soft_wrap=True,
                          markup=False)
    verdict = "[bold red]drift[/]" if result["drifted"] else "[green]no drift[/]"
    console.print(f"{verdict}: {escape(result['decision'])} (check {result['check_id']}, MLflow run "
                  f"{result['mlflow_run_id']})", highlight=False, soft_wrap=True)
    training = result.get("training")
    if training is not None and "deployment" in training:
        console.print(f"scheduled {training['deployment']} (flow run {training['flow_run_id']})", highlight=False,
                      markup=False)


def _number(value, percent: bool = False) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.2f} %" if percent else f"{value:.3g}"


def _metric(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def print_demo(cfg, result, elapsed: float) -> None:
    ev = result.evaluation
    rule = cfg.stream("pumps").threshold.rule().name
    console.print(
        f"\n{result.n_rows} readings ingested; {result.score['windows_scored']} windows scored by champion "
        f"[bold]{result.train['model_name']}[/] v{result.train['version']} ({result.train['kind']}, threshold "
        f"{result.train['threshold']:.4g} = {rule} of held-out normal windows)"
    )
    print_training(result.train)
    table = Table("asset", "fault", "sensors", "start", "duration", "found", "delay", "top sensor",
                  title="injected faults")
    for f in ev.faults.itertuples(index=False):
        duration = f.end - f.start
        delay = "" if not f.found else _minutes(f.delay)
        table.add_row(
            f.asset, f.kind, f.sensors, f.start.strftime("%m-%d %H:%M"), _minutes(duration),
            "[green]found[/]" if f.found else "[red]missed[/]", delay, f.top_sensors.split(",")[0],
        )
    console.print(table)
    console.print(
        f"incidents: {ev.n_incidents} ({ev.n_true_incidents} on a fault, {ev.n_incidents - ev.n_true_incidents} false)"
        f"   precision [bold]{ev.precision:.2f}[/]   recall [bold]{ev.recall:.2f}[/]   ({elapsed:.0f} s)"
    )
    version = result.train["version"]
    console.print("\nLook further:", markup=False)
    # Commands are printed unwrapped (soft_wrap) so they can be copied as they are.
    console.print(f"  {_tool('mlflow')} ui --backend-store-uri {redact(cfg.mlflow_tracking_uri)} --host 127.0.0.1",
                  highlight=False, soft_wrap=True, markup=False)
    console.print(
        f'  {_tool("aemon")} sql "SELECT asset, window_start, round(score, 3) AS score, top_sensors FROM anomalies '
        f'WHERE model_version = {version} ORDER BY score DESC LIMIT 10"', highlight=False, soft_wrap=True,
        markup=False,
    )
    console.print(f"  {_tool('aemon')} status    (per asset: readings, how far scored, the model, active incidents)",
                  highlight=False, soft_wrap=True, markup=False)
    console.print(f'  {_tool("aemon")} sql "SELECT asset, start, n_windows, round(peak_severity, 1) AS severity, '
                  'top_sensors, status FROM incidents ORDER BY start"', highlight=False, soft_wrap=True, markup=False)
    console.print(f"  {_tool('aemon')} warehouse attach    (the SQL any DuckDB client runs to read the warehouse, "
                  "read-only, while flows write)", highlight=False, soft_wrap=True, markup=False)


def _tool(name: str) -> str:
    """How to call a console script of this environment from the current folder."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        return name
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _minutes(delta) -> str:
    minutes = delta.total_seconds() / 60
    return f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"


def print_frame(frame, title: str | None = None) -> None:
    table = _plain_table(frame.columns, title=title)
    for row in frame.itertuples(index=False):
        table.add_row(*[Text(_cell(v)) for v in row])
    console.print(table)


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and value != value):  # None or NaN: not measured
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


ARROWS = {"above": "↑", "below": "↓"}


def sensors_with_direction(names: str, directions: str) -> str:
    dirs = str(directions or "").split(",")
    return ", ".join(f"{s}{ARROWS.get(dirs[i] if i < len(dirs) else '', '')}"
                     for i, s in enumerate(str(names).split(",")) if s)


def print_incidents(rows, title: str, closed: int = 0) -> None:
    """The incidents' table; `closed`: how many closed ones the listing leaves out."""
    hidden = f"; {closed} closed (`aemon incidents list --all` lists them too)" if closed else ""
    if rows.empty:
        console.print(f"no {title}{hidden}", highlight=False, markup=False)
        return
    table = Table("id", "stream", "asset", "status", "level", "severity", "start", "end", "windows", "top sensors",
                  title=f"{title} ({len(rows)})")
    levels = ("warning", "major", "critical")
    for r in rows.itertuples(index=False):
        table.add_row(Text(r.incident_id), Text(r.stream), Text(r.asset), r.status,
                      levels[min(int(r.severity_level), 3) - 1], f"{r.peak_severity:.2f}", str(r.start), str(r.end),
                      str(r.n_windows), Text(sensors_with_direction(r.top_sensors, r.directions)))
    console.print(table)
    if closed:
        console.print(hidden.removeprefix("; "), highlight=False, markup=False)


def print_incident(state: dict, log) -> None:
    fields = ["incident_id", "stream", "asset", "status", "severity_level", "peak_severity", "peak_score", "start",
              "end", "n_windows", "model_versions", "opened_at", "acknowledged_by", "acknowledged_at", "closed_at",
              "closed_reason", "revision"]
    summary = Table("field", "value", title=f"incident {state['incident_id']}", show_header=False)
    for name in fields:
        summary.add_row(name, Text(_cell(state.get(name))))
    summary.add_row("top_sensors", Text(sensors_with_direction(state["top_sensors"], state["directions"])))
    console.print(summary)
    history = Table("rev", "at", "event", "status", "severity", "end", "windows", "by", "reason", title="history")
    for r in log.itertuples(index=False):
        history.add_row(str(r.revision), str(r.logged_at), r.event, r.status, f"{r.peak_severity:.2f}", str(r.end),
                        str(r.n_windows), Text(str(r.actor)), Text(_cell(r.reason)))
    console.print(history)


def print_stream_status(status) -> None:
    """`aemon status` of one stream (monitoring.store.overview.StreamStatus): a line on its
    ingest and feed, a row per asset, and the next command where something waits."""
    import pandas as pd

    name = status.stream

    def stamp(value) -> str:
        return "-" if value is None or pd.isna(value) else pd.Timestamp(value).isoformat(" ", "minutes")

    feed = "" if status.feed is None else f"; feed {status.feed} since {stamp(status.feed_since)}"
    console.print(f"{name}: {plural(status.files, 'file')} ingested, the last at {stamp(status.last_ingest)}; "
                  f"{plural(status.rejected_files, 'rejected file')}, "
                  f"{plural(status.quarantined_rows, 'quarantined row')}{feed}", highlight=False, markup=False)
    rows = status.assets
    if rows.empty:
        console.print(f"  nothing ingested yet: `aemon ingest {name}`", highlight=False, markup=False)
        return
    table = Table("asset", "readings", "last reading", "scored through", "not scored", "model", "active incidents",
                  "last incident", "scored at")
    for r in rows.itertuples(index=False):
        table.add_row(Text(str(r.asset)), str(r.readings), stamp(r.last_reading), stamp(r.scored_through),
                      str(r.unscored_readings), "-" if pd.isna(r.model_version) else f"v{r.model_version}",
                      str(r.active_incidents), stamp(r.last_incident_start), stamp(r.last_scoring_run))
    console.print(table)
    if rows["scored_through"].isna().all():
        console.print(f"  nothing scored yet: `aemon train {name}`, then `aemon score {name}`",
                      highlight=False, markup=False)
    if rows["active_incidents"].sum():
        console.print(f"  active incidents: `aemon incidents list {name}`", highlight=False, markup=False)
    if status.rejected_files or status.quarantined_rows:
        console.print(f"  why rows were refused: `aemon sql \"SELECT file, row_number, \\\"column\\\", reason FROM "
                      f"quarantine WHERE stream = '{name}' LIMIT 20\"`", highlight=False, markup=False)
