"""The result of an audit: the versioned schema of result.json (docs/reports.md).

Reports in every format render from this one object, so `mia-audit render result.json`
reproduces them without re-running attacks.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1


#: What a gate condition compares with its threshold: the point estimate or the upper bound
#: of its bootstrap CI.
Statistic = Literal["point", "upper"]


class ResultModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


#: A confidence interval ``[low, high]``.
Interval = tuple[float, float]


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


class MlflowTarget(ResultModel):
    """Where a `models:/` or `runs:/` target came from (docs/mlflow.md)."""

    uri: str = Field(description="model.path as written.")
    resolved_uri: str = Field(description="The URI by version number (an alias resolved).")
    tracking_uri: str = Field(description="The tracking server (without credentials).")
    name: str | None = Field(None, description="Registered model name.")
    version: str | None = Field(None, description="The model version audited.")
    alias: str | None = None
    run_id: str | None = Field(None, description="The run that logged the model.")
    source: str = Field(description="The artifacts the version or URI points at.")
    artifact: str = Field(description="The file loaded, within the downloaded artifacts.")
    artifact_sha256: str = Field(description="sha256 of that downloaded file.")


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
    outputs: str = Field(
        "logits",
        description="What the attacks read: logits, probabilities (as log-probabilities) or "
        "labels (docs/model-outputs.md).",
    )
    outputs_detected: str | None = Field(
        None, description="What the probe batch showed (model.outputs: auto audits as that)."
    )
    attacks_allowed: list[str] = Field(
        default_factory=list, description="The registered attacks this output kind can feed."
    )
    mlflow: MlflowTarget | None = Field(
        None, description="For a models:/ or runs:/ model.path: what it resolved to."
    )

    def outputs_description(self) -> str:
        """The output kind in words, with how it was found and the attacks it allows."""
        how = "detected" if self.outputs == self.outputs_detected else "declared"
        reads = {
            "logits": "",
            "probabilities": ", read as log-probabilities",
            "labels": ", only the predicted class is read",
        }.get(self.outputs, "")
        allowed = ", ".join(self.attacks_allowed) or "not recorded"
        return f"{self.outputs} ({how}{reads}); attacks it allows: {allowed}"


class ReferenceModelFit(ResultModel):
    """One reference model's accuracy on samples it trained on and on samples it did not."""

    key: str = Field(description="The model's cache key (sha256 of its data, rows, recipe).")
    train: float = Field(description="Accuracy on its own training samples (a seeded sample).")
    held_out: float = Field(description="Accuracy on samples it did not train on (a sample).")
    n_train: int
    n_held_out: int


class ReferenceSetFit(ResultModel):
    """A set of reference models as the attacks named in `attacks` use it."""

    mode: str
    count: int
    attacks: list[str]
    train: float = Field(description="Mean training accuracy of the set's models.")
    held_out: float = Field(description="Mean held-out accuracy of the set's models.")
    models: list[ReferenceModelFit]


class CalibrationCandidate(ResultModel):
    """One recipe the calibration pilot tried, and how its model fits beside the target."""

    epochs: int
    weight_decay: float
    augment: list[str]
    train_accuracy: float = Field(description="On its own training samples (a sample).")
    held_out_accuracy: float = Field(description="On samples it did not train on.")
    train_confidence: float = Field(
        description="Mean true-class log-odds, training side (clipped to +-10, over 10)."
    )
    held_out_confidence: float = Field(description="The same, held out.")
    flip_gap: float = Field(
        description="How much more its confidence drops on mirrored training samples than on "
        "mirrored held-out ones (near 0: trained with flips)."
    )
    distance: float = Field(description="Largest gap of the four figures to the target's.")
    trained: bool = Field(description="False when the cache had the model.")
    seconds: float

    def recipe_text(self) -> str:
        augment = ", ".join(self.augment)
        return f"epochs {self.epochs}, weight_decay {self.weight_decay:g}, augment [{augment}]"


