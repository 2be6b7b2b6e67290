"""Running out of GPU memory: inference halves its batch, reference training halves the number
of models trained at once; both give the same results as a run with room to spare.

A CUDA out-of-memory error cannot happen on the CPU these tests run on, and a real one needs a
GPU filled to the brim. So the models here raise `torch.cuda.OutOfMemoryError` -- the error
torch raises when an allocation on the GPU fails -- themselves, from `forward`, whenever the
emulated device would be too small: for batches larger than N (inference), or when more than N
models are being trained at once (training). Everything between that error and the result is
the real code: TorchClassifier, `predict`, `train_models`, LocalExecutor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from mia_audit.attacks.queries import IDENTITY, View
from mia_audit.errors import AuditError
from mia_audit.models.classifier import TorchClassifier
from mia_audit.models.engine import EngineKey
from mia_audit.models.inference import Preprocessor, predict
from mia_audit.progress import SilentProgress
from mia_audit.references.executors.base import Architecture, ModelLogits, TrainingTask
from mia_audit.references.executors.local import LocalExecutor
from mia_audit.references.provider import ReferenceModels, ReferenceSetup, StateDict, TargetModel
from mia_audit.references.settings import TrainingRecipe
from mia_audit.references.training import TrainingData, TrainingJob

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, (50, 3, 8, 8), dtype=np.uint8)
LABELS = RNG.integers(0, 3, 50)
PREPROCESS = Preprocessor((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
VIEWS = (IDENTITY, View(mirror=True))


def tiny_net(classes: int = 3) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, classes),
    )


class OutOfMemoryAbove(nn.Module):
    """The wrapped model on an emulated GPU with room for batches of at most `limit` images:
    larger ones raise torch.cuda.OutOfMemoryError, as a full GPU would."""

    def __init__(self, inner: nn.Module, limit: int) -> None:
        super().__init__()
        self.inner = inner
        self.limit = limit
        self.batches: list[int] = []

    def forward(self, batch: torch.Tensor) -> Any:
        if len(batch) > self.limit:
            raise torch.cuda.OutOfMemoryError(
                f"CUDA out of memory (emulated: batch of {len(batch)}, room for {self.limit})"
            )
        self.batches.append(len(batch))
        return self.inner(batch)


def test_inference_halves_the_batch_and_gets_the_same_logits() -> None:
    torch.manual_seed(0)
    net = tiny_net()
    expected = predict(TorchClassifier(net, "cpu"), IMAGES, VIEWS, PREPROCESS, batch_size=64)
    tight = OutOfMemoryAbove(net, limit=12)
    notes: list[str] = []
    logits = predict(
        TorchClassifier(tight, "cpu"),
        IMAGES,
        VIEWS,
        PREPROCESS,
        batch_size=64,
        notify=notes.append,
    )
    np.testing.assert_allclose(logits, expected, rtol=1e-6, atol=1e-6)
    assert notes == [
        "out of memory at batch size 64; retrying with 32",
        "out of memory at batch size 32; retrying with 16",
        "out of memory at batch size 16; retrying with 8",
    ]
    assert set(tight.batches) == {8, 50 % 8}  # every later batch keeps the smaller size


def test_inference_without_room_for_one_image_is_an_audit_error() -> None:
    classifier = TorchClassifier(OutOfMemoryAbove(tiny_net(), limit=0), "cpu")
    with pytest.raises(AuditError, match="out of memory on cpu even at batch size 1"):
        predict(classifier, IMAGES[:4], VIEWS, PREPROCESS, batch_size=4)


# --- reference training ------------------------------------------------------------------------


@dataclass
class EmulatedDevice:
    """Room for `room` models in training at once. The trainer builds every model of a group
    before it trains any, so the models built since training last ran are the ones that share
    the device."""

    room: int
    building: int = 0
    training: bool = False
    refused: list[int] = field(default_factory=list)

    def built(self) -> None:
        if self.training:
            self.building, self.training = 0, False
        self.building += 1

    def step(self) -> None:
        self.training = True
        if self.building > self.room:
            self.refused.append(self.building)
            raise torch.cuda.OutOfMemoryError(
                f"CUDA out of memory (emulated: {self.building} models, room for {self.room})"
            )


class OnDevice(nn.Module):
    def __init__(self, inner: nn.Module, device: EmulatedDevice) -> None:
        super().__init__()
        self.inner = inner
        self.device = device

    def forward(self, batch: torch.Tensor) -> Any:
        self.device.step()
        return self.inner(batch)


@dataclass(frozen=True)
class TightArchitecture(Architecture):
    """A tiny model trained on the emulated device."""

    device: EmulatedDevice = field(default_factory=lambda: EmulatedDevice(room=100))

    def build(self) -> nn.Module:
        self.device.built()
        return OnDevice(tiny_net(self.num_classes), self.device)


DATA = TrainingData(IMAGES, LABELS, PREPROCESS.mean, PREPROCESS.std)
RECIPE = TrainingRecipe(
    epochs=2, batch_size=8, optimizer="adamw", lr=1e-3, augment=("flip", "crop"), train_size=25
)
TASKS = [TrainingTask(f"model-{j}", TrainingJob(np.arange(j, 50, 2), seed=j)) for j in range(4)]


def train(executor: LocalExecutor, device: EmulatedDevice) -> dict[str, StateDict]:
    states: dict[str, StateDict] = {}

    def store(task: TrainingTask, state: StateDict, logits: ModelLogits | None = None) -> None:
        states[task.key] = state

    executor.train(TASKS, DATA, RECIPE, TightArchitecture("tiny", 3, device=device), store)
    return states


def test_training_halves_the_models_at_once_and_trains_the_same_models() -> None:
    expected = train(LocalExecutor("cpu", concurrency=4), EmulatedDevice(room=4))
    notes: list[str] = []
    executor = LocalExecutor("cpu", concurrency=4, notify=notes.append)
    device = EmulatedDevice(room=1)
    states = train(executor, device)
    assert notes == [
        "out of memory training 4 reference models at once; retrying 2 at a time",
        "out of memory training 2 reference models at once; retrying 1 at a time",
    ]
    assert device.refused == [4, 2]
    assert executor.concurrency == 1 and executor.trained == len(TASKS)
    assert list(states) == [task.key for task in TASKS]
    for key, state in states.items():
        for name, tensor in state.items():
            assert torch.equal(tensor, expected[key][name]), (key, name)


def test_training_without_room_for_one_model_is_an_audit_error() -> None:
    executor = LocalExecutor("cpu", concurrency=2)
    with pytest.raises(AuditError, match="one reference model at batch size 8; lower"):
        train(executor, EmulatedDevice(room=0))
    assert executor.trained == 0


def test_reference_models_hear_of_the_retries() -> None:
    """The audit's own executor reports retries as progress notes."""
    progress = SilentProgress()
    setup = ReferenceSetup(
        recipe=TrainingRecipe(epochs=1, batch_size=8, augment=(), train_size=10),
        architecture=Architecture("tiny", 3),
        audit_images=IMAGES,
        audit_labels=LABELS,
        population=None,
        preprocess=PREPROCESS,
        device="cuda",
        batch_size=8,
        seed=0,
        target=TargetModel(TorchClassifier(tiny_net(), "cpu"), "target", EngineKey("torch", "cpu")),
    )
    models = ReferenceModels(setup, None, progress=progress)
    assert isinstance(models.executor, LocalExecutor)
    assert models.executor.notify == progress.note
