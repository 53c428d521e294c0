"""``xdefect train-segmenter``: a fully convolutional per-pixel defect model."""

from __future__ import annotations

import argparse
import json
from typing import Any

from xdefect.cli.common import (
    TTA_CHOICES,
    add_contrast_options,
    add_device,
    add_output,
    command,
    emit,
    float_in,
    int_in,
    options,
    x_max_range,
)

__all__ = ["DESCRIPTION", "HARD_SHARE", "cmd_train_segmenter", "cmd_tune_segmenter",
           "register"]

#: the share of crops on hard negatives when ``--hard-rounds`` is given without it
HARD_SHARE = 0.25

DESCRIPTION = (
    "Train a segmenter (xdefect.segment): a small encoder-decoder that scores every\n"
    "pixel, learnt from crops of the train images (n % 4 == 3) of GDXray series and/or\n"
    "of unannotated image folders, with simulated voids whose exact shadows are the\n"
    "targets (--real: real defect boxes' inscribed ellipses too). Its detections are\n"
    "the regions of the score map above theta, boxed by their extent (or, with a\n"
    "relative extent F, by the connected pixels above F times their peak log-odds)\n"
    "grown by grow pixels; theta, F and grow are chosen on the annotated tuning images\n"
    "(n % 4 == 1) of the series trained on. --hard-rounds N: N times during training,\n"
    "the model scans the annotated training images as deployed and centres\n"
    "--hard-share of the later crops on the regions it finds away from real defects\n"
    "(hard negatives). Writes\n"
    "RUN/model.safetensors + model.json; RUN/last.* every --checkpoint-every steps\n"
    "(--resume continues from there).")


def cmd_train_segmenter(args: argparse.Namespace) -> int:
    from xdefect.checkpoint import resolve_model
    from xdefect.crops import CropConfig
    from xdefect.errors import InputError
    from xdefect.train_segment import SegTrainConfig, train_segmenter

    x_max_range(args)  # LOW <= HIGH, refused naming the option
    if args.hard_share is None:
        args.hard_share = HARD_SHARE if args.hard_rounds else 0.0
    try:
        crops = CropConfig(**options(args, CropConfig))
    except ValueError as exc:
        raise InputError(str(exc)) from None
    init = None if args.init is None else str(resolve_model(args.init))
    cfg = SegTrainConfig(**options(args, SegTrainConfig, crops=crops, init=init,
                                   gdxray=tuple(str(r) for r in args.gdxray),
                                   series=None if args.series is None else tuple(args.series),
                                   images=tuple(args.images)))
    res = train_segmenter(cfg, on_log=None if args.quiet or args.json else
                          lambda row: print(json.dumps(row), flush=True))
    emit(args, res, lambda: print(
        f"{res['model']}: {res['steps']} steps ({res['crops_seen']} crops) in "
        f"{res['minutes']:.1f} min; theta {res['theta']:g}, grow {res['grow']}, "
        f"extent {res['extent_fraction']:g}"
        + ("" if res["tuning_ap"] is None else f", tuning AP {res['tuning_ap']:.4f}")))
    return 0


def cmd_tune_segmenter(args: argparse.Namespace) -> int:
    from xdefect.train_segment import tune_segmenter

    res = tune_segmenter(args.model, args.out, tuple(str(r) for r in args.gdxray),
                         None if args.series is None else tuple(args.series),
                         thetas=tuple(args.thetas), grows=tuple(args.grows),
                         device=args.device, threads=args.threads, tta=args.tta,
                         extents=tuple(args.extent_fractions), joins=tuple(args.joins),
                         links=tuple(args.links), max_fa_per_image=args.max_false_alarms)
    at = res["at_min_score"]
    emit(args, res, lambda: print(
        f"{res['model']}: theta {res['theta']:g}, grow {res['grow']}, extent "
        f"{res['extent_fraction']:g}, join {res['join']}, link {res['link']:g}, "
        f"tta {res['tta']}: "
        "tuning AP "
        f"{res['tuning_ap']:.4f}"
        + ("" if res["before"] is None else f" (its settings before: {res['before']:.4f})")
        + ("" if at is None else
           f"; report threshold {res['min_score']:g}: AP {at['ap']:.4f}, {at['found']} of "
           f"{at['boxes']} found, {at['fa_per_image']:g} false alarms per image")))
    return 0


