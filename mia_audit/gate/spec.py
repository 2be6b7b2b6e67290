"""The policy's `gate:` section: conditions (limits on metrics, baselines), suppressions, and
`ConditionId`, the value that names a condition.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)

from mia_audit.evaluation.metrics import fpr_key
from mia_audit.settings import JsonSchema, JsonShorthand, PolicyPath, StrictModel


def _scalar_limit(value: Any) -> Any:
    return (
        {"max": value} if isinstance(value, int | float) and not isinstance(value, bool) else value
    )


def _one_or_many(value: Any) -> Any:
    return (
        [value] if isinstance(value, dict | int | float) and not isinstance(value, bool) else value
    )


class MetricLimit(StrictModel):
    """A metric that must stay at or below `max` for every attack in scope."""

    max: float = Field(ge=0, le=1)
    statistic: Literal["point", "upper"] = Field(
        "point", description="Gate on the point estimate or the upper confidence bound."
    )
    attacks: tuple[str, ...] | None = Field(None, description="Attack ids in scope (default all).")


class TprLimit(MetricLimit):
    """TPR at a false-positive rate must stay at or below `max`."""

    fpr: float = Field(0.05, ge=0, lt=1)


#: JSON Schema of a bare limit (`max_auc: 0.6`) and of a TPR list's shorthands.
_UNIT_LIMIT: JsonSchema = {"type": "number", "minimum": 0, "maximum": 1}
_BOUND_LIMIT: JsonSchema = {"type": "number", "minimum": 0}


def _limits_shorthands(schema: JsonSchema) -> JsonSchema:
    """A list of limits, one limit, or bare numbers (`max_tpr_at_fpr: 0.1`)."""
    item = schema.get("items", {})
    one = {"anyOf": [_UNIT_LIMIT, item]}
    return {"anyOf": [_UNIT_LIMIT, item, {"type": "array", "items": one}]}


ScalarLimit = Annotated[MetricLimit, BeforeValidator(_scalar_limit), JsonShorthand(_UNIT_LIMIT)]


def _tpr_limits(value: Any) -> Any:
    items = _one_or_many(value)
    if isinstance(items, list):
        return [_tpr_limit_item(item) for item in items]
    return items


def _tpr_limit_item(item: Any) -> Any:
    return {"max": item} if isinstance(item, int | float) and not isinstance(item, bool) else item


TprLimits = Annotated[
    tuple[TprLimit, ...],
    BeforeValidator(_tpr_limits),
    JsonShorthand(_limits_shorthands, replace=True),
]


def _point_only(value: Any) -> Any:
    if value == "upper":
        raise ValueError(
            "statistic 'upper' does not apply here: the epsilon lower bound is already a "
            "Clopper-Pearson confidence bound (at statistics.confidence_level); use 'point'"
        )
    return value


class EpsilonLimit(StrictModel):
    """The empirical epsilon lower bound must stay at or below `max` for every attack in scope."""

    max: float = Field(ge=0, description="Largest allowed epsilon lower bound (natural log).")
    statistic: Annotated[Literal["point"], BeforeValidator(_point_only)] = Field(
        "point",
        description="Only `point`: the bound is itself a one-sided confidence bound.",
    )
    attacks: tuple[str, ...] | None = Field(None, description="Attack ids in scope (default all).")


class ClassAucLimit(MetricLimit):
    """AUC within every class slice must stay at or below `max`; the strongest class decides."""

    min_samples: int | None = Field(
        None,
        ge=1,
        description=(
            "Classes with fewer members or fewer non-members than this are reported but not "
            "gated (their AUC is mostly noise). Default: the minimum an AUC condition needs "
            "(docs/preconditions.md); lower values need preconditions.allow_small_audit."
        ),
    )


class IncreaseLimit(StrictModel):
    """A metric may rise by at most `max` over the baseline result, per attack."""

    max: float = Field(ge=0, le=1, description="Largest allowed increase over the baseline.")
    attacks: tuple[str, ...] | None = Field(None, description="Attack ids in scope (default all).")


class TprIncreaseLimit(IncreaseLimit):
    """TPR at a false-positive rate may rise by at most `max` over the baseline."""

    fpr: float = Field(0.05, ge=0, lt=1)


def _non_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty: say why the condition is waived")
    return value


class Suppression(StrictModel):
    """Waive a failing condition until a date, for a stated reason; it stays in the reports."""

    condition: str = Field(
        min_length=1,
        description=(
            "The condition's id (e.g. `auc`, `tpr_at_fpr@0.05`, `epsilon_lower_bound`) or "
            "its metric, which matches every condition on it (e.g. `tpr_at_fpr`)."
        ),
    )
    attack: str | None = Field(
        None, description="Waive only this attack's failure (default: any attack's)."
    )
    reason: Annotated[str, AfterValidator(_non_blank)] = Field(
        description="Why the failure is accepted (shown in every report)."
    )
    expires: date = Field(
        description="Last day the waiver applies (YYYY-MM-DD, UTC); afterwards it fails again."
    )

    def matches(self, condition: ConditionId) -> bool:
        """Whether this suppression names `condition`, by its id or by its metric."""
        return self.condition in (str(condition), condition.metric)


@dataclass(frozen=True)
class ConditionId:
    """Which condition: its metric and, for TPR conditions, the FPR.

    `str()` gives the id that reports, suppressions and `result.json` use (`auc`,
    `tpr_at_fpr@0.05`, `tpr_at_fpr_increase@0.01`); code compares the fields, never the text.
    """

    metric: str
    fpr: float | None = None

    def __str__(self) -> str:
        return self.metric if self.fpr is None else f"{self.metric}@{fpr_key(self.fpr)}"

    @property
    def field(self) -> str:
        """The policy key that sets it, e.g. `gate.max_tpr_at_fpr`."""
        return f"gate.max_{self.metric}"

    @property
    def is_increase(self) -> bool:
        return self.metric.endswith("_increase")

    @property
    def compared(self) -> ConditionId:
        """What a baseline condition compares (`tpr_at_fpr_increase@x` -> `tpr_at_fpr@x`)."""
        return ConditionId(self.metric.removesuffix("_increase"), self.fpr)


#: Any condition of the gate, as `GateSpec.limits` lists it.
GateLimit = MetricLimit | EpsilonLimit | IncreaseLimit


#: Keys of the gate's conditions (the JSON Schema requires one of them).
_SINGLE_CONDITIONS = (
    "max_auc",
    "max_advantage",
    "max_epsilon_lower_bound",
    "max_class_auc",
    "max_auc_increase",
)
_LIST_CONDITIONS = ("max_tpr_at_fpr", "max_tpr_at_fpr_increase")


def _some_condition(schema: JsonSchema) -> None:
    """JSON Schema of `_known_conditions`: at least one condition (an empty list is none)."""
    present: list[JsonSchema] = [{"required": [key]} for key in _SINGLE_CONDITIONS]
    present += [
        {"required": [key], "properties": {key: {"not": {"type": "array", "maxItems": 0}}}}
        for key in _LIST_CONDITIONS
    ]
    schema["anyOf"] = present


class GateSpec(StrictModel):
    """Conditions that must hold for the audit to pass."""

    model_config = ConfigDict(json_schema_extra=_some_condition)

    attacks: tuple[str, ...] | None = Field(
        None, description="Attack ids the conditions apply to by default (default: all)."
    )
    max_auc: ScalarLimit | None = None
    max_tpr_at_fpr: TprLimits = ()
    max_advantage: ScalarLimit | None = None
    max_epsilon_lower_bound: (
        Annotated[EpsilonLimit, BeforeValidator(_scalar_limit), JsonShorthand(_BOUND_LIMIT)] | None
    ) = Field(None, description="Limit on the empirical epsilon lower bound (statistics.delta).")
    max_class_auc: (
        Annotated[ClassAucLimit, BeforeValidator(_scalar_limit), JsonShorthand(_UNIT_LIMIT)] | None
    ) = Field(None, description="Limit on the AUC within each class; the strongest class decides.")
    max_auc_increase: (
        Annotated[IncreaseLimit, BeforeValidator(_scalar_limit), JsonShorthand(_UNIT_LIMIT)] | None
    ) = Field(None, description="Largest AUC increase over the baseline result, per attack.")
    max_tpr_at_fpr_increase: Annotated[
        tuple[TprIncreaseLimit, ...],
        BeforeValidator(_tpr_limits),
        JsonShorthand(_limits_shorthands, replace=True),
    ] = Field((), description="Largest TPR@FPR increase over the baseline result, per attack.")
    baseline: PolicyPath | None = Field(
        None,
        description=(
            "A previous result.json for the *_increase conditions (`mia-audit run --baseline` "
            "overrides it)."
        ),
    )
    suppressions: tuple[Suppression, ...] = Field(
        (), description="Waivers for failing conditions, each with a reason and an expiry date."
    )

    def limits(self) -> list[tuple[ConditionId, GateLimit]]:
        """(condition id, limit) for every condition, in a stable order; ids are unique."""
        tpr = [(ConditionId("tpr_at_fpr", lim.fpr), lim) for lim in self.max_tpr_at_fpr]
        tpr_increase = [
            (ConditionId("tpr_at_fpr_increase", lim.fpr), lim)
            for lim in self.max_tpr_at_fpr_increase
        ]
        single: list[tuple[str, GateLimit | None]] = [
            ("advantage", self.max_advantage),
            ("epsilon_lower_bound", self.max_epsilon_lower_bound),
            ("class_auc", self.max_class_auc),
            ("auc_increase", self.max_auc_increase),
        ]
        limits: list[tuple[ConditionId, GateLimit]] = []
        if self.max_auc is not None:
            limits.append((ConditionId("auc"), self.max_auc))
        limits += tpr
        limits += [(ConditionId(metric), lim) for metric, lim in single if lim is not None]
        limits += tpr_increase
        return limits

    @property
    def needs_baseline(self) -> bool:
        return self.max_auc_increase is not None or bool(self.max_tpr_at_fpr_increase)

    @model_validator(mode="after")
    def _known_conditions(self) -> GateSpec:
        ids = [condition_id for condition_id, _ in self.limits()]
        if not ids:
            raise ValueError(
                "has no conditions, so it would pass every model; add at least one, "
                "e.g. max_auc: 0.6"
            )
        duplicates = sorted({str(i) for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"condition {duplicates[0]!r} is listed twice")
        for suppression in self.suppressions:
            if not any(suppression.matches(i) for i in ids):
                known = ", ".join(map(str, ids)) or "none"
                raise ValueError(
                    f"suppression names condition {suppression.condition!r}, which the gate "
                    f"does not have (conditions: {known})"
                )
        return self
