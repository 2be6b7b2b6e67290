"""The confusion matrix at the gate's operating point, against a direct count on random scores,
and the precision-recall points the HTML report draws, against scikit-learn."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import precision_recall_curve

from mia_audit.evaluation import metrics
from mia_audit.evaluation.operating_point import operating_point
from mia_audit.reports.plots import Curve, precision_recall

cases = st.tuples(st.integers(0, 2**32 - 1), st.integers(2, 80), st.integers(2, 80))


def random_case(seed: int, n_pos: int, n_neg: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    is_member = np.r_[np.ones(n_pos, bool), np.zeros(n_neg, bool)]
    scores = np.round(rng.normal(size=n_pos + n_neg) + is_member, 1)  # ties included
    return is_member, scores


@settings(max_examples=200, deadline=None)
@given(cases, st.sampled_from([None, 0.0, 0.01, 0.05, 0.3, 1.0]))
def test_counts_are_those_of_the_threshold(case: tuple[int, int, int], fpr: float | None) -> None:
    is_member, scores = random_case(*case)
    point = operating_point(is_member, scores, fpr)

    called = np.zeros(len(scores), bool) if point.threshold is None else scores >= point.threshold
    assert point.true_positives == int((called & is_member).sum())
    assert point.false_positives == int((called & ~is_member).sum())
    assert point.true_negatives == int((~called & ~is_member).sum())
    assert point.false_negatives == int((~called & is_member).sum())
    tpr = point.true_positives / is_member.sum()
    if fpr is None:  # the largest advantage
        assert tpr - point.false_positives / (~is_member).sum() == metrics.advantage(
            is_member, scores
        )
    else:  # the gate's TPR at FPR, at a threshold within the FPR
        assert point.false_positives / (~is_member).sum() <= fpr
        assert tpr == metrics.tpr_at_fpr(is_member, scores, fpr)


@settings(max_examples=100, deadline=None)
@given(cases)
def test_precision_recall_points_match_scikit_learn(case: tuple[int, int, int]) -> None:
    is_member, scores = random_case(*case)
    roc = metrics.roc_curve(is_member, scores)
    recall, precision = precision_recall(
        # as the report builds it: from result.json's lists of floats
        Curve("a", roc.fpr.tolist(), roc.tpr.tolist()),
        int(is_member.sum()),
        int((~is_member).sum()),
    )
    expected_precision, expected_recall, _ = precision_recall_curve(is_member, scores)
    ours = sorted(zip(recall, precision, strict=True))
    theirs = sorted(zip(expected_recall[:-1], expected_precision[:-1], strict=True))
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)
