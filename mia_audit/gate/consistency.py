"""Whether a result.json agrees with itself: the verdict with its conditions, each condition
with its value and threshold, each value with the attacks' figures it was taken from.

`mia-audit render` re-renders a result without re-running anything, so an edited `passed`
would otherwise become a PASS banner and a green JUnit report; the integrity hash
(`Result.sha256`) catches any edit, this names the field an edit contradicts.
"""

from __future__ import annotations

from mia_audit.errors import EXIT_GATE_FAILED, EXIT_PASS
from mia_audit.gate.evaluate import gate_metrics
from mia_audit.gate.spec import ConditionId
from mia_audit.result import Condition, Result

#: Metrics whose per-attack values are the attacks' own figures (the others need a baseline or
#: the class slices, and are checked through value, threshold and passed only).
_FIGURES = ("auc", "advantage", "tpr_at_fpr")


def contradictions(result: Result) -> list[str]:
    """Each field that contradicts the rest, as `field: why` (empty when consistent)."""
    problems = []
    if result.passed != result.gate.passed:
        problems.append(
            f"passed: is {_json(result.passed)} but gate.passed is {_json(result.gate.passed)}"
        )
    expected_code = EXIT_PASS if result.passed else EXIT_GATE_FAILED
    if result.exit_code != expected_code:
        problems.append(f"exit_code: is {result.exit_code} but passed is {_json(result.passed)}")
    holds = all(condition.holds for condition in result.gate.conditions)
    if result.gate.passed != holds:
        problems.append(
            f"gate.passed: is {_json(result.gate.passed)} but "
            + ("every condition holds" if holds else "a condition fails")
        )
    for index, condition in enumerate(result.gate.conditions):
        problems += _condition_problems(result, f"gate.conditions[{index}]", condition)
    return problems


def _condition_problems(result: Result, where: str, condition: Condition) -> list[str]:
    problems = []
    if condition.passed != (condition.value <= condition.threshold):
        problems.append(
            f"{where}.passed: is {_json(condition.passed)} but its value {condition.value:.4f} "
            f"is {'at most' if condition.value <= condition.threshold else 'above'} its "
            f"threshold {condition.threshold:g}"
        )
    if condition.per_attack and condition.value != max(condition.per_attack.values()):
        problems.append(
            f"{where}.value: is {condition.value:.4f} but the strongest attack in per_attack "
            f"has {max(condition.per_attack.values()):.4f}"
        )
    if condition.metric in _FIGURES:
        problems += _figure_problems(result, where, condition)
    return problems


def _figure_problems(result: Result, where: str, condition: Condition) -> list[str]:
    attacks = {attack.id: attack for attack in result.attacks}
    condition_id = ConditionId(condition.metric, condition.fpr)
    problems = []
    for attack_id, value in condition.per_attack.items():
        if attack_id not in attacks:
            problems.append(
                f"{where}.per_attack: names attack {attack_id!r}, which is not in attacks"
            )
            continue
        try:
            fprs = () if condition.fpr is None else (condition.fpr,)
            metrics = gate_metrics(attacks[attack_id], fprs)
            figure = metrics.value(condition_id, condition.statistic)
        except KeyError:
            problems.append(f"{where}.per_attack: attack {attack_id!r} has no {condition.id}")
            continue
        if figure != value:
            problems.append(
                f"{where}.per_attack.{attack_id}: is {value:.4f} but attack {attack_id!r} has "
                f"{figure:.4f}"
            )
    return problems


def _json(value: bool) -> str:
    return "true" if value else "false"
