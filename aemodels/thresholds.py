"""Alarm thresholds fitted on the scores of held-out normal windows."""
from __future__ import annotations

import math

import numpy as np


def percentile_threshold(scores: np.ndarray, q: float = 99.0, coefficient: float = 1.0) -> float:
    """The q-th percentile of `scores` (numpy's default linear method) times `coefficient`.

    q = 99 flags about 1 % of windows drawn like `scores`; a coefficient > 1 moves the
    threshold up by a safety margin (the seed article's "percentile x coefficient" rule).
    """
    if isinstance(q, bool) or not isinstance(q, (int, float, np.integer, np.floating)):
        raise ValueError(f"percentile q={q!r}, must be a number in (0, 100]")
    if not 0.0 < q <= 100.0:  # also rejects NaN
        raise ValueError(f"percentile q={q}, must be in (0, 100]")
    if isinstance(coefficient, bool) or not isinstance(coefficient, (int, float, np.integer, np.floating)) \
            or not math.isfinite(coefficient) or coefficient <= 0:
        raise ValueError(f"threshold coefficient={coefficient!r}, must be a finite number > 0")
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        raise ValueError("cannot fit a threshold on an empty array of scores")
    n_bad = int(np.count_nonzero(~np.isfinite(scores)))
    if n_bad:
        raise ValueError(f"scores contain {n_bad} non-finite values (NaN or inf) of {scores.size}; "
                         "expected finite scores")
    return float(np.percentile(scores, q)) * float(coefficient)
