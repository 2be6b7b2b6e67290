"""The GitHub Action's inputs, outputs and annotations, and action.yml, without running an audit."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from mia_audit.cli import action
from tests.conftest import REPOSITORY, USER_DOCS
from tests.github_runner import parse_outputs


def test_sarif_input_must_be_true_or_false(capsys: pytest.CaptureFixture[str]) -> None:
    env = {"GITHUB_WORKSPACE": "/nonexistent", "MIA_POLICY": "p.yaml", "MIA_SARIF": "yes"}
    assert action.main(env) == 2
    assert "the `sarif` input is 'yes'; give true or false" in capsys.readouterr().err


def test_missing_policy_input_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert action.main({"GITHUB_WORKSPACE": "/nonexistent"}) == 2
    assert "`policy` input is required" in capsys.readouterr().err


def test_multiline_output_values_use_a_delimiter() -> None:
    text = action.output_lines({"passed": "true", "note": "two\nlines"})
    assert parse_outputs(text) == {"passed": "true", "note": "two\nlines"}
    assert re.search(r"^note<<ghadelimiter_[0-9a-f]{32}$", text, flags=re.M)


def test_annotation_escapes_workflow_command_characters() -> None:
    condition = SimpleNamespace(
        passed=False,
        waived=False,
        description="AUC <= 0.6",
        value=0.7,
        attack="loss\n::warning::x",
    )
    result = SimpleNamespace(
        policy=SimpleNamespace(name="100% private\r\n"),
        gate=SimpleNamespace(conditions=[condition]),
    )
    command = action.annotation(1, result)  # type: ignore[arg-type]
    assert command == (
        "::error title=mia-audit::privacy gate failed for 100%25 private%0D%0A: "
        "AUC <= 0.6: 0.7000 (loss%0A::warning::x)"
    )
    assert action.annotation(0, None) is None
    assert action.annotation(3, None) == (
        "::error title=mia-audit::mia-audit exited 3 (the audit could not complete): "
        "the log above says why"
    )
    assert action.annotation(2, None, ["p.yaml: gate.max_acu: unknown key\n::x"]) == (
        "::error title=mia-audit::mia-audit exited 2 (the policy, the inputs or the command line "
        "are invalid): p.yaml: gate.max_acu: unknown key%0A::x"
    )


@pytest.fixture(scope="module")
def action_yml() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPOSITORY / "action.yml").read_text())
    return loaded


def test_action_yml_inputs_and_outputs(action_yml: dict[str, Any]) -> None:
    assert action_yml["runs"]["using"] == "composite"
    assert set(action_yml["inputs"]) == {
        "policy", "package", "python-version", "torch-index-url", "device", "output-dir",
        "pip-args", "baseline", "cache", "floor", "max-auc", "max-tpr-at-fpr", "sarif",
    }  # fmt: skip
    # Empty: the action's own checkout, i.e. the code at the tag the workflow pinned.
    assert action_yml["inputs"]["package"]["default"] == ""
    written = set(action.step_outputs(0, Path("/nonexistent"), None))
    resolved = set(action.resolve_outputs({}))
    assert set(action_yml["outputs"]) == written | {"cache-dir"}
    assert "cache-dir" in resolved
    for name, spec in action_yml["outputs"].items():
        step = "resolve" if name == "cache-dir" else "audit"
        assert spec["value"] == f"${{{{ steps.{step}.outputs.{name} }}}}"


def test_action_yml_scripts_take_inputs_only_from_env(action_yml: dict[str, Any]) -> None:
    steps = action_yml["runs"]["steps"]
    scripts = [step for step in steps if "run" in step]
    assert scripts and all("${{" not in step["run"] for step in scripts)
    assert all(step["shell"] == "bash" for step in scripts)
    audit = next(step for step in steps if step.get("id") == "audit")
    assert audit["run"].strip() == '"$MIA_PYTHON" -m mia_audit.cli.action'
    assert set(audit["env"]) == {
        "MIA_PYTHON", "MIA_POLICY", "MIA_OUTPUT_DIR", "MIA_DEVICE", "MIA_BASELINE", "MIA_FLOOR",
        "MIA_MAX_AUC", "MIA_MAX_TPR_AT_FPR", "MIA_SARIF",
    }  # fmt: skip
    assert audit["env"]["MIA_FLOOR"] == "${{ inputs.floor }}"
    assert audit["env"]["MIA_PYTHON"] == "${{ steps.install.outputs.python }}"
    assert audit["env"]["MIA_MAX_AUC"] == "${{ inputs.max-auc }}"
    assert audit["env"]["MIA_MAX_TPR_AT_FPR"] == "${{ inputs.max-tpr-at-fpr }}"
    assert any(step.get("uses", "").startswith("actions/setup-python@") for step in steps)


def test_documented_workflow_is_complete() -> None:
    # The complete workflow is the GitHub Action page's (other pages show parts of one).
    (page,) = [path for path in USER_DOCS if path.name == "github-action.md"]
    blocks = re.findall(r"```yaml\n(.*?)```", page.read_text(), flags=re.S)
    workflows = [yaml.safe_load(b) for b in blocks if "jobs:" in b]
    assert workflows, "the GitHub Action page has no example workflow"
    steps = next(iter(workflows[0]["jobs"].values()))["steps"]
    audit = next(step for step in steps if step.get("id") == "audit")
    # The action caches runtime.cache_dir itself; a CPU runner installs the CPU torch wheels.
    assert audit["uses"].endswith("/mia-audit@v0.1.0")
    assert audit["with"]["torch-index-url"] == "https://download.pytorch.org/whl/cpu"
    with_inputs = set(audit["with"]) | {"baseline"}  # the baseline line is a comment there
    assert with_inputs <= set(yaml.safe_load((REPOSITORY / "action.yml").read_text())["inputs"])
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@"))
    assert upload["with"]["archive"] is False
    assert upload["with"]["path"] == "${{ steps.audit.outputs.report-html }}"
    assert upload["if"].startswith("always()")  # the report matters most when the gate fails


def test_floor_inputs_become_options() -> None:
    inputs = action.read_inputs(
        {
            "MIA_POLICY": "p.yaml",
            "MIA_MAX_AUC": " 0.6 ",
            "MIA_MAX_TPR_AT_FPR": "0.05:0.1,\n0.01:0.02",
        }
    )
    command = action.audit_command(inputs, ["json"])
    assert command[command.index("--floor-max-auc") + 1] == "0.6"
    floors = [command[i + 1] for i, arg in enumerate(command) if arg == "--floor-max-tpr-at-fpr"]
    assert floors == ["0.05:0.1", "0.01:0.02"]
    assert "--floor" not in command
    floored = action.read_inputs(
        {"MIA_POLICY": "p.yaml", "MIA_FLOOR": " org/floor.yaml ", "GITHUB_WORKSPACE": "/ws"}
    )
    command = action.audit_command(floored, ["json"])
    assert command[command.index("--floor") + 1] == str(Path("/ws/org/floor.yaml"))
