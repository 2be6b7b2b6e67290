"""In-memory image sets in one canonical layout: (N, C, H, W), uint8 0..255 or float32 0..1."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from mia_audit.errors import InputError
from mia_audit.store.hashing import arrays_sha256

_CHANNEL_COUNTS = (1, 3, 4)


@dataclass(frozen=True)
class ImageSet:
    images: np.ndarray
    labels: np.ndarray
    ids: np.ndarray
    source: str
    membership: np.ndarray | None = None
    class_names: tuple[str, ...] | None = None
    #: False when the file had no ids and `ids` are row numbers.
    ids_given: bool = True

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.images.shape[1:])

    @cached_property
    def sha256(self) -> str:
        return arrays_sha256(self.images, self.labels)

    def with_id_prefix(self, prefix: str) -> ImageSet:
        """Name row-number ids `prefix:row` so that ids of different files do not collide."""
        if self.ids_given:
            return self
        return replace(self, ids=np.char.add(f"{prefix}:", self.ids), ids_given=True)

    def subset(self, index: np.ndarray) -> ImageSet:
        membership = None if self.membership is None else self.membership[index]
        return replace(
            self,
            images=self.images[index],
            labels=self.labels[index],
            ids=self.ids[index],
            membership=membership,
        )


def make_image_set(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    source: str,
    ids: np.ndarray | None = None,
    membership: np.ndarray | None = None,
    class_names: tuple[str, ...] | None = None,
) -> ImageSet:
    """Validate and canonicalise arrays read from a file; errors name `source`."""
    canonical = canonical_images(np.asarray(images), source)
    label_array = canonical_labels(np.asarray(labels), source)
    if len(canonical) != len(label_array):
        raise InputError(
            f"{source}: {len(canonical)} images but {len(label_array)} labels; "
            "every image needs one label"
        )
    if len(canonical) == 0:
        raise InputError(f"{source}: holds no samples; give at least one image")
    id_array = _ids(ids, len(canonical), source)
    member_array = None if membership is None else _membership(membership, len(canonical), source)
    return ImageSet(
        canonical, label_array, id_array, source, member_array, class_names, ids is not None
    )


def canonical_images(images: np.ndarray, source: str) -> np.ndarray:
    """(N,H,W) / (N,H,W,C) uint8 / (N,C,H,W) float -> (N,C,H,W) uint8 or float32."""
    if images.ndim == 3:
        images = images[:, None]
    elif images.ndim != 4:
        raise InputError(
            f"{source}: images have shape {images.shape}; expected (N, H, W, C) uint8 "
            "or (N, C, H, W) float"
        )
    kind = images.dtype.kind
    if kind == "f":
        canonical = _float_images(images, source)
    elif kind in "iu":
        canonical = _integer_images(images, source)
    else:
        raise InputError(f"{source}: images have dtype {images.dtype}; expected uint8 or float")
    if 0 in canonical.shape[2:]:
        raise InputError(f"{source}: images have shape {images.shape}: they hold no pixels")
    return canonical


def _float_images(images: np.ndarray, source: str) -> np.ndarray:
    if images.shape[1] not in _CHANNEL_COUNTS and images.shape[-1] in _CHANNEL_COUNTS:
        images = images.transpose(0, 3, 1, 2)
    if images.shape[1] not in _CHANNEL_COUNTS:
        raise InputError(
            f"{source}: float images have shape {images.shape}; expected (N, C, H, W) "
            "with 1, 3 or 4 channels"
        )
    with np.errstate(over="ignore"):
        converted = np.ascontiguousarray(images, dtype=np.float32)
    if not np.isfinite(converted).all():  # after the cast: 1e300 is finite, not as float32
        raise InputError(
            f"{source}: images contain NaN or infinite values (or values too large for float32)"
        )
    return converted


def _integer_images(images: np.ndarray, source: str) -> np.ndarray:
    if images.size and (images.min() < 0 or images.max() > 255):
        raise InputError(f"{source}: integer pixel values must lie in 0..255")
    if images.shape[-1] in _CHANNEL_COUNTS:
        images = images.transpose(0, 3, 1, 2)
    elif images.shape[1] not in _CHANNEL_COUNTS:
        raise InputError(
            f"{source}: uint8 images have shape {images.shape}; expected (N, H, W, C) "
            "with 1, 3 or 4 channels"
        )
    return np.ascontiguousarray(images, dtype=np.uint8)


def as_float01(images: np.ndarray) -> np.ndarray:
    """Images on the 0..1 float32 scale (uint8 pixels divided by 255)."""
    if images.dtype == np.uint8:
        return images.astype(np.float32) / np.float32(255.0)
    return images.astype(np.float32, copy=False)


#: Larger labels cannot be class indices of any model (and would not survive the int64 cast).
MAX_LABEL = 2**31 - 1


def canonical_labels(labels: np.ndarray, source: str) -> np.ndarray:
    labels = labels.reshape(-1) if labels.ndim == 2 and labels.shape[1] == 1 else labels
    if labels.ndim != 1:
        raise InputError(f"{source}: labels have shape {labels.shape}; expected one per image")
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
            raise InputError(f"{source}: labels must be whole class indices")
    elif labels.dtype.kind not in "iub":
        raise InputError(f"{source}: labels have dtype {labels.dtype}; expected integers")
    if labels.size and labels.min() < 0:  # checked before the cast, which could wrap
        raise InputError(f"{source}: label {int(labels.min())} is negative; labels are 0..C-1")
    if labels.size and labels.max() > MAX_LABEL:
        raise InputError(
            f"{source}: label {int(labels.max())} is too large to be a class index; "
            "labels are 0..C-1"
        )
    return labels.astype(np.int64)


def _ids(ids: np.ndarray | None, n: int, source: str) -> np.ndarray:
    if ids is None:
        return np.arange(n).astype(str)
    array = np.asarray(ids).reshape(-1)
    if array.dtype.kind == "S":  # bytes: any encoding; keep what is not UTF-8 visible
        array = np.char.decode(array, "utf-8", "backslashreplace")
    array = array.astype(str)
    if len(array) != n:
        raise InputError(f"{source}: {len(array)} ids for {n} images")
    return array


def _membership(membership: np.ndarray, n: int, source: str) -> np.ndarray:
    array = np.asarray(membership).reshape(-1)
    if len(array) != n:
        raise InputError(f"{source}: {len(array)} membership values for {n} images")
    if array.dtype.kind == "b":
        return array
    if array.dtype.kind in "iuf" and np.isin(array, (0, 1)).all():
        return array.astype(bool)
    raise InputError(f"{source}: membership must be 0/1 (or true/false) for every sample")
