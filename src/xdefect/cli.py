"""The ``xdefect`` command line (the only module that reads argv).

Every command reports bad input (a missing path, an unreadable image, malformed ground
truth...) as one line on stderr, ``xdefect: error: FILE: problem``, and exits with
status 2, without a traceback and without leaving half-written outputs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from xdefect import __version__
from xdefect.errors import InputError

PROG = "xdefect"
MODEL_HELP = ("model .safetensors or a bundled name (xnet2-xdefect, xnet2-paper); default "
              "xnet2-xdefect")


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse's own status)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _root_arg(p: argparse.ArgumentParser, flag: str = "--root") -> None:
    from xdefect.gdxray import ENV_VAR

    p.add_argument(flag, type=Path, default=None,
                   help=f"GDXray root, the folder that holds Castings/ "
                        f"(default: ${ENV_VAR}, else ../shared/data/gdxray)")


def _root(value: Path | None) -> Path:
    from xdefect.gdxray import default_root

    return value if value is not None else default_root()


# ------------------------------------------------------------------------------ gdxray


def cmd_gdxray_info(args: argparse.Namespace) -> int:
    from xdefect.gdxray import series_info

    info = series_info(_root(args.root))
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
        row = "".join(f"{d[c]:>11}" for c in cols)
        note = "" if d["annotated"] else "  (no ground truth: unscored)"
        print(f"{s:<8}{row}{note}")
    t = info["total"]
    print(f"{'total':<8}{t['images']:>11}{'':>22}{t['boxes']:>11}")
    return 0


def cmd_gdxray_show(args: argparse.Namespace) -> int:
    from xdefect import gdxray
    from xdefect.io import write_image
    from xdefect.report import overlay

    root = _root(args.root)
    recs = [r for r in gdxray.list_images(root, [args.series]) if r.number == args.number]
    if not recs:
        raise InputError(f"{gdxray.castings_dir(root) / args.series}: "
                         f"no image number {args.number}")
    smp = gdxray.load_sample(recs[0], gdxray.load_ground_truth(root, args.series))
    mask = gdxray.casting_mask(smp.image)
    write_image(args.out, overlay(smp.image, ground_truth=smp.boxes, mask=mask,
                                  thickness=args.thickness))
    print(f"{args.out}: {smp.record.stem}, {len(smp.boxes)} ground-truth boxes (red), "
          f"casting mask outline (blue), {100 * mask.mean():.1f}% of the image")
    return 0


def cmd_gdxray_masks(args: argparse.Namespace) -> int:
    from xdefect.gdxray import mask_report

    rep = mask_report(_root(args.root), args.series)
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


# ----------------------------------------------------------------------------- simulate


def _sampler_config(args: argparse.Namespace):
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
    return SamplerConfig((lo, hi), (mlo, mhi), args.x_max, geo)


def cmd_simulate(args: argparse.Namespace) -> int:
    from xdefect import simulate
    from xdefect.gdxray import casting_mask
    from xdefect.io import read_image, write_image, write_json
    from xdefect.report import patch_grid

    cfg = _sampler_config(args)
    rng = np.random.default_rng(args.seed)
    if args.input == "phantom":
        ph = simulate.phantom(seed=args.seed)
        image, mask, depth, name = ph.image, ph.mask, 8, "phantom"
    else:
        rad = read_image(args.input)
        image, depth, name = rad.pixels, rad.bit_depth, str(rad.path)
        mask = casting_mask(image)
    if args.grid is None and args.out is None:
        raise InputError("simulate: give --out OUT.png (image) or --grid OUT.png (patch grid)")
    if args.grid is not None:
        patches = simulate.defect_patches(image, mask, cfg, rng, n=64)
        write_image(args.grid, patch_grid(patches, cols=8))
        print(f"{args.grid}: 8x8 grid of 32x32 patches with simulated defects")
        if args.out is None:
            return 0
    out, placed = simulate.add_random_defects(image, args.n, rng, mask=mask, config=cfg)
    write_image(args.out, out, bit_depth=depth)
    doc = {"image": name,
           "defects": [{"box": list(b), "axes_mm": list(e.axes_mm), "angles_deg": e.angles_deg,
                        "center": list(e.center), "mu": e.mu} for e, b in placed]}
    if args.json is not None:
        write_json(args.json, doc)
    print(f"{args.out}: {len(placed)} simulated defects"
          + (f", parameters in {args.json}" if args.json else ""))
    return 0


# ------------------------------------------------------------------------------ dataset


def cmd_dataset_build(args: argparse.Namespace) -> int:
    from xdefect.patches import BuildArgs, build_dataset

    t0 = time.perf_counter()
    b = BuildArgs(gdxray=str(_root(args.gdxray)), out=str(args.out), protocol=args.protocol,
                  series=args.series, per_image=args.per_image, mix=args.mix,
                  gan=None if args.gan is None else str(args.gan),
                  val_fraction=args.val_fraction, split_by=args.split_by, seed=args.seed,
                  t3_defects=args.t3_defects, t3_no_defects=args.t3_no_defects,
                  t3_real=args.t3_real, t3_test_defects=args.t3_test_defects,
                  t3_test_no_defects=args.t3_test_no_defects, workers=args.workers,
                  mu_range=tuple(args.mu), axes_mm=tuple(args.axes_mm),
                  real=args.real, real_offset=args.real_offset,
                  hard_negatives=args.hard_negatives,
                  hard_model=None if args.hard_model is None else str(args.hard_model),
                  hard_mode=args.hard_mode, hard_stride=args.hard_stride,
                  force=args.force, limit_images=args.limit_images,
                  include_tuning=args.include_tuning)
    score_fn = None
    if args.hard_model is not None:
        from xdefect.checkpoint import load_model, resolve_model

        args.hard_model = resolve_model(args.hard_model)
        b.hard_model = str(args.hard_model)
        from xdefect.detect import DetectParams, score_map

        model, _ = load_model(args.hard_model)
        try:
            hp = DetectParams(stride=args.hard_stride, mode=args.hard_mode)
        except ValueError as exc:
            raise InputError(f"--hard-stride/--hard-mode: {exc}") from None

        def score_fn(image):
            sm = score_map(model, image, hp)
            return sm.values, sm.stride

    man = build_dataset(b, score_fn)
    dt = time.perf_counter() - t0
    print(f"{args.out}: {man['n']} patches ({man['protocol']}, {man['mix']}) in {dt:.1f} s "
          f"({man['n'] / dt:.0f} patches/s)")
    print("  " + json.dumps(man["counts"]))
    for note in man.get("table3", {}).get("notes", []):
        print(f"  note: {note}")
    return 0


def cmd_dataset_info(args: argparse.Namespace) -> int:
    from xdefect.patches import open_dataset

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


def cmd_dataset_grid(args: argparse.Namespace) -> int:
    from xdefect.io import write_image
    from xdefect.patches import open_dataset
    from xdefect.report import patch_grid

    ds = open_dataset(args.dir)
    rng = np.random.default_rng(args.seed)
    rows = []
    names = []
    for lab in (0, 1):
        for src in ("background", "real", "ellipsoid", "gan"):
            idx = np.flatnonzero((ds.labels == lab) & (ds.source == src))
            if idx.size:
                pick = np.sort(rng.choice(idx, min(args.per_row, idx.size), replace=False))
                rows.append(patch_grid(ds.patches[pick], cols=args.per_row))
                names.append(f"{'defect' if lab else 'no-defect'}/{src}")
    width = max(r.shape[1] for r in rows)
    pad = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255)
           for r in rows]
    write_image(args.out, np.concatenate(pad, axis=0))
    print(f"{args.out}: rows = {', '.join(names)} ({args.per_row} random patches each)")
    return 0


# ------------------------------------------------------------------------ models, train


def cmd_models_list(args: argparse.Namespace) -> int:
    from xdefect.models import registry_table

    table = registry_table()
    if args.json:
        print(json.dumps([{k: r[k] for k in ("name", "p", "d", "f", "params",
                                             "macs_per_patch")} for r in table], indent=2))
        return 0
    print(f"{'name':<7}{'p':<17}{'d':<24}{'f':<18}{'params':>11}{'MACs/patch':>13}  description")
    def fmt(v: list[int]) -> str:
        return "(" + ",".join(map(str, v)) + ")"

    for r in table:
        print(f"{r['name']:<7}{fmt(r['p']):<17}{fmt(r['d']):<24}{fmt(r['f']):<18}"
              f"{r['params']:>11,}{r['macs_per_patch']:>13,}  {r['description']}")
    print("params counted as Keras does (BatchNorm: 4 per channel); see docs/models.md")
    return 0


def cmd_models_show(args: argparse.Namespace) -> int:
    from xdefect.checkpoint import describe_model

    d = describe_model(_model_path(args.model))
    if args.json:
        print(json.dumps(d, indent=2))
        return 0
    ok = {True: "matches the card", False: "DOES NOT MATCH the card", None: "not in the card"}
    print(f"{d['file']}: {d['name'] or '(unnamed)'} ({d['arch']}, epoch {d['epoch']})")
    if d["description"]:
        print(f"  {d['description']}")
    print(f"  weights sha256 {d['weights_sha256'][:16]}... {ok[d['weights_match_card']]}")
    s = d["summary"]
    splits = ", ".join(s["image_splits"]) if s["image_splits"] else "unknown (incomplete lineage)"
    print(f"  trained on: image splits {splits}; series {', '.join(s['series']) or '-'}; "
          f"sources {', '.join(s['sources'])}; real defects "
          f"{'yes' if s['real_defects'] else 'no'}")
    for st in d["lineage"]:
        print(f"  stage {st['stage']}: {st.get('command') or '(command not recorded)'}")
        print(f"    data {st.get('data')} (manifest sha256 "
              f"{str(st.get('data_manifest_sha256'))[:16]}...), protocol "
              f"{st.get('data_protocol')}, mix {st.get('data_mix')}, image splits "
              f"{', '.join(st.get('data_image_splits') or ['?'])}, sources "
              f"{json.dumps(st.get('data_sources'))}")
        if st.get("data_command"):
            print(f"    dataset: {st['data_command']}")
        init = st.get("init")
        if isinstance(init, dict):
            chk = {True: "file on disk matches", False: "FILE ON DISK DIFFERS",
                   None: "file not on disk"}[st["init_file_matches"]]
            print(f"    init {init.get('file')} sha256 {str(init.get('sha256'))[:16]}... "
                  f"(card {str(init.get('card_sha256'))[:16]}...; {chk})")
        elif init:
            print(f"    init {init} (checksum not recorded)")
    if d["detection"]:
        print("  detection: " + ", ".join(f"{k} {v}" for k, v in d["detection"].items()))
    t = d["test_even"]
    if t:
        line = f"  test images: AP {_ap(t['ap'])} over {t['gt_boxes']} boxes"
        if t.get("unseen"):
            line += (f"; unseen defects AP {_ap(t['unseen']['ap'])} over "
                     f"{t['unseen']['gt_boxes']} boxes")
        print(line)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from xdefect.train import TrainConfig, train

    res = train(TrainConfig(data=str(args.data), out=str(args.out), arch=args.arch,
                            epochs=args.epochs, batch=args.batch, lr=args.lr,
                            optimizer=args.optimizer, patience=args.patience, seed=args.seed,
                            threads=args.threads, device=args.device, resume=args.resume,
                            samples_per_epoch=args.samples_per_epoch,
                            val_samples=args.val_samples,
                            init=None if args.init is None else str(_model_path(args.init))),
                on_epoch=lambda row: print(json.dumps(row), flush=True))
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"{args.out}: best epoch {res['best_epoch']} (val loss {res['best_val_loss']:.4f}),"
              f" {res['epochs_run']} epochs, stopped by {res['stopped']}")
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    from xdefect.train import test_model

    res = test_model(str(_model_path(args.model)), str(args.data), args.split, args.batch)
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


# -------------------------------------------------------------------------------- gan


def cmd_gan_train(args: argparse.Namespace) -> int:
    from xdefect.gan import GanConfig, train_gan

    res = train_gan(GanConfig(gdxray=str(_root(args.gdxray)), out=str(args.out),
                              iterations=args.iterations, batch=args.batch, seed=args.seed,
                              every=args.every, series=args.series, threads=args.threads,
                              device=args.device, resume=args.resume,
                              include_tuning=args.include_tuning),
                    on_log=lambda row: print(json.dumps(row), flush=True))
    print(f"{args.out}: {res['iterations']} iterations on {res['real_patches']} real defect "
          "patches (x8 flips/rotations)")
    return 0


def cmd_gan_sample(args: argparse.Namespace) -> int:
    from xdefect.gan import load_generator, sample
    from xdefect.io import atomic_path, write_image
    from xdefect.report import patch_grid

    if args.n < 1:
        raise InputError(f"--n {args.n}: must be at least 1")
    G, _ = load_generator(args.model)
    x = sample(G, args.n, np.random.default_rng(args.seed))
    base = Path(args.out)
    base = base.with_suffix("") if base.suffix in (".npy", ".png") else base
    with atomic_path(base.with_suffix(".npy")) as tmp, open(tmp, "wb") as fh:
        np.save(fh, x)
    write_image(base.with_suffix(".png"), patch_grid(x[:64], cols=8))
    print(f"{base}.npy: {args.n} generated 32x32 patches (uint8); {base}.png: grid of "
          f"{min(args.n, 64)}")
    return 0


# ------------------------------------------------------------------- detect, evaluate


def _model_path(value: Path | str | None) -> Path:
    from xdefect.checkpoint import resolve_model

    return resolve_model(value)


def _detect_params(args: argparse.Namespace, card: dict):
    from dataclasses import replace

    from xdefect.detect import DetectParams

    try:
        base = (DetectParams.from_dict(card["detection"])
                if isinstance(card.get("detection"), dict) else DetectParams())
    except (TypeError, ValueError) as exc:
        raise InputError(f"model card: bad detection parameters ({exc})") from None
    # every field but use_mask has an option of the same name (--no-mask below)
    over = {k: getattr(args, k) for k in DetectParams.__dataclass_fields__
            if k != "use_mask" and getattr(args, k, None) is not None}
    if getattr(args, "no_mask", False):
        over["use_mask"] = False
    try:
        return replace(base, **over)
    except ValueError as exc:
        raise InputError(f"detection parameters: {exc}") from None


def cmd_detect(args: argparse.Namespace) -> int:
    import torch

    from xdefect.checkpoint import load_model
    from xdefect.detect import detect, detection_arrays, detection_doc
    from xdefect.gdxray import image_shape
    from xdefect.io import list_image_files, progress, read_image, write_image, write_json
    from xdefect.report import overlay

    files = list_image_files(args.inputs)
    for f in files:  # check every input before writing anything
        h, w = image_shape(f)
        if h < 32 or w < 32:
            raise InputError(f"{f}: image {w}x{h} is smaller than the 32x32 window")
    mpath = _model_path(args.model)
    model, card = load_model(mpath)
    params = _detect_params(args, card)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stems = [f.stem for f in files]
    if len(set(stems)) != len(stems):
        raise InputError("two inputs share a file name stem; outputs would collide")
    bar = progress(total=len(files), desc="detect", unit="image")
    total = 0
    t0 = time.perf_counter()
    for f in files:
        rad = read_image(f)
        dets, _ = detect(model, rad.pixels, params, batch=args.batch)
        write_json(out / f"{f.stem}.json",
                   detection_doc(str(f), rad.shape, str(mpath), params, dets))
        if not args.no_png:
            boxes, _ = detection_arrays(dets)
            write_image(out / f"{f.stem}.png", overlay(rad.pixels, detections=boxes,
                                                       thickness=2))
        total += len(dets)
        bar.update()
    bar.close()
    print(f"{out}: {len(files)} images, {total} detections "
          f"({time.perf_counter() - t0:.1f} s; mode {params.mode}, stride {params.stride}, "
          f"theta {params.theta})")
    return 0


def _ap(v: float | None) -> str:
    return "-" if v is None or v != v else f"{v:.4f}"


def cmd_evaluate(args: argparse.Namespace) -> int:
    from xdefect import gdxray, protocol
    from xdefect.io import command_line, progress, read_detections, write_image, write_json
    from xdefect.report import overlay, pr_curve_figure

    if not 0 < args.iou <= 1:
        raise InputError(f"--iou {args.iou}: must be in (0, 1]")
    sel = protocol.select(_root(args.gdxray), args.series, args.split)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    missing = 0
    card = None
    if args.detections is not None:
        docs = read_detections(args.detections)
        results, missing = protocol.detection_results(sel, docs)
        first = next(iter(docs.values()))
        model_name, params_doc = first.get("model"), first.get("params", {})
        if model_name:
            from xdefect.checkpoint import read_card

            try:
                card = read_card(model_name)
            except InputError:
                card = None  # the model that made them is not here: provenance unknown
    else:
        from xdefect.checkpoint import load_model

        mpath = _model_path(args.model)
        model, card = load_model(mpath)
        params = _detect_params(args, card)
        model_name, params_doc = str(mpath), params.to_dict()
        bar = progress(total=len(sel.records), desc="evaluate", unit="image")

        def save(rec, doc):
            write_json(out / "detections" / f"{rec.stem}.json", doc)
            bar.update()

        sweep = dict.fromkeys(protocol.SWEEP_THETAS) if args.theta_sweep else None
        results = list(protocol.model_results(sel, model, params, model_name, save, sweep))
        bar.close()
    m = protocol.metrics(sel, results, args.iou, args.matching, card)
    sw = None
    if args.detections is None and args.theta_sweep:
        from xdefect.evaluate import theta_sweep

        sw = theta_sweep(sweep, args.iou, args.matching)
        m["theta_sweep"] = sw
    m.update({"model": model_name, "params": params_doc,
              "images_without_detection_file": missing, "command": command_line()})
    write_json(out / "metrics.json", m)
    write_image(out / "pr_curve.png", pr_curve_figure(results, args.iou, sw))
    if not args.no_overlays:
        by_stem = {r.stem: r for r in sel.records}
        for res in results:
            rec = by_stem[res.key]
            smp = gdxray.load_sample(rec, sel.ground_truth[rec.series])
            write_image(out / "overlays" / f"{res.key}.png",
                        overlay(smp.image, detections=res.boxes, ground_truth=res.gt,
                                thickness=2))
    print(f"{out}: AP {_ap(m['ap'])} (11-point {_ap(m['ap11'])}) at IoU {args.iou} over "
          f"{m['images']} {sel.split} images of {', '.join(sel.series)}, {m['gt_boxes']} "
          f"ground-truth boxes, {m['detections']} detections")
    for s, d in m["per_series"].items():
        print(f"  {s}: AP {_ap(d['ap']):>6}  boxes {d['gt_boxes']:>4}  TP "
              f"{d['true_positives']:>4}  FP {d['false_positives']:>5}  missed {d['missed']:>4}")
    if sw is not None:
        print(f"  theta swept ({len(sw['theta'])} thresholds, the paper's curve): AP "
              f"{_ap(sw['ap'])} (11-point {_ap(sw['ap11'])})")
    if "unseen" in m:
        u = m["unseen"]
        print(f"  unseen defects: AP {_ap(u['ap'])} (11-point {_ap(u['ap11'])}) over "
              f"{u['gt_boxes']} boxes; {u['ignored_boxes']} test boxes ignored as seen "
              "(a box of an odd image of the series overlaps them at IoU >= 0.5)")
        print("    per series: " + ", ".join(f"{s} {_ap(d['ap'])} ({d['gt_boxes']})"
                                               for s, d in u["per_series"].items()))
    pv = m["provenance"]
    if pv.get("known"):
        if pv["real_defects_in_training"]:
            print("  this model trained on real defect windows (sources "
                  f"{', '.join(pv['sources'])}): the unseen-defect AP is its leak-free figure")
        else:
            print("  this model trained on simulated defects only: both figures are leak-free")
        if pv["trained_on_evaluated_images"]:
            print(f"  warning: this model trained on {sel.split} images "
                  f"({', '.join(pv['trained_on_image_splits'])}): these figures are not a test")
        elif pv["trained_on_evaluated_images"] is None:
            print("  note: the model's lineage is incomplete: which images it trained on is "
                  "unknown")
    if sel.unscored:
        print(f"  unscored (no ground truth): {', '.join(sel.unscored)}")
    if missing:
        print(f"  warning: {missing} images had no detection file (counted as no detections)")
    return 0


# --------------------------------------------------------------------------------- demo


def _demo_without_model(args: argparse.Namespace, out: Path) -> None:
    from xdefect import gdxray, simulate
    from xdefect.io import write_image, write_json
    from xdefect.report import overlay, patch_grid

    print("xdefect demo: no bundled model is installed, so this demo shows the stages that")
    print("  need none: the synthetic wheel radiograph, simulated ellipsoidal defects (Eq. 3),")
    print("  the casting mask and a Fig. 7-style grid of simulated defect patches.")
    ph = simulate.phantom(n_defects=args.n, seed=args.seed)
    write_image(out / "phantom.png", ph.image)
    write_image(out / "phantom_overlay.png", overlay(ph.image, ground_truth=ph.boxes,
                                                     mask=ph.mask))
    write_json(out / "phantom_defects.json", {
        "image": "phantom", "seed": args.seed,
        "defects": [{"box": [int(v) for v in b], "axes_mm": list(e.axes_mm),
                     "angles_deg": e.angles_deg, "center": list(e.center), "mu": e.mu}
                    for e, b in zip(ph.defects, ph.boxes, strict=True)]})
    rng = np.random.default_rng(args.seed)
    clean = simulate.phantom(seed=args.seed)
    grid = simulate.defect_patches(clean.image, clean.mask, simulate.SamplerConfig(), rng)
    write_image(out / "simulated_patches.png", patch_grid(grid))
    print(f"  phantom: {len(ph.boxes)} simulated defects -> {out / 'phantom_overlay.png'}")
    print(f"  patches: 64 simulated defect patches -> {out / 'simulated_patches.png'}")
    root = gdxray.default_root()
    if (root / "Castings").is_dir():
        rec = gdxray.list_images(root, gdxray.protocol_series(root), "test")[0]
        smp = gdxray.load_sample(rec, gdxray.load_ground_truth(root, rec.series))
        m = gdxray.casting_mask(smp.image)
        write_image(out / f"{rec.stem}_mask.png",
                    overlay(smp.image, ground_truth=smp.boxes, mask=m))
        print(f"  GDXray {rec.stem}: casting mask and {len(smp.boxes)} real defects -> "
              f"{out / (rec.stem + '_mask.png')} (not for redistribution)")


def _demo_inspect(name: str, image: np.ndarray, gt: np.ndarray, mask, model, card, params,
                  mpath: Path, out: Path) -> dict:
    from xdefect.detect import detect, detection_arrays, detection_doc
    from xdefect.evaluate import match_image
    from xdefect.io import write_image, write_json
    from xdefect.report import overlay

    t = time.perf_counter()
    dets, _ = detect(model, image, params, mask=mask)
    dt = time.perf_counter() - t
    boxes, scores = detection_arrays(dets)
    tp, which = match_image(boxes, scores, gt, 0.5)
    doc = detection_doc(name, image.shape, str(mpath), params, dets)
    doc["ground_truth"] = [[int(v) for v in b] for b in gt]
    stem = Path(name).stem
    write_json(out / f"{stem}.json", doc)
    write_image(out / f"{stem}_overlay.png", overlay(image, detections=boxes, ground_truth=gt,
                                                     thickness=2))
    res = {"defects": len(gt), "hits": int(len(set(which[tp].tolist()))),
           "false_alarms": int((~tp).sum()), "seconds": dt}
    res["misses"] = res["defects"] - res["hits"]
    print(f"  {stem}: {res['defects']} defects, {res['hits']} found, {res['misses']} missed, "
          f"{res['false_alarms']} false alarms ({dt:.1f} s) -> {out / (stem + '_overlay.png')}")
    return res


def cmd_demo(args: argparse.Namespace) -> int:
    from xdefect import gdxray, simulate
    from xdefect.checkpoint import bundled_model, load_model

    t0 = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    mpath = _model_path(args.model) if args.model is not None else bundled_model()
    if mpath is None:
        _demo_without_model(args, out)
        print(f"done in {time.perf_counter() - t0:.1f} s")
        return 0
    model, card = load_model(mpath)
    params = _detect_params(argparse.Namespace(), card)
    print(f"xdefect demo: model {mpath.name} ({card['arch']['name']}), {params.mode} score map, "
          f"stride {params.stride}, theta {params.theta}; IoU >= 0.5 counts as found")
    print("  detections green, ground truth red")
    ph = simulate.phantom(n_defects=args.n, seed=args.seed)
    _demo_inspect("phantom.png", ph.image, ph.boxes, ph.mask, model, card, params, mpath, out)
    root = gdxray.default_root()
    if (root / "Castings").is_dir():
        test = gdxray.list_images(root, gdxray.protocol_series(root), "test")
        recs = [r for r in test if r.stem == args.gdxray_image] or test
        rec = recs[0]
        smp = gdxray.load_sample(rec, gdxray.load_ground_truth(root, rec.series))
        _demo_inspect(rec.stem + ".png", smp.image, smp.boxes, None, model, card, params,
                      mpath, out)
        print("  (the GDXray picture is for your eyes only: its licence forbids redistribution)")
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0


# ------------------------------------------------------------------------------ parser


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, formatter_class=_Formatter, description=(
        "xdefect: automated X-ray inspection of castings.\n\n"
        "Simulate realistic defects, train a patch CNN (Xnet-II) on them, scan whole\n"
        "radiographs and measure how well real defects are found (GDXray Castings).\n\n"
        "Boxes everywhere are (x1, y1, x2, y2) pixels, 0-based, half-open."))
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    g = sub.add_parser("gdxray", help="inspect the GDXray Castings data",
                       formatter_class=_Formatter,
                       description="Inspect the GDXray Castings data: series, ground truth, "
                                   "casting masks.")
    gsub = g.add_subparsers(dest="gdxray_command", metavar="SUBCOMMAND", parser_class=_Parser)
    gi = gsub.add_parser("info", help="per-series table of images and ground-truth boxes",
                         formatter_class=_Formatter,
                         description="Per-series table: images, size, ground-truth boxes, "
                                     "images with boxes, odd (train/val) and even (test) "
                                     "counts, and totals.")
    _root_arg(gi)
    gi.add_argument("--json", action="store_true", help="print JSON instead of a table")
    gi.set_defaults(func=cmd_gdxray_info)
    gs = gsub.add_parser("show", help="draw ground truth and casting mask on an image",
                         formatter_class=_Formatter,
                         description="Draw the ground truth (red) and the outline of the casting "
                                     "mask (blue) on one radiograph. The picture shows GDXray "
                                     "pixels: do not redistribute it.")
    gs.add_argument("series", help="series name, e.g. C0001")
    gs.add_argument("number", type=int, help="image number (1-based, as in the file name)")
    gs.add_argument("--out", required=True, type=Path, help="output PNG")
    gs.add_argument("--thickness", type=int, default=1, help="box line width (pixels)")
    _root_arg(gs)
    gs.set_defaults(func=cmd_gdxray_show)
    gm = gsub.add_parser("masks", help="measure the casting segmentation per series",
                         formatter_class=_Formatter,
                         description="Mean fraction of the image inside the casting mask and "
                                     "fraction of ground-truth boxes whose centre lies inside, "
                                     "per series.")
    _root_arg(gm)
    gm.add_argument("--series", nargs="+", default=None, help="series (default: all)")
    gm.add_argument("--json", action="store_true", help="print JSON instead of a table")
    gm.set_defaults(func=cmd_gdxray_masks)

    from xdefect.simulate import DEFAULT_AXES_MM, DEFAULT_MM_PER_PX, DEFAULT_MU_RANGE, DEFAULT_X_MAX
    s = sub.add_parser("simulate", help="superimpose simulated ellipsoidal defects",
                       formatter_class=_Formatter, description=(
                           "Superimpose random 3D ellipsoidal voids on a radiograph with the\n"
                           "absorption model I' = (I - B) exp(mu d) + B (the paper's Eq. 3).\n"
                           "Defect centres fall inside the casting mask. INPUT is an image file\n"
                           "(8/16-bit PNG or TIFF) or the word 'phantom' (synthetic wheel)."))
    s.add_argument("input", metavar="INPUT", help="radiograph file, or 'phantom'")
    s.add_argument("--out", type=Path, default=None,
                   help="output image (same size and bit depth as the input)")
    s.add_argument("--grid", type=Path, default=None,
                   help="write an 8x8 grid of 32x32 patches with simulated defects (Fig. 7)")
    s.add_argument("--n", type=int, default=10, help="number of defects")
    s.add_argument("--seed", type=int, default=0, help="random seed")
    s.add_argument("--axes-mm", type=float, nargs=2, default=DEFAULT_AXES_MM,
                   metavar=("MIN", "MAX"), help="range of each semi-axis (mm)")
    s.add_argument("--mu", type=float, nargs=2, default=DEFAULT_MU_RANGE, metavar=("MIN", "MAX"),
                   help="range of the linear absorption coefficient (1/mm)")
    s.add_argument("--x-max", type=float, default=DEFAULT_X_MAX,
                   help="thickness (mm) at which grey values are minimal; fixes B")
    s.add_argument("--mm-per-px", type=float, default=DEFAULT_MM_PER_PX,
                   help="pixel size at the object (mm)")
    s.add_argument("--source-distance", type=float, default=None,
                   help="source-to-object distance (mm) for a perspective beam "
                        "(default: parallel beam)")
    s.add_argument("--json", type=Path, default=None, help="write the defects' parameters here")
    s.set_defaults(func=cmd_simulate)

    ds = sub.add_parser("dataset", help="build and inspect 32x32 patch datasets",
                        formatter_class=_Formatter,
                        description="Build and inspect the patch datasets of the paper's two "
                                    "protocols (docs/datasets.md).")
    dsub = ds.add_subparsers(dest="dataset_command", metavar="SUBCOMMAND", parser_class=_Parser)
    db = dsub.add_parser("build", help="build a dataset folder", formatter_class=_Formatter,
                         description=(
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
                             "Output: DIR/patches.npy, labels.npy, meta.csv, manifest.json."))
    _root_arg(db, "--gdxray")
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
    db.add_argument("--per-image", type=int, default=2200,
                    help="wholeimage: no-defect patches and simulated defects per image")
    db.add_argument("--mix", default="E100G000",
                    help="EaaaGbbb: percent of simulated defects from ellipsoids and GAN")
    db.add_argument("--gan", type=Path, default=None, help="trained GAN folder (GAN portions)")
    db.add_argument("--val-fraction", type=float, default=0.2,
                    help="fraction of patches held out at random for validation during "
                         "training (the patch hold-out 'val', not the tuning images)")
    db.add_argument("--split-by", choices=("patch", "image"), default="patch",
                    help="patch: stratified by label (the paper's); image: whole images")
    db.add_argument("--seed", type=int, default=0, help="random seed")
    db.add_argument("--t3-defects", type=int, default=75000, help="table3: training defects")
    db.add_argument("--t3-no-defects", type=int, default=75000,
                    help="table3: training no-defect patches")
    db.add_argument("--t3-real", type=int, default=15000,
                    help="table3: how many of the training defects are real windows")
    db.add_argument("--t3-test-defects", type=int, default=6000,
                    help="table3: real defect test patches (C0001)")
    db.add_argument("--t3-test-no-defects", type=int, default=6000,
                    help="table3: no-defect test patches (C0001)")
    db.add_argument("--mu", type=float, nargs=2, default=DEFAULT_MU_RANGE,
                    metavar=("MIN", "MAX"),
                    help="absorption coefficient range (1/mm) of the simulated defects")
    db.add_argument("--axes-mm", type=float, nargs=2, default=DEFAULT_AXES_MM,
                    metavar=("MIN", "MAX"), help="semi-axis range (mm) of simulated defects")
    db.add_argument("--real", type=int, default=0, metavar="N",
                    help="wholeimage: also add N real 'defect' patches centred (within "
                         "--real-offset) on the real defects of the train images (odd, "
                         "number %% 4 == 3); the tuning images (number %% 4 == 1) stay unseen. "
                         "xdefect's extension, not the paper's protocol")
    db.add_argument("--real-offset", type=int, default=8, metavar="PX",
                    help="largest offset (pixels, per axis) of a real patch's centre from "
                         "its box's centre")
    db.add_argument("--hard-negatives", type=int, default=0, metavar="N",
                    help="wholeimage: also add N 'no-defect' patches (source 'hard'): in each "
                         "train image the windows clear of real defects that --hard-model "
                         "scores highest")
    db.add_argument("--hard-model", type=Path, default=None, metavar="FILE",
                    help="model that mines the hard negatives (safetensors + card)")
    db.add_argument("--hard-stride", type=int, default=4, metavar="PX",
                    help="window stride of the hard-negative search")
    db.add_argument("--hard-mode", choices=("dense", "patch"), default="dense",
                    help="score maps of the hard-negative search (dense: fast)")
    db.add_argument("--workers", type=int, default=0,
                    help="worker processes (0: one per core, at most 4)")
    db.add_argument("--limit-images", type=int, default=None,
                    help="use only the first N images (quick trials)")
    db.add_argument("--force", action="store_true", help="replace an existing output folder")
    db.set_defaults(func=cmd_dataset_build)
    dinf = dsub.add_parser("info", help="summary of a dataset folder", formatter_class=_Formatter)
    dinf.add_argument("dir", type=Path, help="dataset folder")
    dinf.add_argument("--json", action="store_true", help="print JSON")
    dinf.set_defaults(func=cmd_dataset_info)
    dg = dsub.add_parser("grid", help="grid of random patches per class and source (Fig. 3)",
                         formatter_class=_Formatter)
    dg.add_argument("dir", type=Path, help="dataset folder")
    dg.add_argument("--out", required=True, type=Path, help="output PNG")
    dg.add_argument("--per-row", type=int, default=12, help="patches per class/source row")
    dg.add_argument("--seed", type=int, default=0, help="random seed")
    dg.set_defaults(func=cmd_dataset_grid)

    mo = sub.add_parser("models", help="the registry of patch CNN architectures",
                        formatter_class=_Formatter)
    msub = mo.add_subparsers(dest="models_command", metavar="SUBCOMMAND", parser_class=_Parser)
    ml = msub.add_parser("list", help="architectures with parameters and MACs per patch",
                         formatter_class=_Formatter,
                         description="Every registered architecture: xnet2 (Xnet-II), t3-0 ... "
                                     "t3-7 (the rows of the paper's Table 3) and xnet (WACV "
                                     "2017). params follow Keras' count (BatchNorm: 4 per "
                                     "channel).")
    ml.add_argument("--json", action="store_true", help="print JSON")
    ml.set_defaults(func=cmd_models_list)
    msh = msub.add_parser("show", help="a model's card: lineage, checksums, figures",
                          formatter_class=_Formatter,
                          description="Print a model's identity and lineage: every training "
                                      "stage with its captured command line, data manifest "
                                      "checksum, image splits, series and sources, and init "
                                      "weights checksums; checks the weights (and any init "
                                      "file still on disk) against the recorded checksums.")
    msh.add_argument("model", nargs="?", default=None, help=MODEL_HELP)
    msh.add_argument("--json", action="store_true", help="print JSON")
    msh.set_defaults(func=cmd_models_show)

    from xdefect.models import REGISTRY
    tr = sub.add_parser("train", help="train a patch classifier", formatter_class=_Formatter,
                        description=(
                            "Train a patch CNN on the 'train' split of a dataset folder,\n"
                            "validating on 'val' every epoch, with early stopping on the\n"
                            "validation loss. Writes RUN/metrics.csv, RUN/best.safetensors +\n"
                            "best.json (the model and its card) and RUN/last.* (to resume).\n"
                            "Runs under torchrun --nproc_per_node=N as well (DDP)."))
    tr.add_argument("--data", required=True, type=Path, help="dataset folder")
    tr.add_argument("--arch", default="xnet2", choices=list(REGISTRY), help="architecture")
    tr.add_argument("--out", required=True, type=Path, help="run folder")
    tr.add_argument("--epochs", type=int, default=20, help="maximum epochs")
    tr.add_argument("--batch", type=int, default=256, help="batch size (per process)")
    tr.add_argument("--lr", type=float, default=1e-3, help="learning rate")
    tr.add_argument("--optimizer", choices=("adam", "rmsprop"), default="adam",
                    help="optimiser (the paper's Keras builder used rmsprop)")
    tr.add_argument("--patience", type=int, default=4,
                    help="stop after this many epochs without a better validation loss")
    tr.add_argument("--seed", type=int, default=0, help="random seed")
    tr.add_argument("--threads", type=int, default=None, help="CPU threads (torch)")
    tr.add_argument("--device", choices=("cpu", "cuda"), default=None,
                    help="device (default: cuda when present)")
    tr.add_argument("--resume", action="store_true",
                    help="continue RUN from its last complete epoch")
    tr.add_argument("--samples-per-epoch", type=int, default=None,
                    help="train on a seeded random sample of this many patches per epoch "
                         "(default: the whole train split)")
    tr.add_argument("--init", type=Path, default=None,
                    help="start from this model's weights (fine-tuning; same architecture)")
    tr.add_argument("--val-samples", type=int, default=None,
                    help="validate on a fixed seeded subset of this many val patches")
    tr.set_defaults(func=cmd_train)

    te = sub.add_parser("test", help="patch accuracy of a model on a dataset split",
                        formatter_class=_Formatter)
    te.add_argument("--model", required=True, type=Path,
                    help="model .safetensors or a bundled name (xnet2-xdefect, xnet2-paper)")
    te.add_argument("--data", required=True, type=Path, help="dataset folder")
    te.add_argument("--split", choices=("test", "val", "train"), default="test")
    te.add_argument("--batch", type=int, default=1024, help="batch size")
    te.add_argument("--json", action="store_true", help="print JSON")
    te.set_defaults(func=cmd_test)

    ga = sub.add_parser("gan", help="GAN-simulated defects (DCGAN)", formatter_class=_Formatter)
    gsub2 = ga.add_subparsers(dest="gan_command", metavar="SUBCOMMAND", parser_class=_Parser)
    gt = gsub2.add_parser("train", help="train a DCGAN on real defect patches",
                          formatter_class=_Formatter, description=(
                              "Train a DCGAN on every 32x32 window of the train images (odd,\n"
                              "number % 4 == 3) that holds at least a third of a real defect,\n"
                              "augmented with flips and 90-degree rotations. Checkpoints\n"
                              "(safetensors) and a sample grid every --every iterations;\n"
                              "--resume continues."))
    _root_arg(gt, "--gdxray")
    gt.add_argument("--out", required=True, type=Path, help="GAN folder")
    gt.add_argument("--iterations", type=int, default=30000,
                    help="generator/discriminator updates (about 28 min on 2 CPU cores at "
                         "the measured 18 it/s; the paper ran 150,000 on a GPU)")
    gt.add_argument("--batch", type=int, default=64, help="batch size")
    gt.add_argument("--seed", type=int, default=0, help="random seed")
    gt.add_argument("--every", type=int, default=500, help="checkpoint and sample period")
    gt.add_argument("--series", nargs="+", default=None,
                    help="series (default: the paper's seven)")
    gt.add_argument("--include-tuning", action="store_true",
                    help="also learn from the tuning images (odd, number %% 4 == 1); the "
                         "generator's card says so and dataset builds without "
                         "--include-tuning refuse it")
    gt.add_argument("--threads", type=int, default=None, help="CPU threads (torch)")
    gt.add_argument("--device", choices=("cpu", "cuda"), default=None,
                    help="device (default: cuda when present)")
    gt.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    gt.set_defaults(func=cmd_gan_train)
    gs2 = gsub2.add_parser("sample", help="generate defect patches",
                           formatter_class=_Formatter,
                           description="Write FILE.npy (uint8 (N, 32, 32)) and FILE.png (a grid "
                                       "of up to 64, the paper's Fig. 8).")
    gs2.add_argument("--model", required=True, type=Path, help="GAN folder")
    gs2.add_argument("--n", type=int, default=64, help="number of patches")
    gs2.add_argument("--out", required=True, type=Path, help="output base name FILE")
    gs2.add_argument("--seed", type=int, default=0, help="random seed")
    gs2.set_defaults(func=cmd_gan_sample)

    def det_args(q: argparse.ArgumentParser) -> None:
        q.add_argument("--mode", choices=("dense", "patch"), default=None,
                       help="score map: dense (convolutional) or patch (windows batched); "
                            "default from the model card, else patch")
        q.add_argument("--stride", type=int, default=None, help="window stride (pixels)")
        q.add_argument("--theta", type=float, default=None,
                       help="threshold on y1 - y0 for a window to count as 'defect'")
        q.add_argument("--radius", type=int, default=None, help="dilation disk radius (px)")
        q.add_argument("--a-min", type=int, default=None, help="minimum region area (px)")
        q.add_argument("--box-rule", choices=("windows", "centres", "region", "peaks", "blobs"),
                       default=None,
                       help="box of a region: union of its windows, its window centres "
                            "grown by --box-margin, its own extent, one box of "
                            "--box-margin around each local score maximum (peaks), or "
                            "around each maximum of the smoothed map (blobs; "
                            "docs/detection.md)")
        q.add_argument("--box-margin", type=int, default=None,
                       help="pixels around the window centres (box rules centres, peaks, "
                            "blobs)")
        q.add_argument("--sigma", type=float, default=None,
                       help="Gaussian smoothing (grid cells) of the score map before its "
                            "maxima are found (peaks, blobs)")
        q.add_argument("--nms", type=int, default=None,
                       help="suppress maxima closer than this (pixels) to a higher one "
                            "(peaks, blobs; 0: --box-margin)")
        q.add_argument("--widen", type=int, default=None,
                       help="peaks, blobs: a region with one maximum gets at least its "
                            "window centres' extent less this many pixels a side, so a "
                            "large isolated defect gets one large box (-1: off)")
        q.add_argument("--no-mask", action="store_true",
                       help="do not restrict regions to the casting mask")

    de = sub.add_parser("detect", help="detect defects in whole radiographs",
                        formatter_class=_Formatter, description=(
                            "Slide the patch classifier over each image (score y1 - y0),\n"
                            "threshold, dilate, keep regions inside the casting, and write\n"
                            "DIR/<stem>.json ({image, width, height, model, params,\n"
                            "detections: [{box: [x1, y1, x2, y2], score}]}) and DIR/<stem>.png\n"
                            "(detections in green). Boxes: 0-based, half-open pixels."))
    de.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR",
                    help="images (8/16-bit PNG, TIFF) or folders of images")
    de.add_argument("--model", type=Path, default=None,
                    help=MODEL_HELP)
    de.add_argument("--out", required=True, type=Path, help="output folder")
    de.add_argument("--batch", type=int, default=1024, help="batch size in patch mode")
    de.add_argument("--threads", type=int, default=None, help="CPU threads (torch)")
    de.add_argument("--no-png", action="store_true", help="write only the JSON files")
    det_args(de)
    de.set_defaults(func=cmd_detect)

    ev = sub.add_parser("evaluate", help="AP of detections against GDXray ground truth",
                        formatter_class=_Formatter, description=(
                            "Match detections to ground-truth boxes by IoU (greedy by score,\n"
                            "each box at most once) and report AP (all-point and 11-point)\n"
                            "overall and per series. Either run a model (--model) or score\n"
                            "saved detection JSONs matched to images by file stem\n"
                            "(--detections). Writes DIR/metrics.json, DIR/pr_curve.png and\n"
                            "DIR/overlays/ (detections green, ground truth red)."))
    src = ev.add_mutually_exclusive_group()
    src.add_argument("--model", type=Path, default=None,
                     help=MODEL_HELP)
    src.add_argument("--detections", type=Path, default=None,
                     help="folder of detection JSONs (no model needed)")
    _root_arg(ev, "--gdxray")
    ev.add_argument("--split", choices=("test", "even", "tuning", "val", "train", "odd", "all"),
                    default="test",
                    help="image split: test (= even), tuning (odd, number %% 4 == 1; val is "
                         "its old name), train (odd, number %% 4 == 3), odd, all")
    ev.add_argument("--series", nargs="+", default=None,
                    help="series (default: the paper's seven, never every series present)")
    ev.add_argument("--iou", type=float, default=0.5, help="IoU threshold for a match")
    ev.add_argument("--matching", choices=("coco", "voc"), default="coco",
                    help="coco: a detection takes the best still-unmatched box; voc: its "
                         "best box overall, a false positive if already taken")
    ev.add_argument("--out", required=True, type=Path, help="output folder")
    ev.add_argument("--no-overlays", action="store_true", help="skip the overlay pictures")
    ev.add_argument("--theta-sweep", action="store_true",
                    help="also the paper's PR curve: one detection run per theta over the "
                         "same score maps, one point each (needs --model); the headline AP "
                         "ranks the boxes of the run at the card's theta")
    det_args(ev)
    ev.set_defaults(func=cmd_evaluate)

    d = sub.add_parser("demo", help="run the demo (what `make demo` runs)",
                       formatter_class=_Formatter,
                       description="A seeded synthetic radiograph with simulated defects, "
                                   "inspected by the bundled model (detections green, "
                                   "simulated ground truth red), with a summary; with GDXray "
                                   "present, one real even-numbered image too.")
    d.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder")
    d.add_argument("--model", type=Path, default=None,
                   help=MODEL_HELP)
    d.add_argument("--gdxray-image", default="C0001_0002",
                   help="the even-numbered GDXray image inspected when GDXray is present")
    d.add_argument("--n", type=int, default=12, help="simulated defects in the phantom")
    d.add_argument("--seed", type=int, default=0, help="random seed")
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        # a command group without its subcommand: show its help
        target = parser
        if args.command:
            target = parser._subparsers._group_actions[0].choices[args.command]  # type: ignore[union-attr]
        target.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except InputError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
