"""Training and testing of patch classifiers on an xdefect patch dataset.

The loop: each epoch visits the ``train`` split in a seeded random order (or a seeded
random sample of ``samples_per_epoch`` of it), one optimiser step per batch, then evaluates
the ``val`` split (loss, accuracy, precision and recall of 'defect'). After every complete
epoch it writes, each atomically, ``RUN/metrics.csv`` (one row per epoch),
``RUN/last.safetensors`` + ``RUN/last.json`` (model, optimiser state, epoch, early-stopping
state) and, when the validation loss improved, ``RUN/best.safetensors`` + ``RUN/best.json``.
``resume=True`` continues from ``last`` after its last complete epoch: a run killed at
any moment loses at most the epoch in progress.

Determinism: the order of each epoch and the dropout masks derive from ``(seed, epoch)``,
so a resumed run continues as the uninterrupted one would, and the same seed and thread
count reproduce the metrics.

Distributed: under ``torchrun`` (``WORLD_SIZE`` > 1) the model is wrapped in
DistributedDataParallel (gloo on CPU, nccl on CUDA); each rank takes every
``world_size``-th sample of the epoch's order, validation sums are all-reduced, and rank
0 alone writes files.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from xdefect import __version__, seeds
from xdefect.augment import AugmentParams, augment
from xdefect.checkpoint import (
    CHECKPOINT_FORMAT,
    card_lineage,
    init_record,
    load_model,
    load_tensors,
    model_state,
    optimizer_tensors,
    prefixed,
    read_card,
    restore_optimizer,
    save_model,
    save_tensors,
    unprefixed,
)
from xdefect.dataset import Dataset, open_dataset
from xdefect.errors import InputError
from xdefect.io import command_line, progress, sha256_file, write_csv
from xdefect.models import (
    INFERENCE_BATCH,
    NORMALISATION,
    ArchConfig,
    PatchCNN,
    bf16_native,
    create_model,
    get_arch,
    inference_copy,
    normalise,
    normalise_float,
    setup_device,
)

__all__ = ["METRIC_COLUMNS", "RESUME_CHECKED", "TrainConfig", "data_stage", "predict",
           "scores_from_confusion", "test_model", "train"]

METRIC_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "val_precision",
                  "val_recall", "lr", "seconds", "patches_per_s")


#: settings a resumed run must share with the run it continues, unless named in
#: ``TrainConfig.allow_change`` (``--allow-change``)
RESUME_CHECKED = ("lr", "batch", "seed", "samples_per_epoch", "val_samples")


@dataclass
class TrainConfig:
    """Arguments of :func:`train` (recorded in the model card)."""

    data: str
    out: str
    arch: str = "xnet2"
    epochs: int = 20
    batch: int = 256
    lr: float = 1e-3
    optimizer: str = "adam"
    patience: int = 4
    seed: int = 0
    threads: int | None = None
    device: str | None = None
    resume: bool = False
    samples_per_epoch: int | None = None
    val_samples: int | None = None
    init: str | None = None
    #: the command line that started the run (default: this process's, captured)
    command: str | None = None
    #: weights and inputs in channels_last memory format (oneDNN's fastest here)
    channels_last: bool = True
    #: "float32" (the default: the same run on any machine), "bfloat16" (autocast) or
    #: "auto": bfloat16 where the device computes it natively
    #: (:func:`xdefect.models.bf16_native`), else float32
    precision: str = "float32"
    #: train on the dataset's windows with surroundings (``context.npy``): the loss sees
    #: each window as the dense score map computes it (``docs/detection.md``)
    context: bool = False
    #: augment each training window (flips, gamma, contrast, grey level, blur, noise;
    #: :mod:`xdefect.augment` with its default ranges, recorded in the card)
    augment: bool = False
    #: settings of :data:`RESUME_CHECKED` that a resume may change (the rest must match)
    allow_change: tuple[str, ...] = ()


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _dist_init(device: str) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return _Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def data_stage(ds: Dataset, manifest_sha: str) -> dict:
    """The data half of a lineage stage: what a dataset folder's manifest says of itself."""
    m = ds.manifest
    return {"data": str(ds.folder), "data_manifest_sha256": manifest_sha,
            "data_command": m.get("command"), "data_protocol": m.get("protocol"),
            "data_mix": m.get("mix"), "data_series": m.get("series"),
            "data_image_splits": m.get("image_splits"),
            "data_sources": (m.get("counts") or {}).get("source"),
            "data_n": m.get("n"), "gdxray_root": m.get("gdxray_root"),
            "hard_model_sha256": m.get("hard_model_sha256"),
            "gan_generator_sha256": m.get("gan_generator_sha256"),
            "gan_image_splits": m.get("gan_image_splits")}


