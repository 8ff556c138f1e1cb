"""Security: names cannot inject SQL or escape AEMON_HOME, `aemon sql` only reads, model
files are never unpickled, servers bind 127.0.0.1, and no password reaches a message.

The rules these tests hold:
- a stream name is an identifier: ASCII letters, digits, '_' and '-', at most 64, not
  starting with '-' (flows.config.STREAM_NAME); it names a folder, a SQL table and an MLflow
  model, so nothing else is taken, and the lake refuses any other name (store.lake.stream_root);
- asset ids and other values are data: stored literally, always SQL parameters;
- sensor names are identifiers too (features.readers), a file's other headers are mapped to
  them with `column_aliases`;
- an inbox or archive folder given in the config is the user's choice (absolute, or relative
  to home, `..` included); a NUL byte in any folder setting is refused.
"""
from __future__ import annotations

import contextlib
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from monitoring.store.connection import connect, table_counts
from tests.reliability.cli_runs import one_line_error, run_cli

PAYLOADS = ['"; DROP TABLE incidents; --', "' OR '1'='1", 'a"b', "x); DELETE FROM ingest_batches; --",
            "pumps; DROP TABLE scores", "[/]"]
SENSORS = ["pressure", "flow"]
ROOT = Path(__file__).resolve().parents[2]


