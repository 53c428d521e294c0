"""32x32 patch datasets for the paper's two protocols, and their on-disk format.

Patch selection works on arrays (one image, its casting mask, its real boxes) and returns
:class:`PatchSet` records; :func:`build_dataset` drives it over GDXray and writes the
format below. Coordinates: a patch is identified by the 0-based ``(row, col)`` of its
top-left pixel and covers ``image[row:row + 32, col:col + 32]``; boxes are xdefect's
``(x1, y1, x2, y2)``, 0-based, half-open.

Format of a dataset folder (a contract)::

    patches.npy    uint8 (N, 32, 32), readable with numpy.load(..., mmap_mode="r")
    labels.npy     uint8 (N,), 1 = defect, 0 = no defect
    meta.csv       index, split, label, source, series, image, row, col,
                   box_x1, box_y1, box_x2, box_y2   (defect box inside the patch; empty
                   for 'background'; for 'real' the clipped ground-truth box)
    manifest.json  protocol, the captured command line, GDXray root, series, image splits,
                   mix, seed, arguments, xdefect version, counts, source images with
                   SHA-256 checksums (and the GAN's and hard-negative model's)

``split`` is the *patch* split: train, val (the random patch hold-out for early
stopping, not the tuning images) or test (``table3``); ``source`` is real, ellipsoid, gan,
background or hard (GAN patches are not cut from an image: their ``row``/``col`` are -1,
and their series/image name the image whose quota they fill, ``gan``/0 in ``table3``). The
folder is written under a temporary name and renamed when complete; the same arguments
and seed give byte-identical files.

Rules (documented in ``docs/datasets.md``):

* 'no-defect' (source ``background``): the patch's centre pixel lies in the casting mask
  and the patch overlaps no real ground-truth box grown by ``margin`` pixels.
* 'defect' from a simulated ellipsoid: the ellipsoid's centre lies in the casting mask at
  least ``PATCH + margin`` pixels (Chebyshev) from every real box, so its patch never
  touches a real defect; the patch is offset from the defect's centre by up to
  ``max_offset`` pixels in each direction, redrawn until at least ``min_inside`` (default
  one half) of the defect's shadow (pixels with ``d > 0``) falls inside the patch.
* 'defect' from a real box (``table3``): the patch holds at least one third of the box's
  area (the paper's rule), or of the patch's area for boxes larger than the patch.
* Image splits (``gdxray``'s vocabulary): every 'wholeimage' source (background,
  ellipsoid, GAN quota, real, hard) is cut from the **train images** only (odd,
  number % 4 == 3), so the **tuning images** (odd, number % 4 == 1), where detection
  settings are chosen, and the **test images** (even) never reach training data.
  ``include_tuning=True`` (``--include-tuning``) adds the tuning images, for a final model
  whose settings are already fixed; the manifest's ``image_splits`` says which were used.
  ``table3`` is a series split (the paper's): all images of the training series, real
  C0001 patches for testing; its manifest says so too.
* 'defect' from a real box (``wholeimage --real N``, xdefect's extension): the patch's
  centre lies within ``max_offset`` pixels (per axis) of the box's centre, or within the
  box less a 16-pixel border for boxes wider than 32 + 2 * ``max_offset``.
* 'no-defect' hard negatives (``wholeimage --hard-negatives N --hard-model FILE``, source
  ``hard``): in each image, the ``N / images`` windows a model scores highest
  (``y1 - y0``) among those whose centre is in the casting mask and that stay clear of
  every real box grown by ``margin``.
"""

from __future__ import annotations

import csv
import json
import multiprocessing as mp
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from xdefect import __version__, gdxray
from xdefect import simulate as S
from xdefect.errors import InputError
from xdefect.io import atomic_dir, command_line, progress, read_json, sha256_file
from xdefect.windows import PATCH, real_positions, to_uint8

SOURCES = ("real", "ellipsoid", "gan", "background", "hard")
SPLITS = ("train", "val", "test")
META_COLUMNS = ("index", "split", "label", "source", "series", "image", "row", "col",
                "box_x1", "box_y1", "box_x2", "box_y2")
TABLE3_TRAIN_SERIES = ("C0010", "C0015", "C0021", "C0031", "C0034", "C0061")
TABLE3_TEST_SERIES = ("C0001",)


@dataclass(frozen=True)
class Mix:
    """Portions (percent) of ellipsoidal and GAN defects among simulated ones."""

    ellipsoid: int = 100
    gan: int = 0

    @property
    def name(self) -> str:
        return f"E{self.ellipsoid:03d}G{self.gan:03d}"


def parse_mix(text: str) -> Mix:
    """Parse ``EaaaGbbb`` (e.g. ``E100G000``, ``E050G050``); the portions must add to 100."""
    m = re.fullmatch(r"E(\d{1,3})G(\d{1,3})", text.strip().upper().replace("/", ""))
    if not m:
        raise InputError(f"--mix {text!r}: expected EaaaGbbb, e.g. E100G000 or E050G050")
    e, g = int(m.group(1)), int(m.group(2))
    if e + g != 100:
        raise InputError(f"--mix {text!r}: portions add up to {e + g}, not 100")
    return Mix(e, g)


