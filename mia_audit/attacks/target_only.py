"""Attacks that threshold one signal of the target model's output (no training, no labels
of membership): loss, confidence, entropy, modified entropy and the logit margin."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Literal, TypeVar

import numpy as np
from pydantic import Field

from mia_audit.attacks import signals
from mia_audit.attacks.base import Attack, AttackContext, AttackOutput
from mia_audit.attacks.config import AttackConfig
from mia_audit.attacks.registry import register

Signal = Callable[[np.ndarray, np.ndarray], np.ndarray]


def member_score(signal: str) -> Signal:
    """The membership score of a named signal, oriented so that higher = more likely member."""
    return _SCORES[signal]


_SCORES: dict[str, Signal] = {
    "loss": lambda logits, labels: -signals.cross_entropy(logits, labels),
    # log p_y ranks as p_y does, and stays distinct where p_y itself rounds to 1.
    "confidence": signals.true_class_log_probability,
    "entropy": lambda logits, labels: -signals.entropy(logits),
    "modified_entropy": lambda logits, labels: -signals.modified_entropy(logits, labels),
    "logit_margin": signals.scaled_logit,
    "hinge_margin": signals.hinge_margin,
}
SignalConfigT = TypeVar("SignalConfigT", bound=AttackConfig)
SignalName = Literal[
    "loss", "confidence", "entropy", "modified_entropy", "logit_margin", "hinge_margin"
]


class _SignalAttack(Attack[SignalConfigT]):
    """Score = the signal, averaged over the query views."""

    signal: ClassVar[str]

    def score(self, context: AttackContext) -> AttackOutput:
        logits = context.target.select(self.views)
        scores = member_score(self._signal())(logits, context.labels).mean(axis=0)
        return AttackOutput(scores=scores, parameters=self.parameters())

    def _signal(self) -> str:
        return self.signal


class LossConfig(AttackConfig):
    name: Literal["loss"]


class ConfidenceConfig(AttackConfig):
    name: Literal["confidence"]


class EntropyConfig(AttackConfig):
    name: Literal["entropy"]


class ModifiedEntropyConfig(AttackConfig):
    name: Literal["modified_entropy"]


class LogitMarginConfig(AttackConfig):
    name: Literal["logit_margin"]
    form: Literal["log_odds", "hinge"] = Field(
        "log_odds",
        description="log_odds: log p_y - log(1 - p_y) (LiRA's scaling); hinge: z_y - max other.",
    )


@register
class LossAttack(_SignalAttack[LossConfig]):
    name = "loss"
    config_type = LossConfig
    signal = "loss"
    summary = "Negative cross-entropy of the true class (Yeom et al. 2018)."


@register
class ConfidenceAttack(_SignalAttack[ConfidenceConfig]):
    name = "confidence"
    config_type = ConfidenceConfig
    signal = "confidence"
    summary = "Softmax probability of the true class (scored as its logarithm)."


@register
class EntropyAttack(_SignalAttack[EntropyConfig]):
    name = "entropy"
    config_type = EntropyConfig
    signal = "entropy"
    summary = "Negative entropy of the softmax (Salem et al. 2019)."


@register
class ModifiedEntropyAttack(_SignalAttack[ModifiedEntropyConfig]):
    name = "modified_entropy"
    config_type = ModifiedEntropyConfig
    signal = "modified_entropy"
    summary = "Negative modified entropy, which uses the label (Song & Mittal 2021)."


@register
class LogitMarginAttack(_SignalAttack[LogitMarginConfig]):
    name = "logit_margin"
    config_type = LogitMarginConfig
    summary = "Margin of the true-class logit over the others (LiRA's scaling)."

    def _signal(self) -> str:
        return "logit_margin" if self.config.form == "log_odds" else "hinge_margin"
