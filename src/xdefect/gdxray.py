"""The GDXray Castings data layer: series, images, ground truth, splits, casting mask.

Layout (as the database ships it), under a *root* folder that holds ``Castings/``::

    ROOT/Castings/C00SS/C00SS_NNNN.png     8-bit grey radiographs
    ROOT/Castings/C00SS/ground_truth.txt   rows "image x1 x2 y1 y2" (%e notation)

GDXray's ground truth is 1-based and inclusive, x the column and y the row.
xdefect converts it on reading to **its one box convention, used everywhere**:
``(x1, y1, x2, y2)`` in pixels, **0-based, half-open** (``x2``, ``y2`` exclusive), so a
GDXray row ``x1 x2 y1 y2`` becomes ``(x1 - 1, y1 - 1, x2, y2)`` and the box covers
``image[y1:y2, x1:x2]``.

Image splits (one vocabulary everywhere, by image number ``n``):

* **train images**: odd, ``n % 4 == 3`` (3, 7, 11, ...): the only images whose pixels or
  boxes reach training data by default;
* **tuning images**: odd, ``n % 4 == 1`` (1, 5, 9, ...): thresholds, settings and
  checkpoints are chosen here, never trained on (``dataset build --include-tuning`` is the
  documented exception, for a final model whose settings are already fixed);
* **test images**: even: reported, never used to choose anything.

``odd`` (train + tuning) and ``even`` (= test) remain accepted as names. ``val`` is the old
name of the tuning images (accepted, deprecated): inside a *patch dataset*, ``val`` names
the random patch hold-out used for early stopping, a different thing.

The paper's protocol uses the seven series of :data:`PAPER_SERIES` only; commands that
reproduce it name them explicitly, so that a full GDXray download (67 Castings series)
does not silently change the protocol.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from xdefect.errors import DataWarning, InputError
from xdefect.io import image_size, progress, read_image

__all__ = ["DEFAULT_ROOT", "EDGE_TOLERANCE", "ENV_VAR", "GROUND_TRUTH_NAMES", "IMAGE_SPLITS",
           "PAPER_ANNOTATED_SERIES", "PAPER_SERIES", "SPLIT_ALIASES", "SPLIT_PARTS",
           "STATIC_MARKERS",
           "GroundTruthFile", "ImageRecord", "MaskParams", "Sample", "SeriesGroundTruth",
           "boxes_centres_inside", "canonical_split", "casting_mask", "castings_dir",
           "check_series", "default_root", "ground_truth_path", "image_shape", "image_shapes",
           "image_split", "in_split", "is_static", "iter_samples", "list_images", "list_series",
           "load_ground_truth", "load_sample", "mask_report", "parse_ground_truth",
           "protocol_series", "read_ground_truth", "series_info", "series_readme", "split_of"]

ENV_VAR = "XDEFECT_GDXRAY"
DEFAULT_ROOT = Path("../shared/data/gdxray")
PAPER_SERIES = ("C0001", "C0010", "C0015", "C0021", "C0031", "C0034", "C0061")
#: the paper's series that have ground truth in the copy used here (C0061 has none)
PAPER_ANNOTATED_SERIES = ("C0001", "C0010", "C0015", "C0021", "C0031", "C0034")
#: every image split name (see the module docstring) -> the basic splits it is made of
SPLIT_PARTS = {"train": ("train",), "tuning": ("tuning",), "test": ("test",),
               "odd": ("train", "tuning"), "even": ("test",),
               "all": ("train", "tuning", "test")}
IMAGE_SPLITS = tuple(SPLIT_PARTS)
#: accepted old names of image splits
SPLIT_ALIASES = {"val": "tuning"}
_SERIES_RE = re.compile(r"^C\d{4}$")
_IMAGE_RE = re.compile(r"^(C\d{4})_(\d{4})\.(png|tif|tiff|bmp)$", re.IGNORECASE)


def default_root() -> Path:
    """The GDXray root: ``$XDEFECT_GDXRAY`` if set, else ``../shared/data/gdxray``."""
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else DEFAULT_ROOT


@dataclass(frozen=True, order=True)
class ImageRecord:
    """One radiograph of a series: ``series`` like ``"C0001"``, 1-based ``number``."""

    series: str
    number: int
    path: Path = field(compare=False)

    @property
    def split(self) -> str:
        """``"odd"`` (train or tuning image) or ``"even"`` (test image)."""
        return split_of(self.number)

    @property
    def image_split(self) -> str:
        """``"train"``, ``"tuning"`` or ``"test"`` (see :func:`image_split`)."""
        return image_split(self.number)

    @property
    def stem(self) -> str:
        """File stem, e.g. ``"C0001_0003"``; detections are matched to images by it."""
        return f"{self.series}_{self.number:04d}"


@dataclass(frozen=True)
class Sample:
    """An image with its ground truth.

    ``image``: ``(H, W)`` float32 in [0, 1]; ``boxes``: ``(N, 4)`` float64
    ``(x1, y1, x2, y2)``, 0-based half-open; ``annotated``: False where the series has
    no ground truth at all, or its ground truth does not cover this image (a static
    series annotated on some images only, :meth:`SeriesGroundTruth.covers`): it cannot be
    scored and is not defect-free.
    """

    record: ImageRecord
    image: np.ndarray
    boxes: np.ndarray
    annotated: bool
    bit_depth: int = 8


def split_of(number: int) -> str:
    """The paper's split of an image number: ``"odd"`` or ``"even"``."""
    return "odd" if number % 2 == 1 else "even"


