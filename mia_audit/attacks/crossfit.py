"""Cross-fitting: every sample is scored by a model fitted on the other folds only."""

from __future__ import annotations

import numpy as np


def stratified_folds(
    is_member: np.ndarray, n_folds: int, random_state: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Seeded stratified K-fold split on membership: a list of (train_index, test_index)."""
    n_members, n_non_members = int(is_member.sum()), int((~is_member).sum())
    if min(n_members, n_non_members) < n_folds:
        raise ValueError(
            f"cross-fitting with {n_folds} folds needs at least {n_folds} members and "
            f"non-members (have {n_members} and {n_non_members})"
        )
    rng = np.random.default_rng(random_state)
    fold_of = np.empty(len(is_member), dtype=np.int64)
    for side in (True, False):
        index = np.flatnonzero(is_member == side)
        fold_of[rng.permutation(index)] = np.arange(len(index)) % n_folds
    everything = np.arange(len(is_member))
    return [(everything[fold_of != k], everything[fold_of == k]) for k in range(n_folds)]
