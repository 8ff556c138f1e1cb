import numpy as np
import pytest
from scipy.stats import binom, genpareto

from aemodels.errors import ThresholdFitError
from aemodels.thresholds import (
    ThresholdRule,
    conformal_min_scores,
    conformal_threshold,
    percentile_threshold,
    persistence,
    pot_threshold,
)


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


# -- peaks over threshold ---------------------------------------------------------------

@pytest.mark.parametrize("xi", [0.2, 0.0, -0.1])
def test_pot_recovers_a_known_quantile_of_a_generalized_pareto_sample(xi):
    # Every score is GPD(xi, scale 1): its tail above any level is GPD too, so POT must find the true quantile.
    scores = genpareto.rvs(xi, scale=1.0, size=50_000, random_state=np.random.default_rng(0))
    for risk in (1e-3, 1e-4):
        assert pot_threshold(scores, risk) == pytest.approx(genpareto.ppf(1 - risk, xi), rel=0.1)


def test_pot_extrapolates_beyond_the_largest_score():
    scores = genpareto.rvs(0.1, size=5_000, random_state=np.random.default_rng(1))
    z = pot_threshold(scores, risk=1e-5)
    assert z > scores.max() and z == pytest.approx(genpareto.ppf(1 - 1e-5, 0.1), rel=0.25)


def test_pot_too_few_exceedances_is_a_named_error():
    scores = np.random.default_rng(0).normal(size=500)
    with pytest.raises(ThresholdFitError, match=r"POT found 10 exceedances .* among 500 scores; needs at least 20"):
        pot_threshold(scores, risk=1e-3)
    assert issubclass(ThresholdFitError, ValueError)
    assert pot_threshold(scores, risk=1e-3, initial_quantile=0.95) > np.quantile(scores, 0.95)


@pytest.mark.parametrize("kwargs, message", [
    ({"risk": 0.0}, "risk=0.0"), ({"risk": 1.5}, "risk=1.5"), ({"risk": 0.05}, "risk=0.05 is not in the tail"),
    ({"risk": 1e-3, "initial_quantile": 1.0}, "initial_quantile=1.0"),
    ({"risk": 1e-3, "min_exceedances": 2}, "min_exceedances=2"),
])
def test_pot_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        pot_threshold(np.random.default_rng(0).exponential(size=5000), **kwargs)


# -- persistence ------------------------------------------------------------------------

def test_persistence_k_of_last_n_by_hand():
    flags = np.array([1, 0, 1, 1, 0, 0, 0, 1, 1, 1], dtype=bool)
    np.testing.assert_array_equal(persistence(flags, 2, 3), [0, 0, 1, 1, 1, 0, 0, 0, 1, 1])
    np.testing.assert_array_equal(persistence(flags, 3, 3), [0, 0, 0, 0, 0, 0, 0, 0, 0, 1])
    np.testing.assert_array_equal(persistence(flags, 1, 1), flags)
    assert persistence(np.zeros(0, bool), 2, 3).shape == (0,)


def test_persistence_equals_a_plain_loop():
    flags = np.random.default_rng(0).random(300) < 0.3
    for k, n in [(1, 4), (2, 5), (4, 6)]:
        expected = [flags[max(0, i - n + 1):i + 1].sum() >= k for i in range(len(flags))]
        np.testing.assert_array_equal(persistence(flags, k, n), expected)


@pytest.mark.parametrize("args, message", [
    ((np.ones(3, bool), 3, 2), "k=3 of the last n=2"), ((np.ones(3, bool), 0, 2), "k=0"),
    ((np.ones(3), 1, 2), "expected a 1-D bool array"),
])
def test_persistence_rejects_bad_input(args, message):
    with pytest.raises(ValueError, match=message):
        persistence(*args)


@pytest.mark.parametrize("fields, message", [
    ({"method": "max"}, "threshold method='max', must be one of"),
    ({"percentile": 0.0}, r"threshold percentile=0.0, must be in \(0, 100\]"),
    ({"coefficient": -1.0}, "threshold coefficient=-1.0, must be a finite number > 0"),
    ({"pot_initial_quantile": 0.3}, r"pot_initial_quantile=0.3, must be in \(0.5, 1\)"),
    ({"pot_risk": 0.05}, r"pot_risk=0.05, must be in \(0, 0.02\)"),  # beyond the tail of q = 0.98
    ({"conformal_alpha": 0.0}, r"threshold conformal_alpha=0.0, must be in \(0, 1\)"),
    ({"conformal_confidence": 1.0}, r"threshold conformal_confidence=1.0, must be in \(0, 1\)"),
])
def test_threshold_rule_refuses_settings_that_cannot_work(fields, message):
    with pytest.raises(ValueError, match=message):
        ThresholdRule(**fields)


