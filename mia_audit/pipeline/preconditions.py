"""Checks that must hold before any verdict: a false PASS is the one unforgivable failure.

Each check either passes, raises an exit-2 error that says what is wrong and what to do, or --
where the policy relaxes it for a smoke test -- returns a note that goes into every report.
docs/preconditions.md lists them with their messages.

* The sides are different data: not the same file, and sharing at most
  `preconditions.max_shared_fraction` of their images (identical pixels).
* The target classifies its members well above chance under the given preprocessing (else the
  audit measures a different model than the one that ships).
* Members and non-members are not swapped: members not classified significantly worse than
  non-members, and no attack scoring members significantly below non-members.
* Every gate condition has the samples to mean something (`mia_audit.evaluation.sample_size`).
* Waivers expire within MAX_WAIVER_DAYS.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from mia_audit.data.images import ImageSet, as_float01
from mia_audit.errors import InputError, PolicyError
from mia_audit.evaluation import sample_size
from mia_audit.evaluation.metrics import advantage, auc, min_negatives_for_fpr, tpr_at_fpr
from mia_audit.evaluation.settings import StatisticsSpec
from mia_audit.gate import spec
from mia_audit.gate.evaluate import class_min_samples
from mia_audit.policy.run import Preconditions

#: Significance level of the swap and weak-target tests. Small, because a false alarm stops an
#: honest audit; the effects these tests look for are large.
SIGNIFICANCE = 1e-3
#: "Well above chance": at least this fraction of the way from chance to a perfect classifier.
ABOVE_CHANCE = 0.1
#: A waiver may run at most this long; renewing it is a decision someone must take again.
MAX_WAIVER_DAYS = 366

#: The sample-size rule's default: below it the swapped view's refusal says it may be chance.
_DEFAULT_MIN_FP = StatisticsSpec().min_false_positives

_REFERENCE_HINT = (
    "; or, as it is a reference attack, its reference models are trained unlike the target: "
    "set reference_training to the target's recipe, or reference_training.calibrate: true "
    "(docs/calibration.md)"
)
_SWAP_HINT = (
    "check that data.members holds the samples the model was trained on and "
    "data.non_members held-out samples"
)


# --- the data --------------------------------------------------------------------------------


def image_digests(images: np.ndarray) -> np.ndarray:
    """One 16-byte digest per image (its pixel bytes), to find images two sets share."""
    flat = np.ascontiguousarray(images).reshape(len(images), -1)
    return np.array(
        [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in flat], dtype="S16"
    )


def count_shared(first: np.ndarray, second: np.ndarray) -> int:
    """How many images of `second` also occur (identical pixels) in `first`."""
    if first.dtype != second.dtype:
        first, second = as_float01(first), as_float01(second)
    return int(np.isin(image_digests(second), image_digests(first)).sum())


def check_disjoint(
    sets: Mapping[str, ImageSet], digests: Mapping[str, str], max_fraction: float
) -> list[str]:
    """Refuse sides that are the same file or share more than `max_fraction` of their images.

    `sets` maps a policy field (`data.members`, ...) to its images, `digests` each field to
    its file's sha256. Returns notes for overlaps within the tolerance.
    """
    notes = []
    fields = list(sets)
    for i, first in enumerate(fields):
        for second in fields[i + 1 :]:
            if digests.get(first) is not None and digests.get(first) == digests.get(second):
                raise InputError(
                    f"{second}: is the same file as {first} (sha256 {digests[first][:12]}...); "
                    "an audit compares different data: give held-out samples"
                )
            note = _check_overlap(first, sets[first], second, sets[second], max_fraction)
            if note:
                notes.append(note)
    return notes


def _check_overlap(
    first: str, a: ImageSet, second: str, b: ImageSet, max_fraction: float
) -> str | None:
    if a.image_shape != b.image_shape:
        return None  # reported elsewhere as a shape mismatch
    shared = count_shared(a.images, b.images)
    if shared == 0:
        return None
    smaller = min(len(a), len(b))
    fraction = shared / smaller
    text = (
        f"{second}: {shared} of its {len(b)} images also appear in {first} (identical pixels, "
        f"{fraction:.1%} of the smaller set)"
    )
    if fraction > max_fraction:
        raise InputError(
            f"{text}; the sets must be disjoint (tolerance {max_fraction:.1%}, "
            "preconditions.max_shared_fraction): remove the shared images or use the right files"
        )
    return f"{text}: within the tolerance of {max_fraction:.1%} (preconditions.max_shared_fraction)"


# --- the target ------------------------------------------------------------------------------


def chance_accuracy(labels: np.ndarray, num_classes: int) -> float:
    """What a classifier that ignores its input reaches: 1/C, or the most common label's share
    when the labels are unbalanced (always answering it)."""
    counts = np.bincount(labels, minlength=num_classes)
    return float(max(1.0 / num_classes, counts.max() / max(len(labels), 1)))


@dataclass(frozen=True)
class TargetFit:
    """The target's top-1 correctness on the audit samples, by side."""

    member_correct: np.ndarray
    non_member_correct: np.ndarray
    member_labels: np.ndarray
    num_classes: int

    @property
    def member_accuracy(self) -> float:
        return float(self.member_correct.mean())

    @property
    def non_member_accuracy(self) -> float:
        return float(self.non_member_correct.mean())


