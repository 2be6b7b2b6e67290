"""The audit pipeline: policy -> inputs -> logits -> attacks -> metrics -> gate -> result.

This module owns no terminal and writes no report; it reads the files the policy names and the
cache, and returns a `Result`. The CLI decides what to print and where to write.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

import numpy as np

from mia_audit import __version__, evaluation, metrics, preconditions
from mia_audit.attacks.base import Attack, AttackContext, ViewLogits, check_attack_data
from mia_audit.attacks.reference_base import REFERENCES, ReferenceAttack, ReferenceRequest
from mia_audit.attacks.registry import create_attack
from mia_audit.baseline import Baseline, load_baseline
from mia_audit.cache import ArrayCache
from mia_audit.data.audit import AuditSet, SamplingOptions, build_audit_set, split_by_membership
from mia_audit.data.formats import load_image_set
from mia_audit.data.images import ImageSet
from mia_audit.environment import describe_environment
from mia_audit.errors import (
    EXIT_GATE_FAILED,
    EXIT_PASS,
    AuditError,
    InputError,
    ModelError,
    PolicyError,
)
from mia_audit.gate import (
    AttackMetrics,
    ClassAuc,
    check_gate_support,
    evaluate_gate,
    gate_fprs,
    gate_passed,
    missing_baseline_message,
    utc_today,
)
from mia_audit.hashing import path_sha256
from mia_audit.inference import (
    LogitsRequest,
    Notify,
    Preprocessor,
    cached_predict,
    choose_precision,
    output_notes,
)
from mia_audit.models.architectures import named_factories
from mia_audit.models.device import resolve_device
from mia_audit.models.loading import LoadedModel, load_target
from mia_audit.policy import GateSpec, LoadedPolicy, Policy
from mia_audit.preconditions import TargetFit
from mia_audit.progress import Progress, SilentProgress
from mia_audit.queries import IDENTITY, View
from mia_audit.reference import (
    Architecture,
    ReferenceModels,
    ReferenceSetup,
    TargetModel,
    check_population,
    population_requirement,
)
from mia_audit.reference_fit import assess_reference_fit
from mia_audit.result import (
    Accuracy,
    AttackResult,
    DataInfo,
    DataSource,
    GateResult,
    PolicyInfo,
    Result,
    TargetInfo,
    ToolInfo,
)
from mia_audit.uncertainty import StatisticsInput, add_statistics


class Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - start, 3)


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


def run_audit(
    loaded: LoadedPolicy,
    progress: Progress | None = None,
    *,
    clock: Callable[[], date] = utc_today,
) -> Result:
    """Run every attack of the policy and evaluate its gate.

    `clock` gives the date suppressions expire against (injectable, so tests can pin it).
    """
    progress = progress or SilentProgress()
    policy = loaded.policy
    timer = Timer()
    trust = TrustNotes(progress)
    attacks = [create_attack(config) for config in policy.attacks]
    baseline = gate_baseline(policy.gate)
    today = clock()
    preconditions.check_waivers(policy.gate.suppressions, today)
    with timer.phase("load"):
        device = resolve_device(policy.runtime.device)
        data = load_audit_data(policy, population_needed=population_requirement(policy))
        if policy.data.population is not None:
            check_population(policy, data.members_available, data.audit_set.population)
        model = load_target(policy.model, device, search_path=loaded.path.parent)
    check_gate_support(
        policy.gate, data.audit_set.n_non_members, policy.statistics.min_false_positives
    )
    check_attack_data(attacks, data.audit_set.n_members, data.audit_set.n_non_members)
    notes = [*data.audit_set.notes, *_checked_sizes(policy, data.audit_set)]
    for note in notes:
        progress.note(note)
    preprocess = preprocessor(policy)
    with timer.phase("inference"), _naming_model(policy):
        num_classes, precision = _check_model(model, data, policy, preprocess)
        target = _target_logits(
            policy, model, data.audit_set, preprocess, attacks, progress, trust.note
        )
    fit_notes = preconditions.check_target_fit(
        _target_fit(target, data.audit_set, num_classes), policy.preconditions
    )
    for note in fit_notes:
        progress.note(note)
    notes += fit_notes
    model_notes = output_notes(target.identity)
    for note in model_notes:
        progress.note(note)
    notes += model_notes
    extras: dict[str, object] = {}
    reference_attacks = [attack for attack in attacks if isinstance(attack, ReferenceAttack)]
    references_fit = None
    if reference_attacks:
        with timer.phase("reference models"):
            references = prepare_references(
                loaded,
                data,
                model,
                num_classes,
                preprocess,
                [attack.request() for attack in reference_attacks],
                device,
                progress,
                trust.note,
            )
        extras[REFERENCES] = references
        references_fit = assess_reference_fit(
            references.set_fits,
            [(a.config.label, a.request().mode, a.request().count) for a in reference_attacks],
            target_accuracy(target, data.audit_set),
            references.setup.recipe,
            policy.preconditions.reference_fit,
            trust.note,
        )
    context = AttackContext(
        target=target,
        labels=data.audit_set.labels,
        is_member=data.audit_set.is_member,
        random_state=policy.runtime.seed,
        extras=extras,
    )
    results = _run_attacks(attacks, context, data.audit_set, policy, progress, timer)
    gate_conditions = evaluate_gate(
        policy.gate, _gate_metrics(results), baseline=baseline, today=today
    )
    passed = gate_passed(gate_conditions)
    return Result(
        tool=ToolInfo(version=__version__),
        passed=passed,
        exit_code=EXIT_PASS if passed else EXIT_GATE_FAILED,
        seed=policy.runtime.seed,
        policy=PolicyInfo(
            name=policy.name, path=str(loaded.path), sha256=loaded.sha256, document=loaded.document
        ),
        target=_target_info(policy, model, target, data.audit_set, num_classes, precision),
        data=_data_info(data, policy),
        attacks=results,
        gate=GateResult(passed=passed, conditions=gate_conditions, evaluated_on=today),
        baseline=baseline.info if baseline is not None else None,
        factories=named_factories(policy, loaded.path.parent),
        environment=describe_environment(
            model.classifier.device, model.classifier.engine, precision
        ),
        timings=timer.seconds,
        notes=[*notes, *trust.notes],
        references=references_fit,
    )


class TrustNotes:
    """Notes on what the audit refused to trust (cache entries, reference models) or found
    wanting in its own setup: shown as they happen and kept for result.json."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.notes: list[str] = []

    def note(self, message: str) -> None:
        self.notes.append(message)
        self.progress.note(message)


