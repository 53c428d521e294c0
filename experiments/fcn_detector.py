"""Beyond the sliding window (issue 13): a fully convolutional detector trained on
whole-image crops with the simulator's exact defect masks, scored on the same figures as
the bundled default.

The patch classifier answers "is there a defect in this 32x32 window?", so its boxes come
from a rule around score peaks and cannot follow a defect larger than the window. This
experiment trains a small encoder-decoder (:class:`SegNet`, output at half resolution,
dilated context at an eighth, about 150 pixels of reach) to say, for every pixel, whether
it lies in a defect's shadow; a detection is then an 8-connected region of the probability
map above ``t`` inside the casting mask, boxed by its extent and scored by its highest
probability. No window, no box rule.

Training data: ``--crop`` x ``--crop`` crops of the **train images** (odd, n % 4 == 3) of
the paper's seven series, each with a Poisson(``--defects``) number of simulated
ellipsoidal voids (``xdefect.simulate``: exact shadow ``d > 0`` as the target), centred in
the crop's casting mask at least 8 pixels from any real defect box. Real defects:
``--real`` makes each real box's inscribed ellipse a positive target (the rest of the box is
ignored) and centres a third of the crops on a real box; without it, every real box plus 8
pixels is ignored (the paper's protocol: simulated defects only). Crops are flipped and
rotated by multiples of 90 degrees. Loss: binary cross-entropy (positive weight
``--pos-weight``) plus soft Dice over the pixels not ignored.

Scoring: the threshold ``t`` is chosen on the **tuning images** (odd, n % 4 == 1) of the
paper's annotated series (AP at IoU 0.5, COCO matching); the same ``t`` then scores the
odd images of ``gdxray-extra`` (castings the model never saw, as the ablation's reference
rows). Test images are never touched. Writes the weights (safetensors), their JSON card and
``--out`` (JSON, one row per run, read by ``experiments/results_tables.py``)::

    .venv/bin/python experiments/fcn_detector.py --name fcn-real --real --minutes 20

Leave-series-out (``--kfold K --fold I``, then ``--pool``): one model per fold, trained on
the other series, its threshold chosen on their tuning images, tested on every image of
the held-out series. ``--ensemble NAME...`` trains nothing: it averages the probability
maps of those runs' models of the same fold and then chooses and tests the same way.
``--tta N`` averages each map over N mirror views (the library's test-time augmentation).
``--rate-rule`` also scores each held-out series at a label-free threshold of its own
(:func:`rate_rule`); ``experiments/fcn_loso.py`` runs every fold and the pooling at once.
``--hard-rounds R`` (with ``--hard-share``): R times during the budget (at equal
fractions of it, the mining's time counted), the model as it stands scans the annotated
training images as deployed and the regions away from their real defects become hard
negatives, centres of ``--hard-share`` of the later crops
(:func:`xdefect.train_segment.mine_false_alarms`).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from xdefect import gdxray
from xdefect.augment import AugmentParams, augment
from xdefect.crops import CropConfig, TrainImage, add_hard, gdxray_images, sample_batch
from xdefect.detect import (
    ScoreMap,
    boxes_of_regions,
    detection_arrays,
    grow_detections,
    join_detections,
    label_regions,
    relative_extents,
)
from xdefect.evaluate import ImageResult, seen_mask, summarise
from xdefect.io import command_line, write_json
from xdefect.models import normalise_float
from xdefect.segment import SegConfig, SegNet, probability_map, segment_params
from xdefect.train_segment import mine_false_alarms, segment_loss

THRESHOLDS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99)
MARGIN = 8  # pixels around a real box that simulated defects avoid (and ignored without --real)


# ------------------------------------------------------------------ the network, the data
# The network is the library's segmenter (xdefect.segment.SegNet, registry "segnet" at
# --channels 16), crops come from xdefect.crops, the loss from xdefect.train_segment.


def make_net(channels: int, lcn: float = 0.0) -> SegNet:
    return SegNet(SegConfig("segnet", channels, lcn=lcn))


@dataclass
class Image:
    pixels: np.ndarray
    mask: np.ndarray
    boxes: np.ndarray  # real defects (x1, y1, x2, y2)
    seen: np.ndarray | None = None  # per box: the same defect is in a train image


def load_images(root: Path, series: list[str] | None, split: str) -> list[TrainImage]:
    return gdxray_images(root, series, split, MARGIN)


def grid_detections(prob: np.ndarray, mask: np.ndarray, settings: list[tuple]
                    ) -> dict[tuple, tuple[np.ndarray, np.ndarray]]:
    """Boxes ``(x1, y1, x2, y2)`` (0-based, half-open) and peak probabilities of the
    8-connected regions of ``prob > t`` inside ``mask`` with at least ``a_min`` pixels,
    grown by ``grow`` pixels a side (the library's segment mode on ``2 p - 1``), at every
    (t, a_min[, grow[, extent[, join[, link]]]]) of ``settings`` (``extent`` > 0: each
    region boxed by its relative extent, ``DetectParams.extent_fraction``; ``join`` >= 0:
    boxes at most that many pixels apart joined, ``DetectParams.join``; ``link`` < t:
    regions connected through pixels of ``prob > link`` are one, ``DetectParams.link``);
    the regions are labelled once per threshold and link (the same boxes as
    :func:`xdefect.detect.regions` per setting)."""
    sm = ScoreMap(2.0 * prob - 1.0, 1, prob.shape, 0)
    out = {}
    labelled: dict[tuple[float, float], list[tuple]] = {}  # (t, link) -> its settings
    for k in settings:
        labelled.setdefault((k[0], k[5] if len(k) > 5 else 1.0), []).append(k)
    for (t, link), group in sorted(labelled.items()):
        base = segment_params(2 * t - 1)
        lab = label_regions(sm, base.theta, base.radius, mask, base.sigma, 2 * link - 1)
        ungrown: dict[tuple[int, float], list] = {}  # settings differing only in growth
        for k in group:
            a_min, grow = k[1], (k[2] if len(k) > 2 else 0)
            ext = k[3] if len(k) > 3 else 0.0
            join = k[4] if len(k) > 4 else -1
            if (a_min, ext) not in ungrown:
                ungrown[(a_min, ext)] = (
                    [] if lab is None else
                    relative_extents(lab, sm, mask, ext, a_min, base.theta) if ext else
                    boxes_of_regions(lab, a_min, base.box_rule, base.box_margin, base.theta,
                                     base.nms, base.widen, 0))
            b, sc = detection_arrays(join_detections(
                grow_detections(ungrown[(a_min, ext)], grow, prob.shape), join))
            out[k] = (b, (sc + 1) / 2)
    return out


# -------------------------------------------------------------------------------- scoring


def image_results(net: SegNet, images: list[tuple[str, str, Image]], thresholds=THRESHOLDS
                  ) -> dict[float, list[ImageResult]]:
    """Each image's detections and ground truth at each threshold (minimum area 4)."""
    res = grid_results(net, images, [(t, 4) for t in thresholds])
    return {t: res[(t, 4)] for t in thresholds}


def grid_results(net: SegNet | list[SegNet], images: list[tuple[str, str, Image]],
                 settings: list[tuple], views: int = 1) -> dict[tuple, list[ImageResult]]:
    """Each image's detections and ground truth at each (threshold, minimum area) or
    (threshold, minimum area, grow); with several networks, of the mean of their
    probability maps (an ensemble); ``views`` 2, 4 or 8: each map the mean over the
    image's mirror views (``DetectParams.tta``, :func:`xdefect.segment.views_mean`)."""
    nets = net if isinstance(net, list) else [net]
    res: dict[tuple, list[ImageResult]] = {k: [] for k in settings}
    for key, series, img in images:
        prob = np.mean([probability_map(n.eval(), img.pixels, views=views) for n in nets],
                       axis=0)
        for k, (b, s) in grid_detections(prob, img.mask, settings).items():
            res[k].append(ImageResult(key, series, b, s, img.boxes.astype(float), img.seen))
    return res


def figures(rs: list[ImageResult]) -> dict:
    m = summarise(rs)
    return {"ap": round(m["ap"], 4), "true_positives": m["true_positives"],
            "gt_boxes": m["gt_boxes"], "images": m["images"],
            "false_alarms_per_image": round(m["false_positives"] / m["images"], 2),
            "recall_at_fppi": m["recall_at_fppi"],
            "per_series": {k: round(v["ap"], 4) for k, v in m["per_series"].items()},
            "per_series_found": {k: f"{v['true_positives']}/{v['gt_boxes']}"
                                 for k, v in m["per_series"].items()},
            "per_series_fa": {k: round(v["false_positives"] / max(v["images"], 1), 2)
                              for k, v in m["per_series"].items()},
            "per_series_images": {k: v["images"] for k, v in m["per_series"].items()},
            **({"unseen": {"ap": round(m["unseen"]["ap"], 4),
                           "true_positives": m["unseen"]["true_positives"],
                           "gt_boxes": m["unseen"]["gt_boxes"],
                           "per_series": {k: round(v["ap"], 4) for k, v in
                                          m["unseen"]["per_series"].items()}}}
               if "unseen" in m else {})}


def score(net: SegNet, images: list[tuple[str, str, Image]], thresholds=THRESHOLDS
          ) -> dict[float, dict]:
    """AP (IoU 0.5, COCO matching) of ``net`` at each threshold, pooled over ``images``
    ((key, series, image) triples)."""
    return {t: figures(rs) for t, rs in image_results(net, images, thresholds).items()}


def scored_images(root: Path, series: list[str] | None, split: str
                  ) -> list[tuple[str, str, Image]]:
    """The annotated images of ``split``; on the tuning images each box is flagged
    ``seen`` when a box of a train image (n % 4 == 3) of its series overlaps it at IoU >=
    0.5 (the same defect, trained on), for the AP on unseen defects."""
    gts = {}
    out = []
    for rec in gdxray.list_images(root, series, split):
        if rec.series not in gts:
            gts[rec.series] = gdxray.load_ground_truth(root, rec.series)
        gt = gts[rec.series]
        if not gt.annotated:
            continue
        smp = gdxray.load_sample(rec, gt)
        seen = None
        if split == "tuning":
            ref = [b for n, b in gt.boxes.items() if n % 4 == 3]
            seen = (seen_mask(smp.boxes, np.concatenate(ref)) if ref
                    else np.zeros(len(smp.boxes), bool))
        img = Image(smp.image.astype(np.float32), gdxray.casting_mask(smp.image),
                    smp.boxes.astype(int), seen)
        out.append((rec.stem, rec.series, img))
    return out


# ------------------------------------------------------------------------------- training


def crop_config(a: argparse.Namespace) -> CropConfig:
    """The training crops' settings of the arguments (refused in one line if out of range)."""
    try:
        return CropConfig(size=a.crop, defects=a.defects, axes_mm=tuple(a.axes_mm),
                          x_max=a.x_max, blur_px=a.blur, real=a.real, margin=MARGIN,
                          x_max_range=None if a.x_max_range is None else tuple(a.x_max_range),
                          hard_share=a.hard_share if a.hard_rounds else 0.0)
    except ValueError as exc:
        raise SystemExit(f"fcn_detector.py: {exc}") from None


def train(a: argparse.Namespace, imgs: list[TrainImage]) -> tuple[SegNet, dict]:
    """Train for ``--minutes`` (cosine learning-rate decay over the time budget)."""
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    cfg = crop_config(a)
    net = make_net(a.channels, a.lcn)
    opt = torch.optim.Adam(net.parameters(), lr=a.lr)
    t0 = time.perf_counter()
    step, seen, log, rounds = 0, 0, [], []
    budget = a.minutes * 60
    while time.perf_counter() - t0 < budget:
        if len(rounds) < a.hard_rounds and (time.perf_counter() - t0) / budget >= (
                len(rounds) + 1) / (a.hard_rounds + 1):
            imgs, r = mine(a, net, imgs)
            rounds.append({"step": step, "s": round(time.perf_counter() - t0, 1), **r})
            print(json.dumps({"hard_negatives": rounds[-1]}), flush=True)
        x, y, v = sample_batch(imgs, cfg, rng, a.batch)
        xt = torch.from_numpy(x)[:, None]
        if a.augment:  # grey level, contrast, gamma, blur, noise (the flips are the crops')
            xt = augment(xt, AugmentParams(flip=False), rng)
        frac = (time.perf_counter() - t0) / budget
        for g in opt.param_groups:  # cosine decay over the time budget
            g["lr"] = a.lr * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))
        bce, dice = segment_loss(net.train()(normalise_float(xt)),
                                 torch.from_numpy(y).float()[:, None],
                                 torch.from_numpy(v).float()[:, None], a.pos_weight)
        loss = bce + dice
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        seen += a.batch
        if step % 50 == 0:
            log.append({"step": step, "crops": seen, "loss": round(float(loss.detach()), 4),
                        "bce": round(float(bce.detach()), 4),
                        "dice": round(float(dice.detach()), 4),
                        "s": round(time.perf_counter() - t0, 1)})
            print(json.dumps(log[-1]), flush=True)
    info = {"crops": cfg.to_dict(), "steps": step, "crops_seen": seen,
            "train_s": round(time.perf_counter() - t0, 1),
            "train_images": len(imgs), "log": log,
            **({"hard_negatives": rounds} if a.hard_rounds else {})}
    return net, info


