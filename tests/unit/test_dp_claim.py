"""The claim check on given bounds (pure): which source decides, when the claim is not
checked, and the recipe's accounting against the claim."""

from __future__ import annotations

import math

import pytest

from mia_audit.gate.dp_claim import NO_GUARANTEE, DpClaim, accounting_condition, check_claim
from mia_audit.result import ClaimBound


def bound(source: str, value: float, best: float, **extra: float) -> ClaimBound:
    fields = {"tpr": 0.5, "fpr": 0.1, "threshold": 0.0} if source != "one_run" else {}
    return ClaimBound(
        source=source,
        epsilon_lower_bound=value,
        samples=200,
        best_possible=best,
        needed=151,
        **{**fields, **extra},
    )


def test_the_largest_bound_decides_and_a_violation_says_what_it_means() -> None:
    claim = DpClaim(epsilon=1.0, delta=1e-5)
    bounds = [bound("loss", 0.4, 3.2), bound("confidence", 1.3, 3.2, tpr=0.91, fpr=0.2)]
    result, condition, note = check_claim(claim, bounds, 0.95)
    assert result.checked and not result.passed and note is None
    assert condition is not None and not condition.passed
    assert condition.attack == "confidence" and condition.value == 1.3
    assert condition.per_attack == {"loss": 0.4, "confidence": 1.3}
    assert condition.note is not None
    assert condition.note.startswith("attack 'confidence' has TPR 0.910 at FPR 0.200")
    assert "epsilon >= 1.300 at 95 % confidence, above the claimed epsilon 1" in condition.note


def test_a_claim_no_source_can_reach_is_not_checked() -> None:
    claim = DpClaim(epsilon=5.0, delta=1e-5)
    result, condition, note = check_claim(claim, [bound("loss", 0.4, 3.2)], 0.95)
    assert condition is None and not result.checked and result.passed
    assert note is not None and note.startswith("model.dp_claim NOT CHECKED")
    assert "needs 151 members and non-members" in note


def test_one_checkable_source_is_enough() -> None:
    claim = DpClaim(epsilon=3.5, delta=1e-5)
    bounds = [bound("loss", 0.4, 3.2), bound("one_run", 0.9, 4.4, guesses=40, correct=38)]
    result, condition, _ = check_claim(claim, bounds, 0.95)
    assert result.checked and condition is not None and condition.passed


@pytest.mark.parametrize(
    ("accountant", "noise", "passed"), [(1.9, 1.1, True), (2.4, 0.9, False), (math.inf, 0.0, False)]
)
def test_accounting_against_the_claim(accountant: float, noise: float, passed: bool) -> None:
    condition = accounting_condition(DpClaim(epsilon=2.0, delta=1e-5), accountant, noise)
    assert condition.passed is passed
    assert condition.value == min(accountant, NO_GUARANTEE)
    if noise == 0.0:
        assert condition.note is not None and "adds no noise" in condition.note


def test_a_claim_needs_a_positive_epsilon() -> None:
    with pytest.raises(ValueError, match="epsilon"):
        DpClaim(epsilon=0.0, delta=1e-5)
