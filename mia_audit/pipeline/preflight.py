"""The checks `run` makes after `prepare_run` and before its first attack, for `mia-audit
validate`: the DP recipe's one-run audit can run (`check_dp_recipe`, which plan makes too), the
target classifies its members well above chance (the weak-target check, on its outputs on the
audit set), the executor can be reached and fits its tasks, and the run fits
`runtime.max_minutes`. With `prepare_run`, validate refuses what run refuses before it scores.
"""

from __future__ import annotations

from mia_audit.attacks.reference_base import ReferenceAttack
from mia_audit.pipeline import preconditions
from mia_audit.pipeline.inputs import AuditInputs
from mia_audit.pipeline.one_run import one_run_inputs
from mia_audit.pipeline.plan import check_max_minutes, plan_run
from mia_audit.pipeline.prepare import PreparedRun
from mia_audit.pipeline.target import (
    attack_view,
    naming_model,
    target_fit,
    target_logits,
)
from mia_audit.progress import Progress
from mia_audit.references.executors import EXECUTORS


def check_before_scoring(inputs: AuditInputs, prepared: PreparedRun, progress: Progress) -> None:
    """Raise what run would raise before its first attack (PolicyError / InputError, exit 2)."""
    check_dp_recipe(prepared)
    check_target_fit(prepared, progress)
    if any(isinstance(attack, ReferenceAttack) for attack in prepared.attacks):
        executor = prepared.policy.runtime.executor
        preflight = getattr(EXECUTORS.get(executor.kind), "preflight", None)
        if preflight is not None:
            preflight(executor)
    if prepared.policy.runtime.max_minutes is not None:
        check_max_minutes(plan_run(prepared))


def check_target_fit(prepared: PreparedRun, progress: Progress) -> None:
    """The weak-target check on the target's outputs on the audit set (identity view, through
    the logits cache that run then reuses)."""
    policy, data = prepared.policy, prepared.data
    with naming_model(policy):
        raw = target_logits(
            policy, prepared.model, data.audit_set, prepared.preprocess, [], progress, progress.note
        )
        target = attack_view(prepared.outputs, raw)
    fit = target_fit(target, data.audit_set, prepared.num_classes)
    for note in preconditions.check_target_fit(fit, policy.preconditions):
        progress.note(note)


def check_dp_recipe(prepared: PreparedRun) -> None:
    """run's refusals of `reference_training.dp` before any inference (no opacus, no
    population, too many canaries, reference attacks, a layer DP-SGD cannot train): exit 2."""
    one_run_inputs(
        prepared.policy,
        prepared.search_path,
        prepared.data,
        list(prepared.attacks),
        prepared.num_classes,
        prepared.preprocess,
    )
