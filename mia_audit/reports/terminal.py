"""The few lines `mia-audit run` prints when it finishes.

Names in them come from the policy and the data (the policy name, attack ids, waiver reasons,
paths): every line goes through `printable`, so none can break into a second line.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mia_audit.reports.text import printable
from mia_audit.result import Condition, Result, strongest_attack, worst_attack


def _waiver_text(condition: Condition) -> str:
    """The line's suffix: until when and why it is waived, when its waiver expired, or ""."""
    if condition.waived:
        reason = " ".join((condition.waiver_reason or "").split())
        return f" - waived until {condition.waiver_expires}: {reason}"
    if condition.waiver_expired:
        return f" - waiver expired {condition.waiver_expires}"
    return ""


def verdict_line(result: Result) -> str:
    failed = sum(not c.holds for c in result.gate.conditions)
    waived = sum(c.waived for c in result.gate.conditions)
    total = len(result.gate.conditions)
    verdict = "PASS" if result.passed else "FAIL"
    if total == 0:
        detail = "no gate conditions set"
    elif failed:
        detail = f"{failed} of {total} gate conditions failed"
    elif waived:
        detail = f"{total - waived} of {total} gate conditions hold"
    else:
        detail = f"all {total} gate conditions hold"
    if waived:
        detail += f", {waived} failure{'s' if waived > 1 else ''} waived"
    return printable(f"{verdict} {result.policy.name}: {detail}")


def summary_text(result: Result, written: Sequence[Path] = ()) -> str:
    lines = [verdict_line(result)]
    for condition in result.gate.conditions:
        mark = "ok  " if condition.passed else ("WAIV" if condition.waived else "FAIL")
        lines.append(
            f"  {mark} {condition.description}: {condition.value:.4f} ({condition.attack})"
            + _waiver_text(condition)
        )
        if condition.metric.startswith("dp_claim") and condition.note and not condition.passed:
            lines.append(f"       {condition.note}")
    best = strongest_attack(result)
    lines.append(
        f"strongest attack: {best.id}  AUC {best.auc:.4f}  "
        f"TPR@5% FPR {best.tpr_at_fpr.get('0.05', float('nan')):.4f}"
    )
    top = worst_attack(result, "auc")
    if top is not None and top.id != best.id:
        lines.append(f"highest AUC: {top.id}  AUC {top.auc:.4f}")
    accuracy = result.target.accuracy
    lines.append(
        f"target accuracy: members {accuracy.members:.3f}, non-members {accuracy.non_members:.3f}"
    )
    if result.references is not None:
        fit = result.references
        lines.append(
            f"reference models: training accuracy {fit.train:.3f}, held-out {fit.held_out:.3f}"
            + ("" if fit.reproduces_target else " (below the target's: see the notes)")
        )
        if fit.calibration is not None:
            lines.append(f"calibration pilot: {fit.calibration.summary()}")
    report = next((p for p in written if p.suffix == ".html"), None)
    if report is not None:
        lines.append(f"report: {report}")
    elif written:
        lines.append(f"outputs: {', '.join(str(p) for p in written)}")
    return "\n".join(printable(line) for line in lines)
