"""The policy's `model.dp_claim`: the model's (epsilon, delta)-DP claim against every bound.

A DP training run bounds every membership test, so an empirical epsilon lower bound above the
claimed epsilon (at the claimed delta) shows that the training, or its privacy accounting, does
not deliver the claim. The sources are the attacks on the audit set (their Clopper-Pearson
bounds, `evaluation.epsilon`, recomputed at the claim's delta) and the one-run canary audit of
the training recipe (`evaluation.one_run`). A source too small to ever exceed the claim (a
perfect attack's bound at its size is at or below it) cannot contradict it; when no source
can, the claim is reported as not checked, never as checked (docs/dp-claim.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from pydantic import Field

from mia_audit.evaluation import epsilon, sample_size
from mia_audit.evaluation.evaluate import epsilon_bound
from mia_audit.evaluation.settings import StatisticsSpec
from mia_audit.result import ClaimBound, Condition, DpClaimResult
from mia_audit.settings import StrictModel

#: The source name of the one-run canary audit, beside the attack ids.
ONE_RUN = "one_run"


class DpClaim(StrictModel):
    """The (epsilon, delta)-DP guarantee the model's training claims (e.g. from its DP-SGD
    accountant); the gate fails when any epsilon lower bound exceeds it."""

    epsilon: float = Field(gt=0, description="The claimed epsilon (natural log).")
    delta: float = Field(ge=0, lt=1, description="The claimed delta.")


def audit_set_bounds(
    claim: DpClaim,
    is_member: np.ndarray,
    scores: Mapping[str, np.ndarray],
    statistics: StatisticsSpec,
    seed: int,
) -> list[ClaimBound]:
    """Each attack's Clopper-Pearson bound at the claim's delta, with what a perfect attack
    would reach on the same evaluation half."""
    spec = statistics.model_copy(update={"delta": claim.delta})
    bounds = []
    for attack, attack_scores in scores.items():
        bound = epsilon_bound(is_member, attack_scores, spec, seed)
        if bound is None:
            continue
        _, half = epsilon.split_selection_evaluation(is_member, seed)
        n_pos = int(is_member[half].sum())
        best = epsilon.epsilon_from_counts(
            n_pos, 0, 0, len(half) - n_pos, delta=claim.delta, alpha=1 - spec.confidence_level
        )
        bounds.append(
            ClaimBound(
                source=attack,
                epsilon_lower_bound=bound.value,
                **bound.model_dump(include={"tpr", "fpr", "threshold"}),
                samples=bound.n_evaluation,
                best_possible=best,
                needed=_per_side_needed(claim, spec.confidence_level),
            )
        )
    return bounds


def _per_side_needed(claim: DpClaim, confidence: float) -> int | None:
    try:
        return sample_size.min_per_side_to_exceed(claim.epsilon, claim.delta, confidence)
    except ValueError:  # no audit up to 1e9 per side reaches the claim
        return None


def evaluate_claim(
    claim: DpClaim,
    is_member: np.ndarray,
    scores: Mapping[str, np.ndarray],
    statistics: StatisticsSpec,
    seed: int,
    extra: Sequence[ClaimBound] = (),
) -> tuple[DpClaimResult, Condition | None, str | None]:
    """`check_claim` on every attack's bound and the `extra` ones (the one-run audit)."""
    bounds = [*audit_set_bounds(claim, is_member, scores, statistics, seed), *extra]
    return check_claim(claim, bounds, statistics.confidence_level)


