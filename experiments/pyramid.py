"""Image pyramid and box extent: do downsampled copies of the image, or boxes grown to the
extent of each maximum's windows, find the large defects?

Defects larger than the 32-pixel window (C0010, C0031, C0034 of the paper's series; most of
``gdxray-extra``: median box side 40-130 px in five of its series) light several separate
maxima of the score map, each boxed at window size, so none matches the ground-truth box at
IoU 0.5. Downsampled by 2 or 4 (block mean, :func:`xdefect.detect.downsample`), the same
defect fits the window. This script measures it for one model without retraining: for every
image of each ``--data ROOT SPLIT`` set, the score map of each pyramid level is computed once
(the model card's mode and stride), then every pyramid configuration of the grid (levels,
merge rule, merge overlap; and the ``extent`` box rule with several ``widen``) is scored
from the cached maps with the library's own :func:`xdefect.detect.pyramid_regions`.
Everything else is the card's detection settings.

Choose on the tuning images and on castings the model never saw (``gdxray-extra`` for the
bundled models, which trained on the paper's series only); test images are reported for the
chosen configuration only. Writes ``--out`` JSON (one row per configuration and set: AP,
found, false alarms per image, per series) and prints a table::

    .venv/bin/python experiments/pyramid.py --model xnet2-xdefect \\
        --data ../shared/data/gdxray tuning --data ../shared/data/gdxray-extra odd \\
        --out runs/pyramid-tuning.json
"""

from __future__ import annotations

import argparse
import itertools
import time
from dataclasses import replace
from pathlib import Path

from xdefect import gdxray
from xdefect.detect import (
    DetectParams,
    detection_arrays,
    downsample,
    downsample_mask,
    pyramid_regions,
    score_map,
)
from xdefect.detector import Detector
from xdefect.evaluate import ImageResult, summarise
from xdefect.io import command_line, progress, write_json
from xdefect.protocol import select
from xdefect.windows import PATCH

#: the configurations scored: (levels, merge rule, merge overlap, box rule, widen); box
#: rule None: the card's
GRID = [((1,), "iou", 0.5, None, None)] + [
    (levels, rule, overlap, None, None)
    for levels, rule, overlap in itertools.product(
        [(1, 2), (1, 2, 4), (1, 4), (2,), (2, 4)], ["iou", "iom"], [0.3, 0.5])
] + [
    (levels, "iou", 0.5, "extent", widen)
    for levels, widen in itertools.product([(1,), (1, 2)], [0, 4, 8])
]


def cache_levels(det: Detector, root: Path, split: str, factors: list[int]) -> dict:
    """Score maps and masks of every level of every annotated image of ``split``."""
    sel = select(root, None, split)
    out = {}
    for rec in progress(iterable=sel.records, desc=f"{root.name} {split}", unit="image"):
        smp = gdxray.load_sample(rec, sel.ground_truth[rec.series])
        mask = gdxray.casting_mask(smp.image)
        maps, masks = {}, {}
        for f in factors:
            img = downsample(smp.image, f)
            if min(img.shape) < PATCH:
                continue
            masks[f] = downsample_mask(mask, f)
            maps[f] = score_map(det.model, img, det.params, det.batch, det.device)
        out[rec.stem] = (rec.series, smp.image.shape, maps, masks, smp.boxes)
    return out


def score(cache: dict, params: DetectParams) -> dict:
    """Pooled and per-series metrics of one configuration over the cached levels."""
    results = []
    for key, (series, shape, maps, masks, gt) in cache.items():
        use = {f: maps[f] for f in params.scales if f in maps}
        dets = pyramid_regions(use, {f: masks[f] for f in use}, params, shape) if use else []
        results.append(ImageResult(key, series, *detection_arrays(dets), gt))
    m = summarise(results)
    n = max(m["images"], 1)

    def row(b: dict) -> dict:
        return {"ap": b["ap"], "found": b["true_positives"], "boxes": b["gt_boxes"],
                "false_alarms_per_image": b["false_positives"] / max(b["images"], 1)}

    return {**row(m), "false_alarms_per_image": m["false_positives"] / n,
            "per_series": {s: row(b) for s, b in m["per_series"].items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model name or path (default: bundled)")
    ap.add_argument("--data", nargs=2, action="append", metavar=("ROOT", "SPLIT"),
                    required=True, help="a GDXray root and an image split (repeatable)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    det = Detector.load(a.model, device="cpu", threads=a.threads)
    factors = sorted({f for levels, *_ in GRID for f in levels})
    rows, costs = [], {}
    for root, split in a.data:
        t0 = time.perf_counter()
        cache = cache_levels(det, Path(root), split, factors)
        costs[f"{root}:{split}"] = {"images": len(cache), "s": time.perf_counter() - t0}
        for levels, rule, overlap, box_rule, widen in GRID:
            p = replace(det.params, scales=levels, merge_rule=rule, merge=overlap,
                        box_rule=box_rule or det.params.box_rule,
                        widen=det.params.widen if widen is None else widen)
            rows.append({"root": root, "split": split, "scales": list(levels),
                         "merge_rule": rule, "merge": overlap, "box_rule": p.box_rule,
                         "widen": p.widen, **score(cache, p)})
            r = rows[-1]
            print(f"{Path(root).name:>14} {split:>7} {str(levels):>10} {rule} {overlap} "
                  f"{p.box_rule} {p.widen}: "
                  f"AP {r['ap']:.4f} found {r['found']}/{r['boxes']} "
                  f"FA/image {r['false_alarms_per_image']:.2f}", flush=True)
    write_json(a.out, {"model": det.name, "params": det.params.to_dict(), "grid": rows,
                       "cost": costs, "command": command_line()})


if __name__ == "__main__":
    main()
