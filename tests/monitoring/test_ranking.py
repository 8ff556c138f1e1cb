"""The rank tests against scipy.stats (a test dependency only: the package does not use scipy
in monitoring), on random tables and by hand."""
import numpy as np
import pytest
from scipy import stats

from monitoring.evaluation.ranking import average_ranks, friedman_p, holm, wilcoxon_p


@pytest.mark.parametrize("seed", range(4))
def test_ranks_and_tests_agree_with_scipy(seed):
    rng = np.random.default_rng(seed)
    values = np.round(rng.normal(size=30), 1)  # with ties
    np.testing.assert_allclose(average_ranks(values), stats.rankdata(values))
    table = np.round(rng.random((18, 9)), 2)
    assert friedman_p(table) == pytest.approx(stats.friedmanchisquare(*table.T).pvalue, rel=1e-9)
    differences = rng.normal(size=18) + 0.3  # no ties, no zeros: scipy's exact distribution
    assert wilcoxon_p(differences) == pytest.approx(stats.wilcoxon(differences).pvalue, rel=1e-9)


def test_wilcoxon_by_hand_and_holm():
    # 5 positive differences of ranks 1..5: T+ = 15, the largest of 2^5 equally likely sums -> p = 2 / 32
    assert wilcoxon_p([0.1, 0.2, 0.3, 0.4, 0.5]) == pytest.approx(2 / 32)
    assert wilcoxon_p([0.0, 0.0]) == 1.0
    # p sorted 0.01, 0.02, 0.04 -> 0.03, 0.04, 0.04 (monotone), returned in the given order
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert np.isnan(friedman_p(np.ones((1, 3))))
