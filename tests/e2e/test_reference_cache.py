"""Reference-model plans, cache and executor: balanced keep matrices, offline models shared
across set sizes, a second run that trains nothing, an interrupted run that resumes, and
models reused for a new target on the same data."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from mia_audit.attacks.queries import IDENTITY, View
from mia_audit.attacks.reference_sets import ReferenceRequest
from mia_audit.data.images import make_image_set
from mia_audit.models.classifier import TorchClassifier
from mia_audit.models.engine import EngineKey
from mia_audit.models.inference import Preprocessor
from mia_audit.references.executors.base import Architecture, OnTrained, TrainingTask
from mia_audit.references.executors.local import LocalExecutor
from mia_audit.references.provider import ReferenceModels, ReferenceSetup, TargetModel
from mia_audit.references.settings import TrainingRecipe
from mia_audit.references.training import TrainingData
from mia_audit.store.cache import ContentStore, StateDict

MIRROR = View(mirror=True)












# --- the provider, with a tiny model and a counting executor ----------------------------------


class TinyArchitecture(Architecture):
    """A linear model: trains in milliseconds."""

    def build(self) -> object:  # type: ignore[override]
        from torch import nn

        return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, self.num_classes))


class CountingExecutor(LocalExecutor):
    """Counts the models it was asked to train; optionally fails after `fail_after` models."""

    def __init__(self, fail_after: int | None = None) -> None:
        super().__init__("cpu")
        self.fail_after = fail_after
        self.asked: list[str] = []

    def train(
        self,
        tasks: Sequence[TrainingTask],
        data: TrainingData,
        recipe: TrainingRecipe,
        architecture: Architecture,
        on_trained: OnTrained,
        advance: object = None,
    ) -> None:
        self.asked.extend(task.key for task in tasks)

        def stop_early(task: TrainingTask, state: dict[str, object]) -> None:
            on_trained(task, state)  # type: ignore[arg-type]
            if self.fail_after is not None and self.trained >= self.fail_after:
                raise KeyboardInterrupt("interrupted")

        super().train(tasks, data, recipe, architecture, stop_early)  # type: ignore[arg-type]


class TinyMlp(Architecture):
    """A small MLP: memorises a few hundred random samples in a second."""

    def build(self) -> object:  # type: ignore[override]
        from torch import nn

        return nn.Sequential(
            nn.Flatten(), nn.Linear(3 * 8 * 8, 256), nn.ReLU(), nn.Linear(256, self.num_classes)
        )


def setup_for(
    seed: int = 0,
    target_sha: str = "target-1",
    n_population: int = 80,
    architecture: Architecture | None = None,
) -> ReferenceSetup:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (60, 3, 8, 8), dtype=np.uint8)
    labels = rng.integers(0, 3, 60)
    population = make_image_set(
        rng.integers(0, 256, (n_population, 8, 8, 3), dtype=np.uint8),
        rng.integers(0, 3, n_population),
        source="pop",
    )
    import torch

    torch.manual_seed(seed)  # the same target whenever target_sha is the same
    linear = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 3))
    target = TorchClassifier(linear, "cpu")
    return ReferenceSetup(
        # Enough to memorise 30 random samples: a model that does not fit its own training
        # samples better than held-out ones cannot be vouched for and is retrained every run.
        recipe=TrainingRecipe(
            epochs=30, batch_size=16, optimizer="adamw", lr=1e-2, augment=(), train_size=30
        ),
        architecture=architecture or TinyArchitecture("tiny", 3),
        audit_images=images,
        audit_labels=labels,
        population=population,
        preprocess=Preprocessor((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
        device="cpu",
        batch_size=32,
        seed=0,
        target=TargetModel(target, target_sha, EngineKey("torch", "cpu")),
    )


REQUESTS = [
    ReferenceRequest("online", 2, (IDENTITY, MIRROR)),
    ReferenceRequest("offline", 2, (IDENTITY,), population=True),
    ReferenceRequest("offline", 3, (IDENTITY,)),
]


def test_second_run_trains_nothing(tmp_path: Path) -> None:
    first = CountingExecutor()
    models = ReferenceModels(setup_for(), tmp_path, first)
    models.prepare(REQUESTS)
    assert first.trained == 2 + 3  # offline 2 and 3 share their first two models
    assert len(set(first.asked)) == len(first.asked) == 5
    online = models.get(REQUESTS[0])
    assert online.audit.shape == (2, 2, 60, 3) and (online.in_audit.sum(axis=0) == 1).all()
    offline = models.get(REQUESTS[1])
    assert offline.population is not None and offline.population.shape == (2, 1, 80, 3)
    assert offline.target_population is not None and offline.target_population.shape == (1, 80, 3)
    assert (offline.in_population.sum(axis=1) == 30).all()

    second = CountingExecutor()
    again = ReferenceModels(setup_for(), tmp_path, second)
    again.prepare(REQUESTS)
    assert second.trained == 0 and second.asked == [] and again.trained == 0
    # every cached model is loaded and checked against its plan before its logits are used;
    # the logits themselves come from the cache (spot-checked, none refused)
    assert again.loaded == 5 and again.logits.misses == 0 and again.logits.hits > 0
    assert again.models.refused == again.logits.refused == []
    np.testing.assert_array_equal(again.get(REQUESTS[0]).audit, online.audit)


def test_new_target_on_the_same_data_reuses_the_models(tmp_path: Path) -> None:
    ReferenceModels(setup_for(), tmp_path, CountingExecutor()).prepare(REQUESTS)
    executor = CountingExecutor()
    models = ReferenceModels(setup_for(target_sha="target-2"), tmp_path, executor)
    models.prepare(REQUESTS)
    assert executor.trained == 0


def test_model_files_alone_are_enough_to_skip_training(tmp_path: Path) -> None:
    ReferenceModels(setup_for(), tmp_path, CountingExecutor()).prepare(REQUESTS)
    for logits in (tmp_path / "logits").rglob("*.npy"):
        logits.unlink()
    executor = CountingExecutor()
    models = ReferenceModels(setup_for(), tmp_path, executor)
    models.prepare(REQUESTS)
    assert executor.trained == 0 and models.loaded == 5


def test_interrupted_training_resumes_with_the_rest(tmp_path: Path) -> None:
    failing = CountingExecutor(fail_after=1)
    with pytest.raises(KeyboardInterrupt):
        ReferenceModels(setup_for(), tmp_path, failing).prepare(REQUESTS)
    assert failing.trained == 1
    resumed = CountingExecutor()
    ReferenceModels(setup_for(), tmp_path, resumed).prepare(REQUESTS)
    assert resumed.trained == 4
    assert not set(resumed.asked) & set(failing.asked[:1])


def test_different_data_trains_new_models(tmp_path: Path) -> None:
    ReferenceModels(setup_for(seed=0), tmp_path, CountingExecutor()).prepare(REQUESTS[1:2])
    executor = CountingExecutor()
    ReferenceModels(setup_for(seed=1), tmp_path, executor).prepare(REQUESTS[1:2])
    assert executor.trained == 2


# --- cached models are checked before they are used -------------------------------------------


def swap(cache: ContentStore[StateDict], first: str, second: str) -> None:
    """Swap two models' files, with consistent integrity records: only behaviour can tell."""
    one, other = cache.get(first), cache.get(second)
    assert one is not None and other is not None
    cache.put(first, other)
    cache.put(second, one)