def check_target_fit(fit: TargetFit, preconditions: Preconditions) -> list[str]:
    """Members classified well above chance; members not significantly worse than non-members.

    The first is an exact one-sided binomial test of the member accuracy against
    chance + ABOVE_CHANCE x (1 - chance): "well above", because a model fed wrongly scaled
    input often still beats chance by a little on thousands of samples. With
    `allow_small_audit` (too few samples for the test) the point estimate decides.
    The second is a one-sided Fisher exact test (members' accuracy below the non-members').
    """
    _check_not_swapped(fit)
    chance = chance_accuracy(fit.member_labels, fit.num_classes)
    floor = chance + ABOVE_CHANCE * (1.0 - chance)
    if _well_above(fit.member_correct, floor, preconditions.allow_small_audit):
        return []
    uniform = chance == 1.0 / fit.num_classes
    basis = f"1/{fit.num_classes} classes" if uniform else "the most common label's share"
    text = (
        f"the target classifies {fit.member_accuracy:.1%} of the members correctly, not well "
        f"above chance ({chance:.1%}, {basis}; needs clearly more than {floor:.1%})"
    )
    if preconditions.allow_weak_target:
        return [f"{text}: allowed by preconditions.allow_weak_target"]
    raise InputError(
        f"preprocessing: {text}, so the audit would not measure the model that ships; check "
        "preprocessing (mean, std on the 0..1 scale, input_size, channel_order) and "
        "model.path (preconditions.allow_weak_target: true only for a target meant to be "
        "untrained)"
    )


def _well_above(correct: np.ndarray, floor: float, small_audit_allowed: bool) -> bool:
    k, n = int(correct.sum()), len(correct)
    if k / max(n, 1) <= floor:
        return False
    if small_audit_allowed:
        return True
    from scipy.stats import binomtest

    return bool(binomtest(k, n, floor, alternative="greater").pvalue < SIGNIFICANCE)


def _check_not_swapped(fit: TargetFit) -> None:
    from scipy.stats import fisher_exact

    m_ok, n_ok = int(fit.member_correct.sum()), int(fit.non_member_correct.sum())
    table = [
        [m_ok, len(fit.member_correct) - m_ok],
        [n_ok, len(fit.non_member_correct) - n_ok],
    ]
    p_value = float(fisher_exact(table, alternative="less").pvalue)
    if p_value < SIGNIFICANCE:
        raise InputError(
            f"data: members and non-members look swapped: the target classifies the members "
            f"({fit.member_accuracy:.1%}) significantly worse than the non-members "
            f"({fit.non_member_accuracy:.1%}; one-sided Fisher exact p = {p_value:.1g}); "
            f"{_SWAP_HINT}"
        )


def check_attacks_oriented(
    is_member: np.ndarray,
    scores_by_attack: Mapping[str, np.ndarray],
    reference_attacks: Collection[str] = (),
) -> None:
    """No attack may score members significantly *below* non-members. (A reference attack
    also does when its reference models fit unlike the target: measured in BENCHMARKS.md,
    LiRA with augmented reference models of an overfit target that never saw augmentation.)

    A one-sided Mann-Whitney test per attack, Bonferroni-corrected over the attacks. (A 95 %
    bootstrap CI entirely below 0.5 would be a looser test: by chance alone it happens to
    2.5 % of the attacks on a model that does not leak, so most eight-attack audits of an
    honest model would see one within a few runs.)
    """
    from scipy.stats import mannwhitneyu

    if not scores_by_attack:
        return
    level = SIGNIFICANCE / len(scores_by_attack)
    for label, scores in scores_by_attack.items():
        members, non_members = scores[is_member], scores[~is_member]
        if np.ptp(scores) == 0:
            continue
        p_value = float(
            mannwhitneyu(members, non_members, alternative="less", method="asymptotic").pvalue
        )
        if p_value < level:
            raise InputError(
                f"data: members and non-members look swapped: attack {label!r} scores the "
                f"members significantly below the non-members (AUC "
                f"{auc(is_member, scores):.3f}, one-sided Mann-Whitney p = {p_value:.1g}); "
                f"{_SWAP_HINT}" + (_REFERENCE_HINT if label in reference_attacks else "")
            )


