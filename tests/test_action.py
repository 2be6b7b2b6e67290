"""The GitHub Action's step script, run locally the way action.yml runs it, with the
`GITHUB_OUTPUT`, `GITHUB_STEP_SUMMARY` and `GITHUB_WORKSPACE` a runner provides."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from mia_audit.cli import action
from mia_audit.result import Result, strongest_attack
from tests.conftest import USER_DOCS, DigitsTarget

REPO = Path(__file__).resolve().parents[1]


def write_policy(folder: Path, name: str, max_auc: float) -> Path:
    policy = {
        "version": 1,
        "name": name,
        "model": {"path": "target.onnx", "architecture": "resnet18", "num_classes": 10},
        "data": {"members": "members.npz", "non_members": "non_members.npz"},
        "preprocessing": {"mean": [0.2, 0.2, 0.2], "std": [0.3, 0.3, 0.3]},
        "attacks": ["loss", "confidence", "class_threshold"],
        "gate": {"max_auc": max_auc},
        "outputs": {"dir": "ignored-by-the-action", "formats": ["json", "junit"]},
        "runtime": {"device": "cpu", "seed": 0, "cache_dir": ".mia-cache"},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    return path


@dataclass(frozen=True)
class StepRun:
    code: int
    stdout: str
    stderr: str
    outputs: dict[str, str]
    summary: str
    out_dir: Path


def parse_outputs(text: str) -> dict[str, str]:
    """Read `$GITHUB_OUTPUT` as the runner does: name=value, or name<<DELIMITER ... DELIMITER."""
    outputs: dict[str, str] = {}
    lines = iter(text.splitlines())
    for line in lines:
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            value = []
            for part in lines:
                if part == delimiter:
                    break
                value.append(part)
            outputs[name] = "\n".join(value)
        else:
            name, value_text = line.split("=", 1)
            outputs[name] = value_text
    return outputs


def run_step(workspace: Path, policy: str, output_dir: str, **extra: str) -> StepRun:
    """Run `python -m mia_audit.cli.action` with the environment action.yml gives it."""
    github = workspace / f".github-{output_dir.replace('/', '-')}"
    github.mkdir(exist_ok=True)
    (github / "output").write_text("")
    (github / "summary").write_text("previous step's summary\n")
    env = {
        **os.environ,
        "GITHUB_WORKSPACE": str(workspace),
        "GITHUB_OUTPUT": str(github / "output"),
        "GITHUB_STEP_SUMMARY": str(github / "summary"),
        "MIA_POLICY": policy,
        "MIA_OUTPUT_DIR": output_dir,
        "MIA_DEVICE": "cpu",
        **extra,
    }
    completed = subprocess.run(
        [sys.executable, "-m", "mia_audit.cli.action"],
        cwd=github,  # not the workspace: relative inputs must resolve against GITHUB_WORKSPACE
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    return StepRun(
        code=completed.returncode,
        stdout=completed.stdout,
        stderr=completed.stderr,
        outputs=parse_outputs((github / "output").read_text()),
        summary=(github / "summary").read_text(),
        out_dir=workspace / output_dir,
    )


@pytest.fixture(scope="module")
def workspace(digits_target: DigitsTarget, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkout with the digits target and a passing, a failing and an invalid policy."""
    root = tmp_path_factory.mktemp("workspace")
    folder = digits_target.copy_to(root / "model")
    write_policy(folder, "lenient", max_auc=0.99)
    write_policy(folder, "strict", max_auc=0.51)
    (folder / "broken.yaml").write_text("version: 1\nname: broken\nattacks: [los]\n")
    return root


@pytest.fixture(scope="module")
def passing(workspace: Path) -> StepRun:
    return run_step(workspace, "model/lenient.yaml", "reports/pass")


@pytest.fixture(scope="module")
def failing(workspace: Path) -> StepRun:
    return run_step(workspace, "model/strict.yaml", "reports/fail")


