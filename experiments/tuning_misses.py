"""What a model misses on the tuning images, and why: never lit, or lit and boxed otherwise
(issue 13, targets 3 and 4).

Runs each model (a file or a bundled name, with its card's detection settings, views
included) on the annotated tuning images (odd, n % 4 == 1) of ``--gdxray`` and sorts every
ground-truth box:

* ``found``: a detection overlaps it at IoU >= 0.5 (the rule of
  ``loso_localisation.miss_kinds``; one detection may count for two boxes here, where
  ``xdefect evaluate``'s matching gives it one: the AP column is the evaluation's);
* ``unlit``: the model's score map never reaches the detection threshold ``theta`` inside
  the box, so no region can start there (a recall miss: no setting of the boxes finds it);
* ``lit``: it does, but no detection matches it; its best-overlapping detection says how
  (``loso_localisation.miss_kinds``: ``nothing`` overlaps, ``merged`` with a neighbour,
  ``too small``, ``too big``).

For the unlit boxes it reports their peak probability (``p = (1 + score) / 2``, the median
and how many reach 0.05, 0.1, 0.2), and for the found and the unlit boxes their median
contrast (95th percentile of the 3x3-smoothed box minus the median of a 6-pixel ring, 8-bit
grey levels: ``defect_sizes.contrast``). Tuning images only: the settings of every model
here were chosen on them, nothing is chosen from this. Writes ``--out`` (JSON), read by
``experiments/results_tables.py`` (block ``tuning-misses``)::

    .venv/bin/python experiments/tuning_misses.py \\
        --model runs/seg/sim-ens4-wide-tta4/model.safetensors segnet-xdefect \\
        --out runs/tuning_misses.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from defect_sizes import contrast  # experiments/, beside this script
from loso_localisation import miss_kinds
from tqdm import tqdm

from xdefect import gdxray
from xdefect.detector import Detector
from xdefect.evaluate import ImageResult, iou_matrix, summarise
from xdefect.io import command_line, write_json

__all__ = ["KINDS", "P_LEVELS", "box_peaks", "main", "model_misses", "series_block"]

#: the ways a lit box is missed (``loso_localisation.miss_kinds``)
KINDS = ("nothing", "merged", "too small", "too big")
#: peak probabilities counted among the unlit boxes
P_LEVELS = (0.05, 0.1, 0.2)


def box_peaks(values: np.ndarray, boxes: np.ndarray, stride: int = 1, offset: int = 0
              ) -> np.ndarray:
    """The highest score of a score map (``values[i, j]`` at the pixel ``(i*stride +
    offset, j*stride + offset)``, row, column) at the pixels inside each box ``(x1, y1, x2,
    y2)`` (0-based, half-open); -1 where no scored pixel lies inside."""
    out = np.full(len(boxes), -1.0)
    for k, (x1, y1, x2, y2) in enumerate(np.asarray(boxes, float).reshape(-1, 4)):
        i1, i2 = int(np.ceil((y1 - offset) / stride)), int(np.ceil((y2 - offset) / stride))
        j1, j2 = int(np.ceil((x1 - offset) / stride)), int(np.ceil((x2 - offset) / stride))
        sub = values[max(i1, 0):max(i2, 0), max(j1, 0):max(j2, 0)]
        if sub.size:
            out[k] = float(sub.max())
    return out


def series_block(rows: list[dict], results: list[ImageResult]) -> dict:
    """The figures of one series (or of all): ``rows``, one per ground-truth box
    (``found``, ``lit``, ``kind``, ``peak``, ``contrast``); ``results``, its images'."""
    found = [r for r in rows if r["found"]]
    unlit = [r for r in rows if not r["found"] and not r["lit"]]
    lit = [r for r in rows if not r["found"] and r["lit"]]
    p = np.array([(1 + r["peak"]) / 2 for r in unlit])

    def med(v: list[float], nd: int = 2) -> float | None:
        return round(float(np.median(v)), nd) if v else None

    m = summarise(results)
    return {"boxes": len(rows), "found": len(found), "unlit": len(unlit),
            "lit_missed": {k: sum(r["kind"] == k for r in lit) for k in KINDS},
            "unlit_peak_p_median": med(list(p), 3),
            "unlit_peak_p_at_least": {f"{t:g}": int((p >= t).sum()) for t in P_LEVELS},
            "contrast_found": med([r["contrast"] for r in found]),
            "contrast_unlit": med([r["contrast"] for r in unlit]),
            "ap": m["ap"], "false_alarms": m["false_positives"], "images": len(results)}


def model_misses(model: str, roots: list[Path], threads: int | None = None) -> dict:
    """:func:`series_block` per series and pooled for ``model`` on the tuning images of
    ``roots`` (module docstring)."""
    det = Detector.load(model, device="cpu", threads=threads)
    theta = det.params.theta
    rows: dict[str, list[dict]] = {}
    results: dict[str, list[ImageResult]] = {}
    samples = [s for root in roots for s in gdxray.iter_samples(root, split="tuning")
               if s.annotated]
    for s in tqdm(samples, desc=det.name, unit="image"):
        dets, sm = det.run(s.image)
        boxes = np.array([d.box for d in dets], float).reshape(-1, 4)
        scores = np.array([d.score for d in dets], float)
        r = ImageResult(f"{s.record.series}/{s.record.number}", s.record.series, boxes,
                        scores, s.boxes)
        peaks = box_peaks(sm.values, s.boxes, sm.stride, sm.offset)
        m = iou_matrix(s.boxes, boxes) if len(boxes) and len(s.boxes) else None
        kinds = iter(miss_kinds(r))
        for k, b in enumerate(s.boxes):
            found = m is not None and float(m[k].max()) >= 0.5
            rows.setdefault(s.record.series, []).append(
                {"found": found, "lit": bool(peaks[k] >= theta), "peak": float(peaks[k]),
                 "kind": None if found else next(kinds),
                 "contrast": contrast(s.image, b)})
        results.setdefault(s.record.series, []).append(r)
    every = [x for v in rows.values() for x in v]
    return {"model": model, "name": model, "theta": theta, "tta": det.params.tta,
            "pooled": series_block(every, [x for v in results.values() for x in v]),
            "series": {k: series_block(rows[k], results[k]) for k in sorted(rows)}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", nargs="+", required=True)
    ap.add_argument("--gdxray", type=Path, nargs="+", default=[gdxray.default_root()])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=Path("runs/tuning_misses.json"))
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    models = [model_misses(m, a.gdxray, a.threads) for m in a.model]
    write_json(a.out, {"roots": [str(r) for r in a.gdxray], "split": "tuning",
                       "models": models, "command": command_line()})
    for d in models:
        p = d["pooled"]
        print(f"{d['name']}: AP {p['ap']:.4f}, {p['found']}/{p['boxes']} found, "
              f"{p['unlit']} never above theta {d['theta']:g}, lit but missed "
              f"{sum(p['lit_missed'].values())}")


if __name__ == "__main__":
    main()
