"""Builders of 32x32 patch datasets for the paper's two protocols.

Patch selection works on arrays (one image, its casting mask, its real boxes) and returns
:class:`~xdefect.dataset.PatchSet` records; :func:`build_patches` drives it over GDXray
and writes a dataset folder (``xdefect.build_dataset`` is the same with its GAN and
hard-negative sources opened from paths). Coordinates: a patch is identified by the
0-based ``(row, col)`` of its top-left pixel and covers ``image[row:row + 32, col:col +
32]``; boxes are xdefect's ``(x1, y1, x2, y2)``, 0-based, half-open.

The folder format is :mod:`xdefect.dataset`'s contract (``PatchSet``, ``PatchWriter``,
``open_dataset``); this module holds the builders only. The folder is written under a
temporary name and renamed when complete; the same arguments and seed give
byte-identical files (every random draw comes from a stream of :mod:`xdefect.seeds`).

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

import json
import multiprocessing as mp
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from xdefect import __version__, gdxray, seeds
from xdefect import simulate as S
from xdefect.dataset import FORMAT, PatchSet, PatchWriter
from xdefect.errors import InputError
from xdefect.io import (
    atomic_dir,
    check_new_dir,
    command_line,
    progress,
    read_image,
    read_json,
    sha256_file,
    to_uint,
)
from xdefect.windows import (
    PATCH,
    background_positions,
    centred_real_positions,
    cut,
    cut_context,
    defect_centre_mask,
    hard_negative_positions,
    real_positions,
)

__all__ = ["TABLE3_TEST_SERIES", "TABLE3_TRAIN_SERIES", "UNCHANGED_DRAWS", "BuildArgs",
           "GanSource", "ImageJob", "Mix", "ScoreFn", "build_patches", "check_generator",
           "ellipsoid_patches", "gan_set", "generator_file",
           "image_group", "image_splits", "parse_mix", "plan_wholeimage", "run_image_job",
           "source_images", "split_codes"]

TABLE3_TRAIN_SERIES = ("C0010", "C0015", "C0021", "C0031", "C0034", "C0061")
TABLE3_TEST_SERIES = ("C0001",)
#: draws of a simulated defect before an image whose patches it never changes is refused
UNCHANGED_DRAWS = 100

#: ``source(n, rng)`` -> uint8 ``(n, 32, 32)`` generated 'defect' patches (a GAN)
GanSource = Callable[[int, np.random.Generator], np.ndarray]
#: ``score_fn(image)`` -> ``(values, stride)``: the score map ``y1 - y0`` of a float
#: ``[0, 1]`` image on a window grid of the given stride (what hard negatives are mined from)
ScoreFn = Callable[[np.ndarray], tuple[np.ndarray, int]]


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


def _sample_shadow(sampler: S.DefectSampler, shape: tuple[int, int], geo: S.Geometry,
                   rng: np.random.Generator) -> tuple[S.Ellipsoid, np.ndarray, tuple, int]:
    """An ellipsoid whose shadow (pixels with path length ``d > 0``) is not empty: the
    ellipsoid, its shadow, the shadow's window ``(r0, r1, c0, c1)`` and pixel count."""
    while True:
        ell = sampler.sample(rng)
        d, win = S.path_length(shape, ell, geo)
        hit = d > 0
        total = int(hit.sum())
        if total:
            return ell, hit, win, total