def image_split(number: int) -> str:
    """xdefect's split of an image number: ``"train"`` (``n % 4 == 3``), ``"tuning"``
    (``n % 4 == 1``) or ``"test"`` (even)."""
    if number % 2 == 0:
        return "test"
    return "train" if number % 4 == 3 else "tuning"


def canonical_split(split: str | None) -> str:
    """The canonical name of an image split (``val`` -> ``tuning``); :class:`ValueError`
    for an unknown name. ``None`` means ``all``."""
    if split is None:
        return "all"
    name = SPLIT_ALIASES.get(split, split)
    if name not in IMAGE_SPLITS:
        raise ValueError(f"unknown image split {split!r} (expected "
                         f"{', '.join(IMAGE_SPLITS)})")
    return name


def in_split(number: int, split: str | None) -> bool:
    """Whether image ``number`` belongs to ``split`` (any name :func:`canonical_split`
    accepts)."""
    return image_split(number) in SPLIT_PARTS[canonical_split(split)]


def castings_dir(root: str | os.PathLike[str]) -> Path:
    """``ROOT/Castings``; :class:`InputError` if the root or the folder is missing."""
    r = Path(root)
    if not r.exists():
        raise InputError(f"{r}: GDXray root does not exist (set --root or ${ENV_VAR})")
    c = r / "Castings"
    if not c.is_dir():
        if r.name == "Castings" and r.is_dir():
            return r
        raise InputError(f"{r}: not a GDXray root (no Castings/ folder inside)")
    return c


def list_series(root: str | os.PathLike[str]) -> list[str]:
    """Names of the series under ``ROOT/Castings`` that hold at least one image, sorted."""
    c = castings_dir(root)
    out = []
    for d in sorted(c.iterdir()):
        if d.is_dir() and _SERIES_RE.match(d.name) and any(
            _IMAGE_RE.match(f.name) for f in d.iterdir()
        ):
            out.append(d.name)
    if not out:
        raise InputError(f"{c}: holds no GDXray series (folders C00SS with C00SS_NNNN.png)")
    return out


