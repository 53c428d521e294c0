"""Choose the detection parameters on the tuning images (never on the test images).

Tuning images: the odd-numbered images with ``number % 4 == 1`` of the annotated paper
series (``xdefect evaluate --split tuning``); a model built by ``xdefect dataset build``'s
defaults never trained on them. For each, the dense score map is computed once
at stride 4 (stride 8 is its every other window: dense scores do not depend on the
stride), then every combination of theta, disk radius, minimum area, box rule and stride
is scored by AP at IoU 0.5. Then dense and patch mode are compared with the chosen
parameters on a subset of the validation images (patch mode is slow): largest and mean
score difference, and the AP of each. ``--mode patch --base-stride 8`` runs the whole
search on patch-mode maps instead (the fair comparison of the two modes on all images).

Prints a JSON document (and writes it with ``--out``):

    .venv/bin/python experiments/tune_detection.py --model runs/xnet2/best.safetensors \\
        [--gdxray ROOT] [--compare-images 12] [--out runs/tune.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from xdefect import gdxray
from xdefect.checkpoint import load_model
from xdefect.detect import (
    DetectParams,
    ScoreMap,
    boxes_of_regions,
    detection_arrays,
    label_regions,
    regions,
    score_map_dense,
    score_map_patch,
)
from xdefect.evaluate import ImageResult, pr_curve, summarise
from xdefect.io import command_line, progress

GRID = {
    "theta": [0.0, 0.5, 0.9],
    "radius": [2, 6],
    "sigma": [0.0, 1.0],
    "a_min": [0, 150],
    # (rule, box_margin, nms, widen)
    "box": [("windows", 0, 0, -1), ("region", 0, 0, -1), ("centres", 8, 0, -1),
            ("peaks", 10, 0, -1), ("peaks", 10, 0, 4), ("peaks", 10, 0, 8),
            ("peaks", 12, 0, 4), ("blobs", 10, 20, 4), ("blobs", 10, 20, 8)],
    "stride": [4, 8],
}


def params_of(row: dict) -> DetectParams:
    rule, margin, nms, widen = row["box"]
    return DetectParams(theta=row["theta"], radius=row["radius"], a_min=row["a_min"],
                        box_rule=rule, box_margin=margin, nms=nms, sigma=row["sigma"],
                        widen=widen, stride=row["stride"])


def _sub(smap: ScoreMap, stride: int) -> ScoreMap:
    if stride == smap.stride:
        return smap
    f = stride // smap.stride
    return ScoreMap(smap.values[::f, ::f], stride, smap.image_shape)


def evaluate_maps(maps: dict, masks: dict, gts: dict, series: dict, params: DetectParams
                  ) -> dict:
    results = []
    for key, smap in maps.items():
        dets = regions(_sub(smap, params.stride), params, masks[key])
        results.append(ImageResult(key, series[key], *detection_arrays(dets), gts[key]))
    return summarise(results)


def grid_search(maps: dict, masks: dict, gts: dict, series: dict) -> list[dict]:
    """AP of every grid combination; the labelling is shared by the combinations that
    differ only in minimum area and box rule."""
    dets: dict = {}
    for stride, theta, radius, sigma in itertools.product(GRID["stride"], GRID["theta"],
                                                          GRID["radius"], GRID["sigma"]):
        labs = {k: label_regions(_sub(m, stride), theta, radius, masks[k], sigma)
                for k, m in maps.items()}
        for a_min, (rule, margin, nms, widen) in itertools.product(GRID["a_min"], GRID["box"]):
            if sigma and rule not in ("peaks", "blobs"):
                continue  # smoothing only moves maxima: the other rules ignore it
            row = {"theta": theta, "radius": radius, "sigma": sigma, "a_min": a_min,
                   "box": (rule, margin, nms, widen), "stride": stride}
            results = []
            for k, lab in labs.items():
                d = [] if lab is None else boxes_of_regions(lab, a_min, rule, margin, theta,
                                                            nms, widen)
                results.append(ImageResult(k, series[k], *detection_arrays(d), gts[k]))
            dets[len(dets)] = (row, pr_ap(results))
    return [{**row, "ap": ap, "ap11": ap11} for row, (ap, ap11) in dets.values()]


def pr_ap(results: list[ImageResult]) -> tuple[float, float]:
    c = pr_curve(results)
    return c.ap(), c.ap11()


def compare_modes(model, maps: dict, masks: dict, gts: dict, series: dict, images: dict,
                  best_p: DetectParams, n: int) -> dict:
    """Dense against patch mode on ``n`` seeded images, both with ``best_p`` at stride 4
    (``maps``: the dense stride-4 maps)."""
    rng = np.random.default_rng(0)
    subset = sorted(rng.choice(sorted(maps), min(n, len(maps)), replace=False))
    p4 = replace(best_p, stride=4)
    pmaps, diffs = {}, []
    t0 = time.perf_counter()
    for k in progress(iterable=subset, desc="patch mode", unit="image"):
        pmaps[k] = score_map_patch(model, images[k], 4)
        diffs.append(np.abs(pmaps[k].values - maps[k].values))
    patch_s = (time.perf_counter() - t0) / len(subset)
    sub = {k: maps[k] for k in subset}
    comp = {
        "images": subset,
        "max_abs_score_diff": float(max(d.max() for d in diffs)),
        "mean_abs_score_diff": float(np.mean([d.mean() for d in diffs])),
        "ap_dense": evaluate_maps(sub, masks, gts, series, p4)["ap"],
        "ap_patch": evaluate_maps(pmaps, masks, gts, series, p4)["ap"],
        "patch_s_per_image": patch_s,
    }
    # patch mode's own best theta on the subset (its scores are distributed differently)
    comp["ap_patch_best_theta"] = max(
        (evaluate_maps(pmaps, masks, gts, series, replace(p4, theta=t))["ap"], t)
        for t in GRID["theta"])
    return comp


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--gdxray", type=Path, default=gdxray.default_root())
    ap.add_argument("--split", default="tuning", choices=("tuning", "val", "odd"),
                    help="image split searched (val: old name of tuning)")
    ap.add_argument("--series", nargs="+", default=None,
                    help="series (default: the paper's annotated series)")
    ap.add_argument("--compare-images", type=int, default=12)
    ap.add_argument("--mode", choices=("dense", "patch"), default="dense",
                    help="score maps of the grid search (patch: slow; use --base-stride 8)")
    ap.add_argument("--base-stride", type=int, default=4, choices=(4, 8),
                    help="stride of the computed maps (the grid uses it and its multiples)")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    model, card = load_model(a.model)
    maps, masks, gts, series, images = {}, {}, {}, {}, {}
    series_used = gdxray.protocol_series(a.gdxray, a.series, gdxray.PAPER_ANNOTATED_SERIES)
    samples = [s for s in gdxray.iter_samples(a.gdxray, series_used, split=a.split)
               if s.annotated]
    t0 = time.perf_counter()
    bar = progress(total=len(samples), desc="score maps", unit="image")
    for smp in samples:
        k = smp.record.stem
        maps[k] = (score_map_dense(model, smp.image, a.base_stride) if a.mode == "dense"
                   else score_map_patch(model, smp.image, a.base_stride))
        masks[k] = gdxray.casting_mask(smp.image)
        gts[k], series[k], images[k] = smp.boxes, smp.record.series, smp.image
        bar.update()
    bar.close()
    map_s = (time.perf_counter() - t0) / len(samples)
    GRID["stride"] = [st for st in GRID["stride"] if st % a.base_stride == 0]
    table = grid_search(maps, masks, gts, series)
    table.sort(key=lambda r: -r["ap"])
    best_p = params_of(table[0])
    best = replace(best_p, mode=a.mode).to_dict()
    best_m = evaluate_maps(maps, masks, gts, series, best_p)
    comp = None
    if a.mode == "dense" and a.compare_images > 0:
        comp = compare_modes(model, maps, masks, gts, series, images, best_p,
                             a.compare_images)
        comp["dense_s_per_image"] = map_s
    doc = {"model": str(a.model), "split": gdxray.canonical_split(a.split),
           "command": command_line(), "gdxray": str(a.gdxray), "series": series_used,
           "images": len(maps),
           "gt_boxes": int(sum(len(g) for g in gts.values())), "best": best,
           "best_metrics": {k: best_m[k] for k in ("ap", "ap11", "true_positives",
                                                   "false_positives", "missed")},
           "best_per_series": {s: v["ap"] for s, v in best_m["per_series"].items()},
           "mode": a.mode, "base_stride": a.base_stride, "map_s_per_image": map_s,
           "top10": table[:10], "dense_vs_patch": comp,
           "grid": {k: [list(v) if isinstance(v, tuple) else v for v in vs]
                    for k, vs in GRID.items()}}
    text = json.dumps(doc, indent=2)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
