"""The floor policy: the least a run may audit, from a file the pull request cannot change.

A floor is a policy-like YAML file (docs/floor.md) kept where the audited party has no write
access (the workflow's repository, an organisation's policy repository). It lists the attacks
that must run, the gate conditions, the statistics, the audit size, the preconditions and the
recipe fields it pins; the policy may only be stricter (`floor_rules`). `--floor-max-auc` and
`--floor-max-tpr-at-fpr` build the same floor with only a gate (or tighten a file's gate).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from mia_audit.errors import PolicyError
from mia_audit.evaluation.settings import StatisticsSpec
from mia_audit.gate.spec import GateSpec, MetricLimit, TprLimit
from mia_audit.policy._yaml import load_yaml
from mia_audit.policy.floor import GateFloor
from mia_audit.policy.messages import describe_problems
from mia_audit.policy.run import Preconditions
from mia_audit.policy.schema import AttackEntry
from mia_audit.references.settings import ReferenceTraining
from mia_audit.settings import StrictModel


class FloorModel(StrictModel):
    """`model:` of a floor: the output kind the audit must read (or `auto`)."""

    outputs: Literal["auto", "logits", "probabilities", "labels"] = Field(
        "auto",
        description="The policy must declare this kind or `auto`; under any floor a declared "
        "kind weaker than what the probe detects is refused.",
    )


class FloorData(StrictModel):
    """`data:` of a floor: the least audit size."""

    max_per_side: int | None = Field(
        None,
        ge=1,
        description="The audit needs at least this many members and non-members: the policy's "
        "data.max_per_side may not be lower, and the data must hold that many.",
    )


class FloorRuntime(StrictModel):
    """`runtime:` of a floor: the seed, when the pull request may not choose it."""

    seed: int | None = Field(
        None, ge=0, description="The policy's runtime.seed must be this (no seed shopping)."
    )


class FloorSpec(StrictModel):
    """A floor file (version 1): every section optional but `gate`."""

    version: Literal[1]
    name: str | None = Field(None, max_length=200)
    model: FloorModel = FloorModel()
    data: FloorData = FloorData()
    runtime: FloorRuntime = FloorRuntime()
    attacks: tuple[AttackEntry, ...] = ()
    gate: GateSpec
    preconditions: Preconditions = Field(default_factory=Preconditions)
    statistics: StatisticsSpec = Field(default_factory=StatisticsSpec)
    reference_training: ReferenceTraining = Field(default_factory=ReferenceTraining)

    @model_validator(mode="after")
    def _waives_nothing(self) -> FloorSpec:
        if self.gate.suppressions:
            raise ValueError("gate.suppressions: a floor waives nothing; remove them")
        if self.gate.baseline is not None or self.gate.needs_baseline:
            raise ValueError(
                "gate: a floor cannot hold *_increase conditions or a baseline (the policy's "
                "baseline is the audited party's to choose); use absolute limits"
            )
        return self

    @property
    def pinned_recipe(self) -> dict[str, Any]:
        """The `reference_training` fields the floor sets, with their values."""
        recipe = self.reference_training
        return {key: getattr(recipe, key) for key in sorted(recipe.model_fields_set)}


@dataclass(frozen=True)
class Floor:
    """A floor as the run enforces it: its spec, where it came from, and its sha256.

    `source` names it in messages (`the floor (floor.yaml)`); `options` maps a gate condition
    set by a command-line shorthand to that option, which its messages name instead.
    """

    spec: FloorSpec
    source: str
    sha256: str
    path: str | None = None
    options: dict[str, str] = field(default_factory=dict)

    def origin(self, condition: str) -> str:
        """Who set a gate condition: the file, or the command-line option."""
        option = self.options.get(condition)
        return f"the workflow's floor ({option})" if option else self.source


def load_floor(path: Path) -> Floor:
    """Read and validate a floor file (exit 2 naming the file, line and key)."""
    try:
        document, lines = load_yaml(path)
    except PolicyError as error:  # "policy file not found" would name the wrong file's role
        raise PolicyError(f"--floor: {error}".replace("policy file", "floor file")) from None
    if not isinstance(document, dict):
        raise PolicyError(
            f"--floor: {path}: a floor is a YAML mapping (version, attacks, gate, ...)"
        )
    try:
        spec = FloorSpec.model_validate(document, context={"base_dir": path.resolve().parent})
    except ValidationError as error:
        problems = describe_problems(error, f"--floor {path}", lines, FloorSpec)
        raise PolicyError.listing(problems) from None
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return Floor(spec, f"the floor ({path.name})", digest, str(path.resolve()))


def with_gate_options(floor: Floor | None, options: GateFloor) -> Floor | None:
    """The floor with the `--floor-max-*` shorthands applied: they build a floor with only a
    gate, or tighten the file's (the stricter limit of the two holds)."""
    if not options:
        return floor
    gate = floor.spec.gate if floor else None
    named: dict[str, str] = dict(floor.options) if floor else {}
    max_auc = gate.max_auc if gate else None
    if options.max_auc is not None and (max_auc is None or options.max_auc < max_auc.max):
        base = max_auc or MetricLimit(max=options.max_auc)
        max_auc = base.model_copy(update={"max": options.max_auc, "attacks": None})
        named["auc"] = f"--floor-max-auc {options.max_auc:g}"
    tpr = {limit.fpr: limit for limit in (gate.max_tpr_at_fpr if gate else ())}
    for wanted in options.max_tpr_at_fpr:
        known = next((f for f in tpr if abs(f - wanted.fpr) < 1e-12), None)
        if known is None or wanted.max < tpr[known].max:
            base = tpr.pop(known) if known is not None else TprLimit(max=wanted.max, fpr=wanted.fpr)
            tpr[wanted.fpr] = base.model_copy(update={"max": wanted.max, "attacks": None})
            named[str(_tpr_id(wanted.fpr))] = wanted.option
    values = gate.model_dump() if gate else {}
    values |= {"max_auc": max_auc, "max_tpr_at_fpr": tuple(tpr.values())}
    new_gate = GateSpec.model_validate(values)
    if floor is None:
        spec = FloorSpec(version=1, gate=new_gate)
        return Floor(spec, "the workflow's floor", _spec_sha256(spec), None, named)
    spec = floor.spec.model_copy(update={"gate": new_gate})
    return Floor(spec, floor.source, _spec_sha256(spec, floor.sha256), floor.path, named)


def _tpr_id(fpr: float) -> str:
    from mia_audit.gate.spec import ConditionId

    return str(ConditionId("tpr_at_fpr", fpr))


def _spec_sha256(spec: FloorSpec, file_sha256: str | None = None) -> str:
    """A floor built from options has no file: its sha256 is that of its canonical JSON (with
    the file's sha256, when options tightened a file)."""
    document: dict[str, Any] = {"floor": spec.model_dump(mode="json")}
    if file_sha256:
        document["file_sha256"] = file_sha256
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