def preprocessor(policy: Policy) -> Preprocessor:
    spec = policy.preprocessing
    return Preprocessor(spec.mean, spec.std, spec.input_size, spec.channel_order)


# --- inputs -----------------------------------------------------------------------------------


def load_audit_data(policy: Policy, population_needed: int | Callable[[int], int] = 0) -> AuditData:
    """Load the policy's data files and build the audit set.

    `population_needed` is the population the reference-model attacks need, or a function of
    the number of members available (after data.max_per_side), their default train_size.
    """
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
    overlap_notes = _check_disjoint(policy, members, non_members, population, sources)
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
    data = AuditData(audit_set, sources, parts, members_available)
    if spec.class_names is not None:
        data = _with_class_names(data, spec.class_names)
    return data


def _check_disjoint(
    policy: Policy,
    members: ImageSet,
    non_members: ImageSet,
    population: ImageSet | None,
    sources: dict[str, DataSource],
) -> list[str]:
    """The sides (and the population) must be different data; see preconditions."""
    if policy.data.audit is not None:
        sets = {"data.audit (members)": members, "data.audit (non-members)": non_members}
        digests = {}
    else:
        sets = {"data.members": members, "data.non_members": non_members}
        digests = {f"data.{k}": v.sha256 for k, v in sources.items()}
    if population is not None:
        sets["data.population"] = population
        digests["data.population"] = sources["population"].sha256
    return preconditions.check_disjoint(sets, digests, policy.preconditions.max_shared_fraction)


