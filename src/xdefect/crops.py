"""Training crops with exact defect masks: what a segmenter (:mod:`xdefect.segment`) learns from.

A crop is a ``size`` x ``size`` piece of a radiograph (grey [0, 1]) with two boolean maps
of the same shape: ``target``, True on the pixels inside a defect's shadow, and ``valid``,
False where the loss must not look (a real defect's box around its inscribed ellipse, or
around the whole box plus a margin when real defects are not targets). Simulated defects
(:mod:`xdefect.simulate`: ellipsoidal voids, Eq. 3) are superimposed on the crop, each
centred on a pixel of the casting mask at least ``margin`` pixels from any real defect
box, and their exact shadow (``d > 0``) is the target: no box, no rule. Crops are turned
by a random multiple of 90 degrees and mirrored with probability one half. Coordinates:
rows ``y``, columns ``x``, 0-based; boxes ``(x1, y1, x2, y2)`` half-open.

Images come as :class:`TrainImage` (:func:`training_image` from an array and its known
defect boxes, :func:`gdxray_images` from a GDXray split, :func:`folder_images` from image
files without annotations), batches from :func:`sample_batch`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

from xdefect import gdxray
from xdefect.io import as_image
from xdefect.simulate import DefectSampler, SamplerConfig, Superimposed, superimpose

__all__ = ["CropConfig", "TrainImage", "add_hard", "folder_images", "gdxray_images",
           "inscribed_ellipse", "make_crop", "sample_batch", "superimpose_voids",
           "training_image", "with_hard"]


@dataclass(frozen=True)
class CropConfig:
    """How crops are made. ``size``: crop side (pixels, a multiple of 8). ``defects``:
    mean number of simulated defects per crop (Poisson). ``axes_mm``, ``mu_range``,
    ``x_max``, ``blur_px``, ``x_max_range``: the simulated defects
    (:class:`~xdefect.simulate.SamplerConfig`; semi-axes and ``x_max`` in mm, absorption in
    1/mm; ``x_max_range``: each void's own ``x_max``, log-uniform, for a mixture of
    contrasts). ``real``: real defect boxes' inscribed ellipses
    are targets (the rest of each box is ignored) and ``real_share`` of the crops are
    centred on a real box; otherwise each real box grown by ``margin`` pixels is ignored
    (the paper's protocol: simulated defects only). ``margin``: pixels between a real box
    and a simulated defect's centre; also the crop border that centres avoid.
    ``hard_share``: the share of crops centred (within a quarter of the crop) on a hard
    negative, a known false alarm of an image (:attr:`TrainImage.hard`), drawn among the
    crops not centred on a real box; 0 (the default) draws none."""

    size: int = 96
    defects: float = 1.5
    axes_mm: tuple[float, float] = (1.0, 10.0)
    mu_range: tuple[float, float] = SamplerConfig().mu_range
    x_max: float = 60.0
    blur_px: float = 0.0
    real: bool = False
    real_share: float = 1 / 3
    margin: int = 8
    x_max_range: tuple[float, float] | None = None
    hard_share: float = 0.0

    def __post_init__(self) -> None:
        for k in ("axes_mm", "mu_range"):
            object.__setattr__(self, k, tuple(float(v) for v in getattr(self, k)))
        if self.x_max_range is not None:
            object.__setattr__(self, "x_max_range", tuple(float(v) for v in self.x_max_range))
        self.sampler()  # x_max and x_max_range checked where they are used
        if self.size < 16 or self.size % 8:
            raise ValueError(f"crop size {self.size}: must be a multiple of 8, at least 16")
        if not (np.isfinite(self.defects) and 0 <= self.defects <= 50):
            raise ValueError(f"defects per crop {self.defects}: must lie in [0, 50]")
        lo, hi = self.axes_mm
        if not 0 < lo <= hi:
            raise ValueError(f"axes_mm {self.axes_mm}: need 0 < low <= high")
        lo, hi = self.mu_range
        if not 0 < lo <= hi:
            raise ValueError(f"mu_range {self.mu_range}: need 0 < low <= high")
        if not 0 <= self.real_share <= 1 or self.margin < 0 or self.blur_px < 0:
            raise ValueError("real_share must lie in [0, 1]; margin and blur_px >= 0")
        if not 0 <= self.hard_share < 1:
            raise ValueError(f"hard_share {self.hard_share}: must lie in [0, 1)")

    def sampler(self) -> SamplerConfig:
        return SamplerConfig(axes_mm=self.axes_mm, mu_range=self.mu_range, x_max=self.x_max,
                             blur_px=self.blur_px, x_max_range=self.x_max_range)

    def to_dict(self) -> dict:
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        if not self.hard_share:  # (without hard negatives, as recorded before they existed)
            d.pop("hard_share")
        return d

    @classmethod
    def from_dict(cls, d: dict) -> CropConfig:
        """The settings of a card's ``crops`` block (lists as tuples; a field the card
        predates takes its default)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


