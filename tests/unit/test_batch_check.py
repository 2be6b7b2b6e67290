"""Outputs that depend on the batch are found on the probe batch (models/batch_check.py).

The modules are built here and never trained: a BatchNorm traced in train mode keeps
normalising by the batch's own statistics after `eval()` (TorchScript bakes the mode in), which
is how a leaking model passed at `runtime.batch_size: 7` and failed at 512.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional

from mia_audit.models.batch_check import batch_dependence, batch_dependence_message
from mia_audit.models.classifier import TorchClassifier
from mia_audit.models.inference import run_batch


def _network() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
        nn.Linear(8 * 8 * 8, 10),
    )  # fmt: skip


class _AlwaysDropout(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.linear(functional.dropout(x.flatten(1), 0.5, training=True))
        return logits


PROBE = np.random.default_rng(0).random((8, 3, 8, 8), dtype=np.float32)


def _traced(module: nn.Module, train: bool) -> TorchClassifier:
    module.train(train)
    with torch.no_grad():
        traced = torch.jit.trace(  # type: ignore[no-untyped-call]
            module, torch.from_numpy(PROBE[:4]), check_trace=False
        )
    return TorchClassifier(traced, "cpu")  # calls eval(), which a trace does not undo


def test_an_eval_mode_model_is_independent_of_its_batch() -> None:
    classifier = _traced(_network(), train=False)
    assert batch_dependence(classifier, PROBE, run_batch(classifier, PROBE)) is None


@pytest.mark.parametrize("module", [_network(), _AlwaysDropout()], ids=["batchnorm", "dropout"])
def test_a_model_not_in_eval_mode_is_found(module: nn.Module) -> None:
    classifier = _traced(module, train=True)
    found = batch_dependence(classifier, PROBE, run_batch(classifier, PROBE))
    assert found is not None
    assert (found.whole, found.half) == (8, 4)
    assert found.difference > found.tolerance
    message = batch_dependence_message(found)
    assert message.startswith(
        "the model's outputs depend on the other images in the batch: the same images scored in "
        "a batch of 8 and in batches of 4 differ by up to"
    )
    assert "BatchNorm in train mode" in message and "model.eval()" in message


def test_the_tolerance_scales_with_the_outputs_spread() -> None:
    classifier = _traced(_network(), train=False)
    outputs = run_batch(classifier, PROBE)
    nudged = outputs + 1e-4 * (outputs.max() - outputs.min())  # float noise between batch sizes
    assert batch_dependence(classifier, PROBE, nudged) is None
    moved = outputs.copy()
    moved[0, 0] += 0.01 * max(1.0, float(outputs.max() - outputs.min()))
    assert batch_dependence(classifier, PROBE, moved) is not None


def test_a_probe_too_small_to_split_is_not_judged() -> None:
    classifier = _traced(_AlwaysDropout(), train=True)
    assert batch_dependence(classifier, PROBE[:3], run_batch(classifier, PROBE[:3])) is None
