"""Every softmax signal at large logit margins, against a 400-digit decimal computation.

A float64 log-softmax written as shifted - log(sum(exp(shifted))) rounds -log p_y to exactly 0
once the margin passes ~37 (log(1 + 1e-17) == 0), so a loss attack on a confident model ties
most of its samples; the signals must stay exact to float64 rounding as long as the result
itself is a normal float64 (docs/output-precision.md).
"""

from __future__ import annotations

from decimal import Decimal, localcontext

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mia_audit.attacks import signals
from mia_audit.attacks.scoring.rmia import true_class_probability as tempered_probability
from mia_audit.attacks.target_only import member_score

DIGITS = 400  # enough for 1 - p_y down to exp(-600) ~ 1e-261


def _decimal_softmax(row: np.ndarray) -> list[Decimal]:
    with localcontext() as context:
        context.prec = DIGITS
        values = [Decimal(float(v)) for v in row]
        top = max(values)
        weights = [(v - top).exp() for v in values]
        total = sum(weights, Decimal(0))
        return [w / total for w in weights]


def reference(name: str, row: np.ndarray, label: int) -> float:
    """The signal of one row, computed in 400-digit decimal arithmetic."""
    with localcontext() as context:
        context.prec = DIGITS
        p = _decimal_softmax(row)
        # 1 - p_y without cancellation: the other classes' probabilities summed
        rest = sum((q for k, q in enumerate(p) if k != label), Decimal(0))
        if name == "loss":
            return float(-p[label].ln())
        if name == "log_probability":
            return float(p[label].ln())
        if name == "entropy":
            return float(-sum((q * q.ln() for q in p if q > 0), Decimal(0)))
        if name == "modified_entropy":
            others = [
                (q, sum((r for j, r in enumerate(p) if j != k), Decimal(0)))
                for k, q in enumerate(p)
                if k != label
            ]
            value = -rest * p[label].ln() - sum(
                (q * c.ln() for q, c in others if q > 0), Decimal(0)
            )
            return float(value)
        if name == "scaled_logit":  # z_y - log sum_{j != y} exp(z_j): log p_y - log(1 - p_y)
            z = [Decimal(float(v)) for v in row]
            others_exp = sum((v.exp() for k, v in enumerate(z) if k != label), Decimal(0))
            return float(z[label] - others_exp.ln())
        raise ValueError(name)


COMPUTED = {
    "loss": signals.cross_entropy,
    "log_probability": signals.true_class_log_probability,
    "entropy": lambda z, y: signals.entropy(z),
    "modified_entropy": signals.modified_entropy,
    "scaled_logit": signals.scaled_logit,
}

#: Logit rows with margins up to 600: far past where the naive form rounds (~37), inside the
#: range where every result is a normal float64. Multiples of 1/1024, so two logits are equal
#: or at least 1/1024 apart (closer ones need even more digits in the reference itself).
logit = st.integers(-300 * 1024, 300 * 1024).map(lambda k: k / 1024)
rows = st.integers(2, 6).flatmap(
    lambda c: st.tuples(
        arrays(np.float64, (3, c), elements=logit),
        arrays(np.int64, (3,), elements=st.integers(0, c - 1)),
    )
)


def _close(computed: float, expected: float) -> bool:
    # 1e-9 relative: float64 sums of a few terms; 1e-290 absolute for results that underflow
    return abs(computed - expected) <= 1e-9 * abs(expected) + 1e-290


@settings(max_examples=40, deadline=None)
@given(rows)
def test_signals_match_decimal_reference_at_large_margins(
    case: tuple[np.ndarray, np.ndarray],
) -> None:
    logits, labels = case
    for name, function in COMPUTED.items():
        values = function(logits, labels)
        for i in range(len(labels)):
            expected = reference(name, logits[i], int(labels[i]))
            assert _close(float(values[i]), expected), (name, logits[i], labels[i], values[i])


def test_loss_of_confident_predictions_is_not_rounded_to_zero() -> None:
    margins = np.array([40.0, 60.0, 100.0, 400.0])
    logits = np.column_stack([margins, np.zeros(4), np.zeros(4)])
    labels = np.zeros(4, dtype=np.int64)
    loss = signals.cross_entropy(logits, labels)
    # -log p_y = log(1 + 2 exp(-m)) = 2 exp(-m) to float64 precision at these margins
    np.testing.assert_allclose(loss, 2 * np.exp(-margins), rtol=1e-12)
    assert len(np.unique(member_score("loss")(logits, labels))) == 4
    assert len(np.unique(member_score("confidence")(logits, labels))) == 4


@settings(max_examples=25, deadline=None)
@given(rows, st.sampled_from([1.0, 10.0, 100.0]))
def test_loss_and_confidence_rank_like_the_log_odds_at_any_scale(
    case: tuple[np.ndarray, np.ndarray], scale: float
) -> None:
    """-loss, log p_y and the log-odds are increasing functions of one another, so all three
    must order the samples alike (no ties the log-odds do not have) at any logit scale."""
    logits, labels = case
    logits = logits / 100.0 * scale
    log_odds = signals.scaled_logit(logits, labels)
    for name in ("loss", "confidence"):
        scores = member_score(name)(logits, labels)
        order = np.argsort(log_odds, kind="stable")
        assert np.all(np.diff(scores[order]) >= 0), name
        distinct = np.diff(log_odds[order]) > 1e-12 * np.abs(log_odds[order][1:]) + 1e-300
        assert np.all(np.diff(scores[order])[distinct & (log_odds[order][1:] < 700)] > 0), name


@settings(max_examples=25, deadline=None)
@given(rows, st.sampled_from([1.0, 2.0, 4.0]))
def test_rmia_tempered_probability_matches_decimal_reference(
    case: tuple[np.ndarray, np.ndarray], temperature: float
) -> None:
    """RMIA reads p_y itself (its marginal averages probabilities over reference models);
    it must be exact in relative terms, and 1 only where 1 - p_y is below float64's rounding."""
    logits, labels = case
    p = tempered_probability(logits, labels, temperature)
    for i in range(len(labels)):
        expected = float(_decimal_softmax(logits[i] / temperature)[int(labels[i])])
        assert abs(p[i] - expected) <= 1e-12 * expected + 1e-300
