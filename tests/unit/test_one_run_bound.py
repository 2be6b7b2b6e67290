"""The one-run epsilon bound (Steinke, Nasr and Jagielski 2023) and the Clopper-Pearson bound it
sits beside: against direct slow computations on random inputs, and by simulation of mechanisms
whose epsilon is known (the bound stays below the true epsilon at the stated rate).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mia_audit.evaluation import epsilon, one_run

SIMULATIONS = 200


def slow_p_value(m: int, r: int, v: int, eps: float, delta: float) -> float:
    """The p-value of the paper's Theorem 5.2 term by term, with math.comb."""
    q = math.exp(eps) / (1.0 + math.exp(eps))

    def pmf(j: int) -> float:
        return math.comb(r, j) * q**j * (1.0 - q) ** (r - j)

    tail = sum(pmf(j) for j in range(v, r + 1))
    ratio = max((sum(pmf(j) for j in range(v - i, v)) / i for i in range(1, v + 1)), default=0.0)
    return min(1.0, tail + 2 * m * delta * ratio)


guesses = st.integers(1, 60).flatmap(
    lambda r: st.tuples(st.integers(r, 200), st.just(r), st.integers(0, r))
)


@settings(max_examples=150, deadline=None)
@given(
    counts=guesses,
    eps=st.floats(0.0, 8.0),
    delta=st.sampled_from([0.0, 1e-6, 1e-5, 1e-3]),
)
def test_p_value_is_the_theorem_term_by_term(
    counts: tuple[int, int, int], eps: float, delta: float
) -> None:
    m, r, v = counts
    assert one_run.p_value(m, r, v, eps, delta) == pytest.approx(
        slow_p_value(m, r, v, eps, delta), rel=1e-9, abs=1e-12
    )


@settings(max_examples=80, deadline=None)
@given(
    counts=guesses,
    delta=st.sampled_from([0.0, 1e-5, 1e-3]),
    confidence=st.sampled_from([0.9, 0.95, 0.99]),
)
def test_bound_is_the_largest_refuted_epsilon(
    counts: tuple[int, int, int], delta: float, confidence: float
) -> None:
    m, r, v = counts
    beta = 1.0 - confidence
    bound = one_run.epsilon_from_guesses(m, r, v, delta=delta, confidence=confidence)
    if bound == 0.0:
        # nothing is refuted (up to the bisection's tolerance)
        assert slow_p_value(m, r, v, 1e-5, delta) >= beta
    else:
        assert slow_p_value(m, r, v, bound, delta) < beta
        assert slow_p_value(m, r, v, bound + 1e-5, delta) >= beta


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    m=st.integers(2, 120),
    delta=st.sampled_from([0.0, 1e-5]),
)
def test_abstention_takes_the_best_bonferroni_corrected_candidate(
    seed: int, m: int, delta: float
) -> None:
    rng = np.random.default_rng(seed)
    member = rng.random(m) < 0.5
    scores = member * rng.random() + rng.normal(size=m)
    tried = one_run.candidates(m)
    corrected = 1.0 - 0.05 / len(tried)
    ranked = sorted(range(m), key=lambda i: (scores[i], i))
    direct = 0.0
    for k_plus, k_minus in tried:
        correct = sum(member[i] for i in ranked[m - k_plus :])
        correct += sum(not member[i] for i in ranked[:k_minus])
        direct = max(
            direct,
            one_run.epsilon_from_guesses(
                m, k_plus + k_minus, correct, delta=delta, confidence=corrected
            ),
        )
    bound = one_run.one_run_lower_bound(member, scores, delta=delta, confidence=0.95)
    assert bound.epsilon == direct
    assert bound.candidates == len(tried)
    assert 0 <= bound.correct <= bound.guesses <= m


def randomized_response(rng: np.random.Generator, member: np.ndarray, eps: float) -> np.ndarray:
    """Each canary's bit, kept with probability e^eps / (1 + e^eps): eps-DP per canary."""
    keep = rng.random(member.shape) < 1.0 / (1.0 + math.exp(-eps))
    return np.where(keep, member, ~member).astype(np.float64)


