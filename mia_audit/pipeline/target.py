"""The target: probe it (output width, labels, precision), its logits on the audit set for every
query view (cached, spot-checked), and what the result records about it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import numpy as np

from mia_audit.attacks.base import Attack, ViewLogits
from mia_audit.attacks.outputs import OutputKind
from mia_audit.attacks.queries import IDENTITY, View
from mia_audit.attacks.registry import attack_class, attack_names
from mia_audit.data.audit import AuditSet
from mia_audit.errors import (
    InputError,
    ModelError,
)
from mia_audit.evaluation import breakdowns as evaluation
from mia_audit.models.batch_check import batch_dependence, batch_dependence_message
from mia_audit.models.classifier import at_precision
from mia_audit.models.inference import (
    LogitsRequest,
    Preprocessor,
    cached_predict,
    choose_precision,
    run_batch,
)
from mia_audit.models.loading import LoadedModel
from mia_audit.models.outputs import (
    LabelVectorClassifier,
    OutputDecision,
    attack_inputs,
    check_outputs_hold,
    is_label_vector,
    resolve_output_kind,
)
from mia_audit.pipeline.inputs import AuditData
from mia_audit.pipeline.preconditions import TargetFit
from mia_audit.policy.schema import Policy
from mia_audit.progress import Notify, Progress
from mia_audit.reports.text import plural
from mia_audit.result import (
    Accuracy,
    TargetInfo,
)
from mia_audit.store.cache import logits_store


def preprocessor(policy: Policy) -> Preprocessor:
    spec = policy.preprocessing
    return Preprocessor(spec.mean, spec.std, spec.input_size, spec.channel_order)


@contextmanager
def naming_model(policy: Policy) -> Iterator[None]:
    """Name the model file in errors raised where only the classifier was known."""
    try:
        yield
    except ModelError as error:
        raise ModelError(f"model.path: {policy.model.path}: {error}") from error


def check_model(
    model: LoadedModel, data: AuditData, policy: Policy, preprocess: Preprocessor
) -> tuple[int, LoadedModel, OutputDecision]:
    """Run a probe batch: what kind of outputs the model returns (`model.outputs`), and their
    width must fit num_classes and the labels. Returns the number of classes, the model at the
    precision the probe chose (a model that returns class indices wrapped to return one-hot
    rows) and the output kind."""
    audit_set = data.audit_set
    preprocess.output_channels(audit_set.images.shape[1])
    probe = preprocess(audit_set.images[: min(8, len(audit_set.images))])
    outputs = run_batch(model.classifier, probe)
    _check_batch_independent(model, probe, outputs, policy)
    outputs = _index_column_as_vector(outputs)
    label_vector = outputs.ndim == 1
    if label_vector and not is_label_vector(outputs):
        raise ModelError(
            f"the model returned one value per image ({outputs.shape}) that is not a class "
            "index; a classifier returns (n, classes) logits or probabilities, or (n,) labels"
        )
    decision = resolve_output_kind(policy.model.outputs, outputs, label_vector)
    declared = policy.model.num_classes
    if label_vector:
        num_classes = declared or max(data.largest_label()[0], int(outputs.max())) + 1
        model = replace(model, classifier=LabelVectorClassifier(model.classifier, num_classes))
    else:
        num_classes = outputs.shape[1]
    if declared is not None and declared != num_classes:
        raise InputError(
            f"model.num_classes: is {declared} but the model ({policy.model.display_name}) outputs "
            f"{num_classes} logits; set model.num_classes: {num_classes}, or use the right model"
        )
    label, source = data.largest_label()
    if label >= num_classes:
        raise InputError(
            f"{source}: label {label} is out of range for a model with {num_classes} outputs; "
            f"labels must be 0..{num_classes - 1}: fix the labels, or use the right model"
        )
    precision = choose_precision(model.classifier, probe, policy.runtime.precision)
    classifier = at_precision(model.classifier, precision)
    return num_classes, replace(model, classifier=classifier, precision=precision), decision


def _index_column_as_vector(outputs: Any) -> Any:
    """An (n, 1) output is one value per image: class indices (an argmax head that keeps its
    dimension), never one logit of a one-class model."""
    if outputs.ndim != 2 or outputs.shape[1] != 1:
        return outputs
    if not is_label_vector(outputs[:, 0]):
        raise ModelError(
            f"the model returned one column per image ({outputs.shape}) that is not class "
            "indices; a classifier returns (n, classes) logits or probabilities, or labels "
            "as (n,) or (n, 1) class indices"
        )
    return outputs[:, 0]


def _check_batch_independent(
    model: LoadedModel, probe: np.ndarray, outputs: np.ndarray, policy: Policy
) -> None:
    """Exit 2 when the same image's outputs change with the images beside it in the batch."""
    found = batch_dependence(model.classifier, probe, outputs)
    if found is not None:
        raise InputError(f"model.path: {policy.model.path}: {batch_dependence_message(found)}")


