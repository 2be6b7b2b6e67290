"""LiRA scoring: equal to a direct per-sample scipy implementation, separates members, is
one-sided offline, stays finite on degenerate inputs, and rejects bad inputs clearly."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from mia_audit.attacks.scoring.lira import (
    Variance,
    _global_variance,
    lira_offline,
    lira_online,
)
from tests.oracles import direct_offline, direct_online

Array = np.ndarray
VARIANCES: tuple[Variance, ...] = ("global", "per_example")


# --- a direct implementation: explicit loops over samples and queries, scipy.stats.norm ---












# --- synthetic signals ---


def gaussian_world(
    seed: int, m: int, n: int, q: int, shift: float = 1.0
) -> tuple[Array, Array, Array, Array]:
    """Per-sample difficulty, members' phi shifted up by `shift`; ragged random masks."""
    rng = np.random.default_rng(seed)
    difficulty = rng.normal(0.0, 2.0, n)
    in_mask = rng.random((m, n)) < 0.5
    in_mask[0], in_mask[1] = True, False  # every sample has an IN and an OUT model
    reference = (
        difficulty[None, :, None] + shift * in_mask[:, :, None] + rng.normal(0, 0.5, (m, n, q))
    )
    member = rng.random(n) < 0.5
    target = difficulty[:, None] + shift * member[:, None] + rng.normal(0, 0.5, (n, q))
    return target, reference, in_mask, member


def ragged_mask(seed: int, m: int, n: int) -> np.ndarray:
    """Random mask with planted corner cases: no IN, one IN, one OUT, no OUT."""
    mask = np.random.default_rng(seed).random((m, n)) < 0.5
    mask[:, 0] = False
    mask[:, 1] = False
    mask[0, 1] = True
    mask[:, 2] = True
    mask[0, 2] = False
    mask[:, 3] = True
    return mask


@pytest.mark.parametrize("variance", VARIANCES)
@pytest.mark.parametrize("seed", [0, 1])
def test_online_equals_direct_scipy(variance: Variance, seed: int) -> None:
    target, reference, _, _ = gaussian_world(seed, m=7, n=30, q=3)
    in_mask = ragged_mask(seed, 7, 30)
    expected = direct_online(target, reference, in_mask, variance)
    got = lira_online(target, reference, in_mask, variance=variance)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("variance", VARIANCES)
@pytest.mark.parametrize("seed", [0, 1])
def test_offline_equals_direct_scipy(variance: Variance, seed: int) -> None:
    target, reference, _, _ = gaussian_world(seed, m=7, n=30, q=3)
    out_mask = ~ragged_mask(seed, 7, 30)
    out_mask[:, 3] = [True] + [False] * 6  # one OUT model only
    expected = direct_offline(target, reference, out_mask, variance)
    got = lira_offline(target, reference, out_mask, variance=variance)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("variance", VARIANCES)
def test_direct_equality_without_any_pooled_variance(variance: Variance) -> None:
    """Two complementary models: one IN and one OUT per sample, nothing to pool."""
    target, reference, _, _ = gaussian_world(3, m=2, n=20, q=2)
    in_mask = np.zeros((2, 20), bool)
    in_mask[0, :10] = True
    in_mask[1, 10:] = True
    np.testing.assert_allclose(
        lira_online(target, reference, in_mask, variance=variance),
        direct_online(target, reference, in_mask, variance),
        rtol=1e-10,
    )
    np.testing.assert_allclose(
        lira_offline(target, reference[:1], np.ones((1, 20), bool), variance=variance),
        direct_offline(target, reference[:1], np.ones((1, 20), bool), variance),
        rtol=1e-10,
    )


def test_global_variance_pools_within_example_deviations() -> None:
    """The fixed variance is the spread across models for a fixed example, not the spread of
    the whole array (which is dominated by differences in difficulty between examples)."""
    rng = np.random.default_rng(0)
    within = 0.3
    reference = rng.normal(0, 5.0, (1, 500, 1)) + rng.normal(0, within, (8, 500, 1))
    mask = np.ones((8, 500), bool)
    pooled = _global_variance(reference, mask, None)[0]
    assert pooled == pytest.approx(within**2, rel=0.1)
    assert reference.var() > 100 * pooled


@pytest.mark.parametrize("variance", VARIANCES)
def test_members_are_separated(variance: Variance) -> None:
    target, reference, in_mask, member = gaussian_world(5, m=8, n=2000, q=2)
    baseline = roc_auc_score(member, target.mean(axis=1))
    online = roc_auc_score(member, lira_online(target, reference, in_mask, variance=variance))
    offline = roc_auc_score(member, lira_offline(target, reference, ~in_mask, variance=variance))
    assert online > 0.8 and offline > 0.8
    assert online > baseline + 0.1 and offline > baseline + 0.1


def test_global_beats_per_example_with_few_models() -> None:
    target, reference, in_mask, member = gaussian_world(6, m=4, n=2000, q=1)
    fixed = roc_auc_score(member, lira_online(target, reference, in_mask, variance="global"))
    own = roc_auc_score(member, lira_online(target, reference, in_mask, variance="per_example"))
    assert fixed > own


