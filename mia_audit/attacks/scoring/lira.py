"""LiRA scores: Gaussian likelihood-ratio tests on the scaled logit (Carlini et al. 2022).

Every function receives the per-example statistic φ = log p_y - log(1 - p_y) (computed
elsewhere, e.g. :func:`mia_audit.attacks.signals.scaled_logit`), of the target model, shape
(n, q), and
of m reference models on the same n samples and q queries, shape (m, n, q), plus a boolean mask
(m, n) saying which reference model saw which sample. Scores are one float per sample, higher =
more likely a member, always finite.

Estimators, and where they differ from the public reference code
(tensorflow/privacy ``research/mi_lira_2021/plot.py``):

* Location: the median of a sample's IN (resp. OUT) φ per query, as the reference code does
  (``np.median``). It is robust to one badly trained reference model and equals the mean for
  two models.
* Per-example variance: the unbiased sample variance (ddof=1) over that sample's IN (resp. OUT)
  models, per query. The reference code uses ``np.std`` (ddof=0); with the 2-16 models a CI run
  can afford, ddof=0 shrinks the variance by up to half and over-trusts the fit.
* Global ("fixed") variance: the *pooled within-example* variance, per query and per side,
  Σ_i Σ_{j∈side(i)} (φ_ij - φ̄_i)² / Σ_i (k_i - 1). That is what a variance shared by all
  examples should estimate: the spread of φ across models *for a fixed example*. The reference
  code instead takes ``np.std`` of the whole (examples x models x queries) array, which is
  dominated by the spread of difficulty *between* examples, and it uses the IN array for the
  OUT side too (``std_out = np.std(dat_in)``). There the value cancels out of the ranking (one
  scalar shared by both Gaussians and all queries makes the log-ratio linear in φ); here IN and
  OUT and each query have their own variance, so the estimate has to be the right one.
* IN and OUT have their own variance, as in the paper, so the online log-ratio is quadratic in
  φ: where sigma_in != sigma_out one tail turns back (far below the OUT mean scores high when
  sigma_in > sigma_out; far above the IN mean scores low when sigma_in < sigma_out). The
  reference code's fixed-variance mode shares one sigma between the sides, which makes its
  log-ratio linear in φ.
* Queries: the mean over queries of the per-query statistic, as the reference code does
  (``score.mean(1)``); the paper's independent-queries Gaussian gives the same ranking.
* Offline: one-sided, the paper's Eq. 4 (Λ = Pr[Z < φ], Z ~ N(μ_out, sigma_out²)). Public code
  (including the reference code and privacy-meter's research LiRA) scores the two-sided density
  -log N(φ; μ_out, sigma_out²), which also flags samples far *below* the OUT distribution.

Fallbacks (so that every sample gets a finite score):

* A sample with fewer than 2 models on a side uses that side's global variance (per-example
  mode); the global variance of a side with no sample of 2+ models is the other side's, then
  the total variance of φ over all samples and models of that query (the reference code's
  estimate, the only one left), then :data:`VARIANCE_FLOOR`.
* Online, a sample with no IN (resp. no OUT) model gets μ_in = μ_out + δ (resp.
  μ_out = μ_in - δ), where δ is the mean IN-OUT shift of the samples that have both: the global
  analogue of the fixed variance. Falling back to the offline test instead would put those
  samples on another scale (a log-CDF, not a log-likelihood ratio) and make the ranking of the
  mix arbitrary.
* Variances are floored at :data:`VARIANCE_FLOOR` (φ² units), so that identical reference
  values (e.g. saturated logits) give large but finite scores.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
IntArray = NDArray[np.int64]
Variance = Literal["global", "per_example"]

VARIANCE_FLOOR = 1e-12
"""Smallest variance used in a Gaussian fit (φ² units): keeps degenerate fits finite."""

_VARIANCES = ("global", "per_example")


def lira_online(
    target: np.ndarray,
    reference: np.ndarray,
    in_mask: np.ndarray,
    *,
    variance: Variance = "global",
) -> FloatArray:
    """Online LiRA: mean over queries of log N(φ; μ_in, sigma_in²) - log N(φ; μ_out, sigma_out²).

    Args:
        target: φ of the target model, shape (n, q).
        reference: φ of the reference models, shape (m, n, q).
        in_mask: (m, n) bool, True where sample i was in model j's training set.
        variance: ``"global"`` (one pooled variance per query and side; the paper's choice
            under 64 reference models) or ``"per_example"``.

    Returns:
        (n,) scores, higher = more likely a member.

    Raises:
        ValueError: on mismatched shapes, non-finite φ, or when no sample has both an IN and an
            OUT model (the online test needs both; use :func:`lira_offline`).
    """
    phi, ref, mask = _validate(target, reference, in_mask, "in_mask")
    _check_variance(variance)
    both: BoolArray = np.asarray(mask.any(axis=0) & (~mask).any(axis=0))
    if not both.any():
        raise ValueError(
            "lira_online needs at least one sample with both an IN and an OUT reference model; "
            "with OUT models only use lira_offline"
        )
    mu_in, mu_out = _impute_means(_masked_median(ref, mask), _masked_median(ref, ~mask), both)
    var_in, var_out = _side_variances(ref, mask, variance)
    llr = _gaussian_logpdf(phi, mu_in, var_in) - _gaussian_logpdf(phi, mu_out, var_out)
    return np.asarray(llr.mean(axis=1), dtype=np.float64)


def lira_offline(
    target: np.ndarray,
    reference: np.ndarray,
    out_mask: np.ndarray,
    *,
    variance: Variance = "global",
) -> FloatArray:
    """Offline LiRA, one-sided (Eq. 4): how far *above* N(μ_out, sigma_out²) the target's φ lies.

    Per query the statistic is logit(Φ(t)) = log Φ(t) - log Φ(-t) with t = (φ - μ_out)/sigma_out:
    a strictly increasing function of the Gaussian CDF that stays distinct on both tails (log Φ
    alone rounds to 0 above t ≈ 38, where the members one wants to rank are). Scores are the
    mean over queries.

    Args:
        target: φ of the target model, shape (n, q).
        reference: φ of the reference models, shape (m, n, q).
        out_mask: (m, n) bool, True where sample i was *not* in model j's training set; models
            that saw a sample are ignored for that sample.
        variance: ``"global"`` or ``"per_example"`` (see the module docstring).

    Returns:
        (n,) scores, higher = more likely a member.

    Raises:
        ValueError: on mismatched shapes, non-finite φ, or a sample with no OUT model.
    """
    from scipy.special import log_ndtr

    phi, ref, mask = _validate(target, reference, out_mask, "out_mask")
    _check_variance(variance)
    empty = ~mask.any(axis=0)
    if empty.any():
        raise ValueError(
            f"lira_offline: {int(empty.sum())} sample(s) have no OUT reference model "
            f"(first index {int(np.argmax(empty))}); every sample needs at least one"
        )
    mu_out = _masked_median(ref, mask)
    global_var = _global_variance(ref, mask, None)
    if variance == "per_example":
        var_out = _per_example_variance(ref, mask, global_var)
    else:
        var_out = np.broadcast_to(global_var, phi.shape)
    t = (phi - mu_out) / np.sqrt(var_out)
    log_odds = log_ndtr(t) - log_ndtr(-t)
    return np.asarray(log_odds.mean(axis=1), dtype=np.float64)


def _validate(
    target: np.ndarray, reference: np.ndarray, mask: np.ndarray, mask_name: str
) -> tuple[FloatArray, FloatArray, BoolArray]:
    """Shapes (n, q), (m, n, q), (m, n); finite float64 φ; a boolean mask."""
    phi = np.asarray(target, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    raw_mask = np.asarray(mask)
    if phi.ndim != 2 or phi.shape[0] == 0 or phi.shape[1] == 0:
        raise ValueError(f"target must have shape (n, q) with n, q >= 1, got {phi.shape}")
    if ref.ndim != 3 or ref.shape[0] == 0 or ref.shape[1:] != phi.shape:
        raise ValueError(
            f"reference must have shape (m, n, q) = (m, *{phi.shape}) with m >= 1, got {ref.shape}"
        )
    if raw_mask.shape != ref.shape[:2]:
        raise ValueError(
            f"{mask_name} must have shape (m, n) = {ref.shape[:2]}, got {raw_mask.shape}"
        )
    if raw_mask.dtype != np.bool_:
        raise ValueError(f"{mask_name} must be a boolean array, got dtype {raw_mask.dtype}")
    if not (np.isfinite(phi).all() and np.isfinite(ref).all()):
        raise ValueError("target and reference must be finite (no NaN or inf)")
    return phi, ref, raw_mask


def _check_variance(variance: str) -> None:
    if variance not in _VARIANCES:
        raise ValueError(f"variance must be one of {_VARIANCES}, got {variance!r}")


def _masked_median(values: FloatArray, mask: BoolArray) -> FloatArray:
    """Median over axis 0 of (m, n, q) values where mask (m, n) is True; NaN with no model.

    Vectorised for ragged masks: masked-out entries become NaN, which ``np.sort`` puts last,
    and the middle one or two of each sample's k valid entries are picked.
    """
    ordered = np.sort(np.where(mask[:, :, None], values, np.nan), axis=0)
    count = mask.sum(axis=0)
    low = _take_rank(ordered, np.maximum(count - 1, 0) // 2)
    high = _take_rank(ordered, count // 2)
    return np.where(count[:, None] > 0, 0.5 * (low + high), np.nan)


def _take_rank(ordered: FloatArray, rank: IntArray) -> FloatArray:
    """ordered[rank[i], i, :] for every sample i: (m, n, q), (n,) -> (n, q)."""
    index = np.broadcast_to(rank[None, :, None], (1, *ordered.shape[1:]))
    return np.asarray(np.take_along_axis(ordered, index, axis=0)[0], dtype=np.float64)


def _sum_squares(values: FloatArray, mask: BoolArray) -> tuple[FloatArray, IntArray]:
    """Σ (φ - φ̄)² over each sample's masked models, shape (n, q), and the counts k, shape (n,)."""
    weight = mask[:, :, None].astype(np.float64)
    count = mask.sum(axis=0).astype(np.int64)
    mean = (weight * values).sum(axis=0) / np.maximum(count, 1)[:, None]
    return (weight * (values - mean) ** 2).sum(axis=0), count


