"""Benchmark: label-only attacks, ours beside IBM ART's, on one leaking CIFAR-10 ResNet18.

Run from the repository root (ART is a benchmark-only install, never a dependency):
    python bench/label_only.py [--members 500] [--epochs 20] [--samples 100]
        [--art-iter 2] [--art-eval 100] [--threads 2] [--workdir DIR]

What it does, in order:
1. trains (or reuses from --workdir) a ResNet18 (ImageNet stem) on `--members` seeded CIFAR-10
   training images without augmentation, so it overfits (`_common.cifar_target`);
2. takes `--samples` seeded members and as many non-members (other training images);
3. runs ART 1.20's `LabelOnlyGapAttack` and `LabelOnlyDecisionBoundary` (HopSkipJump,
   untargeted, L2, `--art-iter` iterations, at most `--art-eval` evaluations per gradient
   estimate) on them, counting every image the model is asked about; ART's HopSkipJump feeds
   float64, so the model is wrapped to cast to float32 (unwrapped, it crashes);
4. runs ours through the product's code (`mia_audit.audit` on the same module and samples):
   `loss` (for scale), `gap` and `boundary_distance` with a `budget` equal to the queries per
   sample ART used, and with the default budget (100);
5. prints one table: AUC, TPR at 5 % and 1 % FPR (the suite's metrics for every row) and
   seconds and queries per sample.

100 + 100 samples support TPR at 5 % FPR (5 false positives allowed) only roughly, and TPR at
1 % not at all (docs/gate.md): those two columns are indicative.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import CIFAR_MEAN, CIFAR_STD, cifar_target, load_cifar10, machine_line

from mia_audit.evaluation.metrics import auc, tpr_at_fpr


def main() -> None:
    args = parse_args()
    import torch

    torch.set_num_threads(args.threads)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="mia-label-only-"))
    target = cifar_target(workdir, args.members, epochs=args.epochs)
    images, labels = load_cifar10()
    rng = np.random.default_rng(1)
    members = rng.choice(target.members, args.samples, replace=False)
    non_members = rng.choice(target.non_members, args.samples, replace=False)
    x = images[np.concatenate([members, non_members])].transpose(0, 3, 1, 2).copy()
    y = labels[np.concatenate([members, non_members])]
    is_member = np.arange(len(y)) < args.samples
    module = load_module(target.state_path)

    rows = art_attacks(module, x, y, is_member, args)
    art_queries = int(rows[-1].queries)
    rows += our_attacks(module, x, y, is_member, art_queries, workdir)

    print(machine_line())
    print(
        f"target: {target.description}; samples: {args.samples} members + {args.samples} "
        f"non-members; ART HopSkipJump max_iter={args.art_iter} max_eval={args.art_eval}"
    )
    print(
        f"{'attack':44s} {'AUC':>6s} {'TPR@5%':>7s} {'TPR@1%':>7s} {'s/sample':>9s} "
        f"{'queries/sample':>15s}"
    )
    for row in rows:
        member, scores = row.is_member, row.scores
        print(
            f"{row.name:44s} {auc(member, scores):6.3f} {tpr_at_fpr(member, scores, 0.05):7.3f} "
            f"{tpr_at_fpr(member, scores, 0.01):7.3f} {row.seconds / len(y):9.4f} "
            f"{row.queries:15.1f}"
        )


@dataclass(frozen=True)
class Row:
    """One attack's per-sample scores (with the samples' membership), seconds and queries per
    sample."""

    name: str
    scores: np.ndarray
    is_member: np.ndarray
    seconds: float
    queries: float


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--members", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--art-iter", type=int, default=2)
    parser.add_argument("--art-eval", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", default=None)
    return parser.parse_args()


def load_module(state_path: Path) -> Any:
    import torch

    from mia_audit.models.architectures import build_architecture

    module = build_architecture("resnet18", 10)
    module.load_state_dict(torch.load(state_path, weights_only=True))
    return module.eval()


def art_attacks(
    module: Any, x: np.ndarray, y: np.ndarray, is_member: np.ndarray, args: argparse.Namespace
) -> list[Row]:
    """ART's two label-only attacks on 0..1 float images: scores, seconds, queries per sample."""
    import torch
    from art.attacks.inference.membership_inference import (
        LabelOnlyDecisionBoundary,
        LabelOnlyGapAttack,
    )
    from art.estimators.classification import PyTorchClassifier

    counting = CountingNormalised(module)
    classifier = PyTorchClassifier(
        model=counting,
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=(3, 32, 32),
        nb_classes=10,
        clip_values=(0.0, 1.0),
        device_type="cpu",
    )
    x01 = x.astype(np.float32) / 255.0
    one_hot = np.eye(10, dtype=np.float32)[y]
    rows: list[Row] = []
    counting.images = 0
    start = time.perf_counter()
    gap = LabelOnlyGapAttack(classifier).infer(x01, one_hot).astype(np.float64)
    seconds = time.perf_counter() - start
    rows.append(Row("ART LabelOnlyGapAttack", gap, is_member, seconds, counting.images / len(y)))
    boundary = LabelOnlyDecisionBoundary(classifier, distance_threshold_tau=1e-12)
    counting.images = 0
    start = time.perf_counter()
    probabilities = boundary.infer(
        x01,
        one_hot,
        probabilities=True,
        max_iter=args.art_iter,
        max_eval=args.art_eval,
        verbose=False,
    )
    seconds = time.perf_counter() - start
    # P(member) = sigmoid(distance - tau): monotone in ART's HopSkipJump distance.
    name = f"ART LabelOnlyDecisionBoundary (HSJ {args.art_iter} it, {args.art_eval} ev)"
    rows.append(Row(name, probabilities[:, 1], is_member, seconds, counting.images / len(y)))
    return rows


