"""The audit policy: what to audit, with which attacks, and which thresholds must hold.

The YAML format is a contract (docs/policy.md): keys may be added, never renamed. Validation is
strict: an unknown key is an error, so a typo cannot silently switch a condition off.
"""

from __future__ import annotations

import typing
from typing import Any, Literal

from pydantic import (
    ConfigDict,
    Field,
    model_validator,
)

from mia_audit.attacks.config import AttackConfig
from mia_audit.attacks.reference_base import ReferenceAttackConfig
from mia_audit.attacks.registry import attack_config_union, attack_names, reference_attack_names
from mia_audit.data.settings import DataSpec
from mia_audit.evaluation.settings import StatisticsSpec
from mia_audit.gate.spec import GateSpec
from mia_audit.models.settings import ModelSpec, PreprocessingEntry
from mia_audit.policy.run import Preconditions, RuntimeSpec
from mia_audit.references.settings import ReferenceTraining
from mia_audit.reports.settings import OutputSpec
from mia_audit.settings import JsonSchema, StrictModel, plugin_entry

POLICY_VERSION = 1


if typing.TYPE_CHECKING:
    # The union is built at run time from the registry; to the type checker every entry is
    # an AttackConfig.
    AttackEntry = AttackConfig
else:
    AttackEntry = plugin_entry(attack_config_union(), "name", attack_names)


def _reference_architecture_rule(schema: JsonSchema) -> None:
    """JSON Schema of `_check_reference_architecture`: a reference attack needs an
    architecture, in `model` or in `reference_training`."""
    names = reference_attack_names()
    entry = {"type": "object", "properties": {"name": {"enum": names}}, "required": ["name"]}
    schema["if"] = {
        "required": ["attacks"],
        "properties": {"attacks": {"contains": {"anyOf": [{"enum": names}, entry]}}},
    }
    schema["then"] = {
        "anyOf": [
            {"properties": {"model": {"required": ["architecture"]}}},
            {
                "required": ["reference_training"],
                "properties": {"reference_training": {"required": ["architecture"]}},
            },
        ]
    }


class Policy(StrictModel):
    """A whole audit policy (version 1)."""

    model_config = ConfigDict(json_schema_extra=_reference_architecture_rule)

    version: Literal[1] = Field(description="Policy format version.")
    name: str = Field(min_length=1, max_length=200)
    model: ModelSpec
    data: DataSpec
    preprocessing: PreprocessingEntry = Field(
        description="mean and std (0..1 scale) the model expects, or `none` when it "
        "normalises inside; required."
    )
    attacks: tuple[AttackEntry, ...] = Field(min_length=1)
    gate: GateSpec = Field(description="Conditions that must hold; at least one.")
    preconditions: Preconditions = Field(
        default_factory=Preconditions,
        description="Checks before any verdict; relax only for smoke tests.",
    )
    outputs: OutputSpec = OutputSpec()
    runtime: RuntimeSpec = RuntimeSpec()
    statistics: StatisticsSpec = Field(
        default_factory=StatisticsSpec,
        description="Confidence intervals, the epsilon lower bound and the FPR support rule.",
    )
    reference_training: ReferenceTraining = Field(
        default_factory=ReferenceTraining,
        description="The recipe for reference and shadow models (lira, rmia, shadow).",
    )

    @model_validator(mode="before")
    @classmethod
    def _sections_with_folders(cls, data: Any) -> Any:
        """Validate omitted `runtime` and `outputs` too, so that their default folders resolve
        against the policy's folder like every written path (not the working directory)."""
        if isinstance(data, dict):
            return {"runtime": {}, "outputs": {}, **data}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        self._check_reference_architecture()
        ids = [attack.label for attack in self.attacks]
        duplicates = sorted({label for label in ids if ids.count(label) > 1})
        if duplicates:
            raise ValueError(
                f"attack {duplicates[0]!r} is listed twice: give each entry a distinct `id`"
            )
        for scope in self._gate_scopes():
            unknown = [name for name in scope if name not in ids]
            if unknown:
                raise ValueError(
                    f"gate names attack {unknown[0]!r}, which the policy does not run "
                    f"(attacks: {', '.join(ids)})"
                )
        return self

    def _check_reference_architecture(self) -> None:
        """Reference models are trained here: an ONNX or TorchScript target does not say its
        architecture, so the policy must."""
        users = [attack.label for attack in self.reference_attacks]
        if users and not (self.reference_training.architecture or self.model.architecture):
            raise ValueError(
                f"reference_training.architecture: attack {users[0]!r} trains reference models, "
                "but neither reference_training.architecture nor model.architecture names "
                "their architecture (an ONNX or TorchScript target does not say); set one, "
                "e.g. resnet18 or a 'module:function' factory"
            )

    @property
    def reference_attacks(self) -> tuple[ReferenceAttackConfig, ...]:
        """The attacks that need reference or shadow models."""
        return tuple(a for a in self.attacks if isinstance(a, ReferenceAttackConfig))

    def _gate_scopes(self) -> list[tuple[str, ...]]:
        """Every list of attack ids the gate names (condition scopes and suppressions)."""
        scopes = [limit.attacks for _, limit in self.gate.limits() if limit.attacks]
        waived = [(s.attack,) for s in self.gate.suppressions if s.attack is not None]
        return [*([self.gate.attacks] if self.gate.attacks else []), *scopes, *waived]

    @property
    def attack_labels(self) -> tuple[str, ...]:
        return tuple(attack.label for attack in self.attacks)

    def attack(self, label: str) -> AttackConfig:
        return next(attack for attack in self.attacks if attack.label == label)
