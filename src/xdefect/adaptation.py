"""Adapt a model to a new casting without labels (``xdefect adapt``).

The paper's promise, for the user with a new part and no defect examples: take a folder of
the new casting's radiographs, simulate defects on them (ellipsoidal voids with the
simulator's physics, :mod:`xdefect.simulate`), take clean background windows and the
windows where the source model fires (hard negatives, on the assumption that the images
hold few real defects), and fine-tune the source model on them. The result is a model
file with its card, ready for ``xdefect detect --model OUT/model.safetensors``; its
detection settings are the source model's.

Steps, each resumable (a finished step is not redone when the command is run again with
the same ``--out``):

1. ``OUT/work/root/Castings/C9999/``: the images staged as one GDXray-like series (links,
   numbered in file-name order; ``OUT/images.csv`` maps numbers to files);
2. ``OUT/work/data``: a ``wholeimage`` patch dataset of every image (``per_image``
   background and ``per_image`` simulated-defect windows each, ``hard_per_image`` hard
   negatives each; with surroundings when the source model was trained for the dense
   mode);
3. ``OUT/work/run``: the fine-tuning run (from the source weights, with augmentation);
4. ``OUT/model.safetensors`` + ``OUT/model.json``: the best epoch's weights and a card
   with the source's detection settings and an ``adaptation`` block (images, source,
   minutes, settings).

Hard negatives on an unlabelled folder are a bet: a real defect the source model already
finds becomes a "no defect" example. ``hard_per_image=0`` turns them off.

A segmenter source (:mod:`xdefect.segment`) is adapted by :func:`adapt_segmenter` instead:
no staging or patch dataset; the segmenter is fine-tuned on crops of the images with
simulated voids (``steps``, ``seg_lr``, ``source_regions``, ``ignore_theta``,
``rehearse``).
"""

from __future__ import annotations

import csv
import os
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from xdefect import gdxray
from xdefect.checkpoint import read_card, sidecar
from xdefect.crops import CropConfig, TrainImage, training_image
from xdefect.detector import Detector
from xdefect.errors import InputError
from xdefect.io import as_image, atomic_path, command_line, progress, write_json
from xdefect.patches import BuildArgs
from xdefect.pipelines import build_dataset, check_inputs
from xdefect.segment import SegNet
from xdefect.train import TrainConfig, train
from xdefect.train_segment import SegTrainConfig, train_segmenter

__all__ = ["SOURCE_REGIONS", "STAGED_SERIES", "AdaptConfig", "adapt", "adapt_segmenter",
           "source_images", "stage_images"]

#: the series name a folder of images is staged under
STAGED_SERIES = "C9999"
#: what a segmenter source's detections on the new images become (see AdaptConfig)
SOURCE_REGIONS = ("negative", "ignore", "target", "distill")


