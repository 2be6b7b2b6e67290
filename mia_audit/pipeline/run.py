"""The audit pipeline: policy -> inputs -> logits -> attacks -> metrics -> gate -> result.

This module owns no terminal and writes no report. `AuditInputs` says where the target and the
data come from: the files a policy names (`inputs_from_policy`, what the CLI runs) or Python
objects (`mia_audit.api`); `audit` runs the same sequence on either and returns the `Result`
with every attack's per-sample scores. The callers decide what to print and where to write.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import numpy as np

from mia_audit._version import __version__
from mia_audit.attacks.base import AttackContext, ViewLogits
from mia_audit.attacks.reference_base import ReferenceAttack
from mia_audit.data.audit import AuditSet
from mia_audit.dp.audit import OneRunInputs
from mia_audit.environment import describe_environment
from mia_audit.errors import (
    EXIT_GATE_FAILED,
    EXIT_PASS,
)
from mia_audit.gate.dp_claim import evaluate_claim
from mia_audit.gate.evaluate import (
    evaluate_gate,
    gate_metrics_by_attack,
    gate_passed,
    utc_today,
)
from mia_audit.models.architectures import describe_factories
from mia_audit.models.loading import load_target
from mia_audit.models.oracle import ClassifierOracle
from mia_audit.pipeline import preconditions
from mia_audit.pipeline.attacks import constant_score_notes, run_attacks
from mia_audit.pipeline.calibration import calibrated_references, target_figures
from mia_audit.pipeline.inputs import (
    AuditData,
    AuditInputs,
    load_data_files,
)
from mia_audit.pipeline.one_run import one_run_inputs, run_and_bound
from mia_audit.pipeline.outcome import AuditResult
from mia_audit.pipeline.plan import check_max_minutes, plan_run
from mia_audit.pipeline.prepare import PreparedRun, prepare_run
from mia_audit.pipeline.references import prepare_references
from mia_audit.pipeline.target import (
    attack_view,
    naming_model,
    target_accuracy,
    target_fit,
    target_info,
    target_logits,
)
from mia_audit.pipeline.tracking import Timer, TrustNotes
from mia_audit.policy.floor_file import Floor
from mia_audit.policy.floor_rules import floor_info
from mia_audit.policy.loading import LoadedPolicy
from mia_audit.policy.schema import Policy
from mia_audit.progress import Progress, SilentProgress
from mia_audit.references.fit import assess_reference_fit
from mia_audit.references.provider import ReferenceModels
from mia_audit.result import (
    AttackResult,
    ClaimBound,
    Condition,
    DataInfo,
    DpClaimResult,
    GateResult,
    OneRunAudit,
    PolicyInfo,
    ReferenceFit,
    Result,
    ToolInfo,
)


def inputs_from_policy(loaded: LoadedPolicy, floor: Floor | None = None) -> AuditInputs:
    """The inputs a policy file names, under the workflow's floor if there is one."""
    policy = loaded.policy
    search_path = loaded.path.parent
    return AuditInputs(
        policy=policy,
        origin=PolicyInfo(
            name=policy.name, path=str(loaded.path), sha256=loaded.sha256, document=loaded.document
        ),
        search_path=search_path,
        load_model=lambda device: load_target(policy.model, device, search_path=search_path),
        load_sets=lambda: load_data_files(policy),
        floor=floor,
    )


def run_audit(
    loaded: LoadedPolicy,
    progress: Progress | None = None,
    *,
    clock: Callable[[], date] = utc_today,
) -> Result:
    """Run the audit a policy file describes (see `audit`)."""
    return audit(inputs_from_policy(loaded), progress, clock=clock).result


def audit(
    inputs: AuditInputs,
    progress: Progress | None = None,
    *,
    clock: Callable[[], date] = utc_today,
) -> AuditResult:
    """Run every attack of the policy and evaluate its gate.

    `clock` gives the date suppressions expire against (injectable, so tests can pin it).
    """
    progress = progress or SilentProgress()
    timer = Timer()
    trust = TrustNotes(progress)
    prepared = prepare_run(inputs, progress, clock=clock)
    if prepared.policy.runtime.max_minutes is not None:
        check_max_minutes(plan_run(prepared))
    return audit_prepared(prepared, timer=timer, trust=trust)


