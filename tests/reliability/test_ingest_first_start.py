"""`aemon` commands started at once on a fresh machine (no Prefect database yet) both
run their flows: the first-time set-up of Prefect's database is done by one process at a time."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from features.synthetic import SENSORS
from monitoring.store.connection import Warehouse, query

STREAMS = ("a", "b")


@pytest.mark.slow
def test_commands_started_at_once_on_a_fresh_machine_all_succeed(tmp_path, small_stream):
    home = tmp_path / "home"
    sensors = ", ".join(f'"{s}"' for s in SENSORS)
    config = tmp_path / "aemon.toml"
    config.write_text(f'home = "{home.as_posix()}"\n' + "".join(
        f'\n[streams.{stream}]\nsensors = [{sensors}]\nlabel_columns = ["label"]\n' for stream in STREAMS))
    for stream in STREAMS:
        inbox = home / "inbox" / stream
        inbox.mkdir(parents=True)
        small_stream.readings.head(300).to_csv(inbox / f"{stream}.csv", index=False)
    prefect_home = tmp_path / "prefect"  # fresh and empty: no database yet
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AEMON_"))}
    env.update(PREFECT_HOME=str(prefect_home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    runs = [subprocess.Popen([sys.executable, "-c", "from flows.cli import main; main()", "ingest", stream,
                              "--flow-run", "--config", str(config)],
                             cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for stream in STREAMS]
    outputs = [run.communicate(timeout=400) for run in runs]
    for run, (out, err) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, out + err
        assert "Traceback" not in out + err, out + err
    warehouse = Warehouse.at(home)
    for stream in STREAMS:
        assert query(warehouse, f'SELECT count(*) AS n FROM lake."{stream}"')["n"].item() == 300
