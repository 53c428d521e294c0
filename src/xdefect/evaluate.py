"""Evaluation of detections against ground truth: IoU matching, PR curves, AP.

Boxes are xdefect's ``(x1, y1, x2, y2)``, 0-based, half-open; a box's area is
``(x2 - x1) * (y2 - y1)`` pixels.

Matching (per image; ``matching="coco"``, the default, as pycocotools does): detections
are taken in decreasing score; each one is a true positive when the best-overlapping
ground-truth box *among those still unmatched* has IoU >= ``iou`` (then that box is
matched), otherwise a false positive. ``matching="voc"`` is PASCAL VOC's rule instead: a
detection looks only at its best-overlapping box overall, and is a false positive when
that box is already taken (even if another box it overlaps enough is free). A
ground-truth box is matched at most once, so duplicates count as false positives. Images
without ground truth contribute false positives only.

Ignored boxes (``ImageResult.ignore``, like VOC's "difficult" and COCO's "crowd"): a
detection is first matched against the boxes that count; one that matches none of them
but overlaps an ignored box at IoU >= ``iou`` is dropped (neither true nor false
positive), and ignored boxes do not count as ground truth. xdefect uses this for the
**unseen-defect AP**: on the test images, the boxes that a box of a training image of the
same series overlaps at IoU >= 0.5 (the same physical void seen from a nearby angle, see
:func:`seen_mask`) are ignored, so the figure counts only defects no training image
showed. It matters for every model whose lineage trained on real defect windows (sources
``real`` or ``gan``); for a model trained on simulated defects alone, both figures are
leak-free.

Pooling over images: all detections are ranked by score; precision and recall follow at
every rank. This is the **box-ranking** curve of one detection run at a fixed ``theta``
(every box's score is its peak window score). The paper instead **sweeps theta**: each
``theta`` gives one detection run, hence one (recall, precision) point, and AP is taken
over those points; :func:`theta_sweep` computes that curve (``xdefect evaluate
--theta-sweep``), reported beside the box-ranking AP, which stays the headline.
``ap`` is the all-point interpolated average precision (PASCAL VOC since
2010: the area under the precision envelope, precision made monotone from the right);
``ap11`` the 11-point version (mean of the maximal precision at recall >= 0, 0.1, ..., 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["MATCHING", "BoxSizeRatio", "ImageResult", "PRCurve", "box_size_ratio",
           "interpolated_ap", "interpolated_ap101", "interpolated_ap11", "iou_matrix",
           "match_image", "pr_curve", "scoring_at_least", "seen_mask", "summarise",
           "theta_sweep"]


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` ``(N, 4)`` with every box in ``b`` ``(M, 4)`` -> ``(N, M)``."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0],
                                                                         b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1],
                                                                         b[None, :, 1]), 0, None)
    inter = ix * iy
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(union > 0, inter / union, 0.0)
    return out


MATCHING = ("coco", "voc")


def match_image(boxes: np.ndarray, scores: np.ndarray, gt: np.ndarray, iou: float = 0.5,
                matching: str = "coco", ignore: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Greedy matching on one image (module docstring: ``matching`` rules, ``ignore``).

    Returns ``(tp, gt_index)``: ``tp[i]`` True if detection ``i`` is a true positive,
    ``gt_index[i]`` the matched ground-truth box (-1 for false positives, -2 for a
    detection dropped because it matches an ignored box). Detection order in the outputs
    is the input order.
    """
    if matching not in MATCHING:
        raise ValueError(f"matching must be one of {', '.join(MATCHING)}, not {matching!r}")
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
    ign = (np.zeros(len(gt), bool) if ignore is None
           else np.asarray(ignore, bool).reshape(-1))
    if len(ign) != len(gt):
        raise ValueError(f"ignore has {len(ign)} flags for {len(gt)} ground-truth boxes")
    tp = np.zeros(len(boxes), bool)
    which = np.full(len(boxes), -1, np.int64)
    if len(boxes) == 0 or len(gt) == 0:
        return tp, which
    ious = iou_matrix(boxes, gt)
    taken = np.zeros(len(gt), bool)
    for i in np.argsort(-scores, kind="stable"):
        counted = np.where(ign, -1.0, ious[i])
        if matching == "coco":
            cand = np.where(taken, -1.0, counted)
            j = int(np.argmax(cand))
            ok = cand[j] >= iou
        else:
            j = int(np.argmax(counted))
            ok = counted[j] >= iou and not taken[j]
        if ok:
            taken[j] = True
            tp[i] = True
            which[i] = j
        elif ign.any() and np.where(ign, ious[i], -1.0).max() >= iou:
            which[i] = -2
    return tp, which