def _hard_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hard-rounds", type=int_in(0, 100), default=0, metavar="N",
                   help="rounds of hard negatives mined from the annotated training images "
                        "(default 0: none)")
    p.add_argument("--hard-share", type=float_in(0, 1, hi_open=True), default=None,
                   help=f"share of crops centred on a hard negative (default {HARD_SHARE} "
                        "with --hard-rounds)")
    p.add_argument("--hard-theta", type=float_in(-1, 1, hi_open=True), default=0.0,
                   help="score 2p-1 above which a region is mined (default 0: p > 0.5)")
    p.add_argument("--hard-per-image", type=int_in(1, 1000), default=16,
                   help="highest-scoring false alarms kept per image and round")


def register(sub: Any) -> None:
    from xdefect.crops import CropConfig
    from xdefect.segment import SEGMENTERS

    p = command(sub, "train-segmenter", cmd_train_segmenter,
                "train a per-pixel segmenter on crops with simulated defects", DESCRIPTION)
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--gdxray", nargs="+", default=[], metavar="ROOT",
                   help="GDXray roots (folders holding Castings/) whose train images are used")
    p.add_argument("--series", nargs="+", default=None,
                   help="only these series of the roots (default: all)")
    p.add_argument("--images", nargs="+", default=[], metavar="IMAGE_OR_DIR",
                   help="unannotated radiographs (files or folders): backgrounds for "
                        "simulated defects")
    p.add_argument("--arch", default="segnet", choices=list(SEGMENTERS), help="architecture")
    p.add_argument("--init", default=None, metavar="MODEL",
                   help="start from this segmenter's weights (fine-tuning)")
    p.add_argument("--steps", type=int_in(1), default=8000, help="optimiser steps")
    p.add_argument("--batch", type=int_in(1, 4096), default=16, help="crops per step")
    p.add_argument("--lr", type=float_in(0, 1, lo_open=True, hi_open=True), default=2e-3,
                   help="peak learning rate (cosine decay over the steps)")
    p.add_argument("--pos-weight", type=float_in(0, 1000, lo_open=True), default=3.0,
                   help="weight of defect pixels in the cross-entropy")
    p.add_argument("--augment", action="store_true",
                   help="gamma, contrast, grey level, blur and noise on every crop")
    _crop_options(p, CropConfig().mu_range, CropConfig().x_max)
    p.add_argument("--real", action="store_true",
                   help="real defect boxes (annotated train images) are targets too")
    p.add_argument("--no-theta", dest="choose_theta", action="store_false",
                   help="do not choose theta and grow on the tuning images (keep the init's "
                        "or theta 0.8, grow 0)")
    _hard_options(p)
    p.add_argument("--checkpoint-every", type=int_in(1), default=500, help="steps")
    p.add_argument("--resume", action="store_true", help="continue RUN from its checkpoint")
    p.add_argument("--seed", type=int_in(0), default=0, help="random seed")
    add_device(p)
    add_output(p)
    _register_tune(sub)


