"""Benchmark of whole-image detection on a 572x768 radiograph: both score-map modes at the
default stride (8) and at stride 4, against the reference, in the same run.

``default_s_per_image`` times the model card's own settings (the bundled patch classifier
``xnet2-xdefect``, the default model until the segmenter: dense mode at stride 4);
``segmenter`` times the bundled default model, the segmenter ``segnet-xdefect``, with its
card's settings on PyTorch and on ONNX Runtime (with their largest score difference).
Every configuration is warmed once and timed as the best of ``--repeats`` runs of
:meth:`xdefect.Detector.run` (casting mask, score map, regions; what ``xdefect detect``
and ``evaluate`` call, with the dense network built once) on the synthetic wheel with ten
simulated defects, with the model given (default: the bundled patch classifier, else a
randomly initialised xnet2: speed does not depend on the weights). The card's settings
are also timed with the score map on ONNX Runtime (``onnxruntime_default_s_per_image``,
with its largest score difference from PyTorch's), and with every dense layer a plain
convolution instead of Winograd's algorithm for the heavy ones
(``default_plain_conv_s_per_image``, ``winograd_speedup``,
``winograd_max_abs_score_diff``). Reference: patch mode
as xdefect ran it before (default memory layout, 1,024 windows per pass, every window,
score map only), timed the same way. ``max_abs_score_diff_vs_reference``: the largest
difference between the reference scores and today's patch-mode scores on the windows both
run. With ``--big`` it also runs ``xdefect detect --mode dense`` on a 4096x4096 16-bit TIFF
in a child process and reports its peak memory. Prints one JSON line.

    .venv/bin/python bench/detect.py [--model FILE] [--threads 2] [--repeats 3] [--big]
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
from xdefect import gdxray
from xdefect.checkpoint import (
    DEFAULT_CLASSIFIER,
    DEFAULT_MODEL,
    bundled_model,
    load_model,
    save_model,
)
from xdefect.detector import Detector, params_from_card
from xdefect.models import create_model, normalise_float
from xdefect.simulate import phantom


@torch.no_grad()
def reference_patch_map(model, image: np.ndarray, stride: int) -> np.ndarray:
    """Patch mode as xdefect ran it before: every window, default layout, 1,024 a pass."""
    gh, gw = D.grid_shape(image.shape, stride)
    win = np.lib.stride_tricks.sliding_window_view(image, (32, 32))[::stride, ::stride]
    win = win[:gh, :gw].reshape(-1, 32, 32)
    out = np.empty(len(win), np.float32)
    for s in range(0, len(win), 1024):
        x = normalise_float(np.ascontiguousarray(win[s:s + 1024]))[:, None]
        p = torch.softmax(model(x), dim=1)
        out[s:s + 1024] = (p[:, 1] - p[:, 0]).numpy()
    return out.reshape(gh, gw)


def best_of(fn, repeats: int) -> float:
    fn()  # warm-up
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts)


def onnx_timing(model, card: dict, params: D.DetectParams, img: np.ndarray,
                a: argparse.Namespace) -> dict:
    """The card's settings with the score map on ONNX Runtime (dense mode only), timed the
    same way, and its largest score difference from PyTorch's."""
    if params.mode != "dense":
        return {"onnxruntime": "skipped: the card's mode is not dense"}
    from xdefect.export import OnnxScorer, dense_onnx_bytes

    scorer = OnnxScorer(dense_onnx_bytes(model, params.stride, card), a.threads)

    def fn(im, p):
        return scorer.score_map(im, p.stride)

    secs = best_of(lambda: D.detect(model, img, params, score_fn=fn), a.repeats)
    diff = np.abs(scorer.score_map(img, params.stride).values
                  - D.score_map_dense(model, img, params.stride).values).max()
    return {"onnxruntime_default_s_per_image": round(secs, 3),
            "onnxruntime_max_abs_score_diff": float(f"{diff:.2e}")}


