"""What limits leave-series-out AP: finding the defects, or boxing them as the annotators
did? (issue 13, target 1.)

Reads the saved detections of a pooled leave-series-out run of the
``experiments/loso_library.sh`` layout (``WORK/foldI/eval-SERIES/detections``) and scores
them against the ground truth at several IoU thresholds (AP pooled and per series: how
much of the gap between IoU 0.5 and a loose overlap is boxes, not detections); and, at IoU
0.5, sorts each missed defect box by its best-overlapping detection (COCO matching's
threshold; every detection of the image, whatever its score):

* ``nothing``: no detection overlaps it;
* ``merged``: the best-overlapping detection's box holds the centres of two or more
  ground-truth boxes (neighbouring defects boxed as one);
* ``too small`` / ``too big``: otherwise, by that box's area against the defect's;

and, per series, the median ratio of the detection's box side to the defect's (width and
height) and of their centres' offset (in defect widths), over the pairs overlapping at
IoU >= 0.1. And what the ranking across castings costs: the pooled AP when each
held-out series' detections keep their order but are ranked against the other series'
by their own series' precision at their rank (the slope of the upper hull of the
series' cumulative true positives against its cumulative detections, at IoU 0.5; an
oracle calibration, about the best any per-casting rescoring that keeps each casting's
order could do), and the mean of the per-series APs. Nothing is chosen here: it reads held-out
labels only to explain the figures. Writes ``--out`` (JSON), read by
``experiments/results_tables.py`` (blocks ``loso-localisation``, ``loso-localisation-bg``)::

    .venv/bin/python experiments/loso_localisation.py --work runs/seg/loso5-hard
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from loso_library_pool import saved_results  # experiments/, beside this script

from xdefect.evaluate import ImageResult, iou_matrix, match_image, summarise
from xdefect.io import command_line, write_json

__all__ = ["IOUS", "hull_precision", "main", "miss_kinds", "pooled_results",
           "ranked_by_series", "sizes"]

#: IoU thresholds scored (0.5: the targets' and ``xdefect evaluate``'s)
IOUS = (0.5, 0.4, 0.3, 0.2, 0.1)


def pooled_results(work: Path, roots: list[Path]) -> list[ImageResult]:
    """Every saved held-out detection of ``work``'s folds, scored against the ground truth
    of whichever of ``roots`` holds its series (``loso_library_pool.saved_results``)."""
    rs: list[ImageResult] = []
    for fold in sorted(work.glob("fold*")):
        saved = saved_results(fold, roots)
        if saved is None:
            raise SystemExit(f"loso_localisation.py: {fold}: a held-out series is under none "
                             f"of {', '.join(map(str, roots))}")
        rs += saved
    if not rs:
        raise SystemExit(f"loso_localisation.py: {work}: no evaluated fold")
    return rs


def miss_kinds(r: ImageResult, iou: float = 0.5) -> list[str]:
    """The kind of each ground-truth box of ``r`` that no detection overlaps at ``iou``
    (module docstring): ``nothing``, ``merged``, ``too small`` or ``too big``."""
    gt = np.asarray(r.gt, float).reshape(-1, 4)
    boxes = np.asarray(r.boxes, float).reshape(-1, 4)
    if not len(gt):
        return []
    m = iou_matrix(gt, boxes) if len(boxes) else np.zeros((len(gt), 0))
    cx, cy = (gt[:, 0] + gt[:, 2]) / 2, (gt[:, 1] + gt[:, 3]) / 2
    kinds = []
    for k in range(len(gt)):
        best = float(m[k].max()) if m.shape[1] else 0.0
        if best >= iou:
            continue
        if best <= 0:
            kinds.append("nothing")
            continue
        b = boxes[int(m[k].argmax())]
        inside = int(((cx >= b[0]) & (cx < b[2]) & (cy >= b[1]) & (cy < b[3])).sum())
        area_b = (b[2] - b[0]) * (b[3] - b[1])
        area_g = (gt[k, 2] - gt[k, 0]) * (gt[k, 3] - gt[k, 1])
        kinds.append("merged" if inside >= 2 else "too big" if area_b > area_g else
                     "too small")
    return kinds


def sizes(rs: list[ImageResult], min_iou: float = 0.1) -> dict[str, float | int]:
    """Median box-to-defect side ratios (width, height) and centre offsets (in defect
    widths and heights) of each defect's best-overlapping detection, over the defects it
    overlaps at ``min_iou`` or more."""
    rw, rh, dx, dy = [], [], [], []
    for r in rs:
        gt = np.asarray(r.gt, float).reshape(-1, 4)
        boxes = np.asarray(r.boxes, float).reshape(-1, 4)
        if not len(gt) or not len(boxes):
            continue
        m = iou_matrix(gt, boxes)
        for k in range(len(gt)):
            j = int(m[k].argmax())
            if m[k, j] < min_iou:
                continue
            g, b = gt[k], boxes[j]
            gw, gh = g[2] - g[0], g[3] - g[1]
            rw.append((b[2] - b[0]) / gw)
            rh.append((b[3] - b[1]) / gh)
            dx.append((b[0] + b[2] - g[0] - g[2]) / 2 / gw)
            dy.append((b[1] + b[3] - g[1] - g[3]) / 2 / gh)

    def med(v: list[float]) -> float | None:
        return round(float(np.median(v)), 3) if v else None

    return {"pairs": len(rw), "width_ratio": med(rw), "height_ratio": med(rh),
            "centre_dx": med(dx), "centre_dy": med(dy)}


def hull_precision(hits: np.ndarray) -> np.ndarray:
    """For a ranked list of detections (``hits``: True for a true positive, best first),
    each one's slope of the upper concave hull of (detections so far, true positives so
    far): the precision of the hull segment it lies on, non-increasing along the list."""
    y = np.r_[0.0, np.cumsum(np.asarray(hits, float))]
    hull = [0]
    for k in range(1, len(y)):
        while len(hull) >= 2 and ((y[hull[-1]] - y[hull[-2]]) * (k - hull[-2])
                                  <= (y[k] - y[hull[-2]]) * (hull[-1] - hull[-2])):
            hull.pop()
        hull.append(k)
    slope = np.zeros(len(y) - 1)
    for a, b in zip(hull[:-1], hull[1:], strict=True):
        slope[a:b] = (y[b] - y[a]) / (b - a)
    return slope


def ranked_by_series(rs: list[ImageResult], iou: float = 0.5) -> list[ImageResult]:
    """``rs`` with each detection's score replaced by its series' :func:`hull_precision`
    at its rank in the series (ties within a series broken by the original order, so each
    series' and each image's ranking, and with it the matching, is unchanged)."""
    ranked: dict[str, list[tuple[float, bool, int, int]]] = {}
    for n, r in enumerate(rs):
        tp, _ = match_image(r.boxes, r.scores, r.gt, iou, ignore=r.ignore)
        ranked.setdefault(r.series, []).extend(
            (float(sc), bool(t), n, i) for i, (sc, t) in enumerate(zip(r.scores, tp,
                                                                          strict=True)))
    new = [np.zeros(len(r.scores)) for r in rs]
    for dets in ranked.values():
        dets.sort(key=lambda d: -d[0])
        slope = hull_precision(np.array([d[1] for d in dets], bool))
        for k, (_, _, n, i) in enumerate(dets):
            new[n][i] = slope[k] - 1e-9 * k
    return [ImageResult(r.key, r.series, r.boxes, sc, r.gt, r.ignore)
            for r, sc in zip(rs, new, strict=True)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("runs/seg/loso5-hard"))
    ap.add_argument("--gdxray", type=Path, nargs="+",
                    default=[Path("../shared/data/gdxray"), Path("../shared/data/gdxray-extra")])
    ap.add_argument("--out", type=Path, default=Path("runs/loso_localisation.json"))
    a = ap.parse_args()
    rs = pooled_results(a.work, a.gdxray)
    by_iou = {}
    for t in IOUS:
        m = summarise(rs, iou=t)
        by_iou[f"{t:g}"] = {"ap": m["ap"], "true_positives": m["true_positives"],
                            "per_series": {s: v["ap"] for s, v in m["per_series"].items()}}
    series: dict[str, dict] = {}
    for s in sorted({r.series for r in rs}):
        mine = [r for r in rs if r.series == s]
        kinds = [k for r in mine for k in miss_kinds(r)]
        series[s] = {"boxes": sum(len(np.asarray(r.gt).reshape(-1, 4)) for r in mine),
                     "missed": {k: kinds.count(k) for k in
                                ("nothing", "merged", "too small", "too big")},
                     **sizes(mine)}
    oracle = summarise(ranked_by_series(rs))
    ranking = {"ap": oracle["ap"], "true_positives": oracle["true_positives"],
               "mean_series_ap": float(np.mean(list(by_iou["0.5"]["per_series"].values())))}
    doc = {"work": str(a.work), "images": len(rs), "by_iou": by_iou, "series": series,
           "ranked_by_series": ranking,
           "command": command_line()}
    write_json(a.out, doc)
    print(" ".join(f"IoU {k}: AP {v['ap']:.4f}" for k, v in by_iou.items())
          + f"; each series ranked by its own precision (oracle): {ranking['ap']:.4f}")


if __name__ == "__main__":
    main()