def _confusion(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    """2x2 confusion matrix, rows = true label, columns = predicted."""
    cm = np.zeros((2, 2), np.int64)
    np.add.at(cm, (y.astype(int), pred.astype(int)), 1)
    return cm


def scores_from_confusion(cm: np.ndarray) -> dict:
    tn, fp, fn, tp = (int(v) for v in cm.ravel())
    n = tn + fp + fn + tp
    return {"accuracy": (tp + tn) / n if n else float("nan"),
            "precision": tp / (tp + fp) if tp + fp else 0.0,
            "recall": tp / (tp + fn) if tp + fn else 0.0,
            "confusion": [[tn, fp], [fn, tp]], "n": n}


@torch.no_grad()
def predict(model: torch.nn.Module, patches: np.ndarray, batch: int = INFERENCE_BATCH,
            device: str | torch.device = "cpu", desc: str | None = None) -> np.ndarray:
    """Softmax outputs ``(N, 2)`` (``y0``, ``y1``) of uint8 patches ``(N, 32, 32)``."""
    net = inference_copy(model).to(device)
    out = np.empty((len(patches), 2), np.float32)
    bar = progress(total=len(patches), desc=desc or "predict", unit="patch")
    for s in range(0, len(patches), batch):
        x = normalise(np.asarray(patches[s:s + batch])).to(device)
        x = x.contiguous(memory_format=torch.channels_last)
        out[s:s + batch] = torch.softmax(net(x), dim=1).cpu().numpy()
        bar.update(min(batch, len(patches) - s))
    bar.close()
    return out


def _inputs(ds: Dataset, b: np.ndarray, cfg: TrainConfig, device: str,
            rng: np.random.Generator | None = None) -> torch.Tensor:
    """The normalised patches at positions ``b`` (with their surroundings under
    ``cfg.context``), in the run's memory format; augmented (:func:`augment`) when ``rng``
    is given and ``cfg.augment`` is set."""
    raw = (ds.context if cfg.context else ds.patches)[b]
    if cfg.augment and rng is not None:
        x01 = torch.as_tensor(np.asarray(raw), device=device).to(torch.float32)[:, None] / 255
        x = normalise_float(augment(x01, AugmentParams(), rng))
    else:
        x = normalise(raw).to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if cfg.channels_last else x


def _autocast(device: str, precision: str) -> torch.autocast:
    return torch.autocast("cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16,
                          enabled=precision == "bfloat16")


def _precision(cfg: TrainConfig, device: str) -> str:
    if cfg.precision not in ("auto", "float32", "bfloat16"):
        raise InputError(f"--precision {cfg.precision!r}: expected auto, float32 or bfloat16")
    if cfg.precision == "auto":
        return "bfloat16" if bf16_native(device) else "float32"
    return cfg.precision


def _evaluate(model, ds: Dataset, idx: np.ndarray, cfg: TrainConfig, device, dist: _Dist,
              precision: str = "float32") -> tuple[float, np.ndarray]:
    """Mean loss and confusion matrix over ``idx`` (sharded across ranks, all-reduced)."""
    model.eval()
    mine = idx[dist.rank::dist.world]
    loss_sum = 0.0
    cm = np.zeros((2, 2), np.int64)
    with torch.no_grad():
        for s in range(0, len(mine), cfg.batch * 4):
            b = np.sort(mine[s:s + cfg.batch * 4])
            x = _inputs(ds, b, cfg, device)
            y = torch.as_tensor(ds.labels[b].astype(np.int64), device=device)
            with _autocast(device, precision):
                logits = model(x).float()
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            cm += _confusion(logits.argmax(1).cpu().numpy(), ds.labels[b])
    if dist.world > 1:
        import torch.distributed as tdist

        t = torch.tensor([loss_sum, *cm.ravel().tolist()], dtype=torch.float64)
        tdist.all_reduce(t)
        loss_sum, cm = float(t[0]), t[1:].numpy().astype(np.int64).reshape(2, 2)
    n = int(cm.sum())
    return (loss_sum / n if n else float("nan")), cm


def _optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    raise InputError(f"--optimizer {name!r}: expected adam or rmsprop")


@dataclass
class _Progress:
    """Where a run stands: the next epoch, early-stopping state, the metrics so far."""

    start_epoch: int = 1
    best_loss: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    rows: list[dict] = field(default_factory=list)

    def record(self, epoch: int, row: dict) -> bool:
        """Add an epoch's metrics; returns whether its validation loss is the best yet."""
        self.rows.append(row)
        improved = not (row["val_loss"] >= self.best_loss)  # NaN (no val split): improved
        if improved:
            self.best_loss, self.best_epoch, self.bad_epochs = row["val_loss"], epoch, 0
        else:
            self.bad_epochs += 1
        return improved

    def to_dict(self, epoch: int) -> dict:
        return {"epoch": epoch, "best_val_loss": self.best_loss, "best_epoch": self.best_epoch,
                "bad_epochs": self.bad_epochs, "metrics": self.rows}


def _check_config(cfg: TrainConfig) -> ArchConfig:
    try:
        arch = get_arch(cfg.arch)
    except KeyError as exc:
        raise InputError(f"--arch: {exc.args[0]}") from None
    if cfg.epochs < 1 or cfg.batch < 1 or not cfg.lr > 0 or not math.isfinite(cfg.lr):
        raise InputError("--epochs and --batch must be at least 1 and --lr positive")
    return arch


def _indices(ds: Dataset, cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """The patch positions trained on and validated on (a fixed seeded subset of the
    ``val`` split with ``val_samples``)."""
    train_idx, val_idx = ds.indices("train"), ds.indices("val")
    if cfg.context and ds.context is None:
        raise InputError(f"--context: {cfg.data} holds no context.npy (build it with "
                         "`xdefect dataset build --context 32`)")
    pool = 1 << len(get_arch(cfg.arch).p)
    if cfg.context and ds.margin % pool:
        raise InputError(f"--context: surroundings of {ds.margin} px are not a multiple of "
                         f"{pool} px, the pooling of {cfg.arch}")
    if len(train_idx) == 0:
        raise InputError(f"{cfg.data}: the dataset has no 'train' split")
    if cfg.val_samples and len(val_idx) > cfg.val_samples:
        vrng = seeds.stream(cfg.seed, seeds.VAL_SUBSET)
        val_idx = np.sort(vrng.choice(val_idx, cfg.val_samples, replace=False))
    return train_idx, val_idx


def _initial_model(cfg: TrainConfig, arch: ArchConfig, stage: dict, device: str,
                   resuming: bool) -> tuple[PatchCNN, list[dict]]:
    """A fresh model (seeded), or the ``init`` model's weights; returns it and the
    lineage so far (the init model's stages, then this run's ``stage``)."""
    torch.manual_seed(cfg.seed)
    model = create_model(arch).to(device)
    if not cfg.init or resuming:
        return model, [stage]
    init_model, init_card = load_model(cfg.init)
    if init_card["arch"] != arch.to_dict():
        raise InputError(f"--init {cfg.init}: architecture {init_card['arch']['name']} "
                         f"does not match --arch {cfg.arch}")
    model.load_state_dict(init_model.state_dict())
    stage["init"] = init_record(cfg.init, init_card)
    return model, card_lineage(init_card) + [stage]


def _resume(last: Path, model: PatchCNN, opt: torch.optim.Optimizer, manifest_sha: str,
            cfg: TrainConfig) -> tuple[_Progress, list[dict] | None]:
    """Restore the model, the optimiser and the progress of ``last``; returns the
    progress and the lineage recorded there."""
    card = read_card(last, (CHECKPOINT_FORMAT,))
    if card.get("data_manifest_sha256") != manifest_sha:
        raise InputError(f"{last}: was trained on another dataset than {cfg.data}")
    saved = card.get("train_config") or {}
    for key in ("precision", "channels_last", "context", "augment", "arch", "optimizer"):
        if key in saved and saved[key] != getattr(cfg, key):
            raise InputError(f"{last}: was trained with {key} {saved[key]!r}, not "
                             f"{getattr(cfg, key)!r}: resume with the same setting")
    unknown = sorted(set(cfg.allow_change) - set(RESUME_CHECKED))
    if unknown:
        raise InputError(f"--allow-change {' '.join(unknown)}: only {', '.join(RESUME_CHECKED)} "
                         "may change on resume")
    changed = [k for k in RESUME_CHECKED if k in saved and saved[k] != getattr(cfg, k)]
    refused = [k for k in changed if k not in cfg.allow_change]
    if refused:
        diff = ", ".join(f"{k} {saved[k]!r} -> {getattr(cfg, k)!r}" for k in refused)
        raise InputError(f"{last}: resumed with other settings ({diff}); resume with the same "
                         f"ones, or name them with --allow-change {' '.join(refused)}")
    tensors = load_tensors(last)
    model.load_state_dict(unprefixed("model", tensors))
    restore_optimizer(opt, tensors, card["optimizer"])
    for group in opt.param_groups:  # the optimiser follows an allowed new learning rate
        group["lr"] = cfg.lr
    st = card["training_state"]
    prog = _Progress(st["epoch"] + 1, st["best_val_loss"], st["best_epoch"], st["bad_epochs"],
                     st["metrics"])
    return prog, card.get("lineage")


def _train_epoch(net: torch.nn.Module, opt: torch.optim.Optimizer, ds: Dataset,
                 train_idx: np.ndarray, cfg: TrainConfig, epoch: int, device: str,
                 dist: _Dist, precision: str) -> tuple[float, float, int]:
    """One epoch of optimiser steps in the epoch's seeded order; returns the mean loss,
    the accuracy and the number of patches this rank saw."""
    rng = seeds.epoch_order(cfg.seed, epoch)
    order = rng.permutation(train_idx)
    if cfg.samples_per_epoch and cfg.samples_per_epoch < len(order):
        order = order[: cfg.samples_per_epoch]
    torch.manual_seed(seeds.torch_seed(cfg.seed, seeds.TRAIN_DROPOUT, epoch, dist.rank))
    aug = seeds.stream(cfg.seed, seeds.TRAIN_AUGMENT, epoch, dist.rank)
    mine = order[dist.rank::dist.world]
    nb = len(mine) // cfg.batch if len(mine) >= cfg.batch else 1
    if dist.world > 1:  # every rank must take the same number of steps
        nb = len(order) // dist.world // cfg.batch or 1
    net.train()
    loss_sum, correct, seen = 0.0, 0, 0
    bar = progress(total=nb, desc=f"epoch {epoch}/{cfg.epochs}", unit="batch",
                   hidden=not dist.main)
    for bi in range(nb):
        b = np.sort(mine[bi * cfg.batch:(bi + 1) * cfg.batch])
        x = _inputs(ds, b, cfg, device, aug)
        y = torch.as_tensor(ds.labels[b].astype(np.int64), device=device)
        opt.zero_grad(set_to_none=True)
        with _autocast(device, precision):
            logits = net(x).float()
        loss = F.cross_entropy(logits, y)
        loss.backward()
        opt.step()
        loss_sum += float(loss.detach()) * len(b)
        correct += int((logits.argmax(1) == y).sum())
        seen += len(b)
        bar.update()
        if bi % 20 == 0:
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}")
    bar.close()
    return loss_sum / max(seen, 1), correct / max(seen, 1), seen


def _epoch_row(epoch: int, lr: float, train_loss: float, train_acc: float,
               val_loss: float, sc: dict, seconds: float, rate: float) -> dict:
    """One row of ``metrics.csv``; ``lr``: the optimiser's learning rate in the epoch."""
    return {"epoch": epoch, "train_loss": round(train_loss, 6), "train_acc": round(train_acc, 6),
            "val_loss": round(val_loss, 6), "val_acc": round(sc["accuracy"], 6),
            "val_precision": round(sc["precision"], 6), "val_recall": round(sc["recall"], 6),
            "lr": lr, "seconds": round(seconds, 2), "patches_per_s": round(rate, 1)}


def _save_epoch(out: Path, model: PatchCNN, opt: torch.optim.Optimizer, card: dict,
                prog: _Progress, epoch: int, improved: bool) -> None:
    """Write ``best`` (when improved), ``metrics.csv`` and ``last`` (to resume)."""
    if improved:
        save_model(out / "best.safetensors", model, card)
    opt_t, opt_s = optimizer_tensors(opt)
    tensors = {**prefixed("model", model_state(model)), **opt_t}
    last_card = {"format": CHECKPOINT_FORMAT, "arch": model.arch.to_dict(),
                 "normalisation": NORMALISATION, **card, "optimizer": opt_s,
                 "training_state": prog.to_dict(epoch)}
    write_csv(out / "metrics.csv", prog.rows, METRIC_COLUMNS)
    save_tensors(out / "last.safetensors", tensors, last_card)


def _base_card(ds: Dataset, manifest_sha: str, cfg: TrainConfig, device: str, dist: _Dist,
               precision: str, lineage: list[dict]) -> dict:
    """What every card of the run records besides its epoch and metrics."""
    return {
        "data": str(ds.folder), "data_manifest_sha256": manifest_sha,
        "data_counts": ds.manifest.get("counts"), "data_protocol": ds.manifest.get("protocol"),
        "data_mix": ds.manifest.get("mix"), "seed": cfg.seed, "xdefect_version": __version__,
        "train_config": asdict(cfg), "threads": torch.get_num_threads(), "device": str(device),
        "world_size": dist.world, "precision": precision, "channels_last": cfg.channels_last,
        "context_margin": ds.margin if cfg.context else 0,
        "augment": AugmentParams().to_dict() if cfg.augment else None,
        "command": lineage[-1]["command"], "lineage": lineage}


def _wrap(model: PatchCNN, dist: _Dist, device: str) -> torch.nn.Module:
    if dist.world <= 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [dist.local_rank] if device.startswith("cuda") else None
    return DistributedDataParallel(model, device_ids=ids)


def train(cfg: TrainConfig, on_epoch: Callable[[dict], None] | None = None) -> dict:
    """Train (or resume) a run; returns the final state (best epoch, metrics, paths).

    ``on_epoch`` is called on rank 0 with each epoch's metrics row once its files are
    written (the CLI prints it as a JSON line)."""
    arch = _check_config(cfg)
    ds = open_dataset(cfg.data)
    train_idx, val_idx = _indices(ds, cfg)
    device = setup_device(cfg.device, cfg.threads)
    dist = _dist_init(device)
    if device.startswith("cuda") and dist.world > 1:
        device = f"cuda:{dist.local_rank}"
    out = Path(cfg.out)
    last = out / "last.safetensors"
    resuming = cfg.resume and last.exists()
    if dist.main:
        if last.exists() and not resuming:
            raise InputError(f"{out}: holds a run already (use --resume to continue it, or "
                             "another --out)")
        out.mkdir(parents=True, exist_ok=True)
    manifest_sha = sha256_file(ds.folder / "manifest.json")
    stage = {"run": str(out), "command": cfg.command if cfg.command is not None
             else command_line(), **data_stage(ds, manifest_sha),
             "init": None, "train_config": asdict(cfg)}
    model, lineage = _initial_model(cfg, arch, stage, device, resuming)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    precision = _precision(cfg, device)
    opt = _optimizer(cfg.optimizer, model.parameters(), cfg.lr)
    prog = _Progress()
    if resuming:
        prog, recorded = _resume(last, model, opt, manifest_sha, cfg)
        lineage = recorded or lineage
    net = _wrap(model, dist, device)
    base_card = _base_card(ds, manifest_sha, cfg, device, dist, precision, lineage)
    stopped = "epochs"
    for epoch in range(prog.start_epoch, cfg.epochs + 1):
        if prog.bad_epochs >= cfg.patience:
            stopped = "early"
            break
        t0 = time.perf_counter()
        tl, ta, seen = _train_epoch(net, opt, ds, train_idx, cfg, epoch, device, dist,
                                    precision)
        train_time = time.perf_counter() - t0
        val_loss, cm = _evaluate(net, ds, val_idx, cfg, device, dist, precision) if len(
            val_idx) else (
            float("nan"), np.zeros((2, 2), np.int64))
        sc = scores_from_confusion(cm)
        row = _epoch_row(epoch, opt.param_groups[0]["lr"], tl, ta, val_loss, sc,
                         time.perf_counter() - t0, seen * dist.world / train_time)
        improved = prog.record(epoch, row)
        if dist.main:
            card = {**base_card, "epoch": epoch, "metrics": row,
                    "val_confusion": sc["confusion"]}
            _save_epoch(out, model, opt, card, prog, epoch, improved)
            if on_epoch is not None:
                on_epoch(row)
    if dist.world > 1:
        import torch.distributed as tdist

        tdist.barrier()
        tdist.destroy_process_group()
    return {"out": str(out), "best_epoch": prog.best_epoch, "best_val_loss": prog.best_loss,
            "epochs_run": len(prog.rows), "stopped": stopped, "metrics": prog.rows}


def test_model(model_path: str, data: str, split: str = "test", batch: int = 1024) -> dict:
    """Accuracy, precision, recall and confusion matrix of a model on a dataset split."""
    model, card = load_model(model_path)
    if not isinstance(model, PatchCNN):
        raise InputError(f"{model_path}: a segmenter; `test` measures patch classifiers "
                         "(use `evaluate` on images)")
    ds = open_dataset(data)
    idx = ds.indices(split)
    if len(idx) == 0:
        raise InputError(f"{data}: the dataset has no '{split}' split "
                         f"(has: {', '.join(sorted(set(ds.split.tolist())))})")
    probs = predict(model, ds.patches[idx], batch=batch, desc=f"test {split}")
    cm = _confusion(probs.argmax(1), ds.labels[idx])
    out = {"model": str(model_path), "data": str(data), "split": split,
           "arch": card["arch"]["name"], **scores_from_confusion(cm)}
    by_source = {}
    for src in sorted(set(ds.source[idx].tolist())):
        m = ds.source[idx] == src
        by_source[src] = {"n": int(m.sum()),
                          "accuracy": float((probs[m].argmax(1) == ds.labels[idx][m]).mean())}
    out["by_source"] = by_source
    return out
