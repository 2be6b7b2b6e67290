"""results.sarif: SARIF 2.1.0 for code scanning (docs/sarif.md).

One result per failed gate condition and one per relaxed precondition, each at the line of the
policy file that set it, with the audited model as a related location. Rule ids are the policy
keys (`gate.max_auc`, `gate.max_tpr_at_fpr`, `preconditions.allow_small_audit`): stable per
kind of condition, so code scanning tracks one alert across runs. A failure an unexpired
suppression waives is a result with an accepted in-source suppression (code scanning shows it as
dismissed), not an omission. Line numbers come from the policy file named in result.json, read
again when it still has the sha256 the run recorded (`mia-audit render` works from result.json
alone); otherwise a result points at the file without a line. Reading it takes the policy
package's YAML loader and `Preconditions` (imported lazily, at render time): the one report
format that reaches above `reports/`, because result.json holds the policy as written but not
its line numbers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mia_audit.evaluation.metrics import fpr_key
from mia_audit.reports import register_format
from mia_audit.reports.text import printable
from mia_audit.result import Condition, Result

SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://github.com/mia-audit/mia-audit"
SRCROOT = "SRCROOT"
Lines = dict[tuple[str | int, ...], int]

#: The checks a policy may relax (`Preconditions.relaxed`), in words.
PRECONDITION_TEXT = {
    "allow_small_audit": "gate conditions evaluated on an audit set below their documented "
    "minimum: the verdict is a smoke test, not evidence",
    "allow_weak_target": "a target that does not classify its members well above chance is "
    "accepted (normally a sign of wrong preprocessing)",
    "max_shared_fraction": "data sets may share more images than the default 1% before the "
    "audit is refused",
}


@dataclass(frozen=True)
class Finding:
    rule: str
    level: str
    message: str
    key: tuple[str | int, ...]
    fingerprint: str
    condition: Condition | None = None


def policy_lines(result: Result) -> Lines:
    """The policy file's key -> line map, if the file is still the one the run read."""
    import hashlib

    from mia_audit.errors import PolicyError
    from mia_audit.policy._yaml import load_yaml

    path = Path(result.policy.path)
    try:
        if hashlib.sha256(path.read_bytes()).hexdigest() != result.policy.sha256:
            return {}
        return load_yaml(path)[1]
    except (OSError, PolicyError):
        return {}


def condition_key(condition: Condition, document: dict[str, Any]) -> tuple[str | int, ...]:
    """Where in the policy a condition is set: its gate key, or the list item of its FPR."""
    key = f"max_{condition.metric}"
    gate = document.get("gate")
    value = gate.get(key) if isinstance(gate, dict) else None
    if condition.fpr is not None and isinstance(value, list):
        for index, item in enumerate(value):
            fpr = item.get("fpr", 0.05) if isinstance(item, dict) else 0.05
            if isinstance(fpr, int | float) and fpr_key(fpr) == fpr_key(condition.fpr):
                return ("gate", key, index)
    return ("gate", key)


def condition_message(condition: Condition) -> str:
    """The line the terminal prints for the condition (reports/terminal.py)."""
    mark = "WAIV" if condition.waived else "FAIL"
    text = f"{mark} {condition.description}: {condition.value:.4f} ({condition.attack})"
    if condition.waived:
        reason = " ".join((condition.waiver_reason or "").split())
        text += f" - waived until {condition.waiver_expires}: {reason}"
    elif condition.waiver_expired:
        text += f" - waiver expired {condition.waiver_expires}"
    return printable(text)


def findings(result: Result) -> list[Finding]:
    document = result.policy.document if isinstance(result.policy.document, dict) else {}
    found = [
        Finding(
            rule=f"gate.max_{c.metric}",
            level="error",
            message=condition_message(c),
            key=condition_key(c, document),
            fingerprint=f"{result.policy.name}:{c.id or c.metric}",
            condition=c,
        )
        for c in result.gate.conditions
        if not c.passed
    ]
    return found + _relaxed(result, document)


