"""The GitHub Action's step script, run locally the way action.yml runs it, with the
`GITHUB_OUTPUT`, `GITHUB_STEP_SUMMARY` and `GITHUB_WORKSPACE` a runner provides."""

from __future__ import annotations

import html
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from mia_audit.result import Result, strongest_attack
from tests.conftest import BASE_POLICY, CI_LIMIT_SECONDS, DigitsTarget, merged_policy, policy_file
from tests.github_runner import parse_outputs

#: The ONNX target with three target-only attacks; the Action chooses the output folder.
AUDIT = merged_policy(
    BASE_POLICY,
    model={"path": "target.onnx"},
    attacks=["loss", "confidence", "class_threshold"],
    outputs={"dir": "ignored-by-the-action", "formats": ["json", "junit"]},
)


@dataclass(frozen=True)
class StepRun:
    code: int
    stdout: str
    stderr: str
    outputs: dict[str, str]
    summary: str
    out_dir: Path


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
        timeout=CI_LIMIT_SECONDS,
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
    policy_file(folder, "lenient", AUDIT, gate={"max_auc": 0.99})
    policy_file(folder, "strict", AUDIT, gate={"max_auc": 0.51})
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
            timeout=CI_LIMIT_SECONDS, check=False,
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


def test_sarif_input_writes_results_sarif(workspace: Path, passing: StepRun) -> None:
    run = run_step(workspace, "model/strict.yaml", "reports/sarif", MIA_SARIF="true")
    assert run.code == 1, run.stderr
    assert run.outputs["sarif"] == str(run.out_dir / "results.sarif")
    log = json.loads(Path(run.outputs["sarif"]).read_text())
    assert log["version"] == "2.1.0"
    assert "gate.max_auc" in [r["ruleId"] for r in log["runs"][0]["results"]]
    assert passing.outputs["sarif"] == ""  # not asked for


# --- action.yml -----------------------------------------------------------------------------


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