class ReferenceCalibration(ResultModel):
    """The calibration pilot (`reference_training.calibrate`, docs/calibration.md): the
    target's four figures, each candidate recipe tried in order, and the one chosen."""

    target_train_accuracy: float = Field(description="The target's accuracy on members.")
    target_held_out_accuracy: float = Field(description="Its accuracy on non-members.")
    target_train_confidence: float = Field(
        description="Mean true-class log-odds (clipped to +-10, over 10), members."
    )
    target_held_out_confidence: float = Field(description="The same, non-members.")
    target_flip_gap: float = Field(description="The target's flip gap (members, non-members).")
    tolerance: float
    max_models: int
    candidates: list[CalibrationCandidate]
    chosen: int = Field(description="Index of the chosen candidate (the smallest distance).")
    matched: bool = Field(description="Whether the chosen one is within the tolerance.")
    stopped: Literal["matched", "budget", "exhausted"] = Field(
        description="Why the search stopped: a match, max_models spent, or no move left."
    )
    out_of_range: list[str] = Field(
        default_factory=list, description="The knob the best candidate wanted beyond the grid."
    )
    seconds: float

    def miss_reason(self) -> str | None:
        """Why no candidate matched (None when one did): the knob out of range, the budget
        spent, or a grid with no step left."""
        if self.matched:
            return None
        if self.out_of_range:
            return f"{', '.join(self.out_of_range)} ran out of range"
        if self.stopped == "budget":
            return f"the budget (max_models {self.max_models}) was spent"
        return "no step on the grid brings it closer"

    def summary(self) -> str:
        """`chose epochs 40, ... of 3 candidates (distance 0.031, within 0.05)`."""
        best = self.candidates[self.chosen]
        within = "within" if self.matched else "outside"
        count = len(self.candidates)
        return (
            f"chose {best.recipe_text()} of {count} candidate{'s' if count != 1 else ''} (distance "
            f"{best.distance:.3f}, {within} the tolerance {self.tolerance:g})"
        )


class ReferenceFit(ResultModel):
    """How closely the reference models reproduce the target's fit (docs/attacks.md, Reference
    models).

    `reproduces_target` is False when the mean training accuracy of the (distinct) reference
    models is more than `max_shortfall` below the target's accuracy on its members.
    """

    target_members: float = Field(description="The target's accuracy on its members.")
    target_non_members: float = Field(description="The target's accuracy on non-members.")
    train: float = Field(description="Mean training accuracy over every distinct model.")
    held_out: float = Field(description="Mean held-out accuracy over every distinct model.")
    max_shortfall: float
    reproduces_target: bool
    sets: list[ReferenceSetFit]
    calibration: ReferenceCalibration | None = Field(
        None, description="The calibration pilot, when reference_training.calibrate is on."
    )


class FactoryInfo(ResultModel):
    """A `module:function` factory the policy named: code the policy can make mia-audit run."""

    field: str = Field(description="The policy key naming it (model.architecture, ...).")
    name: str = Field(description="`module:function` as written.")
    path: str | None = Field(None, description="The module's file (None if not found).")
    sha256: str | None = Field(None, description="sha256 of that file.")
    imported: bool = Field(description="Whether this run imported the module (ran its code).")


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
    auc_ci: Interval | None = Field(None, description="Bootstrap CI of the class's AUC.")
    tpr_at_fpr: dict[str, float | None] = {}


class SliceBreakdown(ResultModel):
    """The attack within one slice of the audit set (e.g. samples the target got right)."""

    name: str = Field(description="`correct` or `misclassified` (by the target's top-1).")
    n_members: int
    n_non_members: int
    auc: float | None = Field(None, description="None when a side has no samples.")
    auc_ci: Interval | None = None


class EpsilonLowerBound(ResultModel):
    """Empirical epsilon lower bound of (epsilon, delta)-DP, with the evidence behind it.

    The threshold is chosen on one seeded half of the audit set and the bound evaluated on the
    other half, from Clopper-Pearson intervals of TPR and FPR at `confidence`.
    """

    value: float = Field(description="The epsilon lower bound (natural log).")
    threshold: float = Field(description="Score threshold: member iff score >= threshold.")
    tpr: float = Field(description="TPR at the threshold on the evaluation half.")
    fpr: float = Field(description="FPR at the threshold on the evaluation half.")
    tpr_ci: Interval = Field(description="Clopper-Pearson interval of the TPR.")
    fpr_ci: Interval = Field(description="Clopper-Pearson interval of the FPR.")
    delta: float
    confidence: float
    n_selection: int = Field(description="Samples that chose the threshold.")
    n_evaluation: int = Field(description="Samples the bound was computed on.")


class VulnerableSample(ResultModel):
    id: str
    label: int
    score: float
    non_members_below: float = Field(
        description="Fraction of non-members scoring lower: 1.0 means it stands out from all."
    )


class OperatingPoint(ResultModel):
    """The attack's confusion matrix at the gate's operating point (members are positives)."""

    rule: str = Field(description="How the threshold was chosen.")
    threshold: float | None = Field(
        description="Member iff score >= threshold (None: no sample is called a member)."
    )
    true_positives: int
    false_positives: int
    true_negatives: int
    false_negatives: int


