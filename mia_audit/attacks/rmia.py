"""RMIA (Zarifzadeh et al. 2024): how often x beats population samples z in a likelihood ratio.

Score(x) = fraction of the population z with [p(x|θ)/Pr(x)] / [p(z|θ)/Pr(z)] > gamma, where p is
the target's tempered softmax probability of the true class and Pr its average over reference
models. Offline (reference models trained on population only) Pr(x) is the paper's linear
approximation ½((1+a)·mean_OUT + (1-a)); with ``offline_a: auto`` the value of a is chosen by
attacking one reference model with the others (no target membership is used). Several queries
are combined by a majority vote per pair (x, z). The math is in
:mod:`mia_audit.attacks.scoring.rmia`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, PlainValidator, WithJsonSchema

from mia_audit.attacks.base import AttackContext, AttackOutput
from mia_audit.attacks.queries import View
from mia_audit.attacks.reference_base import ModeReferenceAttackConfig, ReferenceAttack
from mia_audit.attacks.reference_sets import Mode, ReferenceSet
from mia_audit.attacks.registry import register
from mia_audit.attacks.scoring.rmia import (
    Aggregation,
    rmia_scores,
    true_class_probability,
    tune_offline_a,
)

#: The research default of a on CIFAR-10, used when a cannot be tuned (one reference model).
DEFAULT_OFFLINE_A = 0.3
#: Samples (x and z, each) used to tune a: the grid search attacks every reference model.
TUNING_SAMPLES = 2000
#: Stand-in targets averaged when tuning a.
TUNING_STAND_INS = 4


def _offline_a(value: Any) -> str | float:
    """'auto' or a number in [0, 1] (one clear message instead of a union's two)."""
    if value == "auto":
        return "auto"
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1:
        return float(value)
    raise ValueError(f"offline_a is 'auto' or a number in [0, 1], got {value!r}")


OfflineA = Annotated[
    Literal["auto"] | float,
    PlainValidator(_offline_a),
    WithJsonSchema({"anyOf": [{"const": "auto"}, {"type": "number", "minimum": 0, "maximum": 1}]}),
]


class RmiaConfig(ModeReferenceAttackConfig):
    name: Literal["rmia"]
    mode: Mode = Field(
        "offline",
        description="offline: models trained on population only; online: on halves of the "
        "audit set (an even number of models).",
    )
    gamma: float = Field(2.0, gt=0, description="Threshold on the pairwise likelihood ratio.")
    temperature: float = Field(2.0, gt=0, description="Softmax temperature of p(x|θ).")
    offline_a: OfflineA = Field(
        "auto",
        description="a of the offline approximation of Pr(x), in [0, 1]; auto tunes it on the "
        "reference models.",
    )
    aggregation: Aggregation = Field(
        "majority", description="How queries combine: majority vote per pair, or mean."
    )

    @property
    def needs_population_logits(self) -> bool:
        return True

    def population_needed(self, train_size: int) -> int:
        """Population z samples (and, offline, the models' training data): train_size."""
        return train_size


@register
class RmiaAttack(ReferenceAttack[RmiaConfig]):
    name = "rmia"
    config_type = RmiaConfig
    summary = "Pairwise likelihood ratios against population samples (Zarifzadeh et al. 2024)."

    def score(self, context: AttackContext) -> AttackOutput:
        config = self.config
        references = self.references(context)
        views = self.views
        temperature = config.temperature
        a, source = self._offline_a(references, views, context.labels, context.random_state)
        online = config.mode == "online"
        z_labels = references.population_labels
        scores = rmia_scores(
            _probabilities(context.target.select(views), context.labels, temperature),
            _probabilities(references.audit_logits(views), context.labels, temperature),
            _probabilities(references.target_population_logits(views), z_labels, temperature),
            _probabilities(references.population_logits(views), z_labels, temperature),
            in_mask_x=references.in_audit if online else None,
            in_mask_z=references.in_population,
            gamma=config.gamma,
            offline_a=a,
            aggregation=config.aggregation,
        )
        parameters = {
            **self.parameters(),
            "n_queries": len(views),
            "n_population": len(references.population_labels),
            "offline_a_used": a,
            "offline_a_source": source,
        }
        return AttackOutput(scores=scores, parameters=parameters)

    def _offline_a(
        self, references: ReferenceSet, views: tuple[View, ...], labels: np.ndarray, seed: int
    ) -> tuple[float, str]:
        config = self.config
        if not isinstance(config.offline_a, str):
            return float(config.offline_a), "policy"
        if references.count < 2:
            return DEFAULT_OFFLINE_A, "default (a needs 2+ reference models to tune)"
        a = tuned_offline_a(references, views, labels, config, seed)
        return a, "tuned on reference models"


def _probabilities(logits: np.ndarray, labels: np.ndarray, temperature: float) -> np.ndarray:
    """p_y per model/query/sample, with the sample axis before the query axis (RMIA's layout):
    (q, n, C) -> (n, q); (m, q, n, C) -> (m, n, q)."""
    p = true_class_probability(logits, labels, temperature)
    return np.swapaxes(p, -1, -2)


def tuned_offline_a(
    references: ReferenceSet,
    views: tuple[View, ...],
    audit_labels: np.ndarray,
    config: RmiaConfig,
    seed: int,
) -> float:
    """Tune a: each of a few reference models stands in for the target and is attacked by the
    others, offline, on samples whose membership in it is known (audit set and population).
    Subsampled to TUNING_SAMPLES x and z, and aggregated by the mean, to stay cheap."""
    rng = np.random.default_rng(seed)
    t = config.temperature
    labels_x = np.concatenate([audit_labels, references.population_labels])
    x_logits = np.concatenate(
        [references.audit_logits(views), references.population_logits(views)], axis=2
    )
    mask_x = np.concatenate([references.in_audit, references.in_population], axis=1)
    x_rows = _subsample(rng, x_logits.shape[2], TUNING_SAMPLES)
    z_rows = _subsample(rng, len(references.population_labels), TUNING_SAMPLES)
    p_x = _probabilities(x_logits[:, :, x_rows], labels_x[x_rows], t)
    p_z = _probabilities(
        references.population_logits(views)[:, :, z_rows], references.population_labels[z_rows], t
    )
    mask_x = mask_x[:, x_rows]
    usable = [j for j in range(len(mask_x)) if mask_x[j].any() and not mask_x[j].all()]
    if not usable:
        return DEFAULT_OFFLINE_A
    return tune_offline_a(
        p_x,
        p_z,
        mask_x,
        in_mask_z=references.in_population[:, z_rows],
        stand_ins=usable[:TUNING_STAND_INS],
        gamma=config.gamma,
        aggregation="mean",
    )


def _subsample(rng: np.random.Generator, n: int, limit: int) -> np.ndarray:
    """All rows, or `limit` of them (seeded, sorted)."""
    return np.arange(n) if n <= limit else np.sort(rng.choice(n, limit, replace=False))