def mine(a: argparse.Namespace, net: SegNet, imgs: list[TrainImage]
         ) -> tuple[list[TrainImage], dict]:
    """One hard-negative round: the annotated images' new false alarms join their hard
    negatives (unannotated backgrounds are not mined)."""
    t0 = time.perf_counter()
    found = mine_false_alarms(net, imgs, a.hard_theta, 4, a.hard_per_image, MARGIN)
    out = [add_hard(img, pts) for img, pts in zip(imgs, found, strict=True)]
    net.train()
    return out, {"images_mined": sum(i.annotated for i in imgs),
                 "images_with_false_alarms": sum(len(p) > 0 for p in found),
                 "false_alarms": int(sum(len(p) for p in found)),
                 "mine_s": round(time.perf_counter() - t0, 1)}


def model(a: argparse.Namespace, work: Path, images) -> tuple[SegNet, dict]:
    """The run's network: loaded from ``work`` when trained before, else trained on
    ``images()`` and saved there."""
    work.mkdir(parents=True, exist_ok=True)
    weights = work / "model.safetensors"
    if weights.is_file():
        info = json.loads((work / "card.json").read_text())["training"]
        was = info.get("crops")  # older runs did not record their crops
        if was is not None and was != json.loads(json.dumps(crop_config(a).to_dict())):
            raise SystemExit(f"{work}: trained with other crop settings ({was}); use another "
                             "--name")
        net = make_net(a.channels, a.lcn)
        net.load_state_dict(load_file(weights))
        return net.eval(), info
    net, info = train(a, images())
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, weights)
    write_json(work / "card.json", {"training": info})
    return net.eval(), info


