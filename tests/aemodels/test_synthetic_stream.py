"""Each detector, with its default settings, on the synthetic pump stream (window 30 x 7 sensors).

Trained on the clean first half (scaled windows of features.training_set), scored on every window
of the faulted second half. `stuck` faults are left out of the AUC: a frozen reading of the slowly
moving bearing temperature is smoother than normal, and a reconstruction or density score over a
30-minute window does not see it (it needs a rule on the reading's variance).
"""
import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from aemodels import DETECTOR_KINDS, make_detector
from features.synthetic import SENSORS
from features.training_set import make_training_set
from features.windows import WindowSpec, window_frame

SPEC = WindowSpec(size=30, stride=5)
# pca is the linear baseline: two axes explain 95 % of these smooth windows, and a fault along
# them leaves little residual (measured ROC AUC 0.947 with its defaults, the autoencoders >= 0.95)
MIN_AUC = {"pca": 0.92}


@pytest.fixture(scope="module")
def stream_windows(small_stream):
    readings, faults = small_stream.readings, small_stream.faults
    middle = readings["timestamp"].min() + (readings["timestamp"].max() - readings["timestamp"].min()) / 2
    training = make_training_set(readings, list(SENSORS), SPEC, label_columns=["label"], end=middle, train_stride=2)
    later = readings[readings["timestamp"] >= middle].copy()
    later[list(SENSORS)] = training.scaler.transform(later[list(SENSORS)].to_numpy())
    scored = window_frame(later, list(SENSORS), SPEC)

    faulted = np.zeros(len(scored), bool)  # the window overlaps a fault
    shown = np.zeros(len(scored), bool)  # ... of a kind a window can show
    sensor = np.full(len(scored), -1)  # the one faulted sensor of a single-sensor fault
    for fault in faults.itertuples():
        hit = ((scored.asset == fault.asset) & (scored.start <= np.datetime64(fault.end, "ns"))
               & (scored.end >= np.datetime64(fault.start, "ns")))
        faulted |= hit
        shown |= hit & (fault.kind != "stuck")
        if "," not in fault.sensors:
            sensor[hit] = SENSORS.index(fault.sensors)
    assert set(faults["kind"]) >= {"spike", "level_shift", "drift", "noise_burst", "broken_correlation"}
    return training, scored.X, faulted, shown, sensor


@pytest.fixture(scope="module", params=DETECTOR_KINDS)
def scored(request, stream_windows):
    training, X, faulted, shown, sensor = stream_windows
    detector = make_detector(request.param, n_threads=1).fit(training.train.X, training.val.X)
    scores, contributions = detector.score_with_contributions(X)
    return detector, scores, contributions, faulted, shown, sensor


def test_faults_separate_from_normal_windows(scored):
    detector, scores, _, faulted, shown, _ = scored
    normal, fault = scores[~faulted], scores[shown]
    auc = mannwhitneyu(fault, normal).statistic / (len(fault) * len(normal))
    assert auc >= MIN_AUC.get(detector.kind, 0.95), f"{detector.kind}: ROC AUC {auc:.3f}"
    assert np.mean(normal > detector.threshold_) <= 0.05  # a 99th-percentile threshold: ~1 % expected


def test_contributions_name_the_faulted_sensor(scored):
    detector, scores, contributions, _, _, sensor = scored
    alarms = (sensor >= 0) & (scores > detector.threshold_)  # alarms on single-sensor faults
    assert alarms.sum() >= 50
    top = np.argmax(np.abs(contributions[alarms]), axis=1)
    assert np.mean(top == sensor[alarms]) >= 0.8, f"{detector.kind}: {np.mean(top == sensor[alarms]):.2f}"
