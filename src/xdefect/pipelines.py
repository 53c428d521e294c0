"""The jobs the command line runs, as library functions: each joins stages over files
(read inputs, run the stages, write outputs atomically) and returns what a caller would
print. ``xdefect.cli`` only parses arguments and prints these functions' results;
``experiments/`` call the same functions.

Data flows one way through them: images (:mod:`~xdefect.gdxray`, :mod:`~xdefect.io`) ->
simulated defects (:mod:`~xdefect.simulate`) -> patches (:mod:`~xdefect.patches`,
:mod:`~xdefect.dataset`) -> models (:mod:`~xdefect.train`, :mod:`~xdefect.gan`) -> score
maps and regions (:mod:`~xdefect.detect`, :class:`~xdefect.detector.Detector`) ->
figures (:mod:`~xdefect.evaluate`, :mod:`~xdefect.protocol`) -> pictures
(:mod:`~xdefect.report`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from xdefect import gan, gdxray, simulate
from xdefect.checkpoint import (
    bundled_model,
    derived_run,
    init_record,
    load_tensors,
    read_card,
    resolve_model,
    save_tensors,
)
from xdefect.coco import read_coco_ground_truth, write_coco
from xdefect.dataset import open_dataset
from xdefect.detect import MAX_BOX_SCALE, detection_arrays
from xdefect.detector import Detector
from xdefect.errors import InputError
from xdefect.evaluate import BoxSizeRatio, ImageResult, box_size_ratio, match_image
from xdefect.html_report import image_errors, marked_overlay, render_report, thumbnail_uri
from xdefect.io import (
    atomic_dir,
    atomic_path,
    check_new_dir,
    command_line,
    image_size,
    list_image_files,
    progress,
    read_image,
    write_image,
    write_json,
)
from xdefect.patches import BuildArgs, build_patches, check_generator
from xdefect.protocol import Evaluation, model_results, select
from xdefect.report import dataset_grid, overlay, patch_grid, pr_curve_figure
from xdefect.segment import is_segmenter_arch

__all__ = ["CALIBRATION_SPLITS", "build_dataset", "calibrate_boxes", "check_inputs",
           "detect_files", "export_model", "run_demo", "save_evaluation", "show_gdxray_image",
           "simulate_image", "sort_inputs", "write_dataset_grid", "write_evaluation",
           "write_evaluation_coco", "write_phantom_root"]


def show_gdxray_image(root: str | os.PathLike[str], series: str, number: int,
                      out: str | os.PathLike[str], thickness: int = 1) -> dict[str, Any]:
    """Draw one GDXray image's ground truth (red) and casting-mask outline (blue) into
    ``out``; returns the image's stem, its number of boxes and the mask's fraction."""
    recs = [r for r in gdxray.list_images(root, [series]) if r.number == number]
    if not recs:
        raise InputError(f"{gdxray.castings_dir(root) / series}: no image number {number}")
    smp = gdxray.load_sample(recs[0], gdxray.load_ground_truth(root, series))
    mask = gdxray.casting_mask(smp.image)
    write_image(out, overlay(smp.image, ground_truth=smp.boxes, mask=mask, thickness=thickness))
    return {"stem": smp.record.stem, "boxes": len(smp.boxes), "mask_fraction": float(mask.mean())}


def simulate_image(source: str | os.PathLike[str], n: int, seed: int = 0,
                   config: simulate.SamplerConfig | None = None,
                   out: str | os.PathLike[str] | None = None,
                   grid: str | os.PathLike[str] | None = None,
                   json_path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Simulate defects on an image file (or ``"phantom"``, the synthetic wheel): with
    ``out``, ``n`` defects in the casting written at the file's bit depth (parameters to
    ``json_path``); with ``grid``, an 8x8 grid of 32x32 patches with one defect each.
    Returns the document of the defects placed (empty without ``out``)."""
    if out is None and grid is None:
        raise InputError("simulate: give --out OUT.png (image) or --grid OUT.png (patch grid)")
    cfg = config or simulate.SamplerConfig()
    rng = np.random.default_rng(seed)
    if str(source) == "phantom":
        ph = simulate.phantom(seed=seed)
        image, mask, depth, name = ph.image, ph.mask, 8, "phantom"
    else:
        rad = read_image(source)
        image, depth, name = rad.pixels, rad.bit_depth, str(rad.path)
        mask = gdxray.casting_mask(image)
    if grid is not None:
        if min(image.shape) < 32:
            raise InputError(f"{name}: image {image.shape[1]}x{image.shape[0]} is smaller "
                             "than the 32x32 patches of --grid")
        write_image(grid, patch_grid(simulate.defect_patches(image, mask, cfg, rng, n=64),
                                     cols=8))
    doc: dict[str, Any] = {"image": name, "defects": []}
    if out is not None:
        result, placed = simulate.add_random_defects(image, n, rng, mask=mask, config=cfg)
        write_image(out, result, bit_depth=depth)
        doc["defects"] = simulate.defect_records(placed)
        # a defect on saturated (or clipped) pixels changes nothing: count them honestly
        quant = 255 if depth == 8 else 65535
        changed = [bool(np.any(np.rint(result[y1:y2, x1:x2] * quant)
                               != np.rint(image[y1:y2, x1:x2] * quant)))
                   for x1, y1, x2, y2 in (np.asarray(d["box"], int) for d in doc["defects"])]
        doc["invisible"] = int(len(changed) - sum(changed))
        if json_path is not None:
            write_json(json_path, doc)
    return doc