def check_series(root: str | os.PathLike[str], series: Iterable[str] | None) -> list[str]:
    """Validate a series selection (``None`` = all present); :class:`InputError` if unknown."""
    present = list_series(root)
    if series is None:
        return present
    chosen = list(series)
    for s in chosen:
        if s not in present:
            raise InputError(f"{castings_dir(root)}: unknown series {s!r} "
                             f"(present: {', '.join(present)})")
    return chosen


def protocol_series(root: str | os.PathLike[str], series: Iterable[str] | None = None,
                    default: Iterable[str] = PAPER_SERIES) -> list[str]:
    """The series a protocol command uses: ``series`` when given (checked), else those of
    ``default`` (the paper's seven) that are present under ``root``. Never "every series
    present" where a default one is: a full GDXray download must not silently change the
    protocol. A root that holds none of the defaults (``gdxray-extra``, another group of
    castings) gives every series it holds."""
    if series is not None:
        return check_series(root, series)
    present = list_series(root)
    chosen = [s for s in default if s in present]
    return chosen or present


def list_images(
    root: str | os.PathLike[str],
    series: Iterable[str] | None = None,
    split: str | None = None,
) -> list[ImageRecord]:
    """All images of the chosen series (default: all), optionally of one split.

    ``split``: ``"train"`` (odd, ``n % 4 == 3``), ``"tuning"`` (odd, ``n % 4 == 1``;
    ``"val"`` is its old name), ``"test"`` (even), ``"odd"`` (train + tuning), ``"even"``
    (= test), ``"all"`` or ``None``. Sorted by series then number.
    """
    canonical_split(split)  # ValueError for an unknown name
    c = castings_dir(root)
    out: list[ImageRecord] = []
    for s in check_series(root, series):
        for f in sorted((c / s).iterdir()):
            m = _IMAGE_RE.match(f.name)
            if m and m.group(1) == s:
                rec = ImageRecord(s, int(m.group(2)), f)
                if in_split(rec.number, split):
                    out.append(rec)
    return sorted(out)


#: names of a series' ground-truth file, in order of preference (some copies of the database
#: ship it without the extension)
GROUND_TRUTH_NAMES = ("ground_truth.txt", "ground_truth")
#: a box may reach this many pixels past an image edge (GDXray has boxes one pixel past it);
#: it is clipped to the image with a warning. Farther out, the row is refused.
EDGE_TOLERANCE = 3


def ground_truth_path(root: str | os.PathLike[str], series: str) -> Path:
    """The series' ground-truth file: the first of :data:`GROUND_TRUTH_NAMES` present
    (``ground_truth.txt`` when none is)."""
    d = castings_dir(root) / series
    for name in GROUND_TRUTH_NAMES:
        if (d / name).is_file():
            return d / name
    return d / GROUND_TRUTH_NAMES[0]


@dataclass(frozen=True)
class GroundTruthFile:
    """A parsed ground-truth file: ``boxes`` per image number (0-based, half-open
    ``(x1, y1, x2, y2)``), how many boxes were ``clipped`` to their image (they reached at
    most :data:`EDGE_TOLERANCE` pixels past an edge) and how many exact ``duplicates`` rows
    were dropped."""

    path: Path
    boxes: dict[int, np.ndarray]
    clipped: int = 0
    duplicates: int = 0

    def notes(self) -> list[str]:
        """One line per correction made on reading (empty when none)."""
        out = []
        if self.clipped:
            out.append(f"{self.path}: {self.clipped} box(es) reached at most {EDGE_TOLERANCE} "
                       "px past the image edge: clipped to the image")
        if self.duplicates:
            out.append(f"{self.path}: {self.duplicates} duplicate row(s) counted once")
        return out


