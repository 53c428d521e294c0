"""Patch windows on images: the window size and the window geometry shared by the dataset
builder (:mod:`xdefect.patches`), the GAN (:mod:`xdefect.gan`) and the models, pure NumPy.

A window is identified by the 0-based ``(row, col)`` of its top-left pixel and covers
``image[row:row + PATCH, col:col + PATCH]``; its centre pixel is ``(row + 16, col + 16)``.
Boxes are xdefect's ``(x1, y1, x2, y2)``, 0-based, half-open (x the column, y the row).
"""

from __future__ import annotations

import numpy as np

__all__ = ["PATCH", "background_positions", "box_raster", "centred_real_positions", "cut",
           "cut_context",
           "defect_centre_mask", "hard_negative_positions", "real_positions", "window_sums"]

#: side of the square patch the classifiers see (pixels)
PATCH = 32


def window_sums(a: np.ndarray, size: int = PATCH) -> np.ndarray:
    """Sum of ``a`` over every ``size`` x ``size`` window; result ``[r, c]`` is the window
    with top-left ``(r, c)``, shape ``(H - size + 1, W - size + 1)`` (integer sums)."""
    c = np.zeros((a.shape[0] + 1, a.shape[1] + 1), dtype=np.int64)
    c[1:, 1:] = np.cumsum(np.cumsum(a, axis=0, dtype=np.int64), axis=1)
    return c[size:, size:] - c[:-size, size:] - c[size:, :-size] + c[:-size, :-size]


def box_raster(shape: tuple[int, int], boxes: np.ndarray, grow: int = 0) -> np.ndarray:
    """Boolean raster of ``shape`` ``(height, width)``, True inside the boxes ``(x1, y1,
    x2, y2)`` (0-based, half-open) grown by ``grow`` pixels on every side."""
    out = np.zeros(shape, bool)
    h, w = shape
    for x1, y1, x2, y2 in np.asarray(boxes).reshape(-1, 4):
        out[max(int(y1) - grow, 0):min(int(y2) + grow, h),
            max(int(x1) - grow, 0):min(int(x2) + grow, w)] = True
    return out


def background_positions(mask: np.ndarray, boxes: np.ndarray, margin: int = 4) -> np.ndarray:
    """All valid top-left corners ``(row, col)`` of 'no-defect' patches: the centre pixel
    ``(row + 16, col + 16)`` is in ``mask`` and the patch overlaps no box grown by
    ``margin`` pixels. Returns an ``(n, 2)`` int array in raster order."""
    h, w = mask.shape
    if h < PATCH or w < PATCH:
        return np.zeros((0, 2), np.int64)
    free = window_sums(box_raster(mask.shape, boxes, margin).astype(np.int32)) == 0
    centre = mask[PATCH // 2:h - PATCH // 2 + 1, PATCH // 2:w - PATCH // 2 + 1]
    return np.argwhere(free & centre)


def defect_centre_mask(mask: np.ndarray, boxes: np.ndarray, margin: int = 4) -> np.ndarray:
    """Where a simulated defect may be centred: in ``mask`` and at least ``PATCH + margin``
    pixels (Chebyshev) from every real box, so that no patch around it touches one."""
    return mask & ~box_raster(mask.shape, boxes, PATCH + margin)


def cut(image8: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Cut ``(n, 32, 32)`` patches of ``image8`` at top-left corners ``(rows[i], cols[i])``
    (a copy, in the image's dtype)."""
    win = np.lib.stride_tricks.sliding_window_view(image8, (PATCH, PATCH))
    return np.ascontiguousarray(win[rows, cols])


def cut_context(image8: np.ndarray, rows: np.ndarray, cols: np.ndarray, margin: int,
                fill: int = 128) -> np.ndarray:
    """The windows at top-left corners ``(rows[i], cols[i])`` with ``margin`` pixels of
    surroundings on every side: ``(n, 32 + 2 * margin, 32 + 2 * margin)``, the window at
    ``[margin:margin + 32, margin:margin + 32]``; beyond the image's edge, ``fill`` (128:
    mid-grey, which the input normalisation maps to about 0, as the dense score map's
    zero padding sees it). ``margin`` 0 is :func:`cut`."""
    if margin == 0:
        return cut(image8, rows, cols)
    padded = np.pad(image8, margin, constant_values=fill)
    size = PATCH + 2 * margin
    win = np.lib.stride_tricks.sliding_window_view(padded, (size, size))
    return np.ascontiguousarray(win[rows, cols])


def real_positions(boxes: np.ndarray, shape: tuple[int, int], min_fraction: float = 1 / 3
                   ) -> list[tuple[int, int, int]]:
    """Top-left corners ``(row, col, box index)`` of every patch that holds at least
    ``min_fraction`` of a real box's area (the paper's rule for real 'defect' patches), or
    of the patch's own area when the box is larger than the patch (else a defect wider than
    32 pixels could never appear in a patch). ``shape``: ``(height, width)``."""
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


def centred_real_positions(boxes: np.ndarray, shape: tuple[int, int], max_offset: int = 8
                           ) -> list[tuple[int, int, int]]:
    """Top-left corners ``(row, col, box index)`` of the patches centred on a real box: the
    patch centre ``(row + 16, col + 16)`` lies within ``max_offset`` pixels (per axis) of
    the box centre, or, along an axis where the box is longer than ``32 + 2 *
    max_offset``, anywhere in the box less a 16-pixel border. ``shape``: ``(height,
    width)`` of the image. Near the image's edge, windows are moved inside it (without
    repeating a position)."""
    h, w = shape
    out: list[tuple[int, int, int]] = []
    for k, (x1, y1, x2, y2) in enumerate(np.asarray(boxes, dtype=np.int64).reshape(-1, 4)):
        axes = []
        for lo, hi, size in ((y1, y2, h), (x1, x2, w)):
            c = (lo + hi) / 2.0
            reach = max(float(max_offset), (hi - lo) / 2.0 - PATCH / 2)
            starts = np.arange(int(np.ceil(c - reach)), int(np.floor(c + reach)) + 1) - PATCH // 2
            axes.append(np.unique(np.clip(starts, 0, size - PATCH)))
        out.extend((int(r), int(c), k) for r in axes[0] for c in axes[1])
    return out


def hard_negative_positions(scores: np.ndarray, stride: int, mask: np.ndarray,
                            boxes: np.ndarray, n: int, margin: int = 4) -> np.ndarray:
    """Top-left corners ``(row, col)`` (0-based, ``(k, 2)``, ``k <= n``, highest score
    first) of the ``n`` no-defect windows a model finds most defect-like: the highest
    ``scores[i, j]`` (``y1 - y0`` of the window at ``(i * stride, j * stride)``) among the
    windows whose centre pixel is in ``mask`` and that stay clear of every box of
    ``boxes`` grown by ``margin`` pixels."""
    ok = np.zeros(mask.shape, bool)
    ok[tuple(background_positions(mask, boxes, margin).T)] = True
    ii, jj = np.indices(scores.shape).reshape(2, -1)
    r, c = ii * stride, jj * stride
    keep = ok[np.minimum(r, ok.shape[0] - 1), np.minimum(c, ok.shape[1] - 1)]
    r, c, v = r[keep], c[keep], scores[ii[keep], jj[keep]]
    order = np.argsort(-v, kind="stable")[:max(n, 0)]
    return np.stack([r[order], c[order]], axis=1).astype(np.int64)
