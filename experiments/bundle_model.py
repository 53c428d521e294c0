"""Install a trained run as the bundled model, with its model card.

Copies ``RUN/best.safetensors`` to ``src/xdefect/weights/xnet2-e100g000.safetensors`` and
writes the card beside it: the run's card (architecture, normalisation, data manifest
checksum, training arguments, validation metrics), the detection parameters chosen on
validation images (``--tune``, from ``experiments/tune_detection.py``), the training time
(from ``RUN/metrics.csv``), the test metrics on the even-numbered images (``--test``, a
``metrics.json`` of ``xdefect evaluate``) and the commands that reproduce all of it.

    .venv/bin/python experiments/bundle_model.py --run runs/xnet2-e100g000 \\
        --tune runs/tune.json --test runs/eval-even/metrics.json
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path

from xdefect.checkpoint import read_card

DEST = Path("src/xdefect/weights/xnet2-e100g000.safetensors")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--tune", type=Path, required=True)
    ap.add_argument("--test", type=Path, default=None)
    ap.add_argument("--commands", type=Path, default=None,
                    help="a text file with the commands that produced the run")
    a = ap.parse_args()
    card = read_card(a.run / "best.safetensors")
    tune = json.loads(a.tune.read_text())
    with open(a.run / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    card["training"] = {
        "epochs_run": len(rows), "best_epoch": card["epoch"],
        "seconds_total": round(sum(float(r["seconds"]) for r in rows), 1),
        "metrics_per_epoch": rows,
    }
    card["detection"] = tune["best"]
    card["detection_tuning"] = {k: tune[k] for k in ("split", "images", "gt_boxes",
                                                     "best_metrics", "best_per_series",
                                                     "dense_vs_patch")}
    if a.test:
        t = json.loads(a.test.read_text())
        card["test_even"] = {k: t[k] for k in ("ap", "ap11", "iou", "images", "gt_boxes",
                                               "detections", "true_positives",
                                               "false_positives", "missed", "unscored_series")}
        card["test_even"]["per_series"] = {s: {k: v[k] for k in ("ap", "ap11", "gt_boxes",
                                                                 "true_positives",
                                                                 "false_positives", "missed")}
                                           for s, v in t["per_series"].items()}
    if a.commands:
        card["reproduce"] = [ln for ln in a.commands.read_text().splitlines() if ln.strip()]
    DEST.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(a.run / "best.safetensors", DEST)
    DEST.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    print(f"{DEST}: epoch {card['epoch']}, detection {card['detection']}")


if __name__ == "__main__":
    main()