def readings(assets: list[str], n: int = 120) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    times = pd.date_range("2026-01-01", periods=n, freq="60s")
    return pd.concat([pd.DataFrame({"timestamp": times, "asset": asset, **{s: rng.normal(size=n) for s in SENSORS}})
                      for asset in assets], ignore_index=True)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.delenv("AEMON_CONFIG", raising=False)
    monkeypatch.delenv("AEMON_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "home"
    config = tmp_path / "aemon.toml"
    config.write_text(f'home = "{home.as_posix()}"\n[streams.pumps]\nsensors = {SENSORS}\n'.replace("'", '"'))
    return home, config


@pytest.fixture
def stocked(home, tmp_path):
    """A warehouse with readings whose asset ids are the payloads, stored literally, and an
    incident on each of those assets."""
    from flows.config import load_config
    from monitoring.alerting.incidents import IncidentRule
    from monitoring.alerting.lifecycle import store_incidents
    from monitoring.store.connection import write
    from monitoring.store.ingestion import ingest_file
    from monitoring.store.results import write_window_results

    _, config = home
    cfg = load_config(config)
    frame = readings(PAYLOADS, n=60)
    frame.to_csv(tmp_path / "hostile.csv", index=False)
    result = ingest_file(cfg.warehouse, "pumps", cfg.stream("pumps").stream_schema(), tmp_path / "hostile.csv")
    assert result.status == "ok", result
    start = pd.Timestamp("2026-01-01")
    scored = pd.DataFrame([
        {"asset": asset, "window_start": start + i * pd.Timedelta(minutes=10),
         "window_end": start + i * pd.Timedelta(minutes=10) + pd.Timedelta(minutes=30), "score": 3.0,
         "threshold": 1.0, "severity": 3.0, "is_anomaly": True, "top_sensors": "pressure",
         "contributions": '{"pressure": 1.0}', "model_version": 1}
        for asset in PAYLOADS for i in range(3)])

    def run(con):
        write_window_results(con, "pumps", scored, "pumps-detector", 1)
        return store_incidents(con, "pumps", IncidentRule(), changed=dict.fromkeys(PAYLOADS, start))

    write(cfg.warehouse, run)
    return cfg, config


def counts(cfg) -> dict[str, int]:
    with connect(cfg.warehouse) as con:
        found = table_counts(con)
        found["lake.pumps"] = con.execute('SELECT count(*) FROM lake."pumps"').fetchone()[0]
    return found


# -- B1: names and values cannot inject SQL ----------------------------------------------------


def test_asset_ids_are_stored_literally(stocked):
    cfg, _ = stocked
    with connect(cfg.warehouse) as con:
        assets = sorted(r[0] for r in con.execute('SELECT DISTINCT asset FROM lake."pumps"').fetchall())
        incident_assets = sorted(r[0] for r in con.execute("SELECT asset FROM incidents").fetchall())
    assert assets == sorted(PAYLOADS) and incident_assets == sorted(PAYLOADS)
    assert all(n > 0 for table, n in counts(cfg).items() if table in ("ingest_batches", "incidents", "scores"))


@pytest.mark.parametrize("payload", PAYLOADS)
def test_payload_stream_names_in_the_config_are_refused_in_one_line(home, tmp_path, capsys, monkeypatch, payload):
    _, config = home
    quoted = payload.replace("\\", "\\\\").replace('"', '\\"')
    config.write_text(f'[streams."{quoted}"]\nsensors = ["pressure"]\n', encoding="utf-8")
    code, _, err = run_cli(capsys, monkeypatch, "quality", payload, "--config", str(config))
    assert code == 2
    assert one_line_error(err) == (f"error: {config}: streams: stream name {payload!r}: use letters, digits, '_' "
                                   "and '-' (max 64)")


@pytest.mark.parametrize("payload", PAYLOADS)
def test_payload_arguments_change_no_table(stocked, capsys, monkeypatch, payload):
    cfg, config = stocked
    before = counts(cfg)
    for args in (("quality", payload), ("train", payload), ("score", payload), ("models", "compare", payload),
                 ("threshold", "recalibrate", payload), ("replay", str(config), "--stream", payload)):
        code, _, err = run_cli(capsys, monkeypatch, *args, "--config", str(config))
        assert code == 2 and one_line_error(err) == (f"error: stream {payload!r} is not configured; configured "
                                                     "streams: ['pumps']"), (args, err)
    for args in (("incidents", "show", payload), ("incidents", "ack", payload), ("incidents", "close", payload)):
        code, _, err = run_cli(capsys, monkeypatch, *args, "--config", str(config))
        assert code == 2 and one_line_error(err).startswith(f"error: no incident has an id starting with {payload!r}")
    code, _, err = run_cli(capsys, monkeypatch, "incidents", "list", payload, "--config", str(config))
    assert code == 2 and one_line_error(err) == (f"error: stream {payload!r} is not configured and has no "
                                                 "incidents; configured streams: ['pumps']")
    code, _, err = run_cli(capsys, monkeypatch, "import", "skab", "--data", str(config.parent), "--stream", payload,
                           "--config", str(config))
    assert code == 2 and one_line_error(err).startswith("error: "), err
    assert counts(cfg) == before


def test_payload_actor_and_note_are_stored_literally(stocked, capsys, monkeypatch):
    cfg, config = stocked
    with connect(cfg.warehouse) as con:
        incident = con.execute("SELECT incident_id FROM incidents WHERE asset = ?", [PAYLOADS[0]]).fetchone()[0]
    code, out, err = run_cli(capsys, monkeypatch, "incidents", "ack", incident, "--by", PAYLOADS[1], "--note",
                             PAYLOADS[3], "--config", str(config))
    assert code == 0, err
    code, out, err = run_cli(capsys, monkeypatch, "incidents", "show", incident, "--config", str(config))
    assert code == 0 and PAYLOADS[1] in out, err
    with connect(cfg.warehouse) as con:
        by, status = con.execute("SELECT acknowledged_by, status FROM incidents WHERE incident_id = ?",
                                 [incident]).fetchone()
    assert (by, status) == (PAYLOADS[1], "acknowledged")
    assert counts(cfg)["ingest_batches"] == 1


def test_incidents_list_prints_hostile_names_as_text(stocked, capsys, monkeypatch):
    _, config = stocked
    code, out, err = run_cli(capsys, monkeypatch, "incidents", "list", "--config", str(config))
    assert code == 0, err
    assert "│ [/]" in out and "' OR '1'='1" in out and "DROP TABLE" in out


@pytest.mark.parametrize("header", PAYLOADS[:4])
def test_payload_sensor_headers_map_through_aliases_or_are_refused(home, tmp_path, capsys, monkeypatch, header):
    from flows.config import load_config
    from monitoring.store.ingestion import ingest_file

    _, config = home
    quoted = header.replace("\\", "\\\\").replace('"', '\\"')
    # a configured sensor named by the payload: one line naming the column rule
    config.write_text(f'[streams.pumps]\nsensors = ["{quoted}"]\n', encoding="utf-8")
    code, _, err = run_cli(capsys, monkeypatch, "quality", "pumps", "--config", str(config))
    assert code == 2 and f"column name {header!r} cannot be a lake column" in one_line_error(err)
    # the same header mapped to a plain name: read, stored under that name
    config.write_text(f'home = "{home[0].as_posix()}"\n[streams.pumps]\nsensors = ["pressure", "flow"]\n'
                      f'column_aliases = {{ "{quoted}" = "pressure" }}\n', encoding="utf-8")
    cfg = load_config(config)
    frame = readings(["p1"]).rename(columns={"pressure": header})
    frame.to_csv(tmp_path / "r.csv", index=False)
    result = ingest_file(cfg.warehouse, "pumps", cfg.stream("pumps").stream_schema(), tmp_path / "r.csv")
    assert (result.status, result.rows_accepted) == ("ok", len(frame)), result
    with connect(cfg.warehouse) as con:
        assert con.execute('SELECT count(pressure) FROM lake."pumps"').fetchone()[0] == len(frame)
        assert set(table_counts(con)) >= {"ingest_batches", "quarantine", "incidents"}


# -- `aemon sql` reads, and only reads ---------------------------------------------------------


def test_sql_reads_a_hostile_value_as_text(stocked, capsys, monkeypatch):
    _, config = stocked
    code, out, err = run_cli(capsys, monkeypatch, "sql", "SELECT '[/]' AS \"[/x]\", ? AS y".replace(", ? AS y", ""),
                             "--config", str(config))
    assert code == 0 and "[/]" in out and "[/x]" in out, err


def hostile_queries(cfg, tmp_path) -> list[str]:
    catalog = cfg.warehouse.catalog.removeprefix("sqlite:")
    data = cfg.warehouse.data_path
    return [
        "DELETE FROM ingest_batches",
        "DROP TABLE incidents",
        "SELECT 1; DELETE FROM ingest_batches",
        "UPDATE incidents SET status = 'closed'",
        f"ATTACH 'ducklake:sqlite:{catalog}' AS w2 (DATA_PATH '{data}'); DELETE FROM w2.ingest_batches",
        "DETACH aemon",
        f"COPY (SELECT 42) TO '{tmp_path / 'written.csv'}'",
        f"COPY (SELECT 42) TO '{data}/written.parquet'",
        "INSTALL httpfs",
        "SET enable_external_access = true",
        "CALL ducklake_expire_snapshots('aemon', older_than => now())",
        "EXPLAIN ANALYZE DELETE FROM ingest_batches",
        "SELECT * FROM read_text('/etc/hostname')",
        f"SELECT * FROM read_csv('{tmp_path / 'hostile.csv'}')",
    ]


def test_sql_refuses_every_write_and_file_access_in_one_line(stocked, tmp_path, capsys, monkeypatch):
    cfg, config = stocked
    before = counts(cfg)
    data_files = sorted(p for p in Path(cfg.warehouse.data_path).rglob("*") if p.is_file())
    for query in hostile_queries(cfg, tmp_path):
        code, _, err = run_cli(capsys, monkeypatch, "sql", query, "--config", str(config))
        assert code == 2, (query, err)
        assert one_line_error(err).startswith("error: query failed: "), (query, err)
    assert counts(cfg) == before
    assert not (tmp_path / "written.csv").exists()
    assert sorted(p for p in Path(cfg.warehouse.data_path).rglob("*") if p.is_file()) == data_files
    code, out, _ = run_cli(capsys, monkeypatch, "sql", "SELECT count(*) AS n FROM lake.pumps", "--config",
                           str(config))
    assert code == 0 and str(before["lake.pumps"]) in out


# -- B2: names cannot escape AEMON_HOME --------------------------------------------------------


@pytest.mark.parametrize("name", ["../escaped", "/tmp/abs", "..", ".", "a/b", "a\\b", "pumps\n", "a\x00b", "ü-pumpe",
                                  "pump 1", "-dash", "x" * 65])
def test_stream_names_that_are_not_identifiers_are_refused(home, capsys, monkeypatch, name):
    _, config = home
    escaped = "".join(f"\\u{ord(c):04x}" if ord(c) < 32 or c in '"\\' else c for c in name)
    config.write_text(f'[streams."{escaped}"]\nsensors = ["pressure"]\n', encoding="utf-8")
    code, _, err = run_cli(capsys, monkeypatch, "quality", "pumps", "--config", str(config))
    assert code == 2
    assert one_line_error(err) == (f"error: {config}: streams: stream name {name!r}: use letters, digits, '_' and "
                                   "'-' (max 64)")


@pytest.mark.parametrize("name", ["../escaped", "/tmp/abs", "..", "pumps\n", "a\x00b"])
def test_the_lake_never_takes_a_stream_name_as_a_path(tmp_path, name):
    from monitoring.errors import WarehouseError
    from monitoring.store.lake import stage_parts

    with pytest.raises(WarehouseError, match="is not allowed"):
        stage_parts(readings(["p1"]), tmp_path / "data", name, "batch", 0)
    assert not any(tmp_path.parent.rglob("part-batch-*"))


def test_import_to_an_escaping_stream_writes_nothing(home, tmp_path, capsys, monkeypatch):
    _, config = home
    (tmp_path / "skab" / "valve1").mkdir(parents=True)
    (tmp_path / "skab" / "valve1" / "0.csv").write_text(
        "datetime;Pressure;anomaly;changepoint\n2020-03-09 10:14:33;0.1;0;0\n2020-03-09 10:14:34;0.2;0;0\n")
    before = sorted(p for p in tmp_path.parent.rglob("*") if p.is_file())
    code, _, err = run_cli(capsys, monkeypatch, "import", "skab", "--data", str(tmp_path / "skab"), "--stream",
                           "../../escaped", "--config", str(config))
    assert code == 2 and "'../../escaped' is not allowed" in one_line_error(err)
    assert sorted(p for p in tmp_path.parent.rglob("*") if p.is_file()) == before


@pytest.mark.parametrize("setting", ["home", "streams.pumps.inbox", "streams.pumps.archive"])
def test_nul_byte_in_a_folder_setting_is_one_line(home, capsys, monkeypatch, setting):
    _, config = home
    key, table = setting.rsplit(".", 1)[-1], setting.rsplit(".", 1)[0] if "." in setting else None
    body = f'{key} = "in\\u0000box"\n'
    config.write_text(body + '[streams.pumps]\nsensors = ["pressure"]\n' if table is None
                      else f'[{table}]\nsensors = ["pressure"]\n' + body, encoding="utf-8")
    for args in (("quality", "pumps"), ("sql", "SELECT 1")):
        if setting != "home" and args[0] == "sql":
            continue
        code, _, err = run_cli(capsys, monkeypatch, *args, "--config", str(config))
        message = one_line_error(err)
        assert code == 2 and setting in message and "NUL" in message, message


def test_explicit_inbox_and_archive_folders_are_the_users_choice(home, tmp_path):
    """Absolute folders are taken as given, relative ones under home (`..` included): the
    user wrote them; only stream names are held inside the lake."""
    from flows.config import load_config

    home_dir, config = home
    config.write_text(f'home = "{home_dir.as_posix()}"\n[streams.pumps]\nsensors = ["pressure"]\n'
                      f'inbox = "{(tmp_path / "drop").as_posix()}"\narchive = "../done"\n', encoding="utf-8")
    cfg = load_config(config)
    assert cfg.inbox("pumps") == tmp_path / "drop"
    assert cfg.archive("pumps") == home_dir / ".." / "done"


# -- B3: model files are never unpickled -------------------------------------------------------


class Planted:
    """Unpickling this runs os.system: what a malicious weights file would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_planted_as_weights_is_refused_and_never_run(tmp_path):
    from aemodels import make_detector
    from aemodels.base import WEIGHTS_FILE, BaseDetector
    from aemodels.errors import ModelFileError

    X = np.random.default_rng(0).normal(size=(40, 4, 2)).astype(np.float32)
    make_detector("mlp_ae", epochs=1, n_threads=1, progress=False).fit(X).save(tmp_path / "detector")
    BaseDetector.load(tmp_path / "detector")  # as saved: loads
    marker = tmp_path / "pwned"
    with open(tmp_path / "detector" / WEIGHTS_FILE, "wb") as f:
        pickle.dump({"weight": Planted(marker)}, f)
    with pytest.raises(ModelFileError, match=f"{WEIGHTS_FILE}: not a weights file save\\(\\) wrote; refused"):
        BaseDetector.load(tmp_path / "detector")
    assert not marker.exists()
    # the bundle a registered model is, too
    from monitoring.models.bundle import ModelBundle  # noqa: F401 (loads through BaseDetector.load)


def test_a_planted_score_file_is_refused(tmp_path):
    from aemodels import make_detector
    from aemodels.base import VAL_SCORES_FILE, BaseDetector
    from aemodels.errors import ModelFileError

    X = np.random.default_rng(0).normal(size=(40, 4, 2)).astype(np.float32)
    make_detector("mlp_ae", epochs=1, n_threads=1, progress=False).fit(X).save(tmp_path / "detector")
    np.save(tmp_path / "detector" / VAL_SCORES_FILE, np.array([Planted(tmp_path / "pwned")], dtype=object),
            allow_pickle=True)
    with pytest.raises(ModelFileError, match=VAL_SCORES_FILE):
        BaseDetector.load(tmp_path / "detector")
    assert not (tmp_path / "pwned").exists()


def test_a_pickle_planted_in_a_registered_model_is_never_run(tmp_path, small_stream):
    from aemodels.thresholds import ThresholdRule
    from features.synthetic import SENSORS as PUMP_SENSORS
    from features.windows import WindowSpec
    from monitoring.models import promotion, registry
    from monitoring.models.fitting import fit_candidate, prepare_training

    uri, artifacts = f"sqlite:///{tmp_path / 'mlflow.db'}", (tmp_path / "artifacts").as_uri()
    data = prepare_training(small_stream.readings, stream="pumps", sensors=list(PUMP_SENSORS),
                            spec=WindowSpec(size=20, stride=10), label_columns=["label"], train_stride=4)
    candidate = fit_candidate(data, "mlp_ae", {"epochs": 1, "n_threads": 1, "progress": False}, ThresholdRule())
    promotion.register_training(uri, artifacts, data, [candidate])
    marker = tmp_path / "pwned"
    planted = list((tmp_path / "artifacts").rglob("*.pkl"))
    for path in planted:
        path.write_bytes(pickle.dumps(Planted(marker)))
    with contextlib.suppress(Exception):  # refusing the file is fine; running it is not
        registry.load_model(uri, "pumps")
    assert not marker.exists(), f"loading the champion ran the pickle planted in {planted}"


@pytest.mark.parametrize("name", ["evil.pkl", "evil.csv", "evil.parquet"])
def test_a_pickle_in_the_inbox_is_never_unpickled(home, tmp_path, name):
    from flows.config import load_config
    from monitoring.store.ingestion import ingest_file

    _, config = home
    cfg = load_config(config)
    marker = tmp_path / "pwned"
    path = tmp_path / name
    path.write_bytes(pickle.dumps(Planted(marker)))
    result = ingest_file(cfg.warehouse, "pumps", cfg.stream("pumps").stream_schema(), path)
    assert result.status == "rejected" and result.rows_accepted == 0, result
    assert not marker.exists()


def test_no_code_path_unpickles():
    """torch.load only with weights_only=True, numpy without pickles, no pickle/joblib loads."""
    problems = []
    for package in ("aemodels", "features", "monitoring", "flows"):
        for path in sorted((ROOT / package).rglob("*.py")):
            text = path.read_text()
            for call in re.findall(r"torch\.load\([^)]*\)", text):
                if "weights_only=True" not in call:
                    problems.append(f"{path}: {call}")
            for pattern in (r"pickle\.loads?\(", r"joblib\.load\(", r"read_pickle\(", r"allow_pickle=True",
                            r"cloudpickle\.loads?\(", r"dill\.loads?\("):
                problems += [f"{path}: {pattern}" for _ in re.findall(pattern, text)]
    assert problems == []


# -- B4: servers bind 127.0.0.1 ----------------------------------------------------------------


def test_every_server_command_we_print_or_document_binds_localhost():
    """`prefect server start`, `mlflow server` and `mlflow ui` wherever the project starts or
    tells users to start one (README, prefect.yaml, Makefile, the CLI's messages, bench)."""
    files = [ROOT / "README.md", ROOT / "prefect.yaml", ROOT / "Makefile", *(ROOT / "flows").glob("*.py"),
             *(ROOT / "bench").glob("*.py"), *(ROOT / ".ci").glob("*")]
    found, unbound = 0, []
    for path in files:
        if not path.is_file():
            continue
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if re.search(r"(prefect server start|mlflow\W+(server|ui))", line):
                found += 1
                # `--host 127.0.0.1`, or prose saying so; it may follow on the next line of wrapped prose
                near = " ".join(lines[i:i + 2])
                if "127.0.0.1" not in near or "0.0.0.0" in near:
                    unbound.append(f"{path.name}: {line.strip()}")
    assert found >= 5 and unbound == [], unbound


def test_mlflow_and_prefect_servers_the_code_starts_bind_localhost():
    """Where code starts a server itself (subprocess args), its --host is 127.0.0.1."""
    bad = []
    for path in [*(ROOT / "bench").glob("*.py"), *(ROOT / "flows").glob("*.py"), *(ROOT / "monitoring").rglob("*.py")]:
        text = path.read_text()
        for match in re.finditer(r'"--host",\s*([^,\]]+)', text):
            if "127.0.0.1" not in match.group(1):
                bad.append(f"{path.name}: {match.group(0)}")
        if re.search(r"0\.0\.0\.0", text):
            bad.append(f"{path.name}: 0.0.0.0")
    assert bad == []


def test_aemon_serve_opens_no_listening_port_of_its_own():
    """`aemon serve` runs Prefect's runner; its health-check webserver stays off, and would
    bind localhost if a user turned it on."""
    from prefect.settings import get_current_settings

    text = (ROOT / "flows" / "serve.py").read_text()
    assert "webserver=True" not in text
    runner = get_current_settings().runner.server
    assert runner.enable is False and runner.host in ("localhost", "127.0.0.1")


# -- B5: no password in messages ---------------------------------------------------------------


def test_redact_masks_uri_and_connection_string_passwords():
    from monitoring.store.redaction import redact

    assert redact("postgresql://aemon:s3cret@db:5432/mlflow") == "postgresql://aemon:***@db:5432/mlflow"
    assert redact("at http://u:p%40ss@h/x and s3://k:v@b/p") == "at http://u:***@h/x and s3://k:***@b/p"
    assert redact("postgres:dbname=a host=h password=s3cret user=u") == "postgres:dbname=a host=h password=*** user=u"
    assert redact("password = 'a b c' port=1") == "password = *** port=1"
    assert redact("https://h/x?token=1&password=s3cret&y=2") == "https://h/x?token=1&password=***&y=2"
    assert redact("sqlite:////home/u/mlflow.db, http://h:5000") == "sqlite:////home/u/mlflow.db, http://h:5000"


def test_a_catalog_password_never_reaches_the_error(home, capsys, monkeypatch):
    _, config = home
    config.write_text('[warehouse]\ncatalog = "postgres:dbname=aemon host=127.0.0.1 port=1 user=aemon '
                      'password=s3cret"\n', encoding="utf-8")
    for args in (("sql", "SELECT 1"), ("incidents", "list"), ("warehouse", "maintain")):
        code, out, err = run_cli(capsys, monkeypatch, *args, "--config", str(config))
        assert code == 2 and "s3cret" not in out + err, err
        assert "password=***" in one_line_error(err)


@pytest.fixture
def tracking_server(tmp_path):
    """A real `mlflow server` on 127.0.0.1 (no auth of its own: credentials in the URI are
    sent and ignored, as behind a proxy that checks them)."""
    import signal
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = tmp_path / "mlflow-server"
    server.mkdir()
    with open(server / "server.log", "w") as log:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
             "--workers", "1", "--backend-store-uri", f"sqlite:///{server / 'server.db'}",
             "--artifacts-destination", str(server / "artifacts")],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, (server / "server.log").read_text()
                time.sleep(0.5)
        yield port
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)


