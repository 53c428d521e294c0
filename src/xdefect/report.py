"""Pictures: overlays of detections and ground truth, mask outlines, patch grids, PR curves.

All functions return ``(H, W, 3)`` uint8 RGB arrays; writing them is left to
:mod:`xdefect.io`. Colours follow the paper's figures: detections green, ground truth red,
the casting-mask outline blue.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from xdefect.dataset import SOURCES, Dataset
from xdefect.evaluate import pr_curve
from xdefect.io import to_uint

__all__ = ["BLUE", "GREEN", "RED", "dataset_grid", "draw_boxes", "draw_mask_outline", "overlay",
           "patch_grid", "pr_curve_figure", "to_rgb"]

GREEN = (0, 220, 0)
RED = (255, 0, 0)
BLUE = (40, 120, 255)


def to_rgb(image: np.ndarray) -> np.ndarray:
    """Grey float [0, 1] (or uint8) ``(H, W)`` image -> ``(H, W, 3)`` uint8."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        a = to_uint(a, 8)
    return np.repeat(a[:, :, None], 3, axis=2)


def draw_boxes(rgb: np.ndarray, boxes: np.ndarray, color: tuple[int, int, int],
               thickness: int = 1) -> np.ndarray:
    """Draw box outlines in place and return ``rgb``.

    ``boxes``: ``(N, 4)`` ``(x1, y1, x2, y2)`` in pixels, 0-based, half-open; the outline
    is drawn on the box's own border pixels (columns ``x1`` and ``x2 - 1``, rows ``y1``
    and ``y2 - 1``), clipped to the image.
    """
    h, w = rgb.shape[:2]
    for x1, y1, x2, y2 in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        c1, r1 = max(int(np.floor(x1)), 0), max(int(np.floor(y1)), 0)
        c2, r2 = min(int(np.ceil(x2)), w), min(int(np.ceil(y2)), h)
        if c2 <= c1 or r2 <= r1:
            continue
        for t in range(thickness):
            top, bot = min(r1 + t, r2 - 1), max(r2 - 1 - t, r1)
            left, right = min(c1 + t, c2 - 1), max(c2 - 1 - t, c1)
            rgb[top, c1:c2] = color
            rgb[bot, c1:c2] = color
            rgb[r1:r2, left] = color
            rgb[r1:r2, right] = color
    return rgb


def draw_mask_outline(rgb: np.ndarray, mask: np.ndarray,
                      color: tuple[int, int, int] = BLUE) -> np.ndarray:
    """Draw the one-pixel inner outline of a binary mask in place and return ``rgb``."""
    m = np.asarray(mask, dtype=bool)
    edge = m & ~ndi.binary_erosion(m, border_value=0)
    rgb[edge] = color
    return rgb


def overlay(image: np.ndarray, detections: np.ndarray | None = None,
            ground_truth: np.ndarray | None = None, mask: np.ndarray | None = None,
            thickness: int = 1) -> np.ndarray:
    """The paper's Fig. 10 picture: image, mask outline (blue), ground truth (red) and
    detections (green, drawn last). Boxes are 0-based half-open ``(x1, y1, x2, y2)``."""
    rgb = to_rgb(image)
    if mask is not None:
        draw_mask_outline(rgb, mask)
    if ground_truth is not None:
        draw_boxes(rgb, ground_truth, RED, thickness)
    if detections is not None:
        draw_boxes(rgb, detections, GREEN, thickness)
    return rgb


def patch_grid(patches: np.ndarray, cols: int = 8, pad: int = 2, scale: int = 2,
               background: int = 255) -> np.ndarray:
    """Tile ``(N, h, w)`` grey patches (uint8, or float in [0, 1]) into a grid image.

    Returns a ``(H, W, 3)`` uint8 array; each patch is enlarged ``scale`` times (nearest
    neighbour) so 32x32 patches stay visible.
    """
    p = np.asarray(patches)
    if p.dtype != np.uint8:
        p = to_uint(p, 8)
    n = max(len(p), 1)
    rows = (n + cols - 1) // cols
    h, w = (p.shape[1] * scale, p.shape[2] * scale) if len(p) else (32 * scale, 32 * scale)
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad), background, np.uint8)
    for i, patch in enumerate(p):
        r, c = divmod(i, cols)
        big = np.kron(patch, np.ones((scale, scale), dtype=np.uint8))
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        grid[y:y + h, x:x + w] = big
    return np.repeat(grid[:, :, None], 3, axis=2)


def pr_curve_figure(results: list, iou: float = 0.5, sweep: dict | None = None
                    ) -> np.ndarray:
    """PR curves (one per series and the pooled one, the paper's Fig. 9) as an RGB array.

    ``results``: :class:`xdefect.evaluate.ImageResult` list (curves by ranking boxes);
    ``sweep``: optionally a :func:`xdefect.evaluate.theta_sweep` result, drawn as the
    pooled theta-sweep curve (the paper's construction) with its points marked.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 5.2), dpi=100)
    for s in sorted({r.series for r in results}):
        c = pr_curve([r for r in results if r.series == s], iou)
        if c.n_gt:
            ax.plot(np.r_[0, c.recall], np.r_[1, c.precision], lw=1.2,
                    label=f"{s} (AP {c.ap():.3f})")
    c = pr_curve(results, iou)
    if c.n_gt:
        ax.plot(np.r_[0, c.recall], np.r_[1, c.precision], "k", lw=2.5,
                label=f"all, boxes ranked (AP {c.ap():.3f})")
    if sweep and sweep.get("recall"):
        o = np.argsort(sweep["recall"])
        ax.plot(np.asarray(sweep["recall"])[o], np.asarray(sweep["precision"])[o], "k--o",
                lw=1.5, ms=4, label=f"all, theta swept (AP {sweep['ap']:.3f})")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(f"Precision-recall, IoU >= {iou}")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[:, :, :3].copy()
    plt.close(fig)
    return rgb


#: the rows of a dataset grid (label, source), in drawing order
_GRID_ROWS = ((0, "background"), (1, "real"), (1, "ellipsoid"), (1, "gan"), (0, "hard"),
              (1, "hard-defect"))
assert {s for _, s in _GRID_ROWS} == set(SOURCES)


def dataset_grid(ds: Dataset, per_row: int = 16, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """A picture of a patch dataset: one row of ``per_row`` random patches (seeded) for
    label and source present (background, then the defect sources, then hard negatives);
    returns the RGB image and the rows' names (``label/source``)."""
    rng = np.random.default_rng(seed)
    rows, names = [], []
    for lab, src in _GRID_ROWS:
        idx = np.flatnonzero((ds.labels == lab) & (ds.source == src))
        if idx.size:
            pick = np.sort(rng.choice(idx, min(per_row, idx.size), replace=False))
            rows.append(patch_grid(ds.patches[pick], cols=per_row))
            names.append(f"{'defect' if lab else 'no-defect'}/{src}")
    if not rows:
        return patch_grid(np.zeros((0, 32, 32), np.uint8), cols=per_row), names
    width = max(r.shape[1] for r in rows)
    pad = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255)
           for r in rows]
    return np.concatenate(pad, axis=0), names