@dataclass(frozen=True)
class AdaptConfig:
    """Arguments of :func:`adapt` (recorded in the card). ``images``: files and folders
    of one casting's radiographs; ``out``: the output folder; ``source``: the model to
    start from (a path or a bundled name; default the bundled default)."""

    images: tuple[str, ...]
    out: str
    source: str | None = None
    per_image: int = 300
    hard_per_image: int = 40
    #: pair each hard negative with a simulated defect on the same spot
    hard_pairs: bool = False
    mu_range: tuple[float, float] = (0.004, 0.04)
    epochs: int = 3
    samples_per_epoch: int = 15000
    val_samples: int = 3000
    batch: int = 128
    lr: float = 2.5e-4
    augment: bool = True
    seed: int = 0
    threads: int | None = None
    command: str | None = None
    #: segmenter sources: fine-tuning steps (of 16 crops) and learning rate
    steps: int = 1500
    seg_lr: float = 5e-4
    #: segmenter sources: what the source's own detections on the images become:
    #: ``"distill"`` (the default, the best pooled AP on nine castings' tuning images in
    #: ``docs/results.md``: inside each detection's box the source's own probability is
    #: the soft target, so the model keeps what the source finds there), ``"ignore"``
    #: (left out of the loss, and no simulated defect placed on them), ``"negative"``
    #: (background, like every other pixel without a simulated defect) or ``"target"``
    #: (pseudo-labels: each detection's inscribed ellipse a defect target, the rest of its
    #: box ignored, a third of the crops centred on one, as real defects are in
    #: training); the source's settings, or ``ignore_theta``, decide what it detects
    source_regions: str = "distill"
    #: with ``source_regions`` other than ``"negative"``: the score above which the
    #: source's regions are taken (default: the source's own detection threshold)
    ignore_theta: float | None = None
    #: segmenter sources: GDXray roots whose annotated series' train images (real defects
    #: as targets) fill ``rehearse_share`` of every batch, so that the model keeps what it
    #: knew of real defects; theta is then chosen again on their tuning images
    rehearse: tuple[str, ...] = ()
    rehearse_share: float = 0.5

    def validate(self) -> None:
        """One :class:`InputError` naming the first bad setting."""
        if self.per_image < 1 or self.hard_per_image < 0:
            raise InputError("--per-image must be at least 1 and --hard-per-image not negative")
        if self.epochs < 1 or self.samples_per_epoch < 1 or self.val_samples < 1:
            raise InputError("--epochs, --samples-per-epoch and --val-samples must be positive")
        if self.batch < 1 or not 0 < self.lr < 1:
            raise InputError("--batch must be positive and --lr in (0, 1)")
        lo, hi = self.mu_range
        if not 0 < lo <= hi < 1:
            raise InputError(f"--mu {lo} {hi}: need 0 < low <= high < 1 (1/mm)")
        if self.steps < 1 or not 0 < self.seg_lr < 1:
            raise InputError("--steps must be positive and --seg-lr in (0, 1)")
        if self.ignore_theta is not None and not -1 <= self.ignore_theta < 1:
            raise InputError(f"--ignore-theta {self.ignore_theta}: must lie in [-1, 1)")
        if self.ignore_theta is not None and self.source_regions == "negative":
            raise InputError("--ignore-theta needs --source-regions ignore, target or "
                             "distill")
        if not 0 <= self.rehearse_share < 1:
            raise InputError(f"--rehearse-share {self.rehearse_share}: must lie in [0, 1)")
        if self.source_regions not in SOURCE_REGIONS:
            raise InputError(f"--source-regions {self.source_regions!r}: expected "
                             f"{' or '.join(SOURCE_REGIONS)}")


def stage_images(files: list[Path], root: Path) -> list[dict[str, Any]]:
    """Link ``files`` as series :data:`STAGED_SERIES` of a GDXray-like ``root``, numbered
    1, 2, ... in order; returns the rows ``{number, file}``. An existing staging with the
    same files is kept; another one is refused."""
    d = root / "Castings" / STAGED_SERIES
    rows = _image_rows(files)
    d.mkdir(parents=True, exist_ok=True)
    for r, f in zip(rows, files, strict=True):
        link = d / f"{STAGED_SERIES}_{r['number']:04d}{f.suffix.lower()}"
        if link.is_symlink() or link.exists():
            if link.resolve() != f.resolve():
                raise InputError(f"{root.parent.parent}: adapted other images before; "
                                 "use another --out")
            continue
        os.symlink(f.resolve(), link)
    return rows


def _card(cfg: AdaptConfig, run: Path, source: Detector, n_images: int, minutes: float
          ) -> dict[str, Any]:
    card = read_card(run / "best.safetensors")
    name = source.card.get("name") or Path(source.path).stem
    card["name"] = f"{name}-adapted"
    card["description"] = (f"{name} adapted without labels to {n_images} radiographs "
                           f"of a new casting ({', '.join(cfg.images)})")
    card["detection"] = source.params.to_dict()
    card["adaptation"] = {"source": str(source.path), "images": n_images,
                          "minutes": round(minutes, 2), "settings": asdict(cfg)}
    return card