def test_passing_policy(passing: StepRun) -> None:
    assert passing.code == 0, passing.stderr
    outputs = passing.outputs
    assert outputs["passed"] == "true" and outputs["exit-code"] == "0"
    assert outputs["result-json"] == str(passing.out_dir / "result.json")
    assert outputs["report-html"] == str(passing.out_dir / "report.html")
    result = Result.model_validate_json(Path(outputs["result-json"]).read_bytes())
    best = strongest_attack(result)
    assert outputs["strongest-attack"] == best.id
    assert float(outputs["auc"]) == pytest.approx(best.auc, abs=1e-5)
    assert float(outputs["tpr-at-fpr"]) == pytest.approx(best.tpr_at_fpr["0.05"], abs=1e-5)
    assert "::error" not in passing.stdout


def test_max_outputs_are_the_worst_figure_over_attacks(passing: StepRun) -> None:
    """`max-auc` / `max-tpr-at-fpr`: the highest of any attack, with the attack that reached it
    (the strongest attack, ranked by TPR, need not have the highest AUC)."""
    result = Result.model_validate_json(Path(passing.outputs["result-json"]).read_bytes())
    top_auc = max(result.attacks, key=lambda a: a.auc)
    top_tpr = max(result.attacks, key=lambda a: a.tpr_at_fpr["0.05"])
    assert passing.outputs["max-auc-attack"] == top_auc.id
    assert float(passing.outputs["max-auc"]) == pytest.approx(top_auc.auc, abs=1e-5)
    assert passing.outputs["max-tpr-at-fpr-attack"] == top_tpr.id
    assert float(passing.outputs["max-tpr-at-fpr"]) == pytest.approx(
        top_tpr.tpr_at_fpr["0.05"], abs=1e-5
    )
    assert float(passing.outputs["max-auc"]) >= float(passing.outputs["auc"])
    assert passing.outputs["error"] == ""


def test_baseline_input_reaches_the_increase_conditions(workspace: Path, passing: StepRun) -> None:
    """The `baseline` input is `run --baseline`: the same model against its own result passes
    an increase condition; without the input the policy is refused (exit 2)."""
    document = yaml.safe_load((workspace / "model" / "lenient.yaml").read_text())
    document["gate"] = {"max_auc": 0.99, "max_auc_increase": 0.02}
    (workspace / "model" / "increase.yaml").write_text(yaml.safe_dump(document))
    baseline = Path(passing.outputs["result-json"]).relative_to(workspace)
    run = run_step(workspace, "model/increase.yaml", "reports/increase", MIA_BASELINE=str(baseline))
    assert run.code == 0, run.stderr
    result = Result.model_validate_json(Path(run.outputs["result-json"]).read_bytes())
    increase = next(c for c in result.gate.conditions if c.id == "auc_increase")
    # The same model, data and seed: the baseline's AUC is this run's.
    assert increase.passed and increase.baseline_value == pytest.approx(increase.current_value)
    refused = run_step(workspace, "model/increase.yaml", "reports/no-baseline")
    assert refused.code == 2 and "baseline" in refused.outputs["error"]
    assert refused.outputs["error"] in refused.summary.replace("\\", "")  # Markdown escapes


def test_resolve_gives_the_cache_folder_of_a_policy_in_a_subfolder(workspace: Path) -> None:
    """`cache-dir` is runtime.cache_dir resolved against the policy's folder, relative to the
    workspace: what `actions/cache` must save (`.mia-cache` would miss `model/.mia-cache`)."""
    github = workspace / ".github-resolve"
    github.mkdir(exist_ok=True)
    (github / "output").write_text("")
    env = {
        **os.environ,
        "GITHUB_WORKSPACE": str(workspace),
        "GITHUB_OUTPUT": str(github / "output"),
    }
    for policy, expected in (("model/lenient.yaml", "model/.mia-cache"), ("model/broken.yaml", "")):
        (github / "output").write_text("")
        completed = subprocess.run(
            [sys.executable, "-m", "mia_audit.cli.action", "resolve"],
            cwd=github, env={**env, "MIA_POLICY": policy}, capture_output=True, text=True,
            timeout=120, check=False,
        )  # fmt: skip
        assert completed.returncode == 0, completed.stderr
        outputs = parse_outputs((github / "output").read_text())
        assert outputs["cache-dir"] == expected
        assert outputs["cache-key"].startswith("mia-audit-") == bool(expected)


