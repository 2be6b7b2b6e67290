"""How close `mia-audit plan`'s estimate comes to the time `mia-audit run` takes.

For each case: write a policy, run `mia-audit plan --json` (a short measured probe, nothing
trained), then time `mia-audit run -q` on a fresh cache, and print estimate / measured. Both
through the console script, as a user runs them. Cases:

- digits target-only: the demo's target (an overfit ResNet18 on scikit-learn's digits) with
  the target-only attacks of `policies/demo.yaml`;
- digits reference: the same target with LiRA (2 online models) and RMIA (2 offline models);
- cifar reference (when ../shared/data/cifar10.npz exists): a ResNet18 with the CIFAR stem on
  CIFAR-10 images, 1000 a side, LiRA (2 online models, 2 queries) and RMIA (2 offline models),
  2 epochs; the target is untrained (only time is measured), so the weak-target check is off.

Then, without running it, the plan of `policies/cifar10-resnet18.yaml` itself (10,000 images
a side, 12 ResNet18 models for 100 epochs): the figure a CPU runner would face.

    python bench/plan_estimate.py [--work DIR] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CIFAR10, REPO, busy_cpu_seconds, load_cifar10, machine_line

CONSOLE = Path(sys.executable).with_name("mia-audit")
DIGITS_ATTACKS = yaml.safe_load((REPO / "policies" / "demo.yaml").read_text())["attacks"]
REFERENCE_ATTACKS = [
    "loss",
    {"name": "lira", "reference_models": 2, "mode": "online"},
    {"name": "rmia", "reference_models": 2},
]


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CONSOLE), *map(str, args)], capture_output=True, text=True, check=False
    )


def digits_target(folder: Path) -> Path:
    """The demo's target and data (members 200), trained once into `folder`."""
    from contextlib import nullcontext

    from mia_audit.demo import DemoOptions, prepare_demo

    def stage(description: str, total: int = 0) -> Any:
        return nullcontext(lambda n, detail=None: None)

    prepare_demo(DemoOptions(directory=folder, n_members=200, epochs=8), stage)
    return folder


def cifar_target(folder: Path, per_side: int) -> Path:
    """An untrained CIFAR-stem ResNet18 state dict and CIFAR-10 npz files into `folder`."""
    import torch

    from mia_audit.models.architectures import build_architecture

    folder.mkdir(parents=True, exist_ok=True)
    images, labels = load_cifar10()
    order = np.random.default_rng(0).permutation(len(images))
    sides = {
        "members": order[:per_side],
        "non_members": order[per_side : 2 * per_side],
        "population": order[2 * per_side : 4 * per_side],
    }
    for name, rows in sides.items():
        np.savez(folder / f"{name}.npz", x=images[rows], y=labels[rows])
    torch.manual_seed(0)
    model = build_architecture("resnet18", num_classes=10, cifar_stem=True)
    torch.save(model.state_dict(), folder / "resnet18_cifar10.pt")
    return folder


def write_policy(folder: Path, name: str, document: dict[str, Any]) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def digits_policy(attacks: list[Any], epochs: int) -> dict[str, Any]:
    return {
        "version": 1,
        "name": "plan-bench-digits",
        "model": {"path": "target.pt", "architecture": "resnet18", "num_classes": 10},
        "data": {
            "members": "members.npz",
            "non_members": "non_members.npz",
            "population": "population.npz",
        },
        "preprocessing": {"mean": [0.2, 0.2, 0.2], "std": [0.3, 0.3, 0.3]},
        "attacks": attacks,
        "reference_training": recipe(epochs),
        "gate": {"max_auc": 0.99},
    }


def recipe(epochs: int) -> dict[str, Any]:
    return {
        "epochs": epochs,
        "batch_size": 64,
        "optimizer": "adamw",
        "lr": 0.001,
        "weight_decay": 0.0,
        "augment": [],
    }


def cifar_policy(per_side: int, epochs: int) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(
        (REPO / "policies" / "cifar10-resnet18.yaml").read_text()
    )
    document["name"] = "plan-bench-cifar"
    document["data"]["max_per_side"] = per_side
    document["attacks"] = [
        "loss",
        {"name": "lira", "reference_models": 2, "mode": "online", "queries": 2},
        {"name": "rmia", "reference_models": 2},
    ]
    document["reference_training"] = {**document["reference_training"], "epochs": epochs}
    # The target is untrained: only the time is measured.
    document["preconditions"] = {"allow_weak_target": True, "reference_fit": "warn"}
    return document


def compare(policy: Path, device: str) -> tuple[float, float, dict[str, Any]]:
    """(estimate seconds, measured seconds, plan) for `policy` on a fresh cache."""
    cache = policy.parent / ".mia-cache"
    shutil.rmtree(cache, ignore_errors=True)
    planned = cli("plan", policy, "--json", "--device", device)
    if planned.returncode != 0:
        raise SystemExit(f"plan {policy}: {planned.stderr}")
    plan: dict[str, Any] = json.loads(planned.stdout)
    busy, ours = busy_cpu_seconds(), own_cpu_seconds()
    start = time.perf_counter()
    ran = cli("run", policy, "-q", "--device", device, "-o", policy.parent / "report")
    seconds = time.perf_counter() - start
    if ran.returncode not in (0, 1):
        raise SystemExit(f"run {policy}: {ran.stderr}")
    busy_after = busy_cpu_seconds()
    if busy is not None and busy_after is not None:
        others = (busy_after - busy) - (own_cpu_seconds() - ours)
        plan["other_load"] = max(others, 0.0) / seconds
    else:
        plan["other_load"] = None
    return float(plan["estimate_seconds"]), seconds, plan


def own_cpu_seconds() -> float:
    """CPU seconds of this process and its finished children (the console script runs)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/mia-plan-bench"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cifar-per-side", type=int, default=1000)
    options = parser.parse_args()
    os.environ.setdefault("COLUMNS", "120")
    print(machine_line())
    work = options.work
    digits = digits_target(work / "digits")
    target_only = digits_policy(DIGITS_ATTACKS, 1)
    reference = digits_policy(REFERENCE_ATTACKS, 3)
    cases = [
        ("digits target-only", write_policy(digits, "target-only", target_only)),
        ("digits reference", write_policy(digits, "reference", reference)),
    ]
    if CIFAR10.exists():
        cifar = cifar_target(work / "cifar", options.cifar_per_side)
        document = cifar_policy(options.cifar_per_side, epochs=2)
        cases.append(("cifar reference", write_policy(cifar, "small", document)))
    print(f"{'case':<22}{'estimate':>10}{'measured':>10}{'ratio':>8}  models  other load")
    for name, policy in cases:
        estimate, measured, plan = compare(policy, options.device)
        models = (plan["reference_models"] or {}).get("to_train", 0)
        load = "n/a" if plan["other_load"] is None else f"{plan['other_load']:.2f} cores"
        print(
            f"{name:<22}{estimate:>9.1f}s{measured:>9.1f}s{estimate / measured:>8.2f}"
            f"  {models:>6}  {load}"
        )
    if CIFAR10.exists():
        example = yaml.safe_load((REPO / "policies" / "cifar10-resnet18.yaml").read_text())
        full = write_policy(cifar, "cifar10-resnet18", example)
        cifar_target(work / "cifar", 10_000)
        planned = cli("plan", full, "--device", options.device)
        print(f"\nmia-audit plan policies/cifar10-resnet18.yaml (exit {planned.returncode}):")
        print(planned.stdout or planned.stderr)


if __name__ == "__main__":
    main()
