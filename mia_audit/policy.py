"""The audit policy: what to audit, with which attacks, and which thresholds must hold.

The YAML format is a contract (design.md §12): keys may be added, never renamed. Validation is
strict: an unknown key is an error, so a typo cannot silently switch a condition off.
"""

from __future__ import annotations

import difflib
import hashlib
import types
import typing
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from mia_audit._yaml import Location, load_yaml
from mia_audit.attacks.reference_base import ReferenceAttackConfig
from mia_audit.attacks.registry import AttackConfig, attack_config_union
from mia_audit.errors import PolicyError
from mia_audit.metrics import fpr_key
from mia_audit.training import TrainingRecipe

POLICY_VERSION = 1

#: Contract keys (design.md §12) whose feature has not landed yet: rejected with a clear message
#: rather than as a typo.
PLANNED_KEYS: dict[str, str] = {}
PLANNED_ATTACKS: dict[str, str] = {}
PLANNED_FORMATS: dict[str, str] = {}


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    """Resolve a relative path against the policy file's folder (passed as context)."""
    base = (info.context or {}).get("base_dir")
    if base is None or value.is_absolute():
        return value
    return (Path(base) / value.expanduser()).resolve()


PolicyPath = Annotated[Path, AfterValidator(_resolve_path)]


class StrictModel(BaseModel):
    """Frozen, every key must be known, and numbers must be finite (NaN or infinity is never
    a setting: it would only surface later as NaN logits or a gate that cannot fail)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ModelSpec(StrictModel):
    """The target model."""

    path: PolicyPath = Field(
        description="Model file: .onnx, or .pt/.pth (state dict or TorchScript)."
    )
    format: Literal["auto", "onnx", "torchscript", "state_dict", "pickle"] = Field(
        "auto", description="How to read `path`; `auto` decides from the file's content."
    )
    architecture: str | None = Field(
        None,
        description=(
            "For state dicts and reference models: a torchvision classifier name (e.g. resnet18)"
            " or a `module:function` factory (the only way a policy names code)."
        ),
    )
    num_classes: int | None = Field(None, ge=2, description="Number of classes (model outputs).")
    cifar_stem: bool = Field(
        False, description="ResNet with a 3x3 stride-1 first conv, no max-pool."
    )
    allow_pickle: bool = Field(
        False, description="Allow loading a pickled full module (runs code from the file)."
    )


class DataSpec(StrictModel):
    """Members, non-members and optional population data."""

    members: PolicyPath | None = Field(None, description="Samples the model was trained on.")
    non_members: PolicyPath | None = Field(None, description="Held-out samples, same distribution.")
    audit: PolicyPath | None = Field(
        None, description="Instead of members/non_members: one file with a `membership` field."
    )
    population: PolicyPath | None = Field(
        None, description="More non-member data for reference models (disjoint from the audit set)."
    )
    allow_pickle: bool = Field(False, description="Allow pickled dataset files (runs code).")
    max_per_side: int | None = Field(None, ge=1, description="Seeded subsample of each side.")
    balance: bool = Field(True, description="Subsample the larger side to the smaller one's size.")
    class_names: tuple[str, ...] | None = Field(None, description="Names of the classes, in order.")

    @model_validator(mode="after")
    def _one_layout(self) -> DataSpec:
        pair = self.members is not None or self.non_members is not None
        if self.audit is not None and pair:
            raise ValueError("give either `audit` or `members` and `non_members`, not both")
        if self.audit is None and (self.members is None or self.non_members is None):
            raise ValueError("give both `members` and `non_members` (or one `audit` file)")
        return self


def _size_pair(value: Any) -> Any:
    return [value, value] if isinstance(value, int) else value


class Preprocessing(StrictModel):
    """How images are turned into model input (pixels are first scaled to 0..1).

    Required: a silent mean 0 / std 1 default would audit a different model than the one that
    ships. `preprocessing: none` says the model normalises inside (mean 0, std 1).
    """

    mean: tuple[float, ...] = Field(
        min_length=1, max_length=4, description="Per-channel mean on the 0..1 scale."
    )
    std: tuple[Annotated[float, Field(gt=0)], ...] = Field(
        min_length=1, max_length=4, description="Per-channel standard deviation (0..1 scale)."
    )
    input_size: Annotated[tuple[int, int] | None, BeforeValidator(_size_pair)] = Field(
        None, description="Resize images to [height, width] (bilinear) when they differ."
    )
    channel_order: Literal["rgb", "bgr"] = Field(
        "rgb", description="Channel order the model expects."
    )

    @property
    def normalises(self) -> bool:
        """False for `preprocessing: none` (or an explicit mean 0 / std 1)."""
        return any(m != 0.0 for m in self.mean) or any(s != 1.0 for s in self.std)

    @model_validator(mode="after")
    def _same_length(self) -> Preprocessing:
        if len(self.mean) != len(self.std):
            raise ValueError(f"mean has {len(self.mean)} values but std has {len(self.std)}")
        return self


#: What `preprocessing: none` stands for: the model normalises its input itself.
NO_NORMALISATION = {"mean": [0.0], "std": [1.0]}


def _preprocessing_shorthand(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lower() == "none":
        return dict(NO_NORMALISATION)
    if value is None:
        raise ValueError(
            "is empty; give mean and std (on the 0..1 scale), or `none` when the model "
            "normalises its input itself"
        )
    return value


PreprocessingEntry = Annotated[Preprocessing, BeforeValidator(_preprocessing_shorthand)]


class Preconditions(StrictModel):
    """Checks made before any verdict (README, "Preconditions"); relax them only for smoke
    tests: every relaxed check is named in the report."""

    allow_small_audit: bool = Field(
        False,
        description=(
            "Evaluate gate conditions on an audit set smaller than each condition's documented "
            "minimum (a smoke test, not evidence; the report says so)."
        ),
    )
    allow_weak_target: bool = Field(
        False,
        description=(
            "Accept a target that does not classify its members well above chance (normally "
            "a sign of wrong preprocessing)."
        ),
    )
    max_shared_fraction: float = Field(
        0.01,
        ge=0,
        le=0.1,
        description=(
            "Largest fraction of images two data sets (members, non-members, population) may "
            "share (identical pixels) before the audit is refused."
        ),
    )
    reference_fit: Literal["warn", "error"] = Field(
        "warn",
        description=(
            "Reference models whose mean accuracy on their own training samples is more than "
            "0.1 below the target's accuracy on its members do not reproduce the target's fit "
            "(reference attacks then understate the risk): `warn` (a note), or `error` (exit 2)."
        ),
    )

    def relaxed(self) -> list[str]:
        """The checks this policy loosens beyond the defaults, as `preconditions.<key>`."""
        default = Preconditions()
        loosened = [
            key
            for key in ("allow_small_audit", "allow_weak_target")
            if getattr(self, key) and not getattr(default, key)
        ]
        if self.max_shared_fraction > default.max_shared_fraction:
            loosened.append("max_shared_fraction")
        return [f"preconditions.{key}" for key in loosened]


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


ScalarLimit = Annotated[MetricLimit, BeforeValidator(_scalar_limit)]


def _tpr_limits(value: Any) -> Any:
    items = _one_or_many(value)
    if isinstance(items, list):
        return [_tpr_limit_item(item) for item in items]
    return items


def _tpr_limit_item(item: Any) -> Any:
    return {"max": item} if isinstance(item, int | float) and not isinstance(item, bool) else item


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
            "(README, Preconditions); lower values need preconditions.allow_small_audit."
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

    def matches(self, condition_id: str) -> bool:
        """Whether this suppression names the condition `condition_id` (or its metric)."""
        return self.condition in (condition_id, condition_id.split("@", 1)[0])


#: Any condition of the gate, as `GateSpec.limits` lists it.
GateLimit = MetricLimit | EpsilonLimit | IncreaseLimit


class GateSpec(StrictModel):
    """Conditions that must hold for the audit to pass."""

    attacks: tuple[str, ...] | None = Field(
        None, description="Attack ids the conditions apply to by default (default: all)."
    )
    max_auc: ScalarLimit | None = None
    max_tpr_at_fpr: Annotated[tuple[TprLimit, ...], BeforeValidator(_tpr_limits)] = ()
    max_advantage: ScalarLimit | None = None
    max_epsilon_lower_bound: Annotated[EpsilonLimit, BeforeValidator(_scalar_limit)] | None = Field(
        None, description="Limit on the empirical epsilon lower bound (statistics.delta)."
    )
    max_class_auc: Annotated[ClassAucLimit, BeforeValidator(_scalar_limit)] | None = Field(
        None, description="Limit on the AUC within each class; the strongest class decides."
    )
    max_auc_increase: Annotated[IncreaseLimit, BeforeValidator(_scalar_limit)] | None = Field(
        None, description="Largest AUC increase over the baseline result, per attack."
    )
    max_tpr_at_fpr_increase: Annotated[
        tuple[TprIncreaseLimit, ...], BeforeValidator(_tpr_limits)
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

    def limits(self) -> list[tuple[str, GateLimit]]:
        """(condition id, limit) for every condition, in a stable order; ids are unique."""
        limits: list[tuple[str, GateLimit]] = []
        if self.max_auc is not None:
            limits.append(("auc", self.max_auc))
        limits.extend((f"tpr_at_fpr@{fpr_key(lim.fpr)}", lim) for lim in self.max_tpr_at_fpr)
        if self.max_advantage is not None:
            limits.append(("advantage", self.max_advantage))
        if self.max_epsilon_lower_bound is not None:
            limits.append(("epsilon_lower_bound", self.max_epsilon_lower_bound))
        if self.max_class_auc is not None:
            limits.append(("class_auc", self.max_class_auc))
        if self.max_auc_increase is not None:
            limits.append(("auc_increase", self.max_auc_increase))
        limits.extend(
            (f"tpr_at_fpr_increase@{fpr_key(lim.fpr)}", lim) for lim in self.max_tpr_at_fpr_increase
        )
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
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"condition {duplicates[0]!r} is listed twice")
        for suppression in self.suppressions:
            if not any(suppression.matches(i) for i in ids):
                known = ", ".join(ids) or "none"
                raise ValueError(
                    f"suppression names condition {suppression.condition!r}, which the gate "
                    f"does not have (conditions: {known})"
                )
        return self


class StatisticsSpec(StrictModel):
    """How uncertainty is measured: bootstrap CIs, the epsilon lower bound, FPR support."""

    confidence_level: float = Field(
        0.95, gt=0, lt=1, description="Level of every CI and of the epsilon lower bound."
    )
    n_resamples: int = Field(
        1000, ge=100, le=100_000, description="Stratified bootstrap resamples per CI."
    )
    delta: float = Field(
        1e-5, ge=0, lt=1, description="The delta of (epsilon, delta)-DP for the epsilon bound."
    )
    min_false_positives: int = Field(
        10,
        ge=1,
        description=(
            "A TPR at FPR a needs a * non-members >= this many; a gate condition on an FPR "
            "the data cannot support is an error."
        ),
    )


def _available_format(value: str) -> str:
    if value in PLANNED_FORMATS:
        raise ValueError(f"format {value!r} is not available yet: {PLANNED_FORMATS[value]}")
    if value not in _FORMAT_NAMES:
        raise ValueError(f"unknown format {value!r}; available: {', '.join(_FORMAT_NAMES)}")
    return value


_FORMAT_NAMES = ("json", "html", "markdown", "junit")
OutputFormat = Annotated[str, AfterValidator(_available_format)]


class OutputSpec(StrictModel):
    dir: PolicyPath = Field(Path("mia-report"), description="Output folder.")
    formats: tuple[OutputFormat, ...] = Field(
        ("json", "html", "markdown"),
        min_length=1,
        description="Report formats: json (result.json), html (report.html), markdown "
        "(summary.md), junit (junit.xml).",
    )


class RuntimeSpec(StrictModel):
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = Field(0, ge=0)
    batch_size: int = Field(512, ge=1)
    cache_dir: PolicyPath = Field(Path(".mia-cache"), description="Logits and model cache.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="GPU inference precision; `auto` uses bf16 when logits match fp32 closely.",
    )


class ReferenceTraining(TrainingRecipe, StrictModel):
    """How reference and shadow models are trained: copy the target's recipe as closely as
    you know it (mismatched augmentation is the largest known loss of attack power).

    Unset `architecture`, `cifar_stem` and `train_size` default to model.architecture,
    model.cifar_stem and the number of members; `resolve` fills them in.
    """

    def resolve(self, model: ModelSpec, n_members: int) -> TrainingRecipe:
        """The concrete recipe (every default filled in), as the model cache keys it."""
        values = self.model_dump()
        values["architecture"] = self.architecture or model.architecture
        values["cifar_stem"] = model.cifar_stem if self.cifar_stem is None else self.cifar_stem
        values["train_size"] = self.train_size or n_members
        return TrainingRecipe.model_validate(values)


def _bare_attack_name(value: Any) -> Any:
    return {"name": value} if isinstance(value, str) else value


if typing.TYPE_CHECKING:
    # The union is built at run time from the registry; to the type checker every entry is
    # an AttackConfig.
    AttackEntry = AttackConfig
else:
    AttackEntry = Annotated[
        attack_config_union(),
        BeforeValidator(_bare_attack_name),
    ]


class Policy(StrictModel):
    """A whole audit policy (version 1)."""

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


@typing.final
class LoadedPolicy:
    """A validated policy with the file it came from and that file's raw content."""

    def __init__(self, policy: Policy, path: Path, document: Any, text_sha256: str) -> None:
        self.policy = policy
        self.path = path
        self.document = document
        self.sha256 = text_sha256