@pytest.mark.parametrize("variance", VARIANCES)
def test_offline_is_one_sided(variance: Variance) -> None:
    """Far below the OUT distribution is *less* member-like than typical, not more (the
    two-sided density of many public implementations would score it like far above)."""
    rng = np.random.default_rng(1)
    reference = rng.normal(0.0, 1.0, (16, 1, 1)).repeat(3, axis=1)
    target = np.array([[-8.0], [0.0], [8.0]])
    scores = lira_offline(target, reference, np.ones((16, 3), bool), variance=variance)
    assert scores[0] < scores[1] < scores[2]
    assert scores[0] < 0 < scores[2]
    two_sided = -stats.norm.logpdf(target[:, 0], reference[:, 0, 0].mean(), 1.0)
    assert two_sided[0] > two_sided[1]  # the mistake this test guards against


def test_offline_extremes_do_not_saturate_into_ties() -> None:
    reference = np.random.default_rng(2).normal(0.0, 1.0, (16, 1, 1)).repeat(4, axis=1)
    target = np.array([[-60.0], [-40.0], [40.0], [60.0]])
    scores = lira_offline(target, reference, np.ones((16, 4), bool))
    assert np.all(np.isfinite(scores))
    assert np.all(np.diff(scores) > 0)


def test_online_far_below_scores_low() -> None:
    """With equal IN and OUT spreads the log-ratio is increasing in phi. (With unequal fitted
    variances the Gaussian log-ratio is quadratic and one tail turns back: the paper's model,
    documented in lira.py.)"""
    rng = np.random.default_rng(3)
    in_mask = np.zeros((16, 50), bool)
    in_mask[:8] = True
    noise = rng.normal(0.0, 1.0, (8, 50, 1))
    reference = np.concatenate([noise + 2.0, noise])
    target = np.zeros((50, 1))
    target[:3, 0] = [-10.0, 1.0, 4.0]
    scores = lira_online(target, reference, in_mask)
    assert scores[0] < scores[1] < scores[2]


@pytest.mark.parametrize("variance", VARIANCES)
def test_degenerate_inputs_stay_finite(variance: Variance) -> None:
    """Identical reference values (zero variance) and one model per side."""
    reference = np.full((2, 5, 2), 3.0)
    in_mask = np.array([[True] * 5, [False] * 5])
    target = np.array([[3.0, 3.0], [30.0, 30.0], [-30.0, 3.0], [3.0, 1e4], [0.0, 0.0]])
    online = lira_online(target, reference, in_mask, variance=variance)
    offline = lira_offline(target, reference, ~in_mask, variance=variance)
    assert np.all(np.isfinite(online)) and np.all(np.isfinite(offline))
    assert offline[1] > offline[0] > offline[2]


def test_sample_without_in_model_is_scored_on_the_same_scale() -> None:
    """Online, a sample with no IN model gets mu_in = mu_out + mean shift: higher phi, higher
    score, and a member-like phi scores like members with IN models."""
    target, reference, in_mask, _ = gaussian_world(7, m=8, n=200, q=1, shift=2.0)
    difficulty = np.median(reference[~in_mask[:, 0], 0, 0])
    in_mask[:, 0] = False
    target[0, 0] = difficulty + 2.0
    low = lira_online(target, reference, in_mask)
    target[0, 0] = difficulty - 1.0
    high_phi_score, low_phi_score = low[0], lira_online(target, reference, in_mask)[0]
    assert high_phi_score > low_phi_score
    assert high_phi_score > np.median(low)


def test_score_shape_and_dtype() -> None:
    target, reference, in_mask, _ = gaussian_world(8, m=4, n=10, q=3)
    for scores in (
        lira_online(target, reference, in_mask),
        lira_offline(target, reference, ~in_mask | (np.arange(4) == 0)[:, None]),
    ):
        assert scores.shape == (10,) and scores.dtype == np.float64


# --- validation ---


def test_rejects_shape_mismatches() -> None:
    target, reference, in_mask, _ = gaussian_world(9, m=4, n=10, q=2)
    with pytest.raises(ValueError, match="reference must have shape"):
        lira_online(target, reference[:, :9], in_mask)
    with pytest.raises(ValueError, match="reference must have shape"):
        lira_online(target, reference[:, :, :1], in_mask)
    with pytest.raises(ValueError, match="target must have shape"):
        lira_online(target[:, 0], reference, in_mask)
    with pytest.raises(ValueError, match="in_mask must have shape"):
        lira_online(target, reference, in_mask[:3])
    with pytest.raises(ValueError, match="out_mask must have shape"):
        lira_offline(target, reference, in_mask.T)


def test_rejects_bad_values() -> None:
    target, reference, in_mask, _ = gaussian_world(10, m=4, n=10, q=2)
    with pytest.raises(ValueError, match="boolean"):
        lira_online(target, reference, in_mask.astype(int))
    bad = target.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        lira_online(bad, reference, in_mask)
    with pytest.raises(ValueError, match="variance must be one of"):
        lira_online(target, reference, in_mask, variance="fixed")  # type: ignore[arg-type]


def test_rejects_empty_sides() -> None:
    target, reference, _, _ = gaussian_world(11, m=4, n=10, q=2)
    with pytest.raises(ValueError, match="lira_offline"):
        lira_online(target, reference, np.zeros((4, 10), bool))
    with pytest.raises(ValueError, match="both an IN and an OUT"):
        lira_online(target, reference, np.ones((4, 10), bool))
    out_mask = np.ones((4, 10), bool)
    out_mask[:, 7] = False
    with pytest.raises(ValueError, match="no OUT reference model"):
        lira_offline(target, reference, out_mask)
