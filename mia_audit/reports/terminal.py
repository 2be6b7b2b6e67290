"""The few lines `mia-audit run` prints when it finishes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mia_audit.result import Result, strongest_attack


def verdict_line(result: Result) -> str:
    failed = sum(not c.passed for c in result.gate.conditions)
    total = len(result.gate.conditions)
    verdict = "PASS" if result.passed else "FAIL"
    if total == 0:
        detail = "no gate conditions set"
    elif failed:
        detail = f"{failed} of {total} gate conditions failed"
    else:
        detail = f"all {total} gate conditions hold"
    return f"{verdict} {result.policy.name}: {detail}"


def summary_text(result: Result, written: Sequence[Path] = ()) -> str:
    lines = [verdict_line(result)]
    for condition in result.gate.conditions:
        mark = "ok  " if condition.passed else "FAIL"
        lines.append(
            f"  {mark} {condition.description}: {condition.value:.4f} ({condition.attack})"
        )
    best = strongest_attack(result)
    lines.append(
        f"strongest attack: {best.id}  AUC {best.auc:.4f}  "
        f"TPR@5% FPR {best.tpr_at_fpr.get('0.05', float('nan')):.4f}"
    )
    accuracy = result.target.accuracy
    lines.append(
        f"target accuracy: members {accuracy.members:.3f}, non-members {accuracy.non_members:.3f}"
    )
    report = next((p for p in written if p.suffix == ".html"), None)
    if report is not None:
        lines.append(f"report: {report}")
    elif written:
        lines.append(f"outputs: {', '.join(str(p) for p in written)}")
    return "\n".join(lines)
