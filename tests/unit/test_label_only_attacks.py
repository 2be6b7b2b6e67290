"""The label-only attacks' scoring, against direct computations.

`gap`'s AUC is (1 + member accuracy - non-member accuracy) / 2; `augmentation`'s features are
the views' label agreement and its `count` score their mean; `boundary_distance`'s bisection is
checked on a linear classifier, whose boundary along any segment is known in closed form.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from sklearn.metrics import roc_auc_score

from mia_audit.attacks.augmentation import AugmentationConfig, agreement_features
from mia_audit.attacks.base import AttackContext, ViewLogits
from mia_audit.attacks.boundary_distance import (
    BoundaryDistanceConfig,
    Segments,
    bisect_boundary,
)
from mia_audit.attacks.queries import View
from mia_audit.attacks.registry import create_attack


def context(logits: np.ndarray, labels: np.ndarray, is_member: np.ndarray, **extra: Any) -> Any:
    """The attack context, the views being the attack's own (identity first, as the audit's)."""
    views = extra.pop("views", (View(), View(mirror=True)))[: len(logits)]
    return AttackContext(
        target=ViewLogits(views=tuple(views), logits=logits),
        labels=labels,
        is_member=is_member,
        random_state=0,
        **extra,
    )


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(10, 60))
def test_gap_auc_is_the_accuracy_gap(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    is_member = np.arange(n) < n // 2
    logits = rng.normal(size=(1, n, 4))
    scores = create_attack(_config("gap")).score(context(logits, labels, is_member)).scores

    correct = logits[0].argmax(axis=1) == labels
    gap = correct[is_member].mean() - correct[~is_member].mean()
    assert roc_auc_score(is_member, scores) == pytest.approx((1 + gap) / 2)


def test_augmentation_features_are_the_views_label_agreement() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 30, 5))
    labels = rng.integers(0, 5, 30)
    features = agreement_features(logits, labels)
    expected = [[float(np.argmax(logits[v, i]) == labels[i]) for v in range(4)] for i in range(30)]
    np.testing.assert_array_equal(features, expected)


def test_augmentation_count_scores_the_fraction_of_agreeing_views() -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 40, 3))
    labels = rng.integers(0, 3, 40)
    config = _config("augmentation", queries=2, combination="count")
    scores = create_attack(config).score(context(logits, labels, np.arange(40) < 20)).scores
    np.testing.assert_array_equal(scores, agreement_features(logits, labels).mean(axis=1))


def test_augmentation_cross_fitted_finds_a_leaking_view() -> None:
    """Members agree in view 2 only: a fitted combination finds it, the count cannot."""
    rng = np.random.default_rng(2)
    n = 200
    is_member = np.arange(n) < n // 2
    labels = np.zeros(n, dtype=np.int64)
    agree = rng.random((18, n)) < 0.5
    agree[2] = is_member
    logits = np.stack([np.where(agree[v][:, None], [[1.0, 0.0]], [[0.0, 1.0]]) for v in range(18)])
    config = _config("augmentation", queries={"mirror": True, "shift": 1})
    attack = create_attack(config)
    assert len(attack.views) == 18
    scores = attack.score(context(logits, labels, is_member, views=attack.views)).scores
    assert roc_auc_score(is_member, scores) > 0.99
    assert attack.samples_needed() == 5


def test_augmentation_needs_augmented_views() -> None:
    with pytest.raises(ValidationError, match="needs mirrored or shifted views"):
        AugmentationConfig(name="augmentation", queries=1)


class LinearOracle:
    """A linear two-class model on flattened images: class 1 iff w.x > 0."""

    def __init__(self, weights: np.ndarray) -> None:
        self.weights = weights
        self.queries = 0

    def images(self, rows: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict(self, images: np.ndarray) -> np.ndarray:
        self.queries += len(images)
        flat = images.reshape(len(images), -1).astype(np.float64)
        positive: np.ndarray = flat @ self.weights > 0
        return positive.astype(np.int64)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 6), st.integers(1, 12))
def test_bisection_brackets_the_linear_boundary(seed: int, directions: int, steps: int) -> None:
    rng = np.random.default_rng(seed)
    n, shape = 7, (1, 3, 3)
    weights = rng.normal(size=9)
    starts = rng.normal(size=(n, *shape)).astype(np.float32)
    labels = (starts.reshape(n, -1) @ weights > 0).astype(np.int64)
    ends = rng.normal(size=(n, directions, *shape)).astype(np.float32)
    oracle = LinearOracle(weights)

    found = bisect_boundary(oracle, Segments(starts, ends), labels, steps, end_known=False)

    # Along x + t (e - x) the score w.x is linear in t: it crosses 0 once, or never.
    flat_x = starts.reshape(n, 1, -1).astype(np.float64)
    flat_e = ends.reshape(n, directions, -1).astype(np.float64)
    at_start, at_end = flat_x @ weights, flat_e @ weights
    lengths = np.linalg.norm(flat_e - flat_x, axis=-1)
    crossing = np.where(np.sign(at_start) != np.sign(at_end), at_start / (at_start - at_end), 1.0)
    exact = (crossing * lengths).min(axis=1)
    tolerance = lengths.max(axis=1) * 2.0**-steps + 1e-5
    assert (found >= exact - 1e-5).all()
    assert (found <= exact + tolerance).all()
    assert oracle.queries == n * directions * (steps + 1)


class ImageOracle(LinearOracle):
    """A linear 2-class model with access to a fixed set of audit images."""

    def __init__(self, weights: np.ndarray, audit_images: np.ndarray) -> None:
        super().__init__(weights)
        self.audit_images = audit_images

    def images(self, rows: np.ndarray) -> np.ndarray:
        selected: np.ndarray = self.audit_images[rows]
        return selected


@pytest.mark.parametrize("search", ["interpolation", "noise"])
def test_boundary_distance_spends_its_budget_and_scores_misclassified_samples_zero(
    search: str,
) -> None:
    rng = np.random.default_rng(3)
    n = 40
    images = rng.random((n, 1, 4, 4)).astype(np.float32)
    weights = rng.normal(size=16)
    weights -= weights.mean()
    predicted = (images.reshape(n, -1) @ weights > 0).astype(np.int64)
    labels = predicted.copy()
    labels[:5] = 1 - labels[:5]  # misclassified
    one_hot = np.eye(2)[predicted][None]
    oracle = ImageOracle(weights, images)
    config = _config("boundary_distance", budget=24, directions=4, search=search)
    output = (
        create_attack(config)
        .score(context(one_hot, labels, np.arange(n) % 2 == 0, oracle=oracle))
        .scores
    )
    assert (output[:5] == 0).all() and (output[5:] > 0).all()
    assert oracle.queries == 35 * 24
    assert create_attack(config).output_kinds == {"logits", "probabilities", "labels"}


def test_boundary_distance_budget_must_leave_a_step() -> None:
    with pytest.raises(ValidationError, match="leaves no bisection step"):
        BoundaryDistanceConfig(name="boundary_distance", budget=10, directions=6, search="noise")


def _config(name: str, **fields: Any) -> Any:
    from mia_audit.attacks.registry import attack_config

    return attack_config(name)(name=name, **fields)
