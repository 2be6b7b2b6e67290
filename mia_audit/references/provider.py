"""Reference models for the attacks: trained once (cached), vouched for, and their logits.

The parts, one idea each: the catalogue says which models a run has and what each is keyed by
(`mia_audit.references.catalogue`, with the plans of `mia_audit.references.plans`), the verifier
decides whether a cached model may be used (`mia_audit.references.verifier`), the trainer trains
through any executor (`mia_audit.references.trainer`), and `ReferenceModels` here ties them to
the caches and answers the attacks.

Each finished model is written atomically as a state dict (``torch.save``) and read back with
``weights_only=True``; an interrupted run keeps the models it finished, and a second run trains
nothing. Logits of every reference model on the audit set (all query views) and on the
population go through the same logits cache as the target's, keyed by the model key. An
executor that runs each model where it trained it (Ray's) hands its logits back with its
weights; they are cached as they arrive and, before they are used, spot-checked against the
weights like cached logits. Reference logits are keyed by the device they are computed on: the
executor's `inference_device` for such an executor, else the run's device.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mia_audit.attacks.queries import IDENTITY, MIRROR
from mia_audit.attacks.reference_sets import Mode, ReferenceRequest, ReferenceSet
from mia_audit.errors import AuditError, ModelError
from mia_audit.models.inference import predict
from mia_audit.progress import Advance, Notify, Progress, SilentProgress
from mia_audit.references.calibration import flip_gap
from mia_audit.references.catalogue import (
    MODEL_CACHE_VERSION,
    AuditRows,
    Catalogue,
    ReferenceGroup,
    ReferenceSetup,
    TargetModel,
    Wanted,
    outputs_of,
    training_images,
)
from mia_audit.references.executors.base import (
    Executor,
    InferenceData,
    ModelLogits,
    TrainingTask,
)
from mia_audit.references.executors.local import LocalExecutor
from mia_audit.references.fit import (
    SIDE_ROWS,
    ModelFit,
    sample,
    seeded_generator,
    unverifiable_note,
)
from mia_audit.references.logits import ReferenceLogits
from mia_audit.references.trainer import Trainer
from mia_audit.references.training import TrainingData
from mia_audit.references.verifier import Labels, ModelRows, Probe, measure, verify_cached
from mia_audit.reports.text import plural
from mia_audit.store.cache import StateDict, logits_store, model_store

if TYPE_CHECKING:
    from mia_audit.models.classifier import Classifier

__all__ = [
    "MODEL_CACHE_VERSION",
    "ReferenceModels",
    "ReferenceSetup",
    "ReferenceSurvey",
    "StateDict",
    "TargetModel",
    "training_images",
]

#: Cache refusals reported one by one (a tampered cache can hold hundreds of reference entries).
MAX_REFUSAL_NOTES = 5


@dataclass(frozen=True)
class ReferenceSurvey:
    """What preparing a run's reference models would do (`ReferenceModels.survey`)."""

    #: (mode, count, models of the set found in the cache) per requested set.
    sets: tuple[tuple[Mode, int, int], ...]
    #: Distinct models (offline sets share their first models) and those in the cache.
    models: int
    cached: int
    #: Images the models to train go through (their training samples x epochs).
    training_images: int
    #: Images the models are run on (audit set, population; every view the cache lacks).
    inference_images: int

    @property
    def to_train(self) -> int:
        return self.models - self.cached


@dataclass(frozen=True)
class PilotFit:
    """A calibration candidate's first model: its fit, its `flip_gap`, and whether this run
    trained it (False: the cache had it)."""

    fit: ModelFit
    flip_gap: float
    trained: bool


