"""Diagnosis (issue 13, target 1): would an image pyramid help the fold models on castings
never seen?

Large shrinkage areas (C0031, C0036) light several separate regions at full resolution;
at half resolution the same segmenter sees them whole within its reach. For each fold of
a leave-series-out ensemble (``fcn_detector.py --ensemble``), the members' mean
probability map of every held-out image is computed at full resolution (level 1) and on
the image downsampled by 2 (level 2, :func:`xdefect.detect.downsample`; its map repeated
back to full size), and the fold's own chosen settings (threshold, minimum area, growth,
join: its results file) box:

* ``L1``: level 1 alone (the fold's figure);
* ``L2``: level 2 alone;
* ``max`` / ``mean``: the two maps' pixelwise maximum / mean;
* ``merge-iou`` / ``merge-iom``: both levels' boxes pooled, a box dropped when a
  higher-scored box of the other level overlaps it by IoU / intersection over the smaller
  box >= 0.5 (:func:`xdefect.detect.merge_detections`, the library's pyramid merge).

It reads the held-out labels to score every variant, so it diagnoses potential; nothing
here may be chosen from it. Writes ``runs/loso_pyramid.json`` (pooled and per series per
variant), read by ``experiments/results_tables.py`` (block ``loso-pyramid``)::

    .venv/bin/python experiments/loso_pyramid.py --name fcn-ens5 --suffix=-amin-grow-join \\
        --ensemble fcn-bghard fcn-bghard-s1 fcn-bghard-s2 fcn-bg-s2 fcn-bglcn-s2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import fcn_detector as F  # experiments/, beside this script
import numpy as np
import torch

from xdefect.detect import Detection, detection_arrays, downsample, merge_detections
from xdefect.evaluate import ImageResult
from xdefect.io import command_line, write_json
from xdefect.segment import probability_map

__all__ = ["VARIANTS", "main", "upsample", "variants"]

VARIANTS = ("L1", "L2", "max", "mean", "merge-iou", "merge-iom")


def upsample(p2: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A level-2 map at full size: each pixel repeated 2 x 2, the rows and columns the
    downsampling dropped filled from the nearest edge."""
    u = np.repeat(np.repeat(p2, 2, 0), 2, 1)
    u = np.pad(u, ((0, max(0, shape[0] - u.shape[0])), (0, max(0, shape[1] - u.shape[1]))),
               mode="edge")
    return u[:shape[0], :shape[1]]


def variants(p1: np.ndarray, p2: np.ndarray, mask: np.ndarray, setting: tuple
             ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Boxes and scores of every :data:`VARIANTS` at one fold setting (``p2`` already at
    full size)."""
    def boxes(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return F.grid_detections(p, mask, [setting])[setting]

    out = {"L1": boxes(p1), "L2": boxes(p2), "max": boxes(np.maximum(p1, p2)),
           "mean": boxes((p1 + p2) / 2)}
    levels = [[Detection(tuple(b), float(s), 0) for b, s in zip(*out[k], strict=True)]
              for k in ("L1", "L2")]
    for rule in ("iou", "iom"):
        b, s = detection_arrays(merge_detections(levels, 0.5, rule))
        out[f"merge-{rule}"] = (b, s)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", required=True, help="the ensemble run whose folds chose")
    ap.add_argument("--suffix", default="-amin-grow-join")
    ap.add_argument("--ensemble", nargs="+", required=True)
    ap.add_argument("--kfold", type=int, default=5)
    ap.add_argument("--work", type=Path, default=Path("runs/fcn"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("runs/loso_pyramid.json"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    gd, ex = Path("../shared/data/gdxray"), Path("../shared/data/gdxray-extra")
    roots = {s: gd for s in F.annotated_series(gd)} | {s: ex for s in F.annotated_series(ex)}
    names = sorted(roots)
    res: dict[str, list[ImageResult]] = {v: [] for v in VARIANTS}
    t0 = time.perf_counter()
    for i in range(a.kfold):
        d = json.loads((a.work / f"{a.name}-loso{a.kfold}" / f"fold{i}" /
                        f"results{a.suffix}.json").read_text())
        setting = (d["threshold"], d["a_min"], d["grow"], d.get("extent_fraction", 0.0),
                   d.get("join", -1), d.get("link", 1.0))
        nets, _ = F.ensemble(argparse.Namespace(work=a.work, kfold=a.kfold, fold=i,
                                                ensemble=a.ensemble, channels=16))
        for key, s, im in [x for h in names[i::a.kfold]
                           for x in F.scored_images(roots[h], [h], "all")]:
            p1 = np.mean([probability_map(n, im.pixels) for n in nets], axis=0)
            p2 = upsample(np.mean([probability_map(n, downsample(im.pixels, 2))
                                   for n in nets], axis=0), p1.shape)
            for v, (b, sc) in variants(p1, p2, im.mask, setting).items():
                res[v].append(ImageResult(key, s, b, sc, im.boxes.astype(float), None))
    write_json(a.out, {"run": a.name, "suffix": a.suffix, "members": a.ensemble,
                       "minutes": round((time.perf_counter() - t0) / 60, 1),
                       "variants": {v: F.figures(rs) for v, rs in res.items()},
                       "command": command_line()})
    for v, rs in res.items():
        print(v, F.figures(rs)["ap"])


if __name__ == "__main__":
    main()
