import numpy as np
import pytest

from aemodels.thresholds import percentile_threshold


def test_percentile_threshold_hand_computed():
    scores = np.array([5.0, 1.0, 4.0, 2.0, 3.0])
    assert percentile_threshold(scores, q=50) == 3.0
    # linear interpolation: rank 0.9 * 4 = 3.6 between 4 and 5
    assert percentile_threshold(scores, q=90) == pytest.approx(4.6, abs=1e-12)
    assert percentile_threshold(scores, q=90, coefficient=2.0) == pytest.approx(9.2, abs=1e-12)
    assert percentile_threshold(scores, q=100) == 5.0


@pytest.mark.parametrize("q", [1.0, 50.0, 95.0, 99.0, 99.9, 100.0])
def test_percentile_threshold_equals_numpy(q):
    scores = np.random.default_rng(3).gamma(2.0, 1.0, size=1001)
    assert percentile_threshold(scores, q) == np.percentile(scores, q)
    assert percentile_threshold(scores, q, coefficient=1.5) == np.percentile(scores, q) * 1.5
    assert isinstance(percentile_threshold(scores, q), float)


@pytest.mark.parametrize("q", [0.0, -1.0, 100.5, float("nan"), "99"])
def test_percentile_threshold_rejects_bad_q(q):
    with pytest.raises(ValueError, match="percentile q"):
        percentile_threshold(np.arange(10.0), q)


@pytest.mark.parametrize("coefficient", [0.0, -1.0, float("inf")])
def test_percentile_threshold_rejects_bad_coefficient(coefficient):
    with pytest.raises(ValueError, match="coefficient"):
        percentile_threshold(np.arange(10.0), 99.0, coefficient)


@pytest.mark.parametrize("scores, message", [
    (np.array([]), "empty"),
    (np.array([1.0, np.nan, 2.0]), "1 non-finite"),
    (np.array([1.0, np.inf]), "1 non-finite"),
])
def test_percentile_threshold_rejects_bad_scores(scores, message):
    with pytest.raises(ValueError, match=message):
        percentile_threshold(scores)