class AttackResult(ResultModel):
    """One attack's figures, built once by `evaluation.evaluate.evaluate_attack`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    id: str
    summary: str = ""
    parameters: dict[str, Any] = {}
    auc: float
    tpr_at_fpr: dict[str, float]
    tpr_at_fpr_supported: dict[str, bool]
    balanced_accuracy: float
    advantage: float
    auc_ci: Interval | None = Field(None, description="Stratified bootstrap CI of the AUC.")
    tpr_at_fpr_ci: dict[str, Interval] = Field(
        {}, description="Bootstrap CI of each TPR, keyed like `tpr_at_fpr`."
    )
    advantage_ci: Interval | None = None
    ci_level: float | None = Field(None, description="Confidence level of every CI.")
    ci_resamples: int | None = Field(None, description="Bootstrap resamples behind every CI.")
    epsilon_lower_bound: EpsilonLowerBound | None = None
    roc: Roc
    score_histogram: Histogram
    per_class: list[ClassBreakdown] = []
    slices: list[SliceBreakdown] = Field(
        [], description="Correctly classified vs misclassified samples."
    )
    most_vulnerable: list[VulnerableSample] = []
    operating_point: OperatingPoint | None = None
    seconds: float = 0.0


class Condition(ResultModel):
    id: str = Field("", description="Condition id, as suppressions name it (e.g. tpr_at_fpr@0.05).")
    metric: str = Field(
        description=(
            "auc, tpr_at_fpr, advantage, epsilon_lower_bound, class_auc, auc_increase or "
            "tpr_at_fpr_increase."
        )
    )
    fpr: float | None = None
    attack: str = Field(description="The attack that decides: the worst in scope.")
    value: float = Field(description="What is compared with the threshold.")
    threshold: float
    passed: bool = Field(description="Whether value <= threshold (a waiver does not change it).")
    statistic: Statistic = "point"
    point: float | None = Field(None, description="The deciding attack's point estimate.")
    ci: Interval | None = Field(None, description="The deciding attack's CI of the metric.")
    slice: str | None = Field(None, description="The deciding slice (class_auc: the class).")
    baseline_value: float | None = Field(
        None, description="Baseline conditions: the previous value."
    )
    current_value: float | None = Field(None, description="Baseline conditions: the value now.")
    per_attack: dict[str, float] = {}
    description: str
    note: str | None = None
    waived: bool = Field(False, description="Failed, but an unexpired suppression waives it.")
    waiver_reason: str | None = None
    waiver_expires: date | None = None
    waiver_expired: bool = Field(False, description="Failed; its suppression has expired.")

    @property
    def holds(self) -> bool:
        """Whether the condition lets the gate pass: it passed, or its failure is waived."""
        return self.passed or self.waived


class GateResult(ResultModel):
    passed: bool
    conditions: list[Condition]
    evaluated_on: date | None = Field(
        None, description="The date suppressions were checked against (UTC)."
    )


class BaselineInfo(ResultModel):
    """The previous result the *_increase conditions compared with."""

    path: str
    sha256: str
    schema_version: int
    policy_name: str | None = None
    tool_version: str | None = None


class ClaimBound(ResultModel):
    """One source's epsilon lower bound beside the claim: an attack on the audit set, or the
    one-run canary audit (`one_run`)."""

    source: str = Field(description="The attack id, or `one_run` for the canary audit.")
    epsilon_lower_bound: float = Field(description="At the claim's delta and the policy's level.")
    tpr: float | None = Field(None, description="Audit-set attacks: TPR at the threshold.")
    fpr: float | None = Field(None, description="Audit-set attacks: FPR at the threshold.")
    threshold: float | None = None
    guesses: int | None = Field(None, description="One-run: canaries guessed (not abstained).")
    correct: int | None = Field(None, description="One-run: guesses that were right.")
    samples: int = Field(description="Samples the bound rests on (evaluation half, or m).")
    best_possible: float = Field(
        description="The bound a perfect attack reaches at this size: at or below the claim, "
        "this source can never contradict it."
    )
    needed: int | None = Field(
        description="Samples (per side, or canaries) to exceed the claim; None: no number."
    )


class OneRunAudit(ResultModel):
    """The one-run audit of the DP recipe (`reference_training.dp`): one model trained on the
    population plus the included canaries, scored by each canary's loss."""

    canaries: int = Field(description="m: canaries, each included with probability 1/2.")
    kind: str = Field(description="mislabelled or natural.")
    included: int = Field(description="Canaries the model trained on.")
    seed: int = Field(description="The seed that drew the canaries and their inclusion.")
    train_size: int = Field(description="Samples the model trained on, canaries included.")
    noise_multiplier: float
    max_grad_norm: float
    accountant_epsilon: float | None = Field(
        description="The RDP accountant's epsilon at `delta` (None: no noise, no guarantee)."
    )
    delta: float = Field(description="statistics.delta, as max_epsilon_lower_bound reads it.")
    epsilon_lower_bound: float = Field(description="The one-run bound with abstention.")
    guesses: int
    correct: int
    k_plus: int = Field(description="Canaries guessed in (the highest scores).")
    k_minus: int = Field(description="Canaries guessed out (the lowest scores).")
    candidates: int = Field(description="Guess counts tried (Bonferroni-corrected).")
    two_sided_bound: float = Field(
        description="The Clopper-Pearson bound (split halves) on the same canary scores."
    )
    best_possible: float = Field(description="The one-run bound of a perfect attack at m.")
    cached: bool = Field(description="Whether the trained model came from the cache.")
    seconds: float