def write_card(work: Path, a: argparse.Namespace, info: dict, data: dict, metrics: dict
               ) -> None:
    write_json(work / "card.json", {
        "architecture": ({"name": "mean of the members' probability maps",
                          "members": list(a.ensemble)} if a.ensemble else
                         {"name": "SegNet", "channels": a.channels, "lcn": a.lcn}),
        "normalisation": "xdefect.models.normalise_float", "training": info,
        "data": {"roots_series": data, "split": "train"}, "metrics": metrics,
        "command": command_line()})


def ensemble(a: argparse.Namespace) -> tuple[list[SegNet], dict]:
    """The fold models of the runs named by ``--ensemble`` (each with its own architecture
    card), for the mean of their probability maps; their training figures summed."""
    nets, infos = [], []
    for name in a.ensemble:
        d = a.work / f"{name}-loso{a.kfold}" / f"fold{a.fold}"
        if not (d / "model.safetensors").is_file():
            raise SystemExit(f"{d}: no fold model to ensemble (run that fold of {name} first)")
        card = json.loads((d / "card.json").read_text())
        arch = card.get("architecture") or {}
        net = make_net(arch.get("channels", a.channels), arch.get("lcn", 0.0))
        net.load_state_dict(load_file(d / "model.safetensors"))
        nets.append(net.eval())
        infos.append(card["training"])
    return nets, {"members": list(a.ensemble),
                  **{k: sum(i[k] for i in infos) for k in ("steps", "crops_seen", "train_s")}}