@dataclass(frozen=True)
class TrainImage:
    """One radiograph to cut crops from. ``pixels``: ``(H, W)`` float32 in [0, 1];
    ``mask``: the casting mask; ``boxes``: ``(n, 4)`` int known real defects ``(x1, y1,
    x2, y2)`` (none for an unannotated image); ``free``: where simulated defects may be
    centred (the mask less each box grown by the margin); ``name``: where it came from;
    ``soft``: optional ``(H, W)`` float32 soft targets in [0, 1] (a teacher's defect
    probability, :func:`make_crop`); ``annotated``: whether ``boxes`` are all its defects
    (a GDXray image of an annotated series), so that whatever else a model finds in it is
    a false alarm (:func:`xdefect.train_segment.mine_false_alarms`); ``hard``: ``(k, 2)``
    int ``(row, col)`` pixels of known false alarms, centres of hard-negative crops
    (``CropConfig.hard_share``)."""

    pixels: np.ndarray
    mask: np.ndarray
    boxes: np.ndarray
    free: np.ndarray
    name: str = ""
    soft: np.ndarray | None = None
    annotated: bool = False
    hard: np.ndarray | None = None


def training_image(pixels: np.ndarray, boxes: np.ndarray | None = None, margin: int = 8,
                   name: str = "", mask: np.ndarray | None = None,
                   soft: np.ndarray | None = None, annotated: bool = False) -> TrainImage:
    """A :class:`TrainImage` of a grey image and its known defect boxes (default: none);
    ``mask`` defaults to :func:`xdefect.gdxray.casting_mask`; ``soft``: soft targets of
    the image's shape in [0, 1] (see :func:`make_crop`); ``annotated``: ``boxes`` are all
    of its defects (:class:`TrainImage`)."""
    a = as_image(pixels)
    m = gdxray.casting_mask(a) if mask is None else np.asarray(mask, bool)
    b = np.zeros((0, 4), int) if boxes is None else np.asarray(boxes).astype(int).reshape(-1, 4)
    free = m.copy()
    for x1, y1, x2, y2 in b:
        free[max(y1 - margin, 0):y2 + margin, max(x1 - margin, 0):x2 + margin] = False
    if soft is not None:
        soft = np.asarray(soft, np.float32)
        if soft.shape != a.shape or not (np.isfinite(soft).all() and soft.min() >= 0
                                         and soft.max() <= 1):
            raise ValueError(f"soft targets must be finite, in [0, 1] and of the image's "
                             f"shape {a.shape}")
    return TrainImage(a, m, b, free, name, soft, bool(annotated))


def with_hard(img: TrainImage, points: np.ndarray | None) -> TrainImage:
    """``img`` with the hard-negative centres ``points`` (``(k, 2)`` int ``(row, col)``
    inside the image; none or an empty array: no hard negatives)."""
    if points is None or len(points) == 0:
        return replace(img, hard=None)
    p = np.asarray(points, dtype=np.int64).reshape(-1, 2)
    h, w = img.pixels.shape
    if p.min() < 0 or (p[:, 0] >= h).any() or (p[:, 1] >= w).any():
        raise ValueError(f"{img.name}: hard-negative centres outside the {h}x{w} image")
    return replace(img, hard=p)


def add_hard(img: TrainImage, points: np.ndarray) -> TrainImage:
    """``img`` with ``points`` (``(k, 2)`` int ``(row, col)``) added to its hard-negative
    centres (a bootstrapping round's new false alarms join the earlier rounds')."""
    if len(points) == 0:
        return img
    old = img.hard if img.hard is not None else np.zeros((0, 2), np.int64)
    return with_hard(img, np.concatenate([old, np.asarray(points).reshape(-1, 2)]))


