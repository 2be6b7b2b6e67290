"""Batched inference over image sets and query views, with a logits cache.

Images stay in their compact stored form (uint8 where possible) and are preprocessed one batch
at a time, so a large data set is never materialised whole in float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mia_audit.attacks.queries import View
from mia_audit.data.images import as_float01
from mia_audit.errors import AuditError, InputError, ModelError
from mia_audit.models import spot_check
from mia_audit.models.classifier import Classifier, OutOfMemory, TorchClassifier, at_precision
from mia_audit.models.device import release_cuda_memory
from mia_audit.models.engine import EngineKey
from mia_audit.progress import Advance, Notify
from mia_audit.store.cache import ContentStore, entry_key

#: Bump when anything changes how logits are computed, so old cache entries stop matching.
INFERENCE_VERSION = 1


@dataclass(frozen=True)
class Preprocessor:
    """Pixels to model input: scale to 0..1, fix channels, resize, normalise."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_size: tuple[int, int] | None = None
    channel_order: str = "rgb"

    def cache_key(self) -> dict[str, Any]:
        return {
            "mean": self.mean,
            "std": self.std,
            "input_size": self.input_size,
            "channel_order": self.channel_order,
        }

    def output_channels(self, image_channels: int) -> int:
        """Channels the model receives; raises when the data cannot be matched to mean/std."""
        wanted = len(self.mean)
        if image_channels == wanted or wanted == 1:
            return image_channels
        if image_channels == 1 and wanted == 3:
            return 3
        if image_channels == 4 and wanted == 3:
            return 3
        raise InputError(
            f"preprocessing.mean: has {wanted} values but the images have {image_channels} "
            "channels; give one value per channel"
        )

    def __call__(self, images: np.ndarray) -> np.ndarray:
        batch = as_float01(images)
        batch = self._match_channels(batch)
        if self.channel_order == "bgr":
            batch = batch[:, ::-1]
        if self.input_size is not None and tuple(batch.shape[-2:]) != self.input_size:
            batch = _resize(batch, self.input_size)
        mean = np.asarray(self.mean, dtype=np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(self.std, dtype=np.float32).reshape(1, -1, 1, 1)
        return np.ascontiguousarray((batch - mean) / std, dtype=np.float32)

    def _match_channels(self, batch: np.ndarray) -> np.ndarray:
        channels = self.output_channels(batch.shape[1])
        if batch.shape[1] == 1 and channels == 3:
            return np.repeat(batch, 3, axis=1)
        if batch.shape[1] == 4 and channels == 3:
            return batch[:, :3]
        return batch


def _resize(batch: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import torch
    import torch.nn.functional as functional

    resized = functional.interpolate(
        torch.from_numpy(np.ascontiguousarray(batch)),
        size=size,
        mode="bilinear",
        align_corners=False,
        antialias=True,
    )
    return np.asarray(resized.numpy())


def predict(
    classifier: Classifier,
    images: np.ndarray,
    views: Sequence[View],
    preprocess: Preprocessor,
    batch_size: int,
    *,
    advance: Advance | None = None,
    notify: Notify | None = None,
) -> np.ndarray:
    """Logits of shape (len(views), n, C), float32. Halves the batch on out-of-memory.

    A model with a fixed batch size gets chunks of a multiple of it, split by `run_batch`.
    """
    fixed = classifier.fixed_batch_size
    if fixed is not None:
        batch_size = max(fixed, batch_size - batch_size % fixed)
    outputs: list[list[np.ndarray]] = [[] for _ in views]
    start = 0
    while start < len(images):
        chunk = images[start : start + batch_size]
        try:
            results = _predict_chunk(classifier, chunk, views, preprocess)
        except OutOfMemory:
            batch_size = _smaller_batch(classifier, batch_size, notify)
            continue
        for store, result in zip(outputs, results, strict=True):
            store.append(result)
        start += len(chunk)
        if advance is not None:
            advance(len(chunk))
    return np.stack([np.concatenate(parts) for parts in outputs])


def _smaller_batch(classifier: Classifier, batch_size: int, notify: Notify | None) -> int:
    fixed = classifier.fixed_batch_size
    if fixed is not None:  # every call runs `fixed` images: a smaller chunk would not help
        raise AuditError(
            f"out of memory on {classifier.device} at the model's fixed batch size {fixed}; "
            "use runtime.device: cpu, or export the model with a smaller or dynamic batch"
        )
    if batch_size == 1:
        raise AuditError(
            f"out of memory on {classifier.device} even at batch size {batch_size}; "
            "use runtime.device: cpu or a smaller model"
        )
    release_cuda_memory()
    if notify is not None:
        notify(f"out of memory at batch size {batch_size}; retrying with {batch_size // 2}")
    return batch_size // 2


def _predict_chunk(
    classifier: Classifier, chunk: np.ndarray, views: Sequence[View], preprocess: Preprocessor
) -> list[np.ndarray]:
    base = preprocess(chunk)
    results = []
    for view in views:
        batch = view.apply(base)
        results.append(run_batch(classifier, batch))
    return results


def run_batch(classifier: Classifier, batch: np.ndarray) -> np.ndarray:
    """Run a batch of any size. A model exported with a fixed batch size (`torch.onnx.export`
    without `dynamic_axes` fixes it to the example's) gets it split into pieces of that size,
    the last one padded with copies of its last image; the padding's outputs are dropped."""
    fixed = classifier.fixed_batch_size
    if fixed is None:
        return _checked(classifier(batch), len(batch))
    pieces = []
    for start in range(0, len(batch), fixed):
        piece = batch[start : start + fixed]
        short = fixed - len(piece)
        if short:
            piece = np.concatenate([piece, np.repeat(piece[-1:], short, axis=0)])
        pieces.append(_checked(classifier(piece), fixed)[: fixed - short])
    return np.concatenate(pieces)


def _checked(logits: np.ndarray, rows: int) -> np.ndarray:
    """The model's outputs for `rows` images, refused unless they are (rows, classes) and finite:
    outputs of the wrong length would pair logits with the wrong images' labels."""
    if logits.ndim not in (1, 2) or len(logits) != rows:
        raise ModelError(
            f"the model returned outputs of shape {logits.shape} for {rows} images; expected "
            f"({rows}, classes) logits or probabilities, or ({rows},) class labels"
        )
    if not np.isfinite(logits).all():
        raise ModelError(
            "the model produced NaN or infinite logits; check the model file and the "
            "preprocessing (mean/std) it expects"
        )
    return np.asarray(logits, dtype=np.float32)


@dataclass(frozen=True)
class LogitsRequest:
    """Everything the logits depend on, for the cache key."""

    model_sha256: str
    data_sha256: str
    preprocess: Preprocessor
    engine: EngineKey

    def key_parts(self, view: View) -> dict[str, Any]:
        return {
            "model": self.model_sha256,
            "data": self.data_sha256,
            "preprocess": self.preprocess.cache_key(),
            "view": view.key,
            "engine": str(self.engine),
            "version": INFERENCE_VERSION,
        }


def cached_predict(
    cache: ContentStore[np.ndarray],
    request: LogitsRequest,
    classifier: Classifier,
    images: np.ndarray,
    views: Sequence[View],
    batch_size: int,
    *,
    advance: Advance | None = None,
    notify: Notify | None = None,
    what: str = "logits",
    check_rows: int = spot_check.TARGET_ROWS,
) -> np.ndarray:
    """Like `predict`, computing only the views not already in the cache.

    Cached views are verified first (`mia_audit.models.spot_check`): implausible arrays are refused,
    and `check_rows` random rows of every cached view are recomputed with the model; a view that
    disagrees is refused (the cache notes why) and recomputed whole. `what` names the logits in
    those notes. The values returned for an honest cache are the cached ones, unchanged.
    """
    keys = {view: entry_key("logits", request.key_parts(view)) for view in views}
    labels = {view: f"{what} (view {spot_check.view_label(view)})" for view in views}
    found = {view: cache.get(keys[view], labels[view]) for view in views}
    refused = _unusable(classifier, request, images, found, batch_size, check_rows, notify)
    for view, reason in refused:
        cache.refuse(keys[view], reason, labels[view])
        found[view] = None
    missing = [view for view in views if found[view] is None]
    if missing:
        computed = predict(
            classifier,
            images,
            missing,
            request.preprocess,
            batch_size,
            advance=advance,
            notify=notify,
        )
        for view, logits in zip(missing, computed, strict=True):
            cache.put(keys[view], logits)
            found[view] = logits
    elif advance is not None:
        advance(len(images))
    return np.stack([found[view] for view in views])  # type: ignore[misc]


def _unusable(
    classifier: Classifier,
    request: LogitsRequest,
    images: np.ndarray,
    found: dict[View, np.ndarray | None],
    batch_size: int,
    check_rows: int,
    notify: Notify | None,
) -> list[tuple[View, str]]:
    """Cached views that are not the model's outputs, with the reason for each."""
    problems: list[tuple[View, str]] = []
    cached: dict[View, np.ndarray] = {}
    width: int | None = None
    for view, logits in found.items():
        if logits is None:
            continue
        reason = spot_check.implausible(logits, len(images), width)
        if reason is None:
            cached[view] = logits
            width = logits.shape[1]
        else:
            problems.append((view, reason))
    if not cached or check_rows <= 0:
        return problems
    rows = spot_check.secret_rows(len(images), check_rows)
    views = list(cached)
    recomputed = predict(
        classifier, images[rows], views, request.preprocess, batch_size, notify=notify
    )
    # Logits computed elsewhere (a cluster's GPU) may be checked on another device here: the
    # looser of the two engines' tolerances applies.
    here = EngineKey("torch", classifier.device)
    tolerance = max(
        spot_check.relative_tolerance(request.engine), spot_check.relative_tolerance(here)
    )
    for view, fresh in zip(views, recomputed, strict=True):
        reason = spot_check.disagreement(cached[view][rows], fresh, tolerance)
        if reason is not None:
            problems.append((view, reason))
    return problems


def choose_precision(
    classifier: Classifier, probe: np.ndarray, requested: str, tolerance: float = 0.05
) -> str:
    """The GPU autocast precision to run at (`at_precision` applies it): `auto` takes bf16 when
    its logits match fp32.

    The check runs one probe batch both ways: the largest absolute logit difference must stay
    within `tolerance` times the logits' spread and the predicted classes must agree.
    """
    if not isinstance(classifier, TorchClassifier) or classifier.device != "cuda":
        return "fp32"
    if requested != "auto":
        return requested
    reference = classifier(probe)
    fast = at_precision(classifier, "bf16")(probe)
    scale = max(float(reference.std()), 1.0)
    close = float(np.abs(fast - reference).max()) <= tolerance * scale
    same_class = bool((fast.argmax(1) == reference.argmax(1)).all())
    return "bf16" if close and same_class else "fp32"
