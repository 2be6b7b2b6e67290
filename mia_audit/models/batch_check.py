"""Outputs that depend on the batch: the same image must get the same outputs whatever images
are scored beside it.

A model exported or traced with BatchNorm in train mode normalises each batch by its own
statistics (and active dropout draws new masks), so its outputs change with
`runtime.batch_size` and with the other images in the batch; a verdict would then depend on a
knob that should not matter (a leaking model measured at batch size 512 can pass at 7). The
probe batch is scored whole and in two halves; outputs that differ beyond the numeric noise of
the device are refused (exit 2) before anything is audited.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mia_audit.models.classifier import Classifier
from mia_audit.models.inference import run_batch

#: Largest difference, relative to the outputs' spread (at least 1), that is numeric noise:
#: fp32 on a CPU differs by ~1e-6 between batch sizes; a GPU may use TF32 (the cache's spot
#: check uses the same tolerances, README Security).
RELATIVE_TOLERANCE = {"cpu": 1e-3, "cuda": 2e-2}


@dataclass(frozen=True)
class BatchDependence:
    """How much the same images' outputs moved between two batch compositions."""

    whole: int
    half: int
    difference: float
    tolerance: float


def batch_dependence(
    classifier: Classifier, probe: np.ndarray, outputs: np.ndarray
) -> BatchDependence | None:
    """None when the probe's outputs (`outputs`, scored as one batch) are the same, within
    tolerance, when its two halves are scored as separate batches."""
    if len(probe) < 4:
        return None
    half = len(probe) // 2
    parts = np.concatenate(
        [run_batch(classifier, probe[:half]), run_batch(classifier, probe[half:])]
    )
    whole = np.asarray(outputs, dtype=np.float64)
    spread = float(whole.max() - whole.min()) if whole.size else 0.0
    tolerance = RELATIVE_TOLERANCE.get(classifier.device, 2e-2) * max(1.0, spread)
    difference = float(np.abs(whole - parts.astype(np.float64)).max())
    if difference <= tolerance:
        return None
    return BatchDependence(len(probe), half, difference, tolerance)


def batch_dependence_message(found: BatchDependence) -> str:
    """What the error says: the measurement, the likely cause, the fix."""
    return (
        f"the model's outputs depend on the other images in the batch: the same images scored "
        f"in a batch of {found.whole} and in batches of {found.half} differ by up to "
        f"{found.difference:.3g} (tolerance {found.tolerance:.3g}), so runtime.batch_size would "
        "decide the verdict; the model is probably not in eval mode (BatchNorm in train mode, "
        "or active dropout): call model.eval() before torch.jit.trace / torch.onnx.export and "
        "save it again"
    )
