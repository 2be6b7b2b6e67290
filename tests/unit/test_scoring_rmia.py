"""RMIA scoring: the sorted implementation equals the dense definition bit for bit (ties and
exact boundaries included), follows the paper's formulas, is monotone in gamma, tunes
offline_a to a planted value, and rejects bad inputs clearly."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import softmax
from sklearn.metrics import roc_auc_score

from mia_audit.attacks.scoring import rmia
from mia_audit.attacks.scoring.rmia import (
    DEFAULT_A_GRID,
    Aggregation,
    rmia_scores,
    rmia_scores_dense,
    true_class_probability,
    tune_offline_a,
)

AGGREGATIONS: tuple[Aggregation, ...] = ("mean", "majority")
# A small pool of values makes ties (between x, between z, and x against z) frequent.
POOL = [0.0, 1e-300, 0.1, 0.2, 0.25, 0.5, 0.75, 1.0]


@st.composite
def rmia_inputs(draw: st.DrawFn) -> dict[str, Any]:
    m = draw(st.integers(1, 4))
    n = draw(st.integers(1, 7))
    n_z = draw(st.integers(1, 7))
    q = draw(st.integers(1, 4))
    value = st.one_of(st.sampled_from(POOL), st.floats(0.0, 1.0))

    def probabilities(*shape: int) -> np.ndarray:
        flat = draw(st.lists(value, min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
        return np.array(flat, dtype=np.float64).reshape(shape)

    def mask(*shape: int) -> np.ndarray:
        flat = draw(
            st.lists(st.booleans(), min_size=int(np.prod(shape)), max_size=int(np.prod(shape)))
        )
        return np.array(flat, dtype=bool).reshape(shape)

    target_x, reference_x = probabilities(n, q), probabilities(m, n, q)
    target_z, reference_z = probabilities(n_z, q), probabilities(m, n_z, q)
    in_mask_x = mask(m, n) if draw(st.booleans()) else None
    if in_mask_x is not None and not in_mask_x.any():
        in_mask_x[0, 0] = True
    in_mask_z = mask(m, n_z) if draw(st.booleans()) else None
    if draw(st.booleans()):  # copies of x among z: LR = 1 exactly, the boundary when gamma = 1
        target_z = np.concatenate([target_z, target_x])
        reference_z = np.concatenate([reference_z, reference_x], axis=1)
        copied = in_mask_x if in_mask_x is not None else np.zeros((m, n), bool)
        in_mask_z = None if in_mask_z is None else np.concatenate([in_mask_z, copied], axis=1)
    gamma = draw(st.one_of(st.sampled_from([0.5, 1.0, 2.0]), st.floats(0.05, 20.0)))
    offline_a = draw(st.one_of(st.sampled_from([0.0, 0.3, 1.0]), st.floats(0.0, 1.0)))
    return {
        "target_x": target_x,
        "reference_x": reference_x,
        "target_z": target_z,
        "reference_z": reference_z,
        "in_mask_x": in_mask_x,
        "in_mask_z": in_mask_z,
        "gamma": gamma,
        "offline_a": offline_a,
    }


@settings(max_examples=300, deadline=None)
@given(inputs=rmia_inputs(), aggregation=st.sampled_from(AGGREGATIONS))
def test_sorted_equals_dense(inputs: dict[str, Any], aggregation: Aggregation) -> None:
    fast = rmia_scores(**inputs, aggregation=aggregation)
    dense = rmia_scores_dense(**inputs, aggregation=aggregation)
    np.testing.assert_array_equal(fast, dense)
    assert fast.shape == (inputs["target_x"].shape[0],)
    assert np.all((fast >= 0) & (fast <= 1))


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_majority_blocks_equal_dense(
    monkeypatch: pytest.MonkeyPatch, aggregation: Aggregation
) -> None:
    """Many blocks (and a ragged last one) in the pairwise vote."""
    inputs = without_member(synthetic(0, m=4, n=301, n_z=97, q=5))
    monkeypatch.setattr(rmia, "_BLOCK_ELEMENTS", 1000)
    np.testing.assert_array_equal(
        rmia_scores(**inputs, aggregation=aggregation),
        rmia_scores_dense(**inputs, aggregation=aggregation),
    )


def synthetic(
    seed: int, m: int = 4, n: int = 400, n_z: int = 500, q: int = 3, online: bool = True
) -> dict[str, Any]:
    """Members' probabilities raised by training; references trained on random halves."""
    rng = np.random.default_rng(seed)

    def model(base: np.ndarray, trained: np.ndarray) -> np.ndarray:
        lifted = base + (1.0 - base) * 0.5 * trained
        noise = np.exp(rng.normal(0, 0.1, (*base.shape, q)))
        return np.asarray(np.clip(lifted[..., None] * noise, 0, 1), dtype=np.float64)

    base_x, base_z = rng.beta(2, 1, n), rng.beta(2, 1, n_z)
    in_mask_x = rng.random((m, n)) < 0.5
    member = rng.random(n) < 0.5
    return {
        "target_x": model(base_x, member),
        "reference_x": model(np.broadcast_to(base_x, (m, n)), in_mask_x),
        "target_z": model(base_z, np.zeros(n_z, bool)),
        "reference_z": model(np.broadcast_to(base_z, (m, n_z)), np.zeros((m, n_z), bool)),
        "in_mask_x": in_mask_x if online else None,
        "member": member,
    }


