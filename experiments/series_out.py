"""Leave-one-series-out: train on every annotated series but one, test on that one.

For each held-out series ``S`` (default: the six annotated paper series), a model is
trained from scratch on a 'wholeimage' dataset cut from the **train images** (odd,
number % 4 == 3) of the other series (the paper's seven less ``S``; simulated defects,
plus ``--real`` real defect windows of those images if asked), and tested on **every**
image of ``S``: no image of the held-out casting reached training, so every defect is
unseen. Detection settings are not tuned per fold: they come from ``--params-from``
(a model card, by default the bundled ``xnet2-paper``'s, chosen on the tuning images) so
the held-out series never chooses anything. Results are pooled over the folds (one PR
curve over all held-out images) and reported per series.

Writes ``OUT/fold-S/`` (dataset, run, detections) and ``OUT/series_out.json``; prints the
summary. Cost measured on this machine (2 cores) with ``--per-image 1000 --epochs 4
--samples-per-epoch 50000``: 14-16 s to build, 253-315 s to train (about
``epochs * samples_per_epoch / 700`` s with validation) and 3.3 s per image to test in
patch mode at stride 8, per fold; the paper's six series hold 257 annotated images, so the
test phase took 14 minutes and the whole run 44. ``--limit-images`` and ``--folds`` cut it
down for a trial::

    .venv/bin/python experiments/series_out.py --out runs/series-out \\
        [--folds C0001 C0010 ...] [--epochs 5] [--samples-per-epoch 50000] [--real 0]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from xdefect import gdxray
from xdefect.checkpoint import read_card, resolve_model
from xdefect.detect import DetectParams
from xdefect.detector import Detector
from xdefect.evaluate import ImageResult
from xdefect.io import command_line, write_json
from xdefect.patches import BuildArgs
from xdefect.pipelines import build_dataset, write_evaluation
from xdefect.protocol import evaluate_folder
from xdefect.train import TrainConfig, train


def run_fold(root: Path, held: str, a: argparse.Namespace, params: DetectParams
             ) -> tuple[list[ImageResult], dict]:
    """Build, train and test one fold; returns the held-out images' results and costs."""
    fold = a.out / f"fold-{held}"
    others = [s for s in gdxray.protocol_series(root, None) if s != held]
    t0 = time.perf_counter()
    data = fold / "data"
    if not (data / "manifest.json").is_file():
        build_dataset(BuildArgs(gdxray=str(root), out=str(data), series=others,
                                per_image=a.per_image, seed=a.seed, real=a.real,
                                mu_range=tuple(a.mu), limit_images=a.limit_images,
                                force=data.exists()))
    t1 = time.perf_counter()
    run = fold / "run"
    if not (run / "done").is_file():
        train(TrainConfig(data=str(data), out=str(run), epochs=a.epochs, batch=a.batch,
                          lr=a.lr, patience=a.patience, seed=a.seed,
                          samples_per_epoch=a.samples_per_epoch, val_samples=a.val_samples,
                          resume=(run / "last.safetensors").is_file(), threads=a.threads))
        (run / "done").write_text("")
    t2 = time.perf_counter()
    det = Detector.load(run / "best.safetensors", **params.to_dict())
    ev = evaluate_folder(det, root, "all", [held], a.iou, limit=a.limit_images)
    t3 = time.perf_counter()
    m = ev.metrics
    cost = {"build_s": round(t1 - t0, 1), "train_s": round(t2 - t1, 1),
            "test_s": round(t3 - t2, 1), "test_images": m["images"],
            "trained_on_series": others, "train_patches": det.card["data_counts"]}
    m["cost"] = cost
    write_evaluation(ev, fold, overlays=False)
    results = ev.results
    return results, {"ap": m["ap"], "gt_boxes": m["gt_boxes"], "images": m["images"],
                     "true_positives": m["true_positives"],
                     "false_positives": m["false_positives"], "missed": m["missed"],
                     "false_alarms_per_image": m["false_positives"] / max(m["images"], 1),
                     **cost}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gdxray", type=Path, default=gdxray.default_root())
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--folds", nargs="+", default=list(gdxray.PAPER_ANNOTATED_SERIES),
                    help="held-out series, one fold each (default: the six annotated)")
    ap.add_argument("--params-from", default="xnet2-paper",
                    help="model (name or path) whose card gives the detection settings")
    ap.add_argument("--mode", choices=("patch", "dense"), default=None,
                    help="score-map mode (default: the card's)")
    ap.add_argument("--per-image", type=int, default=2200)
    ap.add_argument("--mu", type=float, nargs=2, default=(0.004, 0.04))
    ap.add_argument("--real", type=int, default=0,
                    help="real defect windows from the other series' train images")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--samples-per-epoch", type=int, default=50000)
    ap.add_argument("--val-samples", type=int, default=10000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--patience", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--iou", type=float, default=0.5)
    ap.add_argument("--limit-images", type=int, default=None,
                    help="a quick trial: the first N images for building and testing")
    a = ap.parse_args()
    root = a.gdxray
    det = read_card(resolve_model(a.params_from)).get("detection") or {}
    params = DetectParams.from_dict(det)
    if a.mode:
        params = replace(params, mode=a.mode)
    t0 = time.perf_counter()
    pooled: list[ImageResult] = []
    folds = {}
    for held in a.folds:
        gdxray.check_series(root, [held])
        res, info = run_fold(root, held, a, params)
        pooled += res
        folds[held] = info
        print(json.dumps({"fold": held, **{k: info[k] for k in (
            "ap", "gt_boxes", "true_positives", "false_positives", "build_s", "train_s",
            "test_s")}}), flush=True)
    from xdefect.evaluate import summarise

    m = summarise(pooled, a.iou)
    doc = {"protocol": "leave-one-series-out", "gdxray": str(root), "folds": a.folds,
           "image_splits_trained": ["train"], "tested": "every image of the held-out series",
           "detection": params.to_dict(), "params_from": a.params_from,
           "pooled": {k: m[k] for k in ("ap", "ap11", "images", "gt_boxes", "detections",
                                        "true_positives", "false_positives", "missed",
                                        "recall_at_fppi")},
           "false_alarms_per_image": m["false_positives"] / max(m["images"], 1),
           "per_series": folds, "seconds_total": round(time.perf_counter() - t0, 1),
           "arguments": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
           "command": command_line()}
    write_json(a.out / "series_out.json", doc)
    print(f"{a.out}: leave-one-series-out AP {m['ap']:.4f} pooled over {m['images']} images "
          f"({m['gt_boxes']} boxes, {doc['false_alarms_per_image']:.1f} false alarms per "
          f"image) in {doc['seconds_total']:.0f} s")


if __name__ == "__main__":
    main()
