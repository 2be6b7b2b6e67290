"""`mia-audit render` refuses a result.json edited after `run` wrote it (exit 2 naming the field):
an edited verdict must never become a PASS banner, a green JUnit report or a "pass" row."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import DigitsTarget, RunCli

Edit = Callable[[dict[str, Any]], None]


@pytest.fixture(scope="module")
def run_dir(
    digits_target: DigitsTarget, tmp_path_factory: pytest.TempPathFactory, run_cli: RunCli
) -> Path:
    folder = digits_target.copy_to(tmp_path_factory.mktemp("render-integrity") / "t")
    policy = yaml.safe_load((folder / "policy.yaml").read_text())
    policy["attacks"] = ["loss", "logit_margin"]
    policy["outputs"] = {"dir": "out", "formats": ["json", "html", "markdown", "junit"]}
    policy["runtime"]["device"] = "cpu"
    (folder / "policy.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))
    completed = run_cli("run", folder / "policy.yaml")
    assert completed.returncode == 1, completed.stderr  # the overfit target leaks
    return folder / "out"


def _flip_passed(document: dict[str, Any]) -> None:
    document["passed"] = True


def _flip_verdict(document: dict[str, Any]) -> None:
    document["passed"] = document["gate"]["passed"] = True
    document["exit_code"] = 0
    for condition in document["gate"]["conditions"]:
        condition["passed"] = True


def _lower_values(document: dict[str, Any]) -> None:
    _flip_verdict(document)
    for condition in document["gate"]["conditions"]:
        condition["value"] = 0.01
        condition["per_attack"] = {name: 0.01 for name in condition["per_attack"]}


def _lower_everything(document: dict[str, Any]) -> None:
    """A consistent forgery: every figure the gate reads lowered, the verdict flipped."""
    _lower_values(document)
    for attack in document["attacks"]:
        attack["auc"] = 0.01
        attack["tpr_at_fpr"] = {fpr: 0.01 for fpr in attack["tpr_at_fpr"]}


def _drop_hash(document: dict[str, Any]) -> None:
    del document["sha256"]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_flip_passed, "passed: is true but gate.passed is false; the result contradicts itself"),
        (_flip_verdict, "gate.conditions[0].passed: is true but its value"),
        (_lower_values, "gate.conditions[0].per_attack.loss: is 0.0100 but attack 'loss' has"),
        (_lower_everything, "sha256: does not match the file's content"),
        (_drop_hash, "sha256: missing, so its content cannot be checked"),
    ],
    ids=["passed", "verdict", "values", "consistent-forgery", "no-hash"],
)
def test_an_edited_result_is_refused(
    run_dir: Path, run_cli: RunCli, tmp_path: Path, edit: Edit, message: str
) -> None:
    document = json.loads((run_dir / "result.json").read_text())
    edit(document)
    edited = tmp_path / "result.json"
    edited.write_text(json.dumps(document, indent=2))
    (tmp_path / "report.html").write_text("previous report")

    completed = run_cli("render", edited)

    assert completed.returncode == 2, completed.stderr
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {edited}: "), completed.stderr
    assert message in lines[0]
    assert "re-run the audit" in lines[0]
    assert (tmp_path / "report.html").read_text() == "previous report"
    assert not (tmp_path / "junit.xml").exists() and not (tmp_path / "summary.md").exists()


def test_an_intact_result_renders_the_runs_reports_byte_for_byte(
    run_dir: Path, run_cli: RunCli, tmp_path: Path
) -> None:
    copy = tmp_path / "result.json"
    copy.write_bytes((run_dir / "result.json").read_bytes())
    document = json.loads(copy.read_text())
    assert len(document["sha256"]) == 64

    completed = run_cli("render", copy, "-f", "html", "-f", "markdown", "-f", "junit")

    assert completed.returncode == 0, completed.stderr
    for name in ("report.html", "summary.md", "junit.xml"):
        assert (tmp_path / name).read_bytes() == (run_dir / name).read_bytes(), name
    again = tmp_path / "again"
    assert run_cli("render", copy, "-f", "json", "-o", again).returncode == 0
    assert (again / "result.json").read_bytes() == copy.read_bytes()
