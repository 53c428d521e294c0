"""Patch windows on images: the window size and the geometry shared by the dataset
builder (:mod:`xdefect.patches`) and the GAN (:mod:`xdefect.gan`), pure NumPy.

A window is identified by the 0-based ``(row, col)`` of its top-left pixel and covers
``image[row:row + PATCH, col:col + PATCH]``; boxes are xdefect's ``(x1, y1, x2, y2)``,
0-based, half-open.
"""

from __future__ import annotations

import numpy as np

PATCH = 32


def to_uint8(image: np.ndarray) -> np.ndarray:
    """A float [0, 1] image as uint8 grey values (rounded, clipped)."""
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def real_positions(boxes: np.ndarray, shape: tuple[int, int], min_fraction: float = 1 / 3
                   ) -> list[tuple[int, int, int]]:
    """Top-left corners ``(row, col, box index)`` of every patch that holds at least
    ``min_fraction`` of a real box's area (the paper's rule for real 'defect' patches), or
    of the patch's own area when the box is larger than the patch (else a defect wider than
    32 pixels could never appear in a patch)."""
    h, w = shape
    out: list[tuple[int, int, int]] = []
    for k, (x1, y1, x2, y2) in enumerate(np.asarray(boxes, dtype=np.int64).reshape(-1, 4)):
        area = min((x2 - x1) * (y2 - y1), PATCH * PATCH)
        rr = np.arange(max(y1 - PATCH + 1, 0), min(y2, h - PATCH + 1))
        cc = np.arange(max(x1 - PATCH + 1, 0), min(x2, w - PATCH + 1))
        if rr.size == 0 or cc.size == 0:
            continue
        oy = np.minimum(rr + PATCH, y2) - np.maximum(rr, y1)
        ox = np.minimum(cc + PATCH, x2) - np.maximum(cc, x1)
        ok = np.argwhere(oy[:, None] * ox[None, :] * 3 >= area * 3 * min_fraction - 1e-9)
        out.extend((int(rr[i]), int(cc[j]), k) for i, j in ok)
    return out