def _relaxed(result: Result, document: dict[str, Any]) -> list[Finding]:
    from mia_audit.policy.run import Preconditions

    written = document.get("preconditions")
    try:
        relaxed = Preconditions.model_validate(written or {}).relaxed()
    except ValueError:
        relaxed = []
    out = []
    for field in relaxed:
        key = field.removeprefix("preconditions.")
        notes = [n for n in result.notes + result.data.notes if field in n]
        message = "; ".join(notes) if notes else f"{field}: {PRECONDITION_TEXT.get(key, key)}"
        out.append(
            Finding(
                rule=field,
                level="warning",
                message=printable(message),
                key=("preconditions", key),
                fingerprint=f"{result.policy.name}:{field}",
            )
        )
    return out


def _rule(rule_id: str) -> dict[str, Any]:
    if rule_id.startswith("gate."):
        what = rule_id.removeprefix("gate.max_").replace("_", " ")
        text = f"A privacy gate condition on the {what} failed"
        level = "error"
    else:
        text = f"The policy relaxes a check made before the verdict ({rule_id})"
        level = "warning"
    return {
        "id": rule_id,
        "name": rule_id.replace(".", "_"),
        "shortDescription": {"text": text},
        "defaultConfiguration": {"level": level},
        "helpUri": f"{INFORMATION_URI}/blob/main/docs/sarif.md",
    }


def _artifact(path: str) -> dict[str, Any]:
    """A file relative to the working folder (the checkout in CI), or as given."""
    if "://" in path or path.startswith(("models:/", "runs:/")):
        return {"uri": path}
    candidate = Path(path)
    try:
        relative = candidate.resolve().relative_to(Path.cwd().resolve())
    except (ValueError, OSError):
        return {"uri": candidate.resolve().as_uri() if candidate.is_absolute() else path}
    return {"uri": relative.as_posix(), "uriBaseId": SRCROOT}


def _location(finding: Finding, result: Result, lines: Lines) -> dict[str, Any]:
    physical: dict[str, Any] = {"artifactLocation": _artifact(result.policy.path)}
    line = _line(finding.key, lines)
    if line:
        physical["region"] = {"startLine": line}
    return {"physicalLocation": physical}


def _line(key: tuple[str | int, ...], lines: Lines) -> int | None:
    """The line of the key, else of the nearest enclosing key that is in the file."""
    while key:
        if lines.get(key):
            return lines[key]
        key = key[:-1]
    return None


def _result(finding: Finding, rules: list[str], result: Result, lines: Lines) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "ruleId": finding.rule,
        "ruleIndex": rules.index(finding.rule),
        "level": finding.level,
        "message": {"text": finding.message},
        "locations": [_location(finding, result, lines)],
        "relatedLocations": [
            {
                "id": 1,
                "physicalLocation": {"artifactLocation": _artifact(result.target.path)},
                "message": {"text": f"the audited model (sha256 {result.target.sha256})"},
            }
        ],
        "partialFingerprints": {"miaAuditCondition/v1": finding.fingerprint},
    }
    condition = finding.condition
    if condition is not None and condition.waived:
        reason = " ".join((condition.waiver_reason or "").split())
        entry["suppressions"] = [
            {
                "kind": "inSource",
                "status": "accepted",
                "justification": printable(f"until {condition.waiver_expires}: {reason}"),
            }
        ]
    return entry


def build_log(result: Result) -> dict[str, Any]:
    found = findings(result)
    rules = sorted({f.rule for f in found})
    lines = policy_lines(result) if found else {}
    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": "mia-audit",
                "version": result.tool.version,
                "informationUri": INFORMATION_URI,
                "rules": [_rule(rule) for rule in rules],
            }
        },
        "originalUriBaseIds": {SRCROOT: {"uri": Path.cwd().resolve().as_uri() + "/"}},
        "results": [_result(f, rules, result, lines) for f in found],
        "invocations": [{"executionSuccessful": True, "exitCode": result.exit_code}],
        "properties": {
            "passed": result.passed,
            "policySha256": result.policy.sha256,
            "targetSha256": result.target.sha256,
            "seed": result.seed,
        },
    }
    return {"$schema": SCHEMA_URI, "version": "2.1.0", "runs": [run]}


@register_format("sarif", "results.sarif")
def render_sarif(result: Result) -> bytes:
    return (json.dumps(build_log(result), indent=2, ensure_ascii=False) + "\n").encode("utf-8")
