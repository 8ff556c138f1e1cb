"""Behaviour: injected faults on smooth correlated sensors score above the threshold."""
import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from aemodels.detector import AutoencoderDetector

WINDOW, SENSORS = 16, 3


def roc_auc(negative: np.ndarray, positive: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counted half: Mann-Whitney U / (n_pos * n_neg)."""
    return mannwhitneyu(positive, negative).statistic / (len(positive) * len(negative))


def test_roc_auc_helper():
    assert roc_auc(np.array([1.0, 2.0]), np.array([3.0, 4.0])) == 1.0
    assert roc_auc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 0.0
    assert roc_auc(np.array([1.0, 3.0]), np.array([2.0, 4.0])) == 0.75


@pytest.fixture(scope="module")
def case(make_windows):
    rng = np.random.default_rng(42)
    X_train, X_val, X_normal = (make_windows(rng, n, WINDOW, SENSORS) for n in (1024, 512, 200))

    n_faults = 100
    rows = np.arange(n_faults)
    spike_sensor = rng.integers(0, SENSORS, n_faults)
    X_spike = make_windows(rng, n_faults, WINDOW, SENSORS)
    X_spike[rows, rng.integers(0, WINDOW, n_faults), spike_sensor] += 0.6  # one sample, 12 noise sigmas

    shift_sensor = rng.integers(0, SENSORS, n_faults)
    X_shift = make_windows(rng, n_faults, WINDOW, SENSORS)
    X_shift[rows, WINDOW // 2:, shift_sensor] += 0.25  # level shift over the second half of the window

    detector = AutoencoderDetector(hidden=(64, 32), latent=8, epochs=15, batch_size=64, learning_rate=3e-3,
                                   n_threads=1).fit(X_train, X_val)
    return detector, X_normal, (X_spike, spike_sensor), (X_shift, shift_sensor)


def test_normal_windows_rarely_alarm(case):
    detector, X_normal, _, _ = case
    assert detector.predict(X_normal).mean() <= 0.05  # a 99th-percentile threshold: ~1 % expected


@pytest.mark.parametrize("fault", ["spike", "shift"])
def test_faulted_windows_score_above_threshold(case, fault):
    detector, _, spike, shift = case
    X, _ = spike if fault == "spike" else shift
    assert detector.predict(X).mean() >= 0.95


def test_auc_between_normal_and_faulted_windows(case):
    detector, X_normal, (X_spike, _), (X_shift, _) = case
    auc = roc_auc(detector.score(X_normal), detector.score(np.concatenate([X_spike, X_shift])))
    assert auc >= 0.95


@pytest.mark.parametrize("fault", ["spike", "shift"])
def test_contributions_name_the_faulted_sensor(case, fault):
    detector, _, spike, shift = case
    X, sensor = spike if fault == "spike" else shift
    contributions = detector.contributions(X)
    assert np.mean(np.argmax(np.abs(contributions), axis=1) == sensor) >= 0.9
    # both faults push readings up
    assert np.mean(contributions[np.arange(len(X)), sensor] > 0) >= 0.9
