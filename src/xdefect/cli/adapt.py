"""``xdefect adapt``: fine-tune a model on a new casting's radiographs, without labels."""

from __future__ import annotations

import argparse
from typing import Any

from xdefect.cli.common import MODEL_HELP, add_output, command, emit, float_in, int_in, options

__all__ = ["cmd_adapt", "register"]


def cmd_adapt(args: argparse.Namespace) -> int:
    from xdefect.adaptation import AdaptConfig, adapt

    cfg = AdaptConfig(**options(args, AdaptConfig, images=tuple(args.images),
                                source=args.source))
    r = adapt(cfg)
    emit(args, r, lambda: print(
        f"{r['model']}: adapted on {r['images']} images in {r['minutes']:.1f} min"
        + ("" if r["best_epoch"] is None else f" (best epoch {r['best_epoch']})")
        + f"; use it with: xdefect detect --model {r['model']}"))
    return 0


def register(sub: Any) -> None:
    a = command(sub, "adapt", cmd_adapt, "adapt a model to a new casting, without labels",
                "Fine-tune a model on a folder of a new casting's radiographs with no "
                "annotations: defects are simulated on them, clean and hard-negative "
                "windows are taken from them, and the source model is fine-tuned on those "
                "(docs/adaptation.md). Writes OUT/model.safetensors with its card, ready "
                "for `xdefect detect --model`. Resumable: run the same command again.")
    a.add_argument("--images", nargs="+", required=True, metavar="IMAGE_OR_DIR",
                   help="the new casting's radiographs (files or folders)")
    a.add_argument("--out", required=True, help="output folder")
    add_output(a)
    a.add_argument("--from", dest="source", default=None, help=MODEL_HELP)
    a.add_argument("--per-image", type=int_in(1), default=300,
                   help="background and simulated-defect windows per image (each)")
    a.add_argument("--hard-per-image", type=int_in(0), default=40,
                   help="hard negatives per image: windows where the source model fires, "
                        "taken as defect-free (0: none)")
    a.add_argument("--hard-pairs", action="store_true",
                   help="beside each hard negative, the same spot with a simulated defect "
                        "(docs/adaptation.md)")
    a.add_argument("--mu", dest="mu_range", type=float_in(0, 1, lo_open=True), nargs=2,
                   default=(0.004, 0.04),
                   metavar=("LOW", "HIGH"),
                   help="absorption-coefficient range of the simulated defects (1/mm)")
    a.add_argument("--epochs", type=int_in(1), default=3)
    a.add_argument("--samples-per-epoch", type=int_in(1), default=15000)
    a.add_argument("--val-samples", type=int_in(1), default=3000)
    a.add_argument("--batch", type=int_in(1), default=128)
    a.add_argument("--lr", type=float_in(0, 1, lo_open=True), default=2.5e-4)
    a.add_argument("--no-augment", dest="augment", action="store_false",
                   help="no flips, gamma, contrast, blur or noise augmentation")
    a.add_argument("--steps", type=int_in(1), default=1500,
                   help="segmenter sources: fine-tuning steps of 16 crops")
    a.add_argument("--seg-lr", type=float_in(0, 1, lo_open=True, hi_open=True), default=5e-4,
                   help="segmenter sources: learning rate (cosine decay)")
    a.add_argument("--source-regions", choices=("ignore", "negative", "target", "distill"),
                   default="distill",
                   help="segmenter sources: the source's own detections on the images are "
                        "left out of the loss (ignore), background (negative), defect "
                        "targets (target: pseudo-labels) or soft targets, the source's own "
                        "probability (distill)")
    a.add_argument("--ignore-theta", type=float_in(-1, 1, hi_open=True), default=None,
                   help="with --source-regions ignore, target or distill: the source's "
                        "regions above this score (default: its detection threshold; lower "
                        "takes more)")
    a.add_argument("--rehearse", nargs="+", default=(), metavar="GDXRAY_ROOT",
                   help="segmenter sources: mix crops of these roots' annotated train images "
                        "(real defects as targets) into every batch, so that the model keeps "
                        "what it knew of real defects; theta is chosen again on their tuning "
                        "images")
    a.add_argument("--rehearse-share", type=float_in(0, 1, hi_open=True), default=0.5,
                   help="share of each batch from --rehearse")
    a.add_argument("--seed", type=int_in(0), default=0)
    a.add_argument("--threads", type=int_in(1, 1024), default=None, help="CPU threads (torch)")
