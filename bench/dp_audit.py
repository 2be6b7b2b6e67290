"""The one-run audit of a DP-SGD recipe through the console script, on the digits target: does
an honest recipe pass its accountant's epsilon, is the same recipe without noise flagged, and
how tight is the one-run bound beside the two-sided one (BENCHMARKS.md, "Checking a DP claim").

    python bench/dp_audit.py honest --seeds 20      # noise for accountant epsilon 2, claim 2
    python bench/dp_audit.py no-noise --seeds 20    # noise 0, still claiming 2
    python bench/dp_audit.py table                  # bound vs accountant at several noise levels
    python bench/dp_audit.py all --seeds 20         # table's epsilon 1 and 8, then the two
                                                    # above seed by seed, alternating

Each run is `mia-audit run` on a policy written beside a seeded digits target (mia-audit demo);
one line per run on stdout, a JSON line per run in --log.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from _common import machine_line

MLP = '''"""A small MLP for 32x32 digits: DP-SGD trains it in seconds on a CPU."""
from torch import nn


def mlp(num_classes):
    return nn.Sequential(
        nn.AvgPool2d(4), nn.Flatten(), nn.Linear(3 * 8 * 8, 256), nn.ReLU(),
        nn.Linear(256, num_classes),
    )
'''
EPOCHS, BATCH, CANARIES, BASE, DELTA = 20, 32, 200, 200, 1e-5
#: The fewest steps per epoch any seed's training set gives (200 base rows plus the included
#: canaries: at least 8 steps unless fewer than 25 of 200 are included): the largest rate.
WORST_STEPS = 8


def noise_for(epsilon: float) -> float:
    from opacus.accountants.utils import get_noise_multiplier

    return float(
        get_noise_multiplier(
            target_epsilon=epsilon,
            target_delta=DELTA,
            sample_rate=1.0 / WORST_STEPS,
            epochs=EPOCHS,
            accountant="rdp",
        )
    )


def target(folder: Path) -> Path:
    from contextlib import nullcontext

    from mia_audit.demo import DemoOptions, prepare_demo

    prepare_demo(
        DemoOptions(directory=folder, n_members=200, epochs=8),
        lambda description, total: nullcontext(lambda n, detail=None: None),
    )
    (folder / "mlp.py").write_text(MLP)
    return folder


def policy(folder: Path, name: str, noise: float, claim: float) -> Path:
    document: dict[str, Any] = {
        "version": 1,
        "name": name,
        "model": {
            "path": "target.onnx",
            "architecture": "resnet18",
            "num_classes": 10,
            "dp_claim": {"epsilon": claim, "delta": DELTA},
        },
        "data": {
            "members": "members.npz",
            "non_members": "non_members.npz",
            "population": "population.npz",
        },
        "preprocessing": {"mean": [0.2, 0.2, 0.2], "std": [0.3, 0.3, 0.3]},
        "attacks": ["loss"],
        "gate": {"max_auc": 0.99},
        "reference_training": {
            "architecture": "mlp:mlp",
            "epochs": EPOCHS,
            "train_size": BASE,
            "batch_size": BATCH,
            "optimizer": "adamw",
            "lr": 0.01,
            "weight_decay": 0.0,
            "augment": [],
            "schedule": "constant",
            "dp": {"noise_multiplier": noise, "max_grad_norm": 1.0, "canaries": CANARIES},
        },
        "statistics": {"n_resamples": 200},
        "outputs": {"dir": f"out-{name}", "formats": ["json"]},
        "runtime": {"device": "cpu", "seed": 0, "cache_dir": ".mia-cache"},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def run(folder: Path, path: Path, seed: int) -> dict[str, Any]:
    script = Path(sys.executable).with_name("mia-audit")
    start = time.perf_counter()
    done = subprocess.run(
        [str(script), "run", str(path), "--seed", str(seed), "-q"],
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - start
    if done.returncode not in (0, 1):
        raise SystemExit(f"{path.name} seed {seed}: exit {done.returncode}: {done.stderr[-500:]}")
    result = json.loads((folder / f"out-{path.stem}" / "result.json").read_text())
    conditions = {c["id"]: c for c in result["gate"]["conditions"]}
    one = result["one_run"]
    return {
        "policy": path.stem,
        "seed": seed,
        "exit": done.returncode,
        "noise": one["noise_multiplier"],
        "accountant": one["accountant_epsilon"],
        "one_run": one["epsilon_lower_bound"],
        "two_sided": one["two_sided_bound"],
        "guesses": one["guesses"],
        "correct": one["correct"],
        "m": one["canaries"],
        "claim_bound_failed": not conditions["dp_claim"]["passed"],
        "accounting_failed": not conditions["dp_claim_accounting"]["passed"],
        "train_seconds": result["timings"].get("one-run audit"),
        "wall_seconds": round(wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["honest", "no-noise", "table", "all"])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/mia-dp-bench"))
    parser.add_argument("--log", type=Path, default=None)
    args = parser.parse_args()
    folder = target(args.folder)
    print(machine_line().strip(), flush=True)
    for name, noise, claim, seed in runs(args.mode, args.seeds):
        row = run(folder, policy(folder, name, noise, claim), seed)
        print(json.dumps(row), flush=True)
        if args.log is not None:
            with args.log.open("a", encoding="utf-8") as log:
                log.write(json.dumps(row) + "\n")


def runs(mode: str, seeds: int) -> list[tuple[str, float, float, int]]:
    """(policy name, noise multiplier, claimed epsilon, seed) of every run, in order."""
    honest = [("honest", noise_for(2.0), 2.0, seed) for seed in range(seeds)]
    no_noise = [("no-noise", 0.0, 2.0, seed) for seed in range(seeds)]
    table = [(f"table-{e:g}", noise_for(e), e, 0) for e in (1.0, 8.0)]
    if mode == "honest":
        return honest
    if mode == "no-noise":
        return no_noise
    if mode == "table":
        return [*table, honest[0], no_noise[0]]
    return [*table, *(run for pair in zip(honest, no_noise, strict=True) for run in pair)]


if __name__ == "__main__":
    main()
