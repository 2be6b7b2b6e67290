"""The one-run audit of the policy's DP recipe (`reference_training.dp`), checked before any
work is done and run beside the attacks; its bound joins max_epsilon_lower_bound and the claim.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mia_audit.attacks.reference_base import ReferenceAttack
from mia_audit.dp.audit import OneRunInputs, OneRunOutcome, canaries_of, claim_bound, run_one_run
from mia_audit.dp.training import accountant_epsilon
from mia_audit.errors import PolicyError
from mia_audit.gate.dp_claim import accounting_condition
from mia_audit.models.inference import Preprocessor
from mia_audit.pipeline.inputs import AuditData
from mia_audit.policy.schema import Policy
from mia_audit.progress import Progress
from mia_audit.references.executors.base import Architecture
from mia_audit.result import ClaimBound, Condition


def one_run_inputs(
    policy: Policy,
    search_path: Path | None,
    data: AuditData,
    attacks: Sequence[object],
    num_classes: int,
    preprocess: Preprocessor,
) -> OneRunInputs | None:
    """The audit's inputs, or None without `reference_training.dp`; PolicyError (exit 2) for
    what it cannot run: no opacus, no population, reference attacks, a layer DP-SGD cannot train.
    """
    if policy.reference_training.dp is None:
        return None
    from mia_audit.dp.training import check_compatible, require_opacus

    require_opacus()
    population = data.audit_set.population
    if population is None or data.audit_set.population_origin != "policy":
        raise PolicyError(
            "reference_training.dp: the one-run audit draws its canaries from population data; "
            "set data.population"
        )
    if any(isinstance(attack, ReferenceAttack) for attack in attacks):
        raise PolicyError(
            "reference_training.dp: reference models are not trained with DP-SGD; audit the "
            "DP recipe without lira, rmia and shadow, or drop reference_training.dp"
        )
    recipe = policy.reference_training.resolve(policy.model, data.members_available)
    assert recipe.architecture is not None  # the policy validator guarantees one
    architecture = Architecture(
        recipe.architecture, num_classes, bool(recipe.cifar_stem), search_path
    )
    check_compatible(architecture.build(), recipe.architecture)
    inputs = OneRunInputs(
        recipe, architecture, population, preprocess, policy.runtime.seed, policy.runtime.cache_dir
    )
    canaries_of(inputs)  # too many canaries for the population: refused now, not after inference
    return inputs


def run_and_bound(
    inputs: OneRunInputs, policy: Policy, progress: Progress
) -> tuple[OneRunOutcome, list[ClaimBound], list[Condition]]:
    """The audit, its bound at the claim's delta for the claim check (if any), and the
    recipe's accounting against the claim."""
    outcome = run_one_run(inputs, policy.statistics, progress)
    result = outcome.result
    progress.note(
        f"one-run audit: {result.correct} of {result.guesses} guesses right on "
        f"{result.canaries} canaries: epsilon >= {result.epsilon_lower_bound:.3f}"
        + (
            ""
            if result.accountant_epsilon is None
            else f" (accountant {result.accountant_epsilon:.3f})"
        )
    )
    claim = policy.model.dp_claim
    if claim is None:
        return outcome, [], []
    confidence = policy.statistics.confidence_level
    accountant = accountant_epsilon(inputs.dp, result.train_size, inputs.recipe, claim.delta)
    return (
        outcome,
        [claim_bound(outcome, claim.epsilon, claim.delta, confidence)],
        [accounting_condition(claim, accountant, inputs.dp.noise_multiplier)],
    )
