"""A stream's inbox on an object store: `inbox = "s3://bucket/prefix"`, against moto's S3
server on 127.0.0.1. Objects put there are ingested once (two ingests at once included), bad
rows are quarantined, a bad object is rejected, a rerun reads nothing new, a changed object is
read again, a copy under another key is known by its content, an archive URI receives the
ingested objects; a missing bucket and missing keys are one line each."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from features.synthetic import SENSORS
from tests.reliability.cli_runs import one_line_error, run_cli
from tests.reliability.test_postgres_s3 import BIN, ROOT, free_port, stop, wait_for

BUCKET = "plant-exports"
STREAM = "pumps"


@pytest.fixture(scope="module")
def moto(tmp_path_factory) -> Iterator[dict[str, str]]:
    """moto's S3 server on a free port of 127.0.0.1 with one bucket; yields the client environment."""
    logs = tmp_path_factory.mktemp("moto")
    port = free_port()
    env = {"AWS_ACCESS_KEY_ID": "inbox-key", "AWS_SECRET_ACCESS_KEY": "inbox-secret-" + os.urandom(8).hex(),
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_DEFAULT_REGION": "us-east-1"}
    log = open(logs / "moto.log", "w")  # noqa: SIM115 (closed with the process)
    process = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    try:
        wait_for(f"http://127.0.0.1:{port}/moto-api/", process, logs / "moto.log", "moto server")
        s3_client(env).create_bucket(Bucket=BUCKET)
        yield env
    finally:
        stop([process])


def s3_client(env: dict[str, str]):
    import boto3

    return boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1")


def keys(env: dict[str, str], prefix: str) -> list[str]:
    listed = s3_client(env).list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for o in listed.get("Contents", []))


def put_csv(env: dict[str, str], key: str, frame: pd.DataFrame) -> None:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    s3_client(env).put_object(Bucket=BUCKET, Key=key, Body=buffer.getvalue().encode())


def write_config(home: Path, inbox: str, archive: str | None = None) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    sensors = ", ".join(f'"{s}"' for s in SENSORS)
    path = home / "aemon.toml"
    path.write_text(f'home = "{home.as_posix()}"\n\n[streams.{STREAM}]\nsensors = [{sensors}]\n'
                    f'label_columns = ["label"]\ninbox = "{inbox}"\n'
                    + (f'archive = "{archive}"\n' if archive else ""))
    return path


