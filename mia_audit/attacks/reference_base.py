"""What the reference-model attacks (lira, rmia, shadow) share.

They differ from the target-only attacks in one way: they need models trained like the target
on data the audit controls. An attack says what it needs as a :class:`ReferenceRequest`; the
audit trains (or loads from its cache) every requested model once, computes their logits, and
hands each attack a :class:`ReferenceSet` through ``AttackContext.extras``. Attacks that ask for
the same models (same mode and number) share them, and offline sets share their first models:
offline model j is the same model whatever the number requested.

This module holds only data types and the attack base class, so that importing the policy stays
light (no torch).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
from pydantic import Field, model_validator

from mia_audit.attacks.base import Attack, AttackContext
from mia_audit.attacks.config import AttackConfig
from mia_audit.attacks.queries import View
from mia_audit.errors import AuditError

Mode = Literal["online", "offline"]
#: The key of the reference-model provider in ``AttackContext.extras``.
REFERENCES = "references"


class ReferenceAttackConfig(AttackConfig):
    """Config of an attack that needs reference (or shadow) models trained with the policy's
    ``reference_training`` recipe. Subclasses say how many, in which mode, and whether they
    need the models' outputs on the population."""

    @property
    def reference_mode(self) -> Mode:
        raise NotImplementedError

    @property
    def reference_count(self) -> int:
        raise NotImplementedError

    @property
    def needs_population_logits(self) -> bool:
        """Whether the attack reads model outputs on the population (RMIA's z, shadow data)."""
        return False

    def population_needed(self, train_size: int) -> int:
        """Population samples the attack needs, given the samples each model trains on.

        Offline models train on population samples only; online models train on halves of the
        audit set (plus population when the audit set is smaller than twice train_size).
        """
        return train_size if self.reference_mode == "offline" else 0

    @model_validator(mode="after")
    def _online_count_even(self) -> ReferenceAttackConfig:
        count = self.reference_count
        if self.reference_mode == "online" and (count < 2 or count % 2):
            raise ValueError(
                f"online mode needs an even number of reference models, at least 2 (each audit "
                f"sample is IN for exactly half of them), got {count}; use an even number or "
                "mode: offline"
            )
        return self


class ModeReferenceAttackConfig(ReferenceAttackConfig):
    """A reference attack whose policy entry says how many models and in which mode."""

    reference_models: int = Field(
        4, ge=1, le=4096, description="Reference models to train (online: an even number)."
    )
    mode: Mode = "offline"

    @property
    def reference_mode(self) -> Mode:
        return self.mode

    @property
    def reference_count(self) -> int:
        return self.reference_models


@dataclass(frozen=True)
class ReferenceRequest:
    """Reference models an attack needs: mode, number, query views, population outputs."""

    mode: Mode
    count: int
    views: tuple[View, ...]
    population: bool = False


@dataclass(frozen=True)
class ReferenceSet:
    """Reference models' logits and who trained on what.

    Arrays: ``audit`` (m, V, n, C) logits on the audit set, one slice per view of ``views``;
    ``in_audit`` (m, n) True where model j trained on audit sample i (all False offline);
    ``population`` (m, V, P, C) logits on the population (None when not requested);
    ``in_population`` (m, P) True where model j trained on population sample p;
    ``target_population`` (V, P, C) the *target's* logits on the population (None when not
    requested); ``population_labels`` (P,).
    """

    mode: Mode
    views: tuple[View, ...]
    audit: np.ndarray
    in_audit: np.ndarray
    population: np.ndarray | None
    in_population: np.ndarray
    population_labels: np.ndarray
    target_population: np.ndarray | None
    model_keys: tuple[str, ...]

    @property
    def count(self) -> int:
        return int(self.audit.shape[0])

    def _index(self, views: Sequence[View]) -> list[int]:
        position = {view: i for i, view in enumerate(self.views)}
        missing = [view.key for view in views if view not in position]
        if missing:
            raise KeyError(f"reference logits for views {missing} were not computed")
        return [position[view] for view in views]

    def audit_logits(self, views: Sequence[View]) -> np.ndarray:
        """(m, q, n, C) logits of the reference models on the audit set."""
        return self.audit[:, self._index(views)]

    def population_logits(self, views: Sequence[View]) -> np.ndarray:
        """(m, q, P, C) logits of the reference models on the population."""
        if self.population is None:
            raise KeyError("reference logits on the population were not requested")
        return self.population[:, self._index(views)]

    def target_population_logits(self, views: Sequence[View]) -> np.ndarray:
        """(q, P, C) logits of the target on the population."""
        if self.target_population is None:
            raise KeyError("target logits on the population were not requested")
        return self.target_population[self._index(views)]


class ReferenceProvider(Protocol):
    """Gives attacks the reference models the audit prepared."""

    def get(self, request: ReferenceRequest) -> ReferenceSet: ...


class ReferenceAttack(Attack):
    """Base of attacks that need reference models; `request` says which."""

    @property
    def reference_config(self) -> ReferenceAttackConfig:
        assert isinstance(self.config, ReferenceAttackConfig)
        return self.config

    def request(self) -> ReferenceRequest:
        config = self.reference_config
        return ReferenceRequest(
            mode=config.reference_mode,
            count=config.reference_count,
            views=self.views,
            population=config.needs_population_logits,
        )

    def references(self, context: AttackContext) -> ReferenceSet:
        provider = context.extras.get(REFERENCES)
        if provider is None:
            raise AuditError(
                f"attack {self.config.label!r} needs reference models, but none were prepared"
            )
        reference_set: ReferenceSet = provider.get(self.request())
        return reference_set