def attack_view(decision: OutputDecision, raw: ViewLogits) -> ViewLogits:
    """The target's outputs as the attacks read them (`mia_audit.models.outputs`), after
    checking that every audited sample's outputs are of the kind the probe found."""
    check_outputs_hold(decision, raw.identity)
    return ViewLogits(views=raw.views, logits=attack_inputs(decision.kind, raw.logits))


def views_needed(attacks: Sequence[Attack[Any]]) -> tuple[View, ...]:
    """The union of the attacks' query views, identity first (for accuracy)."""
    views = {IDENTITY}
    for attack in attacks:
        views.update(attack.views)
    return (IDENTITY, *sorted(views - {IDENTITY}))


def target_logits(
    policy: Policy,
    model: LoadedModel,
    audit_set: AuditSet,
    preprocess: Preprocessor,
    attacks: Sequence[Attack[Any]],
    progress: Progress,
    notify: Notify,
) -> ViewLogits:
    views = views_needed(attacks)
    cache = logits_store(policy.runtime.cache_dir, notify=notify)
    request = target_logits_request(model, audit_set, preprocess)
    description = f"target inference ({plural(len(views), 'view')})"
    with progress.stage(description, len(audit_set.labels)) as advance:
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


def target_logits_request(
    model: LoadedModel, audit_set: AuditSet, preprocess: Preprocessor
) -> LogitsRequest:
    """The cache request of the target's logits on the audit set (run and plan alike)."""
    from mia_audit.store.hashing import arrays_sha256

    return LogitsRequest(
        model_sha256=model.sha256,
        data_sha256=arrays_sha256(audit_set.images),
        preprocess=preprocess,
        engine=model.engine_key,
    )


def target_accuracy(target: ViewLogits, audit_set: AuditSet) -> Accuracy:
    """The target's top-1 accuracy on members and on non-members (identity view)."""
    logits, members, labels = target.identity, audit_set.is_member, audit_set.labels
    return Accuracy(
        members=evaluation.accuracy(logits[members], labels[members]),
        non_members=evaluation.accuracy(logits[~members], labels[~members]),
    )


def target_info(
    policy: Policy,
    model: LoadedModel,
    target: ViewLogits,
    audit_set: AuditSet,
    num_classes: int,
    outputs: OutputDecision,
) -> TargetInfo:
    return TargetInfo(
        path=str(policy.model.path),
        format=model.format,
        sha256=model.sha256,
        architecture=model.architecture,
        factory=model.factory,
        num_classes=num_classes,
        engine=model.classifier.engine,
        precision=model.precision,
        accuracy=target_accuracy(target, audit_set),
        outputs=outputs.kind,
        outputs_detected=outputs.detected,
        attacks_allowed=allowed_attacks(outputs.kind),
        mlflow=model.mlflow,
    )


def allowed_attacks(kind: OutputKind) -> list[str]:
    """The registered attacks a target of this output kind can feed."""
    return [name for name in attack_names() if kind in attack_class(name).output_kinds]


def target_fit(target: ViewLogits, audit_set: AuditSet, num_classes: int) -> TargetFit:
    correct = target.identity.argmax(axis=-1) == audit_set.labels
    members = audit_set.is_member
    return TargetFit(
        member_correct=correct[members],
        non_member_correct=correct[~members],
        member_labels=audit_set.labels[members],
        num_classes=num_classes,
    )