def adapt(cfg: AdaptConfig) -> dict[str, Any]:
    """Adapt ``cfg.source`` to the images of ``cfg.images`` (see the module docstring);
    returns ``{"model", "images", "patches", "minutes", "best_epoch"}``."""
    cfg.validate()
    if cfg.command is None:
        cfg = replace(cfg, command=command_line())
    out = Path(cfg.out)
    model_file = out / "model.safetensors"
    if model_file.exists():
        raise InputError(f"{out}: holds an adapted model already (use another --out)")
    files = check_inputs(list(cfg.images))
    if len(files) < 2:
        raise InputError("adapt needs at least 2 radiographs of the casting")
    source = Detector.load(cfg.source, device="cpu", threads=cfg.threads)
    if isinstance(source.model, SegNet):
        return adapt_segmenter(cfg, source, files)
    if source.model is None:
        raise InputError(f"--from {source.path}: an ONNX graph cannot be fine-tuned; give the "
                         ".safetensors model it was exported from")
    dense = bool(source.card.get("context_margin"))
    t0 = time.perf_counter()
    work = out / "work"
    rows = stage_images(files, work / "root")
    data, run = work / "data", work / "run"
    if not (data / "manifest.json").is_file():
        build_dataset(BuildArgs(
            gdxray=str(work / "root"), out=str(data), series=[STAGED_SERIES],
            all_images=True, per_image=cfg.per_image, mu_range=cfg.mu_range, seed=cfg.seed,
            hard_negatives=cfg.hard_per_image * len(files) if cfg.hard_per_image else 0,
            hard_model=str(source.path) if cfg.hard_per_image else None,
            hard_mode=source.params.mode, hard_stride=max(source.params.stride, 8),
            hard_pairs=cfg.hard_pairs and bool(cfg.hard_per_image),
            context=32 if dense else 0, force=data.exists(), command=cfg.command))
    if not (run / "done").is_file():
        train(TrainConfig(
            data=str(data), out=str(run), arch=source.model.arch.name,
            epochs=cfg.epochs, batch=cfg.batch, lr=cfg.lr,
            seed=cfg.seed, samples_per_epoch=cfg.samples_per_epoch,
            val_samples=cfg.val_samples, init=str(source.path), context=dense,
            augment=cfg.augment, threads=cfg.threads, command=cfg.command,
            resume=(run / "last.safetensors").is_file()))
        (run / "done").write_text("")
    minutes = (time.perf_counter() - t0) / 60
    _write_images_csv(out / "images.csv", rows)
    card = _card(cfg, run, source, len(files), minutes)
    write_json(sidecar(model_file), card)  # the card first: the weights mark completion
    with atomic_path(model_file) as tmp:
        shutil.copyfile(run / "best.safetensors", tmp)
    return {"model": str(model_file), "images": len(files),
            "patches": card.get("data_counts"), "minutes": round(minutes, 2),
            "best_epoch": card.get("epoch")}  # the best weights' card records their epoch