def segmenter_timing(img: np.ndarray, a: argparse.Namespace) -> dict:
    """The bundled default model (a segmenter) with its card's settings, on PyTorch and on
    ONNX Runtime, timed as the rest."""
    if bundled_model(DEFAULT_MODEL) is None:
        return {"skipped": f"{DEFAULT_MODEL} is not installed"}
    det = Detector.load(DEFAULT_MODEL, device="cpu", threads=a.threads)
    onnx = Detector.load(DEFAULT_MODEL, device="cpu", threads=a.threads, backend="onnxruntime")
    diff = np.abs(det.score_map(img).values - onnx.score_map(img).values).max()
    return {"model": DEFAULT_MODEL, "mode": det.params.mode, "tta": det.params.tta,
            "s_per_image": round(best_of(lambda: det.run(img), a.repeats), 3),
            "onnxruntime_s_per_image": round(best_of(lambda: onnx.run(img), a.repeats), 3),
            "onnxruntime_max_abs_score_diff": float(f"{diff:.2e}")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--stride", type=int, default=4,
                    help="stride of the dense/patch comparison fields (dense_s_per_image, ...)")
    ap.add_argument("--big", action="store_true", help="also time a 4096x4096 16-bit image")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    path = a.model or bundled_model(DEFAULT_CLASSIFIER)
    card: dict = {}
    if path is not None:
        model, card = load_model(path)
        name = str(path)
    else:
        torch.manual_seed(0)
        model, name = create_model("xnet2").eval(), "random xnet2"
    bundled = params_from_card(card)  # the model card's settings (library defaults without)
    # as `xdefect detect` and `evaluate` run: a Detector, which keeps its dense networks
    det = Detector(model, card, bundled, Path(name), "cpu")
    ph = phantom(n_defects=10, seed=0)
    img = ph.image
    secs = {}
    for mode in ("patch", "dense"):
        for stride in (8, 4):
            d = det.with_params(mode=mode, stride=stride, scales=(1,))
            secs[f"{mode}_stride{stride}"] = round(best_of(lambda d=d: d.run(img), a.repeats), 3)
    ref8 = best_of(lambda: reference_patch_map(model, img, 8), a.repeats)
    ref4 = best_of(lambda: reference_patch_map(model, img, 4), max(a.repeats - 2, 1))
    card_s = best_of(lambda: det.run(img), a.repeats)
    # the card's settings with every dense layer a plain convolution (no Winograd)
    plain = {}
    if bundled.mode == "dense":
        plain_net = D.DenseNet(model, bundled.stride, winograd=False).to(
            memory_format=torch.channels_last)
        plain_s = best_of(lambda: D.detect(model, img, bundled, score_fn=lambda im, p: (
            D.score_map_dense(model, im, p.stride, net=plain_net))), a.repeats)
        wino_diff = np.abs(D.score_map_dense(model, img, bundled.stride, net=plain_net).values
                           - det.score_map(img).values).max()
        plain = {"default_plain_conv_s_per_image": round(plain_s, 3),
                 "winograd_speedup": round(plain_s / card_s, 2),
                 "winograd_max_abs_score_diff": float(f"{wino_diff:.2e}")}
    onnx_doc = onnx_timing(model, card, bundled, img, a)
    st = a.stride
    if f"patch_stride{st}" not in secs:
        for mode in ("patch", "dense"):
            p = D.DetectParams(mode=mode, stride=st)
            secs[f"{mode}_stride{st}"] = round(best_of(lambda p=p: D.detect(model, img, p),
                                                       a.repeats), 3)
    new = D.score_map_patch(model, img, st, mask=gdxray.casting_mask(img)).values
    run = new > -1
    diff = np.abs(new - reference_patch_map(model, img, st))[run]
    dense = D.score_map_dense(model, img, st).values
    doc = {"s_per_image": secs,
           "default_mode": bundled.mode, "default_stride": bundled.stride,
           "default_s_per_image": round(card_s, 3), "default_params": bundled.to_dict(),
           "reference_patch_s_per_image": {"stride8": round(ref8, 3), "stride4": round(ref4, 3)},
           "patch_speedup_vs_reference": round(ref8 / secs["patch_stride8"], 2),
           "windows_run_fraction": round(float(run.mean()), 3),
           "max_abs_score_diff_vs_reference": round(float(diff.max()), 6),
           "stride": st, "dense_s_per_image": secs[f"dense_stride{st}"],
           "patch_s_per_image": secs[f"patch_stride{st}"],
           "speedup": round(secs[f"patch_stride{st}"] / secs[f"dense_stride{st}"], 1),
           "max_abs_score_diff": round(float(np.abs(dense - new)[run].max()), 4),
           "mean_abs_score_diff": round(float(np.abs(dense - new)[run].mean()), 4),
           "image": list(img.shape), "threads": torch.get_num_threads(), "model": name,
           "reference": "patch mode as before (default layout, 1024 windows a pass, every "
                        "window), same run, same image",
           "targets": {"default_s_per_image": 0.5}, **plain, **onnx_doc,
           "segmenter": segmenter_timing(img, a)}
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
                                   "--mode", "dense", "--stride", "4"],
                                  capture_output=True, text=True)
            if proc.returncode:
                raise SystemExit(proc.stderr)
            doc["big_4096_16bit_s"] = round(time.perf_counter() - t, 1)
            doc["big_4096_peak_rss_gib"] = round(
                resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20, 3)
    print(json.dumps(doc))


if __name__ == "__main__":
    main()
