"""What a reference-model attack asks for (`ReferenceRequest`), what it gets (`ReferenceSet`),
and who gives it (`ReferenceProvider`, implemented by `references.provider.ReferenceModels`).

Plain data: the attacks read these and the references package fills them, so neither imports
the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from mia_audit.attacks.queries import View

Mode = Literal["online", "offline"]


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
