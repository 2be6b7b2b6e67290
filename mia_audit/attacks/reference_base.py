"""What the reference-model attacks (lira, rmia, shadow) share.

They differ from the target-only attacks in one way: they need models trained like the target
on data the audit controls. An attack says what it needs as a :class:`ReferenceRequest`; the
audit trains (or loads from its cache) every requested model once, computes their logits, and
hands each attack a :class:`ReferenceSet` through ``AttackContext.references``. Attacks that ask for
the same models (same mode and number) share them, and offline sets share their first models:
offline model j is the same model whatever the number requested.

This module holds only the configs and the attack base class, so that importing the policy
stays light (no torch); the data types are in `reference_sets`.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mia_audit.attacks.base import Attack, AttackContext
from mia_audit.attacks.config import AttackConfig
from mia_audit.attacks.reference_sets import Mode, ReferenceRequest, ReferenceSet
from mia_audit.errors import AuditError


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


def _even_online_models(schema: dict[str, Any], cls: type[BaseModel]) -> None:
    """JSON Schema of `_online_count_even`, for an attack whose mode defaults either way."""
    online = {"properties": {"reference_models": {"multipleOf": 2, "minimum": 2}}}
    default = cls.model_fields["mode"].default
    other = "offline" if default == "online" else "online"
    schema["if"] = {"required": ["mode"], "properties": {"mode": {"const": other}}}
    schema["then" if other == "online" else "else"] = online


class ModeReferenceAttackConfig(ReferenceAttackConfig):
    """A reference attack whose policy entry says how many models and in which mode."""

    model_config = ConfigDict(json_schema_extra=_even_online_models)

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


ReferenceConfigT = TypeVar("ReferenceConfigT", bound=ReferenceAttackConfig)


class ReferenceAttack(Attack[ReferenceConfigT]):
    """Base of attacks that need reference models; `request` says which."""

    def request(self) -> ReferenceRequest:
        config = self.config
        return ReferenceRequest(
            mode=config.reference_mode,
            count=config.reference_count,
            views=self.views,
            population=config.needs_population_logits,
        )

    def references(self, context: AttackContext) -> ReferenceSet:
        if context.references is None:
            raise AuditError(
                f"attack {self.config.label!r} needs reference models, but none were prepared"
            )
        return context.references.get(self.request())