def gdxray_images(root: str | os.PathLike[str], series: Iterable[str] | None, split: str,
                  margin: int = 8) -> list[TrainImage]:
    """The images of ``split`` (``train``, ``tuning``, ``odd``...) of ``series`` under a
    GDXray root, with their annotated boxes (none for an unannotated series)."""
    out = []
    for smp in gdxray.iter_samples(root, list(series) if series is not None else None,
                                   split=split):
        out.append(training_image(smp.image, smp.boxes, margin,
                                  f"{smp.record.series}/{smp.record.stem}",
                                  annotated=smp.annotated))
    return out


def folder_images(files: Sequence[str | os.PathLike[str]], margin: int = 8) -> list[TrainImage]:
    """Image files without annotations (every pixel of the casting may take a simulated
    defect; a real defect in them is taken as background)."""
    return [training_image(as_image(f), None, margin, str(f)) for f in files]


def inscribed_ellipse(h: int, w: int) -> np.ndarray:
    """``(h, w)`` bool: the pixels whose centres lie in the ellipse inscribed in the box."""
    yy, xx = np.mgrid[0:h, 0:w]
    return (((yy + 0.5) / h * 2 - 1) ** 2 + ((xx + 0.5) / w * 2 - 1) ** 2) <= 1.0


def superimpose_voids(pixels: np.ndarray, free: np.ndarray, cfg: CropConfig,
                      rng: np.random.Generator, n: int) -> list[Superimposed]:
    """Superimpose ``n`` simulated voids (``cfg``'s sampler), each centred on a pixel of
    ``free``, on the float64 grey image ``pixels`` in place; returns the results whose
    shadow reaches the image (each with its exact shadow, ``d_map``, and box). Nothing is
    drawn when ``n`` is 0 or ``free`` is empty."""
    if n <= 0 or not free.any():
        return []
    scfg = cfg.sampler()
    sampler = DefectSampler(free, scfg)
    out = []
    for _ in range(n):
        res = superimpose(pixels, sampler.sample(rng), scfg.geometry, x_max=scfg.x_max,
                          inplace=True, blur_px=scfg.blur_px)
        if res.box is not None:
            out.append(res)
    return out


def _centre(img: TrainImage, mask: np.ndarray, size: int, rng: np.random.Generator,
            on_real: bool, on_hard: bool) -> tuple[int, int]:
    """A crop's centre ``(row, col)``: in a random real box (``on_real``), within a
    quarter of the crop of a random hard negative (``on_hard``), else on a random pixel
    of ``mask`` (anywhere when the mask is empty)."""
    if on_real and len(img.boxes):
        x1, y1, x2, y2 = img.boxes[rng.integers(len(img.boxes))]
        return (int(rng.integers(y1, max(y2, y1 + 1))),
                int(rng.integers(x1, max(x2, x1 + 1))))
    if on_hard and img.hard is not None and len(img.hard):
        cy, cx = (int(v) for v in img.hard[rng.integers(len(img.hard))])
        j = size // 4
        return cy + int(rng.integers(-j, j + 1)), cx + int(rng.integers(-j, j + 1))
    h, w = mask.shape
    cand = np.flatnonzero(mask.ravel())
    if cand.size:
        cy, cx = divmod(int(cand[rng.integers(cand.size)]), w)
        return cy, cx
    return int(rng.integers(h)), int(rng.integers(w))


