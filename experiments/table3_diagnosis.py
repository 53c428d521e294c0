"""Why Table 3's test accuracy sits at chance: recall on real C0001 defect patches by where
the defect lies in the window.

The ``table3`` test set takes, as the paper does, every 32x32 window holding at least a
third of a real box's area as a 'defect' patch, so the defect may sit anywhere in the
window, often at its edge; the simulated training defects sit within ``max_offset`` (8)
pixels of the centre. This script scores the test split of a ``table3`` dataset with one or
more models and reports, per model, accuracy, recall on the defect patches binned by the
distance (pixels, Chebyshev) of the box centre from the window centre, and the specificity
on the no-defect patches. Prints JSON and writes ``--out``::

    .venv/bin/python experiments/table3_diagnosis.py --data data/table3 \\
        --model xnet2-paper xnet2-xdefect --out runs/table3_diagnosis.json
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from xdefect.checkpoint import load_model, resolve_model
from xdefect.dataset import open_dataset
from xdefect.io import command_line, write_json
from xdefect.train import predict
from xdefect.windows import PATCH

BINS = (0, 4, 8, 12, 16, 24, 64)


def offsets(meta: list[dict]) -> np.ndarray:
    """Chebyshev distance from each window's centre to the centre of the part of its box
    inside it (NaN: no box)."""
    out = np.full(len(meta), np.nan)
    for i, r in enumerate(meta):
        if r["box_x1"] not in ("", None):
            # meta boxes are in the window's own pixels, clipped to it
            cx = (float(r["box_x1"]) + float(r["box_x2"])) / 2
            cy = (float(r["box_y1"]) + float(r["box_y2"])) / 2
            out[i] = max(abs(cx - PATCH / 2), abs(cy - PATCH / 2))
    return out


def recall_by_offset(pred: np.ndarray, labels: np.ndarray, off: np.ndarray
                     ) -> list[float | None]:
    """Share of the defect patches (``labels == 1``) predicted 'defect' in each offset bin
    of :data:`BINS` (None for an empty bin)."""
    out: list[float | None] = []
    for lo, hi in zip(BINS[:-1], BINS[1:], strict=True):
        sel = (labels == 1) & (off >= lo) & (off < hi)
        out.append(float(pred[sel].mean()) if sel.any() else None)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--model", nargs="+", default=["xnet2-paper", "xnet2-xdefect"])
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    ds = open_dataset(a.data)
    idx = ds.indices("test")
    with open(a.data / "meta.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    meta = [rows[i] for i in idx]
    labels = ds.labels[idx]
    off = offsets(meta)
    doc = {"data": str(a.data), "test_patches": len(idx), "defect_patches": int(labels.sum()),
           "bins_px": list(BINS), "models": {}, "command": command_line()}
    counts = np.histogram(off[labels == 1], BINS)[0]
    doc["defect_patches_per_bin"] = counts.tolist()
    for name in a.model:
        model, _ = load_model(resolve_model(name))
        pred = predict(model, ds.patches[idx]).argmax(1)
        rec = recall_by_offset(pred, labels, off)
        doc["models"][name] = {
            "accuracy": float((pred == labels).mean()),
            "recall": float(pred[labels == 1].mean()),
            "specificity": float(1 - pred[labels == 0].mean()),
            "recall_by_offset": rec}
    print(json.dumps(doc, indent=1))
    if a.out:
        write_json(a.out, doc)


if __name__ == "__main__":
    main()
