"""OpenMP's wait policy when torch processes share the cores: spinning (libgomp's default,
`OMP_WAIT_POLICY=ACTIVE`) against sleeping (`PASSIVE`), side by side in one run.

    python bench/omp_wait.py                  # 2 processes at once, 3 rounds each way
    python bench/omp_wait.py --processes 1    # one process alone: what PASSIVE costs when
                                              # nothing else runs

Each process trains a torchvision ResNet18 at 32x32 for --steps steps of batch 64 at torch's
default thread count (all cores); the rounds alternate ACTIVE and PASSIVE so that background
load falls on both. Why it matters: the test suite runs two xdist workers, each starting
console scripts that use every core (tests/__init__.py sets PASSIVE).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

from _common import machine_line

TRAIN = """
import torch, torchvision
torch.manual_seed(0)
model = torchvision.models.resnet18(num_classes=10)
optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
x, y = torch.randn(64, 3, 32, 32), torch.randint(0, 10, (64,))
for _ in range({steps}):
    optimizer.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()
"""


def one_round(policy: str, processes: int, steps: int) -> float:
    """Wall seconds for `processes` trainings started together under `policy`."""
    env = {**os.environ, "OMP_WAIT_POLICY": policy}
    start = time.perf_counter()
    running = [
        subprocess.Popen([sys.executable, "-c", TRAIN.format(steps=steps)], env=env)
        for _ in range(processes)
    ]
    for process in running:
        if process.wait() != 0:
            raise SystemExit(f"a {policy} training failed (exit {process.returncode})")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(machine_line().rstrip())
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    walls: dict[str, list[float]] = {"ACTIVE": [], "PASSIVE": []}
    for round_ in range(args.rounds):
        for policy in walls:
            wall = one_round(policy, args.processes, args.steps)
            walls[policy].append(wall)
            print(f"round {round_ + 1} {policy:7s} {args.processes} processes: {wall:6.1f} s")
    active, passive = (statistics.median(walls[p]) for p in ("ACTIVE", "PASSIVE"))
    print(
        f"median wall: ACTIVE {active:.1f} s, PASSIVE {passive:.1f} s; "
        f"ACTIVE / PASSIVE = {active / passive:.2f}"
    )


if __name__ == "__main__":
    main()
