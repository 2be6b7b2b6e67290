"""The gate: compare attack metrics with the policy's limits (pure, except `gate_baseline`,
which reads the baseline result file).

Each condition is checked against every attack in its scope and the worst attack decides, so
adding a stronger attack can only make the gate stricter. `statistic: upper` gates on the upper
bound of the metric's bootstrap CI (never below the point estimate, so it is never laxer than
`point`). Baseline conditions compare each attack with the same attack in a previous result.
Suppressions then waive failing conditions until their expiry date; today's date is a parameter
so that tests (and reruns) can pin it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any

from mia_audit.errors import (
    InputError,
    PolicyError,
)
from mia_audit.evaluation.metrics import fpr_key, is_fpr_supported, min_negatives_for_fpr
from mia_audit.evaluation.sample_size import min_per_side_auc
from mia_audit.gate.baseline import Baseline, load_baseline
from mia_audit.gate.spec import (
    ClassAucLimit,
    ConditionId,
    EpsilonLimit,
    GateLimit,
    GateSpec,
    IncreaseLimit,
    MetricLimit,
    Suppression,
    TprIncreaseLimit,
    TprLimit,
)
from mia_audit.result import (
    AttackResult,
    Condition,
    Interval,
    Statistic,
)

#: Baseline deltas are rounded to this many decimals, so that 0.62 - 0.60 counts as 0.02.
_DELTA_DECIMALS = 12


def utc_today() -> date:
    """Today in UTC: the default clock of suppression expiry (the same on every CI runner)."""
    return datetime.now(timezone.utc).date()


@dataclass(frozen=True)
class ClassAuc:
    """One class slice of one attack, as the class_auc condition sees it."""

    label: str
    auc: float
    ci: Interval | None
    n_members: int
    n_non_members: int


@dataclass(frozen=True)
class AttackMetrics:
    """Gate-relevant metrics of one attack; `ci` holds confidence intervals by condition
    (`auc`, `advantage`, `tpr_at_fpr@0.05`)."""

    auc: float
    advantage: float
    tpr_at_fpr: Mapping[float, float]
    ci: Mapping[ConditionId, Interval] = field(default_factory=dict)
    epsilon: float | None = None
    classes: Sequence[ClassAuc] = ()

    def point(self, condition: ConditionId) -> float:
        if condition.metric == "auc":
            return self.auc
        if condition.metric == "advantage":
            return self.advantage
        assert condition.fpr is not None, condition
        return self.tpr_at_fpr[condition.fpr]

    def value(self, condition: ConditionId, statistic: Statistic) -> float:
        """The point estimate, or for `upper` the CI's upper bound (at least the point)."""
        point = self.point(condition)
        if statistic != "upper":
            return point
        if condition not in self.ci:
            raise KeyError(f"no confidence interval computed for {condition}")
        return max(point, self.ci[condition][1])


def gate_fprs(gate: GateSpec) -> list[float]:
    """Every FPR a condition reads a TPR at (so every attack reports it)."""
    fprs = [limit.fpr for limit in gate.max_tpr_at_fpr]
    return fprs + [limit.fpr for limit in gate.max_tpr_at_fpr_increase]


def evaluate_gate(
    gate: GateSpec,
    metrics: Mapping[str, AttackMetrics],
    *,
    baseline: Baseline | None = None,
    today: date | None = None,
    extra_epsilon: Mapping[str, float] | None = None,
) -> list[Condition]:
    """Every condition against the attacks in its scope, then the suppressions as of `today`
    (default: `utc_today()`). `extra_epsilon` adds bounds that are not attacks' (the one-run
    audit) to max_epsilon_lower_bound, whatever its scope: they can only make it stricter."""
    conditions = [
        _evaluate_limit(gate, condition_id, limit, metrics, baseline, extra_epsilon or {})
        for condition_id, limit in gate.limits()
    ]
    return apply_suppressions(conditions, gate.suppressions, today or utc_today())


def gate_passed(conditions: Sequence[Condition]) -> bool:
    """The verdict: every condition passed or has its failure waived."""
    return all(condition.holds for condition in conditions)


def _scope(gate: GateSpec, limit: GateLimit, metrics: Mapping[str, AttackMetrics]) -> list[str]:
    return list(limit.attacks or gate.attacks or tuple(metrics))