def without_member(inputs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in inputs.items() if k != "member"}


def literal_scores(inputs: dict[str, Any], gamma: float, a: float) -> np.ndarray:
    """The paper's formulas written out: online Pr = mean over all models (balanced masks),
    offline Pr = ((1 + a) mean_OUT + 1 - a) / 2 for x and z; one query."""
    tx, rx = inputs["target_x"][:, 0], inputs["reference_x"][:, :, 0]
    tz, rz = inputs["target_z"][:, 0], inputs["reference_z"][:, :, 0]
    online = inputs["in_mask_x"] is not None
    scores = []
    for i in range(len(tx)):
        pr_x = rx[:, i].mean() if online else 0.5 * ((1 + a) * rx[:, i].mean() + 1 - a)
        count = 0
        for j in range(len(tz)):
            pr_z = 0.5 * ((1 + a) * rz[:, j].mean() + 1 - a)
            count += (tx[i] / pr_x) / (tz[j] / pr_z) > gamma
        scores.append(count / len(tz))
    return np.array(scores)


@pytest.mark.parametrize("online", [True, False])
def test_matches_the_paper_formulas(online: bool) -> None:
    inputs = without_member(synthetic(1, m=4, n=40, n_z=60, q=1, online=online))
    if online:  # balanced: every sample IN for exactly half of the models
        inputs["in_mask_x"] = np.array([[True, False, True, False]] * 40).T
    expected = literal_scores(inputs, gamma=2.0, a=0.3)
    np.testing.assert_array_equal(rmia_scores(**inputs, gamma=2.0, offline_a=0.3), expected)


def test_online_marginal_balances_ragged_masks() -> None:
    """Pr(x) = (mean_IN + mean_OUT) / 2, not the plain mean, when the sides are unequal."""
    reference_x = np.array([[[0.9]], [[0.9]], [[0.9]], [[0.3]]])  # 3 IN, 1 OUT
    in_mask_x = np.array([[True], [True], [True], [False]])
    target_z = np.array([[0.3], [0.6], [0.9]])
    reference_z = np.full((4, 3, 1), 0.5)
    kwargs: dict[str, Any] = {"in_mask_x": in_mask_x, "gamma": 1.0, "offline_a": 1.0}
    # r(x) = 0.6 / 0.6 = 1; r(z) = p_z / 0.5 (a = 1: Pr = mean_OUT) = 0.6, 1.2, 1.8
    score = rmia_scores(np.array([[0.6]]), reference_x, target_z, reference_z, **kwargs)
    assert score[0] == pytest.approx(1 / 3)


def test_comparison_is_strict() -> None:
    """LR(x, z) = 1 exactly (z a copy of x) does not count at gamma = 1; it does below."""
    p, ref = np.array([[0.4]]), np.array([[[0.5]], [[0.7]]])
    for scorer in (rmia_scores, rmia_scores_dense):
        assert scorer(p, ref, p, ref, gamma=1.0)[0] == 0.0
        assert scorer(p, ref, p, ref, gamma=0.999)[0] == 1.0


