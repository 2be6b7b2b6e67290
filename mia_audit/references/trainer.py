"""Training reference models through any executor, behind one call.

An executor either trains only (`LocalExecutor`, a plugin's) or also runs each model where it
trained it (a `PredictingExecutor` such as Ray's) and hands its logits back with its weights.
`Trainer` decides which once, when it is built: `train` has one signature for both, every task
names the logits wanted of it (an executor that only trains ignores them), and
`logits_device` says where the models' logits are computed (part of their cache key).
"""

from __future__ import annotations

from collections.abc import Sequence

from mia_audit.attacks.reference_sets import Mode
from mia_audit.progress import Advance, Progress
from mia_audit.references.executors.base import (
    Architecture,
    Executor,
    InferenceData,
    ModelLogits,
    OnTrained,
    TrainingTask,
    as_predicting,
    close_executor,
)
from mia_audit.references.settings import TrainingRecipe
from mia_audit.references.training import TrainingData
from mia_audit.reports.text import plural
from mia_audit.store.cache import StateDict


class Trainer:
    """Trains tasks mode by mode through the executor, as progress stages; `trained` counts
    the models handed back in this run."""

    def __init__(
        self,
        executor: Executor,
        recipe: TrainingRecipe,
        architecture: Architecture,
        device: str,
        progress: Progress,
    ) -> None:
        self.executor = executor
        self.recipe = recipe
        self.architecture = architecture
        self.progress = progress
        self._predicting = as_predicting(executor)
        #: Whether the executor hands logits back with the weights.
        self.predicts_where_trained = self._predicting is not None
        #: Where the reference models' logits are computed.
        self.logits_device = (
            device if self._predicting is None else self._predicting.inference_device
        )
        self.trained = 0

    def train(
        self,
        mode: Mode,
        tasks: Sequence[TrainingTask],
        data: TrainingData,
        inference: InferenceData,
        on_trained: OnTrained,
    ) -> None:
        """Train one mode's tasks on its pool; `on_trained` hears of each model at once."""
        images = sum(len(task.job.index) for task in tasks) * self.recipe.epochs
        description = f"training {plural(len(tasks), f'{mode} reference model')}"
        with self.progress.stage(description, images) as advance:
            counted = self._counted(advance, len(tasks))
            self._call(tasks, data, self._counting(on_trained), counted, inference)

    def close(self) -> None:
        close_executor(self.executor)

    def _call(
        self,
        tasks: Sequence[TrainingTask],
        data: TrainingData,
        on_trained: OnTrained,
        advance: Advance,
        inference: InferenceData,
    ) -> None:
        recipe, architecture = self.recipe, self.architecture
        if self._predicting is None:
            self.executor.train(tasks, data, recipe, architecture, on_trained, advance)
        else:
            self._predicting.train(
                tasks, data, recipe, architecture, on_trained, advance, inference=inference
            )

    def _counting(self, on_trained: OnTrained) -> OnTrained:
        def counted(
            task: TrainingTask, state: StateDict, logits: ModelLogits | None = None
        ) -> None:
            on_trained(task, state, logits)
            self.trained += 1

        return counted

    def _counted(self, advance: Advance, total: int) -> Advance:
        """`advance` with how many of the stage's models are trained so far in its detail
        (the executor says which epoch; `on_trained` hears of each finished model)."""
        before = self.trained

        def counted(n: int, /, detail: str | None = None) -> None:
            models = f"{self.trained - before} of {total} models trained"
            advance(n, f"{models}, {detail}" if detail else models)

        return counted
