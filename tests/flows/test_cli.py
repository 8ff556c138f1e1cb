"""The `aemon` command line: user mistakes are one line and a non-zero exit, never a traceback."""
from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest
from typer.testing import CliRunner

from flows.cli import app
from monitoring.store.audit import read_quality
from monitoring.store.connection import connect
from tests.conftest import write_config


def aemon(*args: str, home, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "AEMON_HOME": str(home)}
    env.pop("AEMON_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-c", "from flows.cli import main; main()", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )


@pytest.mark.parametrize("args, message", [
    (("score", "valves"), "error: stream 'valves' is not configured; configured streams: ['pumps']"),
    (("train", "pumps"), "error: stream 'pumps' has no readings yet"),
    (("train", "pumps", "--end", "soon"), "error: --end 'soon' is not a timestamp"),
    (("sql", "SELECT 1"), "error: no warehouse at"),
    (("evaluate", "valves"), "error: stream 'valves' is not configured"),
    (("evaluate", "pumps"), "error: stream 'pumps' has no readings yet"),
    (("drift", "valves"), "error: stream 'valves' is not configured"),
    (("drift", "pumps"), "error: stream 'pumps' has no readings yet"),
])
def test_user_mistakes_are_one_line_and_exit_2(tmp_path, args, message):
    result = aemon(*args, home=tmp_path / "home", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout


@pytest.mark.parametrize("args, message", [
    (("models", "list", "pumps"), "Got unexpected extra argument(s) (pumps)"),
    (("sql",), "Missing argument 'query'"),
    (("--bogus",), "No such option: --bogus"),
    (("ingest", "pumps", "--since", "x"), "No such option: --since"),
])
def test_usage_errors_are_the_parsers_message_and_exit_2(tmp_path, args, message):
    result = aemon(*args, home=tmp_path / "home", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Usage: aemon" in result.stderr
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout


def test_bad_config_file_is_named(tmp_path):
    config = tmp_path / "aemon.toml"
    config.write_text("[streams.pumps]\nsensors = []\nwindow = {size = -1}\n")
    result = aemon("ingest", "pumps", "--config", str(config), home=tmp_path / "home", cwd=tmp_path)
    assert result.returncode == 2
    assert f"error: {config}: streams.pumps.window: window size=-1, must be >= 1" in result.stderr.replace("\n", "")


def test_evaluate_needs_label_columns(tmp_path):
    config = tmp_path / "aemon.toml"
    config.write_text('[streams.valves]\nsensors = ["Pressure"]\n')
    result = aemon("evaluate", "valves", "--config", str(config), home=tmp_path / "home", cwd=tmp_path)
    assert result.returncode == 2
    assert "error: stream 'valves' has no label_columns in the config" in result.stderr.replace("\n", "")


def test_ingest_reports_rejected_files_and_exits_1(aemon_home, prefect_harness, small_stream):
    home, config = aemon_home
    inbox = home / "inbox" / "pumps"
    inbox.mkdir(parents=True)
    small_stream.readings.head(500).to_csv(inbox / "good.csv", index=False)
    (inbox / "bad.csv").write_text("timestamp,asset\n2026-01-01,p1\n")
    result = CliRunner().invoke(app, ["ingest", "pumps", "--config", str(config)])
    assert result.exit_code == 1, result.output
    assert ("2 files: 1 ingested, 1 rejected; 500 rows accepted, 1 row quarantined (see the quarantine table); "
            "first rejected:") in result.output
    assert "bad.csv" in result.output and "good.csv" in result.output
    assert "rejected" in result.output and "ok" in result.output


def test_demo_runs_the_whole_path_and_reports_each_fault(tmp_path, monkeypatch, prefect_harness):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AEMON_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("AEMON_CONFIG", raising=False)
    result = CliRunner().invoke(app, ["demo", "--days", "4", "--assets", "2", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert result.output.count("pump-0") >= 12  # one row per injected fault (2 pumps x 6 kinds)
    assert "precision" in result.output and "recall" in result.output
    home = tmp_path / "home"
    assert f"mlflow ui --backend-store-uri sqlite:///{home}/mlflow.db --host 127.0.0.1" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]


def test_ingest_exits_1_when_rows_are_quarantined(aemon_home, prefect_harness, small_stream):
    home, config = aemon_home
    inbox = home / "inbox" / "pumps"
    inbox.mkdir(parents=True)
    frame = small_stream.readings.head(100).copy()
    frame["flow_rate"] = frame["flow_rate"].astype(object)
    frame.loc[frame.index[5], "flow_rate"] = "n/a?"
    frame.to_csv(inbox / "one-bad-row.csv", index=False)
    result = CliRunner().invoke(app, ["ingest", "pumps", "--config", str(config)])
    assert result.exit_code == 1, result.output
    assert "1 file: 1 ingested; 99 rows accepted, 1 row quarantined (see the quarantine table)" in result.output
    again = CliRunner().invoke(app, ["ingest", "pumps", "--config", str(config)])
    assert again.exit_code == 0 and "no new or changed files" in again.output


def test_status_before_scoring_counts_every_reading_as_not_scored(aemon_home, small_stream):
    """`aemon status` of an ingested stream that no model has scored: its files, its
    quarantined row, per asset the lake's readings, all of them not scored yet, and the
    next commands; --json gives the same figures, one object per stream."""
    import json

    from flows.config import load_config
    from monitoring.store.ingestion import ingest_file

    home, config = aemon_home
    cfg = load_config(config)
    frame = small_stream.readings.head(300).copy()
    frame["flow_rate"] = frame["flow_rate"].astype(object)
    frame.loc[frame.index[7], "flow_rate"] = "n/a?"
    frame.to_csv(home / "x.csv", index=False)
    ingest_file(cfg.warehouse, "pumps", cfg.stream("pumps").stream_schema(), home / "x.csv")
    accepted = frame.drop(index=frame.index[7])
    counts = accepted.groupby("asset")["timestamp"].agg(["size", "max"])

    result = CliRunner().invoke(app, ["status", "--json", "--config", str(config)])
    assert result.exit_code == 0, result.output
    [line] = result.stdout.splitlines()
    got = json.loads(line)
    assert (got["stream"], got["files"], got["rejected_files"], got["quarantined_rows"]) == ("pumps", 1, 0, 1)
    assert got["last_ingest"] is not None
    assert [a["asset"] for a in got["assets"]] == sorted(counts.index)
    for row in got["assets"]:
        assert row["readings"] == row["unscored_readings"] == counts.loc[row["asset"], "size"]
        assert row["last_reading"] == pd.Timestamp(counts.loc[row["asset"], "max"]).isoformat()
        assert (row["scored_through"], row["model_version"], row["active_incidents"]) == (None, None, 0)

    shown = CliRunner().invoke(app, ["status", "--config", str(config)], env={"COLUMNS": "200"})
    text = " ".join(shown.output.split())
    assert shown.exit_code == 0, shown.output
    assert "pumps: 1 file ingested, the last at " in text and "0 rejected files, 1 quarantined row" in text
    assert "nothing scored yet: `aemon train pumps`, then `aemon score pumps`" in text
    assert "FROM quarantine WHERE stream = 'pumps'" in text
    assert all(asset in text for asset in counts.index)


def test_quality_prints_and_stores_the_report(aemon_home, small_stream):
    from flows.config import load_config
    from monitoring.store.ingestion import ingest_file

    home, config = aemon_home
    cfg = load_config(config)
    frame = small_stream.readings
    frame = frame[~frame["timestamp"].between(frame["timestamp"].iloc[100], frame["timestamp"].iloc[200])]
    frame.to_csv(home / "x.csv", index=False)
    ingest_file(cfg.warehouse, "pumps", cfg.stream("pumps").stream_schema(), home / "x.csv")
    result = CliRunner().invoke(app, ["quality", "pumps", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "data quality pumps" in result.output and "medium" in result.output and "gaps" in result.output
    with connect(cfg.warehouse) as con:
        stored = read_quality(con, "pumps")
    assert len(stored) == len(cfg.stream("pumps").sensors) and (stored["n_gaps"] >= 1).all()


def test_import_skab_reads_the_folder_in_place(aemon_home):
    from pathlib import Path

    home, config = aemon_home
    skab = Path(__file__).resolve().parents[3] / "shared" / "data" / "skab"
    result = CliRunner().invoke(app, ["import", "skab", "--data", str(skab), "--stream", "valves",
                                      "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "import skab -> valves" in result.output and "valve1-0" not in result.output  # files listed by name
    assert result.output.count(" ok ") >= 21
    again = CliRunner().invoke(app, ["import", "skab", "--data", str(skab), "--stream", "valves",
                                     "--config", str(config)])
    assert again.exit_code == 0 and again.output.count("skipped") == 21
    assert not list(home.rglob("*.csv"))  # read in place, never copied


def test_ingest_without_a_prefect_api_runs_in_process_and_stores_what_the_flow_run_stores(
        tmp_path, small_stream, prefect_harness):
    """With no PREFECT_API_URL, `aemon ingest` runs the flow's steps in its own process (no
    temporary Prefect server to start and stop); `--flow-run` runs the flow. Both store the
    same lake rows, audit and quarantine."""
    from flows.locations import load_warehouse
    from monitoring.store.connection import query_rows

    def inbox_of(name: str):
        home = tmp_path / name / "home"
        inbox = home / "inbox" / "pumps"
        inbox.mkdir(parents=True)
        small_stream.readings.head(700).to_csv(inbox / "good.csv", index=False)
        frame = small_stream.readings.iloc[700:900].copy().astype({"flow_rate": object})
        frame.loc[frame.index[3], "flow_rate"] = "n/a?"
        frame.to_csv(inbox / "one-bad-row.csv", index=False)
        return home

    def tables(home) -> list:
        warehouse, _ = load_warehouse(write_config(home))
        return [query_rows(warehouse, sql)[1] for sql in (
            "SELECT count(*), count(DISTINCT asset), min(timestamp), max(timestamp), round(sum(flow_rate), 6) "
            "FROM lake.pumps",
            "SELECT parse_filename(file), status, rows_in, rows_accepted, rows_quarantined FROM ingest_batches "
            "ORDER BY 1",
            "SELECT reason FROM quarantine")]

    local, flow = inbox_of("local"), inbox_of("flow")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AEMON_"))}
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_LOGGING_LEVEL="INFO")
    in_process = subprocess.run([sys.executable, "-c", "from flows.cli import main; main()", "ingest", "pumps",
                                 "--config", str(write_config(local))], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=300)
    assert in_process.returncode == 1, in_process.stderr  # one row quarantined
    assert "one-bad-row.csv: 199 rows accepted, 1 quarantined" in in_process.stderr
    assert "temporary server" not in in_process.stderr + in_process.stdout
    assert "Created flow run" not in in_process.stderr + in_process.stdout
    result = CliRunner().invoke(app, ["ingest", "pumps", "--flow-run", "--config", str(write_config(flow))])
    assert result.exit_code == 1, result.output
    assert tables(local) == tables(flow)
    assert tables(local)[0][0][0] == 899


@pytest.mark.slow
def test_a_training_without_a_prefect_api_starts_one_temporary_server(tmp_path, small_stream):
    """The fits run as tasks in worker processes; Prefect's lazy start of its temporary
    server, reached by each of them (and by the flow process's log and event forwarding
    threads), used to start one server per detector kind."""
    home = tmp_path / "home"
    inbox = home / "inbox" / "pumps"
    inbox.mkdir(parents=True)
    small_stream.readings.to_csv(inbox / "all.csv", index=False)
    config = write_config(home)
    # no Prefect setting of this test process (a demo run before sets the log level), and
    # a new Prefect database: set up by the first command
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AEMON_"))}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_LOGGING_LEVEL="INFO")

    def run(*args: str) -> str:
        done = subprocess.run([sys.executable, "-c", "from flows.cli import main; main()", *args, "--config",
                               str(config)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        return done.stdout + done.stderr

    def one_server(out: str) -> bool:  # aemon's own start; Prefect's lazy one ("Starting ...") never
        return out.count("Started temporary server") == 1 and "Starting temporary server" not in out

    assert one_server(run("ingest", "pumps", "--flow-run"))
    trained = run("train", "pumps")
    assert one_server(trained), trained
    assert "champion" in trained


def test_every_command_is_listed_on_one_line_of_help():
    """`aemon --help` (and each group's) lists a command by its docstring's first paragraph,
    keeping its line breaks: that paragraph is one sentence on one line, the detail after it."""
    import inspect

    import typer.main

    def listed(group, path):
        for name, command in group.commands.items():
            first = inspect.cleandoc(command.short_help or command.help or "").split("\n\n")[0]
            yield " ".join([*path, name]), first
            yield from listed(command, [*path, name]) if hasattr(command, "commands") else ()

    entries = list(listed(typer.main.get_command(app), ["aemon"]))
    assert len(entries) > 30  # every subcommand of every group is walked
    broken = [(name, first) for name, first in entries if not first or "\n" in first]
    assert not broken, broken

    def paragraphs(group, path):
        for name, command in group.commands.items():
            yield from ((" ".join([*path, name]), text) for text in inspect.cleandoc(command.help or "").split("\n\n"))
            yield from paragraphs(command, [*path, name]) if hasattr(command, "commands") else ()

    # a command's own --help keeps every paragraph's line breaks too ("score the" / "rest; one ..." on two lines)
    broken = [(name, text) for name, text in paragraphs(typer.main.get_command(app), ["aemon"]) if "\n" in text]
    assert not broken, broken

    def helps(command, path):
        yield " ".join(path), command.help or ""
        for param in command.params:
            yield f"{' '.join(path)} {param.name}", getattr(param, "help", None) or ""
        for name, sub in getattr(command, "commands", {}).items():
            yield from helps(sub, [*path, name])

    # rich reads "[name]" in a help text as markup and drops it ("or [runner] kind" showed as "or  kind")
    bracketed = [(where, text) for where, text in helps(typer.main.get_command(app), ["aemon"]) if "[" in text]
    assert not bracketed, bracketed
    # and the listing printed shows it so: the init line ends its sentence where it wraps
    shown = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"}).output
    assert "init       Write a complete aemon.toml to start from, every setting with its default and a comment." \
        in shown
