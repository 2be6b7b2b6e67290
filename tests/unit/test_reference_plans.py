"""Reference-model plans: balanced keep matrices, online halves, offline models shared across set
sizes, and the model cache's round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mia_audit.references.plans import offline_plan, online_keep_matrix, online_plan
from mia_audit.store.cache import model_store


@pytest.mark.parametrize(("models", "samples", "seed"), [(2, 7, 0), (4, 100, 1), (16, 33, 2)])
def test_keep_matrix_is_balanced(models: int, samples: int, seed: int) -> None:
    keep = online_keep_matrix(models, samples, seed)
    assert keep.shape == (models, samples) and keep.dtype == np.bool_
    assert (keep.sum(axis=0) == models // 2).all()  # every sample IN for exactly half
    np.testing.assert_array_equal(keep, online_keep_matrix(models, samples, seed))
    assert not np.array_equal(keep, online_keep_matrix(models, samples, seed + 1))


@pytest.mark.parametrize("models", [0, 1, 3])
def test_keep_matrix_needs_an_even_number_of_models(models: int) -> None:
    with pytest.raises(ValueError, match="even"):
        online_keep_matrix(models, 10, 0)


def test_online_plan_splits_the_audit_set_in_halves() -> None:
    plan = online_plan(count=4, n_audit=50, n_population=100, train_size=40, seed=0)
    assert (plan.in_audit.sum(axis=0) == 2).all()
    assert len(plan.population_rows) == 2 * 40 - 50  # topped up to twice train_size
    pooled = plan.in_population[:, plan.population_rows]
    assert (pooled.sum(axis=0) == 2).all()
    assert not plan.in_population[:, np.setdiff1d(np.arange(100), plan.population_rows)].any()
    for j, job in enumerate(plan.jobs):
        rows = np.concatenate([np.flatnonzero(plan.in_audit[j]), 50 + np.flatnonzero(pooled[j])])
        np.testing.assert_array_equal(np.sort(job.index), rows)
    assert len({job.seed for job in plan.jobs}) == 4


def test_offline_models_are_the_same_whatever_the_set_size() -> None:
    two = offline_plan(count=2, n_audit=10, n_population=60, train_size=25, seed=3)
    four = offline_plan(count=4, n_audit=10, n_population=60, train_size=25, seed=3)
    for small, large in zip(two.jobs, four.jobs[:2], strict=True):
        np.testing.assert_array_equal(small.index, large.index)
        assert small.seed == large.seed
    assert not four.in_audit.any()
    for j, job in enumerate(four.jobs):
        assert len(job.index) == 25 and len(np.unique(job.index)) == 25
        np.testing.assert_array_equal(np.flatnonzero(four.in_population[j]), job.index)


def test_model_cache_round_trip_and_torn_file(tmp_path: Path) -> None:
    import torch

    cache = model_store(tmp_path)
    state = {"w": torch.arange(4.0)}
    cache.put("ab" * 32, state)
    assert "ab" * 32 in cache
    loaded = cache.get("ab" * 32)
    assert loaded is not None and torch.equal(loaded["w"], state["w"])
    cache.path("cd" * 32).parent.mkdir(parents=True, exist_ok=True)
    cache.path("cd" * 32).write_bytes(b"torn")
    assert cache.get("cd" * 32) is None and "cd" * 32 not in cache


