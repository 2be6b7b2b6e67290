"""results.sarif of a failed gate: valid SARIF 2.1.0 (the official schema, vendored under
tests/data/sarif), one result per failed condition and relaxed precondition, at the policy's
line, the same from `mia-audit render`."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.conftest import DigitsTarget, RunCli

SCHEMA = Path(__file__).parents[1] / "data" / "sarif" / "sarif-schema-2.1.0.json"

POLICY = """\
version: 1
name: digits-sarif
model:
  path: target.onnx
  num_classes: 10
data:
  members: members.npz
  non_members: non_members.npz
preprocessing:
  mean: [0.2, 0.2, 0.2]
  std: [0.3, 0.3, 0.3]
attacks: [loss, confidence]
gate:
  max_tpr_at_fpr:
    - {{fpr: 0.05, max: 0.9}}
    - {{fpr: 0.1, max: 0.0}}
  max_auc: 0.6
  max_advantage: 0.01
  max_class_auc: {{max: 0.99, min_samples: 18}}
  suppressions:
    - condition: advantage
      reason: accepted while the retrained model is reviewed
      expires: {expires}
preconditions:
  allow_small_audit: true
outputs:
  dir: report
  formats: [json, sarif]
runtime:
  device: cpu
"""


def line_of(text: str, start: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if line.strip().startswith(start))


@pytest.fixture(scope="module")
def sarif_run(
    digits_target: DigitsTarget, run_cli: RunCli, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    folder = digits_target.copy_to(tmp_path_factory.mktemp("sarif") / "digits")
    expires = (datetime.now(timezone.utc) + timedelta(days=30)).date()
    (folder / "policy.yaml").write_text(POLICY.format(expires=expires))
    completed = run_cli("run", "policy.yaml", cwd=folder)
    assert completed.returncode == 1, completed.stderr
    return folder


def load(path: Path) -> dict[str, Any]:
    log: dict[str, Any] = json.loads(path.read_text())
    jsonschema.validate(log, json.loads(SCHEMA.read_text()))
    return log


def test_one_result_per_failed_condition_at_its_policy_line(sarif_run: Path) -> None:
    log = load(sarif_run / "report" / "results.sarif")
    result = json.loads((sarif_run / "report" / "result.json").read_text())
    text = (sarif_run / "policy.yaml").read_text()
    failed = [c for c in result["gate"]["conditions"] if not c["passed"]]
    # The leaking target fails these; the TPR item is the list's second.
    assert {c["id"] for c in failed} >= {"auc", "advantage", "tpr_at_fpr@0.1"}
    lines = {
        "auc": line_of(text, "max_auc:"),
        "advantage": line_of(text, "max_advantage:"),
        "tpr_at_fpr@0.05": line_of(text, "- {fpr: 0.05"),
        "tpr_at_fpr@0.1": line_of(text, "- {fpr: 0.1"),
        "class_auc": line_of(text, "max_class_auc:"),
    }
    (run,) = log["runs"]
    results = run["results"]
    gate_results = [r for r in results if r["ruleId"].startswith("gate.")]
    assert len(gate_results) == len(failed)
    for condition, entry in zip(failed, gate_results, strict=True):
        assert entry["ruleId"] == f"gate.max_{condition['metric']}"
        assert run["tool"]["driver"]["rules"][entry["ruleIndex"]]["id"] == entry["ruleId"]
        (location,) = entry["locations"]
        physical = location["physicalLocation"]
        assert physical["artifactLocation"] == {"uri": "policy.yaml", "uriBaseId": "SRCROOT"}
        assert physical["region"]["startLine"] == lines[condition["id"]]
        value = f"{condition['value']:.4f}"
        assert entry["message"]["text"].endswith(f"{condition['description']}: {value} "
                                                 f"({condition['attack']})" + (
            f" - waived until {condition['waiver_expires']}: {condition['waiver_reason']}"
            if condition["waived"] else ""))
        related = entry["relatedLocations"][0]["physicalLocation"]["artifactLocation"]
        assert related == {"uri": "target.onnx", "uriBaseId": "SRCROOT"}
        assert ("suppressions" in entry) == condition["waived"]
    waived = next(r for r in gate_results if r["ruleId"] == "gate.max_advantage")
    assert waived["suppressions"][0]["status"] == "accepted"
    assert "retrained model is reviewed" in waived["suppressions"][0]["justification"]
    assert run["originalUriBaseIds"]["SRCROOT"]["uri"] == sarif_run.resolve().as_uri() + "/"
    assert run["invocations"][0]["exitCode"] == 1


def test_relaxed_precondition_is_a_warning_with_the_note(sarif_run: Path) -> None:
    log = load(sarif_run / "report" / "results.sarif")
    text = (sarif_run / "policy.yaml").read_text()
    (relaxed,) = [r for r in log["runs"][0]["results"] if r["ruleId"].startswith("preconditions")]
    assert relaxed["ruleId"] == "preconditions.allow_small_audit"
    assert relaxed["level"] == "warning"
    region = relaxed["locations"][0]["physicalLocation"]["region"]
    assert region["startLine"] == line_of(text, "allow_small_audit:")
    # The note the run printed: a class of 200 + 200 digits has too few samples for its AUC.
    assert "gate.max_class_auc.min_samples: 18 is below" in relaxed["message"]["text"]
    assert "evaluated anyway (preconditions.allow_small_audit)" in relaxed["message"]["text"]


def test_render_writes_the_same_sarif(sarif_run: Path, run_cli: RunCli) -> None:
    completed = run_cli("render", "report/result.json", "-f", "sarif", "-o", "again", cwd=sarif_run)
    assert completed.returncode == 0, completed.stderr
    again = sarif_run / "again" / "results.sarif"
    load(again)
    assert again.read_bytes() == (sarif_run / "report" / "results.sarif").read_bytes()


def test_an_edited_policy_gives_no_line_rather_than_a_wrong_one(
    sarif_run: Path, run_cli: RunCli, tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "result.json").write_bytes((sarif_run / "report" / "result.json").read_bytes())
    policy = sarif_run / "policy.yaml"
    original = policy.read_text()
    policy.write_text("# moved every line down\n" + original)
    try:
        completed = run_cli("render", copy / "result.json", "-f", "sarif", cwd=sarif_run)
    finally:
        policy.write_text(original)
    assert completed.returncode == 0, completed.stderr
    log = load(copy / "results.sarif")
    for entry in log["runs"][0]["results"]:
        physical = entry["locations"][0]["physicalLocation"]
        assert "region" not in physical
        assert physical["artifactLocation"]["uri"] == "policy.yaml"
