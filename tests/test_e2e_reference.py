"""LiRA, RMIA and shadow models end to end through `mia-audit run` on the overfit digits target,
with a few reference models trained with the target's own recipe: they beat chance, a second
run trains nothing, and missing data or a missing reference architecture exit 2 with a message
saying what to add."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from tests.conftest import DigitsTarget, RunCli

#: The target's own recipe (mia_audit.demo: ResNet18, AdamW, no augmentation); the architecture
#: defaults to model.architecture.
RECIPE = {
    "epochs": 8,
    "batch_size": 64,
    "optimizer": "adamw",
    "lr": 0.001,
    "weight_decay": 0.0,
    "augment": [],
}
ATTACKS: list[Any] = [
    "loss",
    {"name": "lira", "reference_models": 2, "mode": "online"},
    {"name": "lira", "id": "lira_offline", "reference_models": 4, "mode": "offline"},
    {"name": "rmia", "reference_models": 4},
    {"name": "shadow", "shadow_models": 4},
]
REFERENCE_ATTACKS = ("lira", "lira_offline", "rmia", "shadow")


def write_policy(folder: Path, name: str, **changes: Any) -> Path:
    policy: dict[str, Any] = {
        "version": 1,
        "name": name,
        "model": {"path": "target.pt", "architecture": "resnet18", "num_classes": 10},
        "data": {
            "members": "members.npz",
            "non_members": "non_members.npz",
            "population": "population_small.npz",
        },
        "preprocessing": {"mean": [0.2, 0.2, 0.2], "std": [0.3, 0.3, 0.3]},
        "attacks": ATTACKS,
        "reference_training": RECIPE,
        "gate": {"max_auc": 0.99},
        "outputs": {"dir": f"out-{name}", "formats": ["json"]},
        "runtime": {"device": "cpu", "seed": 0, "cache_dir": ".mia-cache"},
    }
    policy.update(changes)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def folder(digits_target: DigitsTarget, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits target with a 400-sample population (enough for 4 shadow models' halves)."""
    target = digits_target.copy_to(tmp_path_factory.mktemp("e2e-reference") / "t")
    with np.load(target / "population.npz") as population:
        np.savez(target / "population_small.npz", **{k: population[k][:400] for k in population})
    return target


@pytest.fixture(scope="module")
def runs(folder: Path, run_cli: RunCli) -> list[tuple[int, str, dict[str, Any]]]:
    """The same audit twice: the second finds every model and logit in the cache."""
    policy = write_policy(folder, "reference")
    outcomes = []
    for _ in range(2):
        completed = run_cli("run", policy)
        assert "Traceback" not in completed.stderr, completed.stderr
        result = json.loads((folder / "out-reference" / "result.json").read_text())
        outcomes.append((completed.returncode, completed.stdout + completed.stderr, result))
    return outcomes


def test_reference_attacks_beat_chance(runs: list[tuple[int, str, dict[str, Any]]]) -> None:
    code, output, result = runs[0]
    assert code == 0, output
    attacks = {attack["id"]: attack for attack in result["attacks"]}
    for label in REFERENCE_ATTACKS:
        assert attacks[label]["auc"] > 0.55, (label, attacks[label]["auc"])
    assert attacks["lira"]["parameters"]["variance_used"] == "global"
    assert attacks["lira_offline"]["parameters"]["reference_models"] == 4
    assert 0 <= attacks["rmia"]["parameters"]["offline_a_used"] <= 1
    assert attacks["shadow"]["parameters"]["shadow_models"] == 4
    assert "reference models" in result["timings"]
    assert "reference models: 6 trained" in output  # 2 online + 4 offline, shared by 3 attacks


def test_second_run_trains_nothing(runs: list[tuple[int, str, dict[str, Any]]]) -> None:
    (_, _, first), (code, output, second) = runs
    assert code == 0, output
    assert "reference models: 0 trained, 6 reused from the cache" in output
    assert "training" not in output.lower().replace("reference_training", "")
    for before, after in zip(first["attacks"], second["attacks"], strict=True):
        assert before["auc"] == after["auc"]


def test_no_population_and_too_few_non_members_exits_2(folder: Path, run_cli: RunCli) -> None:
    data = {"members": "members.npz", "non_members": "non_members.npz"}
    policy = write_policy(
        folder, "no-population", data=data, attacks=[{"name": "lira", "mode": "offline"}]
    )
    completed = run_cli("run", policy)
    assert completed.returncode == 2, completed.stdout + completed.stderr
    message = completed.stderr
    assert "population samples" in message and "no data.population" in message
    assert "Traceback" not in message


def test_too_small_a_population_exits_2(folder: Path, run_cli: RunCli) -> None:
    recipe = {**RECIPE, "train_size": 300}
    policy = write_policy(folder, "small-population", reference_training=recipe)
    completed = run_cli("run", policy)
    assert completed.returncode == 2, completed.stdout + completed.stderr
    assert "data.population" in completed.stderr and "'shadow' needs 600" in completed.stderr


def test_onnx_target_without_reference_architecture_exits_2(
    folder: Path, run_cli: RunCli
) -> None:
    policy = write_policy(
        folder, "onnx", model={"path": "target.onnx"},
        attacks=["loss", {"name": "rmia", "reference_models": 2}],
    )
    for command in ("validate", "run"):
        completed = run_cli(command, policy)
        assert completed.returncode == 2, completed.stdout + completed.stderr
        assert "reference_training.architecture" in completed.stderr
        assert "'rmia' trains reference models" in completed.stderr