def test_majority_is_a_strict_vote_per_pair() -> None:
    """Two queries, x beats z in one: the mean counts half, the vote (tie) nothing."""
    ref = np.full((1, 1, 2), 0.5)
    target_x, target_z = np.array([[0.8, 0.2]]), np.array([[0.5, 0.5]])
    kwargs: dict[str, Any] = {"gamma": 1.0, "offline_a": 1.0}
    assert rmia_scores(target_x, ref, target_z, ref, aggregation="mean", **kwargs)[0] == 0.5
    assert rmia_scores(target_x, ref, target_z, ref, aggregation="majority", **kwargs)[0] == 0.0
    three = np.array([[0.8, 0.8, 0.2]])
    ref3, z3 = np.full((1, 1, 3), 0.5), np.full((1, 3), 0.5)
    assert rmia_scores(three, ref3, z3, ref3, aggregation="majority", **kwargs)[0] == 1.0


def test_single_query_majority_equals_mean() -> None:
    inputs = without_member(synthetic(2, q=1))
    np.testing.assert_array_equal(
        rmia_scores(**inputs, aggregation="mean"), rmia_scores(**inputs, aggregation="majority")
    )


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
@pytest.mark.parametrize("online", [True, False])
def test_scores_do_not_increase_with_gamma(aggregation: Aggregation, online: bool) -> None:
    inputs = without_member(synthetic(3, online=online))
    previous = None
    for gamma in (0.25, 0.5, 1.0, 1.5, 2.0, 4.0, 16.0):
        scores = rmia_scores(**inputs, gamma=gamma, aggregation=aggregation)
        if previous is not None:
            assert np.all(scores <= previous)
        previous = scores


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
@pytest.mark.parametrize("online", [True, False])
def test_members_are_separated(aggregation: Aggregation, online: bool) -> None:
    inputs = synthetic(4, n=1000, online=online)
    member = inputs.pop("member")
    scores = rmia_scores(**inputs, gamma=1.0, aggregation=aggregation)
    assert roc_auc_score(member, scores) > 0.75


# --- offline_a tuning ---


