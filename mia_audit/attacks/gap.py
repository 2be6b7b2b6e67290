"""The gap attack: a correctly classified sample is called a member (Yeom et al. 2018).

The baseline every label-only paper reports: it needs only the predicted class, so it runs on
any target (`output_kinds`: logits, probabilities or labels). Its AUC is
(1 + accuracy on members - accuracy on non-members) / 2: the train-test gap made a score. With
query views (`queries`) the score is the fraction of views classified correctly.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from mia_audit.attacks.base import Attack, AttackContext, AttackOutput
from mia_audit.attacks.config import AttackConfig
from mia_audit.attacks.outputs import ANY_KIND
from mia_audit.attacks.registry import register


class GapConfig(AttackConfig):
    name: Literal["gap"]


def correct_fraction(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per sample, the fraction of views (axis 0 of `logits`) whose predicted class is the
    label; only the argmax is read, so one-hot rows give the same as logits."""
    return np.asarray((logits.argmax(axis=-1) == labels).mean(axis=0), dtype=np.float64)


@register
class GapAttack(Attack[GapConfig]):
    name = "gap"
    config_type = GapConfig
    summary = "Correctly classified = member: the label-only baseline (Yeom et al. 2018)."
    output_kinds = ANY_KIND

    def score(self, context: AttackContext) -> AttackOutput:
        scores = correct_fraction(context.target.select(self.views), context.labels)
        return AttackOutput(scores=scores, parameters=self.parameters())