def build_dataset(args: BuildArgs | None = None, /, **options: Any) -> dict[str, Any]:
    """Build a patch dataset folder; returns its manifest.

    Give a :class:`~xdefect.patches.BuildArgs` or its fields as keywords (``gdxray`` and
    ``out`` at least), e.g. ``build_dataset(gdxray=root, out="data/x", per_image=500)``.
    Opens what the builder draws from other stages' files: the GAN of ``gan`` for a mix
    with a GAN portion, and the model of ``hard_model`` (a path or a bundled name) whose
    score maps (``hard_mode``, ``hard_stride``) hard negatives are mined from."""
    try:
        args = BuildArgs(**options) if args is None else replace(args, **options)
    except TypeError as exc:
        names = ", ".join(f.name for f in fields(BuildArgs))
        raise InputError(f"build_dataset: {exc} (fields: {names})") from None
    mix = args.validate()
    check_new_dir(args.out, args.force)  # before opening any model
    score_fn = None
    if args.hard_model is not None:
        det = Detector.load(args.hard_model)
        args = replace(args, hard_model=str(det.path))
        try:
            score_fn = det.scorer(args.hard_mode, args.hard_stride)
        except InputError as exc:
            msg = str(exc).removeprefix("detection parameters: ")
            raise InputError(f"--hard-stride/--hard-mode: {msg}") from None
    source = None
    if mix.gan:
        check_generator(args, mix)
        source = gan.patch_source(args.gan)
    return build_patches(args, score_fn, source)


def write_dataset_grid(folder: str | os.PathLike[str], out: str | os.PathLike[str],
                       per_row: int = 12, seed: int = 0) -> list[str]:
    """Write a picture of a dataset folder (:func:`xdefect.report.dataset_grid`: one row
    of random patches per label and source); returns the rows' names."""
    if per_row < 1:
        raise InputError(f"--per-row {per_row}: must be at least 1")
    image, names = dataset_grid(open_dataset(folder), per_row, seed)
    write_image(out, image)
    return names


def sort_inputs(inputs: list[str | os.PathLike[str]]) -> tuple[list[Path], list[str]]:
    """The image files of ``inputs`` (files and folders) that pass :func:`check_inputs`'s
    checks, and one line per file that does not (``FILE: problem``). A missing path or a
    folder without images is still an :class:`InputError`, as are two inputs with the same
    file name stem (their outputs would collide)."""
    files = list_image_files(inputs)
    good, bad = [], []
    for f in files:
        try:
            h, w = gdxray.image_shape(f)
            if h < 32 or w < 32:
                raise InputError(f"{f}: image {w}x{h} is smaller than the 32x32 window")
        except InputError as exc:
            bad.append(str(exc))
            continue
        good.append(f)
    stems = [f.stem for f in files]
    if len(set(stems)) != len(stems):
        raise InputError("two inputs share a file name stem; outputs would collide")
    return good, bad