def load_policy(path: Path) -> LoadedPolicy:
    """Read, parse and validate a policy file; raise PolicyError with a one-line message."""
    document, lines = load_yaml(path)
    if not isinstance(document, dict):
        raise PolicyError(f"{path}: a policy is a YAML mapping (version, name, model, data, ...)")
    policy = parse_policy(document, base_dir=path.resolve().parent, source=path, lines=lines)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return LoadedPolicy(policy, path.resolve(), document, digest)


def parse_policy(
    document: dict[str, Any],
    *,
    base_dir: Path,
    source: Path | str = "policy",
    lines: dict[Location, int] | None = None,
) -> Policy:
    try:
        return Policy.model_validate(document, context={"base_dir": base_dir})
    except ValidationError as error:
        raise PolicyError(describe_validation_error(error, source, lines or {})) from None


def policy_json_schema() -> dict[str, Any]:
    """The JSON Schema of the policy format (what `mia-audit schema` prints)."""
    schema = Policy.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "mia-audit policy"
    return schema


# --- error messages -------------------------------------------------------------------------


def describe_validation_error(
    error: ValidationError, source: Path | str, lines: dict[Location, int]
) -> str:
    """One line: file, line, the YAML path of the first problem, and what is wrong."""
    problems = error.errors(include_url=False)
    first = problems[0]
    yaml_path = _yaml_location(first["loc"], lines)
    line = _line_of(yaml_path, lines)
    where = f"{source}" + (f" line {line}" if line else "")
    field = _dotted(yaml_path) or "policy"
    message = _problem_text(first, yaml_path)
    more = len(problems) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{where}: {field}: {message}{suffix}"


