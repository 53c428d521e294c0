"""Closing the simulation gap, one hypothesis per row (issue 13): the paper's protocol
(simulated defects only) with one simulator setting changed, the same budget for each.

For each variant ``NAME[:FIELD=VALUE,...]`` (fields of ``BuildArgs``: ``defect_blur``,
``mu_range`` as ``LO/HI``, ``axes_mm`` as ``LO/HI``, ``max_offset``, ``min_inside``;
``seed`` reseeds both the build and the training, for the spread between seeds): a
whole-image dataset from the train images (odd, n % 4 == 3) of the paper's series,
``--per-image`` no-defect and simulated-defect patches each; Xnet-II trained from scratch
(``--epochs`` epochs of ``--samples`` patches, early stopping on the dataset's own
validation split); then detection on the **tuning images** (odd, n % 4 == 1) of the
annotated paper series with the same detection settings for every row (the bundled
``xnet2-paper`` card's: patch mode, stride 8), AP at IoU 0.5, and the recall on the
centred real defect windows of the tuning images (how many real voids the classifier
recognises at all). Test images are never touched. Rows already in ``--out`` are kept;
a dataset or model already built is reused::

    .venv/bin/python experiments/sim_ablation.py --variants sharp blur1.5:defect_blur=1.5
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import fields
from pathlib import Path

import numpy as np

from xdefect import gdxray
from xdefect.checkpoint import read_card, resolve_model
from xdefect.detector import Detector, params_from_card
from xdefect.evaluate import summarise
from xdefect.io import command_line, write_json
from xdefect.patches import BuildArgs
from xdefect.pipelines import build_dataset
from xdefect.protocol import evaluate_folder
from xdefect.train import TrainConfig, predict, train
from xdefect.windows import centred_real_positions, cut

PAPER_SERIES = ["C0001", "C0010", "C0015", "C0021", "C0031", "C0034", "C0061"]


def variant(text: str) -> tuple[str, dict]:
    name, _, spec = text.partition(":")
    known = {f.name for f in fields(BuildArgs)}
    over: dict = {}
    for item in filter(None, spec.split(",")):
        key, value = item.split("=")
        if key not in known:
            raise SystemExit(f"unknown BuildArgs field {key!r}")
        if "/" in value:
            over[key] = tuple(float(v) for v in value.split("/"))
        elif key == "mu_log":
            over[key] = value.lower() in ("1", "true", "yes")
        else:
            over[key] = (int(value) if key in ("max_offset", "seed", "per_image")
                         else float(value))
    return name, over


def real_recall(model, root: Path, series: list[str]) -> tuple[float, int]:
    """Share of the centred real defect windows of the tuning images classed 'defect'."""
    wins = []
    for smp in gdxray.iter_samples(root, series, split="tuning"):
        if len(smp.boxes):
            img8 = np.rint(smp.image * 255).astype(np.uint8)
            pos = np.asarray(centred_real_positions(smp.boxes, smp.image.shape))
            if len(pos):
                wins.append(cut(img8, pos[:, 0], pos[:, 1]))
    patches = np.concatenate(wins)
    return float((predict(model, patches).argmax(1) == 1).mean()), len(patches)


def run(a: argparse.Namespace, name: str, over: dict) -> dict:
    data, out = a.work / f"data-{name}", a.work / f"run-{name}"
    t0 = time.perf_counter()
    if not (data / "manifest.json").is_file():
        build_dataset(BuildArgs(**{"gdxray": str(a.gdxray), "out": str(data),
                                   "series": PAPER_SERIES, "per_image": a.per_image,
                                   "mu_range": (0.004, 0.04), "seed": a.seed,
                                   "force": data.exists(), **over}))
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    if not (out / "done").is_file():
        train(TrainConfig(data=str(data), out=str(out), arch="xnet2", epochs=a.epochs,
                          samples_per_epoch=a.samples, val_samples=a.val_samples,
                          batch=128, lr=0.001, patience=a.epochs,
                          seed=over.get("seed", a.seed), device="cpu",
                          resume=(out / "last.safetensors").is_file()))
        (out / "done").write_text("")
    train_s = time.perf_counter() - t0
    card = read_card(resolve_model("xnet2-paper"))
    params = params_from_card(card)
    det = Detector.load(out / "best.safetensors", device="cpu", **params.to_dict())
    t0 = time.perf_counter()
    annotated = [s for s in PAPER_SERIES if s != "C0061"]
    ev = evaluate_folder(det, a.gdxray, split="tuning", series=annotated)
    rec, n = real_recall(det.model, a.gdxray, annotated)
    m = ev.metrics
    return {"variant": name, "changes": {k: list(v) if isinstance(v, tuple) else v
                                         for k, v in over.items()},
            "val_acc": det.card["metrics"]["val_acc"], "tuning_ap": round(m["ap"], 4),
            "tuning_ap11": round(m["ap11"], 4), "gt_boxes": m["gt_boxes"],
            "true_positives": sum(d["true_positives"] for d in m["per_series"].values()),
            "false_alarms_per_image": round(sum(d["false_positives"] for d in
                                                m["per_series"].values()) / m["images"], 2),
            "real_window_recall": round(rec, 4), "real_windows": n,
            "patches_seen": a.epochs * a.samples, "build_s": round(build_s, 1),
            "train_s": round(train_s, 1), "eval_s": round(time.perf_counter() - t0, 1),
            "detect_params": params.to_dict(), "command": command_line()}


def choose_theta(a: argparse.Namespace, row: dict) -> dict:
    """The row's model scored on the tuning images at every theta of
    ``protocol.SWEEP_THETAS`` from >= 0 (the same score maps), the best AP's theta kept:
    each model gets its own threshold, chosen on the tuning images."""
    det = Detector.load(a.work / f"run-{row['variant']}" / "best.safetensors", device="cpu",
                        **row["detect_params"])
    annotated = [s for s in PAPER_SERIES if s != "C0061"]
    ev = evaluate_folder(det, a.gdxray, split="tuning", series=annotated, sweep=True)
    per = {t: summarise(rs) for t, rs in ev.sweep.items() if t >= 0}
    best = max(per, key=lambda t: (per[t]["ap"], t == row["detect_params"]["theta"]))
    m = per[best]
    return {"theta": best, "tuning_ap": round(m["ap"], 4),
            "true_positives": m["true_positives"],
            "false_alarms_per_image": round(m["false_positives"] / m["images"], 2),
            "ap_by_theta": {f"{t:g}": round(v["ap"], 4) for t, v in per.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gdxray", type=Path, default=None)
    ap.add_argument("--variants", nargs="+", type=variant,
                    default=[variant("sharp"), variant("blur1.5:defect_blur=1.5")])
    ap.add_argument("--per-image", type=int, default=600)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--samples", type=int, default=60000)
    ap.add_argument("--val-samples", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path("runs/sim-ablation"))
    ap.add_argument("--out", type=Path, default=Path("runs/sim_ablation.json"))
    ap.add_argument("--choose-theta", nargs="*", default=None, metavar="VARIANT",
                    help="for the rows named (all when none is), choose theta on the tuning "
                         "images and record the AP there (no training)")
    a = ap.parse_args()
    a.gdxray = a.gdxray or gdxray.default_root()
    a.work.mkdir(parents=True, exist_ok=True)
    doc = {"protocol": {"series": PAPER_SERIES, "per_image": a.per_image, "epochs": a.epochs,
                        "samples_per_epoch": a.samples, "split_scored": "tuning"},
           "command": command_line(), "rows": []}
    if a.out.is_file():
        doc["rows"] = json.loads(a.out.read_text()).get("rows", [])
    if a.choose_theta is not None:
        for row in doc["rows"]:
            if (not a.choose_theta or row["variant"] in a.choose_theta) \
                    and "chosen_theta" not in row:
                row["chosen_theta"] = choose_theta(a, row)
                print(json.dumps({row["variant"]: row["chosen_theta"]}), flush=True)
                write_json(a.out, doc)
        return
    done = {r["variant"] for r in doc["rows"]}
    for name, over in a.variants:
        if name in done:
            continue
        row = run(a, name, over)
        doc["rows"].append(row)
        print(json.dumps(row), flush=True)
        write_json(a.out, doc)


if __name__ == "__main__":
    main()
