"""The local executor: trains reference models on this machine (several at once on a GPU)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field

from mia_audit.errors import AuditError
from mia_audit.models.classifier import OutOfMemory
from mia_audit.models.device import release_cuda_memory
from mia_audit.progress import Advance, Notify
from mia_audit.references.executors import register
from mia_audit.references.executors.base import (
    Architecture,
    Executor,
    ExecutorConfig,
    OnTrained,
    TrainingTask,
)
from mia_audit.references.settings import TrainingRecipe
from mia_audit.references.training import TrainingData, train_models
from mia_audit.store.cache import StateDict

#: Models trained at once on a GPU by the local executor (a ResNet18 on 32x32 images leaves an
#: H100 mostly idle one at a time).
GPU_CONCURRENCY = 8


class LocalExecutorConfig(ExecutorConfig):
    kind: Literal["local"] = "local"
    concurrency: int | None = Field(
        None,
        ge=1,
        le=256,
        description=f"Models trained at once (default: {GPU_CONCURRENCY} on a GPU, 1 on the CPU).",
    )


@register
class LocalExecutor:
    """Trains on this machine: groups of `concurrency` models in lockstep (GPU), else one by
    one. `trained` counts the models it trained.

    When CUDA runs out of memory, the group is trained again with half as many models at once
    (and so are the groups after it), down to one model; `notify` hears of each retry. The
    batch size stays the recipe's, and a model depends only on its job (rows and seed), not on
    the models trained beside it, so the retry trains the same models.
    """

    kind: ClassVar[str] = "local"
    config_type: ClassVar[type[ExecutorConfig]] = LocalExecutorConfig

    def __init__(
        self, device: str, concurrency: int | None = None, notify: Notify | None = None
    ) -> None:
        self.device = device
        self.concurrency = concurrency or (GPU_CONCURRENCY if device == "cuda" else 1)
        self.notify = notify
        self.trained = 0

    @classmethod
    def create(cls, config: Any, *, device: str, notify: Notify | None) -> Executor:
        assert isinstance(config, LocalExecutorConfig)
        return cls(device, config.concurrency, notify)

    def train(
        self,
        tasks: Sequence[TrainingTask],
        data: TrainingData,
        recipe: TrainingRecipe,
        architecture: Architecture,
        on_trained: OnTrained,
        advance: Advance | None = None,
    ) -> None:
        start = 0
        while start < len(tasks):
            group = tasks[start : start + self.concurrency]
            states = self._train_group(group, data, recipe, architecture, advance)
            if states is None:
                self._fewer_at_once(len(group), recipe)
                continue
            for task, state in zip(group, states, strict=True):
                self.trained += 1
                on_trained(task, state)
            start += len(group)

    def _train_group(
        self,
        group: Sequence[TrainingTask],
        data: TrainingData,
        recipe: TrainingRecipe,
        architecture: Architecture,
        advance: Advance | None,
    ) -> list[StateDict] | None:
        """The group's trained state dicts, or None when the device ran out of memory."""
        jobs = [task.job for task in group]
        try:
            return train_models(
                architecture.build,
                data,
                jobs,
                recipe,
                self.device,
                advance=advance,
                group=len(jobs),
            )
        except OutOfMemory:
            return None

    def _fewer_at_once(self, tried: int, recipe: TrainingRecipe) -> None:
        """Halve the models trained at once after running out of memory with `tried`."""
        if tried == 1:
            raise AuditError(
                f"out of memory on {self.device} training one reference model at batch size "
                f"{recipe.batch_size}; lower reference_training.batch_size (or input_size), "
                "or use runtime.device: cpu"
            )
        release_cuda_memory()  # the failed group's tensors are unreferenced by now
        self.concurrency = tried // 2
        if self.notify is not None:
            self.notify(
                f"out of memory training {tried} reference models at once; "
                f"retrying {self.concurrency} at a time"
            )