def audit_prepared(
    prepared: PreparedRun, *, timer: Timer | None = None, trust: TrustNotes | None = None
) -> AuditResult:
    """The rest of `audit` once its inputs are prepared (`prepare_run`): score and decide."""
    timer = timer or Timer()
    trust = trust or TrustNotes(prepared.progress)
    timer.seconds["load"] = round(prepared.load_seconds, 3)
    policy, audit_set = prepared.policy, prepared.data.audit_set
    one_run = one_run_inputs(
        policy,
        prepared.search_path,
        prepared.data,
        list(prepared.attacks),
        prepared.num_classes,
        prepared.preprocess,
    )
    with timer.phase("inference"), naming_model(policy):
        raw = target_logits(
            policy,
            prepared.model,
            audit_set,
            prepared.preprocess,
            prepared.attacks,
            prepared.progress,
            trust.note,
        )
        target = attack_view(prepared.outputs, raw)
    notes = [*prepared.notes, *_check_target_fit(prepared, target), prepared.outputs.note]
    references, references_fit = _references(prepared, target, timer, trust)
    context = AttackContext(
        target=target,
        labels=audit_set.labels,
        is_member=audit_set.is_member,
        random_state=policy.runtime.seed,
        references=references,
        output_kind=prepared.outputs.kind,
        oracle=_oracle(prepared),
    )
    results, scores = run_attacks(
        prepared.attacks, context, audit_set, policy, prepared.progress, timer
    )
    notes += _said(prepared, constant_score_notes(scores))
    privacy = _privacy_checks(prepared, one_run, scores, timer)
    conditions = _gate_conditions(prepared, results, privacy)
    swapped = preconditions.swapped_view_problem(
        policy.gate, audit_set.is_member, audit_set.labels, scores
    )
    swap_notes = preconditions.check_swapped_view(
        swapped, gate_passed(conditions), policy.statistics.min_false_positives
    )
    notes += _said(prepared, swap_notes)
    notes = [*notes, *privacy.notes, *trust.notes]
    result = _result(prepared, target, results, conditions, notes, references_fit, timer, privacy)
    return AuditResult(result, scores, audit_set.is_member, audit_set.labels, audit_set.ids)


def _check_target_fit(prepared: PreparedRun, target: ViewLogits) -> list[str]:
    """The target's fit preconditions (exit 2 when they fail); their notes, also shown."""
    fit = target_fit(target, prepared.data.audit_set, prepared.num_classes)
    notes = preconditions.check_target_fit(fit, prepared.policy.preconditions)
    for note in notes:
        prepared.progress.note(note)
    return notes


def _references(
    prepared: PreparedRun, target: ViewLogits, timer: Timer, trust: TrustNotes
) -> tuple[ReferenceModels | None, ReferenceFit | None]:
    """The reference models the attacks asked for, and their fit beside the target's."""
    attacks = [attack for attack in prepared.attacks if isinstance(attack, ReferenceAttack)]
    if not attacks:
        return None, None
    requests = [a.request() for a in attacks]
    calibration = None
    provider = None
    if prepared.policy.reference_training.calibrate:
        with timer.phase("calibration"):
            figures = target_figures(prepared, target)
            provider, calibration = calibrated_references(prepared, requests, figures, trust.note)
    with timer.phase("reference models"):
        references = prepare_references(prepared, requests, trust.note, provider=provider)
    fit = assess_reference_fit(
        references.set_fits,
        [(a.config.label, a.request().mode, a.request().count) for a in attacks],
        target_accuracy(target, prepared.data.audit_set),
        references.setup.recipe,
        prepared.policy.preconditions.reference_fit,
        trust.note,
    )
    return references, fit.model_copy(update={"calibration": calibration})


def _oracle(prepared: PreparedRun) -> ClassifierOracle | None:
    """Label queries on the target, for the attacks that perturb images."""
    if not any(attack.needs_oracle for attack in prepared.attacks):
        return None
    return ClassifierOracle(
        prepared.model.classifier,
        prepared.preprocess,
        prepared.data.audit_set.images,
        prepared.policy.runtime.batch_size,
    )


def _said(prepared: PreparedRun, notes: list[str]) -> list[str]:
    """`notes`, each also shown as the run goes."""
    for note in notes:
        prepared.progress.note(note)
    return notes


def _gate_conditions(
    prepared: PreparedRun, results: list[AttackResult], privacy: PrivacyChecks
) -> list[Condition]:
    """Every gate condition, evaluated: the policy's, then the DP claim's."""
    conditions = evaluate_gate(
        prepared.policy.gate,
        gate_metrics_by_attack(results, prepared.policy.gate),
        baseline=prepared.baseline,
        today=prepared.today,
        extra_epsilon=privacy.extra_epsilon,
    )
    return [*conditions, *privacy.conditions]