def seen_mask(boxes: np.ndarray, reference: np.ndarray, iou: float = 0.5) -> np.ndarray:
    """``(N,)`` bool: True where a box of ``boxes`` overlaps some box of ``reference``
    (e.g. every box of the training images of the same series) at IoU >= ``iou``."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    reference = np.asarray(reference, dtype=np.float64).reshape(-1, 4)
    if len(boxes) == 0 or len(reference) == 0:
        return np.zeros(len(boxes), bool)
    return iou_matrix(boxes, reference).max(axis=1) >= iou


def interpolated_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """All-point interpolated AP of (recall, precision) points in any order: the area
    under the precision envelope (precision made monotone from the right), from recall 0
    to 1. 0 for no points."""
    r = np.asarray(recall, dtype=np.float64).reshape(-1)
    p = np.asarray(precision, dtype=np.float64).reshape(-1)
    if r.size == 0:
        return 0.0
    order = np.lexsort((-p, r))
    mrec = np.concatenate([[0.0], r[order], [1.0]])
    mpre = np.concatenate([[0.0], p[order], [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    idx = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))


def interpolated_ap11(recall: np.ndarray, precision: np.ndarray) -> float:
    """11-point interpolated AP: mean of the best precision at recall >= 0, 0.1, ..., 1."""
    r = np.asarray(recall, dtype=np.float64).reshape(-1)
    p = np.asarray(precision, dtype=np.float64).reshape(-1)
    vals = [float(p[r >= t].max()) if (r >= t).any() else 0.0 for t in np.linspace(0, 1, 11)]
    return float(np.mean(vals))


def interpolated_ap101(recall: np.ndarray, precision: np.ndarray) -> float:
    """COCO's 101-point interpolated AP of points ordered by rank: the mean, over recall
    thresholds 0, 0.01, ..., 1, of the precision envelope (best precision at this or a
    higher rank) at the first rank reaching the threshold (0 where none does), as
    ``pycocotools`` computes it."""
    r = np.asarray(recall, dtype=np.float64).reshape(-1)
    p = np.asarray(precision, dtype=np.float64).reshape(-1)
    if r.size == 0:
        return 0.0
    env = np.maximum.accumulate(p[::-1])[::-1]
    thr = np.linspace(0.0, 1.0, 101)
    idx = np.searchsorted(r, thr, side="left")
    vals = np.where(idx < r.size, env[np.minimum(idx, r.size - 1)], 0.0)
    return float(vals.mean())


@dataclass
class PRCurve:
    """Pooled precision-recall data: ``scores`` (descending), ``tp`` flags, ``n_gt``,
    ``n_images``; ``precision``/``recall`` at every rank."""

    scores: np.ndarray
    tp: np.ndarray
    n_gt: int
    n_images: int

    @property
    def precision(self) -> np.ndarray:
        ctp = np.cumsum(self.tp)
        return ctp / np.arange(1, len(self.tp) + 1) if len(self.tp) else np.zeros(0)

    @property
    def recall(self) -> np.ndarray:
        ctp = np.cumsum(self.tp)
        return ctp / self.n_gt if self.n_gt else np.zeros(len(self.tp))

    def ap(self) -> float:
        """All-point interpolated AP (PASCAL VOC 2010+). NaN with no ground truth."""
        if self.n_gt == 0:
            return float("nan")
        return interpolated_ap(self.recall, self.precision)

    def ap11(self) -> float:
        """11-point interpolated AP (PASCAL VOC 2007). NaN with no ground truth."""
        if self.n_gt == 0:
            return float("nan")
        return interpolated_ap11(self.recall, self.precision)

    def ap101(self) -> float:
        """COCO's 101-point interpolated AP (:func:`interpolated_ap101`). NaN with no
        ground truth."""
        if self.n_gt == 0:
            return float("nan")
        return interpolated_ap101(self.recall, self.precision)

    def recall_at_fppi(self, levels: tuple[float, ...] = (0.1, 0.5, 1.0, 2.0)
                       ) -> dict[str, float]:
        """Best recall with at most ``level`` false positives per image."""
        out = {}
        fp = np.cumsum(~self.tp) / max(self.n_images, 1)
        rec = self.recall
        for lv in levels:
            ok = fp <= lv
            out[str(lv)] = float(rec[ok].max()) if ok.any() and self.n_gt else 0.0
        return out

    def score_at_fppi(self, level: float) -> float:
        """The report threshold for at most ``level`` false positives per image: the
        lowest score ``s`` such that the detections scoring ``s`` or more hold at most
        ``level * n_images`` false positives (tied scores are kept or cut together). -1
        when every detection fits (-1 is the lowest score of ``y1 - y0`` and ``2 p - 1``);
        just above the top score when not even the top-scored detections fit."""
        if not np.isfinite(level) or level < 0:
            raise ValueError(f"false positives per image must be >= 0, not {level}")
        cap = level * max(self.n_images, 1)
        fp = np.cumsum(~self.tp)
        last = np.r_[self.scores[1:] != self.scores[:-1], True]  # end of each tie group
        ok = last & (fp <= cap + 1e-9)
        if len(self.tp) == 0 or ok[-1]:
            return -1.0
        if not ok.any():
            return float(np.nextafter(self.scores[0], np.inf))
        return float(self.scores[np.flatnonzero(ok)[-1]])

    def best_f1(self) -> dict[str, float]:
        """The rank with the best F1: precision, recall, F1 and the score threshold."""
        if len(self.tp) == 0 or self.n_gt == 0:
            return {"f1": 0.0, "precision": 0.0, "recall": 0.0, "score": float("nan")}
        p, r = self.precision, self.recall
        f1 = np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-12), 0)
        i = int(np.argmax(f1))
        return {"f1": float(f1[i]), "precision": float(p[i]), "recall": float(r[i]),
                "score": float(self.scores[i])}


@dataclass
class ImageResult:
    """One image's detections and ground truth (boxes 0-based half-open)."""

    key: str
    series: str
    boxes: np.ndarray
    scores: np.ndarray
    gt: np.ndarray
    #: per ground-truth box: True = ignored when ``pr_curve(..., use_ignore=True)``
    ignore: np.ndarray | None = None