def _pooled_variance(values: FloatArray, mask: BoolArray) -> FloatArray:
    """Pooled within-example variance per query, shape (q,); NaN with no sample of 2+ models."""
    squares, count = _sum_squares(values, mask)
    dof = np.maximum(count - 1, 0).sum()
    if dof == 0:
        return np.full(values.shape[2], np.nan)
    return np.asarray(squares.sum(axis=0) / dof, dtype=np.float64)


def _global_variance(values: FloatArray, mask: BoolArray, other: BoolArray | None) -> FloatArray:
    """One variance per query for a side: pooled, else the other side's, else the total.

    The total is the variance of every used φ of that query (across samples and models).
    """
    pooled = _pooled_variance(values, mask)
    if other is not None:
        pooled = np.where(np.isnan(pooled), _pooled_variance(values, other), pooled)
    used = mask if other is None else mask | other
    total = values[used].var(axis=0)
    return np.maximum(np.where(np.isnan(pooled), total, pooled), VARIANCE_FLOOR)


def _per_example_variance(values: FloatArray, mask: BoolArray, fallback: FloatArray) -> FloatArray:
    """Sample variance (ddof=1) per sample and query; the global one below 2 models."""
    squares, count = _sum_squares(values, mask)
    own = squares / np.maximum(count - 1, 1)[:, None]
    variance = np.where(count[:, None] >= 2, own, fallback[None, :])
    return np.maximum(variance, VARIANCE_FLOOR)


