"""Training image classifiers: the demo's target and the reference/shadow models.

The training data stays on the device (as uint8 where possible) and is normalised and augmented
there per batch. On a GPU several models are trained in lockstep, each on its own CUDA stream, so
that small models (a ResNet18 on 32x32 images leaves an H100 mostly idle) fill the device;
bf16 autocast and channels_last are used there. On the CPU the same loop runs model by model.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mia_audit.progress import Advance
from mia_audit.references.settings import TrainingRecipe

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass(frozen=True)
class TrainingJob:
    """One model to train: which samples (rows of the shared arrays) and its seed."""

    index: np.ndarray
    seed: int


@dataclass(frozen=True)
class TrainingData:
    """Shared training arrays: images (N, C, H, W) uint8 or float32 0..1, labels (N,)."""

    images: np.ndarray
    labels: np.ndarray
    mean: tuple[float, ...]
    std: tuple[float, ...]


Builder = Callable[[], "nn.Module"]


def train_models(
    build: Builder,
    data: TrainingData,
    jobs: Sequence[TrainingJob],
    recipe: TrainingRecipe,
    device: str,
    *,
    concurrent: bool = True,
    advance: Advance | None = None,
    group: int | None = None,
) -> list[dict[str, torch.Tensor]]:
    """Train one model per job; returns their state dicts (on the CPU), in job order.

    `advance` is called with the number of images processed after each step. `group` is how
    many models train in lockstep (default: all of them on a GPU when `concurrent`, else one);
    the benchmark sets it to compare lockstep with sequential training on any device.
    """
    if group is None:
        group = len(jobs) if concurrent and device == "cuda" else 1
    group = max(1, group)
    states: list[dict[str, torch.Tensor]] = []
    with _out_of_memory_as_error(), _torch_threads(recipe.threads):
        shared = DeviceData(data, device)
        for start in range(0, len(jobs), group):
            runs = [_Run(build, job, recipe, device, shared) for job in jobs[start : start + group]]
            _train_lockstep(runs, recipe, advance)
            states.extend(_cpu_state(run.model) for run in runs)
    return states


@contextlib.contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    """Train with the recipe's thread count, whatever the executor or the machine: torch
    splits a CPU reduction by thread, so another count rounds differently and, over an
    epoch of SGD steps, trains a visibly different model."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def _out_of_memory_as_error() -> Iterator[None]:
    """CUDA out-of-memory becomes OutOfMemory, which callers may retry (fewer models at once);
    every other failure passes through unchanged."""
    import torch

    from mia_audit.models.classifier import OutOfMemory

    try:
        yield
    except torch.cuda.OutOfMemoryError as error:
        raise OutOfMemory(str(error)) from None


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


