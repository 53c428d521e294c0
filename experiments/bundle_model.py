"""Make a bundled model: a trained run's best weights with a complete model card.

The card is the run's own (architecture, normalisation, lineage of every training stage
with captured command lines and checksums, weights checksum) plus:

* ``name``/``description``: the bundled name (``xnet2-paper`` or ``xnet2-xdefect``);
* ``training``: epochs, best epoch, seconds, metrics per epoch (``RUN/metrics.csv``);
* ``detection``: the parameters ``experiments/tune_detection.py`` chose on the tuning
  images (``--tune``), and ``detection_tuning`` with that search's figures and command;
* ``test_even``: with ``--test`` (a ``metrics.json`` of ``xdefect evaluate --split test``
  with this model), plain and unseen-defect AP, pooled and per series;
* ``reproduce``: every command line, in order, taken from the lineage, the tuning output,
  the evaluation and this script's own command line (never typed by hand).

Without ``--install`` it writes ``--out`` (a candidate to evaluate); with ``--install`` it
writes ``src/xdefect/weights/NAME.safetensors`` + ``.json`` and links ``models/``::

    .venv/bin/python experiments/bundle_model.py --run runs/xnet2-paper --name xnet2-paper \\
        --tune runs/tune-paper.json [--test runs/eval-test-paper/metrics.json] \\
        (--out runs/candidate-paper.safetensors | --install)
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path

from xdefect.checkpoint import BUNDLED, WEIGHTS_DIR, card_lineage, read_card
from xdefect.detect import DetectParams
from xdefect.io import command_line, sha256_file

LINKS = Path("models")
TEST_KEYS = ("ap", "ap11", "iou", "matching", "images", "gt_boxes", "detections",
             "true_positives", "false_positives", "missed", "recall_at_fppi", "split",
             "series", "gdxray", "unscored_series", "command")
SERIES_KEYS = ("ap", "ap11", "gt_boxes", "true_positives", "false_positives", "missed")


def test_block(metrics: dict) -> dict:
    """The card's ``test_even`` block from an ``xdefect evaluate`` metrics.json."""
    out = {k: metrics.get(k) for k in TEST_KEYS}
    out["per_series"] = {s: {k: v[k] for k in SERIES_KEYS}
                         for s, v in metrics["per_series"].items()}
    u = metrics.get("unseen")
    if u:
        out["unseen"] = {k: u.get(k) for k in ("ap", "ap11", "gt_boxes", "ignored_boxes",
                                               "true_positives", "false_positives",
                                               "missed", "rule")}
        out["unseen"]["per_series"] = {s: {k: v[k] for k in SERIES_KEYS}
                                       for s, v in u["per_series"].items()}
    return out


def read_test(a: argparse.Namespace, card: dict) -> dict | None:
    """``--test``'s metrics.json (an evaluation on the test images), its block put in the
    card as ``test_even``; None without ``--test``."""
    if not a.test:
        return None
    test = json.loads(a.test.read_text())
    if test.get("split") not in ("test", "even"):
        raise SystemExit(f"{a.test}: not an evaluation on the test images")
    card["test_even"] = test_block(test)
    return test