def ingest_commands(config: Path, n: int, env: dict[str, str], cwd: Path) -> list[tuple[int, str]]:
    """`aemon ingest` as `n` processes at once, in-process steps (no Prefect API): (code, output) each."""
    command = [sys.executable, "-c", "from flows.cli import main; main()", "ingest", STREAM, "--in-process",
               "--config", str(config)]
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PREFECT_API", "AEMON_"))}
    full_env = {**base, **env, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen(command, cwd=cwd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for _ in range(n)]
    outputs = [(p.communicate(timeout=240)[0], p) for p in procs]
    for out, _ in outputs:
        assert "Traceback" not in out, out[-3000:]
    return [(p.returncode, out) for out, p in outputs]


def batches(config: Path) -> pd.DataFrame:
    from flows.config import load_config
    from monitoring.store.connection import close_all, query

    close_all()
    return query(load_config(config, detectors=False).warehouse,
                 "SELECT file, status, rows_in, rows_accepted, rows_quarantined, error, ingested_at "
                 "FROM ingest_batches ORDER BY file, ingested_at")


@pytest.mark.slow
def test_objects_in_an_s3_inbox_are_ingested_once_and_bad_rows_quarantined(moto, tmp_path, small_stream):
    readings = small_stream.readings.sort_values("timestamp").reset_index(drop=True)
    parts = [readings.iloc[i * 400:(i + 1) * 400] for i in range(3)]
    prefix = "exports/pumps"
    for i, part in enumerate(parts):
        put_csv(moto, f"{prefix}/a-{i}.csv", part)
    bad = readings.iloc[1200:1210].copy().astype({"vibration_rms": object})
    bad.loc[bad.index[:3], "vibration_rms"] = "not a number"
    put_csv(moto, f"{prefix}/bad-rows.csv", bad)
    put_csv(moto, f"{prefix}/wrong.csv", pd.DataFrame({"when": [1, 2], "what": [3, 4]}))  # rejected whole
    put_csv(moto, f"{prefix}/.partial.csv", parts[0])  # hidden: an upload in progress
    put_csv(moto, f"{prefix}/older/x.csv", parts[0])  # a deeper "folder": not this inbox
    s3_client(moto).put_object(Bucket=BUCKET, Key=f"{prefix}/README.md", Body=b"not an export")
    config = write_config(tmp_path / "home", f"s3://{BUCKET}/{prefix}")

    # two ingests of one inbox at once: each object lands once, whichever process takes it
    runs = ingest_commands(config, 2, moto, tmp_path)
    assert all(code in (0, 1) for code, _ in runs), runs
    found = batches(config)
    uri = f"s3://{BUCKET}/{prefix}"
    done = found[found["status"] != "skipped"]
    assert sorted(done["file"]) == [f"{uri}/a-0.csv", f"{uri}/a-1.csv", f"{uri}/a-2.csv", f"{uri}/bad-rows.csv",
                                    f"{uri}/wrong.csv"], found
    ok = done[done["status"] == "ok"]
    assert ok["rows_accepted"].sum() == 1200 + 7 and ok["rows_quarantined"].sum() == 3, ok
    (wrong,) = done[done["status"] == "rejected"].itertuples()
    assert wrong.error.startswith(f"{uri}/wrong.csv: columns differ from the stream schema"), wrong.error
    assert "aemon-inbox-" not in " ".join(found["error"].dropna())  # messages name the object, not its copy

    from flows.config import load_config
    from monitoring.store.connection import query

    warehouse = load_config(config, detectors=False).warehouse
    quarantined = query(warehouse, "SELECT file, row_number, reason FROM quarantine WHERE reason LIKE '%not a number%'"
                                   " ORDER BY row_number")
    assert list(quarantined["file"]) == [f"{uri}/bad-rows.csv"] * 3 and list(quarantined["row_number"]) == [1, 2, 3]
    in_lake = query(warehouse, f'SELECT count(*) AS n, count(DISTINCT (asset, timestamp)) AS d FROM lake."{STREAM}"')
    assert in_lake.iloc[0].tolist() == [1207, 1207]

    # a rerun reads nothing new: every object is unchanged since it was processed
    ((code, out),) = ingest_commands(config, 1, moto, tmp_path)
    assert code == 0 and f"no new or changed files in {uri}" in out, out
    assert len(batches(config)) == len(found)

    # a changed object is read again; a copy of known content under a new key is known by its hash
    put_csv(moto, f"{prefix}/a-2.csv", pd.concat([parts[2], readings.iloc[1300:1310]]))
    s3_client(moto).copy_object(Bucket=BUCKET, Key=f"{prefix}/copy-of-a-0.csv",
                                CopySource={"Bucket": BUCKET, "Key": f"{prefix}/a-0.csv"})
    ((code, out),) = ingest_commands(config, 1, moto, tmp_path)
    after = batches(config)
    later = after[after["ingested_at"] > found["ingested_at"].max()]
    assert list(later["file"]) == [f"{uri}/a-2.csv"] and list(later["status"]) == ["ok"], later
    printed = {cells[1].strip(): cells[2].strip() for cells in (line.split("│") for line in out.splitlines())
               if len(cells) > 3}
    assert printed.get("copy-of-a-0.csv") == "skipped", out  # known content: not stored twice
    manifest = query(warehouse, "SELECT file FROM inbox_files ORDER BY file")
    assert f"{uri}/copy-of-a-0.csv" in set(manifest["file"]), manifest  # and not read again
    # the changed object's 400 old readings are duplicates of stored ones: quarantined, not stored twice
    assert later["rows_accepted"].sum() == 10 and later["rows_quarantined"].sum() == 400, later
    # the objects stay where they are (no archive set): the manifest keeps them from being read again
    assert f"{prefix}/a-0.csv" in keys(moto, prefix)


@pytest.mark.slow
def test_an_archive_uri_receives_the_ingested_objects(moto, tmp_path, small_stream):
    prefix, archive = "archived/pumps", "archived/done"
    put_csv(moto, f"{prefix}/a.csv", small_stream.readings.head(100))
    put_csv(moto, f"{prefix}/wrong.csv", pd.DataFrame({"when": [1], "what": [2]}))
    put_csv(moto, f"{archive}/a.csv", small_stream.readings.head(5))  # a name already archived: kept
    config = write_config(tmp_path / "home", f"s3://{BUCKET}/{prefix}", f"s3://{BUCKET}/{archive}")
    runs = ingest_commands(config, 2, moto, tmp_path)
    assert all(code in (0, 1) for code, _ in runs), runs
    assert keys(moto, prefix + "/") == [f"{prefix}/wrong.csv"]  # a rejected object stays, to be fixed
    assert keys(moto, archive + "/") == [f"{archive}/a.1.csv", f"{archive}/a.csv"]
    archived = s3_client(moto).get_object(Bucket=BUCKET, Key=f"{archive}/a.1.csv")["Body"].read().decode()
    assert len(archived.splitlines()) == 101


@pytest.mark.slow
def test_a_missing_bucket_and_missing_keys_are_one_line(moto, tmp_path, capsys, monkeypatch):
    for name, value in moto.items():
        monkeypatch.setenv(name, value)
    config = write_config(tmp_path / "home", "s3://no-such-bucket/pumps")
    code, _, err = run_cli(capsys, monkeypatch, "ingest", STREAM, "--in-process", "--config", str(config))
    assert code == 2 and "inbox s3://no-such-bucket/pumps: the bucket 'no-such-bucket' does not exist" in (
        one_line_error(err)), err

    empty = write_config(tmp_path / "other", f"s3://{BUCKET}/nothing-here")  # a prefix with no objects yet
    code, out, err = run_cli(capsys, monkeypatch, "ingest", STREAM, "--in-process", "--config", str(empty))
    assert code == 0 and f"no new or changed files in s3://{BUCKET}/nothing-here" in out, out + err

    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    code, _, err = run_cli(capsys, monkeypatch, "ingest", STREAM, "--in-process", "--config", str(config))
    assert code == 2 and ("the inbox s3://no-such-bucket/pumps is on S3 but AWS_SECRET_ACCESS_KEY is not set"
                          in one_line_error(err)), err


@pytest.mark.parametrize(("inbox", "archive", "expected"), [
    ("gs://b/pumps", None, "streams.pumps.inbox: inbox 'gs://b/pumps': the scheme 'gs' is not supported"),
    ("s3://Bad_Bucket/x", None, "'Bad_Bucket' is not a bucket name"),
    ("s3://key:hunter2@bucket/x", None, "credentials come from the environment, never the URI"),
    ("s3://bucket/x", "done", "the archive must be an s3:// URI too"),
    ("drop", "s3://bucket/done", "the archive must be a folder too"),
])
def test_a_bad_inbox_uri_is_one_line_naming_the_setting(tmp_path, capsys, monkeypatch, inbox, archive, expected):
    config = write_config(tmp_path / "home", inbox, archive)
    code, out, err = run_cli(capsys, monkeypatch, "ingest", STREAM, "--in-process", "--config", str(config))
    line = one_line_error(err)
    assert code == 2 and expected in line, line
    assert "hunter2" not in out + err


# -- credentials from Prefect Secret blocks ------------------------------------------------------


def harness_api_url() -> str:
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    assert url, "the Prefect test harness names its API"
    return str(url)


@pytest.mark.slow
def test_s3_keys_from_secret_blocks_are_used_and_never_shown(moto, tmp_path, small_stream, prefect_harness):
    """The S3 keys live only in Prefect Secret blocks: `aemon ingest` (a flow run on the
    harness's API) and `aemon train` read them through `[secrets]`, the s3:// inbox is
    ingested with them, and the secret key is in no output, no Prefect log row or flow-run
    parameter, and no MLflow param or tag."""
    import asyncio

    from prefect.blocks.system import Secret
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter

    Secret(value=moto["AWS_ACCESS_KEY_ID"]).save("aemon-test-s3-key-id", overwrite=True)
    Secret(value=moto["AWS_SECRET_ACCESS_KEY"]).save("aemon-test-s3-secret-key", overwrite=True)
    prefix = "secret-blocks/pumps"
    put_csv(moto, f"{prefix}/a.csv", small_stream.readings)
    home = tmp_path / "home"
    config = write_config(home, f"s3://{BUCKET}/{prefix}")
    config.write_text('secrets = { AWS_ACCESS_KEY_ID = "aemon-test-s3-key-id", '
                      'AWS_SECRET_ACCESS_KEY = "aemon-test-s3-secret-key" }\n' + config.read_text()
                      + '\n[streams.pumps.detectors]\nkinds = ["mlp_ae"]\nn_threads = 1\nepochs = 2\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PREFECT_API", "AEMON_"))}
    env.update({"PYTHONPATH": str(ROOT), "PREFECT_API_URL": harness_api_url(),
                "AWS_ENDPOINT_URL": moto["AWS_ENDPOINT_URL"], "AWS_DEFAULT_REGION": "us-east-1"})
    outputs = []
    for args in (["ingest", STREAM, "--flow-run"], ["train", STREAM]):
        done = subprocess.run([sys.executable, "-c", "from flows.cli import main; main()", *args,
                               "--config", str(config)], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=400)
        outputs.append(done.stdout + done.stderr)
        assert done.returncode == 0 and "Traceback" not in outputs[-1], outputs[-1][-3000:]
    assert "a.csv" in outputs[0] and " ok " in outputs[0], outputs[0]  # read from the bucket with the block's keys

    async def stored() -> tuple[list[str], list[str]]:
        async with get_client() as client:
            runs = await client.read_flow_runs()
            logs = await client.read_logs(LogFilter(flow_run_id={"any_": [r.id for r in runs]}))
            return [log.message for log in logs], [repr(r.parameters) for r in runs]

    messages, parameters = asyncio.run(stored())
    assert len(messages) > 3 and any(p for p in parameters)
    import sqlite3

    with sqlite3.connect(home / "mlflow.db") as db:
        mlflow_rows = db.execute("SELECT key, value FROM params UNION ALL SELECT key, value FROM tags").fetchall()
    assert len(mlflow_rows) > 5
    secret = moto["AWS_SECRET_ACCESS_KEY"]
    texts = {"outputs": "\n".join(outputs), "prefect logs": "\n".join(messages), "parameters": "\n".join(parameters),
             "mlflow": repr(mlflow_rows)}
    assert not [name for name, text in texts.items() if secret in text], "the secret key was shown"


@pytest.mark.parametrize(("table", "expected"), [
    ('{ AWS_SECRET_ACCESS_KEY = "no-such-block-here" }',
     "secrets.AWS_SECRET_ACCESS_KEY: no Prefect Secret block named 'no-such-block-here'"),
    ('{ HOME = "some-block" }', "secrets.HOME: not a variable aemon reads credentials from"),
    ('{ PGPASSWORD = "Not A Name" }', "secrets.PGPASSWORD: 'Not A Name' is not a Secret block name"),
    ('"pg-password"', "secrets: expected a table of VARIABLE"),
])
def test_a_bad_or_missing_secret_block_is_one_line_naming_it(tmp_path, capsys, monkeypatch, prefect_harness, table,
                                                             expected):
    from flows.secret_blocks import forget_applied

    forget_applied()
    config = write_config(tmp_path / "home", "inbox/pumps")
    config.write_text(f"secrets = {table}\n" + config.read_text())
    for command in (["ingest", STREAM, "--in-process"], ["sql", "SELECT 1"]):
        code, _, err = run_cli(capsys, monkeypatch, *command, "--config", str(config))
        line = one_line_error(err)
        assert code == 2 and expected in line, line


def test_without_a_secrets_table_no_prefect_is_imported(tmp_path):
    """`aemon sql`'s configuration path reads no block and imports no Prefect with no [secrets]."""
    config = write_config(tmp_path / "home", "inbox/pumps")
    probe = ("import sys; from flows.locations import load_warehouse, load_tracking_uri; "
             f"load_warehouse({str(config)!r}); load_tracking_uri({str(config)!r}); print('prefect' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.stdout.strip() == "False", done.stdout + done.stderr