def test_swapped_models_are_refused_retrained_and_give_the_honest_logits(tmp_path: Path) -> None:
    honest = ReferenceModels(setup_for(), tmp_path, CountingExecutor())
    honest.prepare(REQUESTS)
    expected = [honest.get(request) for request in REQUESTS]
    online, offline = expected[0].model_keys, expected[2].model_keys
    swap(honest.models, *online)
    swap(honest.models, offline[0], offline[2])
    shutil.rmtree(tmp_path / "logits")  # so the models themselves must answer
    notes: list[str] = []
    executor = CountingExecutor()
    again = ReferenceModels(setup_for(), tmp_path, executor, notify=notes.append)
    again.prepare(REQUESTS)
    swapped = {*online, offline[0], offline[2]}
    assert set(executor.asked) == swapped and again.loaded == 5 - len(swapped)
    assert len(notes) == len(swapped)
    for key in swapped:
        (note,) = [note for note in notes if key[:12] in note]
        assert "does not fit its own training samples better than held-out ones" in note
        assert note.endswith(f"not used, retrained ({again.models.path(key)})")
    for request, before in zip(REQUESTS, expected, strict=True):
        np.testing.assert_array_equal(again.get(request).audit, before.audit)
    clean: list[str] = []
    ReferenceModels(setup_for(), tmp_path, CountingExecutor(), notify=clean.append).prepare(
        REQUESTS
    )
    assert clean == []