def laplace_scores(rng: np.random.Generator, member: np.ndarray, eps: float) -> np.ndarray:
    """The bit plus Laplace noise of scale 1 / eps: the Laplace mechanism, eps-DP per canary."""
    return member + rng.laplace(scale=1.0 / eps, size=member.shape)


@pytest.mark.parametrize("mechanism", [randomized_response, laplace_scores])
@pytest.mark.parametrize("eps", [1.0, 3.0])
def test_one_run_bound_stays_below_the_true_epsilon(mechanism: object, eps: float) -> None:
    assert callable(mechanism)
    rng = np.random.default_rng(int(eps * 10))
    bounds = []
    for _ in range(SIMULATIONS):
        member = rng.random(400) < 0.5
        scores = mechanism(rng, member, eps)
        bounds.append(one_run.one_run_lower_bound(member, scores, confidence=0.95).epsilon)
    below = np.mean(np.asarray(bounds) <= eps)
    assert below >= 0.95
    assert np.mean(bounds) > 0.3 * eps  # and it is not trivially 0


def test_one_candidate_alone_holds_at_the_stated_rate() -> None:
    """Theorem 5.2 itself, without the correction: a fixed number of guesses on randomized
    response at the true epsilon overstates it in at most 5 % of runs (up to sampling noise)."""
    rng = np.random.default_rng(7)
    eps, m, k = 1.0, 400, 100
    overstated = 0
    for _ in range(SIMULATIONS):
        member = rng.random(m) < 0.5
        order = np.argsort(randomized_response(rng, member, eps), kind="stable")
        correct = int(member[order[m - k :]].sum() + (~member[order[:k]]).sum())
        overstated += one_run.epsilon_from_guesses(m, 2 * k, correct, confidence=0.95) > eps
    assert overstated / SIMULATIONS <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / SIMULATIONS)


@pytest.mark.parametrize("eps", [0.5, 2.0])
def test_clopper_pearson_bound_stays_below_the_true_epsilon(eps: float) -> None:
    rng = np.random.default_rng(int(eps * 100))
    bounds = []
    for _ in range(SIMULATIONS):
        member = np.repeat([True, False], 300)
        scores = laplace_scores(rng, member, eps)
        bound = epsilon.epsilon_lower_bound(member, scores, confidence=0.95, random_state=0)
        bounds.append(bound.epsilon)
    assert np.mean(np.asarray(bounds) <= eps) >= 0.95
    assert np.mean(bounds) > 0.2 * eps


@pytest.mark.parametrize("claim", [1.0, 3.0])
def test_min_canaries_is_where_a_perfect_attack_first_refutes_the_claim(claim: float) -> None:
    m = one_run.min_canaries(claim, 1e-5, 0.95)
    assert m is not None
    assert one_run.perfect_one_run_epsilon(m, 1e-5, 0.95) > claim
    assert one_run.perfect_one_run_epsilon(m - 1, 1e-5, 0.95) <= claim


def test_a_claim_no_number_of_canaries_can_refute_is_said_to_be_so() -> None:
    """With delta > 0 the 2 m delta term grows with m, so a perfect attack's bound peaks
    (about 5.5 at delta 1e-5): a claim above the peak can never be contradicted."""
    assert one_run.min_canaries(8.0, 1e-5, 0.95) is None
    assert one_run.min_canaries(8.0, 0.0, 0.95) is not None


def test_bad_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="correct <= guesses"):
        one_run.epsilon_from_guesses(10, 5, 6)
    with pytest.raises(ValueError, match="delta"):
        one_run.epsilon_from_guesses(10, 5, 5, delta=1.0)
    with pytest.raises(ValueError, match="one finite score"):
        one_run.one_run_lower_bound([True, False], [0.0, math.nan])
