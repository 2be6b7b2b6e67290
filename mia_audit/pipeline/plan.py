"""What a run will do and about how long it will take, without training anything.

`plan_run` takes a prepared run (data loaded, model probed: `prepare_run`), counts the work
(images to score per view, reference models to train and those the cache holds, images they
are run on), measures throughput on the run's device with a short probe (a few training steps
of one reference model, one inference batch of the target and of that model, the statistics of
one attack on a subsample), and turns both into an estimate of wall time per phase and of the
disk the cache grows by. `mia-audit plan` prints it; `runtime.max_minutes` makes `run` refuse
(exit 2) when the estimate is over the limit.

The estimate is deliberately simple: work divided by measured throughput. It leaves out the
attack scoring itself (seconds for the target-only attacks; RMIA's pairwise comparisons and the
attack classifiers grow with the data) and, on a GPU, the speed-up of training several models at
once, so it errs long there. BENCHMARKS.md compares it with measured runs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mia_audit.attacks.config import AttackConfig
from mia_audit.attacks.queries import IDENTITY, View
from mia_audit.attacks.reference_base import ReferenceAttack, ReferenceAttackConfig
from mia_audit.errors import PolicyError
from mia_audit.models.inference import run_batch
from mia_audit.pipeline.prepare import PreparedRun
from mia_audit.pipeline.target import target_logits_request, views_needed
from mia_audit.reports.text import plural
from mia_audit.store.cache import entry_key, logits_store

if TYPE_CHECKING:
    from pathlib import Path

    from mia_audit.references.provider import ReferenceModels, ReferenceSurvey

#: Images of the inference probe on a CPU (a batch's throughput there hardly depends on its size).
CPU_INFERENCE_PROBE = 256
#: Images per training step of the probe on a CPU (the recipe's batch on a GPU).
CPU_TRAINING_PROBE = 32
#: Timed training steps of the probe (after one untimed step).
TRAINING_PROBE_STEPS = 2
#: Samples the statistics probe evaluates one attack on (its time is scaled to the audit set).
STATISTICS_PROBE = 2000
#: A GitHub-hosted runner stops a job after this many minutes.
HOSTED_RUNNER_MINUTES = 360


@dataclass(frozen=True)
class Phase:
    """One part of the run: its estimated seconds, and what it is made of."""

    name: str
    seconds: float
    detail: str


@dataclass(frozen=True)
class Throughput:
    """What the probe measured on the run's device (images per second)."""

    inference: float
    training: float | None = None
    reference_inference: float | None = None
    #: Seconds the statistics of one attack take on the whole audit set.
    statistics: float = 0.0


@dataclass(frozen=True)
class PilotBound:
    """The most the calibration pilot can train: `max_models` models and these images (its
    walk moves one grid step per model; the model it chooses is the first reference model)."""

    max_models: int
    training_images: int


@dataclass(frozen=True)
class RunPlan:
    """What `mia-audit run` will do with this policy, and about how long it will take."""

    name: str
    device: str
    n_members: int
    n_non_members: int
    n_population: int
    attacks: tuple[str, ...]
    target_views: int
    target_views_cached: int
    #: Images the target scores (audit set and population, every view the cache lacks).
    target_images: int
    references: ReferenceSurvey | None
    throughput: Throughput
    phases: tuple[Phase, ...]
    cache_dir: Path
    #: Bytes the cache grows by (new models and logits).
    cache_bytes: int
    max_minutes: float | None
    #: The calibration pilot's bound (reference_training.calibrate): models and training images.
    pilot: PilotBound | None = None

    @property
    def seconds(self) -> float:
        return sum(phase.seconds for phase in self.phases)

    def to_dict(self) -> dict[str, Any]:
        """The plan as plain values (`mia-audit plan --json`)."""
        references = self.references
        return {
            "name": self.name,
            "device": self.device,
            "data": {
                "members": self.n_members,
                "non_members": self.n_non_members,
                "population": self.n_population,
            },
            "attacks": list(self.attacks),
            "target": {
                "views": self.target_views,
                "views_cached": self.target_views_cached,
                "images_to_score": self.target_images,
            },
            "reference_models": None
            if references is None
            else {
                "sets": [
                    {"mode": mode, "count": count, "cached": cached}
                    for mode, count, cached in references.sets
                ],
                "models": references.models,
                "cached": references.cached,
                "to_train": references.to_train,
                "training_images": references.training_images,
                "inference_images": references.inference_images,
            },
            "throughput": {
                "inference_images_per_s": self.throughput.inference,
                "training_images_per_s": self.throughput.training,
                "reference_inference_images_per_s": self.throughput.reference_inference,
            },
            "phases": {phase.name: round(phase.seconds, 1) for phase in self.phases},
            "estimate_seconds": round(self.seconds, 1),
            "cache_dir": str(self.cache_dir),
            "cache_bytes": self.cache_bytes,
            "max_minutes": self.max_minutes,
            "calibration_pilot": None
            if self.pilot is None
            else {
                "max_models": self.pilot.max_models,
                "max_training_images": self.pilot.training_images,
            },
        }


