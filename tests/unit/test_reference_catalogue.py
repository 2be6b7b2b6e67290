"""The catalogue without training: one row index over the audit set and the population, groups
that share offline models, keys that change with what a model depends on and not with the
target, and the logits wanted of each model."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from mia_audit.attacks.queries import IDENTITY, View
from mia_audit.attacks.reference_sets import ReferenceRequest
from mia_audit.data.images import make_image_set
from mia_audit.models.engine import EngineKey
from mia_audit.models.inference import Preprocessor
from mia_audit.references.catalogue import AuditRows, Catalogue, ReferenceSetup, TargetModel
from mia_audit.references.executors.base import Architecture
from mia_audit.references.settings import TrainingRecipe

MIRROR = View(mirror=True)
RNG = np.random.default_rng(0)
AUDIT = RNG.integers(0, 256, (40, 3, 8, 8), dtype=np.uint8)
AUDIT_LABELS = RNG.integers(0, 3, 40)
POPULATION = make_image_set(
    RNG.integers(0, 256, (70, 8, 8, 3), dtype=np.uint8), RNG.integers(0, 3, 70), source="pop"
)


class UnusedClassifier:
    """The target's model where the catalogue only keys on it and never runs it."""

    engine, device = "torch", "cpu"
    fixed_batch_size: int | None = None

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        raise AssertionError("the catalogue ran the target's model")


def setup_for(**changes: Any) -> ReferenceSetup:
    setup = ReferenceSetup(
        recipe=TrainingRecipe(epochs=2, batch_size=8, augment=(), train_size=30),
        architecture=Architecture("resnet18", 3),
        audit_images=AUDIT,
        audit_labels=AUDIT_LABELS,
        population=POPULATION,
        preprocess=Preprocessor((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
        device="cpu",
        batch_size=16,
        seed=0,
        target=TargetModel(UnusedClassifier(), "target-1", EngineKey("torch", "cpu")),
    )
    return replace(setup, **changes)


def test_rows_index_the_audit_set_then_the_population() -> None:
    rows = AuditRows(AUDIT, AUDIT_LABELS, POPULATION)
    picked = np.array([3, 39, 40, 45, 109])
    np.testing.assert_array_equal(
        rows.labels(picked), np.concatenate([AUDIT_LABELS[[3, 39]], POPULATION.labels[[0, 5, 69]]])
    )
    images = rows.images(picked)
    np.testing.assert_array_equal(images[:2], AUDIT[[3, 39]])
    np.testing.assert_array_equal(images[2:], POPULATION.images[[0, 5, 69]])
    np.testing.assert_array_equal(rows.labels(np.array([1, 2])), AUDIT_LABELS[[1, 2]])
    with pytest.raises(AssertionError):
        AuditRows(AUDIT, AUDIT_LABELS, None).labels(picked)


def test_groups_share_offline_models_and_want_their_logits() -> None:
    catalogue = Catalogue(setup_for(), logits_device="cpu")
    catalogue.add(
        [
            ReferenceRequest("online", 2, (MIRROR,)),
            ReferenceRequest("offline", 2, (IDENTITY,), population=True),
            ReferenceRequest("offline", 4, (IDENTITY,)),
        ]
    )
    groups = catalogue.groups
    online, two, four = groups["online", 2], groups["offline", 2], groups["offline", 4]
    assert online.views == {IDENTITY, MIRROR} and not online.population
    assert two.keys == four.keys[:2] and len(catalogue.model_keys) == 2 + 4
    wanted = catalogue.wanted()
    assert wanted[two.keys[0]] == {("audit", IDENTITY), ("population", IDENTITY)}
    assert wanted[four.keys[3]] == {("audit", IDENTITY)}
    assert wanted[online.keys[1]] == {("audit", IDENTITY), ("audit", MIRROR)}
    slot = catalogue.slot(four.keys[3])
    assert slot.group is four and slot.index == 3 and slot.task.key == four.keys[3]
    np.testing.assert_array_equal(slot.task.job.index, four.plan.jobs[3].index)
    with pytest.raises(KeyError):
        catalogue.slot("not-a-model")
    assert catalogue.target_population_views() == {IDENTITY}
    assert catalogue.images_total({two.keys[0]: wanted[two.keys[0]]}) == 40 + 70
    # the online pool is the audit set topped up from the population to twice train_size
    pool = catalogue.rows.pool_rows(online.plan)
    assert pool[:40].tolist() == list(range(40)) and len(pool) == 2 * 30
    assert len(catalogue.pools["online"].data.labels) == 2 * 30


def test_keys_follow_the_data_recipe_and_seed_not_the_target() -> None:
    def keys(setup: ReferenceSetup) -> tuple[str, ...]:
        return Catalogue(setup, "cpu").group("offline", 2).keys

    same = keys(setup_for())
    other_target = TargetModel(UnusedClassifier(), "target-2", EngineKey("onnxruntime", "cpu"))
    assert keys(setup_for(target=other_target)) == same
    assert keys(setup_for(seed=1)) != same
    assert (
        keys(setup_for(recipe=TrainingRecipe(epochs=3, batch_size=8, augment=(), train_size=30)))
        != same
    )
    labels = AUDIT_LABELS.copy()
    population = make_image_set(
        POPULATION.images[:, :, :, ::-1].transpose(0, 2, 3, 1), POPULATION.labels, source="pop"
    )
    assert keys(setup_for(population=population)) != same
    assert keys(setup_for(audit_labels=labels)) == same  # offline pools hold no audit rows


def test_logits_requests_name_the_device_they_are_computed_on() -> None:
    local, remote = Catalogue(setup_for(), "cpu"), Catalogue(setup_for(), "cuda")
    key = local.group("online", 2).keys[0]
    assert local.logits_request(key, "audit").engine == EngineKey("torch", "cpu")
    assert remote.logits_request(key, "audit").engine == EngineKey("torch", "cuda")
    assert local.logits_request(key, "audit").key_parts(IDENTITY) != local.logits_request(
        key, "population"
    ).key_parts(IDENTITY)
