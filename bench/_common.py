"""What the reference-model benchmarks share: the machine line, the background-load meter, and
CIFAR-10 loading. Not a benchmark itself."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CIFAR10 = REPO.parent / "shared" / "data" / "cifar10.npz"
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_line() -> str:
    import torch
    import torchvision

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return (
        f"machine: {cpu_model()} | cpu_count={os.cpu_count()} | torch threads="
        f"{torch.get_num_threads()} | gpu: {gpu}\n"
        f"python {platform.python_version()} | torch {torch.__version__} | "
        f"torchvision {torchvision.__version__} | {platform.platform()}"
    )


def busy_cpu_seconds() -> float | None:
    """CPU seconds all processes on the machine spent busy so far (from /proc/stat)."""
    try:
        with open("/proc/stat", encoding="utf-8") as stat:
            fields = [int(value) for value in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


@dataclass
class Timing:
    """Wall seconds of a phase and the cores other processes kept busy meanwhile (the machines
    are shared, and their load swings throughput by up to 10x)."""

    seconds: float = 0.0
    other_cores: float | None = None

    def describe(self) -> str:
        load = "n/a" if self.other_cores is None else f"{self.other_cores:.2f}"
        return f"{self.seconds:8.1f} s  (other load {load} cores)"


@contextmanager
def timed() -> Iterator[Timing]:
    """Time a block; also measure the background load (machine-wide busy CPU minus ours)."""
    timing = Timing()
    busy, own = busy_cpu_seconds(), time.process_time()
    start = time.perf_counter()
    try:
        yield timing
    finally:
        timing.seconds = time.perf_counter() - start
        busy_after, own_after = busy_cpu_seconds(), time.process_time()
        if busy is not None and busy_after is not None and timing.seconds > 0:
            others = (busy_after - busy) - (own_after - own)
            timing.other_cores = max(others, 0.0) / timing.seconds


def load_cifar10(path: Path = CIFAR10) -> tuple[np.ndarray, np.ndarray]:
    """All 60,000 CIFAR-10 images (N, 32, 32, 3) uint8 and labels, train split first."""
    if not path.exists():
        raise SystemExit(
            f"{path}: CIFAR-10 not found; save it there as an .npz with x_train, y_train, "
            "x_test, y_test"
        )
    with np.load(path) as data:
        images = np.concatenate([data["x_train"], data["x_test"]])
        labels = np.concatenate([data["y_train"], data["y_test"]]).astype(np.int64)
    return images, labels


@dataclass(frozen=True)
class CifarTarget:
    """A CIFAR-10 ResNet18 trained by `cifar_target`: its state dict and the rows it used."""

    state_path: Path
    members: np.ndarray
    non_members: np.ndarray
    description: str


def cifar_target(
    workdir: Path,
    n_members: int,
    *,
    epochs: int,
    augment: tuple[str, ...] = (),
    seed: int = 0,
    device: str = "cpu",
) -> CifarTarget:
    """Train (or reuse from `workdir`) a ResNet18 (ImageNet stem) on `n_members` seeded
    CIFAR-10 training images with AdamW (lr 1e-3, no weight decay, cosine schedule); the
    non-members are as many other training images. Without augmentation it overfits: the
    leaking target the label-only and `learned` benchmarks attack."""
    import torch

    from mia_audit.models.architectures import build_architecture
    from mia_audit.references.settings import TrainingRecipe
    from mia_audit.references.training import TrainingData, TrainingJob, train_models

    order = np.random.default_rng(seed).permutation(50_000)
    members, non_members = np.sort(order[:n_members]), np.sort(order[n_members : 2 * n_members])
    tag = f"resnet18-m{n_members}-e{epochs}-{'+'.join(augment) or 'noaug'}-s{seed}"
    description = (
        f"CIFAR-10 ResNet18 (ImageNet stem), {n_members} members + {n_members} non-members "
        f"from the training split, {epochs} epochs AdamW lr 1e-3 wd 0, "
        f"augment {'+'.join(augment) or 'none'}, seed {seed}"
    )
    state_path = workdir / f"{tag}.pt"
    if not state_path.exists():
        images, labels = load_cifar10()
        recipe = TrainingRecipe(
            architecture="resnet18",
            epochs=epochs,
            batch_size=128,
            optimizer="adamw",
            lr=1e-3,
            weight_decay=0.0,
            schedule="cosine",
            augment=augment,
        )
        data = TrainingData(
            images[members].transpose(0, 3, 1, 2).copy(), labels[members], CIFAR_MEAN, CIFAR_STD
        )
        (state,) = train_models(
            lambda: build_architecture("resnet18", 10),
            data,
            [TrainingJob(index=np.arange(n_members), seed=seed + 1000)],
            recipe,
            device,
        )
        workdir.mkdir(parents=True, exist_ok=True)
        torch.save(state, state_path)
    return CifarTarget(state_path, members, non_members, description)