def test_summary_is_appended(passing: StepRun) -> None:
    summary_md = (passing.out_dir / "summary.md").read_text(encoding="utf-8")
    assert passing.summary == "previous step's summary\n" + summary_md
    assert "## mia-audit: PASS — lenient" in passing.summary


def test_action_adds_its_formats_to_the_policys(passing: StepRun) -> None:
    written = sorted(p.name for p in passing.out_dir.iterdir())
    manifest = ".mia-audit-outputs.json"  # which files this run wrote (see reports/folder.py)
    assert written == [manifest, "junit.xml", "report.html", "result.json", "summary.md"]


def test_failing_policy(failing: StepRun) -> None:
    assert failing.code == 1, failing.stderr
    assert failing.outputs["passed"] == "false" and failing.outputs["exit-code"] == "1"
    assert Path(failing.outputs["result-json"]).is_file()
    assert float(failing.outputs["auc"]) > 0.51
    assert "## mia-audit: FAIL — strict" in failing.summary
    (annotation,) = [line for line in failing.stdout.splitlines() if line.startswith("::error")]
    assert annotation.startswith("::error title=mia-audit::privacy gate failed for strict: AUC")


def test_failed_condition_names_its_deciding_attack_first(failing: StepRun) -> None:
    """The summary (and the annotation) say which attack failed the AUC condition, and that is
    the attack with the highest AUC, before any "strongest attack" figure."""
    result = Result.model_validate_json(Path(failing.outputs["result-json"]).read_bytes())
    top = max(result.attacks, key=lambda a: a.auc)
    failed = f"AUC <= 0.51: {top.auc:.4f} ({top.id})"
    summary = html.unescape(failing.summary.replace("\\", ""))  # Markdown escapes
    assert f"**Failed:** {failed}" in summary
    assert summary.index("**Failed:**") < summary.index(f"{float(failing.outputs['auc']):.4f}")
    assert failed in next(
        line for line in failing.stdout.splitlines() if line.startswith("::error")
    )
    assert failing.outputs["max-auc-attack"] == top.id


def test_invalid_policy_reports_no_stale_numbers(workspace: Path) -> None:
    """Exit 2 leaves older reports in place; the step must not present them as this run's."""
    stale = workspace / "reports" / "stale"
    stale.mkdir(parents=True)
    (stale / "result.json").write_text("{}")
    (stale / "summary.md").write_text("## mia-audit: PASS — an older run\n")
    run = run_step(workspace, "model/broken.yaml", "reports/stale")
    assert run.code == 2
    assert run.stderr.startswith("error: ") and "broken.yaml" in run.stderr
    assert run.outputs["passed"] == "false" and run.outputs["exit-code"] == "2"
    assert run.outputs["result-json"] == "" and run.outputs["auc"] == ""
    assert "older run" not in run.summary
    assert "## mia-audit: ERROR" in run.summary and "Exit code 2" in run.summary
    # Every problem of the policy, each on its own line; the first is the step's `error`.
    problems = [line.removeprefix("error: ") for line in run.stderr.splitlines()]
    assert len(problems) == 5 and all(
        line.startswith("error: ") for line in run.stderr.splitlines()
    )
    assert run.outputs["error"] == problems[0]
    annotation = next(line for line in run.stdout.splitlines() if line.startswith("::error"))
    assert annotation == (
        "::error title=mia-audit::mia-audit exited 2 (the policy, the inputs or the command "
        "line are invalid): " + "; ".join(problems)
    )
    # The summary says what is wrong, not "see the log".
    assert "unknown attack 'los' (did you mean 'loss'?)" in run.summary


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