@pytest.mark.slow
def test_no_secret_in_output_logs_mlflow_or_any_file(tmp_path, tracking_server, small_stream):
    """The tracking URI's password, the webhook URL's token and its signing key, through
    ingest, score (no model yet), train, score, models list: none is printed, logged
    (Prefect's run logs in its database), recorded in MLflow (params, tags, artifacts: the
    server's files) or written anywhere else."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    secrets = {"track": "s3cret-track-pw", "token": "s3cret-hook-token", "key": "s3cret-signing-key"}
    posts: list[bytes] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            posts.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    hook = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    home = tmp_path / "home"
    config = tmp_path / "aemon.toml"
    from features.synthetic import SENSORS as PUMP_SENSORS

    sensors = ", ".join(f'"{s}"' for s in PUMP_SENSORS)
    config.write_text(
        f'home = "{home.as_posix()}"\ntracking_uri = "http://aemon:{secrets["track"]}@127.0.0.1:{tracking_server}"\n'
        f'[webhook]\nurl_env = "AEMON_TEST_HOOK_URL"\nsecret_env = "AEMON_TEST_HOOK_KEY"\n'
        f'[streams.pumps]\nsensors = [{sensors}]\nlabel_columns = ["label"]\n'
        '[streams.pumps.detectors]\nkinds = ["mlp_ae"]\nepochs = 2\nn_threads = 1\n', encoding="utf-8")
    (home / "inbox" / "pumps").mkdir(parents=True)
    small_stream.readings.to_csv(home / "inbox" / "pumps" / "readings.csv", index=False)
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_LOGGING_LEVEL": "INFO",
           "AEMON_TEST_HOOK_URL": f"http://127.0.0.1:{hook.server_port}/hooks/{secrets['token']}",
           "AEMON_TEST_HOOK_KEY": secrets["key"], "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"}
    for name in ("AEMON_HOME", "AEMON_CONFIG", "PREFECT_API_URL"):
        env.pop(name, None)
    printed = []
    try:
        for args, code in ((("ingest", "pumps"), 0), (("score", "pumps"), 2), (("train", "pumps"), 0),
                           (("score", "pumps"), 0), (("models", "list"), 0)):
            result = subprocess.run([sys.executable, "-c", "from flows.cli import main; main()", *args, "--config",
                                     str(config)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
            printed.append(result.stdout + result.stderr)
            assert result.returncode == code, (args, result.stdout, result.stderr)
    finally:
        hook.shutdown()
    assert "aemon:***@127.0.0.1" in printed[1]  # the store is named, its password masked
    assert posts, "the scoring sent its alerts"
    leaks = [(name, line) for text in printed for line in text.splitlines() for name, secret in secrets.items()
             if secret in line]
    for path in tmp_path.rglob("*"):
        if path.is_file() and path != config:
            data = path.read_bytes()
            leaks += [(name, str(path)) for name, secret in secrets.items() if secret.encode() in data]
    assert leaks == []
