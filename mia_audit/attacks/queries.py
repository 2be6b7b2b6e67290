"""Query views: the augmented copies of an image that attacks may query the model with.

A view is a horizontal mirror and/or a shift by whole pixels (reflect padding), as in LiRA's
query augmentation. Views are applied to preprocessed float batches in NCHW layout.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, order=True)
class View:
    """One query: mirror the image, then shift it by (dy, dx) pixels with reflect padding."""

    mirror: bool = False
    dy: int = 0
    dx: int = 0

    @property
    def key(self) -> str:
        return f"mirror={int(self.mirror)},dy={self.dy},dx={self.dx}"

    def apply(self, batch: np.ndarray) -> np.ndarray:
        """Apply the view to a float batch of shape (B, C, H, W)."""
        out = batch[..., ::-1] if self.mirror else batch
        if self.dy or self.dx:
            out = shift_reflect(out, self.dy, self.dx)
        return np.ascontiguousarray(out)


IDENTITY = View()
#: The horizontal mirror alone (the calibration pilot's flip gap).
MIRROR = View(mirror=True)


def shift_reflect(batch: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Shift content by (dy, dx) pixels; the uncovered border is filled by reflection."""
    pad_y, pad_x = abs(dy), abs(dx)
    height, width = batch.shape[-2:]
    if pad_y >= height or pad_x >= width:
        raise ValueError(f"shift ({dy}, {dx}) is too large for {height}x{width} images")
    padded = np.pad(batch, ((0, 0), (0, 0), (pad_y, pad_y), (pad_x, pad_x)), mode="reflect")
    top, left = pad_y - dy, pad_x - dx
    return padded[..., top : top + height, left : left + width]


def enumerate_views(mirror: bool, shift: int) -> tuple[View, ...]:
    """All views of a query set: mirrors x shifts in {-shift, 0, shift}^2 (identity first)."""
    mirrors = (False, True) if mirror else (False,)
    offsets = (0, -shift, shift) if shift else (0,)
    views = [View(m, dy, dx) for m, dy, dx in itertools.product(mirrors, offsets, offsets)]
    return tuple(views)