def _with_class_names(data: AuditData, names: tuple[str, ...]) -> AuditData:
    label, source = data.largest_label()
    if label >= len(names):
        raise InputError(
            f"{source}: label {label} is out of range: data.class_names lists {len(names)} "
            f"names, so labels must be 0..{len(names) - 1}; fix the labels or data.class_names"
        )
    return replace(data, audit_set=replace(data.audit_set, class_names=names))


@contextmanager
def _naming_model(policy: Policy) -> Iterator[None]:
    """Name the model file in errors raised where only the classifier was known."""
    try:
        yield
    except ModelError as error:
        raise ModelError(f"model.path: {policy.model.path}: {error}") from error


def _check_model(
    model: LoadedModel, data: AuditData, policy: Policy, preprocess: Preprocessor
) -> tuple[int, str]:
    """Run a probe batch: output width must fit num_classes and the labels."""
    audit_set = data.audit_set
    preprocess.output_channels(audit_set.images.shape[1])
    probe = preprocess(audit_set.images[: min(8, len(audit_set.images))])
    logits = _probe(model, probe)
    num_classes = logits.shape[1]
    declared = policy.model.num_classes
    if declared is not None and declared != num_classes:
        raise InputError(
            f"model.num_classes: is {declared} but the model ({policy.model.path.name}) outputs "
            f"{num_classes} logits; set model.num_classes: {num_classes}, or use the right model"
        )
    label, source = data.largest_label()
    if label >= num_classes:
        raise InputError(
            f"{source}: label {label} is out of range for a model with {num_classes} outputs; "
            f"labels must be 0..{num_classes - 1}: fix the labels, or use the right model"
        )
    precision = choose_precision(model.classifier, probe, policy.runtime.precision)
    return num_classes, precision


def _probe(model: LoadedModel, probe: np.ndarray) -> np.ndarray:
    from mia_audit.inference import _run_padded

    return _run_padded(model.classifier, probe)


def views_needed(attacks: Sequence[Attack]) -> tuple[View, ...]:
    """The union of the attacks' query views, identity first (for accuracy)."""
    views = {IDENTITY}
    for attack in attacks:
        views.update(attack.views)
    return (IDENTITY, *sorted(views - {IDENTITY}))


def _target_logits(
    policy: Policy,
    model: LoadedModel,
    audit_set: AuditSet,
    preprocess: Preprocessor,
    attacks: Sequence[Attack],
    progress: Progress,
    notify: Notify,
) -> ViewLogits:
    views = views_needed(attacks)
    cache = ArrayCache(policy.runtime.cache_dir, notify=notify)
    request = LogitsRequest(
        model_sha256=model.sha256,
        data_sha256=_audit_images_sha256(audit_set),
        preprocess=preprocess,
        engine=_engine_key(model),
    )
    with progress.stage(f"target inference ({len(views)} views)", len(audit_set.labels)) as advance:
        logits = cached_predict(
            cache,
            request,
            model.classifier,
            audit_set.images,
            views,
            policy.runtime.batch_size,
            advance=advance,
            notify=progress.note,
            what="the target's logits on the audit set",
        )
    return ViewLogits(views=views, logits=logits)


def _engine_key(model: LoadedModel) -> str:
    """Engine, device and autocast precision: all three change the logits."""
    classifier = model.classifier
    precision = getattr(classifier, "autocast_dtype", None) or "fp32"
    return f"{classifier.engine}:{classifier.device}:{precision}"


def _audit_images_sha256(audit_set: AuditSet) -> str:
    from mia_audit.hashing import arrays_sha256

    return arrays_sha256(audit_set.images)


# --- reference models -------------------------------------------------------------------------


