"""``xdefect detect``: detect defects in whole radiographs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from xdefect.cli.common import (
    RUN_MODEL_HELP,
    add_detect_options,
    add_device,
    add_output,
    command,
    detect_overrides,
    emit,
    int_in,
)

__all__ = ["DESCRIPTION", "cmd_detect", "register"]

DESCRIPTION = (
    "Slide the patch classifier over each image (score y1 - y0),\n"
    "threshold, dilate, keep regions inside the casting, and write\n"
    "DIR/<stem>.json ({image, width, height, model, params,\n"
    "detections: [{box: [x1, y1, x2, y2], score}]}) and DIR/<stem>.png\n"
    "(detections in green). Boxes: 0-based, half-open pixels.")


def cmd_detect(args: argparse.Namespace) -> int:
    from xdefect.detector import Detector
    from xdefect.errors import InputError
    from xdefect.pipelines import detect_files, sort_inputs

    # bad inputs are reported before the model loads: with --strict any, else when not
    # one image is readable (the first problem, exit 2)
    good, bad = sort_inputs(args.inputs)
    if bad and (args.strict or not good):
        raise InputError(bad[0])
    det = Detector.load(args.model, device=args.device, threads=args.threads,
                        batch=args.batch, backend=args.backend, **detect_overrides(args))
    r = detect_files(det, args.inputs, args.out, png=not args.no_png, strict=args.strict,
                     coco=args.coco, force=args.force)
    for line in r["skipped"]:
        print(f"xdefect: warning: {line} (skipped)", file=sys.stderr)
    p = det.params
    emit(args, {"out": args.out, **r, "mode": p.mode, "stride": p.stride, "theta": p.theta},
         lambda: print(f"{args.out}: {r['images']} images, {r['detections']} detections "
                       f"({r['seconds']:.1f} s; mode {p.mode}, stride {p.stride}, theta "
                       f"{p.theta})" + (f"; {len(r['skipped'])} skipped" if r["skipped"] else "")))
    return 1 if r["skipped"] else 0


def register(sub: Any) -> None:
    de = command(sub, "detect", cmd_detect, "detect defects in whole radiographs", DESCRIPTION)
    de.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR",
                    help="images (8/16-bit PNG, TIFF) or folders of images")
    de.add_argument("--model", default=None, help=RUN_MODEL_HELP)
    de.add_argument("--out", required=True, type=Path, help="output folder")
    de.add_argument("--batch", type=int_in(1, 65536), default=256,
                    help="windows per forward pass (patch mode)")
    de.add_argument("--no-png", action="store_true", help="write only the JSON files")
    de.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch",
                    help="run the score map with PyTorch, or export the model to ONNX and run "
                         "it on ONNX Runtime (dense mode)")
    de.add_argument("--coco", type=Path, default=None, metavar="FILE.json",
                    help="also write the images as a COCO dataset to FILE.json and the "
                         "detections as COCO results to FILE.detections.json")
    de.add_argument("--force", action="store_true",
                    help="replace an --out folder of an earlier detect run (never a folder "
                         "xdefect did not write); without it an existing --out is refused")
    de.add_argument("--strict", action="store_true",
                    help="stop at the first unreadable or too-small image (exit 2) instead "
                         "of skipping it, naming it and exiting 1 at the end")
    add_device(de)
    add_output(de)
    add_detect_options(de)
