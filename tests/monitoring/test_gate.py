"""Window metrics, threshold rules and the promotion gate, on plain numbers."""
import numpy as np
import pytest

from aemodels.errors import ThresholdFitError
from aemodels.thresholds import ThresholdRule, pot_threshold
from monitoring.models.gate import Contender, average_precision, decide, window_metrics


def test_average_precision_matches_its_definition(rng):
    scores = rng.random(200)
    labels = rng.random(200) < 0.2
    order = np.argsort(-scores)
    hits = labels[order]
    expected = np.mean([hits[:k + 1].mean() for k in range(len(hits)) if hits[k]])
    assert average_precision(scores, labels) == pytest.approx(expected)
    assert average_precision(np.r_[3.0, 2.0, 1.0], np.r_[True, True, False]) == 1.0


def test_window_metrics_count_per_window():
    scores = np.array([0.1, 0.2, 0.9, 0.8, 0.95, 0.3])
    anomalous = np.array([False, False, False, True, True, True])
    m = window_metrics(scores, anomalous, threshold=0.5)
    # flagged: 0.9 (normal), 0.8, 0.95 (anomalous); missed: 0.3
    assert m["far"] == pytest.approx(1 / 3) and m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3) and m["mar"] == pytest.approx(1 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert set(window_metrics(scores[:3], anomalous[:3], 0.5)) == {"n_normal", "n_anomalous", "far"}


def test_pot_threshold_recovers_an_exponential_tail(rng):
    scores = rng.exponential(1.0, 200_000)
    # P(score > t) = exp(-t): the 1e-3 risk quantile is ln(1000)
    assert pot_threshold(scores, 1e-3) == pytest.approx(np.log(1000), rel=0.03)
    with pytest.raises(ThresholdFitError, match="exceed"):
        pot_threshold(scores[:100], 1e-3)


def test_threshold_rule_names_and_reports_every_threshold(rng):
    scores = rng.exponential(1.0, 5000)
    rule = ThresholdRule(percentile=99.0, coefficient=1.5)
    assert rule.name == "p99x1.5" and rule.apply(scores) == pytest.approx(1.5 * np.percentile(scores, 99))
    assert set(rule.all_thresholds(scores)) == {"p95", "p99", "p99.9", "pot", "conformal"}
    # too short a tail for POT, too few scores to bound 1 % at 90 % confidence (230)
    assert set(rule.all_thresholds(scores[:200])) == {"p95", "p99", "p99.9"}
    assert ThresholdRule(method="pot", pot_risk=1e-3).name == "pot(risk=0.001)"


def unlabeled(version, far, loss, kind="mlp_ae"):
    return Contender(version, kind, {"far": far}, loss)


def test_gate_unlabeled_compares_false_alarms_then_validation_loss():
    a, b, c = unlabeled(5, 0.02, 0.3), unlabeled(6, 0.01, 0.5), unlabeled(7, 0.01, 0.4)
    first = decide([a, b, c], champion=None, labeled=False)
    assert first.promoted and first.nominee is c and first.champion is c
    assert first.challenger is b and [x.version for x in first.ranking] == [7, 6, 5]
    champion = unlabeled(3, 0.005, 0.9)
    kept = decide([a, b, c], champion=champion, labeled=False)
    assert not kept.promoted and kept.champion is champion and kept.challenger is c
    assert "does not beat champion v3" in kept.reason
    tie = decide([unlabeled(8, 0.005, 0.9)], champion=champion, labeled=False)
    assert not tie.promoted  # a tie keeps the champion


def test_gate_unlabeled_ignores_differences_within_noise_and_prefers_the_kind_listed_first():
    n = {"n_normal": 700.0}
    mlp = Contender(1, "mlp_ae", {"far": 0.034, **n}, 0.01)
    cnn = Contender(2, "cnn_ae", {"far": 0.001, **n}, 0.02)
    vae = Contender(3, "vae", {"far": 0.0, **n}, -150.0)
    first = decide([mlp, cnn, vae], champion=None, labeled=False)
    # 0 against 1 false alarm in 700 windows is noise: cnn_ae is listed before vae; mlp_ae's
    # 24 in 700 is clearly more
    assert first.nominee is cnn and first.challenger is vae
    assert [c.version for c in first.ranking] == [2, 3, 1]
    assert decide([vae, cnn], champion=None, labeled=False).nominee is vae  # the order given decides
    # a champion gives way only to clearly fewer false alarms
    assert not decide([cnn], Contender(9, "mlp_ae", {"far": 0.006, **n}, 0.01), labeled=False).promoted
    assert decide([cnn], Contender(9, "mlp_ae", {"far": 0.03, **n}, 0.01), labeled=False).promoted


def test_gate_labeled_compares_f1_then_pr_auc():
    champion = Contender(1, "mlp_ae", {"f1": 0.6, "pr_auc": 0.7, "far": 0.01}, 0.1)
    better = Contender(2, "vae", {"f1": 0.6, "pr_auc": 0.8, "far": 0.05}, 9.0)
    worse = Contender(3, "cnn_ae", {"f1": 0.5, "pr_auc": 0.99, "far": 0.0}, 0.01)
    decision = decide([worse, better], champion=champion, labeled=True)
    assert decision.promoted and decision.champion is better and decision.challenger is worse
    assert "beats champion v1" in decision.reason
