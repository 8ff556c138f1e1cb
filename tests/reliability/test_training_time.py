"""What keeps a training's wall time bounded: a cap on the training windows of a long
range (the stride raised), figures drawn where each fit runs, and Prefect's server booting
while the command imports the training code."""

from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from aemodels.thresholds import ThresholdRule
from features.errors import WindowError
from features.synthetic import SENSORS
from features.training_set import thin_windows
from features.windows import WindowSet, WindowSpec
from flows.config import ConfigError, load_config
from flows.local_api import begin_local_api
from monitoring.models import promotion
from monitoring.models.defaults import TrainingSplit
from monitoring.models.fitting import fit_candidate, prepare_training

SPEC = WindowSpec(size=20, stride=10)
FAST = {"epochs": 2, "n_threads": 1}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def windows(n: int) -> WindowSet:
    X = np.arange(n, dtype=np.float32).reshape(n, 1, 1)
    start = np.datetime64("2026-01-01", "ns") + np.arange(n) * np.timedelta64(60, "s")
    return WindowSet(X, np.array(["a"] * n), start, start + np.timedelta64(60, "s"))


@pytest.mark.parametrize("n, limit, k", [(10, 5, 2), (11, 5, 3), (10, 3, 4), (10, 10, 1), (10, None, 1)])
def test_thin_windows_keeps_every_kth_window_and_at_most_the_limit(n, limit, k):
    kept, factor = thin_windows(windows(n), limit)
    assert factor == k
    assert kept.X[:, 0, 0].tolist() == list(range(0, n, k))  # every k-th, in order, from the first
    assert limit is None or len(kept) <= limit
    assert limit is None or k == 1 or len(windows(n).take(np.arange(n) % (k - 1) == 0)) > limit  # the smallest k


@pytest.mark.parametrize("bad", [0, -3, 2.5, "100", True])
def test_thin_windows_refuses_a_limit_that_is_not_a_positive_int(bad):
    with pytest.raises(WindowError, match=rf"max_windows={bad!r}, must be an int >= 1 or None"):
        thin_windows(windows(10), bad)


@pytest.fixture(scope="module")
def full(small_stream):
    return prepare_training(small_stream.readings, stream="pumps", sensors=list(SENSORS), spec=SPEC,
                            label_columns=["label"], train_stride=2)


def test_a_long_range_is_trained_on_fewer_windows_and_calibrated_on_all(small_stream, full):
    limit = len(full.train) // 2 - 1  # forces every third window
    capped = prepare_training(small_stream.readings, stream="pumps", sensors=list(SENSORS), spec=SPEC,
                              label_columns=["label"], train_stride=2, max_train_windows=limit)
    assert len(capped.train) <= limit
    np.testing.assert_array_equal(capped.train.X, full.train.X[::3])
    np.testing.assert_array_equal(capped.calibration.X, full.calibration.X)  # thresholds see every window
    assert capped.evaluation.readings.equals(full.evaluation.readings)
    assert capped.params["train.stride"] == 6
    assert capped.params["train.n_windows"] == len(capped.train)
    assert capped.params["train.n_windows_before_limit"] == len(full.train)
    assert full.params["train.stride"] == 2 and full.params["train.max_windows"] == "none"


def test_a_short_range_keeps_every_window(small_stream, full):
    same = prepare_training(small_stream.readings, stream="pumps", sensors=list(SENSORS), spec=SPEC,
                            label_columns=["label"], train_stride=2, max_train_windows=len(full.train))
    np.testing.assert_array_equal(same.train.X, full.train.X)
    assert same.params["train.stride"] == 2


def test_the_window_limit_is_a_stream_setting_off_for_tabular_streams(tmp_path):
    path = tmp_path / "aemon.toml"
    path.write_text("[streams.s]\nsensors = ['a']\n[streams.t]\nsensors = ['a']\ntimestamp_column = ''\n"
                    "asset_id = 'x'\n[streams.u]\nsensors = ['a']\n[streams.u.train]\nmax_windows = 5000\n")
    config = load_config(path, detectors=False)
    assert config.stream("s").train.max_windows == TrainingSplit.max_windows
    assert config.stream("t").train.max_windows is None  # every tabular record is trained on
    assert config.stream("u").train.max_windows == 5000


def test_a_too_small_window_limit_is_named(tmp_path):
    path = tmp_path / "aemon.toml"
    path.write_text("[streams.s]\nsensors = ['a']\n[streams.s.train]\nmax_windows = 10\n")
    with pytest.raises(ConfigError, match=r"streams\.s\.train\.max_windows: .*greater than or equal to 100"):
        load_config(path, detectors=False)


def test_figures_drawn_with_the_fit_and_every_epoch_loss_are_logged(full, tmp_path):
    drawn = fit_candidate(full, "mlp_ae", FAST, ThresholdRule(), figures=True)
    assert drawn.figures is not None
    assert set(drawn.figures) == {"loss_curves.png", "score_histogram.png", "worst_windows.png", "latent_space.png"}
    assert all(png.startswith(PNG_MAGIC) for png in drawn.figures.values())
    assert fit_candidate(full, "mlp_ae", FAST, ThresholdRule()).figures is None  # drawn by the registry instead

    uri, artifacts = f"sqlite:///{tmp_path / 'mlflow.db'}", (tmp_path / "artifacts").as_uri()
    outcome = promotion.register_training(uri, artifacts, full, [drawn])
    client = MlflowClient(tracking_uri=uri)
    folder = client.download_artifacts(outcome.versions["mlp_ae"].run_id, "figures", str(tmp_path / "out"))
    for name, png in drawn.figures.items():
        assert (Path(folder) / name).read_bytes() == png
    run_id = outcome.versions["mlp_ae"].run_id
    for key in ("train_loss", "val_loss"):  # every epoch's losses, logged in one batch
        logged = sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
        assert logged == [(row["epoch"], row[key]) for row in drawn.detector.history_]


def test_a_configured_api_starts_no_server_and_waiting_is_harmless(monkeypatch):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        ready = begin_local_api()
        ready()
        ready()  # a second wait does nothing either
        assert PREFECT_API_URL.value() == "http://127.0.0.1:9/api"
