"""Reference models do not depend on the executor: every executor trains with the recipe's
torch thread count (`reference_training.threads`), whatever `cpus_per_task` a Ray task reserves
or how many cores this machine has, so a local run and a Ray run give bit-identical models and
the same result.json attacks.

The first test calls the Ray task's function in this process (it is plain Python) with
different worker thread counts; the second runs the console script on a Ray instance it starts
(`address: local`) with `cpus_per_task: 1` against a local run with this machine's threads,
with the small CNN recipe of tests/conftest.py.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from mia_audit.references.executors.base import Architecture, TrainingTask
from mia_audit.references.executors.local import LocalExecutor
from mia_audit.references.executors.ray import WorkerSettings, train_group
from mia_audit.references.settings import TrainingRecipe
from mia_audit.references.training import TrainingData, TrainingJob
from tests.conftest import SMALL_CNN, SMALL_RECIPE, DigitsTarget, RunCli


@pytest.fixture(scope="module")
def folder(digits_target: DigitsTarget, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = digits_target.copy_to(tmp_path_factory.mktemp("threads") / "t")
    (folder / "small_cnn.py").write_text(SMALL_CNN)
    return folder


def _tasks_and_data(folder: Path) -> tuple[list[TrainingTask], TrainingData]:
    with np.load(folder / "population.npz") as population:
        images = population["x"][:300].transpose(0, 3, 1, 2).copy()
        labels = population["y"][:300]
    data = TrainingData(images, labels, (0.2, 0.2, 0.2), (0.3, 0.3, 0.3))
    rows = np.random.default_rng(0).permutation(300)
    tasks = [
        TrainingTask(
            f"model-{i}", TrainingJob(index=np.sort(rows[i * 100 : (i + 1) * 100]), seed=i)
        )
        for i in range(2)
    ]
    return tasks, data


def test_the_trained_models_do_not_depend_on_the_worker_threads(folder: Path) -> None:
    tasks, data = _tasks_and_data(folder)
    recipe = TrainingRecipe.model_validate({**SMALL_RECIPE, "epochs": 2})
    architecture = Architecture("small_cnn:small_cnn", 10, search_path=folder)
    trained: dict[int, list[dict[str, torch.Tensor]]] = {}
    before = torch.get_num_threads()
    for threads in (1, 2):
        group = train_group(
            tasks, data, None, recipe, architecture, WorkerSettings("cpu", threads, 1)
        )
        trained[threads] = [model.state for model in group.models]
        assert torch.get_num_threads() == threads  # the task's inference threads, restored
    torch.set_num_threads(before)
    local: list[dict[str, torch.Tensor]] = []
    LocalExecutor("cpu").train(tasks, data, recipe, architecture, lambda t, s, *_: local.append(s))
    for one, two, here in zip(trained[1], trained[2], local, strict=True):
        assert one.keys() == two.keys() == here.keys()
        for key in one:
            assert torch.equal(one[key], two[key]) and torch.equal(one[key], here[key]), key


def _policy(folder: Path, name: str, executor: Any) -> Path:
    policy = {
        "version": 1,
        "name": name,
        "model": {"path": "target.pt", "architecture": "resnet18", "num_classes": 10},
        "data": {
            "members": "members.npz",
            "non_members": "non_members.npz",
            "population": "population.npz",
        },
        "preprocessing": {"mean": [0.2, 0.2, 0.2], "std": [0.3, 0.3, 0.3]},
        "attacks": [{"name": "lira", "reference_models": 2, "mode": "offline"}],
        "reference_training": {**SMALL_RECIPE, "epochs": 3},
        "gate": {"max_auc": 0.99},
        "outputs": {"dir": f"out-{name}", "formats": ["json"]},
        "runtime": {"device": "cpu", "cache_dir": f".cache-{name}", "executor": executor},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    return path


#: An attack's figures: they depend on the scores' order, not their last bits.
FIGURES = ("auc", "tpr_at_fpr", "auc_ci", "tpr_at_fpr_ci", "advantage", "balanced_accuracy")


def _close(one: Any, two: Any) -> bool:
    """Equal, but for floats within float32 rounding of raw scores (relative 1e-5)."""
    if isinstance(one, dict) and isinstance(two, dict):
        return one.keys() == two.keys() and all(_close(one[k], two[k]) for k in one)
    if isinstance(one, list) and isinstance(two, list):
        return len(one) == len(two) and all(map(_close, one, two))
    if isinstance(one, float) and isinstance(two, float):
        return math.isclose(one, two, rel_tol=1e-5, abs_tol=1e-9)
    return bool(one == two)


def _attacks(folder: Path, name: str) -> list[dict[str, Any]]:
    attacks = json.loads((folder / f"out-{name}" / "result.json").read_text())["attacks"]
    return [{k: v for k, v in attack.items() if k != "seconds"} for attack in attacks]


def test_ray_at_one_cpu_per_task_gives_the_local_run_s_attacks(
    folder: Path, run_cli: RunCli
) -> None:
    """The local run's process has this machine's torch threads (more than one on any CI
    runner); the Ray task reserves one CPU. Both train with the recipe's one thread."""
    local = run_cli("run", _policy(folder, "local", "local"))
    assert local.returncode == 0, local.stderr
    executor = {"kind": "ray", "address": "local", "cpus_per_task": 1}
    ray = run_cli("run", _policy(folder, "ray", executor))
    assert ray.returncode == 0, ray.stderr
    assert "ray: 2 reference models trained on 1 machine" in ray.stderr
    on_ray, here = _attacks(folder, "ray"), _attacks(folder, "local")
    # The same models; the task computes logits on its one CPU's thread, the local run on all,
    # so raw scores may differ in float32 rounding, the figures and the verdict not at all.
    for attack_on_ray, attack_here in zip(on_ray, here, strict=True):
        assert {k: attack_on_ray[k] for k in FIGURES} == {k: attack_here[k] for k in FIGURES}
    assert _close(on_ray, here), "scores differ by more than float32 rounding"
