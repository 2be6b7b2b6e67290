"""Load the policy's data files into the audit set (members, non-members, population), with
the checks that need every sample: disjoint sides, class names, the population reference
attacks need.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from mia_audit.data.audit import AuditSet, SamplingOptions, build_audit_set, split_by_membership
from mia_audit.data.formats import load_image_set
from mia_audit.data.images import ImageSet
from mia_audit.errors import (
    InputError,
)
from mia_audit.pipeline import preconditions
from mia_audit.policy.schema import Policy
from mia_audit.result import (
    DataSource,
    PolicyInfo,
)
from mia_audit.store.hashing import path_sha256

if TYPE_CHECKING:
    from mia_audit.models.loading import LoadedModel
    from mia_audit.policy.floor_file import Floor


@dataclass(frozen=True)
class AuditInputs:
    """What an audit runs on: the policy, where it came from, and how to load the target and
    the data sets (called inside the run, so their errors and time count as the run's).

    `load_model(device)` gives the target; `load_sets()` the image sets as loaded.
    `search_path` is where `module:function` factories are looked up. `floor`, when given,
    is checked before anything loads and again on the audit set and the probe batch.
    """

    policy: Policy
    origin: PolicyInfo
    search_path: Path | None
    load_model: Callable[[str], LoadedModel]
    load_sets: Callable[[], LoadedSets]
    #: The workflow's floor (docs/floor.md): the policy may only be stricter.
    floor: Floor | None = None


def population_requirement(policy: Policy) -> Callable[[int], int]:
    """Population samples the policy's attacks need, as a function of the number of members
    (the default train_size)."""

    def needed(n_members: int) -> int:
        train_size = policy.reference_training.train_size or n_members
        return max(
            (attack.population_needed(train_size) for attack in policy.reference_attacks), default=0
        )

    return needed


def check_population(policy: Policy, n_members: int, population: ImageSet | None) -> None:
    """A given population must hold what every reference attack needs (a split one does)."""
    size = 0 if population is None else len(population)
    train_size = policy.reference_training.train_size or n_members
    for attack in policy.reference_attacks:
        needed = attack.population_needed(train_size)
        if needed > size:
            where = f"data.population: {population.source}" if population else "data.population"
            raise InputError(
                f"{where}: has {size} samples but attack {attack.label!r} needs {needed}: its "
                f"models train on {train_size} samples each (reference_training.train_size, "
                "default the number of members); add population data or lower train_size"
            )


@dataclass(frozen=True)
class AuditData:
    audit_set: AuditSet
    sources: dict[str, DataSource]
    #: The image sets as loaded (before subsampling), by policy field: for checks whose
    #: errors must name the file, and that must see every sample.
    parts: dict[str, ImageSet] = field(default_factory=dict)
    #: Members given (after data.max_per_side, before balancing): the default train_size of
    #: reference models.
    members_available: int = 0

    def largest_label(self) -> tuple[int, str]:
        """The largest label in any file, and that file (`data.<field>: <path>`)."""
        found = [(int(part.labels.max()), part.source) for part in self.parts.values() if len(part)]
        return max(found, default=(self.audit_set.num_classes_seen - 1, "data"))


@dataclass(frozen=True)
class LoadedSets:
    """The image sets of an audit, as loaded (before sampling), with their provenance.

    `parts` maps the source field (`members`, `non_members`, `audit`, `population`) to the set
    it held; `sources` to its path and hash. `single_file`: members and non-members came from
    one file with a membership field (their overlap then cannot be a same-file mistake).
    """

    members: ImageSet
    non_members: ImageSet
    population: ImageSet | None
    sources: dict[str, DataSource]
    parts: dict[str, ImageSet]
    single_file: bool = False


def load_data_files(policy: Policy) -> LoadedSets:
    """Read the data files the policy names (errors name the field and the file)."""
    spec = policy.data
    sources: dict[str, DataSource] = {}
    parts: dict[str, ImageSet] = {}

    def load(path: Path, field: str) -> ImageSet:
        image_set = load_image_set(path, allow_pickle=spec.allow_pickle, field=f"data.{field}")
        sources[field] = DataSource(
            path=str(path), sha256=path_sha256(path), n_samples=len(image_set)
        )
        parts[field] = image_set
        return image_set

    if spec.audit is not None:
        members, non_members = split_by_membership(load(spec.audit, "audit"))
    else:
        assert spec.members is not None and spec.non_members is not None
        members, non_members = load(spec.members, "members"), load(spec.non_members, "non_members")
    population = load(spec.population, "population") if spec.population else None
    return LoadedSets(members, non_members, population, sources, parts, spec.audit is not None)


def load_audit_data(policy: Policy, population_needed: int | Callable[[int], int] = 0) -> AuditData:
    """Load the policy's data files and build the audit set (`build_audit_data`)."""
    return build_audit_data(policy, load_data_files(policy), population_needed)


def build_audit_data(
    policy: Policy, loaded: LoadedSets, population_needed: int | Callable[[int], int] = 0
) -> AuditData:
    """Check the sets are disjoint, sample and balance the audit set, split off a population.

    `population_needed` is the population the reference-model attacks need, or a function of
    the number of members available (after data.max_per_side), their default train_size.
    """
    spec = policy.data
    members, non_members, population = loaded.members, loaded.non_members, loaded.population
    overlap_notes = _check_disjoint(policy, loaded)
    members_available = min(len(members), spec.max_per_side or len(members))
    if callable(population_needed):
        population_needed = population_needed(members_available)
    options = SamplingOptions(
        seed=policy.runtime.seed,
        balance=spec.balance,
        max_per_side=spec.max_per_side,
        population_needed=population_needed,
    )
    audit_set = build_audit_set(members, non_members, population, options)
    audit_set = replace(audit_set, notes=(*overlap_notes, *audit_set.notes))
    data = AuditData(audit_set, loaded.sources, loaded.parts, members_available)
    if spec.class_names is not None:
        data = _with_class_names(data, spec.class_names)
    return data


def _check_disjoint(policy: Policy, loaded: LoadedSets) -> list[str]:
    """The sides (and the population) must be different data; see preconditions."""
    if loaded.single_file:
        sets = {
            "data.audit (members)": loaded.members,
            "data.audit (non-members)": loaded.non_members,
        }
        digests = {}
    else:
        sets = {"data.members": loaded.members, "data.non_members": loaded.non_members}
        digests = {f"data.{k}": v.sha256 for k, v in loaded.sources.items()}
    if loaded.population is not None:
        sets["data.population"] = loaded.population
        digests["data.population"] = loaded.sources["population"].sha256
    return preconditions.check_disjoint(sets, digests, policy.preconditions.max_shared_fraction)


def _with_class_names(data: AuditData, names: tuple[str, ...]) -> AuditData:
    label, source = data.largest_label()
    if label >= len(names):
        raise InputError(
            f"{source}: label {label} is out of range: data.class_names lists {len(names)} "
            f"names, so labels must be 0..{len(names) - 1}; fix the labels or data.class_names"
        )
    return replace(data, audit_set=replace(data.audit_set, class_names=names))