def _parse_row(p: Path, lineno: int, line: str) -> tuple[int, int, int, int, int]:
    """``(image, x1, x2, y1, y2)`` of one row, GDXray's 1-based inclusive values."""
    parts = line.split()
    if len(parts) != 5:
        raise InputError(f"{p}:{lineno}: expected 5 columns (image x1 x2 y1 y2), "
                         f"got {len(parts)}")
    try:
        vals = [float(v) for v in parts]
    except ValueError:
        raise InputError(f"{p}:{lineno}: non-numeric value in {line.strip()!r}") from None
    if not all(np.isfinite(vals)) or any(v != round(v) for v in vals):
        raise InputError(f"{p}:{lineno}: values must be whole numbers, got {line.strip()!r}")
    n, gx1, gx2, gy1, gy2 = (int(round(v)) for v in vals)
    if n < 1 or gx2 < gx1 or gy2 < gy1:
        raise InputError(f"{p}:{lineno}: invalid row image={n} x1={gx1} x2={gx2} y1={gy1} "
                         f"y2={gy2} (1-based, need image >= 1, x1 <= x2 and y1 <= y2)")
    return n, gx1, gx2, gy1, gy2


def _fit_box(p: Path, lineno: int, box: list[int], shape: tuple[int, int] | None
             ) -> tuple[list[int], bool]:
    """Check a 0-based half-open box against its image ``shape``; clip it when it reaches
    at most :data:`EDGE_TOLERANCE` px past an edge (returns whether it was clipped)."""
    x1, y1, x2, y2 = box
    h, w = shape if shape is not None else (None, None)
    lo_w, lo_h = (w, h) if shape is not None else (x2, y2)
    past = max(-x1, -y1, x2 - lo_w, y2 - lo_h, 0)
    where = (f"box x1={x1 + 1} x2={x2} y1={y1 + 1} y2={y2}"
             + (f" (image {w}x{h})" if shape is not None else ""))
    if shape is not None and (x1 >= w or y1 >= h or x2 <= 0 or y2 <= 0):
        raise InputError(f"{p}:{lineno}: {where} lies wholly outside the image")
    if past > EDGE_TOLERANCE:
        raise InputError(f"{p}:{lineno}: {where} reaches {past} px past the image edge "
                         f"(at most {EDGE_TOLERANCE} is clipped)")
    if not past:
        return box, False
    return [max(x1, 0), max(y1, 0), min(x2, lo_w), min(y2, lo_h)], True


def read_ground_truth(
    path: str | os.PathLike[str],
    image_shapes: dict[int, tuple[int, int]] | None = None,
) -> GroundTruthFile:
    """Parse a GDXray ground-truth file (see :func:`parse_ground_truth`), keeping count of
    the corrections: boxes clipped to their image and duplicate rows dropped."""
    p = Path(path)
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: cannot read ground truth ({exc.__class__.__name__})") from None
    boxes: dict[int, list[list[int]]] = {}
    seen: set[tuple[int, ...]] = set()
    clipped = duplicates = 0
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith(("#", "%")):
            continue
        row = _parse_row(p, lineno, line)
        if row in seen:
            duplicates += 1
            continue
        seen.add(row)
        n, gx1, gx2, gy1, gy2 = row
        if image_shapes is not None and n not in image_shapes:
            raise InputError(f"{p}:{lineno}: names image {n}, which does not exist")
        shape = None if image_shapes is None else image_shapes[n]
        box, was_clipped = _fit_box(p, lineno, [gx1 - 1, gy1 - 1, gx2, gy2], shape)
        clipped += was_clipped
        boxes.setdefault(n, []).append(box)
    arrays = {n: np.asarray(b, dtype=np.float64).reshape(-1, 4) for n, b in boxes.items()}
    return GroundTruthFile(p, arrays, clipped, duplicates)


