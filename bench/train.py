"""Benchmark of xnet2 training throughput: memory layouts and precisions side by side,
and the real training loop against the old settings, in the same run.

``raw``: forward, backward and optimiser step of xnet2 on one batch of tensors already in
memory, for float32 in the default layout (the reference: xdefect before this benchmark's
issue), float32 ``channels_last`` (the default now), and bfloat16 autocast with
``channels_last`` (what ``--precision auto`` picks where the CPU computes bfloat16 natively;
elsewhere it is emulated and timed over a few steps only). ``loop``: the real training loop
(``xdefect.train.train``: seeded shuffling, gathering batches from the memory-mapped
``patches.npy``, normalisation, steps, validation) for one epoch of ``--patches`` patches,
with the default settings and with the reference settings, from the same seed: patches per
second and validation accuracy. ``conv_share_of_step``: the convolutions' share of the
default step's time (profiler), and ``conv_only_speedup_ceiling``: the speed-up over the
reference if every other operation took no time (float32 arithmetic kept: the ceiling of
layout, fusion and compilation work on this CPU). Without ``--data`` it builds a small
dataset (from GDXray when present, else from synthetic radiographs). Prints one JSON line.

    .venv/bin/python bench/train.py [--data DIR] [--batch 256] [--patches 20000] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from xdefect import gdxray
from xdefect.io import write_image
from xdefect.models import bf16_native, create_model
from xdefect.patches import BuildArgs
from xdefect.pipelines import build_dataset
from xdefect.simulate import phantom
from xdefect.train import TrainConfig, train


def raw_rate(batch: int, steps: int, channels_last: bool, bf16: bool) -> float:
    torch.manual_seed(0)
    model = create_model("xnet2").train()
    x = torch.randn(batch, 1, 32, 32)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    y = torch.randint(0, 2, (batch,))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x).float(), y)
        loss.backward()
        opt.step()
        float(loss.detach())

    for _ in range(3):  # warm-up
        step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - t)


def conv_share(batch: int, steps: int = 10) -> dict:
    """Where the default training step's time goes (float32, channels_last): the profiler's
    self time of the convolutions (forward and backward) against the whole step, and the
    rate the step would reach if everything else took no time at all (the ceiling of any
    speed-up that keeps the arithmetic)."""
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    model = create_model("xnet2").train().to(memory_format=torch.channels_last)
    x = torch.randn(batch, 1, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (batch,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    for _ in range(3):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    conv = sum(e.self_cpu_time_total for e in events
               if e.key in ("aten::mkldnn_convolution", "aten::convolution_backward"))
    return {"conv_share_of_step": round(conv / total, 3),
            "conv_only_patches_per_s": round(batch * steps / (conv / 1e6), 1)}


def small_dataset(out: Path) -> str:
    """A dataset of about 9,600 patches: GDXray's C0021 train images when present, else
    synthetic radiographs laid out as a GDXray root."""
    root = gdxray.default_root()
    if not (root / "Castings" / "C0021").is_dir():
        root = out / "root"
        d = root / "Castings" / "C0021"
        d.mkdir(parents=True)
        rows = []
        for i in range(1, 17):
            ph = phantom(n_defects=3, seed=i)
            write_image(d / f"C0021_{i:04d}.png", ph.image)
            rows += [f"{i} {x1 + 1} {x2} {y1 + 1} {y2}" for x1, y1, x2, y2 in ph.boxes]
        (d / "ground_truth.txt").write_text("\n".join(rows) + "\n")
    build_dataset(BuildArgs(gdxray=str(root), out=str(out / "data"), series=["C0021"],
                            per_image=600, limit_images=8, workers=1))
    return f"{root} C0021 (8 train images, 600 + 600 patches each)"


def loop(data: Path, work: Path, batch: int, patches: int, threads: int | None,
         channels_last: bool, precision: str) -> dict:
    res = train(TrainConfig(data=str(data), out=str(work), epochs=1, batch=batch,
                            samples_per_epoch=patches, threads=threads, device="cpu",
                            channels_last=channels_last, precision=precision))
    row = res["metrics"][0]
    return {"patches_per_s": row["patches_per_s"], "val_acc": row["val_acc"],
            "val_loss": row["val_loss"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None, help="a dataset folder (default: build one)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--patches", type=int, default=20000, help="patches of the timed loop epoch")
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    steps = max(a.patches // a.batch, 5)
    native = bf16_native("cpu")
    tmp = Path(tempfile.mkdtemp(prefix="xdefect-bench-train-"))
    try:
        data, source = (a.data, str(a.data)) if a.data else (tmp / "data", small_dataset(tmp))
        raw = {"float32": raw_rate(a.batch, steps, False, False),
               "float32_channels_last": raw_rate(a.batch, steps, True, False),
               "bfloat16_channels_last": raw_rate(a.batch, steps if native else 3, True, True)}
        share = conv_share(a.batch)
        new = loop(data, tmp / "new", a.batch, steps * a.batch, a.threads, True, "auto")
        old = loop(data, tmp / "old", a.batch, steps * a.batch, a.threads, False, "float32")
        raw["float32"] = (raw["float32"] + raw_rate(a.batch, steps, False, False)) / 2  # drift
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    best_raw = raw["bfloat16_channels_last" if native else "float32_channels_last"]
    print(json.dumps({
        "raw_patches_per_s": round(best_raw, 1),
        "raw_patches_per_s_by_setting": {k: round(v, 1) for k, v in raw.items()},
        "raw_speedup": round(best_raw / raw["float32"], 3),
        "loop": new, "loop_reference": old,
        "loop_speedup": round(new["patches_per_s"] / old["patches_per_s"], 3),
        "val_acc_difference": round(new["val_acc"] - old["val_acc"], 4),
        "loop_patches_per_s": new["patches_per_s"],
        "loop_over_raw": round(new["patches_per_s"] / best_raw, 3),
        "s_per_512k_epoch": round(512_000 / new["patches_per_s"], 1),
        **share,
        "conv_only_speedup_ceiling": round(share["conv_only_patches_per_s"] / raw["float32"], 3),
        "bf16_native": native, "batch": a.batch, "threads": torch.get_num_threads(),
        "patches": steps * a.batch, "data": source,
        "reference": "float32 in the default memory layout (xdefect's training before "
                     "channels_last), raw step and loop, same run and seed",
    }))


if __name__ == "__main__":
    main()
