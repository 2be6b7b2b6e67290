"""An empirical lower bound on epsilon of (epsilon, delta)-DP from one attack's errors, with
Clopper-Pearson intervals (Jagielski et al. 2020; Nasr et al. 2021), on a held-out half.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from mia_audit.evaluation import metrics


class _Confusion(NamedTuple):
    """Confusion counts (scalars or arrays over thresholds) of "member iff score >= t"."""

    tp: np.ndarray
    fn: np.ndarray
    fp: np.ndarray
    tn: np.ndarray


def _cp_bounds(
    successes: np.ndarray, trials: np.ndarray, alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised two-sided Clopper-Pearson bounds (each side at alpha / 2)."""
    from scipy.stats import beta

    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    # The beta parameters are clamped where the closed-form 0 / 1 applies, to avoid NaNs.
    low = np.where(k > 0, beta.ppf(alpha / 2.0, np.maximum(k, 1.0), n - k + 1.0), 0.0)
    high = np.where(k < n, beta.ppf(1.0 - alpha / 2.0, k + 1.0, np.maximum(n - k, 1.0)), 1.0)
    return np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1) (got {alpha})")


def clopper_pearson(successes: int, trials: int, alpha: float) -> tuple[float, float]:
    """Exact two-sided (1 - alpha) binomial interval for ``successes`` out of ``trials``.

    Lower bound 0 when there is no success, upper bound 1 when all trials succeed.
    """
    _check_alpha(alpha)
    if trials < 0 or not 0 <= successes <= max(trials, 0):
        raise ValueError(f"need 0 <= successes <= trials (got {successes}, {trials})")
    if trials == 0:
        return 0.0, 1.0
    low, high = _cp_bounds(np.array(successes), np.array(trials), alpha)
    return float(low), float(high)


def _epsilon_arrays(confusion: _Confusion, delta: float, alpha: float) -> np.ndarray:
    """Vectorised `epsilon_from_counts` over arrays of confusion counts."""
    tp, fn, fp, tn = confusion
    tpr_lo = _cp_bounds(tp, tp + fn, alpha)[0]
    fpr_hi = _cp_bounds(fp, fp + tn, alpha)[1]
    tnr_lo = _cp_bounds(tn, fp + tn, alpha)[0]
    fnr_hi = _cp_bounds(fn, tp + fn, alpha)[1]
    both = (_log_ratio(tpr_lo - delta, fpr_hi), _log_ratio(tnr_lo - delta, fnr_hi))
    return np.asarray(np.maximum(*both))


def _log_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """max(0, log(numerator / denominator)), with a non-positive numerator contributing 0."""
    ok = (numerator > 0) & (denominator > 0)
    safe = np.log(np.where(ok, numerator, 1.0) / np.where(ok, denominator, 1.0))
    return np.asarray(np.maximum(np.where(ok, safe, 0.0), 0.0))


def epsilon_from_counts(
    tp: int, fn: int, fp: int, tn: int, *, delta: float = 0.0, alpha: float = 0.05
) -> float:
    """Lower bound on epsilon of an (epsilon, delta)-DP training run from one attack's counts.

    DP bounds any membership test by TPR <= e^eps FPR + delta and TNR <= e^eps FNR + delta, so
    eps >= max(log((TPR_lo - delta) / FPR_hi), log((TNR_lo - delta) / FNR_hi), 0) with
    Clopper-Pearson bounds at level 1 - alpha (Jagielski et al. 2020; Nasr et al. 2021). Since
    TNR_lo = 1 - FPR_hi and FNR_hi = 1 - TPR_lo, both terms rest on the same two intervals, so
    the bound holds with probability >= 1 - alpha.
    """
    _check_alpha(alpha)
    _check_delta(delta)
    counts = np.array([tp, fn, fp, tn])
    if (counts < 0).any() or tp + fn == 0 or fp + tn == 0:
        raise ValueError(f"counts must be >= 0 with both classes present (got {counts})")
    return float(_epsilon_arrays(_Confusion(*(np.array(c) for c in counts)), delta, alpha))


def _check_delta(delta: float) -> None:
    if not 0.0 <= delta < 1.0:
        raise ValueError(f"delta must lie in [0, 1) (got {delta})")


@dataclass(frozen=True)
class EpsilonBound:
    """An empirical epsilon lower bound and the evaluation-half operating point behind it."""

    epsilon: float
    threshold: float
    tpr: float
    fpr: float
    delta: float
    confidence: float
    n_selection: int
    n_evaluation: int


def split_selection_evaluation(
    labels: ArrayLike, random_state: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split into (selection, evaluation) index arrays, sorted.

    Each class is shuffled and halved; the evaluation half takes the odd sample out. Needs at
    least two members and two non-members so that both halves hold both classes.
    """
    y = metrics.validate(labels, np.zeros(np.shape(labels)))[0]
    if min(int(y.sum()), int((~y).sum())) < 2:
        raise ValueError("need at least 2 members and 2 non-members to split")
    rng = np.random.default_rng(random_state)
    halves = [rng.permutation(np.flatnonzero(y == c)) for c in (True, False)]
    selection = np.concatenate([h[: len(h) // 2] for h in halves])
    evaluation = np.concatenate([h[len(h) // 2 :] for h in halves])
    return np.sort(selection), np.sort(evaluation)


def _threshold_confusion(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, _Confusion]:
    """Every distinct score as a threshold, with the confusion counts of each."""
    counts = metrics.cumulative_counts(y, s)
    n_pos, n_neg = counts.tps[-1], counts.fps[-1]
    confusion = _Confusion(counts.tps, n_pos - counts.tps, counts.fps, n_neg - counts.fps)
    return counts.thresholds, confusion


def epsilon_lower_bound(
    labels: ArrayLike,
    scores: ArrayLike,
    *,
    delta: float = 0.0,
    confidence: float = 0.95,
    random_state: int = 0,
) -> EpsilonBound:
    """Empirical epsilon lower bound of the attack "member iff score >= threshold".

    Choosing the threshold that maximises the bound on the very samples the Clopper-Pearson
    intervals are computed on would overstate epsilon (the maximum over many thresholds is
    biased up). So the audit samples are split (stratified, seeded) in two halves: the
    threshold is chosen to maximise `epsilon_from_counts` on the selection half, and the bound
    is evaluated, once, at that threshold on the evaluation half. The reported epsilon is a
    valid lower bound with probability >= ``confidence``; tpr/fpr are the evaluation half's.
    """
    _check_delta(delta)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1) (got {confidence})")
    y, s = metrics.validate(labels, scores)
    selection, evaluation = split_selection_evaluation(y, random_state)
    alpha = 1.0 - confidence
    thresholds, confusion = _threshold_confusion(y[selection], s[selection])
    threshold = float(thresholds[int(np.argmax(_epsilon_arrays(confusion, delta, alpha)))])
    y_eval, called = y[evaluation], s[evaluation] >= threshold
    tp, fp = int((called & y_eval).sum()), int((called & ~y_eval).sum())
    n_pos, n_neg = int(y_eval.sum()), int((~y_eval).sum())
    return EpsilonBound(
        epsilon=epsilon_from_counts(tp, n_pos - tp, fp, n_neg - fp, delta=delta, alpha=alpha),
        threshold=threshold,
        tpr=tp / n_pos,
        fpr=fp / n_neg,
        delta=delta,
        confidence=confidence,
        n_selection=len(selection),
        n_evaluation=len(evaluation),
    )
