"""Signals against direct formulas (scipy), and the attacks' behaviour on synthetic logits."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.special import log_softmax as scipy_log_softmax
from scipy.special import softmax

from mia_audit.attacks import signals
from mia_audit.attacks.base import AttackContext, ViewLogits
from mia_audit.attacks.crossfit import stratified_folds
from mia_audit.attacks.queries import IDENTITY
from mia_audit.attacks.registry import attack_config, create_attack

finite_logits = st.integers(2, 12).flatmap(
    lambda c: arrays(
        np.float64,
        st.tuples(st.integers(1, 20), st.just(c)),
        elements=st.floats(-30, 30, allow_nan=False),
    )
)


def labels_for(logits: np.ndarray, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, logits.shape[1], size=len(logits))


@settings(max_examples=200, deadline=None)
@given(finite_logits)
def test_signals_match_direct_formulas(logits: np.ndarray) -> None:
    labels = labels_for(logits)
    rows = np.arange(len(labels))
    p = softmax(logits, axis=1)
    log_p = scipy_log_softmax(logits, axis=1)
    np.testing.assert_allclose(
        signals.cross_entropy(logits, labels), -log_p[rows, labels], rtol=1e-9, atol=1e-9
    )
    np.testing.assert_allclose(
        signals.true_class_probability(logits, labels), p[rows, labels], rtol=1e-9, atol=1e-12
    )
    direct_entropy = -(p * log_p).sum(axis=1)
    np.testing.assert_allclose(signals.entropy(logits), direct_entropy, rtol=1e-7, atol=1e-9)
    others = logits.copy()
    others[rows, labels] = -np.inf
    hinge = logits[rows, labels] - others.max(axis=1)
    np.testing.assert_allclose(signals.hinge_margin(logits, labels), hinge, atol=1e-9)
    rank = (logits > logits[rows, labels][:, None]).sum(axis=1)
    np.testing.assert_array_equal(signals.true_class_rank(logits, labels), rank)


@settings(max_examples=200, deadline=None)
@given(finite_logits)
def test_scaled_logit_is_log_odds(logits: np.ndarray) -> None:
    """log p_y - log(1 - p_y), checked where the direct formula is itself accurate."""
    labels = labels_for(logits)
    rows = np.arange(len(labels))
    p_y = softmax(logits, axis=1)[rows, labels]
    fine = (p_y > 1e-6) & (p_y < 1 - 1e-6)
    with np.errstate(divide="ignore"):
        direct = np.log(p_y) - np.log1p(-p_y)
    got = signals.scaled_logit(logits, labels)
    np.testing.assert_allclose(got[fine], direct[fine], rtol=1e-6, atol=1e-6)
    assert np.isfinite(got).all()


@settings(max_examples=200, deadline=None)
@given(finite_logits)
def test_modified_entropy_matches_song_mittal(logits: np.ndarray) -> None:
    labels = labels_for(logits)
    rows = np.arange(len(labels))
    p = softmax(logits, axis=1)
    eps = 1e-300
    p_y = p[rows, labels]
    term_true = -(1 - p_y) * np.log(np.maximum(p_y, eps))
    others = -p * np.log(np.maximum(1 - p, eps))
    others[rows, labels] = 0.0
    direct = term_true + others.sum(axis=1)
    fine = (p.max(axis=1) < 1 - 1e-9) & (p_y > 1e-12)
    got = signals.modified_entropy(logits, labels)
    np.testing.assert_allclose(got[fine], direct[fine], rtol=1e-6, atol=1e-9)
    assert np.isfinite(got).all() and (got >= -1e-12).all()


def test_extreme_logits_stay_finite() -> None:
    logits = np.array([[1000.0, -1000.0, 0.0], [-800.0, 800.0, 5.0]])
    labels = np.array([0, 0])
    for fn in (signals.cross_entropy, signals.scaled_logit, signals.modified_entropy):
        assert np.isfinite(fn(logits, labels)).all()
    assert signals.scaled_logit(logits, labels)[0] > 900


def synthetic_context(
    n: int = 400, classes: int = 5, leak: float = 1.5, seed: int = 0
) -> AttackContext:
    """Members get a larger true-class logit: every attack should see the leak."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=n)
    is_member = np.zeros(n, dtype=bool)
    is_member[rng.permutation(n)[: n // 2]] = True
    logits = rng.normal(size=(n, classes))
    logits[np.arange(n), labels] += 1.0 + leak * is_member
    return AttackContext(
        target=ViewLogits(views=(IDENTITY,), logits=logits[None]),
        labels=labels,
        is_member=is_member,
        random_state=0,
    )


@pytest.mark.parametrize(
    "name",
    [
        "loss",
        "confidence",
        "entropy",
        "modified_entropy",
        "logit_margin",
        "class_threshold",
        "learned",
    ],
)
def test_every_target_only_attack_finds_a_planted_leak(name: str) -> None:
    from mia_audit.evaluation.metrics import auc

    context = synthetic_context()
    attack = create_attack(attack_config(name).model_validate({"name": name}))
    scores = attack.score(context).scores
    assert scores.shape == context.labels.shape and np.isfinite(scores).all()
    assert auc(context.is_member, scores) > 0.65


@pytest.mark.parametrize("name", ["class_threshold", "learned"])
def test_fitted_attacks_are_at_chance_without_a_leak(name: str) -> None:
    """Cross-fitting: with no signal, out-of-fold scores must not memorise membership."""
    from mia_audit.evaluation.metrics import auc

    context = synthetic_context(n=600, leak=0.0, seed=1)
    attack = create_attack(attack_config(name).model_validate({"name": name}))
    assert abs(auc(context.is_member, attack.score(context).scores) - 0.5) < 0.08


def test_learned_attack_is_seeded() -> None:
    context = synthetic_context()
    config = attack_config("learned").model_validate({"name": "learned", "model": "mlp"})
    first = create_attack(config).score(context).scores
    second = create_attack(config).score(context).scores
    np.testing.assert_array_equal(first, second)


def test_stratified_folds_partition_and_balance() -> None:
    is_member = np.arange(103) % 3 == 0
    folds = stratified_folds(is_member, 5, random_state=2)
    tests = np.concatenate([test for _, test in folds])
    assert sorted(tests.tolist()) == list(range(103))
    for train, test in folds:
        assert not set(train) & set(test)
        assert abs(is_member[test].mean() - is_member.mean()) < 0.1