def parse_ground_truth(
    path: str | os.PathLike[str],
    image_shapes: dict[int, tuple[int, int]] | None = None,
) -> dict[int, np.ndarray]:
    """Parse a GDXray ``ground_truth.txt`` into boxes per image number.

    Each row is ``image_number x1 x2 y1 y2`` (1-based, inclusive; x = column, y = row).
    Returns ``{image_number: (N, 4) float64 array}`` in xdefect's convention
    ``(x1, y1, x2, y2)``, 0-based, half-open. Images without boxes are absent. An exact
    duplicate row is counted once.

    ``image_shapes`` (``{number: (height, width)}``), when given, is used to check that each
    row names an existing image and that each box lies inside it: a box that reaches at
    most :data:`EDGE_TOLERANCE` pixels past an edge (as some GDXray series ship) is clipped
    to the image; farther out, or wholly outside, it is refused. Every correction is
    reported once as an :class:`~xdefect.errors.DataWarning`; any malformed row raises
    :class:`InputError` naming the file, the line and the problem.
    """
    gt = read_ground_truth(path, image_shapes)
    for note in gt.notes():
        warnings.warn(note, DataWarning, stacklevel=2)
    return gt.boxes


@dataclass(frozen=True)
class SeriesGroundTruth:
    """Ground truth of one series: ``annotated`` False when it has no ground-truth file;
    ``unannotated_images``: numbers of images the file does not cover although the series
    has one (a static series annotated on some of its images only,
    :func:`load_ground_truth`): they are neither scored nor taken as defect-free."""

    series: str
    annotated: bool
    boxes: dict[int, np.ndarray]
    #: boxes clipped to their image and duplicate rows dropped on reading (see
    #: :func:`read_ground_truth`)
    clipped: int = 0
    duplicates: int = 0
    unannotated_images: frozenset[int] = frozenset()

    def boxes_of(self, number: int) -> np.ndarray:
        """``(N, 4)`` boxes of an image, 0-based half-open ``(x1, y1, x2, y2)``."""
        return self.boxes.get(number, np.zeros((0, 4)))

    def covers(self, number: int) -> bool:
        """Whether image ``number`` is annotated: its boxes (none: defect-free) are its
        ground truth, so it can be scored and its background is background."""
        return self.annotated and number not in self.unannotated_images


#: phrases of a series' readme saying the part did not move between its images (every
#: image shows the same view, hence the same defects)
STATIC_MARKERS = ("without motion", "no motion")


def series_readme(root: str | os.PathLike[str], series: str) -> Path | None:
    """The series' readme (``C00SS_readme.txt`` as GDXray ships it; any file whose name
    holds "readme"), or None."""
    d = castings_dir(root) / series
    found = sorted(f for f in d.iterdir() if "readme" in f.name.lower() and f.is_file())
    return found[0] if found else None


def is_static(root: str | os.PathLike[str], series: str) -> bool:
    """Whether the series' readme says its images were taken without motion
    (:data:`STATIC_MARKERS`; GDXray C0034 and C0041): all its images show the same view."""
    readme = series_readme(root, series)
    if readme is None:
        return False
    text = readme.read_text(encoding="latin-1").lower()
    return any(m in text for m in STATIC_MARKERS)


def image_shape(path: Path) -> tuple[int, int]:
    """(height, width) of an image file without decoding its pixels
    (:func:`xdefect.io.image_size`)."""
    return image_size(path)


def image_shapes(root: str | os.PathLike[str], series: str) -> dict[int, tuple[int, int]]:
    """``{image number: (height, width)}`` of a series, reading only the files' headers;
    :class:`InputError` naming the first file that is not a readable image."""
    return {r.number: image_shape(r.path) for r in list_images(root, [series])}