def plan_run(prepared: PreparedRun) -> RunPlan:
    """Count the run's work and measure throughput on its device; trains no model."""
    progress = prepared.progress
    policy, audit_set = prepared.policy, prepared.data.audit_set
    views = views_needed(prepared.attacks)
    cached_views = _cached_target_views(prepared, views)
    n_audit = len(audit_set.labels)
    references = _reference_models(prepared)
    survey = None
    population_views: tuple[View, ...] = ()
    if references is not None:
        requests = [a.request() for a in prepared.attacks if isinstance(a, ReferenceAttack)]
        with progress.stage("counting reference models"):
            survey = references.survey(requests)
        population_views = tuple(
            sorted({view for r in requests if r.population for view in (IDENTITY, *r.views)})
        )
    n_population = 0 if audit_set.population is None else len(audit_set.population)
    target_images = n_audit * (len(views) - cached_views) + n_population * len(population_views)
    with progress.stage("measuring throughput"):
        throughput = _measure(prepared, references, survey)
    pilot = _pilot_bound(prepared, references)
    phases = _phases(prepared, throughput, target_images, survey, pilot)
    return RunPlan(
        name=policy.name,
        device=prepared.device,
        n_members=audit_set.n_members,
        n_non_members=audit_set.n_non_members,
        n_population=n_population,
        attacks=tuple(_attack_text(config) for config in policy.attacks),
        target_views=len(views),
        target_views_cached=cached_views,
        target_images=target_images,
        references=survey,
        throughput=throughput,
        phases=phases,
        cache_dir=policy.runtime.cache_dir,
        cache_bytes=_cache_bytes(prepared, target_images, survey, references, pilot),
        max_minutes=policy.runtime.max_minutes,
        pilot=pilot,
    )


def _pilot_bound(prepared: PreparedRun, references: ReferenceModels | None) -> PilotBound | None:
    training = prepared.policy.reference_training
    if references is None or not training.calibrate:
        return None
    from mia_audit.references.calibration import CandidateGrid, pilot_epochs_bound

    recipe = references.setup.recipe
    grid = CandidateGrid.of(training.calibration, recipe)
    max_models = training.calibration.max_models
    epochs = pilot_epochs_bound(grid, grid.start(recipe), max_models)
    return PilotBound(max_models, epochs * references.setup.train_size)


def check_max_minutes(plan: RunPlan) -> None:
    """`runtime.max_minutes`: refuse (exit 2) a run estimated to take longer."""
    limit = plan.max_minutes
    if limit is None or plan.seconds <= limit * 60:
        return
    longest = max(plan.phases, key=lambda phase: phase.seconds)
    raise PolicyError(
        f"runtime.max_minutes: the run is estimated at {plan.seconds / 60:.0f} minutes on "
        f"{plan.device} (longest: {longest.name}, {longest.seconds / 60:.0f} minutes), over the "
        f"limit of {limit:g}; `mia-audit plan` shows the breakdown: use a GPU, train fewer "
        "reference models or epochs, lower data.max_per_side, or raise runtime.max_minutes"
    )


# --- counting -----------------------------------------------------------------------------------


def _attack_text(config: AttackConfig) -> str:
    """`lira (4 online models, 2 queries)`: an attack with what makes it cost."""
    parts = []
    if isinstance(config, ReferenceAttackConfig):
        kind = "shadow model" if config.name == "shadow" else f"{config.reference_mode} model"
        parts.append(plural(config.reference_count, kind))
    queries = len(config.queries.views)
    if queries > 1:
        parts.append(plural(queries, "query", "queries"))
    return config.label + (f" ({', '.join(parts)})" if parts else "")


def _cached_target_views(prepared: PreparedRun, views: Sequence[View]) -> int:
    """Views of the target's logits on the audit set the cache holds (by file)."""
    store = logits_store(prepared.policy.runtime.cache_dir)
    request = target_logits_request(prepared.model, prepared.data.audit_set, prepared.preprocess)
    return sum(entry_key("logits", request.key_parts(view)) in store for view in views)


def _reference_models(prepared: PreparedRun) -> ReferenceModels | None:
    """The run's reference-model provider (nothing trained), when an attack needs one."""
    if not prepared.policy.reference_attacks:
        return None
    from mia_audit.pipeline.references import reference_provider

    return reference_provider(prepared, executor=False)


# --- measuring ----------------------------------------------------------------------------------


