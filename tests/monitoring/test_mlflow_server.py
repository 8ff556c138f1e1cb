"""A configured tracking URI works like the embedded SQLite store: a real `mlflow server`
on 127.0.0.1 with a SQLite backend and proxied artifacts; training, registration, the
gate and loading `@champion` all go through HTTP. Slow (a server start)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from aemodels.thresholds import ThresholdRule
from features.synthetic import SENSORS
from features.windows import WindowSpec
from monitoring.models import promotion, registry
from monitoring.models.fitting import fit_candidate, prepare_training

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


@pytest.fixture
def mlflow_server(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with open(tmp_path / "server.log", "w") as log:
        process = subprocess.Popen(
            [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
             "--artifacts-destination", str(tmp_path / "server-artifacts")],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ},
        )
        uri = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 180
            while True:
                try:
                    with urllib.request.urlopen(f"{uri}/health", timeout=2):
                        break
                except OSError as err:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(
                            f"mlflow server did not start:\n{(tmp_path / 'server.log').read_text()}") from err
                    time.sleep(0.5)
            yield uri, tmp_path
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=60)


def test_train_register_and_load_champion_through_a_tracking_server(mlflow_server, small_stream):
    uri, root = mlflow_server
    data = prepare_training(small_stream.readings, stream="pumps", sensors=list(SENSORS),
                            spec=WindowSpec(size=20, stride=10), label_columns=["label"], train_stride=2)
    good = fit_candidate(data, "mlp_ae", {"epochs": 3, "n_threads": 1}, ThresholdRule())
    weak = fit_candidate(data, "mlp_ae", {"epochs": 3, "n_threads": 1}, ThresholdRule(coefficient=1000.0))

    first = promotion.register_training(uri, None, data, [weak])
    second = promotion.register_training(uri, None, data, [good])
    assert first.decision.promoted and second.decision.promoted, second.decision.reason

    model, champion = registry.load_model(uri, "pumps")
    assert champion.version == second.versions["mlp_ae"].version
    readings = small_stream.readings[["timestamp", "asset", *SENSORS]]
    windows, _ = good.bundle.windows(readings)
    np.testing.assert_array_equal(model.predict(readings)["score"].to_numpy(), good.detector.score(windows.X))

    replaced, back = registry.rollback(uri, "pumps")
    assert (replaced, back.version) == (champion.version, first.versions["mlp_ae"].version)
    # artifacts went through the server to its artifact destination, not to a local path
    stored = list((root / "server-artifacts").rglob("MLmodel"))
    assert len(stored) == 2
