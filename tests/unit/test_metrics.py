"""`mia_audit.metrics` against scikit-learn and direct slow implementations."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from mia_audit.evaluation import metrics

#: No deadline: the machine running the tests may be busy; the examples themselves are tiny.
FAST = settings(deadline=None, max_examples=100)

FEW_VALUES = (-1.0, 0.0, 0.5, 2.0)


@st.composite
def audits(draw: st.DrawFn, max_size: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """(labels, scores) with both classes: tiny sizes, heavy ties or continuous scores."""
    n = draw(st.integers(2, max_size))
    n_members = draw(st.integers(1, n - 1))
    labels = draw(st.permutations([1] * n_members + [0] * (n - n_members)))
    value = st.one_of(
        st.sampled_from(FEW_VALUES),
        st.integers(-3, 3).map(float),
        st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
    )
    kind = draw(st.sampled_from(["few", "any"]))
    element = st.sampled_from(FEW_VALUES) if kind == "few" else value
    scores = draw(st.lists(element, min_size=n, max_size=n))
    return np.array(labels), np.array(scores, dtype=np.float64)


def step(roc_fpr: np.ndarray, roc_tpr: np.ndarray, fpr: float) -> float:
    """Slow reference: the largest TPR among ROC points with FPR <= fpr."""
    allowed = roc_tpr[roc_fpr <= fpr]
    return float(allowed.max()) if len(allowed) else 0.0


# --- against scikit-learn ---------------------------------------------------------------------


@FAST
@given(audits())
def test_roc_curve_equals_sklearn(data: tuple[np.ndarray, np.ndarray]) -> None:
    labels, scores = data
    roc = metrics.roc_curve(labels, scores)
    fpr, tpr, thresholds = skm.roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_array_equal(roc.fpr, fpr)
    np.testing.assert_array_equal(roc.tpr, tpr)
    np.testing.assert_array_equal(roc.thresholds, thresholds)


@FAST
@given(audits())
def test_auc_equals_sklearn(data: tuple[np.ndarray, np.ndarray]) -> None:
    labels, scores = data
    assert metrics.auc(labels, scores) == pytest.approx(
        skm.roc_auc_score(labels, scores), rel=1e-12, abs=1e-15
    )


@FAST
@given(audits(), st.data())
def test_tpr_at_fpr_equals_slow_reference(
    data: tuple[np.ndarray, np.ndarray], pick: st.DataObject
) -> None:
    labels, scores = data
    n_negatives = int((labels == 0).sum())
    fpr = pick.draw(
        st.one_of(
            st.floats(0.0, 1.0),
            st.sampled_from([0.0, 0.001, 0.01, 0.05, 1.0]),
            st.integers(0, n_negatives).map(lambda k: k / n_negatives),  # exactly on a point
        )
    )
    sk_fpr, sk_tpr, _ = skm.roc_curve(labels, scores, drop_intermediate=False)
    assert metrics.tpr_at_fpr(labels, scores, fpr) == step(sk_fpr, sk_tpr, fpr)


@FAST
@given(audits())
def test_tpr_at_fprs_equals_one_at_a_time(data: tuple[np.ndarray, np.ndarray]) -> None:
    labels, scores = data
    fprs = [0.0, 0.001, 0.05, 0.3, 1.0]
    many = metrics.tpr_at_fprs(labels, scores, fprs)
    assert list(many) == fprs
    assert many == {f: metrics.tpr_at_fpr(labels, scores, f) for f in fprs}


@settings(deadline=None, max_examples=40)
@given(audits(max_size=30))
def test_balanced_accuracy_equals_sklearn_at_best_threshold(
    data: tuple[np.ndarray, np.ndarray],
) -> None:
    labels, scores = data
    _, _, thresholds = skm.roc_curve(labels, scores, drop_intermediate=False)
    best = max(skm.balanced_accuracy_score(labels, scores >= t) for t in thresholds)
    assert metrics.balanced_accuracy(labels, scores) == pytest.approx(best, abs=1e-12)


@FAST
@given(audits())
def test_advantage_is_max_tpr_minus_fpr(data: tuple[np.ndarray, np.ndarray]) -> None:
    labels, scores = data
    fpr, tpr, _ = skm.roc_curve(labels, scores, drop_intermediate=False)
    value = metrics.advantage(labels, scores)
    assert value == pytest.approx(float(np.max(tpr - fpr)), abs=1e-12)
    assert 0.0 <= value <= 1.0
    assert value == pytest.approx(2 * metrics.balanced_accuracy(labels, scores) - 1, abs=1e-12)


def test_known_values() -> None:
    labels = np.array([1, 1, 0, 1, 0, 0])
    scores = np.array([0.9, 0.8, 0.8, 0.4, 0.3, 0.1])
    # member/non-member pairs: 9 total; won 7, tied 1 (0.8 vs 0.8) -> (7 + 0.5) / 9
    assert metrics.auc(labels, scores) == pytest.approx(7.5 / 9)
    assert metrics.tpr_at_fpr(labels, scores, 0.0) == pytest.approx(1 / 3)
    assert metrics.tpr_at_fpr(labels, scores, 1 / 3) == pytest.approx(1.0)
    assert metrics.advantage(labels, scores) == pytest.approx(2 / 3)


def test_label_encodings_agree() -> None:
    rng = np.random.default_rng(0)
    ints = rng.integers(0, 2, 50)
    ints[:2] = [0, 1]
    scores = rng.normal(size=50)
    expected = metrics.auc(ints, scores)
    assert metrics.auc(ints.astype(bool), scores) == expected
    assert metrics.auc(ints.astype(np.float32), scores) == expected
    assert metrics.auc(list(ints), list(scores)) == expected


# --- max_false_positives ----------------------------------------------------------------------


@FAST
@given(st.integers(1, 10_000), st.floats(0.0, 1.0))
def test_max_false_positives_is_the_float_comparison(n_negatives: int, fpr: float) -> None:
    k = metrics.max_false_positives(fpr, n_negatives)
    assert 0 <= k <= n_negatives
    assert k / n_negatives <= fpr
    assert k == n_negatives or (k + 1) / n_negatives > fpr


# --- downsample_roc ---------------------------------------------------------------------------


def _big_roc(seed: int, ties: bool) -> metrics.RocCurve:
    rng = np.random.default_rng(seed)
    labels = np.r_[np.ones(20_000, int), np.zeros(30_000, int)]
    scores = rng.normal(size=50_000) + 0.8 * labels
    return metrics.roc_curve(labels, np.round(scores, 1) if ties else scores)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("n_points", [4, 10, 57, 400])
def test_downsample_roc_keeps_exact_points(ties: bool, n_points: int) -> None:
    roc = _big_roc(1, ties)
    small = metrics.downsample_roc(roc, n_points=n_points)
    assert 2 <= len(small.fpr) <= n_points
    assert (small.fpr[0], small.tpr[0], small.thresholds[0]) == (0.0, 0.0, np.inf)
    assert (small.fpr[-1], small.tpr[-1]) == (1.0, 1.0)
    assert np.all(np.diff(small.fpr) >= 0) and np.all(np.diff(small.tpr) >= 0)
    assert np.all(np.diff(small.thresholds) < 0)
    for f, t in zip(small.fpr[1:], small.tpr[1:], strict=True):
        assert t == step(roc.fpr, roc.tpr, f)  # on the exact step function
    exact = {(f, t, th) for f, t, th in zip(roc.fpr, roc.tpr, roc.thresholds, strict=True)}
    kept = zip(small.fpr, small.tpr, small.thresholds, strict=True)
    assert all(point in exact for point in kept)  # actual vertices, thresholds included


def test_downsample_roc_resolves_low_fpr_for_log_axes() -> None:
    roc = _big_roc(2, ties=False)
    small = metrics.downsample_roc(roc, n_points=400, min_fpr=1e-4)
    for decade in (1e-4, 1e-3, 1e-2, 1e-1):
        in_decade = (small.fpr >= decade) & (small.fpr < 10 * decade)
        assert in_decade.sum() >= 20, decade
    # and the linear part is covered too: no FPR gap wider than a few linear grid steps
    assert np.max(np.diff(small.fpr)) < 4 / 200


def test_downsample_roc_small_input_keeps_every_step() -> None:
    roc = metrics.roc_curve([0, 1, 0, 1, 1, 0], [0.1, 0.4, 0.35, 0.8, 0.9, 0.05])
    small = metrics.downsample_roc(roc)
    # (0, 0), then the tops of the vertical runs at FPR 0, 1/3, 2/3 and 1
    np.testing.assert_array_equal(small.fpr, [0, 0, 1 / 3, 2 / 3, 1])
    np.testing.assert_array_equal(small.tpr, [0, 1, 1, 1, 1])
    np.testing.assert_array_equal(small.thresholds, [np.inf, 0.4, 0.35, 0.1, 0.05])


@pytest.mark.parametrize(("n_points", "min_fpr"), [(3, 1e-5), (400, 0.0), (400, 1.0)])
def test_downsample_roc_rejects_bad_arguments(n_points: int, min_fpr: float) -> None:
    with pytest.raises(ValueError):
        metrics.downsample_roc(_big_roc(0, False), n_points=n_points, min_fpr=min_fpr)


# --- fpr_key and support ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fpr", "key"),
    [
        (0.05, "0.05"),
        (0.001, "0.001"),
        (0.0, "0"),
        (0, "0"),
        (-0.0, "0"),
        (1e-5, "0.00001"),
        (1.0, "1"),
        (0.1, "0.1"),
        (2.5e-7, "0.00000025"),
    ],
)
def test_fpr_key(fpr: float, key: str) -> None:
    assert metrics.fpr_key(fpr) == key


@FAST
@given(st.floats(0.0, 1.0))
def test_fpr_key_round_trips_without_exponent(fpr: float) -> None:
    key = metrics.fpr_key(fpr)
    assert "e" not in key.lower()
    assert float(key) == fpr


@pytest.mark.parametrize("fpr", [-0.01, 1.01, math.nan, math.inf])
def test_fpr_key_rejects_non_rates(fpr: float) -> None:
    with pytest.raises(ValueError, match="FPR"):
        metrics.fpr_key(fpr)


@pytest.mark.parametrize(
    ("fpr", "needed"),
    [(0.05, 200), (0.01, 1000), (0.001, 10_000), (0.1, 100), (0.07, 143), (0.5, 20), (1.0, 10)],
)
def test_min_negatives_for_fpr(fpr: float, needed: int) -> None:
    assert metrics.min_negatives_for_fpr(fpr) == needed
    assert metrics.is_fpr_supported(needed, fpr)
    assert not metrics.is_fpr_supported(needed - 1, fpr)


@FAST
@given(st.floats(1e-6, 1.0), st.integers(1, 50))
def test_min_negatives_is_the_support_boundary(fpr: float, min_fp: int) -> None:
    needed = metrics.min_negatives_for_fpr(fpr, min_false_positives=min_fp)
    assert metrics.is_fpr_supported(needed, fpr, min_false_positives=min_fp)
    assert not metrics.is_fpr_supported(needed - 1, fpr, min_false_positives=min_fp)


def test_fpr_zero_is_never_supported() -> None:
    assert not metrics.is_fpr_supported(10**12, 0.0)
    with pytest.raises(ValueError, match="never supported"):
        metrics.min_negatives_for_fpr(0.0)


def test_support_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        metrics.is_fpr_supported(-1, 0.05)
    with pytest.raises(ValueError):
        metrics.is_fpr_supported(100, 0.05, min_false_positives=0)
    with pytest.raises(ValueError):
        metrics.min_negatives_for_fpr(1.5)


# --- input validation -------------------------------------------------------------------------

GOOD_LABELS = [1, 0, 1, 0]
GOOD_SCORES = [0.1, 0.2, 0.3, 0.4]


@pytest.mark.parametrize(
    ("labels", "scores", "message"),
    [
        ([1, 0, 1], GOOD_SCORES, "length"),
        ([[1, 0], [1, 0]], [[0.1, 0.2], [0.3, 0.4]], "1-D"),
        ([1, 0, 2, 0], GOOD_SCORES, "0 \\(non-member\\) or 1"),
        ([1, 0, -1, 0], GOOD_SCORES, "0 \\(non-member\\) or 1"),
        (["a", "b", "a", "b"], GOOD_SCORES, "0 \\(non-member\\) or 1"),
        ([1, 1, 1, 1], GOOD_SCORES, "both members and non-members"),
        ([0, 0, 0, 0], GOOD_SCORES, "both members and non-members"),
        ([], [], "both members and non-members"),
        (GOOD_LABELS, [0.1, math.nan, 0.3, 0.4], "finite"),
        (GOOD_LABELS, [0.1, math.inf, 0.3, 0.4], "finite"),
        (GOOD_LABELS, ["a", "b", "c", "d"], "numeric"),
    ],
)
@pytest.mark.parametrize(
    "metric",
    [metrics.roc_curve, metrics.auc, metrics.balanced_accuracy, metrics.advantage],
)
def test_invalid_inputs_raise(
    labels: object, scores: object, message: str, metric: Callable[[Any, Any], object]
) -> None:
    with pytest.raises(ValueError, match=message):
        metric(labels, scores)


@pytest.mark.parametrize("fpr", [-0.1, 1.5, math.nan])
def test_tpr_at_fpr_rejects_non_rates(fpr: float) -> None:
    with pytest.raises(ValueError, match="FPR"):
        metrics.tpr_at_fpr(GOOD_LABELS, GOOD_SCORES, fpr)
    with pytest.raises(ValueError, match="FPR"):
        metrics.tpr_at_fprs(GOOD_LABELS, GOOD_SCORES, [0.05, fpr])