def _side_variances(
    values: FloatArray, in_mask: BoolArray, variance: str
) -> tuple[FloatArray, FloatArray]:
    """(n, q) IN and OUT variances under the chosen setting."""
    out_mask = ~in_mask
    global_in = _global_variance(values, in_mask, out_mask)
    global_out = _global_variance(values, out_mask, in_mask)
    shape = values.shape[1:]
    if variance == "global":
        return np.broadcast_to(global_in, shape), np.broadcast_to(global_out, shape)
    return (
        _per_example_variance(values, in_mask, global_in),
        _per_example_variance(values, out_mask, global_out),
    )


def _impute_means(
    mu_in: FloatArray, mu_out: FloatArray, both: BoolArray
) -> tuple[FloatArray, FloatArray]:
    """Fill a missing side's mean with the other side's shifted by the mean IN-OUT shift δ."""
    shift = (mu_in[both] - mu_out[both]).mean(axis=0)
    filled_in = np.where(np.isnan(mu_in), mu_out + shift, mu_in)
    filled_out = np.where(np.isnan(mu_out), mu_in - shift, mu_out)
    return filled_in, filled_out


def _gaussian_logpdf(x: FloatArray, mean: FloatArray, variance: FloatArray) -> FloatArray:
    """log N(x; mean, variance), elementwise."""
    return np.asarray(
        -0.5 * ((x - mean) ** 2 / variance + np.log(2.0 * np.pi * variance)), dtype=np.float64
    )
