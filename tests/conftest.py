"""Shared fixtures: one small, overfit digits target trained once per test run (the first
xdist worker to need it trains it, the others wait for it and share it, read-only).

The target is real (a torchvision ResNet18 trained on scikit-learn's digits, saved as a state
dict and exported to ONNX); it is the same pipeline `mia-audit demo` runs, at a smaller size so
the suite stays fast on two CPU cores.
"""

from __future__ import annotations

import copy
import fcntl
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Collection
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import settings

from mia_audit.demo import DemoOptions, prepare_demo

#: No hypothesis example has a deadline: on a loaded machine an example may take seconds, and a
#: slow machine must make the suite slower, never red (tests that set their own settings say
#: deadline=None too).
settings.register_profile("no-deadline", deadline=None)
settings.load_profile("no-deadline")

CONSOLE_SCRIPT = Path(sys.executable).with_name("mia-audit")
#: The longest any subprocess is waited for: CI's job limit (90 min). No wait in these tests is
#: shorter, so a slow or loaded machine makes the suite slower, never red; a hung process still
#: ends the test rather than the job.
CI_LIMIT_SECONDS = 90 * 60
#: The report files of the formats json, html, markdown and junit.
REPORTS = ["junit.xml", "report.html", "result.json", "summary.md"]

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


def environment_with_path(*folders: Path, **variables: str) -> dict[str, str]:
    """This process's environment with `folders` ahead of PYTHONPATH (set or not) and
    `variables` set: how a test lets the console script import a plugin or sitecustomize."""
    paths = [*map(str, folders), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), **variables}


def notes_besides_outputs(result: dict[str, Any]) -> list[str]:
    """result.json's notes without the one that says what kind of outputs the model returns
    (every run has it; result.json also records the kind under `target.outputs`)."""
    notes = result["notes"]
    assert sum(note.startswith("model outputs: ") for note in notes) == 1, notes
    return [note for note in notes if not note.startswith("model outputs: ")]


def files_under(folder: Path) -> dict[str, bytes]:
    """Every file below `folder`, by relative path, with its bytes."""
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


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


# --- policies ---------------------------------------------------------------------------------


class _Drop:
    def __repr__(self) -> str:
        return "DROP"

    def __deepcopy__(self, memo: dict[int, Any]) -> _Drop:
        return self  # one marker, however often a document holding it is copied


#: An override value that removes the key (e.g. `model={"architecture": DROP}` for an ONNX target).
DROP: Any = _Drop()

#: The policy every test's policy starts from: the digits target's state dict, its members and
#: non-members, the demo's preprocessing, the loss attack, a gate it passes, JSON reports in
#: `out-<name>`, on the CPU with seed 0. `{name}` in outputs.dir is the policy's name.
BASE_POLICY: dict[str, Any] = {
    "version": 1,
    "name": "digits",
    "model": {"path": "target.pt", "architecture": "resnet18", "num_classes": 10},
    "data": {"members": "members.npz", "non_members": "non_members.npz"},
    "preprocessing": {"mean": [0.2, 0.2, 0.2], "std": [0.3, 0.3, 0.3]},
    "attacks": ["loss"],
    "gate": {"max_auc": 0.99},
    "outputs": {"dir": "out-{name}", "formats": ["json"]},
    "runtime": {"device": "cpu", "seed": 0, "cache_dir": ".mia-cache"},
}
#: Sections whose overrides change only the keys they name: files and settings. Every other
#: section (attacks, gate, reference_training, ...) is replaced whole, so that a test's gate is
#: exactly the gate it wrote, never one merged with the base's condition.
MERGED_SECTIONS = frozenset({"model", "data", "preprocessing", "outputs", "runtime"})


def merged_policy(base: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """`base` with `overrides`: a section in MERGED_SECTIONS changes only the keys it names,
    any other section is replaced whole; DROP removes a key or a section."""
    document = copy.deepcopy(base)
    for section, value in overrides.items():
        if section in MERGED_SECTIONS and isinstance(value, dict):
            document[section] = _without_drops({**document.get(section, {}), **value})
        else:
            document[section] = copy.deepcopy(value)
    return _without_drops(document)


def _without_drops(mapping: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in mapping.items() if value is not DROP}


def write_document(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def policy_file(
    folder: Path, name: str, base: dict[str, Any] = BASE_POLICY, **overrides: Any
) -> Path:
    """Write `<folder>/<name>.yaml`: `base` (a module builds its own with merged_policy) named
    `name`, with `overrides` (merged_policy); `{name}` in outputs.dir becomes the name."""
    document = merged_policy(base, name=name, **overrides)
    outputs = document.get("outputs", {})
    if isinstance(outputs.get("dir"), str):
        outputs["dir"] = outputs["dir"].replace("{name}", name)
    return write_document(folder / f"{name}.yaml", document)


def demo_policy_file(folder: Path, name: str, **sections: Any) -> Path:
    """Write `<folder>/<name>.yaml`: the demo's state-dict policy (policy-state-dict.yaml, as
    `mia-audit demo` writes it, its name kept) with `sections` replaced whole."""
    document = yaml.safe_load((folder / "policy-state-dict.yaml").read_text(encoding="utf-8"))
    return write_document(folder / f"{name}.yaml", document | sections)


def without_keys(value: Any, keys: Collection[str]) -> Any:
    """`value` with every entry named in `keys` dropped, at any depth (e.g. timings, to compare
    two result.json files)."""
    if isinstance(value, dict):
        return {k: without_keys(v, keys) for k, v in value.items() if k not in keys}
    if isinstance(value, list):
        return [without_keys(v, keys) for v in value]
    return value


def write_small_population(folder: Path, rows: int) -> Path:
    """population_small.npz: the first `rows` rows of the target's population (fewer
    reference-training candidates, so reference models train on less)."""
    with np.load(folder / "population.npz") as population:
        np.savez(folder / "population_small.npz", **{k: population[k][:rows] for k in population})
    return folder / "population_small.npz"


# --- fixtures -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DigitsTarget:
    """A folder with target.pt, target.onnx, members/non_members/population.npz, policy.yaml."""

    directory: Path

    def copy_to(self, destination: Path) -> Path:
        shutil.copytree(
            self.directory, destination, ignore=shutil.ignore_patterns(".mia-cache", ".complete")
        )
        return destination


def _stage(description: str, total: int) -> Any:
    return nullcontext(lambda n, detail=None: None)


@pytest.fixture(scope="session")
def digits_target(tmp_path_factory: pytest.TempPathFactory) -> DigitsTarget:
    """Trained once for all xdist workers of a run: one target serves them all (a test copies
    it before it changes anything), and the training that each worker repeated is saved."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    directory = shared / "digits-target-shared"
    with (shared / "digits-target.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not (directory / ".complete").exists():
            shutil.rmtree(directory, ignore_errors=True)
            directory.mkdir()
            prepare_demo(DemoOptions(directory=directory, n_members=200, epochs=8), _stage)
            (directory / ".complete").touch()
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
            timeout=CI_LIMIT_SECONDS,
            check=False,
        )

    return run


@pytest.fixture(scope="module")
def folder(digits_target: DigitsTarget, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the digits target for one test module (a module that adds files to it
    overrides this fixture, asking for this one by the same name)."""
    return digits_target.copy_to(tmp_path_factory.mktemp("target") / "t")
