"""Box scale on castings never seen (issue 13, target 1).

``experiments/loso_localisation.py`` found the leave-series-out fold models' boxes mostly
too small for the held-out castings' annotations (C0001, C0021, C0031, C0036), though
each fold's growth was chosen on its training series' tuning images: a model boxes the
castings it trained on as their annotators did, and castings it never saw smaller.
``DetectParams.box_scale`` multiplies every box's sides about its centre after growth
(``xdefect.detect.resize_detections``). Which scale suits a casting never seen cannot be
chosen on the tuning images (castings the model saw), so it is chosen across castings:

* for each fold of a run of the ``experiments/loso_library.sh`` layout
  (``WORK/foldI/eval-SERIES/detections``), the scale of ``--scales`` with the best AP at
  IoU 0.5 over the **other** folds' held-out detections pooled (series the fold's model
  trained on, scored by models that did not: no image of the fold's own held-out series
  chooses anything);
* the fold's saved held-out detections resized with it, pooled over the folds.

With ``--choose-on odd`` only the odd images of the other folds' held-out series choose
(no test image of any series: the brief's split rule read strictly; the issue's target
allows choosing by the leave-series-out figure itself, which spans all images).

Where a fold's boxes are not joined (``join`` -1), resizing its saved boxes is what
``detect`` with that ``box_scale`` makes. Where they are (the scale applies before the
join, ``xdefect.detect.finish_boxes``), the fold's model scans its held-out series once
more and the regions of each score map are boxed at every scale (the sweep of
``experiments/loso_settings.py``, cached in ``WORK/foldI/grid/SERIES.json``; its scale-1
boxes must reproduce the fold's saved detections, checked). With ``--point=-fa2`` each
fold's detections are first cut at its report threshold (``tta8-join-fa2``, chosen on
the tuning images with scale 1), as ``loso_library_pool.py --point=-fa2`` does. Also
recorded: the pooled AP at every fixed scale over all folds (a diagnosis: it reads the
held-out labels, and chooses nothing). Writes ``--out`` (JSON, the layout of
``loso_library_pool.py`` plus the scales), read by ``experiments/results_tables.py``
(block ``loso-box-scale``)::

    .venv/bin/python experiments/loso_box_scale.py --work runs/seg/loso5-ext

``--adapt RUN...`` asks whether the scale carries over to models adapted to a new casting
(``experiments/adapt_series.py`` runs: each series' adapted model on its even images,
``RUN/SERIES/eval-adapted/detections``): their detections scored at scale 1, at the scale
each series' fold chose in ``--scales-from`` (a result file of the mode above, chosen on
odd images only: no test image chooses it) and at 1.1 and 1.2; nothing chosen. Writes
``runs/adapt_box_scale.json`` (block ``adapt-box-scale``).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
from adapt_series import has_scored_images  # experiments/, beside this script
from loso_library_pool import figures, held_out_results  # experiments/, beside this script
from loso_settings import fold_grid, key_of  # experiments/, beside this script

from xdefect import gdxray
from xdefect.detect import Detection, DetectParams, resize_detections
from xdefect.evaluate import ImageResult, scoring_at_least, summarise
from xdefect.io import command_line, write_json
from xdefect.models import setup_device
from xdefect.protocol import evaluate_detections

__all__ = ["SCALES", "adapt_check", "choose", "choose_scale", "fold_results", "main",
           "nested_scales", "resized"]

#: box scales tried (1: the boxes as the fold's settings made them)
SCALES = (1.0, 1.05, 1.1, 1.15, 1.2, 1.25, 1.3, 1.4)


def fold_results(fold: Path, roots: list[Path], scales: tuple[float, ...] = SCALES,
                 cut_by: str | None = None, device: str = "cpu"
                 ) -> tuple[dict, dict[float, list[ImageResult]]] | None:
    """A fold's card and its held-out detections (``loso_library_pool.held_out_results``:
    all images of every held-out series; cut at ``cut_by``'s report threshold when given)
    at every scale of ``scales``: its saved boxes resized (:func:`resized`) when they are
    not joined, else boxed anew from its model's score maps at each scale
    (``loso_settings.fold_grid``); None when a held-out series is not evaluated yet."""
    got = held_out_results(fold, roots, "tta8-join", cut_by)
    if got is None or not got[1]:
        return None
    card, held, rs, min_score = got
    if card["detection"].get("join", -1) == -1:
        shapes: dict[str, tuple[int, int]] = {}
        for s, root in sorted(held.items()):
            shapes |= {f"{s}_{n:04d}": hw for n, hw in gdxray.image_shapes(root, s).items()}
        return card, {k: resized(rs, shapes, k) for k in scales}

    def at_scales(base: DetectParams) -> list[DetectParams]:
        return [replace(base, box_scale=k, min_score=-1.0) for k in scales]

    grid = fold_grid(fold, roots, "tta8-join", at_scales, device)
    if grid is None:
        return None
    tuned, by_key = grid  # tuned: the tta8-join card (``card`` is cut_by's when given)
    return card, {p.box_scale: scoring_at_least(by_key[key_of(p)], min_score)
                  for p in at_scales(DetectParams.from_dict(tuned["detection"]))}


def resized(rs: list[ImageResult], shapes: dict[str, tuple[int, int]], scale: float
            ) -> list[ImageResult]:
    """``rs`` with every box resized by ``scale`` (``resize_detections``, clipped to its
    image of ``shapes``)."""
    if scale == 1:
        return rs
    out = []
    for r in rs:
        dets = [Detection(tuple(int(v) for v in b), float(s), 0)  # type: ignore[arg-type]
                for b, s in zip(r.boxes, r.scores, strict=True)]
        boxes = [d.box for d in resize_detections(dets, scale, shapes[r.key])]
        out.append(ImageResult(r.key, r.series, np.asarray(boxes, float).reshape(-1, 4),
                               r.scores, r.gt, r.ignore))
    return out


def choose(others: list[ImageResult], shapes: dict[str, tuple[int, int]],
           scales: tuple[float, ...] = SCALES) -> tuple[float, dict[str, float]]:
    """The scale of ``scales`` with the best pooled AP (IoU 0.5) over ``others`` resized
    (:func:`choose_scale`)."""
    return choose_scale({k: resized(others, shapes, k) for k in scales})


def choose_scale(by_scale: dict[float, list[ImageResult]]) -> tuple[float, dict[str, float]]:
    """The scale with the best pooled AP (IoU 0.5) over its results in ``by_scale`` (the
    first of equals in its order, so 1 wins a tie when it comes first), and the AP at
    each."""
    aps = {f"{k:g}": summarise(rs)["ap"] for k, rs in by_scale.items()}
    best = max(by_scale, key=lambda k: aps[f"{k:g}"])
    return best, aps


def adapt_check(runs: list[Path], root: Path, scales_from: dict) -> dict:
    """Each ``experiments/adapt_series.py`` run's adapted detections (even images of every
    series it adapted to, under ``root``) at scale 1, at the scale of the series' fold in
    ``scales_from`` (a ``loso_box_scale.py`` result) and at 1.1 and 1.2."""
    fold_scale = {s: f["chosen"]["box_scale"] for f in scales_from["folds"]
                  for s in f["held_out"]}
    out = {}
    for run in runs:
        doc = json.loads((run / "adapt_series.json").read_text())
        parts: list[tuple[str, list[ImageResult]]] = []
        shapes: dict[str, tuple[int, int]] = {}
        for s in sorted(doc["per_series"]):
            if not has_scored_images(root, s, "even"):
                continue  # no annotated even image (a static series annotated on one odd)
            parts.append((s, evaluate_detections(run / s / "eval-adapted" / "detections",
                                                 root, "even", [s]).results))
            shapes |= {f"{s}_{n:04d}": hw for n, hw in gdxray.image_shapes(root, s).items()}
        if any(s not in fold_scale for s, _ in parts):
            raise SystemExit(f"loso_box_scale.py: {run}: a series is in no fold of the scale "
                             "file")
        variants = {"scale 1": [r for _, rs in parts for r in rs],
                    "the fold's scale": [r for s, rs in parts
                                         for r in resized(rs, shapes, fold_scale[s])]}
        for k in (1.1, 1.2):
            variants[f"scale {k:g}"] = [r for _, rs in parts for r in resized(rs, shapes, k)]
        out[str(run)] = {"source": doc.get("source"),
                         "fold_scales": {s: fold_scale[s] for s, _ in parts},
                         **{k: figures(v) for k, v in variants.items()}}
    return out


def nested_scales(done: dict[str, tuple[dict, dict[float, list[ImageResult]]]],
                  odd_only: bool = False
                  ) -> tuple[list[dict], list[ImageResult], list[ImageResult]]:
    """Each fold's scale chosen on the other folds' held-out detections
    (:func:`choose_scale`; ``odd_only``: their odd images only) and its figures there;
    returns the fold records, the pooled results at the chosen scales and at scale 1."""
    folds, nested, plain = [], [], []
    for name, (card, by) in done.items():
        others = {k: [r for n, (_, x) in done.items() if n != name for r in x[k]
                      if not odd_only or gdxray.split_of(int(r.key[-4:])) == "odd"]
                  for k in by}
        best, aps = choose_scale(others)
        mine, rs = by[best], by[1.0]
        nested += mine
        plain += rs
        t = card["tuning"]
        folds.append({"fold": name, "held_out": sorted({r.series for r in rs}),
                      "trained_on": card["lineage"][-1]["data_series"],
                      "train_minutes": (card.get("training") or {}).get("minutes"),
                      "chosen": {k: t.get(k) for k in ("theta", "grow", "extent_fraction",
                                                       "join")} | {"box_scale": best},
                      "others_ap_by_scale": aps, "ap_at_scale_1": summarise(rs)["ap"],
                      **figures(mine)})
    return folds, nested, plain


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("runs/seg/loso5-ext"))
    ap.add_argument("--gdxray", type=Path, nargs="+",
                    default=[Path("../shared/data/gdxray"), Path("../shared/data/gdxray-extra")])
    ap.add_argument("--scales", type=float, nargs="+", default=list(SCALES))
    ap.add_argument("--point", default="", choices=["", "-fa2"],
                    help="-fa2: each fold's detections cut at tta8-join-fa2's report "
                         "threshold first")
    ap.add_argument("--choose-on", choices=("all", "odd"), default="all",
                    help="the other folds' held-out images that choose the scale: all, or "
                         "only the odd ones (no test image of any series)")
    ap.add_argument("--out", type=Path, default=None,
                    help="default: runs/loso5_box_WORKNAME{POINT}[-odd].json")
    ap.add_argument("--threads", type=int, default=1,
                    help="CPU threads for a joined fold's scan")
    ap.add_argument("--adapt", type=Path, nargs="+", default=None, metavar="RUN",
                    help="experiments/adapt_series.py runs: their adapted models' boxes at "
                         "scale 1, at their fold's scale (--scales-from) and at 1.1, 1.2")
    ap.add_argument("--scales-from", type=Path,
                    default=Path("runs/loso5_box_loso5-ext-odd.json"))
    ap.add_argument("--adapt-root", type=Path, default=Path("../shared/data/gdxray-extra"))
    a = ap.parse_args()
    if a.adapt:
        out = a.out or Path("runs/adapt_box_scale.json")
        write_json(out, {"scales_from": str(a.scales_from), "root": str(a.adapt_root),
                         "runs": adapt_check(a.adapt, a.adapt_root,
                                             json.loads(a.scales_from.read_text())),
                         "command": command_line()})
        print(f"{out} written")
        return
    scales = tuple(a.scales)
    if 1.0 not in scales or any(not 0 < s <= 4 for s in scales):
        ap.error("--scales must hold 1 and lie in (0, 4]")
    cut_by = "tta8-join-fa2" if a.point else None
    device = setup_device("cpu", a.threads)
    done = {}
    for fold in sorted(a.work.glob("fold*")):
        got = fold_results(fold, a.gdxray, scales, cut_by, device)
        if got is not None:
            done[fold.name] = got
    if len(done) < 2:
        raise SystemExit(f"loso_box_scale.py: {a.work}: fewer than two folds evaluated (the "
                         "scale of one is chosen on the others)")
    folds, nested, plain = nested_scales(done, a.choose_on == "odd")
    fixed = {}
    for s in scales:
        m = figures([r for _, by in done.values() for r in by[s]])
        fixed[f"{s:g}"] = {k: m[k] for k in ("ap", "true_positives", "gt_boxes",
                                             "false_alarms_per_image")}
    by_root = {}
    for root in a.gdxray:
        mine = set(gdxray.list_series(root))
        by_root[str(root)] = {
            "scale 1": summarise([r for r in plain if r.series in mine])["ap"],
            "chosen scales": summarise([r for r in nested if r.series in mine])["ap"]}
    odd = "-odd" if a.choose_on == "odd" else ""
    out = a.out or Path(f"runs/loso5_box_{a.work.name}{a.point}{odd}.json")
    write_json(out, {
        "protocol": "leave-series-out, 5 folds over the 15 annotated series of both roots; "
                    "each fold's model trained and its settings chosen on the other twelve "
                    "series; its box scale chosen on the other folds' held-out series; every "
                    "image of the held-out series scored once",
        "work": str(a.work), "point": f"cut by {cut_by}'s report threshold" if cut_by
        else "all detections", "chosen_on": "the other folds' held-out series, "
        + ("all images" if a.choose_on == "all" else "odd images only"),
        "scales": list(scales), "folds_done": len(folds),
        "folds": folds, "pooled": figures(nested), "scale_1": figures(plain),
        "fixed": fixed, "by_root": by_root, "command": command_line()})
    print(f"{out}: pooled AP {summarise(nested)['ap']:.4f} (scale 1: "
          f"{summarise(plain)['ap']:.4f}); scales chosen "
          + ", ".join(f"{f['fold']} {f['chosen']['box_scale']:g}" for f in folds))


if __name__ == "__main__":
    main()
