"""Evaluation protocols on GDXray: a model or saved detections scored on an image split,
with the unseen-defect figure and the model's provenance.

This module joins the stages (``gdxray`` images and ground truth -> ``detect`` ->
``evaluate``); the command line (``xdefect evaluate``) and ``experiments/`` call the same
functions.

Unseen defects: consecutive images of a GDXray series show one casting from slowly
changing angles, so a void in a test image (even number) is often the same void as in
the neighbouring train or tuning image (odd numbers). A test box is **seen** when a box of
any odd-numbered image of the same series overlaps it at IoU >= 0.5 (:data:`UNSEEN_RULE`;
odd, not only train, because either neighbour may be a train image and the rule must not
depend on which); the unseen-defect AP ignores seen boxes (``evaluate`` module
docstring). It is the leak-free figure of any model trained on real defect windows.

Your own images: :func:`evaluate_annotated` and :func:`evaluate_annotated_detections`
score a model, or saved detections, on the images of a COCO dataset file
(:func:`xdefect.coco.read_coco_ground_truth`) the same way, split ``annotated``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xdefect import gdxray
from xdefect.checkpoint import lineage_summary, read_card
from xdefect.coco import AnnotatedImage, read_coco_ground_truth
from xdefect.detect import (
    DetectParams,
    detect,
    detection_arrays,
    detection_doc,
    finish_boxes,
    regions,
    reported,
)
from xdefect.errors import InputError
from xdefect.evaluate import ImageResult, seen_mask, summarise, theta_sweep
from xdefect.io import command_line, progress, read_detections, read_image
from xdefect.models import INFERENCE_BATCH

__all__ = ["ANNOTATED_SPLIT", "SWEEP_THETAS", "UNSEEN_RULE", "Evaluation", "Selection",
           "check_iou", "detection_results", "evaluate_annotated",
           "evaluate_annotated_detections", "evaluate_detections", "evaluate_folder",
           "image_result",
           "metrics", "model_results", "provenance", "seen_flags", "select", "wants_unseen"]

if TYPE_CHECKING:
    from xdefect.detector import Detector

#: how "seen" test boxes are defined (recorded in metrics.json)
UNSEEN_RULE = ("test boxes that no box of an odd-numbered (train or tuning) image of the "
               "same series overlaps at IoU >= 0.5")


def seen_flags(gt: gdxray.SeriesGroundTruth, number: int, iou: float = 0.5) -> np.ndarray:
    """Per box of image ``number``: True when a box of an odd-numbered image of the same
    series (other than ``number``) overlaps it at IoU >= ``iou``."""
    boxes = gt.boxes_of(number)
    ref = [b for n, b in gt.boxes.items() if n % 2 == 1 and n != number]
    if not ref:
        return np.zeros(len(boxes), bool)
    return seen_mask(boxes, np.concatenate(ref), iou)


@dataclass
class Selection:
    """The annotated images an evaluation covers: records, their series' ground truth,
    and the series left out because they have no ground truth."""

    root: Path
    series: list[str]
    split: str
    records: list[gdxray.ImageRecord]
    ground_truth: dict[str, gdxray.SeriesGroundTruth]
    unscored: list[str]


def select(root: str | os.PathLike[str], series: list[str] | None = None, split: str = "test"
           ) -> Selection:
    """The annotated images of ``series`` (default: the paper's seven) in ``split``
    (:meth:`~xdefect.gdxray.SeriesGroundTruth.covers`: not those of a series without
    ground truth, nor those a static series' ground truth leaves out)."""
    r = Path(root)
    chosen = gdxray.protocol_series(r, series)
    recs = gdxray.list_images(r, chosen, split)
    gts = {s: gdxray.load_ground_truth(r, s) for s in sorted({x.series for x in recs})}
    unscored = sorted(s for s, g in gts.items() if not g.annotated)
    # a static series' images its ground truth does not cover are unscored too
    recs = [x for x in recs if gts[x.series].covers(x.number)]
    if not recs:
        raise InputError(f"{r}: no annotated images in split {split} of "
                         f"{', '.join(chosen)}")
    return Selection(r, chosen, gdxray.canonical_split(split), recs, gts, unscored)


def image_result(sel: Selection, rec: gdxray.ImageRecord, boxes: np.ndarray,
                 scores: np.ndarray, unseen: bool) -> ImageResult:
    """One image's result; with ``unseen``, the seen boxes flagged to be ignored."""
    gt = sel.ground_truth[rec.series]
    ign = seen_flags(gt, rec.number) if unseen else None
    return ImageResult(rec.stem, rec.series, boxes, scores, gt.boxes_of(rec.number), ign)


def wants_unseen(split: str) -> bool:
    """The unseen-defect figure is defined on the test images only."""
    return gdxray.SPLIT_PARTS[gdxray.canonical_split(split)] == ("test",)


def provenance(card: dict[str, Any] | None, split: str,
               series: list[str] | None = None) -> dict[str, Any]:
    """What a model's lineage means for figures on ``split`` of ``series``: the image
    splits, series and sources it trained on, whether real defects reached it (then the
    unseen-defect AP is its leak-free figure), and whether it trained on images of the
    evaluated split of the evaluated series (``None``: unknown, incomplete lineage)."""
    if card is None:
        return {"known": False}
    s = lineage_summary(card)
    wanted = set(gdxray.SPLIT_PARTS[gdxray.canonical_split(split)])
    trained = s["image_splits"]
    # image files outside GDXray's splits ("files": a segmenter trained or adapted on a
    # folder) may be any images: whether they include the evaluated ones is unknown
    known = trained is not None and all(t in gdxray.SPLIT_PARTS for t in trained)
    overlap = None if not known else sorted(
        wanted & {p for t in trained for p in gdxray.SPLIT_PARTS[t]})
    if overlap and series is not None and s["series"]:
        overlap = overlap if set(series) & set(s["series"]) else []
    return {"known": True, "trained_on_image_splits": trained,
            "trained_on_series": s["series"], "sources": s["sources"],
            "real_defects_in_training": s["real_defects"], "lineage_complete": s["complete"],
            "trained_on_evaluated_images": None if overlap is None else bool(overlap)}


def detection_results(sel: Selection, docs: dict[str, dict]) -> tuple[list[ImageResult], int]:
    """Results from saved detection documents keyed by file stem; returns the results and
    the number of images without a document (counted as no detections)."""
    results, missing = [], 0
    unseen = wants_unseen(sel.split)
    for r in sel.records:
        d = docs.get(r.stem)
        missing += d is None
        results.append(image_result(sel, r, *_document_arrays(d), unseen))
    return results, missing


def _document_arrays(doc: dict | None) -> tuple[np.ndarray, np.ndarray]:
    """The boxes ``(n, 4)`` and scores ``(n,)`` of a saved detection document (none
    without one)."""
    dets = (doc or {"detections": []})["detections"]
    return (np.asarray([x["box"] for x in dets], float).reshape(-1, 4),
            np.asarray([x["score"] for x in dets], float))


#: thresholds of the theta sweep (``y1 - y0`` lies in [-1, 1])
SWEEP_THETAS = (-0.9, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 0.9, 0.95, 0.98, 0.99, 0.995,
                0.999)


def model_results(sel: Selection, model: Any, params: Any, model_name: str,
                  on_image: Callable[[gdxray.ImageRecord, dict], None] | None = None,
                  sweep: dict[Any, list[ImageResult]] | None = None,
                  batch: int = INFERENCE_BATCH, device: str = "cpu",
                  score_fn: Callable | None = None) -> Iterator[ImageResult]:
    """Run ``model`` with detection ``params`` over the selection, yielding each image's
    result; ``on_image(record, detection_doc)`` sees each detection document. With
    ``sweep`` (a dict whose keys are thetas, e.g. ``dict.fromkeys(SWEEP_THETAS)``, or
    whole :class:`~xdefect.detect.DetectParams`), the regions of the same score map are
    also found at every key (``params`` at that theta, or those settings) and each key gets
    the list of results there (for :func:`xdefect.evaluate.theta_sweep`).
    ``score_fn``: another way to compute score maps (:meth:`Detector.score_function`,
    ONNX Runtime), as in :func:`xdefect.detect.detect`."""
    unseen = wants_unseen(sel.split)
    if sweep is not None:
        for t in sweep:
            sweep[t] = []
    for r in sel.records:
        smp = gdxray.load_sample(r, sel.ground_truth[r.series])
        mask = gdxray.casting_mask(smp.image) if params.use_mask else None
        dets, smap = detect(model, smp.image, params, mask=mask, batch=batch, device=device,
                            score_fn=score_fn)
        if on_image is not None:
            on_image(r, detection_doc(str(r.path), smp.image.shape, model_name, params, dets))
        if sweep is not None:
            ungrown: dict[DetectParams, list] = {}  # settings differing in grow, join
            for t in sweep:
                at = t if isinstance(t, DetectParams) else replace(params, theta=t)
                key = replace(at, grow=0, join=-1, min_score=-1.0, box_scale=1.0)
                if key not in ungrown:
                    ungrown[key] = regions(smap, key, mask)
                d = reported(finish_boxes(ungrown[key], at, smap.image_shape), at.min_score)
                sweep[t].append(image_result(sel, r, *detection_arrays(d), False))
        yield image_result(sel, r, *detection_arrays(dets), unseen)


def metrics(sel: Selection, results: list[ImageResult], iou: float = 0.5,
            matching: str = "coco", card: dict[str, Any] | None = None) -> dict[str, Any]:
    """``evaluate.summarise`` plus what a sceptical reader needs: root, series, split,
    the unseen-defect rule, and the model's provenance."""
    m = summarise(results, iou, matching)
    m.update({"split": sel.split, "gdxray": str(sel.root), "series": sel.series,
              "unscored_series": sel.unscored,
              "provenance": provenance(card, sel.split, sel.series)})
    if "unseen" in m:
        m["unseen"]["rule"] = UNSEEN_RULE
    return m


#: the split name of images from a COCO file (:func:`evaluate_annotated`)
ANNOTATED_SPLIT = "annotated"


@dataclass
class Evaluation:
    """An evaluation's outcome: the images covered (``selection``: GDXray's, None for a
    COCO file's), one result per image, the figures (``metrics``: what ``metrics.json``
    holds), the detection documents by file stem (empty when saved detections were
    scored), the theta sweep's runs if asked for, and each result's image file by its
    key (``paths``)."""

    selection: Selection | None
    results: list[ImageResult]
    metrics: dict[str, Any]
    documents: dict[str, dict] = field(default_factory=dict)
    sweep: dict[float, list[ImageResult]] | None = None
    paths: dict[str, Path] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.paths and self.selection is not None:
            self.paths = {r.stem: r.path for r in self.selection.records}

    @property
    def ap(self) -> float:
        """The headline all-point AP (NaN without ground truth)."""
        v = self.metrics["ap"]
        return float("nan") if v is None else float(v)


def check_iou(iou: float) -> None:
    """:class:`InputError` unless ``0 < iou <= 1``."""
    if not 0 < iou <= 1:
        raise InputError(f"--iou {iou}: must be in (0, 1]")


def evaluate_folder(detector: Detector, root: str | os.PathLike[str] | None = None,
                    split: str = "test", series: list[str] | None = None, iou: float = 0.5,
                    matching: str = "coco", sweep: bool = False, limit: int | None = None
                    ) -> Evaluation:
    """Run ``detector`` over the annotated images of ``split`` (default: the test images)
    of ``series`` (default: the paper's seven) under a GDXray ``root`` (default:
    ``gdxray.default_root()``) and score its detections at ``iou``. With ``sweep``, also
    the paper's theta-swept curve (``metrics["theta_sweep"]``). ``limit``: only the first
    ``limit`` images (quick trials)."""
    check_iou(iou)
    sel = select(gdxray.default_root() if root is None else root, series, split)
    if limit is not None:
        if limit < 1:
            raise InputError(f"--limit-images {limit}: must be at least 1")
        sel.records = sel.records[:limit]
    docs: dict[str, dict] = {}
    bar = progress(total=len(sel.records), desc="evaluate", unit="image")

    def keep(rec: gdxray.ImageRecord, doc: dict) -> None:
        docs[rec.stem] = doc
        bar.update()

    runs = dict.fromkeys(SWEEP_THETAS) if sweep else None
    results = list(model_results(sel, detector.model, detector.params, detector.name, keep,
                                 runs, detector.batch, detector.device,
                                 detector.score_function()))
    bar.close()
    m = metrics(sel, results, iou, matching, detector.card)
    if runs is not None:
        m["theta_sweep"] = theta_sweep(runs, iou, matching)
    m.update({"model": detector.name, "params": detector.params.to_dict(),
              "images_without_detection_file": 0, "command": command_line()})
    return Evaluation(sel, results, m, docs, runs)


def _card_or_none(model_name: str | None) -> dict[str, Any] | None:
    """The card of the model saved detections name, None when it is not here (provenance
    unknown)."""
    if not model_name:
        return None
    try:
        return read_card(model_name)
    except InputError:
        return None


def evaluate_detections(folder: str | os.PathLike[str], root: str | os.PathLike[str] | None = None,
                        split: str = "test", series: list[str] | None = None, iou: float = 0.5,
                        matching: str = "coco") -> Evaluation:
    """Score saved detection documents (``xdefect detect`` output, matched to images by
    file stem; an image without one counts as no detections) like
    :func:`evaluate_folder`. The model's provenance comes from the card of the model the
    documents name, when it is still on disk."""
    check_iou(iou)
    sel = select(gdxray.default_root() if root is None else root, series, split)
    docs = read_detections(folder)
    results, missing = detection_results(sel, docs)
    first = next(iter(docs.values()), {})
    model_name, params_doc = first.get("model"), first.get("params", {})
    m = metrics(sel, results, iou, matching, _card_or_none(model_name))
    m.update({"model": model_name, "params": params_doc,
              "images_without_detection_file": missing, "command": command_line()})
    return Evaluation(sel, results, m)


def _annotated(annotations: str | os.PathLike[str], image_dir: str | os.PathLike[str] | None,
               limit: int | None) -> list[AnnotatedImage]:
    images = read_coco_ground_truth(annotations, image_dir)
    if not images:
        raise InputError(f"{annotations}: the COCO file lists no image")
    stems: dict[str, Path] = {}
    for a in images:
        if a.path.stem in stems:
            raise InputError(f"{annotations}: images {stems[a.path.stem]} and {a.path} share "
                             "the file stem that names their detection and overlay files")
        stems[a.path.stem] = a.path
    if limit is not None:
        if limit < 1:
            raise InputError(f"--limit-images {limit}: must be at least 1")
        images = images[:limit]
    return images


def _annotated_metrics(annotations: str | os.PathLike[str], images: list[AnnotatedImage],
                       results: list[ImageResult], iou: float, matching: str,
                       card: dict[str, Any] | None) -> dict[str, Any]:
    m = summarise(results, iou, matching)
    prov = provenance(card, "all")
    if prov["known"]:  # lineage names GDXray splits or folders, not these files
        prov["trained_on_evaluated_images"] = None
    m.update({"split": ANNOTATED_SPLIT, "annotations": str(annotations),
              "image_dir": str(images[0].path.parent),
              "series": sorted({a.series for a in images}), "unscored_series": [],
              "provenance": prov})
    return m


def evaluate_annotated(detector: Detector, annotations: str | os.PathLike[str],
                       image_dir: str | os.PathLike[str] | None = None, iou: float = 0.5,
                       matching: str = "coco", limit: int | None = None) -> Evaluation:
    """Run ``detector`` over the images of a COCO dataset file (your own annotated
    radiographs: :func:`xdefect.coco.read_coco_ground_truth`, files under ``image_dir``,
    default the file's folder) and score its detections at ``iou`` as
    :func:`evaluate_folder` does; an image without annotations counts as defect-free, and
    every box, ``iscrowd`` ones too, is one defect to find. Series: each image's
    ``series`` field, else the file's stem. Split :data:`ANNOTATED_SPLIT`; whether the
    model trained on these images is not known (``provenance``). ``limit``: only the first
    ``limit`` images."""
    check_iou(iou)
    images = _annotated(annotations, image_dir, limit)
    results, docs = [], {}
    for a in progress(iterable=images, desc="evaluate", unit="image"):
        rad = read_image(a.path)
        dets, _ = detector.run(rad.pixels)
        docs[a.path.stem] = detector.document(str(a.path), rad.shape, dets)
        results.append(ImageResult(a.path.stem, a.series, *detection_arrays(dets), a.boxes))
    m = _annotated_metrics(annotations, images, results, iou, matching, detector.card)
    m.update({"model": detector.name, "params": detector.params.to_dict(),
              "images_without_detection_file": 0, "command": command_line()})
    return Evaluation(None, results, m, docs, paths={a.path.stem: a.path for a in images})


def evaluate_annotated_detections(folder: str | os.PathLike[str],
                                  annotations: str | os.PathLike[str],
                                  image_dir: str | os.PathLike[str] | None = None,
                                  iou: float = 0.5, matching: str = "coco") -> Evaluation:
    """Score saved detection documents (``xdefect detect`` output, matched to the COCO
    file's images by file stem; an image without one counts as no detections) like
    :func:`evaluate_annotated`."""
    check_iou(iou)
    images = _annotated(annotations, image_dir, None)
    docs = read_detections(folder)
    results, missing = [], 0
    for a in images:
        d = docs.get(a.path.stem)
        missing += d is None
        results.append(ImageResult(a.path.stem, a.series, *_document_arrays(d), a.boxes))
    first = next(iter(docs.values()), {})
    m = _annotated_metrics(annotations, images, results, iou, matching,
                           _card_or_none(first.get("model")))
    m.update({"model": first.get("model"), "params": first.get("params", {}),
              "images_without_detection_file": missing, "command": command_line()})
    return Evaluation(None, results, m, paths={a.path.stem: a.path for a in images})