def test_threshold_rule_sets_the_threshold_and_round_trips():
    scores = np.random.default_rng(0).gamma(2.0, size=5000)
    rule = ThresholdRule(percentile=95.0, coefficient=1.3)
    assert rule.name == "p95x1.3" and ThresholdRule().name == "p99"
    assert rule.apply(scores) == np.percentile(scores, 95.0) * 1.3
    pot = ThresholdRule(method="pot", pot_risk=1e-3)
    assert pot.name == "pot(risk=0.001)" and pot.apply(scores) == pot_threshold(scores, 1e-3, 0.98)
    reported = rule.all_thresholds(scores)
    assert set(reported) == {"p95", "p99", "p99.9", "pot", "conformal"} and reported["p95"] == rule.apply(scores)
    assert reported["conformal"] == conformal_threshold(scores, 0.01, 0.9) * 1.3
    short = rule.all_thresholds(scores[:100])
    assert "pot" not in short  # 2 exceedances: too few to fit a tail
    assert "conformal" not in short  # 1 % at 90 % confidence needs 230 scores
    conformal = ThresholdRule(method="conformal", conformal_alpha=0.05, conformal_confidence=0.8, coefficient=1.3)
    assert conformal.name == "conformal(alpha=0.05,confidence=0.8)x1.3"
    assert conformal.apply(scores) == conformal_threshold(scores, 0.05, 0.8) * 1.3
    assert ThresholdRule(method="pot", coefficient=2.0).name == "pot(risk=0.001)x2"
    assert ThresholdRule(**rule.to_dict()) == rule and ThresholdRule(**conformal.to_dict()) == conformal


def test_conformal_threshold_is_the_order_statistic_the_binomial_bound_picks():
    """k-th smallest of n for the smallest k with P(Binomial(n, 1 - alpha) >= k) <= 1 - confidence,
    checked against the bound written out for n = 45 (a SKAB file's calibration windows)."""
    scores = np.random.default_rng(1).permutation(np.arange(1.0, 46.0))  # the k-th smallest is k
    assert conformal_min_scores(0.01, 0.9) == 230 and conformal_min_scores(0.05, 0.9) == 45
    assert conformal_min_scores(0.1, 0.9) == 22
    # alpha 0.1: P(B >= 44) = 0.9^45 + 45 * 0.1 * 0.9^44 = 0.052 <= 0.1, and P(B >= 43) = 0.157 > 0.1
    assert 0.9 ** 45 + 45 * 0.1 * 0.9 ** 44 <= 0.1 < 0.9 ** 45 + 45 * 0.1 * 0.9 ** 44 + 990 * 0.01 * 0.9 ** 43
    assert conformal_threshold(scores, 0.1, 0.9) == 44.0
    assert conformal_threshold(scores, 0.05, 0.9) == 45.0  # exactly enough scores: the largest
    assert conformal_threshold(scores, 0.5, 0.5) == 23.0  # the median, as the bound says for alpha = 1/2
    with pytest.raises(ThresholdFitError, match=r"alpha=0.01 at confidence=0.9 needs at least 230 calibration "
                                                r"scores; got 45 \(raise alpha"):
        conformal_threshold(scores, 0.01, 0.9)
    with pytest.raises(ValueError, match=r"conformal alpha=1\.5"):
        conformal_threshold(scores, 1.5, 0.9)


def test_conformal_threshold_keeps_its_false_alarm_rate_on_the_draws_its_confidence_promises():
    """Over 4,000 calibration sets of 120 exponential scores (a new normal window exceeds t with
    probability exp(-t)), the rate exceeds alpha on the share of draws the binomial bound gives
    for the order statistic chosen (at most 1 - confidence); the percentile at 1 - alpha misses
    it on about half."""
    rng = np.random.default_rng(7)
    draws = rng.exponential(1.0, size=(4000, 120))
    alpha, confidence = 0.05, 0.9
    thresholds = np.array([conformal_threshold(d, alpha, confidence) for d in draws])
    k = int(np.sum(np.sort(draws[0]) <= thresholds[0]))  # the same order statistic every draw
    bound = float(binom.sf(k - 1, 120, 1 - alpha))  # P(Binomial(120, 0.95) >= k): k = 118
    assert k == 118 and 0.05 < bound <= 1 - confidence
    missed = float(np.mean(np.exp(-thresholds) > alpha))
    assert abs(missed - bound) < 3 * np.sqrt(bound * (1 - bound) / 4000)
    percentile_missed = float(np.mean(np.exp(-np.percentile(draws, 95, axis=1)) > alpha))
    assert 0.35 < percentile_missed < 0.65
