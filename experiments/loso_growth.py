"""What box growth each casting never seen would need: a diagnosis, not a choice.

A leave-series-out fold of ``fcn_detector.py`` chooses one box growth (pixels added to
each side) on the tuning images of the series it trained on and applies it to the held-out
series. GDXray's boxes are drawn differently per casting (small tight boxes on one, whole
irregular regions on another), so one growth may suit the training castings and not the
new one. This script takes a finished run's held-out detections, takes each fold's own
growth off again, and scores every held-out series at each growth of ``--grows`` (and each
scale factor of ``--scales``: box sides multiplied about the centre), pooled and per
series (AP at IoU 0.5, COCO matching, as ``xdefect evaluate``); with ``--joins``, also
at each fold's own growth with the boxes at most J pixels apart joined
(``DetectParams.join``). Everything is read from
the fold result files; nothing is chosen here (the held-out images' labels are read, so no
figure of this script is a leave-series-out result: it says what limits one).

The fold boxes were clipped to the image after growing, so a box at the image border is
off by what the clipping took (its size is not stored); such boxes are few. Reads
``runs/fcn/NAME-loso5/fold*/results<suffix>.json``; writes ``--out`` (JSON, read by
``experiments/results_tables.py``)::

    .venv/bin/python experiments/loso_growth.py --name fcn-ens5 --suffix=-amin-grow
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from xdefect.detect import Detection, detection_arrays, join_detections
from xdefect.evaluate import ImageResult, summarise
from xdefect.io import command_line, write_json


def boxes_at(boxes: np.ndarray, grown: int, grow: float, scale: float = 1.0) -> np.ndarray:
    """``boxes`` ``(N, 4)`` ``(x1, y1, x2, y2)`` that were grown by ``grown`` pixels a
    side, with that taken off, their sides multiplied by ``scale`` about the centre, then
    ``grow`` pixels added a side."""
    b = np.asarray(boxes, float).reshape(-1, 4) + np.array([grown, grown, -grown, -grown])
    centre, half = (b[:, :2] + b[:, 2:]) / 2, (b[:, 2:] - b[:, :2]) / 2 * scale + grow
    return np.concatenate([centre - half, centre + half], axis=1)


def joined(boxes: np.ndarray, scores: list[float], join: int) -> tuple[np.ndarray, np.ndarray]:
    """``boxes`` and ``scores`` with the boxes at most ``join`` pixels apart joined
    (:func:`xdefect.detect.join_detections`, on boxes rounded to whole pixels); -1: as
    they are, unrounded (a scaled box keeps its fractional sides)."""
    if join < 0:
        return np.asarray(boxes, float).reshape(-1, 4), np.asarray(scores, float)
    dets = [Detection(tuple(int(round(v)) for v in b), float(sc), 0)  # type: ignore[arg-type]
            for b, sc in zip(boxes, scores, strict=True)]
    return detection_arrays(join_detections(dets, join))


def score(folds: list[dict], grow: float | None, scale: float = 1.0, join: int = -1
          ) -> dict:
    """Pooled and per-series AP, found and false alarms per image of every fold's
    held-out detections at ``grow`` and ``scale`` (:func:`boxes_at`), then joined at
    ``join`` (:func:`joined`); ``grow`` None: each fold's own growth (the run as it
    was)."""
    rs = [ImageResult(x["key"], x["series"],
                      *joined(boxes_at(x["boxes"], d["grow"],
                                       d["grow"] if grow is None else grow, scale),
                              x["scores"], join),
                      np.asarray(x["gt"], float).reshape(-1, 4))
          for d in folds for x in d["images"]]
    m = summarise(rs)
    return {"ap": round(m["ap"], 4), "found": m["true_positives"], "boxes": m["gt_boxes"],
            "fa_per_image": round(m["false_positives"] / max(m["images"], 1), 2),
            "per_series": {s: round(v["ap"], 4) for s, v in m["per_series"].items()
                           if v["gt_boxes"]}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", required=True, help="the leave-series-out run (fcn_detector.py "
                                                  "--name)")
    ap.add_argument("--suffix", default="-amin-grow",
                    help="its result files' suffix (results<suffix>.json)")
    ap.add_argument("--kfold", type=int, default=5)
    ap.add_argument("--grows", type=int, nargs="+", default=[0, 1, 2, 3, 4, 6])
    ap.add_argument("--scales", type=float, nargs="+", default=[1.2, 1.3, 1.4])
    ap.add_argument("--joins", type=int, nargs="+", default=[],
                    help="also score each fold's own growth with the boxes at most J pixels "
                         "apart joined (DetectParams.join)")
    ap.add_argument("--work", type=Path, default=Path("runs/fcn"))
    ap.add_argument("--out", type=Path, default=Path("runs/loso_growth.json"))
    a = ap.parse_args()
    files = [a.work / f"{a.name}-loso{a.kfold}" / f"fold{i}" / f"results{a.suffix}.json"
             for i in range(a.kfold)]
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise SystemExit(f"{missing[0]}: missing (run every fold of {a.name} first)")
    folds = [json.loads(f.read_text()) for f in files]
    chosen = {s: d["grow"] for d in folds for s in d["held_out"]}
    run = {"chosen": score(folds, None) | {"grow_by_series": chosen},
           "grows": {str(g): score(folds, g) for g in a.grows},
           "scales": {f"{s:g}": score(folds, 0, s) for s in a.scales},
           "joins": {str(j): score(folds, None, join=j) for j in a.joins},
           "command": command_line()}
    doc = json.loads(a.out.read_text()) if a.out.is_file() else {"runs": {}}
    doc["runs"][a.name + a.suffix] = run
    write_json(a.out, doc)
    print(json.dumps({"run": a.name + a.suffix, "chosen_ap": run["chosen"]["ap"],
                      **{f"grow {g}": r["ap"] for g, r in run["grows"].items()}}))


if __name__ == "__main__":
    main()
