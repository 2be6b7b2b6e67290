"""One attack's scores in, its frozen `AttackResult` out: every metric, CI, bound and slice.

Point metrics come from `metrics` (ROC, AUC, TPR at FPR, advantage) and `breakdowns` (ROC
for plots, histograms, per-class rows, most vulnerable samples). Every figure the gate can read
gets a stratified percentile-bootstrap CI (`bootstrap`),
so a condition can be checked on its upper bound; the empirical epsilon lower bound comes with
the operating point and Clopper-Pearson intervals behind it, so a reader can check it by hand.
Per-class and correct-vs-misclassified slices get their own AUC CIs: a leak concentrated in one
class or in the samples the model gets wrong is visible even when the overall AUC looks fine.

Randomness: everything derives from `runtime.seed` alone (not from an attack's position in the
policy), through `numpy.random.SeedSequence` with a fixed path per figure, so the same seed and
the same scores give bit-identical intervals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mia_audit.evaluation import bootstrap as stats
from mia_audit.evaluation import breakdowns, epsilon, metrics
from mia_audit.evaluation.operating_point import operating_point
from mia_audit.evaluation.settings import StatisticsSpec
from mia_audit.result import (
    AttackResult,
    ClassBreakdown,
    EpsilonLowerBound,
    Interval,
    SliceBreakdown,
)

#: SeedSequence paths: (seed, figure, index) so that no two figures share a random stream.
_OVERALL, _CLASS, _SLICE = 0, 1, 2
#: Correctness slices, in this order.
SLICE_NAMES = ("correct", "misclassified")


@dataclass(frozen=True)
class AuditSamples:
    """The audit samples every attack is evaluated on: membership (the truth), labels, ids,
    class names, and which samples the target classifies correctly (for the slices)."""

    is_member: np.ndarray
    labels: np.ndarray
    ids: np.ndarray
    class_names: Sequence[str] | None = None
    correct: np.ndarray | None = None


@dataclass(frozen=True)
class EvaluationSettings:
    """The FPRs to report, the statistics settings and the run's seed."""

    fprs: Sequence[float]
    statistics: StatisticsSpec
    seed: int
    #: The FPR of the gate's operating point (its smallest `max_tpr_at_fpr`), or None.
    operating_fpr: float | None = None


@dataclass(frozen=True)
class AttackIdentity:
    """Who produced the scores: the attack's name, its id in the policy, its parameters."""

    name: str
    id: str
    summary: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)


def _rng(seed: int, figure: int, index: int = 0) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, figure, index]))


def _interval(bounds: tuple[float, float]) -> Interval:
    return float(bounds[0]), float(bounds[1])


def _has_both(is_member: np.ndarray) -> bool:
    return bool(is_member.any() and not is_member.all())


def evaluate_attack(
    identity: AttackIdentity,
    scores: np.ndarray,
    samples: AuditSamples,
    settings: EvaluationSettings,
    seconds: float = 0.0,
) -> AttackResult:
    """Every figure of one attack's scores, built once."""
    is_member, spec, fprs = samples.is_member, settings.statistics, settings.fprs
    boot = _bootstrap(is_member, scores, fprs, spec, _rng(settings.seed, _OVERALL), advantage=True)
    tprs = metrics.tpr_at_fprs(is_member, scores, fprs)
    n_non_members = int((~is_member).sum())
    return AttackResult(
        name=identity.name,
        id=identity.id,
        summary=identity.summary,
        parameters=identity.parameters,
        auc=metrics.auc(is_member, scores),
        tpr_at_fpr={metrics.fpr_key(f): float(tprs[f]) for f in fprs},
        tpr_at_fpr_supported={
            metrics.fpr_key(f): metrics.is_fpr_supported(n_non_members, f, spec.min_false_positives)
            for f in fprs
        },
        balanced_accuracy=metrics.balanced_accuracy(is_member, scores),
        advantage=metrics.advantage(is_member, scores),
        auc_ci=_interval(boot.auc),
        tpr_at_fpr_ci={metrics.fpr_key(f): _interval(ci) for f, ci in boot.tpr_at_fpr.items()},
        advantage_ci=None if boot.advantage is None else _interval(boot.advantage),
        ci_level=spec.confidence_level,
        ci_resamples=spec.n_resamples,
        epsilon_lower_bound=epsilon_bound(is_member, scores, spec, settings.seed),
        roc=breakdowns.downsampled_roc(is_member, scores),
        score_histogram=breakdowns.score_histogram(is_member, scores),
        per_class=_per_class(scores, samples, settings),
        slices=[]
        if samples.correct is None
        else correctness_slices(is_member, scores, samples.correct, spec, settings.seed),
        most_vulnerable=breakdowns.most_vulnerable(is_member, scores, samples.labels, samples.ids),
        operating_point=operating_point(is_member, scores, settings.operating_fpr),
        seconds=seconds,
    )