@dataclass
class PatchSet:
    """Patches with their provenance, one entry per patch. ``series``/``images``: the
    source image of each patch; ``patches``: uint8 ``(n, 32, 32)``; ``labels``: uint8
    ``(n,)``; ``source``: source names; ``rows``/``cols``: top-left corners (0-based);
    ``boxes``: ``(n, 4)`` defect box inside the patch (-1 where none)."""

    series: list[str]
    images: np.ndarray
    patches: np.ndarray
    labels: np.ndarray
    source: list[str]
    rows: np.ndarray
    cols: np.ndarray
    boxes: np.ndarray

    @staticmethod
    def empty() -> PatchSet:
        return PatchSet([], np.zeros(0, np.int32), np.zeros((0, PATCH, PATCH), np.uint8),
                        np.zeros(0, np.uint8), [], np.zeros(0, np.int32),
                        np.zeros(0, np.int32), np.zeros((0, 4), np.int32))

    def __len__(self) -> int:
        return len(self.labels)


def _window_sum(a: np.ndarray, size: int = PATCH) -> np.ndarray:
    """Sum of ``a`` over every ``size`` x ``size`` window; result ``[r, c]`` is the window
    with top-left ``(r, c)``, shape ``(H - size + 1, W - size + 1)``."""
    c = np.zeros((a.shape[0] + 1, a.shape[1] + 1), dtype=np.int64)
    c[1:, 1:] = np.cumsum(np.cumsum(a, axis=0, dtype=np.int64), axis=1)
    return c[size:, size:] - c[:-size, size:] - c[size:, :-size] + c[:-size, :-size]


def box_raster(shape: tuple[int, int], boxes: np.ndarray, grow: int = 0) -> np.ndarray:
    """Boolean raster of boxes ``(x1, y1, x2, y2)`` (0-based half-open) grown by ``grow``."""
    out = np.zeros(shape, bool)
    h, w = shape
    for x1, y1, x2, y2 in np.asarray(boxes).reshape(-1, 4):
        out[max(int(y1) - grow, 0):min(int(y2) + grow, h),
            max(int(x1) - grow, 0):min(int(x2) + grow, w)] = True
    return out


