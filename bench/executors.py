"""Benchmark: the same reference models trained by the local executor and by the Ray executor,
and a planner that splits a policy's models across a cluster of GPUs.

Run from the repository root:
    python bench/executors.py [--k 4] [--images 512] [--epochs 1] [--batch-size 64]
    python bench/executors.py --plan POLICY [--models N] --gpus 8 [--images-per-model N]
        [--throughput IMG_PER_S] [--models-per-task M]

Compare (the default): K ResNet18 models (`--arch-stem`), each on its own seeded subset of
`--images` CIFAR-10 training images, trained side by side in one run (`--repeats` pairs)
through the executors the audit uses: the local executor (one model after another on this
machine's CPU, or K in lockstep on its GPU), then the Ray executor on a Ray instance started on
this machine (one task per model, each reserving as many CPUs as torch
uses threads here, so that its models are the local ones bit for bit; on a GPU, one task of K
models in lockstep reserving the GPU). It prints both wall times, their ratio (Ray's
overhead here: object store, task scheduling, shipping state dicts back), the time Ray took to
start (paid once a run, not counted in the ratio), and whether the models are bit-identical.

Plan: how a policy's reference models split across `--gpus` GPUs (one task of `models_per_task`
models in lockstep per GPU at a time, as the Ray executor schedules them) and the wall time to
expect: waves of tasks x (models per task x images per model x epochs / throughput). The
throughput is one device's training images/s for a lockstep group: `--throughput` (measure it on
the cluster's GPU with bench/reference_training.py), else measured here on this machine's device
with the policy's architecture (a CPU figure on a CPU-only machine, which the output says).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import CIFAR_MEAN, CIFAR_STD, Timing, load_cifar10, machine_line, timed

from mia_audit.references.executors.base import Architecture, TrainingTask
from mia_audit.references.executors.local import GPU_CONCURRENCY, LocalExecutor
from mia_audit.references.executors.ray import RayExecutor, RayExecutorConfig
from mia_audit.references.settings import TrainingRecipe
from mia_audit.references.training import TrainingData, TrainingJob
from mia_audit.store.cache import StateDict

POOL = 50_000


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=int, default=4, help="models to train (compare)")
    parser.add_argument("--images", type=int, default=512, help="images per model (compare)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs (compare)")
    parser.add_argument("--batch-size", type=int, default=64, help="batch size (compare)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--arch-stem", default="imagenet", choices=["imagenet", "cifar"])
    parser.add_argument("--repeats", type=int, default=2, help="local/ray pairs (compare)")
    parser.add_argument("--plan", type=Path, default=None, help="a policy to plan for")
    parser.add_argument("--models", type=int, default=None, help="reference models to plan")
    parser.add_argument("--gpus", type=int, default=8, help="GPUs in the cluster (plan)")
    parser.add_argument("--images-per-model", type=int, default=None, help="(plan)")
    parser.add_argument("--throughput", type=float, default=None, help="img/s per GPU (plan)")
    parser.add_argument("--models-per-task", type=int, default=GPU_CONCURRENCY, help="(plan)")
    return parser.parse_args()


def cifar_tasks(k: int, n_images: int) -> tuple[TrainingData, list[TrainingTask]]:
    images, labels = load_cifar10()
    data = TrainingData(
        images[:POOL].transpose(0, 3, 1, 2).copy(), labels[:POOL], CIFAR_MEAN, CIFAR_STD
    )
    rng = np.random.default_rng(0)
    tasks = [
        TrainingTask(f"{j:064x}", TrainingJob(np.sort(rng.choice(POOL, n_images, False)), j))
        for j in range(k)
    ]
    return data, tasks


def recipe_for(epochs: int, batch_size: int, cifar_stem: bool) -> TrainingRecipe:
    """The policies' ResNet18 recipe (SGD, cosine, flip + crop)."""
    return TrainingRecipe(
        architecture="resnet18",
        cifar_stem=cifar_stem,
        epochs=epochs,
        batch_size=batch_size,
        optimizer="sgd",
        lr=0.1,
        weight_decay=5e-4,
        augment=("flip", "crop"),
    )


