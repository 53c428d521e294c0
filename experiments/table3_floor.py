"""Table 3's contrast-stretch floor chosen on training castings held out (issue 13, target 3).

``experiments/table3_rule.py --stretch FLOOR`` maps every patch to its own contrast,
``128 + 32 (x - m) / max(s, FLOOR)``; the floor (grey levels) keeps flat windows from
being blown up to full contrast, and the first run took 2 without choosing it. Here it is
chosen without C0001: the plain dataset of the test rule (``data-NAME-plain`` of
``table3_rule.py``) is cut into a training set of the castings not held out (every window
of theirs: simulated, real and defect-free, split ``train``) and a validation set of the
held-out castings (:func:`held_out_dataset`: each of their real defect windows and as many
of their defect-free windows drawn at random, split ``test``; their simulated windows and
every C0001 window are left out). For each floor the library trains Xnet-II on the
stretched copy (:func:`table3_rule.stretched_dataset`) for the same budget and scores the
held-out windows (floor 0: the same without the stretch, the control); the floor with the
highest held-out accuracy is chosen (:func:`choose_floor`), to be run on the full protocol
by ``table3_rule.py --stretch F`` (or the library's ``xnet2-stretch`` with that floor).
Resumable: datasets and trained models already there are reused. Writes ``--out``::

    .venv/bin/python experiments/table3_floor.py --hold C0031 C0061 --floors 0 1 2 4 8
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
from table3_rule import scores, stretched_dataset

from xdefect.checkpoint import load_model
from xdefect.dataset import META_COLUMNS, open_dataset
from xdefect.io import command_line, write_json
from xdefect.train import TrainConfig, train


def held_out_dataset(src: Path, dst: Path, hold: list[str], seed: int = 0,
                     chunk: int = 20000) -> dict:
    """A dataset folder ``dst`` cut from the ``table3`` dataset ``src``: the training split
    keeps the ``train`` windows of the series not in ``hold``; the ``test`` split holds the
    real defect windows of the ``hold`` series and as many of their ``background`` windows
    (drawn with ``seed``); nothing else (their simulated windows, ``src``'s own test
    split) is kept. Written all or nothing; returns the counts per part."""
    if dst.exists():
        raise FileExistsError(f"{dst}: exists")
    ds = open_dataset(src)
    with open(src / "meta.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    held = {s for s in hold}
    known = {r["series"] for r in rows if r["split"] == "train"}
    if not held or held - known:
        raise ValueError(f"{src}: held-out series {sorted(held - known) or '(none)'} not "
                         f"among its training series {sorted(known)}")
    train_pos = [i for i, r in enumerate(rows)
                 if r["split"] == "train" and r["series"] not in held]
    real = [i for i, r in enumerate(rows) if r["split"] == "train" and r["series"] in held
            and r["source"] == "real"]
    bg = [i for i, r in enumerate(rows) if r["split"] == "train" and r["series"] in held
          and r["source"] == "background"]
    if not real or len(bg) < len(real):
        raise ValueError(f"{src}: held-out series {sorted(held)} give {len(real)} real and "
                         f"{len(bg)} defect-free windows: need some real windows and at "
                         "least as many defect-free")
    bg = np.sort(np.random.default_rng(seed).choice(bg, len(real), replace=False)).tolist()
    keep = np.array(train_pos + sorted(real + bg))
    split = ["train"] * len(train_pos) + ["test"] * (len(real) + len(bg))
    tmp = dst.with_name(f".{dst.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    out = np.lib.format.open_memmap(tmp / "patches.npy", mode="w+", dtype=np.uint8,
                                    shape=(len(keep), *ds.patches.shape[1:]))
    for i in range(0, len(keep), chunk):
        out[i:i + chunk] = ds.patches[keep[i:i + chunk]]
    out.flush()
    del out
    np.save(tmp / "labels.npy", ds.labels[keep])
    with open(tmp / "meta.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(META_COLUMNS)
        for j, (i, sp) in enumerate(zip(keep, split, strict=True)):
            w.writerow([j, sp] + [rows[i][c] for c in META_COLUMNS[2:]])
    counts = {"train": len(train_pos), "held_real": len(real), "held_background": len(bg)}
    manifest = json.loads((src / "manifest.json").read_text())
    manifest["derived"] = {"from": str(src), "held_out": sorted(held), "seed": seed,
                           "transform": "training series without the held-out ones; test "
                           "split: the held-out series' real windows and as many of their "
                           "defect-free windows", "counts": counts}
    write_json(tmp / "manifest.json", manifest)
    os.replace(tmp, dst)
    return counts


def choose_floor(rows: list[dict]) -> float:
    """The floor of the row with the highest held-out accuracy (the smaller floor on a tie)."""
    if not rows:
        raise ValueError("no floor measured")
    best = max(rows, key=lambda r: (r["held_out"]["accuracy"], -r["floor"]))
    return best["floor"]


def run_floor(a: argparse.Namespace, held: Path, floor: float) -> dict:
    """Train on the held-out cut stretched with ``floor`` (0: the cut itself, unstretched)
    and score its held-out windows."""
    data = a.work / f"data-f{floor:g}" if floor else held
    if not (data / "manifest.json").is_file():
        stretched_dataset(held, data, floor)
    run = a.work / f"run-f{floor:g}"
    if not (run / "best.safetensors").is_file() or not (run / "done").is_file():
        train(TrainConfig(data=str(data), out=str(run), arch="xnet2", epochs=a.epochs,
                          samples_per_epoch=a.samples, seed=a.seed, patience=a.epochs,
                          threads=a.threads, device="cpu",
                          resume=(run / "last.safetensors").is_file()))
        (run / "done").write_text("")
    card = json.loads((run / "best.json").read_text())
    cfg = card.get("train_config", {})
    for key, want in (("epochs", a.epochs), ("samples_per_epoch", a.samples),
                      ("seed", a.seed)):
        if key in cfg and cfg[key] != want:
            raise SystemExit(f"{run}: trained with {key} {cfg[key]}, not {want}: use "
                             "another --work")
    with open(run / "metrics.csv", newline="") as fh:  # its epochs' own seconds
        train_s = sum(float(r["seconds"]) for r in csv.DictReader(fh))
    ds = open_dataset(data)
    model, _ = load_model(run / "best.safetensors")
    rng = np.random.default_rng(a.seed)
    tr = np.sort(rng.choice(ds.indices("train"), a.eval_train, replace=False))
    return {"floor": floor, "train": scores(model, ds, tr),
            "held_out": scores(model, ds, ds.indices("test")),
            "train_seconds": round(train_s, 1), "data": str(data), "model": str(run)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plain", type=Path,
                    default=Path("runs/table3-rule/data-test-rule-stretch2-e12-plain"),
                    help="the test rule's unstretched table3 dataset (table3_rule.py)")
    ap.add_argument("--hold", nargs="+", default=["C0031", "C0061"],
                    help="training series held out for the choice")
    ap.add_argument("--floors", type=float, nargs="+", default=[0.0, 1.0, 2.0, 4.0, 8.0])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--samples", type=int, default=50000)
    ap.add_argument("--eval-train", type=int, default=10000)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path("runs/table3-floor"))
    ap.add_argument("--out", type=Path, default=Path("runs/table3_floor.json"))
    a = ap.parse_args()
    if any(not (f >= 0 and np.isfinite(f)) for f in a.floors):
        ap.error(f"--floors {a.floors}: each must be a number of grey levels, 0 for no "
                 "stretch")
    if not (a.plain / "manifest.json").is_file():
        ap.error(f"--plain {a.plain}: no table3 dataset there (run experiments/table3_rule.py "
                 "with --stretch first)")
    a.work.mkdir(parents=True, exist_ok=True)
    held = a.work / "data-held"
    if not (held / "manifest.json").is_file():
        held_out_dataset(a.plain, held, a.hold, a.seed)
    derived = open_dataset(held).manifest["derived"]
    if (derived["held_out"], derived["seed"], derived["from"]) != (sorted(a.hold), a.seed,
                                                                   str(a.plain)):
        ap.error(f"{held}: cut from {derived['from']} holding out {derived['held_out']} "
                 f"(seed {derived['seed']}), not these arguments: use another --work")
    counts = derived["counts"]
    doc = {"plain": str(a.plain), "hold": sorted(a.hold), "counts": counts,
           "epochs": a.epochs, "samples_per_epoch": a.samples, "command": command_line(),
           "rows": []}
    for f in a.floors:
        row = run_floor(a, held, f)
        doc["rows"].append(row)
        doc["chosen"] = choose_floor(doc["rows"])
        print(json.dumps(row), flush=True)
        write_json(a.out, doc)


if __name__ == "__main__":
    main()
