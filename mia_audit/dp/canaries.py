"""Canaries for the one-run audit: m population samples, each included in training
independently with probability 1/2 from a recorded seed; mislabelled (a random other class)
or natural (their own labels).
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
    """Which population rows are canaries, their labels and which of them are included."""

    rows: np.ndarray
    labels: np.ndarray
    included: np.ndarray
    kind: str
    seed: int

    def training_rows(self, n_population: int, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows and labels the model trains on: every non-canary population row, then the
        included canaries with their canary labels."""
        base = np.setdiff1d(np.arange(n_population), self.rows)
        rows = np.concatenate([base, self.rows[self.included]])
        return rows, np.concatenate([labels[base], self.labels[self.included]])


def draw_canaries(labels: np.ndarray, m: int, kind: str, num_classes: int, seed: int) -> CanarySet:
    """m canaries out of the population (whose labels are `labels`), seeded by `seed`."""
    n = len(labels)
    if m + MIN_BASE > n:
        raise ValueError(f"{m} canaries need at least {m + MIN_BASE} population samples")
    rng = np.random.default_rng([seed, _STREAM])
    rows = np.sort(rng.choice(n, size=m, replace=False))
    canary_labels = labels[rows].astype(np.int64)
    if kind == "mislabelled":
        shift = rng.integers(1, num_classes, size=m)
        canary_labels = (canary_labels + shift) % num_classes
    included = rng.random(m) < 0.5
    return CanarySet(rows, canary_labels, included, kind, seed)
