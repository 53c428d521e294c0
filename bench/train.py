"""Benchmark of xnet2 training throughput: the raw step against the real training loop.

``raw_patches_per_s``: forward, backward and optimiser step of xnet2 on one batch of
tensors already in memory (the reference). ``loop_patches_per_s``: the real training loop
(``xdefect.train.train``: seeded shuffling, gathering batches from the memory-mapped
``patches.npy``, normalisation, the same steps), measured by the loop itself over its
training phase. Both in the same run, same batch size and threads. Prints one JSON line
with ``loop_over_raw`` (target >= 0.9) and ``s_per_512k_epoch``.

    .venv/bin/python bench/train.py --data DIR [--batch 256] [--patches 20000] [--threads N]
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

from xdefect.models import create_model
from xdefect.train import TrainConfig, train


def raw_rate(batch: int, steps: int, arch: str = "xnet2") -> float:
    torch.manual_seed(0)
    model = create_model(arch).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(batch, 1, 32, 32)
    y = torch.randint(0, 2, (batch,))
    for _ in range(3):  # warm-up
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    t = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        float(loss.detach())
    return batch * steps / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="a dataset folder (real build)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--patches", type=int, default=20000, help="patches of the timed loop epoch")
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    steps = max(a.patches // a.batch, 5)
    raw1 = raw_rate(a.batch, steps)
    tmp = Path(tempfile.mkdtemp(prefix="xdefect-bench-train-"))
    try:
        res = train(TrainConfig(data=str(a.data), out=str(tmp / "run"), epochs=1,
                                batch=a.batch, samples_per_epoch=steps * a.batch,
                                val_samples=a.batch, threads=a.threads, device="cpu"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    loop = res["metrics"][0]["patches_per_s"]
    raw2 = raw_rate(a.batch, steps)  # raw measured before and after the loop: machine drift
    raw = (raw1 + raw2) / 2
    print(json.dumps({
        "raw_patches_per_s": round(raw, 1), "loop_patches_per_s": round(loop, 1),
        "loop_over_raw": round(loop / raw, 3), "s_per_512k_epoch": round(512_000 / loop, 1),
        "batch": a.batch, "threads": torch.get_num_threads(), "patches": steps * a.batch,
        "reference": "raw forward+backward+step of xnet2 on in-memory tensors, same run",
    }))


if __name__ == "__main__":
    main()
