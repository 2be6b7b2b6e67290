"""Membership-inference metrics: one pinned convention, pure numpy.

Conventions (ARCHITECTURE.md, "Metric conventions"), which the rest of mia-audit codes against:

- ``labels`` is a 1-D array with 1 (or True) for a member, the positive class, and 0 for a
  non-member; ``scores`` is a 1-D float array where higher means "more likely a member".
- The ROC uses every distinct score as a threshold (a sample is called a member when its score
  is >= the threshold), starting at (0, 0) with threshold +inf; it is identical to
  ``sklearn.metrics.roc_curve(labels, scores, drop_intermediate=False)``.
- ``tpr_at_fpr(a)`` is the largest TPR among ROC points with FPR <= a, without interpolation.
- AUC counts tied member/non-member pairs as 1/2 (the Mann-Whitney statistic).

Nothing here imports scikit-learn or scipy, so importing the module stays cheap; the tests
check every function against scikit-learn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

#: Relative slack when checking ``fpr * n_negatives >= min_false_positives``, so that decimal
#: FPRs such as 0.07 (not exact in binary) are not refused for a rounding error.
_SUPPORT_RTOL = 1e-9


@dataclass(frozen=True)
class RocCurve:
    """A ROC curve: FPR and TPR are non-decreasing, thresholds decreasing (first is +inf)."""

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray


@dataclass(frozen=True)
class CumulativeCounts:
    """Cumulative counts at each distinct score, scores in decreasing order.

    ``tps[i]``/``fps[i]`` count the members/non-members whose score is >= ``thresholds[i]``.
    No leading (0, 0) point; ``tps[-1]`` and ``fps[-1]`` are the class sizes.
    """

    tps: np.ndarray
    fps: np.ndarray
    thresholds: np.ndarray


# --- validation -------------------------------------------------------------------------------


def validate(labels: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Check membership labels and scores; return them as (bool array, float64 array).

    Raises ValueError unless both are 1-D of the same length, the labels are only 0/1 (or
    booleans) with both classes present, and every score is finite.
    """
    y = np.asarray(labels)
    s = np.asarray(scores)
    if y.ndim != 1 or s.ndim != 1:
        raise ValueError(f"labels and scores must be 1-D (got shapes {y.shape} and {s.shape})")
    if len(y) != len(s):
        raise ValueError(f"labels and scores differ in length ({len(y)} != {len(s)})")
    return _validate_labels(y), _validate_scores(s)


def _validate_labels(y: np.ndarray) -> np.ndarray:
    if y.dtype != np.bool_:
        if not (np.issubdtype(y.dtype, np.number) and np.isin(y, (0, 1)).all()):
            raise ValueError("labels must be 0 (non-member) or 1 (member)")
        y = y == 1
    n_members = int(y.sum())
    if n_members == 0 or n_members == len(y):
        raise ValueError(
            f"labels need both members and non-members (got {n_members} members, "
            f"{len(y) - n_members} non-members)"
        )
    return y


def _validate_scores(s: np.ndarray) -> np.ndarray:
    if not (np.issubdtype(s.dtype, np.number) or s.dtype == np.bool_):
        raise ValueError(f"scores must be numeric (got dtype {s.dtype})")
    s = s.astype(np.float64, copy=False)
    if not np.isfinite(s).all():
        raise ValueError(f"scores must be finite ({int((~np.isfinite(s)).sum())} are not)")
    return s


def _check_fpr(fpr: float) -> float:
    value = float(fpr)
    if not 0.0 <= value <= 1.0:  # also refuses NaN
        raise ValueError(f"FPR must lie in [0, 1] (got {fpr!r})")
    return value


# --- ROC --------------------------------------------------------------------------------------


def cumulative_counts(labels: ArrayLike, scores: ArrayLike) -> CumulativeCounts:
    """Sort once (stable, decreasing score) and count members/non-members above each score."""
    y, s = validate(labels, scores)
    order = np.argsort(s, kind="stable")[::-1]
    y, s = y[order], s[order]
    last_of_group = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tps = np.cumsum(y, dtype=np.int64)[last_of_group]
    fps = last_of_group + 1 - tps
    return CumulativeCounts(tps=tps, fps=fps, thresholds=s[last_of_group])