def _result(
    prepared: PreparedRun,
    target: ViewLogits,
    results: list[AttackResult],
    conditions: list[Condition],
    notes: list[str],
    references: ReferenceFit | None,
    timer: Timer,
    privacy: PrivacyChecks,
) -> Result:
    """result.json's record of the run."""
    policy, model, baseline, today = (
        prepared.policy,
        prepared.model,
        prepared.baseline,
        prepared.today,
    )
    passed = gate_passed(conditions)
    return Result(
        tool=ToolInfo(version=__version__),
        passed=passed,
        exit_code=EXIT_PASS if passed else EXIT_GATE_FAILED,
        seed=policy.runtime.seed,
        policy=prepared.origin,
        target=target_info(
            policy, model, target, prepared.data.audit_set, prepared.num_classes, prepared.outputs
        ),
        data=_data_info(prepared.data, policy),
        attacks=results,
        gate=GateResult(passed=passed, conditions=conditions, evaluated_on=today),
        baseline=baseline.info if baseline is not None else None,
        factories=describe_factories(
            {
                "model.architecture": policy.model.architecture,
                "reference_training.architecture": policy.reference_training.architecture,
            },
            prepared.search_path,
        ),
        environment=describe_environment(
            model.classifier.device, model.classifier.engine, model.precision
        ),
        timings=timer.seconds,
        notes=notes,
        references=references,
        floor=floor_info(prepared.floor),
        one_run=privacy.one_run,
        dp_claim=privacy.claim,
    )


@dataclass(frozen=True)
class PrivacyChecks:
    """The one-run audit of the DP recipe and the DP claim's check (docs/dp-claim.md)."""

    one_run: OneRunAudit | None = None
    claim: DpClaimResult | None = None
    #: The claim's condition and the recipe's accounting against the claim.
    conditions: tuple[Condition, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def extra_epsilon(self) -> dict[str, float]:
        """Bounds beside the attacks' for max_epsilon_lower_bound."""
        return {} if self.one_run is None else {"one_run": self.one_run.epsilon_lower_bound}


def _privacy_checks(
    prepared: PreparedRun,
    one_run: OneRunInputs | None,
    scores: dict[str, np.ndarray],
    timer: Timer,
) -> PrivacyChecks:
    """Run the one-run audit (if the recipe asks for it) and check the claim (if any)."""
    canaries, extra, accounting = None, list[ClaimBound](), list[Condition]()
    if one_run is not None:
        with timer.phase("one-run audit"):
            canaries, extra, accounting = run_and_bound(one_run, prepared.policy, prepared.progress)
    one = None if canaries is None else canaries.result
    claim = _check_claim(prepared.policy, prepared.data.audit_set, scores, prepared.progress, extra)
    if claim is None:
        return PrivacyChecks(one_run=one)
    result, conditions, notes = claim
    return PrivacyChecks(one, result, (*conditions, *accounting), tuple(notes))


def _check_claim(
    policy: Policy,
    audit_set: AuditSet,
    scores: dict[str, np.ndarray],
    progress: Progress,
    extra: list[ClaimBound],
) -> tuple[DpClaimResult, list[Condition], list[str]] | None:
    """model.dp_claim against every bound: its result, its condition and its notes."""
    if policy.model.dp_claim is None:
        return None
    result, condition, note = evaluate_claim(
        policy.model.dp_claim,
        audit_set.is_member,
        scores,
        policy.statistics,
        policy.runtime.seed,
        extra,
    )
    if note is not None:
        progress.note(note)
    return result, [condition] if condition else [], [note] if note else []


# --- result pieces ----------------------------------------------------------------------------


def _data_info(data: AuditData, policy: Policy) -> DataInfo:
    audit_set = data.audit_set
    from mia_audit.store.hashing import arrays_sha256

    return DataInfo(
        n_members=audit_set.n_members,
        n_non_members=audit_set.n_non_members,
        n_population=len(audit_set.population) if audit_set.population else 0,
        population_origin=audit_set.population_origin,
        image_shape=list(audit_set.images.shape[1:]),
        sha256=arrays_sha256(audit_set.images, audit_set.labels, audit_set.is_member),
        sources=data.sources,
        class_names=list(audit_set.class_names) if audit_set.class_names else None,
        notes=list(audit_set.notes),
    )
