"""Reference models: which data each trains on, training each once (cached), and their logits.

Plans (pure, seeded):

* offline: model j trains on a random subset of the population of size ``train_size``; the
  subset and the training seed depend only on (run seed, j), so the first k models of an
  offline set of any size are the same models, and attacks asking for 2 and 4 share two.
* online: the pool is the audit set plus, when the audit set holds fewer than twice
  ``train_size`` samples, population samples to make up the difference. A keep matrix makes
  every pool sample IN for exactly half of the models (LiRA's construction), so each model trains
  on about half the pool, about ``train_size`` samples.

Models are content-addressed: the key hashes the pool's pixels and labels, the job's rows and
seed, the recipe (with the trainer version), the architecture (and a factory's source file) and
the normalisation. The target's weights are not part of it, so the next release candidate,
audited on the same data, reuses every model. Each finished model is written atomically as a
state dict (``torch.save``) and read back with ``weights_only=True``; an interrupted run keeps
the models it finished, and a second run trains nothing. Logits of every reference model on the
audit set (all query views) and on the population go through the same logits cache as the
target's, keyed by the model key.

Training goes through an :class:`Executor`: :class:`LocalExecutor` trains on this machine (a
group of models at once on a GPU); a cluster executor (Ray) implements the same interface,
receiving plain picklable tasks, and reports models back into the same cache. A cluster
executor also runs each model where it trained it (`PredictingExecutor`) and hands its logits
back with its weights; they are cached as they arrive and, before they are used, spot-checked
against the weights like cached logits. Reference logits are keyed by the device they are
computed on: the executor's `inference_device` for such an executor, else the run's device.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mia_audit.attacks.queries import IDENTITY, View
from mia_audit.attacks.reference_sets import Mode, ReferenceRequest, ReferenceSet
from mia_audit.data.images import ImageSet, as_float01
from mia_audit.errors import AuditError, ModelError
from mia_audit.models import spot_check
from mia_audit.models.inference import LogitsRequest, Preprocessor, cached_predict, predict
from mia_audit.progress import Advance, Notify, Progress, SilentProgress
from mia_audit.references.executors.base import (
    Architecture,
    Executor,
    InferenceData,
    ModelLogits,
    TrainingTask,
    as_predicting,
    close_executor,
)
from mia_audit.references.executors.local import LocalExecutor
from mia_audit.references.fit import (
    SIDE_ROWS,
    ModelFit,
    mann_whitney_less,
    model_fit,
    per_sample_loss,
    plan_problem,
    plan_rows,
    sample,
    secret_generator,
    seeded_generator,
    unverifiable_note,
)
from mia_audit.references.plans import ReferencePlan, make_plan
from mia_audit.references.settings import TRAINER_VERSION, TrainingRecipe
from mia_audit.references.training import TrainingData, TrainingJob
from mia_audit.reports.text import plural
from mia_audit.store.cache import StateDict, entry_key, logits_store, model_store
from mia_audit.store.hashing import arrays_sha256, json_sha256

if TYPE_CHECKING:
    from torch import nn

    from mia_audit.models.classifier import Classifier


#: Bump when a change to this module changes which model a key names, or how it is stored
#: (2: integrity records).
MODEL_CACHE_VERSION = 2
#: Cache refusals reported one by one (a tampered cache can hold hundreds of reference entries).
MAX_REFUSAL_NOTES = 5


# --- plans (pure) -----------------------------------------------------------------------------


# --- what the policy needs ----------------------------------------------------------------------


# --- the model cache ----------------------------------------------------------------------------


# --- executors ----------------------------------------------------------------------------------


# --- the provider -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Measurement:
    """A model's fit, the OUT losses behind it, and the OUT rows it did not look at."""

    fit: ModelFit
    out_losses: np.ndarray
    unseen_out: np.ndarray


@dataclass(frozen=True)
class TargetModel:
    """The target, for its logits on the population (cached like those on the audit set)."""

    classifier: Classifier
    sha256: str
    engine: str


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
class _Pool:
    """A plan's training data, with its hash (part of every model key)."""

    data: TrainingData
    sha256: str


@dataclass
class _Group:
    """One (mode, count) set of models and what the attacks want of it."""

    plan: ReferencePlan
    keys: tuple[str, ...]
    views: set[View] = field(default_factory=set)
    population: bool = False