def reproduce(card: dict, tune: dict, test: dict | None, bundle_cmd: str) -> list[str]:
    """Every command that made the bundled model, in order, from the captured records."""
    cmds: list[str] = []
    for st in card_lineage(card):
        for c in (st.get("data_command"), st.get("command")):
            if c and c not in cmds:
                cmds.append(c)
    for c in (tune.get("command"), bundle_cmd, (test or {}).get("command")):
        if c and c not in cmds:
            cmds.append(c)
    return cmds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--name", required=True, choices=sorted(BUNDLED))
    ap.add_argument("--tune", type=Path, default=None,
                    help="tune_detection.py output whose best parameters are installed "
                         "(a classifier run; a segmenter run chose its theta on the tuning "
                         "images itself, recorded in its card)")
    ap.add_argument("--test", type=Path, default=None,
                    help="metrics.json of `xdefect evaluate --split test` with this model")
    dest = ap.add_mutually_exclusive_group(required=True)
    dest.add_argument("--out", type=Path, help="write a candidate model here")
    dest.add_argument("--install", action="store_true",
                      help="install as src/xdefect/weights/NAME.safetensors")
    a = ap.parse_args()
    segmenter = (a.run / "model.safetensors").is_file()
    src = a.run / ("model.safetensors" if segmenter else "best.safetensors")
    card = read_card(src)
    if card.get("weights_sha256") != sha256_file(src):
        raise SystemExit(f"{src}: weights do not match the checksum in their card")
    if segmenter:
        return bundle_segmenter(a, src, card)
    if a.tune is None:
        raise SystemExit("--tune is needed for a patch classifier run")
    tune = json.loads(a.tune.read_text())
    if tune.get("split") not in ("tuning",):
        raise SystemExit(f"{a.tune}: detection settings must be chosen on the tuning images, "
                         f"not {tune.get('split')!r}")
    with open(a.run / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    card["name"] = a.name
    card["description"] = BUNDLED[a.name]
    card["training"] = {
        "epochs_run": len(rows), "best_epoch": card["epoch"],
        "seconds_total": round(sum(float(r["seconds"]) for r in rows), 1),
        "metrics_per_epoch": rows,
    }
    card["detection"] = tune["best"]
    card["detection_tuning"] = {k: tune.get(k) for k in (
        "split", "series", "gdxray", "images", "gt_boxes", "best", "best_metrics",
        "best_per_series", "mode", "base_stride", "map_s_per_image", "command")}
    test = read_test(a, card)
    card["reproduce"] = reproduce(card, tune, test, command_line())
    install(a, src, card)
    print(f"{a.install and a.name or a.out}: {a.name}, epoch {card['epoch']}, detection "
          f"{card['detection']}")


def bundle_segmenter(a: argparse.Namespace, src: Path, card: dict) -> None:
    """A segmenter run (``xdefect train-segmenter``, or ``xdefect tune-segmenter`` of
    one): its card already holds the training log and the settings chosen on the tuning
    images (``tuning``)."""
    tuning = card.get("tuning") or {}
    if not tuning.get("images"):
        raise SystemExit(f"{src}: no theta chosen on tuning images in its card")
    card["name"] = a.name
    card["description"] = BUNDLED[a.name]
    roots = tuning.get("roots") or {}  # older cards: the series trained on
    card["detection_tuning"] = {
        "split": "tuning",
        "series": sorted({s for ss in roots.values() for s in ss})
        or card["lineage"][-1].get("data_series"),
        **({"gdxray": sorted(roots)} if roots else {}),
        "images": tuning["images"], "best": card["detection"],
        "best_metrics": {"ap": tuning["ap"]}, "ap_by_theta": tuning["ap_by_theta"],
        **({"grid": tuning["grid"]} if "grid" in tuning else {}),
        "rule": tuning["rule"],
        "command": (card.get("retuned") or {}).get("command")
        or card["lineage"][-1].get("command")}
    test = read_test(a, card)
    # compared as DetectParams: a field added after the evaluation ran takes its default
    if test is not None and (test.get("params") is None or DetectParams.from_dict(
            test["params"]) != DetectParams.from_dict(card["detection"])):
        raise SystemExit(f"{a.test}: evaluated with other detection settings than {src}'s")
    card["reproduce"] = reproduce(card, {"command": (card.get("retuned") or {}).get("command")},
                                  test, command_line())
    install(a, src, card)
    print(f"{a.install and a.name or a.out}: {a.name}, {card['training']['steps']} steps, "
          f"detection theta {card['detection']['theta']}, grow "
          f"{card['detection'].get('grow', 0)}")


def install(a: argparse.Namespace, src: Path, card: dict) -> None:
    """Write the weights and card to ``--out`` or install them as a bundled model."""
    target = WEIGHTS_DIR / f"{a.name}.safetensors" if a.install else a.out
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, target)
    target.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    if a.install:  # the repository's models/ folder points at the installed copies
        LINKS.mkdir(exist_ok=True)
        for suffix in (".safetensors", ".json"):
            link = LINKS / target.with_suffix(suffix).name
            if not link.is_symlink():
                link.unlink(missing_ok=True)
                link.symlink_to(Path("..") / "src" / "xdefect" / "weights" / link.name)


if __name__ == "__main__":
    main()
