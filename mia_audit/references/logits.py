"""The reference models' logits in this run, and the target's on the population: computed or
read from the logits cache (spot-checked against the model), kept by model, data set and view.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from mia_audit.attacks.queries import IDENTITY, View
from mia_audit.models import spot_check
from mia_audit.models.inference import LogitsRequest, cached_predict
from mia_audit.progress import Advance, Progress
from mia_audit.references.catalogue import Catalogue, Wanted
from mia_audit.reports.text import plural
from mia_audit.store.cache import ContentStore, entry_key

if TYPE_CHECKING:
    from mia_audit.models.classifier import Classifier


class ReferenceLogits:
    """Logits by (model key, data set, view), through `store` (the logits cache)."""

    def __init__(
        self, catalogue: Catalogue, store: ContentStore[np.ndarray], progress: Progress
    ) -> None:
        self.catalogue = catalogue
        self.store = store
        self.progress = progress
        self._values: dict[tuple[str, str, View], np.ndarray] = {}
        self._target_population: dict[View, np.ndarray] = {}

    def has(self, key: str, items: Wanted) -> bool:
        """Whether every wanted logit of the model is at hand."""
        return all((key, part, view) in self._values for part, view in items)

    def entry(self, key: str, part: str, view: View) -> str:
        """The cache entry of a model's logits on a data set in a view."""
        return entry_key("logits", self.catalogue.logits_request(key, part).key_parts(view))

    def predict(self, key: str, items: Wanted, classifier: Classifier, advance: Advance) -> None:
        """The model's logits on every wanted part and view (cached ones spot-checked)."""
        setup, rows = self.catalogue.setup, self.catalogue.rows
        for part in sorted({part for part, _ in items}):
            views = sorted(view for p, view in items if p == part)
            logits = cached_predict(
                self.store,
                self.catalogue.logits_request(key, part),
                classifier,
                rows.images_of(part),
                views,
                setup.batch_size,
                advance=advance,
                notify=self.progress.note,
                what=f"reference model {key[:12]}'s logits on the {part}",
                check_rows=spot_check.REFERENCE_ROWS,
            )
            for view, value in zip(views, logits, strict=True):
                self._values[(key, part, view)] = value

    def identity(self, key: str) -> np.ndarray:
        """The model's identity-view logits at hand: the audit set, then the population when
        its logits were computed (rows as `AuditRows` numbers them)."""
        parts = [self._values[(key, "audit", IDENTITY)]]
        if (key, "population", IDENTITY) in self._values:
            parts.append(self._values[(key, "population", IDENTITY)])
        return np.concatenate(parts)

    def forget(self, key: str, items: Wanted) -> None:
        """A refused model's logits go, from this run and from the cache."""
        for part, view in items:
            self._values.pop((key, part, view), None)
            self.store.discard(self.entry(key, part, view))

    def stack(self, keys: Sequence[str], part: str, views: Sequence[View]) -> np.ndarray:
        """(models, views, n, C) logits."""
        values = self._values
        return np.stack([np.stack([values[(key, part, view)] for view in views]) for key in keys])

    def target_stack(self, views: Sequence[View]) -> np.ndarray:
        """(views, P, C) logits of the target on the population."""
        return np.stack([self._target_population[view] for view in views])

    def predict_target_population(self) -> None:
        """The target's logits on the population, in every view some group needs."""
        setup = self.catalogue.setup
        wanted = self.catalogue.target_population_views() - set(self._target_population)
        views = sorted(wanted)
        if not views or setup.population is None:
            return
        request = LogitsRequest(
            model_sha256=setup.target.sha256,
            data_sha256=self.catalogue.data_sha256("population"),
            preprocess=setup.preprocess,
            engine=setup.target.engine,
        )
        description = f"target inference on the population ({plural(len(views), 'view')})"
        with self.progress.stage(description, setup.n_population) as advance:
            logits = cached_predict(
                self.store,
                request,
                setup.target.classifier,
                setup.population.images,
                views,
                setup.batch_size,
                advance=advance,
                notify=self.progress.note,
                what="the target's logits on the population",
            )
        self._target_population.update(zip(views, logits, strict=True))
