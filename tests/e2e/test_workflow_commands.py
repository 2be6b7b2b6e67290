"""Nothing a policy or data file names can forge a GitHub workflow command in the log.

The GitHub runner acts on `::command::` at the start of a line (after leading whitespace) and on
the legacy `##[command]` anywhere in a line (actions/runner, ActionCommand.TryParseV2 and
TryParse, tried in that order by ActionCommandManager.TryProcessCommand); `stop-commands`
silences every later command until its token comes back. `runner_commands` below reads a log
the same way. The CLI must print names with such content as inert text, and the action must
keep its own annotation working even when a name holds `::stop-commands::`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from tests.conftest import CI_LIMIT_SECONDS, RunCli, without_progress
from tests.github_runner import HOSTILE_NAME, runner_commands

#: Within the year a waiver may run.
EXPIRES = (datetime.now(timezone.utc).date() + timedelta(days=300)).isoformat()
HOSTILE_REASON = "accepted\n::warning::forged ##[error]forged\x1b[2J"














@pytest.fixture(scope="module")
def folder(folder: Path) -> Path:
    policy = {
        "version": 1,
        "name": HOSTILE_NAME,
        "model": {"path": "target.onnx", "num_classes": 10},
        "data": {"members": "members.npz", "non_members": "non_members.npz"},
        "preprocessing": {"mean": [0.2, 0.2, 0.2], "std": [0.3, 0.3, 0.3]},
        "attacks": ["loss", "confidence"],
        "gate": {  # fails: the action then prints its own annotation
            "max_auc": 0.51,
            "max_tpr_at_fpr": [{"fpr": 0.05, "max": 0.0}],
            "suppressions": [
                {"condition": "tpr_at_fpr", "reason": HOSTILE_REASON, "expires": EXPIRES}
            ],
        },
        "outputs": {"dir": "report", "formats": ["json", "html", "markdown"]},
        "runtime": {"device": "cpu", "seed": 0, "cache_dir": ".mia-cache"},
    }
    (folder / "hostile.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))
    return folder


def test_cli_prints_hostile_names_as_inert_text(folder: Path, run_cli: RunCli) -> None:
    out_dir = folder / "out\n::error::path ##[error]p"
    completed = run_cli("run", folder / "hostile.yaml", "--output-dir", out_dir)

    assert completed.returncode == 1, completed.stderr
    assert runner_commands(completed.stdout) == []
    assert runner_commands(completed.stderr) == []
    verdict = completed.stdout.splitlines()[0]
    assert verdict.startswith("FAIL leaky\\n::error title=forged::this model is private\\n")
    assert "##\\x5bstop-commands]y ##\\x5berror]forged\\r\\x1b[2J" in verdict
    waived = f"waived until {EXPIRES}: accepted ::warning::forged ##\\x5berror]forged\\x1b[2J"
    assert waived in completed.stdout
    assert (
        "report: " in completed.stdout and "out\\n::error::path ##\\x5berror]p" in completed.stdout
    )


def test_cli_error_naming_a_hostile_path_is_one_inert_line(folder: Path, run_cli: RunCli) -> None:
    document = yaml.safe_load((folder / "hostile.yaml").read_text())
    document["model"]["path"] = "missing\n::error::forged ##[error]x.onnx"
    policy = folder / "hostile-path.yaml"
    policy.write_text(yaml.safe_dump(document, sort_keys=False))

    completed = run_cli("run", policy)

    assert completed.returncode == 2
    (line,) = without_progress(completed.stderr)
    assert line.startswith("error: model.path: ") and "not found; check the path" in line
    assert "missing\\n::error::forged ##\\x5berror]x.onnx" in line
    assert runner_commands(completed.stderr) == []


def test_action_fences_the_audit_and_keeps_its_own_annotation(folder: Path) -> None:
    workspace = folder.parent
    github = workspace / ".github-hostile"
    github.mkdir()
    env = {
        **os.environ,
        "GITHUB_WORKSPACE": str(workspace),
        "GITHUB_OUTPUT": str(github / "output"),
        "GITHUB_STEP_SUMMARY": str(github / "summary"),
        "MIA_POLICY": "t/hostile.yaml",
        "MIA_OUTPUT_DIR": "hostile-report",
        "MIA_DEVICE": "cpu",
    }
    completed = subprocess.run(
        [sys.executable, "-m", "mia_audit.cli.action"],
        cwd=github,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # one log, in order, as the runner reads it
        text=True,
        timeout=CI_LIMIT_SECONDS,
        check=False,
    )

    assert completed.returncode == 1, completed.stdout
    acted = runner_commands(completed.stdout)
    assert len(acted) == 3, acted
    assert acted[0].startswith("stop-commands mia-audit-") and acted[1] == "resume"
    assert acted[2].startswith("error privacy gate failed for leaky%0A::error title=forged")
    # Everything the audit printed is inside the fence.
    lines = completed.stdout.splitlines()
    token = acted[0].split(" ", 1)[1]
    assert lines[0] == f"::stop-commands::{token}"
    assert lines.index(f"::{token}::") == len(lines) - 2
    assert lines[-1].startswith("::error title=mia-audit::privacy gate failed for leaky%0A")
