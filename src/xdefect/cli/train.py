"""``xdefect train`` and ``xdefect test``: patch classifiers."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from xdefect.cli.common import (
    MODEL_HELP,
    add_device,
    add_output,
    command,
    emit,
    float_in,
    int_in,
    options,
)

__all__ = ["TRAIN_DESCRIPTION", "cmd_test", "cmd_train", "register"]

TRAIN_DESCRIPTION = (
    "Train a patch CNN on the 'train' split of a dataset folder,\n"
    "validating on 'val' every epoch, with early stopping on the\n"
    "validation loss. Writes RUN/metrics.csv, RUN/best.safetensors +\n"
    "best.json (the model and its card) and RUN/last.* (to resume).\n"
    "Runs under torchrun --nproc_per_node=N as well (DDP).")


def cmd_train(args: argparse.Namespace) -> int:
    from xdefect.checkpoint import resolve_model
    from xdefect.train import TrainConfig, train

    init = None if args.init is None else str(resolve_model(args.init))
    res = train(TrainConfig(**options(args, TrainConfig, init=init)),
                on_epoch=None if args.quiet else lambda row: print(json.dumps(row), flush=True))
    if int(os.environ.get("RANK", "0")) == 0:
        emit(args, {"out": args.out, **res},
             lambda: print(f"{args.out}: best epoch {res['best_epoch']} (val loss "
                           f"{res['best_val_loss']:.4f}), {res['epochs_run']} epochs, stopped "
                           f"by {res['stopped']}"))
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    from xdefect.checkpoint import resolve_model
    from xdefect.train import test_model

    res = test_model(str(resolve_model(args.model)), str(args.data), args.split, args.batch)
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    (tn, fp), (fn, tp) = res["confusion"]
    print(f"{res['model']} ({res['arch']}) on {res['data']} [{res['split']}], {res['n']} patches")
    print(f"  accuracy {res['accuracy']:.4f}  precision {res['precision']:.4f}  "
          f"recall {res['recall']:.4f}")
    print("  confusion (rows true, columns predicted):")
    print(f"               no-defect   defect\n  no-defect {tn:>11} {fp:>8}\n"
          f"  defect    {fn:>11} {tp:>8}")
    for src, d in res["by_source"].items():
        print(f"  {src:<10} n={d['n']:<8} accuracy {d['accuracy']:.4f}")
    return 0


def register(sub: Any) -> None:
    from xdefect.models import REGISTRY

    tr = command(sub, "train", cmd_train, "train a patch classifier", TRAIN_DESCRIPTION)
    tr.add_argument("--data", required=True, type=Path, help="dataset folder")
    tr.add_argument("--arch", default="xnet2", choices=list(REGISTRY), help="architecture")
    tr.add_argument("--out", required=True, type=Path, help="run folder")
    tr.add_argument("--epochs", type=int_in(1), default=20, help="maximum epochs")
    tr.add_argument("--batch", type=int_in(1, 65536), default=256, help="batch size (per process)")
    tr.add_argument("--lr", type=float_in(0, 1, lo_open=True), default=1e-3, help="learning rate")
    tr.add_argument("--optimizer", choices=("adam", "rmsprop"), default="adam",
                    help="optimiser (the paper's Keras builder used rmsprop)")
    tr.add_argument("--patience", type=int_in(0), default=4,
                    help="stop after this many epochs without a better validation loss")
    tr.add_argument("--seed", type=int_in(0), default=0, help="random seed")
    add_device(tr)
    add_output(tr)
    tr.add_argument("--resume", action="store_true",
                    help="continue RUN from its last complete epoch")
    tr.add_argument("--samples-per-epoch", type=int_in(1), default=None,
                    help="train on a seeded random sample of this many patches per epoch "
                         "(default: the whole train split)")
    tr.add_argument("--init", default=None, metavar="MODEL",
                    help="start from this model's weights (fine-tuning; same architecture): "
                         "a .safetensors file or a bundled name")
    tr.add_argument("--val-samples", type=int_in(1), default=None,
                    help="validate on a fixed seeded subset of this many val patches")
    tr.add_argument("--precision", choices=("auto", "float32", "bfloat16"), default="float32",
                    help="float32 (the same run on any machine), bfloat16 autocast, or auto: "
                         "bfloat16 where the device computes it natively (AVX512-BF16/AMX "
                         "CPUs, recent GPUs), else float32 (bench/train.py)")
    tr.add_argument("--context", action="store_true",
                    help="train on the windows with their surroundings (a dataset built with "
                         "--context): each window nearly as the dense score map sees it (exactly "
                         "once the surroundings cover the convolutions' reach), so that dense "
                         "mode detects as the model learnt (docs/detection.md)")
    tr.add_argument("--allow-change", nargs="+", default=(), metavar="SETTING",
                    choices=("lr", "batch", "seed", "samples_per_epoch", "val_samples"),
                    help="with --resume: settings that may differ from the run's (lr, batch, "
                         "seed, samples_per_epoch, val_samples); the optimiser follows a new "
                         "--lr. Any other difference is refused with the list")
    tr.add_argument("--augment", action="store_true",
                    help="augment every training window: flips and quarter turns, gamma, "
                         "contrast, grey level, blur, noise (xdefect.augment; for castings "
                         "never seen)")
    tr.add_argument("--no-channels-last", dest="channels_last", action="store_false",
                    help="keep weights and inputs in the default memory layout (channels_last "
                         "is faster with oneDNN: bench/train.py)")
    te = command(sub, "test", cmd_test, "patch accuracy of a model on a dataset split")
    te.add_argument("--model", required=True, help=MODEL_HELP.split("; default")[0])
    te.add_argument("--data", required=True, type=Path, help="dataset folder")
    te.add_argument("--split", choices=("test", "val", "train"), default="test")
    te.add_argument("--batch", type=int_in(1, 65536), default=1024, help="batch size")
    te.add_argument("--json", action="store_true", help="print JSON")