def adapt_segmenter(cfg: AdaptConfig, source: Detector, files: list[Path]) -> dict[str, Any]:
    """:func:`adapt` for a segmenter source: fine-tune it for ``cfg.steps`` steps on crops
    of the new images with simulated voids (the source's own crop settings, real-defect
    targets off: the images have no labels), every other pixel taken as background; the
    source's detections on the images are background too, or, with ``source_regions``
    ``"ignore"``, left out of the loss (those above ``ignore_theta``), or, with
    ``"target"``, pseudo-labels (each detection's inscribed ellipse a target, as a real
    defect's box is in training), or, with ``"distill"``, the source's probability inside
    each detection's box is the soft target. With ``rehearse``,
    crops of those GDXray roots' annotated train images (real defects as targets) fill
    ``rehearse_share`` of every batch and theta is chosen again on their tuning images.
    Writes ``OUT/model.safetensors`` + card (the source's detection settings unless
    rehearsal chose theta, an ``adaptation`` block); resumable (``OUT/work/run`` holds the
    training checkpoint). Measured per series in ``docs/results.md`` ("Adaptation without
    labels")."""
    assert isinstance(source.model, SegNet)
    out = Path(cfg.out)
    model_file = out / "model.safetensors"
    run = out / "work" / "run"
    t0 = time.perf_counter()
    tc = (source.card.get("train_config") or {}).get("crops") or {}
    crops = replace(CropConfig.from_dict(tc),
                    real=cfg.source_regions == "target")
    images, regions = source_images(cfg, source, files, crops.margin)
    rehearsal = {r: [s for s in gdxray.list_series(r)
                     if gdxray.load_ground_truth(r, s).annotated] for r in cfg.rehearse}
    if not (run / "model.safetensors").is_file():
        train_segmenter(SegTrainConfig(
            out=str(run), images=tuple(str(f) for f in files), init=str(source.path),
            crops=crops, steps=cfg.steps, batch=16,
            lr=cfg.seg_lr, augment=cfg.augment, seed=cfg.seed, choose_theta=bool(rehearsal),
            rehearse_share=cfg.rehearse_share, threads=cfg.threads, device="cpu",
            command=cfg.command, resume=(run / "last.safetensors").is_file()),
            images=images, rehearsal=rehearsal)
    minutes = (time.perf_counter() - t0) / 60
    card = read_card(run / "model.safetensors")
    name = source.card.get("name") or Path(source.path).stem
    card["name"] = f"{name}-adapted"
    card["description"] = (f"{name} adapted without labels to {len(files)} radiographs "
                           f"of a new casting ({', '.join(cfg.images)})")
    if not card.get("tuning"):  # no rehearsal: the source's settings
        card["detection"] = source.params.to_dict()
    card["adaptation"] = {"source": str(source.path), "images": len(files),
                          "minutes": round(minutes, 2), "settings": asdict(cfg),
                          "source_regions_found": regions,  # settings say what they became
                          "ignored_source_regions": (regions if cfg.source_regions == "ignore"
                                                     else 0)}
    _write_images_csv(out / "images.csv", _image_rows(files))
    write_json(sidecar(model_file), card)  # the card first: the weights mark completion
    with atomic_path(model_file) as tmp:
        shutil.copyfile(run / "model.safetensors", tmp)
    return {"model": str(model_file), "images": len(files),
            "patches": {"crops": card["training"]["crops_seen"]},
            "minutes": round(minutes, 2), "best_epoch": None}


def source_images(cfg: AdaptConfig, source: Detector, files: list[Path], margin: int
                  ) -> tuple[list[TrainImage], int]:
    """The new images as training images, with what the source's detections on them
    become (``cfg.source_regions``): their boxes (``ignore``: left out; ``target``:
    pseudo-labels; ``distill``: the source's probability ``(score + 1) / 2`` inside them
    as soft targets), none for ``negative``; and how many regions the source found."""
    images, regions = [], 0
    det = source if cfg.ignore_theta is None else source.with_params(theta=cfg.ignore_theta)
    for f in progress(iterable=files, desc="adapt: reading images", unit="image"):
        img = as_image(f)
        boxes, soft = None, None
        if cfg.source_regions != "negative":
            dets, sm = det.run(img)
            regions += len(dets)
            boxes = np.asarray([d.box for d in dets], int).reshape(-1, 4)
            if cfg.source_regions == "distill":
                p = np.clip((np.asarray(sm.values, np.float32) + 1) / 2, 0, 1)
                soft = np.zeros(img.shape, np.float32)
                for x1, y1, x2, y2 in boxes:
                    soft[y1:y2, x1:x2] = p[y1:y2, x1:x2]
        images.append(training_image(img, boxes, margin, str(f), soft=soft))
    return images, regions


def _image_rows(files: list[Path]) -> list[dict[str, Any]]:
    """``OUT/images.csv``'s rows: the images numbered 1, 2, ... in order."""
    return [{"number": i, "file": str(f.resolve())} for i, f in enumerate(files, start=1)]


def _write_images_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["number", "file"])
        w.writeheader()
        w.writerows(rows)
