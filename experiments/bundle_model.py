"""Install a trained run as the bundled model, with its model card.

Copies ``RUN/best.safetensors`` to ``src/xdefect/weights/xnet2-e100g000.safetensors`` and
writes the card beside it: the run's card (architecture, normalisation, data manifest
checksum, training arguments, validation metrics), the detection parameters chosen on
validation images (``--tune``, from ``experiments/tune_detection.py``), the training time
(from ``RUN/metrics.csv``), the test metrics on the even-numbered images (``--test``, a
``metrics.json`` of ``xdefect evaluate``) and the commands that reproduce all of it.

    .venv/bin/python experiments/bundle_model.py --run runs/xnet2-e100g000 \\
        --tune runs/tune.json [--also-tuned runs/tune-patch.json] \\
        [--test runs/eval-even/metrics.json] [--commands FILE]
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path

from xdefect.checkpoint import read_card

DEST = Path("src/xdefect/weights/xnet2-e100g000.safetensors")
LINKS = Path("models")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--tune", type=Path, required=True,
                    help="tune_detection.py output whose best parameters are installed")
    ap.add_argument("--also-tuned", type=Path, nargs="*", default=[],
                    help="other tune_detection.py outputs (e.g. the other score-map mode), "
                         "recorded in the card for comparison")
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
    keys = ("split", "images", "gt_boxes", "best", "best_metrics", "best_per_series",
            "dense_vs_patch", "mode", "map_s_per_image")
    card["detection_tuning"] = {k: tune.get(k) for k in keys}
    card["detection_tuning_alternatives"] = [
        {k: json.loads(t.read_text()).get(k) for k in keys} for t in a.also_tuned]
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
    # the repository's models/ folder points at the installed copy
    LINKS.mkdir(exist_ok=True)
    for suffix in (".safetensors", ".json"):
        link = LINKS / DEST.with_suffix(suffix).name
        if not link.is_symlink():
            link.unlink(missing_ok=True)
            link.symlink_to(Path("..") / DEST.with_suffix(suffix))
    print(f"{DEST}: epoch {card['epoch']}, detection {card['detection']}")


if __name__ == "__main__":
    main()
