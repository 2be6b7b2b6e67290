"""Direct, slow implementations that the fast code is tested against: explicit loops over samples
and queries, scipy.stats.norm (LiRA, Carlini et al. 2022)."""

from __future__ import annotations

import numpy as np
from scipy import stats

from mia_audit.attacks.scoring.lira import (
    VARIANCE_FLOOR,
    Variance,
)

Array = np.ndarray


def _pooled(ref: Array, side: Array, k: int) -> float | None:
    squares, dof = 0.0, 0
    for i in range(ref.shape[1]):
        values = ref[side[:, i], i, k]
        if len(values) >= 2:
            squares += float(((values - values.mean()) ** 2).sum())
            dof += len(values) - 1
    return squares / dof if dof else None


def _global(ref: Array, side: Array, other: Array | None, k: int) -> float:
    value = _pooled(ref, side, k)
    if value is None and other is not None:
        value = _pooled(ref, other, k)
    if value is None:
        used = side if other is None else side | other
        value = float(np.var(ref[:, :, k][used]))
    return max(value, VARIANCE_FLOOR)


def _variance(
    ref: Array, side: Array, other: Array | None, i: int, k: int, variance: Variance
) -> float:
    values = ref[side[:, i], i, k]
    if variance == "per_example" and len(values) >= 2:
        return max(float(np.var(values, ddof=1)), VARIANCE_FLOOR)
    return _global(ref, side, other, k)


def direct_online(target: Array, reference: Array, in_mask: Array, variance: Variance) -> Array:
    n, q = target.shape
    out_mask = ~in_mask
    both = [i for i in range(n) if in_mask[:, i].any() and out_mask[:, i].any()]
    shift = [
        np.mean(
            [
                np.median(reference[in_mask[:, i], i, k])
                - np.median(reference[out_mask[:, i], i, k])
                for i in both
            ]
        )
        for k in range(q)
    ]
    scores = np.empty(n)
    for i in range(n):
        ratios = []
        for k in range(q):
            ins, outs = reference[in_mask[:, i], i, k], reference[out_mask[:, i], i, k]
            mu_in = np.median(ins) if len(ins) else np.median(outs) + shift[k]
            mu_out = np.median(outs) if len(outs) else np.median(ins) - shift[k]
            var_in = _variance(reference, in_mask, out_mask, i, k, variance)
            var_out = _variance(reference, out_mask, in_mask, i, k, variance)
            ratios.append(
                stats.norm.logpdf(target[i, k], mu_in, np.sqrt(var_in))
                - stats.norm.logpdf(target[i, k], mu_out, np.sqrt(var_out))
            )
        scores[i] = np.mean(ratios)
    return scores


def direct_offline(target: Array, reference: Array, out_mask: Array, variance: Variance) -> Array:
    n, q = target.shape
    scores = np.empty(n)
    for i in range(n):
        tests = []
        for k in range(q):
            mu = np.median(reference[out_mask[:, i], i, k])
            sd = np.sqrt(_variance(reference, out_mask, None, i, k, variance))
            # log-odds of the one-sided test: log Pr[Z < phi] - log Pr[Z > phi]
            tests.append(
                stats.norm.logcdf(target[i, k], mu, sd) - stats.norm.logsf(target[i, k], mu, sd)
            )
        scores[i] = np.mean(tests)
    return scores