def prepare_references(
    loaded: LoadedPolicy,
    data: AuditData,
    model: LoadedModel,
    num_classes: int,
    preprocess: Preprocessor,
    requests: Sequence[ReferenceRequest],
    device: str,
    progress: Progress,
    notify: Notify | None = None,
) -> ReferenceModels:
    """Train (or load) every reference model the attacks asked for, once, with their logits."""
    policy = loaded.policy
    recipe = policy.reference_training.resolve(policy.model, data.members_available)
    assert recipe.architecture is not None  # the policy validator guarantees one
    audit_set = data.audit_set
    setup = ReferenceSetup(
        recipe=recipe,
        architecture=Architecture(
            recipe.architecture, num_classes, bool(recipe.cifar_stem), loaded.path.parent
        ),
        audit_images=audit_set.images,
        audit_labels=audit_set.labels,
        population=audit_set.population,
        preprocess=preprocess,
        device=device,
        batch_size=policy.runtime.batch_size,
        seed=policy.runtime.seed,
        target=TargetModel(model.classifier, model.sha256, _engine_key(model)),
    )
    references = ReferenceModels(setup, policy.runtime.cache_dir, progress=progress, notify=notify)
    references.prepare(requests)
    progress.note(
        f"reference models: {references.trained} trained, "
        f"{len(references.model_keys) - references.trained} reused from the cache"
    )
    return references


# --- attacks and metrics ----------------------------------------------------------------------


def _run_attacks(
    attacks: Sequence[Attack],
    context: AttackContext,
    audit_set: AuditSet,
    policy: Policy,
    progress: Progress,
    timer: Timer,
) -> list[AttackResult]:
    fprs = evaluation.report_fprs(gate_fprs(policy.gate))
    inputs = _statistics_input(context, audit_set, policy, fprs)
    results = []
    scores_by_attack: dict[str, np.ndarray] = {}
    for attack in attacks:
        label = attack.config.label
        with timer.phase(f"attack:{label}"), progress.stage(f"attack {label}", None):
            start = time.perf_counter()
            output = attack.score(context)
            scores = np.asarray(output.scores, dtype=np.float64)
            if scores.shape != audit_set.labels.shape or not np.isfinite(scores).all():
                raise AuditError(
                    f"attack {label!r} produced invalid scores (non-finite or wrong shape)"
                )
            result = attack_result(attack, output.parameters, scores, audit_set, fprs)
            result.seconds = round(time.perf_counter() - start, 3)
        with timer.phase("statistics"), progress.stage(f"statistics {label}", None):
            add_statistics(result, scores, inputs)
        results.append(result)
        scores_by_attack[label] = scores
    preconditions.check_attacks_oriented(audit_set.is_member, scores_by_attack)
    preconditions.check_swapped_view(
        policy.gate, audit_set.is_member, audit_set.labels, scores_by_attack
    )
    return results


def _statistics_input(
    context: AttackContext, audit_set: AuditSet, policy: Policy, fprs: Sequence[float]
) -> StatisticsInput:
    """What every attack's CIs need: membership, labels, target correctness, the settings."""
    predicted = np.asarray(context.target.identity).argmax(axis=-1)
    return StatisticsInput(
        is_member=audit_set.is_member,
        labels=audit_set.labels,
        correct=predicted == audit_set.labels,
        fprs=fprs,
        spec=policy.statistics,
        seed=policy.runtime.seed,
    )


def attack_result(
    attack: Attack,
    parameters: dict[str, object],
    scores: np.ndarray,
    audit_set: AuditSet,
    fprs: Sequence[float],
) -> AttackResult:
    is_member = audit_set.is_member
    tprs, supported = evaluation.tpr_table(is_member, scores, fprs)
    return AttackResult(
        name=attack.name,
        id=attack.config.label,
        summary=attack.summary,
        parameters=parameters,
        auc=metrics.auc(is_member, scores),
        tpr_at_fpr=tprs,
        tpr_at_fpr_supported=supported,
        balanced_accuracy=metrics.balanced_accuracy(is_member, scores),
        advantage=metrics.advantage(is_member, scores),
        roc=evaluation.downsampled_roc(is_member, scores),
        score_histogram=evaluation.score_histogram(is_member, scores),
        per_class=evaluation.per_class(
            is_member, scores, audit_set.labels, audit_set.class_names, fprs
        ),
        most_vulnerable=evaluation.most_vulnerable(
            is_member, scores, audit_set.labels, audit_set.ids
        ),
    )


def _gate_metrics(results: Sequence[AttackResult]) -> dict[str, AttackMetrics]:
    return {result.id: gate_metrics(result) for result in results}


