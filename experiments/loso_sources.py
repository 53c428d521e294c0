"""The leave-series-out fold models as library models: sources that never saw a casting.

``experiments/fcn_detector.py --kfold K --fold I`` trains one segmenter per fold on the
train images of every annotated series but the fold's held-out ones, and chooses its
detection settings (threshold, minimum area, box growth, join) on those training series'
tuning images. This script writes each fold's weights as an xdefect model
(``OUT/foldI.safetensors`` + card: architecture, normalisation, the fold's chosen settings
as ``detection``, its crop settings as ``train_config``, a lineage stage naming the series
and split it trained on) and ``OUT/folds.json`` (held-out series -> model file), so that
``xdefect detect``, ``evaluate`` and ``adapt --from`` can use a model that never saw a
given casting, trained on twelve castings instead of the paper's seven::

    .venv/bin/python experiments/loso_sources.py --name fcn-bghard --suffix=-amin-grow \\
        --out runs/loso-sources/fcn-bghard

``experiments/adapt_series.py --from-folds OUT`` then adapts each held-out series from its
own fold's model. Nothing is trained or chosen here; the weights are copied unchanged.

``--library WORK`` does the same for folds of the library's layout
(``experiments/loso_library.sh`` and ``loso_backgrounds.sh``: ``WORK/foldI/TUNED/model.safetensors``
are already xdefect models with their fold's settings and lineage): it only writes
``WORK/folds.json``, each held-out series (annotated series of ``--gdxray`` the fold's
model never trained on) -> its fold's model::

    .venv/bin/python experiments/loso_sources.py --library runs/seg/loso5-bg-ext
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from safetensors.torch import load_file

from xdefect import gdxray
from xdefect.checkpoint import MODEL_FORMAT, lineage_summary, read_card, save_tensors
from xdefect.io import command_line, write_json
from xdefect.models import NORMALISATION
from xdefect.segment import SegConfig, segment_params

__all__ = ["fold_card", "library_sources", "main", "option", "write_sources"]


def fold_card(card: dict, results: dict, name: str) -> dict:
    """The xdefect model card of one fold model: ``card`` is the fold's ``card.json``
    (``fcn_detector.py``), ``results`` its results file (the settings chosen on the
    training series' tuning images, the series held out)."""
    arch = card.get("architecture") or {}
    cfg = SegConfig("segnet-lcn" if arch.get("lcn") else "segnet",
                    int(arch.get("channels", 16)), lcn=float(arch.get("lcn", 0.0)))
    det = replace(segment_params(2 * float(results["threshold"]) - 1,
                                 int(results.get("a_min", 4))),
                  grow=int(results.get("grow", 0)),
                  extent_fraction=float(results.get("extent_fraction", 0.0)),
                  join=int(results.get("join", -1)), link=float(results.get("link", 1.0)),
                  tta=int(results.get("tta", 1)))
    training = results["training"]
    roots = card["data"]["roots_series"]
    hard = training.get("hard_negatives")
    stage = {"complete": True, "kind": "segmenter", "command": card.get("command"),
             "data_roots": roots,
             "data_series": sorted({s for ss in roots.values() for s in ss}),
             "data_image_splits": ["train"] + (["files"] if results.get("backgrounds") else []),
             "data_files": 0, "backgrounds": results.get("backgrounds") or [],
             "data_sources": {"simulated": True,
                              **({"real": True} if training["crops"].get("real") else {})},
             **({"hard_negatives": {
                 "rounds": len(hard), "share": float(training["crops"].get("hard_share", 0)),
                 "theta": float(option(card.get("command"), "--hard-theta", 0.0)),
                 "per_image": int(option(card.get("command"), "--hard-per-image", 16))}}
                if hard else {}),
             "init": None}
    held = ", ".join(results["held_out"])
    return {"format": MODEL_FORMAT, "arch": cfg.to_dict(), "normalisation": NORMALISATION,
            "name": name,
            "description": f"leave-series-out fold {results['fold']} model (series held "
                           f"out: {held}), trained on {len(stage['data_series'])} series",
            "detection": det.to_dict(),
            "tuning": {"rule": results.get("threshold_rule"),
                       "by_setting": results.get("tuning_ap_by_threshold")},
            "train_config": {"crops": training["crops"]},
            "training": {"steps": training["steps"], "crops_seen": training["crops_seen"],
                         "minutes": round(training["train_s"] / 60, 2),
                         "images": training.get("train_images"),
                         **({"hard_negatives": hard} if hard else {})},
            "held_out": list(results["held_out"]),
            "lineage": [stage], "converted_by": command_line()}


def option(command: str | None, flag: str, default: float) -> float:
    """The value of ``flag`` on a recorded command line (``fcn_detector.py``'s default
    when the command did not give it)."""
    words = (command or "").split()
    return float(words[words.index(flag) + 1]) if flag in words[:-1] else default


def write_sources(run: Path, suffix: str, out: Path) -> dict[str, str]:
    """Write every fold of ``run`` (``runs/fcn/NAME-losoK``) that has weights and a results
    file ``results{suffix}.json`` as ``out/foldI.safetensors``; returns and writes
    ``out/folds.json`` (held-out series -> model file)."""
    folds: dict[str, str] = {}
    for fold in sorted(run.glob("fold*")):
        res, weights = fold / f"results{suffix}.json", fold / "model.safetensors"
        if not (res.is_file() and weights.is_file()):
            continue
        results = json.loads(res.read_text())
        card = fold_card(json.loads((fold / "card.json").read_text()), results,
                         f"{run.name}-{fold.name}")
        target = out / f"{fold.name}.safetensors"
        save_tensors(target, load_file(weights), card)
        folds |= {s: str(target) for s in results["held_out"]}
    if not folds:
        raise SystemExit(f"loso_sources.py: {run}: no fold with model.safetensors and "
                         f"results{suffix}.json")
    write_json(out / "folds.json", folds)
    return folds


def library_sources(work: Path, roots: list[Path], tuned: str = "tta8-join"
                    ) -> dict[str, str]:
    """Write and return ``work/folds.json`` for folds of the library's layout: every
    annotated series of ``roots`` that a fold's model (``work/foldI/tuned/model.safetensors``)
    never trained on (any stage of its card's lineage) -> that model. Refuses a series
    held out by two folds (the folds would not be a partition)."""
    folds: dict[str, str] = {}
    annotated = [s for r in roots for s in gdxray.list_series(r)
                 if gdxray.load_ground_truth(r, s).annotated]
    for fold in sorted(work.glob("fold*")):
        model = fold / tuned / "model.safetensors"
        if not model.is_file():
            continue
        seen = set(lineage_summary(read_card(model))["series"])
        for s in annotated:
            if s not in seen:
                if s in folds:
                    raise SystemExit(f"loso_sources.py: {s} is held out by both {folds[s]} "
                                     f"and {model}")
                folds[s] = str(model)
    if not folds:
        raise SystemExit(f"loso_sources.py: {work}: no fold with {tuned}/model.safetensors")
    write_json(work / "folds.json", folds)
    return folds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", help="the fcn_detector.py run (--name)")
    ap.add_argument("--library", type=Path, default=None, metavar="WORK",
                    help="folds of the library's layout (WORK/foldI/TUNED): write only "
                         "WORK/folds.json")
    ap.add_argument("--tuned", default="tta8-join",
                    help="with --library: the fold's tuned model folder")
    ap.add_argument("--gdxray", type=Path, nargs="+",
                    default=[Path("../shared/data/gdxray"), Path("../shared/data/gdxray-extra")],
                    help="with --library: the roots whose annotated series the folds hold out")
    ap.add_argument("--kfold", type=int, default=5)
    ap.add_argument("--suffix", default="-amin-grow",
                    help="the results files whose chosen settings the cards carry")
    ap.add_argument("--work", type=Path, default=Path("runs/fcn"))
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    if a.library is not None:
        print(json.dumps(library_sources(a.library, a.gdxray, a.tuned)))
        return
    if a.name is None or a.out is None:
        ap.error("--name and --out are required (or --library WORK)")
    folds = write_sources(a.work / f"{a.name}-loso{a.kfold}", a.suffix, a.out)
    print(json.dumps(folds))


if __name__ == "__main__":
    main()