def swapped_view_problem(
    gate: spec.GateSpec,
    is_member: np.ndarray,
    labels: np.ndarray,
    scores_by_attack: Mapping[str, np.ndarray],
) -> str | None:
    """The gate, read as if members and non-members had been swapped, must hold too; the
    first condition it fails, as the message that says the data look swapped, or None.

    Swapping the sides mirrors an attack (AUC becomes 1 - AUC), so a model that leaks beyond
    a limit passes a swapped audit. For every attack scoring members below non-members, its
    AUC, advantage, TPRs and class AUCs are recomputed with the sides exchanged. On honest data
    a mirrored view fails as often as the honest view fails the same condition by chance (an
    attack near chance lands below 0.5 half the time), so the caller refuses only a run the
    honest view passes: one that fails is a FAIL either way (docs/preconditions-false-alarms.md).
    """
    members = is_member.astype(bool)
    for label, scores in scores_by_attack.items():
        if auc(members, scores) >= 0.5:
            continue
        for condition_id, limit in gate.limits():
            if isinstance(limit, spec.IncreaseLimit | spec.EpsilonLimit):
                continue  # the epsilon bound is symmetric already; baselines compare like views
            scope = limit.attacks or gate.attacks
            if scope is not None and label not in scope:
                continue
            value = _mirrored_value(condition_id, limit, ~members, labels, scores)
            if value is not None and value > limit.max:
                return (
                    f"data: members and non-members look swapped: attack {label!r} scores "
                    f"the members below the non-members (AUC {auc(members, scores):.3f}), and "
                    f"with the sides exchanged it would fail {condition_id.field} "
                    f"({value:.3f} > {limit.max:g})"
                )
    return None


def check_swapped_view(
    problem: str | None, gate_passed: bool, min_false_positives: int = _DEFAULT_MIN_FP
) -> list[str]:
    """Refuse (exit 2) a passing run whose swapped view fails; a failing run keeps its FAIL,
    with a note (it cannot pass whichever way the sides are). Below the default
    `min_false_positives` a mirrored TPR rests on a handful of non-members, so the refusal says
    that it may be chance (it still refuses: swapped data look exactly like this)."""
    if problem is None:
        return []
    if gate_passed:
        raise InputError(f"{problem}; {_SWAP_HINT}{_small_audit_hint(min_false_positives)}")
    return [
        f"{problem.removeprefix('data: ')}; the gate fails with the sides as given too, so "
        "the verdict is FAIL either way (if the data are swapped, " + _SWAP_HINT + ")"
    ]


def _small_audit_hint(min_false_positives: int) -> str:
    if min_false_positives >= _DEFAULT_MIN_FP:
        return ""
    return (
        f"; at statistics.min_false_positives {min_false_positives} (default "
        f"{_DEFAULT_MIN_FP}) a mirrored TPR rests on a few non-members and this fires by chance "
        "on correctly labelled small audits (docs/preconditions-false-alarms.md): if the data "
        "are right, audit more samples at the default"
    )


def _mirrored_value(
    condition_id: spec.ConditionId,
    limit: spec.GateLimit,
    members: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray,
) -> float | None:
    """The condition's point value with `members` as the member side."""
    if isinstance(limit, spec.TprLimit):
        return tpr_at_fpr(members, scores, limit.fpr)
    if isinstance(limit, spec.ClassAucLimit):
        minimum = class_min_samples(limit)
        values = [
            auc(members[labels == c], scores[labels == c])
            for c in np.unique(labels)
            if min((members & (labels == c)).sum(), (~members & (labels == c)).sum()) >= minimum
        ]
        return max(values, default=None)
    if condition_id.metric == "advantage":
        return advantage(members, scores)
    return auc(members, scores)


# --- the gate --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditSize:
    n_members: int
    n_non_members: int
    class_sizes: Sequence[tuple[int, int]] = ()

    @property
    def per_side(self) -> int:
        return min(self.n_members, self.n_non_members)


