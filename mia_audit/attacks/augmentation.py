"""Label-only augmentation attack (Choquette-Choo et al., ICML 2021): a model classifies its
training samples correctly under small flips and shifts more often than other samples.

Each sample's feature vector is whether its predicted class is the label in every query view
(the suite's mirrored and shifted views, `queries`; by default mirror x shifts of ±2 px, 18
views). `combination: logistic_regression` (the default) weighs the views with a classifier
fitted out of fold, as `learned` does, so no sample is scored by a model that saw its
membership; `count` scores the fraction of views classified correctly (no fitting). Only the
predicted class is read: the attack runs on logits, probabilities and labels targets.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from mia_audit.attacks.base import Attack, AttackContext, AttackOutput
from mia_audit.attacks.classifiers import (
    ClassifierKind,
    crossfit_samples_needed,
    out_of_fold_scores,
)
from mia_audit.attacks.config import AttackConfig, Queries, QuerySpec
from mia_audit.attacks.outputs import ANY_KIND
from mia_audit.attacks.registry import register

#: Choquette-Choo et al. found shifts of 1-2 pixels the most telling on 32 px images.
DEFAULT_QUERIES = Queries(mirror=True, shift=2)


class AugmentationConfig(AttackConfig):
    name: Literal["augmentation"]
    queries: QuerySpec = Field(
        default_factory=lambda: DEFAULT_QUERIES,
        description="The augmented views queried: {mirror, shift}, 2 or 18 (default mirror x "
        "±2 px shifts).",
    )
    combination: ClassifierKind | Literal["count"] = Field(
        "logistic_regression",
        description="How the views' agreement is combined: a classifier fitted out of fold, "
        "or `count` (fraction of views classified correctly).",
    )
    folds: int = Field(5, ge=2, le=20, description="Cross-fitting folds.")

    @model_validator(mode="after")
    def _augments(self) -> AugmentationConfig:
        if len(self.queries.views) < 2:
            raise ValueError(
                "queries gives only the image itself; the augmentation attack needs mirrored "
                "or shifted views (queries: 2, 18 or {mirror: true, shift: 2})"
            )
        return self


def agreement_features(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(n, views): 1.0 where the view's predicted class is the label, from (views, n, C)."""
    return np.asarray((logits.argmax(axis=-1) == labels).T, dtype=np.float64)


@register
class AugmentationAttack(Attack[AugmentationConfig]):
    name = "augmentation"
    config_type = AugmentationConfig
    summary = "Label agreement under flips and shifts (Choquette-Choo et al. 2021)."
    output_kinds = ANY_KIND

    def score(self, context: AttackContext) -> AttackOutput:
        config = self.config
        features = agreement_features(context.target.select(self.views), context.labels)
        if config.combination == "count":
            return AttackOutput(scores=features.mean(axis=1), parameters=self.parameters())
        scores = out_of_fold_scores(
            features, context.is_member, config.combination, config.folds, context.random_state
        )
        return AttackOutput(scores=scores, parameters=self.parameters())

    def samples_needed(self) -> int:
        config = self.config
        if config.combination == "count":
            return 1
        return crossfit_samples_needed(config.combination, config.folds)
