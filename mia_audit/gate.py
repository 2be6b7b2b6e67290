"""The gate: compare attack metrics with the policy's limits (pure; no I/O).

Each condition is checked against every attack in its scope and the worst attack decides, so
adding a stronger attack can only make the gate stricter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from mia_audit.metrics import fpr_key
from mia_audit.policy import GateSpec, MetricLimit, TprLimit
from mia_audit.result import Condition


@dataclass(frozen=True)
class AttackMetrics:
    """Gate-relevant metrics of one attack; `upper` holds upper confidence bounds by metric."""

    auc: float
    advantage: float
    tpr_at_fpr: Mapping[float, float]
    upper: Mapping[str, float] = field(default_factory=dict)

    def value(self, metric: str, statistic: str) -> float:
        if statistic == "upper":
            if metric not in self.upper:
                raise KeyError(f"no upper confidence bound computed for {metric}")
            return self.upper[metric]
        if metric == "auc":
            return self.auc
        if metric == "advantage":
            return self.advantage
        return self.tpr_at_fpr[_fpr_of(metric)]


def metric_name(limit: MetricLimit, base: str) -> str:
    return f"tpr_at_fpr@{fpr_key(limit.fpr)}" if isinstance(limit, TprLimit) else base


def _fpr_of(metric: str) -> float:
    return float(metric.split("@", 1)[1])


def gate_limits(gate: GateSpec) -> list[tuple[str, MetricLimit]]:
    """(metric name, limit) for every condition in the policy, in a stable order."""
    limits: list[tuple[str, MetricLimit]] = []
    if gate.max_auc is not None:
        limits.append(("auc", gate.max_auc))
    limits.extend((metric_name(limit, "tpr_at_fpr"), limit) for limit in gate.max_tpr_at_fpr)
    if gate.max_advantage is not None:
        limits.append(("advantage", gate.max_advantage))
    return limits


def gate_fprs(gate: GateSpec) -> list[float]:
    return [limit.fpr for limit in gate.max_tpr_at_fpr]


def evaluate_gate(gate: GateSpec, metrics: Mapping[str, AttackMetrics]) -> list[Condition]:
    return [_evaluate(gate, name, limit, metrics) for name, limit in gate_limits(gate)]


def _evaluate(
    gate: GateSpec, metric: str, limit: MetricLimit, metrics: Mapping[str, AttackMetrics]
) -> Condition:
    scope = limit.attacks or gate.attacks or tuple(metrics)
    per_attack = {attack: metrics[attack].value(metric, limit.statistic) for attack in scope}
    worst = max(per_attack, key=lambda attack: per_attack[attack])
    value = per_attack[worst]
    return Condition(
        metric=metric.split("@", 1)[0],
        fpr=limit.fpr if isinstance(limit, TprLimit) else None,
        attack=worst,
        value=value,
        threshold=limit.max,
        passed=value <= limit.max,
        statistic=limit.statistic,
        per_attack=per_attack,
        description=describe_limit(metric, limit),
    )


def describe_limit(metric: str, limit: MetricLimit) -> str:
    bound = " (upper confidence bound)" if limit.statistic == "upper" else ""
    if isinstance(limit, TprLimit):
        return f"TPR at FPR {limit.fpr:.4g} <= {limit.max:.4g}{bound}"
    label = {"auc": "AUC", "advantage": "attacker advantage"}.get(metric, metric)
    return f"{label} <= {limit.max:.4g}{bound}"
