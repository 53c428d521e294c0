"""COCO JSON out: detections and ground truth in the format the detection world exchanges.

xdefect boxes are ``(x1, y1, x2, y2)``, 0-based, half-open; a COCO ``bbox`` is
``[x, y, width, height]`` in the same pixel frame, so ``[x1, y1, x2 - x1, y2 - y1]``, and
its ``area`` is ``width * height``. One category, ``defect`` (id 1). Images are numbered
1, 2, ... in the order given; ``file_name`` is the image's file stem.

* :func:`coco_dataset`: ``{"images", "annotations", "categories"}`` (ground truth; empty
  ``annotations`` when there is none, as for ``xdefect detect``);
* :func:`coco_results`: the detections as COCO's results list
  (``[{"image_id", "category_id", "bbox", "score"}]``);
* :func:`write_coco`: both, to ``FILE`` and ``FILE`` less ``.json`` plus
  ``.detections.json``, atomically.

``tests/test_coco.py`` feeds them to ``pycocotools`` and checks that its AP at IoU 0.5
equals xdefect's 101-point AP (``evaluate.interpolated_ap101``) on real detections.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from xdefect.evaluate import ImageResult
from xdefect.io import write_json

__all__ = ["CATEGORY", "coco_dataset", "coco_results", "detections_path", "write_coco"]

#: the one category
CATEGORY = {"id": 1, "name": "defect", "supercategory": "casting defect"}


def _bbox(box: np.ndarray) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return [x1, y1, x2 - x1, y2 - y1]


def coco_dataset(results: list[ImageResult], shapes: list[tuple[int, int]],
                 with_ground_truth: bool = True) -> dict[str, Any]:
    """A COCO dataset of the images of ``results`` (``shapes``: their ``(height, width)``,
    in the same order), with their ground-truth boxes as annotations."""
    images, anns = [], []
    for i, (r, (h, w)) in enumerate(zip(results, shapes, strict=True), start=1):
        images.append({"id": i, "file_name": r.key, "width": int(w), "height": int(h),
                       "series": r.series})
        if not with_ground_truth:
            continue
        for b in np.asarray(r.gt, dtype=np.float64).reshape(-1, 4):
            bb = _bbox(b)
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": CATEGORY["id"],
                         "bbox": bb, "area": bb[2] * bb[3], "iscrowd": 0})
    return {"info": {"description": "xdefect", "box_convention": "COCO [x, y, w, h]"},
            "images": images, "annotations": anns, "categories": [CATEGORY]}


def coco_results(results: list[ImageResult]) -> list[dict[str, Any]]:
    """The detections of ``results`` as COCO's results list (image ids as in
    :func:`coco_dataset`)."""
    out = []
    for i, r in enumerate(results, start=1):
        boxes = np.asarray(r.boxes, dtype=np.float64).reshape(-1, 4)
        for b, s in zip(boxes, np.asarray(r.scores, dtype=np.float64).reshape(-1),
                        strict=True):
            out.append({"image_id": i, "category_id": CATEGORY["id"], "bbox": _bbox(b),
                        "score": float(s)})
    return out


def detections_path(path: str | os.PathLike[str]) -> Path:
    """Where :func:`write_coco` puts the detections beside ``path``."""
    p = Path(path)
    stem = p.name[:-5] if p.name.endswith(".json") else p.name
    return p.with_name(f"{stem}.detections.json")


def write_coco(path: str | os.PathLike[str], results: list[ImageResult],
               shapes: list[tuple[int, int]], with_ground_truth: bool = True) -> Path:
    """Write the dataset (``path``) and the detections (:func:`detections_path`);
    returns the detections' path."""
    write_json(path, coco_dataset(results, shapes, with_ground_truth))
    dt = detections_path(path)
    write_json(dt, coco_results(results))
    return dt
