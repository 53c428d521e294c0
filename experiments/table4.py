"""The paper's Table 4 at a scale this machine can run: ellipsoidal against GAN defects.

Rows (the paper's): ``E100G000*`` (one model per annotated series, trained on that
series' odd images only, each scored on its own even images), ``E100G000``, ``E075G025``,
``E050G050``, ``E025G075``, ``E000G100``. For each row: ``xdefect dataset build`` (the
paper's whole-image protocol, ``--per-image`` patches of each class per odd image, GAN
portions from ``--gan``), ``xdefect train`` (xnet2 from scratch, ``--epochs`` epochs of
``--samples`` seeded patches), training and validation accuracy (the dataset's own 80/20
split), then detection on every even-numbered image of the annotated series with the
same detection parameters for all rows (``--params``, e.g. the bundled model's, chosen on
validation images; defaults otherwise) and AP at IoU 0.5. C0061 has no ground truth: its
images train but are not scored.

Rows already in ``--out`` are skipped, so an interrupted run resumes. Prints one JSON line
per row.

    .venv/bin/python experiments/table4.py --gan runs/gan --out runs/table4.json \\
        [--per-image 300] [--epochs 3] [--samples 30000] [--params runs/tune.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from xdefect import gdxray
from xdefect.checkpoint import read_card
from xdefect.detect import DetectParams
from xdefect.detector import Detector
from xdefect.evaluate import summarise
from xdefect.io import write_json
from xdefect.patches import BuildArgs
from xdefect.pipelines import build_dataset
from xdefect.protocol import evaluate_folder
from xdefect.train import TrainConfig, train

PAPER = {"E100G000*": (0.8815, 0.8745, 0.6905), "E100G000": (0.8869, 0.8784, 0.7102),
         "E075G025": (0.8926, 0.8881, 0.6083), "E050G050": (0.9265, 0.9224, 0.7063),
         "E025G075": (0.9541, 0.9525, 0.6497), "E000G100": (0.9810, 0.9803, 0.5119)}
ROWS = list(PAPER)


def train_one(a: argparse.Namespace, mix: str, series: list[str] | None, work: Path,
              params: DetectParams) -> tuple[Detector, float]:
    """Build, train; returns the model with the detection ``params``, and the seconds."""
    t = time.perf_counter()
    work.mkdir(parents=True, exist_ok=True)
    data, run = work / "data", work / "run"
    build_dataset(BuildArgs(gdxray=str(a.gdxray), out=str(data), series=series,
                            per_image=a.per_image, mix=mix, gan=str(a.gan), seed=a.seed,
                            force=True))
    train(TrainConfig(data=str(data), out=str(run), arch="xnet2", epochs=a.epochs,
                      samples_per_epoch=a.samples, val_samples=a.val_samples, seed=a.seed,
                      threads=a.threads, device="cpu", patience=a.epochs))
    det = Detector.load(run / "best.safetensors", **params.to_dict())
    return det, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gdxray", type=Path, default=gdxray.default_root())
    ap.add_argument("--gan", type=Path, required=True, help="trained GAN folder")
    ap.add_argument("--rows", nargs="+", default=ROWS, choices=ROWS)
    ap.add_argument("--per-image", type=int, default=300)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--samples", type=int, default=30000)
    ap.add_argument("--val-samples", type=int, default=10000)
    ap.add_argument("--params", type=Path, default=None,
                    help="detection parameters: a model card or tune_detection.py output")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    params = DetectParams()
    if a.params:
        doc = (read_card(a.params) if a.params.suffix == ".safetensors"
               else json.loads(a.params.read_text()))
        params = DetectParams.from_dict(doc.get("detection") or doc["best"])
    done = json.loads(a.out.read_text()) if a.out.exists() else {"rows": []}
    have = {r["dataset"] for r in done["rows"]}
    annotated = [s for s in gdxray.list_series(a.gdxray)
                 if gdxray.load_ground_truth(a.gdxray, s).annotated]
    for name in a.rows:
        if name in have:
            continue
        work = Path(tempfile.mkdtemp(prefix="xdefect-t4-"))
        try:
            if name.endswith("*"):
                results, tr, va, secs, per = [], [], [], 0.0, {}
                for s in annotated:
                    det, dt = train_one(a, "E100G000", [s], work / s, params)
                    ev = evaluate_folder(det, a.gdxray, "test", [s])
                    results += ev.results
                    per[s] = ev.metrics["ap"]
                    tr.append(det.card["metrics"]["train_acc"])
                    va.append(det.card["metrics"]["val_acc"])
                    secs += dt
                m = summarise(results)
                row = {"dataset": name, "train_acc": float(np.mean(tr)),
                       "val_acc": float(np.mean(va)), "ap_mean_of_series": float(np.mean(
                           list(per.values()))), "ap": m["ap"]}
                per_series = per
            else:
                det, secs = train_one(a, name, None, work, params)
                m = evaluate_folder(det, a.gdxray, "test", annotated).metrics
                row = {"dataset": name, "train_acc": det.card["metrics"]["train_acc"],
                       "val_acc": det.card["metrics"]["val_acc"], "ap": m["ap"]}
                per_series = {s: v["ap"] for s, v in m["per_series"].items()}
        finally:
            shutil.rmtree(work, ignore_errors=True)
        p = PAPER[name]
        row.update({"ap11": m["ap11"], "true_positives": m["true_positives"],
                    "false_positives": m["false_positives"], "missed": m["missed"],
                    "gt_boxes": m["gt_boxes"], "images": m["images"],
                    "per_series_ap": per_series, "paper_train_acc": p[0],
                    "paper_val_acc": p[1], "paper_ap": p[2], "seconds": round(secs, 1)})
        print(json.dumps(row), flush=True)
        done["rows"].append(row)
        done.update({"per_image": a.per_image, "epochs": a.epochs, "samples": a.samples,
                     "seed": a.seed, "params": params.to_dict(), "gan": str(a.gan)})
        write_json(a.out, done)


if __name__ == "__main__":
    main()