class ReferenceModels:
    """Prepares reference models once per run and hands them to attacks (a ReferenceProvider).

    ``prepare`` takes every attack's request and vouches for every model before its logits are
    used: a cached model must pass its integrity record and fit its own plan
    (`mia_audit.references.verifier`), and its cached logits pass a spot check
    (`mia_audit.models.spot_check`); what fails is refused, noted and retrained or recomputed.
    What the cache lacks is trained (all at once, so a GPU executor can train models of several
    attacks together). Every model's accuracy on its own training samples and on held-out ones
    is kept in `fits`. ``get`` then answers each attack. `trained` and `loaded` count the
    models trained and read from the cache in this run; `catalogue` is the read-only view of
    the groups, pools and keys.

    `notify` hears what the cache refused and what the checks found (the audit puts those
    notes in result.json); `progress` hears the rest (out-of-memory retries).
    """

    def __init__(
        self,
        setup: ReferenceSetup,
        cache_dir: Path | None,
        executor: Executor | None = None,
        progress: Progress | None = None,
        notify: Notify | None = None,
    ) -> None:
        self.setup = setup
        self.progress: Progress = progress or SilentProgress()
        self.notify: Notify = notify or self.progress.note
        self._refusals = Refusals()
        self.executor: Executor = executor or LocalExecutor(setup.device, notify=self.progress.note)
        self.trainer = Trainer(
            self.executor, setup.recipe, setup.architecture, setup.device, self.progress
        )
        self.catalogue = Catalogue(setup, self.trainer.logits_device)
        self.models = model_store(cache_dir, notify=self._refusals.append)
        # Logits that arrive with remote models wait in the store for their spot check, so
        # without a cache folder they are kept in memory for the run.
        self.logits = logits_store(
            cache_dir, notify=self._refusals.append, in_memory=self.trainer.predicts_where_trained
        )
        self._logits = ReferenceLogits(self.catalogue, self.logits, self.progress)
        self.loaded = 0
        #: Each model's fit to its own plan (seeded sample), by key.
        self.fits: dict[str, ModelFit] = {}
        self._plan_checked: set[str] = set()

    @property
    def trained(self) -> int:
        return self.trainer.trained

    def reused(self) -> int:
        """Models of the prepared sets that this run did not train: the cache had them."""
        return len(self.catalogue.model_keys) - self.trained

    def set_fits(self, mode: Mode, count: int) -> tuple[tuple[str, ModelFit], ...]:
        """(key, fit) of every model of a prepared set, in the set's order."""
        return tuple((key, self.fits[key]) for key in self.catalogue.groups[(mode, count)].keys)

    def prepare(self, requests: Iterable[ReferenceRequest]) -> None:
        self.catalogue.add(requests)
        wanted = self.catalogue.wanted()
        try:
            self._load_or_train(wanted)
            self._logits.predict_target_population()
        finally:
            self.trainer.close()
            self._refusals.publish(self.notify)

    def pilot(self, requests: Sequence[ReferenceRequest]) -> PilotFit:
        """Only the first model of the first request's set, with every logit the requests want
        of it: the calibration pilot's measurement of this recipe. The executor stays open
        (the pilot's candidates share it; `prepare` closes it)."""
        self.catalogue.add(requests)
        first = requests[0]
        key = self.catalogue.groups[(first.mode, first.count)].keys[0]
        before = self.trained
        try:
            self._load_or_train({key: self.catalogue.wanted()[key]})
        finally:
            self._refusals.publish(self.notify)
        classifier = self._trained_classifier(key, self.catalogue.wanted()[key])
        gap = pilot_flip_gap(self.catalogue, self.setup, key, classifier)
        return PilotFit(self.fits[key], gap, self.trained > before)

    def close(self) -> None:
        """Release the executor without preparing (a pilot candidate not chosen, an error)."""
        self.trainer.close()

    def _load_or_train(self, wanted: dict[str, Wanted]) -> None:
        """Vouch for the cached models of `wanted`, train the rest, and compute their logits."""
        pending = {key: items for key, items in wanted.items() if not self._ready(key, items)}
        retrain = self._use_cached(pending)
        # before what training and the fresh models' checks say
        self._refusals.publish(self.notify)
        self._train({key: pending[key] for key in retrain})
        self._use_trained({key: pending[key] for key in retrain})

    def get(self, request: ReferenceRequest) -> ReferenceSet:
        group = self.catalogue.groups.get((request.mode, request.count))
        if group is None or not set(request.views) <= group.views:
            self.prepare([request])
            group = self.catalogue.groups[(request.mode, request.count)]
        return reference_set(group, request.mode, self._logits, self.setup)

    def survey(self, requests: Iterable[ReferenceRequest]) -> ReferenceSurvey:
        """What preparing these requests would do, without training or reading any model:
        which models the cache holds (by file, before any check), the images the models to
        train would go through, and the images every model would be run on (views whose
        logits the cache lacks). For `mia-audit plan`."""
        catalogue = self.catalogue
        catalogue.add(requests)
        wanted = catalogue.wanted()
        cached = {key for key in wanted if key in self.models}
        to_train = [key for key in wanted if key not in cached]
        epochs = self.setup.recipe.epochs
        training = sum(len(catalogue.slot(key).task.job.index) * epochs for key in to_train)
        inference = sum(
            len(catalogue.rows.images_of(part))
            for key, items in wanted.items()
            for part, view in items
            if key in to_train or self._logits.entry(key, part, view) not in self.logits
        )
        sets = tuple(
            (mode, count, sum(key in cached for key in group.keys))
            for (mode, count), group in catalogue.groups.items()
        )
        return ReferenceSurvey(sets, len(wanted), len(cached), training, inference)

    def training_pool(self) -> TrainingData:
        """The training data of the first set prepared or surveyed (for a throughput probe)."""
        return next(iter(self.catalogue.pools.values())).data

    def _ready(self, key: str, items: Wanted) -> bool:
        """Whether this run already vouched for the model and holds every wanted logit."""
        return key in self.fits and self._logits.has(key, items)

    # cached models: vouched for, or refused and retrained

    def _use_cached(self, pending: dict[str, Wanted]) -> list[str]:
        """Use every cached model that passes its checks; return the keys to train."""
        cached = {key: items for key, items in pending.items() if key in self.models}
        retrain = [key for key in pending if key not in cached]
        if not cached:
            return retrain
        description = f"checking {plural(len(cached), 'cached reference model')}"
        with self.progress.stage(description, self.catalogue.images_total(cached)) as advance:
            for key, items in cached.items():
                if not self._use_cached_model(key, items, advance):
                    self._logits.forget(key, items)
                    retrain.append(key)
        return retrain

    def _use_cached_model(self, key: str, items: Wanted, advance: Advance) -> bool:
        """Logits and fit of a cached model that is intact and fits its plan; False (noted)
        when it is not."""
        classifier = self._cached_classifier(key)
        if classifier is None:
            return False
        try:
            self._logits.predict(key, items, classifier, advance)
            verdict = verify_cached(
                key, *self._evidence(key, classifier), plan_checked=key in self._plan_checked
            )
        except ModelError:
            self.models.refuse(key, "produces NaN or unusable logits")
            return False
        if verdict.problem is not None:
            self.models.refuse(key, verdict.problem)
            return False
        self._plan_checked.add(key)
        self.fits[key] = verdict.fit
        self.loaded += 1
        return True

    def _cached_classifier(self, key: str) -> Classifier | None:
        """The cached model if its file is intact and fits the architecture; else None."""
        state = self.models.get(key)
        if state is None:
            return None
        try:
            return classifier_of(state, self.setup)
        except (RuntimeError, ValueError, KeyError):
            self.models.refuse(key, "does not fit the reference architecture")
            return None

    # trained models

    def _train(self, pending: dict[str, Wanted]) -> None:
        """Train the models of `pending` (key: the logits wanted of it), mode by mode."""
        by_mode: dict[Mode, list[TrainingTask]] = {}
        for key, items in pending.items():
            slot = self.catalogue.slot(key)
            task = replace(slot.task, outputs=outputs_of(items))
            by_mode.setdefault(slot.group.mode, []).append(task)
        for mode, tasks in by_mode.items():
            data = self.catalogue.pools[mode].data
            self.trainer.train(mode, tasks, data, self._inference_data(tasks), self._store)

    def _inference_data(self, tasks: Sequence[TrainingTask]) -> InferenceData:
        """The images the tasks' outputs name, for an executor that predicts where it trains."""
        parts = {part for task in tasks for part, _ in task.outputs}
        images = {part: self.catalogue.rows.images_of(part) for part in sorted(parts)}
        return InferenceData(images, self.setup.preprocess, self.setup.batch_size)

    def _store(
        self, task: TrainingTask, state: StateDict, logits: ModelLogits | None = None
    ) -> None:
        """Cache a finished model (and the logits computed where it trained) at once."""
        wanted = {(part, view) for part, views in task.outputs for view in views}
        for (part, view), value in (logits or {}).items():
            if (part, view) in wanted:  # verified like cached logits before they are used
                self.logits.put(self._logits.entry(task.key, part, view), np.asarray(value))
        self.models.put(task.key, state)

    def _use_trained(self, pending: dict[str, Wanted]) -> None:
        """Logits and fit of the models this run trained; say when they do not fit their plan."""
        if not pending:
            return
        description = f"reference inference ({plural(len(pending), 'model')})"
        with self.progress.stage(description, self.catalogue.images_total(pending)) as advance:
            for key, items in pending.items():
                classifier = self._trained_classifier(key, items)
                self._logits.predict(key, items, classifier, advance)
                self.fits[key] = measure(key, *self._evidence(key, classifier)).fit
                self._plan_checked.add(key)  # trained from its plan in this run
        unfit = sum(not self.fits[key].fits_plan for key in pending)
        if unfit:
            self.notify(unverifiable_note(unfit, len(pending)))

    def _trained_classifier(self, key: str, items: Wanted) -> Classifier:
        state = self.models.get(key)
        if state is None:  # the file vanished or was torn since training: train it again
            self._train({key: items})
            state = self.models.get(key)
            if state is None:
                raise AuditError(
                    "runtime.cache_dir: a reference model just trained cannot be read back "
                    f"from {self.models.path(key)}; check that the cache folder is writable "
                    "and that no other process deletes its files"
                )
        return classifier_of(state, self.setup)

    def _evidence(self, key: str, classifier: Classifier) -> tuple[ModelRows, Labels, Probe]:
        """What the verifier reads of a model: its rows and the logits at hand, the rows'
        labels, and a probe that runs rows through it."""
        rows = self.catalogue.rows
        model_rows = self.catalogue.model_rows(key, self._logits.identity(key))
        return model_rows, rows.labels, probe(classifier, rows, self.setup)