class DpClaimResult(ResultModel):
    """The model's differential-privacy claim (`model.dp_claim`) against every bound."""

    epsilon: float
    delta: float
    confidence: float
    checked: bool = Field(
        description="Whether any source could contradict the claim (its best possible bound "
        "exceeds it); false: the audit is too small and says nothing about the claim."
    )
    passed: bool = Field(description="No bound exceeds the claimed epsilon.")
    bounds: list[ClaimBound]


class Environment(ResultModel):
    device: str
    engine: str
    precision: str
    gpu: str | None = None
    python: str
    platform: str
    cpu_count: int
    versions: dict[str, str]


class FloorInfo(ResultModel):
    """The workflow's floor the policy was checked against (docs/floor.md)."""

    source: str = Field(description="The floor file, or the command-line options that built it.")
    path: str | None = Field(None, description="The floor file (None for options alone).")
    sha256: str = Field(
        description="sha256 of the floor file (of the floor's canonical JSON when options "
        "built or tightened it)."
    )
    enforced: list[str] = Field(description="What the floor required, one line per section.")


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
    baseline: BaselineInfo | None = None
    factories: list[FactoryInfo] = Field(
        [],
        description=(
            "Every `module:function` factory the policy named, with its file and hash: the "
            "only code a policy can make mia-audit run."
        ),
    )
    timings: dict[str, float] = Field(description="Seconds per phase.")
    notes: list[str] = Field([], description="What the run noted beside the data (data.notes).")
    references: ReferenceFit | None = Field(
        None, description="Reference models' fit beside the target's (reference attacks only)."
    )
    floor: FloorInfo | None = Field(
        None, description="The floor the policy had to meet (`--floor`, `--floor-max-*`)."
    )
    one_run: OneRunAudit | None = Field(
        None, description="The one-run audit of the DP recipe (reference_training.dp)."
    )
    dp_claim: DpClaimResult | None = Field(
        None, description="The DP claim's check (only when the policy states model.dp_claim)."
    )
    sha256: str | None = Field(
        None,
        description="sha256 of every other field, as canonical JSON (sorted keys, no spaces): "
        "written with the file; `mia-audit render` refuses a result.json that does not match.",
    )

    def attack(self, attack_id: str) -> AttackResult:
        return next(a for a in self.attacks if a.id == attack_id)

    def to_json(self) -> str:
        document = self.model_dump(mode="json")
        document["sha256"] = content_sha256(document)
        return json.dumps(document, indent=2, allow_nan=False) + "\n"


def content_sha256(document: dict[str, Any]) -> str:
    """The integrity hash of a result.json document: every field but `sha256` itself."""
    import hashlib

    content = {key: value for key, value in document.items() if key != "sha256"}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def result_json_schema() -> dict[str, Any]:
    schema = Result.model_json_schema(mode="serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "mia-audit result"
    return schema


def strongest_attack(result: Result, fpr: str = "0.05") -> AttackResult:
    """The attack with the highest TPR at `fpr` (AUC breaks ties): the headline figure."""
    return max(result.attacks, key=lambda a: (a.tpr_at_fpr.get(fpr, 0.0), a.auc))


def worst_attack(result: Result, metric: str, fpr: str = "0.05") -> AttackResult | None:
    """The attack with the highest `auc`, or TPR at `fpr` (`tpr_at_fpr`): the worst figure of
    that metric, which a dashboard must not under-report (the strongest attack by TPR need
    not have the highest AUC). None when no attack has the figure."""
    if metric == "auc":
        return max(result.attacks, key=lambda a: a.auc, default=None)
    having = [a for a in result.attacks if a.tpr_at_fpr.get(fpr) is not None]
    return max(having, key=lambda a: a.tpr_at_fpr[fpr], default=None)


def failed_conditions_text(result: Result) -> list[str]:
    """One line per failed condition, naming the attack that decided it: `AUC <= 0.6: 0.8880
    (learned)`; waived ones say so."""
    return [
        f"{c.description}: {c.value:.4f} ({c.attack})" + (" - waived" if c.waived else "")
        for c in result.gate.conditions
        if not c.passed
    ]
