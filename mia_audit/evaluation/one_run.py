"""The one-run epsilon lower bound with abstention (Steinke, Nasr and Jagielski 2023, "Privacy
auditing with one (1) training run", Algorithm 2 / Theorem 5.2).

m canaries are each included in training independently with probability 1/2. The auditor ranks
them by a membership score, guesses "in" for the k_plus highest and "out" for the k_minus
lowest, abstains on the rest, and counts v correct guesses out of r = k_plus + k_minus. Under
(epsilon, delta)-DP the number of correct guesses is dominated by Binomial(r, q), q =
e^eps / (1 + e^eps), up to a delta term:

    P[correct >= v] <= P[Bin(r, q) >= v] + 2 m delta max_{1 <= i <= v} P[v - i <= Bin(r, q) < v] / i

so every epsilon at which this p-value is below beta = 1 - confidence is refuted, and the bound
is the largest such epsilon.

How many to guess is chosen without overstating the bound: a fixed grid of (k_plus, k_minus)
(`candidates`, decided from m alone before any score is seen) is evaluated, each at beta over
the number of candidates, and the largest bound is reported (a Bonferroni correction: the
probability that any of the candidates overstates epsilon is at most beta). A held-out split
would halve the canaries each candidate sees, which costs far more than the log-factor of a
correction over a handful of candidates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

#: Fractions of the canaries guessed on each side ("in" for the top, "out" for the bottom).
CANDIDATE_FRACTIONS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)
#: Bisection stops when the bracket is this narrow; the lower end is reported.
_TOLERANCE = 1e-6
_EPSILON_CEILING = 100.0


def _check(m: int, r: int, v: int, delta: float, confidence: float) -> None:
    if not 0 <= v <= r <= m:
        raise ValueError(f"need 0 <= correct <= guesses <= canaries (got {v}, {r}, {m})")
    if not 0.0 <= delta < 1.0:
        raise ValueError(f"delta must lie in [0, 1) (got {delta})")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1) (got {confidence})")


def p_value(m: int, r: int, v: int, epsilon: float, delta: float) -> float:
    """Probability bound of v or more correct guesses out of r under (epsilon, delta)-DP."""
    from scipy.stats import binom

    q = 1.0 / (1.0 + math.exp(-epsilon))
    tail = float(binom.sf(v - 1, r, q))
    if delta == 0.0 or v == 0:
        return min(tail, 1.0)
    # P[v - i <= Bin < v] for i = 1..v, divided by i; the largest ratio enters the delta term.
    below = np.cumsum(binom.pmf(np.arange(v - 1, -1, -1), r, q))
    ratio = float(np.max(below / np.arange(1, v + 1)))
    return min(tail + 2.0 * m * delta * ratio, 1.0)


def epsilon_from_guesses(
    m: int, r: int, v: int, *, delta: float = 0.0, confidence: float = 0.95
) -> float:
    """The largest epsilon refuted at `confidence` by v correct guesses out of r (0 if none).

    Bisection on the p-value, which grows with epsilon; the lower end of the final bracket is
    returned, so the bound never exceeds the exact one by more than the tolerance's rounding.
    """
    _check(m, r, v, delta, confidence)
    beta = 1.0 - confidence
    if r == 0 or p_value(m, r, v, 0.0, delta) >= beta:
        return 0.0
    low, high = 0.0, 1.0
    while p_value(m, r, v, high, delta) < beta:
        low, high = high, 2.0 * high
        if high > _EPSILON_CEILING:
            return low
    while high - low > _TOLERANCE:
        middle = (low + high) / 2.0
        if p_value(m, r, v, middle, delta) < beta:
            low = middle
        else:
            high = middle
    return low


@dataclass(frozen=True)
class OneRunBound:
    """The one-run bound and the guesses behind it (the candidate that gave the largest)."""

    epsilon: float
    canaries: int
    guesses: int
    correct: int
    k_plus: int
    k_minus: int
    candidates: int
    delta: float
    confidence: float


def candidates(m: int) -> list[tuple[int, int]]:
    """Every (k_plus, k_minus) tried: k from `CANDIDATE_FRACTIONS` of m (distinct, >= 1), on
    both sides, and on the "in" side only (a loss separates members by their very low losses
    better than non-members by high ones)."""
    counts = sorted({max(1, round(f * m)) for f in CANDIDATE_FRACTIONS})
    both = [(k, k) for k in counts if 2 * k <= m]
    top = [(k, 0) for k in counts if k <= m]
    return both + top


def _guesses(order: np.ndarray, y: np.ndarray, k_plus: int, k_minus: int) -> tuple[int, int]:
    """(guesses, correct) of "in" for the k_plus highest scores, "out" for the k_minus lowest."""
    top, bottom = order[len(order) - k_plus :], order[:k_minus]
    return k_plus + k_minus, int(y[top].sum()) + int((~y[bottom]).sum())


def _corrected(confidence: float, m: int) -> float:
    """The confidence each candidate is evaluated at (Bonferroni over `candidates(m)`)."""
    return 1.0 - (1.0 - confidence) / max(1, len(candidates(m)))


def one_run_lower_bound(
    is_member: ArrayLike, scores: ArrayLike, *, delta: float = 0.0, confidence: float = 0.95
) -> OneRunBound:
    """The one-run epsilon lower bound of canaries' membership scores (higher: member).

    Every candidate in `candidates` is evaluated at a Bonferroni-corrected confidence and
    the largest bound reported (module docstring). Ties are ordered by canary index, which the
    inclusion coins do not depend on, so ties cost power but never validity.
    """
    y = np.asarray(is_member, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 1 or y.shape != s.shape or not np.isfinite(s).all():
        raise ValueError("need one finite score per canary")
    m = len(y)
    _check(m, 0, 0, delta, confidence)
    tried, corrected = candidates(m), _corrected(confidence, m)
    order = np.argsort(s, kind="stable")
    best = OneRunBound(0.0, m, 0, 0, 0, 0, len(tried), delta, confidence)
    for k_plus, k_minus in tried:
        r, v = _guesses(order, y, k_plus, k_minus)
        value = epsilon_from_guesses(m, r, v, delta=delta, confidence=corrected)
        if value > best.epsilon:
            best = OneRunBound(value, m, r, v, k_plus, k_minus, len(tried), delta, confidence)
    return best


def perfect_one_run_epsilon(m: int, delta: float, confidence: float) -> float:
    """The bound a perfect attack (every guess right) reaches with m canaries."""
    corrected = _corrected(confidence, m)
    return max(
        (
            epsilon_from_guesses(m, kp + km, kp + km, delta=delta, confidence=corrected)
            for kp, km in candidates(m)
        ),
        default=0.0,
    )


def min_canaries(claim: float, delta: float, confidence: float) -> int | None:
    """The fewest canaries at which a perfect attack's bound exceeds `claim`; None when no
    number does (with delta > 0 the 2 m delta term grows with m, so the perfect bound peaks)."""
    m, best = 2, 0.0
    while (value := perfect_one_run_epsilon(m, delta, confidence)) <= claim:
        if (value <= best and m >= 64) or m > 2**20:
            return None
        m, best = 2 * m, value
    low = m // 2
    while m - low > 1:
        middle = (low + m) // 2
        if perfect_one_run_epsilon(middle, delta, confidence) > claim:
            m = middle
        else:
            low = middle
    return m
