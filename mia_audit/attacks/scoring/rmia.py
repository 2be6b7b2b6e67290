"""RMIA scores: pairwise likelihood ratios against population samples (Zarifzadeh et al. 2024).

For an audit sample x and a population sample z, with p(.|theta) the target's probability of the
true class (per query) and Pr(.) its marginal over reference models,

    LR(x, z) = [p(x|theta) / Pr(x)] / [p(z|theta) / Pr(z)],
    Score(x) = fraction of the population z with LR(x, z) > gamma.

Conventions (the same in the fast and the dense implementation, so that they agree exactly):

* The comparison is *strict* (``>``), as in the official code (research/2024_rmia/main.py:
  ``score > gamma``; privacy-meter's attacks: ``ratios > 1.0``). The paper writes ``>=``; the
  two differ only on exact ties, which the tests exercise.
* It is evaluated in log space as ``log r(x) > log(gamma) + log r(z)`` with
  ``log r = log p - log Pr`` (probabilities floored at the smallest normal float, so zeros
  stay finite). Both implementations compare these very floating-point numbers, so "sorted
  equals dense" holds bit for bit, ties and boundaries included.

Marginals Pr(.) (the same estimator for x and for z, so that the two ratios are comparable):

* a point with IN and OUT models, online: Pr = (mean_IN + mean_OUT) / 2. With the balanced
  design of LiRA/RMIA (each point IN for half the models) this is the plain mean over all
  models the paper uses; with ragged masks it still estimates the marginal over a fair coin
  for membership instead of leaning to the larger side;
* a point with OUT models only (offline, or online without an IN model): the paper's linear
  approximation Pr = ((1 + a) mean_OUT + (1 - a)) / 2, applied to z as well (as the official
  code and privacy-meter do);
* a point with IN models only (possible for z, or in :func:`tune_offline_a`): mean_IN.

Not reproduced from the official research code: its trimmed mean over reference models
(``trim_mean(..., 0.2)``, which trims nothing below 5 models) and its default signal (a
soft-margin Taylor softmax); here the signal is the plain tempered softmax
(:func:`true_class_probability`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from mia_audit.attacks.signals import true_class_log_probability
from mia_audit.evaluation.metrics import auc

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
IntArray = NDArray[np.intp]
Aggregation = Literal["mean", "majority"]

DEFAULT_A_GRID: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))
"""The grid privacy-meter searches for offline_a: 0.0, 0.1, ..., 1.0."""

_AGGREGATIONS = ("mean", "majority")
_TINY = float(np.finfo(np.float64).tiny)
_BLOCK_ELEMENTS = 1 << 22  # pairs per block of the majority vote (about 4 MiB of votes)


def true_class_probability(
    logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0
) -> FloatArray:
    """p_y = softmax(logits / temperature)[y], through a stable log-softmax.

    Args:
        logits: shape (..., n, C).
        labels: integer class indices, shape (n,), broadcast against the leading axes.
        temperature: > 0; RMIA's research default on CIFAR-10 is 2.

    Returns:
        (..., n) probabilities in [0, 1].
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels)
    if not np.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be a positive finite number, got {temperature}")
    if z.ndim < 2 or y.shape != z.shape[-2:-1]:
        raise ValueError(f"logits (..., n, C) and labels (n,) disagree: {z.shape} vs {y.shape}")
    if y.size and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= z.shape[-1]):
        raise ValueError(f"labels must be integers in [0, {z.shape[-1]})")
    return np.asarray(np.exp(true_class_log_probability(z / temperature, y)), dtype=np.float64)


