"""Cross-fitted calibration (calibration_folds): thresholds set on windows from the whole
training range, each scored by a fit that did not see it, where the default calibration
sees only the range's last part."""
import re

import numpy as np
import pandas as pd
import pytest

from aemodels.thresholds import ThresholdRule
from features.windows import WindowSpec
from monitoring.errors import TrainingDataError
from monitoring.models.defaults import check_calibration_folds
from monitoring.models.fitting import cross_fitted_values, fit_bundle, fit_candidate, make_detector, prepare_training

SENSORS = ["a", "b", "c"]
SPEC = WindowSpec(size=10, stride=1, interval_s=60.0)
PARAMS = {"hidden": (16, 8), "latent": 2, "epochs": 15, "batch_size": 64, "learning_rate": 3e-3, "n_threads": 1,
          "error_scaling": "sensor", "random_state": 0}
TRAIN_ROWS = 1500
LOUD = 0.5  # the noise of the range's first part and of everything after it
QUIET = 0.1  # the noise of its last 40 %: all the default calibration windows see


def regimes() -> pd.DataFrame:
    """An hour-long cycle on three sensors; noisy for the first 60 % of the training rows and
    after them, quiet in between: every reading is normal."""
    rng = np.random.default_rng(0)
    rows = 2 * TRAIN_ROWS
    t = np.arange(rows)
    noise = np.where((t >= 0.6 * TRAIN_ROWS) & (t < TRAIN_ROWS), QUIET, LOUD)
    frame = pd.DataFrame({"timestamp": pd.Timestamp("2026-01-01") + pd.to_timedelta(t, unit="min"), "asset": "p1"})
    for k, name in enumerate(SENSORS):
        frame[name] = np.sin(2 * np.pi * t / 60 + k) + noise * rng.standard_normal(rows)
    return frame


@pytest.fixture(scope="module")
def data():
    return prepare_training(regimes().iloc[:TRAIN_ROWS], stream="s", sensors=SENSORS, spec=SPEC,
                            holdout_fraction=0.0, train_stride=1)


@pytest.fixture(scope="module")
def later(data):
    """The scaled windows of the rows after the training range (all normal, all noisy), cut
    as scoring cuts them."""
    frame = regimes().iloc[TRAIN_ROWS:]
    bundle, _ = fit_bundle(data, "mlp_ae", {**PARAMS, "epochs": 1}, ThresholdRule())
    windows, _ = bundle.windows(frame)
    return windows.X


def test_every_window_of_the_range_is_scored_by_a_fit_that_did_not_see_it(data):
    detector = make_detector("mlp_ae", **PARAMS).fit(data.train.X, data.calibration.X)
    values = cross_fitted_values(data, "mlp_ae", PARAMS, ThresholdRule(), detector, 5)
    # the calibration windows, and four blocks of training windows less the windows that share
    # readings with a block (they train no fit, and are scored by one)
    assert len(values) == len(data.calibration) + len(data.train)
    assert values.shape[1] == len(SENSORS)
    np.testing.assert_array_equal(values[:len(data.calibration)], detector.calibration_values(data.calibration.X))


def test_a_regime_the_calibration_windows_miss_raises_alarms_unless_cross_fitted(data, later):
    plain, _ = fit_bundle(data, "mlp_ae", PARAMS, ThresholdRule())
    crossed, _ = fit_bundle(data, "mlp_ae", PARAMS, ThresholdRule(), calibration_folds=5)
    plain_rate = float(np.mean(plain.detector.score(later) > plain.detector.threshold_))
    crossed_rate = float(np.mean(crossed.detector.score(later) > crossed.detector.threshold_))
    assert crossed.detector.threshold_ != plain.detector.threshold_
    # the quiet calibration windows set a threshold the noisy normal readings cross again and
    # again; windows from the whole range know the noisy part too
    assert plain_rate > 0.2, plain_rate
    assert crossed_rate < 0.05, crossed_rate


def test_the_candidate_logs_its_folds_and_bad_folds_are_refused(data):
    with_holdout = prepare_training(regimes().iloc[:TRAIN_ROWS], stream="s", sensors=SENSORS, spec=SPEC)
    candidate = fit_candidate(with_holdout, "mlp_ae", {**PARAMS, "epochs": 2}, ThresholdRule(), calibration_folds=3)
    assert candidate.params["calibration.folds"] == 3
    for folds in (0, 2, 2.5, True):
        with pytest.raises(TrainingDataError, match=re.escape(f"calibration_folds={folds!r}, expected 1")):
            fit_bundle(data, "mlp_ae", PARAMS, ThresholdRule(), calibration_folds=folds)
    with pytest.raises(ValueError, match="or a whole number >= 3"):
        check_calibration_folds(2)
    too_many = len(data.train) + 2
    with pytest.raises(TrainingDataError, match=f"calibration_folds={too_many}: more folds than the "
                                                f"{len(data.train)} training windows"):
        fit_bundle(data, "mlp_ae", PARAMS, ThresholdRule(), calibration_folds=too_many)
    # 60 rows: 21 training windows, in two blocks; the windows clear of a block's readings are too few
    short = prepare_training(regimes().iloc[:60], stream="s", sensors=SENSORS, spec=SPEC, val_fraction=0.5,
                             holdout_fraction=0.0, train_stride=1)
    with pytest.raises(TrainingDataError, match=r"calibration_folds=3: only 1 training windows outside a held-out "
                                                r"block of 11; need >= 10"):
        fit_bundle(short, "mlp_ae", PARAMS, ThresholdRule(), calibration_folds=3)
