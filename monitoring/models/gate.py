"""Window-level metrics and the promotion gate between model versions.

The gate compares versions on the same evaluation windows, each at its own threshold:

- with labels (the evaluation range holds labeled anomalous windows): higher F1, then
  higher PR-AUC, then lower false-alarm rate;
- without labels: lower false-alarm rate on recent normal windows (held out from training
  and from threshold calibration; every version's threshold comes from the same rule),
  counted only when the difference exceeds sampling noise: two standard errors of the
  difference of two rates over those windows. Every threshold is a p99 of its own
  calibration scores, so a few hundred windows give rates that differ by chance; picking a
  winner on such a difference would be picking at random.

Among the candidates of one training the best by the criterion is the nominee. Without
labels, candidates within noise of the lowest false-alarm rate tie; a tie goes to the kind
listed first in the configuration (simplest first by default: mlp_ae, cnn_ae, vae), and
between versions of one kind to the lower validation loss. The nominee becomes champion
when it beats the current champion (beyond noise, without labels), or there is none.
Challenger is the best candidate of the training that did not become champion: the
nominee itself when it lost, else the runner-up. The other candidates stay registered
without an alias.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


def average_precision(scores: np.ndarray, anomalous: np.ndarray) -> float:
    """Area under the precision-recall curve as average precision (the step-wise sum that
    scikit-learn's average_precision_score computes; written here because scikit-learn is
    not a dependency): mean of the precision at the rank of each anomalous window."""
    order = np.argsort(-scores, kind="stable")
    hits = anomalous[order].astype(np.float64)
    if hits.sum() == 0:
        return float("nan")
    # tied scores share the precision at the end of their tie group
    _, group_end = np.unique(-scores[order], return_index=False, return_counts=True)
    ends = np.cumsum(group_end) - 1
    cum_hits = np.cumsum(hits)
    precision_at_end = cum_hits[ends] / (ends + 1)
    recall_steps = np.diff(np.concatenate([[0.0], cum_hits[ends]])) / hits.sum()
    return float(np.sum(recall_steps * precision_at_end))


def window_metrics(scores: np.ndarray, anomalous: np.ndarray, threshold: float) -> dict[str, float]:
    """False-alarm rate over normal windows; with anomalous windows also precision, recall,
    F1, missed-alarm rate and PR-AUC, all per window at `threshold`."""
    scores = np.asarray(scores, dtype=np.float64)
    anomalous = np.asarray(anomalous, dtype=bool)
    flags = scores > threshold
    normal = ~anomalous
    metrics = {
        "n_normal": float(normal.sum()),
        "n_anomalous": float(anomalous.sum()),
        "far": float(flags[normal].mean()) if normal.any() else float("nan"),
    }
    if anomalous.any():
        tp = float((flags & anomalous).sum())
        precision = tp / float(flags.sum()) if flags.any() else 0.0
        recall = tp / float(anomalous.sum())
        metrics.update({
            "precision": precision,
            "recall": recall,
            "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
            "mar": 1.0 - recall,
            "pr_auc": average_precision(scores, anomalous),
        })
    return metrics


@dataclass(frozen=True)
class Contender:
    """A model version as the gate sees it."""

    version: int
    kind: str
    metrics: dict  # window_metrics of this version on the shared evaluation windows
    val_loss: float  # best validation loss of its training

    def key(self, labeled: bool) -> tuple[float, ...]:
        """Larger is better. NaN (not measured) ranks below every value."""
        m = self.metrics
        values = ((m.get("f1"), m.get("pr_auc"), _neg(m.get("far"))) if labeled
                  else (_neg(m.get("far")), _neg(self.val_loss)))
        return tuple(-math.inf if v is None or math.isnan(v) else float(v) for v in values)


NOISE_Z = 2.0  # standard errors a false-alarm rate must differ by before it counts


def clearly_fewer_false_alarms(a: Contender, b: Contender, z: float = NOISE_Z) -> bool:
    """a's false-alarm rate is below b's by more than sampling noise: z standard errors of
    the difference of two rates over the n normal windows both were evaluated on. Without a
    window count (n_normal) any lower rate counts."""
    fa, fb = a.metrics.get("far"), b.metrics.get("far")
    if fa is None or math.isnan(fa):
        return False
    if fb is None or math.isnan(fb):
        return True
    n = min(a.metrics.get("n_normal") or 0.0, b.metrics.get("n_normal") or 0.0)
    if n <= 0:
        return fa < fb
    pooled = (fa + fb) / 2
    return fb - fa > z * math.sqrt(2 * pooled * (1 - pooled) / n)


def _unlabeled_nominee(candidates: list[Contender]) -> Contender:
    """The candidate with the fewest false alarms, where ties (within noise) go to the
    kind listed first, then to the lower validation loss."""
    best = max(candidates, key=lambda c: c.key(False))
    tied = [c for c in candidates if not clearly_fewer_false_alarms(best, c)]
    kind_order = list(dict.fromkeys(c.kind for c in candidates))
    return min(tied, key=lambda c: (kind_order.index(c.kind), -c.key(False)[1]))


def _neg(value):
    return None if value is None else -value


def criterion_name(labeled: bool) -> str:
    return ("f1, pr_auc, -far" if labeled
            else "-far on recent normal windows beyond noise, then kind order, then -val_loss")


@dataclass(frozen=True)
class GateDecision:
    labeled: bool
    nominee: Contender
    champion: Contender  # after the decision (the nominee, or the unchanged champion)
    challenger: Contender | None
    promoted: bool
    reason: str
    ranking: list[Contender] = field(default_factory=list)  # candidates, best first


def decide(candidates: list[Contender], champion: Contender | None, labeled: bool) -> GateDecision:
    if not candidates:
        raise ValueError("the gate needs at least one candidate")
    ranking = sorted(candidates, key=lambda c: c.key(labeled), reverse=True)
    if not labeled:
        nominee = _unlabeled_nominee(candidates)
        ranking = [nominee, *(c for c in ranking if c is not nominee)]
    nominee = ranking[0]
    criterion = criterion_name(labeled)
    beats = (nominee.key(labeled) > champion.key(labeled) if labeled
             else clearly_fewer_false_alarms(nominee, champion)) if champion is not None else True
    if champion is None:
        promoted, reason = True, f"the stream had no champion: best of {len(ranking)} by ({criterion})"
    elif beats:
        promoted = True
        reason = (f"beats champion v{champion.version} by ({criterion}): {_show(nominee, labeled)} vs "
                  f"{_show(champion, labeled)}")
    else:
        promoted = False
        reason = (f"does not beat champion v{champion.version} by ({criterion}): "
                  f"{_show(nominee, labeled)} vs {_show(champion, labeled)}")
    others = ranking[1:] if promoted else ranking
    after = nominee if promoted or champion is None else champion  # no champion: the nominee is promoted
    return GateDecision(labeled, nominee, after, others[0] if others else None, promoted, reason, ranking)


def _show(c: Contender, labeled: bool) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in c.key(labeled)) + ")"
