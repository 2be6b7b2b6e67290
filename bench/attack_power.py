"""Benchmark: how much each attack finds on a CIFAR-10 ResNet18, through the product's own code.

Run from the repository root:
    python bench/attack_power.py [--subset 2000] [--k 2] [--epochs 3] [--device auto]
        [--arch-stem imagenet|cifar] [--population N] [--queries 1|2|18] [--batch-size 128]
        [--optimizer sgd|adamw] [--lr LR] [--weight-decay 5e-4] [--seed 0] [--workdir DIR]

What it does, in order:
1. takes a seeded random `--subset` of the CIFAR-10 training split (the .npz given by --data,
   relative to the repository); the target trains on one half (members), the other half is
   held out (non-members); `--population` further images (the rest of the training split, then
   the test split; default: as many as the subset, i.e. twice the members, so shadow models get
   IN/OUT halves) are the population;
2. trains a ResNet18 target with `mia_audit.training.train_models` (SGD or AdamW, cosine
   schedule, flip + crop augmentation) and saves its state dict;
3. writes a policy whose `reference_training` is the target's recipe, with every attack: loss,
   logit_margin, LiRA online and offline, RMIA offline and online, shadow, each with `--k`
   reference (shadow) models and `--queries` queries (online attacks need an even --k, offline
   ones a population of at least the members' number, shadow twice that; others are skipped);
4. runs `mia_audit.pipeline.run.run_audit` on it (the same call `mia-audit run` makes), which trains
   the reference models once and shares them across attacks;
5. prints one table: AUC and TPR at 5 %, 1 % and 0.1 % FPR per attack (a `*` marks a TPR the
   sample size does not support: fewer than ~10 non-members below that FPR), the target's
   train/test accuracy, and the time of each phase with the background load meanwhile.

The published CIFAR-10 figures (LiRA and RMIA papers) come from 25k-image targets trained to ~92 %
test accuracy with 16-256 reference models; a CPU run with a 2,000-image subset and a few
epochs is a smoke-scale measurement of the same pipeline, not a reproduction.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import CIFAR_MEAN, CIFAR_STD, Timing, load_cifar10, machine_line, timed

from mia_audit.progress import SilentProgress
from mia_audit.references.settings import TrainingRecipe
from mia_audit.references.training import TrainingData, TrainingJob, train_models

FPRS = ("0.05", "0.01", "0.001")


class PhaseProgress(SilentProgress):
    """Records the wall time of every stage the audit reports (reference training, ...)."""

    def __init__(self) -> None:
        super().__init__()
        self.phases: dict[str, Timing] = {}

    def stage(self, description: str, total: int | None = None) -> Any:
        import contextlib

        @contextlib.contextmanager
        def run() -> Any:
            with timed() as timing:
                yield lambda n, detail=None: None
            self.phases[description] = timing

        return run()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subset", type=int, default=2000, help="members + non-members")
    parser.add_argument("--k", type=int, default=2, help="reference / shadow models per attack")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--arch-stem", default="imagenet", choices=["imagenet", "cifar"])
    parser.add_argument("--population", type=int, default=None, help="default: --subset")
    parser.add_argument("--queries", type=int, default=1, choices=[1, 2, 18])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--optimizer", default="sgd", choices=["sgd", "adamw"])
    parser.add_argument("--lr", type=float, default=None, help="default: 0.1 (sgd), 1e-3 (adamw)")
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    return parser.parse_args()


def split(args: argparse.Namespace, n_train: int, n_all: int) -> dict[str, np.ndarray]:
    """Seeded rows: members and non-members from the training split, the population from the
    rest of it and then from the test split."""
    population = args.population or args.subset
    if args.subset > n_train or args.subset + population > n_all:
        raise SystemExit(
            f"--subset must fit the {n_train} training images and --subset + --population "
            f"the {n_all} images"
        )
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(n_train)
    rest = np.concatenate([order[args.subset :], rng.permutation(np.arange(n_train, n_all))])
    half = args.subset // 2
    return {
        "members": np.sort(order[:half]),
        "non_members": np.sort(order[half : args.subset]),
        "population": np.sort(rest[:population]),
    }


def recipe(args: argparse.Namespace) -> TrainingRecipe:
    return TrainingRecipe(
        architecture="resnet18",
        cifar_stem=args.arch_stem == "cifar",
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        lr=learning_rate(args),
        momentum=0.9,
        weight_decay=args.weight_decay,
        schedule="cosine",
        augment=("flip", "crop"),
    )


def learning_rate(args: argparse.Namespace) -> float:
    return float(args.lr or (0.1 if args.optimizer == "sgd" else 1e-3))


def train_target(
    images: np.ndarray, labels: np.ndarray, args: argparse.Namespace, device: str, path: Path
) -> None:
    import torch

    from mia_audit.models.architectures import build_architecture

    spec = recipe(args)
    data = TrainingData(images.transpose(0, 3, 1, 2).copy(), labels, CIFAR_MEAN, CIFAR_STD)
    (state,) = train_models(
        lambda: build_architecture("resnet18", 10, cifar_stem=bool(spec.cifar_stem)),
        data,
        [TrainingJob(index=np.arange(len(labels)), seed=args.seed + 1000)],
        spec,
        device,
    )
    torch.save(state, path)


def attacks(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every attack the data supports: offline models need a population of at least the
    members' number, shadow models twice that (IN and OUT halves); online ones an even k."""
    k, q = args.k, args.queries
    members, population = args.subset // 2, args.population or args.subset

    def reference(name: str, mode: str) -> dict[str, Any]:
        return {
            "name": name,
            "id": f"{name}_{mode}",
            "mode": mode,
            "reference_models": k,
            "queries": q,
        }

    modes = [m for m, ok in (("online", k % 2 == 0), ("offline", population >= members)) if ok]
    shadow = [{"name": "shadow", "shadow_models": k, "queries": q}]
    for skipped, reason in (
        ("online attacks", k % 2),
        ("offline attacks", population < members),
        ("shadow", population < 2 * members),
    ):
        if reason:
            print(f"note: {skipped} skipped (odd --k, or too small a --population)")
    return [
        {"name": "loss"},
        {"name": "logit_margin", "queries": q},
        *(reference(name, mode) for name in ("lira", "rmia") for mode in modes),
        *(shadow if population >= 2 * members else []),
    ]


