"""Train a segmenter (:mod:`xdefect.segment`) on crops with exact defect masks.

Data: the **train images** (odd, n % 4 == 3) of GDXray series, and/or folders of image
files without annotations (backgrounds for simulated defects), cut into crops by
:mod:`xdefect.crops`. Loss: binary cross-entropy (positive weight ``pos_weight``) plus
soft Dice, both over the valid pixels, at the network's half resolution (targets averaged
over each 2x2 block; a block is valid when its four pixels are). Adam, learning rate
decayed by a cosine over ``steps``; optional photometric augmentation of every crop
(:mod:`xdefect.augment`: gamma, contrast, grey level, blur, noise).

Resumable: every ``checkpoint_every`` steps, ``RUN/last.safetensors`` (+ ``last.json``)
holds the weights, the optimiser and the random generators' states, so a run started
again with ``resume`` continues where it stopped and ends with the same weights as an
uninterrupted one. At the end, ``RUN/model.safetensors`` + ``model.json``: the model and
its card (architecture, normalisation, crop settings, data, lineage, the command line and
the detection settings). When the GDXray series have annotated **tuning images** (odd,
n % 4 == 1), the threshold ``theta``, the relative extent ``extent_fraction``, the box
growth ``grow``, the box joining ``join`` and the link ``link`` are chosen on them (best
AP at IoU 0.5 over :data:`THETAS` x :data:`LINKS` x :data:`EXTENT_FRACTIONS` x
:data:`GROWS` x :data:`JOINS`) and the card records the AP of each setting;
else the card keeps the settings of the init model or
:data:`xdefect.segment.SEGMENT_PARAMS`. :func:`tune_segmenter` makes the same choice again
for a finished segmenter (``xdefect tune-segmenter``).

Hard negatives (``hard_rounds`` > 0): the training is cut into ``hard_rounds + 1`` equal
parts; after each but the last, the model as it stands scans every annotated training
image as it will be deployed (probability map, regions above ``hard_theta``, boxed by
their extent) and the regions that touch no real defect box (grown by the crop margin)
become those images' known false alarms (:func:`mine_false_alarms`); from then on
``crops.hard_share`` of the crops are centred on them (:func:`xdefect.crops.sample_batch`).
Each round's false alarms are written to ``RUN/hard_negatives.json`` (a resumed run reads
them back) and counted in the card. Unannotated images are never mined: a real defect in
them is not known to be one.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from xdefect import gdxray
from xdefect.augment import AugmentParams, augment
from xdefect.checkpoint import (
    CHECKPOINT_FORMAT,
    MODEL_FORMAT,
    card_lineage,
    derived_run,
    init_record,
    load_model,
    load_tensors,
    model_state,
    optimizer_tensors,
    prefixed,
    read_card,
    resolve_model,
    restore_optimizer,
    save_tensors,
    unprefixed,
)
from xdefect.crops import (
    CropConfig,
    TrainImage,
    add_hard,
    folder_images,
    gdxray_images,
    sample_batch,
)
from xdefect.detect import DetectParams, ScoreMap, regions
from xdefect.errors import InputError
from xdefect.evaluate import ImageResult, pr_curve, scoring_at_least, summarise
from xdefect.io import command_line, list_image_files, progress, read_json, write_json
from xdefect.models import NORMALISATION, normalise_float, setup_device
from xdefect.protocol import Selection, model_results, select
from xdefect.segment import (
    SEGMENT_PARAMS,
    SegNet,
    create_segmenter,
    get_segmenter,
    score_map,
    segment_params,
)

__all__ = ["EXTENT_FRACTIONS", "GROWS", "HARD_FILE", "HARD_FORMAT", "JOINS", "LINKS", "THETAS",
           "SegTrainConfig",
           "choose_settings", "choose_theta", "operating_point",
           "mine_false_alarms", "segment_loss", "settings_block", "train_segmenter",
           "tuning_selections", "tune_segmenter"]

#: thresholds on the score ``2 p - 1`` tried on the tuning images (p from 0.05 to 0.995:
#: a segmenter trained on simulated defects alone answers real voids with low
#: probabilities, and chose the lowest threshold and largest growth of a grid starting at
#: p 0.5; docs/results.md, ``sim-only-segmenter``)
THETAS = (-0.9, -0.6, 0.0, 0.4, 0.6, 0.8, 0.9, 0.94, 0.96, 0.98, 0.99)
#: box growths (pixels a side, ``DetectParams.grow``) tried with them: the real defects'
#: targets are their boxes' inscribed ellipses, and the probability falls off at a
#: defect's edge, so a region's extent above a high threshold is smaller than its box
GROWS = (0, 1, 2, 3, 4, 6, 8)
#: relative extents (``DetectParams.extent_fraction``) tried with them: 0 boxes the pixels
#: above theta; F boxes the pixels above F times each region's peak log-odds, so that a
#: faint defect's box is not only its few most certain pixels
EXTENT_FRACTIONS = (0.0, 0.2, 0.3, 0.4, 0.5, 0.6)
#: box joining distances (pixels, ``DetectParams.join``; -1: off) tried with them: a large
#: irregular defect lights several regions whose boxes, joined, are the defect's box
JOINS = (-1,)
#: link scores (``DetectParams.link``, on ``2 p - 1``; 1: off) tried with them: regions
#: above theta connected through pixels above the link are one defect (hysteresis)
LINKS = (1.0,)


@dataclass(frozen=True)
class SegTrainConfig:
    """Arguments of :func:`train_segmenter` (recorded in the card). ``gdxray``: GDXray
    roots whose ``series`` (default: every series of each root) give their train images;
    ``images``: image files or folders without annotations; ``steps`` of ``batch``
    crops; ``init``: a segmenter to start from (fine-tuning; its architecture is kept);
    ``hard_rounds``, ``hard_theta`` (a score ``2 p - 1``), ``hard_per_image``: the
    hard-negative rounds (module docstring; ``crops.hard_share`` must then be above 0)."""

    out: str
    gdxray: tuple[str, ...] = ()
    series: tuple[str, ...] | None = None
    images: tuple[str, ...] = ()
    arch: str = "segnet"
    crops: CropConfig = field(default_factory=CropConfig)
    steps: int = 8000
    batch: int = 16
    lr: float = 2e-3
    pos_weight: float = 3.0
    augment: bool = False
    seed: int = 0
    init: str | None = None
    choose_theta: bool = True
    checkpoint_every: int = 500
    #: with rehearsal images (:func:`train_segmenter`'s ``rehearsal``): the share of each
    #: batch cut from them, with their real defects as targets
    rehearse_share: float = 0.5
    hard_rounds: int = 0
    hard_theta: float = 0.0
    hard_per_image: int = 16
    threads: int | None = None
    device: str | None = "cpu"
    resume: bool = False
    command: str | None = None

    def validate(self) -> None:
        """One :class:`InputError` naming the first bad setting."""
        if not self.gdxray and not self.images:
            raise InputError("nothing to train on: give --gdxray ROOT and/or --images")
        if self.steps < 1 or self.batch < 1 or self.checkpoint_every < 1:
            raise InputError("--steps, --batch and --checkpoint-every must be at least 1")
        if not (math.isfinite(self.lr) and 0 < self.lr < 1):
            raise InputError(f"--lr {self.lr}: must lie in (0, 1)")
        if not 0 <= self.rehearse_share < 1:
            raise InputError(f"rehearse share {self.rehearse_share}: must lie in [0, 1)")
        if not (math.isfinite(self.pos_weight) and self.pos_weight > 0):
            raise InputError(f"--pos-weight {self.pos_weight}: must be positive")
        if self.hard_rounds < 0 or self.hard_per_image < 1:
            raise InputError("--hard-rounds must be at least 0, --hard-per-image at least 1")
        if self.hard_rounds and not self.crops.hard_share:
            raise InputError("--hard-rounds needs --hard-share above 0")
        if not (math.isfinite(self.hard_theta) and -1 <= self.hard_theta < 1):
            raise InputError(f"--hard-theta {self.hard_theta}: must lie in [-1, 1)")
        if self.init is None:
            try:
                get_segmenter(self.arch)
            except KeyError as exc:
                raise InputError(f"--arch: {exc.args[0]}") from None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["crops"] = self.crops.to_dict()
        return d

    def mining_steps(self) -> list[int]:
        """The steps after which false alarms are mined (``hard_rounds`` of them)."""
        k = self.hard_rounds + 1
        return sorted({round(r * self.steps / k) for r in range(1, k)} - {0})


def mine_false_alarms(net: SegNet, images: list[TrainImage], theta: float = 0.0,
                      a_min: int = SEGMENT_PARAMS.a_min, per_image: int = 16,
                      margin: int = 8, device: str | torch.device = "cpu"
                      ) -> list[np.ndarray]:
    """The known false alarms of ``net`` on each image: the centres ``(row, col)``
    (``(k, 2)`` int, pixels) of the ``per_image`` highest-scoring regions of its
    deployed detection (probability map, one view; regions of score ``2 p - 1`` above
    ``theta`` with at least ``a_min`` pixels inside the casting mask, boxed by their
    extent) whose box touches no real defect box grown by ``margin`` pixels. An image
    that is not ``annotated`` gets none: what the model finds there may be a defect."""
    params = segment_params(theta, a_min)
    out = []
    for img in progress(iterable=images, desc="mining false alarms", unit="image"):
        if not img.annotated:
            out.append(np.zeros((0, 2), np.int64))
            continue
        found = regions(score_map(net, img.pixels, device), params, img.mask)
        grown = img.boxes + np.array([-margin, -margin, margin, margin])
        pts = []
        for d in found:
            x1, y1, x2, y2 = d.box
            if any(x1 < b[2] and b[0] < x2 and y1 < b[3] and b[1] < y2 for b in grown):
                continue
            pts.append(((y1 + y2) // 2, (x1 + x2) // 2))
            if len(pts) == per_image:
                break
        out.append(np.asarray(pts, np.int64).reshape(-1, 2))
    return out


def _series_of(root: str, series: tuple[str, ...] | None) -> list[str]:
    have = gdxray.list_series(root)
    if series is None:
        return have
    return [s for s in series if s in have]


def _load_data(cfg: SegTrainConfig) -> tuple[list[TrainImage], dict[str, list[str]], list[str]]:
    """The training images, the series used per root, and the image files."""
    images: list[TrainImage] = []
    used: dict[str, list[str]] = {}
    for root in cfg.gdxray:
        ss = _series_of(root, cfg.series)
        if ss:
            used[str(root)] = ss
            images += gdxray_images(root, ss, "train", cfg.crops.margin)
    if cfg.series is not None:
        missing = sorted(set(cfg.series) - {s for ss in used.values() for s in ss})
        if missing:
            raise InputError(f"--series {' '.join(missing)}: not found under "
                             f"{', '.join(cfg.gdxray) or 'any --gdxray root'}")
    files = [str(f) for f in list_image_files(list(cfg.images))] if cfg.images else []
    images += folder_images(files, cfg.crops.margin)
    if not images:
        raise InputError("no training images found (GDXray train images: n % 4 == 3)")
    return images, used, files


def tuning_selections(used: dict[str, list[str]]) -> list[Selection]:
    """The annotated tuning images (odd, n % 4 == 1) of the series trained on, one
    :class:`~xdefect.protocol.Selection` per root whose tuning images hold at least one
    defect box (AP is undefined without one)."""
    out = []
    for root, ss in used.items():
        ann = [s for s in ss if gdxray.load_ground_truth(root, s).annotated]
        if ann and gdxray.list_images(root, ann, "tuning"):
            sel = select(root, ann, "tuning")
            if any(len(sel.ground_truth[r.series].boxes_of(r.number)) for r in sel.records):
                out.append(sel)
    return out


def choose_settings(net: SegNet, selections: list[Selection], base: DetectParams,
                    thetas: tuple[float, ...] = THETAS, grows: tuple[int, ...] = GROWS,
                    device: str | torch.device = "cpu",
                    extents: tuple[float, ...] = EXTENT_FRACTIONS,
                    joins: tuple[int, ...] = JOINS,
                    links: tuple[float, ...] = LINKS,
                    max_fa_per_image: float | None = None) -> dict[str, Any]:
    """The ``theta`` of ``thetas``, box growth of ``grows`` (``DetectParams.grow``),
    relative extent of ``extents`` (``DetectParams.extent_fraction``; only 0 unless
    ``base`` boxes regions by the ``region`` rule), box joining distance of ``joins``
    (``DetectParams.join``) and link score of ``links`` (``DetectParams.link``) with the
    best AP (IoU 0.5, COCO matching) on the images of ``selections``, each score map
    computed once (the first of equal APs, in the order theta, link, extent, grow, join).
    Returns ``theta``, ``grow``, ``extent_fraction``, ``join``, ``link``, ``ap``,
    ``images`` and ``grid``: one row per setting with its AP, defects found, ground-truth
    boxes and false alarms per image. ``max_fa_per_image``: also the operating point of the
    chosen setting, ``min_score`` (``DetectParams.min_score``: the lowest report threshold
    keeping at most that many false alarms per tuning image,
    :meth:`~xdefect.evaluate.PRCurve.score_at_fppi`) and ``at_min_score`` (AP, defects
    found, false alarms per image there); without it ``min_score`` is -1 (all reported)."""
    if not thetas or not grows or not extents or not joins or not links:
        raise ValueError("choose_settings needs at least one theta, grow, extent, join and "
                         "link")
    if base.box_rule != "region" or base.mode != "segment":
        extents = (0.0,)
    base = replace(base, min_score=-1.0)  # the grid ranks every detection
    runs: dict[DetectParams, list[ImageResult]] = {
        replace(base, theta=t, grow=g, extent_fraction=e, join=j, link=lk): []
        for t in thetas for lk in links for e in extents for g in grows for j in joins}

    def score(image: np.ndarray, params: DetectParams) -> ScoreMap:
        return score_map(net, image, device, params.tta)

    for sel in selections:  # the sweep of protocol.model_results over every setting
        sweep: dict[Any, list[ImageResult]] = dict.fromkeys(runs)  # type: ignore[arg-type]
        for _ in progress(iterable=model_results(sel, net, base, "segmenter", sweep=sweep,
                                                 score_fn=score),
                          total=len(sel.records), desc="choosing theta and grow",
                          unit="image"):
            pass
        for p in runs:
            runs[p] += sweep[p]
    grid = []
    for p, rs in runs.items():
        m = summarise(rs)
        grid.append({"theta": p.theta, "grow": p.grow, "extent_fraction": p.extent_fraction,
                     "join": p.join, "link": p.link, "ap": round(float(m["ap"] or 0.0), 4),
                     "found": m["true_positives"], "boxes": m["gt_boxes"],
                     "fa_per_image": round(m["false_positives"] / max(len(rs), 1), 2)})
    if not grid[0]["boxes"]:
        raise InputError("the tuning images hold no defect boxes: AP is undefined, nothing "
                         "to choose theta on")
    i = max(range(len(grid)), key=lambda k: grid[k]["ap"])  # the first of equal APs
    best = grid[i]
    out = {"theta": float(best["theta"]), "grow": int(best["grow"]),
           "extent_fraction": float(best["extent_fraction"]), "join": int(best["join"]),
           "link": float(best["link"]), "ap": best["ap"], "min_score": -1.0,
           "images": sum(len(x.records) for x in selections), "grid": grid}
    if max_fa_per_image is not None:
        out.update(operating_point(list(runs.values())[i], max_fa_per_image))
    return out


def operating_point(results: list[ImageResult], max_fa_per_image: float) -> dict[str, Any]:
    """The report threshold of ``results`` (one setting's tuning images) for at most
    ``max_fa_per_image`` false alarms per image: ``{"min_score", "max_fa_per_image",
    "at_min_score": {"ap", "found", "boxes", "fa_per_image"}}`` (AP of the detections
    scoring at least ``min_score``; IoU 0.5, COCO matching)."""
    if not math.isfinite(max_fa_per_image) or max_fa_per_image < 0:
        raise InputError(f"false alarms per image must be >= 0, not {max_fa_per_image}")
    cut = pr_curve(results).score_at_fppi(max_fa_per_image)
    if cut > 1:
        raise InputError(f"no report threshold keeps within {max_fa_per_image:g} false alarms "
                         "per tuning image: the top-scored detections (score 1) are false "
                         "alarms; allow more")
    m = summarise(scoring_at_least(results, cut))
    return {"min_score": cut, "max_fa_per_image": float(max_fa_per_image),
            "at_min_score": {"ap": round(float(m["ap"] or 0.0), 4),
                             "found": m["true_positives"], "boxes": m["gt_boxes"],
                             "fa_per_image": round(m["false_positives"]
                                                   / max(len(results), 1), 2)}}


def choose_theta(net: SegNet, selections: list[Selection], base: DetectParams,
                 thetas: tuple[float, ...] = THETAS, device: str | torch.device = "cpu"
                 ) -> tuple[float, dict[str, float]]:
    """The ``theta`` of ``thetas`` with the best AP on the images of ``selections`` at
    ``base``'s box growth, extent and joining, and the AP at each
    (:func:`choose_settings` over theta only)."""
    r = choose_settings(net, selections, base, thetas, (base.grow,), device,
                        (base.extent_fraction,), (base.join,), (base.link,))
    return r["theta"], {f"{row['theta']:g}": row["ap"] for row in r["grid"]}


def segment_loss(logit: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
                 pos_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(BCE, soft Dice) of half-resolution logits ``(N, 1, H/2, W/2)`` against full-
    resolution float targets and valid masks ``(N, 1, H, W)``."""
    y = F.avg_pool2d(target, 2)
    v = (F.avg_pool2d(valid, 2) > 0.999).float()
    bce = F.binary_cross_entropy_with_logits(
        logit, y, pos_weight=torch.tensor(pos_weight, device=logit.device), reduction="none")
    bce = (bce * v).sum() / v.sum().clamp(min=1)
    p = torch.sigmoid(logit) * v
    dice = 1 - (2 * (p * y).sum() + 1) / (p.sum() + (y * v).sum() + 1)
    return bce, dice


def _initial(cfg: SegTrainConfig, device: str) -> tuple[SegNet, dict[str, Any] | None]:
    if cfg.init is None:
        return create_segmenter(cfg.arch), None
    net, card = load_model(resolve_model(cfg.init), device)  # (a bundled name too)
    if not isinstance(net, SegNet):
        raise InputError(f"--init {cfg.init}: a patch classifier, not a segmenter")
    return net, card


def _save_checkpoint(run: Path, net: SegNet, opt: torch.optim.Optimizer, step: int,
                     rng: np.random.Generator, log: list[dict], base: dict[str, Any]) -> None:
    opt_t, opt_s = optimizer_tensors(opt)
    tensors = {**prefixed("model", model_state(net)), **opt_t,
               "torch_rng": torch.get_rng_state()}
    save_tensors(run / "last.safetensors", tensors, {
        **base, "format": CHECKPOINT_FORMAT, "step": step, "optimizer": opt_s,
        "rng": rng.bit_generator.state, "log": log})


def _data(cfg: SegTrainConfig, images: list[TrainImage] | None,
          rehearsal: dict[str, list[str]] | None
          ) -> tuple[list[TrainImage], dict[str, list[str]], list[str], list[TrainImage]]:
    """The training images, the series used per root, the image files and the rehearsal
    images."""
    if images is None:
        images, used, files = _load_data(cfg)
    else:
        used, files = {}, [i.name for i in images]
    rehearse = [im for r, ss in (rehearsal or {}).items()
                for im in gdxray_images(r, ss, "train", cfg.crops.margin)]
    return images, used, files, rehearse


def _check_run(cfg: SegTrainConfig, run: Path) -> None:
    """:class:`InputError` when ``run`` cannot be started (or resumed) as asked."""
    last = run / "last.safetensors"
    if (run / "model.safetensors").exists():
        raise InputError(f"{run}: holds a finished segmenter already (use another --out)")
    if last.exists() and not cfg.resume:
        raise InputError(f"{run}: holds a started run (use --resume to continue it, or "
                         "another --out)")
    if cfg.resume and not last.exists():
        raise InputError(f"{run}: nothing to resume (no last.safetensors)")


def _stage(cfg: SegTrainConfig, used: dict[str, list[str]], files: list[str],
           init_card: dict[str, Any] | None, rehearsal: dict[str, list[str]]
           ) -> dict[str, Any]:
    """This run's lineage stage."""
    roots = {r: sorted(set(used.get(r, [])) | set(rehearsal.get(r, [])))
             for r in {**used, **rehearsal}}
    real = (cfg.crops.real and used) or rehearsal
    return {"complete": True, "kind": "segmenter", "command": cfg.command,
            "data_roots": roots, "data_series": sorted({s for ss in roots.values() for s in ss}),
            "data_image_splits": (["train"] if roots else []) + (["files"] if files else []),
            "data_files": len(files),
            **({"rehearsal_roots": rehearsal, "rehearse_share": cfg.rehearse_share}
               if rehearsal else {}),
            "data_sources": {"simulated": True, **({"real": True} if real else {})},
            **({"hard_negatives": {"rounds": cfg.hard_rounds, "share": cfg.crops.hard_share,
                                   "theta": cfg.hard_theta, "per_image": cfg.hard_per_image}}
               if cfg.hard_rounds else {}),
            "init": None if cfg.init is None else init_record(resolve_model(cfg.init),
                                                                init_card)}


def _resume(cfg: SegTrainConfig, last: Path, net: SegNet, opt: torch.optim.Optimizer,
            rng: np.random.Generator) -> tuple[int, list[dict], dict[str, Any]]:
    """Load a checkpoint into ``net``, ``opt`` and the generators; returns the step, the
    log and the checkpoint's card (its settings must be ``cfg``'s)."""
    card = read_card(last, (CHECKPOINT_FORMAT,))
    # fields added since the run began take their defaults
    was = {**SegTrainConfig(out="").to_dict(), **dict(card.get("train_config") or {})}
    if isinstance(was.get("crops"), dict):
        was["crops"] = json.loads(json.dumps(CropConfig.from_dict(was["crops"]).to_dict()))
    now = json.loads(json.dumps(cfg.to_dict()))
    now.update(resume=was.get("resume"), command=was.get("command"))
    if was != now:
        diff = sorted(k for k in now if was.get(k) != now[k])
        raise InputError(f"{last}: the run was started with other settings "
                         f"({', '.join(diff)})")
    t = load_tensors(last)
    net.load_state_dict(unprefixed("model", t))
    restore_optimizer(opt, t, card["optimizer"])
    torch.set_rng_state(t["torch_rng"])
    rng.bit_generator.state = card["rng"]
    return int(card["step"]), list(card["log"]), card


def _step(cfg: SegTrainConfig, net: SegNet, opt: torch.optim.Optimizer,
          images: list[TrainImage], rng: np.random.Generator, step: int,
          aug: AugmentParams | None, device: str,
          rehearsal: list[TrainImage] | None = None) -> tuple[float, float]:
    """One optimisation step on a fresh batch; returns (BCE, Dice)."""
    n2 = int(round(cfg.batch * cfg.rehearse_share)) if rehearsal else 0
    x, y, v = sample_batch(images, cfg.crops, rng, cfg.batch - n2)
    if n2:
        assert rehearsal is not None
        x2, y2, v2 = sample_batch(rehearsal, replace(cfg.crops, real=True), rng, n2)
        x, y, v = np.concatenate([x, x2]), np.concatenate([y, y2]), np.concatenate([v, v2])
    xt = torch.from_numpy(x)[:, None]
    if aug is not None:
        xt = augment(xt, aug, rng)
    xt = normalise_float(xt).to(device)
    yt = torch.from_numpy(y).float()[:, None].to(device)
    vt = torch.from_numpy(v).float()[:, None].to(device)
    for g in opt.param_groups:  # cosine decay over the steps
        g["lr"] = cfg.lr * 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
    bce, dice = segment_loss(net(xt), yt, vt, cfg.pos_weight)
    loss = bce + dice
    if not torch.isfinite(loss):
        raise RuntimeError(f"segmenter training diverged at step {step} (loss {loss})")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(bce.detach()), float(dice.detach())


def _loop(cfg: SegTrainConfig, run: Path, net: SegNet, opt: torch.optim.Optimizer,
          data: tuple[list[TrainImage], list[TrainImage]], rng: np.random.Generator,
          step: int, log: list[dict], base: dict[str, Any], device: str,
          rounds: list[dict], on_log: Callable[[dict], None] | None
          ) -> tuple[list[TrainImage], list[dict]]:
    """The optimisation steps from ``step`` to ``cfg.steps``: logs into ``log``, mines
    false alarms at :meth:`SegTrainConfig.mining_steps`, checkpoints; returns the images
    (with their hard negatives) and the mining rounds' records."""
    images, rehearse = data
    aug = AugmentParams(flip=False) if cfg.augment else None
    t0, spent = time.perf_counter(), float(log[-1]["s"]) if log else 0.0
    mine_at = set(cfg.mining_steps())
    bar = progress(total=cfg.steps, initial=step, desc="segmenter", unit="step")
    net.train()
    while step < cfg.steps:
        bce, dice = _step(cfg, net, opt, images, rng, step, aug, device, rehearse)
        step += 1
        bar.update(1)
        if step % 100 == 0 or step % cfg.checkpoint_every == 0 or step == cfg.steps:
            log.append({"step": step, "crops": step * cfg.batch, "loss": round(bce + dice, 4),
                        "bce": round(bce, 4), "dice": round(dice, 4),
                        "s": round(spent + time.perf_counter() - t0, 1)})
            if on_log is not None:
                on_log(log[-1])
        if step in mine_at:  # before the checkpoint of this step: a resume finds its file
            images, rounds = _mine(cfg, run, net, images, step, rounds, device)
            net.train()
        if step % cfg.checkpoint_every == 0 and step < cfg.steps:
            _save_checkpoint(run, net, opt, step, rng, log, base)
    bar.close()
    return images, rounds


#: a run's record of its hard-negative rounds (``RUN/HARD_FILE``): ``{"format":
#: HARD_FORMAT, "rounds": [{"step", "theta", "per_image", "images_mined",
#: "images_with_false_alarms", "false_alarms", "images": [{"index", "name", "points":
#: [[row, col], ...]}]}]}``, ``index`` into the run's training images
HARD_FILE = "hard_negatives.json"
HARD_FORMAT = "xdefect-hard-negatives-1"


def _mine(cfg: SegTrainConfig, run: Path, net: SegNet, images: list[TrainImage], step: int,
          rounds: list[dict], device: str) -> tuple[list[TrainImage], list[dict]]:
    """One mining round after ``step``: each annotated image's new false alarms join its
    hard negatives; the round is appended to ``RUN/hard_negatives.json``."""
    found = mine_false_alarms(net, images, cfg.hard_theta, SEGMENT_PARAMS.a_min,
                              cfg.hard_per_image, cfg.crops.margin, device)
    out = [add_hard(img, pts) for img, pts in zip(images, found, strict=True)]
    listed = [{"index": i, "name": img.name, "points": pts.tolist()}
              for i, (img, pts) in enumerate(zip(images, found, strict=True)) if len(pts)]
    record = {"step": step, "theta": cfg.hard_theta, "per_image": cfg.hard_per_image,
              "images_mined": sum(im.annotated for im in images),
              "images_with_false_alarms": len(listed),
              "false_alarms": int(sum(len(p) for p in found))}
    prior = read_json(run / HARD_FILE)["rounds"] if (run / HARD_FILE).is_file() else []
    write_json(run / HARD_FILE, {"format": HARD_FORMAT, "rounds": [
        r for r in prior if r["step"] < step] + [{**record, "images": listed}]})
    return out, [*rounds, record]


def _restore_hard(cfg: SegTrainConfig, run: Path, images: list[TrainImage], step: int
                  ) -> tuple[list[TrainImage], list[dict]]:
    """The hard negatives of the rounds mined up to ``step`` (a resumed run), from
    ``RUN/hard_negatives.json``; none for a new run."""
    f = run / HARD_FILE
    if step == 0:  # a new run: a file left by a start that never checkpointed goes
        f.unlink(missing_ok=True)
    if not cfg.hard_rounds or step == 0 or not f.is_file():
        return images, []
    rounds = [r for r in read_json(f).get("rounds", []) if r["step"] <= step]
    images = list(images)
    for r in rounds:
        for e in r["images"]:
            i = int(e["index"])
            if i >= len(images) or images[i].name != e["name"]:
                raise InputError(f"{f}: image {i} is not {e['name']!r}: the training images "
                                 "changed since the run began")
            images[i] = add_hard(images[i], np.asarray(e["points"], np.int64))
    return images, [{k: v for k, v in r.items() if k != "images"} for r in rounds]


def _detection(cfg: SegTrainConfig, net: SegNet, used: dict[str, list[str]],
               init_card: dict[str, Any] | None, device: str
               ) -> tuple[DetectParams, dict[str, Any]]:
    """The detection settings (the init's or the defaults, theta chosen on the tuning
    images when there are any) and the card's ``tuning`` block."""
    detection = (DetectParams.from_dict(init_card["detection"])
                 if init_card and isinstance(init_card.get("detection"), dict)
                 else SEGMENT_PARAMS)
    sels = tuning_selections(used) if cfg.choose_theta else []
    if not sels:
        return detection, {}
    return settings_block(net, sels, detection, device)


def settings_block(net: SegNet, sels: list[Selection], detection: DetectParams,
                   device: str | torch.device = "cpu", thetas: tuple[float, ...] = THETAS,
                   grows: tuple[int, ...] = GROWS,
                   extents: tuple[float, ...] = EXTENT_FRACTIONS,
                   joins: tuple[int, ...] = JOINS, links: tuple[float, ...] = LINKS,
                   max_fa_per_image: float | None = None
                   ) -> tuple[DetectParams, dict[str, Any]]:
    """``detection`` with theta, grow, relative extent, box joining and link chosen on
    ``sels`` among ``thetas``, ``grows``, ``extents``, ``joins`` and ``links``, and the
    report threshold for ``max_fa_per_image`` (:func:`choose_settings`), and the card's
    ``tuning`` block recording the choice."""
    r = choose_settings(net.eval(), sels, detection, tuple(thetas), tuple(grows), device,
                        tuple(extents), tuple(joins), tuple(links), max_fa_per_image)
    theta, grow, ext, join, link = (r["theta"], r["grow"], r["extent_fraction"], r["join"],
                                    r["link"])
    cap = ({} if max_fa_per_image is None else
           {k: r[k] for k in ("max_fa_per_image", "at_min_score")})
    return replace(detection, theta=theta, grow=grow, extent_fraction=ext, join=join,
                   link=link, min_score=r["min_score"]), {
        "images": r["images"], "roots": {str(x.root): list(x.series) for x in sels},
        "theta": theta, "grow": grow, "extent_fraction": ext, "join": join, "link": link,
        "ap": r["ap"], "min_score": r["min_score"], **cap,
        "ap_by_theta": {f"{row['theta']:g}": row["ap"] for row in r["grid"]
                        if row["grow"] == grow and row["extent_fraction"] == ext
                        and row["join"] == join and row["link"] == link},
        "grid": r["grid"],
        "rule": "best AP (IoU 0.5) over theta x link x relative extent x grow x join on "
                "the annotated tuning images (odd, n % 4 == 1) of the series in roots"
                + ("" if max_fa_per_image is None else
                   f"; report threshold min_score: the lowest keeping at most "
                   f"{max_fa_per_image:g} false alarms per tuning image")}


def _data_text(used: dict[str, list[str]], files: list[str]) -> str:
    return ", ".join([f"{r}: {len(s)} series" for r, s in used.items()]
                     + ([f"{len(files)} image files"] if files else []))


def train_segmenter(cfg: SegTrainConfig, on_log: Callable[[dict], None] | None = None,
                    images: list[TrainImage] | None = None,
                    rehearsal: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """Train (or resume) a segmenter; returns ``{"model", "steps", "crops_seen",
    "minutes", "theta", "grow", "tuning_ap"}``. See the module docstring. ``images``: training
    images already made (:func:`xdefect.crops.training_image`, e.g. with regions to
    ignore) instead of those ``cfg.gdxray`` and ``cfg.images`` name (recorded only).
    ``rehearsal``: ``{GDXray root: series}`` whose train images (real defects as
    targets) fill ``cfg.rehearse_share`` of every batch, so that fine-tuning on other
    images keeps what the model knew of real defects."""
    cfg.validate()
    if cfg.command is None:
        cfg = replace(cfg, command=command_line())
    device = setup_device(cfg.device, cfg.threads)
    run = Path(cfg.out)
    last = run / "last.safetensors"
    _check_run(cfg, run)
    images, used, files, rehearse = _data(cfg, images, rehearsal)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    net, init_card = _initial(cfg, device)
    net = net.to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    base = {"arch": net.arch.to_dict(), "normalisation": NORMALISATION,
            "train_config": cfg.to_dict(),
            "lineage": (card_lineage(init_card) if init_card else [])
            + [_stage(cfg, used, files, init_card, rehearsal or {})]}
    step, log = 0, []
    if cfg.resume:
        step, log, ck = _resume(cfg, last, net, opt, rng)
        base = {**base, "train_config": ck["train_config"], "lineage": ck["lineage"]}
    run.mkdir(parents=True, exist_ok=True)
    images, rounds = _restore_hard(cfg, run, images, step)
    t0, spent = time.perf_counter(), float(log[-1]["s"]) if log else 0.0
    images, rounds = _loop(cfg, run, net, opt, (images, rehearse), rng, step, log, base,
                           device, rounds, on_log)
    step = cfg.steps
    train_s = spent + time.perf_counter() - t0
    detection, tuning = _detection(cfg, net, {**(rehearsal or {}), **used}, init_card, device)
    card = {**base, "format": MODEL_FORMAT, "name": run.name,
            "description": f"{net.arch.name} trained on {len(images)} images "
                           f"({_data_text(used, files)})",
            "detection": detection.to_dict(), "tuning": tuning,
            "training": {"steps": step, "crops_seen": step * cfg.batch,
                         "minutes": round(train_s / 60, 2), "images": len(images),
                         **({"hard_negatives": rounds} if cfg.hard_rounds else {}),
                         "log": log}}
    save_tensors(run / "model.safetensors", model_state(net), card)
    last.unlink(missing_ok=True)
    (run / "last.json").unlink(missing_ok=True)
    write_json(run / "train_log.json", log)
    return {"model": str(run / "model.safetensors"), "steps": step,
            "crops_seen": step * cfg.batch, "minutes": round(train_s / 60, 2),
            "theta": detection.theta, "grow": detection.grow,
            "extent_fraction": detection.extent_fraction, "join": detection.join,
            "link": detection.link, "tuning_ap": tuning.get("ap")}


def _tuning_roots(src: Path, card: dict[str, Any], gdxray_roots: tuple[str, ...],
                  series: tuple[str, ...] | None) -> dict[str, list[str]]:
    """The roots and series whose tuning images :func:`tune_segmenter` chooses on: those
    given, else those the model's card says it trained on (which must be here)."""
    if gdxray_roots:
        return {str(r): _series_of(str(r), series) for r in gdxray_roots}
    stage = (card.get("lineage") or [{}])[-1]
    used = {r: list(ss) for r, ss in (stage.get("data_roots") or {}).items()}
    if series is not None:
        used = {r: [s for s in ss if s in series] for r, ss in used.items()}
    missing = [r for r in used if not (Path(r) / "Castings").is_dir()]
    if missing:
        raise InputError(f"{missing[0]}: the GDXray root {src.name} trained on is not "
                         "here (give --gdxray ROOT)")
    return used


def tune_segmenter(model: str | Path, out: str | Path, gdxray_roots: tuple[str, ...] = (),
                   series: tuple[str, ...] | None = None, thetas: tuple[float, ...] = THETAS,
                   grows: tuple[int, ...] = GROWS, device: str | None = "cpu",
                   threads: int | None = None, tta: int | None = None,
                   extents: tuple[float, ...] = EXTENT_FRACTIONS,
                   joins: tuple[int, ...] = JOINS,
                   links: tuple[float, ...] = LINKS,
                   max_fa_per_image: float | None = None) -> dict[str, Any]:
    """Choose a finished segmenter's ``theta``, ``extent_fraction`` (of ``extents``),
    ``grow``, ``join`` (of ``joins``) and ``link`` (of ``links``) again on annotated tuning
    images (:func:`choose_settings`) and write the same weights with the new settings to
    ``out/model.safetensors`` + ``model.json`` (its card: the source's, with the new
    ``detection`` and ``tuning`` blocks and a ``retuned`` record of the source file and
    the command line). The tuning images are those of ``gdxray_roots`` (``series``: only
    these), by default of the roots and series the model trained on (its card's last
    lineage stage). ``tta``: the mirror views averaged (``DetectParams.tta``; default the
    source's), fixed before the others are chosen. ``max_fa_per_image``: also the report
    threshold ``min_score`` keeping at most that many false alarms per tuning image at the
    chosen settings (:func:`operating_point`; without it -1, all reported). Returns
    ``{"model", "theta", "grow", "extent_fraction", "join", "link", "tta", "tuning_ap",
    "min_score", "at_min_score", "before"}`` where ``before`` is the AP of the source's own
    settings on the same images (with ``tta``; None when they are not in the grid) and
    ``at_min_score`` the AP, defects found and false alarms per image at the report
    threshold (None without ``max_fa_per_image``)."""
    src, run = derived_run(model, out, "tune")
    dev = setup_device(device, threads)
    net, card = load_model(src, dev)
    if not isinstance(net, SegNet):
        raise InputError(f"{src}: a patch classifier; its detection settings are chosen by "
                         "experiments/tune_detection.py")
    used = _tuning_roots(src, card, gdxray_roots, series)
    sels = tuning_selections({r: ss for r, ss in used.items() if ss})
    if not sels:
        raise InputError(f"{src}: no annotated tuning images (odd, n % 4 == 1) with defect "
                         f"boxes in {', '.join(used) or 'the roots it trained on'}")
    base = (DetectParams.from_dict(card["detection"])
            if isinstance(card.get("detection"), dict) else SEGMENT_PARAMS)
    if tta is not None:
        try:
            base = replace(base, tta=int(tta))
        except ValueError as exc:
            raise InputError(f"--tta {tta}: {exc}") from None
    detection, tuning = settings_block(net, sels, base, dev, thetas, grows, extents, joins,
                                       links, max_fa_per_image)
    before = next((row["ap"] for row in tuning["grid"]
                   if row["theta"] == base.theta and row["grow"] == base.grow
                   and row["extent_fraction"] == base.extent_fraction
                   and row["join"] == base.join and row["link"] == base.link), None)
    new = {**card, "name": run.name, "detection": detection.to_dict(), "tuning": tuning,
           "retuned": {"from": init_record(src, card), "settings_before": base.to_dict(),
                       "tuning_ap_before": before, "command": command_line()}}
    new.pop("weights_sha256", None)
    run.mkdir(parents=True, exist_ok=True)
    save_tensors(run / "model.safetensors", model_state(net), new)
    return {"model": str(run / "model.safetensors"), "theta": detection.theta,
            "grow": detection.grow, "extent_fraction": detection.extent_fraction,
            "join": detection.join, "link": detection.link, "tta": detection.tta,
            "tuning_ap": tuning["ap"], "min_score": detection.min_score,
            "at_min_score": tuning.get("at_min_score"), "before": before}
