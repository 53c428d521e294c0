"""Ellipsoidal defect simulation (the paper's Eq. 3) and a synthetic wheel radiograph.

Physics
-------
X-ray absorption: ``phi = phi0 * exp(-mu * x)`` for a path of length ``x`` (mm) through
material of linear absorption coefficient ``mu`` (1/mm); the grey value is linear in the
flux, ``I = A * phi + B``. A void (gas pore, shrinkage cavity) of thickness ``d`` along
the ray removes that much material, so the grey value becomes (Eq. 3)::

    I' = (I - B) * exp(mu * d) + B

``d(u, v)`` is the length of the chord that the ray through pixel ``(u, v)`` cuts through
a 3D ellipsoid of semi-axes ``(a, b, c)`` mm, computed here in closed form (the roots of
the ray-ellipsoid quadratic), vectorised over the defect's bounding box only.

``B`` follows from ``x_max``, the material thickness at which the grey value is minimal:
with grey values normalised to [0, 1] (0 at ``x_max``, 1 for no material),
``A * phi0 = 1 / (1 - exp(-mu x_max))`` and ``B = -exp(-mu x_max) / (1 - exp(-mu x_max))``.

Coordinates
-----------
Images are ``(H, W)`` arrays indexed ``[row, col]``; the centre of pixel ``(r, c)`` is
the continuous point ``(r, c)``. A defect centre is given as ``(row, col)`` in these
(0-based, sub-pixel) coordinates. Object coordinates (mm): x along columns, y along rows,
z along the beam (away from the source). Boxes are xdefect's convention,
``(x1, y1, x2, y2)`` in pixels, 0-based, half-open.

Geometry
--------
``mm_per_px`` is the pixel size at the object. ``source_distance=None`` is a parallel
beam; a number (mm, source to the defect's plane) gives a perspective (cone-beam)
projection whose principal point is ``principal_point`` (default the image centre).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial.transform import Rotation

from xdefect.gdxray import casting_mask
from xdefect.io import as_image

__all__ = ["DEFAULT_AXES_MM", "DEFAULT_MM_PER_PX", "DEFAULT_MU_RANGE", "DEFAULT_X_MAX",
           "DefectSampler", "Ellipsoid", "Geometry", "Phantom", "SamplerConfig", "Superimposed",
           "add_random_defects", "defect_patches", "defect_records", "offset_b", "path_length",
           "phantom", "random_rotation", "render", "simulate_defects", "superimpose",
           "wheel_thickness"]

# Defaults, documented in docs/simulation.md with the measurements behind them.
DEFAULT_MM_PER_PX = 0.3
DEFAULT_AXES_MM = (1.0, 6.0)
DEFAULT_MU_RANGE = (0.01, 0.04)
DEFAULT_X_MAX = 60.0


@dataclass(frozen=True)
class Geometry:
    """Imaging geometry.

    ``mm_per_px``: pixel size at the object plane (mm). ``source_distance``: mm from the
    X-ray source to the defect's plane, ``None`` for a parallel beam.
    ``principal_point``: ``(row, col)`` where the central ray meets the image (default:
    image centre), used by the perspective projection only.
    """

    mm_per_px: float = DEFAULT_MM_PER_PX
    source_distance: float | None = None
    principal_point: tuple[float, float] | None = None


@dataclass(frozen=True)
class Ellipsoid:
    """A 3D ellipsoidal void.

    ``axes_mm``: semi-axes ``(a, b, c)`` in mm. ``rotation``: 3x3 rotation matrix whose
    columns are the directions of the a, b, c axes in object coordinates (x = columns,
    y = rows, z = beam). ``center``: ``(row, col)`` of the centre's projection, pixels,
    0-based. ``mu``: linear absorption coefficient, 1/mm. ``x_max``: if set, the
    thickness (mm) at which the grey value is minimal in this defect's Eq. 3, in place of
    the one :func:`superimpose` is given (a sampler with ``x_max_range`` draws it per
    defect: the shadow's contrast is about ``d / x_max``, so a range of ``x_max`` is a
    range of contrasts).
    """

    axes_mm: tuple[float, float, float]
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    center: tuple[float, float] = (0.0, 0.0)
    mu: float = 0.04
    x_max: float | None = None

    @property
    def angles_deg(self) -> list[float]:
        """Intrinsic ZYX Euler angles (degrees) of ``rotation``."""
        return [float(v) for v in Rotation.from_matrix(self.rotation).as_euler("ZYX",
                                                                               degrees=True)]

    def metric(self) -> np.ndarray:
        """``M`` with ``p^T M p <= 1`` inside the (centred) ellipsoid."""
        a = np.asarray(self.axes_mm, dtype=np.float64)
        R = np.asarray(self.rotation, dtype=np.float64)
        return (R / a**2) @ R.T

    def half_extent_mm(self) -> np.ndarray:
        """Half-extents of the axis-aligned bounding box (x, y, z), mm."""
        a = np.asarray(self.axes_mm, dtype=np.float64)
        R = np.asarray(self.rotation, dtype=np.float64)
        return np.sqrt((R**2) @ a**2)


@dataclass(frozen=True)
class Superimposed:
    """Result of :func:`superimpose`.

    ``image``: the new image (same shape and dtype as the input). ``thickness``: ``d`` in
    mm over the window ``window`` (``(r0, r1, c0, c1)``, half-open) of the image, zero
    elsewhere in that window. ``box``: ``(x1, y1, x2, y2)`` of the pixels with ``d > 0``,
    0-based half-open, clipped to the image; ``None`` when no pixel of the image is hit.
    """

    image: np.ndarray
    thickness: np.ndarray
    window: tuple[int, int, int, int]
    box: tuple[int, int, int, int] | None

    def d_map(self, shape: tuple[int, int]) -> np.ndarray:
        """The full-size ``(H, W)`` path-length map ``d`` (mm)."""
        out = np.zeros(shape, dtype=np.float64)
        r0, r1, c0, c1 = self.window
        out[r0:r1, c0:c1] = self.thickness
        return out


def offset_b(mu: float, x_max: float) -> float:
    """``B`` of ``I = A phi + B`` for grey values in [0, 1], black at thickness ``x_max``."""
    e = math.exp(-mu * x_max)
    b = -e / (1.0 - e) if e < 1.0 else math.inf
    if not math.isfinite(b):
        raise ValueError(f"mu {mu} /mm and x_max {x_max} mm: mu * x_max must be positive "
                         "and not vanishingly small (B of Eq. 3 would be infinite)")
    return b


def _window(shape: tuple[int, int], ell: Ellipsoid, geo: Geometry) -> tuple[int, int, int, int]:
    """Pixel window ``(r0, r1, c0, c1)`` (half-open, clipped) that holds the projection."""
    h, w = shape
    hx, hy, hz = ell.half_extent_mm() / geo.mm_per_px
    row, col = ell.center
    if geo.source_distance is not None:
        D = geo.source_distance / geo.mm_per_px  # in pixel units
        pr, pc = geo.principal_point or ((h - 1) / 2.0, (w - 1) / 2.0)
        # project the 8 corners of the box, magnified about the principal point
        rows = [(row - pr + sy) * (D / (D + sz)) + pr for sy in (-hy, hy) for sz in (-hz, hz)]
        cols = [(col - pc + sx) * (D / (D + sz)) + pc for sx in (-hx, hx) for sz in (-hz, hz)]
        rlo, rhi, clo, chi = min(rows), max(rows), min(cols), max(cols)
    else:
        rlo, rhi, clo, chi = row - hy, row + hy, col - hx, col + hx
    r0 = max(int(math.floor(rlo)), 0)
    r1 = min(int(math.ceil(rhi)) + 1, h)
    c0 = max(int(math.floor(clo)), 0)
    c1 = min(int(math.ceil(chi)) + 1, w)
    return r0, max(r1, r0), c0, max(c1, c0)


def path_length(shape: tuple[int, int], ell: Ellipsoid, geo: Geometry | None = None
                ) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Chord length ``d`` (mm) of each pixel's ray through the ellipsoid.

    Returns ``(d, window)``: ``d`` is a float64 array over ``window = (r0, r1, c0, c1)``
    (rows ``r0:r1``, columns ``c0:c1``, clipped to ``shape``), which contains every pixel
    with ``d > 0``.
    """
    geo = geo or Geometry()
    r0, r1, c0, c1 = _window(shape, ell, geo)
    if r1 <= r0 or c1 <= c0:
        return np.zeros((max(r1 - r0, 0), max(c1 - c0, 0))), (r0, r1, c0, c1)
    M = ell.metric()
    s = geo.mm_per_px
    row, col = ell.center
    ys = (np.arange(r0, r1, dtype=np.float64) - row) * s
    xs = (np.arange(c0, c1, dtype=np.float64) - col) * s
    if geo.source_distance is None:
        # ray p = (x, y, t): A t^2 + 2 B t + C = 0
        A = M[2, 2]
        B = ys[:, None] * M[1, 2] + xs[None, :] * M[0, 2]
        C = (M[0, 0] * xs[None, :] ** 2 + 2 * M[0, 1] * xs[None, :] * ys[:, None]
             + M[1, 1] * ys[:, None] ** 2 - 1.0)
        disc = B * B - A * C
        d = 2.0 * np.sqrt(np.maximum(disc, 0.0)) / A
    else:
        D = geo.source_distance
        h, w = shape
        pr, pc = geo.principal_point or ((h - 1) / 2.0, (w - 1) / 2.0)
        # source at the origin, the defect's plane at z = D, the ellipsoid's centre at
        # cen = ((col - pc) s, (row - pr) s, D). The ray through a pixel crosses that plane
        # at cen + q, q = (x, y, 0): solve (q + t u)^T M (q + t u) = 1 about the centre
        # (no cancellation for distant sources).
        X = xs[None, :] + (col - pc) * s
        Y = ys[:, None] + (row - pr) * s
        norm = np.sqrt(X * X + Y * Y + D * D)
        ux, uy, uz = X / norm, Y / norm, D / norm
        qx, qy = xs[None, :], ys[:, None]
        A = (M[0, 0] * ux * ux + M[1, 1] * uy * uy + M[2, 2] * uz * uz
             + 2 * (M[0, 1] * ux * uy + M[0, 2] * ux * uz + M[1, 2] * uy * uz))
        B = (M[0, 0] * ux + M[0, 1] * uy + M[0, 2] * uz) * qx \
            + (M[1, 0] * ux + M[1, 1] * uy + M[1, 2] * uz) * qy
        C = M[0, 0] * qx * qx + 2 * M[0, 1] * qx * qy + M[1, 1] * qy * qy - 1.0
        disc = B * B - A * C
        d = 2.0 * np.sqrt(np.maximum(disc, 0.0)) / A
    return d, (r0, r1, c0, c1)