class ReferenceModels:
    """Prepares reference models once per run and hands them to attacks (a ReferenceProvider).

    ``prepare`` takes every attack's request and vouches for every model before its logits are
    used: a cached model must pass its integrity record and fit its own plan (its training
    samples better than held-out ones, and held-out samples drawn in secret no better than the
    seeded ones; `mia_audit.reference_fit`), and its cached logits pass a spot check
    (`mia_audit.spot_check`); what fails is refused, noted and retrained or recomputed. What
    the cache lacks is trained (all at once, so a GPU executor can train models of several
    attacks together). Every model's accuracy on its own training samples and on held-out ones
    is kept in `fits`. ``get`` then answers each attack.
    `trained` and `loaded` count the models trained and read from the cache in this run.

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
        self._refusals: list[str] = []
        self.executor: Executor = executor or LocalExecutor(setup.device, notify=self.progress.note)
        self._predicting = as_predicting(self.executor)
        #: Where reference logits are computed, for their cache key (see the module docstring).
        self._logits_device = (
            setup.device if self._predicting is None else self._predicting.inference_device
        )
        self.models = model_store(cache_dir, notify=self._refusals.append)
        # Logits that arrive with remote models wait in the store for their spot check, so
        # without a cache folder they are kept in memory for the run.
        self.logits = logits_store(
            cache_dir, notify=self._refusals.append, in_memory=self._predicting is not None
        )
        self.trained = 0
        self.loaded = 0
        #: Each model's fit to its own plan (seeded sample), by key.
        self.fits: dict[str, ModelFit] = {}
        self._groups: dict[tuple[Mode, int], _Group] = {}
        self._pools: dict[Mode, _Pool] = {}
        self._values: dict[tuple[str, str, View], np.ndarray] = {}
        self._target_population: dict[View, np.ndarray] = {}
        self._data_hashes: dict[str, str] = {}
        self._plan_checked: set[str] = set()

    @property
    def model_keys(self) -> set[str]:
        """Every model of every prepared set."""
        return {key for group in self._groups.values() for key in group.keys}

    def set_fits(self, mode: Mode, count: int) -> tuple[tuple[str, ModelFit], ...]:
        """(key, fit) of every model of a prepared set, in the set's order."""
        return tuple((key, self.fits[key]) for key in self._groups[(mode, count)].keys)

    # public API

    def prepare(self, requests: Iterable[ReferenceRequest]) -> None:
        for request in requests:
            group = self._group(request.mode, request.count)
            group.views.update((IDENTITY, *request.views))
            group.population = group.population or request.population
        wanted = self._wanted()
        pending = {key: items for key, items in wanted.items() if not self._ready(key, items)}
        try:
            retrain = self._use_cached(pending)
            self._publish_refusals()  # before what training and the fresh models' checks say
            self._train({key: pending[key] for key in retrain})
            self._use_trained({key: pending[key] for key in retrain})
            self._predict_target_population()
        finally:
            close_executor(self.executor)
            self._publish_refusals()

    def get(self, request: ReferenceRequest) -> ReferenceSet:
        group = self._groups.get((request.mode, request.count))
        if group is None or not set(request.views) <= group.views:
            self.prepare([request])
            group = self._groups[(request.mode, request.count)]
        views = tuple(sorted(group.views))
        population = self.setup.population
        return ReferenceSet(
            mode=request.mode,
            views=views,
            audit=self._stack(group.keys, "audit", views),
            in_audit=group.plan.in_audit,
            population=self._stack(group.keys, "population", views) if group.population else None,
            in_population=group.plan.in_population,
            population_labels=np.empty(0, np.int64) if population is None else population.labels,
            target_population=self._target_stack(views) if group.population else None,
            model_keys=group.keys,
        )

    def survey(self, requests: Iterable[ReferenceRequest]) -> ReferenceSurvey:
        """What preparing these requests would do, without training or reading any model:
        which models the cache holds (by file, before any check), the images the models to
        train would go through, and the images every model would be run on (views whose
        logits the cache lacks). For `mia-audit plan`."""
        for request in requests:
            group = self._group(request.mode, request.count)
            group.views.update((IDENTITY, *request.views))
            group.population = group.population or request.population
        wanted = self._wanted()
        cached = {key for key in wanted if key in self.models}
        to_train = [key for key in wanted if key not in cached]
        epochs = self.setup.recipe.epochs
        training = sum(len(self._task_of(key)[1].job.index) * epochs for key in to_train)
        inference = sum(
            len(self._images(part))
            for key, items in wanted.items()
            for part, view in items
            if key in to_train
            or entry_key("logits", self._request(key, part).key_parts(view)) not in self.logits
        )
        sets = tuple(
            (mode, count, sum(key in cached for key in group.keys))
            for (mode, count), group in self._groups.items()
        )
        return ReferenceSurvey(sets, len(wanted), len(cached), training, inference)

    def training_pool(self) -> TrainingData:
        """The training data of the first set prepared or surveyed (for a throughput probe)."""
        return next(iter(self._pools.values())).data

    # plans, pools and keys

    def _group(self, mode: Mode, count: int) -> _Group:
        if (mode, count) not in self._groups:
            setup = self.setup
            n_audit = len(setup.audit_labels)
            plan = make_plan(mode, count, n_audit, setup.n_population, setup.train_size, setup.seed)
            pool = self._pool(mode, plan)
            keys = tuple(self._model_key(pool, job) for job in plan.jobs)
            self._groups[(mode, count)] = _Group(plan, keys)
        return self._groups[(mode, count)]

    def _pool(self, mode: Mode, plan: ReferencePlan) -> _Pool:
        if mode not in self._pools:
            self._pools[mode] = self._make_pool(plan)
        return self._pools[mode]

    def _make_pool(self, plan: ReferencePlan) -> _Pool:
        setup = self.setup
        images, labels = [], []
        if plan.includes_audit:
            images.append(setup.audit_images)
            labels.append(setup.audit_labels)
        if setup.population is not None and len(plan.population_rows):
            images.append(setup.population.images[plan.population_rows])
            labels.append(setup.population.labels[plan.population_rows])
        if len({part.dtype for part in images}) > 1:
            images = [as_float01(part) for part in images]
        pixels = training_images(np.concatenate(images), setup.preprocess)
        data = TrainingData(
            pixels, np.concatenate(labels), setup.preprocess.mean, setup.preprocess.std
        )
        return _Pool(data, arrays_sha256(data.images, data.labels))

    def _model_key(self, pool: _Pool, job: TrainingJob) -> str:
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

    def _task_of(self, key: str) -> tuple[Mode, TrainingTask]:
        for (mode, _), group in self._groups.items():
            if key in group.keys:
                job = group.plan.jobs[group.keys.index(key)]
                return mode, TrainingTask(key, job)
        raise KeyError(key)

    # logits

    def _wanted(self) -> dict[str, set[tuple[str, View]]]:
        """(data set, view) logits wanted per model key, over every group."""
        wanted: dict[str, set[tuple[str, View]]] = {}
        for group in self._groups.values():
            parts = ["audit", *(["population"] if group.population else [])]
            for key in group.keys:
                items = wanted.setdefault(key, set())
                items.update((part, view) for part in parts for view in group.views)
        return wanted

    def _ready(self, key: str, items: set[tuple[str, View]]) -> bool:
        """Whether this run already vouched for the model and holds every wanted logit."""
        return key in self.fits and all((key, part, view) in self._values for part, view in items)

    def _request(self, key: str, part: str) -> LogitsRequest:
        return LogitsRequest(
            model_sha256=key,
            data_sha256=self._data_sha256(part),
            preprocess=self.setup.preprocess,
            engine=f"torch:{self._logits_device}:fp32",
        )

    def _data_sha256(self, part: str) -> str:
        if part not in self._data_hashes:
            self._data_hashes[part] = arrays_sha256(self._images(part))
        return self._data_hashes[part]

    def _images(self, part: str) -> np.ndarray:
        if part == "audit":
            return self.setup.audit_images
        assert self.setup.population is not None
        return self.setup.population.images

    def _inference_total(self, pending: dict[str, set[tuple[str, View]]]) -> int:
        parts = [{part for part, _ in items} for items in pending.values()]
        return sum(len(self._images(part)) for model_parts in parts for part in model_parts)

    # cached models: vouched for, or refused and retrained

    def _use_cached(self, pending: dict[str, set[tuple[str, View]]]) -> list[str]:
        """Use every cached model that passes its checks; return the keys to train."""
        cached = {key: items for key, items in pending.items() if key in self.models}
        retrain = [key for key in pending if key not in cached]
        if not cached:
            return retrain
        description = f"checking {plural(len(cached), 'cached reference model')}"
        with self.progress.stage(description, self._inference_total(cached)) as advance:
            for key, items in cached.items():
                if not self._use_cached_model(key, items, advance):
                    self._forget(key, items)
                    retrain.append(key)
        return retrain

    def _use_cached_model(self, key: str, items: set[tuple[str, View]], advance: Advance) -> bool:
        """Logits and fit of a cached model that is intact and fits its plan; False (noted)
        when it is not."""
        classifier = self._cached_classifier(key)
        if classifier is None:
            return False
        checked = key in self._plan_checked
        try:
            self._predict_model(key, items, classifier, advance)
            measured = self._measure(key, classifier)
            hidden = None if checked else self._hidden_training(classifier, measured)
        except ModelError:
            self.models.refuse(key, "produces NaN or unusable logits")
            return False
        problem = None if checked else plan_problem(measured.fit, hidden)
        if problem is not None:
            self.models.refuse(key, problem)
            return False
        self._plan_checked.add(key)
        self.fits[key] = measured.fit
        self.loaded += 1
        return True

    def _cached_classifier(self, key: str) -> Classifier | None:
        """The cached model if its file is intact and fits the architecture; else None."""
        state = self.models.get(key)
        if state is None:
            return None
        module = self.setup.architecture.build()
        try:
            module.load_state_dict(state)
        except (RuntimeError, ValueError, KeyError):
            self.models.refuse(key, "does not fit the reference architecture")
            return None
        return self._as_classifier(module)

    def _forget(self, key: str, items: set[tuple[str, View]]) -> None:
        """A refused model's logits go with it, from this run and from the cache."""
        for part, view in items:
            self._values.pop((key, part, view), None)
            parts = self._request(key, part).key_parts(view)
            self.logits.discard(entry_key("logits", parts))

    # trained models

    def _train(self, pending: dict[str, set[tuple[str, View]]]) -> None:
        """Train the models of `pending` (key: the logits wanted of it), mode by mode."""
        if not pending:
            return
        by_mode: dict[Mode, list[TrainingTask]] = {}
        for key, items in pending.items():
            mode, task = self._task_of(key)
            if self._predicting is not None:
                task = replace(task, outputs=_outputs(items))
            by_mode.setdefault(mode, []).append(task)
        setup = self.setup
        for mode, mode_tasks in by_mode.items():
            data = self._pools[mode].data
            images = sum(len(task.job.index) for task in mode_tasks) * setup.recipe.epochs
            description = f"training {plural(len(mode_tasks), f'{mode} reference model')}"
            with self.progress.stage(description, images) as advance:
                counted = self._counting_models(advance, len(mode_tasks))
                if self._predicting is None:
                    self.executor.train(
                        mode_tasks, data, setup.recipe, setup.architecture, self._store, counted
                    )
                else:
                    self._predicting.train(
                        mode_tasks,
                        data,
                        setup.recipe,
                        setup.architecture,
                        self._store,
                        counted,
                        inference=self._inference_data(mode_tasks),
                    )

    def _counting_models(self, advance: Advance, total: int) -> Advance:
        """`advance` with how many of the stage's models are trained so far in its detail
        (the executor says which epoch; the cache hears of each finished model)."""
        before = self.trained

        def counted(n: int, /, detail: str | None = None) -> None:
            models = f"{self.trained - before} of {total} models trained"
            advance(n, f"{models}, {detail}" if detail else models)

        return counted

    def _inference_data(self, tasks: Sequence[TrainingTask]) -> InferenceData:
        """The images the tasks' outputs name, for an executor that predicts where it trains."""
        parts = {part for task in tasks for part, _ in task.outputs}
        images = {part: self._images(part) for part in sorted(parts)}
        return InferenceData(images, self.setup.preprocess, self.setup.batch_size)

    def _store(
        self, task: TrainingTask, state: StateDict, logits: ModelLogits | None = None
    ) -> None:
        """Cache a finished model (and the logits computed where it trained) at once."""
        wanted = {(part, view) for part, views in task.outputs for view in views}
        for (part, view), value in (logits or {}).items():
            if (part, view) in wanted:  # verified like cached logits before they are used
                parts = self._request(task.key, part).key_parts(view)
                self.logits.put(entry_key("logits", parts), np.asarray(value))
        self.models.put(task.key, state)
        self.trained += 1

    def _use_trained(self, pending: dict[str, set[tuple[str, View]]]) -> None:
        """Logits and fit of the models this run trained; say when they do not fit their plan."""
        if not pending:
            return
        description = f"reference inference ({plural(len(pending), 'model')})"
        with self.progress.stage(description, self._inference_total(pending)) as advance:
            for key, items in pending.items():
                classifier = self._trained_classifier(key, items)
                self._predict_model(key, items, classifier, advance)
                self.fits[key] = self._measure(key, classifier).fit
                self._plan_checked.add(key)  # trained from its plan in this run
        unfit = sum(not self.fits[key].fits_plan for key in pending)
        if unfit:
            self.notify(unverifiable_note(unfit, len(pending)))

    def _trained_classifier(self, key: str, items: set[tuple[str, View]]) -> Classifier:
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
        module = self.setup.architecture.build()
        module.load_state_dict(state)
        return self._as_classifier(module)

    def _as_classifier(self, module: nn.Module) -> Classifier:
        from mia_audit.models.classifier import TorchClassifier

        return TorchClassifier(module, self.setup.device)

    # what every model goes through before its logits are used

    def _predict_model(
        self, key: str, items: set[tuple[str, View]], classifier: Classifier, advance: Advance
    ) -> None:
        """The model's logits on every wanted part and view (cached ones spot-checked)."""
        for part in sorted({part for part, _ in items}):
            views = sorted(view for p, view in items if p == part)
            logits = cached_predict(
                self.logits,
                self._request(key, part),
                classifier,
                self._images(part),
                views,
                self.setup.batch_size,
                advance=advance,
                notify=self.progress.note,
                what=f"reference model {key[:12]}'s logits on the {part}",
                check_rows=spot_check.REFERENCE_ROWS,
            )
            for view, value in zip(views, logits, strict=True):
                self._values[(key, part, view)] = value

    def _measure(self, key: str, classifier: Classifier) -> _Measurement:
        """The model on its IN and OUT samples: every one whose logits are at hand, topped up
        to SIDE_ROWS per side with a sample seeded by the model's key, run through the model."""
        plan, j = self._slot(key)
        in_rows, out_rows = plan_rows(
            plan.in_audit[j], plan.in_population[j], self._pool_rows(plan)
        )
        at_hand = self._identity_logits(key)
        rng = seeded_generator(key)
        logits_in, labels_in, _ = self._side(in_rows, at_hand, rng, classifier)
        logits_out, labels_out, unseen_out = self._side(out_rows, at_hand, rng, classifier)
        fit = model_fit(logits_in, labels_in, logits_out, labels_out)
        return _Measurement(fit, per_sample_loss(logits_out, labels_out), unseen_out)

    def _side(
        self,
        rows: np.ndarray,
        at_hand: np.ndarray,
        rng: np.random.Generator,
        classifier: Classifier,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Logits and labels of one side (the rows at hand, topped up), and the rows left."""
        known, rest = rows[rows < len(at_hand)], rows[rows >= len(at_hand)]
        logits, labels = [at_hand[known]], [self._labels(known)]
        extra = sample(rest, SIDE_ROWS - len(known), rng)
        if len(extra):
            images, extra_labels = self._rows(extra)
            logits.append(self._run(classifier, images))
            labels.append(extra_labels)
        return np.concatenate(logits), np.concatenate(labels), np.setdiff1d(rest, extra)

    def _hidden_training(self, classifier: Classifier, measured: _Measurement) -> float | None:
        """p-value that the model fits OUT samples nobody could predict (drawn from the OS's
        randomness among those the seeded sample left out) better than the seeded OUT samples:
        small when it was trained on samples its plan holds out. None when none are left."""
        rows = sample(measured.unseen_out, SIDE_ROWS, secret_generator())
        if not len(rows):
            return None
        images, labels = self._rows(rows)
        losses = per_sample_loss(self._run(classifier, images), labels)
        return mann_whitney_less(losses, measured.out_losses)

    def _identity_logits(self, key: str) -> np.ndarray:
        """The model's identity-view logits at hand: the audit set, then the population when
        its logits were computed (rows as in `plan_rows`)."""
        parts = [self._values[(key, "audit", IDENTITY)]]
        if (key, "population", IDENTITY) in self._values:
            parts.append(self._values[(key, "population", IDENTITY)])
        return np.concatenate(parts)

    def _run(self, classifier: Classifier, images: np.ndarray) -> np.ndarray:
        preprocess, batch_size = self.setup.preprocess, self.setup.batch_size
        return np.asarray(predict(classifier, images, [IDENTITY], preprocess, batch_size)[0])

    def _pool_rows(self, plan: ReferencePlan) -> np.ndarray:
        """The plan's pool as rows of the audit set followed by the population."""
        n_audit = len(self.setup.audit_labels)
        audit = np.arange(n_audit) if plan.includes_audit else np.arange(0)
        return np.concatenate([audit, n_audit + plan.population_rows]).astype(np.int64)

    def _slot(self, key: str) -> tuple[ReferencePlan, int]:
        """The plan a model was trained from, and its index in it."""
        for group in self._groups.values():
            if key in group.keys:
                return group.plan, group.keys.index(key)
        raise KeyError(key)

    def _labels(self, rows: np.ndarray) -> np.ndarray:
        """Labels of rows of the audit set followed by the population."""
        setup = self.setup
        n_audit = len(setup.audit_labels)
        if not len(rows) or rows.max() < n_audit:
            return np.asarray(setup.audit_labels[rows])
        assert setup.population is not None
        return np.asarray(np.concatenate([setup.audit_labels, setup.population.labels])[rows])

    def _rows(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Images and labels of sorted rows of the audit set followed by the population."""
        setup = self.setup
        n_audit = len(setup.audit_labels)
        audit_rows, population_rows = rows[rows < n_audit], rows[rows >= n_audit] - n_audit
        images = [setup.audit_images[audit_rows]]
        if len(population_rows):
            assert setup.population is not None
            images.append(setup.population.images[population_rows])
        if len({part.dtype for part in images}) > 1:
            images = [as_float01(part) for part in images]
        return np.concatenate(images), self._labels(rows)

    def _predict_target_population(self) -> None:
        setup = self.setup
        views = sorted(
            {view for group in self._groups.values() if group.population for view in group.views}
            - set(self._target_population)
        )
        if not views or setup.population is None:
            return
        request = LogitsRequest(
            model_sha256=setup.target.sha256,
            data_sha256=self._data_sha256("population"),
            preprocess=setup.preprocess,
            engine=setup.target.engine,
        )
        description = f"target inference on the population ({plural(len(views), 'view')})"
        with self.progress.stage(description, setup.n_population) as advance:
            logits = cached_predict(
                self.logits,
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

    def _publish_refusals(self) -> None:
        """What the caches refused, as notes: a few verbatim, then how many more."""
        refusals = list(self._refusals)
        self._refusals.clear()
        for note in refusals[:MAX_REFUSAL_NOTES]:
            self.notify(note)
        if len(refusals) > MAX_REFUSAL_NOTES:
            self.notify(
                f"cache: {len(refusals) - MAX_REFUSAL_NOTES} more reference-model cache entries "
                "were refused likewise; not used, recomputed or retrained"
            )

    def _stack(self, keys: Sequence[str], part: str, views: Sequence[View]) -> np.ndarray:
        values = self._values
        return np.stack([np.stack([values[(key, part, view)] for view in views]) for key in keys])

    def _target_stack(self, views: Sequence[View]) -> np.ndarray:
        return np.stack([self._target_population[view] for view in views])


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


def _outputs(items: set[tuple[str, View]]) -> tuple[tuple[str, tuple[View, ...]], ...]:
    """Wanted (part, view) logits as (part, sorted views) pairs, parts sorted."""
    parts = sorted({part for part, _ in items})
    return tuple((part, tuple(sorted(v for p, v in items if p == part))) for part in parts)
