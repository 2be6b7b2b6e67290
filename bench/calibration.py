"""Calibrated reference training against the true and the default recipe, side by side.

Two CIFAR-10 targets are trained here with the tool's own trainer and a recipe the audits are
not told: an overfit one (no augmentation, no weight decay, many epochs) and a regularised one
(flip + crop, a high weight decay). Each is then audited three times through the console script
with the same reference attacks (LiRA online, 4 models; RMIA offline, 2 models), each with a
fresh cache:

- true: reference_training is the target's own recipe (what the auditor rarely knows);
- default: reference_training left at its defaults (20 epochs, SGD, wd 5e-4, flip + crop);
- calibrated: the defaults with `calibrate: true` (the pilot searches epochs, weight decay and
  augmentation, its default budget of 4 models).

It prints, per target and attack, AUC - 0.5 and TPR at 1 % FPR of each audit and the ratios
calibrated / true and default / true; the pilot's table; and the pilot's wall time beside the
time one reference model of the chosen recipe takes (its pilot model: training and logits).
The architecture is a small CNN (a `module:function` factory) so that the whole run fits a CPU.

    python bench/calibration.py [--work DIR] [--members 1000]
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CIFAR_MEAN, CIFAR_STD, load_cifar10, machine_line

CONSOLE = Path(sys.executable).with_name("mia-audit")
FACTORY = '''"""A small CNN for 32x32 CIFAR-10 images (fast enough to audit on a CPU)."""
from torch import nn


def cnn(num_classes):
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 8 * 8, 64), nn.ReLU(), nn.Linear(64, num_classes),
    )
'''
ARCHITECTURE = "bench_cnn:cnn"
#: The two targets' recipes (SGD, lr 0.1, batch 256, cosine: the tool's defaults otherwise).
TARGETS: dict[str, dict[str, Any]] = {
    "overfit": {"epochs": 60, "weight_decay": 0.0, "augment": []},
    "regularised": {"epochs": 40, "weight_decay": 5e-3, "augment": ["flip", "crop"]},
}
ATTACKS = [
    "loss",
    {"name": "lira", "reference_models": 4, "mode": "online"},
    {"name": "rmia", "reference_models": 2, "mode": "offline"},
]
REFERENCE_ATTACKS = ("lira", "rmia")


def write_data(work: Path, members: int) -> None:
    """members / non-members / population .npz from seeded CIFAR-10 rows (population 4x)."""
    images, labels = load_cifar10()
    order = np.random.default_rng(0).permutation(len(images))
    sides = {
        "members": order[:members],
        "non_members": order[members : 2 * members],
        "population": order[2 * members : 6 * members],
    }
    for name, rows in sides.items():
        np.savez(work / f"{name}.npz", images=images[rows], labels=labels[rows])


def train_target(work: Path, name: str, recipe: dict[str, Any]) -> Path:
    """The target's state dict, trained with the tool's trainer on the members."""
    import torch

    sys.path.insert(0, str(work))
    cnn = importlib.import_module("bench_cnn").cnn

    from mia_audit.references.settings import TrainingRecipe
    from mia_audit.references.training import TrainingData, TrainingJob, train_models

    path = work / f"target-{name}.pt"
    if path.exists():
        return path
    with np.load(work / "members.npz") as data:
        images, labels = data["images"], data["labels"].astype(np.int64)
    full = TrainingRecipe(architecture=ARCHITECTURE, **recipe)
    training = TrainingData(images.transpose(0, 3, 1, 2).copy(), labels, CIFAR_MEAN, CIFAR_STD)
    (state,) = train_models(
        lambda: cnn(10), training, [TrainingJob(np.arange(len(labels)), seed=12345)], full, "cpu"
    )
    torch.save(state, path)
    return path


def policy(work: Path, target: str, config: str, reference_training: dict[str, Any]) -> Path:
    document = {
        "version": 1,
        "name": f"{target}-{config}",
        "model": {"path": f"target-{target}.pt", "architecture": ARCHITECTURE, "num_classes": 10},
        "data": {
            "members": "members.npz",
            "non_members": "non_members.npz",
            "population": "population.npz",
        },
        "preprocessing": {"mean": list(CIFAR_MEAN), "std": list(CIFAR_STD)},
        "attacks": ATTACKS,
        "gate": {"max_auc": 0.999},
        "reference_training": {"architecture": ARCHITECTURE, **reference_training},
        "preconditions": {"allow_weak_target": True},
        "outputs": {"dir": f"out-{target}-{config}", "formats": ["json"]},
        "runtime": {"device": "cpu", "seed": 0, "cache_dir": f".cache-{target}-{config}"},
    }
    path = work / f"{target}-{config}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    shutil.rmtree(work / f".cache-{target}-{config}", ignore_errors=True)
    return path


def audit(work: Path, path: Path) -> tuple[dict[str, Any], float]:
    start = time.perf_counter()
    completed = subprocess.run(
        [str(CONSOLE), "run", "-q", str(path)], cwd=work, capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    if completed.returncode not in (0, 1):
        errors = [line for line in completed.stderr.splitlines() if line.startswith("error:")]
        return {"refused": f"exit {completed.returncode}: {' '.join(errors)}"}, seconds
    out = work / f"out-{path.stem}" / "result.json"
    return json.loads(out.read_text(encoding="utf-8")), seconds


def figures(result: dict[str, Any]) -> dict[str, tuple[float, float]]:
    return {
        a["id"]: (a["auc"] - 0.5, a["tpr_at_fpr"]["0.01"])
        for a in result["attacks"]
        if a["id"] in (*REFERENCE_ATTACKS, "loss")
    }


def report_target(name: str, runs: dict[str, tuple[dict[str, Any], float]]) -> None:
    target = runs["true"][0]["target"]["accuracy"]
    print(f"\n## {name}: {TARGETS[name]}")
    print(
        f"target accuracy: members {target['members']:.3f}, non-members {target['non_members']:.3f}"
    )
    by_config = {c: figures(result) for c, (result, _) in runs.items() if "refused" not in result}
    print(
        f"{'attack':8} {'config':11} {'AUC-0.5':>8} {'TPR@1%':>7} {'x true AUC':>11} "
        f"{'x true TPR':>11} {'wall s':>7}"
    )
    for attack in REFERENCE_ATTACKS:
        true_auc, true_tpr = by_config["true"][attack]
        for config, (result, seconds) in runs.items():
            if config not in by_config:
                print(f"{attack:8} {config:11} refused: {result['refused'][:160]}")
                continue
            auc, tpr = by_config[config][attack]
            print(
                f"{attack:8} {config:11} {auc:8.4f} {tpr:7.4f} {auc / true_auc:11.2f} "
                f"{tpr / true_tpr if true_tpr else float('nan'):11.2f} {seconds:7.1f}"
            )
    print(
        f"loss (target only) AUC-0.5 {by_config['true']['loss'][0]:.4f}, "
        f"TPR@1% {by_config['true']['loss'][1]:.4f}"
    )
    if "refused" not in runs["calibrated"][0]:
        report_pilot(runs["calibrated"][0])


def report_pilot(result: dict[str, Any]) -> None:
    record = result["references"]["calibration"]
    print(
        f"pilot (target: train acc {record['target_train_accuracy']:.3f}, held-out "
        f"{record['target_held_out_accuracy']:.3f}, confidence "
        f"{record['target_train_confidence']:.3f} / {record['target_held_out_confidence']:.3f}"
        f", flip gap {record['target_flip_gap']:.3f}; tolerance {record['tolerance']}):"
    )
    for index, c in enumerate(record["candidates"]):
        mark = "*" if index == record["chosen"] else " "
        print(
            f" {mark} epochs {c['epochs']:3} wd {c['weight_decay']:<7g} augment "
            f"{'+'.join(c['augment']) or 'none':10} train {c['train_accuracy']:.3f} held-out "
            f"{c['held_out_accuracy']:.3f} conf {c['train_confidence']:.3f} / "
            f"{c['held_out_confidence']:.3f} flip gap {c['flip_gap']:.3f} distance "
            f"{c['distance']:.3f} {c['seconds']:6.1f} s"
        )
    chosen = record["candidates"][record["chosen"]]["seconds"]
    extra = record["seconds"] - chosen
    print(
        f"pilot {record['seconds']:.1f} s in all, {extra:.1f} s beyond its chosen model (one "
        f"reference model of the chosen recipe: {chosen:.1f} s): {extra / chosen:.2f} reference "
        f"models' cost; matched {record['matched']}, stopped: {record['stopped']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/mia-bench-calibration"))
    parser.add_argument("--members", type=int, default=1000)
    args = parser.parse_args()
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    (work / "bench_cnn.py").write_text(FACTORY, encoding="utf-8")
    print(machine_line())
    print(
        f"CIFAR-10, {args.members} members / {args.members} non-members / "
        f"{4 * args.members} population; architecture: a small CNN ({ARCHITECTURE}); attacks: "
        f"{ATTACKS}"
    )
    if not (work / "members.npz").exists():
        write_data(work, args.members)
    for name, recipe in TARGETS.items():
        train_target(work, name, recipe)
    for name, recipe in TARGETS.items():
        configs = {"true": recipe, "default": {}, "calibrated": {"calibrate": True}}
        runs = {
            config: audit(work, policy(work, name, config, rt)) for config, rt in configs.items()
        }
        report_target(name, runs)


if __name__ == "__main__":
    main()