def check_claim(
    claim: DpClaim, bounds: Sequence[ClaimBound], confidence: float
) -> tuple[DpClaimResult, Condition | None, str | None]:
    """The claim's result, its gate condition (None when no source can contradict the claim)
    and the note that says why it was not checked."""
    checked = any(b.best_possible > claim.epsilon for b in bounds)
    passed = all(b.epsilon_lower_bound <= claim.epsilon for b in bounds)
    result = DpClaimResult(
        epsilon=claim.epsilon,
        delta=claim.delta,
        confidence=confidence,
        checked=checked,
        passed=passed,
        bounds=list(bounds),
    )
    if not checked:
        return result, None, _unchecked_note(claim, bounds, confidence)
    worst = max(bounds, key=lambda b: b.epsilon_lower_bound)
    condition = Condition(
        id="dp_claim",
        metric="dp_claim",
        attack=worst.source,
        value=worst.epsilon_lower_bound,
        threshold=claim.epsilon,
        passed=passed,
        point=worst.epsilon_lower_bound,
        per_attack={b.source: b.epsilon_lower_bound for b in bounds},
        description=f"epsilon lower bound <= claimed epsilon {claim.epsilon:g} "
        f"(delta {claim.delta:g})",
        note=None if passed else violation_text(claim, worst, confidence),
    )
    return result, condition, None


def _evidence(bound: ClaimBound) -> str:
    if bound.guesses is not None:
        return (
            f"the one-run canary audit guessed {bound.guesses} of {bound.samples} canaries "
            f"and got {bound.correct} right"
        )
    return (
        f"attack {bound.source!r} has TPR {bound.tpr:.3f} at FPR {bound.fpr:.3f} "
        f"(threshold {bound.threshold:.4g}, {bound.samples} held-out samples)"
    )


def violation_text(claim: DpClaim, bound: ClaimBound, confidence: float) -> str:
    """One line: which source, its evidence, the bound, the claim and what it means."""
    return (
        f"{_evidence(bound)}, so epsilon >= {bound.epsilon_lower_bound:.3f} at "
        f"{100 * confidence:g} % confidence, above the claimed epsilon {claim.epsilon:g} "
        f"(delta {claim.delta:g}): the training, or its privacy accounting, does not deliver "
        "the claim"
    )


def _unchecked_note(claim: DpClaim, bounds: Sequence[ClaimBound], confidence: float) -> str:
    """Why the claim says nothing here, and how many samples would change that."""
    best = max((b.best_possible for b in bounds), default=0.0)
    needs = [
        f"{b.needed} canaries" if b.source == ONE_RUN else f"{b.needed} members and non-members"
        for b in bounds
        if b.needed is not None
    ]
    wanted = " or ".join(dict.fromkeys(needs)) or "more samples than any audit can hold"
    return (
        f"model.dp_claim NOT CHECKED: even a perfect attack reaches an epsilon lower bound of "
        f"only {best:.3f} at this audit's size ({100 * confidence:g} % confidence, delta "
        f"{claim.delta:g}), not above the claimed {claim.epsilon:g}; the audit needs {wanted} "
        "to be able to contradict it"
    )


#: What the accounting condition reads for a recipe without noise: no finite epsilon holds.
NO_GUARANTEE = 1e9


def accounting_condition(claim: DpClaim, accountant: float, noise_multiplier: float) -> Condition:
    """The DP recipe's own accountant (RDP, at the claim's delta) against the claim: a recipe
    whose accounting exceeds the claimed epsilon cannot deliver it, whatever any attack shows."""
    value = min(accountant, NO_GUARANTEE)
    passed = accountant <= claim.epsilon
    what = (
        "the recipe adds no noise (noise_multiplier 0), so it has no finite epsilon"
        if noise_multiplier == 0.0
        else f"the RDP accountant gives the recipe epsilon {accountant:.3f}"
    )
    return Condition(
        id="dp_claim_accounting",
        metric="dp_claim_accounting",
        attack="accountant",
        value=value,
        threshold=claim.epsilon,
        passed=passed,
        point=value,
        description=f"the DP recipe's accountant epsilon <= claimed epsilon {claim.epsilon:g} "
        f"(delta {claim.delta:g})",
        note=None
        if passed
        else f"{what}, above the claimed epsilon {claim.epsilon:g} (delta {claim.delta:g}): "
        "the training as the policy states it does not deliver the claim",
    )
