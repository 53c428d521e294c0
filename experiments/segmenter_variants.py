"""Segmenter variants, each trained by the library and scored on the same figures.

For each run: ``xdefect.train_segmenter`` on the train images (odd, n % 4 == 3) of the
paper's seven series (``--gdxray``), its theta chosen on their tuning images (odd, n % 4
== 1); then, with that theta, AP (IoU 0.5, COCO matching) on the tuning images and on the
odd images of the nine ``gdxray-extra`` series (castings the model never saw; nothing is
chosen on them). Test images are never read. Appends a row to ``--out`` (read by
``experiments/results_tables.py``)::

    .venv/bin/python experiments/segmenter_variants.py --name augment --augment --threads 1
    .venv/bin/python experiments/segmenter_variants.py --name reference --from-run \\
        runs/seg/segnet-xdefect   # score a run trained before
    .venv/bin/python experiments/segmenter_variants.py --name long-more --init \\
        segnet-xdefect --steps 20000 --lr 1e-3   # continue the bundled model's training
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from xdefect import gdxray
from xdefect.crops import CropConfig
from xdefect.detector import Detector
from xdefect.io import command_line, write_json
from xdefect.protocol import evaluate_folder
from xdefect.train_segment import SegTrainConfig, train_segmenter


def figures(m: dict) -> dict:
    return {"ap": round(m["ap"], 4), "true_positives": m["true_positives"],
            "gt_boxes": m["gt_boxes"], "images": m["images"],
            "false_alarms_per_image": round(m["false_positives"] / max(m["images"], 1), 2),
            "recall_at_fppi": m["recall_at_fppi"],
            "per_series": {k: round(v["ap"], 4) for k, v in m["per_series"].items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", required=True)
    ap.add_argument("--gdxray", type=Path, default=None)
    ap.add_argument("--extra", type=Path, default=Path("../shared/data/gdxray-extra"))
    ap.add_argument("--from-run", type=Path, default=None,
                    help="score this finished run instead of training one")
    ap.add_argument("--images", nargs="*", default=[],
                    help="unannotated image folders added as backgrounds")
    ap.add_argument("--augment", action="store_true")
    ap.add_argument("--no-real", dest="real", action="store_false")
    ap.add_argument("--steps", type=int, default=8000)
    ap.add_argument("--arch", default="segnet")
    ap.add_argument("--defects", type=float, default=1.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init", default=None,
                    help="a segmenter (file or bundled name) to continue training from")
    ap.add_argument("--lr", type=float, default=SegTrainConfig.lr)
    ap.add_argument("--hard-rounds", type=int, default=0,
                    help="rounds of hard negatives mined from the annotated train images")
    ap.add_argument("--hard-share", type=float, default=0.25,
                    help="share of the crops on hard negatives (with --hard-rounds)")
    ap.add_argument("--x-max-range", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                    help="each simulated void's own x_max (mm), log-uniform in the range: "
                         "a mixture of contrasts (CropConfig.x_max_range)")
    ap.add_argument("--blur-px", type=float, default=0.0,
                    help="edge blur of the simulated voids (CropConfig.blur_px, pixels)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", type=Path, default=Path("runs/seg"))
    ap.add_argument("--out", type=Path, default=Path("runs/segmenter_variants.json"))
    a = ap.parse_args()
    root = a.gdxray or gdxray.default_root()
    run = a.from_run or a.work / a.name
    t0 = time.perf_counter()
    if not (run / "model.safetensors").is_file():
        train_segmenter(SegTrainConfig(
            out=str(run), gdxray=(str(root),), series=tuple(gdxray.PAPER_SERIES),
            images=tuple(a.images), arch=a.arch, steps=a.steps, augment=a.augment,
            crops=CropConfig(real=a.real, defects=a.defects,
                             hard_share=a.hard_share if a.hard_rounds else 0.0,
                             x_max_range=None if a.x_max_range is None
                             else (a.x_max_range[0], a.x_max_range[1]), blur_px=a.blur_px),
            hard_rounds=a.hard_rounds, seed=a.seed, threads=a.threads,
            init=a.init, lr=a.lr, device="cpu", resume=(run / "last.safetensors").is_file()))
    det = Detector.load(run / "model.safetensors", device="cpu", threads=a.threads)
    tuning = evaluate_folder(det, root, "tuning", list(gdxray.PAPER_ANNOTATED_SERIES))
    extra = evaluate_folder(det, a.extra, "odd")
    card = det.card
    row = {"name": a.name, "run": str(run), "theta": det.params.theta,
           "settings": card["train_config"], "steps": card["training"]["steps"],
           "crops_seen": card["training"]["crops_seen"],
           "train_minutes": card["training"]["minutes"],
           "tuning": figures(tuning.metrics), "extra_odd": figures(extra.metrics),
           "roots": [str(root), str(a.extra)], "score_s": round(time.perf_counter() - t0, 1),
           "command": command_line()}
    doc = json.loads(a.out.read_text()) if a.out.is_file() else {"rows": []}
    doc["rows"] = [r for r in doc["rows"] if r["name"] != a.name] + [row]
    write_json(a.out, doc)
    print(json.dumps({k: row[k] for k in ("name", "theta", "steps", "train_minutes")}
                     | {"tuning_ap": row["tuning"]["ap"], "extra_odd_ap": row["extra_odd"]["ap"],
                        "extra_fa": row["extra_odd"]["false_alarms_per_image"]}))


if __name__ == "__main__":
    main()
