"""Adaptation without labels, measured per series: adapt on the odd images, test on the even.

For each series of ``--series`` under ``--root``, ``xdefect adapt`` (:func:`xdefect.adapt`)
fine-tunes ``--from`` (a model that never saw an image of the series: the bundled models
trained on the paper's series only, so any ``gdxray-extra`` series qualifies) on the
series' **odd** images, their labels unused; then the source and the adapted model are
both evaluated on the series' **even** images (the card's detection settings). Nothing is
chosen on the even images. Writes ``OUT/SERIES/`` (the adapt output and both evaluations)
and ``OUT/adapt_series.json`` (per series and pooled: AP, found, false alarms per image,
minutes); resumable (a finished series is not redone)::

    .venv/bin/python experiments/adapt_series.py --root ../shared/data/gdxray-extra \\
        --series C0037 C0039 C0040 --out runs/adapt-series

``--from-folds DIR`` adapts each series from its own leave-series-out fold model
(``experiments/loso_sources.py``: trained on the other annotated series, twelve castings
instead of the paper's seven, none of them the series'). A source whose lineage names a
series to adapt to is refused.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from xdefect import gdxray
from xdefect.adaptation import AdaptConfig, adapt
from xdefect.checkpoint import DEFAULT_MODEL, lineage_summary, read_card, resolve_model
from xdefect.detector import Detector
from xdefect.evaluate import ImageResult, summarise
from xdefect.io import command_line, write_json
from xdefect.pipelines import write_evaluation
from xdefect.protocol import evaluate_folder
from xdefect.segment import SegNet


def row(m: dict) -> dict:
    return {"ap": m["ap"], "images": m["images"], "gt_boxes": m["gt_boxes"],
            "true_positives": m["true_positives"], "false_positives": m["false_positives"],
            "false_alarms_per_image": m["false_positives"] / max(m["images"], 1)}


def has_scored_images(root: Path, series: str, split: str = "test") -> bool:
    """Whether the series' ground truth covers any image of ``split``
    (``SeriesGroundTruth.covers``): a static series annotated on one odd image only (GDXray
    C0041) has no even image to score."""
    gt = gdxray.load_ground_truth(root, series)
    return any(gt.covers(r.number) for r in gdxray.list_images(root, [series], split))


def run_series(a: argparse.Namespace, s: str) -> tuple[dict, dict, dict]:
    """Adapt on the odd images of ``s``, evaluate source and adapted on the even ones (and
    with ``--tuning`` on the tuning images); returns the series' summary and the per-image
    results of both models on each (``{"source": [...], "adapted": [...]}``)."""
    out = a.out / s
    source = source_of(a, s)
    odd = [str(r.path) for r in gdxray.list_images(a.root, [s], "odd")]
    t0 = time.perf_counter()
    if not (out / "adapted" / "model.safetensors").is_file():
        adapt(AdaptConfig(images=tuple(odd), out=str(out / "adapted"), source=source,
                          per_image=a.per_image, hard_per_image=a.hard_per_image,
                          hard_pairs=a.hard_pairs, epochs=a.epochs,
                          samples_per_epoch=a.samples_per_epoch, val_samples=a.val_samples,
                          lr=a.lr, seed=a.seed, threads=a.threads, steps=a.steps,
                          seg_lr=a.seg_lr, source_regions=a.source_regions,
                          rehearse=tuple(str(r) for r in a.rehearse),
                          rehearse_share=a.rehearse_share, ignore_theta=a.ignore_theta))
    minutes = (time.perf_counter() - t0) / 60
    card = json.loads((out / "adapted" / "model.json").read_text())
    scored = has_scored_images(a.root, s)
    res: dict[str, list[ImageResult]] = {"source": [], "adapted": []}
    tun = {}
    for name, model in (("source", source), ("adapted",
                                               out / "adapted" / "model.safetensors")):
        det = Detector.load(model, threads=a.threads)
        if scored:  # a static series annotated on an odd image only has nothing to score
            ev = evaluate_folder(det, a.root, "test", [s])
            write_evaluation(ev, out / f"eval-{name}", overlays=False)
            res[name] = ev.results
        if a.tuning:  # the tuning images (odd, n % 4 == 1: adapted on, labels unused)
            tun[name] = evaluate_folder(det, a.root, "tuning", [s]).results
    doc = {"series": s, "source_model": source or DEFAULT_MODEL, "odd_images": len(odd),
           "adapt_minutes": card["adaptation"]["minutes"], "wall_minutes": round(minutes, 2),
           "source": row(summarise(res["source"])) if scored else None,
           "adapted": row(summarise(res["adapted"])) if scored else None}
    if tun:
        doc["tuning"] = {k: row(summarise(v)) for k, v in tun.items()}
    return doc, res, tun


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path("../shared/data/gdxray-extra"))
    ap.add_argument("--series", nargs="+", required=True)
    ap.add_argument("--from", dest="source", default=None,
                    help="the model adapted (default: the bundled default model)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--per-image", type=int, default=300)
    ap.add_argument("--hard-per-image", type=int, default=40)
    ap.add_argument("--hard-pairs", action="store_true",
                    help="pair each hard negative with a simulated defect on its spot")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=2.5e-4, help="fine-tuning learning rate")
    ap.add_argument("--samples-per-epoch", type=int, default=15000)
    ap.add_argument("--val-samples", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--steps", type=int, default=1500, help="segmenter sources: steps")
    ap.add_argument("--seg-lr", type=float, default=5e-4, help="segmenter sources: lr")
    ap.add_argument("--source-regions", choices=("ignore", "negative", "target", "distill"),
                    default="distill",
                    help="segmenter sources: what the source's detections become (as "
                         "xdefect adapt --source-regions)")
    ap.add_argument("--rehearse", nargs="+", type=Path, default=[],
                    help="segmenter sources: GDXray roots rehearsed while adapting")
    ap.add_argument("--rehearse-share", type=float, default=0.5)
    ap.add_argument("--tuning", action="store_true",
                    help="also evaluate source and adapted model on the series' tuning "
                         "images (odd, n %% 4 == 1: adapted on without labels), where "
                         "adaptation options are chosen")
    ap.add_argument("--ignore-theta", type=float, default=None,
                    help="with --source-regions ignore, target or distill: the score above "
                         "which the source's regions are taken")
    ap.add_argument("--from-folds", type=Path, default=None, metavar="DIR",
                    help="adapt each series from its own leave-series-out fold model: "
                         "DIR/folds.json (experiments/loso_sources.py) maps held-out "
                         "series to models that never saw them (instead of --from)")
    a = ap.parse_args()
    a.folds = None
    if a.from_folds is not None:
        if a.source is not None:
            raise SystemExit("adapt_series.py: --from and --from-folds exclude each other")
        a.folds = json.loads((a.from_folds / "folds.json").read_text())
        missing = [s for s in a.series if s not in a.folds]
        if missing:
            raise SystemExit(f"adapt_series.py: {a.from_folds}/folds.json holds no fold "
                             f"model for {', '.join(missing)}")
    for s in a.series:
        check_unseen(source_of(a, s), [s])
    per: dict = {}
    test: dict[str, list[ImageResult]] = {"source": [], "adapted": []}
    tuning: dict[str, list[ImageResult]] = {"source": [], "adapted": []}
    for s in a.series:
        doc, res, tun = run_series(a, s)
        per[s] = doc
        for k in test:
            test[k] += res[k]
            tuning[k] += tun.get(k, [])
        print(json.dumps({"series": s, "source_ap": (doc["source"] or {}).get("ap"),
                          "adapted_ap": (doc["adapted"] or {}).get("ap"),
                          "minutes": round(doc["adapt_minutes"], 1)}), flush=True)
        out = write_summary(a, per, test, tuning)  # after every series: a partial run
    print(f"{a.out}: pooled AP source {out['pooled_source']['ap']:.4f} -> adapted "
          f"{out['pooled_adapted']['ap']:.4f} over {', '.join(per)}")


def source_of(a: argparse.Namespace, series: str) -> str | None:
    """The model a series is adapted from: its fold's model with ``--from-folds``, else
    ``--from`` (None: the bundled default)."""
    return a.folds[series] if getattr(a, "folds", None) else a.source


def check_unseen(source: str | None, series: list[str]) -> None:
    """Refuse, in one line, a source model whose training (any stage of its card's
    lineage) saw an image of a series to adapt to: its figure would not be a new casting's."""
    path = resolve_model(source)
    seen = sorted(set(series) & set(lineage_summary(read_card(path))["series"]))
    if seen:
        raise SystemExit(f"adapt_series.py: {path} trained on {', '.join(seen)}: choose a "
                         "source that never saw the series (--from)")