def background_positions(mask: np.ndarray, boxes: np.ndarray, margin: int = 4) -> np.ndarray:
    """All valid top-left corners ``(row, col)`` of 'no-defect' patches: the centre pixel
    ``(row + 16, col + 16)`` is in ``mask`` and the patch overlaps no box grown by
    ``margin``. Returns an ``(n, 2)`` int array in raster order."""
    h, w = mask.shape
    if h < PATCH or w < PATCH:
        return np.zeros((0, 2), np.int64)
    free = _window_sum(box_raster(mask.shape, boxes, margin).astype(np.int32)) == 0
    centre = mask[PATCH // 2:h - PATCH // 2 + 1, PATCH // 2:w - PATCH // 2 + 1]
    ok = free & centre
    return np.argwhere(ok)


def defect_centre_mask(mask: np.ndarray, boxes: np.ndarray, margin: int = 4) -> np.ndarray:
    """Where a simulated defect may be centred: in ``mask`` and at least ``PATCH + margin``
    pixels (Chebyshev) from every real box, so that no patch around it touches one."""
    return mask & ~box_raster(mask.shape, boxes, PATCH + margin)


def cut(image8: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Cut ``(n, 32, 32)`` patches at top-left corners ``(rows[i], cols[i])``."""
    win = np.lib.stride_tricks.sliding_window_view(image8, (PATCH, PATCH))
    return np.ascontiguousarray(win[rows, cols])


def ellipsoid_patches(image: np.ndarray, centre_mask: np.ndarray, n: int,
                      rng: np.random.Generator, config: S.SamplerConfig,
                      max_offset: int = 8, min_inside: float = 0.5
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``n`` 32x32 patches, each with one simulated ellipsoidal defect.

    ``image``: float [0, 1] ``(H, W)``. Returns ``(patches uint8 (n, 32, 32), rows, cols,
    boxes)`` with ``boxes`` the defect's box inside its patch (0-based half-open).
    """
    h, w = image.shape
    sampler = S.DefectSampler(centre_mask, config)
    geo = config.geometry
    out = np.empty((n, PATCH, PATCH), np.uint8)
    rows = np.empty(n, np.int32)
    cols = np.empty(n, np.int32)
    boxes = np.full((n, 4), -1, np.int32)
    half = PATCH // 2
    for i in range(n):
        while True:
            ell = sampler.sample(rng)
            d, (r0, r1, c0, c1) = S.path_length((h, w), ell, geo)
            hit = d > 0
            total = int(hit.sum())
            if total:
                break
        cr, cc = int(round(ell.center[0])), int(round(ell.center[1]))
        for attempt in range(20):
            off = rng.integers(-max_offset, max_offset + 1, size=2) if attempt < 19 else (0, 0)
            pr = int(np.clip(cr - half + off[0], 0, h - PATCH))
            pc = int(np.clip(cc - half + off[1], 0, w - PATCH))
            inside = hit[max(pr - r0, 0):max(pr + PATCH - r0, 0),
                         max(pc - c0, 0):max(pc + PATCH - c0, 0)].sum()
            if inside >= min_inside * total:
                break
        crop = image[pr:pr + PATCH, pc:pc + PATCH]
        local = S.Ellipsoid(ell.axes_mm, ell.rotation, (ell.center[0] - pr, ell.center[1] - pc),
                            ell.mu)
        res = S.superimpose(crop, local, geo, x_max=config.x_max)
        out[i] = to_uint8(res.image)
        rows[i], cols[i] = pr, pc
        if res.box is not None:
            boxes[i] = res.box
    return out, rows, cols, boxes


def centred_real_positions(boxes: np.ndarray, shape: tuple[int, int], max_offset: int = 8
                           ) -> list[tuple[int, int, int]]:
    """Top-left corners ``(row, col, box index)`` of the patches centred on a real box: the
    patch centre ``(row + 16, col + 16)`` lies within ``max_offset`` pixels (per axis) of
    the box centre, or, along an axis where the box is longer than ``32 + 2 *
    max_offset``, anywhere in the box less a 16-pixel border. ``boxes``: ``(x1, y1, x2,
    y2)``, 0-based, half-open; ``shape``: ``(height, width)`` of the image. Near the
    image's edge, windows are moved inside it (without repeating a position)."""
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
    ``boxes`` (``(x1, y1, x2, y2)``, 0-based, half-open) grown by ``margin`` pixels."""
    ok = np.zeros(mask.shape, bool)
    ok[tuple(background_positions(mask, boxes, margin).T)] = True
    ii, jj = np.indices(scores.shape).reshape(2, -1)
    r, c = ii * stride, jj * stride
    keep = ok[np.minimum(r, ok.shape[0] - 1), np.minimum(c, ok.shape[1] - 1)]
    r, c, v = r[keep], c[keep], scores[ii[keep], jj[keep]]
    order = np.argsort(-v, kind="stable")[:max(n, 0)]
    return np.stack([r[order], c[order]], axis=1).astype(np.int64)


# ----------------------------------------------------------------------- whole-image jobs


@dataclass(frozen=True)
class ImageJob:
    """Work for one image (picklable, for worker processes)."""

    path: str
    series: str
    number: int
    boxes: np.ndarray
    n_background: int
    n_ellipsoid: int
    seed: tuple[int, ...]
    config: S.SamplerConfig
    margin: int = 4
    max_offset: int = 8
    min_inside: float = 0.5


def run_image_job(job: ImageJob) -> PatchSet:
    """Cut the 'no-defect' and ellipsoidal 'defect' patches of one image."""
    from xdefect.io import read_image

    rng = np.random.default_rng(np.random.SeedSequence(list(job.seed)))
    rad = read_image(job.path)
    img = rad.pixels
    if img.shape[0] < PATCH or img.shape[1] < PATCH:
        raise InputError(f"{job.path}: image {img.shape[1]}x{img.shape[0]} is smaller than "
                         f"the {PATCH}x{PATCH} window")
    mask = gdxray.casting_mask(img)
    pos = background_positions(mask, job.boxes, job.margin)
    if len(pos) < job.n_background:
        raise InputError(f"{job.path}: the casting holds {len(pos)} distinct no-defect patch "
                         f"positions, fewer than the {job.n_background} asked for "
                         "(lower --per-image)")
    pick = np.sort(rng.choice(len(pos), size=job.n_background, replace=False))
    br, bc = pos[pick, 0].astype(np.int32), pos[pick, 1].astype(np.int32)
    img8 = to_uint8(img)
    bg = cut(img8, br, bc)
    cm = defect_centre_mask(mask, job.boxes, job.margin)
    if job.n_ellipsoid and not cm.any():
        raise InputError(f"{job.path}: no room in the casting for simulated defects away "
                         "from the real ones")
    ep, er, ec, eb = (ellipsoid_patches(img, cm, job.n_ellipsoid, rng, job.config,
                                        job.max_offset, job.min_inside)
                      if job.n_ellipsoid else (np.zeros((0, PATCH, PATCH), np.uint8),
                                               np.zeros(0, np.int32), np.zeros(0, np.int32),
                                               np.zeros((0, 4), np.int32)))
    n_b, n_e = len(bg), len(ep)
    return PatchSet(
        [job.series] * (n_b + n_e), np.full(n_b + n_e, job.number, np.int32),
        np.concatenate([bg, ep]),
        np.concatenate([np.zeros(n_b, np.uint8), np.ones(n_e, np.uint8)]),
        ["background"] * n_b + ["ellipsoid"] * n_e,
        np.concatenate([br, er]), np.concatenate([bc, ec]),
        np.concatenate([np.full((n_b, 4), -1, np.int32), eb]))


# ------------------------------------------------------------------------------ builder


@dataclass
class BuildArgs:
    """Arguments of :func:`build_dataset` (recorded in the manifest)."""

    gdxray: str
    out: str
    protocol: str = "wholeimage"
    series: list[str] | None = None
    per_image: int = 2200
    mix: str = "E100G000"
    gan: str | None = None
    val_fraction: float = 0.2
    split_by: str = "patch"
    seed: int = 0
    margin: int = 4
    max_offset: int = 8
    min_inside: float = 0.5
    t3_defects: int = 75000
    t3_no_defects: int = 75000
    t3_real: int = 15000
    t3_test_defects: int = 6000
    t3_test_no_defects: int = 6000
    mu_range: tuple[float, float] = S.DEFAULT_MU_RANGE
    axes_mm: tuple[float, float] = S.DEFAULT_AXES_MM
    real: int = 0
    real_offset: int = 8
    hard_negatives: int = 0
    hard_model: str | None = None
    hard_mode: str = "dense"
    hard_stride: int = 4
    workers: int = 0
    force: bool = False
    limit_images: int | None = None
    include_tuning: bool = False
    command: str | None = None


GanSource = Callable[[int, np.random.Generator], np.ndarray]
#: ``score_fn(image)`` -> ``(values, stride)``: the score map ``y1 - y0`` of a float
#: ``[0, 1]`` image on a window grid of the given stride (what hard negatives are mined from)
ScoreFn = Callable[[np.ndarray], tuple[np.ndarray, int]]


def _sampler(args: BuildArgs) -> S.SamplerConfig:
    """The ellipsoid sampler of a build (defaults of :mod:`xdefect.simulate` unless the
    arguments set the ranges)."""
    return S.SamplerConfig(axes_mm=tuple(args.axes_mm), mu_range=tuple(args.mu_range))


def _generator_card(args: BuildArgs) -> tuple[Path, dict]:
    """The generator file of ``args.gan`` (a GAN folder or its ``generator.safetensors``)
    and its card, with ``image_splits`` filled in for generators made before the card
    recorded them (those learnt from every odd image)."""
    g = Path(args.gan)
    g = g / "generator.safetensors" if g.is_dir() else g
    card = read_json(g.with_suffix(".json"))
    return g, {**card, "image_splits": card.get("image_splits", ["train", "tuning"])}


def _gan_source(args: BuildArgs, mix: Mix) -> GanSource | None:
    if mix.gan == 0:
        return None
    if not args.gan:
        raise InputError(f"--mix {mix.name}: a GAN portion needs --gan GANDIR "
                         "(a trained generator from `xdefect gan train`)")
    from xdefect import gan

    src = gan.patch_source(args.gan)
    # a generator learnt from real defects of the tuning images would carry them into
    # training data: refuse it unless the build includes the tuning images too
    used = _generator_card(args)[1]["image_splits"]
    allowed = set(image_splits(args)) if args.protocol == "wholeimage" else {"train", "tuning"}
    if not set(used) <= allowed:
        raise InputError(f"{args.gan}: this generator learnt from the {' and '.join(used)} "
                         "images; retrain it on the train images (`xdefect gan train`) or "
                         "build with --include-tuning")
    return src


def gan_set(src: GanSource, n: int, series: str, image: int, seed: tuple[int, ...]
            ) -> PatchSet:
    """``n`` GAN 'defect' patches filling an image's quota: source ``gan``, provenance the
    image whose quota they fill, ``row = col = -1`` (not cut from it)."""
    rng = np.random.default_rng(np.random.SeedSequence(list(seed)))
    p = src(n, rng)
    return PatchSet([series] * n, np.full(n, image, np.int32), p, np.ones(n, np.uint8),
                    ["gan"] * n, np.full(n, -1, np.int32), np.full(n, -1, np.int32),
                    np.full((n, 4), -1, np.int32))


def _concat(a: PatchSet, b: PatchSet) -> PatchSet:
    return PatchSet(a.series + b.series, np.concatenate([a.images, b.images]),
                    np.concatenate([a.patches, b.patches]), np.concatenate([a.labels, b.labels]),
                    a.source + b.source, np.concatenate([a.rows, b.rows]),
                    np.concatenate([a.cols, b.cols]), np.concatenate([a.boxes, b.boxes]))


def _split(labels: np.ndarray, groups: np.ndarray | None, val_fraction: float,
           rng: np.random.Generator) -> np.ndarray:
    """Train/val split codes (0 train, 1 val). Without ``groups``: ``val_fraction`` of each
    label at random (stratified). With ``groups`` (one id per image): a random
    ``val_fraction`` of the images goes wholly to val."""
    split = np.zeros(len(labels), np.uint8)  # 0 train, 1 val
    if val_fraction <= 0:
        return split
    if groups is None:
        for lab in (0, 1):
            idx = np.flatnonzero(labels == lab)
            nval = int(round(val_fraction * len(idx)))
            split[rng.permutation(idx)[:nval]] = 1
        return split
    uniq = np.unique(groups)
    order = rng.permutation(uniq)
    nval = max(1, int(round(val_fraction * len(uniq)))) if len(uniq) > 1 else 0
    split[np.isin(groups, order[:nval])] = 1
    return split


def image_splits(args: BuildArgs) -> list[str]:
    """The image splits a 'wholeimage' build cuts patches from: ``["train"]``, or
    ``["train", "tuning"]`` with ``include_tuning``."""
    return ["train", "tuning"] if args.include_tuning else ["train"]


def source_images(args: BuildArgs) -> list[gdxray.ImageRecord]:
    """The images every source of a 'wholeimage' build is cut from: the train images
    (and the tuning images with ``include_tuning``) of the build's series (default: the
    paper's), never a test image."""
    series = gdxray.protocol_series(args.gdxray, args.series)
    recs = gdxray.list_images(args.gdxray, series, "odd" if args.include_tuning else "train")
    if args.limit_images:
        recs = recs[: args.limit_images]
    if not recs:
        raise InputError(f"{args.gdxray}: no {' or '.join(image_splits(args))} images "
                         f"in {', '.join(series)}")
    assert all(r.image_split in image_splits(args) for r in recs)
    return recs


def plan_wholeimage(args: BuildArgs, mix: Mix) -> tuple[list[ImageJob], list[gdxray.ImageRecord]]:
    recs = source_images(args)
    series = sorted({r.series for r in recs})
    gts = {s: gdxray.load_ground_truth(args.gdxray, s) for s in series}
    n_e = int(round(args.per_image * mix.ellipsoid / 100))
    jobs = [ImageJob(str(r.path), r.series, r.number, gts[r.series].boxes_of(r.number),
                     args.per_image, n_e, (args.seed, int(r.series[1:]), r.number),
                     _sampler(args), args.margin, args.max_offset, args.min_inside)
            for r in recs]
    return jobs, recs


def _map(fn: Callable, jobs: Sequence, workers: int, desc: str) -> Iterable:
    workers = workers or min(os.cpu_count() or 1, 4)
    bar = progress(total=len(jobs), desc=desc, unit="image")
    if workers <= 1 or len(jobs) <= 1:
        for j in jobs:
            yield fn(j)
            bar.update()
    else:
        ctx = mp.get_context("fork") if hasattr(os, "fork") else mp.get_context()
        with ctx.Pool(workers) as pool:
            for res in pool.imap(fn, jobs, chunksize=1):
                yield res
                bar.update()
    bar.close()


class _Writer:
    """Streams patch sets to disk: ``patches.npy`` (memory-mapped) and the metadata rows
    (to a part file, split column filled in at the end). Memory beyond the memory-mapped
    output is a few bytes per patch (labels, split codes, source codes)."""

    def __init__(self, folder: Path, capacity: int) -> None:
        self.folder = folder
        self.capacity = capacity
        self.mm = np.lib.format.open_memmap(folder / "patches.npy", mode="w+", dtype=np.uint8,
                                            shape=(capacity, PATCH, PATCH))
        self.labels = np.zeros(capacity, np.uint8)
        self.splits = np.zeros(capacity, np.uint8)      # index into SPLITS
        self.sources = np.zeros(capacity, np.uint8)     # index into SOURCES
        self.n = 0
        self._part = open(folder / "meta.part", "w", newline="")  # noqa: SIM115
        self._csv = csv.writer(self._part, lineterminator="\n")

    def add(self, ps: PatchSet, split: str) -> None:
        k = len(ps)
        if self.n + k > self.capacity:
            raise RuntimeError("patch writer overflow")
        sl = slice(self.n, self.n + k)
        self.mm[sl] = ps.patches
        self.labels[sl] = ps.labels
        self.splits[sl] = SPLITS.index(split)
        self.sources[sl] = [SOURCES.index(x) for x in ps.source]
        for i in range(k):
            box = ["" if v < 0 else int(v) for v in ps.boxes[i]]
            self._csv.writerow([ps.series[i], int(ps.images[i]), int(ps.rows[i]),
                                int(ps.cols[i]), *box])
        self.n += k

    def finish(self) -> dict:
        """Flush everything; returns the counts of the manifest."""
        self.mm.flush()
        del self.mm
        self._part.close()
        if self.n != self.capacity:
            raise RuntimeError(f"expected {self.capacity} patches, wrote {self.n}")
        np.save(self.folder / "labels.npy", self.labels)
        with open(self.folder / "meta.part", newline="") as src, \
                open(self.folder / "meta.csv", "w", newline="") as dst:
            w = csv.writer(dst, lineterminator="\n")
            w.writerow(META_COLUMNS)
            for i, row in enumerate(csv.reader(src)):
                w.writerow([i, SPLITS[self.splits[i]], int(self.labels[i]),
                            SOURCES[self.sources[i]], *row])
        (self.folder / "meta.part").unlink()
        return {"split": {SPLITS[k]: int(v) for k, v in
                          sorted(Counter(self.splits.tolist()).items())},
                "label": {str(k): int(v) for k, v in sorted(Counter(self.labels.tolist()).items())},
                "source": dict(sorted((SOURCES[k], int(v)) for k, v in
                                      Counter(self.sources.tolist()).items()))}


def build_dataset(args: BuildArgs, score_fn: ScoreFn | None = None) -> dict:
    """Build a patch dataset folder (see the module docstring); returns the manifest.

    ``score_fn`` scores whole images for ``args.hard_negatives`` (required then; the CLI
    builds it from ``args.hard_model``)."""
    if args.protocol not in ("wholeimage", "table3"):
        raise InputError(f"--protocol {args.protocol!r}: expected wholeimage or table3")
    if args.split_by not in ("patch", "image"):
        raise InputError(f"--split-by {args.split_by!r}: expected patch or image")
    if not 0 <= args.val_fraction < 1:
        raise InputError(f"--val-fraction {args.val_fraction}: must be in [0, 1)")
    if args.per_image < 1:
        raise InputError(f"--per-image {args.per_image}: must be at least 1")
    if args.real < 0 or args.hard_negatives < 0 or args.real_offset < 0:
        raise InputError("--real, --real-offset and --hard-negatives must not be negative")
    if (args.real or args.hard_negatives) and args.protocol != "wholeimage":
        raise InputError("--real and --hard-negatives apply to --protocol wholeimage only")
    if args.hard_negatives and score_fn is None:
        raise InputError("--hard-negatives needs --hard-model FILE (a trained xdefect model)")
    mix = parse_mix(args.mix)
    out = Path(args.out)
    if out.exists() and not args.force:
        raise InputError(f"{out}: output folder exists (use --force to replace it)")
    gdxray.castings_dir(args.gdxray)
    gan_src = _gan_source(args, mix)
    with atomic_dir(out, force=args.force) as tmp:
        if args.protocol == "wholeimage":
            manifest = _build_wholeimage(args, mix, tmp, gan_src, score_fn)
        else:
            manifest = _build_table3(args, mix, tmp, gan_src)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _manifest(args: BuildArgs, mix: Mix, counts: dict, recs: list[gdxray.ImageRecord],
              extra: dict) -> dict:
    a = asdict(args)
    for k in ("force", "workers", "command"):
        a.pop(k, None)
    a["gdxray"] = str(args.gdxray)
    a["out"] = str(args.out)
    if args.gan and mix.gan:
        g, gcard = _generator_card(args)
        extra = {**extra, "gan_generator_sha256": sha256_file(g),
                 "gan_image_splits": gcard["image_splits"], "gan_series": gcard.get("series")}
    if args.hard_negatives and args.hard_model:
        hm = Path(args.hard_model)
        extra = {**extra, "hard_model_sha256": sha256_file(hm),
                 "hard_model_card_sha256": sha256_file(hm.with_suffix(".json"))
                 if hm.with_suffix(".json").is_file() else None}
    if args.protocol == "wholeimage":
        splits: dict = {"image_splits": image_splits(args)}
    else:
        splits = {"image_splits": ["all"],
                  "image_splits_note": "table3 is a series split: every image of the training "
                                       "series, real patches of C0001 for the test split"}
    return {
        "format": "xdefect-patches/1",
        "protocol": args.protocol,
        "command": args.command if args.command is not None else command_line(),
        "gdxray_root": str(args.gdxray),
        "series": sorted({r.series for r in recs}),
        **splits,
        "mix": mix.name,
        "seed": args.seed,
        "patch_size": PATCH,
        "arguments": a,
        "xdefect_version": __version__,
        "n": int(sum(counts["label"].values())),
        "counts": counts,
        "simulator": {k: (list(v) if isinstance(v, tuple) else v)
                      for k, v in asdict(_sampler(args)).items() if k != "geometry"}
        | {"mm_per_px": _sampler(args).geometry.mm_per_px},
        "source_images": [{"series": r.series, "image": r.number, "file": r.path.name,
                           "sha256": sha256_file(r.path)} for r in recs],
        **extra,
    }


def _adaptation_sets(args: BuildArgs, score_fn: ScoreFn | None) -> tuple[list[PatchSet], dict]:
    """Real 'defect' patches (``args.real``) and hard 'no-defect' patches
    (``args.hard_negatives``) from the build's source images (:func:`source_images`: the
    train images, plus the tuning images with ``include_tuning``); returns the patch sets
    and a manifest summary."""
    from xdefect.io import read_image

    if not (args.real or args.hard_negatives):
        return [], {}
    recs = source_images(args)
    series = sorted({r.series for r in recs})
    gts = {s: gdxray.load_ground_truth(args.gdxray, s) for s in series}
    rng = np.random.default_rng(np.random.SeedSequence([args.seed, 21]))
    sets: list[PatchSet] = []
    info: dict = {"images": [f"{r.series}/{r.path.name}" for r in recs]}
    if args.real:
        cands = []
        for r in recs:
            b = gts[r.series].boxes_of(r.number)
            if len(b):
                shape = gdxray.image_shape(r.path)
                cands.extend((r, rr, cc, b[k]) for rr, cc, k in
                             centred_real_positions(b, shape, args.real_offset))
        if not cands:
            raise InputError(f"--real {args.real}: the {' and '.join(image_splits(args))} "
                             f"images of {', '.join(series)} hold no real defects")
        pick = np.sort(rng.choice(len(cands), args.real, replace=len(cands) < args.real))
        sets.append(_real_set(cands, pick))
        info["real_windows"] = len(cands)
        info["real_boxes"] = int(sum(len(gts[r.series].boxes_of(r.number)) for r in recs))
    if args.hard_negatives:
        assert score_fn is not None
        per = -(-args.hard_negatives // len(recs))
        found = n_hard = 0
        for r in progress(iterable=recs, desc="hard negatives", unit="image"):
            img = read_image(r.path).pixels
            values, stride = score_fn(img)
            sel = hard_negative_positions(values, stride, gdxray.casting_mask(img),
                                          gts[r.series].boxes_of(r.number), per, args.margin)
            k = len(sel)
            found += int((values[sel[:, 0] // stride, sel[:, 1] // stride] > 0).sum())
            n_hard += k
            if k == 0:
                continue
            img8 = to_uint8(img)
            pr, pc = sel[:, 0].astype(np.int32), sel[:, 1].astype(np.int32)
            sets.append(PatchSet([r.series] * k, np.full(k, r.number, np.int32),
                                 cut(img8, pr, pc), np.zeros(k, np.uint8), ["hard"] * k,
                                 pr, pc, np.full((k, 4), -1, np.int32)))
        info["hard_scored_defect"] = found  # of the chosen windows, those with y1 - y0 > 0
        info["hard_negatives"] = n_hard
    return sets, info


def _build_wholeimage(args: BuildArgs, mix: Mix, tmp: Path, gan_src: GanSource | None,
                      score_fn: ScoreFn | None = None) -> dict:
    jobs, recs = plan_wholeimage(args, mix)
    extra_sets, extra_info = _adaptation_sets(args, score_fn)
    n_gan_per = args.per_image - jobs[0].n_ellipsoid
    total = (sum(j.n_background + j.n_ellipsoid for j in jobs) + n_gan_per * len(jobs)
             + sum(len(x) for x in extra_sets))
    writer = _Writer(tmp, total)
    groups = []

    def add(ps: PatchSet) -> None:
        writer.add(ps, "train")
        if args.split_by == "image":
            groups.append(ps.images + 10000 * np.asarray([int(x[1:]) for x in ps.series],
                                                         np.int32))

    for ps in _map(run_image_job, jobs, args.workers, f"wholeimage {mix.name}"):
        if n_gan_per:
            assert gan_src is not None
            key = (args.seed, 11, int(ps.series[0][1:]), int(ps.images[0]))
            ps = _concat(ps, gan_set(gan_src, n_gan_per, ps.series[0], int(ps.images[0]), key))
        add(ps)
    for ps in extra_sets:
        add(ps)
    rng = np.random.default_rng(np.random.SeedSequence([args.seed, 7]))
    writer.splits[:] = _split(writer.labels, np.concatenate(groups)
                              if args.split_by == "image" else None, args.val_fraction, rng)
    return _manifest(args, mix, writer.finish(), recs,
                     {"adaptation": extra_info} if extra_info else {})


def _build_table3(args: BuildArgs, mix: Mix, tmp: Path, gan_src: GanSource | None) -> dict:
    train_series = [s for s in (args.series or TABLE3_TRAIN_SERIES)]
    gdxray.check_series(args.gdxray, list(train_series) + list(TABLE3_TEST_SERIES))
    recs_train = gdxray.list_images(args.gdxray, train_series)
    recs_test = gdxray.list_images(args.gdxray, TABLE3_TEST_SERIES)
    if args.limit_images:
        recs_train, recs_test = recs_train[: args.limit_images], recs_test[: args.limit_images]
    rng = np.random.default_rng(np.random.SeedSequence([args.seed, 3]))
    notes: list[str] = []

    def real_candidates(recs):
        cands = []
        gts = {}
        for r in recs:
            gts.setdefault(r.series, gdxray.load_ground_truth(args.gdxray, r.series))
            b = gts[r.series].boxes_of(r.number)
            if len(b):
                shape = gdxray.image_shape(r.path)
                cands.extend((r, rr, cc, b[k]) for rr, cc, k in real_positions(b, shape))
        return cands, gts

    # ---- training: real + simulated defects, no-defect patches spread over images
    cands, gts = real_candidates(recs_train)
    n_real = min(args.t3_real, args.t3_defects)
    if not cands and n_real:
        notes.append(f"training: no real defect windows in {', '.join(train_series)}: "
                     f"all {args.t3_defects} defects simulated")
    elif len(cands) < n_real:
        notes.append(f"training: only {len(cands)} distinct real defect windows for "
                     f"{n_real} asked: repeats used")
    pick_real = (rng.choice(len(cands), n_real, replace=len(cands) < n_real)
                 if cands and n_real else np.zeros(0, int))
    n_sim_all = args.t3_defects - len(pick_real)
    n_gan = int(round(n_sim_all * mix.gan / 100))
    n_sim = n_sim_all - n_gan  # ellipsoidal
    per = -(-n_sim // len(recs_train)) if n_sim else 0
    per_bg = -(-args.t3_no_defects // len(recs_train))
    jobs = [ImageJob(str(r.path), r.series, r.number, gts[r.series].boxes_of(r.number),
                     per_bg, per, (args.seed, 3, int(r.series[1:]), r.number),
                     _sampler(args), args.margin, args.max_offset, args.min_inside)
            for r in recs_train]
    n_test = args.t3_test_defects + args.t3_test_no_defects
    sets = list(_map(run_image_job, jobs, args.workers, "table3 train"))
    # trim to the exact counts, in a seeded way
    bg_all = [(i, j) for i, ps in enumerate(sets) for j in range(len(ps)) if ps.labels[j] == 0]
    el_all = [(i, j) for i, ps in enumerate(sets) for j in range(len(ps)) if ps.labels[j] == 1]
    keep_bg = set(map(tuple, np.asarray(bg_all)[np.sort(rng.choice(len(bg_all),
                                                                    args.t3_no_defects,
                                                                    replace=False))].tolist()))
    keep_el = set(map(tuple, np.asarray(el_all)[np.sort(rng.choice(len(el_all), n_sim,
                                                                    replace=False))].tolist())
                  ) if n_sim else set()
    total = args.t3_no_defects + args.t3_defects + n_test
    writer = _Writer(tmp, total)
    for i, ps in enumerate(sets):
        sel = [j for j in range(len(ps)) if (i, j) in keep_bg or (i, j) in keep_el]
        writer.add(_subset(ps, sel), "train")
    writer.add(_real_set(cands, pick_real), "train")
    if n_gan:
        assert gan_src is not None
        writer.add(gan_set(gan_src, n_gan, "gan", 0, (args.seed, 12)), "train")
    # ---- testing: real defects and no-defect patches of C0001, all images
    tcands, tgts = real_candidates(recs_test)
    if len(tcands) < args.t3_test_defects:
        notes.append(f"test: only {len(tcands)} distinct real defect windows for "
                     f"{args.t3_test_defects} asked: repeats used")
    tpick = rng.choice(len(tcands), args.t3_test_defects,
                       replace=len(tcands) < args.t3_test_defects)
    writer.add(_real_set(tcands, np.sort(tpick)), "test")
    per_t = -(-args.t3_test_no_defects // len(recs_test))
    tjobs = [ImageJob(str(r.path), r.series, r.number, tgts[r.series].boxes_of(r.number),
                      per_t, 0, (args.seed, 4, int(r.series[1:]), r.number),
                      _sampler(args), args.margin) for r in recs_test]
    tsets = list(_map(run_image_job, tjobs, args.workers, "table3 test"))
    flat = [(i, j) for i, ps in enumerate(tsets) for j in range(len(ps))]
    keep = set(map(tuple, np.asarray(flat)[np.sort(rng.choice(len(flat),
                                                              args.t3_test_no_defects,
                                                              replace=False))].tolist()))
    for i, ps in enumerate(tsets):
        writer.add(_subset(ps, [j for j in range(len(ps)) if (i, j) in keep]), "test")
    counts = writer.finish()
    recs = sorted(set(recs_train) | set(recs_test))
    extra = {"table3": {"train_series": list(train_series), "test_series":
                        list(TABLE3_TEST_SERIES), "real_train_windows": len(cands),
                        "real_test_windows": len(tcands), "notes": notes}}
    return _manifest(args, mix, counts, recs, extra)


def _subset(ps: PatchSet, idx: list[int]) -> PatchSet:
    ix = np.asarray(idx, dtype=np.int64)
    return PatchSet([ps.series[i] for i in ix], ps.images[ix], ps.patches[ix], ps.labels[ix],
                    [ps.source[i] for i in ix], ps.rows[ix], ps.cols[ix], ps.boxes[ix])


def _real_set(cands: list, pick: np.ndarray) -> PatchSet:
    """'real' defect patches for the chosen candidate windows (may span many images)."""
    from xdefect.io import read_image

    if len(pick) == 0:
        return PatchSet.empty()
    by_image: dict = {}
    for k in pick:
        by_image.setdefault(cands[k][0], []).append(k)
    patches, rows, cols, boxes, series, images = [], [], [], [], [], []
    for rec in sorted(by_image):
        img8 = to_uint8(read_image(rec.path).pixels)
        for k in by_image[rec]:
            _, r, c, b = cands[k]
            patches.append(img8[r:r + PATCH, c:c + PATCH])
            rows.append(r)
            cols.append(c)
            bx = np.clip(np.asarray(b) - [c, r, c, r], 0, PATCH).astype(np.int32)
            boxes.append(bx)
            series.append(rec.series)
            images.append(rec.number)
    n = len(patches)
    return PatchSet(series, np.asarray(images, np.int32), np.stack(patches),
                    np.ones(n, np.uint8), ["real"] * n, np.asarray(rows, np.int32),
                    np.asarray(cols, np.int32), np.stack(boxes))


# ------------------------------------------------------------------------------ reading


@dataclass
class Dataset:
    """A dataset folder opened for reading; ``patches`` is memory-mapped."""

    folder: Path
    patches: np.ndarray
    labels: np.ndarray
    split: np.ndarray
    source: np.ndarray
    manifest: dict

    def indices(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.split == split)


def open_dataset(folder: str | os.PathLike[str]) -> Dataset:
    """Open a dataset folder written by :func:`build_dataset` (checks its files)."""
    f = Path(folder)
    if not f.is_dir():
        raise InputError(f"{f}: no such dataset folder")
    for name in ("patches.npy", "labels.npy", "meta.csv", "manifest.json"):
        if not (f / name).is_file():
            raise InputError(f"{f}: not an xdefect dataset (missing {name})")
    try:
        patches = np.load(f / "patches.npy", mmap_mode="r", allow_pickle=False)
        labels = np.load(f / "labels.npy", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise InputError(f"{f}: unreadable patches.npy/labels.npy ({exc})") from None
    if patches.dtype != np.uint8 or patches.ndim != 3 or patches.shape[1:] != (PATCH, PATCH):
        raise InputError(f"{f / 'patches.npy'}: expected uint8 (N, 32, 32), "
                         f"got {patches.dtype} {patches.shape}")
    if labels.shape != (len(patches),):
        raise InputError(f"{f / 'labels.npy'}: {labels.shape[0]} labels for "
                         f"{len(patches)} patches")
    with open(f / "meta.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows or tuple(rows[0][:8]) != META_COLUMNS[:8] or len(rows) - 1 != len(patches):
        raise InputError(f"{f / 'meta.csv'}: malformed (expected header "
                         f"{','.join(META_COLUMNS[:8])}... and one row per patch)")
    split = np.asarray([r[1] for r in rows[1:]])
    source = np.asarray([r[3] for r in rows[1:]])
    return Dataset(f, patches, labels, split, source, read_json(f / "manifest.json"))