def annotated_series(root: Path) -> list[str]:
    return [s for s in gdxray.list_series(root) if gdxray.load_ground_truth(root, s).annotated]


def leave_series_out(a: argparse.Namespace) -> None:
    """One fold (``--fold``) or the pooled folds (``--pool``) of the leave-series-out run:
    train on the train images of every other annotated series of both roots, test on every
    image of the held-out series at ``--threshold``."""
    roots = {s: a.gdxray for s in annotated_series(a.gdxray)}
    roots |= {s: a.extra for s in annotated_series(a.extra)}
    names = sorted(roots)
    folds = [names[i::a.kfold] for i in range(a.kfold)]
    work = a.work / f"{a.name}-loso{a.kfold}"
    if a.pool:
        return pool_folds(a, work, folds)
    held = folds[a.fold]
    train_on: dict[str, list[str]] = {}
    for s in names:
        if s not in held:
            train_on.setdefault(str(roots[s]), []).append(s)
    fold_dir = work / f"fold{a.fold}"
    if a.ensemble:
        net, info = ensemble(a)
    else:
        net, info = model(a, fold_dir, lambda: [im for r, ss in train_on.items()
                                                for im in load_images(Path(r), ss, "train")]
                          + backgrounds(a))
    t0 = time.perf_counter()
    t, by_t, a_min, grow, ext, join, link = a.threshold, {}, 4, 0, 0.0, -1, 1.0
    if t is None:  # chosen on the tuning images of the series the fold trained on
        tuning = [x for r, ss in train_on.items() for x in scored_images(Path(r), ss, "tuning")]
        grid = [(th, am, g, e, j, lk) for th in THRESHOLDS for am in (a.a_min_grid or [4])
                for g in (a.grow_grid or [0]) for e in (a.extent_grid or [0.0])
                for j in (a.join_grid or [-1]) for lk in (a.link_grid or [1.0])]
        tune_res = grid_results(net, tuning, grid, a.tta)
        aps = {k: choice_ap(v, a.choose_by) for k, v in tune_res.items()}
        by_t = {f"{th:g}" + (f"/a{am}" if a.a_min_grid else "")
                + (f"/g{g}" if a.grow_grid else "") + (f"/e{e:g}" if a.extent_grid else "")
                + (f"/j{j}" if a.join_grid else "") + (f"/l{lk:g}" if a.link_grid else ""):
                round(v, 4) for (th, am, g, e, j, lk), v in aps.items()}
        t, a_min, grow, ext, join, link = max(aps, key=lambda k: aps[k])
    chosen = (t, a_min, grow, ext, join, link)
    tested = [x for s in held for x in scored_images(roots[s], [s], "all")]
    if a.rate_rule:
        rs, rate = rate_rule(net, tune_res[chosen], tested, chosen, a.tta)
    else:
        rs, rate = grid_results(net, tested, [chosen], a.tta)[chosen], None
    doc = {"fold": a.fold, "held_out": held, "trained_on": train_on,
           "backgrounds": [str(r) for r in a.backgrounds], "lcn": a.lcn,
           "x_max_range": a.x_max_range, "threshold": t,
           "a_min": a_min, "grow": grow, "extent_fraction": ext, "join": join, "link": link,
           "tta": a.tta,
           "threshold_rule": ("given" if a.threshold is not None else
                              "best AP on the tuning images of the series trained on"
                              + (", each series weighted alike (mean of their APs)"
                                 if a.choose_by == "series-mean" else "")),
           "tuning_ap_by_threshold": by_t,
           "training": {k: v for k, v in info.items() if k != "log"},
           "test_s": round(time.perf_counter() - t0, 1), "command": command_line(),
           "images": image_records(rs)}
    write_card(fold_dir, a, info, train_on, figures(rs))
    plain = fold_dir / f"results{tag(a).removesuffix('-rate')}.json"
    if rate is not None:
        if not plain.exists():
            # the run without the rule: the same detections at the chosen threshold (its
            # test_s covers the rule's threshold grid too)
            write_json(plain, doc)
        doc = {**doc, "rate_rule": rate[0], "images_rate": image_records(rate[1])}
    write_json(fold_dir / f"results{tag(a)}.json", doc)
    print(json.dumps({"fold": a.fold, "held_out": held, **figures(rs)}
                     | ({"rate_rule": figures(rate[1])} if rate is not None else {})))