def load_ground_truth(root: str | os.PathLike[str], series: str,
                      shapes: dict[int, tuple[int, int]] | None = None) -> SeriesGroundTruth:
    """Read and check the series' ground truth (:func:`ground_truth_path`) against its
    images (``shapes`` from :func:`image_shapes`, read here when not given); corrections
    (boxes clipped to the image edge, duplicate rows) are counted in the result and reported
    once as a :class:`~xdefect.errors.DataWarning`."""
    p = ground_truth_path(root, series)
    if not p.exists():
        return SeriesGroundTruth(series, False, {})
    shapes = image_shapes(root, series) if shapes is None else shapes
    gt = read_ground_truth(p, shapes)
    for note in gt.notes():  # shown once per process: the message and the line are fixed
        warnings.warn(note, DataWarning, stacklevel=1)
    with_boxes = {n for n, b in gt.boxes.items() if len(b)}
    missing = frozenset(set(shapes) - with_boxes)
    if not with_boxes or not missing or not is_static(root, series):
        missing = frozenset()
    else:  # the same view in every image: one without boxes is unannotated, not clean
        warnings.warn(f"{p}: {series} is a static series (its readme: taken without "
                      f"motion) with boxes on {len(with_boxes)} of {len(shapes)} images: the "
                      f"other {len(missing)} show the same defects unannotated; they are "
                      "neither scored nor taken as defect-free", DataWarning, stacklevel=1)
    return SeriesGroundTruth(series, True, gt.boxes, gt.clipped, gt.duplicates, missing)


def load_sample(record: ImageRecord, gt: SeriesGroundTruth) -> Sample:
    """Load one image and attach its boxes."""
    rad = read_image(record.path)
    return Sample(record, rad.pixels, gt.boxes_of(record.number), gt.covers(record.number),
                  rad.bit_depth)


def iter_samples(
    root: str | os.PathLike[str],
    series: Iterable[str] | None = None,
    split: str | None = None,
) -> Iterator[Sample]:
    """Yield (image, boxes) samples of the chosen series and split, in sorted order."""
    records = list_images(root, series, split)
    gts: dict[str, SeriesGroundTruth] = {}
    for rec in records:
        if rec.series not in gts:
            gts[rec.series] = load_ground_truth(root, rec.series)
        yield load_sample(rec, gts[rec.series])


def series_info(root: str | os.PathLike[str]) -> dict:
    """Per-series summary, the ``xdefect gdxray info --json`` document.

    ``{"root": str, "series": {"C0001": {"images", "height", "width", "sizes",
    "ground_truth", "clipped", "duplicates", "boxes", "images_with_boxes", "odd", "even"},
    ...}, "total": {"images", "boxes"}}``. ``height`` and ``width`` are the first image's;
    ``sizes`` counts the distinct image sizes of the series (C0002 ships crops of eight
    sizes). ``ground_truth`` is the file's name, ``clipped`` and ``duplicates`` the
    corrections made on reading it. A series without ground truth has ``"boxes": 0``,
    ``"ground_truth": null`` and ``"annotated": false``; ``unannotated_images`` counts
    the images a static series' ground truth does not cover (:func:`load_ground_truth`).
    """
    out: dict = {"root": str(root), "series": {}}
    n_img = n_box = 0
    for s in list_series(root):
        recs = list_images(root, [s])
        shapes = image_shapes(root, s)  # checks that every image is readable
        h, w = shapes[recs[0].number]
        gt = load_ground_truth(root, s, shapes)
        boxes = sum(len(b) for b in gt.boxes.values())
        out["series"][s] = {
            "images": len(recs),
            "height": h,
            "width": w,
            "sizes": len(set(shapes.values())),
            "ground_truth": ground_truth_path(root, s).name if gt.annotated else None,
            "clipped": gt.clipped,
            "duplicates": gt.duplicates,
            "boxes": boxes,
            "images_with_boxes": sum(1 for b in gt.boxes.values() if len(b)),
            "odd": sum(1 for r in recs if r.split == "odd"),
            "even": sum(1 for r in recs if r.split == "even"),
            "annotated": gt.annotated,
            "unannotated_images": len(gt.unannotated_images),
        }
        n_img += len(recs)
        n_box += boxes
    out["total"] = {"images": n_img, "boxes": n_box}
    return out


# --------------------------------------------------------------------------- casting mask