def check_sample_sizes(
    gate: spec.GateSpec, size: AuditSize, statistics: StatisticsSpec, preconditions: Preconditions
) -> list[str]:
    """Refuse (exit 2) every condition the audit set is too small to decide; with
    `allow_small_audit`, note each instead (the verdict is then a smoke test)."""
    problems = []
    for condition_id, limit in gate.limits():
        problem = _size_problem(condition_id, limit, size, statistics)
        if problem is not None:
            problems.append(problem)
    if not problems:
        return []
    if preconditions.allow_small_audit:
        return [
            f"{problem}: evaluated anyway (preconditions.allow_small_audit): this verdict is a "
            "smoke test, not evidence"
            for problem in problems
        ]
    raise PolicyError(
        f"{problems[0]}; audit more samples (data.max_per_side, more data), or set "
        "preconditions.allow_small_audit: true for a smoke test"
    )


def _size_problem(
    condition_id: spec.ConditionId,
    limit: spec.GateLimit,
    size: AuditSize,
    statistics: StatisticsSpec,
) -> str | None:
    field = condition_id.field
    have = f"the audit set has {size.n_members} members and {size.n_non_members} non-members"
    if isinstance(limit, spec.ClassAucLimit):
        return _class_problem(limit, size)
    if isinstance(limit, spec.TprLimit | spec.TprIncreaseLimit):
        members = sample_size.min_members_tpr()
        non_members = min_negatives_for_fpr(limit.fpr, statistics.min_false_positives)
        if size.n_members < members or size.n_non_members < non_members:
            return (
                f"{field}: a TPR at FPR {limit.fpr:g} needs at least {members} members and "
                f"{non_members} non-members; {have}"
            )
        return None
    if isinstance(limit, spec.EpsilonLimit):
        needed = _epsilon_minimum(field, limit.max, statistics)
        what = f"an epsilon limit of {limit.max:g} needs"
    elif condition_id.metric == "advantage":
        needed = sample_size.min_per_side_advantage()
        what = "an advantage condition needs"
    else:  # auc, auc_increase
        needed = sample_size.min_per_side_auc()
        what = "an AUC condition needs"
    if size.per_side >= needed:
        return None
    return f"{field}: {what} at least {needed} members and {needed} non-members; {have}"


def _epsilon_minimum(field: str, limit: float, statistics: StatisticsSpec) -> int:
    """The per-side minimum of an epsilon limit; PolicyError (exit 2, whatever
    allow_small_audit says) for a limit no audit of any size can exceed: such a condition can
    never fail, so a run that passed on it would check nothing."""
    delta, confidence = statistics.delta, statistics.confidence_level
    try:
        return sample_size.min_per_side_epsilon(limit, delta, confidence)
    except ValueError:
        largest = sample_size.largest_checkable_epsilon(delta, confidence)
        reach = largest + sample_size.EPSILON_HEADROOM
        raise PolicyError(
            f"{field}: {limit:g} can never be exceeded: even a perfect attack on 10^9 members "
            f"and 10^9 non-members shows an epsilon lower bound of only {reach:.1f} "
            f"({100 * confidence:g} % confidence, delta {delta:g}), so the condition could "
            f"never fail; set a limit of at most {largest:.1f} (docs/preconditions.md gives "
            "the audit size each limit needs), or drop the condition"
        ) from None


def _class_problem(limit: spec.ClassAucLimit, size: AuditSize) -> str | None:
    minimum = sample_size.min_per_side_auc()
    if limit.min_samples is not None and limit.min_samples < minimum:
        return (
            f"gate.max_class_auc.min_samples: {limit.min_samples} is below the {minimum} "
            "members and non-members per class an AUC condition needs"
        )
    needed = class_min_samples(limit)
    largest = max((min(sizes) for sizes in size.class_sizes), default=0)
    if largest >= needed:
        return None
    return (
        f"gate.max_class_auc: no class has {needed} members and {needed} non-members "
        f"(the largest has {largest} of its smaller side)"
    )


def check_waivers(suppressions: Sequence[spec.Suppression], today: date) -> None:
    """A waiver that runs more than MAX_WAIVER_DAYS ahead is a permanent one in disguise."""
    horizon = today + timedelta(days=MAX_WAIVER_DAYS)
    for index, suppression in enumerate(suppressions):
        if suppression.expires > horizon:
            raise PolicyError(
                f"gate.suppressions[{index}].expires: {suppression.expires} is more than "
                f"{MAX_WAIVER_DAYS} days ahead (today is {today}, UTC); waivers must be renewed "
                f"at least yearly: set an expiry on or before {horizon}"
            )
