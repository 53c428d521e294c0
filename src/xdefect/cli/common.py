"""What every command group of the command line shares: the parser classes, the GDXray
root option, the detection options, and filling a config dataclass from its options."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

from xdefect.errors import InputError
from xdefect.gdxray import ENV_VAR, default_root

__all__ = ["MODEL_HELP", "PROG", "RUN_MODEL_HELP", "TTA_CHOICES", "Formatter", "Handler", "Parser",
           "add_contrast_options", "add_detect_options", "add_device", "add_output",
           "add_root", "command", "detect_overrides", "emit", "float_in", "fmt_ap", "group",
           "int_in", "options", "print_json", "root", "x_max_range"]

PROG = "xdefect"
#: ``--tta``'s choices: :data:`xdefect.detect.TTA_VIEWS` (kept here so that the parser does
#: not import torch; a test holds the two equal)
TTA_CHOICES = (1, 2, 4, 8)
MODEL_HELP = ("model .safetensors or a bundled name (segnet-xdefect, xnet2-xdefect, "
              "xnet2-paper); default segnet-xdefect")
#: what ``--model`` of the commands that only run a model takes
RUN_MODEL_HELP = MODEL_HELP + "; or an .onnx graph from `xdefect export` (on ONNX Runtime)"

#: a command's handler: takes the parsed arguments, prints, returns the exit status
Handler = Callable[[argparse.Namespace], int]


class Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the descriptions' line breaks and shows every option's default."""