def _register_tune(sub: Any) -> None:
    """``xdefect tune-segmenter``'s parser."""
    from xdefect.train_segment import EXTENT_FRACTIONS, GROWS, JOINS, LINKS, THETAS

    t = command(sub, "tune-segmenter", cmd_tune_segmenter,
                "choose a segmenter's threshold and box extent on the tuning images",
                "Choose a finished segmenter's detection threshold theta, relative extent "
                "(--extent-fractions), box growth (pixels added to each side of every "
                "box), box joining (--joins) and region linking (--links) again: best AP "
                "at IoU 0.5 over theta x link x extent x grow x join on the "
                "annotated tuning images (n % 4 == 1) of the series it "
                "trained on (or of --gdxray ROOT). Writes the same weights with the new "
                "settings to OUT/model.safetensors + model.json; the test images are "
                "never read.")
    t.add_argument("--model", required=True, help="the segmenter (.safetensors or a bundled "
                   "name)")
    t.add_argument("--out", required=True, help="run folder for the re-tuned model")
    t.add_argument("--gdxray", nargs="+", default=[], metavar="ROOT",
                   help="GDXray roots whose tuning images choose (default: the model's)")
    t.add_argument("--series", nargs="+", default=None,
                   help="only these series (default: all the model trained on)")
    t.add_argument("--tta", type=int, choices=TTA_CHOICES, default=None,
                   help="views averaged per image (test-time augmentation: 2, 4 mirror "
                        "images, 8 and their transposes; default: the model's)")
    t.add_argument("--extent-fractions", type=float_in(0, 1, hi_open=True), nargs="+",
                   default=list(EXTENT_FRACTIONS), metavar="F",
                   help="relative extents tried (DetectParams.extent_fraction; 0: the "
                        "pixels above theta; default: "
                        f"{' '.join(f'{e:g}' for e in EXTENT_FRACTIONS)})")
    t.add_argument("--thetas", type=float_in(-1, 1, lo_open=True, hi_open=True), nargs="+",
                   default=list(THETAS), metavar="T",
                   help="thresholds on 2p-1 tried (-1 < T < 1; 0: p > 0.5; default: "
                        f"{' '.join(f'{t:g}' for t in THETAS)})")
    t.add_argument("--grows", type=int_in(0, 64), nargs="+", default=list(GROWS),
                   metavar="PX", help="box growths tried (pixels per side; default: "
                                      f"{' '.join(str(g) for g in GROWS)})")
    t.add_argument("--joins", type=int_in(-1, 256), nargs="+", default=list(JOINS),
                   metavar="PX", help="box joining distances tried (DetectParams.join: boxes "
                                      "at most PX pixels apart joined into their enclosing "
                                      "box; -1: off; default: "
                                      f"{' '.join(str(j) for j in JOINS)})")
    t.add_argument("--links", type=float_in(-1, 1), nargs="+", default=list(LINKS),
                   metavar="L", help="link scores tried (DetectParams.link, on 2p-1: regions "
                                     "above theta connected through pixels above L are one; "
                                     "L >= theta: off; default: "
                                     f"{' '.join(f'{x:g}' for x in LINKS)})")
    t.add_argument("--max-false-alarms", type=float_in(0, 1e6), default=None, metavar="F",
                   help="also choose the report threshold (DetectParams.min_score): the "
                        "lowest detection score keeping at most F false alarms per tuning "
                        "image at the chosen settings (the line's operating point; theta "
                        "still decides the regions and their boxes; default: report all)")
    add_device(t)
    add_output(t)


def _crop_options(p: argparse.ArgumentParser, mu_range: tuple[float, float], x_max: float
                  ) -> None:
    """train-segmenter's options of the crops and their simulated voids."""
    p.add_argument("--size", type=int_in(16, 1024), default=96, help="crop side (px, x8)")
    p.add_argument("--defects", type=float_in(0, 50), default=1.5,
                   help="mean simulated defects per crop (Poisson)")
    p.add_argument("--axes-mm", type=float_in(0, 1000, lo_open=True), nargs=2,
                   default=(1.0, 10.0), metavar=("LOW", "HIGH"),
                   help="semi-axes of the simulated voids (mm)")
    p.add_argument("--mu", dest="mu_range", type=float_in(0, 1, lo_open=True), nargs=2,
                   default=mu_range, metavar=("LOW", "HIGH"),
                   help="absorption-coefficient range of the simulated voids (1/mm)")
    add_contrast_options(p, x_max, "void")
