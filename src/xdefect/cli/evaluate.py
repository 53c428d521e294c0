"""``xdefect evaluate``: AP of a model or of saved detections on GDXray images."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from xdefect.cli.common import (
    RUN_MODEL_HELP,
    add_detect_options,
    add_device,
    add_output,
    add_root,
    command,
    detect_overrides,
    emit,
    float_in,
    fmt_ap,
    int_in,
    root,
)
from xdefect.errors import InputError

__all__ = ["DESCRIPTION", "cmd_calibrate_boxes", "cmd_evaluate", "register"]

DESCRIPTION = (
    "Match detections to ground-truth boxes by IoU (greedy by score,\n"
    "each box at most once) and report AP (all-point and 11-point)\n"
    "overall and per series. Either run a model (--model) or score\n"
    "saved detection JSONs matched to images by file stem\n"
    "(--detections). Writes DIR/metrics.json, DIR/pr_curve.png and\n"
    "DIR/overlays/ (detections green, ground truth red).")


def _print_provenance(m: dict[str, Any], split: str) -> None:
    pv = m["provenance"]
    if not pv.get("known"):
        return
    if pv["real_defects_in_training"]:
        print("  this model trained on real defect windows (sources "
              f"{', '.join(pv['sources'])}): the unseen-defect AP is its leak-free figure")
    else:
        print("  this model trained on simulated defects only: both figures are leak-free")
    if pv["trained_on_evaluated_images"]:
        print(f"  warning: this model trained on {split} images "
              f"({', '.join(pv['trained_on_image_splits'])}): these figures are not a test")
    elif split == "annotated":
        print("  note: your own images: whether the model trained on them (xdefect adapt on "
              "the same folder, say) is not checked")
    elif pv["trained_on_evaluated_images"] is None:
        print("  note: the model's lineage is incomplete: which images it trained on is "
              "unknown")


def _print_metrics(m: dict[str, Any], out: Path, iou: float, split: str) -> None:
    print(f"{out}: AP {fmt_ap(m['ap'])} (11-point {fmt_ap(m['ap11'])}) at IoU {iou} over "
          f"{m['images']} {split} images of {', '.join(m['series'])}, {m['gt_boxes']} "
          f"ground-truth boxes, {m['detections']} detections")
    if "annotations" in m:
        print(f"  ground truth: {m['annotations']} (images in {m['image_dir']})")
    r = m.get("recall_at_fppi", {})
    if "2.0" in r:
        print(f"  recall at no more than 1 / 2 false alarms per image: {r['1.0']:.3f} / "
              f"{r['2.0']:.3f}; COCO 101-point AP {fmt_ap(m.get('ap101'))}")
    for s, d in m["per_series"].items():
        print(f"  {s}: AP {fmt_ap(d['ap']):>6}  boxes {d['gt_boxes']:>4}  TP "
              f"{d['true_positives']:>4}  FP {d['false_positives']:>5}  missed {d['missed']:>4}")
    sw = m.get("theta_sweep")
    if sw is not None:
        print(f"  theta swept ({len(sw['theta'])} thresholds, the paper's curve): AP "
              f"{fmt_ap(sw['ap'])} (11-point {fmt_ap(sw['ap11'])})")
    if "unseen" in m:
        u = m["unseen"]
        print(f"  unseen defects: AP {fmt_ap(u['ap'])} (11-point {fmt_ap(u['ap11'])}) over "
              f"{u['gt_boxes']} boxes; {u['ignored_boxes']} test boxes ignored as seen "
              "(a box of an odd image of the series overlaps them at IoU >= 0.5)")
        print("    per series: " + ", ".join(f"{s} {fmt_ap(d['ap'])} ({d['gt_boxes']})"
                                               for s, d in u["per_series"].items()))
    _print_provenance(m, split)
    if m["unscored_series"]:
        print(f"  unscored (no ground truth): {', '.join(m['unscored_series'])}")
    if m["images_without_detection_file"]:
        print(f"  warning: {m['images_without_detection_file']} images had no detection file "
              "(counted as no detections)")


def _evaluation(args: argparse.Namespace) -> Any:
    """The evaluation the arguments ask for: a model or saved detections, on GDXray images
    or on a COCO file's."""
    from xdefect import protocol as P

    mine = {"image_dir": args.image_dir, "iou": args.iou, "matching": args.matching}
    where = {"root": root(args.gdxray), "split": args.split or "test", "series": args.series,
             "iou": args.iou, "matching": args.matching}
    if args.detections is not None:
        if args.annotations is not None:
            return P.evaluate_annotated_detections(args.detections, args.annotations, **mine)
        return P.evaluate_detections(args.detections, **where)
    from xdefect.detector import Detector

    det = Detector.load(args.model, device=args.device, threads=args.threads,
                        **detect_overrides(args))
    if args.annotations is not None:
        return P.evaluate_annotated(det, args.annotations, **mine)
    return P.evaluate_folder(det, **where, sweep=args.theta_sweep)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from xdefect.io import check_new_dir
    from xdefect.pipelines import save_evaluation
    from xdefect.protocol import check_iou

    check_iou(args.iou)
    _check_image_dir(args)
    if args.annotations is not None:
        _refuse_gdxray_options(args)
        if args.theta_sweep:
            raise InputError("--theta-sweep: the paper's curve is for GDXray series, not "
                             "--annotations")
    check_new_dir(args.out, args.force)  # before any work
    if args.detections is not None and args.theta_sweep:
        raise InputError("--theta-sweep needs --model (it reruns detection per theta)")
    ev = _evaluation(args)
    save_evaluation(ev, args.out, overlays=not args.no_overlays, html=args.html,
                    force=args.force)
    doc: dict[str, Any] = {"out": args.out, "metrics": ev.metrics}
    if args.html:
        doc["report"] = args.out / "report.html"
    if args.coco is not None:
        from xdefect.pipelines import write_evaluation_coco

        doc["coco"] = {"ground_truth": args.coco,
                       "detections": write_evaluation_coco(ev, args.coco)}

    def summary() -> None:
        _print_metrics(ev.metrics, args.out, args.iou, ev.metrics["split"])
        if args.html:
            print(f"  report: {doc['report']} (open it in a browser)")
        if args.coco is not None:
            print(f"  COCO: ground truth {args.coco}, detections {doc['coco']['detections']} "
                  f"(101-point AP {fmt_ap(ev.metrics['ap101'])})")

    emit(args, doc, summary)
    return 0