def write_summary(a: argparse.Namespace, per: dict, test: dict[str, list[ImageResult]],
                  tuning: dict[str, list[ImageResult]]) -> dict:
    """``OUT/adapt_series.json`` over the series done so far (``test``, ``tuning``: the
    per-image results of the source and the adapted models)."""
    src = Detector.load(source_of(a, a.series[0]), device="cpu")
    out = {"protocol": "adapt on the odd images without labels, test on the even images",
           "root": str(a.root),
           "source": (f"the leave-series-out fold model of each series ({a.from_folds})"
                      if a.folds else a.source or DEFAULT_MODEL),
           "source_family": "segmenter" if isinstance(src.model, SegNet) else "classifier",
           "source_detection": (src.params.to_dict() if not a.folds else
                                "each fold model's own (per_series: source_model)"),
           "series_planned": a.series, "per_series": per,
           "pooled_source": row(summarise(test["source"])),
           "pooled_adapted": row(summarise(test["adapted"])),
           **({"pooled_tuning": {k: row(summarise(v)) for k, v in tuning.items()}}
              if a.tuning else {}),
           "arguments": {k: str(v) if isinstance(v, Path) else
                         [str(x) for x in v] if isinstance(v, list) else v
                         for k, v in vars(a).items()},
           "command": command_line()}
    write_json(a.out / "adapt_series.json", out)
    return out


if __name__ == "__main__":
    main()
