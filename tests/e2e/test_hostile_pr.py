"""The hostile pull request: every edit the audited party can make to its own policy, against
the workflow's floor (docs/floor.md), through the console script and the action entry point.

The leaking target is the digits ResNet18 of tests/conftest.py (loss AUC about 0.64 against
the floor's max_auc 0.6). Its own policy, as strict as the floor, fails (exit 1); no edit may
turn that into exit 0. The honest target is the same model audited on "members" it never
trained on (a slice of the population), so no attack can tell them from the non-members:
under the same floor it passes (exit 0), so the floor does not refuse every audit.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from mia_audit.demo import DIGITS_MEAN, DIGITS_STD
from tests.conftest import (
    CI_LIMIT_SECONDS,
    SMALL_CNN,
    SMALL_RECIPE,
    DigitsTarget,
    RunCli,
    without_progress,
)

#: The organisation's floor, kept outside the pull request's checkout.
FLOOR: dict[str, Any] = {
    "version": 1,
    "name": "org privacy floor",
    "data": {"max_per_side": 200},
    "attacks": [
        "loss",
        "confidence",
        "entropy",
        "modified_entropy",
        {"name": "logit_margin", "queries": 2},
        "class_threshold",
        {"name": "lira", "reference_models": 4},
        {"name": "rmia", "reference_models": 4},
    ],
    "gate": {"max_auc": 0.6, "max_tpr_at_fpr": [{"fpr": 0.05, "max": 0.1}]},
    "preconditions": {"reference_fit": "error"},
    "statistics": {"min_false_positives": 10},
    "reference_training": SMALL_RECIPE,
}

#: The repository's own policy: exactly as strict as the floor.
POLICY: dict[str, Any] = {
    "version": 1,
    "name": "digits-release",
    "model": {"path": "target.pt", "architecture": "resnet18", "num_classes": 10},
    "data": {
        "members": "members.npz",
        "non_members": "non_members.npz",
        "population": "population.npz",
    },
    "preprocessing": {"mean": list(DIGITS_MEAN), "std": list(DIGITS_STD)},
    "attacks": copy.deepcopy(FLOOR["attacks"]),
    "gate": copy.deepcopy(FLOOR["gate"]),
    "preconditions": {"reference_fit": "error"},
    "reference_training": dict(SMALL_RECIPE),
    "outputs": {"formats": ["json", "html", "markdown", "junit"]},
    "runtime": {"device": "cpu", "seed": 0, "cache_dir": ".mia-cache"},
}

Edit = Callable[[dict[str, Any]], None]


def _attacks(*entries: Any) -> Edit:
    def edit(policy: dict[str, Any]) -> None:
        policy["attacks"] = list(entries)

    return edit


def _drop(name: str) -> Edit:
    def edit(policy: dict[str, Any]) -> None:
        policy["attacks"] = [
            a for a in policy["attacks"] if (a if isinstance(a, str) else a["name"]) != name
        ]

    return edit


def _set(section: str, **values: Any) -> Edit:
    def edit(policy: dict[str, Any]) -> None:
        policy[section] = {**policy.get(section, {}), **values}

    return edit


def _both(*edits: Edit) -> Edit:
    def edit(policy: dict[str, Any]) -> None:
        for each in edits:
            each(policy)

    return edit


def _lira(**values: Any) -> Edit:
    def edit(policy: dict[str, Any]) -> None:
        policy["attacks"] = [
            {**a, **values} if isinstance(a, dict) and a["name"] == "lira" else a
            for a in policy["attacks"]
        ]

    return edit


WAIVER = {"condition": "auc", "reason": "accepted", "expires": "2099-01-01"}

#: Each hostile edit, and what its refusal must name (exit 2 for every one).
HOSTILE: dict[str, tuple[Edit, tuple[str, ...]]] = {
    "only-gap": (_attacks("gap"), ("attacks: 'loss' is missing, but the floor (floor.yaml)",)),
    "attacks-deleted": (_attacks("loss"), ("attacks: 'class_threshold' is missing",)),
    "strongest-dropped": (_drop("class_threshold"), ("attacks: 'class_threshold' is missing",)),
    "labels-and-label-only-attacks": (
        _both(_set("model", outputs="labels"), _attacks("gap", "augmentation")),
        ("attacks: 'loss' is missing",),
    ),
    "labels-downgrade": (
        _set("model", outputs="labels"),
        ("model.outputs: declares labels, but the model returns logits",),
    ),
    "fewer-reference-models": (
        _lira(reference_models=2),
        ("attacks[6] (lira): reference_models 2 is fewer than the floor's 4",),
    ),
    "offline-weak-recipe": (
        _both(
            _attacks({"name": "lira", "reference_models": 2, "mode": "offline"}),
            _set("reference_training", epochs=1, lr=1e-4),
        ),
        ("reference_training.epochs: is 1, but the floor (floor.yaml) pins 8",
         "reference_training.lr: is 0.0001, but the floor (floor.yaml) pins 0.003"),
    ),
    "reference-fit-warn": (
        _set("preconditions", reference_fit="warn"),
        ("preconditions.reference_fit: is warn, but the floor (floor.yaml) requires error",),
    ),
    "shrink-and-seed-shopping": (
        _both(
            _set("data", max_per_side=68),
            _set("statistics", min_false_positives=1),
            _set("runtime", seed=7),
        ),
        ("data.max_per_side: 68 is below the floor (floor.yaml)'s audit size of 200",
         "statistics.min_false_positives: 1 is below the floor (floor.yaml)'s 10"),
    ),
    "smaller-data-file": (
        _set("data", members="members_68.npz"),
        ("data: the audit set has 68 members and 68 non-members, but the floor",),
    ),
    "batch-size-7-train-mode-batchnorm": (
        _both(_set("model", path="target_bn_train.pt"), _set("runtime", batch_size=7)),
        ("the model's outputs depend on the other images in the batch", "BatchNorm in train mode"),
    ),
    "relaxed-preconditions": (
        _set("preconditions", allow_small_audit=True, allow_weak_target=True),
        ("preconditions.allow_small_audit: relaxes a check made before the verdict",
         "preconditions.allow_weak_target: relaxes"),
    ),
    "suppression": (
        _set("gate", suppressions=[WAIVER]),
        ("gate.suppressions[0]: waives 'auc', which the floor (floor.yaml) does not let",),
    ),
    "looser-thresholds": (
        _set("gate", max_auc=0.99, max_tpr_at_fpr=[{"fpr": 0.05, "max": 0.5}]),
        ("gate.max_auc: max 0.99 is looser than the floor (floor.yaml)",
         "gate.max_tpr_at_fpr[0]: max 0.5 is looser"),
    ),
    "scoped-to-a-weak-attack": (
        _set("gate", attacks=["entropy"]),
        ("gate.attacks: leaves attack 'loss' out of the condition",),
    ),
    "weaker-statistics": (
        _set("statistics", confidence_level=0.5, n_resamples=100),
        ("statistics.confidence_level: 0.5 is below the floor (floor.yaml)'s 0.95",),
    ),
}  # fmt: skip


def _honest_data(repo: Path) -> None:
    """Members the target never saw: 200 of the population drawn at random, so that they come
    from the non-members' distribution (the population file is in the digits' order, whose
    writers differ); the rest stays the population."""
    with np.load(repo / "population.npz") as population:
        x, y, ids = population["x"], population["y"], population["ids"]
    order = np.random.default_rng(0).permutation(len(y))
    chosen, rest = np.sort(order[:200]), np.sort(order[200:])
    np.savez(repo / "honest_members.npz", x=x[chosen], y=y[chosen], ids=ids[chosen])
    np.savez(repo / "honest_population.npz", x=x[rest], y=y[rest], ids=ids[rest])
    with np.load(repo / "members.npz") as members:
        np.savez(repo / "members_68.npz", x=members["x"][:68], y=members["y"][:68])


def _train_mode_batchnorm_export(repo: Path) -> None:
    """The red team's model: the target traced with its BatchNorm layers in train mode."""
    import torch

    from mia_audit.models.architectures import build_architecture

    model = build_architecture("resnet18", 10)
    model.load_state_dict(torch.load(repo / "target.pt", weights_only=True))
    traced = torch.jit.trace(  # type: ignore[no-untyped-call]
        model.train(), torch.zeros(4, 3, 32, 32), check_trace=False
    )
    traced.save(str(repo / "target_bn_train.pt"))


