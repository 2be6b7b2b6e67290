"""Which reference models a run has, and what each is keyed by (pure: nothing is trained or read).

Plans (`mia_audit.references.plans`) say which samples each model trains on; the catalogue turns
the attacks' requests into groups (one per mode and count), their models' cache keys, the
training pool of each mode, and the logits wanted of every model. `AuditRows` is the one index
over the rows the verifier and the pools read: the audit set's rows, then the population's.

Models are content-addressed: the key hashes the pool's pixels and labels, the job's rows and
seed, the recipe (with the trainer version), the architecture (and a factory's source file) and
the normalisation. The target's weights are not part of it, so the next release candidate,
audited on the same data, reuses every model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

import numpy as np

from mia_audit.attacks.queries import IDENTITY, View
from mia_audit.attacks.reference_sets import Mode, ReferenceRequest
from mia_audit.data.images import ImageSet, as_float01
from mia_audit.models.engine import EngineKey
from mia_audit.models.inference import LogitsRequest, Preprocessor
from mia_audit.references.executors.base import Architecture, TrainingTask
from mia_audit.references.fit import plan_rows
from mia_audit.references.plans import ReferencePlan, make_plan
from mia_audit.references.settings import TRAINER_VERSION, TrainingRecipe
from mia_audit.references.training import TrainingData, TrainingJob
from mia_audit.references.verifier import ModelRows
from mia_audit.store.hashing import arrays_sha256, json_sha256

if TYPE_CHECKING:
    from mia_audit.models.classifier import Classifier

#: Bump when a change to the catalogue changes which model a key names, or how it is stored
#: (2: integrity records).
MODEL_CACHE_VERSION = 2

#: The logits wanted of one model: (data set, view) pairs; the data set is "audit" or
#: "population".
Wanted = set[tuple[str, View]]


@dataclass(frozen=True)
class TargetModel:
    """The target, for its logits on the population (cached like those on the audit set)."""

    classifier: Classifier
    sha256: str
    engine: EngineKey


@dataclass(frozen=True)
class ReferenceSetup:
    """Everything the reference models depend on (besides the requests)."""

    recipe: TrainingRecipe
    architecture: Architecture
    audit_images: np.ndarray
    audit_labels: np.ndarray
    population: ImageSet | None
    preprocess: Preprocessor
    device: str
    batch_size: int
    seed: int
    target: TargetModel

    @property
    def train_size(self) -> int:
        assert self.recipe.train_size is not None
        return self.recipe.train_size

    @property
    def n_population(self) -> int:
        return 0 if self.population is None else len(self.population)


@dataclass(frozen=True)
class AuditRows:
    """The audit set's rows followed by the population's, as one index (0 .. n_audit-1 are
    the audit set, n_audit + p is population sample p)."""

    audit_images: np.ndarray
    audit_labels: np.ndarray
    population: ImageSet | None

    @classmethod
    def of(cls, setup: ReferenceSetup) -> AuditRows:
        return cls(setup.audit_images, setup.audit_labels, setup.population)

    @property
    def n_audit(self) -> int:
        return len(self.audit_labels)

    def images_of(self, part: str) -> np.ndarray:
        """The images of a data set: "audit" or "population"."""
        if part == "audit":
            return self.audit_images
        assert self.population is not None
        return self.population.images

    def labels(self, rows: np.ndarray) -> np.ndarray:
        """Labels of rows."""
        if not len(rows) or rows.max() < self.n_audit:
            return np.asarray(self.audit_labels[rows])
        assert self.population is not None
        return np.asarray(np.concatenate([self.audit_labels, self.population.labels])[rows])

    def images(self, rows: np.ndarray) -> np.ndarray:
        """Images of sorted rows (float 0..1 when the two sets' dtypes differ)."""
        audit_rows, population_rows = self.split(rows)
        parts = [self.audit_images[audit_rows]]
        if len(population_rows):
            assert self.population is not None
            parts.append(self.population.images[population_rows])
        return _concatenate_images(parts)

    def split(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows of the audit set, and rows of the population (as its own indices)."""
        return rows[rows < self.n_audit], rows[rows >= self.n_audit] - self.n_audit

    def pool_rows(self, plan: ReferencePlan) -> np.ndarray:
        """A plan's pool as rows."""
        audit = np.arange(self.n_audit) if plan.includes_audit else np.arange(0)
        return np.concatenate([audit, self.n_audit + plan.population_rows]).astype(np.int64)


def _concatenate_images(parts: list[np.ndarray]) -> np.ndarray:
    if len({part.dtype for part in parts}) > 1:
        parts = [as_float01(part) for part in parts]
    return np.concatenate(parts)


@dataclass(frozen=True)
class Pool:
    """A mode's training data, with its hash (part of every model key)."""

    data: TrainingData
    sha256: str


@dataclass
class ReferenceGroup:
    """One (mode, count) set of models and what the attacks want of it."""

    mode: Mode
    plan: ReferencePlan
    keys: tuple[str, ...]
    views: set[View] = field(default_factory=set)
    population: bool = False

    @property
    def count(self) -> int:
        return len(self.keys)

    def parts(self) -> tuple[str, ...]:
        return ("audit", "population") if self.population else ("audit",)


@dataclass(frozen=True)
class Slot:
    """Where a model sits: its group and its index in the group's plan."""

    group: ReferenceGroup
    index: int

    @property
    def task(self) -> TrainingTask:
        return TrainingTask(self.group.keys[self.index], self.group.plan.jobs[self.index])

    @property
    def in_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """(in_audit, in_population) of the model: which samples its plan trains it on."""
        plan = self.group.plan
        return plan.in_audit[self.index], plan.in_population[self.index]


class Catalogue:
    """The groups, pools and keys of a run's reference models, as the requests add them."""

    def __init__(self, setup: ReferenceSetup, logits_device: str) -> None:
        self.setup = setup
        self.rows = AuditRows.of(setup)
        #: Where reference logits are computed: part of their cache key.
        self.logits_device = logits_device
        self._groups: dict[tuple[Mode, int], ReferenceGroup] = {}
        self._pools: dict[Mode, Pool] = {}
        self._data_hashes: dict[str, str] = {}

    @property
    def groups(self) -> Mapping[tuple[Mode, int], ReferenceGroup]:
        """Every group so far, by (mode, count) (read-only)."""
        return MappingProxyType(self._groups)

    @property
    def pools(self) -> Mapping[Mode, Pool]:
        """The training pool of every mode so far (read-only)."""
        return MappingProxyType(self._pools)

    @property
    def model_keys(self) -> set[str]:
        return {key for group in self._groups.values() for key in group.keys}

    def add(self, requests: Iterable[ReferenceRequest]) -> None:
        """Take the attacks' requests: each group's views and whether it needs the population."""
        for request in requests:
            group = self.group(request.mode, request.count)
            group.views.update((IDENTITY, *request.views))
            group.population = group.population or request.population

    def group(self, mode: Mode, count: int) -> ReferenceGroup:
        """The group of (mode, count), planned and keyed on first use."""
        if (mode, count) not in self._groups:
            setup = self.setup
            plan = make_plan(
                mode, count, self.rows.n_audit, setup.n_population, setup.train_size, setup.seed
            )
            pool = self._pool(mode, plan)
            keys = tuple(self._model_key(pool, job) for job in plan.jobs)
            self._groups[(mode, count)] = ReferenceGroup(mode, plan, keys)
        return self._groups[(mode, count)]

    def slot(self, key: str) -> Slot:
        """The first group holding the model, and its index there."""
        for group in self._groups.values():
            if key in group.keys:
                return Slot(group, group.keys.index(key))
        raise KeyError(key)

    def wanted(self) -> dict[str, Wanted]:
        """The logits wanted of every model, over every group."""
        wanted: dict[str, Wanted] = {}
        for group in self._groups.values():
            for key in group.keys:
                items = wanted.setdefault(key, set())
                items.update((part, view) for part in group.parts() for view in group.views)
        return wanted

    def model_rows(self, key: str, at_hand: np.ndarray) -> ModelRows:
        """A model's IN and OUT rows by its plan (`plan_rows`), with its logits at hand."""
        slot = self.slot(key)
        in_audit, in_population = slot.in_rows
        pool = self.rows.pool_rows(slot.group.plan)
        in_rows, out_rows = plan_rows(in_audit, in_population, pool)
        return ModelRows(in_rows, out_rows, at_hand)

    def target_population_views(self) -> set[View]:
        """The views of the target's logits on the population some group needs."""
        return {view for g in self._groups.values() if g.population for view in g.views}

    def logits_request(self, key: str, part: str) -> LogitsRequest:
        """The cache request of a reference model's logits on a data set."""
        return LogitsRequest(
            model_sha256=key,
            data_sha256=self.data_sha256(part),
            preprocess=self.setup.preprocess,
            engine=EngineKey("torch", self.logits_device),
        )

    def data_sha256(self, part: str) -> str:
        if part not in self._data_hashes:
            self._data_hashes[part] = arrays_sha256(self.rows.images_of(part))
        return self._data_hashes[part]

    def images_total(self, wanted: Mapping[str, Wanted]) -> int:
        """Images the models are run on to give these logits (each data set once per model)."""
        parts = [{part for part, _ in items} for items in wanted.values()]
        return sum(len(self.rows.images_of(part)) for model in parts for part in model)

    def _pool(self, mode: Mode, plan: ReferencePlan) -> Pool:
        if mode not in self._pools:
            self._pools[mode] = self._make_pool(plan)
        return self._pools[mode]

    def _make_pool(self, plan: ReferencePlan) -> Pool:
        setup = self.setup
        images, labels = [], []
        if plan.includes_audit:
            images.append(setup.audit_images)
            labels.append(setup.audit_labels)
        if setup.population is not None and len(plan.population_rows):
            images.append(setup.population.images[plan.population_rows])
            labels.append(setup.population.labels[plan.population_rows])
        pixels = training_images(_concatenate_images(images), setup.preprocess)
        data = TrainingData(
            pixels, np.concatenate(labels), setup.preprocess.mean, setup.preprocess.std
        )
        return Pool(data, arrays_sha256(data.images, data.labels))

    def _model_key(self, pool: Pool, job: TrainingJob) -> str:
        setup = self.setup
        return json_sha256(
            {
                "kind": "reference-model",
                "version": MODEL_CACHE_VERSION,
                "trainer": TRAINER_VERSION,
                "pool": pool.sha256,
                "rows": arrays_sha256(job.index.astype(np.int64)),
                "seed": job.seed,
                "recipe": setup.recipe.cache_key(),
                "architecture": setup.architecture.cache_key(),
                "normalise": {"mean": setup.preprocess.mean, "std": setup.preprocess.std},
            }
        )


def training_images(images: np.ndarray, preprocess: Preprocessor) -> np.ndarray:
    """The pool's pixels as the trainer reads them: as stored when the trainer's per-batch
    normalisation sees what inference sees, else resized / reordered / channel-matched here
    (float 0..1) with the same Preprocessor, minus the normalisation."""
    channels = images.shape[1]
    wanted = len(preprocess.mean)
    simple = (
        preprocess.input_size is None
        and preprocess.channel_order == "rgb"
        and (channels == wanted or (channels == 1 and wanted == 3))
    )
    if simple:
        return images
    scale_only = Preprocessor(
        (0.0,) * wanted, (1.0,) * wanted, preprocess.input_size, preprocess.channel_order
    )
    return scale_only(images)


def outputs_of(items: Wanted) -> tuple[tuple[str, tuple[View, ...]], ...]:
    """Wanted (part, view) logits as (part, sorted views) pairs, parts sorted."""
    parts = sorted({part for part, _ in items})
    return tuple((part, tuple(sorted(v for p, v in items if p == part))) for part in parts)
