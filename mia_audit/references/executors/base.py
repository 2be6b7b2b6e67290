"""What an executor is: it trains reference models somewhere and hands each back as it is done.

An executor receives plain picklable values (the tasks, the shared training data, the recipe,
how to build the architecture), so a cluster executor can ship them to other machines; it calls
`on_trained` on the caller's side as each model finishes, and the caller caches it at once.
Executors are chosen by `runtime.executor` (`ExecutorConfig`, one subclass per kind) and
registered like attacks (`mia_audit.references.executors`).

An executor that trains far from the caller may also run each model where it trained it (its
`predicts_where_trained` is true): it then receives `InferenceData` and each task's `outputs`,
and hands the model's logits back with its weights, so that the weights do not travel twice.
The caller still vouches for those logits as for cached ones (docs/security.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, cast

import numpy as np
from pydantic import BaseModel, ConfigDict

from mia_audit.attacks.queries import View
from mia_audit.models.inference import Preprocessor
from mia_audit.progress import Advance, Notify
from mia_audit.references.settings import TrainingRecipe
from mia_audit.references.training import TrainingData, TrainingJob
from mia_audit.store.cache import StateDict
from mia_audit.store.hashing import file_sha256

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class Architecture:
    """How to build a fresh reference model (picklable, for remote executors)."""

    name: str
    num_classes: int
    cifar_stem: bool = False
    search_path: Path | None = None

    def build(self) -> nn.Module:
        from mia_audit.models.architectures import build_architecture

        return build_architecture(
            self.name,
            self.num_classes,
            cifar_stem=self.cifar_stem,
            search_path=self.search_path,
            field="reference_training.architecture",
        )

    def cache_key(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "num_classes": self.num_classes,
            "cifar_stem": self.cifar_stem,
            "code": self._factory_source_sha256(),
        }

    def _factory_source_sha256(self) -> str | None:
        """A `module:function` factory's source file hash: editing the code retrains."""
        import inspect

        from mia_audit.models.architectures import is_factory, load_factory

        if not is_factory(self.name):
            return None
        function = load_factory(self.name, self.search_path, "reference_training.architecture")
        try:
            source = inspect.getsourcefile(function)
        except TypeError:
            return None
        return file_sha256(Path(source)) if source else None


#: A model's logits by (part, view): part names an entry of `InferenceData.images`.
ModelLogits = dict[tuple[str, View], np.ndarray]


@dataclass(frozen=True)
class TrainingTask:
    """One model to train: its cache key and its job (rows of the shared data, seed).

    `outputs` lists the logits wanted of the trained model, as (part, views) pairs, for an
    executor that predicts where it trains; other executors ignore it.
    """

    key: str
    job: TrainingJob
    outputs: tuple[tuple[str, tuple[View, ...]], ...] = ()


@dataclass(frozen=True)
class InferenceData:
    """What trained models are run on where they were trained: the images of each part
    ("audit", "population"), the preprocessing and the inference batch size."""

    images: dict[str, np.ndarray]
    preprocess: Preprocessor
    batch_size: int


class OnTrained(Protocol):
    """Called on the caller's side with each finished model's CPU state dict and, from an
    executor that predicts where it trains, the logits its task asked for."""

    def __call__(
        self, task: TrainingTask, state: StateDict, logits: ModelLogits | None = None
    ) -> None: ...


class Executor(Protocol):
    """Trains reference models.

    ``train`` trains every task on the shared data with the recipe, and calls ``on_trained``
    with each model's CPU state dict as soon as that model is finished (in any order), so that
    it is cached before the next one starts: a run interrupted after k models resumes with the
    rest. A cluster executor (Ray) ships ``data`` once (e.g. ``ray.put``), runs one remote task
    per group of tasks on its GPUs, and calls ``on_trained`` here as results arrive.

    Optional: a ``close()`` method, called when the provider is done with the executor for
    now (a later ``train`` may reconnect), and `PredictingExecutor`'s two attributes.
    """

    def train(
        self,
        tasks: Sequence[TrainingTask],
        data: TrainingData,
        recipe: TrainingRecipe,
        architecture: Architecture,
        on_trained: OnTrained,
        advance: Advance | None = None,
    ) -> None: ...


class PredictingExecutor(Executor, Protocol):
    """An executor that also runs each model where it trained it (`predicts_where_trained`).

    ``train`` then receives ``inference`` and hands each model's logits (every part and view of
    its task's ``outputs``, computed with `mia_audit.models.inference.predict` on a model built
    from the CPU state dict it returns, on ``inference_device``) to ``on_trained``. The caller
    keys those logits by ``inference_device`` and spot-checks them against the weights.
    """

    predicts_where_trained: bool
    inference_device: str

    def train(
        self,
        tasks: Sequence[TrainingTask],
        data: TrainingData,
        recipe: TrainingRecipe,
        architecture: Architecture,
        on_trained: OnTrained,
        advance: Advance | None = None,
        inference: InferenceData | None = None,
    ) -> None: ...


def as_predicting(executor: Executor) -> PredictingExecutor | None:
    """The executor as a `PredictingExecutor` when it says it predicts where it trains."""
    if getattr(executor, "predicts_where_trained", False):
        return cast(PredictingExecutor, executor)
    return None


def close_executor(executor: Executor) -> None:
    """Release what the executor holds between runs (a cluster connection), if it can."""
    close = getattr(executor, "close", None)
    if callable(close):
        close()


class ExecutorConfig(BaseModel):
    """`runtime.executor`: which executor (`kind`) and its settings; each kind subclasses this
    with its own keys."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    kind: str


class ExecutorType(Protocol):
    """What a registered executor class provides beside `Executor.train`."""

    kind: ClassVar[str]
    config_type: ClassVar[type[ExecutorConfig]]

    @classmethod
    def create(cls, config: Any, *, device: str, notify: Notify | None) -> Executor:
        """An executor for `config` (an instance of `config_type`) on `device`."""
        ...
