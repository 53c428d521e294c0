"""Compare real GDXray defect sizes and contrasts with simulated ellipsoidal defects.

Writes ``docs/img/defect_sizes.png`` (histograms only: no GDXray pixels) and prints one JSON
line with the percentiles behind the simulator's defaults (``DEFAULT_MM_PER_PX``,
``DEFAULT_MU_RANGE``). Uses the odd-numbered (training) images only.

    .venv/bin/python experiments/defect_sizes.py [--gdxray ROOT] [--out docs/img/defect_sizes.png]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import ndimage as ndi  # noqa: E402

from xdefect import gdxray  # noqa: E402
from xdefect import simulate as S  # noqa: E402


def box_size(b) -> float:
    """Geometric-mean side of a (x1, y1, x2, y2) box, pixels."""
    return float(np.sqrt((b[2] - b[0]) * (b[3] - b[1])))


def ring(img: np.ndarray, b) -> tuple[np.ndarray, np.ndarray]:
    """The box ``b`` (x1, y1, x2, y2) grown by 6 pixels (clipped to the image) and the
    mask of the box inside it (``~mask`` is the ring)."""
    x1, y1, x2, y2 = (int(v) for v in b)
    h, w = img.shape
    X1, Y1, X2, Y2 = max(x1 - 6, 0), max(y1 - 6, 0), min(x2 + 6, w), min(y2 + 6, h)
    big = img[Y1:Y2, X1:X2]
    inner = np.zeros(big.shape, bool)
    inner[y1 - Y1:y2 - Y1, x1 - X1:x2 - X1] = True
    return big, inner


def ring_contrast(big: np.ndarray, inner: np.ndarray) -> float:
    """95th percentile (3x3-smoothed) inside the box minus the median of the ring, in
    8-bit grey levels (``big``, ``inner``: :func:`ring`)."""
    return float(255 * (np.percentile(ndi.uniform_filter(big, 3)[inner], 95)
                        - np.median(big[~inner])))


def contrast(img: np.ndarray, b) -> float:
    """:func:`ring_contrast` of box ``b``."""
    return ring_contrast(*ring(img, b))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gdxray", type=Path, default=gdxray.default_root())
    ap.add_argument("--out", type=Path, default=Path("docs/img/defect_sizes.png"))
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    real_size: dict[str, list[float]] = {}
    real_con, sim_size, sim_con = [], [], []
    cfg = S.SamplerConfig()
    for smp in gdxray.iter_samples(a.gdxray, split="odd"):
        if not smp.annotated:
            continue
        for b in smp.boxes:
            real_size.setdefault(smp.record.series, []).append(box_size(b))
            real_con.append(contrast(smp.image, b))
        m = gdxray.casting_mask(smp.image)
        out, placed = S.add_random_defects(smp.image, 8, rng, mask=m, config=cfg)
        for _, b in placed:
            sim_size.append(box_size(b))
            sim_con.append(contrast(out, b))
    all_real = np.concatenate([np.asarray(v) for v in real_size.values()])
    pct = [5, 25, 50, 75, 95]
    doc = {
        "mm_per_px": cfg.geometry.mm_per_px, "axes_mm": list(cfg.axes_mm),
        "mu_range": list(cfg.mu_range), "x_max": cfg.x_max,
        "real_boxes": int(all_real.size), "simulated": len(sim_size),
        "real_size_pct": dict(zip(map(str, pct), np.percentile(all_real, pct).round(1).tolist(),
                                  strict=True)),
        "sim_size_pct": dict(zip(map(str, pct), np.percentile(sim_size, pct).round(1).tolist(),
                                 strict=True)),
        "real_contrast_pct": dict(zip(map(str, pct),
                                      np.percentile(real_con, pct).round(1).tolist(),
                                      strict=True)),
        "sim_contrast_pct": dict(zip(map(str, pct),
                                     np.percentile(sim_con, pct).round(1).tolist(), strict=True)),
        "real_size_median_per_series": {s: float(np.median(v)) for s, v in real_size.items()},
    }
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    bins = np.arange(0, 100, 3)
    ax[0].hist([np.asarray(v) for v in real_size.values()], bins=bins, stacked=True,
               label=list(real_size), alpha=0.8)
    ax[0].hist(sim_size, bins=bins, histtype="step", color="k", lw=2,
               weights=np.full(len(sim_size), all_real.size / len(sim_size)),
               label="simulated (scaled)")
    ax[0].axvline(32, ls="--", color="grey")
    ax[0].set_xlabel("box size sqrt(w*h), pixels (32 = patch)")
    ax[0].set_ylabel("boxes")
    ax[0].set_title(f"Defect sizes: real (odd images) vs simulated, {cfg.geometry.mm_per_px} mm/px")
    ax[0].legend(fontsize=8)
    cb = np.arange(-20, 160, 5)
    ax[1].hist(real_con, bins=cb, density=True, alpha=0.6, label="real")
    ax[1].hist(sim_con, bins=cb, density=True, histtype="step", color="k", lw=2,
               label="simulated")
    ax[1].set_xlabel("contrast, 8-bit grey levels")
    ax[1].set_title(f"Defect contrast, mu {cfg.mu_range[0]}-{cfg.mu_range[1]} /mm")
    ax[1].legend(fontsize=8)
    fig.tight_layout()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out, dpi=90)
    print(json.dumps(doc))


if __name__ == "__main__":
    main()
