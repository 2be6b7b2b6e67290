"""Spot checks of cached logits: a random sample of rows, recomputed with the real model.

An integrity record (`mia_audit.cache`) proves that an entry is what its writer wrote, not that
the writer wrote the model's outputs: a cache restored from an untrusted writer could hold the
target's logits shuffled within each class, under a consistent record, and turn a leaking
model's FAIL into a PASS. So whenever logits come from the cache, a sample of their rows is
recomputed with the model (every cached view) and compared with the cached rows; an entry that
disagrees anywhere beyond the engine's tolerance is refused and recomputed whole.

The rows are drawn from the operating system's randomness (`secrets`), not from the policy's
seed, so whoever wrote the cache cannot know which rows will be checked. The check only
compares: an honest cache gives bit for bit the result it gave before. What a sample cannot
promise (an entry with only a handful of rows altered can pass one run's check) is stated in
docs/security.md.

This module is pure (sampling, tolerances, comparison); `mia_audit.inference` runs the model.
"""

from __future__ import annotations

import secrets

import numpy as np

from mia_audit.attacks.queries import IDENTITY, View

#: Rows of the target's cached logits recomputed per run (on the audit set, on the population).
TARGET_ROWS = 128
#: Rows of each reference model's cached logits recomputed per run (there are many models).
REFERENCE_ROWS = 64
#: Largest |cached - recomputed| allowed, relative to max(1, std of the recomputed logits):
#: fp32 on a CPU differs across batch sizes by ~1e-6 relative (BENCHMARKS.md: torch vs
#: onnxruntime 1.2e-6); a GPU may use TF32 convolutions in fp32 (~1e-3 relative per layer);
#: half precision differs by up to 0.05 from fp32 (what `choose_precision` accepts), so two
#: half-precision runs by up to twice that.
CPU_FP32_TOLERANCE = 1e-3
GPU_FP32_TOLERANCE = 2e-2
HALF_TOLERANCE = 0.1


def secret_rows(n: int, count: int) -> np.ndarray:
    """`count` distinct rows of `n` (all when fewer), sorted, from the OS's randomness."""
    rng = np.random.default_rng(secrets.randbits(128))
    return np.sort(rng.choice(n, size=min(n, count), replace=False))


def relative_tolerance(engine: str) -> float:
    """The tolerance for logits of an engine key ``engine:device:precision``."""
    precision = engine.rsplit(":", 1)[-1]
    if precision not in ("fp32", ""):
        return HALF_TOLERANCE
    return GPU_FP32_TOLERANCE if ":cuda" in engine else CPU_FP32_TOLERANCE


def view_label(view: View) -> str:
    return "identity" if view == IDENTITY else view.key


def implausible(logits: np.ndarray, n_rows: int, n_classes: int | None) -> str | None:
    """Why cached logits cannot be the model's outputs on `n_rows` images, or None.

    `n_classes` is the width of the other views' logits, when known.
    """
    if logits.ndim != 2 or logits.shape[0] != n_rows:
        return f"holds an array of shape {logits.shape}, not ({n_rows}, classes) logits"
    if n_classes is not None and logits.shape[1] != n_classes:
        return f"holds {logits.shape[1]} logits per sample where the other views hold {n_classes}"
    if logits.dtype != np.float32:
        return f"holds {logits.dtype} values, not float32 logits"
    if not np.isfinite(logits).all():
        return "holds NaN or infinite logits"
    return None


def disagreement(cached: np.ndarray, recomputed: np.ndarray, tolerance: float) -> str | None:
    """Why cached rows are not the model's outputs (recomputed on the same images), or None."""
    if cached.shape != recomputed.shape:
        return (
            f"has logits of shape {cached.shape[1:]} per sample; the model gives "
            f"{recomputed.shape[1:]}"
        )
    allowed = tolerance * max(1.0, float(np.std(recomputed)))
    difference = np.abs(cached.astype(np.float64) - recomputed.astype(np.float64)).max(axis=-1)
    bad = ~(difference <= allowed)  # NaN never agrees
    if not bad.any():
        return None
    largest = float(np.nanmax(difference)) if np.isfinite(difference).any() else float("nan")
    return (
        f"disagrees with the model on {int(bad.sum())} of {len(bad)} re-computed samples "
        f"(largest difference {largest:.3g}, allowed {allowed:.3g})"
    )