def rmia_scores(
    target_x: np.ndarray,
    reference_x: np.ndarray,
    target_z: np.ndarray,
    reference_z: np.ndarray,
    *,
    in_mask_x: np.ndarray | None = None,
    in_mask_z: np.ndarray | None = None,
    gamma: float = 2.0,
    offline_a: float = 0.3,
    aggregation: Aggregation = "mean",
    dense: bool = False,
) -> FloatArray:
    """RMIA score of each audit sample, by sorting the population's ratios.

    Args:
        target_x: p_y of the target on the audit samples, shape (n, q).
        reference_x: p_y of the m reference models on the audit samples, shape (m, n, q).
        target_z: p_y of the target on the population samples, shape (z, q).
        reference_z: p_y of the reference models on the population samples, shape (m, z, q).
        in_mask_x: (m, n) bool, True where audit sample i was in model j's training set
            (online attack); None = offline (every reference model is OUT for every x).
        in_mask_z: (m, z) bool, the same for the population (reference models are usually
            trained on it); None = no reference model saw any z.
        gamma: threshold on LR(x, z), > 0 (research default 2).
        offline_a: a in [0, 1] of the offline approximation of Pr (research default 0.3).
        aggregation: how the q queries combine. ``"mean"``: the average over queries of the
            per-query fraction; it decomposes, so each query sorts the z thresholds once and
            counts with a binary search: O(q (n + z) log z) time, O(q (n + z)) memory.
            ``"majority"``: per pair (x, z) the vote LR > gamma must win in a strict majority
            of the queries (ties lose), then the fraction of z; this is the official code's
            ``torch.mode`` vote over queries of the boolean pair matrices (``torch.mode``
            returns False on a tie). It does not decompose: after the same per-query sort,
            every pair is compared on small integer ranks in blocks of about 4M pairs,
            O(q (n + z) log z + q n z) time, O(q (n + z) + 4M) memory.
        dense: compute by the direct definition instead, the full n x z comparison matrix per
            query: the same result, O(q n z) time and O(n z) memory.

    Returns:
        (n,) scores in [0, 1], higher = more likely a member.
    """
    ratios = _log_ratios(
        target_x, reference_x, target_z, reference_z, in_mask_x, in_mask_z, gamma, offline_a
    )
    scores = _dense_scores if dense else _fast_scores
    return scores(ratios, _check_aggregation(aggregation))


#: The direct definition, ``rmia_scores(..., dense=True)``: for tests and reference.
rmia_scores_dense = partial(rmia_scores, dense=True)


def tune_offline_a(
    reference_x: np.ndarray,
    reference_z: np.ndarray,
    in_mask_x: np.ndarray,
    *,
    in_mask_z: np.ndarray | None = None,
    stand_ins: Sequence[int] | None = None,
    grid: Sequence[float] = DEFAULT_A_GRID,
    gamma: float = 2.0,
    aggregation: Aggregation = "mean",
) -> float:
    """The offline_a whose offline attack best separates a reference model's members.

    As privacy-meter does: a reference model stands in for the target and is attacked, offline,
    by the other reference models for every a of the grid; the a with the highest AUC wins (the
    first one on a tie). For each sample the attack uses only the other models that did not
    train on it (offline), so the labelled samples may be any points with known membership:
    typically the population the references were trained on, passed as both x and z.

    Args:
        reference_x: (m, n, q) p_y of the reference models on samples of known membership.
        reference_z: (m, z, q) p_y of the reference models on the population.
        in_mask_x: (m, n) bool, True where sample i was in model j's training set.
        in_mask_z: (m, z) bool or None, as in :func:`rmia_scores`.
        stand_ins: the models to use as stand-in targets, their AUCs averaged; None = every
            model whose samples include both members and non-members.
        grid: candidate values of a, each in [0, 1].
        gamma, aggregation: as in :func:`rmia_scores`.

    Returns:
        The best a of the grid.
    """
    ref_x = np.asarray(reference_x, dtype=np.float64)
    ref_z = np.asarray(reference_z, dtype=np.float64)
    if ref_x.ndim != 3 or ref_x.shape[0] < 2 or ref_z.ndim != 3:
        raise ValueError(
            "tune_offline_a needs reference_x (m, n, q) with m >= 2 and reference_z (m, z, q), "
            f"got {ref_x.shape} and {ref_z.shape}"
        )
    mask_x = _mask(in_mask_x, ref_x.shape[:2], "in_mask_x")
    mask_z = None if in_mask_z is None else _mask(in_mask_z, ref_z.shape[:2], "in_mask_z")
    candidates = [float(a) for a in grid]
    if not candidates:
        raise ValueError("grid must contain at least one value of a")
    chosen = _stand_ins(mask_x, stand_ins)
    _check_aggregation(aggregation)
    aucs = [
        _mean_auc(_Attack(ref_x, ref_z, mask_x, mask_z, gamma, aggregation), chosen, a)
        for a in candidates
    ]
    return candidates[int(np.argmax(aucs))]


@dataclass(frozen=True)
class _Attack:
    """The inputs of tune_offline_a's attacks, shared by every stand-in and every a."""

    reference_x: FloatArray
    reference_z: FloatArray
    in_mask_x: BoolArray
    in_mask_z: BoolArray | None
    gamma: float
    aggregation: str


@dataclass(frozen=True)
class _Ratios:
    """Per-point log ratios: x (n, q) and the z thresholds log(gamma) + log r(z), (z, q)."""

    x: FloatArray
    z_threshold: FloatArray


