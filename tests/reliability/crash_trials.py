"""The crash-trial harness: a home prepared once per step, copied back before every trial,
a fork server (tests/reliability/crash_worker.py) that runs and kills the step, and the
state a trial compares (`read_state`).

What "the same state" means, per store:

- warehouse: every table's rows, sorted, without the columns that record when or by which
  run a row was written: every `*_at` column (the wall clock of the write: ingested_at,
  seen_at, scored_at, detected_at, updated_at, opened_at, logged_at, checked_at, ...),
  `check_id` (a random id per drift check) and `mlflow_run_id` (the MLflow run of that
  check: a re-run is a new run). Every other column, batch ids included (a file's content
  hash), must match the uninterrupted run exactly. The lake's readings likewise, all columns.
- lake files: every Parquet file the catalog lists for the readings table exists on disk
  and the readings read through SQL are the reference's; files on disk that the catalog does
  not list (parts staged by a killed ingest, its `.quarantine-*` stage) are counted and
  must never be read by SQL; their names differ per attempt, so names are not compared.
- MLflow: compared by properties (see test_crash.py), not bytes: run ids, version numbers
  and times differ by construction.
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd

REPO = Path(__file__).resolve().parents[2]
STREAM = "pumps"
RUN_TIME_COLUMNS = ("check_id", "mlflow_run_id")


def run_time_column(name: str) -> bool:
    return name.endswith("_at") or name in RUN_TIME_COLUMNS


def read_warehouse(config) -> dict[str, Any]:
    from monitoring.store.connection import CATALOG_ALIAS, connect
    from monitoring.store.readings import read_readings
    from monitoring.store.schema import TABLES

    tables: dict[str, pd.DataFrame] = {}
    data_path = Path(config.warehouse.data_path)
    with connect(config.warehouse) as con:
        for name in TABLES:
            frame = con.execute(f"SELECT * FROM {name}").df()
            frame = frame.drop(columns=[c for c in frame.columns if run_time_column(c)])
            tables[name] = frame.sort_values(list(frame.columns)).reset_index(drop=True)
        exists = con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
                             "AND schema_name = 'lake' AND table_name = ?", [STREAM]).fetchall()[0][0]
        listed = [("main", name) for name in TABLES]
        if exists:
            tables["lake.pumps"] = read_readings(con, STREAM).reset_index(drop=True)
            listed.append(("lake", STREAM))
        visible = [row[0] for schema, table in listed for row in con.execute(
            f"SELECT data_file FROM ducklake_list_files('{CATALOG_ALIAS}', ?, schema => ?)", [table, schema]
        ).fetchall()]
    visible_paths = {str((data_path / f).resolve()) if not os.path.isabs(f) else str(Path(f).resolve())
                     for f in visible}
    on_disk = {str(p.resolve()) for p in data_path.rglob("*") if p.is_file()} if data_path.exists() else set()
    return {"tables": tables, "visible_files": visible_paths, "disk_files": on_disk}


def read_registry(config, load: bool) -> dict[str, Any]:
    """Runs, versions, aliases and `aemon models compare` of the stream; with `load`, each
    alias's model loaded and scoring a few windows."""
    from mlflow.exceptions import MlflowException

    from monitoring.models import registry

    uri = config.mlflow_tracking_uri
    if not (config.home / "mlflow.db").exists():
        return {"runs": [], "logged_models": [], "versions": [], "aliases": {}, "model_tags": {}, "loaded": {},
                "compare": None}
    client = registry.client_for(uri)
    name = registry.model_name(STREAM)
    runs, logged = [], []
    for experiment in client.search_experiments():
        for run in client.search_runs([experiment.experiment_id], max_results=1000):
            runs.append({"run_id": run.info.run_id, "status": run.info.status, "name": run.info.run_name,
                         "tags": dict(run.data.tags)})
        logged += [{"model_id": m.model_id, "status": str(m.status), "run_id": m.source_run_id}
                   for m in client.search_logged_models([experiment.experiment_id])]
    state: dict[str, Any] = {"runs": runs, "logged_models": logged, "versions": [], "aliases": {},
                             "model_tags": {}, "loaded": {}, "compare": None}
    try:
        model = client.get_registered_model(name)
    except MlflowException:
        return state
    state["aliases"] = {alias: int(v) for alias, v in (model.aliases or {}).items()}
    state["model_tags"] = dict(model.tags)
    state["versions"] = [{"version": int(mv.version), "run_id": mv.run_id, "tags": dict(mv.tags),
                          "status": mv.status} for mv in client.search_model_versions(f"name = '{name}'")]
    state["compare"] = registry.compare_versions(uri, STREAM)
    for alias in state["aliases"] if load else ():
        try:  # the artifacts load and the model scores readings
            loaded, version = registry.load_model(uri, STREAM, alias)
            bundle = registry.loaded_bundle(loaded)
            from monitoring.store.connection import connect
            from monitoring.store.readings import read_readings
            with connect(config.warehouse) as con:
                frame = read_readings(con, STREAM)[bundle.input_columns()]
            frame = frame[frame["asset"] == frame["asset"].iloc[0]].head(4 * bundle.spec.size)
            state["loaded"][alias] = {"version": version.version, "kind": version.kind,
                                      "scored": len(bundle.score_readings(frame))}
        except Exception as exc:  # recorded, and the trial fails on it with this message
            state["loaded"][alias] = {"error": f"{type(exc).__name__}: {exc}"}
    return state


