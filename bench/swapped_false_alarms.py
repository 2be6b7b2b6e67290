"""How often the "look swapped" precondition refuses (exit 2) correctly labelled small audits of
the demo target (docs/preconditions-false-alarms.md), seed by seed through the console script.

    python bench/swapped_false_alarms.py --dir /tmp/swap --seeds 21

Two setups, each the demo policy at `data.max_per_side: 68` and
`statistics.min_false_positives: 1` (the red team's sizes):
  leaking: the demo's own members (the model's training samples) and non-members;
  honest:  members the model never saw (200 from the population, 68 drawn per seed), so the
           model does not leak on this audit and any exit 2 "look swapped" is a false alarm;
  honest-200: the same members at the default sizes (200 a side, min_false_positives 10).
The demo target is trained with `mia-audit demo --dir DIR` when DIR has none.
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml
from _common import machine_line

CONSOLE = Path(sys.executable).with_name("mia-audit")


def honest_members(folder: Path) -> None:
    """Members from the population the target never trained on; the rest stays population."""
    with np.load(folder / "population.npz") as population:
        x, y, ids = population["x"], population["y"], population["ids"]
    order = np.random.default_rng(0).permutation(len(y))
    chosen, rest = np.sort(order[:200]), np.sort(order[200:])
    np.savez(folder / "honest_members.npz", x=x[chosen], y=y[chosen], ids=ids[chosen])
    np.savez(folder / "honest_population.npz", x=x[rest], y=y[rest], ids=ids[rest])


def policy(folder: Path, setup: str) -> Path:
    document = yaml.safe_load((folder / "policy.yaml").read_text())
    document["data"]["max_per_side"] = 200 if setup == "honest-200" else 68
    if setup.startswith("honest"):
        document["data"]["members"] = "honest_members.npz"
        document["data"]["population"] = "honest_population.npz"
    document["statistics"] = {"min_false_positives": 10 if setup == "honest-200" else 1}
    document["outputs"] = {"dir": f"out-{setup}", "formats": ["json"]}
    document["runtime"]["device"] = "cpu"
    path = folder / f"{setup}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--seeds", type=int, default=21)
    parser.add_argument("--setups", nargs="+", default=["honest", "leaking", "honest-200"])
    args = parser.parse_args()
    print(machine_line().rstrip())
    if not (args.dir / "target.onnx").exists():
        subprocess.run([str(CONSOLE), "demo", "--dir", str(args.dir)], check=False)
    honest_members(args.dir)
    for setup in args.setups:
        path = policy(args.dir, setup)
        exits: collections.Counter[tuple[int, bool]] = collections.Counter()
        for seed in range(args.seeds):
            done = subprocess.run(
                [str(CONSOLE), "run", str(path), "--seed", str(seed), "-q"],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            swapped = "look swapped" in done.stderr
            exits[(done.returncode, swapped)] += 1
            print(f"{setup} seed {seed}: exit {done.returncode}" + (" look swapped" * swapped))
        summary = ", ".join(
            f"exit {code}{' look swapped' * swapped}: {n}"
            for (code, swapped), n in sorted(exits.items())
        )
        print(f"{setup}: {summary} (of {args.seeds} seeds)", flush=True)


if __name__ == "__main__":
    main()
