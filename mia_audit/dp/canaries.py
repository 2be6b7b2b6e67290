"""Canaries for the one-run audit: m population samples, each included in training
independently with probability 1/2 from a recorded seed; mislabelled (a random other class)
or natural (their own labels). The model also trains on `base` population rows, disjoint
from the canaries, as many as the recipe's train_size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Mixed into the run's seed, so canaries never share a stream with other seeded draws.
_STREAM = 0x0C1A
#: Population samples the base training set keeps at the least, beside the canaries.
MIN_BASE = 10


@dataclass(frozen=True)
class CanarySet:
    """Which population rows are canaries, their labels and which of them are included, and
    the other population rows the model trains on (`base`)."""

    rows: np.ndarray
    labels: np.ndarray
    included: np.ndarray
    base: np.ndarray
    kind: str
    seed: int

    def training_rows(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows and labels the model trains on: the base rows, then the included canaries
        with their canary labels (`labels`: the population's)."""
        rows = np.concatenate([self.base, self.rows[self.included]])
        return rows, np.concatenate([labels[self.base], self.labels[self.included]])


def draw_canaries(
    labels: np.ndarray, m: int, kind: str, num_classes: int, seed: int, base_size: int
) -> CanarySet:
    """m canaries and `base_size` base rows out of the population (whose labels are
    `labels`), disjoint, seeded by `seed`."""
    n = len(labels)
    base_size = max(base_size, MIN_BASE)
    if m + base_size > n:
        raise ValueError(
            f"{m} canaries and {base_size} training samples need {m + base_size} population samples"
        )
    rng = np.random.default_rng([seed, _STREAM])
    chosen = rng.permutation(n)
    rows, base = np.sort(chosen[:m]), np.sort(chosen[m : m + base_size])
    canary_labels = labels[rows].astype(np.int64)
    if kind == "mislabelled":
        shift = rng.integers(1, num_classes, size=m)
        canary_labels = (canary_labels + shift) % num_classes
    included = rng.random(m) < 0.5
    return CanarySet(rows, canary_labels, included, base, kind, seed)