def read_state(config, load: bool = False) -> dict[str, Any]:
    return {"warehouse": read_warehouse(config), "registry": read_registry(config, load)}


class Lab:
    """One home folder (always the same absolute path: the DuckLake catalog and MLflow's
    store record absolute paths), saved and restored as named snapshots, and the fork server."""

    def __init__(self, root: Path):
        self.root = root
        self.home = root / "home"
        self.snapshots = root / "snapshots"
        self.snapshots.mkdir(parents=True, exist_ok=True)
        self.log = (root / "worker.log").open("w")
        env = {k: v for k, v in os.environ.items() if k not in ("AEMON_HOME", "AEMON_CONFIG")}
        env.update(PYTHONPATH=str(REPO), MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
                   GIT_PYTHON_REFRESH="quiet")
        self.server = subprocess.Popen([sys.executable, "-m", "tests.reliability.crash_worker"], cwd=root, env=env,
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True)

    @property
    def config_path(self) -> str:
        return str(self.home / "aemon.toml")

    def run(self, step: str, kill: dict | None = None, **args: Any) -> dict:
        assert self.server.stdin is not None and self.server.stdout is not None
        self.server.stdin.write(json.dumps({"step": step, "config": self.config_path, "args": args,
                                            "kill": kill}) + "\n")
        self.server.stdin.flush()
        line = self.server.stdout.readline()
        if not line:
            raise RuntimeError(f"the crash worker died; see {self.root / 'worker.log'}:\n{self.log_tail()}")
        return json.loads(line)

    def run_ok(self, step: str, **args: Any) -> dict:
        reply = self.run(step, **args)
        if reply["exit"] != 0:
            raise AssertionError(f"{step} failed (exit {reply['exit']}):\n{self.log_tail()}")
        return reply

    def inspect(self, load: bool = False) -> dict[str, Any]:
        out = self.root / "state.pickle"
        self.run_ok("inspect", out=str(out), load=load)
        return pickle.loads(out.read_bytes())

    def log_tail(self, n: int = 6000) -> str:
        self.log.flush()
        return (self.root / "worker.log").read_text()[-n:]

    def save(self, name: str) -> None:
        shutil.copytree(self.home, self.snapshots / name, symlinks=True)

    def restore(self, name: str) -> None:
        if self.home.exists():
            shutil.rmtree(self.home)
        shutil.copytree(self.snapshots / name, self.home, symlinks=True)

    def close(self) -> None:
        if self.server.stdin is not None:
            self.server.stdin.close()
        self.server.wait(timeout=60)
        self.log.close()
