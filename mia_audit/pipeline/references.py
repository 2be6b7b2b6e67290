"""Reference models for the attacks that asked for them: the setup from the prepared run, the
executor the policy chose, and the provider that trains or loads them.
"""

from __future__ import annotations

from collections.abc import Sequence

from mia_audit.attacks.reference_sets import ReferenceRequest
from mia_audit.models.outputs import AttackInputClassifier
from mia_audit.pipeline.prepare import PreparedRun
from mia_audit.progress import Notify
from mia_audit.references.executors import create_executor
from mia_audit.references.executors.base import Architecture
from mia_audit.references.provider import ReferenceModels, ReferenceSetup, TargetModel


def prepare_references(
    prepared: PreparedRun,
    requests: Sequence[ReferenceRequest],
    notify: Notify | None = None,
    *,
    provider: ReferenceModels | None = None,
) -> ReferenceModels:
    """Train (or load) every reference model the attacks asked for, once, with their logits
    (through `provider`, e.g. the calibration pilot's choice, else the policy's recipe's)."""
    references = provider or reference_provider(prepared, notify)
    references.prepare(requests)
    prepared.progress.note(
        f"reference models: {references.trained} trained, "
        f"{references.reused()} reused from the cache"
    )
    return references


def reference_provider(
    prepared: PreparedRun, notify: Notify | None = None, *, executor: bool = True
) -> ReferenceModels:
    """The provider of the run's reference models (with the policy's executor), before it
    trains or loads anything. `executor=False` leaves the executor out (a plan trains none)."""
    policy, progress = prepared.policy, prepared.progress
    chosen = (
        create_executor(policy.runtime.executor, device=prepared.device, notify=progress.note)
        if executor
        else None
    )
    return ReferenceModels(
        reference_setup(prepared),
        policy.runtime.cache_dir,
        executor=chosen,
        progress=progress,
        notify=notify,
    )


def reference_setup(prepared: PreparedRun) -> ReferenceSetup:
    """What the run's reference models depend on: the recipe, the architecture, the audit set
    and population, the preprocessing, and the target (for its outputs on the population)."""
    policy, model = prepared.policy, prepared.model
    recipe = policy.reference_training.resolve(policy.model, prepared.data.members_available)
    assert recipe.architecture is not None  # the policy validator guarantees one
    audit_set = prepared.data.audit_set
    architecture = Architecture(
        recipe.architecture, prepared.num_classes, bool(recipe.cifar_stem), prepared.search_path
    )
    # The target's population outputs as the attacks read them (log-probabilities for a
    # probabilities model), like its outputs on the audit set.
    target = AttackInputClassifier(model.classifier, prepared.outputs.kind)
    return ReferenceSetup(
        recipe=recipe,
        architecture=architecture,
        audit_images=audit_set.images,
        audit_labels=audit_set.labels,
        population=audit_set.population,
        preprocess=prepared.preprocess,
        device=prepared.device,
        batch_size=policy.runtime.batch_size,
        seed=policy.runtime.seed,
        target=TargetModel(target, model.sha256, model.engine_key),
    )