def _evaluate_limit(
    gate: GateSpec,
    condition_id: ConditionId,
    limit: GateLimit,
    metrics: Mapping[str, AttackMetrics],
    baseline: Baseline | None,
    extra_epsilon: Mapping[str, float],
) -> Condition:
    scope = _scope(gate, limit, metrics)
    if isinstance(limit, IncreaseLimit):
        return _evaluate_increase(condition_id, limit, scope, metrics, baseline)
    if isinstance(limit, EpsilonLimit):
        return _evaluate_epsilon(limit, scope, metrics, extra_epsilon)
    if isinstance(limit, ClassAucLimit):
        return _evaluate_class_auc(limit, scope, metrics)
    return _evaluate(condition_id, limit, scope, metrics)


def _worst(per_attack: Mapping[str, float]) -> str:
    return max(per_attack, key=lambda attack: per_attack[attack])


def _decided_by(
    worst: str,
    condition: ConditionId,
    limit: GateLimit,
    per_attack: dict[str, float],
    **details: Any,
) -> Condition:
    """The condition as attack `worst` decides it: its value in `per_attack` against the limit;
    `details` are the fields only some kinds of condition fill."""
    value = per_attack[worst]
    return Condition(
        id=str(condition),
        metric=condition.metric,
        fpr=condition.fpr,
        attack=worst,
        value=value,
        threshold=limit.max,
        passed=value <= limit.max,
        per_attack=per_attack,
        description=describe_limit(condition.metric, limit),
        **details,
    )


def _evaluate(
    condition: ConditionId,
    limit: MetricLimit,
    scope: Sequence[str],
    metrics: Mapping[str, AttackMetrics],
) -> Condition:
    per_attack = {attack: metrics[attack].value(condition, limit.statistic) for attack in scope}
    worst = _worst(per_attack)
    return _decided_by(
        worst,
        condition,
        limit,
        per_attack,
        statistic=limit.statistic,
        point=metrics[worst].point(condition),
        ci=metrics[worst].ci.get(condition),
    )


def _evaluate_epsilon(
    limit: EpsilonLimit,
    scope: Sequence[str],
    metrics: Mapping[str, AttackMetrics],
    extra: Mapping[str, float],
) -> Condition:
    per_attack: dict[str, float] = dict(extra)
    for attack in scope:
        epsilon = metrics[attack].epsilon
        if epsilon is None:
            raise InputError(
                f"gate.max_epsilon_lower_bound: attack {attack!r} has no epsilon bound "
                "(it needs at least 2 members and 2 non-members)"
            )
        per_attack[attack] = epsilon
    worst = _worst(per_attack)
    condition = ConditionId("epsilon_lower_bound")
    return _decided_by(worst, condition, limit, per_attack, point=per_attack[worst])


def _class_value(row: ClassAuc, statistic: Statistic) -> float:
    if statistic == "upper" and row.ci is not None:
        return max(row.auc, row.ci[1])
    return row.auc


def _evaluate_class_auc(
    limit: ClassAucLimit, scope: Sequence[str], metrics: Mapping[str, AttackMetrics]
) -> Condition:
    """Per attack its strongest gated class; then the strongest attack decides."""
    minimum = class_min_samples(limit)
    worst_class: dict[str, ClassAuc] = {}
    skipped: set[str] = set()
    for attack in scope:
        rows = metrics[attack].classes
        gated = [r for r in rows if min(r.n_members, r.n_non_members) >= minimum]
        skipped.update(r.label for r in rows if r not in gated)
        if gated:
            worst_class[attack] = max(gated, key=lambda r: _class_value(r, limit.statistic))
    if not worst_class:
        raise PolicyError(_no_gated_class_message(limit))
    per_attack = {a: _class_value(row, limit.statistic) for a, row in worst_class.items()}
    worst = _worst(per_attack)
    row = worst_class[worst]
    note = None
    if skipped:
        note = f"not gated (fewer than {minimum} members or non-members): class " + ", ".join(
            sorted(skipped)
        )
    return _decided_by(
        worst,
        ConditionId("class_auc"),
        limit,
        per_attack,
        statistic=limit.statistic,
        point=row.auc,
        ci=row.ci,
        slice=f"class {row.label}",
        note=note,
    )


def class_min_samples(limit: ClassAucLimit) -> int:
    """Members and non-members a class needs to be gated (default: an AUC condition's minimum,
    docs/preconditions.md)."""
    return limit.min_samples or min_per_side_auc()