def _log_ratios(
    target_x: np.ndarray,
    reference_x: np.ndarray,
    target_z: np.ndarray,
    reference_z: np.ndarray,
    in_mask_x: np.ndarray | None,
    in_mask_z: np.ndarray | None,
    gamma: float,
    offline_a: float,
    *,
    online: bool | None = None,
) -> _Ratios:
    """Validate, then log r = log p(.|theta) - log Pr(.) for x and z; `online` defaults to
    whether in_mask_x is given (tune_offline_a runs offline with a mask)."""
    if not np.isfinite(gamma) or gamma <= 0:
        raise ValueError(f"gamma must be a positive finite number, got {gamma}")
    if not 0.0 <= offline_a <= 1.0:
        raise ValueError(f"offline_a must lie in [0, 1], got {offline_a}")
    tx, rx = _signals(target_x, reference_x, "x")
    tz, rz = _signals(target_z, reference_z, "z")
    if rx.shape[0] != rz.shape[0] or tx.shape[1] != tz.shape[1]:
        raise ValueError(
            f"x and z disagree on the number of models or queries: {rx.shape} vs {rz.shape}"
        )
    mask_x = None if in_mask_x is None else _mask(in_mask_x, rx.shape[:2], "in_mask_x")
    mask_z = None if in_mask_z is None else _mask(in_mask_z, rz.shape[:2], "in_mask_z")
    is_online = mask_x is not None if online is None else online
    if is_online and mask_x is not None and not mask_x.any():
        raise ValueError("in_mask_x has no IN entry; pass in_mask_x=None for the offline attack")
    log_rx = np.log(tx) - _log_marginal(rx, mask_x, is_online, offline_a)
    log_rz = np.log(tz) - _log_marginal(rz, mask_z, is_online, offline_a)
    return _Ratios(x=log_rx, z_threshold=np.log(gamma) + log_rz)


