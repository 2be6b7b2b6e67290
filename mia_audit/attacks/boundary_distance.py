"""Label-only distance to the decision boundary (Choquette-Choo et al., ICML 2021; Li & Zhang,
CCS 2021): a model's training samples lie farther from its decision boundary.

The distance is found with label queries only (`AttackContext.oracle`), by bisection along
`directions` segments per sample, all samples and directions of a batch in one query batch:

- `search: interpolation` (default): towards other audit images that the target assigns to
  another class (the start of HopSkipJump's search), so the far end is known to change the
  label and costs no query;
- `search: noise`: towards the image plus Gaussian noise of standard deviation `noise_scale`
  (clipped to 0..1); the far end is queried first, and a segment whose far end keeps the label
  counts its whole length (the distance is at least that).

Each segment gets `budget // directions` queries (one of them the far end's, for noise) and
ends bracketed to 2^-steps of its length; the score is the smallest L2 distance (pixels on the
0..1 scale) at which any segment changed the label: higher = farther = more likely a member.
A sample the target already misclassifies scores 0 and costs no query. Cost: `budget` model
evaluations per correctly classified sample, e.g. 100 forward passes, batched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from mia_audit.attacks.base import Attack, AttackContext, AttackOutput
from mia_audit.attacks.config import AttackConfig
from mia_audit.attacks.outputs import ANY_KIND, LabelOracle
from mia_audit.attacks.registry import register
from mia_audit.errors import AuditError

#: Float32 pixels of the images bisected at once (all their directions), so memory stays
#: bounded whatever the image size: 64 Mi values = 256 MiB per step.
_CHUNK_VALUES = 64 * 2**20


class BoundaryDistanceConfig(AttackConfig):
    name: Literal["boundary_distance"]
    budget: int = Field(
        100, ge=2, le=100_000, description="Label queries per sample (model evaluations)."
    )
    directions: int = Field(
        10, ge=1, le=1000, description="Segments searched per sample; each gets budget/directions."
    )
    search: Literal["interpolation", "noise"] = Field(
        "interpolation",
        description="interpolation: towards images of other classes; noise: towards Gaussian "
        "noise of std noise_scale.",
    )
    noise_scale: float = Field(
        1.0, gt=0.0, le=10.0, description="Std of the noise at the far end (0..1 pixel scale)."
    )

    @model_validator(mode="after")
    def _steps(self) -> BoundaryDistanceConfig:
        needed = self.directions * (2 if self.search == "noise" else 1)
        if self.budget < needed:
            raise ValueError(
                f"budget {self.budget} leaves no bisection step for {self.directions} directions "
                f"(needs at least {needed}); raise budget or lower directions"
            )
        return self

    @property
    def steps(self) -> int:
        """Bisection steps per direction (the far end's query comes off the budget first)."""
        return self.budget // self.directions - (1 if self.search == "noise" else 0)


@dataclass(frozen=True)
class Segments:
    """For each of n samples x `directions`: the start (the sample) and the far end."""

    starts: np.ndarray  # (n, C, H, W)
    ends: np.ndarray  # (n, D, C, H, W)


def bisect_boundary(
    oracle: LabelOracle, segments: Segments, labels: np.ndarray, steps: int, end_known: bool
) -> np.ndarray:
    """The smallest L2 distance along any segment at which the oracle's label is no longer
    `labels`, bracketed by `steps` bisection steps; (n,).

    Each step queries every sample's every segment at the middle of its bracket [lo, hi]
    (fractions of the segment) in one batch. With `end_known` the far ends are taken to change
    the label; otherwise they are queried first and a segment whose end keeps the label has
    distance = its length.
    """
    starts, ends = segments.starts, segments.ends
    n, directions = ends.shape[:2]
    step = ends - starts[:, None]
    lengths = np.sqrt((step.reshape(n, directions, -1).astype(np.float64) ** 2).sum(axis=-1))
    expected = np.repeat(labels, directions)
    lo = np.zeros((n, directions))
    hi = np.ones((n, directions))
    if not end_known:
        flipped = oracle.predict(ends.reshape(n * directions, *ends.shape[2:])) != expected
        lo = np.where(flipped.reshape(n, directions), lo, 1.0)
    for _ in range(steps):
        middle = (lo + hi) / 2.0
        points = starts[:, None] + middle[..., None, None, None].astype(np.float32) * step
        flipped = oracle.predict(points.reshape(n * directions, *points.shape[2:])) != expected
        flipped = flipped.reshape(n, directions)
        hi = np.where(flipped, middle, hi)
        lo = np.where(flipped, lo, middle)
    return np.asarray((hi * lengths).min(axis=1))


def partner_rows(
    predicted: np.ndarray, labels: np.ndarray, directions: int, rng: np.random.Generator
) -> np.ndarray:
    """For each sample, `directions` random audit rows the target assigns to another class than
    the sample's label; (n, directions)."""
    rows = np.empty((len(labels), directions), dtype=np.int64)
    for label in np.unique(labels):
        pool = np.flatnonzero(predicted != label)
        if pool.size == 0:
            raise AuditError(
                "boundary_distance: the target predicts one class for every audit sample, so "
                "no image of another class exists to search towards; use search: noise"
            )
        mine = np.flatnonzero(labels == label)
        rows[mine] = rng.choice(pool, size=(len(mine), directions))
    return rows


@register
class BoundaryDistanceAttack(Attack[BoundaryDistanceConfig]):
    name = "boundary_distance"
    config_type = BoundaryDistanceConfig
    summary = "Label-only distance to the decision boundary, by batched bisection."
    output_kinds = ANY_KIND
    needs_oracle = True

    def score(self, context: AttackContext) -> AttackOutput:
        oracle = context.oracle
        if oracle is None:
            raise AuditError("boundary_distance needs label queries on the target (no oracle)")
        config = self.config
        predicted = context.target.identity.argmax(axis=-1)
        labels = context.labels
        correct = np.flatnonzero(predicted == labels)
        rng = np.random.default_rng(context.random_state)
        scores = np.zeros(len(labels))
        before = oracle.queries
        if correct.size:
            partners = partner_rows(predicted, labels[correct], config.directions, rng)
            first = oracle.images(correct[:1])
            chunk = max(1, _CHUNK_VALUES // (first[0].size * config.directions))
            for begin in range(0, len(correct), chunk):
                rows = correct[begin : begin + chunk]
                scores[rows] = self._distances(
                    oracle, rows, partners[begin : begin + chunk], labels[rows], rng
                )
        used = oracle.queries - before
        parameters = {
            **self.parameters(),
            "queries_per_sample": round(used / max(1, correct.size), 2),
        }
        return AttackOutput(scores=scores, parameters=parameters)

    def _distances(
        self,
        oracle: LabelOracle,
        rows: np.ndarray,
        partners: np.ndarray,
        labels: np.ndarray,
        rng: np.random.Generator,
    ) -> np.ndarray:
        config = self.config
        starts = oracle.images(rows)
        if config.search == "interpolation":
            ends = oracle.images(partners.reshape(-1)).reshape(len(rows), config.directions, -1)
            ends = ends.reshape(len(rows), config.directions, *starts.shape[1:])
            end_known = True
        else:
            shape = (len(rows), config.directions, *starts.shape[1:])
            noise = rng.standard_normal(shape, dtype=np.float32) * np.float32(config.noise_scale)
            ends = np.clip(starts[:, None] + noise, 0.0, 1.0)
            end_known = False
        return bisect_boundary(oracle, Segments(starts, ends), labels, config.steps, end_known)
