"""DP-SGD with opacus (the `dp` extra): one model on the rows the audit chose, with Poisson
sampling, per-sample clipping and Gaussian noise, normalised and augmented per batch as the
reference trainer does; and the RDP accountant's epsilon of the same recipe.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from mia_audit.errors import PolicyError
from mia_audit.references.settings import DpRecipe, TrainingRecipe
from mia_audit.references.training import TrainingData

if TYPE_CHECKING:
    import torch
    from torch import nn

INSTALL = "pip install 'mia-audit[dp]'"


def require_opacus() -> None:
    """PolicyError (exit 2) with the install command when opacus is missing."""
    try:
        import opacus  # noqa: F401
    except ImportError:
        raise PolicyError(
            f"reference_training.dp: DP-SGD needs opacus, which is not installed; run {INSTALL}"
        ) from None


def check_compatible(model: nn.Module, architecture: str) -> None:
    """PolicyError naming the first layer opacus cannot train privately (e.g. BatchNorm)."""
    from opacus.validators import ModuleValidator

    errors = ModuleValidator.validate(model, strict=False)
    if errors:
        first = " ".join(str(errors[0]).split())
        raise PolicyError(
            f"reference_training.architecture: {architecture} cannot be trained with DP-SGD "
            f"({first}); use a factory with GroupNorm instead of BatchNorm"
        )


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Opacus draws len(loader) Poisson batches per epoch, at sample rate 1 / that."""
    return max(1, math.ceil(n / batch_size))


def accountant_epsilon(dp: DpRecipe, n: int, recipe: TrainingRecipe, delta: float) -> float:
    """The RDP accountant's epsilon at `delta` for the recipe on n samples (inf without noise)."""
    if dp.noise_multiplier == 0.0:
        return math.inf
    from opacus.accountants import RDPAccountant

    steps = steps_per_epoch(n, recipe.batch_size)
    accountant = RDPAccountant()
    accountant.history = [(dp.noise_multiplier, 1.0 / steps, steps * recipe.epochs)]
    return float(accountant.get_epsilon(delta=delta))


def _learning_rate(recipe: TrainingRecipe, epoch: int) -> float:
    if recipe.schedule == "constant":
        return recipe.lr
    return recipe.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / recipe.epochs))


def train_dp(
    model: nn.Module, data: TrainingData, recipe: TrainingRecipe, dp: DpRecipe, seed: int
) -> dict[str, torch.Tensor]:
    """Train `model` (on the CPU) with DP-SGD on every row of `data`; its state dict."""
    import torch
    import torch.nn.functional as F
    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader, TensorDataset

    from mia_audit.references.training import DeviceData, optimizer_for

    # Opacus warns of its non-cryptographic noise RNG (seeded here on purpose: the audit must
    # be reproducible) and of hooks on inputs without gradients (the first layer's).
    warnings.filterwarnings("ignore", message="Secure RNG turned off")
    warnings.filterwarnings("ignore", message="Full backward hook is firing")
    torch.manual_seed(seed)
    shared = DeviceData(data, "cpu")
    rows = TensorDataset(torch.arange(len(data.labels)))
    loader = DataLoader(rows, batch_size=recipe.batch_size, generator=_generator(seed, 1))
    model, optimizer, loader = PrivacyEngine(accountant="rdp").make_private(
        module=model,
        optimizer=optimizer_for(model, recipe),
        data_loader=loader,
        noise_multiplier=dp.noise_multiplier,
        max_grad_norm=dp.max_grad_norm,
        poisson_sampling=True,
        noise_generator=_generator(seed, 2),
    )
    augment = _generator(seed, 3)
    model.train()
    for epoch in range(recipe.epochs):
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(recipe, epoch)
        for (batch_rows,) in loader:
            if len(batch_rows) == 0:
                continue  # an empty Poisson batch: nothing to clip or noise
            images, labels = shared.batch(batch_rows, recipe, augment)
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(
                model(images.contiguous()), labels, label_smoothing=recipe.label_smoothing
            )
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
    inner: Any = model._module
    return {k: v.detach().clone() for k, v in inner.state_dict().items()}


def _generator(seed: int, stream: int) -> torch.Generator:
    import torch

    state = np.random.SeedSequence([seed, stream]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state) % 2**63)
