"""Castings never seen, their box size set from a few annotated images of each
(``xdefect calibrate-boxes``; issue 13).

``experiments/loso_localisation.py`` and ``loso_box_scale.py`` found most of what the
leave-series-out folds lose at IoU 0.5 to be boxes drawn otherwise than each casting's
annotators drew them, in both directions (C0001, C0031 too small; C0002 too big): no one
scale suits every casting, and without labels a casting's convention cannot be known. A
line that adopts xdefect has a few annotated images of its casting. For each fold of the
library's layout (``WORK/foldI/TUNED/model.safetensors``, the model that never saw the
fold's held-out series) and each held-out series, :func:`xdefect.pipelines.calibrate_boxes`
reads the series' first ``--images`` annotated **tuning** images (odd, n % 4 == 1; more
until 3 annotated defects overlap a detection) and writes the fold model with its box
scale set to their annotators' (``WORK/foldI/boxesK-SERIES/``); then that model is
evaluated on the series' **test** images (even), against the fold model's own saved
detections of the same images (``foldI/eval-SERIES/detections``, box scale 1). Nothing
is chosen on a test image. A series whose tuning images hold too few paired defects keeps
its own box scale (said per series). Writes ``--out`` (JSON), read by
``experiments/results_tables.py`` (block ``loso-box-examples``)::

    .venv/bin/python experiments/loso_box_examples.py --work runs/seg/loso5-bg-ext --threads 1

``--adapt RUN`` does the same for the models an ``experiments/adapt_series.py`` run adapted
to each series on its odd images without labels (``RUN/SERIES/adapted``, against their
saved test detections ``RUN/SERIES/eval-adapted``; calibrated into ``RUN/SERIES/boxesK``):
target 2's protocol plus a few annotated tuning images.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from adapt_series import has_scored_images  # experiments/, beside this script
from loso_library_pool import evaluated_held_out, figures

from xdefect.detector import Detector
from xdefect.errors import InputError
from xdefect.evaluate import ImageResult
from xdefect.io import command_line, write_json
from xdefect.pipelines import calibrate_boxes, write_evaluation
from xdefect.protocol import evaluate_detections, evaluate_folder

__all__ = ["adapt_jobs", "folds_jobs", "held_out", "main", "series_pair"]


def held_out(fold: Path, roots: list[Path], tuned: str) -> dict[str, Path] | None:
    """The annotated series of ``roots`` the fold's model never trained on, each with its
    root; None until the fold is tuned and every one of them evaluated."""
    card_file = fold / tuned / "model.json"
    if not card_file.is_file():
        return None
    return evaluated_held_out(fold, json.loads(card_file.read_text()), roots)


def series_pair(model: Path, saved: Path, run: Path, s: str, root: Path, images: int,
                threads: int) -> tuple[dict, list[ImageResult], list[ImageResult]]:
    """One series: the calibration record of ``model`` on its tuning images (written to
    ``run``), and its test images' results at the model's own box scale (the saved
    detections ``saved``) and with the calibrated model (evaluated once, saved in
    ``run/eval-test``; reread when there)."""
    before = evaluate_detections(saved, root, "test", [s]).results
    try:
        if not (run / "model.safetensors").is_file():
            calibrate_boxes(model, run, root, [s], "tuning", images, 3, "cpu", threads)
    except InputError as exc:
        if "too few to set the box size" not in str(exc):
            raise
        own = json.loads(model.with_suffix(".json").read_text())["detection"]["box_scale"]
        return {"calibrated": False, "why": str(exc), "box_scale": own}, before, before
    card = json.loads((run / "model.json").read_text())
    ev_dir = run / "eval-test"
    if (ev_dir / "metrics.json").is_file():
        after = evaluate_detections(ev_dir / "detections", root, "test", [s]).results
    else:
        ev = evaluate_folder(Detector.load(run / "model.safetensors", device="cpu",
                                           threads=threads), root, "test", [s])
        write_evaluation(ev, ev_dir, overlays=False)
        after = ev.results
    cal = card["box_calibration"]
    return ({"calibrated": True, "box_scale": cal["box_scale"], "images": cal["images"],
             "pairs": cal["pairs"], "defects": cal["defects"], "ratio": cal["ratio"]},
            before, after)


def folds_jobs(work: Path, roots: list[Path], tuned: str, images: int
               ) -> tuple[list[str], list[tuple[str, str, Path, Path, Path, Path]]]:
    """The evaluated folds of ``work`` and, per held-out series with test images, ``(series,
    fold, root, model, saved detections, calibration folder)``."""
    folds, jobs = [], []
    for fold in sorted(p for p in work.glob("fold*") if p.is_dir()):
        held = held_out(fold, roots, tuned)
        if held is None:
            continue
        folds.append(fold.name)
        jobs += [(s, fold.name, root, fold / tuned / "model.safetensors",
                  fold / f"eval-{s}" / "detections", fold / f"boxes{images}-{s}")
                 for s, root in sorted(held.items()) if has_scored_images(root, s)]
    return folds, jobs


def adapt_jobs(run: Path, images: int) -> list[tuple[str, str, Path, Path, Path, Path]]:
    """An ``experiments/adapt_series.py`` run's series with test images: ``(series, "adapted",
    root, adapted model, its saved test detections, calibration folder)``."""
    doc = json.loads((run / "adapt_series.json").read_text())
    root = Path(doc["root"])
    return [(s, "adapted", root, run / s / "adapted" / "model.safetensors",
             run / s / "eval-adapted" / "detections", run / s / f"boxes{images}")
            for s in sorted(doc["per_series"]) if has_scored_images(root, s)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("runs/seg/loso5-bg-ext"))
    ap.add_argument("--gdxray", type=Path, nargs="+",
                    default=[Path("../shared/data/gdxray"), Path("../shared/data/gdxray-extra")])
    ap.add_argument("--tuned", default="tta8-join", help="each fold's tuned model folder")
    ap.add_argument("--adapt", type=Path, default=None, metavar="RUN",
                    help="instead of the folds: an experiments/adapt_series.py run's adapted "
                         "models (adapted on the odd images without labels)")
    ap.add_argument("--images", type=int, default=1,
                    help="fewest annotated tuning images read per series (calibrate-boxes "
                         "--images)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None,
                    help="default: runs/loso5_boxes{IMAGES}_WORKNAME.json (--adapt: "
                         "runs/adapt_boxes{IMAGES}_RUNNAME.json)")
    a = ap.parse_args()
    if a.images < 1:
        ap.error("--images must be at least 1")
    if a.adapt is not None:
        folds, jobs = ["adapted"], adapt_jobs(a.adapt, a.images)
        out = a.out or Path(f"runs/adapt_boxes{a.images}_{a.adapt.name}.json")
    else:
        folds, jobs = folds_jobs(a.work, a.gdxray, a.tuned, a.images)
        out = a.out or Path(f"runs/loso5_boxes{a.images}_{a.work.name}.json")
    per: dict[str, dict] = {}
    before: list[ImageResult] = []
    after: list[ImageResult] = []
    for s, fold, root, model, saved, run in jobs:
        rec, b, f = series_pair(model, saved, run, s, root, a.images, a.threads)
        per[s] = {"fold": fold, **rec, "scale_1": figures(b)["per_series"][s],
                  "calibrated_model": figures(f)["per_series"][s]}
        before += b
        after += f
        print(json.dumps({"series": s, "box_scale": rec["box_scale"],
                          "ap": [per[s]["scale_1"]["ap"], per[s]["calibrated_model"]["ap"]]}),
              flush=True)
    if not per:
        raise SystemExit(f"loso_box_examples.py: {a.adapt or a.work}: nothing evaluated")
    write_json(out, {
        "protocol": ("models adapted to each series on its odd images without labels"
                     if a.adapt else "leave-series-out folds (each model never saw its "
                     "held-out series)") + "; each series' box scale set on its first "
                    "annotated tuning images (xdefect calibrate-boxes), scored on its test "
                    "images (even)",
        "work": str(a.adapt or a.work), "tuned": None if a.adapt else a.tuned,
        "images": a.images, "folds": folds, "per_series": per,
        "pooled_scale_1": figures(before), "pooled_calibrated": figures(after),
        "command": command_line()})
    print(f"{out}: test images, pooled AP {figures(before)['ap']:.4f} at the models' own box "
          f"scale -> {figures(after)['ap']:.4f} with each casting's box size from its tuning "
          "images")


if __name__ == "__main__":
    main()