def scoring_at_least(results: list[ImageResult], min_score: float) -> list[ImageResult]:
    """The results with only the detections scoring at least ``min_score`` (a report
    threshold, ``DetectParams.min_score``, applied to detections already made)."""
    return [ImageResult(r.key, r.series, r.boxes[r.scores >= min_score],
                        r.scores[r.scores >= min_score], r.gt, r.ignore) for r in results]


def pr_curve(results: list[ImageResult], iou: float = 0.5, matching: str = "coco",
             use_ignore: bool = False) -> PRCurve:
    """Pool the matched detections of many images into one PR curve (``use_ignore``:
    honour each result's ``ignore`` flags, see the module docstring)."""
    all_s, all_tp = [], []
    n_gt = 0
    for r in results:
        ign = r.ignore if use_ignore else None
        tp, which = match_image(r.boxes, r.scores, r.gt, iou, matching, ign)
        keep = which != -2
        all_s.append(np.asarray(r.scores, dtype=np.float64).reshape(-1)[keep])
        all_tp.append(tp[keep])
        n_box = len(np.asarray(r.gt).reshape(-1, 4))
        n_gt += n_box - (int(np.asarray(ign, bool).sum()) if ign is not None else 0)
    s = np.concatenate(all_s) if all_s else np.zeros(0)
    t = np.concatenate(all_tp) if all_tp else np.zeros(0, bool)
    order = np.argsort(-s, kind="stable")
    return PRCurve(s[order], t[order], n_gt, len(results))


@dataclass(frozen=True)
class BoxSizeRatio:
    """How large the annotated boxes are against the detections' (:func:`box_size_ratio`).

    ``ratio``: the median over pairs of ``sqrt(annotated box area / detection box area)``
    (in log scale: with an even count, the geometric mean of the middle two), the factor
    by which the detections' sides, multiplied about their centres, would match the
    annotators' box size (NaN without a pair); ``pairs``: annotated boxes with a
    detection overlapping them at IoU >= ``min_iou``; ``defects``: annotated boxes counted
    (ignored ones are not); ``images``: images read."""

    ratio: float
    pairs: int
    defects: int
    images: int


