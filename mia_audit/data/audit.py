"""The audit set: members and non-members (balanced, seeded), plus population data.

Pure: takes image sets, returns index choices and the assembled arrays; no file I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mia_audit.data.images import ImageSet, as_float01
from mia_audit.errors import InputError


@dataclass(frozen=True)
class AuditSet:
    """Audit samples (members first, then non-members) and the population, if any."""

    images: np.ndarray
    labels: np.ndarray
    is_member: np.ndarray
    ids: np.ndarray
    population: ImageSet | None
    population_origin: str | None
    class_names: tuple[str, ...] | None
    notes: tuple[str, ...] = field(default=())

    @property
    def n_members(self) -> int:
        return int(self.is_member.sum())

    @property
    def n_non_members(self) -> int:
        return int((~self.is_member).sum())

    @property
    def num_classes_seen(self) -> int:
        labels = [self.labels] + ([self.population.labels] if self.population else [])
        return int(max(int(part.max()) for part in labels)) + 1


@dataclass(frozen=True)
class SamplingOptions:
    seed: int
    balance: bool = True
    max_per_side: int | None = None
    #: Population samples needed by reference-model attacks (0 when none are run).
    population_needed: int = 0
    #: The fewest audit samples per side worth auditing.
    min_per_side: int = 2


def split_by_membership(audit: ImageSet) -> tuple[ImageSet, ImageSet]:
    """Members and non-members of one file that carries a membership field."""
    if audit.membership is None:
        raise InputError(
            f"{audit.source}: has no membership field; give one (1 = member, 0 = non-member) "
            "or use data.members and data.non_members"
        )
    members = audit.subset(np.flatnonzero(audit.membership))
    non_members = audit.subset(np.flatnonzero(~audit.membership))
    for side, part in (("members", members), ("non-members", non_members)):
        if len(part) == 0:
            raise InputError(f"{audit.source}: has no {side}; an audit needs both")
    return members, non_members


def build_audit_set(
    members: ImageSet,
    non_members: ImageSet,
    population: ImageSet | None,
    options: SamplingOptions,
) -> AuditSet:
    """Subsample (seeded), balance, and split population off the non-members if needed."""
    _check_shapes(members, non_members, population)
    rng = np.random.default_rng(options.seed)
    notes: list[str] = []
    member_index = _cap(rng, len(members), options.max_per_side, "members", notes)
    non_member_index = rng.permutation(len(non_members))
    origin = "policy" if population is not None else None
    if population is None and options.population_needed:
        population, non_member_index = _split_population(
            non_members, non_member_index, len(member_index), options, notes
        )
        origin = "split_from_non_members"
    non_member_index = non_member_index[: options.max_per_side or len(non_member_index)]
    if options.max_per_side and len(non_members) > options.max_per_side:
        notes.append(f"non-members subsampled to {options.max_per_side} (data.max_per_side)")
    if options.balance:
        member_index, non_member_index = _balance(rng, member_index, non_member_index, notes)
    _check_enough(len(member_index), len(non_member_index), options.min_per_side)
    chosen_members = members.subset(np.sort(member_index))
    chosen_non_members = non_members.subset(np.sort(non_member_index))
    return _assemble(chosen_members, chosen_non_members, population, origin, notes)


def _check_shapes(members: ImageSet, non_members: ImageSet, population: ImageSet | None) -> None:
    reference = members.image_shape
    for part in (non_members, population):
        if part is not None and part.image_shape != reference:
            raise InputError(
                f"{part.source}: images have shape {part.image_shape} (C, H, W) but the "
                f"members have {reference}; all data must share one image shape"
            )


def _cap(
    rng: np.random.Generator, n: int, cap: int | None, side: str, notes: list[str]
) -> np.ndarray:
    index = rng.permutation(n)
    if cap is not None and n > cap:
        notes.append(f"{side} subsampled from {n} to {cap} (data.max_per_side)")
        return index[:cap]
    return index


def _split_population(
    non_members: ImageSet,
    shuffled: np.ndarray,
    n_members: int,
    options: SamplingOptions,
    notes: list[str],
) -> tuple[ImageSet, np.ndarray]:
    """Take population samples off the non-members, keeping at least min_per_side for audit."""
    available = len(shuffled) - options.min_per_side
    if available < options.population_needed:
        raise InputError(
            f"reference-model attacks need {options.population_needed} population samples, "
            f"but no data.population is given and only {len(shuffled)} non-members exist "
            f"(at least {options.min_per_side} must stay in the audit set); add "
            "data.population with more held-out samples or lower reference_training.train_size"
        )
    taken = shuffled[: options.population_needed]
    notes.append(
        f"no data.population given: {len(taken)} of {len(shuffled)} non-members were split off "
        "as population for reference models (they are not audited)"
    )
    return non_members.subset(np.sort(taken)), shuffled[options.population_needed :]


def _balance(
    rng: np.random.Generator, members: np.ndarray, non_members: np.ndarray, notes: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    size = min(len(members), len(non_members))
    if len(members) > size:
        notes.append(f"members subsampled from {len(members)} to {size} to balance the audit set")
        members = rng.permutation(members)[:size]
    if len(non_members) > size:
        notes.append(
            f"non-members subsampled from {len(non_members)} to {size} to balance the audit set"
        )
        non_members = rng.permutation(non_members)[:size]
    return members, non_members


def _check_enough(n_members: int, n_non_members: int, minimum: int) -> None:
    if min(n_members, n_non_members) < minimum:
        raise InputError(
            f"the audit set has {n_members} members and {n_non_members} non-members; "
            f"at least {minimum} of each are needed"
        )


def _assemble(
    members: ImageSet,
    non_members: ImageSet,
    population: ImageSet | None,
    origin: str | None,
    notes: list[str],
) -> AuditSet:
    class_names = members.class_names or non_members.class_names
    parts = [members.images, non_members.images]
    if parts[0].dtype != parts[1].dtype:
        parts = [as_float01(part) for part in parts]
    return AuditSet(
        images=np.concatenate(parts),
        labels=np.concatenate([members.labels, non_members.labels]),
        is_member=np.concatenate(
            [np.ones(len(members), dtype=bool), np.zeros(len(non_members), dtype=bool)]
        ),
        ids=np.concatenate([members.ids, non_members.ids]),
        population=population,
        population_origin=origin,
        class_names=class_names,
        notes=tuple(notes),
    )