def _yaml_location(loc: Sequence[str | int], lines: dict[Location, int]) -> Location:
    """Drop pydantic's internal loc parts (union tags, validator names) that are not YAML keys."""
    path: Location = ()
    for part in loc:
        candidate = (*path, part)
        if candidate in lines or isinstance(part, int) or not lines:
            path = candidate
    if loc and loc[-1] not in path and isinstance(loc[-1], str) and not _is_tag(loc[-1]):
        path = (*path, loc[-1])
    return path


def _is_tag(part: str) -> bool:
    return part.startswith(("function-", "tagged-union")) or part in _ATTACK_NAMES


def _line_of(path: Location, lines: dict[Location, int]) -> int | None:
    for end in range(len(path), -1, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return None


def _dotted(path: Location) -> str:
    text = ""
    for part in path:
        name = _key_text(part)
        text += f"[{part}]" if isinstance(part, int) else (f".{name}" if text else name)
    return text


def _key_text(part: object) -> str:
    """A key as written, quoted when it holds line breaks or other unprintable characters
    (the message must stay one line)."""
    text = str(part)
    return text if text.isprintable() else repr(text)


def _problem_text(problem: Any, yaml_path: Location) -> str:
    kind = problem["type"]
    if kind == "extra_forbidden":
        key = str(yaml_path[-1]) if yaml_path else "?"
        if len(yaml_path) == 1 and key in PLANNED_KEYS:
            return f"{key!r} is not available yet: {PLANNED_KEYS[key]}; remove it from the policy"
        allowed = _allowed_keys(problem["loc"])
        hint = difflib.get_close_matches(key, allowed, n=1)
        did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
        listing = f"; allowed: {', '.join(sorted(allowed))}" if allowed and not hint else ""
        return f"unknown key {key!r}{did_you_mean}{listing}"
    if kind == "missing":
        advice = _MISSING_HINTS.get(tuple(str(part) for part in yaml_path))
        return "required key is missing" + (f"; {advice}" if advice else "")
    if kind == "union_tag_invalid":
        return _unknown_attack_text(problem)
    message = str(problem["msg"])
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    return message[0].lower() + message[1:] if message else kind


#: What to write when a required section is missing.
_MISSING_HINTS = {
    ("preprocessing",): (
        "give the mean and std (on the 0..1 scale) the model was trained with, or "
        "`preprocessing: none` when the model normalises its input itself"
    ),
    ("preprocessing", "mean"): "give one value per channel on the 0..1 scale",
    ("preprocessing", "std"): "give one value per channel on the 0..1 scale",
    ("gate",): "add at least one condition, e.g. `gate: {max_auc: 0.6}`",
}


def _unknown_attack_text(problem: Any) -> str:
    tag = problem.get("ctx", {}).get("tag", "?")
    if tag in PLANNED_ATTACKS:
        return (
            f"attack {tag!r} is not available yet: {PLANNED_ATTACKS[tag]}; "
            f"available now: {', '.join(_ATTACK_NAMES)}"
        )
    hint = difflib.get_close_matches(str(tag), _ATTACK_NAMES, n=1)
    did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
    return f"unknown attack {tag!r}{did_you_mean}; available: {', '.join(_ATTACK_NAMES)}"


def _allowed_keys(loc: Sequence[str | int]) -> list[str]:
    """The keys allowed where an unknown key was found (walks pydantic's loc, tags included)."""
    from mia_audit.attacks.registry import attack_config

    model: Any = Policy
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if _is_model(model) and part in model.model_fields:
            model = _unwrap(model.model_fields[part].annotation)
        elif part in _ATTACK_NAMES:
            model = attack_config(part)
    return list(model.model_fields) if _is_model(model) else []


def _unwrap(annotation: Any) -> Any:
    """Find the model class inside Optional[...], tuple[...], Annotated[...]."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType, tuple, list):
        models = [_unwrap(arg) for arg in typing.get_args(annotation) if arg is not type(None)]
        models = [m for m in models if _is_model(m)]
        return models[0] if len(models) == 1 else None
    return annotation


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def _attack_names() -> list[str]:
    from mia_audit.attacks.registry import attack_names

    return attack_names()


_ATTACK_NAMES = _attack_names()


def with_overrides(
    policy: Policy,
    *,
    output_dir: Path | None = None,
    device: str | None = None,
    seed: int | None = None,
    formats: Sequence[str] | None = None,
    baseline: Path | None = None,
) -> Policy:
    """Apply command-line overrides (re-validated like the file itself)."""
    if baseline is not None:
        gate = policy.gate.model_copy(update={"baseline": baseline})
        policy = policy.model_copy(update={"gate": gate})
    outputs: dict[str, Any] = {}
    runtime: dict[str, Any] = {}
    if output_dir is not None:
        outputs["dir"] = output_dir
    if formats is not None:
        outputs["formats"] = tuple(formats)
    if device is not None:
        runtime["device"] = device
    if seed is not None:
        runtime["seed"] = seed
    if not outputs and not runtime:
        return policy
    try:
        return policy.model_copy(
            update={
                "outputs": OutputSpec.model_validate({**policy.outputs.model_dump(), **outputs}),
                "runtime": RuntimeSpec.model_validate({**policy.runtime.model_dump(), **runtime}),
            }
        )
    except ValidationError as error:
        raise PolicyError(describe_validation_error(error, "command line", {})) from None


def check_paths_exist(policy: Policy) -> None:
    """Every file the policy names must exist (checked by `validate` and before a run)."""
    named = {
        "model.path": policy.model.path,
        "data.members": policy.data.members,
        "data.non_members": policy.data.non_members,
        "data.audit": policy.data.audit,
        "data.population": policy.data.population,
        "gate.baseline": policy.gate.baseline,
    }
    for field, path in named.items():
        if path is not None and not path.exists():
            raise PolicyError(f"{field}: {path}: file not found; check the path")