def superimpose(image: np.ndarray, ell: Ellipsoid, geo: Geometry | None = None,
                x_max: float = DEFAULT_X_MAX, b: float | None = None,
                inplace: bool = False, blur_px: float = 0.0) -> Superimposed:
    """Superimpose an ellipsoidal void on a radiograph with Eq. 3.

    Parameters
    ----------
    image:
        ``(H, W)`` float image, grey values in [0, 1].
    ell:
        The defect (:class:`Ellipsoid`).
    geo:
        :class:`Geometry` (default: parallel beam, ``DEFAULT_MM_PER_PX``).
    x_max, b:
        ``B`` of the grey-value model: ``b`` if given, else :func:`offset_b` of ``ell.mu``
        and ``ell.x_max`` if the defect has one, else ``x_max`` (mm).
    inplace:
        Modify ``image`` instead of a copy.
    blur_px:
        Detector unsharpness: the defect's gain ``exp(mu d)`` is blurred by a Gaussian of
        this standard deviation (pixels) before it multiplies ``I - B``, so that its edge
        is as soft as a real void's in a radiograph that is itself blurred (0: a sharp
        edge, the paper's model).

    Without blur, pixels with ``d = 0`` are unchanged; with it, also those within
    ``3 blur_px`` of the shadow change. Results are clipped to [0, 1]. The returned box
    covers exactly the pixels with ``d > 0`` (clipped to the image): the void's geometric
    shadow, blurred or not.
    """
    if not (np.isfinite(blur_px) and blur_px >= 0):
        raise ValueError(f"blur_px {blur_px}: must be a finite number >= 0")
    img = np.asarray(image)
    if img.ndim != 2:
        raise ValueError("superimpose expects a 2-D grey image")
    out = img if inplace else img.copy()
    d, win = path_length(img.shape, ell, geo)
    r0, r1, c0, c1 = win
    box = None
    if d.size:
        hit = d > 0
        if hit.any():
            bb = b if b is not None else offset_b(
                ell.mu, ell.x_max if ell.x_max is not None else x_max)
            if blur_px > 0:
                _blurred_gain(out, d, win, ell.mu, bb, blur_px)
            else:
                sub = out[r0:r1, c0:c1]
                new = (sub.astype(np.float64) - bb) * np.exp(ell.mu * d) + bb
                np.clip(new, 0.0, 1.0, out=new)
                sub[hit] = new[hit].astype(out.dtype)
            rows = np.flatnonzero(hit.any(axis=1))
            cols = np.flatnonzero(hit.any(axis=0))
            box = (c0 + int(cols[0]), r0 + int(rows[0]), c0 + int(cols[-1]) + 1,
                   r0 + int(rows[-1]) + 1)
    return Superimposed(out, d, win, box)