def write_policy(workdir: Path, args: argparse.Namespace) -> Path:
    training = recipe(args).model_dump(mode="json", exclude={"train_size", "crop_padding"})
    policy = {
        "version": 1,
        "name": "bench-attack-power",
        "model": {
            "path": "target.pt",
            "architecture": "resnet18",
            "num_classes": 10,
            "cifar_stem": args.arch_stem == "cifar",
        },
        "data": {
            "members": "members.npz",
            "non_members": "non_members.npz",
            "population": "population.npz",
        },
        "preprocessing": {"mean": list(CIFAR_MEAN), "std": list(CIFAR_STD)},
        "attacks": attacks(args),
        "reference_training": training,
        "gate": {"max_auc": 1.0},
        "outputs": {"dir": "out", "formats": ["json"]},
        "runtime": {"device": args.device, "seed": args.seed, "cache_dir": ".mia-cache"},
    }
    path = workdir / "policy.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    return path


def print_table(result: Any, phases: dict[str, Timing]) -> None:
    tprs = "".join(f"{'TPR@' + f:>12}" for f in ("5%", "1%", "0.1%"))
    print(f"{'attack':<16}{'AUC':>8}{tprs}{'scoring s':>11}")
    for attack in result.attacks:
        cells = []
        for key in FPRS:
            mark = "" if attack.tpr_at_fpr_supported.get(key, True) else "*"
            cells.append(f"{attack.tpr_at_fpr[key]:.4f}{mark}".rjust(12))
        print(f"{attack.id:<16}{attack.auc:8.4f}{''.join(cells)}{attack.seconds:11.2f}")
    print("(* = fewer than ~10 non-members below that FPR: not supported by the sample size)")
    accuracy = result.target.accuracy
    print(
        f"target accuracy: train (members) {accuracy.members:.4f}, "
        f"test (non-members) {accuracy.non_members:.4f}"
    )
    print("phases:")
    for name, timing in phases.items():
        if not name.strip().startswith(("attack ", "statistics ")):
            print(f"  {name:<52}{timing.describe()}")


def main() -> None:
    args = parse_args()
    from mia_audit.models.device import resolve_device
    from mia_audit.pipeline.run import run_audit
    from mia_audit.policy.loading import load_policy

    device = resolve_device(args.device)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="mia-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(machine_line())
    print(
        f"CIFAR-10 subset {args.subset} (members {args.subset // 2}), population "
        f"{args.population or args.subset}, ResNet18 {args.arch_stem} stem, {args.epochs} epochs, "
        f"batch {args.batch_size}, {args.optimizer} lr {learning_rate(args)} weight decay "
        f"{args.weight_decay}, flip+crop, k={args.k}, queries={args.queries}, "
        f"device {device}, seed {args.seed}, workdir {workdir}"
    )
    phases: dict[str, Timing] = {}
    images, labels = load_cifar10()
    rows = split(args, 50_000, len(labels))
    for name, index in rows.items():
        np.savez(workdir / f"{name}.npz", x=images[index], y=labels[index])
    with timed() as phases["target training"]:
        members = rows["members"]
        train_target(images[members], labels[members], args, device, workdir / "target.pt")
    progress = PhaseProgress()
    with timed() as phases["audit (run_audit, all attacks)"]:
        result = run_audit(load_policy(write_policy(workdir, args)), progress)
    phases.update({f"  {name}": timing for name, timing in progress.phases.items()})
    print_table(result, phases)


if __name__ == "__main__":
    main()
