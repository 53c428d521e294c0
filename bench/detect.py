"""Benchmark of whole-image detection: dense against patch score maps.

Measures, in the same run, the seconds per 572x768 image of the score map in ``dense``
mode (the CNN run convolutionally) and in ``patch`` mode (every 32x32 window cut and
batched: the reference), stride 4, with the model given (default: the bundled one, else a
randomly initialised xnet2: speed does not depend on the weights). With ``--big`` it also
runs ``xdefect detect --mode dense`` on a 4096x4096 16-bit TIFF in a child process and
reports its peak memory (target: within 4 GiB; the tiling bounds dense mode's memory, and
the mode is named because the bundled model's card chooses patch mode). Prints one JSON line.

    .venv/bin/python bench/detect.py [--model FILE] [--threads 2] [--big]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from xdefect import detect as D
from xdefect.checkpoint import bundled_model, load_model, save_model
from xdefect.models import create_model
from xdefect.simulate import phantom


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--stride", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--big", action="store_true", help="also time a 4096x4096 16-bit image")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    path = a.model or bundled_model()
    if path is not None:
        model, _ = load_model(path)
        name = str(path)
    else:
        torch.manual_seed(0)
        model, name = create_model("xnet2").eval(), "random xnet2"
    img = phantom(n_defects=10, seed=0).image
    D.score_map_dense(model, img, a.stride)  # warm-up
    ts = []
    for _ in range(a.repeats):
        t = time.perf_counter()
        dense = D.score_map_dense(model, img, a.stride)
        ts.append(time.perf_counter() - t)
    dense_s = min(ts)
    t = time.perf_counter()
    patch = D.score_map_patch(model, img, a.stride)
    patch_s = time.perf_counter() - t
    doc = {"dense_s_per_image": round(dense_s, 3), "patch_s_per_image": round(patch_s, 3),
           "speedup": round(patch_s / dense_s, 1),
           "max_abs_score_diff": round(float(np.abs(dense.values - patch.values).max()), 4),
           "mean_abs_score_diff": round(float(np.abs(dense.values - patch.values).mean()), 4),
           "image": list(img.shape), "stride": a.stride, "threads": torch.get_num_threads(),
           "model": name, "reference": "patch mode (windows batched), same run",
           "targets": {"dense_s_per_image": 1.0, "speedup": 10}}
    if a.big:
        with tempfile.TemporaryDirectory() as tmp:
            big = Path(tmp) / "big.tif"
            rng = np.random.default_rng(0)
            base = np.kron(img, np.ones((8, 6), np.float32))[:4096, :4096]
            base = np.pad(base, ((0, 4096 - base.shape[0]), (0, 4096 - base.shape[1])),
                          mode="edge")
            Image.fromarray((np.clip(base + rng.normal(0, 0.01, base.shape), 0, 1)
                             * 65535).astype(np.uint16)).save(big)
            mfile = path
            if mfile is None:
                mfile = Path(tmp) / "m.safetensors"
                save_model(mfile, model, {})
            t = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "xdefect", "detect", "--model",
                                   str(mfile), str(big), "--out", str(Path(tmp) / "out"),
                                   "--mode", "dense", "--stride", str(a.stride)],
                                  capture_output=True, text=True)
            if proc.returncode:
                raise SystemExit(proc.stderr)
            doc["big_4096_16bit_s"] = round(time.perf_counter() - t, 1)
            doc["big_4096_peak_rss_gib"] = round(
                resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20, 3)
    print(json.dumps(doc))


if __name__ == "__main__":
    main()
