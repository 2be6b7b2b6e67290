"""The one-run audit of a DP recipe: draw the canaries, train one model with DP-SGD on the
population plus the included ones (or load it from the model cache by its content key), score
each canary by its loss and bound epsilon from the guesses (`evaluation.one_run`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mia_audit.data.images import ImageSet
from mia_audit.dp.canaries import CanarySet, draw_canaries
from mia_audit.errors import PolicyError
from mia_audit.evaluation import epsilon, one_run
from mia_audit.evaluation.settings import StatisticsSpec
from mia_audit.models.inference import Preprocessor
from mia_audit.progress import Progress
from mia_audit.references.executors.base import Architecture
from mia_audit.references.provider import training_images
from mia_audit.references.settings import DpRecipe, TrainingRecipe
from mia_audit.references.training import TrainingData
from mia_audit.result import ClaimBound, OneRunAudit
from mia_audit.store.cache import model_store
from mia_audit.store.hashing import arrays_sha256, json_sha256

if TYPE_CHECKING:
    from torch import nn

#: Bumped when the canaries, the DP trainer or the scoring change what a key stands for.
ONE_RUN_VERSION = 1


@dataclass(frozen=True)
class OneRunInputs:
    """What the audit trains on and how: the recipe (with its `dp`), the population."""

    recipe: TrainingRecipe
    architecture: Architecture
    population: ImageSet
    preprocess: Preprocessor
    seed: int
    cache_dir: Path | None

    @property
    def dp(self) -> DpRecipe:
        assert self.recipe.dp is not None
        return self.recipe.dp


@dataclass(frozen=True)
class OneRunOutcome:
    """The result.json entry, and the canary scores behind it (for the claim's delta)."""

    result: OneRunAudit
    scores: np.ndarray
    included: np.ndarray


def canaries_of(inputs: OneRunInputs) -> CanarySet:
    """The canaries (PolicyError when the population is too small for m of them)."""
    try:
        return draw_canaries(
            inputs.population.labels,
            inputs.dp.canaries,
            inputs.dp.canary_kind,
            inputs.architecture.num_classes,
            inputs.seed,
            inputs.recipe.train_size or 0,
        )
    except ValueError as error:
        raise PolicyError(
            f"reference_training.dp.canaries: {error}, the population has "
            f"{len(inputs.population.labels)}; lower dp.canaries or train_size, or give more "
            "population data"
        ) from None


def run_one_run(
    inputs: OneRunInputs, statistics: StatisticsSpec, progress: Progress
) -> OneRunOutcome:
    """Train (or load) the one model and bound epsilon at statistics.delta."""
    start = time.perf_counter()
    canaries = canaries_of(inputs)
    data = _training_data(inputs, canaries)
    key = _model_key(inputs, canaries, data)
    store = model_store(inputs.cache_dir, progress.note)
    state = store.get(key, "one-run model")
    cached = state is not None
    model = inputs.architecture.build()
    if state is None:
        from mia_audit.dp.training import train_dp

        with progress.stage("one-run DP-SGD model", None):
            state = train_dp(model, data, inputs.recipe, inputs.dp, inputs.seed)
        store.put(key, state)
    model.load_state_dict(state)
    scores = _canary_scores(model, inputs, canaries)
    result = _result(inputs, canaries, data, scores, statistics, cached)
    result = result.model_copy(update={"seconds": round(time.perf_counter() - start, 3)})
    return OneRunOutcome(result, scores, canaries.included)


def _training_data(inputs: OneRunInputs, canaries: CanarySet) -> TrainingData:
    population = inputs.population
    rows, labels = canaries.training_rows(population.labels)
    pixels = training_images(population.images[rows], inputs.preprocess)
    return TrainingData(
        pixels, labels.astype(np.int64), inputs.preprocess.mean, inputs.preprocess.std
    )


def _model_key(inputs: OneRunInputs, canaries: CanarySet, data: TrainingData) -> str:
    return json_sha256(
        {
            "kind": "one-run-dp-model",
            "version": ONE_RUN_VERSION,
            "data": arrays_sha256(data.images, data.labels),
            "canaries": arrays_sha256(canaries.rows, canaries.labels, canaries.included),
            "seed": inputs.seed,
            "recipe": inputs.recipe.cache_key(),
            "architecture": inputs.architecture.cache_key(),
            "normalise": {"mean": inputs.preprocess.mean, "std": inputs.preprocess.std},
        }
    )


def _canary_scores(model: nn.Module, inputs: OneRunInputs, canaries: CanarySet) -> np.ndarray:
    """Minus each canary's cross-entropy loss under its canary label (higher: member)."""
    import torch
    import torch.nn.functional as F

    from mia_audit.references.training import DeviceData

    pixels = training_images(inputs.population.images[canaries.rows], inputs.preprocess)
    data = TrainingData(pixels, canaries.labels, inputs.preprocess.mean, inputs.preprocess.std)
    shared = DeviceData(data, "cpu")
    plain = inputs.recipe.model_copy(update={"augment": ()})
    model.eval()
    losses = []
    with torch.no_grad():
        for start in range(0, len(canaries.rows), 256):
            rows = torch.arange(start, min(start + 256, len(canaries.rows)))
            images, labels = shared.batch(rows, plain, torch.Generator())
            logits = model(images.contiguous()).float()
            losses.append(F.cross_entropy(logits, labels, reduction="none").numpy())
    return -np.concatenate(losses).astype(np.float64)


def _result(
    inputs: OneRunInputs,
    canaries: CanarySet,
    data: TrainingData,
    scores: np.ndarray,
    statistics: StatisticsSpec,
    cached: bool,
) -> OneRunAudit:
    from mia_audit.dp.training import accountant_epsilon

    delta, confidence = statistics.delta, statistics.confidence_level
    bound = one_run.one_run_lower_bound(
        canaries.included, scores, delta=delta, confidence=confidence
    )
    accountant = accountant_epsilon(inputs.dp, len(data.labels), inputs.recipe, delta)
    return OneRunAudit(
        canaries=len(canaries.rows),
        kind=canaries.kind,
        included=int(canaries.included.sum()),
        seed=canaries.seed,
        train_size=len(data.labels),
        noise_multiplier=inputs.dp.noise_multiplier,
        max_grad_norm=inputs.dp.max_grad_norm,
        accountant_epsilon=None if math.isinf(accountant) else accountant,
        delta=delta,
        epsilon_lower_bound=bound.epsilon,
        **{name: getattr(bound, name) for name in _GUESS_FIELDS},
        two_sided_bound=_two_sided(canaries.included, scores, delta, confidence, inputs.seed),
        best_possible=one_run.perfect_one_run_epsilon(len(scores), delta, confidence),
        cached=cached,
        seconds=0.0,
    )


#: The guesses behind the one-run bound, as `OneRunAudit` and `OneRunBound` both name them.
_GUESS_FIELDS = ("guesses", "correct", "k_plus", "k_minus", "candidates")


def _two_sided(
    included: np.ndarray, scores: np.ndarray, delta: float, confidence: float, seed: int
) -> float:
    """The existing Clopper-Pearson bound on the same canaries (0 below 2 per side)."""
    if min(int(included.sum()), int((~included).sum())) < 2:
        return 0.0
    return epsilon.epsilon_lower_bound(
        included, scores, delta=delta, confidence=confidence, random_state=seed
    ).epsilon


def claim_bound(
    outcome: OneRunOutcome, claim: float, delta: float, confidence: float
) -> ClaimBound:
    """The one-run bound at the claim's delta, as the claim check reads it."""
    bound = one_run.one_run_lower_bound(
        outcome.included, outcome.scores, delta=delta, confidence=confidence
    )
    m = len(outcome.scores)
    return ClaimBound(
        source="one_run",
        epsilon_lower_bound=bound.epsilon,
        guesses=bound.guesses,
        correct=bound.correct,
        samples=m,
        best_possible=one_run.perfect_one_run_epsilon(m, delta, confidence),
        needed=one_run.min_canaries(claim, delta, confidence),
    )