def train_with(
    executor: LocalExecutor | RayExecutor,
    tasks: list[TrainingTask],
    data: TrainingData,
    recipe: TrainingRecipe,
) -> tuple[Timing, dict[str, StateDict]]:
    """Wall time (and background load) to train every task, and the state dicts by key."""
    states: dict[str, StateDict] = {}

    def keep(task: TrainingTask, state: StateDict, logits: object = None) -> None:
        states[task.key] = state

    architecture = Architecture("resnet18", 10, cifar_stem=bool(recipe.cifar_stem))
    with timed() as timing:
        executor.train(tasks, data, recipe, architecture, keep)
    return timing, states


def identical(first: dict[str, StateDict], second: dict[str, StateDict]) -> bool:
    import torch

    return first.keys() == second.keys() and all(
        first[key].keys() == second[key].keys()
        and all(torch.equal(first[key][name], second[key][name]) for name in first[key])
        for key in first
    )


def compare(args: argparse.Namespace) -> None:
    import torch

    from mia_audit.models.device import resolve_device

    device = resolve_device(args.device)
    threads = torch.get_num_threads()
    data, tasks = cifar_tasks(args.k, args.images)
    cifar_stem = args.arch_stem == "cifar"
    recipe = recipe_for(args.epochs, args.batch_size, cifar_stem)
    print(machine_line())
    print(
        f"{args.k} x resnet18 ({args.arch_stem} stem), {args.images} CIFAR-10 images/model, "
        f"{args.epochs} epoch(s), batch {args.batch_size}, device {device}"
    )
    train_with(
        LocalExecutor(device), tasks[:1], data, recipe_for(1, args.batch_size, cifar_stem)
    )  # warm-up
    gpu = device == "cuda"
    config = RayExecutorConfig(
        address="local",
        cpus_per_task=threads,
        gpus_per_task=1 if gpu else 0,
        models_per_task=args.k if gpu else 1,
    )
    ray_executor = RayExecutor(config)
    with timed() as start_timing:
        ray_executor.connect()
    pairs: list[tuple[Timing, Timing, bool]] = []
    try:
        for _ in range(args.repeats):  # side by side, so that both see the same background load
            local, local_states = train_with(LocalExecutor(device), tasks, data, recipe)
            ray, ray_states = train_with(ray_executor, tasks, data, recipe)
            pairs.append((local, ray, identical(local_states, ray_states)))
    finally:
        ray_executor.close()
    images = args.k * args.images * args.epochs
    print(f"ray start (once a run): {start_timing.seconds:.1f} s")
    header = f"{'local s':>8} {'img/s':>8} {'ray s':>8} {'img/s':>8} {'ratio':>7}"
    print(header + "  bit-identical  other load (local / ray)")
    for local, ray, same in pairs:
        loads = " / ".join(
            "n/a" if t.other_cores is None else f"{t.other_cores:.2f}" for t in (local, ray)
        )
        print(
            f"{local.seconds:>8.1f} {images / local.seconds:>8.1f} {ray.seconds:>8.1f} "
            f"{images / ray.seconds:>8.1f} {ray.seconds / local.seconds:>6.2f}x  "
            f"{'yes' if same else 'no':<13}  {loads}"
        )
    total_local = sum(local.seconds for local, _, _ in pairs)
    total_ray = sum(ray.seconds for _, ray, _ in pairs)
    print(f"overhead ratio (ray / local wall time, all repeats): {total_ray / total_local:.2f}x")
    print(f"(ray tasks: {config.models_at_once} model(s), {threads} CPU threads each)")


