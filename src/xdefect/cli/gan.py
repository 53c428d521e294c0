"""``xdefect gan train|sample``: GAN-simulated defects (DCGAN)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from xdefect.cli.common import (
    add_device,
    add_output,
    add_root,
    command,
    emit,
    group,
    int_in,
    options,
    root,
)

__all__ = ["TRAIN_DESCRIPTION", "cmd_sample", "cmd_train", "register"]

TRAIN_DESCRIPTION = (
    "Train a DCGAN on every 32x32 window of the train images (odd,\n"
    "number % 4 == 3) that holds at least a third of a real defect,\n"
    "augmented with flips and 90-degree rotations. Checkpoints\n"
    "(safetensors) and a sample grid every --every iterations;\n"
    "--resume continues.")


def cmd_train(args: argparse.Namespace) -> int:
    from xdefect.gan import GanConfig, train_gan

    res = train_gan(GanConfig(**options(args, GanConfig, gdxray=str(root(args.gdxray)))),
                    on_log=None if args.quiet else lambda row: print(json.dumps(row),
                                                                       flush=True))
    emit(args, {"out": args.out, **res}, lambda: print(
        f"{args.out}: {res['iterations']} iterations on {res['real_patches']} real defect "
        "patches (x8 flips/rotations)"))
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from xdefect.gan import save_samples

    npy, png = save_samples(args.model, args.n, args.out, args.seed)
    print(f"{npy}: {args.n} generated 32x32 patches (uint8); {png}: grid of "
          f"{min(args.n, 64)}")
    return 0


def register(sub: Any) -> None:
    gsub = group(sub, "gan", "GAN-simulated defects (DCGAN)")
    gt = command(gsub, "train", cmd_train, "train a DCGAN on real defect patches",
                 TRAIN_DESCRIPTION)
    add_root(gt, "--gdxray")
    add_output(gt)
    gt.add_argument("--out", required=True, type=Path, help="GAN folder")
    gt.add_argument("--iterations", type=int_in(1), default=30000,
                    help="generator/discriminator updates (about 28 min on 2 CPU cores at "
                         "the measured 18 it/s; the paper ran 150,000 on a GPU)")
    gt.add_argument("--batch", type=int_in(1, 65536), default=64, help="batch size")
    gt.add_argument("--seed", type=int_in(0), default=0, help="random seed")
    gt.add_argument("--every", type=int_in(1), default=500, help="checkpoint and sample period")
    gt.add_argument("--series", nargs="+", default=None,
                    help="series (default: the paper's seven)")
    gt.add_argument("--include-tuning", action="store_true",
                    help="also learn from the tuning images (odd, number %% 4 == 1); the "
                         "generator's card says so and dataset builds without "
                         "--include-tuning refuse it")
    add_device(gt)
    gt.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    gs = command(gsub, "sample", cmd_sample, "generate defect patches",
                 "Write FILE.npy (uint8 (N, 32, 32)) and FILE.png (a grid of up to 64, the "
                 "paper's Fig. 8).")
    gs.add_argument("--model", required=True, type=Path, help="GAN folder")
    gs.add_argument("--n", type=int_in(1, 100000), default=64, help="number of patches")
    gs.add_argument("--out", required=True, type=Path, help="output base name FILE")
    gs.add_argument("--seed", type=int_in(0), default=0, help="random seed")
