"""Shadow models (Shokri et al. 2017): learn what member outputs look like from models whose
members are known, then apply that to the target's outputs.

Each shadow model is trained like a reference model on a seeded subset of the population (the
offline reference models: the same models serve both). Its outputs on the population give
labelled examples: IN for the samples it trained on, OUT for the others (subsampled to the same
number). One attack classifier per class is fitted on every shadow model's examples of that
class; a class with too few examples of either kind falls back to a classifier fitted on all
classes. The target's outputs on the audit set are then scored by their class's classifier.

Features (per query view): the softmax probabilities sorted in decreasing order (Shokri's
prediction vector, made independent of class order) and the log-probability of the true class.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import Field

from mia_audit.attacks import signals
from mia_audit.attacks.base import AttackContext, AttackOutput
from mia_audit.attacks.classifiers import ClassifierKind, ClassifierSettings, make_classifier
from mia_audit.attacks.reference_base import ReferenceAttack, ReferenceAttackConfig
from mia_audit.attacks.reference_sets import Mode
from mia_audit.attacks.registry import register

#: Sorted probabilities kept as features (all of them for up to this many classes).
TOP_K = 10
#: Fewest IN and OUT examples of a class for it to get its own attack classifier.
MIN_PER_CLASS = 20
#: Examples from which the attack classifiers use every core.
LARGE_FIT = 200_000


class ShadowConfig(ReferenceAttackConfig):
    name: Literal["shadow"]
    shadow_models: int = Field(4, ge=1, le=4096, description="Shadow models to train.")
    classifier: ClassifierKind = Field(
        "logistic_regression",
        description="The per-class attack classifier (logistic regression: the strongest and "
        "fastest in bench/attack_power.py, on a few hundred examples per class).",
    )

    @property
    def reference_mode(self) -> Mode:
        return "offline"

    @property
    def reference_count(self) -> int:
        return self.shadow_models

    @property
    def needs_population_logits(self) -> bool:
        return True

    def population_needed(self, train_size: int) -> int:
        """IN and OUT halves: each shadow model trains on train_size and leaves as many out."""
        return 2 * train_size


def shadow_features(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(n, features) from logits (q, n, C): per view, the sorted probabilities (top TOP_K) and
    the true class's log-probability."""
    blocks = []
    for view_logits in np.asarray(logits, dtype=np.float64):
        log_p = signals.log_softmax(view_logits)
        top = -np.sort(-np.exp(log_p), axis=-1)[:, :TOP_K]
        true_log_p = np.take_along_axis(log_p, labels[:, None], axis=-1)
        blocks.extend([top, true_log_p])
    return np.column_stack(blocks)


@dataclass(frozen=True)
class ShadowExamples:
    """Labelled attack-training examples: features, their class, and IN (True) / OUT."""

    features: np.ndarray
    classes: np.ndarray
    is_in: np.ndarray


def shadow_examples(
    population_logits: np.ndarray,
    labels: np.ndarray,
    in_population: np.ndarray,
    seed: int,
) -> ShadowExamples:
    """Examples from every shadow model: logits (m, q, P, C), in_population (m, P).

    Per model, the larger of its IN and OUT sides is subsampled (seeded) to the smaller's size,
    so the attack classifiers see balanced data.
    """
    rng = np.random.default_rng(seed)
    features, classes, is_in = [], [], []
    for logits, trained in zip(population_logits, in_population, strict=True):
        inside, outside = np.flatnonzero(trained), np.flatnonzero(~trained)
        size = min(len(inside), len(outside))
        rows = np.concatenate([rng.permutation(inside)[:size], rng.permutation(outside)[:size]])
        features.append(shadow_features(logits[:, rows], labels[rows]))
        classes.append(labels[rows])
        is_in.append(np.repeat([True, False], size))
    return ShadowExamples(np.concatenate(features), np.concatenate(classes), np.concatenate(is_in))


#: Shadow's attack classifiers: a single hidden layer trained to convergence, fewer boosting
#: rounds (a few hundred examples per class).
SHADOW_CLASSIFIERS = ClassifierSettings(
    mlp_layers=(64,),
    mlp_max_iter=500,
    mlp_early_stopping=False,
    boosting_rounds=100,
    boosting_early_stopping="auto",
)


class PerClassAttack:
    """One attack classifier per class, plus a pooled one for classes with too few examples.

    scikit-learn style: ``fit(features, classes, is_in)`` then ``predict_proba``-like
    ``score(features, classes)`` -> P(IN).
    """

    def __init__(
        self, classifier: ClassifierKind = "logistic_regression", random_state: int = 0
    ) -> None:
        self.classifier = classifier
        self.random_state = random_state

    def fit(self, features: np.ndarray, classes: np.ndarray, is_in: np.ndarray) -> PerClassAttack:
        if is_in.all() or not is_in.any():
            raise ValueError("shadow examples need both IN and OUT samples")
        self.pooled_ = self._fitted(features, is_in)
        self.per_class_: dict[int, Any] = {}
        for label in np.unique(classes):
            rows = classes == label
            n_in = int(is_in[rows].sum())
            if min(n_in, int(rows.sum()) - n_in) >= MIN_PER_CLASS:
                self.per_class_[int(label)] = self._fitted(features[rows], is_in[rows])
        return self

    def _fitted(self, features: np.ndarray, is_in: np.ndarray) -> Any:
        from sklearn.exceptions import ConvergenceWarning

        model = make_classifier(self.classifier, self.random_state, SHADOW_CLASSIFIERS)
        with warnings.catch_warnings():
            # An unconverged fit still scores; the warning would only be noise on stderr.
            warnings.simplefilter("ignore", ConvergenceWarning)
            return model.fit(features, is_in)

    def score(self, features: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """P(IN) for each sample, from its class's classifier (the pooled one if none)."""
        scores = self.pooled_.predict_proba(features)[:, 1]
        for label, model in self.per_class_.items():
            rows = classes == label
            if rows.any():
                scores[rows] = model.predict_proba(features[rows])[:, 1]
        return np.asarray(scores, dtype=np.float64)


def _threads_for(n_examples: int) -> contextlib.AbstractContextManager[object]:
    """One thread for small fits: the per-class classifiers see a few hundred examples each,
    where OpenMP's thread start-up and spinning (worse beside torch's own pool on a busy CPU)
    costs ten times the work itself."""
    if n_examples >= LARGE_FIT:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    limits: contextlib.AbstractContextManager[object] = threadpool_limits(limits=1)
    return limits


@register
class ShadowAttack(ReferenceAttack[ShadowConfig]):
    name = "shadow"
    config_type = ShadowConfig
    summary = "Per-class attack classifiers trained on shadow models' outputs (Shokri et al. 2017)."

    def score(self, context: AttackContext) -> AttackOutput:
        config = self.config
        references = self.references(context)
        examples = shadow_examples(
            references.population_logits(self.views),
            references.population_labels,
            references.in_population,
            context.random_state,
        )
        target_features = shadow_features(context.target.select(self.views), context.labels)
        with _threads_for(len(examples.is_in)):
            attack = PerClassAttack(config.classifier, context.random_state)
            attack.fit(examples.features, examples.classes, examples.is_in)
            scores = attack.score(target_features, context.labels)
        parameters = {
            **self.parameters(),
            "n_queries": len(self.views),
            "n_examples": len(examples.is_in),
            "classes_with_own_classifier": len(attack.per_class_),
        }
        return AttackOutput(scores=scores, parameters=parameters)
