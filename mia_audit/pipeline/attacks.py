"""Run every attack on the context and evaluate its scores; then the checks that need every
attack's scores (sides not swapped).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from mia_audit.attacks.base import Attack, AttackContext
from mia_audit.attacks.reference_base import ReferenceAttack
from mia_audit.attacks.registry import attack_origin
from mia_audit.data.audit import AuditSet
from mia_audit.errors import (
    AuditError,
    MiaAuditError,
)
from mia_audit.evaluation import breakdowns as evaluation
from mia_audit.evaluation.evaluate import (
    AttackIdentity,
    AuditSamples,
    EvaluationSettings,
    evaluate_attack,
)
from mia_audit.gate.evaluate import (
    gate_fprs,
)
from mia_audit.pipeline import preconditions
from mia_audit.pipeline.tracking import Timer
from mia_audit.policy.schema import Policy
from mia_audit.progress import Progress
from mia_audit.result import (
    AttackResult,
)


def evaluation_settings(policy: Policy) -> EvaluationSettings:
    """How every attack's scores become figures: the FPRs reported, the statistics, the seed
    and the operating point (the gate's smallest FPR). Run and plan alike."""
    fprs = gate_fprs(policy.gate)
    return EvaluationSettings(
        fprs=evaluation.report_fprs(fprs),
        statistics=policy.statistics,
        seed=policy.runtime.seed,
        operating_fpr=min(fprs, default=None),
    )


def run_attacks(
    attacks: Sequence[Attack[Any]],
    context: AttackContext,
    audit_set: AuditSet,
    policy: Policy,
    progress: Progress,
    timer: Timer,
) -> tuple[list[AttackResult], dict[str, np.ndarray]]:
    """Every attack's result, and its per-sample scores by attack id."""
    settings = evaluation_settings(policy)
    samples = _samples(context, audit_set)
    results = []
    scores_by_attack: dict[str, np.ndarray] = {}
    for attack in attacks:
        label = attack.config.label
        with timer.phase(f"attack:{label}"), progress.stage(f"attack {label}", None):
            start = time.perf_counter()
            output = _score(attack, context)
            scores = np.asarray(output.scores, dtype=np.float64)
            if scores.shape != audit_set.labels.shape or not np.isfinite(scores).all():
                raise AuditError(
                    f"attack {label!r} produced invalid scores (non-finite or wrong shape)"
                )
            seconds = round(time.perf_counter() - start, 3)
        identity = AttackIdentity(attack.name, label, attack.summary, output.parameters)
        with timer.phase("statistics"), progress.stage(f"statistics {label}", None):
            result = evaluate_attack(identity, scores, samples, settings, seconds)
        results.append(result)
        scores_by_attack[label] = scores
    reference = {a.config.label for a in attacks if isinstance(a, ReferenceAttack)}
    preconditions.check_attacks_oriented(audit_set.is_member, scores_by_attack, reference)
    return results, scores_by_attack


def _score(attack: Attack[Any], context: AttackContext) -> Any:
    """The attack's output; a plugin's failure names the attack and where it came from (exit 3),
    not an internal error of mia-audit."""
    try:
        return attack.score(context)
    except MiaAuditError:
        raise
    except Exception as error:
        origin = attack_origin(attack.name)
        if origin is None:
            raise
        first = (str(error).strip().splitlines() or [""])[0]
        raise AuditError(
            f"attack {attack.config.label!r}: the plugin attack {attack.name!r} ({origin}) "
            f"failed: {type(error).__name__}: {first}; fix or uninstall that package, or remove "
            "the attack from the policy"
        ) from error


def constant_score_notes(scores_by_attack: dict[str, np.ndarray]) -> list[str]:
    """A note for each attack that gave every sample the same score: it cannot tell members
    from non-members, so its figures say nothing about the model."""
    return [
        f"attack {label!r} gave every sample the same score ({float(scores[0]):.6g}): it cannot "
        "tell members from non-members, so its AUC of 0.5 says nothing about the model; check "
        "the attack (a signal that saturates, a plugin that ignores its input)"
        for label, scores in scores_by_attack.items()
        if len(scores) and np.ptp(scores) == 0
    ]


def _samples(context: AttackContext, audit_set: AuditSet) -> AuditSamples:
    """The audit samples, with the target's top-1 correctness for the slices."""
    predicted = np.asarray(context.target.identity).argmax(axis=-1)
    return AuditSamples(
        is_member=audit_set.is_member,
        labels=audit_set.labels,
        ids=audit_set.ids,
        class_names=audit_set.class_names,
        correct=predicted == audit_set.labels,
    )