def check_inputs(inputs: list[str | os.PathLike[str]]) -> list[Path]:
    """The image files of ``inputs`` (files and folders), each checked to be a readable
    image of at least 32x32 pixels (headers only), with distinct file name stems (their
    outputs would collide); :class:`InputError` on the first problem."""
    good, bad = sort_inputs(inputs)
    if bad:
        raise InputError(bad[0])
    return good


def detect_files(detector: Detector, inputs: list[str | os.PathLike[str]],
                 out: str | os.PathLike[str], png: bool = True, strict: bool = True,
                 coco: str | os.PathLike[str] | None = None, force: bool = False
                 ) -> dict[str, Any]:
    """Detect defects in image files (and the images of folders): ``OUT/<stem>.json``
    (the detection document) and, with ``png``, ``OUT/<stem>.png`` (detections green)
    for each. With ``strict`` every input is checked before anything is written and the
    first bad one stops the batch (:class:`InputError`); otherwise a bad image is skipped
    and named in ``skipped`` (one line each) and the batch goes on. ``coco``: also write the
    detections as COCO JSON there (:func:`xdefect.coco.write_coco`, no ground truth).
    The folder appears whole or not at all (:func:`xdefect.io.atomic_dir`, with a
    ``manifest.json``); an existing one is replaced only with ``force`` and only if xdefect
    wrote it, so a rerun never mixes old and new files. Returns the number of images done,
    detections, skipped lines and the seconds taken."""
    files, skipped = (check_inputs(inputs), []) if strict else sort_inputs(inputs)
    if not files:
        raise InputError(f"no readable image among the inputs ({skipped[0]})")
    folder = Path(out)
    sources = {f.resolve() for f in files}
    for f in files:  # never write over an input (--out beside the images)
        for target in (folder / f"{f.stem}.json", folder / f"{f.stem}.png"):
            if target.resolve() in sources:
                raise InputError(f"{target}: is an input image; choose an --out folder "
                                 "that does not hold the images")
    check_new_dir(folder, force)
    t0 = time.perf_counter()
    total = done = 0
    found: list[ImageResult] = []
    shapes: list[tuple[int, int]] = []
    with atomic_dir(folder, force) as tmp:
        for f in progress(iterable=files, desc="detect", unit="image"):
            try:
                rad = read_image(f)
            except InputError as exc:  # the header was fine, the pixels are not
                if strict:
                    raise
                skipped.append(str(exc))
                continue
            dets, _ = detector.run(rad.pixels)
            write_json(tmp / f"{f.stem}.json", detector.document(str(f), rad.shape, dets))
            if png:
                boxes, _ = detection_arrays(dets)
                write_image(tmp / f"{f.stem}.png",
                            overlay(rad.pixels, detections=boxes, thickness=2))
            total += len(dets)
            done += 1
            found.append(ImageResult(f.stem, "", *detection_arrays(dets), np.zeros((0, 4))))
            shapes.append(rad.shape)
        if not done:  # every image failed: nothing is written
            raise InputError(f"no image could be read ({skipped[0]})")
        write_json(tmp / "manifest.json", {"format": "xdefect-detections/1",
                                           "model": detector.name, "images": done,
                                           "skipped": skipped, "command": command_line()})
    if coco is not None:
        write_coco(coco, found, shapes, with_ground_truth=False)
    return {"images": done, "detections": total, "skipped": skipped,
            "seconds": time.perf_counter() - t0}