def choice_ap(rs: list[ImageResult], rule: str = "pooled") -> float:
    """The figure a fold's settings are chosen by on the training series' tuning images:
    the pooled AP (``pooled``), or the mean of the series' own APs (``series-mean``, each
    casting weighted alike however many boxes its tuning images hold; series without a
    box left out)."""
    m = summarise(rs)
    if rule == "pooled":
        return float(m["ap"] or 0.0)
    aps = [v["ap"] or 0.0 for v in m["per_series"].values() if v["gt_boxes"]]
    return float(np.mean(aps)) if aps else 0.0


def image_records(rs: list[ImageResult]) -> list[dict]:
    return [{"key": r.key, "series": r.series, "boxes": r.boxes.tolist(),
             "scores": r.scores.tolist(), "gt": r.gt.tolist()} for r in rs]


def rate_threshold(rates: dict[float, float], reference: float) -> tuple[float, bool]:
    """The lowest threshold of ``rates`` (threshold -> regions per image) whose rate is at
    most ``reference``, and True; the highest threshold and False when none is (the
    rates need not fall steadily with the threshold: regions split as it rises)."""
    ok = [t for t, v in rates.items() if v <= reference]
    return (min(ok), True) if ok else (max(rates), False)


def rate_rule(net: SegNet | list[SegNet], ref: list[ImageResult],
              tested: list[tuple[str, str, Image]], chosen: tuple,
              views: int = 1) -> tuple[list[ImageResult], tuple[dict, list[ImageResult]]]:
    """A label-free threshold per held-out casting: the lowest of ``THRESHOLDS`` at which
    the casting's images raise no more regions per image than the tuning images of the
    series trained on raise at the chosen threshold (the detector's alarm rate on castings
    it knows, carried to the new one; only the new casting's images are used, never their
    labels). ``ref``: the tuning images' results at ``chosen`` (threshold, minimum area,
    grow, relative extent, join, link); ``views``: mirror views per map (as :func:`grid_results`).
    Returns the detections at the chosen threshold (as without the rule) and the rule's
    record and detections."""
    t, a_min, grow, ext, join, link = chosen
    rate_ref = float(np.mean([len(r.boxes) for r in ref]))
    grid = [(th, a_min, grow, ext, join, link) for th in sorted(set(THRESHOLDS) | {t})]
    res = grid_results(net, tested, grid, views)
    record: dict = {"reference_regions_per_image": round(rate_ref, 3),
                    "rule": "lowest threshold whose regions per image on the casting's "
                            "images <= the reference", "per_series": {}}
    out: list[ImageResult] = []
    for s in sorted({r.series for r in res[chosen]}):
        idx = [i for i, r in enumerate(res[chosen]) if r.series == s]
        rates = {k[0]: float(np.mean([len(res[k][i].boxes) for i in idx])) for k in grid}
        t_s, reached = rate_threshold(rates, rate_ref)
        record["per_series"][s] = {"threshold": t_s, "rate_reached": reached,
                                   "regions_per_image_by_threshold":
                                   {f"{th:g}": round(v, 3) for th, v in rates.items()}}
        out += [res[(t_s, a_min, grow, ext, join, link)][i] for i in idx]
    return res[chosen], (record, out)


