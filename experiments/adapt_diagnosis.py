"""Why adapting a segmenter on simulated voids alone loses the real defects.

For one held-out series (``--series``, default C0036 of ``gdxray-extra``) and each model
given (the source and segmenters adapted on the series' odd images): (1) AP at finding
simulated voids superimposed on the series' **odd** images (the adaptation images; exact
boxes of the voids' shadows, real defects unlabelled) at each threshold of ``THETAS``, and
the threshold that maximises it, a label-free choice; (2) AP on the series' **even** images
(real defects) at that threshold and at the model card's. A diagnosis: nothing here
chooses a setting of ``xdefect adapt``. Writes ``--out``::

    .venv/bin/python experiments/adapt_diagnosis.py --models runs/seg/fcn-real-exp.safetensors \\
        runs/adapt-series-seg-ign/C0036/adapted/model.safetensors \\
        runs/adapt-series-seg-neg/C0036/adapted/model.safetensors
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from xdefect import gdxray
from xdefect.crops import CropConfig, TrainImage, folder_images, superimpose_voids
from xdefect.detect import DetectParams, detection_arrays, regions
from xdefect.detector import Detector
from xdefect.evaluate import ImageResult, summarise
from xdefect.io import command_line, write_json
from xdefect.protocol import evaluate_folder
from xdefect.segment import SegNet, score_map

#: thresholds on the score 2p - 1 (p from 0.05 to 0.995)
THETAS = (-0.9, -0.8, -0.6, -0.4, -0.2, 0.0, 0.4, 0.6, 0.8, 0.9, 0.96, 0.99)


def simulated_validation(images: list[TrainImage], crops: CropConfig,
                         rng: np.random.Generator, per_image: float = 3.0, limit: int = 16
                         ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Up to ``limit`` of ``images`` (evenly spaced), each a copy with Poisson(``per_image``)
    simulated voids (``crops``' sampler) centred in its ``free`` mask: ``(pixels, mask,
    boxes)`` with the exact boxes of the voids' shadows (``d > 0``). A validation set
    without labels: real defects the images hold are not in ``boxes``."""
    idx = np.unique(np.linspace(0, len(images) - 1, min(limit, len(images))).round()
                    .astype(int))
    out = []
    for i in idx:
        img = images[i]
        pix = img.pixels.astype(np.float64).copy()
        boxes = []
        if img.free.any():  # the count is drawn only for an image that can take voids
            boxes = [r.box for r in superimpose_voids(pix, img.free, crops, rng,
                                                      int(rng.poisson(per_image)))]
        out.append((np.clip(pix, 0, 1).astype(np.float32), img.mask,
                    np.asarray(boxes, float).reshape(-1, 4)))
    return out


def choose_theta_simulated(net: SegNet, validation: list[tuple[np.ndarray, np.ndarray,
                                                                np.ndarray]],
                           base: DetectParams, thetas: tuple[float, ...] = THETAS,
                           device: str | torch.device = "cpu"
                           ) -> tuple[float, dict[str, float]]:
    """The ``theta`` of ``thetas`` with the best AP (IoU 0.5) at finding the simulated
    voids of :func:`simulated_validation`'s images, and the AP at each: a threshold for a
    casting without labels (its real defects, unlabelled, count as false alarms at every
    threshold alike)."""
    runs: dict[float, list[ImageResult]] = {t: [] for t in thetas}
    for k, (pix, mask, boxes) in enumerate(validation):
        smap = score_map(net, pix, device)
        for t in thetas:
            d = regions(smap, replace(base, theta=t), mask if base.use_mask else None)
            runs[t].append(ImageResult(f"sim{k}", "simulated", *detection_arrays(d), boxes))
    aps = {f"{t:g}": float(summarise(rs)["ap"] or 0.0) for t, rs in runs.items()}
    best = max(thetas, key=lambda t: aps[f"{t:g}"])
    return float(best), {k: round(v, 4) for k, v in aps.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path("../shared/data/gdxray-extra"))
    ap.add_argument("--series", default="C0036")
    ap.add_argument("--models", nargs="+", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("runs/adapt_diagnosis.json"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    files = [r.path for r in gdxray.list_images(a.root, [a.series], "odd")]
    images = folder_images(files)
    rows = []
    for name in a.models:
        det = Detector.load(name, device="cpu", threads=a.threads)
        assert isinstance(det.model, SegNet)
        val = simulated_validation(images, CropConfig(), np.random.default_rng(0))
        t, aps = choose_theta_simulated(det.model, val, det.params)
        real = {}
        for label, theta in (("card", det.params.theta), ("simulated_choice", t)):
            m = evaluate_folder(det.with_params(theta=theta), a.root, "test",
                                [a.series]).metrics
            real[label] = {"theta": theta, "ap": round(m["ap"], 4),
                           "true_positives": m["true_positives"], "gt_boxes": m["gt_boxes"],
                           "false_positives": m["false_positives"]}
        rows.append({"model": name, "simulated_ap_by_theta": aps, "simulated_best": t,
                     "real_even": real})
        print(json.dumps(rows[-1]), flush=True)
    write_json(a.out, {"root": str(a.root), "series": a.series,
                       "validation": "Poisson(3) simulated voids on each of up to 16 odd "
                                     "images (default CropConfig sampler), seed 0",
                       "rows": rows, "command": command_line()})


if __name__ == "__main__":
    main()
