"""Pool the leave-series-out folds of ``experiments/loso_library.sh`` (issue 13, target 1).

Each fold ``runs/seg/loso5-hard/foldI`` holds a model trained by the library on the train
images of the twelve annotated series outside the fold, its settings chosen on their tuning
images (``tta8-join/model.json``), and one evaluation per held-out series over all its
images (``eval-SERIES/detections``). This scores every fold's saved detections against the
ground truth (``xdefect.protocol.evaluate_detections``), pools them over the folds done so
far, and writes ``runs/loso5_hard.json`` (pooled and per series: AP, found, false alarms
per image; per fold: the settings chosen and the training minutes), read by
``experiments/results_tables.py`` (block ``loso-library``). With ``--point=-fa2``: the
operating point of ``tta8-join-fa2`` (the same choice plus the report threshold
``min_score`` keeping at most 2 false alarms per tuning image), i.e. the same detections
scoring at least its ``min_score``, written to ``runs/loso5_hard-fa2.json``. ``--work``,
``--tuned``, ``--cut-by`` and ``--out`` pool other runs of the same layout
(``experiments/loso_mix.sh``)::

    .venv/bin/python experiments/loso_library_pool.py

Nothing is chosen here: every setting was chosen before on the training series' tuning
images.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fcn_detector import read_images  # experiments/, beside this script

from xdefect import gdxray
from xdefect.evaluate import ImageResult, scoring_at_least, summarise
from xdefect.io import command_line, write_json
from xdefect.protocol import evaluate_detections

__all__ = ["cut_card", "evaluated_held_out", "figures", "held_out_results", "main", "pool",
           "reference_from_result", "saved_results", "tuning_fa"]


def figures(rs: list[ImageResult]) -> dict:
    """Pooled and per-series AP, defects found and false alarms per image."""
    m = summarise(rs)
    return {"ap": m["ap"], "images": m["images"], "gt_boxes": m["gt_boxes"],
            "true_positives": m["true_positives"],
            "false_alarms_per_image": m["false_positives"] / max(m["images"], 1),
            "recall_at_fppi": m["recall_at_fppi"],
            "per_series": {s: {"ap": v["ap"], "images": v["images"], "gt_boxes": v["gt_boxes"],
                               "true_positives": v["true_positives"],
                               "false_alarms_per_image":
                                   v["false_positives"] / max(v["images"], 1)}
                           for s, v in m["per_series"].items()}}


def saved_results(fold: Path, roots: list[Path]) -> list[ImageResult] | None:
    """The saved detections of every evaluated held-out series of ``fold``
    (``eval-SERIES/detections``), scored against the ground truth of whichever of
    ``roots`` holds the series; None when one is under none of them."""
    rs: list[ImageResult] = []
    for m in sorted(fold.glob("eval-*/metrics.json")):
        s = m.parent.name.removeprefix("eval-")
        root = next((r for r in roots if s in gdxray.list_series(r)), None)
        if root is None:
            return None
        rs += evaluate_detections(m.parent / "detections", root, "all", [s]).results
    return rs


def reference(run: Path, suffix: str, folds: list[str], roots: list[Path] | None = None
              ) -> dict | None:
    """The same folds of another leave-series-out run, pooled: an
    ``experiments/fcn_detector.py`` run (its ``foldI/results{suffix}.json`` per-image
    detections), or a run of this layout (``experiments/loso_library.sh`` with another
    seed: its ``foldI/eval-SERIES/detections``, scored against the ground truth of
    ``roots`` by :func:`saved_results`; ``suffix`` unused). None when a fold is missing
    there."""
    rs: list[ImageResult] = []
    layout = f"results{suffix}.json"
    for f in folds:
        res = run / f / f"results{suffix}.json"
        saved = saved_results(run / f, roots or []) if not res.is_file() else None
        if res.is_file():
            rs += read_images(json.loads(res.read_text())["images"], roots)
        elif saved:
            layout = "eval-SERIES/detections"
            rs += saved
        else:
            return None
    return {"run": str(run), "results": layout, **figures(rs)}


def reference_from_result(path: Path, folds: list[str]) -> dict | None:
    """The same folds of another leave-series-out run from its pooled result file (this
    script's output), for a run whose fold folders are gone (``runs/`` does not survive a
    new checkout): its per-series figures for these folds' held-out series, and its pooled
    figures when it pooled exactly these folds (None otherwise: a pooled AP over a subset of
    folds needs the per-image detections). None when a fold is not in the file."""
    doc = json.loads(path.read_text())
    by_name = {f["fold"]: f for f in doc["folds"]}
    if any(f not in by_name for f in folds):
        return None
    whole = sorted(folds) == sorted(by_name)
    pooled = {k: v if whole else None for k, v in doc["pooled"].items() if k != "per_series"}
    return {"run": str(path), "results": "its pooled result file"
            + ("" if whole else f" (folds {', '.join(sorted(folds))}: per series only)"),
            **pooled,
            "per_series": {s: v for f in folds for s, v in by_name[f]["per_series"].items()}}


def tuning_fa(tuning: dict) -> float | None:
    """False alarms per tuning image at the chosen settings (the row of the card's
    ``tuning`` grid at them; None without a grid)."""
    keys = ("theta", "grow", "extent_fraction", "join", "link")
    return next((row["fa_per_image"] for row in tuning.get("grid", [])
                 if all(row.get(k) == tuning.get(k) for k in keys)), None)


def cut_card(fold: Path, name: str, evals: list[Path]) -> dict:
    """The card of ``fold/name`` whose report threshold (``min_score``) cuts the saved
    detections of ``evals`` (evaluation folders): its other settings must be those the
    evaluations ran with, so that its detections are theirs scoring at least that."""
    card = json.loads((fold / name / "model.json").read_text())
    mine = {k: v for k, v in card["detection"].items() if k != "min_score"}
    for ev in evals:
        ran = json.loads((ev / "metrics.json").read_text())["params"]
        if {k: v for k, v in ran.items() if k != "min_score"} != mine or ran.get(
                "min_score", -1.0) > -1:
            raise SystemExit(f"loso_library_pool.py: {fold / name}: its settings differ from "
                             f"those {ev} ran with beyond min_score (or that evaluation cut "
                             "already): its detections are not a cut of those")
    return card


def evaluated_held_out(fold: Path, card: dict, roots: list[Path]) -> dict[str, Path] | None:
    """The annotated series of ``roots`` that the model of ``card`` (a fold's tuned card)
    did not train on (its last lineage stage), each with its root; None until every one of
    them is evaluated (``fold/eval-SERIES/metrics.json``)."""
    trained = card["lineage"][-1]["data_series"]
    held = {s: r for r in roots for s in gdxray.list_series(r)
            if s not in trained and gdxray.load_ground_truth(r, s).annotated}
    if any(not (fold / f"eval-{s}" / "metrics.json").is_file() for s in held):
        return None  # a fold counts once every held-out series is evaluated
    return held


def held_out_results(fold: Path, roots: list[Path], tuned: str = "tta8-join",
                     cut_by: str | None = None
                     ) -> tuple[dict, dict[str, Path], list[ImageResult], float] | None:
    """One fold's card (``tuned``'s; ``cut_by``'s when given), its held-out series (the
    annotated series of ``roots`` its model did not train on, each with its root), their
    saved detections on all their images (``eval-SERIES/detections``) scoring at least
    the report threshold of ``cut_by`` (:func:`cut_card`; None: every detection), and that
    threshold; None until the cards exist and every held-out series is evaluated."""
    card_file = fold / tuned / "model.json"
    if not card_file.exists() or (cut_by and not (fold / cut_by / "model.json").exists()):
        return None
    card = json.loads(card_file.read_text())
    held = evaluated_held_out(fold, card, roots)
    if held is None:
        return None
    rs: list[ImageResult] = []
    for s, root in sorted(held.items()):
        rs += evaluate_detections(fold / f"eval-{s}" / "detections", root, "all", [s]).results
    min_score = -1.0
    if cut_by:
        card = cut_card(fold, cut_by, [fold / f"eval-{s}" for s in held])
        min_score = card["detection"].get("min_score", -1.0)
    return card, held, scoring_at_least(rs, min_score), min_score


def pool(work: Path, roots: list[Path], ref: tuple[Path, str] | None = None,
         others: list[tuple[Path, str]] | None = None, tuned: str = "tta8-join",
         cut_by: str | None = None, fold_script: str = "experiments/loso_library.sh",
         ref_result: Path | None = None) -> dict:
    """The folds under ``work`` whose held-out series (the annotated series of ``roots``
    the fold's model did not train on) are all evaluated, pooled; with ``ref``
    (an ``fcn_detector.py`` run folder and results suffix), the same folds of that run
    too (and of each of ``others``, pooled alike). ``tuned``: the folder of each fold's
    model (its card). ``cut_by``: the folder of a model whose report threshold cuts the
    saved detections (:func:`cut_card`; None: every detection). ``fold_script``: what made
    the folds (recorded for the tables). ``ref_result``: the reference's pooled result
    file, read (:func:`reference_from_result`) when ``ref``'s folds are gone."""
    results: list[ImageResult] = []
    folds = []
    for fold in sorted(work.glob("fold*")):
        got = held_out_results(fold, roots, tuned, cut_by)
        if got is None:
            continue
        card, _, fr, min_score = got
        stage = card["lineage"][-1]
        t = card["tuning"]
        folds.append({"fold": fold.name, "held_out": sorted({r.series for r in fr}),
                      "trained_on": stage["data_series"],
                      "train_minutes": (card.get("training") or {}).get("minutes"),
                      "chosen": {k: t.get(k) for k in ("theta", "grow", "extent_fraction",
                                                       "join")} | {"tta": card["detection"]["tta"]},
                      "tuning_ap": t["ap"], "tuning_fa_per_image": tuning_fa(t),
                      "min_score": min_score, "max_fa_per_image": t.get("max_fa_per_image"),
                      "at_min_score": t.get("at_min_score"), **figures(fr)})
        results += fr
    if not folds:
        raise SystemExit(f"loso_library_pool.py: {work}: no fold evaluated yet "
                         "(run experiments/loso_library.sh FOLD first)")
    done = [f["fold"] for f in folds]
    return {"protocol": "leave-series-out, 5 folds over the 15 annotated series of both roots; "
                        "each fold's model trained and its settings chosen on the other "
                        "twelve series (train and tuning images); every image of the held-out "
                        "series scored once",
            "point": f"cut by {cut_by}'s report threshold" if cut_by else "all detections",
            "fold_script": fold_script,
            "folds_done": len(folds), "folds": folds, "pooled": figures(results),
            **({"reference": (reference(ref[0], ref[1], done, roots) if ref else None)
                or (reference_from_result(ref_result, done) if ref_result else None)}
               if ref or ref_result else {}),
            "other_references": [reference(r, sfx, done, roots)
                                 for r, sfx in (others or [])],
            "command": command_line()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("runs/seg/loso5-hard"))
    ap.add_argument("--gdxray", type=Path, nargs="+",
                    default=[Path("../shared/data/gdxray"), Path("../shared/data/gdxray-extra")])
    ap.add_argument("--tuned", default="tta8-join",
                    help="each fold's model folder (the card read)")
    ap.add_argument("--cut-by", default=None, metavar="NAME",
                    help="each fold's model folder whose report threshold cuts the saved "
                         "detections (default: every detection)")
    ap.add_argument("--point", default="", choices=["", "-fa2"],
                    help="shorthand: -fa2 is --cut-by tta8-join-fa2 (the threshold chosen "
                         "for at most 2 false alarms per tuning image)")
    ap.add_argument("--fold-script", default="experiments/loso_library.sh",
                    help="the script that made the folds (recorded)")
    ap.add_argument("--out", type=Path, default=None,
                    help="default: runs/loso5_hard{POINT}.json")
    ap.add_argument("--reference", type=Path, default=Path("runs/fcn/fcn-bghard-loso5"),
                    help="another leave-series-out run scored on the same folds: an "
                         "fcn_detector.py run, or one of this layout (e.g. the seed-0 folds "
                         "runs/seg/loso5-hard beside another seed's)")
    ap.add_argument("--reference-suffix", default="-amin-grow")
    ap.add_argument("--reference-result", type=Path, default=None, metavar="FILE",
                    help="the reference's pooled result file (this script's output), read "
                         "when the reference's fold folders are gone (e.g. "
                         "runs/loso5_ext.json for runs/seg/loso5-ext)")
    ap.add_argument("--also", nargs=2, action="append", default=[
        ["runs/fcn/fcn-ens5-loso5", "-amin-grow-join"]], metavar=("RUN", "SUFFIX"),
                    help="more fcn_detector.py runs pooled on the same folds (default: the "
                         "five-model mean with joining)")
    a = ap.parse_args()
    doc = pool(a.work, a.gdxray, (a.reference, a.reference_suffix),
               [(Path(r), sfx) for r, sfx in a.also], a.tuned,
               a.cut_by or (f"{a.tuned}{a.point}" if a.point else None), a.fold_script,
               a.reference_result)
    write_json(a.out or Path(f"runs/loso5_hard{a.point}.json"), doc)
    p = doc["pooled"]
    print(f"{doc['folds_done']} fold(s): pooled AP {p['ap']:.4f}, {p['true_positives']} of "
          f"{p['gt_boxes']} found, {p['false_alarms_per_image']:.1f} false alarms per image")


if __name__ == "__main__":
    main()