def _per_class(
    scores: np.ndarray, samples: AuditSamples, settings: EvaluationSettings
) -> list[ClassBreakdown]:
    """Per-class rows (`breakdowns.per_class`) with each class's AUC CI."""
    rows = breakdowns.per_class(
        samples.is_member, scores, samples.labels, samples.class_names, settings.fprs
    )
    return [_with_class_ci(row, scores, samples, settings) for row in rows]


def auc_interval(
    is_member: np.ndarray, scores: np.ndarray, spec: StatisticsSpec, rng: np.random.Generator
) -> Interval | None:
    """Bootstrap CI of the AUC, or None when a side is empty."""
    if not _has_both(is_member):
        return None
    return _interval(_bootstrap(is_member, scores, (), spec, rng).auc)


def _bootstrap(
    is_member: np.ndarray,
    scores: np.ndarray,
    fprs: Sequence[float],
    spec: StatisticsSpec,
    rng: np.random.Generator,
    *,
    advantage: bool = False,
) -> stats.BootstrapResult:
    """The bootstrap CIs at the policy's resamples and confidence level."""
    return stats.bootstrap_metrics(
        is_member,
        scores,
        fprs,
        n_resamples=spec.n_resamples,
        level=spec.confidence_level,
        random_state=rng,
        with_advantage=advantage,
    )


def _with_class_ci(
    row: ClassBreakdown, scores: np.ndarray, samples: AuditSamples, settings: EvaluationSettings
) -> ClassBreakdown:
    in_class = samples.labels == row.label
    rng = _rng(settings.seed, _CLASS, row.label)
    ci = auc_interval(samples.is_member[in_class], scores[in_class], settings.statistics, rng)
    return row.model_copy(update={"auc_ci": ci})


def correctness_slices(
    is_member: np.ndarray,
    scores: np.ndarray,
    correct: np.ndarray,
    spec: StatisticsSpec,
    seed: int,
) -> list[SliceBreakdown]:
    """The attack on the samples the target classifies correctly, and on the others."""
    rows = []
    for index, (name, mask) in enumerate(zip(SLICE_NAMES, (correct, ~correct), strict=True)):
        members = is_member[mask]
        both = _has_both(members)
        rows.append(
            SliceBreakdown(
                name=name,
                n_members=int(members.sum()),
                n_non_members=int((~members).sum()),
                auc=metrics.auc(members, scores[mask]) if both else None,
                auc_ci=auc_interval(members, scores[mask], spec, _rng(seed, _SLICE, index)),
            )
        )
    return rows


def epsilon_bound(
    is_member: np.ndarray, scores: np.ndarray, spec: StatisticsSpec, seed: int
) -> EpsilonLowerBound | None:
    """The empirical epsilon lower bound with its evidence; None below 2 per side."""
    if min(int(is_member.sum()), int((~is_member).sum())) < 2:
        return None
    bound = epsilon.epsilon_lower_bound(
        is_member,
        scores,
        delta=spec.delta,
        confidence=spec.confidence_level,
        random_state=seed,
    )
    tp, n_pos, fp, n_neg = _evaluation_counts(is_member, scores, bound.threshold, seed)
    alpha = 1.0 - spec.confidence_level
    return EpsilonLowerBound(
        value=bound.epsilon,
        threshold=bound.threshold,
        tpr=bound.tpr,
        fpr=bound.fpr,
        tpr_ci=_interval(epsilon.clopper_pearson(tp, n_pos, alpha)),
        fpr_ci=_interval(epsilon.clopper_pearson(fp, n_neg, alpha)),
        delta=bound.delta,
        confidence=bound.confidence,
        n_selection=bound.n_selection,
        n_evaluation=bound.n_evaluation,
    )


def _evaluation_counts(
    is_member: np.ndarray, scores: np.ndarray, threshold: float, seed: int
) -> tuple[int, int, int, int]:
    """(TP, members, FP, non-members) at `threshold` on the evaluation half the bound used."""
    _, evaluation = epsilon.split_selection_evaluation(is_member, seed)
    members, called = is_member[evaluation], scores[evaluation] >= threshold
    n_pos = int(members.sum())
    n_neg = len(members) - n_pos
    return int((called & members).sum()), n_pos, int((called & ~members).sum()), n_neg