def reference_set(
    group: ReferenceGroup, mode: Mode, logits: ReferenceLogits, setup: ReferenceSetup
) -> ReferenceSet:
    """The attack's view of a prepared group: its models' logits, stacked, and its plan."""
    views = tuple(sorted(group.views))
    population = setup.population
    return ReferenceSet(
        mode=mode,
        views=views,
        audit=logits.stack(group.keys, "audit", views),
        in_audit=group.plan.in_audit,
        population=logits.stack(group.keys, "population", views) if group.population else None,
        in_population=group.plan.in_population,
        population_labels=np.empty(0, np.int64) if population is None else population.labels,
        target_population=logits.target_stack(views) if group.population else None,
        model_keys=group.keys,
    )


def classifier_of(state: StateDict, setup: ReferenceSetup) -> Classifier:
    """A reference model's classifier from its state dict (raises when it does not fit the
    architecture)."""
    from mia_audit.models.classifier import TorchClassifier

    module = setup.architecture.build()
    module.load_state_dict(state)
    return TorchClassifier(module, setup.device)


def pilot_flip_gap(
    catalogue: Catalogue, setup: ReferenceSetup, key: str, classifier: Classifier
) -> float:
    """A pilot model's `flip_gap` on seeded samples of its IN and OUT rows."""
    rows = catalogue.model_rows(key, np.empty((0, 0), np.float32))
    rng = seeded_generator(key)
    sides = []
    for side in (rows.in_rows, rows.out_rows):
        picked = sample(side, SIDE_ROWS, rng)
        images = catalogue.rows.images(picked)
        logits = predict(classifier, images, [IDENTITY, MIRROR], setup.preprocess, setup.batch_size)
        sides.append((logits[0], logits[1], catalogue.rows.labels(picked)))
    return flip_gap(sides[0], sides[1])


def probe(classifier: Classifier, rows: AuditRows, setup: ReferenceSetup) -> Probe:
    """The verifier's probe: logits and labels of rows, run through the model."""

    def run(picked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        images = rows.images(picked)
        logits = predict(classifier, images, [IDENTITY], setup.preprocess, setup.batch_size)
        return np.asarray(logits[0]), rows.labels(picked)

    return run


class Refusals:
    """What the caches refused, kept until published as notes: a few verbatim, then how many
    more (a tampered cache can hold hundreds of reference entries)."""

    def __init__(self) -> None:
        self._notes: list[str] = []

    def append(self, note: str) -> None:
        self._notes.append(note)

    def publish(self, notify: Notify) -> None:
        notes, self._notes = self._notes, []
        for note in notes[:MAX_REFUSAL_NOTES]:
            notify(note)
        if len(notes) > MAX_REFUSAL_NOTES:
            notify(
                f"cache: {len(notes) - MAX_REFUSAL_NOTES} more reference-model cache entries "
                "were refused likewise; not used, recomputed or retrained"
            )
