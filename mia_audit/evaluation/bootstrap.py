"""Uncertainty for the metrics: stratified bootstrap CIs and an empirical epsilon lower bound.

The bootstrap is vectorised: members and non-members are each sorted once by score, a resample
is a vector of multiplicities (how often each sample was drawn), and AUC and every TPR@FPR
follow from bincounts, prefix sums and precomputed rank maps between the two sorted orders, in
exact integer arithmetic. Tied scores are handled exactly as `mia_audit.metrics` does (ties
count 1/2 for AUC, ROC points only between distinct scores), so a replicate equals the plain
metric on the materialised resample (see `resample_indices`), bit for bit.

scipy is imported inside the functions that need it, so importing this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from mia_audit.evaluation import metrics

#: Working-memory budget of one chunk of bootstrap resamples.
DEFAULT_CHUNK_BYTES = 64 * 2**20
#: Peak working bytes per resample and per audit sample of the vectorised bootstrap (drawn
#: multiplicities, prefix sums, gathers); measured at 13-21 with tracemalloc, rounded up.
_BYTES_PER_ELEMENT = 32
#: Entries of one block of bincount histograms (int64, 512 KiB: stays in a typical L2 cache).
_HISTOGRAM_BLOCK = 2**16


@dataclass(frozen=True)
class BootstrapResult:
    """Percentile confidence intervals ``(low, high)`` at ``level`` from ``n_resamples``.

    ``advantage`` is None unless it was asked for (it costs one more gather per resample).
    """

    level: float
    n_resamples: int
    auc: tuple[float, float]
    tpr_at_fpr: dict[float, tuple[float, float]]
    advantage: tuple[float, float] | None = None


@dataclass(frozen=True)
class BootstrapReplicates:
    """The metric on every resample: ``auc[r]``, ``tpr_at_fpr[fpr][r]`` and, when asked for,
    ``advantage[r]``."""

    auc: np.ndarray
    tpr_at_fpr: dict[float, np.ndarray]
    advantage: np.ndarray | None = None


# --- resampling -------------------------------------------------------------------------------


def _generator(random_state: int | np.random.Generator) -> np.random.Generator:
    if isinstance(random_state, np.random.Generator):
        return random_state
    return np.random.default_rng(random_state)


@dataclass(frozen=True)
class _Ranked:
    """Members and non-members, each by decreasing score, and how the two orders interleave.

    ``members``/``non_members`` index the original arrays (stable order among ties). For the
    member of rank i, ``neg_above[i]``/``neg_at_or_above[i]`` count the non-members scoring
    strictly above it / at least as high; for the non-member of rank j, ``pos_above[j]``
    counts the members scoring strictly above it. ``cross_ties``: some member ties with some
    non-member.
    """

    members: np.ndarray
    non_members: np.ndarray
    neg_above: np.ndarray
    neg_at_or_above: np.ndarray
    pos_above: np.ndarray
    cross_ties: bool


def _rank(labels: ArrayLike, scores: ArrayLike) -> _Ranked:
    y, s = metrics.validate(labels, scores)
    order = np.argsort(-s, kind="stable")
    members, non_members = order[y[order]], order[~y[order]]
    pos_asc, neg_asc = s[members][::-1], s[non_members][::-1]
    n_pos, n_neg = len(members), len(non_members)
    neg_above = n_neg - np.searchsorted(neg_asc, s[members], side="right")
    neg_at_or_above = n_neg - np.searchsorted(neg_asc, s[members], side="left")
    return _Ranked(
        members=members,
        non_members=non_members,
        neg_above=neg_above,
        neg_at_or_above=neg_at_or_above,
        pos_above=n_pos - np.searchsorted(pos_asc, s[non_members], side="right"),
        cross_ties=not np.array_equal(neg_above, neg_at_or_above),
    )


def _chunk_size(n_samples: int, max_chunk_bytes: int) -> int:
    return max(1, max_chunk_bytes // (_BYTES_PER_ELEMENT * max(n_samples, 1)))


def _draw_chunks(
    rng: np.random.Generator, n_resamples: int, n_pos: int, n_neg: int, chunk: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Stratified resamples, ``chunk`` at a time: member ranks (rows, n_pos) and non-member
    ranks (rows, n_neg), drawn with replacement.

    Members and non-members come from two child streams of ``rng``, each consumed in order,
    so one call per class and chunk draws the same numbers as one call per resample would:
    the resamples do not depend on the chunk size (a test holds numpy to this).
    """
    pos_rng, neg_rng = rng.spawn(2)
    for start in range(0, n_resamples, chunk):
        rows = min(chunk, n_resamples - start)
        yield (
            pos_rng.integers(0, n_pos, size=(rows, n_pos), dtype=np.int32),
            neg_rng.integers(0, n_neg, size=(rows, n_neg), dtype=np.int32),
        )


