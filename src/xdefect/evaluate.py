"""Evaluation of detections against ground truth: IoU matching, PR curves, AP.

Boxes are xdefect's ``(x1, y1, x2, y2)``, 0-based, half-open; a box's area is
``(x2 - x1) * (y2 - y1)`` pixels.

Matching (per image, as PASCAL VOC): detections are taken in decreasing score; each one is
a true positive when its best-overlapping ground-truth box that is still unmatched has
IoU >= ``iou`` (then that box is matched), otherwise a false positive. A ground-truth box
is matched at most once, so duplicates count as false positives. Images without ground
truth contribute false positives only.

Pooling over images: all detections are ranked by score; precision and recall follow at
every rank. ``ap`` is the all-point interpolated average precision (PASCAL VOC since
2010: the area under the precision envelope, precision made monotone from the right);
``ap11`` the 11-point version (mean of the maximal precision at recall >= 0, 0.1, ..., 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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


def match_image(boxes: np.ndarray, scores: np.ndarray, gt: np.ndarray, iou: float = 0.5
                ) -> tuple[np.ndarray, np.ndarray]:
    """Greedy matching on one image.

    Returns ``(tp, gt_index)``: ``tp[i]`` True if detection ``i`` is a true positive,
    ``gt_index[i]`` the matched ground-truth box (-1 for false positives). Detection order
    in the outputs is the input order.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
    tp = np.zeros(len(boxes), bool)
    which = np.full(len(boxes), -1, np.int64)
    if len(boxes) == 0 or len(gt) == 0:
        return tp, which
    ious = iou_matrix(boxes, gt)
    taken = np.zeros(len(gt), bool)
    for i in np.argsort(-scores, kind="stable"):
        cand = np.where(taken, -1.0, ious[i])
        j = int(np.argmax(cand))
        if cand[j] >= iou:
            taken[j] = True
            tp[i] = True
            which[i] = j
    return tp, which


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
        """All-point interpolated AP (PASCAL VOC 2010+). 0 with no ground truth."""
        if self.n_gt == 0:
            return float("nan")
        if len(self.tp) == 0:
            return 0.0
        mrec = np.concatenate([[0.0], self.recall, [1.0]])
        mpre = np.concatenate([[0.0], self.precision, [0.0]])
        mpre = np.maximum.accumulate(mpre[::-1])[::-1]
        idx = np.flatnonzero(mrec[1:] != mrec[:-1])
        return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))

    def ap11(self) -> float:
        """11-point interpolated AP (PASCAL VOC 2007)."""
        if self.n_gt == 0:
            return float("nan")
        rec, pre = self.recall, self.precision
        vals = [float(pre[rec >= t].max()) if (rec >= t).any() else 0.0
                for t in np.linspace(0, 1, 11)]
        return float(np.mean(vals))

    def recall_at_fppi(self, levels: tuple[float, ...] = (0.1, 0.5, 1.0)) -> dict[str, float]:
        """Best recall with at most ``level`` false positives per image."""
        out = {}
        fp = np.cumsum(~self.tp) / max(self.n_images, 1)
        rec = self.recall
        for lv in levels:
            ok = fp <= lv
            out[str(lv)] = float(rec[ok].max()) if ok.any() and self.n_gt else 0.0
        return out

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


def pr_curve(results: list[ImageResult], iou: float = 0.5) -> PRCurve:
    """Pool the matched detections of many images into one PR curve."""
    all_s, all_tp = [], []
    n_gt = 0
    for r in results:
        tp, _ = match_image(r.boxes, r.scores, r.gt, iou)
        all_s.append(np.asarray(r.scores, dtype=np.float64).reshape(-1))
        all_tp.append(tp)
        n_gt += len(np.asarray(r.gt).reshape(-1, 4))
    s = np.concatenate(all_s) if all_s else np.zeros(0)
    t = np.concatenate(all_tp) if all_tp else np.zeros(0, bool)
    order = np.argsort(-s, kind="stable")
    return PRCurve(s[order], t[order], n_gt, len(results))


def summarise(results: list[ImageResult], iou: float = 0.5) -> dict:
    """Metrics pooled over all images and per series (see :class:`PRCurve`)."""

    def block(rs: list[ImageResult]) -> dict:
        c = pr_curve(rs, iou)
        missed = c.n_gt - int(c.tp.sum())
        return {"ap": c.ap(), "ap11": c.ap11(), "images": len(rs), "gt_boxes": c.n_gt,
                "detections": int(len(c.tp)), "true_positives": int(c.tp.sum()),
                "false_positives": int((~c.tp).sum()), "missed": missed,
                "recall_at_fppi": c.recall_at_fppi(), "best_f1": c.best_f1()}

    out = block(results)
    out["iou"] = iou
    out["per_series"] = {s: block([r for r in results if r.series == s])
                         for s in sorted({r.series for r in results})}
    return out
