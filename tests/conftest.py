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

#: What a user reads: README.md and the reference pages under docs/ (built by mkdocs). Tests that
#: hold the documentation to the code read all of them, whichever page a section is on.
REPOSITORY = Path(__file__).resolve().parents[1]
USER_DOCS = (REPOSITORY / "README.md", *sorted((REPOSITORY / "docs").glob("*.md")))

#: A progress line: stderr is a pipe in these tests, as in CI, so stages print
#: `[hh:mm:ss] stage: ...` lines there (docs/commands.md).
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


#: A small CNN for 32x32 images, written beside a policy as a `module:function` factory
#: (`small_cnn:small_cnn`): reference models that train in a second or two.
SMALL_CNN = '''"""A small CNN for 32x32 images: reference models that train in a second or two."""
from torch import nn


def small_cnn(num_classes):
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 8 * 8, 64), nn.ReLU(), nn.Linear(64, num_classes),
    )
'''
#: A `reference_training` recipe of SMALL_CNN that overfits its 100 samples.
SMALL_RECIPE: dict[str, Any] = {
    "architecture": "small_cnn:small_cnn",
    "epochs": 8,
    "train_size": 100,
    "batch_size": 20,
    "optimizer": "adamw",
    "lr": 0.003,
    "weight_decay": 0.0,
    "augment": [],
}


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