def _signals(target: np.ndarray, reference: np.ndarray, name: str) -> tuple[FloatArray, FloatArray]:
    """Target (N, q) and reference (m, N, q) probabilities, floored at the smallest normal."""
    t = np.asarray(target, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    if t.ndim != 2 or 0 in t.shape:
        raise ValueError(f"target_{name} must have shape (N, q) with N, q >= 1, got {t.shape}")
    if r.ndim != 3 or r.shape[0] == 0 or r.shape[1:] != t.shape:
        raise ValueError(
            f"reference_{name} must have shape (m, *{t.shape}) with m >= 1, got {r.shape}"
        )
    for array, label in ((t, "target"), (r, "reference")):
        if not (np.isfinite(array).all() and (array >= 0).all() and (array <= 1).all()):
            raise ValueError(f"{label}_{name} must hold probabilities in [0, 1]")
    return np.maximum(t, _TINY), np.maximum(r, _TINY)


def _mask(mask: np.ndarray, shape: tuple[int, ...], name: str) -> BoolArray:
    array = np.asarray(mask)
    if array.shape != shape:
        raise ValueError(f"{name} must have shape (m, N) = {shape}, got {array.shape}")
    if array.dtype != np.bool_:
        raise ValueError(f"{name} must be a boolean array, got dtype {array.dtype}")
    return array


def _log_marginal(
    reference: FloatArray, in_mask: BoolArray | None, online: bool, a: float
) -> FloatArray:
    """log Pr(.) per point and query, shape (N, q); see the module docstring for the rules."""
    members = np.zeros(reference.shape[:2], bool) if in_mask is None else in_mask
    mean_in, has_in = _masked_mean(reference, members)
    mean_out, has_out = _masked_mean(reference, ~members)
    offline = 0.5 * ((1.0 + a) * mean_out + (1.0 - a))
    balanced = 0.5 * (mean_in + mean_out)
    use_balanced = (has_in & has_out) if online else np.zeros_like(has_in)
    marginal = np.where(
        use_balanced[:, None], balanced, np.where(has_out[:, None], offline, mean_in)
    )
    return np.log(np.maximum(marginal, _TINY))


def _masked_mean(values: FloatArray, mask: BoolArray) -> tuple[FloatArray, BoolArray]:
    """Mean over axis 0 where mask (m, N) is True, shape (N, q) (0 with no model), and whether
    each point has a model."""
    count = mask.sum(axis=0)
    total = np.where(mask[:, :, None], values, 0.0).sum(axis=0)
    return total / np.maximum(count, 1)[:, None], count > 0


def _check_aggregation(aggregation: str) -> str:
    if aggregation not in _AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {_AGGREGATIONS}, got {aggregation!r}")
    return aggregation


def _fast_scores(ratios: _Ratios, aggregation: str) -> FloatArray:
    """Per query: sort the z thresholds; s(x) = #{z: threshold < log r(x)} by binary search."""
    n_z, n_q = ratios.z_threshold.shape
    below_x = np.empty(ratios.x.shape[::-1], dtype=np.intp)  # (q, n)
    rank_z = np.empty((n_q, n_z), dtype=np.intp)
    for k in range(n_q):
        ordered = np.sort(ratios.z_threshold[:, k])
        below_x[k] = np.searchsorted(ordered, ratios.x[:, k], side="left")
        if aggregation == "majority":
            rank_z[k] = np.searchsorted(ordered, ratios.z_threshold[:, k], side="left")
    if aggregation == "mean":
        return _mean_of_fractions(np.ascontiguousarray(below_x.T), n_z)
    return _majority_by_rank(below_x, rank_z)


def _mean_of_fractions(counts: IntArray, n_z: int) -> FloatArray:
    """Mean over queries of counts / n_z; counts is a C-ordered (n, q) integer array in both
    implementations, so that the floating-point reduction runs in the same order."""
    return np.asarray((counts / n_z).mean(axis=1), dtype=np.float64)


def _majority_by_rank(below_x: IntArray, rank_z: IntArray) -> FloatArray:
    """Strict-majority vote per pair, in blocks of x.

    rank_z[k, z] = #{z': threshold(z') < threshold(z)}; then threshold(z) < log r(x) exactly
    when rank_z[k, z] < below_x[k, x] (all thresholds below threshold(z) are below log r(x)
    too, and threshold(z) itself is one more). Integer ranks compare faster than floats and fit
    in 16 bits for populations under 65,536.
    """
    n_q, n_x = below_x.shape
    n_z = rank_z.shape[1]
    small = np.uint16 if n_z < np.iinfo(np.uint16).max else np.uint32
    below, ranks = below_x.astype(small), rank_z.astype(small)
    vote_type = np.uint8 if n_q < np.iinfo(np.uint8).max else np.uint16
    block = max(1, _BLOCK_ELEMENTS // n_z)
    wins = np.empty(n_x, dtype=np.int64)
    for start in range(0, n_x, block):
        rows = slice(start, start + block)
        votes = np.zeros((below[0, rows].size, n_z), dtype=vote_type)
        for k in range(n_q):
            votes += ranks[k][None, :] < below[k, rows][:, None]
        wins[rows] = (2 * votes.astype(np.int64) > n_q).sum(axis=1)
    return np.asarray(wins / n_z, dtype=np.float64)


def _dense_scores(ratios: _Ratios, aggregation: str) -> FloatArray:
    """The literal pairwise definition, one n x z boolean matrix per query."""
    n_z, n_q = ratios.z_threshold.shape
    counts = np.empty(ratios.x.shape, dtype=np.intp)
    votes = np.zeros((ratios.x.shape[0], n_z), dtype=np.int64)
    for k in range(n_q):
        passed = ratios.x[:, k][:, None] > ratios.z_threshold[:, k][None, :]
        counts[:, k] = passed.sum(axis=1)
        votes += passed
    if aggregation == "mean":
        return _mean_of_fractions(counts, n_z)
    return np.asarray((2 * votes > n_q).sum(axis=1) / n_z, dtype=np.float64)


def _stand_ins(in_mask: BoolArray, stand_ins: Sequence[int] | None) -> list[int]:
    """The stand-in targets: given, or every model with both members and non-members."""
    m = in_mask.shape[0]
    usable = [j for j in range(m) if in_mask[j].any() and not in_mask[j].all()]
    if stand_ins is None:
        chosen = usable
    else:
        chosen = [int(j) for j in stand_ins]
        bad = [j for j in chosen if j not in usable]
        if bad:
            raise ValueError(
                f"stand-in models {bad} are out of range or lack members or non-members"
            )
    if not chosen:
        raise ValueError("no reference model has both members and non-members to tune offline_a")
    return chosen


def _mean_auc(attack: _Attack, stand_ins: list[int], a: float) -> float:
    """Mean AUC over the stand-ins of the offline attack with parameter a."""
    aucs = []
    for j in stand_ins:
        others = np.arange(attack.reference_x.shape[0]) != j
        ratios = _log_ratios(
            attack.reference_x[j],
            attack.reference_x[others],
            attack.reference_z[j],
            attack.reference_z[others],
            attack.in_mask_x[others],
            None if attack.in_mask_z is None else attack.in_mask_z[others],
            attack.gamma,
            a,
            online=False,
        )
        aucs.append(auc(attack.in_mask_x[j], _fast_scores(ratios, attack.aggregation)))
    return float(np.mean(aucs))