def _refuse_gdxray_options(args: argparse.Namespace, split_default: str | None = None
                           ) -> None:
    """With ``--annotations`` (a COCO file's images), the options that choose GDXray images
    make no sense: refuse them rather than ignore them."""
    given = [f for f, v in (("--gdxray", args.gdxray), ("--series", args.series),
                            ("--split", args.split != split_default)) if v]
    if given:
        raise InputError(f"--annotations {args.annotations}: its images are the ones used; "
                         f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} for "
                         "GDXray series")
    if args.image_dir is not None and not args.image_dir.is_dir():
        raise InputError(f"--image-dir {args.image_dir}: no such folder")


def _check_image_dir(args: argparse.Namespace) -> None:
    if args.annotations is None and args.image_dir is not None:
        raise InputError("--image-dir goes with --annotations (a COCO file)")


def cmd_calibrate_boxes(args: argparse.Namespace) -> int:
    from xdefect.pipelines import calibrate_boxes

    if args.annotations is not None:
        _refuse_gdxray_options(args, split_default="tuning")
        r = calibrate_boxes(args.model, args.out, None, images=args.images,
                            min_pairs=args.min_pairs, device=args.device, threads=args.threads,
                            annotations=args.annotations, image_dir=args.image_dir)
    else:
        _check_image_dir(args)
        r = calibrate_boxes(args.model, args.out, root(args.gdxray), args.series, args.split,
                            args.images, args.min_pairs, args.device, args.threads)
    emit(args, r, lambda: print(
        f"{r['model']}: box scale {r['box_scale_before']:g} -> {r['box_scale']:g} (annotated "
        f"boxes {r['ratio']:.2f} times the detections' size: median over {r['pairs']} of "
        f"{r['defects']} defects on {len(r['images'])} image(s)"
        + ("; capped at the allowed range" if r["capped"] else "")
        + f"); use it with: xdefect detect --model {r['model']}"))
    return 0


def _add_annotations(p: argparse.ArgumentParser, rule: str) -> None:
    """``--annotations FILE.json`` and ``--image-dir``: a COCO file's images instead of
    GDXray's (``rule``: how this command reads its annotations, ending the help)."""
    p.add_argument("--annotations", type=Path, default=None, metavar="FILE.json",
                   help="your own annotated images instead of GDXray's: a COCO dataset "
                        "(images' file_name under --image-dir, bbox [x, y, w, h]; every "
                        + rule)
    p.add_argument("--image-dir", type=Path, default=None,
                   help="with --annotations: the folder its file_name values are relative "
                        "to (default: the COCO file's folder)")


