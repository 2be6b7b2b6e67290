"""Shared fixtures: one small, overfit digits target trained once per test session.

The target is real (a torchvision ResNet18 trained on scikit-learn's digits, saved as a state
dict and exported to ONNX); it is the same pipeline `mia-audit demo` runs, at a smaller size so
the suite stays fast on two CPU cores.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mia_audit.demo import DemoOptions, prepare_demo

CONSOLE_SCRIPT = Path(sys.executable).with_name("mia-audit")

#: A progress line: stderr is a pipe in these tests, as in CI, so stages print
#: `[hh:mm:ss] stage: ...` lines there (README, Use).
PROGRESS_LINE = re.compile(r"^\[\d\d:\d\d:\d\d\] ")


def without_progress(stderr: str) -> list[str]:
    """stderr's lines other than progress lines (errors and notes)."""
    return [line for line in stderr.splitlines() if not PROGRESS_LINE.match(line)]


def notes_besides_outputs(result: dict[str, Any]) -> list[str]:
    """result.json's notes without the one that says what kind of outputs the model returns
    (every run has it; result.json also records the kind under `target.outputs`)."""
    notes = result["notes"]
    assert sum(note.startswith("model outputs: ") for note in notes) == 1, notes
    return [note for note in notes if not note.startswith("model outputs: ")]


@dataclass(frozen=True)
class DigitsTarget:
    """A folder with target.pt, target.onnx, members/non_members/population.npz, policy.yaml."""

    directory: Path

    def copy_to(self, destination: Path) -> Path:
        shutil.copytree(self.directory, destination, ignore=shutil.ignore_patterns(".mia-cache"))
        return destination


def _stage(description: str, total: int) -> Any:
    return nullcontext(lambda n, detail=None: None)


@pytest.fixture(scope="session")
def digits_target(tmp_path_factory: pytest.TempPathFactory) -> DigitsTarget:
    directory = tmp_path_factory.mktemp("digits-target")
    prepare_demo(DemoOptions(directory=directory, n_members=200, epochs=8), _stage)
    return DigitsTarget(directory)


RunCli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def run_cli() -> RunCli:
    """Run the installed console script, as a user would."""

    def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "COLUMNS": "200"}
        return subprocess.run(
            [str(CONSOLE_SCRIPT), *map(str, args)],
            capture_output=True,
            text=True,
            cwd=cwd,
            env=env,
            timeout=600,
            check=False,
        )

    return run
