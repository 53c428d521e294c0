"""``xdefect demo``: what ``make demo`` runs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from xdefect.cli.common import RUN_MODEL_HELP, command, int_in

__all__ = ["cmd_demo", "register"]


def _print_without_model(r: dict[str, Any]) -> None:
    print("xdefect demo: no bundled model is installed, so this demo shows the stages that")
    print("  need none: the synthetic wheel radiograph, simulated ellipsoidal defects (Eq. 3),")
    print("  the casting mask and a Fig. 7-style grid of simulated defect patches.")
    print(f"  phantom: {r['phantom_defects']} simulated defects -> {r['phantom_overlay']}")
    print(f"  patches: 64 simulated defect patches -> {r['patches']}")
    g = r["gdxray"]
    if g:
        print(f"  GDXray {g['name']}: casting mask and {g['defects']} real defects -> "
              f"{g['picture']} (not for redistribution)")


def cmd_demo(args: argparse.Namespace) -> int:
    from xdefect.pipelines import run_demo

    r = run_demo(args.out, args.model, args.n, args.seed, args.gdxray_image)
    if r["model"] is None:
        _print_without_model(r)
        print(f"done in {r['seconds']:.1f} s")
        return 0
    p = r["params"]
    print(f"xdefect demo: model {r['model']} ({r['arch']}), {p['mode']} score map, "
          f"stride {p['stride']}, theta {p['theta']}; IoU >= 0.5 counts as found")
    print("  detections green, ground truth red")
    for im in r["images"]:
        print(f"  {im['name']}: {im['defects']} defects, {im['hits']} found, {im['misses']} "
              f"missed, {im['false_alarms']} false alarms ({im['seconds']:.1f} s) -> "
              f"{im['overlay']}")
    if r["gdxray"]:
        print("  (the GDXray picture is for your eyes only: its licence forbids redistribution)")
    print(f"done in {r['seconds']:.1f} s")
    return 0


def register(sub: Any) -> None:
    d = command(sub, "demo", cmd_demo, "run the demo (what `make demo` runs)",
                "A seeded synthetic radiograph with simulated defects, inspected by the "
                "bundled model (detections green, simulated ground truth red), with a "
                "summary; with GDXray present, one real even-numbered image too.")
    d.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder")
    d.add_argument("--model", default=None, help=RUN_MODEL_HELP)
    d.add_argument("--gdxray-image", default="C0001_0002",
                   help="the even-numbered GDXray image inspected when GDXray is present")
    d.add_argument("--n", type=int_in(0, 100), default=12, help="simulated defects in the phantom")
    d.add_argument("--seed", type=int_in(0), default=0, help="random seed")