def box_size_ratio(results: list[ImageResult], min_iou: float = 0.1) -> BoxSizeRatio:
    """Compare each annotated box (not ignored) with its best-overlapping detection, of any
    score, where they overlap at IoU >= ``min_iou`` (a loose overlap: the detection is on
    the defect, whatever its box's size), by ``sqrt`` of their areas' ratio; the median of
    those ratios (:class:`BoxSizeRatio`). Inspectors box defects more or less generously
    from one line to another; this is what ``DetectParams.box_scale`` would have to be
    multiplied by to box as they do (``xdefect calibrate-boxes``)."""
    if not 0 < min_iou <= 1:  # also refuses NaN
        raise ValueError(f"min_iou must be in (0, 1], not {min_iou}")
    ratios: list[float] = []
    defects = 0
    for r in results:
        gt = np.asarray(r.gt, dtype=np.float64).reshape(-1, 4)
        if r.ignore is not None:
            gt = gt[~np.asarray(r.ignore, bool).reshape(-1)]
        defects += len(gt)
        boxes = np.asarray(r.boxes, dtype=np.float64).reshape(-1, 4)
        if not len(gt) or not len(boxes):
            continue
        ious = iou_matrix(gt, boxes)
        for k, j in enumerate(ious.argmax(axis=1)):
            if ious[k, j] >= min_iou:
                g, b = gt[k], boxes[j]
                area = (b[2] - b[0]) * (b[3] - b[1])
                ratios.append(float(np.sqrt((g[2] - g[0]) * (g[3] - g[1]) / area)))
    # the median in log scale: a box twice too big and one twice too small balance at 1
    ratio = float(np.exp(np.median(np.log(ratios)))) if ratios else float("nan")
    return BoxSizeRatio(ratio, len(ratios), defects, len(results))


def summarise(results: list[ImageResult], iou: float = 0.5, matching: str = "coco"
              ) -> dict:
    """Metrics pooled over all images and per series (see :class:`PRCurve`). When any
    result carries ``ignore`` flags, ``out["unseen"]`` holds the same metrics with the
    ignored boxes ignored (pooled and per series), plus the counts of boxes kept."""

    def block(rs: list[ImageResult], use_ignore: bool = False) -> dict:
        c = pr_curve(rs, iou, matching, use_ignore)
        missed = c.n_gt - int(c.tp.sum())
        return {"ap": c.ap(), "ap11": c.ap11(), "ap101": c.ap101(), "images": len(rs),
                "gt_boxes": c.n_gt,
                "detections": int(len(c.tp)), "true_positives": int(c.tp.sum()),
                "false_positives": int((~c.tp).sum()), "missed": missed,
                "recall_at_fppi": c.recall_at_fppi(), "best_f1": c.best_f1()}

    series = sorted({r.series for r in results})
    out = block(results)
    out["iou"] = iou
    out["matching"] = matching
    out["per_series"] = {s: block([r for r in results if r.series == s]) for s in series}
    if any(r.ignore is not None for r in results):
        u = block(results, True)
        u["ignored_boxes"] = int(sum(np.asarray(r.ignore, bool).sum() for r in results
                                     if r.ignore is not None))
        u["per_series"] = {s: block([r for r in results if r.series == s], True)
                           for s in series}
        out["unseen"] = u
    return out


def theta_sweep(runs: dict[float, list[ImageResult]], iou: float = 0.5,
                matching: str = "coco") -> dict:
    """The paper's PR curve: one detection run per ``theta`` (``runs[theta]``: the
    results of every image at that threshold), each giving one point, precision = TP /
    detections and recall = TP / ground-truth boxes over all its detections (a run with
    no detection gives no point). Returns the thetas, points, and the all-point and
    11-point AP over the points."""
    thetas, prec, rec, tps, fps = [], [], [], [], []
    n_gt = 0
    for theta in sorted(runs):
        c = pr_curve(runs[theta], iou, matching)
        n_gt = c.n_gt
        tp, n = int(c.tp.sum()), len(c.tp)
        if n == 0:
            continue
        thetas.append(float(theta))
        prec.append(tp / n)
        rec.append(tp / n_gt if n_gt else 0.0)
        tps.append(tp)
        fps.append(n - tp)
    has_gt = n_gt > 0
    return {"theta": thetas, "precision": prec, "recall": rec, "true_positives": tps,
            "false_positives": fps, "gt_boxes": n_gt,
            "ap": interpolated_ap(rec, prec) if has_gt else float("nan"),
            "ap11": interpolated_ap11(rec, prec) if has_gt else float("nan")}