class Parser(argparse.ArgumentParser):
    """Reports a usage error as one line (``xdefect CMD: error: ...``) with status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def int_in(lo: int, hi: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: a whole number in ``[lo, hi]`` (``hi`` None: no upper bound),
    else a one-line usage error naming the option."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if v < lo or (hi is not None and v > hi):
            want = f"{lo} <= N <= {hi}" if hi is not None else f"N >= {lo}"
            raise argparse.ArgumentTypeError(f"{v} is out of range (need {want})")
        return v

    parse.__name__ = "int"
    return parse


def float_in(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
             hi_open: bool = False) -> Callable[[str], float]:
    """An argparse ``type``: a finite number in the interval from ``lo`` to ``hi`` (either
    end None: unbounded; ``lo_open``/``hi_open``: that end excluded), else a one-line usage
    error naming the option. NaN and infinities are always refused."""

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if v != v or v in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        bad_lo = lo is not None and (v <= lo if lo_open else v < lo)
        bad_hi = hi is not None and (v >= hi if hi_open else v > hi)
        if bad_lo or bad_hi:
            left = "" if lo is None else f"{lo} {'<' if lo_open else '<='} "
            right = "" if hi is None else f" {'<' if hi_open else '<='} {hi}"
            raise argparse.ArgumentTypeError(f"{v} is out of range (need {left}x{right})")
        return v

    parse.__name__ = "float"
    return parse


def add_contrast_options(p: argparse.ArgumentParser, x_max: float, what: str) -> None:
    """``--x-max MM`` (default ``x_max``) and ``--x-max-range LOW HIGH``: the contrast of the
    simulated ``what`` (say "defect"); read the range with :func:`x_max_range`."""
    p.add_argument("--x-max", type=float_in(1, 10000), default=x_max, metavar="MM",
                   help="thickness (mm) at which grey values are minimal; it fixes B of Eq. 3 "
                        f"and so the simulated {what}s' contrast (larger: fainter; "
                        "docs/simulation.md)")
    p.add_argument("--x-max-range", type=float_in(1, 10000), nargs=2, default=None,
                   metavar=("LOW", "HIGH"),
                   help=f"draw each simulated {what}'s own --x-max log-uniformly in this range "
                        "(mm): a mixture of contrasts, fainter ones included, as real voids "
                        f"have (docs/simulation.md); default: --x-max for every {what}")


def x_max_range(args: argparse.Namespace) -> tuple[float, float] | None:
    """``--x-max-range`` as a tuple (None when not given); one-line refusal unless LOW <=
    HIGH."""
    xr = getattr(args, "x_max_range", None)
    if xr is None:
        return None
    if not xr[0] <= xr[1]:
        raise InputError(f"--x-max-range {xr[0]:g} {xr[1]:g}: need LOW <= HIGH")
    return (float(xr[0]), float(xr[1]))


def command(sub: Any, name: str, handler: Handler, help: str, description: str | None = None
            ) -> argparse.ArgumentParser:
    """Add command ``name`` (handled by ``handler``) to a subparsers object."""
    p = sub.add_parser(name, help=help, description=description, formatter_class=Formatter)
    p.set_defaults(func=handler)
    return p


def group(sub: Any, name: str, help: str, description: str | None = None) -> Any:
    """Add a command group ``name``; returns its subparsers. The group alone prints its
    help on stderr and exits with status 2."""
    p = sub.add_parser(name, help=help, description=description, formatter_class=Formatter)

    def show_help(args: argparse.Namespace) -> int:
        p.print_help(sys.stderr)
        return 2

    p.set_defaults(func=show_help)
    return p.add_subparsers(dest=f"{name}_command", metavar="SUBCOMMAND", parser_class=Parser)


def add_output(p: argparse.ArgumentParser, json_flag: bool = True) -> None:
    """``--quiet`` (and, with ``json_flag``, ``--json``) for a command whose output a
    script may consume. Progress goes to stderr either way: a bar on a terminal, a plain
    line every 30 s in a log (``XDEFECT_PROGRESS_INTERVAL``)."""
    p.add_argument("--quiet", action="store_true",
                   help="no progress and no summary: only warnings and errors (on stderr) "
                        "and the exit status")
    if json_flag:
        p.add_argument("--json", action="store_true",
                       help="print the result as one JSON object on stdout instead of the "
                            "summary")


def emit(args: argparse.Namespace, doc: dict[str, Any], summary: Callable[[], None]) -> None:
    """Print a command's result: ``doc`` as one JSON line with ``--json``, nothing with
    ``--quiet``, else the human ``summary``."""
    if getattr(args, "json", False) is True:
        print_json(doc)
    elif not getattr(args, "quiet", False):
        summary()


def print_json(doc: dict[str, Any]) -> None:
    """``doc`` as one strict JSON line on stdout (NaN -> null, paths as text)."""
    from xdefect.io import json_safe

    print(json.dumps(json_safe(doc), allow_nan=False, default=str), flush=True)


def add_root(p: argparse.ArgumentParser, flag: str = "--root") -> None:
    p.add_argument(flag, type=Path, default=None,
                   help=f"GDXray root, the folder that holds Castings/ "
                        f"(default: ${ENV_VAR}, else ../shared/data/gdxray)")


def root(value: Path | None) -> Path:
    """The GDXray root of a ``--root``/``--gdxray`` option (default when not given)."""
    return value if value is not None else default_root()


def fmt_ap(v: float | None) -> str:
    """An AP for printing: 4 decimals, ``-`` for none (no ground truth)."""
    return "-" if v is None or v != v else f"{v:.4f}"


def options(args: argparse.Namespace, cls: type, **overrides: Any) -> dict[str, Any]:
    """The keyword arguments of dataclass ``cls`` that ``args`` holds under the same
    names (paths as strings, lists of pairs as tuples where the field's default is one),
    with ``overrides`` applied."""
    out: dict[str, Any] = {}
    for f in fields(cls):
        if f.name in overrides or not hasattr(args, f.name):
            continue
        v = getattr(args, f.name)
        if isinstance(v, Path):
            v = str(v)
        elif isinstance(v, list) and isinstance(f.default, tuple):
            v = tuple(v)
        out[f.name] = v
    return out | overrides


def add_device(p: argparse.ArgumentParser) -> None:
    """``--threads`` and ``--device``: where and on how many CPU threads torch runs."""
    p.add_argument("--threads", type=int_in(1, 1024), default=None, help="CPU threads (torch)")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto",
                   help="where the network runs (auto: CUDA when present, else the CPU)")


def add_detect_options(q: argparse.ArgumentParser) -> None:
    """The :class:`~xdefect.detect.DetectParams` options (unset: the model card's)."""
    g = q.add_argument_group("detection settings (default: the model card's)")
    g.add_argument("--mode", choices=("dense", "patch", "segment"), default=None,
                   help="score map: dense (convolutional) or patch (windows batched) for a "
                        "patch classifier, segment (per pixel) for a segmenter; default "
                        "from the model card, else patch (segment for a segmenter)")
    g.add_argument("--stride", type=int_in(1, 64), default=None, help="window stride (pixels)")
    g.add_argument("--theta", type=float_in(-1, 1), default=None,
                   help="threshold on y1 - y0 for a window (segmenter: a pixel, 2p - 1) to "
                        "count as 'defect'")
    g.add_argument("--radius", type=int_in(0, 64), default=None, help="dilation disk radius (px)")
    g.add_argument("--a-min", type=int_in(0), default=None, help="minimum region area (px)")
    g.add_argument("--box-rule", choices=("windows", "centres", "region", "peaks", "blobs",
                                          "extent"),
                   default=None,
                   help="box of a region: union of its windows, its window centres "
                        "grown by --box-margin, its own extent, one box of "
                        "--box-margin around each local score maximum (peaks), or "
                        "around each maximum of the smoothed map (blobs), or blobs "
                        "grown to the extent of the windows nearest each maximum (extent; "
                        "docs/detection.md)")
    g.add_argument("--box-margin", type=int_in(0, 256), default=None,
                   help="pixels around the window centres (box rules centres, peaks, blobs)")
    g.add_argument("--sigma", type=float_in(0, 16), default=None,
                   help="Gaussian smoothing (grid cells) of the score map before its "
                        "maxima are found (peaks, blobs)")
    g.add_argument("--nms", type=int_in(0, 1024), default=None,
                   help="suppress maxima closer than this (pixels) to a higher one "
                        "(peaks, blobs; 0: --box-margin)")
    g.add_argument("--widen", type=int_in(-1, 256), default=None,
                   help="peaks, blobs: a region with one maximum gets at least its "
                        "window centres' extent less this many pixels a side, so a "
                        "large isolated defect gets one large box (-1: off)")
    _box_options(g)
    g.add_argument("--scales", type=int_in(1, 16), nargs="+", default=None, metavar="FACTOR",
                   help="image pyramid: also scan the image downsampled by these factors "
                        "(block mean; 1 is the image itself), boxes merged across levels "
                        "(docs/detection.md)")
    g.add_argument("--merge", type=float_in(0, 1, lo_open=True), default=None,
                   help="pyramid: a detection overlapping a higher-scored one of another "
                        "level by at least this much is dropped (0-1]")
    g.add_argument("--merge-rule", choices=("iou", "iom"), default=None,
                   help="pyramid overlap: intersection over union, or over the smaller box")
    g.add_argument("--no-mask", action="store_true",
                   help="do not restrict regions to the casting mask")


def _box_options(g: Any) -> None:
    """The detection options that reshape, link and join the boxes of the regions, and
    the segmenters' mirror views."""
    g.add_argument("--grow", type=int_in(0, 256), default=None,
                   help="pixels added to every side of every box (any box rule; 0: none)")
    g.add_argument("--extent-fraction", type=float_in(0, 1, hi_open=True), default=None,
                   help="segmenters (box rule region): each region above theta is a seed "
                        "boxed by the connected pixels whose log-odds exceed this fraction "
                        "of its peak log-odds, so a faint defect is not boxed by its few "
                        "surest pixels (0: off; docs/detection.md)")
    g.add_argument("--link", type=float_in(-1, 1), default=None,
                   help="regions above theta connected through pixels above this score "
                        "(same scale as --theta) are one region, boxed by its pixels above "
                        "theta (hysteresis; >= theta: off, the default 1; "
                        "docs/detection.md)")
    g.add_argument("--join", type=int_in(-1, 256), default=None,
                   help="boxes (after --grow) at most this many pixels apart (0: touching "
                        "or overlapping) are joined into their enclosing box, so a large "
                        "irregular defect lighting several regions gets one box (-1: off; "
                        "docs/detection.md)")
    g.add_argument("--box-scale", type=float_in(0, 4, lo_open=True), default=None,
                   help="every box's width and height multiplied by this about its centre "
                        "(after --grow, before --join; 1: as made): for inspectors who box "
                        "defects more generously than the model does (an annotation "
                        "convention; docs/detection.md)")
    g.add_argument("--min-score", type=float_in(-1, 1), default=None,
                   help="report only detections scoring at least this (same scale as "
                        "--theta): the operating point, while theta decides the regions "
                        "and their boxes (-1: all; tune-segmenter --max-false-alarms "
                        "chooses it)")
    g.add_argument("--tta", type=int, choices=TTA_CHOICES, default=None,
                   help="segmenters: views of the image whose probabilities are averaged "
                        "(1: none; 2: left-right mirror; 4: and up-down; 8: and the four "
                        "transposed)")


def detect_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The detection settings set on the command line (every ``DetectParams`` field has
    an option of its name, but ``use_mask``, set by ``--no-mask``)."""
    from xdefect.detect import DetectParams

    over = options(args, DetectParams)
    over.pop("use_mask", None)
    if getattr(args, "no_mask", False):
        over["use_mask"] = False
    return {k: v for k, v in over.items() if v is not None}
