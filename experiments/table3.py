"""The paper's Table 3 at a scale this machine can run: every architecture of the registry
trained on the same ``table3`` dataset, patch accuracy on its training and testing splits.

Each architecture trains for ``--epochs`` epochs of ``--samples`` seeded patches from the
``train`` split (no validation split in this protocol: the last epoch is kept), then
``xdefect test`` measures accuracy on a fixed sample of ``--eval-train`` training patches
and on the whole ``test`` split (real C0001 patches). Prints one JSON line per
architecture and writes all of them to ``--out``.

    .venv/bin/xdefect dataset build --protocol table3 --out data/table3
    .venv/bin/python experiments/table3.py --data data/table3 --out runs/table3.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from xdefect.checkpoint import load_model
from xdefect.dataset import open_dataset
from xdefect.models import REGISTRY
from xdefect.train import TrainConfig, predict, train

PAPER = {"t3-0": (0.9618, 0.8254), "t3-1": (0.9538, 0.7145), "t3-2": (0.9748, 0.9494),
         "t3-3": (0.9875, 0.9613), "t3-4": (0.9550, 0.9211), "t3-5": (0.9487, 0.9124),
         "t3-6": (0.9954, 0.9687), "t3-7": (0.9938, 0.9086)}


def accuracy(model, ds, idx: np.ndarray) -> float:
    p = predict(model, ds.patches[np.sort(idx)])
    return float((p.argmax(1) == ds.labels[np.sort(idx)]).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--archs", nargs="+", default=[f"t3-{i}" for i in range(8)],
                    choices=list(REGISTRY))
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--samples", type=int, default=30000)
    ap.add_argument("--eval-train", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    ds = open_dataset(a.data)
    rng = np.random.default_rng(a.seed)
    tr = ds.indices("train")
    tr_eval = rng.choice(tr, min(a.eval_train, len(tr)), replace=False)
    te = ds.indices("test")
    rows = []
    for arch in a.archs:
        tmp = Path(tempfile.mkdtemp(prefix="xdefect-t3-"))
        try:
            t = time.perf_counter()
            train(TrainConfig(data=str(a.data), out=str(tmp), arch=arch, epochs=a.epochs,
                              samples_per_epoch=a.samples, seed=a.seed, threads=a.threads,
                              device="cpu", patience=a.epochs))
            secs = time.perf_counter() - t
            model, _ = load_model(tmp / "best.safetensors")
            row = {"arch": arch, "train_acc": round(accuracy(model, ds, tr_eval), 4),
                   "test_acc": round(accuracy(model, ds, te), 4),
                   "paper_train_acc": PAPER.get(arch, (None, None))[0],
                   "paper_test_acc": PAPER.get(arch, (None, None))[1],
                   "train_seconds": round(secs, 1), "patches_seen": a.epochs * a.samples}
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        rows.append(row)
        print(json.dumps(row), flush=True)
    if a.out:
        a.out.write_text(json.dumps({"data": str(a.data), "epochs": a.epochs,
                                     "samples_per_epoch": a.samples, "rows": rows},
                                    indent=2) + "\n")


if __name__ == "__main__":
    main()
