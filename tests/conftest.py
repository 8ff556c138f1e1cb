"""Shared fixtures: small synthetic data, an aemon home under tmp_path, one Prefect harness."""
from __future__ import annotations

import os

# Before anything imports prefect: the ephemeral API is slow to start on 2 cores.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

from pathlib import Path

import numpy as np
import pytest

from features.synthetic import SENSORS, SyntheticSpec, generate_stream

SMALL_SPEC = SyntheticSpec(n_assets=2, days=4.0, interval_s=60, seed=3)

# Tests train the default detectors; one torch thread each avoids oversubscribing 2 cores.
FAST_DETECTOR = """
[streams.pumps.detectors]
n_threads = 1
"""


def write_config(home: Path, extra: str = FAST_DETECTOR) -> Path:
    """An aemon.toml for the demo stream rooted at `home`."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / "aemon.toml"
    sensors = ", ".join(f'"{s}"' for s in SENSORS)
    path.write_text(
        f'home = "{home.as_posix()}"\n\n[streams.pumps]\nsensors = [{sensors}]\nlabel_columns = ["label"]\n' + extra
    )
    return path


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def small_stream():
    return generate_stream(SMALL_SPEC)


@pytest.fixture(scope="session")
def prefect_harness():
    """One Prefect test harness (temporary database, ephemeral API) for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def small_spec() -> SyntheticSpec:
    return SMALL_SPEC


@pytest.fixture(scope="session")
def config_writer():
    """write_config(home, extra=FAST_DETECTOR) -> path of an aemon.toml for the demo stream."""
    return write_config


@pytest.fixture
def aemon_home(tmp_path, monkeypatch):
    """A home folder and config file under tmp_path; cwd moved there so nothing lands elsewhere."""
    monkeypatch.delenv("AEMON_HOME", raising=False)
    monkeypatch.delenv("AEMON_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "home"
    return home, write_config(home)


# The incidents table of schema version 2 (releases before incident ids and a lifecycle).
V2_INCIDENTS = """CREATE TABLE incidents (stream VARCHAR NOT NULL, asset VARCHAR NOT NULL, start TIMESTAMP NOT NULL,
    "end" TIMESTAMP NOT NULL, n_windows INTEGER NOT NULL, peak_score DOUBLE NOT NULL, peak_severity DOUBLE NOT NULL,
    top_sensors VARCHAR NOT NULL, model_versions VARCHAR NOT NULL, status VARCHAR NOT NULL,
    updated_at TIMESTAMP NOT NULL DEFAULT current_localtimestamp())"""
V3_TABLES = ("incidents", "incident_log", "alert_deliveries", "feed_status", "drift_checks", "inbox_files")
# The watermarks of schema versions 2 and 3 (before adaptive alarms' history sums).
V3_WATERMARKS = """CREATE TABLE watermarks (stream VARCHAR NOT NULL, asset VARCHAR NOT NULL,
    last_window_end TIMESTAMP NOT NULL, model_version INTEGER NOT NULL,
    updated_at TIMESTAMP NOT NULL DEFAULT current_localtimestamp())"""


def make_v2_catalog(warehouse, *statements: str) -> None:
    """Turn a new catalog into one as schema version 2 left it (then run `statements`), and
    forget the cached database, as a new process of this release finds it."""
    from monitoring.store.connection import close_all, connect

    with connect(warehouse, write=True) as con:
        for table in V3_TABLES:
            con.execute(f"DROP TABLE {table}")
        con.execute(V2_INCIDENTS)
        con.execute("DROP TABLE watermarks")
        con.execute(V3_WATERMARKS)
        for statement in statements:
            con.execute(statement)
        con.execute("DELETE FROM aemon_schema")
        con.execute("INSERT INTO aemon_schema (version) VALUES (2)")
    close_all()