class CountingNormalised:
    """The target for ART: casts HopSkipJump's float64 to float32, normalises like training,
    and counts every image it is asked about (made an nn.Module at runtime, torch is lazy)."""

    def __new__(cls, module: Any) -> Any:
        import torch

        mean = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(CIFAR_STD).view(1, 3, 1, 1)

        class Wrapped(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.inner = module
                self.images = 0

            def forward(self, batch: torch.Tensor) -> torch.Tensor:
                self.images += len(batch)
                logits: torch.Tensor = self.inner((batch.float() - mean) / std)
                return logits

        return Wrapped().eval()


def our_attacks(
    module: Any, x: np.ndarray, y: np.ndarray, is_member: np.ndarray, budget: int, workdir: Path
) -> list[Row]:
    """Ours through `mia_audit.audit`: scores, seconds and queries per sample of each attack."""
    import mia_audit

    attacks: list[Any] = [
        "loss",
        "gap",
        {
            "name": "boundary_distance",
            "id": f"boundary_distance_b{budget}",
            "budget": budget,
            "directions": max(1, budget // 10),
        },
        {"name": "boundary_distance", "id": "boundary_distance_b100"},
    ]
    outcome = mia_audit.audit(
        module,
        members=(x[is_member], y[is_member]),
        non_members=(x[~is_member], y[~is_member]),
        preprocessing={"mean": list(CIFAR_MEAN), "std": list(CIFAR_STD)},
        attacks=attacks,
        gate={"max_auc": 0.99},
        sections={"runtime": {"device": "cpu", "cache_dir": str(workdir / ".mia-cache")}},
    )
    rows = []
    for result in outcome.result.attacks:
        queries = result.parameters.get("queries_per_sample", 1.0 if result.name == "gap" else 0.0)
        scores = outcome.scores[result.id]
        rows.append(
            Row(f"ours: {result.id}", scores, outcome.is_member, result.seconds, float(queries))
        )
    return rows


if __name__ == "__main__":
    main()