def ellipsoid_patches(image: np.ndarray, centre_mask: np.ndarray, n: int,
                      rng: np.random.Generator, config: S.SamplerConfig,
                      max_offset: int = 8, min_inside: float = 0.5
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``n`` 32x32 patches, each with one simulated ellipsoidal defect.

    ``image``: float [0, 1] ``(H, W)``. Returns ``(patches uint8 (n, 32, 32), rows, cols,
    boxes)`` with ``boxes`` the defect's box inside its patch (0-based half-open).
    """
    return _place_ellipsoids(image, centre_mask, n, rng, config, max_offset, min_inside)[:4]


def _defect_window(ell: S.Ellipsoid, hit: np.ndarray, r0: int, c0: int, total: int,
                   shape: tuple[int, int], rng: np.random.Generator, max_offset: int,
                   min_inside: float) -> tuple[int, int]:
    """Top-left ``(row, col)`` of the window cut around a defect: its centre moved by up
    to ``max_offset`` px per axis, so that at least ``min_inside`` of the shadow's
    ``total`` pixels (``hit``, whose window starts at ``(r0, c0)``) fall inside (19
    tries, then centred)."""
    h, w = shape
    half = PATCH // 2
    cr, cc = int(round(ell.center[0])), int(round(ell.center[1]))
    for attempt in range(20):
        off = rng.integers(-max_offset, max_offset + 1, size=2) if attempt < 19 else (0, 0)
        pr = int(np.clip(cr - half + off[0], 0, h - PATCH))
        pc = int(np.clip(cc - half + off[1], 0, w - PATCH))
        inside = hit[max(pr - r0, 0):max(pr + PATCH - r0, 0),
                     max(pc - c0, 0):max(pc + PATCH - c0, 0)].sum()
        if inside >= min_inside * total:
            break
    return pr, pc


def _place_ellipsoids(image: np.ndarray, centre_mask: np.ndarray, n: int,
                      rng: np.random.Generator, config: S.SamplerConfig, max_offset: int,
                      min_inside: float, context: int = 0, image_name: str = "image"
                      ) -> tuple:
    """:func:`ellipsoid_patches` plus, with ``context`` M > 0, each patch with M pixels
    of surroundings (the defect superimposed on the whole of it; mid-grey beyond the
    image), else None.

    A defect that changes no pixel of its 8-bit 32x32 patch (a saturated or clipped
    region) is drawn again, up to ``UNCHANGED_DRAWS`` times, then the image is refused
    (:class:`InputError` naming ``image_name``): no uniform "defect" patch is stored."""
    h, w = image.shape
    sampler = S.DefectSampler(centre_mask, config)
    geo = config.geometry
    out = np.empty((n, PATCH, PATCH), np.uint8)
    side = PATCH + 2 * context
    ctx = np.empty((n, side, side), np.uint8) if context else None
    padded = np.pad(image, context, constant_values=128 / 255) if context else image
    rows = np.empty(n, np.int32)
    cols = np.empty(n, np.int32)
    boxes = np.full((n, 4), -1, np.int32)
    for i in range(n):
        for _draw in range(UNCHANGED_DRAWS):
            ell, hit, (r0, _, c0, _), total = _sample_shadow(sampler, (h, w), geo, rng)
            pr, pc = _defect_window(ell, hit, r0, c0, total, (h, w), rng, max_offset,
                                    min_inside)
            crop = padded[pr:pr + side, pc:pc + side]  # padded coordinates: pr + M - M
            local = replace(ell, center=(ell.center[0] - pr + context,
                                         ell.center[1] - pc + context))
            res = S.superimpose(crop, local, geo, x_max=config.x_max, blur_px=config.blur_px)
            q = to_uint(res.image, 8)
            inner = (slice(context, context + PATCH),) * 2
            if not np.array_equal(q[inner], to_uint(crop[inner], 8)):
                break  # a "defect" patch must differ from the radiograph it was cut from
        else:
            raise InputError(f"{image_name}: none of {UNCHANGED_DRAWS} simulated defects "
                             "changed a pixel of its 8-bit patch (the casting looks saturated; "
                             "check the image and its bit depth)")
        if ctx is not None:
            ctx[i] = q
        out[i] = q[inner]
        rows[i], cols[i] = pr, pc
        if res.box is not None:
            boxes[i] = np.clip(np.asarray(res.box) - context, 0, PATCH)
    return out, rows, cols, boxes, ctx


# ----------------------------------------------------------------------- whole-image jobs


@dataclass(frozen=True)
class ImageJob:
    """Work for one image (picklable, for worker processes): ``n_background`` no-defect
    and ``n_ellipsoid`` simulated-defect patches, drawn from the stream of key ``seed``
    (:func:`xdefect.seeds.key`)."""

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
    context: int = 0


def run_image_job(job: ImageJob) -> PatchSet:
    """Cut the 'no-defect' and ellipsoidal 'defect' patches of one image."""
    rng = seeds.generator(job.seed)
    img = read_image(job.path).pixels
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
    img8 = to_uint(img, 8)
    bg = cut(img8, br, bc)
    cm = defect_centre_mask(mask, job.boxes, job.margin)
    if job.n_ellipsoid and not cm.any():
        raise InputError(f"{job.path}: no room in the casting for simulated defects away "
                         "from the real ones")
    side = PATCH + 2 * job.context
    ep, er, ec, eb, ectx = (_place_ellipsoids(img, cm, job.n_ellipsoid, rng, job.config,
                                              job.max_offset, job.min_inside, job.context,
                                              job.path)
                            if job.n_ellipsoid else
                            (np.zeros((0, PATCH, PATCH), np.uint8), np.zeros(0, np.int32),
                             np.zeros(0, np.int32), np.zeros((0, 4), np.int32),
                             np.zeros((0, side, side), np.uint8)))
    n_b, n_e = len(bg), len(ep)
    context = (np.concatenate([cut_context(img8, br, bc, job.context), ectx])
               if job.context else None)
    return PatchSet(
        [job.series] * (n_b + n_e), np.full(n_b + n_e, job.number, np.int32),
        np.concatenate([bg, ep]),
        np.concatenate([np.zeros(n_b, np.uint8), np.ones(n_e, np.uint8)]),
        ["background"] * n_b + ["ellipsoid"] * n_e,
        np.concatenate([br, er]), np.concatenate([bc, ec]),
        np.concatenate([np.full((n_b, 4), -1, np.int32), eb]), context)


# ------------------------------------------------------------------------------ builder


@dataclass
class BuildArgs:
    """Arguments of a build (recorded in the manifest); each field is the option of
    ``xdefect dataset build`` of the same name (``mu_range``: ``--mu``)."""

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
    defect_blur: float = 0.0
    mu_log: bool = False
    x_max: float = S.DEFAULT_X_MAX
    #: each simulated defect's own x_max drawn log-uniformly in this range (mm)
    x_max_range: tuple[float, float] | None = None
    real: int = 0
    real_offset: int = 8
    hard_negatives: int = 0
    hard_model: str | None = None
    hard_mode: str = "dense"
    hard_stride: int = 4
    #: beside each hard negative, the same spot with a simulated defect ('hard-defect')
    hard_pairs: bool = False
    workers: int = 0
    force: bool = False
    limit_images: int | None = None
    include_tuning: bool = False
    command: str | None = None
    context: int = 0
    #: cut from every image of the series, test images included: for a folder without a
    #: train/test split (``xdefect adapt`` stages a new casting's images so)
    all_images: bool = False

    def validate(self) -> Mix:
        """Check the arguments (one :class:`InputError` naming the option); returns the
        parsed mix."""
        if self.protocol not in ("wholeimage", "table3"):
            raise InputError(f"--protocol {self.protocol!r}: expected wholeimage or table3")
        if self.split_by not in ("patch", "image"):
            raise InputError(f"--split-by {self.split_by!r}: expected patch or image")
        if not 0 <= self.val_fraction < 1:
            raise InputError(f"--val-fraction {self.val_fraction}: must be in [0, 1)")
        if self.per_image < 1:
            raise InputError(f"--per-image {self.per_image}: must be at least 1")
        if self.real < 0 or self.hard_negatives < 0 or self.real_offset < 0:
            raise InputError("--real, --real-offset and --hard-negatives must not be negative")
        if (self.real or self.hard_negatives) and self.protocol != "wholeimage":
            raise InputError("--real and --hard-negatives apply to --protocol wholeimage only")
        if self.hard_pairs and not self.hard_negatives:
            raise InputError("--hard-pairs pairs the hard negatives: give --hard-negatives N")
        if self.x_max_range is not None:
            lo, hi = self.x_max_range
            if not (np.isfinite(lo) and np.isfinite(hi) and 0 < lo <= hi):
                raise InputError(f"--x-max-range {lo:g} {hi:g}: need 0 < LOW <= HIGH (mm)")
        mix = parse_mix(self.mix)
        if self.context:
            if self.context < 0 or self.context % 32:
                raise InputError(f"--context {self.context}: must be a multiple of 32 pixels")
            if self.protocol != "wholeimage" or mix.gan:
                raise InputError("--context applies to --protocol wholeimage without a GAN "
                                 "portion (generated patches have no surroundings)")
        return mix

    def sampler(self) -> S.SamplerConfig:
        """The ellipsoid sampler of the build (:mod:`xdefect.simulate`'s defaults unless
        the arguments set the ranges)."""
        return S.SamplerConfig(axes_mm=tuple(self.axes_mm), mu_range=tuple(self.mu_range),
                               x_max=self.x_max, blur_px=self.defect_blur, mu_log=self.mu_log,
                               x_max_range=(None if self.x_max_range is None
                                            else tuple(self.x_max_range)))


def generator_file(gan: str | os.PathLike[str]) -> tuple[Path, dict]:
    """The generator file of a GAN folder (or its ``generator.safetensors``) and its card,
    with ``image_splits`` filled in for generators made before the card recorded them
    (those learnt from every odd image)."""
    g = Path(gan)
    g = g / "generator.safetensors" if g.is_dir() else g
    card = read_json(g.with_suffix(".json"))
    return g, {**card, "image_splits": card.get("image_splits", ["train", "tuning"])}


def check_generator(args: BuildArgs, mix: Mix) -> None:
    """Refuse a GAN portion without a generator, and a generator that learnt from real
    defects of images the build may not use (it would carry them into training data)."""
    if mix.gan == 0:
        return
    if not args.gan:
        raise InputError(f"--mix {mix.name}: a GAN portion needs --gan GANDIR "
                         "(a trained generator from `xdefect gan train`)")
    used = generator_file(args.gan)[1]["image_splits"]
    allowed = set(image_splits(args)) if args.protocol == "wholeimage" else {"train", "tuning"}
    if not set(used) <= allowed:
        raise InputError(f"{args.gan}: this generator learnt from the {' and '.join(used)} "
                         "images; retrain it on the train images (`xdefect gan train`) or "
                         "build with --include-tuning")


def gan_set(src: GanSource, n: int, series: str, image: int, seed: tuple[int, ...]
            ) -> PatchSet:
    """``n`` GAN 'defect' patches filling an image's quota: source ``gan``, provenance the
    image whose quota they fill, ``row = col = -1`` (not cut from it)."""
    rng = seeds.generator(seed)
    return PatchSet.uncut(series, image, src(n, rng), 1, "gan")


def image_group(series: list[str], images: np.ndarray) -> np.ndarray:
    """One integer per patch naming its image across series (``split_by="image"``): the
    series number times 10,000 plus the image number (GDXray numbers images below 10,000
    in a series)."""
    return np.asarray(images) + 10000 * np.asarray([int(s[1:]) for s in series], np.int32)


def split_codes(labels: np.ndarray, groups: np.ndarray | None, val_fraction: float,
                rng: np.random.Generator) -> np.ndarray:
    """Train/val split codes (0 train, 1 val). Without ``groups``: ``val_fraction`` of each
    label at random (stratified). With ``groups`` (one id per image): a random
    ``val_fraction`` of the images goes wholly to val."""
    split = np.zeros(len(labels), np.uint8)
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
    """The image splits a 'wholeimage' build cuts patches from: ``["train"]``,
    ``["train", "tuning"]`` with ``include_tuning``, all three with ``all_images``."""
    if args.all_images:
        return ["train", "tuning", "test"]
    return ["train", "tuning"] if args.include_tuning else ["train"]


def source_images(args: BuildArgs) -> list[gdxray.ImageRecord]:
    """The images every source of a 'wholeimage' build is cut from: the train images
    (and the tuning images with ``include_tuning``) of the build's series (default: the
    paper's), never a test image unless ``all_images`` says so."""
    series = gdxray.protocol_series(args.gdxray, args.series)
    split = "all" if args.all_images else "odd" if args.include_tuning else "train"
    recs = gdxray.list_images(args.gdxray, series, split)
    if args.limit_images:
        recs = recs[: args.limit_images]
    if not recs:
        raise InputError(f"{args.gdxray}: no {' or '.join(image_splits(args))} images "
                         f"in {', '.join(series)}")
    assert all(r.image_split in image_splits(args) for r in recs)
    return recs


def _ground_truths(root: str, recs: Iterable[gdxray.ImageRecord]
                   ) -> dict[str, gdxray.SeriesGroundTruth]:
    return {s: gdxray.load_ground_truth(root, s) for s in sorted({r.series for r in recs})}


def plan_wholeimage(args: BuildArgs, mix: Mix) -> tuple[list[ImageJob], list[gdxray.ImageRecord]]:
    """The per-image jobs of a 'wholeimage' build and the images they cover."""
    recs = source_images(args)
    gts = _ground_truths(args.gdxray, recs)
    n_e = int(round(args.per_image * mix.ellipsoid / 100))
    jobs = [ImageJob(str(r.path), r.series, r.number, gts[r.series].boxes_of(r.number),
                     args.per_image, n_e,
                     seeds.key(args.seed, seeds.IMAGE_JOB, int(r.series[1:]), r.number),
                     args.sampler(), args.margin, args.max_offset, args.min_inside,
                     args.context)
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


def build_patches(args: BuildArgs, score_fn: ScoreFn | None = None,
                  gan_source: GanSource | None = None) -> dict:
    """Build a patch dataset folder (rules in the module docstring, format in
    :mod:`xdefect.dataset`); returns the manifest.

    The caller opens the sources that live in other stages' files: ``gan_source`` draws
    the GAN portion of ``args.mix`` (from ``args.gan``), ``score_fn`` scores whole images
    for ``args.hard_negatives`` (from ``args.hard_model``); ``xdefect.build_dataset`` does
    both from the paths."""
    mix = args.validate()
    if args.hard_negatives and score_fn is None:
        raise InputError("--hard-negatives needs --hard-model FILE (a trained xdefect model)")
    check_generator(args, mix)
    if mix.gan and gan_source is None:
        raise InputError(f"--mix {mix.name}: no GAN source given for the GAN portion")
    check_new_dir(args.out, args.force)
    gdxray.castings_dir(args.gdxray)
    with atomic_dir(args.out, force=args.force) as tmp:
        if args.protocol == "wholeimage":
            manifest = _build_wholeimage(args, mix, tmp, gan_source, score_fn)
        else:
            manifest = _build_table3(args, mix, tmp, gan_source)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _source_checksums(args: BuildArgs, mix: Mix) -> dict:
    """Checksums (and the generator's training images) of the files a build drew from."""
    extra: dict = {}
    if args.gan and mix.gan:
        g, gcard = generator_file(args.gan)
        extra |= {"gan_generator_sha256": sha256_file(g),
                  "gan_image_splits": gcard["image_splits"], "gan_series": gcard.get("series")}
    if args.hard_negatives and args.hard_model:
        hm = Path(args.hard_model)
        card = hm.with_suffix(".json")
        extra |= {"hard_model_sha256": sha256_file(hm),
                  "hard_model_card_sha256": sha256_file(card) if card.is_file() else None}
    return extra


def _manifest(args: BuildArgs, mix: Mix, counts: dict, recs: list[gdxray.ImageRecord],
              extra: dict) -> dict:
    a = asdict(args)
    for k in ("force", "workers", "command"):
        a.pop(k, None)
    a["gdxray"] = str(args.gdxray)
    a["out"] = str(args.out)
    if args.protocol == "wholeimage":
        splits: dict = {"image_splits": image_splits(args)}
    else:
        splits = {"image_splits": ["all"],
                  "image_splits_note": "table3 is a series split: every image of the training "
                                       "series, real patches of C0001 for the test split"}
    sampler = args.sampler()
    return {
        "format": FORMAT,
        "protocol": args.protocol,
        "command": args.command if args.command is not None else command_line(),
        "gdxray_root": str(args.gdxray),
        "series": sorted({r.series for r in recs}),
        **splits,
        "mix": mix.name,
        "seed": args.seed,
        "patch_size": PATCH,
        "context": args.context,
        "arguments": a,
        "xdefect_version": __version__,
        "n": int(sum(counts["label"].values())),
        "counts": counts,
        "simulator": {k: (list(v) if isinstance(v, tuple) else v)
                      for k, v in asdict(sampler).items() if k != "geometry"}
        | {"mm_per_px": sampler.geometry.mm_per_px},
        "source_images": [{"series": r.series, "image": r.number, "file": r.path.name,
                           "sha256": sha256_file(r.path)} for r in recs],
        **extra, **_source_checksums(args, mix),
    }


def _centred_real_set(args: BuildArgs, recs: list[gdxray.ImageRecord],
                      gts: dict[str, gdxray.SeriesGroundTruth], rng: np.random.Generator
                      ) -> tuple[PatchSet, dict]:
    """``args.real`` 'real' defect patches centred on the boxes of ``recs``."""
    cands = []
    for r in recs:
        b = gts[r.series].boxes_of(r.number)
        if len(b):
            shape = gdxray.image_shape(r.path)
            cands.extend((r, rr, cc, b[k]) for rr, cc, k in
                         centred_real_positions(b, shape, args.real_offset))
    if not cands:
        raise InputError(f"--real {args.real}: the {' and '.join(image_splits(args))} "
                         f"images of {', '.join(gts)} hold no real defects")
    pick = np.sort(rng.choice(len(cands), args.real, replace=len(cands) < args.real))
    info = {"real_windows": len(cands),
            "real_boxes": int(sum(len(gts[r.series].boxes_of(r.number)) for r in recs))}
    return _real_set(cands, pick, args.context), info


def _hard_sets(args: BuildArgs, recs: list[gdxray.ImageRecord],
               gts: dict[str, gdxray.SeriesGroundTruth], score_fn: ScoreFn
               ) -> tuple[list[PatchSet], dict]:
    """About ``args.hard_negatives`` 'hard' no-defect patches, the same number per image:
    the windows ``score_fn`` finds most defect-like away from every real box."""
    per = -(-args.hard_negatives // len(recs))
    sets, found, n_hard = [], 0, 0
    for r in progress(iterable=recs, desc="hard negatives", unit="image"):
        img = read_image(r.path).pixels
        values, stride = score_fn(img)
        sel = hard_negative_positions(values, stride, gdxray.casting_mask(img),
                                      gts[r.series].boxes_of(r.number), per, args.margin)
        k = len(sel)
        found += int((values[sel[:, 0] // stride, sel[:, 1] // stride] > 0).sum())
        n_hard += k
        if k:
            pr, pc = sel[:, 0].astype(np.int32), sel[:, 1].astype(np.int32)
            img8 = to_uint(img, 8)
            sets.append(PatchSet([r.series] * k, np.full(k, r.number, np.int32),
                                 cut(img8, pr, pc), np.zeros(k, np.uint8),
                                 ["hard"] * k, pr, pc, np.full((k, 4), -1, np.int32),
                                 cut_context(img8, pr, pc, args.context)
                                 if args.context else None))
            if args.hard_pairs:
                sets.append(_paired_defects(args, r, img, pr, pc))
    # of the chosen windows, those the model scored 'defect' (y1 - y0 > 0)
    return sets, {"hard_scored_defect": found, "hard_negatives": n_hard}


def _paired_defects(args: BuildArgs, rec: gdxray.ImageRecord, img: np.ndarray,
                    rows: np.ndarray, cols: np.ndarray) -> PatchSet:
    """One simulated-defect patch (label 1, source ``hard-defect``) per hard negative at
    ``(rows, cols)``: a defect centred within 2 px of that window's centre, the window
    moved by at most 4 px. Paired with the clean window, it teaches what a void adds to
    the very structure the model fired on, not that the structure's place is clean."""
    rng = seeds.stream(args.seed, seeds.HARD_PAIRS, int(rec.series[1:]), rec.number)
    cfg, half = args.sampler(), PATCH // 2
    parts = []
    for r0, c0 in zip(rows.tolist(), cols.tolist(), strict=True):
        centre = np.zeros(img.shape, bool)
        centre[r0 + half - 2:r0 + half + 3, c0 + half - 2:c0 + half + 3] = True
        parts.append(_place_ellipsoids(img, centre, 1, rng, cfg, 4, args.min_inside,
                                       args.context, str(rec.path)))
    k = len(parts)
    p, pr, pc, boxes = (np.concatenate([x[i] for x in parts]) for i in range(4))
    ctx = np.concatenate([x[4] for x in parts]) if args.context else None
    return PatchSet([rec.series] * k, np.full(k, rec.number, np.int32), p,
                    np.ones(k, np.uint8), ["hard-defect"] * k, pr, pc, boxes, ctx)


def _adaptation_sets(args: BuildArgs, score_fn: ScoreFn | None) -> tuple[list[PatchSet], dict]:
    """Real 'defect' patches (``args.real``) and hard 'no-defect' patches
    (``args.hard_negatives``) from the build's source images (:func:`source_images`);
    returns the patch sets and a manifest summary."""
    if not (args.real or args.hard_negatives):
        return [], {}
    recs = source_images(args)
    gts = _ground_truths(args.gdxray, recs)
    rng = seeds.stream(args.seed, seeds.ADAPTATION)
    sets: list[PatchSet] = []
    info: dict = {"images": [f"{r.series}/{r.path.name}" for r in recs]}
    if args.real:
        real, more = _centred_real_set(args, recs, gts, rng)
        sets.append(real)
        info |= more
    if args.hard_negatives:
        assert score_fn is not None
        hard, more = _hard_sets(args, recs, gts, score_fn)
        sets.extend(hard)
        info |= more
    return sets, info


def _build_wholeimage(args: BuildArgs, mix: Mix, tmp: Path, gan_src: GanSource | None,
                      score_fn: ScoreFn | None = None) -> dict:
    jobs, recs = plan_wholeimage(args, mix)
    extra_sets, extra_info = _adaptation_sets(args, score_fn)
    n_gan_per = args.per_image - jobs[0].n_ellipsoid
    total = (sum(j.n_background + j.n_ellipsoid for j in jobs) + n_gan_per * len(jobs)
             + sum(len(x) for x in extra_sets))
    writer = PatchWriter(tmp, total, args.context)
    groups = []

    def add(ps: PatchSet) -> None:
        writer.add(ps, "train")
        if args.split_by == "image":
            groups.append(image_group(ps.series, ps.images))

    for ps in _map(run_image_job, jobs, args.workers, f"wholeimage {mix.name}"):
        if n_gan_per:
            assert gan_src is not None
            key = seeds.key(args.seed, seeds.GAN_QUOTA, int(ps.series[0][1:]), int(ps.images[0]))
            ps = ps + gan_set(gan_src, n_gan_per, ps.series[0], int(ps.images[0]), key)
        add(ps)
    for ps in extra_sets:
        add(ps)
    rng = seeds.stream(args.seed, seeds.PATCH_SPLIT)
    writer.splits[:] = split_codes(writer.labels, np.concatenate(groups)
                                   if args.split_by == "image" else None, args.val_fraction, rng)
    return _manifest(args, mix, writer.finish(), recs,
                     {"adaptation": extra_info} if extra_info else {})


# ------------------------------------------------------------------------------ table3


def _real_candidates(root: str, recs: list[gdxray.ImageRecord]
                     ) -> tuple[list, dict[str, gdxray.SeriesGroundTruth]]:
    """Every window holding a third of a real box (the paper's rule) in ``recs``:
    ``(record, row, col, box)`` tuples, and the series' ground truth."""
    gts = _ground_truths(root, recs)
    cands = []
    for r in recs:
        b = gts[r.series].boxes_of(r.number)
        if len(b):
            shape = gdxray.image_shape(r.path)
            cands.extend((r, rr, cc, b[k]) for rr, cc, k in real_positions(b, shape))
    return cands, gts


def _pick(sets: list[PatchSet], n: int, rng: np.random.Generator, label: int | None = None
          ) -> set[tuple[int, int]]:
    """``n`` entries ``(set index, position)`` of ``sets`` (those of ``label``; all when
    None) drawn without replacement: trims per-image quotas to exact counts."""
    flat = [(i, j) for i, ps in enumerate(sets) for j in range(len(ps))
            if label is None or ps.labels[j] == label]
    chosen = np.asarray(flat)[np.sort(rng.choice(len(flat), n, replace=False))]
    return set(map(tuple, chosen.tolist()))


def _keep(sets: list[PatchSet], keep: set[tuple[int, int]]) -> list[PatchSet]:
    return [ps.subset([j for j in range(len(ps)) if (i, j) in keep]) for i, ps in enumerate(sets)]


def _table3_train(args: BuildArgs, mix: Mix, recs: list[gdxray.ImageRecord],
                  rng: np.random.Generator, gan_src: GanSource | None, notes: list[str]
                  ) -> tuple[list[PatchSet], int]:
    """The training patches of ``table3``: real and simulated defects and no-defect
    patches spread over the training series' images; returns them and the number of
    real defect windows there were to choose from."""
    cands, gts = _real_candidates(args.gdxray, recs)
    n_real = min(args.t3_real, args.t3_defects)
    where = ", ".join(args.series or TABLE3_TRAIN_SERIES)
    if not cands and n_real:
        notes.append(f"training: no real defect windows in {where}: "
                     f"all {args.t3_defects} defects simulated")
    elif len(cands) < n_real:
        notes.append(f"training: only {len(cands)} distinct real defect windows for "
                     f"{n_real} asked: repeats used")
    pick_real = (rng.choice(len(cands), n_real, replace=len(cands) < n_real)
                 if cands and n_real else np.zeros(0, int))
    n_sim_all = args.t3_defects - len(pick_real)
    n_gan = int(round(n_sim_all * mix.gan / 100))
    n_sim = n_sim_all - n_gan  # ellipsoidal
    per = -(-n_sim // len(recs)) if n_sim else 0
    per_bg = -(-args.t3_no_defects // len(recs))
    jobs = [ImageJob(str(r.path), r.series, r.number, gts[r.series].boxes_of(r.number),
                     per_bg, per, seeds.key(args.seed, seeds.TABLE3, int(r.series[1:]), r.number),
                     args.sampler(), args.margin, args.max_offset, args.min_inside)
            for r in recs]
    sets = list(_map(run_image_job, jobs, args.workers, "table3 train"))
    keep = _pick(sets, args.t3_no_defects, rng, 0)
    if n_sim:
        keep |= _pick(sets, n_sim, rng, 1)
    out = _keep(sets, keep) + [_real_set(cands, pick_real)]
    if n_gan:
        assert gan_src is not None
        out.append(gan_set(gan_src, n_gan, "gan", 0, seeds.key(args.seed, seeds.TABLE3_GAN)))
    return out, len(cands)


def _table3_test(args: BuildArgs, recs: list[gdxray.ImageRecord], rng: np.random.Generator,
                 notes: list[str]) -> tuple[list[PatchSet], int]:
    """The test patches of ``table3``: real defects and no-defect patches of C0001."""
    cands, gts = _real_candidates(args.gdxray, recs)
    if len(cands) < args.t3_test_defects:
        notes.append(f"test: only {len(cands)} distinct real defect windows for "
                     f"{args.t3_test_defects} asked: repeats used")
    pick = rng.choice(len(cands), args.t3_test_defects, replace=len(cands) < args.t3_test_defects)
    per = -(-args.t3_test_no_defects // len(recs))
    jobs = [ImageJob(str(r.path), r.series, r.number, gts[r.series].boxes_of(r.number),
                     per, 0, seeds.key(args.seed, seeds.TABLE3_TEST_JOBS, int(r.series[1:]),
                                     r.number),
                     args.sampler(), args.margin) for r in recs]
    sets = list(_map(run_image_job, jobs, args.workers, "table3 test"))
    keep = _pick(sets, args.t3_test_no_defects, rng)
    return [_real_set(cands, np.sort(pick))] + _keep(sets, keep), len(cands)


def _build_table3(args: BuildArgs, mix: Mix, tmp: Path, gan_src: GanSource | None) -> dict:
    train_series = list(args.series or TABLE3_TRAIN_SERIES)
    gdxray.check_series(args.gdxray, train_series + list(TABLE3_TEST_SERIES))
    recs_train = gdxray.list_images(args.gdxray, train_series)
    recs_test = gdxray.list_images(args.gdxray, TABLE3_TEST_SERIES)
    if args.limit_images:
        recs_train, recs_test = recs_train[: args.limit_images], recs_test[: args.limit_images]
    rng = seeds.stream(args.seed, seeds.TABLE3)
    notes: list[str] = []
    train_sets, n_train_windows = _table3_train(args, mix, recs_train, rng, gan_src, notes)
    test_sets, n_test_windows = _table3_test(args, recs_test, rng, notes)
    writer = PatchWriter(tmp, args.t3_no_defects + args.t3_defects + args.t3_test_defects
                         + args.t3_test_no_defects)
    for ps in train_sets:
        writer.add(ps, "train")
    for ps in test_sets:
        writer.add(ps, "test")
    extra = {"table3": {"train_series": train_series, "test_series": list(TABLE3_TEST_SERIES),
                        "real_train_windows": n_train_windows,
                        "real_test_windows": n_test_windows, "notes": notes}}
    return _manifest(args, mix, writer.finish(), sorted(set(recs_train) | set(recs_test)), extra)


def _real_set(cands: list, pick: np.ndarray, context: int = 0) -> PatchSet:
    """'real' defect patches for the chosen candidate windows (may span many images),
    with ``context`` pixels of surroundings when it is positive."""
    if len(pick) == 0:
        return PatchSet.empty()
    by_image: dict = {}
    for k in pick:
        by_image.setdefault(cands[k][0], []).append(k)
    sets = []
    for rec in sorted(by_image):
        img8 = to_uint(read_image(rec.path).pixels, 8)
        ks = by_image[rec]
        r = np.asarray([cands[k][1] for k in ks], np.int32)
        c = np.asarray([cands[k][2] for k in ks], np.int32)
        boxes = np.stack([np.clip(np.asarray(cands[k][3]) - [ci, ri, ci, ri], 0, PATCH)
                          for k, ri, ci in zip(ks, r, c, strict=True)]).astype(np.int32)
        n = len(ks)
        sets.append(PatchSet([rec.series] * n, np.full(n, rec.number, np.int32),
                             cut(img8, r, c), np.ones(n, np.uint8), ["real"] * n, r, c, boxes,
                             cut_context(img8, r, c, context) if context else None))
    return PatchSet.join(sets)