def make_crop(img: TrainImage, cfg: CropConfig, rng: np.random.Generator, n_defects: int,
              on_real: bool = False, on_hard: bool = False
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(crop, target, valid)``, each ``(size, size)``: a crop centred on a random mask
    pixel (on a random real box with ``on_real``; with ``on_hard``, within a quarter of
    the crop of a random one of ``img.hard``, the image's known false alarms) holding
    ``n_defects`` simulated
    defects, turned and mirrored at random. An image smaller than the crop is padded by
    reflection (the padding is not valid). ``target`` is boolean, or float32 in [0, 1]
    for an image with ``soft`` targets: the larger of the soft target and the simulated
    shadows, and its boxes (where simulated defects are not placed) are then neither
    ignored nor, unless ``cfg.real``, hard targets: the soft target covers them."""
    size = cfg.size
    pix, mask, free, soft = img.pixels, img.mask, img.free, img.soft
    h, w = pix.shape
    valid_full = None
    if h < size or w < size:
        ph, pw = max(size - h, 0), max(size - w, 0)
        pix = np.pad(pix, ((0, ph), (0, pw)), mode="reflect" if min(h, w) > max(ph, pw)
                     else "edge")
        mask = np.pad(mask, ((0, ph), (0, pw)))
        free = np.pad(free, ((0, ph), (0, pw)))
        soft = None if soft is None else np.pad(soft, ((0, ph), (0, pw)))
        valid_full = np.pad(np.ones((h, w), bool), ((0, ph), (0, pw)))
        h, w = pix.shape
    cy, cx = _centre(img, mask, size, rng, on_real, on_hard)
    r0 = int(np.clip(cy - size // 2, 0, h - size))
    c0 = int(np.clip(cx - size // 2, 0, w - size))
    crop = pix[r0:r0 + size, c0:c0 + size].astype(np.float64)
    target = np.zeros((size, size), bool)
    valid = (np.ones((size, size), bool) if valid_full is None
             else valid_full[r0:r0 + size, c0:c0 + size].copy())
    m = cfg.margin
    for x1, y1, x2, y2 in img.boxes:  # real defects in the crop
        a1, b1, a2, b2 = x1 - c0, y1 - r0, x2 - c0, y2 - r0
        if a2 <= 0 or b2 <= 0 or a1 >= size or b1 >= size or x2 <= x1 or y2 <= y1:
            continue
        if cfg.real:
            ell = inscribed_ellipse(y2 - y1, x2 - x1)
            rs, cs = slice(max(b1, 0), min(b2, size)), slice(max(a1, 0), min(a2, size))
            esub = ell[rs.start - b1:rs.stop - b1, cs.start - a1:cs.stop - a1]
            valid[rs, cs] = esub
            target[rs, cs] |= esub
        elif soft is None:
            valid[max(b1 - m, 0):b2 + m, max(a1 - m, 0):a2 + m] = False
    free = free[r0:r0 + size, c0:c0 + size].copy()
    free[:4], free[-4:], free[:, :4], free[:, -4:] = False, False, False, False
    for res in superimpose_voids(crop, free, cfg, rng, n_defects):
        target |= res.d_map((size, size)) > 0
    if soft is not None:
        target = np.maximum(soft[r0:r0 + size, c0:c0 + size], target).astype(np.float32)
    k = int(rng.integers(4))
    flip = bool(rng.integers(2))
    out = []
    for a in (np.clip(crop, 0.0, 1.0).astype(np.float32), target, valid):
        a = np.rot90(a, k)
        out.append(np.ascontiguousarray(a[:, ::-1] if flip else a))
    return out[0], out[1], out[2]


def sample_batch(images: Sequence[TrainImage], cfg: CropConfig, rng: np.random.Generator,
                 n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` crops from images drawn uniformly: ``(x, target, valid)`` arrays ``(n, size,
    size)`` (float32, bool, bool; targets float32 when an image has soft targets). With
    ``cfg.real``, ``cfg.real_share`` of them are centred on a real box of an image that
    has one; of the others, ``cfg.hard_share`` on a hard negative of an image that has
    some (:attr:`TrainImage.hard`)."""
    if not images:
        raise ValueError("no images to cut crops from")
    with_real = [i for i in images if len(i.boxes)]
    with_hard = ([i for i in images if i.hard is not None and len(i.hard)]
                 if cfg.hard_share else [])
    xs, ys, vs = [], [], []
    for _ in range(n):
        on_real = bool(cfg.real and with_real and rng.uniform() < cfg.real_share)
        # (no draw without hard negatives: the crops of such a run stay as they were)
        on_hard = bool(not on_real and with_hard and rng.uniform() < cfg.hard_share)
        img = (with_real[rng.integers(len(with_real))] if on_real
               else with_hard[rng.integers(len(with_hard))] if on_hard
               else images[rng.integers(len(images))])
        c, t, v = make_crop(img, cfg, rng, int(rng.poisson(cfg.defects)), on_real, on_hard)
        xs.append(c)
        ys.append(t)
        vs.append(v)
    return np.stack(xs), np.stack(ys), np.stack(vs)