def _register_calibrate(sub: Any) -> None:
    c = command(sub, "calibrate-boxes", cmd_calibrate_boxes,
                "set a model's box size to your annotators' from a few annotated images",
                "Inspectors box defects more or less generously from one line to another, "
                "and a model boxes a casting it never saw as the annotators of the castings "
                "it trained on did. Run the model on the annotated images (with a defect box) "
                "of --split of the new casting's series (or of your own COCO file, "
                "--annotations), in order, until it has read "
                "--images of them and --min-pairs defects overlap a detection; compare each "
                "annotated box with the detection overlapping it most (IoU >= 0.1, any "
                "score), and multiply the model's box scale (DetectParams.box_scale: box "
                "sides about their centres) by the median ratio of their sizes. Writes the "
                "same weights with that box scale to OUT/model.safetensors + model.json "
                "(docs/detection.md, 'Box scale'). For a casting the model never trained "
                "on (on its training castings its settings already fit their boxes); "
                "choose on tuning images (the default), never on the images you report.")
    c.add_argument("--model", default=None, help=RUN_MODEL_HELP)
    add_root(c, "--gdxray")
    c.add_argument("--series", nargs="+", default=None,
                   help="the new casting's series (default: the paper's seven present)")
    c.add_argument("--split", choices=("tuning", "val", "train", "odd"), default="tuning",
                   help="the images whose boxes set the size (default: tuning, odd n %% 4 "
                        "== 1; never the test images)")
    _add_annotations(c, "annotation a defect; iscrowd ones not compared)")
    c.add_argument("--images", type=int_in(1, 100000), default=1,
                   help="fewest annotated images read, the first of the split with a "
                        "defect box (default 1; more are read until --min-pairs)")
    c.add_argument("--min-pairs", type=int_in(1, 100000), default=3,
                   help="fewest annotated defects a detection must overlap (default 3)")
    c.add_argument("--out", required=True, type=Path, help="output folder for the model")
    add_device(c)
    add_output(c)


def register(sub: Any) -> None:
    ev = command(sub, "evaluate", cmd_evaluate, "AP of detections against GDXray ground truth",
                 DESCRIPTION)
    src = ev.add_mutually_exclusive_group()
    src.add_argument("--model", default=None, help=RUN_MODEL_HELP)
    src.add_argument("--detections", type=Path, default=None,
                     help="folder of detection JSONs (no model needed)")
    add_root(ev, "--gdxray")
    ev.add_argument("--split", choices=("test", "even", "tuning", "val", "train", "odd", "all"),
                    default=None,
                    help="image split: test (= even; the default), tuning (odd, number %% 4 "
                         "== 1; val is its old name), train (odd, number %% 4 == 3), odd, all")
    ev.add_argument("--series", nargs="+", default=None,
                    help="series (default: the paper's seven present; every series of a root "
                         "that holds none of them)")
    _add_annotations(ev, "annotation a defect to find, an image without annotations "
                         "defect-free); split 'annotated'")
    ev.add_argument("--force", action="store_true",
                    help="replace an --out folder of an earlier evaluate run (never a folder "
                         "xdefect did not write); without it an existing --out is refused")
    add_output(ev)
    ev.add_argument("--html", action="store_true",
                    help="also write DIR/report.html: PR curve, per-series table and a "
                         "thumbnail of every image with false alarms (yellow) and misses "
                         "(magenta) marked, filterable by series and errors, each opening "
                         "its overlay (implies the overlays)")
    ev.add_argument("--coco", type=Path, default=None, metavar="FILE.json",
                    help="also write the ground truth as a COCO dataset to FILE.json and the "
                         "detections as COCO results to FILE.detections.json")
    ev.add_argument("--iou", type=float_in(0, 1, lo_open=True), default=0.5,
                    help="IoU threshold for a match")
    ev.add_argument("--matching", choices=("coco", "voc"), default="coco",
                    help="coco: a detection takes the best still-unmatched box; voc: its "
                         "best box overall, a false positive if already taken")
    ev.add_argument("--out", required=True, type=Path, help="output folder")
    ev.add_argument("--no-overlays", action="store_true", help="skip the overlay pictures")
    ev.add_argument("--theta-sweep", action="store_true",
                    help="also the paper's PR curve: one detection run per theta over the "
                         "same score maps, one point each (needs --model); the headline AP "
                         "ranks the boxes of the run at the card's theta")
    add_device(ev)
    add_detect_options(ev)
    _register_calibrate(sub)
