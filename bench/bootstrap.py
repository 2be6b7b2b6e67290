"""Benchmark: vectorised stratified bootstrap vs a naive per-resample scikit-learn loop.

Run from the repository root:  python bench/bootstrap.py [--n 50000] [--resamples 1000 5000]
Prints plain text: the machine, resamples/s of `mia_audit.stats.bootstrap_metrics` for each
resample count, resamples/s of the naive loop (on fewer resamples, the same resamples as the
vectorised path's first ones), the speed ratio, and how far the two disagree on those resamples.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mia_audit.evaluation import bootstrap as stats

FPRS = (0.05, 0.01, 0.001, 0.0)


def naive_replicates(
    labels: np.ndarray, scores: np.ndarray, n_resamples: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Resample -> sklearn roc_auc_score and roc_curve -> TPR at each FPR, one at a time."""
    from sklearn.metrics import roc_auc_score, roc_curve

    aucs, tprs = [], []
    for index in stats.resample_indices(labels, scores, n_resamples, seed):
        y, s = labels[index], scores[index]
        aucs.append(roc_auc_score(y, s))
        fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
        tprs.append([tpr[np.searchsorted(fpr, f, side="right") - 1] for f in FPRS])
    return np.array(aucs), np.array(tprs)


def machine() -> str:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return (
        f"machine: {platform.platform()} | {platform.machine()} | cpu_count={os.cpu_count()} | "
        f"load average {load}\n"
        f"python {platform.python_version()} | numpy {np.__version__}"
    )


def time_fast(labels: np.ndarray, scores: np.ndarray, n_resamples: int, seed: int) -> float:
    start = time.perf_counter()
    stats.bootstrap_metrics(labels, scores, FPRS, n_resamples=n_resamples, random_state=seed)
    return time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000, help="scores (half members)")
    parser.add_argument("--resamples", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--naive-resamples", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    labels = np.r_[np.ones(args.n // 2, int), np.zeros(args.n - args.n // 2, int)]
    scores = rng.normal(size=args.n) + 0.5 * labels
    print(machine())
    print(f"n={args.n} ({labels.sum()} members), fprs={FPRS}, seed={args.seed}")

    time_fast(labels, scores, 10, args.seed)  # warm-up: imports, first allocations
    rates = {}
    for n_resamples in args.resamples:
        seconds = time_fast(labels, scores, n_resamples, args.seed)
        rates[n_resamples] = n_resamples / seconds
        print(
            f"vectorised bootstrap_metrics: {n_resamples:>6} resamples in {seconds:7.2f} s "
            f"= {rates[n_resamples]:8.1f} resamples/s"
        )

    start = time.perf_counter()
    naive_auc, naive_tpr = naive_replicates(labels, scores, args.naive_resamples, args.seed)
    seconds = time.perf_counter() - start
    naive_rate = args.naive_resamples / seconds
    print(
        f"naive sklearn loop:           {args.naive_resamples:>6} resamples in {seconds:7.2f} s "
        f"= {naive_rate:8.1f} resamples/s"
    )
    for n_resamples, rate in rates.items():
        print(f"speed ratio (vectorised @ {n_resamples} / naive): {rate / naive_rate:.1f}x")

    fast = stats.bootstrap_replicates(
        labels, scores, FPRS, n_resamples=args.naive_resamples, random_state=args.seed
    )
    fast_tpr = np.stack([fast.tpr_at_fpr[f] for f in FPRS], axis=1)
    print(
        f"agreement on the same {args.naive_resamples} resamples: "
        f"max |AUC diff| = {np.abs(fast.auc - naive_auc).max():.3g}, "
        f"max |TPR diff| = {np.abs(fast_tpr - naive_tpr).max():.3g}"
    )


if __name__ == "__main__":
    main()
