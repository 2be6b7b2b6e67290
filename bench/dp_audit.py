"""The one-run audit of a DP-SGD recipe through the console script, on the digits target: does
an honest recipe pass its accountant's epsilon, is the same recipe without noise flagged, and
how tight is the one-run bound beside the two-sided one (BENCHMARKS.md, "Checking a DP claim").

    python bench/dp_audit.py honest --seeds 20      # noise for accountant epsilon 2, claim 2
    python bench/dp_audit.py no-noise --seeds 20    # noise 0, still claiming 2
    python bench/dp_audit.py table                  # bound vs accountant at several noise levels
    python bench/dp_audit.py all --seeds 20         # table's epsilon 1, 4 and 8, then the two
                                                    # above seed by seed, alternating

`--canaries M` sets m (default 200), `--base N` the population rows beside them (train_size,
default 200). The honest recipe's noise is solved per seed for the training set that seed's
canary draw gives (the base rows plus the included canaries), so the RDP accountant gives
epsilon 2 (within opacus' 0.01 tolerance, at or below) in every seed; the table's rows
likewise for their epsilon at seed 0.

Each run is `mia-audit run` on a policy written beside a seeded digits target (mia-audit demo);
one line per run on stdout, a JSON line per run in --log. The runs inherit this process's
environment (PYTHONPATH included); the first line says which mia_audit they import.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings
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
#: What --canaries and --base set (m and the population rows beside the canaries).
SIZES = {"canaries": CANARIES, "base": BASE}


#: The recipe of the one-run model and of the target (the policy's reference_training).
RECIPE: dict[str, Any] = {
    "architecture": "mlp:mlp",
    "epochs": EPOCHS,
    "batch_size": BATCH,
    "optimizer": "adamw",
    "lr": 0.01,
    "weight_decay": 0.0,
    "augment": [],
    "schedule": "constant",
}
MEAN, STD = (0.2, 0.2, 0.2), (0.3, 0.3, 0.3)


def dp_target(folder: Path, noise: float) -> str:
    """The claimed model: the MLP trained with the recipe's DP-SGD (this noise multiplier, seed
    0) on the 200 members, saved as TorchScript; once per noise level. Its claim is checked by
    the attacks on the audit set beside the one-run audit of the recipe."""
    import numpy as np
    import torch

    from mia_audit.dp.training import train_dp
    from mia_audit.references.settings import DpRecipe, TrainingRecipe
    from mia_audit.references.training import TrainingData

    path = folder / f"target-dp-{noise:.6f}.pt"
    if not path.is_file():
        with np.load(folder / "members.npz") as members:
            images, labels = members["x"].transpose(0, 3, 1, 2).copy(), members["y"]
        sys.path.insert(0, str(folder))
        from mlp import mlp  # type: ignore[import-not-found]

        recipe = TrainingRecipe.model_validate({**RECIPE, "train_size": len(labels)})
        dp = DpRecipe(noise_multiplier=noise, max_grad_norm=1.0)
        data = TrainingData(images, labels.astype(np.int64), MEAN, STD)
        state = train_dp(mlp(10), data, recipe, dp, 0)
        model = mlp(10)  # a fresh module: opacus leaves its hooks on the one it trained
        model.load_state_dict(state)
        model.eval()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning)  # jit is deprecated
            traced = torch.jit.trace(model, torch.zeros(1, 3, 32, 32))  # type: ignore[no-untyped-call]
        torch.jit.save(traced, str(path))
    return path.name


def train_size(folder: Path, canaries: int, seed: int) -> int:
    """The rows the one-run model trains on for this seed: the base rows plus the included
    canaries, from the same draw the tool makes (the run checks its accountant agrees)."""
    import numpy as np

    from mia_audit.dp.canaries import draw_canaries

    with np.load(folder / "population.npz") as population:
        labels = population["y"]
    drawn = draw_canaries(labels, canaries, "mislabelled", 10, seed, SIZES["base"])
    return len(drawn.base) + int(drawn.included.sum())


def noise_for(epsilon: float, n: int) -> float:
    """The noise multiplier at which the RDP accountant gives `epsilon` (at most) on n rows,
    with the tool's sample rate (1 / steps per epoch) and steps."""
    from opacus.accountants.utils import get_noise_multiplier

    from mia_audit.dp.training import steps_per_epoch

    return float(
        get_noise_multiplier(
            target_epsilon=epsilon,
            target_delta=DELTA,
            sample_rate=1.0 / steps_per_epoch(n, BATCH),
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


def policy(
    folder: Path, name: str, noise: float, claim: float, canaries: int, target_noise: float
) -> Path:
    document: dict[str, Any] = {
        "version": 1,
        "name": name,
        "model": {
            "path": dp_target(folder, target_noise),
            "num_classes": 10,
            "dp_claim": {"epsilon": claim, "delta": DELTA},
        },
        "data": {
            "members": "members.npz",
            "non_members": "non_members.npz",
            "population": "population.npz",
        },
        "preprocessing": {"mean": list(MEAN), "std": list(STD)},
        "attacks": ["loss"],
        "gate": {"max_auc": 0.99},
        "reference_training": {
            **RECIPE,
            "train_size": SIZES["base"],
            "dp": {"noise_multiplier": noise, "max_grad_norm": 1.0, "canaries": canaries},
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
        "best_possible": one["best_possible"],
        "guesses": one["guesses"],
        "correct": one["correct"],
        "k_plus": one["k_plus"],
        "k_minus": one["k_minus"],
        "m": one["canaries"],
        "included": one["included"],
        "train_size": one["train_size"],
        "cached": one["cached"],
        "claimed": result["dp_claim"]["epsilon"],
        "claim_checked": result["dp_claim"]["checked"],
        "claim_bound_failed": "dp_claim" in conditions and not conditions["dp_claim"]["passed"],
        "accounting_failed": not conditions["dp_claim_accounting"]["passed"],
        "claim_bounds": {
            b["source"]: b["epsilon_lower_bound"] for b in result["dp_claim"]["bounds"]
        },
        "failed": [c["id"] for c in result["gate"]["conditions"] if not c["passed"]],
        "train_seconds": result["timings"].get("one-run audit"),
        "wall_seconds": round(wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["honest", "no-noise", "table", "all", "summary"])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/mia-dp-bench"))
    parser.add_argument("--log", type=Path, default=None)
    parser.add_argument("--canaries", type=int, default=CANARIES, help="m (default 200)")
    parser.add_argument("--base", type=int, default=BASE, help="train_size (default 200)")
    args = parser.parse_args()
    if args.mode == "summary":  # the tables of BENCHMARKS.md from a --log
        assert args.log is not None, "summary reads --log"
        print(summary([json.loads(line) for line in args.log.read_text().splitlines()]))
        return
    SIZES.update(canaries=args.canaries, base=args.base)
    folder = target(args.folder)
    print(machine_line().strip(), flush=True)
    print(f"runs import {imported_package()}; load average {load_average()}", flush=True)
    members = 200  # the demo target's members, the claimed model's training set
    for name, noise, claim, seed in runs(args.mode, args.seeds, folder, args.canaries):
        target_noise = 0.0 if noise == 0 else noise_for(claim, members)
        row = run(folder, policy(folder, name, noise, claim, args.canaries, target_noise), seed)
        row["target_noise"] = target_noise
        row["target_accountant"] = None if noise == 0 else accountant_of(target_noise, members)
        row["load_average"] = load_average()
        if noise > 0 and row["accountant"] is not None and row["accountant"] > claim + 1e-9:
            row["warning"] = "the tool's accountant exceeds the epsilon the noise was solved for"
        print(json.dumps(row), flush=True)
        if args.log is not None:
            with args.log.open("a", encoding="utf-8") as log:
                log.write(json.dumps(row) + "\n")


def accountant_of(noise: float, n: int) -> float:
    """The RDP accountant's epsilon (delta 1e-5) of the recipe at this noise on n rows."""
    from mia_audit.dp.training import accountant_epsilon
    from mia_audit.references.settings import DpRecipe, TrainingRecipe

    recipe = TrainingRecipe.model_validate({**RECIPE, "train_size": n})
    return accountant_epsilon(DpRecipe(noise_multiplier=noise, max_grad_norm=1.0), n, recipe, DELTA)


def imported_package() -> str:
    """Where the console script's runs import mia_audit from (they inherit the environment)."""
    done = subprocess.run(
        [sys.executable, "-c", "import mia_audit; print(mia_audit.__file__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def summary(rows: list[dict[str, Any]]) -> str:
    """Markdown for BENCHMARKS.md: the tightness rows (seed 0 of each noise level), the honest
    and noiseless runs seed by seed, and the totals."""
    for row in rows:  # logs before the claim was logged: the claim is in the policy name
        name = row["policy"]
        row.setdefault("claimed", float(name[6:]) if name.startswith("table-") else 2.0)

    def eps(value: float | None) -> str:
        return "∞ (no noise)" if value is None else f"{value:.3f}"

    def loss(row: dict[str, Any]) -> str:
        value = row["claim_bounds"].get("loss")
        return "-" if value is None else f"{value:.3f}"

    lines = [
        "| noise multiplier (one-run model / target) | accountant ε (one-run model / target) "
        "| claim | one-run bound | right / guessed | two-sided bound | target's loss-attack "
        "bound | exit | wall time |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    level = [r for r in rows if r["seed"] == 0]
    level.sort(key=lambda r: (r["accountant"] is None, r["accountant"] or 0.0))
    for r in level:
        lines.append(
            f"| {r['noise']:.3f} / {r['target_noise']:.3f} | {eps(r['accountant'])} / "
            f"{eps(r['target_accountant'])} | {r['claimed']:g} | {r['one_run']:.3f} "
            f"| {r['correct']} / {r['guesses']} | {r['two_sided']:.3f} | {loss(r)} "
            f"| {r['exit']} | {r['wall_seconds']:.0f} s |"
        )
    honest = {r["seed"]: r for r in rows if r["policy"] == "honest"}
    noiseless = {r["seed"]: r for r in rows if r["policy"] == "no-noise"}
    lines += [
        "",
        "| seed | honest: exit | one-run bound | loss-attack bound | noiseless: exit "
        "| one-run bound (right / guessed) | two-sided bound | loss-attack bound "
        "| failed conditions |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for seed in sorted(set(honest) | set(noiseless)):
        h, n = honest.get(seed), noiseless.get(seed)
        left = "| - | - | -" if h is None else f"| {h['exit']} | {h['one_run']:.3f} | {loss(h)}"
        right = (
            "| - | - | - | - | -"
            if n is None
            else f"| {n['exit']} | {n['one_run']:.3f} ({n['correct']} / {n['guesses']}) "
            f"| {n['two_sided']:.3f} | {loss(n)} | {', '.join(n['failed'])}"
        )
        lines.append(f"| {seed} {left} {right} |")
    for name, group in (("honest", list(honest.values())), ("no-noise", list(noiseless.values()))):
        if not group:
            continue
        lines.append(
            f"\n{name}: {len(group)} seeds, exits {sorted({r['exit'] for r in group})}, "
            f"one-run bound {min(r['one_run'] for r in group):.3f} to "
            f"{max(r['one_run'] for r in group):.3f} (above the claim in "
            f"{sum(r['one_run'] > r['claimed'] for r in group)}), dp_claim failed in "
            f"{sum('dp_claim' in r['failed'] for r in group)}, dp_claim_accounting in "
            f"{sum('dp_claim_accounting' in r['failed'] for r in group)}; wall "
            f"{min(r['wall_seconds'] for r in group):.0f} to "
            f"{max(r['wall_seconds'] for r in group):.0f} s a run"
        )
    return "\n".join(lines)


def runs(mode: str, seeds: int, folder: Path, m: int) -> list[tuple[str, float, float, int]]:
    """(policy name, noise multiplier, claimed epsilon, seed) of every run, in order."""

    def noise(epsilon: float, seed: int) -> float:
        return noise_for(epsilon, train_size(folder, m, seed))

    honest = [("honest", noise(2.0, seed), 2.0, seed) for seed in range(seeds)]
    no_noise = [("no-noise", 0.0, 2.0, seed) for seed in range(seeds)]
    table = [(f"table-{e:g}", noise(e, 0), e, 0) for e in (1.0, 4.0, 8.0)]
    if mode == "honest":
        return honest
    if mode == "no-noise":
        return no_noise
    if mode == "table":
        return [*table, honest[0], no_noise[0]]
    return [*table, *(run for pair in zip(honest, no_noise, strict=True) for run in pair)]


if __name__ == "__main__":
    main()