def _no_gated_class_message(limit: ClassAucLimit) -> str:
    minimum = class_min_samples(limit)
    return (
        f"gate.max_class_auc: no class has {minimum} members and {minimum} non-members; "
        "audit more samples"
    )


def _evaluate_increase(
    condition_id: ConditionId,
    limit: IncreaseLimit,
    scope: Sequence[str],
    metrics: Mapping[str, AttackMetrics],
    baseline: Baseline | None,
) -> Condition:
    """Per attack: the value now minus the same attack's value in the baseline."""
    if baseline is None:
        raise PolicyError(missing_baseline_message(condition_id))
    compared = [attack for attack in scope if attack in baseline.attacks]
    if not compared:
        raise InputError(
            f"baseline: {baseline.info.path}: has none of the attacks {', '.join(scope)} that "
            f"gate condition {condition_id} compares; use a baseline from the same attack suite"
        )
    metric = condition_id.compared
    previous = {a: _baseline_value(baseline, a, metric) for a in compared}
    current = {a: metrics[a].point(metric) for a in compared}
    deltas = {a: round(current[a] - previous[a], _DELTA_DECIMALS) for a in compared}
    worst = _worst(deltas)
    missing = [attack for attack in scope if attack not in baseline.attacks]
    return _decided_by(
        worst,
        condition_id,
        limit,
        deltas,
        point=current[worst],
        baseline_value=previous[worst],
        current_value=current[worst],
        note=f"not in the baseline: {', '.join(missing)}" if missing else None,
    )


def missing_baseline_message(condition_id: ConditionId) -> str:
    return (
        f"{condition_id.field}: needs a baseline result: pass --baseline previous/result.json "
        "or set gate.baseline"
    )


def _baseline_value(baseline: Baseline, attack: str, metric: ConditionId) -> float:
    previous = baseline.attacks[attack]
    if metric.fpr is None:
        return previous.auc
    key = fpr_key(metric.fpr)
    if key not in previous.tpr_at_fpr:
        raise InputError(
            f"baseline: {baseline.info.path}: attack {attack!r} has no TPR at FPR {key}; "
            "use a baseline whose policy gated or reported that FPR"
        )
    return previous.tpr_at_fpr[key]


def describe_limit(metric: str, limit: GateLimit) -> str:
    """The condition in words, e.g. "TPR at FPR 0.05 <= 0.1 (upper confidence bound)"."""
    if isinstance(limit, TprIncreaseLimit):
        return f"TPR at FPR {limit.fpr:.4g} rises by <= {limit.max:.4g} over the baseline"
    if isinstance(limit, IncreaseLimit):
        return f"AUC rises by <= {limit.max:.4g} over the baseline"
    bound = " (upper confidence bound)" if limit.statistic == "upper" else ""
    if isinstance(limit, TprLimit):
        return f"TPR at FPR {limit.fpr:.4g} <= {limit.max:.4g}{bound}"
    label = {
        "auc": "AUC",
        "advantage": "attacker advantage",
        "epsilon_lower_bound": "epsilon lower bound",
        "class_auc": "AUC within every class",
    }.get(metric, metric)
    return f"{label} <= {limit.max:.4g}{bound}"


# --- suppressions ------------------------------------------------------------------------------


def apply_suppressions(
    conditions: Sequence[Condition], suppressions: Sequence[Suppression], today: date
) -> list[Condition]:
    """Waive failing conditions whose every failing attack an unexpired suppression covers.

    A suppression applies through its `expires` day. A failure that only an expired
    suppression would cover is marked `waiver_expired` and still fails. Passing conditions are
    left alone.
    """
    return [
        _suppress(condition, [s for s in suppressions if s.matches(_id_of(condition))], today)
        for condition in conditions
    ]


def _id_of(condition: Condition) -> ConditionId:
    return ConditionId(condition.metric, condition.fpr)


def _covering(attack: str, suppressions: Sequence[Suppression]) -> Suppression | None:
    return next((s for s in suppressions if s.attack in (None, attack)), None)


def _suppress(condition: Condition, suppressions: Sequence[Suppression], today: date) -> Condition:
    if condition.passed or not suppressions:
        return condition
    failing = [a for a, v in condition.per_attack.items() if v > condition.threshold]
    failing = failing or [condition.attack]
    active = [s for s in suppressions if s.expires >= today]
    waivers = [_covering(attack, active) for attack in failing]
    if all(w is not None for w in waivers):
        used = [w for w in waivers if w is not None]
        return condition.model_copy(update=_waiver_fields(used, waived=True))
    expired = [s for s in suppressions if s.expires < today]
    lapsed = [_covering(a, expired) for a, w in zip(failing, waivers, strict=True) if w is None]
    used = [w for w in lapsed if w is not None]
    if used:
        return condition.model_copy(update=_waiver_fields(used, waived=False))
    return condition


