"""Per-sample membership signals computed from logits (pure numpy, float64).

Every function takes logits of shape (..., n, C) and, where needed, integer labels of shape (n,)
and returns one value per sample, shape (..., n). All are computed from log-probabilities so that
confident predictions (p close to 1) do not round to log(0).
"""

from __future__ import annotations

import numpy as np

FloatArray = np.ndarray


def log_softmax(logits: np.ndarray) -> FloatArray:
    """log p_k = (z_k - z_max) - log1p(sum over the other classes of exp(z_j - z_max)).

    The top class's exp(0) = 1 is taken out of the sum, so log p of a confident prediction is
    -(the rest) and not log(1 + rest), which rounds to exactly 0 once the margin passes ~37.
    Exact to float64 rounding until the rest underflows (margins beyond ~745).
    """
    z = np.asarray(logits, dtype=np.float64)
    top = z.argmax(axis=-1)[..., None]
    shifted = z - np.take_along_axis(z, top, axis=-1)
    rest = np.exp(shifted)
    np.put_along_axis(rest, top, 0.0, axis=-1)
    return shifted - np.log1p(rest.sum(axis=-1, keepdims=True))


def _take_label(values: np.ndarray, labels: np.ndarray) -> FloatArray:
    index = np.broadcast_to(np.asarray(labels)[..., None], (*values.shape[:-1], 1))
    return np.take_along_axis(values, index, axis=-1)[..., 0]


def _without_label(values: np.ndarray, labels: np.ndarray, fill: float) -> FloatArray:
    """Copy of values with the true-label entry replaced by `fill`."""
    out = np.array(values, dtype=np.float64, copy=True)
    index = np.broadcast_to(np.asarray(labels)[..., None], (*out.shape[:-1], 1))
    np.put_along_axis(out, index, fill, axis=-1)
    return out


def _logsumexp_parts(values: np.ndarray) -> tuple[FloatArray, FloatArray]:
    """log sum exp over the last axis as (top, tail), their sum the result: the top term's
    exp(0) = 1 is taken out of the sum (tail = log1p of the rest), as in `log_softmax`, and
    kept apart so a caller subtracting a number close to `top` loses no digits."""
    index = values.argmax(axis=-1)[..., None]
    top = np.take_along_axis(values, index, axis=-1)
    present = np.isfinite(top)
    top = np.where(present, top, 0.0)
    rest = np.exp(values - top)
    np.put_along_axis(rest, index, 0.0, axis=-1)
    with np.errstate(divide="ignore"):
        tail = np.where(present, np.log1p(rest.sum(axis=-1, keepdims=True)), -np.inf)
    return top[..., 0], tail[..., 0]


def _logsumexp(values: np.ndarray) -> FloatArray:
    top, tail = _logsumexp_parts(values)
    return top + tail


def log1mexp(log_p: np.ndarray) -> FloatArray:
    """log(1 - exp(log_p)) for log_p <= 0, accurate on both ends (Mächler 2012)."""
    log_p = np.minimum(np.asarray(log_p, dtype=np.float64), 0.0)
    with np.errstate(divide="ignore"):
        return np.where(log_p > -np.log(2.0), np.log(-np.expm1(log_p)), np.log1p(-np.exp(log_p)))


def true_class_log_probability(logits: np.ndarray, labels: np.ndarray) -> FloatArray:
    return _take_label(log_softmax(logits), labels)


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> FloatArray:
    """-log p_y: the loss attack's statistic (Yeom et al. 2018), lower for members."""
    return -true_class_log_probability(logits, labels)


def true_class_probability(logits: np.ndarray, labels: np.ndarray) -> FloatArray:
    """p_y (rounds to 1 once the margin passes ~37: rank by its logarithm instead)."""
    return np.exp(true_class_log_probability(logits, labels))


def entropy(logits: np.ndarray) -> FloatArray:
    """Shannon entropy of the softmax (nats)."""
    log_p = log_softmax(logits)
    return -(np.exp(log_p) * log_p).sum(axis=-1)


def scaled_logit(logits: np.ndarray, labels: np.ndarray) -> FloatArray:
    """log p_y - log(1 - p_y) = z_y - logsumexp_{y' != y} z_y', computed without cancellation.

    LiRA's statistic: it is close to Gaussian across models, unlike p_y itself.
    """
    z = np.asarray(logits, dtype=np.float64)
    top, tail = _logsumexp_parts(_without_label(z, labels, -np.inf))
    return (_take_label(z, labels) - top) - tail


def hinge_margin(logits: np.ndarray, labels: np.ndarray) -> FloatArray:
    """z_y - max_{y' != y} z_y' (the hinge form of the logit margin)."""
    z = np.asarray(logits, dtype=np.float64)
    return _take_label(z, labels) - _without_label(z, labels, -np.inf).max(axis=-1)


def _log_one_minus_probabilities(logits: np.ndarray) -> FloatArray:
    """log(1 - p_k) for every class k, exact also where p_k rounds to 1.

    For the (at most one) class with p_k > 1/2, 1 - p_k is the sum of the other probabilities,
    taken as a logsumexp of their logits; elsewhere log1p(-p_k) is accurate.
    """
    z = np.asarray(logits, dtype=np.float64)
    log_p = log_softmax(z)
    with np.errstate(divide="ignore"):  # p_k == 1 gives -inf here; replaced exactly below
        result = np.log1p(-np.exp(np.minimum(log_p, 0.0)))
    top = z.argmax(axis=-1)
    log_rest = _logsumexp(_without_label(z, top, -np.inf)) - _logsumexp(z)
    index = top[..., None]
    top_log_p = np.take_along_axis(log_p, index, axis=-1)[..., 0]
    with np.errstate(divide="ignore"):
        exact_top = np.where(top_log_p > -np.log(2.0), log_rest, np.log1p(-np.exp(top_log_p)))
    np.put_along_axis(result, index, exact_top[..., None], axis=-1)
    return result


def modified_entropy(logits: np.ndarray, labels: np.ndarray) -> FloatArray:
    """Song & Mittal's Mentr = -(1 - p_y) log p_y - sum_{y' != y} p_y' log(1 - p_y').

    Low for confident correct predictions, high for confident wrong ones; uses the label.
    """
    log_p = log_softmax(logits)
    p = np.exp(log_p)
    log_one_minus = _log_one_minus_probabilities(logits)
    log_p_y = _take_label(log_p, labels)
    one_minus_p_y = np.exp(_take_label(log_one_minus, labels))
    others = _without_label(p * log_one_minus, labels, 0.0).sum(axis=-1)
    return -one_minus_p_y * log_p_y - others


def true_class_rank(logits: np.ndarray, labels: np.ndarray) -> FloatArray:
    """0 when the true class has the largest logit, 1 when it is second, ..."""
    z = np.asarray(logits, dtype=np.float64)
    return (z > _take_label(z, labels)[..., None]).sum(axis=-1).astype(np.float64)


def is_correct(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return np.asarray(logits).argmax(axis=-1) == np.asarray(labels)
