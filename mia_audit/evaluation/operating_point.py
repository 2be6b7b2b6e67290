"""The confusion matrix of an attack at one threshold: the gate's operating point.

A gate with a `max_tpr_at_fpr` condition reads the ROC point with the largest TPR among those with
FPR <= its FPR (ARCHITECTURE.md, Metric conventions); its threshold ("member iff score >= t") is the
operating point, and the counts there are what an attacker acting on the attack would get right and
wrong. Without such a condition the point is the one with the largest advantage (TPR - FPR), i.e.
the best balanced accuracy.
"""

from __future__ import annotations

import numpy as np

from mia_audit.evaluation import metrics
from mia_audit.result import OperatingPoint


def operating_point(is_member: np.ndarray, scores: np.ndarray, fpr: float | None) -> OperatingPoint:
    """The counts at the threshold of the gate's FPR (or of the largest advantage)."""
    counts = metrics.cumulative_counts(is_member, scores)
    tps, fps = np.r_[0, counts.tps], np.r_[0, counts.fps]
    thresholds = np.r_[np.inf, counts.thresholds]
    n_members, n_non_members = int(tps[-1]), int(fps[-1])
    if fpr is None:
        index = int(np.argmax(tps / n_members - fps / n_non_members))
        rule = "largest advantage (TPR - FPR)"
    else:
        allowed = metrics.max_false_positives(fpr, n_non_members)
        index = int(np.searchsorted(fps, allowed, side="right")) - 1
        rule = f"FPR <= {fpr:g} (the gate's)"
    return OperatingPoint(
        rule=rule,
        threshold=float(thresholds[index]) if index > 0 else None,
        true_positives=int(tps[index]),
        false_positives=int(fps[index]),
        true_negatives=n_non_members - int(fps[index]),
        false_negatives=n_members - int(tps[index]),
    )