def _measure(
    prepared: PreparedRun, references: ReferenceModels | None, survey: ReferenceSurvey | None
) -> Throughput:
    images = prepared.data.audit_set.images
    size = prepared.policy.runtime.batch_size
    if prepared.device == "cpu":
        size = min(size, CPU_INFERENCE_PROBE)
    batch = prepared.preprocess(images[: min(size, len(images))])
    inference = _images_per_second(lambda: run_batch(prepared.model.classifier, batch), len(batch))
    training = reference_inference = None
    if references is not None and survey is not None and survey.models:
        training, reference_inference = _measure_reference(prepared, references, batch)
    return Throughput(inference, training, reference_inference, _measure_statistics(prepared))


def _images_per_second(call: Any, n: int) -> float:
    call()  # warm-up: allocation, kernel choice, onnxruntime's first-run cost
    start = time.perf_counter()
    call()
    return n / max(time.perf_counter() - start, 1e-9)


def _measure_reference(
    prepared: PreparedRun, references: ReferenceModels, batch: np.ndarray
) -> tuple[float, float]:
    from mia_audit.models.classifier import TorchClassifier
    from mia_audit.references.training import measure_training

    setup = references.setup
    steps_batch = setup.recipe.batch_size
    if prepared.device == "cpu":
        steps_batch = min(steps_batch, CPU_TRAINING_PROBE)
    training, model = measure_training(
        setup.architecture.build,
        references.training_pool(),
        setup.recipe,
        prepared.device,
        batch_size=steps_batch,
        steps=TRAINING_PROBE_STEPS,
    )
    classifier = TorchClassifier(model, prepared.device)
    inference = _images_per_second(lambda: run_batch(classifier, batch), len(batch))
    return training, inference


def _measure_statistics(prepared: PreparedRun) -> float:
    """Seconds the statistics of one attack take on the audit set (measured on a subsample of
    random scores, scaled by its size)."""
    from mia_audit.evaluation.evaluate import AttackIdentity, AuditSamples, evaluate_attack
    from mia_audit.pipeline.attacks import evaluation_settings

    audit_set, policy = prepared.data.audit_set, prepared.policy
    n = len(audit_set.labels)
    rng = np.random.default_rng(0)
    rows = np.sort(rng.choice(n, min(n, STATISTICS_PROBE), replace=False))
    samples = AuditSamples(
        is_member=audit_set.is_member[rows],
        labels=audit_set.labels[rows],
        ids=audit_set.ids[rows],
        correct=rng.random(len(rows)) < 0.5,
    )
    settings = evaluation_settings(policy)
    start = time.perf_counter()
    evaluate_attack(AttackIdentity("probe", "probe"), rng.random(len(rows)), samples, settings, 0.0)
    return (time.perf_counter() - start) * n / len(rows)


# --- estimating ---------------------------------------------------------------------------------


def _phases(
    prepared: PreparedRun,
    throughput: Throughput,
    target_images: int,
    survey: ReferenceSurvey | None,
    pilot: PilotBound | None = None,
) -> tuple[Phase, ...]:
    phases = [
        Phase("loading data and model", prepared.load_seconds, "measured"),
        Phase(
            "target inference",
            target_images / throughput.inference,
            f"{target_images} images at {throughput.inference:.0f} images/s",
        ),
    ]
    if survey is not None and survey.models:
        training = throughput.training or 0.0
        inference = throughput.reference_inference or throughput.inference
        if pilot is not None:
            phases.append(
                Phase(
                    "calibration pilot",
                    pilot.training_images / training if training else 0.0,
                    f"at most {plural(pilot.max_models, 'model')}, {pilot.training_images} "
                    f"images at {training:.1f} images/s (its chosen model is the first "
                    "reference model; cached candidates train nothing)",
                )
            )
        phases.append(
            Phase(
                "reference training",
                survey.training_images / training if training else 0.0,
                f"{plural(survey.to_train, 'model')} to train, {survey.training_images} images "
                f"at {training:.1f} images/s ({survey.cached} cached)",
            )
        )
        phases.append(
            Phase(
                "reference inference",
                survey.inference_images / inference,
                f"{survey.inference_images} images at {inference:.0f} images/s",
            )
        )
    n_attacks = len(prepared.attacks)
    phases.append(
        Phase(
            "statistics",
            throughput.statistics * n_attacks,
            f"{plural(n_attacks, 'attack')} x {throughput.statistics:.1f} s",
        )
    )
    return tuple(phases)


def _cache_bytes(
    prepared: PreparedRun,
    target_images: int,
    survey: ReferenceSurvey | None,
    references: ReferenceModels | None,
    pilot: PilotBound | None = None,
) -> int:
    """Logits are float32 (images x classes); a model file is its state dict's tensors."""
    logits = 4 * prepared.num_classes * target_images
    if survey is None or references is None:
        return logits
    logits += 4 * prepared.num_classes * survey.inference_images
    module = references.setup.architecture.build()
    model_bytes = sum(int(t.numel()) * int(t.element_size()) for t in module.state_dict().values())
    pilot_models = 0 if pilot is None else pilot.max_models
    return logits + (survey.to_train + pilot_models) * model_bytes
