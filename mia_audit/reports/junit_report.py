"""junit.xml: one JUnit test case per gate condition, for CI systems that read JUnit.

Built with ElementTree so attribute and text escaping is done by the XML library; characters
XML 1.0 cannot carry at all (most control characters) are replaced by U+FFFD first.

A failure waived by an unexpired suppression is a *passing* test case whose <system-out> starts
with "WAIVED" and gives the expiry date and the reason. Not `skipped`: the check ran and its
result is known, and CI dashboards read skipped as "not run". So the suite's failure count
always equals the gate's blocking failures, and the waiver stays visible. A failure whose
suppression has expired is an ordinary failure whose message says so. Every test case's
<system-out> carries the value, its CI or baseline delta, and any note.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from mia_audit.reports import register_format
from mia_audit.reports.markdown_report import metric_name, value_cell
from mia_audit.result import Condition, Result

SUITE_NAME = "mia-audit"
XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'

_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(text: str) -> str:
    """`text` with the characters XML 1.0 forbids replaced, so the document stays well formed."""
    return _NOT_XML.sub("\ufffd", text)


def testcase_name(condition: Condition) -> str:
    return f"{condition.description} ({condition.attack})"


def failure_message(condition: Condition) -> str:
    expired = (
        f" (its waiver expired {condition.waiver_expires})" if condition.waiver_expired else ""
    )
    return (
        f"{condition.attack}: {metric_name(condition)} {condition.value:.4f} "
        f"exceeds the threshold {condition.threshold:.4g}{expired}"
    )


def system_out(condition: Condition) -> str:
    """What the condition measured, and its waiver: the test case's <system-out>."""
    lines = []
    if condition.waived:
        lines.append(
            f"WAIVED until {condition.waiver_expires}: {condition.waiver_reason} "
            f"(the condition failed; a suppression in the policy accepts it)"
        )
    where = condition.attack + (f", {condition.slice}" if condition.slice else "")
    lines.append(
        f"{metric_name(condition)} ({where}): {value_cell(condition)}; "
        f"threshold {condition.threshold:.4g}"
    )
    if condition.note:
        lines.append(condition.note)
    return "\n".join(lines)


def failure_detail(condition: Condition) -> str:
    lines = [f"{attack}: {value:.4f}" for attack, value in condition.per_attack.items()]
    return "\n".join([f"{metric_name(condition)} per attack:", *lines])


def _testcase(suite: ET.Element, classname: str, name: str) -> ET.Element:
    return ET.SubElement(
        suite, "testcase", {"classname": xml_text(classname), "name": xml_text(name), "time": "0"}
    )


def _add_condition(suite: ET.Element, result: Result, condition: Condition) -> None:
    case = _testcase(suite, result.policy.name, testcase_name(condition))
    if not condition.holds:
        failure = ET.SubElement(
            case, "failure", {"message": xml_text(failure_message(condition)), "type": "gate"}
        )
        failure.text = xml_text(failure_detail(condition))
    ET.SubElement(case, "system-out").text = xml_text(system_out(condition))


def _properties(suite: ET.Element, result: Result) -> None:
    properties = ET.SubElement(suite, "properties")
    values = {
        "tool.version": result.tool.version,
        "policy.sha256": result.policy.sha256,
        "target.sha256": result.target.sha256,
        "data.sha256": result.data.sha256,
        "seed": str(result.seed),
        "exit_code": str(result.exit_code),
    }
    if result.gate.evaluated_on is not None:
        values["gate.evaluated_on"] = str(result.gate.evaluated_on)
    if result.baseline is not None:
        values["baseline.sha256"] = result.baseline.sha256
    if result.floor is not None:
        values["floor.sha256"] = result.floor.sha256
        values["floor.source"] = result.floor.path or result.floor.source
        values["floor.enforced"] = "; ".join(result.floor.enforced)
    for name, value in values.items():
        ET.SubElement(properties, "property", {"name": name, "value": xml_text(value)})


def build_suite(result: Result) -> ET.Element:
    conditions = result.gate.conditions
    failures = sum(not c.holds for c in conditions)
    suite = ET.Element(
        "testsuite",
        {
            "name": SUITE_NAME,
            "tests": str(max(len(conditions), 1)),
            "failures": str(failures),
            "errors": "0",
            "skipped": "0",
            "time": f"{sum(result.timings.values()):.3f}",
        },
    )
    _properties(suite, result)
    for condition in conditions:
        _add_condition(suite, result, condition)
    if not conditions:
        _testcase(suite, result.policy.name, "no gate conditions were set")
    return suite


@register_format("junit", "junit.xml")
def render_junit(result: Result) -> bytes:
    suite = build_suite(result)
    ET.indent(suite)
    body: bytes = ET.tostring(suite, encoding="utf-8")
    return XML_DECLARATION + body + b"\n"