def backgrounds(a: argparse.Namespace) -> list[TrainImage]:
    """Every image of the unannotated GDXray roots of ``--backgrounds`` (never scored):
    backgrounds for simulated voids; whatever real defect they hold is taken as
    background."""
    return [im for r in a.backgrounds for im in load_images(r, None, "all")]


def tag(a: argparse.Namespace) -> str:
    """The result files' suffix: a fixed threshold, a minimum-area grid, or none."""
    if a.threshold is not None:
        return f"-t{a.threshold:g}"
    return (("-amin" if a.a_min_grid else "") + ("-grow" if a.grow_grid else "")
            + ("-ext" if a.extent_grid else "")
            + ("-join" if getattr(a, "join_grid", None) else "")
            + ("-link" if getattr(a, "link_grid", None) else "")
            + ("-smean" if getattr(a, "choose_by", "pooled") == "series-mean" else "")
            + (f"-tta{a.tta}" if a.tta > 1 else "")
            + ("-rate" if a.rate_rule else ""))


def read_images(records: list[dict], roots: list[Path] | None = None) -> list[ImageResult]:
    """Saved per-image results; with ``roots``, only the images whose series' ground truth
    (under whichever root holds it) covers them (``SeriesGroundTruth.covers``: a static
    series' images left unannotated are not scored, whenever the results were saved)."""
    gts: dict[str, gdxray.SeriesGroundTruth | None] = {}

    def covered(x: dict) -> bool:
        if roots is None:
            return True
        s = x["series"]
        if s not in gts:
            root = next((r for r in roots if (Path(r) / "Castings" / s).is_dir()), None)
            gts[s] = None if root is None else gdxray.load_ground_truth(root, s)
        g = gts[s]
        return g is None or g.covers(int(x["key"].rsplit("_", 1)[1]))

    return [ImageResult(x["key"], x["series"], np.asarray(x["boxes"], float).reshape(-1, 4),
                        np.asarray(x["scores"], float), np.asarray(x["gt"], float)
                        .reshape(-1, 4)) for x in records if covered(x)]