def _roc_from_counts(counts: CumulativeCounts) -> RocCurve:
    tps = np.r_[0, counts.tps].astype(np.float64)
    fps = np.r_[0, counts.fps].astype(np.float64)
    return RocCurve(
        fpr=fps / fps[-1], tpr=tps / tps[-1], thresholds=np.r_[np.inf, counts.thresholds]
    )


def roc_curve(labels: ArrayLike, scores: ArrayLike) -> RocCurve:
    """The ROC at every distinct score threshold (same as sklearn, drop_intermediate=False)."""
    return _roc_from_counts(cumulative_counts(labels, scores))


# --- scalar metrics ---------------------------------------------------------------------------


def _twice_mann_whitney_u(counts: CumulativeCounts) -> int:
    """2U, exactly, in integers: member/non-member pairs won count 2, tied pairs 1.

    Per distinct score g (decreasing), its non-members lose to the members above and tie
    with the members at g: 2U = sum_g neg_g * (2 * above_g + pos_g) = neg_g * (tps_g + tps_g-1).
    """
    tps = np.r_[0, counts.tps]
    neg = np.diff(counts.fps, prepend=0)
    return int(np.dot(neg, tps[1:] + tps[:-1]))


def auc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC, ties counted 1/2: Mann-Whitney U / (n_pos n_neg); O(n log n).

    U is counted exactly in integers and divided once, so the result is the correctly rounded
    ratio (the bootstrap in `mia_audit.evaluation.bootstrap` divides its exact 2U the same way).
    """
    counts = cumulative_counts(labels, scores)
    n_pos, n_neg = int(counts.tps[-1]), int(counts.fps[-1])
    return _twice_mann_whitney_u(counts) / (2.0 * n_pos * n_neg)


def max_false_positives(fpr: float, n_negatives: int) -> int:
    """The largest k with ``k / n_negatives <= fpr`` in float64, as the ROC compares it.

    Working with this count lets integer code (the bootstrap) select exactly the same ROC
    points as a float comparison on ``roc.fpr``.
    """
    value = _check_fpr(fpr)
    k = min(math.floor(value * n_negatives), n_negatives)
    while k < n_negatives and (k + 1) / n_negatives <= value:
        k += 1
    while k > 0 and k / n_negatives > value:
        k -= 1
    return k


def tpr_at_fpr_from_roc(roc: RocCurve, fpr: float) -> float:
    """The largest TPR among the ROC points with FPR <= ``fpr`` (no interpolation)."""
    value = _check_fpr(fpr)
    last = int(np.searchsorted(roc.fpr, value, side="right")) - 1
    return float(roc.tpr[last]) if last >= 0 else 0.0


def tpr_at_fpr(labels: ArrayLike, scores: ArrayLike, fpr: float) -> float:
    """TPR at a false-positive-rate budget; ``fpr = 0`` gives the TPR with no false positive."""
    return tpr_at_fpr_from_roc(roc_curve(labels, scores), fpr)


def tpr_at_fprs(labels: ArrayLike, scores: ArrayLike, fprs: Sequence[float]) -> dict[float, float]:
    """`tpr_at_fpr` for several budgets from a single ROC computation, keyed by the budgets."""
    roc = roc_curve(labels, scores)
    return {fpr: tpr_at_fpr_from_roc(roc, fpr) for fpr in fprs}


def balanced_accuracy(labels: ArrayLike, scores: ArrayLike) -> float:
    """Balanced accuracy at the best threshold: max over ROC points of (TPR + 1 - FPR) / 2."""
    roc = roc_curve(labels, scores)
    return float(np.max((roc.tpr + (1.0 - roc.fpr)) / 2.0))


def advantage(labels: ArrayLike, scores: ArrayLike) -> float:
    """Membership advantage (Yeom et al. 2018): max over ROC points of TPR - FPR, >= 0."""
    roc = roc_curve(labels, scores)
    return float(np.max(roc.tpr - roc.fpr))


# --- plotting ---------------------------------------------------------------------------------


def downsample_roc(roc: RocCurve, n_points: int = 400, min_fpr: float = 1e-5) -> RocCurve:
    """At most ``n_points`` exact ROC points that keep the curve's shape for plots.

    The curve is treated as the step function "largest TPR among points with FPR <= x", so
    of each vertical run only its top point is kept. When more than ``n_points`` remain, an
    FPR grid log-spaced from ``min_fpr`` to 1 (the low-FPR regime that matters on log-log axes)
    plus a linear one (for linear axes) selects, per grid value, the point with the largest TPR
    among FPR <= it. Kept points are actual ROC vertices (thresholds included) and the result
    equals the exact step function at every grid FPR; (0, 0) and (1, 1) are always kept, and
    FPR, TPR stay monotone.
    """
    if n_points < 4:
        raise ValueError(f"n_points must be >= 4 (got {n_points})")
    if not 0.0 < min_fpr < 1.0:
        raise ValueError(f"min_fpr must lie in (0, 1) (got {min_fpr})")
    tops = np.flatnonzero(np.r_[np.diff(roc.fpr) > 0, True])
    if len(tops) + 1 <= n_points:
        keep = np.unique(np.r_[0, tops])
    else:
        n_log = (n_points - 2) // 2
        grid = np.r_[np.geomspace(min_fpr, 1.0, n_log), np.linspace(0.0, 1.0, n_points - 2 - n_log)]
        picked = np.asarray(np.searchsorted(roc.fpr, grid, side="right")) - 1
        keep = np.unique(np.r_[0, picked[picked >= 0], len(roc.fpr) - 1])
    return RocCurve(fpr=roc.fpr[keep], tpr=roc.tpr[keep], thresholds=roc.thresholds[keep])


# --- FPR keys and support ---------------------------------------------------------------------


def fpr_key(fpr: float) -> str:
    """Canonical JSON key for an FPR: shortest round-trip decimal, never an exponent.

    0.05 -> "0.05", 0.001 -> "0.001", 0 -> "0", 1e-5 -> "0.00001", 1 -> "1".
    """
    value = _check_fpr(fpr) + 0.0  # + 0.0 turns -0.0 into 0.0
    return np.format_float_positional(value, trim="-")


def is_fpr_supported(n_negatives: int, fpr: float, min_false_positives: int = 10) -> bool:
    """Whether ``n_negatives`` non-members can support a TPR at ``fpr``.

    A TPR@FPR rests on the ~``fpr * n_negatives`` non-members allowed above the threshold; with
    fewer than ``min_false_positives`` of them the estimate is mostly noise. FPR 0 is never
    supported by this rule.
    """
    value = _check_fpr(fpr)
    _check_min_false_positives(min_false_positives)
    if n_negatives < 0:
        raise ValueError(f"n_negatives must be >= 0 (got {n_negatives})")
    return value > 0.0 and value * n_negatives >= min_false_positives * (1.0 - _SUPPORT_RTOL)


def min_negatives_for_fpr(fpr: float, min_false_positives: int = 10) -> int:
    """The fewest non-members for which `is_fpr_supported` holds at ``fpr``.

    Raises ValueError for ``fpr = 0``, which no finite number of non-members supports.
    """
    value = _check_fpr(fpr)
    _check_min_false_positives(min_false_positives)
    if value == 0.0:
        raise ValueError("FPR 0 is never supported: it allows no false positive at all")
    n = math.ceil(min_false_positives / value)
    while n > 0 and is_fpr_supported(n - 1, value, min_false_positives):
        n -= 1
    while not is_fpr_supported(n, value, min_false_positives):
        n += 1
    return n


def _check_min_false_positives(min_false_positives: int) -> None:
    if min_false_positives < 1:
        raise ValueError(f"min_false_positives must be >= 1 (got {min_false_positives})")