@dataclass(frozen=True)
class Plan:
    """How `models` split into tasks of `per_task` across `gpus`, and how long that takes."""

    models: int
    gpus: int
    per_task: int
    images_per_model: int
    epochs: int
    throughput: float

    @property
    def tasks(self) -> int:
        return math.ceil(self.models / self.per_task)

    @property
    def waves(self) -> int:
        return math.ceil(self.tasks / self.gpus)

    @property
    def task_seconds(self) -> float:
        return self.per_task * self.images_per_model * self.epochs / self.throughput

    def per_gpu(self) -> list[tuple[int, int]]:
        """(tasks, models) each GPU trains, tasks handed out in turn."""
        sizes = [min(self.per_task, self.models - i * self.per_task) for i in range(self.tasks)]
        return [
            (len(sizes[gpu :: self.gpus]), sum(sizes[gpu :: self.gpus])) for gpu in range(self.gpus)
        ]


def measured_throughput(recipe: TrainingRecipe, architecture: Architecture, group: int) -> float:
    """Training images/s of `group` models in lockstep on this machine's device (a short run
    on CIFAR-10 images, after a warm-up)."""
    from mia_audit.models.device import resolve_device
    from mia_audit.references.training import train_models

    device = resolve_device("auto")
    group = group if device == "cuda" else 1
    images = recipe.batch_size * 4
    data, tasks = cifar_tasks(group, images)
    short = recipe.model_copy(update={"epochs": 1})
    jobs = [task.job for task in tasks]
    train_models(architecture.build, data, jobs[:1], short, device, group=1)
    start = time.perf_counter()
    train_models(architecture.build, data, jobs, short, device, group=group)
    return group * images / (time.perf_counter() - start)


def plan(args: argparse.Namespace) -> None:
    from mia_audit.models.device import resolve_device
    from mia_audit.policy.loading import load_policy

    policy = load_policy(args.plan).policy
    recipe = policy.reference_training
    architecture = recipe.architecture or policy.model.architecture or "resnet18"
    cifar_stem = bool(
        recipe.cifar_stem if recipe.cifar_stem is not None else policy.model.cifar_stem
    )
    counts = [
        int(getattr(attack, field))
        for attack in policy.attacks
        for field in ("reference_models", "shadow_models")
        if isinstance(getattr(attack, field, None), int)
    ]
    models = args.models or max(counts, default=0)
    per_model = args.images_per_model or recipe.train_size
    if not models or not per_model:
        raise SystemExit("give --models and --images-per-model (the policy names neither)")
    print(machine_line())
    if args.throughput is not None:
        throughput, source = args.throughput, "given (--throughput)"
    else:
        built = Architecture(architecture, policy.model.num_classes or 10, cifar_stem)
        throughput = measured_throughput(recipe, built, args.models_per_task)
        device = resolve_device("auto")
        source = f"measured here on {device}" + (
            " (a CPU figure: give --throughput from a GPU)" if device == "cpu" else ""
        )
    result = Plan(models, args.gpus, args.models_per_task, per_model, recipe.epochs, throughput)
    print(
        f"policy {args.plan}: {models} reference models of {architecture}"
        f"{' (cifar stem)' if cifar_stem else ''}, {per_model} images x {recipe.epochs} epochs "
        f"each, batch {recipe.batch_size}"
    )
    print(f"throughput per GPU: {throughput:,.0f} training images/s, {source}")
    print(
        f"{result.tasks} tasks of {args.models_per_task} models in lockstep on {args.gpus} GPUs: "
        f"{result.waves} waves of {result.task_seconds / 60:,.1f} min"
    )
    for gpu, (tasks, trained) in enumerate(result.per_gpu()):
        print(f"  GPU {gpu}: {tasks} tasks, {trained} models")
    single = result.task_seconds * result.tasks
    wall = result.task_seconds * result.waves
    print(
        f"estimated wall time: {wall / 3600:,.2f} h on {args.gpus} GPUs "
        f"(one GPU: {single / 3600:,.2f} h; scheduling and start-up not included)"
    )


def main() -> None:
    args = parse_args()
    if args.plan is not None:
        plan(args)
    else:
        compare(args)


if __name__ == "__main__":
    main()
