"""Benchmark: which classifier `learned` should fit by default, measured on a few targets.

Run from the repository root:
    python bench/learned_classifier.py [--members 500] [--epochs 20] [--threads 2] [--workdir DIR]
        [--no-augmented]

For each target, the same audit (`mia_audit.audit`, the product's code) runs `learned` with
`model: logistic_regression` and with `model: gradient_boosting` (and `mlp`) on the same samples
and prints AUC, TPR at 5 % and 1 % FPR and the attack's seconds. Targets:
1. CIFAR-10 ResNet18 trained without augmentation on `--members` images (overfit; the
   label-only benchmark's target), members vs as many other training images;
2. the same with flip + crop augmentation (leaks less, through subtler features);
3. the demo's digits ResNet18 (`mia_audit.demo`), members vs its held-out half.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import CIFAR_MEAN, CIFAR_STD, cifar_target, load_cifar10, machine_line

CLASSIFIERS = ("logistic_regression", "gradient_boosting", "mlp")


def main() -> None:
    args = parse_args()
    import torch

    torch.set_num_threads(args.threads)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="mia-learned-"))
    print(machine_line())
    print(f"{'target':58s} {'classifier':20s} {'AUC':>6s} {'TPR@5%':>7s} {'TPR@1%':>7s} {'s':>6s}")
    images, labels = load_cifar10()
    augments: tuple[tuple[str, ...], ...] = ((), ("flip", "crop"))
    for augment in augments[: 1 if args.no_augmented else 2]:
        target = cifar_target(workdir, args.members, epochs=args.epochs, augment=augment)
        x = images.transpose(0, 3, 1, 2)
        members = (x[target.members], labels[target.members])
        non_members = (x[target.non_members], labels[target.non_members])
        name = f"CIFAR-10 ResNet18 {args.members}/side aug={'+'.join(augment) or 'none'}"
        report(name, load_module(target.state_path), members, non_members, CIFAR_MEAN, CIFAR_STD)
    digits = digits_target(workdir / "digits")
    report("digits ResNet18 (mia-audit demo)", *digits)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--members", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--no-augmented", action="store_true", help="skip target 2")
    return parser.parse_args()


def load_module(state_path: Path) -> Any:
    import torch

    from mia_audit.models.architectures import build_architecture

    module = build_architecture("resnet18", 10)
    module.load_state_dict(torch.load(state_path, weights_only=True))
    return module.eval()


def digits_target(directory: Path) -> tuple[Any, Any, Any, Any, Any]:
    from mia_audit.demo import DemoOptions, prepare_demo

    prepare_demo(DemoOptions(directory=directory), lambda *_: nullcontext(lambda n: None))
    sides = []
    for name in ("members", "non_members"):
        with np.load(directory / f"{name}.npz") as data:
            sides.append((data["x"], data["y"]))
    from mia_audit.demo import DIGITS_MEAN, DIGITS_STD

    return load_module(directory / "target.pt"), sides[0], sides[1], DIGITS_MEAN, DIGITS_STD


def report(name: str, module: Any, members: Any, non_members: Any, mean: Any, std: Any) -> None:
    import mia_audit

    outcome = mia_audit.audit(
        module,
        members=members,
        non_members=non_members,
        preprocessing={"mean": list(mean), "std": list(std)},
        attacks=[{"name": "learned", "id": kind, "model": kind} for kind in CLASSIFIERS],
        gate={"max_auc": 0.99},
        sections={
            "runtime": {
                "device": "cpu",
                "cache_dir": str(Path(tempfile.gettempdir()) / "mia-learned-cache"),
            }
        },
    )
    for result in outcome.result.attacks:
        print(
            f"{name:58s} {result.id:20s} {result.auc:6.3f} {result.tpr_at_fpr['0.05']:7.3f} "
            f"{result.tpr_at_fpr['0.01']:7.3f} {result.seconds:6.1f}"
        )


if __name__ == "__main__":
    main()