def gate_metrics(result: AttackResult) -> AttackMetrics:
    """What the gate reads of one attack: point estimates, CIs, epsilon, class slices."""
    ci = {f"tpr_at_fpr@{key}": interval for key, interval in result.tpr_at_fpr_ci.items()}
    if result.auc_ci is not None:
        ci["auc"] = result.auc_ci
    if result.advantage_ci is not None:
        ci["advantage"] = result.advantage_ci
    classes = [
        ClassAuc(
            label=str(row.label) if row.name is None else f"{row.label} ({row.name})",
            auc=row.auc,
            ci=row.auc_ci,
            n_members=row.n_members,
            n_non_members=row.n_non_members,
        )
        for row in result.per_class
        if row.auc is not None
    ]
    epsilon = result.epsilon_lower_bound
    return AttackMetrics(
        auc=result.auc,
        advantage=result.advantage,
        tpr_at_fpr={float(key): value for key, value in result.tpr_at_fpr.items()},
        ci=ci,
        epsilon=None if epsilon is None else epsilon.value,
        classes=classes,
    )


def gate_baseline(gate: GateSpec) -> Baseline | None:
    """The baseline the gate compares with, checked before any work is done (exit 2)."""
    if gate.baseline is None:
        if gate.needs_baseline:
            first = next(i for i, _ in gate.limits() if "_increase" in i)
            raise PolicyError(missing_baseline_message(first))
        return None
    return load_baseline(gate.baseline)


def _checked_sizes(policy: Policy, audit_set: AuditSet) -> list[str]:
    size = preconditions.AuditSize(
        audit_set.n_members, audit_set.n_non_members, _class_sizes(audit_set)
    )
    return preconditions.check_sample_sizes(
        policy.gate, size, policy.statistics, policy.preconditions
    )


def _target_fit(target: ViewLogits, audit_set: AuditSet, num_classes: int) -> TargetFit:
    correct = target.identity.argmax(axis=-1) == audit_set.labels
    members = audit_set.is_member
    return TargetFit(
        member_correct=correct[members],
        non_member_correct=correct[~members],
        member_labels=audit_set.labels[members],
        num_classes=num_classes,
    )


def _class_sizes(audit_set: AuditSet) -> list[tuple[int, int]]:
    """(members, non-members) of every class in the audit set."""
    labels, members = audit_set.labels, audit_set.is_member
    return [
        (int((members & (labels == c)).sum()), int((~members & (labels == c)).sum()))
        for c in np.unique(labels)
    ]


# --- result pieces ----------------------------------------------------------------------------


def _target_info(
    policy: Policy,
    model: LoadedModel,
    target: ViewLogits,
    audit_set: AuditSet,
    num_classes: int,
    precision: str,
) -> TargetInfo:
    return TargetInfo(
        path=str(policy.model.path),
        format=model.format,
        sha256=model.sha256,
        architecture=model.architecture,
        factory=model.factory,
        num_classes=num_classes,
        engine=model.classifier.engine,
        precision=precision,
        accuracy=target_accuracy(target, audit_set),
    )


def target_accuracy(target: ViewLogits, audit_set: AuditSet) -> Accuracy:
    """The target's top-1 accuracy on members and on non-members (identity view)."""
    logits, members, labels = target.identity, audit_set.is_member, audit_set.labels
    return Accuracy(
        members=evaluation.accuracy(logits[members], labels[members]),
        non_members=evaluation.accuracy(logits[~members], labels[~members]),
    )


def _data_info(data: AuditData, policy: Policy) -> DataInfo:
    audit_set = data.audit_set
    from mia_audit.hashing import arrays_sha256

    return DataInfo(
        n_members=audit_set.n_members,
        n_non_members=audit_set.n_non_members,
        n_population=len(audit_set.population) if audit_set.population else 0,
        population_origin=audit_set.population_origin,
        image_shape=list(audit_set.images.shape[1:]),
        sha256=arrays_sha256(audit_set.images, audit_set.labels, audit_set.is_member),
        sources=data.sources,
        class_names=list(audit_set.class_names) if audit_set.class_names else None,
        notes=list(audit_set.notes),
    )
