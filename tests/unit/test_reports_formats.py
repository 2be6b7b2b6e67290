"""The Markdown summary and JUnit XML report formats, rendered from hand-built results."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from mia_audit.reports import render_reports, report_format
from mia_audit.reports.junit_report import render_junit
from mia_audit.reports.markdown_report import MAX_BYTES, TRUNCATED_NOTE, escape, render_markdown
from mia_audit.result import (
    Result,
)
from tests.results import HASH, attack, condition, make_result

HOSTILE = "x|y<script>alert(1)</script>\nz & `w` [l](http://e) **b**"








def table_rows(markdown: str) -> list[list[str]]:
    """Data rows of every Markdown table (header and alignment rows dropped)."""
    rows = [line for line in markdown.splitlines() if line.startswith("| ")]
    cells = [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows]
    return [c for c in cells if c[0] not in ("Metric", "Attack", ":--")]


# --- Markdown -------------------------------------------------------------------------------


def test_registered_with_filenames() -> None:
    assert report_format("markdown").filename == "summary.md"
    assert report_format("junit").filename == "junit.xml"
    rendered = render_reports(make_result(), ["json", "markdown", "junit"])
    assert set(rendered) == {"result.json", "summary.md", "junit.xml"}


def test_markdown_verdict_and_condition_rows() -> None:
    text = render_markdown(make_result()).decode("utf-8")
    assert "FAIL" in text.splitlines()[0]
    assert "cifar10-resnet18-release" in text.splitlines()[0]
    assert "2 of 3 gate conditions hold" in text
    assert "Exit code 1 (a gate condition failed)" in text
    rows = table_rows(text)
    conditions = [r for r in rows if len(r) == 5]
    assert conditions == [
        ["AUC", "rmia", "0.6600", "0.6", "❌ fail"],
        ["TPR at FPR 0.05", "rmia", "0.2100", "0.25", "✅ pass"],
        ["attacker advantage", "loss", "0.0500", "0.1", "✅ pass"],
    ]


def test_markdown_pass_verdict() -> None:
    result = make_result(conditions=[condition("auc", "loss", 0.55, 0.60)])
    text = render_markdown(result).decode("utf-8")
    assert text.startswith("## mia-audit: PASS")
    assert "Exit code 0 (every gate condition holds)" in text


def test_markdown_attack_table_marks_missing_and_unsupported() -> None:
    rows = {r[0]: r for r in table_rows(render_markdown(make_result()).decode()) if len(r) == 6}
    assert rows["loss"] == ["loss", "0.5800", "0.0900", "0.0200", "0.0030", "0.0533"]
    assert rows["rmia"][2:5] == ["0.2100", "0.0800", "unsupported"]
    assert rows["lira-offline"][2:5] == ["0.1500", "n/a", "n/a"]


def test_markdown_details_section() -> None:
    text = render_markdown(make_result()).decode("utf-8")
    details = text[text.index("<details>") : text.index("</details>")]
    for expected in ("members 0.9980", "non-members 0.8710", "2500 members", HASH, "Seed: 1234"):
        assert expected in details
    assert "cuda" in details and "NVIDIA H200" in details
    assert "attack:rmia: 30.00 s" in details
    assert TRUNCATED_NOTE not in text


def test_markdown_no_conditions() -> None:
    text = render_markdown(make_result(conditions=[])).decode("utf-8")
    assert "no gate conditions set" in text
    assert "No gate conditions were set." in text


def test_markdown_escapes_hostile_strings() -> None:
    result = make_result(
        policy_name=HOSTILE,
        attacks=[attack(HOSTILE, 0.7, {"0.05": 0.3})],
        conditions=[condition("auc", HOSTILE, 0.7, 0.6)],
        timings={HOSTILE: 1.0},
    )
    text = render_markdown(result).decode("utf-8")
    assert "<script>" not in text and "</script>" not in text
    assert "&lt;script&gt;" in text
    assert "x&#124;y" in text
    assert "&amp;" in text
    # Only our own HTML tags survive; the hostile newline did not split a line.
    assert {line for line in text.splitlines() if line.startswith("<")} <= {
        "<details><summary>Run details</summary>",
        "</details>",
    }
    assert not any(line.startswith("z") for line in text.splitlines())
    # Every table row still has exactly as many cells as its header.
    for line in text.splitlines():
        if line.startswith("| "):
            assert line.count(" | ") in (4, 5)
    assert "\\[l\\](http://e)" in text and "\\*\\*b\\*\\*" in text


def test_escape_removes_control_characters() -> None:
    assert escape("a\r\nb\tc\x00d\u2028e") == "a  b c d e"
    assert escape("a|b") == "a&#124;b"


def test_markdown_size_limit_truncates_details() -> None:
    notes = [f"note {i}: " + "n" * 1000 for i in range(2000)]  # ~2 MB of details
    text_bytes = render_markdown(make_result(notes=notes))
    assert len(text_bytes) < MAX_BYTES
    text = text_bytes.decode("utf-8")
    assert TRUNCATED_NOTE in text
    assert text.rstrip().endswith("</details>")
    assert "❌ fail" in text  # the tables come first and are kept whole


def test_markdown_size_limit_holds_even_for_huge_tables() -> None:
    long_id = "a" * 300_000
    conditions = [condition("auc", f"{long_id}{i}", 0.7, 0.6) for i in range(5)]
    text_bytes = render_markdown(make_result(conditions=conditions))
    assert len(text_bytes) < MAX_BYTES
    assert text_bytes.decode("utf-8").startswith("## mia-audit: FAIL")


# --- JUnit ----------------------------------------------------------------------------------


def parse_junit(result: Result) -> ET.Element:
    data = render_junit(result)
    assert data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    return ET.fromstring(data)


def test_junit_counts_and_failures() -> None:
    result = make_result()
    suite = parse_junit(result)
    assert suite.tag == "testsuite"
    assert suite.get("name") == "mia-audit"
    cases = suite.findall("testcase")
    assert len(cases) == 3
    assert suite.get("tests") == "3"
    assert suite.get("failures") == "1"
    for case, cond in zip(cases, result.gate.conditions, strict=True):
        assert case.get("classname") == "cifar10-resnet18-release"
        assert case.get("name") == f"{cond.description} ({cond.attack})"
        failures = case.findall("failure")
        assert len(failures) == (0 if cond.passed else 1)
    failure = cases[0].find("failure")
    assert failure is not None
    assert "0.6600" in (failure.get("message") or "")
    assert "rmia: 0.6600" in (failure.text or "")


def test_junit_all_pass() -> None:
    suite = parse_junit(make_result(conditions=[condition("auc", "loss", 0.5, 0.6)]))
    assert suite.get("failures") == "0"
    assert suite.findall(".//failure") == []


def test_junit_no_conditions_gives_one_passing_case() -> None:
    suite = parse_junit(make_result(conditions=[]))
    cases = suite.findall("testcase")
    assert len(cases) == 1
    assert "no gate conditions" in (cases[0].get("name") or "")
    assert suite.get("tests") == "1" and suite.get("failures") == "0"
    assert cases[0].find("failure") is None


def test_junit_hostile_strings_round_trip() -> None:
    hostile = HOSTILE + "\r\t\"'&amp;]]>"
    cond = condition("auc", hostile, 0.7, 0.6)
    result = make_result(policy_name=hostile, conditions=[cond])
    suite = parse_junit(result)
    (case,) = suite.findall("testcase")
    assert case.get("classname") == hostile
    assert case.get("name") == f"{cond.description} ({hostile})"
    failure = case.find("failure")
    assert failure is not None
    assert hostile in (failure.get("message") or "")


def test_junit_replaces_characters_xml_cannot_carry() -> None:
    result = make_result(policy_name="bad\x00\x1bname")
    suite = parse_junit(result)
    assert suite.findall("testcase")[0].get("classname") == "bad\ufffd\ufffdname"
