"""``xdefect dataset build|info|grid``: 32x32 patch datasets."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from xdefect.cli.common import (
    add_contrast_options,
    add_output,
    add_root,
    command,
    emit,
    float_in,
    group,
    int_in,
    options,
    root,
)
from xdefect.simulate import DEFAULT_AXES_MM, DEFAULT_MU_RANGE, DEFAULT_X_MAX

__all__ = ["BUILD_DESCRIPTION", "cmd_build", "cmd_grid", "cmd_info", "register"]

BUILD_DESCRIPTION = (
    "Build a patch dataset.\n\n"
    "wholeimage (Table 4): from the train images (odd, number % 4 == 3)\n"
    "of the chosen series, --per-image random no-defect patches inside\n"
    "the casting, away from real defects, and as many patches around\n"
    "simulated defects; a stratified random patch hold-out ('val',\n"
    "for early stopping). The tuning images (odd, number % 4 == 1)\n"
    "and the test images (even) never give a patch, unless\n"
    "--include-tuning adds the tuning images.\n"
    "table3 (Table 3): training patches from C0010, C0015, C0021,\n"
    "C0031, C0034, C0061 (real + simulated defects, no-defect); test\n"
    "patches all real from C0001.\n\n"
    "Output: DIR/patches.npy, labels.npy, meta.csv, manifest.json.")


def cmd_build(args: argparse.Namespace) -> int:
    from xdefect.patches import BuildArgs
    from xdefect.pipelines import build_dataset

    t0 = time.perf_counter()
    man = build_dataset(BuildArgs(**options(args, BuildArgs, gdxray=str(root(args.gdxray)))))
    dt = time.perf_counter() - t0

    def summary() -> None:
        print(f"{args.out}: {man['n']} patches ({man['protocol']}, {man['mix']}) in {dt:.1f} s "
              f"({man['n'] / dt:.0f} patches/s)")
        print("  " + json.dumps(man["counts"]))
        for note in man.get("table3", {}).get("notes", []):
            print(f"  note: {note}")

    emit(args, {"out": args.out, "seconds": dt, "manifest": man}, summary)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from xdefect.dataset import open_dataset

    ds = open_dataset(args.dir)
    m = ds.manifest
    doc = {"dir": str(args.dir), "n": int(len(ds.labels)), "protocol": m.get("protocol"),
           "mix": m.get("mix"), "seed": m.get("seed"), "counts": m.get("counts"),
           "images": len(m.get("source_images", [])),
           "xdefect_version": m.get("xdefect_version")}
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(f"{args.dir}: {doc['n']} patches of 32x32, protocol {doc['protocol']}, "
          f"mix {doc['mix']}, seed {doc['seed']}, from {doc['images']} images")
    for k, v in (doc["counts"] or {}).items():
        print(f"  {k:<7}" + "  ".join(f"{kk}: {vv}" for kk, vv in v.items()))
    return 0


def cmd_grid(args: argparse.Namespace) -> int:
    from xdefect.pipelines import write_dataset_grid

    names = write_dataset_grid(args.dir, args.out, args.per_row, args.seed)
    print(f"{args.out}: rows = {', '.join(names)} ({args.per_row} random patches each)")
    return 0


def _build_options(db: argparse.ArgumentParser) -> None:
    add_root(db, "--gdxray")
    db.add_argument("--out", required=True, type=Path, help="output folder (must not exist)")
    db.add_argument("--protocol", choices=("wholeimage", "table3"), default="wholeimage",
                    help="the paper's experiment to build for")
    db.add_argument("--series", nargs="+", default=None,
                    help="series (default: the paper's seven for wholeimage, never every series "
                         "present; the six training series for table3)")
    db.add_argument("--include-tuning", action="store_true",
                    help="wholeimage: also cut patches from the tuning images (odd, number "
                         "%% 4 == 1), for a final model whose settings are already fixed; the "
                         "manifest and the model card then say so")
    db.add_argument("--per-image", type=int_in(1), default=2200,
                    help="wholeimage: no-defect patches and simulated defects per image")
    db.add_argument("--mix", default="E100G000",
                    help="EaaaGbbb: percent of simulated defects from ellipsoids and GAN")
    db.add_argument("--gan", type=Path, default=None, help="trained GAN folder (GAN portions)")
    db.add_argument("--val-fraction", type=float_in(0, 1, hi_open=True), default=0.2,
                    help="fraction of patches held out at random for validation during "
                         "training (the patch hold-out 'val', not the tuning images)")
    db.add_argument("--split-by", choices=("patch", "image"), default="patch",
                    help="patch: stratified by label (the paper's); image: whole images")
    db.add_argument("--seed", type=int_in(0), default=0, help="random seed")
    db.add_argument("--mu", dest="mu_range", type=float_in(0, 1, lo_open=True), nargs=2,
                    default=DEFAULT_MU_RANGE,
                    metavar=("MIN", "MAX"),
                    help="absorption coefficient range (1/mm) of the simulated defects")
    db.add_argument("--axes-mm", type=float_in(0, 100, lo_open=True), nargs=2,
                    default=DEFAULT_AXES_MM,
                    metavar=("MIN", "MAX"), help="semi-axis range (mm) of simulated defects")
    add_contrast_options(db, DEFAULT_X_MAX, "defect")
    db.add_argument("--mu-log", action="store_true",
                    help="draw each simulated defect's mu log-uniformly in --mu (as many "
                         "faint defects per octave as strong ones) instead of uniformly")
    db.add_argument("--defect-blur", type=float_in(0, 10), default=0.0, metavar="PX",
                    help="blur each simulated defect's edge by a Gaussian of PX pixels "
                         "(sigma; detector unsharpness, docs/simulation.md; 0: sharp, the "
                         "paper's model)")
    db.add_argument("--max-offset", type=int_in(0, 16), default=8, metavar="PX",
                    help="a simulated defect's centre lies at most PX pixels (per axis) from "
                         "its window's centre (16: anywhere, Table 3's test rule)")
    db.add_argument("--min-inside", type=float_in(0, 1, lo_open=True), default=0.5,
                    metavar="F", help="at least this fraction of a simulated defect's "
                                      "shadow lies inside its window (1/3: the paper's rule "
                                      "for real defect windows)")
    db.add_argument("--context", type=int_in(0, 256), default=0, metavar="PX",
                    help="also store each patch with PX pixels of its surroundings "
                         "(context.npy; a multiple of 32, e.g. 32) for `train --context`, "
                         "the dense mode's training; wholeimage without GAN patches")
    db.add_argument("--workers", type=int_in(0, 256), default=0,
                    help="worker processes (0: one per core, at most 4)")
    db.add_argument("--limit-images", type=int_in(1), default=None,
                    help="use only the first N images (quick trials)")
    db.add_argument("--force", action="store_true", help="replace an existing output folder")


def _table3_options(db: argparse.ArgumentParser) -> None:
    t3 = db.add_argument_group("table3 protocol")
    t3.add_argument("--t3-defects", type=int_in(0), default=75000, help="table3: training defects")
    t3.add_argument("--t3-no-defects", type=int_in(0), default=75000,
                    help="table3: training no-defect patches")
    t3.add_argument("--t3-real", type=int_in(0), default=15000,
                    help="table3: how many of the training defects are real windows")
    t3.add_argument("--t3-test-defects", type=int_in(0), default=6000,
                    help="table3: real defect test patches (C0001)")
    t3.add_argument("--t3-test-no-defects", type=int_in(0), default=6000,
                    help="table3: no-defect test patches (C0001)")


def _adaptation_options(db: argparse.ArgumentParser) -> None:
    ad = db.add_argument_group("real windows and hard negatives (xdefect's extension, "
                               "wholeimage)")
    ad.add_argument("--real", type=int_in(0), default=0, metavar="N",
                    help="wholeimage: also add N real 'defect' patches centred (within "
                         "--real-offset) on the real defects of the train images (odd, "
                         "number %% 4 == 3); the tuning images (number %% 4 == 1) stay unseen. "
                         "xdefect's extension, not the paper's protocol")
    ad.add_argument("--real-offset", type=int_in(0, 16), default=8, metavar="PX",
                    help="largest offset (pixels, per axis) of a real patch's centre from "
                         "its box's centre")
    ad.add_argument("--hard-negatives", type=int_in(0), default=0, metavar="N",
                    help="wholeimage: also add N 'no-defect' patches (source 'hard'): in each "
                         "train image the windows clear of real defects that --hard-model "
                         "scores highest")
    ad.add_argument("--hard-pairs", action="store_true",
                    help="with --hard-negatives: beside each hard negative, a simulated "
                         "defect on the same spot (label 1, source 'hard-defect'), so that "
                         "the model learns what a void adds to that structure rather than "
                         "that the structure's place is clean")
    ad.add_argument("--hard-model", default=None, metavar="MODEL",
                    help="model that mines the hard negatives: a .safetensors file (with its "
                         "card) or a bundled name")
    ad.add_argument("--hard-stride", type=int_in(1, 64), default=4, metavar="PX",
                    help="window stride of the hard-negative search")
    ad.add_argument("--hard-mode", choices=("dense", "patch"), default="dense",
                    help="score maps of the hard-negative search (dense: fast)")


def register(sub: Any) -> None:
    dsub = group(sub, "dataset", "build and inspect 32x32 patch datasets",
                 "Build and inspect the patch datasets of the paper's two protocols "
                 "(docs/datasets.md).")
    db = command(dsub, "build", cmd_build, "build a dataset folder", BUILD_DESCRIPTION)
    _build_options(db)
    _table3_options(db)
    _adaptation_options(db)
    add_output(db)
    di = command(dsub, "info", cmd_info, "summary of a dataset folder")
    di.add_argument("dir", type=Path, help="dataset folder")
    di.add_argument("--json", action="store_true", help="print JSON")
    dg = command(dsub, "grid", cmd_grid, "grid of random patches per class and source (Fig. 3)")
    dg.add_argument("dir", type=Path, help="dataset folder")
    dg.add_argument("--out", required=True, type=Path, help="output PNG")
    dg.add_argument("--per-row", type=int_in(1, 100), default=12,
                    help="patches per class/source row")
    dg.add_argument("--seed", type=int_in(0), default=0, help="random seed")