def planted(
    a_star: float, seed: int, n: int = 600, n_z: int = 2000, m: int = 3
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Model 0 (the stand-in) has p = Pr_{a*}(x) x (1.0 member | 0.8 non-member) x noise, the
    others output the OUT level exactly: only a = a* cancels the level out of the ratio, so
    only a* separates perfectly."""
    rng = np.random.default_rng(seed)

    def marginal(level: np.ndarray) -> np.ndarray:
        return 0.5 * ((1 + a_star) * level + (1 - a_star))

    level_x, level_z = rng.uniform(0.02, 0.5, n), rng.uniform(0.02, 0.5, n_z)
    member = np.arange(n) < n // 2
    reference_x = np.repeat(level_x[None, :, None], m, axis=0)
    reference_z = np.repeat(level_z[None, :, None], m, axis=0)
    reference_x[0, :, 0] = marginal(level_x) * np.where(member, 1.0, 0.8) * rng.uniform(0.9, 1.1, n)
    reference_z[0, :, 0] = marginal(level_z) * rng.uniform(0.6, 1.2, n_z)
    in_mask = np.zeros((m, n), bool)
    in_mask[0] = member
    return reference_x, reference_z, in_mask


@pytest.mark.parametrize("a_star", [0.3, 0.7])
def test_tuning_finds_the_planted_a(a_star: float) -> None:
    reference_x, reference_z, in_mask = planted(a_star, seed=0)
    # gamma = 1 so that the population's ratios cover the audit samples' ratios
    best = tune_offline_a(reference_x, reference_z, in_mask, stand_ins=[0], gamma=1.0)
    assert best == a_star
    aucs = [
        roc_auc_score(
            in_mask[0],
            rmia_scores(
                reference_x[0],
                reference_x[1:],
                reference_z[0],
                reference_z[1:],
                gamma=1.0,
                offline_a=a,
            ),
        )
        for a in DEFAULT_A_GRID
    ]
    assert DEFAULT_A_GRID[int(np.argmax(aucs))] == best


def test_tuning_every_stand_in_with_population_as_both_sets() -> None:
    """The usual call: references trained on halves of the population, which is x and z."""
    rng = np.random.default_rng(5)
    m, n = 4, 300
    mask = rng.random((m, n)) < 0.5
    base = rng.beta(2, 1, n)
    ref = np.clip((base + (1 - base) * 0.5 * mask)[..., None], 0, 1)
    best = tune_offline_a(ref, ref, mask, in_mask_z=mask, grid=[0.0, 0.5, 1.0])
    assert best in (0.0, 0.5, 1.0)


def test_tuning_validates() -> None:
    reference_x, reference_z, in_mask = planted(0.3, seed=1, n=20, n_z=20)
    with pytest.raises(ValueError, match="m >= 2"):
        tune_offline_a(reference_x[:1], reference_z[:1], in_mask[:1])
    with pytest.raises(ValueError, match="stand-in"):
        tune_offline_a(reference_x, reference_z, in_mask, stand_ins=[1])
    with pytest.raises(ValueError, match="grid"):
        tune_offline_a(reference_x, reference_z, in_mask, grid=[])
    with pytest.raises(ValueError, match="in_mask_z must have shape"):
        tune_offline_a(reference_x, reference_z, in_mask, in_mask_z=in_mask[:, :10])
    with pytest.raises(ValueError, match="offline_a must lie"):
        tune_offline_a(reference_x, reference_z, in_mask, grid=[1.5])


# --- true_class_probability ---


def test_true_class_probability_matches_softmax() -> None:
    rng = np.random.default_rng(6)
    logits = rng.normal(0, 3, (3, 5, 4))  # (m, n, C)
    labels = np.array([0, 3, 1, 2, 3])
    for temperature in (1.0, 2.0, 0.5):
        expected = np.take_along_axis(
            softmax(logits / temperature, axis=-1), np.broadcast_to(labels[:, None], (3, 5, 1)), -1
        )[..., 0]
        got = true_class_probability(logits, labels, temperature)
        assert got.shape == (3, 5)
        np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_true_class_probability_is_stable() -> None:
    logits = np.array([[1e4, 0.0, -1e4], [0.0, 800.0, 0.0]])
    p = true_class_probability(logits, np.array([0, 0]))
    assert p[0] == 1.0 and 0.0 <= p[1] < 1e-300 and np.all(np.isfinite(p))


def test_true_class_probability_validates() -> None:
    logits = np.zeros((4, 3))
    with pytest.raises(ValueError, match="temperature"):
        true_class_probability(logits, np.zeros(4, int), 0.0)
    with pytest.raises(ValueError, match="disagree"):
        true_class_probability(logits, np.zeros(5, int))
    with pytest.raises(ValueError, match="labels must be integers"):
        true_class_probability(logits, np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="labels must be integers"):
        true_class_probability(logits, np.zeros(4))


# --- validation ---


def test_rejects_bad_inputs() -> None:
    inputs = without_member(synthetic(7, n=10, n_z=12))
    cases: list[tuple[dict[str, Any], str]] = [
        ({"reference_x": inputs["reference_x"][:, :9]}, "reference_x must have shape"),
        ({"target_x": inputs["target_x"][:, 0]}, "target_x must have shape"),
        ({"reference_z": inputs["reference_z"][:3]}, "number of models or queries"),
        (
            {"target_z": inputs["target_z"][:, :2], "reference_z": inputs["reference_z"][:, :, :2]},
            "number of models or queries",
        ),
        ({"target_x": inputs["target_x"] + 1.0}, "probabilities in"),
        ({"target_z": np.full_like(inputs["target_z"], np.nan)}, "probabilities in"),
        ({"in_mask_x": inputs["in_mask_x"][:, :5]}, "in_mask_x must have shape"),
        ({"in_mask_x": inputs["in_mask_x"].astype(int)}, "boolean"),
        ({"in_mask_x": np.zeros_like(inputs["in_mask_x"])}, "offline attack"),
        ({"in_mask_z": np.ones((4, 11), bool)}, "in_mask_z must have shape"),
        ({"gamma": 0.0}, "gamma"),
        ({"gamma": np.inf}, "gamma"),
        ({"offline_a": -0.1}, "offline_a"),
        ({"aggregation": "vote"}, "aggregation"),
    ]
    for change, message in cases:
        for scorer in (rmia_scores, rmia_scores_dense):
            with pytest.raises(ValueError, match=message):
                scorer(**{**inputs, **change})