def resample_indices(
    labels: ArrayLike,
    scores: ArrayLike,
    n_resamples: int,
    random_state: int | np.random.Generator = 0,
    max_chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> Iterator[np.ndarray]:
    """The slow path: each stratified resample as indices into the original arrays.

    Yields exactly the resamples `bootstrap_replicates` uses for the same ``random_state``
    (members first, then non-members), so the plain metrics on ``labels[i], scores[i]``
    reproduce the vectorised replicates.
    """
    ranked = _rank(labels, scores)
    n_pos, n_neg = len(ranked.members), len(ranked.non_members)
    chunk = _chunk_size(n_pos + n_neg, max_chunk_bytes)
    for pos, neg in _draw_chunks(_generator(random_state), n_resamples, n_pos, n_neg, chunk):
        for row in range(len(pos)):
            yield np.r_[ranked.members[pos[row]], ranked.non_members[neg[row]]]


# --- vectorised bootstrap ---------------------------------------------------------------------


def _prefix_sums(counts: np.ndarray) -> np.ndarray:
    """Row-wise prefix sums with a leading 0: ``out[:, j]`` sums ``counts[:, :j]``."""
    prefix = np.zeros((len(counts), counts.shape[1] + 1), dtype=np.int64)
    np.cumsum(counts, axis=1, out=prefix[:, 1:])
    return prefix


def _twice_u(pos_counts: np.ndarray, neg_prefix: np.ndarray, ranked: _Ranked) -> np.ndarray:
    """2 x Mann-Whitney U per row, exact in int64.

    A member of rank i beats the non-members strictly below it and ties with those at its
    score: 2 * below + tied = 2N - above - at_or_above, weighted by its multiplicity (whose
    row sum is n_pos). Without cross-class ties, above == at_or_above: one gather suffices.
    """
    n_pos, n_neg = len(ranked.members), len(ranked.non_members)
    above = np.take(neg_prefix, ranked.neg_above, axis=1)
    beaten_twice = 2 * np.einsum("ij,ij->i", pos_counts, above)
    if ranked.cross_ties:
        at_or_above = np.take(neg_prefix, ranked.neg_at_or_above, axis=1)
        beaten_twice += np.einsum("ij,ij->i", pos_counts, at_or_above - above)
    return np.asarray(2 * n_pos * n_neg - beaten_twice)


def _tp_counts(
    pos_counts: np.ndarray, neg_prefix: np.ndarray, pos_above: np.ndarray, max_fp: Sequence[int]
) -> np.ndarray:
    """TP counts (len(max_fp), rows): per row, the members above the (k+1)-th highest
    non-member, which is the largest TP count with at most k false positives.

    Row r of the non-member prefix counts is shifted by r * (n_neg + 1), so one searchsorted
    over the flattened rows finds that non-member in every row; member prefix sums are then
    only needed up to the largest rank asked for.
    """
    rows, n_neg = len(pos_counts), len(pos_above)
    shift = np.arange(rows, dtype=np.int64) * (n_neg + 1)
    flat = (neg_prefix + shift[:, None]).ravel()
    needed = {
        k: pos_above[np.searchsorted(flat, k + 1 + shift, side="left") - shift - 1]
        for k in set(max_fp)
        if k < n_neg
    }
    width = max((int(m.max()) for m in needed.values()), default=0)
    pos_prefix = _prefix_sums(pos_counts[:, :width])
    full = np.full(rows, pos_counts.shape[1], dtype=np.int64)
    picked = {
        k: np.take_along_axis(pos_prefix, m[:, None], axis=1)[:, 0] for k, m in needed.items()
    }
    return np.array([picked.get(k, full) for k in max_fp], dtype=np.int64).reshape(-1, rows)


def _advantage(pos_counts: np.ndarray, neg_prefix: np.ndarray, ranked: _Ranked) -> np.ndarray:
    """max(TPR - FPR) per row, as `metrics.advantage` computes it on the resample.

    The best threshold lies just above some non-member's score (lowering it past members
    only adds true positives), so every candidate is "members strictly above non-member j"
    against "non-members ranked before j". Within a tie group of non-members the first one
    counts the right false positives and the others count more, so the maximum is exact; the
    candidates are real ROC points of the resample, and (0, 0) gives the floor 0.
    """
    n_pos, n_neg = len(ranked.members), len(ranked.non_members)
    tp = np.take(_prefix_sums(pos_counts), ranked.pos_above, axis=1)
    gap = tp / float(n_pos)
    gap -= neg_prefix[:, :n_neg] / float(n_neg)
    return np.asarray(np.maximum(gap.max(axis=1), 0.0))


def _histograms(draws: np.ndarray, size: int) -> np.ndarray:
    """Per row, the multiplicity of every rank: (rows, n) drawn ranks -> (rows, size).

    One bincount per block of rows whose histograms fit in ~512 KiB, so its scattered
    increments stay in cache.
    """
    counts = np.empty((len(draws), size), dtype=np.int64)
    block = max(1, _HISTOGRAM_BLOCK // size)
    for start in range(0, len(draws), block):
        part = draws[start : start + block]
        flat = part + (np.arange(len(part), dtype=np.int64) * size)[:, None]
        hist = np.bincount(flat.ravel(), minlength=len(part) * size)
        counts[start : start + block] = hist.reshape(len(part), size)
    return counts


def bootstrap_replicates(
    labels: ArrayLike,
    scores: ArrayLike,
    fprs: Sequence[float],
    *,
    n_resamples: int = 1000,
    random_state: int | np.random.Generator = 0,
    max_chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    with_advantage: bool = False,
) -> BootstrapReplicates:
    """AUC and TPR@FPR (and the advantage, when asked for) on ``n_resamples`` stratified
    resamples, vectorised in chunks.

    Chunks hold about ``max_chunk_bytes`` of working memory; the result does not depend on
    the chunk size. Bit-for-bit deterministic for an integer ``random_state``.
    """
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1 (got {n_resamples})")
    ranked = _rank(labels, scores)
    n_pos, n_neg = len(ranked.members), len(ranked.non_members)
    max_fp = [metrics.max_false_positives(f, n_neg) for f in fprs]
    chunk = _chunk_size(n_pos + n_neg, max_chunk_bytes)
    twice_u, tps, advantages = [], [], []
    for pos, neg in _draw_chunks(_generator(random_state), n_resamples, n_pos, n_neg, chunk):
        pos_counts, neg_prefix = _histograms(pos, n_pos), _prefix_sums(_histograms(neg, n_neg))
        twice_u.append(_twice_u(pos_counts, neg_prefix, ranked))
        tps.append(_tp_counts(pos_counts, neg_prefix, ranked.pos_above, max_fp))
        if with_advantage:
            advantages.append(_advantage(pos_counts, neg_prefix, ranked))
    auc = np.concatenate(twice_u) / (2.0 * n_pos * n_neg)
    tpr = np.concatenate(tps, axis=1) / float(n_pos)
    return BootstrapReplicates(
        auc=auc,
        tpr_at_fpr={f: tpr[i] for i, f in enumerate(fprs)},
        advantage=np.concatenate(advantages) if with_advantage else None,
    )


def percentile_interval(values: np.ndarray, level: float) -> tuple[float, float]:
    """The central ``level`` percentile interval of bootstrap replicates."""
    low, high = np.quantile(values, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return float(low), float(high)


def bootstrap_metrics(
    labels: ArrayLike,
    scores: ArrayLike,
    fprs: Sequence[float],
    *,
    n_resamples: int = 1000,
    level: float = 0.95,
    random_state: int | np.random.Generator = 0,
    with_advantage: bool = False,
) -> BootstrapResult:
    """Stratified percentile-bootstrap CIs for AUC and TPR at each FPR in ``fprs`` (and the
    advantage with ``with_advantage``).

    Each resample draws as many members (non-members) with replacement from the members
    (non-members) as there are, so both class sizes, and hence the FPR grid, stay fixed.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1) (got {level})")
    reps = bootstrap_replicates(
        labels,
        scores,
        fprs,
        n_resamples=n_resamples,
        random_state=random_state,
        with_advantage=with_advantage,
    )
    advantage = reps.advantage
    return BootstrapResult(
        level=level,
        n_resamples=n_resamples,
        auc=percentile_interval(reps.auc, level),
        tpr_at_fpr={f: percentile_interval(v, level) for f, v in reps.tpr_at_fpr.items()},
        advantage=None if advantage is None else percentile_interval(advantage, level),
    )
