"""How sharp are real defects' edges, and how much blur makes simulated ones match?

For every ground-truth box of the train images (odd, n % 4 == 3) of the six annotated
paper series, and for ellipsoidal defects simulated on the same images (8 per image,
centres in the casting mask) at each ``--blur`` (Gaussian sigma of the defect's gain,
``SamplerConfig.blur_px``), measures

* contrast: 95th percentile (3x3 mean) inside the box minus the median of a 6-px ring;
* edge slope: the 95th percentile of the gradient magnitude (Gaussian derivative, sigma
  0.7 px: the noise is smoothed, edges barely) over the box grown by 3 px, divided by the
  contrast (1/px; a sharp step of height C has slope about C per pixel, a blurred one less);
* centre contrast: the mean of the box's middle third minus the ring's median (signed: a
  dark defect counts negative; the 95th-percentile contrast above cannot), for the real
  defects per series and for simulated ones at each ``--x-max`` (mm; Eq. 3's ``B`` follows
  from it, and with it the contrast).

Only defects of contrast >= 8 grey levels count (below, the slope is noise). Prints JSON
and writes ``--out``: the percentiles of each measure, real and per blur, and the blur
whose median slope is closest to the real one (chosen on train images only)::

    .venv/bin/python experiments/defect_sharpness.py --out runs/defect_sharpness.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from defect_sizes import ring, ring_contrast
from scipy import ndimage as ndi

from xdefect import gdxray
from xdefect import simulate as S
from xdefect.io import command_line, write_json

PCT = (10, 25, 50, 75, 90)
MIN_CONTRAST = 8.0


def measures(img: np.ndarray, grad: np.ndarray, b) -> tuple[float, float]:
    """(contrast in 8-bit grey levels, edge slope per pixel relative to the contrast)."""
    big, inner = ring(img, b)
    if inner.all() or not inner.any():
        return float("nan"), float("nan")
    c = ring_contrast(big, inner)
    x1, y1, x2, y2 = (int(v) for v in b)
    h, w = img.shape
    g = grad[max(y1 - 3, 0):min(y2 + 3, h), max(x1 - 3, 0):min(x2 + 3, w)]
    return float(c), float(255 * np.percentile(g, 95) / c) if c > 0 else float("nan")


def centre_contrast(img: np.ndarray, b) -> float:
    """Mean of the box's middle third minus the median of a 6-px ring, grey levels."""
    big, inner = ring(img, b)
    if inner.all():
        return float("nan")
    x1, y1, x2, y2 = (int(v) for v in b)
    cy0, cx0 = y1 + (y2 - y1) // 3, x1 + (x2 - x1) // 3
    cy1, cx1 = max(y2 - (y2 - y1) // 3, cy0 + 1), max(x2 - (x2 - x1) // 3, cx0 + 1)
    return float(255 * (img[cy0:cy1, cx0:cx1].mean() - np.median(big[~inner])))


def gradient(img: np.ndarray) -> np.ndarray:
    return ndi.gaussian_gradient_magnitude(img.astype(np.float64), 0.7)


def pct(values: list[float]) -> dict[str, float]:
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    return {str(p): round(float(np.percentile(v, p)), 3) for p in PCT} | {"n": int(v.size)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gdxray", type=Path, default=None)
    ap.add_argument("--blur", type=float, nargs="+", default=[0.0, 0.5, 1.0, 1.5, 2.0, 3.0])
    ap.add_argument("--mu", type=float, nargs=2, default=(0.004, 0.04))
    ap.add_argument("--x-max", type=float, nargs="+", default=[60.0, 120.0, 240.0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("runs/defect_sharpness.json"))
    a = ap.parse_args()
    root = a.gdxray or gdxray.default_root()
    real_c, real_s = [], []
    sim: dict[float, tuple[list, list]] = {bl: ([], []) for bl in a.blur}
    real_centre: dict[str, list[float]] = {}
    sim_centre: dict[float, list[float]] = {x: [] for x in a.x_max}
    for smp in gdxray.iter_samples(root, split="train"):
        if not smp.annotated:
            continue
        grad = gradient(smp.image)
        for b in smp.boxes:
            real_centre.setdefault(smp.record.series, []).append(
                centre_contrast(smp.image, b))
            c, s = measures(smp.image, grad, b)
            real_c.append(c)
            if c >= MIN_CONTRAST:
                real_s.append(s)
        mask = gdxray.casting_mask(smp.image)
        for bl in a.blur:  # the same defects at each blur: one seed per image
            rng = np.random.default_rng([a.seed, smp.record.number, int(smp.record.series[1:])])
            cfg = S.SamplerConfig(mu_range=tuple(a.mu), blur_px=bl)
            out, placed = S.add_random_defects(smp.image, 8, rng, mask=mask, config=cfg)
            g = gradient(out)
            for _, b in placed:
                c, s = measures(out, g, b)
                sim[bl][0].append(c)
                if c >= MIN_CONTRAST:
                    sim[bl][1].append(s)
        for xm in a.x_max:
            rng = np.random.default_rng([a.seed, smp.record.number, int(smp.record.series[1:])])
            cfg = S.SamplerConfig(mu_range=tuple(a.mu), x_max=xm)
            out, placed = S.add_random_defects(smp.image, 8, rng, mask=mask, config=cfg)
            sim_centre[xm] += [centre_contrast(out, b) for _, b in placed]
    doc = {"command": command_line(), "mu_range": list(a.mu), "min_contrast": MIN_CONTRAST,
           "real": {"contrast": pct(real_c), "slope": pct(real_s)},
           "simulated": {str(bl): {"contrast": pct(c), "slope": pct(s)}
                         for bl, (c, s) in sim.items()},
           "centre_contrast": {
               "real": {s: pct(v) for s, v in real_centre.items()}
               | {"all": pct(sum(real_centre.values(), []))},
               "simulated_x_max": {f"{x:g}": pct(v) for x, v in sim_centre.items()}}}
    target = doc["real"]["slope"]["50"]
    doc["closest_blur"] = min(a.blur, key=lambda bl: abs(doc["simulated"][str(bl)]["slope"]["50"]
                                                         - target))
    print(json.dumps(doc, indent=1))
    write_json(a.out, doc)


if __name__ == "__main__":
    main()
