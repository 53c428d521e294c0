"""Benchmark of the patch dataset builder on a real GDXray build (wholeimage, E100/G000).

Builds the paper-scale per-image count (2,200 + 2,200 patches) from the first ``--images``
odd-numbered images, times it end to end (masks, sampling, simulation, writing, checksums),
and projects the time of the full 147-image, ~640,000-patch build. Reference: the issue's
target of 10 minutes for that build. Prints one JSON line.

    .venv/bin/python bench/dataset.py [--gdxray ROOT] [--images 20] [--workers 0]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time
from pathlib import Path

from xdefect import gdxray
from xdefect.patches import BuildArgs
from xdefect.pipelines import build_dataset

FULL_PATCHES = 147 * 2 * 2200  # the paper's E100/G000 at 2,200 + 2,200 per odd image
TARGET_MIN = 10.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gdxray", type=Path, default=gdxray.default_root())
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--per-image", type=int, default=2200)
    ap.add_argument("--workers", type=int, default=0)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="xdefect-bench-"))
    try:
        t = time.perf_counter()
        man = build_dataset(BuildArgs(gdxray=str(a.gdxray), out=str(tmp / "ds"),
                                      per_image=a.per_image, limit_images=a.images,
                                      workers=a.workers))
        dt = time.perf_counter() - t
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rate = man["n"] / dt
    proj = FULL_PATCHES / rate / 60
    peak_mb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    print(json.dumps({
        "patches": man["n"], "images": a.images, "seconds": round(dt, 2),
        "patches_per_s": round(rate, 1), "projected_minutes_640k": round(proj, 2),
        "reference_minutes_640k": TARGET_MIN, "ratio_vs_reference": round(TARGET_MIN / proj, 2),
        "peak_rss_mb_per_process": round(peak_mb, 1), "full_patches": FULL_PATCHES,
    }))


if __name__ == "__main__":
    main()
