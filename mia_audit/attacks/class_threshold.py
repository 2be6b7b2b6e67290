"""Per-class thresholds on a signal (Song & Mittal 2021), fitted with cross-fitting.

Classes differ in how confidently a model predicts them, so one global threshold mixes easy and
hard classes. This attack fits one threshold per class on the other folds (the one maximising
balanced accuracy) and scores each sample by how far its signal lies above its class's
threshold; thresholding that score at 0 reproduces the per-class threshold classifier.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from mia_audit.attacks.base import Attack, AttackContext, AttackOutput
from mia_audit.attacks.config import AttackConfig
from mia_audit.attacks.crossfit import stratified_folds
from mia_audit.attacks.registry import register
from mia_audit.attacks.target_only import SignalName, member_score


class ClassThresholdConfig(AttackConfig):
    name: Literal["class_threshold"]
    signal: SignalName = Field("loss", description="The signal thresholded per class.")
    folds: int = Field(5, ge=2, le=20, description="Cross-fitting folds.")


def best_threshold(values: np.ndarray, is_member: np.ndarray) -> float:
    """The threshold t maximising balanced accuracy of `value >= t -> member`.

    Candidates are midpoints between consecutive distinct values (and one below the minimum and
    one above the maximum). Needs at least one member and one non-member.
    """
    order = np.argsort(values, kind="stable")
    sorted_values, sorted_members = values[order], is_member[order]
    n_pos, n_neg = sorted_members.sum(), (~sorted_members).sum()
    # Predicting "member" for everything at index >= k: TPR = members at >= k / n_pos.
    members_below = np.concatenate(([0], np.cumsum(sorted_members)))
    non_members_below = np.concatenate(([0], np.cumsum(~sorted_members)))
    distinct = np.concatenate(([True], sorted_values[1:] != sorted_values[:-1], [True]))
    cut_points = np.flatnonzero(distinct)
    tpr = (n_pos - members_below[cut_points]) / n_pos
    tnr = non_members_below[cut_points] / n_neg
    best = cut_points[int(np.argmax(tpr + tnr))]
    if best == 0:
        return float(sorted_values[0] - 1.0)
    if best == len(sorted_values):
        return float(sorted_values[-1] + 1.0)
    return float((sorted_values[best - 1] + sorted_values[best]) / 2.0)


def class_thresholds(
    values: np.ndarray, labels: np.ndarray, is_member: np.ndarray
) -> tuple[dict[int, float], float]:
    """Per-class best thresholds, and the global one for classes lacking either side."""
    fallback = best_threshold(values, is_member)
    thresholds = {}
    for label in np.unique(labels):
        in_class = labels == label
        members = is_member[in_class]
        if members.any() and not members.all():
            thresholds[int(label)] = best_threshold(values[in_class], members)
    return thresholds, fallback


@register
class ClassThresholdAttack(Attack[ClassThresholdConfig]):
    name = "class_threshold"
    config_type = ClassThresholdConfig
    summary = "A signal thresholded per class, thresholds fitted on other folds."

    def score(self, context: AttackContext) -> AttackOutput:
        config = self.config
        logits = context.target.select(self.views)
        values = member_score(config.signal)(logits, context.labels).mean(axis=0)
        scores = np.empty_like(values)
        folds = stratified_folds(context.is_member, config.folds, context.random_state)
        for train, test in folds:
            thresholds, fallback = class_thresholds(
                values[train], context.labels[train], context.is_member[train]
            )
            offsets = np.array([thresholds.get(int(c), fallback) for c in context.labels[test]])
            scores[test] = values[test] - offsets
        return AttackOutput(scores=scores, parameters=self.parameters())

    def samples_needed(self) -> int:
        """Every fold needs a member and a non-member to test, and the others to fit on."""
        config = self.config
        return config.folds
