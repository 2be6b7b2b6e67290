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
from typing import Any

import numpy as np

from mia_audit._version import __version__
from mia_audit.attacks.base import AttackContext
from mia_audit.attacks.reference_base import ReferenceAttack
from mia_audit.data.audit import AuditSet
from mia_audit.environment import describe_environment
from mia_audit.errors import (
    EXIT_GATE_FAILED,
    EXIT_PASS,
)
from mia_audit.gate.evaluate import (
    _gate_metrics,
    evaluate_gate,
    gate_passed,
    utc_today,
)
from mia_audit.models.architectures import describe_factories
from mia_audit.models.inference import Preprocessor
from mia_audit.models.loading import LoadedModel, load_target
from mia_audit.models.oracle import ClassifierOracle
from mia_audit.pipeline import preconditions
from mia_audit.pipeline.attacks import constant_score_notes, run_attacks
from mia_audit.pipeline.inputs import (
    AuditData,
    AuditInputs,
    load_data_files,
)
from mia_audit.pipeline.plan import check_max_minutes, plan_run
from mia_audit.pipeline.prepare import PreparedRun, prepare_run
from mia_audit.pipeline.references import prepare_references
from mia_audit.pipeline.target import (
    _naming_model,
    _target_fit,
    _target_info,
    _target_logits,
    attack_view,
    target_accuracy,
)
from mia_audit.pipeline.tracking import Timer, TrustNotes
from mia_audit.policy.floor_file import Floor
from mia_audit.policy.floor_rules import floor_info
from mia_audit.policy.loading import LoadedPolicy
from mia_audit.policy.schema import Policy
from mia_audit.progress import Progress, SilentProgress
from mia_audit.references.fit import assess_reference_fit
from mia_audit.result import (
    DataInfo,
    GateResult,
    PolicyInfo,
    Result,
    ToolInfo,
)


@dataclass(frozen=True)
class AuditOutcome:
    """The result, and what result.json does not hold: every attack's per-sample scores (by
    attack id) over the audit samples (`audit_set`: images, labels, membership, ids)."""

    result: Result
    scores: dict[str, np.ndarray]
    audit_set: AuditSet


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
) -> AuditOutcome:
    """Run every attack of the policy and evaluate its gate.

    `clock` gives the date suppressions expire against (injectable, so tests can pin it).
    """
    progress = progress or SilentProgress()
    timer = Timer()
    trust = TrustNotes(progress)
    prepared = prepare_run(inputs, progress, clock=clock)
    if prepared.policy.runtime.max_minutes is not None:
        check_max_minutes(plan_run(prepared, inputs.search_path, progress))
    return audit_prepared(inputs, prepared, progress, timer=timer, trust=trust)


def audit_prepared(
    inputs: AuditInputs,
    prepared: PreparedRun,
    progress: Progress,
    *,
    timer: Timer | None = None,
    trust: TrustNotes | None = None,
) -> AuditOutcome:
    """The rest of `audit` once its inputs are prepared (`prepare_run`): score and decide."""
    timer = timer or Timer()
    trust = trust or TrustNotes(progress)
    timer.seconds["load"] = round(prepared.load_seconds, 3)
    policy, data, model = prepared.policy, prepared.data, prepared.model
    attacks, num_classes, preprocess = (
        list(prepared.attacks),
        prepared.num_classes,
        prepared.preprocess,
    )
    baseline, today, device = prepared.baseline, prepared.today, prepared.device
    notes = list(prepared.notes)
    outputs = prepared.outputs
    with timer.phase("inference"), _naming_model(policy):
        raw = _target_logits(
            policy, model, data.audit_set, preprocess, attacks, progress, trust.note
        )
        target = attack_view(outputs, raw)
    fit_notes = preconditions.check_target_fit(
        _target_fit(target, data.audit_set, num_classes), policy.preconditions
    )
    for note in fit_notes:
        progress.note(note)
    notes += fit_notes
    notes.append(outputs.note)
    references = None
    reference_attacks = [attack for attack in attacks if isinstance(attack, ReferenceAttack)]
    references_fit = None
    if reference_attacks:
        with timer.phase("reference models"):
            references = prepare_references(
                policy,
                inputs.search_path,
                data,
                model,
                num_classes,
                preprocess,
                [attack.request() for attack in reference_attacks],
                device,
                progress,
                trust.note,
                output_kind=outputs.kind,
            )
        references_fit = assess_reference_fit(
            references.set_fits,
            [(a.config.label, a.request().mode, a.request().count) for a in reference_attacks],
            target_accuracy(target, data.audit_set),
            references.setup.recipe,
            policy.preconditions.reference_fit,
            trust.note,
        )
    context = AttackContext(
        target=target,
        labels=data.audit_set.labels,
        is_member=data.audit_set.is_member,
        random_state=policy.runtime.seed,
        references=references,
        output_kind=outputs.kind,
        oracle=_oracle(attacks, model, preprocess, data.audit_set, policy),
    )
    results, scores = run_attacks(attacks, context, data.audit_set, policy, progress, timer)
    for note in constant_score_notes(scores):
        progress.note(note)
        notes.append(note)
    gate_conditions = evaluate_gate(
        policy.gate, _gate_metrics(results), baseline=baseline, today=today
    )
    passed = gate_passed(gate_conditions)
    swapped = preconditions.swapped_view_problem(
        policy.gate, data.audit_set.is_member, data.audit_set.labels, scores
    )
    for note in preconditions.check_swapped_view(swapped, passed):
        progress.note(note)
        notes.append(note)
    result = Result(
        tool=ToolInfo(version=__version__),
        passed=passed,
        exit_code=EXIT_PASS if passed else EXIT_GATE_FAILED,
        seed=policy.runtime.seed,
        policy=inputs.origin,
        target=_target_info(policy, model, target, data.audit_set, num_classes, outputs),
        data=_data_info(data, policy),
        attacks=results,
        gate=GateResult(passed=passed, conditions=gate_conditions, evaluated_on=today),
        baseline=baseline.info if baseline is not None else None,
        factories=describe_factories(
            {
                "model.architecture": policy.model.architecture,
                "reference_training.architecture": policy.reference_training.architecture,
            },
            inputs.search_path,
        ),
        environment=describe_environment(
            model.classifier.device, model.classifier.engine, model.precision
        ),
        timings=timer.seconds,
        notes=[*notes, *trust.notes],
        references=references_fit,
        floor=floor_info(inputs.floor),
    )
    return AuditOutcome(result, scores, data.audit_set)


def _oracle(
    attacks: list[Any],
    model: LoadedModel,
    preprocess: Preprocessor,
    audit_set: AuditSet,
    policy: Policy,
) -> ClassifierOracle | None:
    """Label queries on the target, for the attacks that perturb images."""
    if not any(attack.needs_oracle for attack in attacks):
        return None
    return ClassifierOracle(
        model.classifier, preprocess, audit_set.images, policy.runtime.batch_size
    )


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