@pytest.fixture(scope="module")
def workspace(digits_target: DigitsTarget, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """GITHUB_WORKSPACE: the pull request's checkout (`repo/`) and the floor (`org/`)."""
    root = tmp_path_factory.mktemp("hostile-pr")
    repo = digits_target.copy_to(root / "repo")
    (repo / "small_cnn.py").write_text(SMALL_CNN)
    (root / "org").mkdir()
    (root / "org" / "floor.yaml").write_text(yaml.safe_dump(FLOOR, sort_keys=False))
    _honest_data(repo)
    _train_mode_batchnorm_export(repo)
    return root


@dataclass(frozen=True)
class Outcome:
    code: int
    errors: list[str]
    out_dir: Path


def _write(workspace: Path, name: str, edit: Edit | None) -> Path:
    policy = copy.deepcopy(POLICY)
    if edit is not None:
        edit(policy)
    path = workspace / "repo" / f"{name}.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    return path


def _console(run_cli: RunCli, workspace: Path, policy: Path, out: str) -> Outcome:
    out_dir = workspace / "reports" / out
    floor = workspace / "org" / "floor.yaml"
    completed = run_cli("run", policy, "--floor", floor, "--output-dir", out_dir)
    errors = [line for line in without_progress(completed.stderr) if line.startswith("error: ")]
    return Outcome(completed.returncode, errors, out_dir)


def _action(workspace: Path, policy: Path, out: str) -> Outcome:
    github = workspace / f".github-{out}"
    github.mkdir()
    env = {
        **os.environ,
        "GITHUB_WORKSPACE": str(workspace),
        "GITHUB_OUTPUT": str(github / "output"),
        "GITHUB_STEP_SUMMARY": str(github / "summary"),
        "MIA_POLICY": str(policy.relative_to(workspace)),
        "MIA_FLOOR": "org/floor.yaml",
        "MIA_OUTPUT_DIR": f"reports/{out}",
        "MIA_DEVICE": "cpu",
    }
    completed = subprocess.run(
        [sys.executable, "-m", "mia_audit.cli.action"],
        cwd=github,
        env=env,
        capture_output=True,
        text=True,
        timeout=CI_LIMIT_SECONDS,
        check=False,
    )
    errors = [line for line in without_progress(completed.stderr) if line.startswith("error: ")]
    outputs = (github / "output").read_text()
    assert f"exit-code={completed.returncode}" in outputs
    if completed.returncode != 0:
        assert "passed=false" in outputs
    return Outcome(completed.returncode, errors, workspace / "reports" / out)


ENTRIES = ("console", "action")


def _run(entry: str, run_cli: RunCli, workspace: Path, policy: Path, out: str) -> Outcome:
    if entry == "console":
        return _console(run_cli, workspace, policy, out)
    return _action(workspace, policy, out)


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_no_hostile_edit_passes_the_leaking_target(
    case: str, entry: str, run_cli: RunCli, workspace: Path
) -> None:
    edit, expected = HOSTILE[case]
    policy = _write(workspace, f"{case}-{entry}", edit)
    outcome = _run(entry, run_cli, workspace, policy, f"{case}-{entry}")
    print(f"\nHOSTILE {case} [{entry}]: exit {outcome.code}")
    for line in outcome.errors:
        print(f"  {line}")
    assert outcome.code == 2, outcome.errors
    text = "\n".join(outcome.errors)
    for part in expected:
        assert part in text, text
    assert not (outcome.out_dir / "result.json").exists()  # a refused run writes no report


@pytest.mark.parametrize("entry", ENTRIES)
def test_the_policy_as_strict_as_the_floor_fails_the_leaking_target(
    entry: str, run_cli: RunCli, workspace: Path
) -> None:
    policy = _write(workspace, f"leaking-{entry}", None)
    outcome = _run(entry, run_cli, workspace, policy, f"leaking-{entry}")
    assert outcome.code == 1, outcome.errors
    result = json.loads((outcome.out_dir / "result.json").read_text())
    failed = [c["id"] for c in result["gate"]["conditions"] if not c["passed"]]
    print(f"\nLEAKING [{entry}]: exit 1, failed {failed}")
    assert "auc" in failed
    _check_floor_recorded(result, outcome.out_dir, workspace)


def _check_floor_recorded(result: dict[str, Any], out_dir: Path, workspace: Path) -> None:
    """result.json and every report name the floor's sha256 and what it enforced."""
    import hashlib

    digest = hashlib.sha256((workspace / "org" / "floor.yaml").read_bytes()).hexdigest()
    floor = result["floor"]
    assert floor["sha256"] == digest and floor["path"] == str(workspace / "org" / "floor.yaml")
    assert floor["enforced"][0] == "gate: AUC <= 0.6; TPR at FPR 0.05 <= 0.1, unwaivable"
    assert any(line.startswith("attacks: at least loss;") for line in floor["enforced"])
    pinned = "reference_training pinned: architecture small_cnn:small_cnn"
    for report in ("report.html", "summary.md", "junit.xml"):
        text = (out_dir / report).read_text()
        if report == "summary.md":
            text = text.replace("\\", "")  # Markdown escapes the underscores
        assert digest in text, report
        assert pinned in text, report


def test_seed_shopping_on_a_full_size_audit_finds_no_pass(run_cli: RunCli, workspace: Path) -> None:
    """At the floor's audit size the seed (bootstrap, folds, reference models) moves the
    figures but not the verdict; reference models of other seeds are trained afresh."""
    for seed in (1, 2):
        policy = _write(workspace, f"seed-{seed}", _set("runtime", seed=seed))
        outcome = _console(run_cli, workspace, policy, f"seed-{seed}")
        assert outcome.code == 1, (seed, outcome.errors)


@pytest.mark.parametrize("entry", ENTRIES)
def test_the_honest_target_passes_under_the_same_floor(
    entry: str, run_cli: RunCli, workspace: Path
) -> None:
    honest = _set("data", members="honest_members.npz", population="honest_population.npz")
    policy = _write(workspace, f"honest-{entry}", honest)
    outcome = _run(entry, run_cli, workspace, policy, f"honest-{entry}")
    assert outcome.code == 0, outcome.errors
    result = json.loads((outcome.out_dir / "result.json").read_text())
    worst = max(a["auc"] for a in result["attacks"])
    print(f"\nHONEST [{entry}]: exit 0, highest AUC {worst:.3f}")
    assert result["passed"] and result["floor"]["enforced"]


@pytest.mark.parametrize("command", ["validate", "plan"])
@pytest.mark.parametrize(
    "case", ["labels-downgrade", "smaller-data-file", "batch-size-7-train-mode-batchnorm"]
)
def test_validate_and_plan_with_the_floor_refuse_what_run_refuses(
    command: str, case: str, run_cli: RunCli, workspace: Path
) -> None:
    """Including what only loading the data and probing the model shows."""
    edit, expected = HOSTILE[case]
    policy = _write(workspace, f"{command}-{case}", edit)
    completed = run_cli(command, policy, "--floor", workspace / "org" / "floor.yaml")
    assert completed.returncode == 2, completed.stderr
    errors = "\n".join(without_progress(completed.stderr))
    for part in expected:
        assert part in errors, errors


@pytest.mark.parametrize("command", ["validate", "plan"])
def test_validate_and_plan_with_the_floor_accept_the_policy_as_strict(
    command: str, run_cli: RunCli, workspace: Path
) -> None:
    import hashlib

    floor = workspace / "org" / "floor.yaml"
    completed = run_cli(command, _write(workspace, f"{command}-ok", None), "--floor", floor)
    assert completed.returncode == 0, completed.stderr
    digest = hashlib.sha256(floor.read_bytes()).hexdigest()
    assert completed.stdout.splitlines()[-1] == (
        f"floor: the floor (floor.yaml), sha256 {digest[:12]}: the policy is at least as strict"
    )
