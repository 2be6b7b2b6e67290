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
        raise SystemExit(f"{path}: CIFAR-10 not found (see shared/data/README.md)")
    with np.load(path) as data:
        images = np.concatenate([data["x_train"], data["x_test"]])
        labels = np.concatenate([data["y_train"], data["y_test"]]).astype(np.int64)
    return images, labels
