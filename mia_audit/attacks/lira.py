"""LiRA (Carlini et al. 2022): a Gaussian likelihood-ratio test per sample on the scaled logit.

The statistic is φ = log p_y - log(1 - p_y) of the target and of each reference model, per
query view. Online, each audit sample is IN for half of the reference models and OUT for the
other half, and the score compares the target's φ with both fitted Gaussians; offline, the
reference models never saw an audit sample and the score is the one-sided test against the OUT
Gaussian. The math (and where it differs from the public code) is in
:mod:`mia_audit.attacks.scoring.lira`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from mia_audit.attacks.base import AttackContext, AttackOutput
from mia_audit.attacks.reference_base import ModeReferenceAttackConfig, ReferenceAttack
from mia_audit.attacks.reference_sets import Mode
from mia_audit.attacks.registry import register
from mia_audit.attacks.scoring.lira import Variance, lira_offline, lira_online
from mia_audit.attacks.signals import scaled_logit

#: The paper's finding: with fewer reference models than this, a global variance beats a
#: per-example one.
PER_EXAMPLE_VARIANCE_FROM = 64


class LiraConfig(ModeReferenceAttackConfig):
    name: Literal["lira"]
    mode: Mode = Field(
        "online",
        description=(
            "online: models trained on halves of the audit set (IN and OUT Gaussians); "
            "offline: models trained on population only (OUT Gaussian, one-sided test)."
        ),
    )
    variance: Literal["auto", "global", "per_example"] = Field(
        "auto",
        description="Gaussian variance: one per query and side (global), per sample, or auto "
        f"(global under {PER_EXAMPLE_VARIANCE_FROM} models).",
    )


def resolve_variance(variance: str, n_models: int) -> Variance:
    """`auto`: global under PER_EXAMPLE_VARIANCE_FROM reference models, else per example."""
    if variance == "auto":
        return "per_example" if n_models >= PER_EXAMPLE_VARIANCE_FROM else "global"
    return "per_example" if variance == "per_example" else "global"


def lira_scores(
    target_logits: np.ndarray,
    reference_logits: np.ndarray,
    labels: np.ndarray,
    in_mask: np.ndarray,
    mode: Mode,
    variance: Variance,
) -> np.ndarray:
    """LiRA scores from logits: target (q, n, C), references (m, q, n, C), in_mask (m, n)."""
    phi_target = scaled_logit(target_logits, labels).T
    phi_reference = np.transpose(scaled_logit(reference_logits, labels), (0, 2, 1))
    if mode == "online":
        return lira_online(phi_target, phi_reference, in_mask, variance=variance)
    return lira_offline(phi_target, phi_reference, ~in_mask, variance=variance)


@register
class LiraAttack(ReferenceAttack[LiraConfig]):
    name = "lira"
    config_type = LiraConfig
    summary = (
        "Likelihood-ratio test on the scaled logit against reference models (Carlini et al. 2022)."
    )

    def score(self, context: AttackContext) -> AttackOutput:
        config = self.config
        references = self.references(context)
        variance = resolve_variance(config.variance, references.count)
        scores = lira_scores(
            context.target.select(self.views),
            references.audit_logits(self.views),
            context.labels,
            references.in_audit,
            config.mode,
            variance,
        )
        parameters = {
            **self.parameters(),
            "n_queries": len(self.views),
            "variance_used": variance,
            "signal": "scaled_logit",
        }
        return AttackOutput(scores=scores, parameters=parameters)
