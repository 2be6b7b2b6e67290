"""Progress in CI logs: plain timestamped lines when stderr is not a terminal (issue 12, 1).

The cadence is tested on `ConsoleProgress` with a fake clock (no timed assertions); the lines
themselves through the console script with stderr to a pipe, as every CI runner runs it.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import CI_LIMIT_SECONDS, CONSOLE_SCRIPT, PROGRESS_LINE, demo_policy_file

# --- the console script, stderr to a pipe -------------------------------------------------------


#: The demo's runtime, on the CPU.
RUNTIME = {"device": "cpu", "seed": 0, "cache_dir": ".mia-cache"}


def write_policy(folder: Path, name: str, **changes: object) -> Path:
    """The demo's state-dict policy with a lenient gate, on the CPU, and `changes`."""
    sections = {"gate": {"max_auc": 0.99}, **changes, "runtime": RUNTIME}
    return demo_policy_file(folder, name, **sections)


@pytest.fixture(scope="module")
def reference_policy(folder: Path) -> Path:
    recipe = {
        "epochs": 2, "batch_size": 32, "optimizer": "adamw", "lr": 0.001, "weight_decay": 0.0,
        "augment": [],
    }  # fmt: skip
    attacks = ["loss", {"name": "lira", "reference_models": 2}]
    data = yaml.safe_load((folder / "policy-state-dict.yaml").read_text())["data"]
    data["max_per_side"] = 60  # small models train fast; the lines are the same
    return write_policy(folder, "reference", attacks=attacks, reference_training=recipe, data=data)


def run_piped(*args: str | Path, interval: str) -> subprocess.CompletedProcess[str]:
    """The console script with stderr to a pipe (not a terminal), as in a CI runner."""
    env = {**os.environ, "MIA_AUDIT_PROGRESS_INTERVAL": interval}
    return subprocess.run(
        [str(CONSOLE_SCRIPT), *map(str, args)],
        capture_output=True,  # stderr to a pipe, not a terminal
        text=True,
        env=env,
        timeout=CI_LIMIT_SECONDS,
        check=False,
    )


def test_a_run_in_ci_prints_timestamped_progress(reference_policy: Path) -> None:
    # Interval 0: a line at every report, so that the test sees the training lines whatever
    # the machine's speed (the cadence itself is tested above).
    completed = run_piped("run", reference_policy, interval="0")
    assert completed.returncode in (0, 1), completed.stderr
    lines = completed.stderr.splitlines()
    progress = [line for line in lines if not line.startswith("note: ")]
    assert progress and all(PROGRESS_LINE.match(line) for line in progress), progress
    assert "mia-audit 0.1.0" in progress[0] and "device cpu" in progress[0]
    training = [line for line in progress if "training 2 online reference models:" in line]
    assert any(
        re.search(r"\d+/\d+ images \(\d+ %\), [01] of 2 models trained, epoch [12]/2, "
                  r"[\d.]+ images/s, ETA \d+s", line)
        for line in training
    ), training  # fmt: skip
    assert any("target inference (1 view)" in line for line in progress)  # not "(1 views)"
    assert completed.stdout.startswith(("PASS", "FAIL"))


def test_quiet_and_verbose_runs(folder: Path) -> None:
    policy = write_policy(folder, "plain", attacks=["loss", "confidence"])
    quiet = run_piped("run", policy, "-q", interval="0")
    assert quiet.returncode in (0, 1), quiet.stderr
    assert quiet.stderr == ""
    verbose = run_piped("run", policy, "-v", interval="3600")
    assert verbose.returncode in (0, 1), verbose.stderr
    stages = [line[11:] for line in verbose.stderr.splitlines() if PROGRESS_LINE.match(line)]
    # Every stage starts and ends in the log with -v, even with a long interval.
    for stage in ("loading the data and the model", "attack loss", "statistics confidence"):
        assert f"{stage}: started" in stages
        assert any(line.startswith(f"{stage}: done in ") for line in stages)