class DeviceData:
    """The training arrays on the device, with per-batch normalisation and augmentation."""

    def __init__(self, data: TrainingData, device: str) -> None:
        import torch

        self.device = device
        self.images = torch.from_numpy(np.ascontiguousarray(data.images)).to(device)
        self.labels = torch.from_numpy(data.labels.astype(np.int64)).to(device)
        shape = (1, -1, 1, 1)
        self.mean = torch.tensor(data.mean, dtype=torch.float32, device=device).view(shape)
        self.std = torch.tensor(data.std, dtype=torch.float32, device=device).view(shape)

    def batch(
        self, rows: torch.Tensor, recipe: TrainingRecipe, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        images = self.images[rows]
        batch = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        if batch.shape[1] == 1 and self.mean.shape[1] == 3:
            batch = batch.expand(-1, 3, -1, -1)
        batch = (batch - self.mean) / self.std
        if "crop" in recipe.augment and recipe.crop_padding:
            batch = random_crop(batch, recipe.crop_padding, generator)
        if "flip" in recipe.augment:
            flip = torch.rand(len(batch), generator=generator, device=self.device) < 0.5
            batch = torch.where(flip[:, None, None, None], batch.flip(-1), batch)
        return batch.contiguous(memory_format=torch.channels_last), self.labels[rows]


def random_crop(batch: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad by `padding` and crop back at a random offset per image (CIFAR augmentation)."""
    import torch
    import torch.nn.functional as functional

    n, _, height, width = batch.shape
    padded = functional.pad(batch, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=batch.device)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=batch.device)
    rows = (dy[:, None] + torch.arange(height, device=batch.device))[:, :, None]
    cols = (dx[:, None] + torch.arange(width, device=batch.device))[:, None, :]
    samples = torch.arange(n, device=batch.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[samples, rows, cols].permute(0, 3, 1, 2)


class _Run:
    """One model being trained, with its optimiser, schedule, data order and CUDA stream."""

    def __init__(
        self,
        build: Builder,
        job: TrainingJob,
        recipe: TrainingRecipe,
        device: str,
        data: DeviceData,
    ) -> None:
        import torch

        torch.manual_seed(job.seed)
        self.model = build().to(device)
        self.model = self.model.to(memory_format=torch.channels_last)
        self.model.train()
        self.generator = torch.Generator(device=device).manual_seed(job.seed)
        self.rows = torch.from_numpy(job.index.astype(np.int64)).to(device)
        self.optimizer = optimizer_for(self.model, recipe)
        steps = recipe.epochs * _steps_per_epoch(len(job.index), recipe.batch_size)
        self.scheduler = _scheduler(self.optimizer, recipe, steps)
        self.stream = torch.cuda.Stream() if device == "cuda" else None  # type: ignore[no-untyped-call]
        self.device = device
        self.data = data

    def epoch_batches(self, batch_size: int) -> list[torch.Tensor]:
        import torch

        shuffle = torch.randperm(len(self.rows), generator=self.generator, device=self.device)
        order = self.rows[shuffle]
        batches = list(torch.split(order, batch_size))
        if len(batches) > 1 and len(batches[-1]) < max(2, batch_size // 4):
            batches.pop()  # a tiny last batch destabilises BatchNorm statistics
        return batches

    def step(self, rows: torch.Tensor, recipe: TrainingRecipe) -> None:
        import torch
        import torch.nn.functional as functional

        images, labels = self.data.batch(rows, recipe, self.generator)
        autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device == "cuda")
        with autocast:
            logits = self.model(images)
            loss = functional.cross_entropy(logits, labels, label_smoothing=recipe.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        self.optimizer.step()
        self.scheduler.step()


def _steps_per_epoch(n: int, batch_size: int) -> int:
    full, rest = divmod(n, batch_size)
    return max(1, full + (1 if rest >= max(2, batch_size // 4) or full == 0 else 0))


def _train_lockstep(runs: Sequence[_Run], recipe: TrainingRecipe, advance: Advance | None) -> None:
    import torch

    for epoch in range(recipe.epochs):
        detail = f"epoch {epoch + 1}/{recipe.epochs}"
        schedules = [run.epoch_batches(recipe.batch_size) for run in runs]
        for step in range(max(len(s) for s in schedules)):
            for run, batches in zip(runs, schedules, strict=True):
                if step >= len(batches):
                    continue
                if run.stream is not None:
                    run.stream.wait_stream(torch.cuda.current_stream())
                    with torch.cuda.stream(run.stream):
                        run.step(batches[step], recipe)
                else:
                    run.step(batches[step], recipe)
                if advance is not None:
                    advance(len(batches[step]), detail)
    if runs and runs[0].stream is not None:
        torch.cuda.synchronize()
    for run in runs:
        run.model.eval()


def optimizer_for(model: nn.Module, recipe: TrainingRecipe) -> torch.optim.Optimizer:
    """The recipe's optimizer over `model` (the DP-SGD trainer wraps the same one)."""
    import torch

    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    return torch.optim.SGD(
        model.parameters(),
        lr=recipe.lr,
        momentum=recipe.momentum,
        weight_decay=recipe.weight_decay,
        nesterov=recipe.momentum > 0,
    )


def _scheduler(
    optimizer: torch.optim.Optimizer, recipe: TrainingRecipe, steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    import torch

    if recipe.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps, 1))


def measure_training(
    build: Builder,
    data: TrainingData,
    recipe: TrainingRecipe,
    device: str,
    *,
    batch_size: int,
    steps: int = 2,
) -> tuple[float, nn.Module]:
    """Images per second of one model training with `recipe` on `device`, from `steps` timed
    steps of `batch_size` images (a first, untimed step pays for allocation and kernel choice),
    and the model after them (for an inference probe). For `mia-audit plan`: a few steps, never
    a whole model.
    """
    import time

    batch_size = max(2, min(batch_size, len(data.labels)))
    rows = np.arange(min(len(data.labels), batch_size * (steps + 1)))
    probe_recipe = recipe.model_copy(update={"epochs": 1, "batch_size": batch_size})
    with _out_of_memory_as_error():
        run = _Run(
            build, TrainingJob(rows, seed=0), probe_recipe, device, DeviceData(data, device)
        )
        batches = [b for b in run.epoch_batches(batch_size) if len(b) == batch_size]
        batches = (batches * (steps + 1))[: steps + 1]
        run.step(batches[0], probe_recipe)
        _synchronize(device)
        start = time.perf_counter()
        for batch in batches[1:]:
            run.step(batch, probe_recipe)
        _synchronize(device)
        seconds = time.perf_counter() - start
    run.model.eval()
    return steps * batch_size / max(seconds, 1e-9), run.model


def _synchronize(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