def _waiver_fields(used: Sequence[Suppression], *, waived: bool) -> dict[str, object]:
    reasons = list(dict.fromkeys(s.reason.strip() for s in used))
    return {
        "waived": waived,
        "waiver_expired": not waived,
        "waiver_reason": "; ".join(reasons),
        "waiver_expires": min(s.expires for s in used),
    }


# --- what the data can support -----------------------------------------------------------------


def check_gate_support(
    gate: GateSpec,
    n_non_members: int,
    min_false_positives: int,
) -> None:
    """Refuse (PolicyError, exit 2) conditions the audit set is too small to decide.

    A TPR at FPR a rests on the a * n non-members allowed above the threshold; with fewer than
    `min_false_positives` of them the figure is noise, so gating on it is a policy error whose
    message says how many non-members it would need. The other minimum sample sizes are
    `preconditions.check_sample_sizes`.
    """
    for condition_id, limit in gate.limits():
        if isinstance(limit, TprLimit | TprIncreaseLimit):
            fpr = limit.fpr
            if not is_fpr_supported(n_non_members, fpr, min_false_positives):
                raise PolicyError(
                    unsupported_fpr_message(condition_id, fpr, n_non_members, min_false_positives)
                )


def unsupported_fpr_message(
    condition_id: ConditionId, fpr: float, n_non_members: int, min_false_positives: int
) -> str:
    """One line: which condition, how many non-members it needs, how many there are."""
    field = condition_id.field
    if fpr == 0.0:
        return (
            f"{field}: FPR 0 allows no false positive, so no number of non-members supports "
            "a TPR there; gate on a positive FPR"
        )
    needed = min_negatives_for_fpr(fpr, min_false_positives)
    return (
        f"{field}: FPR {fpr:g} needs at least {needed} non-members "
        f"({min_false_positives} false positives at that rate, statistics.min_false_positives) "
        f"but the audit set has {n_non_members}; gate on a larger FPR or audit more non-members"
    )


def gate_metrics_by_attack(
    results: Sequence[AttackResult], gate: GateSpec
) -> dict[str, AttackMetrics]:
    """What the gate reads of every attack, by attack id."""
    fprs = gate_fprs(gate)
    return {result.id: gate_metrics(result, fprs) for result in results}


def gate_metrics(result: AttackResult, fprs: Iterable[float] = ()) -> AttackMetrics:
    """What the gate reads of one attack: point estimates, CIs, epsilon, class slices, and
    the TPR at each of `fprs` (the gate's; result.json keys them by `fpr_key`)."""
    tprs = {fpr: fpr_key(fpr) for fpr in fprs}
    ci = {
        ConditionId("tpr_at_fpr", fpr): result.tpr_at_fpr_ci[key]
        for fpr, key in tprs.items()
        if key in result.tpr_at_fpr_ci
    }
    if result.auc_ci is not None:
        ci[ConditionId("auc")] = result.auc_ci
    if result.advantage_ci is not None:
        ci[ConditionId("advantage")] = result.advantage_ci
    classes = [
        ClassAuc(
            label=str(row.label) if row.name is None else f"{row.label} ({row.name})",
            auc=row.auc,
            ci=row.auc_ci,
            n_members=row.n_members,
            n_non_members=row.n_non_members,
        )
        for row in result.per_class
        if row.auc is not None
    ]
    epsilon = result.epsilon_lower_bound
    return AttackMetrics(
        auc=result.auc,
        advantage=result.advantage,
        tpr_at_fpr={fpr: result.tpr_at_fpr[key] for fpr, key in tprs.items()},
        ci=ci,
        epsilon=None if epsilon is None else epsilon.value,
        classes=classes,
    )


def gate_baseline(gate: GateSpec) -> Baseline | None:
    """The baseline the gate compares with, checked before any work is done (exit 2)."""
    if gate.baseline is None:
        if gate.needs_baseline:
            first = next(i for i, _ in gate.limits() if i.is_increase)
            raise PolicyError(missing_baseline_message(first))
        return None
    return load_baseline(gate.baseline)
