"""The result of an audit: the versioned schema of result.json (design.md §7, §12).

Reports in every format render from this one object, so `mia-audit render result.json`
reproduces them without re-running attacks.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1


class ResultModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ToolInfo(ResultModel):
    name: str = "mia-audit"
    version: str


class PolicyInfo(ResultModel):
    name: str
    path: str
    sha256: str
    document: dict[str, Any] = Field(description="The policy as written.")


class Accuracy(ResultModel):
    members: float
    non_members: float


class TargetInfo(ResultModel):
    path: str
    format: str
    sha256: str
    architecture: str | None = None
    factory: str | None = Field(None, description="User code the policy named, if any.")
    num_classes: int
    engine: str
    precision: str
    accuracy: Accuracy


class DataSource(ResultModel):
    path: str
    sha256: str
    n_samples: int


class DataInfo(ResultModel):
    n_members: int
    n_non_members: int
    n_population: int = 0
    population_origin: str | None = None
    image_shape: list[int]
    sha256: str = Field(description="Hash of the audit set's images and labels.")
    sources: dict[str, DataSource]
    class_names: list[str] | None = None
    notes: list[str] = []


class Roc(ResultModel):
    fpr: list[float]
    tpr: list[float]


class Histogram(ResultModel):
    bin_edges: list[float]
    members: list[int]
    non_members: list[int]


class ClassBreakdown(ResultModel):
    label: int
    name: str | None = None
    n_members: int
    n_non_members: int
    auc: float | None = Field(None, description="None when a side has no samples.")
    tpr_at_fpr: dict[str, float | None] = {}


class VulnerableSample(ResultModel):
    id: str
    label: int
    score: float
    non_members_below: float = Field(
        description="Fraction of non-members scoring lower: 1.0 means it stands out from all."
    )


class AttackResult(ResultModel):
    name: str
    id: str
    summary: str = ""
    parameters: dict[str, Any] = {}
    auc: float
    tpr_at_fpr: dict[str, float]
    tpr_at_fpr_supported: dict[str, bool]
    balanced_accuracy: float
    advantage: float
    roc: Roc
    score_histogram: Histogram
    per_class: list[ClassBreakdown] = []
    most_vulnerable: list[VulnerableSample] = []
    seconds: float = 0.0


class Condition(ResultModel):
    metric: str = Field(description="auc, tpr_at_fpr or advantage.")
    fpr: float | None = None
    attack: str = Field(description="The attack that decides: the worst in scope.")
    value: float
    threshold: float
    passed: bool
    statistic: str = "point"
    per_attack: dict[str, float] = {}
    description: str


class GateResult(ResultModel):
    passed: bool
    conditions: list[Condition]


class Environment(ResultModel):
    device: str
    engine: str
    precision: str
    gpu: str | None = None
    python: str
    platform: str
    cpu_count: int
    versions: dict[str, str]


class Result(ResultModel):
    schema_version: int = SCHEMA_VERSION
    tool: ToolInfo
    passed: bool
    exit_code: int
    seed: int
    policy: PolicyInfo
    target: TargetInfo
    data: DataInfo
    attacks: list[AttackResult]
    gate: GateResult
    environment: Environment
    timings: dict[str, float] = Field(description="Seconds per phase.")
    notes: list[str] = []

    def attack(self, attack_id: str) -> AttackResult:
        return next(a for a in self.attacks if a.id == attack_id)

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2, allow_nan=False) + "\n"


def result_json_schema() -> dict[str, Any]:
    schema = Result.model_json_schema(mode="serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "mia-audit result"
    return schema


def strongest_attack(result: Result, fpr: str = "0.05") -> AttackResult:
    """The attack with the highest TPR at `fpr` (AUC breaks ties): the headline figure."""
    return max(result.attacks, key=lambda a: (a.tpr_at_fpr.get(fpr, 0.0), a.auc))
