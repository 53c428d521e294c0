"""Benchmark of the ellipsoidal defect simulator (``xdefect.simulate.superimpose``).

Reference, measured in the same run: a straightforward per-pixel Python loop of the same
model (for every pixel of the image: the ray-ellipsoid quadratic, then Eq. 3), as the Xvis
``Xsimdefect`` reference does; it is checked to give the same image to 1e-9.

Prints one JSON line: ``ms_per_defect_image`` (572x768 image, defect added in place),
``ms_per_defect_image_copy`` (same, into a new image), ``ms_per_defect_patch`` (32x32
crop), ``reference_ms_per_defect_image``, ``speedup_image``, ``max_abs_diff``.
Targets: <= 2 ms per defect on the image, <= 0.5 ms on a patch, >= 50x the loop.

    .venv/bin/python bench/simulate.py [--defects 300] [--reference-defects 3]
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np

from xdefect import simulate as S


def reference_superimpose(image: np.ndarray, ell: S.Ellipsoid, geo: S.Geometry,
                          x_max: float) -> np.ndarray:
    """Per-pixel loop over the whole image (parallel beam), same model as ``superimpose``."""
    out = image.astype(np.float64).copy()
    M = ell.metric()
    s = geo.mm_per_px
    row, col = ell.center
    b = S.offset_b(ell.mu, x_max)
    h, w = image.shape
    A = M[2, 2]
    for r in range(h):
        y = (r - row) * s
        for c in range(w):
            x = (c - col) * s
            B = y * M[1, 2] + x * M[0, 2]
            C = M[0, 0] * x * x + 2 * M[0, 1] * x * y + M[1, 1] * y * y - 1.0
            disc = B * B - A * C
            if disc > 0:
                d = 2.0 * math.sqrt(disc) / A
                v = (out[r, c] - b) * math.exp(ell.mu * d) + b
                out[r, c] = min(max(v, 0.0), 1.0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--defects", type=int, default=300)
    ap.add_argument("--reference-defects", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    ph = S.phantom(seed=a.seed)
    image = ph.image.astype(np.float64)
    cfg = S.SamplerConfig()
    sampler = S.DefectSampler(ph.mask, cfg)
    defects = [sampler.sample(rng) for _ in range(a.defects)]

    work = image.copy()
    S.superimpose(work, defects[0], cfg.geometry, cfg.x_max, inplace=True)  # warm-up
    t = time.perf_counter()
    for e in defects:
        S.superimpose(work, e, cfg.geometry, cfg.x_max, inplace=True)
    ms_image = (time.perf_counter() - t) * 1e3 / len(defects)

    t = time.perf_counter()
    for e in defects:
        S.superimpose(image, e, cfg.geometry, cfg.x_max)
    ms_image_copy = (time.perf_counter() - t) * 1e3 / len(defects)

    patch = image[200:232, 300:332].copy()
    local = [S.Ellipsoid(e.axes_mm, e.rotation, (rng.uniform(12, 20), rng.uniform(12, 20)), e.mu)
             for e in defects]
    t = time.perf_counter()
    for e in local:
        S.superimpose(patch, e, cfg.geometry, cfg.x_max)
    ms_patch = (time.perf_counter() - t) * 1e3 / len(local)

    diffs = []
    t = time.perf_counter()
    for e in defects[: a.reference_defects]:
        ref = reference_superimpose(image, e, cfg.geometry, cfg.x_max)
        ours = S.superimpose(image, e, cfg.geometry, cfg.x_max).image
        diffs.append(float(np.abs(ref - ours).max()))
    ref_ms = (time.perf_counter() - t) * 1e3 / a.reference_defects
    # the timed loop above also ran ours once per defect: take it out
    ref_ms -= ms_image_copy
    max_diff = max(diffs)
    if max_diff > 1e-9:
        raise SystemExit(f"reference and vectorised images differ by {max_diff:g} > 1e-9")
    print(json.dumps({
        "ms_per_defect_image": round(ms_image, 4),
        "ms_per_defect_image_copy": round(ms_image_copy, 4),
        "ms_per_defect_patch": round(ms_patch, 4),
        "reference_ms_per_defect_image": round(ref_ms, 2),
        "speedup_image": round(ref_ms / ms_image, 1),
        "max_abs_diff": max_diff,
        "image": list(image.shape), "defects": a.defects,
        "reference": "per-pixel Python loop of the same model (bench/simulate.py)",
        "targets": {"ms_per_defect_image": 2.0, "ms_per_defect_patch": 0.5, "speedup_image": 50},
    }))


if __name__ == "__main__":
    main()
