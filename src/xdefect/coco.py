"""COCO JSON in and out: detections and ground truth in the format the detection world
exchanges.

xdefect boxes are ``(x1, y1, x2, y2)``, 0-based, half-open; a COCO ``bbox`` is
``[x, y, width, height]`` in the same pixel frame, so ``[x1, y1, x2 - x1, y2 - y1]``, and
its ``area`` is ``width * height``. One category, ``defect`` (id 1). Images are numbered
1, 2, ... in the order given; ``file_name`` is the image's file stem.

* :func:`coco_dataset`: ``{"images", "annotations", "categories"}`` (ground truth; empty
  ``annotations`` when there is none, as for ``xdefect detect``);
* :func:`coco_results`: the detections as COCO's results list
  (``[{"image_id", "category_id", "bbox", "score"}]``);
* :func:`write_coco`: both, to ``FILE`` and ``FILE`` less ``.json`` plus
  ``.detections.json``, atomically;
* :func:`read_coco_ground_truth`: a COCO dataset made elsewhere (an annotation tool's
  export, or :func:`coco_dataset`'s own) as :class:`AnnotatedImage` s, the images found on
  disk and every box checked.

``tests/test_coco.py`` feeds them to ``pycocotools`` and checks that its AP at IoU 0.5
equals xdefect's 101-point AP (``evaluate.interpolated_ap101``) on real detections.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xdefect.errors import InputError
from xdefect.evaluate import ImageResult
from xdefect.io import IMAGE_SUFFIXES, read_json, write_json

__all__ = ["CATEGORY", "AnnotatedImage", "coco_dataset", "coco_results", "detections_path",
           "read_coco_ground_truth", "write_coco"]

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


@dataclass(frozen=True)
class AnnotatedImage:
    """One image of a COCO dataset read by :func:`read_coco_ground_truth`: its file, its
    boxes ``(x1, y1, x2, y2)`` (0-based, half-open, float, shape ``(n, 4)``), per box
    whether COCO marks it a crowd region (``iscrowd``: a group of defects in one box, left
    out of ``calibrate-boxes``' size ratio), and its series
    (the image's ``series`` field, as :func:`coco_dataset` writes it, else the dataset
    file's stem)."""

    path: Path
    boxes: np.ndarray
    crowd: np.ndarray
    series: str = ""


def _coco_list(doc: Any, key: str, where: Path) -> list[dict]:
    items = doc.get(key) if isinstance(doc, dict) else None
    if not isinstance(items, list) or not all(isinstance(v, dict) for v in items):
        raise InputError(f"{where}: not a COCO dataset: no \"{key}\" list of objects")
    return items


def _image_file(folder: Path, name: Any, where: Path) -> Path:
    """The file of an image's ``file_name``: a path under ``folder``, or a bare stem (as
    :func:`coco_dataset` writes) matched to the one image file of that stem there."""
    if not isinstance(name, str) or not name:
        raise InputError(f"{where}: an image without a \"file_name\"")
    path = folder / name
    if path.is_file():
        return path
    stems = [folder / f"{name}{ext}" for ext in IMAGE_SUFFIXES]
    found = [p for p in stems if p.is_file()]
    if len(found) == 1:
        return found[0]
    raise InputError(f"{where}: image {name!r}: no such file in {folder}"
                     + (" (several files of that stem)" if found else ""))


def _coco_box(ann: dict, size: tuple[Any, Any], where: Path) -> list[float]:
    """An annotation's ``bbox`` ``[x, y, w, h]`` as ``[x1, y1, x2, y2]``, checked: four
    finite numbers, positive sides, inside the image when its ``width``/``height`` are
    given (a box may touch the far edge: half-open)."""
    bb = ann.get("bbox")
    ok = (isinstance(bb, list) and len(bb) == 4
          and all(isinstance(v, int | float) and not isinstance(v, bool) for v in bb))
    if not ok or not all(math.isfinite(v) for v in bb):
        raise InputError(f"{where}: annotation {ann.get('id')}: bbox {bb!r} is not four "
                         "finite numbers [x, y, width, height]")
    x, y, w, h = (float(v) for v in bb)
    if w <= 0 or h <= 0 or x < 0 or y < 0:
        raise InputError(f"{where}: annotation {ann.get('id')}: bbox {bb!r} needs x, y >= 0 "
                         "and a positive width and height")
    width, height = size
    if (isinstance(width, int) and x + w > width) or (isinstance(height, int)
                                                       and y + h > height):
        raise InputError(f"{where}: annotation {ann.get('id')}: bbox {bb!r} runs past the "
                         f"image ({width} x {height})")
    return [x, y, x + w, y + h]


def read_coco_ground_truth(path: str | os.PathLike[str],
                           image_dir: str | os.PathLike[str] | None = None
                           ) -> list[AnnotatedImage]:
    """The images of a COCO dataset file with their annotated boxes, in the file's order.

    ``file_name`` is a path relative to ``image_dir`` (default: the JSON file's folder),
    or a file stem, as :func:`coco_dataset` writes it. Every annotation is a defect,
    whatever its ``category_id``; ``iscrowd`` ones are flagged (``crowd``); an image
    without annotations is defect-free. A COCO
    ``bbox`` ``[x, y, w, h]`` becomes ``(x, y, x + w, y + h)``: the same pixel frame,
    0-based and half-open. :class:`InputError` naming the file for anything malformed: not
    JSON, no ``images``/``annotations`` lists, a repeated image id, an annotation of an
    unknown image, a box that is not four finite numbers with positive sides inside the
    image, an image file not found. The pixels themselves are read later."""
    where = Path(path)
    doc = read_json(where)
    folder = Path(image_dir) if image_dir is not None else where.parent
    images = _coco_list(doc, "images", where)
    anns = _coco_list(doc, "annotations", where)
    by_id: dict[Any, dict] = {}
    for im in images:
        if not isinstance(im.get("id"), int | str) or im["id"] in by_id:
            raise InputError(f"{where}: image id {im.get('id')!r} missing or repeated")
        by_id[im["id"]] = im
    boxes: dict[Any, list[list[float]]] = {k: [] for k in by_id}
    crowd: dict[Any, list[bool]] = {k: [] for k in by_id}
    for ann in anns:
        key = ann.get("image_id")
        im = by_id.get(key) if isinstance(key, int | str) else None
        if im is None:
            raise InputError(f"{where}: annotation {ann.get('id')}: image_id "
                             f"{ann.get('image_id')!r} is not among the images")
        boxes[im["id"]].append(_coco_box(ann, (im.get("width"), im.get("height")), where))
        crowd[im["id"]].append(bool(ann.get("iscrowd", 0)))
    def series(im: dict) -> str:
        v = im.get("series")
        return v if isinstance(v, str) and v else where.stem

    return [AnnotatedImage(_image_file(folder, im.get("file_name"), where),
                           np.asarray(boxes[k], dtype=np.float64).reshape(-1, 4),
                           np.asarray(crowd[k], dtype=bool), series(im))
            for k, im in by_id.items()]