def pool_folds(a: argparse.Namespace, work: Path, folds: list[list[str]]) -> None:
    """Pool the folds run so far; with ``--rate-rule``, the rule's detections (and, as
    ``pooled_fixed``, the same folds at the threshold chosen on the tuning images)."""
    rs, fixed, per_fold = [], [], []
    roots = [a.gdxray, a.extra]  # images their ground truth does not cover are dropped
    for i in range(len(folds)):
        f = work / f"fold{i}" / f"results{tag(a)}.json"
        if not f.is_file():
            continue
        d = json.loads(f.read_text())
        fr = read_images(d["images_rate"] if a.rate_rule else d["images"], roots)
        rs += fr
        fixed += read_images(d["images"], roots)
        rule = ({"threshold_by_series": {s: v["threshold"] for s, v in
                                         d["rate_rule"]["per_series"].items()},
                 "reference_regions_per_image": d["rate_rule"]["reference_regions_per_image"]}
                if a.rate_rule else {})
        per_fold.append({"fold": i, "held_out": d["held_out"], "threshold": d["threshold"],
                         **rule,
                         "a_min": d.get("a_min", 4), "grow": d.get("grow", 0),
                         "extent_fraction": d.get("extent_fraction", 0.0),
                         "join": d.get("join", -1), "link": d.get("link", 1.0),
                         "train_minutes": round(d["training"]["train_s"] / 60, 1),
                         "crops_seen": d["training"]["crops_seen"], "test_s": d["test_s"],
                         "x_max_range": d.get("x_max_range"),
                         **({"hard_negatives": d["training"]["hard_negatives"]}
                            if "hard_negatives" in d["training"] else {}),
                         **figures(fr)})
    if not per_fold:
        raise SystemExit(f"{work}: no fold{{I}}/results{tag(a)}.json to pool (run the folds "
                         "with the same arguments first)")
    doc = {"kfold": a.kfold, "folds_run": len(per_fold), "roots": [str(a.gdxray), str(a.extra)],
           "pooled": figures(rs), "folds": per_fold, "command": command_line()}
    if a.rate_rule:
        doc["pooled_fixed"] = figures(fixed)
    write_json(a.out.with_name(f"fcn_loso_{a.name}{tag(a)}.json"), doc)
    print(json.dumps({k: v for k, v in doc.items() if k != "folds"}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", required=True)
    ap.add_argument("--gdxray", type=Path, default=None)
    ap.add_argument("--extra", type=Path, default=Path("../shared/data/gdxray-extra"))
    ap.add_argument("--real", action="store_true", help="real defect boxes as targets")
    ap.add_argument("--minutes", type=float, default=20.0, help="training time budget")
    ap.add_argument("--crop", type=int, default=96)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--defects", type=float, default=1.5, help="mean simulated defects/crop")
    ap.add_argument("--axes-mm", type=float, nargs=2, default=(1.0, 10.0))
    ap.add_argument("--x-max", type=float, default=60.0)
    ap.add_argument("--x-max-range", type=float, nargs=2, default=None,
                    metavar=("LOW", "HIGH"),
                    help="each simulated void's own x_max drawn log-uniformly in this "
                         "range (mm): a mixture of contrasts, fainter ones included")
    ap.add_argument("--blur", type=float, default=0.0)
    ap.add_argument("--pos-weight", type=float, default=3.0)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path("runs/fcn"))
    ap.add_argument("--out", type=Path, default=Path("runs/fcn_detector.json"))
    ap.add_argument("--kfold", type=int, default=0,
                    help="leave-series-out: K folds over the annotated series of --gdxray and "
                         "--extra (sorted names, fold i holds names[i::K])")
    ap.add_argument("--fold", type=int, default=None, help="the fold to run (with --kfold)")
    ap.add_argument("--threshold", type=float, default=None,
                    help="leave-series-out: a fixed threshold (default: each fold's best on "
                         "the tuning images of the series it trained on)")
    ap.add_argument("--pool", action="store_true", help="pool the folds run so far")
    ap.add_argument("--augment", action="store_true",
                    help="grey-level augmentation of every crop (xdefect.augment)")
    ap.add_argument("--backgrounds", type=Path, nargs="+", default=[],
                    help="GDXray roots without annotations: all their images are added to "
                         "the training images as backgrounds for simulated voids")
    ap.add_argument("--lcn", type=float, default=0.0,
                    help="a second input channel: local contrast normalisation with this "
                         "Gaussian sigma in pixels (xdefect.segment.LocalContrast; 0: none)")
    ap.add_argument("--ensemble", nargs="+", default=[], metavar="NAME",
                    help="with --kfold --fold: train nothing, average the probability maps "
                         "of these runs' models of the fold (the same folds), then choose "
                         "and test as usual")
    ap.add_argument("--grow-grid", type=int, nargs="+", default=None,
                    help="with --kfold: also choose the box growth (pixels a side) from "
                         "these, on the tuning images of the series trained on")
    ap.add_argument("--extent-grid", type=float, nargs="+", default=None,
                    help="with --kfold: also choose the relative box extent "
                         "(DetectParams.extent_fraction; 0: off) from these, on the tuning "
                         "images of the series trained on (results file suffix -ext)")
    ap.add_argument("--join-grid", type=int, nargs="+", default=None,
                    help="with --kfold: also choose the box joining distance (pixels, "
                         "DetectParams.join; -1: off) from these, on the tuning images of "
                         "the series trained on (results file suffix -join)")
    ap.add_argument("--link-grid", type=float, nargs="+", default=None,
                    help="with --kfold: also choose the probability through which regions "
                         "above the threshold are linked into one (DetectParams.link on "
                         "2p-1; 1: off) from these, on the tuning images of the series "
                         "trained on (results file suffix -link)")
    ap.add_argument("--choose-by", choices=("pooled", "series-mean"), default="pooled",
                    help="leave-series-out: choose the settings by the pooled AP of the "
                         "training series' tuning images, or by the mean of their per-series "
                         "APs (each casting weighted alike; results file suffix -smean)")
    ap.add_argument("--tta", type=int, choices=(1, 2, 4, 8), default=1,
                    help="leave-series-out: each probability map the mean over this many "
                         "mirror views of the image, on the tuning and the held-out images "
                         "alike (DetectParams.tta; results file suffix -ttaN)")
    ap.add_argument("--rate-rule", action="store_true",
                    help="leave-series-out: also test a label-free threshold per held-out "
                         "series, the lowest at which its images raise no more regions per "
                         "image than the tuning images do at the chosen threshold (results "
                         "file suffix -rate; --pool pools that rule)")
    ap.add_argument("--hard-rounds", type=int, default=0,
                    help="hard-negative rounds mined from the annotated training images")
    ap.add_argument("--hard-share", type=float, default=0.25,
                    help="share of the crops centred on a hard negative (with --hard-rounds)")
    ap.add_argument("--hard-theta", type=float, default=0.0,
                    help="score 2p-1 above which a region is mined")
    ap.add_argument("--hard-per-image", type=int, default=16)
    ap.add_argument("--a-min-grid", type=int, nargs="+", default=None,
                    help="leave-series-out: choose the minimum region area (pixels) from "
                         "these with the threshold, on the same tuning images")
    a = ap.parse_args()
    if a.rate_rule and (a.threshold is not None or not a.kfold):
        ap.error("--rate-rule needs --kfold and a threshold chosen on the tuning images "
                 "(no --threshold)")
    torch.set_num_threads(a.threads)
    a.gdxray = a.gdxray or gdxray.default_root()
    if a.kfold:
        return leave_series_out(a)
    net, info = model(a, a.work / a.name,
                      lambda: load_images(a.gdxray, list(gdxray.PAPER_SERIES), "train"))
    t0 = time.perf_counter()
    tuning = score(net, scored_images(a.gdxray, list(gdxray.PAPER_ANNOTATED_SERIES), "tuning"))
    best = max(tuning, key=lambda t: tuning[t]["ap"])
    extra = score(net, scored_images(a.extra, None, "odd"), thresholds=(best,))[best]
    row = {"name": a.name, "real": a.real, "threshold": best,
           "tuning": tuning[best], "extra_odd": extra,
           "ap_by_threshold": {f"{t:g}": v["ap"] for t, v in tuning.items()},
           "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(a).items()
                        if k not in ("gdxray", "extra", "work", "out")},
           "roots": [str(a.gdxray), str(a.extra)],
           "steps": info["steps"], "crops_seen": info["crops_seen"],
           "train_minutes": round(info["train_s"] / 60, 1),
           "score_s": round(time.perf_counter() - t0, 1), "command": command_line()}
    write_card(a.work / a.name, a, info, {str(a.gdxray): list(gdxray.PAPER_SERIES)}, row)
    doc = {"rows": []}
    if a.out.is_file():
        doc = json.loads(a.out.read_text())
    doc["rows"] = [r for r in doc["rows"] if r["name"] != a.name] + [row]
    write_json(a.out, doc)
    print(json.dumps({k: v for k, v in row.items() if k != "settings"}))


if __name__ == "__main__":
    main()
