"""How many audit samples a gate condition needs before its verdict means anything (pure math).

A gate condition compares an estimate with a limit. On a small audit set the estimate is noisy,
and a model that leaks well beyond the limit can pass by luck: with 3 members and 3
non-members an AUC of 0.5 is as likely as not for a model whose true AUC is 0.8. The rule used
for every condition (docs/preconditions.md):

    a model whose true value lies DETECTABLE_EXCESS above the limit must fail the condition
    with probability at least DETECTION_POWER, i.e. z * sd(estimate) <= DETECTABLE_EXCESS
    with z the one-sided normal quantile of DETECTION_POWER.

The standard deviations used are worst cases over the true value, so the minimum holds
whatever the model:

* AUC (Mann-Whitney): under no separation Var = (m + n + 1) / (12 m n) (Mann & Whitney
  1947); with separation it only shrinks (Hanley & McNeil 1982).
* TPR at an FPR: a proportion over the m members, Var <= 1 / (4 m). The non-member side is
  covered by the FPR support rule (``metrics.min_negatives_for_fpr``).
* Attacker advantage max(TPR - FPR): at a fixed threshold Var <= 1 / (4 m) + 1 / (4 n).
* Epsilon lower bound: it is itself a one-sided confidence bound, so noise makes it *lower*;
  the risk is an audit too small for *any* attack to reach the limit. The minimum is the size
  at which a perfect attack (every member above every non-member) reaches the limit plus
  EPSILON_HEADROOM. The bound grows only with the log of the size, so a limit above
  `largest_checkable_epsilon` needs more than 1e9 samples per side: no audit can ever fail it.
"""

from __future__ import annotations

import math
from statistics import NormalDist

#: A model this far above a condition's limit must fail it (AUC, TPR and advantage units).
DETECTABLE_EXCESS = 0.1
#: ... with at least this probability.
DETECTION_POWER = 0.95
#: A perfect attack must reach an epsilon limit plus this much (natural log).
EPSILON_HEADROOM = 1.0
_LARGEST = 10**9


def _z() -> float:
    return NormalDist().inv_cdf(DETECTION_POWER)


def _max_sd() -> float:
    return DETECTABLE_EXCESS / _z()


def auc_sd(n_members: int, n_non_members: int) -> float:
    """Standard deviation of the AUC under no separation (the worst case)."""
    m, n = n_members, n_non_members
    return math.sqrt((m + n + 1) / (12 * m * n))


def _smallest(fits: object) -> int:
    """The smallest n >= 1 with fits(n) (monotone), by doubling then bisection."""
    assert callable(fits)
    low, high = 0, 1
    while not fits(high):
        if high >= _LARGEST:
            raise ValueError("no sample size up to 1e9 satisfies the rule")
        low, high = high, min(2 * high, _LARGEST)
    while high - low > 1:
        middle = (low + high) // 2
        if fits(middle):
            high = middle
        else:
            low = middle
    return high


def min_per_side_auc() -> int:
    """Members and non-members (each, balanced) an AUC condition needs."""
    limit = _max_sd()
    return _smallest(lambda n: auc_sd(n, n) <= limit)


def min_members_tpr() -> int:
    """Members a TPR-at-FPR condition needs (the non-members follow from the FPR)."""
    return math.ceil((0.5 / _max_sd()) ** 2)


def min_per_side_advantage() -> int:
    """Members and non-members (each, balanced) an advantage condition needs."""
    limit = _max_sd()
    return _smallest(lambda n: math.sqrt(0.5 / n) <= limit)


def perfect_attack_epsilon(n_per_side: int, delta: float, confidence: float) -> float:
    """The epsilon lower bound a perfect attack reaches with `n_per_side` members and
    non-members: the bound's evaluation half holds ceil(n/2) of each, all called right."""
    from mia_audit.evaluation.epsilon import epsilon_from_counts

    half = n_per_side - n_per_side // 2
    return epsilon_from_counts(half, 0, 0, half, delta=delta, alpha=1.0 - confidence)


def largest_checkable_epsilon(delta: float, confidence: float) -> float:
    """The largest epsilon limit `min_per_side_epsilon` has a size for (a perfect attack on
    1e9 members and non-members, less the headroom): above it no audit can exceed the limit."""
    return perfect_attack_epsilon(_LARGEST, delta, confidence) - EPSILON_HEADROOM


def min_per_side_epsilon(limit: float, delta: float, confidence: float) -> int:
    """Members and non-members (each) at which a perfect attack reaches limit + headroom;
    ValueError above `largest_checkable_epsilon`."""
    target = limit + EPSILON_HEADROOM
    return max(2, _smallest(lambda n: perfect_attack_epsilon(n, delta, confidence) >= target))


def min_per_side_to_exceed(claim: float, delta: float, confidence: float) -> int:
    """Members and non-members (each) at which a perfect attack's bound exceeds `claim`: the
    smallest audit that can contradict a DP claim of that epsilon."""
    return max(2, _smallest(lambda n: perfect_attack_epsilon(n, delta, confidence) > claim))
