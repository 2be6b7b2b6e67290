"""The attack interface: an attack maps the audit set's signals to one score per sample."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np

from mia_audit.attacks.config import AttackConfig
from mia_audit.attacks.outputs import SCORE_KINDS, LabelOracle, OutputKind
from mia_audit.attacks.queries import View
from mia_audit.attacks.reference_sets import ReferenceProvider
from mia_audit.errors import InputError


@dataclass(frozen=True)
class ViewLogits:
    """Logits of one model on a set of samples, for each query view: shape (views, n, C)."""

    views: tuple[View, ...]
    logits: np.ndarray

    def select(self, views: Sequence[View]) -> np.ndarray:
        """The logits of the requested views, in the requested order."""
        index = {view: i for i, view in enumerate(self.views)}
        missing = [view.key for view in views if view not in index]
        if missing:
            raise KeyError(f"logits for views {missing} were not computed")
        return self.logits[[index[view] for view in views]]

    @property
    def identity(self) -> np.ndarray:
        return np.asarray(self.select([View()])[0])


@dataclass(frozen=True)
class AttackContext:
    """What an attack may use.

    `is_member` is the auditor's knowledge, which an attacker lacks. Attacks that learn from
    it (learned, class_threshold) must only score each sample with a model fitted on other
    samples. `references` gives the reference models the audit prepared (None when no attack
    asked for any). `output_kind` is what the target returns; `target` holds its outputs as
    logits (log-probabilities for a probabilities model, one-hot rows of the predicted class for
    a labels model: `mia_audit.attacks.outputs`). `oracle` answers label queries on new images
    (None unless an attack says `needs_oracle`).
    """

    target: ViewLogits
    labels: np.ndarray
    is_member: np.ndarray
    random_state: int
    references: ReferenceProvider | None = None
    output_kind: OutputKind = "logits"
    oracle: LabelOracle | None = None


@dataclass(frozen=True)
class AttackOutput:
    scores: np.ndarray
    parameters: dict[str, Any] = field(default_factory=dict)


ConfigT = TypeVar("ConfigT", bound=AttackConfig)


class Attack(ABC, Generic[ConfigT]):
    """Subclasses set `name` and `config_type` (the `ConfigT` they take) and implement
    `score`; `mia_audit.attacks.registry.register` makes them available to policies."""

    name: ClassVar[str]
    config_type: ClassVar[type[AttackConfig]]
    #: Short description shown in reports.
    summary: ClassVar[str] = ""
    #: The target output kinds the attack can use (`mia_audit.attacks.outputs`); the audit
    #: refuses (exit 2) an attack whose target returns another kind, it never skips one.
    output_kinds: ClassVar[frozenset[OutputKind]] = SCORE_KINDS
    #: True for attacks that query the target with new images (`AttackContext.oracle`).
    needs_oracle: ClassVar[bool] = False

    def __init__(self, config: ConfigT) -> None:
        self.config = config

    @property
    def views(self) -> tuple[View, ...]:
        return self.config.queries.views

    @abstractmethod
    def score(self, context: AttackContext) -> AttackOutput:
        """One finite score per audit sample, higher = more likely a member."""

    def parameters(self) -> dict[str, Any]:
        return self.config.model_dump(mode="json", exclude={"name", "id"})

    def samples_needed(self) -> int:
        """Members, and non-members, the audit set needs at least for this attack to run."""
        return 1


def check_attack_data(attacks: Sequence[Attack[Any]], n_members: int, n_non_members: int) -> None:
    """Refuse (exit 2, before any inference) an audit set too small for one of the attacks."""
    for index, attack in enumerate(attacks):
        needed = attack.samples_needed()
        if min(n_members, n_non_members) < needed:
            raise InputError(
                f"attacks[{index}]: {attack.config.label!r} needs at least {needed} members and "
                f"{needed} non-members (its cross-fitting folds each train on the others), but "
                f"the audit set has {n_members} and {n_non_members}; add data, lower the "
                "attack's `folds`, or remove it"
            )


def check_attack_outputs(attacks: Sequence[Attack[Any]], kind: OutputKind, source: str) -> None:
    """Refuse (exit 2, before any inference) an attack the target's outputs cannot feed.

    Never skip it instead: a labels-only target audited with its logit attacks silently dropped
    would pass on whatever label-only attacks were left. `source` says how the kind was found.
    """
    for index, attack in enumerate(attacks):
        if kind in attack.output_kinds:
            continue
        usable = " or ".join(sorted(attack.output_kinds))
        raise InputError(
            f"attacks[{index}]: {attack.config.label!r} reads {usable} but the target returns "
            f"{kind} ({source}); remove it, use a label-only attack (gap, augmentation, "
            "boundary_distance), or audit a model that returns logits"
        )
