"""Plans (pure, seeded): which rows of the training pool each reference model trains on.

Offline model j trains on a seeded subset of the population that depends only on (seed, j), so
sets of any size share their first models; online models train on halves of the audit set,
each sample IN for exactly half of them (LiRA's keep matrix).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mia_audit.attacks.reference_sets import Mode
from mia_audit.references.training import TrainingJob

if TYPE_CHECKING:
    pass


#: Seed-stream tags, so that data subsets, keep matrices and training seeds never collide.
_OFFLINE, _ONLINE, _POOL, _TRAIN = 1, 2, 3, 4

_MODES = {"offline": _OFFLINE, "online": _ONLINE}


def derived_seed(seed: int, *parts: int) -> int:
    """An independent 32-bit seed for one stream of a run (numpy's SeedSequence mixing)."""
    return int(np.random.SeedSequence([seed, *parts]).generate_state(1)[0])


def online_keep_matrix(n_models: int, n_samples: int, seed: int) -> np.ndarray:
    """(n_models, n_samples) bool: every sample IN for exactly half of the models.

    Per sample, a random permutation of the models; the first half keep it (LiRA's code).
    """
    if n_models < 2 or n_models % 2:
        raise ValueError(f"online keep matrices need an even number of models >= 2, not {n_models}")
    order = np.random.default_rng(seed).random((n_models, n_samples)).argsort(axis=0)
    return np.asarray(order < n_models // 2)


@dataclass(frozen=True)
class ReferencePlan:
    """Which rows of the pool each model trains on, and what that means per sample.

    The pool is the audit set (online only) followed by ``population[population_rows]``.
    """

    mode: Mode
    includes_audit: bool
    population_rows: np.ndarray
    jobs: tuple[TrainingJob, ...]
    in_audit: np.ndarray
    in_population: np.ndarray


def offline_plan(
    count: int, n_audit: int, n_population: int, train_size: int, seed: int
) -> ReferencePlan:
    """Model j trains on a seeded subset of the population, the same for any `count`."""
    if train_size > n_population:
        raise ValueError(f"train_size {train_size} exceeds the population ({n_population})")
    jobs, in_population = [], np.zeros((count, n_population), dtype=bool)
    for j in range(count):
        rng = np.random.default_rng(derived_seed(seed, _OFFLINE, j))
        rows = np.sort(rng.choice(n_population, train_size, replace=False))
        jobs.append(TrainingJob(index=rows, seed=derived_seed(seed, _TRAIN, _OFFLINE, j)))
        in_population[j, rows] = True
    return ReferencePlan(
        mode="offline",
        includes_audit=False,
        population_rows=np.arange(n_population),
        jobs=tuple(jobs),
        in_audit=np.zeros((count, n_audit), dtype=bool),
        in_population=in_population,
    )


def online_plan(
    count: int, n_audit: int, n_population: int, train_size: int, seed: int
) -> ReferencePlan:
    """Halves of the audit set (topped up with population up to 2 x train_size samples)."""
    extra = min(n_population, max(0, 2 * train_size - n_audit))
    order = np.random.default_rng(derived_seed(seed, _POOL)).permutation(n_population)
    population_rows = np.sort(order[:extra])
    keep = online_keep_matrix(count, n_audit + extra, derived_seed(seed, _ONLINE, count))
    jobs = tuple(
        TrainingJob(np.flatnonzero(keep[j]), derived_seed(seed, _TRAIN, _ONLINE, count, j))
        for j in range(count)
    )
    in_population = np.zeros((count, n_population), dtype=bool)
    in_population[:, population_rows] = keep[:, n_audit:]
    return ReferencePlan(
        mode="online",
        includes_audit=True,
        population_rows=population_rows,
        jobs=jobs,
        in_audit=keep[:, :n_audit],
        in_population=in_population,
    )


def make_plan(
    mode: Mode, count: int, n_audit: int, n_population: int, train_size: int, seed: int
) -> ReferencePlan:
    build = online_plan if mode == "online" else offline_plan
    return build(count, n_audit, n_population, train_size, seed)