def test_a_damaged_model_is_retrained_and_the_next_run_is_clean(tmp_path: Path) -> None:
    first = ReferenceModels(setup_for(), tmp_path, CountingExecutor())
    first.prepare(REQUESTS)
    key = first.get(REQUESTS[0]).model_keys[0]
    data = bytearray(first.models.path(key).read_bytes())
    data[len(data) // 2] ^= 0xFF
    first.models.path(key).write_bytes(bytes(data))
    runs = []
    for _ in range(2):
        notes: list[str] = []
        models = ReferenceModels(setup_for(), tmp_path, CountingExecutor(), notify=notes.append)
        models.prepare(REQUESTS)
        runs.append((notes, models.trained))
    (damaged_notes, retrained), (clean_notes, trained_after) = runs
    assert retrained == 1 and trained_after == 0 and clean_notes == []
    assert len(damaged_notes) == 1 and key[:12] in damaged_notes[0]
    assert "does not match its integrity record" in damaged_notes[0]


def test_a_model_trained_on_more_than_its_plan_is_refused(tmp_path: Path) -> None:
    """A cache writer who knows the seeded sample trains a model on its slot's samples plus
    held-out samples outside that sample: the check on samples drawn from the OS's randomness
    catches it."""
    from mia_audit.references.fit import SIDE_ROWS, plan_rows, sample, seeded_generator
    from mia_audit.references.training import TrainingJob, train_models

    request = ReferenceRequest("offline", 1, (IDENTITY,))
    setup = setup_for(n_population=1200, architecture=TinyMlp("tiny-mlp", 3))
    honest = ReferenceModels(setup, tmp_path, CountingExecutor())
    honest.prepare([request])
    (key,) = honest.get(request).model_keys
    plan = honest.catalogue.groups[("offline", 1)].plan
    n_audit = len(setup.audit_labels)
    in_rows, out_rows = plan_rows(
        plan.in_audit[0], plan.in_population[0], n_audit + np.arange(1200)
    )
    rng = seeded_generator(key)
    sample(in_rows, SIDE_ROWS, rng)  # the audit draws IN first, then OUT
    measured = sample(out_rows, SIDE_ROWS, rng)  # as the audit draws them
    hidden = np.setdiff1d(out_rows, measured)[:700]
    rows = np.concatenate([in_rows, hidden]) - n_audit  # pool rows: the population
    job = TrainingJob(np.sort(rows), seed=1)
    (state,) = train_models(
        setup.architecture.build, honest.catalogue.pools["offline"].data, [job], setup.recipe, "cpu"
    )
    honest.models.put(key, state)
    shutil.rmtree(tmp_path / "logits")
    notes: list[str] = []
    executor = CountingExecutor()
    ReferenceModels(setup, tmp_path, executor, notify=notes.append).prepare([request])
    assert executor.asked == [key]
    assert len(notes) == 1 and "fits samples its plan holds out" in notes[0], notes
    assert "trained on more than its plan says" in notes[0]
