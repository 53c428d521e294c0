"""Table 3 with training windows cut by the test's rule (issue 13, target 3).

The ``table3`` test set takes every 32x32 window holding at least a third of a real C0001
box as a 'defect' patch, so most defects sit 8-16 px off the window's centre
(``experiments/table3_diagnosis.py``); the simulated training defects sat within 8 px of
the centre with half their shadow inside. This experiment builds the ``table3`` dataset
under each window rule ``NAME:MAX_OFFSET:MIN_INSIDE`` (and optionally a range of the
absorption coefficient ``--mu``), trains Xnet-II on each for the same budget, and reports
train accuracy, test accuracy on the real C0001 patches, and the recall binned by the
defect's distance from the window centre. Resumable: a dataset or a trained model already
there is reused. Writes ``--out`` (JSON) that ``results_tables.py`` turns into a table::

    .venv/bin/python experiments/table3_rule.py --out runs/table3_rule.json

``--stretch FLOOR`` asks whether C0001's faint voids are missed for their low contrast:
every patch, training and test alike, is mapped to its own contrast before the model sees
it (:func:`stretch`: grey ``128 + 32 (x - m) / max(s, FLOOR)`` with ``m``, ``s`` the
patch's mean and standard deviation, clipped to 0-255, i.e. four standard deviations;
a label-free operation on each window, like the local contrast channel of the
segmenter ``segnet-lcn``). The rule's dataset is then the stretched copy
(``data-NAME``) of its plain build (``data-NAME-plain``), and the model is trained by the
library as before. ``--arch xnet2-stretch`` instead trains the library's own stretched
Xnet-II (:func:`xdefect.models.stretch_windows` inside the network, the same mapping in
floating point, unrounded) on the plain dataset. Each row records its architecture, epochs,
stretch and command line.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
from table3_diagnosis import BINS, offsets, recall_by_offset

from xdefect.checkpoint import load_model
from xdefect.dataset import open_dataset
from xdefect.gdxray import default_root
from xdefect.io import command_line, write_json
from xdefect.models import get_arch
from xdefect.patches import BuildArgs
from xdefect.pipelines import build_dataset
from xdefect.train import TrainConfig, predict, train

#: the grey level a stretched patch's mean maps to, and the grey levels per standard
#: deviation (so that 0-255 holds four standard deviations either side)
STRETCH_MID, STRETCH_SCALE = 128.0, 32.0


def stretch(patches: np.ndarray, floor: float) -> np.ndarray:
    """uint8 patches ``(N, H, W)`` each mapped to its own contrast: ``STRETCH_MID +
    STRETCH_SCALE (x - m) / max(s, floor)`` rounded and clipped to 0-255, ``m`` and ``s``
    the patch's mean and standard deviation in grey levels; ``floor`` (grey levels, > 0)
    keeps flat, noiseless patches from being blown up to full contrast."""
    if not floor > 0:
        raise ValueError(f"stretch floor must be positive, got {floor}")
    x = np.asarray(patches, np.float32)
    m = x.mean(axis=(1, 2), keepdims=True)
    sd = np.maximum(x.std(axis=(1, 2), keepdims=True), np.float32(floor))
    return np.clip(np.rint(STRETCH_MID + STRETCH_SCALE * (x - m) / sd), 0, 255).astype(np.uint8)


def stretched_dataset(src: Path, dst: Path, floor: float, chunk: int = 20000) -> None:
    """A copy of the dataset folder ``src`` at ``dst`` with every patch stretched
    (:func:`stretch`), labels and metadata unchanged, the manifest naming the source and
    the transform; written all or nothing (a temporary folder, then renamed)."""
    if dst.exists():
        raise FileExistsError(f"{dst}: exists")
    tmp = dst.with_name(f".{dst.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    ds = open_dataset(src)
    out = np.lib.format.open_memmap(tmp / "patches.npy", mode="w+", dtype=np.uint8,
                                    shape=ds.patches.shape)
    for i in range(0, len(out), chunk):
        out[i:i + chunk] = stretch(ds.patches[i:i + chunk], floor)
    out.flush()
    del out
    for name in ("labels.npy", "meta.csv"):
        shutil.copyfile(src / name, tmp / name)
    manifest = json.loads((src / "manifest.json").read_text())
    manifest["derived"] = {"from": str(src), "transform": "per-patch contrast stretch "
                           f"(experiments/table3_rule.py stretch, floor {floor:g} grey "
                           f"levels, mid {STRETCH_MID:g}, {STRETCH_SCALE:g} per sd)"}
    write_json(tmp / "manifest.json", manifest)
    os.replace(tmp, dst)


def rule(text: str) -> tuple[str, int, float]:
    name, off, inside = text.split(":")
    return name, int(off), float(inside)


def scores(model, ds, idx: np.ndarray, meta: list[dict] | None = None) -> dict:
    pred = predict(model, ds.patches[idx]).argmax(1)
    lab = ds.labels[idx]
    out = {"accuracy": round(float((pred == lab).mean()), 4),
           "recall": round(float(pred[lab == 1].mean()), 4),
           "specificity": round(float(1 - pred[lab == 0].mean()), 4)}
    if meta is not None:
        out["recall_by_offset"] = [None if r is None else round(r, 4) for r in
                                   recall_by_offset(pred, lab, offsets(meta))]
    return out


def run_rule(a: argparse.Namespace, name: str, max_offset: int, min_inside: float) -> dict:
    data = a.work / f"data-{name}"
    plain = data.with_name(f"{data.name}-plain") if a.stretch else data
    t0 = time.perf_counter()
    if not (data / "manifest.json").is_file():
        if not (plain / "manifest.json").is_file():
            build_dataset(BuildArgs(gdxray=str(a.gdxray), out=str(plain), protocol="table3",
                                    max_offset=max_offset, min_inside=min_inside,
                                    mu_range=tuple(a.mu), x_max=a.x_max, seed=a.seed,
                                    force=plain.exists()))
        if a.stretch:
            stretched_dataset(plain, data, a.stretch)
    build_s = time.perf_counter() - t0
    run = a.work / (f"run-{name}" if a.arch == "xnet2" else f"run-{name}-{a.arch}")
    t0 = time.perf_counter()
    if not (run / "best.safetensors").is_file() or not (run / "done").is_file():
        train(TrainConfig(data=str(data), out=str(run), arch=a.arch, epochs=a.epochs,
                          samples_per_epoch=a.samples, seed=a.seed, patience=a.epochs,
                          device="cpu", resume=(run / "last.safetensors").is_file()))
        (run / "done").write_text("")
    train_s = time.perf_counter() - t0
    ds = open_dataset(data)
    model, _ = load_model(run / "best.safetensors")
    rng = np.random.default_rng(a.seed)
    tr = np.sort(rng.choice(ds.indices("train"), a.eval_train, replace=False))
    te = ds.indices("test")
    with open(data / "meta.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {"rule": name, "max_offset": max_offset, "min_inside": min_inside,
            "mu": list(a.mu), "x_max": a.x_max, "train": scores(model, ds, tr),
            "test": scores(model, ds, te, [rows[i] for i in te]),
            "patches_seen": a.epochs * a.samples, "epochs": a.epochs,
            "samples_per_epoch": a.samples, "stretch": a.stretch or None, "arch": a.arch,
            "arch_stretch": get_arch(a.arch).stretch or None,
            "build_seconds": round(build_s, 1), "train_seconds": round(train_s, 1),
            "data": str(data), "model": str(run), "command": command_line()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gdxray", type=Path, default=None)
    ap.add_argument("--rules", nargs="+", type=rule,
                    default=[rule("centred:8:0.5"), rule("test-rule:16:0.33")])
    ap.add_argument("--mu", type=float, nargs=2, default=(0.01, 0.04))
    ap.add_argument("--x-max", type=float, default=60.0,
                    help="the simulator's x_max (mm): larger gives fainter defects")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--samples", type=int, default=50000)
    ap.add_argument("--eval-train", type=int, default=10000)
    ap.add_argument("--stretch", type=float, default=0.0, metavar="FLOOR",
                    help="map every patch to its own contrast (floor: the least standard "
                         "deviation, grey levels; 0: off)")
    ap.add_argument("--arch", default="xnet2",
                    help="the registered patch classifier trained (xnet2-stretch: the "
                         "library's stretched Xnet-II)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path("runs/table3-rule"))
    ap.add_argument("--out", type=Path, default=Path("runs/table3_rule.json"))
    a = ap.parse_args()
    if a.stretch < 0 or not np.isfinite(a.stretch):
        ap.error(f"--stretch {a.stretch}: must be 0 (off) or a positive number of grey levels")
    try:
        arch = get_arch(a.arch)
    except KeyError as exc:
        ap.error(f"--arch: {exc.args[0]}")
    if a.stretch and arch.stretch:
        ap.error(f"--stretch with --arch {a.arch}: that architecture stretches each patch "
                 "itself; stretching the dataset too would do it twice")
    a.gdxray = a.gdxray or default_root()
    a.work.mkdir(parents=True, exist_ok=True)
    doc = {"bins_px": list(BINS), "epochs": a.epochs, "samples_per_epoch": a.samples,
           "command": command_line(), "rows": []}
    if a.out.is_file():  # keep the rows of other rules run before
        old = json.loads(a.out.read_text())
        names = {r[0] for r in a.rules}
        doc["rows"] = [r for r in old.get("rows", []) if r["rule"] not in names]
    for name, off, inside in a.rules:
        row = run_rule(a, name, off, inside)
        doc["rows"].append(row)
        print(json.dumps(row), flush=True)
        write_json(a.out, doc)


if __name__ == "__main__":
    main()
