"""How much the torch thread count changes a reference model trained on a CPU, and that the
recipe's `threads` makes the model the same on every executor.

Trains the same plans (rows and seed) with the small CNN of the test suite on scikit-learn's
digits at each thread count, and prints per count each model's training and held-out accuracy
and the largest weight difference from the one-thread model. Run it from the repository root:

    python bench/training_threads.py --models 2 --epochs 8 --threads 1 2 4
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import machine_line


def _small_cnn() -> object:
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 8 * 8, 64), nn.ReLU(), nn.Linear(64, 10),
    )  # fmt: skip


def _accuracy(state: Any, images: np.ndarray, labels: np.ndarray) -> float:
    import torch

    model = _small_cnn()
    model.load_state_dict(state)  # type: ignore[attr-defined]
    model.eval()  # type: ignore[attr-defined]
    x = (torch.from_numpy(images).float() / 255.0 - 0.2) / 0.3
    with torch.no_grad():
        predicted = model(x).argmax(1).numpy()  # type: ignore[operator]
    return float((predicted == labels).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--train-size", type=int, default=100)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    import torch

    from mia_audit.demo import digits_images
    from mia_audit.references.settings import TrainingRecipe
    from mia_audit.references.training import TrainingData, TrainingJob, train_models

    print(machine_line())
    images, labels = digits_images(32)
    images = images.transpose(0, 3, 1, 2).copy()
    data = TrainingData(images, labels, (0.2, 0.2, 0.2), (0.3, 0.3, 0.3))
    order = np.random.default_rng(0).permutation(len(labels))
    jobs = [
        TrainingJob(np.sort(order[i * args.train_size : (i + 1) * args.train_size]), seed=i)
        for i in range(args.models)
    ]
    held_out = order[args.models * args.train_size :]
    base: list[dict[str, torch.Tensor]] = []
    print("threads | model | train acc | held-out acc | max |w - w(1 thread)|")
    for threads in args.threads:
        recipe = TrainingRecipe(
            epochs=args.epochs, batch_size=20, optimizer="adamw", lr=0.003, weight_decay=0.0,
            augment=(), threads=threads,
        )  # fmt: skip
        states = train_models(_small_cnn, data, jobs, recipe, "cpu")  # type: ignore[arg-type]
        base = base or states
        for index, (job, state) in enumerate(zip(jobs, states, strict=True)):
            train = _accuracy(state, images[job.index], labels[job.index])
            test = _accuracy(state, images[held_out], labels[held_out])
            diff = max(float((state[k] - base[index][k]).abs().max()) for k in state)
            print(f"{threads} | {index} | {train:.3f} | {test:.3f} | {diff:.3g}")


if __name__ == "__main__":
    main()
