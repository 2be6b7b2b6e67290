"""Reference models for the attacks that asked for them: the setup from the policy, the
executor it chose, and the provider that trains or loads them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mia_audit.attacks.outputs import OutputKind
from mia_audit.attacks.reference_sets import ReferenceRequest
from mia_audit.models.inference import (
    Preprocessor,
)
from mia_audit.models.loading import LoadedModel
from mia_audit.models.outputs import AttackInputClassifier
from mia_audit.pipeline.inputs import AuditData
from mia_audit.policy.schema import Policy
from mia_audit.progress import Notify, Progress
from mia_audit.references.executors import create_executor
from mia_audit.references.executors.base import Architecture
from mia_audit.references.provider import ReferenceModels, ReferenceSetup, TargetModel


def prepare_references(
    policy: Policy,
    search_path: Path | None,
    data: AuditData,
    model: LoadedModel,
    num_classes: int,
    preprocess: Preprocessor,
    requests: Sequence[ReferenceRequest],
    device: str,
    progress: Progress,
    notify: Notify | None = None,
    output_kind: OutputKind = "logits",
) -> ReferenceModels:
    """Train (or load) every reference model the attacks asked for, once, with their logits."""
    references = reference_provider(
        policy,
        search_path,
        data,
        model,
        num_classes,
        preprocess,
        device,
        progress,
        notify,
        output_kind=output_kind,
    )
    references.prepare(requests)
    progress.note(
        f"reference models: {references.trained} trained, "
        f"{len(references.model_keys) - references.trained} reused from the cache"
    )
    return references


def reference_provider(
    policy: Policy,
    search_path: Path | None,
    data: AuditData,
    model: LoadedModel,
    num_classes: int,
    preprocess: Preprocessor,
    device: str,
    progress: Progress,
    notify: Notify | None = None,
    *,
    executor: bool = True,
    output_kind: OutputKind = "logits",
) -> ReferenceModels:
    """The provider of the run's reference models (with the policy's executor), before it
    trains or loads anything. `executor=False` leaves the executor out (a plan trains none)."""
    recipe = policy.reference_training.resolve(policy.model, data.members_available)
    assert recipe.architecture is not None  # the policy validator guarantees one
    audit_set = data.audit_set
    setup = ReferenceSetup(
        recipe=recipe,
        architecture=Architecture(
            recipe.architecture, num_classes, bool(recipe.cifar_stem), search_path
        ),
        audit_images=audit_set.images,
        audit_labels=audit_set.labels,
        population=audit_set.population,
        preprocess=preprocess,
        device=device,
        batch_size=policy.runtime.batch_size,
        seed=policy.runtime.seed,
        # The target's population outputs as the attacks read them (log-probabilities for a
        # probabilities model), like its outputs on the audit set.
        target=TargetModel(
            AttackInputClassifier(model.classifier, output_kind), model.sha256, model.engine_key
        ),
    )
    chosen = (
        create_executor(policy.runtime.executor, device=device, notify=progress.note)
        if executor
        else None
    )
    return ReferenceModels(
        setup, policy.runtime.cache_dir, executor=chosen, progress=progress, notify=notify
    )
