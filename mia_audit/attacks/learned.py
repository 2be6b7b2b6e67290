"""A classifier trained on features of the target's output (the seeds' attack, made honest).

Features (per query view): confidence, loss, entropy, modified entropy, margins, rank of the true
class, correctness, logit statistics and the sorted top-k probabilities, plus the class one-hot.
Scores are out-of-fold probabilities: each sample is scored by a classifier fitted on the other
folds, so the attack never grades its own training data.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from mia_audit.attacks import signals
from mia_audit.attacks.base import Attack, AttackContext, AttackOutput
from mia_audit.attacks.classifiers import (
    ClassifierKind,
    crossfit_samples_needed,
    out_of_fold_scores,
)
from mia_audit.attacks.config import AttackConfig
from mia_audit.attacks.registry import register

TOP_K = 3
FEATURE_NAMES = (
    "confidence",
    "log_confidence",
    "max_probability",
    "entropy",
    "modified_entropy",
    "log_odds_margin",
    "hinge_margin",
    "top1_top2_probability_gap",
    "top1_top2_logit_gap",
    "true_class_rank",
    "correct",
    "logit_std",
    "logit_mean",
    "max_logit",
    "true_logit",
    *(f"top{k + 1}_probability" for k in range(TOP_K)),
)


class LearnedConfig(AttackConfig):
    name: Literal["learned"]
    model: ClassifierKind = Field(
        "logistic_regression",
        description="The attack classifier (logistic regression by default: as strong as "
        "gradient boosting or stronger, and 20x faster; BENCHMARKS.md, learned).",
    )
    folds: int = Field(5, ge=2, le=20, description="Cross-fitting folds.")
    class_features: bool = Field(True, description="Add the class one-hot to the features.")


def logit_features(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Feature matrix (n, len(FEATURE_NAMES)) from logits (n, C).

    The logit statistics are taken of the row-normalised logits (the log-softmax): a model's
    logits are defined up to a per-row constant, which carries no information about the
    prediction, and normalised they are the same for the logits export of a model and its
    softmax export (read as log-probabilities), so both get the same attack.
    """
    z = signals.log_softmax(logits)
    log_p = z
    p = np.exp(log_p)
    sorted_p = -np.sort(-p, axis=-1)
    sorted_z = -np.sort(-z, axis=-1)
    top_p = np.zeros((len(z), TOP_K))
    top_p[:, : min(TOP_K, z.shape[-1])] = sorted_p[:, :TOP_K]
    true_logit = np.take_along_axis(z, labels[:, None], axis=-1)[:, 0]
    columns = [
        signals.true_class_probability(z, labels),
        -signals.cross_entropy(z, labels),
        sorted_p[:, 0],
        signals.entropy(z),
        signals.modified_entropy(z, labels),
        signals.scaled_logit(z, labels),
        signals.hinge_margin(z, labels),
        sorted_p[:, 0] - sorted_p[:, 1],
        sorted_z[:, 0] - sorted_z[:, 1],
        signals.true_class_rank(z, labels),
        signals.is_correct(z, labels).astype(np.float64),
        z.std(axis=-1),
        z.mean(axis=-1),
        sorted_z[:, 0],
        true_logit,
    ]
    return np.column_stack([*columns, top_p])


@register
class LearnedAttack(Attack[LearnedConfig]):
    name = "learned"
    config_type = LearnedConfig
    summary = "Classifier on logit features, scored out of fold."

    def score(self, context: AttackContext) -> AttackOutput:
        config = self.config
        features = self.features(context)
        scores = out_of_fold_scores(
            features, context.is_member, config.model, config.folds, context.random_state
        )
        return AttackOutput(scores=scores, parameters=self.parameters())

    def samples_needed(self) -> int:
        """Per side, so that every fold's training set suits the classifier."""
        return crossfit_samples_needed(self.config.model, self.config.folds)

    def features(self, context: AttackContext) -> np.ndarray:
        config = self.config
        logits = context.target.select(self.views)
        blocks = [logit_features(view_logits, context.labels) for view_logits in logits]
        if config.class_features:
            n_classes = logits.shape[-1]
            blocks.append(np.eye(n_classes)[context.labels])
        return np.column_stack(blocks)
