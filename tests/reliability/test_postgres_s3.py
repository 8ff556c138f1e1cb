"""Beyond one machine: a Prefect server and an MLflow tracking server on PostgreSQL, the
DuckLake catalog on the same PostgreSQL, the lake's data files and MLflow's artifacts on an
S3-compatible store (moto's server), every server on 127.0.0.1. `aemon ingest`, `train`,
`score` and `sql` run as real processes against them, two at a time where they write, and
the credentials (PostgreSQL's password, the S3 secret key) come from the environment only:
they appear in no log, no command output, no Prefect log row and no MLflow param or tag.

PostgreSQL's binaries are looked for under /usr/lib/postgresql/*/bin (`.ci/run` installs
Debian's `postgresql` package when they are missing)."""
from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from features.synthetic import SENSORS, SyntheticSpec, generate_stream
from tests.reliability.cli_runs import one_line_error, run_cli

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
BUCKET = "aemon"
USER = "aemon"
STREAM = "pumps"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def as_postgres(*args: str) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run its binaries as the `postgres` user."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else list(args)


def wait_for(url: str, process: subprocess.Popen, log: Path, what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError as err:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start:\n{log.read_text()[-3000:]}") from err
            time.sleep(0.5)


def stop(processes: list[subprocess.Popen]) -> None:
    """Signal every server's process group at once, then wait; kill what lingers."""
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    for process in processes:
        try:
            process.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
    processes.clear()


@contextlib.contextmanager
def postgres(root: Path, password: str) -> Iterator[int]:
    """A PostgreSQL cluster in `root` (owned by `postgres` when run as root), on a free port of
    127.0.0.1 with its sockets in `root`, password authentication only; stopped on exit."""
    binaries = postgres_bin()
    if binaries is None:
        pytest.skip("PostgreSQL is not installed: no initdb under /usr/lib/postgresql/*/bin or on PATH "
                    "(`.ci/run` installs Debian's postgresql package; as a user, apt-get install postgresql)")
    data = root / "data"
    root.mkdir(mode=0o700)
    (root / "pwfile").write_text(password + "\n")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(root / "pwfile", "postgres")
    port = free_port()
    subprocess.run(as_postgres(str(binaries / "initdb"), "-D", str(data), "-U", USER, "-A", "scram-sha-256",
                               f"--pwfile={root / 'pwfile'}", "--no-sync"),
                   check=True, capture_output=True, timeout=120)
    (root / "pwfile").unlink()
    subprocess.run(as_postgres(str(binaries / "pg_ctl"), "-D", str(data), "-l", str(root / "postgres.log"), "-w",
                               "-t", "60", "-o", f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off "
                               "-c max_connections=200", "start"),
                   check=True, capture_output=True, timeout=120)
    try:
        yield port
    finally:
        subprocess.run(as_postgres(str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"),
                       capture_output=True, timeout=120)


def create_databases(port: int, password: str, *names: str) -> None:
    import psycopg2

    con = psycopg2.connect(host="127.0.0.1", port=port, user=USER, password=password, dbname="postgres")
    con.autocommit = True
    with con.cursor() as cursor:
        for name in names:
            cursor.execute(f'CREATE DATABASE "{name}"')
    con.close()


def sql_rows(port: int, password: str, dbname: str, query: str) -> list[tuple]:
    import psycopg2

    con = psycopg2.connect(host="127.0.0.1", port=port, user=USER, password=password, dbname=dbname)
    try:
        with con.cursor() as cursor:
            cursor.execute(query)
            return cursor.fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def servers():
    """PostgreSQL, moto's S3, an MLflow server and a Prefect server, all on 127.0.0.1; yields
    what the test needs: the client environment, ports, secrets, and the servers' logs."""
    root = Path(tempfile.mkdtemp(prefix="aemon-pg-"))  # not under pytest's 0700 temp root: postgres reads it
    root.chmod(0o711)  # its cluster's folder, inside, is postgres's own
    pg_password = "pg-" + secrets.token_hex(12)
    s3_secret = "s3-" + secrets.token_hex(16)
    logs = root / "logs"
    logs.mkdir()
    processes: list[subprocess.Popen] = []
    try:
        with postgres(root / "pg", pg_password) as pg_port:
            create_databases(pg_port, pg_password, "prefect", "mlflow", "lake")
            s3_port = free_port()
            aws = {"AWS_ACCESS_KEY_ID": "aemon-key", "AWS_SECRET_ACCESS_KEY": s3_secret,
                   "AWS_ENDPOINT_URL": f"http://127.0.0.1:{s3_port}", "AWS_DEFAULT_REGION": "us-east-1"}
            base = {k: v for k, v in os.environ.items()
                    if not k.startswith(("PREFECT_", "AWS_", "MLFLOW_", "PG", "AEMON_"))}
            server_env = {**base, **aws, "PGPASSWORD": pg_password}

            def start(name: str, args: list[str], env: dict) -> subprocess.Popen:
                log = open(logs / f"{name}.log", "w")  # noqa: SIM115 (closed with the process)
                process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True)
                log.close()
                processes.append(process)
                return process

            moto = start("moto", [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(s3_port)], server_env)
            wait_for(f"http://127.0.0.1:{s3_port}/moto-api/", moto, logs / "moto.log", "moto server")
            import boto3

            boto3.client("s3", endpoint_url=aws["AWS_ENDPOINT_URL"], aws_access_key_id=aws["AWS_ACCESS_KEY_ID"],
                         aws_secret_access_key=s3_secret, region_name="us-east-1").create_bucket(Bucket=BUCKET)

            mlflow_port, prefect_port = free_port(), free_port()
            mlflow = start("mlflow", [
                str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(mlflow_port), "--workers", "1",
                "--backend-store-uri", f"postgresql://{USER}@127.0.0.1:{pg_port}/mlflow",
                "--artifacts-destination", f"s3://{BUCKET}/mlartifacts"],
                {**server_env, "MLFLOW_S3_ENDPOINT_URL": aws["AWS_ENDPOINT_URL"]})
            prefect_env = {**server_env, "PREFECT_HOME": str(root / "prefect-home"),
                           "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                           "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
                           "PREFECT_API_DATABASE_CONNECTION_URL":
                               f"postgresql+asyncpg://{USER}@127.0.0.1:{pg_port}/prefect"}
            prefect = start("prefect", [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                                        "--port", str(prefect_port)], prefect_env)
            wait_for(f"http://127.0.0.1:{mlflow_port}/health", mlflow, logs / "mlflow.log", "mlflow server")
            wait_for(f"http://127.0.0.1:{prefect_port}/api/health", prefect, logs / "prefect.log", "prefect server")
            client_env = {**base, **aws, "PGPASSWORD": pg_password, "PYTHONPATH": str(ROOT),
                          "PREFECT_HOME": str(root / "client-prefect-home"),
                          "PREFECT_API_URL": f"http://127.0.0.1:{prefect_port}/api",
                          "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
            yield {"env": client_env, "pg_port": pg_port, "pg_password": pg_password, "s3_secret": s3_secret,
                   "mlflow_uri": f"http://127.0.0.1:{mlflow_port}", "logs": logs, "root": root, "aws": aws}
            stop(processes)  # before PostgreSQL, which they use
    finally:
        stop(processes)
        shutil.rmtree(root, ignore_errors=True)


def write_config(home: Path, servers: dict) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    sensors = ", ".join(f'"{s}"' for s in SENSORS)
    path = home / "aemon.toml"
    path.write_text(
        f'home = "{home.as_posix()}"\n'
        f'tracking_uri = "{servers["mlflow_uri"]}"\n\n'
        "[warehouse]\n"
        f'catalog = "postgres:dbname=lake host=127.0.0.1 port={servers["pg_port"]} user={USER}"\n'
        f'data_path = "s3://{BUCKET}/warehouse"\n\n'
        f"[streams.{STREAM}]\nsensors = [{sensors}]\nlabel_columns = [\"label\"]\n\n"
        f"[streams.{STREAM}.detectors]\nkinds = [\"mlp_ae\"]\nn_threads = 1\nepochs = 3\n"
    )
    return path


def aemon(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-c", "from flows.cli import main; main()", *args, "--config", str(config)]


def run_all(commands: list[list[str]], env: dict, cwd: Path, timeout: float = 240,
            codes: tuple[int, ...] = (0,)) -> list[str]:
    """Start the commands at once; wait for all; each must exit with one of `codes` (an
    ingest that quarantined rows exits 1). Returns their outputs."""
    procs = [subprocess.Popen(c, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for c in commands]
    outputs = [p.communicate(timeout=timeout)[0] for p in procs]
    for proc, out in zip(procs, outputs, strict=True):
        assert proc.returncode in codes, f"{proc.args[3:]} exited {proc.returncode}:\n{out[-4000:]}"
        assert "Traceback" not in out, out[-4000:]
    return outputs


def write_files(readings: pd.DataFrame, inbox: Path, names: list[str]) -> list[Path]:
    """The readings as one file per name, in time order (the exports of a feed)."""
    inbox.mkdir(parents=True, exist_ok=True)
    edges = pd.date_range(readings["timestamp"].min(), readings["timestamp"].max() + pd.Timedelta(seconds=1),
                          periods=len(names) + 1)
    paths = []
    for i, name in enumerate(names):
        part = readings[(readings["timestamp"] >= edges[i]) & (readings["timestamp"] < edges[i + 1])]
        paths.append(inbox / name)
        part.to_csv(paths[-1], index=False)
    return paths


def sql_values(config: Path, env: dict, cwd: Path, **queries: str) -> dict[str, int]:
    """One `aemon sql` of scalar subqueries -> {name: value}."""
    select = ", ".join(f"({q}) AS {name}" for name, q in queries.items())
    out = run_all([aemon(config, "sql", f"SELECT {select}")], env, cwd)[0]
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in out.splitlines() if line.startswith("│")]
    assert len(rows) == 1 and len(rows[0]) == len(queries), out
    return {name: int(value) for name, value in zip(queries, rows[0], strict=True)}


@pytest.mark.slow
def test_ingest_train_score_and_sql_on_postgres_and_s3(servers, tmp_path):
    env, cwd = servers["env"], tmp_path
    config = write_config(tmp_path / "home", servers)
    inbox = tmp_path / "home" / "inbox" / STREAM
    data = generate_stream(SyntheticSpec(n_assets=2, days=4.0, interval_s=60, seed=3))
    history = data.readings[data.readings["timestamp"] < data.readings["timestamp"].quantile(0.7)]
    later = data.readings[data.readings["timestamp"] >= data.readings["timestamp"].quantile(0.7)]
    first = write_files(history, inbox, [f"a-{i}.csv" for i in range(4)])
    bad = inbox / "bad.csv"  # rows that fail validation: quarantined with their reason
    bad_rows = later.head(3).copy().astype({"vibration_rms": object})
    bad_rows["vibration_rms"] = "not a number"
    bad_rows.to_csv(bad, index=False)
    outputs = []

    # two ingests of one inbox at once: each file lands once, whichever process takes it
    outputs += run_all([aemon(config, "ingest", STREAM), aemon(config, "ingest", STREAM)], env, cwd, codes=(0, 1))
    ingested = sorted(line.split("│")[1].strip() for out in outputs for line in out.splitlines()
                      if line.count("│") > 3 and line.split("│")[2].strip() == "ok")
    assert ingested == sorted([p.name for p in first] + [bad.name]), ingested
    outputs += run_all([aemon(config, "train", STREAM)], env, cwd, timeout=300)
    # new files ingested while a scoring run writes; then a scoring run catches up
    write_files(later.iloc[3:], inbox, [f"b-{i}.csv" for i in range(3)])
    outputs += run_all([aemon(config, "ingest", STREAM), aemon(config, "score", STREAM)], env, cwd)
    outputs += run_all([aemon(config, "score", STREAM)], env, cwd)

    # every row is in the lake or in quarantine, exactly once, and every file was ingested once;
    # scores for every asset up to the last window, each window once
    found = sql_values(
        config, env, cwd,
        rows_in="SELECT sum(rows_in) FROM ingest_batches WHERE status = 'ok'",
        files="SELECT count(*) FROM ingest_batches WHERE status = 'ok'",
        in_lake=f'SELECT count(*) FROM lake."{STREAM}"',
        doubled=f'SELECT count(*) - count(DISTINCT (asset, timestamp)) FROM lake."{STREAM}"',
        quarantined="SELECT count(*) FROM quarantine",
        scored_assets="SELECT count(DISTINCT asset) FROM scores",
        doubled_scores="SELECT count(*) - count(DISTINCT (asset, window_start, model_version)) FROM scores",
        last_scored="SELECT epoch(min(last_window_end))::BIGINT FROM watermarks",
    )
    assert found["rows_in"] == len(data.readings) == found["in_lake"] + found["quarantined"], found
    assert found["quarantined"] == 3 and found["doubled"] == 0 and found["files"] == len(first) + 4, found
    assert found["scored_assets"] == 2 and found["doubled_scores"] == 0, found
    assert found["last_scored"] >= (later["timestamp"].max() - pd.Timedelta(hours=2)).timestamp(), found

    # the lake's files and the model's artifacts are objects in the bucket; nothing is on local disk
    import boto3

    aws = servers["aws"]
    s3 = boto3.client("s3", endpoint_url=aws["AWS_ENDPOINT_URL"], aws_access_key_id=aws["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=aws["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1")
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
            for o in page.get("Contents", [])]
    assert any(k.startswith(f"warehouse/lake/{STREAM}/part-") for k in keys), keys
    assert any(k.startswith("mlartifacts/") for k in keys), keys
    assert not [k for k in keys if "/.quarantine-" in k], "a quarantine stage was left behind"
    assert not (tmp_path / "home" / "warehouse").exists() and not (tmp_path / "home" / "mlflow.db").exists()

    # the runs were recorded by the Prefect server, on PostgreSQL
    port, password = servers["pg_port"], servers["pg_password"]
    states = sql_rows(port, password, "prefect", "SELECT f.name, r.state_type FROM flow_run r "
                                                 "JOIN flow f ON f.id = r.flow_id")
    assert {name for name, _ in states} >= {"ingest-readings", "train-detectors", "score-stream"}, states
    assert all(state == "COMPLETED" for _, state in states), states

    # the credentials appear nowhere they could be read: outputs, server logs, Prefect's log
    # rows, MLflow's params and tags
    stored = [
        *sql_rows(port, password, "prefect", "SELECT message FROM log"),
        *sql_rows(port, password, "mlflow", "SELECT key, value FROM params"),
        *sql_rows(port, password, "mlflow", "SELECT key, value FROM tags"),
    ]
    assert len(stored) > 10
    texts = {"outputs": "\n".join(outputs), "stored": repr(stored),
             **{p.name: p.read_text(errors="replace") for p in servers["logs"].iterdir()}}
    for secret in (password, servers["s3_secret"]):
        leaks = [name for name, text in texts.items() if secret in text]
        assert not leaks, f"a credential appears in {leaks}"


# -- one line for a bad data path or missing credentials (no server needed) -----------------


@pytest.mark.parametrize(("data_path", "expected"), [
    ("gs://aemon/lake", "the scheme 'gs' is not supported; expected a folder or s3://bucket/prefix"),
    ("s3://Not_A_Bucket/lake", "'Not_A_Bucket' is not a bucket name"),
    ("s3://key:hunter2@aemon/lake", "credentials come from the environment, never the URI"),
])
def test_a_bad_data_path_is_one_line_naming_the_setting(tmp_path, capsys, monkeypatch, data_path, expected):
    config = tmp_path / "aemon.toml"
    config.write_text(f'home = "{tmp_path.as_posix()}"\n[warehouse]\ndata_path = "{data_path}"\n')
    code, out, err = run_cli(capsys, monkeypatch, "sql", "SELECT 1", "--config", str(config))
    line = one_line_error(err)
    assert code == 2 and "warehouse.data_path" in line and expected in line, line
    assert "hunter2" not in out + err


def test_s3_keys_missing_from_the_environment_are_one_line(tmp_path, capsys, monkeypatch, small_stream):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    config = write_config(home, {"mlflow_uri": "http://127.0.0.1:9", "pg_port": 9})
    config.write_text(config.read_text().replace(
        'catalog = "postgres:dbname=lake host=127.0.0.1 port=9 user=aemon"', f'catalog = "sqlite:{home}/c.sqlite"'))
    inbox = home / "inbox" / STREAM
    inbox.mkdir(parents=True)
    small_stream.readings.head(50).to_csv(inbox / "a.csv", index=False)
    code, _, err = run_cli(capsys, monkeypatch, "ingest", STREAM, "--in-process", "--config", str(config))
    assert code == 2, err
    assert "the warehouse data path is on S3 but AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set" in (
        one_line_error(err))


def test_the_s3_secret_is_built_from_the_environment_and_never_echoed():
    from monitoring.errors import WarehouseError
    from monitoring.store.connection import s3_secret_sql

    sql = s3_secret_sql({"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "it's", "AWS_REGION": "eu-west-1",
                         "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9000", "AWS_ENDPOINT_URL": "https://ignored"})
    assert sql == ("CREATE OR REPLACE SECRET aemon_s3 (TYPE s3, KEY_ID 'k', SECRET 'it''s', REGION 'eu-west-1', "
                   "ENDPOINT '127.0.0.1:9000', URL_STYLE 'path', USE_SSL false)")
    with pytest.raises(WarehouseError, match="AWS_SECRET_ACCESS_KEY is not set") as raised:
        s3_secret_sql({"AWS_ACCESS_KEY_ID": "k"})
    with pytest.raises(WarehouseError, match="expected http"):
        s3_secret_sql({"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "hunter2", "AWS_ENDPOINT_URL": "ftp://x"})
    assert "hunter2" not in str(raised.value)
