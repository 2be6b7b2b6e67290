"""Benchmark: training K reference models at once (lockstep) vs one after another.

Run from the repository root:
    python bench/reference_training.py [--k 1,2,4,8] [--images N] [--epochs 1]
        [--batch-size 256] [--device auto] [--arch-stem imagenet|cifar] [--repeats 1]

Both ways go through `mia_audit.training.train_models`, the trainer the reference-model cache
uses, on the same jobs (K seeded subsets of `--images` CIFAR-10 training images each, the
ResNet18 recipe of the policies: SGD, cosine, flip + crop): *sequential* trains them one by
one (`group=1`), *concurrent* trains the K models in lockstep (`group=K`: on a GPU each on its
own CUDA stream, bf16 autocast, channels_last, data resident on the device). It prints, per K,
images/s both ways (images = K x images x epochs) and their ratio, measured side by side in one
run, plus the background load during each, and the achieved FLOP/s of the concurrent run
(forward + backward FLOPs per image, counted with torch's FlopCounterMode); on a GPU also as a
share of the GPU's dense bf16 peak.

Defaults: on a GPU --k 1,2,4,8 --images 25000; on the CPU --k 1,2 --images 512 (a smoke-scale
run: a ResNet18 trains at a few hundred images/s on two cores).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import CIFAR_MEAN, CIFAR_STD, Timing, load_cifar10, machine_line, timed

from mia_audit.models.architectures import build_architecture
from mia_audit.references.settings import TrainingRecipe
from mia_audit.references.training import TrainingData, TrainingJob, train_models

#: Dense bf16 tensor-core peaks (TFLOP/s, no sparsity) from the vendors' data sheets.
BF16_PEAK_TFLOPS = {
    "H200": 989.0,
    "H100 SXM": 989.0,
    "H100 NVL": 835.0,
    "H100 PCIe": 756.0,
    "H100": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
    "A10G": 70.0,
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", default=None, help="comma-separated model counts")
    parser.add_argument("--images", type=int, default=None, help="training images per model")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--arch-stem", default="imagenet", choices=["imagenet", "cifar"])
    parser.add_argument("--repeats", type=int, default=1)
    return parser.parse_args()


def peak_tflops(name: str) -> float | None:
    for key, value in BF16_PEAK_TFLOPS.items():
        if key in name:
            return value
    return None


def flops_per_image(cifar_stem: bool, device: str) -> float:
    """Forward + backward FLOPs of one training image (counted on a batch of 32)."""
    import torch
    import torch.nn.functional as functional
    from torch.utils.flop_counter import FlopCounterMode

    model = build_architecture("resnet18", 10, cifar_stem=cifar_stem).to(device)
    batch = torch.randn(32, 3, 32, 32, device=device)
    labels = torch.zeros(32, dtype=torch.long, device=device)
    with FlopCounterMode(display=False) as counter:
        functional.cross_entropy(model(batch), labels).backward()  # type: ignore[no-untyped-call]
    return float(counter.get_total_flops()) / 32


def jobs(k: int, n_images: int, n_pool: int, seed: int) -> list[TrainingJob]:
    rng = np.random.default_rng(seed)
    return [
        TrainingJob(np.sort(rng.choice(n_pool, n_images, replace=False)), seed + j)
        for j in range(k)
    ]


def run(
    data: TrainingData,
    job_list: list[TrainingJob],
    recipe: TrainingRecipe,
    device: str,
    group: int,
) -> Timing:
    build = lambda: build_architecture("resnet18", 10, cifar_stem=bool(recipe.cifar_stem))  # noqa: E731
    with timed() as timing:
        train_models(build, data, job_list, recipe, device, group=group)
    return timing


def main() -> None:
    import torch

    from mia_audit.models.device import resolve_device

    args = parse_args()
    device = resolve_device(args.device)
    gpu = device == "cuda"
    counts = [int(k) for k in (args.k or ("1,2,4,8" if gpu else "1,2")).split(",")]
    n_images = args.images or (25_000 if gpu else 512)
    images, labels = load_cifar10()
    pool = images[:50_000].transpose(0, 3, 1, 2).copy()
    data = TrainingData(pool, labels[:50_000], CIFAR_MEAN, CIFAR_STD)
    recipe = TrainingRecipe(
        architecture="resnet18",
        cifar_stem=args.arch_stem == "cifar",
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer="sgd",
        lr=0.1,
        weight_decay=5e-4,
        augment=("flip", "crop"),
    )
    print(machine_line())
    gpu_settings = ", bf16 autocast, channels_last" if gpu else ""
    print(
        f"resnet18 {args.arch_stem} stem, 32x32, {n_images} images/model, {args.epochs} epoch(s), "
        f"batch {args.batch_size}, device {device}{gpu_settings}"
    )
    run(data, jobs(1, args.batch_size, 50_000, 99), recipe, device, 1)  # warm-up
    flops = flops_per_image(bool(recipe.cifar_stem), device)
    peak = peak_tflops(torch.cuda.get_device_name(0)) if gpu else None
    print(f"training FLOPs per image (forward + backward): {flops / 1e9:.3f} GFLOP")
    header = f"{'K':>3} {'sequential img/s':>17} {'concurrent img/s':>17} {'ratio':>7}"
    header += f" {'TFLOP/s (conc.)':>16}" + (f" {'% bf16 peak':>12}" if gpu else "")
    print(header + "  other load (seq. / conc.)")
    for k in counts:
        job_list = jobs(k, n_images, 50_000, seed=k)
        total = k * n_images * args.epochs
        for _ in range(args.repeats):
            sequential = run(data, job_list, recipe, device, group=1)
            concurrent = run(data, job_list, recipe, device, group=k)
            seq_rate, conc_rate = total / sequential.seconds, total / concurrent.seconds
            line = f"{k:>3} {seq_rate:>17.1f} {conc_rate:>17.1f} {conc_rate / seq_rate:>6.2f}x"
            achieved = flops * conc_rate / 1e12
            line += f" {achieved:>16.3f}"
            if gpu:
                line += f" {100 * achieved / peak:>11.1f}%" if peak else f" {'n/a':>12}"
            loads = [t.other_cores for t in (sequential, concurrent)]
            line += "  " + " / ".join("n/a" if v is None else f"{v:.2f}" for v in loads)
            print(line, flush=True)


if __name__ == "__main__":
    main()