def _blurred_gain(out: np.ndarray, d: np.ndarray, win: tuple[int, int, int, int], mu: float,
                  b: float, blur_px: float) -> None:
    """Apply Eq. 3 in place with the gain ``exp(mu d) - 1`` blurred by ``blur_px``
    (Gaussian sigma, pixels) over the window grown by ``3 blur_px`` (clipped to the
    image)."""
    r0, r1, c0, c1 = win
    h, w = out.shape
    m = int(np.ceil(3 * blur_px))
    R0, R1, C0, C1 = max(r0 - m, 0), min(r1 + m, h), max(c0 - m, 0), min(c1 + m, w)
    gain = np.zeros((R1 - R0, C1 - C0))
    gain[r0 - R0:r1 - R0, c0 - C0:c1 - C0] = np.expm1(mu * d)
    gain = ndi.gaussian_filter(gain, blur_px, mode="nearest", truncate=3.0)
    sub = out[R0:R1, C0:C1]
    new = (sub.astype(np.float64) - b) * (1.0 + gain) + b
    np.clip(new, 0.0, 1.0, out=new)
    sub[...] = new.astype(out.dtype)


# ------------------------------------------------------------------------ random defects


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A 3x3 rotation matrix uniformly distributed over SO(3) (unit quaternion method)."""
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    return Rotation.from_quat(q).as_matrix()


@dataclass(frozen=True)
class SamplerConfig:
    """Parameters of random defects.

    ``axes_mm``: range (mm) of each semi-axis, uniform. ``mu_range``: range (1/mm) of the
    absorption coefficient, uniform. ``x_max``: mm (fixes ``B``). ``geometry``: imaging.
    ``blur_px``: detector unsharpness applied to each defect (:func:`superimpose`).
    ``mu_log``: ``mu`` log-uniform in ``mu_range`` rather than uniform.
    ``x_max_range``: if set, each defect's own ``x_max`` (mm), log-uniform in this range,
    in place of ``x_max``: a mixture of contrasts (about ``d / x_max``), fainter ones
    included, as real voids have (``docs/simulation.md``).
    """

    axes_mm: tuple[float, float] = DEFAULT_AXES_MM
    mu_range: tuple[float, float] = DEFAULT_MU_RANGE
    x_max: float = DEFAULT_X_MAX
    geometry: Geometry = field(default_factory=Geometry)
    #: Gaussian blur (sigma, pixels) of each defect's edge (:func:`superimpose`)
    blur_px: float = 0.0
    #: draw ``mu`` log-uniformly in ``mu_range`` (as many faint defects per octave as
    #: strong ones) instead of uniformly
    mu_log: bool = False
    #: draw each defect's ``x_max`` log-uniformly in this range (mm); None: ``x_max``
    x_max_range: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.x_max) and self.x_max > 0):
            raise ValueError(f"x_max {self.x_max}: must be a positive number (mm)")
        if self.x_max_range is not None:
            lo, hi = (float(v) for v in self.x_max_range)
            if not (np.isfinite(lo) and np.isfinite(hi) and 0 < lo <= hi):
                raise ValueError(f"x_max_range {self.x_max_range}: need 0 < low <= high (mm)")
            object.__setattr__(self, "x_max_range", (lo, hi))


class DefectSampler:
    """Seeded sampler of random ellipsoidal defects centred inside a mask.

    ``mask``: ``(H, W)`` bool, True where a centre may fall (for instance the casting mask
    minus the real defects and a margin). Centres are uniform over the mask's pixels plus
    a uniform sub-pixel offset in [-0.5, 0.5). Orientations are uniform over SO(3).
    """

    def __init__(self, mask: np.ndarray, config: SamplerConfig | None = None) -> None:
        self.mask = np.asarray(mask, dtype=bool)
        self.config = config or SamplerConfig()
        self._candidates = np.flatnonzero(self.mask.ravel())
        if self._candidates.size == 0:
            raise ValueError("the mask holds no pixel where a defect could be centred")

    def sample(self, rng: np.random.Generator) -> Ellipsoid:
        cfg = self.config
        lo, hi = cfg.axes_mm
        axes = tuple(float(v) for v in rng.uniform(lo, hi, size=3))
        rot = random_rotation(rng)
        idx = self._candidates[rng.integers(self._candidates.size)]
        r, c = divmod(int(idx), self.mask.shape[1])
        off = rng.uniform(-0.5, 0.5, size=2)
        lo_mu, hi_mu = cfg.mu_range
        if cfg.mu_log:  # one draw either way: the stream stays aligned
            mu = float(np.exp(rng.uniform(np.log(lo_mu), np.log(hi_mu))))
        else:
            mu = float(rng.uniform(lo_mu, hi_mu))
        x_max = None
        if cfg.x_max_range is not None:  # drawn only then: the default stream is unchanged
            lo_x, hi_x = cfg.x_max_range
            x_max = float(np.exp(rng.uniform(np.log(lo_x), np.log(hi_x))))
        return Ellipsoid(axes, rot, (r + float(off[0]), c + float(off[1])), mu,  # type: ignore[arg-type]
                         x_max)


def add_random_defects(image: np.ndarray, n: int, rng: np.random.Generator,
                       mask: np.ndarray | None = None, config: SamplerConfig | None = None,
                       separate: bool = True, max_tries: int = 50
                       ) -> tuple[np.ndarray, list[tuple[Ellipsoid, tuple[int, int, int, int]]]]:
    """Add ``n`` random defects to a copy of ``image``; return it and ``(defect, box)``s.

    With ``separate`` a new defect's box may not overlap an earlier one (up to
    ``max_tries`` draws per defect, then it is skipped). Defects that hit no pixel are
    redrawn the same way. Boxes are 0-based half-open ``(x1, y1, x2, y2)``.
    """
    cfg = config or SamplerConfig()
    m = np.ones(image.shape, bool) if mask is None else mask
    sampler = DefectSampler(m, cfg)
    out = np.array(image, dtype=np.float64 if image.dtype == np.float64 else np.float32)
    placed: list[tuple[Ellipsoid, tuple[int, int, int, int]]] = []
    taken = np.empty((n, 4), np.int64)  # boxes placed so far, for the overlap test
    for _ in range(n):
        for _try in range(max_tries):
            ell = sampler.sample(rng)
            d, (r0, _, c0, _) = path_length(out.shape, ell, cfg.geometry)
            hit = d > 0
            if not hit.any():
                continue
            rows = np.flatnonzero(hit.any(axis=1))
            cols = np.flatnonzero(hit.any(axis=0))
            box = (c0 + int(cols[0]), r0 + int(rows[0]), c0 + int(cols[-1]) + 1,
                   r0 + int(rows[-1]) + 1)
            k = len(placed)
            if separate and k and _overlaps_any(box, taken[:k]):
                continue
            # only the defect's window is touched: no copy of the image per try
            superimpose(out, ell, cfg.geometry, x_max=cfg.x_max, inplace=True,
                        blur_px=cfg.blur_px)
            taken[k] = box
            placed.append((ell, box))
            break
    return out, placed


def simulate_defects(image: np.ndarray, n: int = 1, seed: int = 0,
                     mask: np.ndarray | None = None, config: SamplerConfig | None = None
                     ) -> tuple[np.ndarray, list[tuple[Ellipsoid, tuple[int, int, int, int]]]]:
    """Add up to ``n`` non-overlapping ellipsoidal defects (Eq. 3) to a copy of a grey
    image (a defect that finds no free place in 50 draws is skipped).

    ``image``: float ``(H, W)`` in [0, 1] (or uint8/uint16, scaled to [0, 1] first);
    ``mask``: where defect centres may fall (default: the casting mask); ``config``: the
    sampler's ranges (default :class:`SamplerConfig`). Returns the float image and one
    ``(ellipsoid, box)`` per defect placed (boxes ``(x1, y1, x2, y2)``, 0-based,
    half-open); :func:`defect_records` turns them into JSON. Seeded: the same arguments
    give the same defects."""
    img = as_image(image)
    m = casting_mask(img) if mask is None else mask
    return add_random_defects(img, n, np.random.default_rng(seed), mask=m, config=config)


def defect_records(placed: list[tuple[Ellipsoid, tuple[int, int, int, int]]]) -> list[dict]:
    """JSON-ready records of placed defects: ``box`` ``[x1, y1, x2, y2]``, ``axes_mm``,
    ``angles_deg``, ``center`` (row, col; pixels), ``mu`` and, for a defect drawn with its
    own, ``x_max`` (mm)."""
    return [{"box": [int(v) for v in b], "axes_mm": list(e.axes_mm),
             "angles_deg": e.angles_deg, "center": list(e.center), "mu": e.mu}
            | ({} if e.x_max is None else {"x_max": e.x_max})
            for e, b in placed]


def defect_patches(image: np.ndarray, mask: np.ndarray, config: SamplerConfig,
                   rng: np.random.Generator, n: int = 64, size: int = 32) -> np.ndarray:
    """``n`` ``size`` x ``size`` crops of ``image``, each with one random defect whose centre
    (in ``mask``, away from the border) is the crop's centre; float32 ``(n, size, size)``
    (the paper's Fig. 7)."""
    h, w = image.shape
    half = size // 2
    inner = np.zeros_like(mask, dtype=bool)
    inner[half:h - half, half:w - half] = mask[half:h - half, half:w - half]
    sampler = DefectSampler(inner if inner.any() else mask, config)
    out = np.zeros((n, size, size), np.float32)
    for i in range(n):
        ell = sampler.sample(rng)
        r0 = int(np.clip(round(ell.center[0]) - half, 0, h - size))
        c0 = int(np.clip(round(ell.center[1]) - half, 0, w - size))
        local = replace(ell, center=(ell.center[0] - r0, ell.center[1] - c0))
        out[i] = superimpose(image[r0:r0 + size, c0:c0 + size], local, config.geometry,
                             x_max=config.x_max, blur_px=config.blur_px).image
    return out


def _overlaps_any(a: tuple[int, int, int, int], boxes: np.ndarray) -> bool:
    """Whether half-open box ``a`` overlaps any row of ``boxes`` ``(N, 4)``."""
    return bool(np.any((a[0] < boxes[:, 2]) & (boxes[:, 0] < a[2])
                       & (a[1] < boxes[:, 3]) & (boxes[:, 1] < a[3])))


# ---------------------------------------------------------------------------- phantom


@dataclass(frozen=True)
class Phantom:
    """A synthetic radiograph. ``image``: ``(H, W)`` float32 in [0, 1]; ``thickness``:
    aluminium thickness (mm) along each ray; ``mask``: True on the casting; ``boxes``:
    ``(N, 4)`` simulated-defect boxes, 0-based half-open ``(x1, y1, x2, y2)``;
    ``defects``: the :class:`Ellipsoid` of each box."""

    image: np.ndarray
    thickness: np.ndarray
    mask: np.ndarray
    boxes: np.ndarray
    defects: list[Ellipsoid]


def wheel_thickness(shape: tuple[int, int] = (572, 768), center: tuple[float, float] | None = None,
                    radius: float | None = None, spokes: int = 5, rotation_deg: float = 0.0
                    ) -> np.ndarray:
    """Aluminium thickness (mm) of a wheel-like casting seen along the beam.

    Rim (thick outer ring), web (thin disk), ``spokes`` spokes separated by windows of air,
    hub (thick) with a centre bore and five bolt holes. Pixel ``(r, c)`` is at ``(r, c)``;
    ``center`` is ``(row, col)`` (default: right of the image centre, so the view cuts the
    wheel like GDXray's), ``radius`` the outer radius in pixels.
    """
    h, w = shape
    cy, cx = center if center is not None else (h * 0.55, w * 0.62)
    R = radius if radius is not None else 0.62 * min(h, w) * 1.25
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    dy, dx = yy - cy, xx - cx
    rho = np.hypot(dx, dy) / R
    theta = np.arctan2(dy, dx) - math.radians(rotation_deg)
    t = np.zeros(shape)
    t[rho <= 1.0] = 8.0                                   # web
    rim = (rho > 0.86) & (rho <= 1.0)
    t[rim] = 24.0 + 10.0 * np.cos((rho[rim] - 0.93) / 0.07 * math.pi / 2)  # rim profile
    # windows between spokes: annular sectors of air
    phase = np.mod(theta * spokes / (2 * math.pi), 1.0)
    window = (rho > 0.36) & (rho < 0.80) & (np.abs(phase - 0.5) < 0.30 - 0.1 * (rho - 0.36))
    t[window] = 0.0
    # spokes get thicker towards the hub
    spoke = (rho > 0.30) & (rho <= 0.86) & ~window
    t[spoke] += 10.0 * (1.0 - rho[spoke])
    hub = rho <= 0.30
    t[hub] = 30.0 - 20.0 * rho[hub]
    t[rho <= 0.08] = 0.0                                  # centre bore
    for k in range(5):                                    # bolt holes
        a = 2 * math.pi * k / 5 + math.radians(rotation_deg) + math.pi / 5
        by, bx = cy + 0.19 * R * math.sin(a), cx + 0.19 * R * math.cos(a)
        t[np.hypot(yy - by, xx - bx) < 0.035 * R] = 0.0
    return t


def render(thickness: np.ndarray, mu: float = 0.05, x_max: float = DEFAULT_X_MAX,
           blur_px: float = 1.2, noise: float = 0.008,
           rng: np.random.Generator | None = None) -> np.ndarray:
    """Radiograph of a thickness map through the absorption law, blurred and noisy.

    Grey value ``I = A exp(-mu t) + B`` with ``A``, ``B`` such that ``I = 1`` at ``t = 0``
    (air saturates) and ``I = 0`` at ``t = x_max``; Gaussian detector blur of
    ``blur_px`` pixels (sigma) and additive Gaussian noise of standard deviation ``noise``.
    Returns float32 in [0, 1].
    """
    bb = offset_b(mu, x_max)
    a = 1.0 - bb
    img = a * np.exp(-mu * np.asarray(thickness, dtype=np.float64)) + bb
    if blur_px > 0:
        img = ndi.gaussian_filter(img, blur_px)
    if noise > 0:
        rng = rng or np.random.default_rng(0)
        img = img + rng.normal(0.0, noise, img.shape)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def phantom(shape: tuple[int, int] = (572, 768), n_defects: int = 0, seed: int = 0,
            config: SamplerConfig | None = None, mu: float = 0.05) -> Phantom:
    """A seeded synthetic wheel radiograph, optionally with ``n_defects`` simulated voids.

    The casting mask is ``thickness > 0`` eroded by 6 pixels (defects stay inside the
    metal). Lets the demo and the tests run without GDXray.
    """
    rng = np.random.default_rng(seed)
    rot = float(rng.uniform(0, 72))
    t = wheel_thickness(shape, rotation_deg=rot)
    img = render(t, mu=mu, rng=rng)
    mask = ndi.binary_erosion(t > 0, iterations=6)
    boxes = np.zeros((0, 4))
    defects: list[Ellipsoid] = []
    if n_defects:
        img, placed = add_random_defects(img, n_defects, rng, mask=mask, config=config)
        defects = [e for e, _ in placed]
        boxes = np.asarray([b for _, b in placed], dtype=np.float64).reshape(-1, 4)
    return Phantom(img.astype(np.float32), t, mask, boxes, defects)