# --- action.yml -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def action_yml() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "action.yml").read_text())
    return loaded


def test_action_yml_inputs_and_outputs(action_yml: dict[str, Any]) -> None:
    assert action_yml["runs"]["using"] == "composite"
    assert set(action_yml["inputs"]) == {
        "policy", "package", "python-version", "torch-index-url", "device", "output-dir",
        "pip-args", "baseline", "cache", "floor", "max-auc", "max-tpr-at-fpr",
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
        "MIA_MAX_AUC", "MIA_MAX_TPR_AT_FPR",
    }  # fmt: skip
    assert audit["env"]["MIA_FLOOR"] == "${{ inputs.floor }}"
    assert audit["env"]["MIA_PYTHON"] == "${{ steps.install.outputs.python }}"
    assert audit["env"]["MIA_MAX_AUC"] == "${{ inputs.max-auc }}"
    assert audit["env"]["MIA_MAX_TPR_AT_FPR"] == "${{ inputs.max-tpr-at-fpr }}"
    assert any(step.get("uses", "").startswith("actions/setup-python@") for step in steps)


def test_documented_workflow_is_complete() -> None:
    text = "\n".join(path.read_text() for path in USER_DOCS)
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
    workflows = [yaml.safe_load(b) for b in blocks if "jobs:" in b]
    assert workflows, "the docs have no example workflow"
    steps = next(iter(workflows[0]["jobs"].values()))["steps"]
    audit = next(step for step in steps if step.get("id") == "audit")
    # The action caches runtime.cache_dir itself; a CPU runner installs the CPU torch wheels.
    assert audit["uses"].endswith("/mia-audit@v0.1.0")
    assert audit["with"]["torch-index-url"] == "https://download.pytorch.org/whl/cpu"
    with_inputs = set(audit["with"]) | {"baseline"}  # the baseline line is a comment there
    assert with_inputs <= set(yaml.safe_load((REPO / "action.yml").read_text())["inputs"])
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@"))
    assert upload["with"]["archive"] is False
    assert upload["with"]["path"] == "${{ steps.audit.outputs.report-html }}"
    assert upload["if"].startswith("always()")  # the report matters most when the gate fails


# --- the gate floor: limits in the workflow file, which the policy may only tighten ----------


def test_floor_refuses_a_policy_the_pull_request_loosened(workspace: Path) -> None:
    """lenient.yaml passes on its own (test_passing_policy); with the workflow's floor it is
    refused before anything runs, so the leaking target cannot pass through it."""
    run = run_step(workspace, "model/lenient.yaml", "reports/floored", MIA_MAX_AUC="0.6")
    assert run.code == 2, run.stderr
    (line,) = run.stderr.splitlines()
    assert line.startswith("error: gate.max_auc: max 0.99 is looser than the workflow's floor")
    assert "(--floor-max-auc 0.6)" in line
    assert run.outputs["passed"] == "false" and run.outputs["result-json"] == ""
    assert not (workspace / "reports" / "floored" / "result.json").exists()


def test_floor_lets_a_stricter_policy_run_and_says_so(workspace: Path) -> None:
    run = run_step(
        workspace, "model/strict.yaml", "reports/floor-ok", MIA_MAX_AUC="0.6",
        MIA_MAX_TPR_AT_FPR="",
    )  # fmt: skip
    assert run.code == 1, run.stderr
    result = Result.model_validate_json((run.out_dir / "result.json").read_bytes())
    assert "gate floor from the command line: AUC <= 0.6; the policy's gate is at least as " \
        "strict" in result.notes  # fmt: skip


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
