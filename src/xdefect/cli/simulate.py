"""``xdefect simulate``: superimpose simulated ellipsoidal defects on a radiograph."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from xdefect.cli.common import (
    add_contrast_options,
    add_output,
    command,
    float_in,
    int_in,
    print_json,
    x_max_range,
)
from xdefect.errors import InputError
from xdefect.simulate import DEFAULT_AXES_MM, DEFAULT_MM_PER_PX, DEFAULT_MU_RANGE, DEFAULT_X_MAX

__all__ = ["cmd_simulate", "register", "sampler_config"]


def sampler_config(args: argparse.Namespace):
    """The :class:`~xdefect.simulate.SamplerConfig` of the options (ranges checked)."""
    from xdefect.simulate import Geometry, SamplerConfig

    lo, hi = args.axes_mm
    if not (0 < lo <= hi):
        raise InputError(f"--axes-mm {lo} {hi}: need 0 < min <= max")
    mlo, mhi = args.mu
    if not (0 < mlo <= mhi):
        raise InputError(f"--mu {mlo} {mhi}: need 0 < min <= max")
    if args.mm_per_px <= 0:
        raise InputError(f"--mm-per-px {args.mm_per_px}: must be positive")
    geo = Geometry(args.mm_per_px, args.source_distance)
    return SamplerConfig((lo, hi), (mlo, mhi), args.x_max, geo, args.defect_blur, args.mu_log,
                         x_max_range(args))


def cmd_simulate(args: argparse.Namespace) -> int:
    from xdefect.pipelines import simulate_image

    to_stdout = args.json is not None and str(args.json) == "-"
    doc = simulate_image(args.input, args.n, args.seed, sampler_config(args), args.out,
                         args.grid, None if to_stdout else args.json)
    if to_stdout:
        print_json(doc)
    if to_stdout or args.quiet:
        return 0
    if args.grid is not None:
        print(f"{args.grid}: 8x8 grid of 32x32 patches with simulated defects")
    if args.out is not None:
        n, hidden = len(doc["defects"]), doc.get("invisible", 0)
        print(f"{args.out}: {n} simulated defects"
              + (f" (of {args.n} asked: no room inside the casting for more)"
                 if n < args.n else "")
              + (f" ({hidden} changed no pixel: the image is saturated or clipped there)"
                 if hidden else "")
              + (f", parameters in {args.json}" if args.json else ""))
    return 0


def register(sub: Any) -> None:
    s = command(sub, "simulate", cmd_simulate, "superimpose simulated ellipsoidal defects", (
        "Superimpose random 3D ellipsoidal voids on a radiograph with the\n"
        "absorption model I' = (I - B) exp(mu d) + B (the paper's Eq. 3).\n"
        "Defect centres fall inside the casting mask. INPUT is an image file\n"
        "(8/16-bit PNG or TIFF) or the word 'phantom' (synthetic wheel)."))
    s.add_argument("input", metavar="INPUT", help="radiograph file, or 'phantom'")
    s.add_argument("--out", type=Path, default=None,
                   help="output image (same size and bit depth as the input)")
    s.add_argument("--grid", type=Path, default=None,
                   help="write an 8x8 grid of 32x32 patches with simulated defects (Fig. 7)")
    s.add_argument("--n", type=int_in(0, 1000), default=10, help="number of defects")
    s.add_argument("--seed", type=int_in(0), default=0, help="random seed")
    s.add_argument("--axes-mm", type=float_in(0, 100, lo_open=True), nargs=2,
                   default=DEFAULT_AXES_MM,
                   metavar=("MIN", "MAX"), help="range of each semi-axis (mm)")
    s.add_argument("--mu", type=float_in(0, 1, lo_open=True), nargs=2, default=DEFAULT_MU_RANGE,
                   metavar=("MIN", "MAX"),
                   help="range of the linear absorption coefficient (1/mm)")
    add_contrast_options(s, DEFAULT_X_MAX, "defect")
    s.add_argument("--mu-log", action="store_true",
                   help="draw mu log-uniformly in --mu instead of uniformly")
    s.add_argument("--defect-blur", type=float_in(0, 10), default=0.0, metavar="PX",
                   help="blur each defect's edge by a Gaussian of PX pixels (sigma; "
                        "detector unsharpness; 0: sharp, the paper's model)")
    s.add_argument("--mm-per-px", type=float_in(0, 100, lo_open=True), default=DEFAULT_MM_PER_PX,
                   help="pixel size at the object (mm)")
    s.add_argument("--source-distance", type=float_in(0, lo_open=True), default=None,
                   help="source-to-object distance (mm) for a perspective beam "
                        "(default: parallel beam)")
    s.add_argument("--json", type=Path, default=None, nargs="?", const="-", metavar="FILE",
                   help="write the defects' parameters to FILE; --json alone (or --json -) "
                        "prints them on stdout as one JSON object instead of the summary")
    add_output(s, json_flag=False)
