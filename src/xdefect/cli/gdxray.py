"""``xdefect gdxray info|show|masks``: the GDXray Castings data."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from xdefect.cli.common import add_root, command, group, int_in, root

__all__ = ["cmd_info", "cmd_masks", "cmd_show", "register"]


def cmd_info(args: argparse.Namespace) -> int:
    from xdefect.gdxray import series_info

    info = series_info(root(args.root))
    if args.json:
        doc = {"root": info["root"],
               "series": {s: {k: v for k, v in d.items() if k != "annotated"}
                          for s, d in info["series"].items()},
               "total": info["total"]}
        print(json.dumps(doc, indent=2))
        return 0
    cols = ("images", "height", "width", "boxes", "images_with_boxes", "odd", "even")
    heads = ("images", "height", "width", "boxes", "with boxes", "odd", "even")
    print(f"GDXray root: {info['root']}")
    print(f"{'series':<8}" + "".join(f"{h:>11}" for h in heads))
    for s, d in info["series"].items():
        cells = {c: d[c] for c in cols}
        if d["sizes"] > 1:
            cells["height"] = cells["width"] = "varies"
        row = "".join(f"{cells[c]:>11}" for c in cols)
        note = "" if d["annotated"] else "  (no ground truth: unscored)"
        if d["annotated"] and d["ground_truth"] != "ground_truth.txt":
            note += f"  (ground truth read from {d['ground_truth']!r})"
        if d.get("unannotated_images"):
            note += (f"  (static series: {d['unannotated_images']} image(s) the ground truth "
                     "leaves out are unscored)")
        if d["clipped"] or d["duplicates"]:
            fixes = [f"{d['clipped']} box(es) clipped to the image" if d["clipped"] else "",
                     f"{d['duplicates']} duplicate row(s) dropped" if d["duplicates"] else ""]
            note += f"  ({', '.join(f for f in fixes if f)})"
        print(f"{s:<8}{row}{note}")
    t = info["total"]
    print(f"{'total':<8}{t['images']:>11}{'':>22}{t['boxes']:>11}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from xdefect.pipelines import show_gdxray_image

    r = show_gdxray_image(root(args.root), args.series, args.number, args.out, args.thickness)
    print(f"{args.out}: {r['stem']}, {r['boxes']} ground-truth boxes (red), "
          f"casting mask outline (blue), {100 * r['mask_fraction']:.1f}% of the image")
    return 0


def cmd_masks(args: argparse.Namespace) -> int:
    from xdefect.gdxray import mask_report

    rep = mask_report(root(args.root), args.series)
    if args.json:
        print(json.dumps(rep, indent=2))
        return 0
    print(f"{'series':<8}{'images':>8}{'mask %':>9}{'boxes':>7}{'centre in':>11}{'%':>8}")
    for s, d in rep.items():
        if s == "total":
            continue
        frac = "-" if d["fraction_inside"] is None else f"{100 * d['fraction_inside']:.1f}"
        print(f"{s:<8}{d['images']:>8}{100 * d['mask_fraction']:>9.1f}{d['boxes']:>7}"
              f"{d['boxes_centre_inside']:>11}{frac:>8}")
    t = rep["total"]
    frac = "-" if t["fraction_inside"] is None else f"{100 * t['fraction_inside']:.1f}"
    print(f"{'total':<8}{'':>8}{'':>9}{t['boxes']:>7}{t['boxes_centre_inside']:>11}{frac:>8}")
    return 0


def register(sub: Any) -> None:
    gsub = group(sub, "gdxray", "inspect the GDXray Castings data",
                 "Inspect the GDXray Castings data: series, ground truth, casting masks.")
    gi = command(gsub, "info", cmd_info, "per-series table of images and ground-truth boxes",
                 "Per-series table: images, size, ground-truth boxes, images with boxes, odd "
                 "(train and tuning images) and even (test images) counts, and totals.")
    add_root(gi)
    gi.add_argument("--json", action="store_true", help="print JSON instead of a table")
    gs = command(gsub, "show", cmd_show, "draw ground truth and casting mask on an image",
                 "Draw the ground truth (red) and the outline of the casting mask (blue) on "
                 "one radiograph. The picture shows GDXray pixels: do not redistribute it.")
    gs.add_argument("series", help="series name, e.g. C0001")
    gs.add_argument("number", type=int_in(1), help="image number (1-based, as in the file name)")
    gs.add_argument("--out", required=True, type=Path, help="output PNG")
    gs.add_argument("--thickness", type=int_in(1, 20), default=1, help="box line width (pixels)")
    add_root(gs)
    gm = command(gsub, "masks", cmd_masks, "measure the casting segmentation per series",
                 "Mean fraction of the image inside the casting mask and fraction of "
                 "ground-truth boxes whose centre lies inside, per series.")
    add_root(gm)
    gm.add_argument("--series", nargs="+", default=None, help="series (default: all present)")
    gm.add_argument("--json", action="store_true", help="print JSON instead of a table")