def write_evaluation(ev: Evaluation, out: str | os.PathLike[str], overlays: bool = True,
                     html: bool = False) -> None:
    """Write an evaluation into a folder: ``detections/<stem>.json`` (when a model ran),
    ``metrics.json``, ``pr_curve.png`` and, with ``overlays``, ``overlays/<stem>.png``
    (detections green, ground truth red). With ``html``, also ``report.html``
    (:mod:`xdefect.html_report`: thumbnails of every image with false alarms and misses
    marked, each opening its overlay, drawn with the same marks)."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    for stem, doc in ev.documents.items():
        write_json(folder / "detections" / f"{stem}.json", doc)
    write_json(folder / "metrics.json", ev.metrics)
    write_image(folder / "pr_curve.png", pr_curve_figure(ev.results, ev.metrics["iou"],
                                                         ev.metrics.get("theta_sweep")))
    if not (overlays or html):
        return
    cards = []
    for res in progress(iterable=ev.results, desc="overlays", unit="image"):
        image = read_image(ev.paths[res.key]).pixels
        if html:
            err = image_errors(res, ev.metrics["iou"], ev.metrics.get("matching", "coco"))
            pic = marked_overlay(image, res, err)
            cards.append({"stem": res.key, "series": res.series, "misses": err.misses,
                          "alarms": err.false_alarms, "found": len(res.gt) - err.misses,
                          "boxes": len(res.gt), "thumb": thumbnail_uri(pic),
                          "href": f"overlays/{res.key}.png"})
        else:
            pic = overlay(image, detections=res.boxes, ground_truth=res.gt, thickness=2)
        write_image(folder / "overlays" / f"{res.key}.png", pic)
    if html:
        page = render_report(ev.metrics, cards, (folder / "pr_curve.png").read_bytes())
        with atomic_path(folder / "report.html") as tmp:
            tmp.write_text(page)


def save_evaluation(ev: Evaluation, out: str | os.PathLike[str], overlays: bool = True,
                    html: bool = False, force: bool = False) -> None:
    """:func:`write_evaluation` as a whole folder (``xdefect evaluate``): built aside and
    renamed into place with a ``manifest.json``; an existing ``out`` is replaced only with
    ``force`` and only if xdefect wrote it (a rerun never mixes its files with an earlier
    run's)."""
    with atomic_dir(out, force) as tmp:
        write_evaluation(ev, tmp, overlays, html)
        write_json(tmp / "manifest.json", {"format": "xdefect-evaluation/1",
                                           "model": ev.metrics.get("model"),
                                           "images": ev.metrics["images"],
                                           "command": ev.metrics.get("command")})


def write_evaluation_coco(ev: Evaluation, path: str | os.PathLike[str]) -> Path:
    """The evaluation's ground truth as a COCO dataset at ``path`` and its detections as
    COCO results beside it (:func:`xdefect.coco.write_coco`); returns the latter's path."""
    shapes = [image_size(ev.paths[r.key]) for r in ev.results]
    return write_coco(path, ev.results, shapes)


def export_model(model: str | os.PathLike[str] | None, out: str | os.PathLike[str],
                 stride: int | None = None) -> dict[str, Any]:
    """Export a model (a path or a bundled name; default the bundled default) to ONNX
    (:func:`xdefect.export.export_onnx`): a patch classifier's dense score-map graph at
    ``stride`` (default: the card's) and the patch classifier (the patch classifier alone
    for an architecture that stretches each window to its own contrast), or a segmenter's
    segment graph (stride 1)."""
    from xdefect.export import export_onnx

    path = resolve_model(model)
    arch = read_card(path)["arch"] if path.suffix.lower() != ".onnx" else {}
    if is_segmenter_arch(arch):
        if stride not in (None, 1):
            raise InputError(f"--stride {stride}: a segmenter scores every pixel (stride 1)")
        det = Detector.load(path, device="cpu")
    elif isinstance(arch, dict) and arch.get("stretch"):  # stretched windows: no dense graph
        if stride is not None:
            raise InputError(f"--stride {stride}: {arch.get('name')} stretches each window "
                             "to its own contrast, so it has no dense graph to stride")
        det = Detector.load(path, device="cpu", mode="patch")
    else:
        det = Detector.load(path, device="cpu", mode="dense",
                            **({"stride": stride} if stride else {}))
    if det.model is None:
        raise InputError(f"{det.path}: already an ONNX graph; export its .safetensors model")
    return export_onnx(det.model, det.card, det.params.stride, out)


#: the splits whose boxes may set a model's box size (never the test images: they report)
CALIBRATION_SPLITS = ("tuning", "val", "train", "odd")


@dataclass(frozen=True)
class _Examples:
    """The annotated images a box size is set from: the results a detector gives on them
    (in order, lazily), how many there are, where they came from (for messages and the
    card's record)."""

    results: Callable[[Detector], Iterator[ImageResult]]
    total: int
    where: str
    what: str
    record: dict[str, Any]


def _gdxray_examples(root: str | os.PathLike[str], series: list[str] | None, split: str
                     ) -> _Examples:
    if split not in CALIBRATION_SPLITS:
        raise InputError(f"--split {split}: box sizes are set on {', '.join(CALIBRATION_SPLITS)} "
                         "images, never on the test images that report them")
    sel = select(root, series, split)
    picked = [r for r in sel.records if len(sel.ground_truth[r.series].boxes_of(r.number))]
    what = f"{split} image(s) of {', '.join(sel.series)}"
    if not picked:
        raise InputError(f"{root}: no {what} holds an annotated defect: nothing to compare "
                         "box sizes with")
    sel = replace(sel, records=picked)

    def results(det: Detector) -> Iterator[ImageResult]:
        return model_results(sel, det.model, det.params, det.name, batch=det.batch,
                             device=det.device, score_fn=det.score_function())

    return _Examples(results, len(picked), str(root), what,
                     {"root": str(root), "series": sel.series, "split": split})


def _coco_examples(annotations: str | os.PathLike[str],
                   image_dir: str | os.PathLike[str] | None) -> _Examples:
    picked = [a for a in read_coco_ground_truth(annotations, image_dir) if (~a.crowd).any()]
    if not picked:
        raise InputError(f"{annotations}: no image holds an annotated defect (crowd regions "
                         "aside): nothing to compare box sizes with")

    def results(det: Detector) -> Iterator[ImageResult]:
        for a in picked:
            dets, _ = det.run(read_image(a.path).pixels)
            yield ImageResult(a.path.name, "", *detection_arrays(dets), a.boxes, a.crowd)

    return _Examples(results, len(picked), str(annotations), "annotated image(s)",
                     {"annotations": str(annotations), "image_dir": str(picked[0].path.parent)})


def _paired_results(det: Detector, examples: _Examples, images: int, min_pairs: int
                    ) -> tuple[list[ImageResult], BoxSizeRatio]:
    """``det``'s results on ``examples`` in order until at least ``images`` are read and
    ``min_pairs`` annotated boxes overlap a detection, and their :func:`box_size_ratio`;
    :class:`InputError` when the images run out first."""
    results: list[ImageResult] = []
    est = box_size_ratio(results)
    bar = progress(total=examples.total, desc="calibrate boxes", unit="image")
    for res in examples.results(det):
        results.append(res)
        bar.update()
        est = box_size_ratio(results)
        if len(results) >= images and est.pairs >= min_pairs:
            break
    bar.close()
    where, what = examples.where, examples.what
    if len(results) < images:
        raise InputError(f"{where}: only {len(results)} {what} hold an annotated defect, "
                         f"fewer than --images {images}: too few to set the box size")
    if est.pairs < min_pairs:
        raise InputError(f"{where}: only {est.pairs} of the {est.defects} annotated defects "
                         f"on the {len(results)} {what} overlap a detection, fewer than "
                         f"--min-pairs {min_pairs}: too few to set the box size")
    return results, est


def calibrate_boxes(model: str | os.PathLike[str] | None, out: str | os.PathLike[str],
                    root: str | os.PathLike[str] | None = None,
                    series: list[str] | None = None, split: str = "tuning", images: int = 1,
                    min_pairs: int = 3, device: str | None = "cpu", threads: int | None = None,
                    annotations: str | os.PathLike[str] | None = None,
                    image_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Set a model's box size to a line's annotation convention from a few annotated images
    of its casting: the model (a path or a bundled name) detects on the annotated images
    (with at least one box), in order, until it has read at least ``images`` of them and at
    least ``min_pairs`` annotated boxes overlap a detection; its ``DetectParams.box_scale``
    is multiplied by how much larger the annotated boxes are than its detections there
    (:func:`xdefect.evaluate.box_size_ratio`, the median over the annotated boxes a
    detection overlaps at IoU >= 0.1), rounded to 3 decimals and kept within [0.001,
    ``MAX_BOX_SCALE``] (``capped`` says when the bound decided).

    The images: those of ``split`` (:data:`CALIBRATION_SPLITS`: never the test images) of
    ``series`` under the GDXray ``root``; or, with ``annotations``, the images of that COCO
    dataset file (:func:`xdefect.coco.read_coco_ground_truth`; files under ``image_dir``,
    default the file's folder), the way to bring your own casting's annotations.

    Writes the same weights with that ``box_scale`` to ``out/model.safetensors`` +
    ``model.json`` (its card: the source's, with a ``box_calibration`` record: source
    file, where the boxes came from, images, pairs, ratio, command). Refuses
    (:class:`InputError`, nothing written) an ONNX graph, an ``out`` that holds a model,
    another split, both a root and ``annotations``, no annotated image, and annotated
    images that run out first. Returns ``{"model", "box_scale", "box_scale_before",
    "ratio", "capped", "pairs", "defects", "images"}``."""
    if images < 1 or min_pairs < 1:
        raise InputError(f"--images {images}, --min-pairs {min_pairs}: must be at least 1")
    if (root is None) == (annotations is None):
        raise InputError("give either a GDXray root or a COCO annotations file, not "
                         + ("both" if root is not None else "neither"))
    src, run = derived_run(model, out, "calibrate")
    examples = (_gdxray_examples(root, series, split) if root is not None
                else _coco_examples(annotations, image_dir))  # type: ignore[arg-type]
    det = Detector.load(src, device=device, threads=threads)
    results, est = _paired_results(det, examples, images, min_pairs)
    before = det.params.box_scale
    wanted = round(before * est.ratio, 3)
    scale = min(max(wanted, 0.001), MAX_BOX_SCALE)
    stems = [r.key for r in results]
    record = {"from": init_record(src), **examples.record, "images": stems,
              "defects": est.defects, "pairs": est.pairs, "ratio": round(est.ratio, 4),
              "box_scale_before": before, "box_scale": scale, "capped": scale != wanted,
              "command": command_line()}
    card = {**det.card, "name": run.name, "box_calibration": record,
            "detection": replace(det.params, box_scale=scale).to_dict()}
    card.pop("weights_sha256", None)
    tensors = load_tensors(src)
    run.mkdir(parents=True, exist_ok=True)
    save_tensors(run / "model.safetensors", tensors, card)
    return {"model": str(run / "model.safetensors"), "box_scale": scale,
            "box_scale_before": before, "ratio": est.ratio, "capped": scale != wanted,
            "pairs": est.pairs, "defects": est.defects, "images": stems}


def write_phantom_root(out: str | os.PathLike[str], n: int = 8,
                       shape: tuple[int, int] = (286, 384), defects: int = 3,
                       series: str = "C0001") -> Path:
    """A GDXray-like root of ``n`` synthetic wheel radiographs (:func:`simulate.phantom`,
    seeds 1..n) with ``defects`` simulated voids each and their boxes as GDXray ground
    truth, for trying commands without GDXray (and for pictures that may be shared)."""
    d = Path(out) / "Castings" / series
    d.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(1, n + 1):
        ph = simulate.phantom(shape=shape, n_defects=defects, seed=i)
        write_image(d / f"{series}_{i:04d}.png", ph.image)
        rows += [f"{i} {int(x1) + 1} {int(x2)} {int(y1) + 1} {int(y2)}"
                 for x1, y1, x2, y2 in ph.boxes]
    (d / "ground_truth.txt").write_text("\n".join(rows) + "\n")
    return Path(out)


# --------------------------------------------------------------------------------- demo


def _inspect(det: Detector, name: str, image: np.ndarray, gt: np.ndarray,
             mask: np.ndarray | None, out: Path) -> dict[str, Any]:
    """Detect on one demo image, write its document and overlay; returns the counts."""
    t = time.perf_counter()
    dets, _ = det.run(image, mask)
    dt = time.perf_counter() - t
    boxes, scores = detection_arrays(dets)
    tp, which = match_image(boxes, scores, gt, 0.5)
    doc = det.document(name, image.shape, dets)
    doc["ground_truth"] = [[int(v) for v in b] for b in gt]
    stem = Path(name).stem
    write_json(out / f"{stem}.json", doc)
    write_image(out / f"{stem}_overlay.png",
                overlay(image, detections=boxes, ground_truth=gt, thickness=2))
    hits = int(len(set(which[tp].tolist())))
    return {"name": stem, "defects": len(gt), "hits": hits, "misses": len(gt) - hits,
            "false_alarms": int((~tp).sum()), "seconds": dt,
            "overlay": str(out / f"{stem}_overlay.png")}


def _demo_stages(out: Path, n: int, seed: int, root: Path) -> dict[str, Any]:
    """The demo without a model: the phantom, simulated defects, a patch grid, and the
    casting mask of one GDXray image when present."""
    ph = simulate.phantom(n_defects=n, seed=seed)
    write_image(out / "phantom.png", ph.image)
    write_image(out / "phantom_overlay.png", overlay(ph.image, ground_truth=ph.boxes,
                                                     mask=ph.mask))
    write_json(out / "phantom_defects.json", {
        "image": "phantom", "seed": seed,
        "defects": simulate.defect_records(list(zip(ph.defects, ph.boxes, strict=True)))})
    clean = simulate.phantom(seed=seed)
    grid = simulate.defect_patches(clean.image, clean.mask, simulate.SamplerConfig(),
                                   np.random.default_rng(seed))
    write_image(out / "simulated_patches.png", patch_grid(grid))
    doc: dict[str, Any] = {"model": None, "images": [], "phantom_defects": len(ph.boxes),
                           "phantom_overlay": str(out / "phantom_overlay.png"),
                           "patches": str(out / "simulated_patches.png"), "gdxray": None}
    if (root / "Castings").is_dir():
        rec = gdxray.list_images(root, gdxray.protocol_series(root), "test")[0]
        smp = gdxray.load_sample(rec, gdxray.load_ground_truth(root, rec.series))
        path = out / f"{rec.stem}_mask.png"
        write_image(path, overlay(smp.image, ground_truth=smp.boxes,
                                  mask=gdxray.casting_mask(smp.image)))
        doc["gdxray"] = {"name": rec.stem, "defects": len(smp.boxes), "picture": str(path)}
    return doc


def run_demo(out: str | os.PathLike[str] = "out/demo", model: str | os.PathLike[str] | None = None,
             n: int = 12, seed: int = 0, gdxray_image: str = "C0001_0002",
             root: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """What ``make demo`` runs: a seeded synthetic radiograph with ``n`` simulated defects
    inspected by ``model`` (default: the bundled default), and, when GDXray is present
    under ``root`` (default: ``gdxray.default_root()``), the test image ``gdxray_image``
    (or the first test image). Without any model installed, the stages that need none.

    Returns ``model`` (the weights file's name, ``None`` without a model), ``images``
    (per inspected image: defects, hits, misses, false alarms, seconds, overlay picture;
    empty without a model), ``gdxray`` (the GDXray image shown: name, defects, picture;
    ``None`` without GDXray), ``seconds``, and without a model the phantom's pictures."""
    t0 = time.perf_counter()
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    base = Path(root) if root is not None else gdxray.default_root()
    if model is None and bundled_model() is None:
        return {**_demo_stages(folder, n, seed, base), "seconds": time.perf_counter() - t0}
    det = Detector.load(model)
    doc: dict[str, Any] = {"model": det.path.name, "arch": det.card["arch"]["name"],
                           "params": det.params.to_dict(), "images": [], "gdxray": None}
    ph = simulate.phantom(n_defects=n, seed=seed)
    doc["images"].append(_inspect(det, "phantom.png", ph.image, ph.boxes, ph.mask, folder))
    if (base / "Castings").is_dir():
        test = gdxray.list_images(base, gdxray.protocol_series(base), "test")
        rec = ([r for r in test if r.stem == gdxray_image] or test)[0]
        smp = gdxray.load_sample(rec, gdxray.load_ground_truth(base, rec.series))
        doc["images"].append(_inspect(det, rec.stem + ".png", smp.image, smp.boxes, None,
                                      folder))
        doc["gdxray"] = {"name": rec.stem, "defects": len(smp.boxes),
                         "picture": doc["images"][-1]["overlay"]}
    return {**doc, "seconds": time.perf_counter() - t0}