@dataclass(frozen=True)
class MaskParams:
    """Parameters of :func:`casting_mask` (grey levels relative to the image's range).

    ``air_fraction``: pixels whose 7x7 local mean lies within this fraction of the grey
    range below the bright level (99.5th percentile) are air candidates.
    ``floor_fraction`` / ``floor_std``: pixels within this fraction above the dark level
    (1st percentile) whose 7x7 local standard deviation is below ``floor_std`` grey levels
    (of 255) are "no signal": outside the detector's field of view or clipped.
    ``min_region``: air/no-signal regions smaller than this (pixels) are kept as casting
    (a large void can itself saturate). ``margin``: the casting keeps this many pixels
    (Euclidean) into the excluded regions, where the edge of the object blurs.
    """

    air_fraction: float = 0.04
    floor_fraction: float = 0.04
    floor_std: float = 3.0
    min_region: int = 1500
    margin: float = 10.0
    min_component: int = 64


def _large_components(region: np.ndarray, min_size: int) -> np.ndarray:
    lab, n = ndi.label(region)
    if n == 0:
        return region
    keep = np.bincount(lab.ravel(), minlength=n + 1) >= min_size
    keep[0] = False
    return keep[lab]


def _cross_morphology(region: np.ndarray, op: str, iterations: int) -> np.ndarray:
    """``ndi.binary_erosion`` (``op="erode"``) or ``ndi.binary_dilation`` (``"dilate"``) with
    the default 3x3 cross and border value 0, ``iterations`` times, by shifted logical
    operations (the same result, several times faster)."""
    a = region
    for _ in range(iterations):
        b = a.copy()
        if op == "erode":
            b[1:] &= a[:-1]
            b[:-1] &= a[1:]
            b[:, 1:] &= a[:, :-1]
            b[:, :-1] &= a[:, 1:]
            b[0] = b[-1] = False  # neighbours beyond the border are 0
            b[:, 0] = b[:, -1] = False
        else:
            b[1:] |= a[:-1]
            b[:-1] |= a[1:]
            b[:, 1:] |= a[:, :-1]
            b[:, :-1] |= a[:, 1:]
        a = b
    return a


def _deeper_than(region: np.ndarray, radius: float) -> np.ndarray:
    """``ndi.distance_transform_edt(region) > radius``, exactly, about four times faster
    for a radius of a few pixels: True where no False pixel of the array lies within
    Euclidean ``radius`` (pixels beyond the array do not count). The distance to the
    nearest False pixel of the same column (two running extrema), then, for each column
    offset ``dj`` up to ``radius``, the columns ``dj`` away whose distance is at most
    ``sqrt(radius**2 - dj**2)``."""
    bg = ~region
    if not bg.any():  # no background pixel: scipy's own convention
        return ndi.distance_transform_edt(region) > radius
    h, w = bg.shape
    reach = int(np.floor(radius))
    big = reach + 1
    rows = np.arange(h, dtype=np.int32)[:, None]
    above = np.maximum.accumulate(np.where(bg, rows, -big), axis=0)
    below = np.minimum.accumulate(np.where(bg, rows, h + big)[::-1], axis=0)[::-1]
    col = np.minimum(np.minimum(rows - above, below - rows), big).astype(np.uint8)
    near = np.zeros((h, w), dtype=bool)
    for dj in range(reach + 1):
        c = col <= int(np.floor(np.sqrt(radius * radius - dj * dj)))
        if dj == 0:
            near |= c
        else:
            near[:, dj:] |= c[:, :-dj]
            near[:, :-dj] |= c[:, dj:]
    return ~near


def casting_mask(image: np.ndarray, params: MaskParams | None = None) -> np.ndarray:
    """Binary mask of the test object (the casting) in a radiograph.

    Excludes the saturated air around and between the spokes and the no-signal area
    outside the detector's field of view (the dark ring and corners), both detected from
    the image's own grey-level range, so it works on 8- and 16-bit images, on wheels and
    on the C0061 knuckle without per-series settings.

    Parameters
    ----------
    image:
        ``(H, W)`` grey image, float in [0, 1] (any real scale works: thresholds are
        relative to the image's percentiles).
    params:
        :class:`MaskParams`; defaults were chosen on the GDXray series (see ``docs/``).

    Returns
    -------
    ``(H, W)`` bool array, True on the casting; indexed ``mask[row, col]``.
    """
    p = params or MaskParams()
    a = np.asarray(image, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError("casting_mask expects a 2-D grey image")
    lo, hi = np.percentile(a, [1.0, 99.5])
    rng = float(hi - lo)
    if rng <= 0:
        return np.ones(a.shape, dtype=bool)
    scale = 255.0 / rng  # express std thresholds in 8-bit grey levels of the range
    mean = ndi.uniform_filter(a, 7)
    sq = ndi.uniform_filter(a * a, 7)
    std = np.sqrt(np.maximum(sq - mean * mean, 0.0)) * scale
    step = 4.0 / 255.0 * rng  # at least 4 grey levels (8-bit) of the range
    air = mean >= hi - max(step, p.air_fraction * rng)
    floor = (mean <= lo + max(step, p.floor_fraction * rng)) & (std < p.floor_std)
    excluded = np.zeros(a.shape, dtype=bool)
    pad = int(np.ceil(p.margin)) + 3
    for region in (air, floor):
        # the image border is not an edge of these regions: extend them beyond it
        region = np.pad(region, pad, mode="edge")
        # binary opening (1 iteration) and closing (2), 3x3 cross
        region = _cross_morphology(_cross_morphology(region, "erode", 1), "dilate", 1)
        region = _large_components(region, p.min_region)
        region = _cross_morphology(_cross_morphology(region, "dilate", 2), "erode", 2)
        excluded |= _deeper_than(region, p.margin)[pad:-pad, pad:-pad]
    return _large_components(~excluded, p.min_component)


def boxes_centres_inside(mask: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """For each ``(x1, y1, x2, y2)`` box (0-based half-open), whether its centre pixel is
    inside ``mask``. Centre pixel: ``(floor((y1 + y2 - 1) / 2), floor((x1 + x2 - 1) / 2))``.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(b) == 0:
        return np.zeros(0, dtype=bool)
    cx = np.clip(np.floor((b[:, 0] + b[:, 2] - 1) / 2).astype(int), 0, mask.shape[1] - 1)
    cy = np.clip(np.floor((b[:, 1] + b[:, 3] - 1) / 2).astype(int), 0, mask.shape[0] - 1)
    return mask[cy, cx]


def mask_report(root: str | os.PathLike[str], series: Iterable[str] | None = None) -> dict:
    """Measure :func:`casting_mask` per series: mean fraction of the image in the mask and
    the fraction of ground-truth boxes whose centre lies inside it."""
    out: dict = {}
    chosen = check_series(root, series)
    bar = progress(total=len(list_images(root, chosen)), desc="masks", unit="image")
    for s in chosen:
        fr = []
        inside = total = 0
        for smp in iter_samples(root, [s]):
            bar.update()
            m = casting_mask(smp.image)
            fr.append(float(m.mean()))
            ok = boxes_centres_inside(m, smp.boxes)
            inside += int(ok.sum())
            total += len(ok)
        out[s] = {
            "images": len(fr),
            "mask_fraction": float(np.mean(fr)),
            "boxes": total,
            "boxes_centre_inside": inside,
            "fraction_inside": (inside / total) if total else None,
        }
    bar.close()
    tb = sum(v["boxes"] for v in out.values())
    ti = sum(v["boxes_centre_inside"] for v in out.values())
    out["total"] = {"boxes": tb, "boxes_centre_inside": ti,
                    "fraction_inside": (ti / tb) if tb else None}
    return out
