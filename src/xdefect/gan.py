"""GAN-simulated defects: a DCGAN for 32x32 grey defect patches.

Generator: latent ``z`` (``nz`` = 100, standard normal) -> ConvTranspose 4x4 to 4x4x(4g)
-> BN -> ReLU -> ConvTranspose 4x4 stride 2 to 8x8x(2g) -> BN -> ReLU -> to 16x16x g -> BN
-> ReLU -> to 32x32x1 -> tanh. Discriminator: Conv 4x4 stride 2 to 16x16x d -> LeakyReLU
(0.2) -> 8x8x(2d) -> BN -> LeakyReLU -> 4x4x(4d) -> BN -> LeakyReLU -> Conv 4x4 to one
logit. Weights initialised N(0, 0.02) (BN scales N(1, 0.02)), Adam lr 2e-4, betas (0.5,
0.999), the non-saturating loss: the usual DCGAN recipe (Radford et al., 2016).

Training data: every 32x32 window (stride 2) of the odd-numbered (training) images that
holds at least one third of a real ground-truth box's area, augmented on the fly with the
eight flips and 90-degree rotations. Pixels map to [-1, 1].

A GAN folder holds ``generator.safetensors`` + ``generator.json`` (the model card),
``checkpoint.safetensors`` + ``checkpoint.json`` (both networks and optimisers, to resume),
``samples/iter_NNNNNN.png`` grids and ``log.csv``.
"""

from __future__ import annotations

import csv
import io as _io
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xdefect import __version__, gdxray
from xdefect.checkpoint import load_tensors, optimizer_tensors, restore_optimizer, save_tensors
from xdefect.errors import InputError
from xdefect.io import atomic_path, progress, read_json, write_image
from xdefect.report import patch_grid
from xdefect.windows import PATCH, real_positions, to_uint8

GAN_FORMAT = "xdefect-gan/1"


class Generator(nn.Module):
    def __init__(self, nz: int = 100, g: int = 32) -> None:
        super().__init__()
        self.nz = nz
        self.net = nn.Sequential(
            nn.ConvTranspose2d(nz, 4 * g, 4, 1, 0, bias=False), nn.BatchNorm2d(4 * g),
            nn.ReLU(True),
            nn.ConvTranspose2d(4 * g, 2 * g, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * g),
            nn.ReLU(True),
            nn.ConvTranspose2d(2 * g, g, 4, 2, 1, bias=False), nn.BatchNorm2d(g), nn.ReLU(True),
            nn.ConvTranspose2d(g, 1, 4, 2, 1, bias=False), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.view(len(z), self.nz, 1, 1))


class Discriminator(nn.Module):
    def __init__(self, d: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, d, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True),
            nn.Conv2d(d, 2 * d, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * d),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(2 * d, 4 * d, 4, 2, 1, bias=False), nn.BatchNorm2d(4 * d),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(4 * d, 1, 4, 1, 0, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).view(-1)


def _init(m: nn.Module) -> None:
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def real_defect_patches(root: str | os.PathLike[str], series: list[str] | None = None,
                        step: int = 2, include_tuning: bool = False) -> np.ndarray:
    """uint8 ``(N, 32, 32)``: windows of the train images (odd, number % 4 == 3; with
    ``include_tuning`` all odd images) holding at least a third of a real box (top-left
    corners on a grid of ``step`` pixels). ``series``: default the paper's seven."""
    out = []
    series = gdxray.protocol_series(root, series)
    split = "odd" if include_tuning else "train"
    for smp in gdxray.iter_samples(root, series, split):
        if not len(smp.boxes):
            continue
        img8 = to_uint8(smp.image)
        seen = set()
        for r, c, _ in real_positions(smp.boxes, smp.image.shape):
            if r % step or c % step or (r, c) in seen:
                continue
            seen.add((r, c))
            out.append(img8[r:r + PATCH, c:c + PATCH])
    if not out:
        raise InputError(f"{root}: no real defects in the {split} images of "
                         f"{', '.join(series)} to learn from")
    return np.stack(out)


def dihedral(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Apply one of the 8 flips/rotations (index ``k[i]`` in 0..7) to each image of
    ``(N, 1, H, W)``."""
    out = x.clone()
    for t in range(8):
        sel = k == t
        if sel.any():
            y = torch.rot90(x[sel], t % 4, dims=(2, 3))
            out[sel] = torch.flip(y, dims=(3,)) if t >= 4 else y
    return out


@dataclass
class GanConfig:
    gdxray: str
    out: str
    iterations: int = 30000
    batch: int = 64
    seed: int = 0
    nz: int = 100
    width: int = 32
    lr: float = 2e-4
    every: int = 500
    series: list[str] | None = None
    threads: int | None = None
    device: str | None = None
    resume: bool = False
    include_tuning: bool = False


def _state(prefix: str, module: nn.Module) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in module.state_dict().items()}


def _optim_state(prefix: str, opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    t, s = optimizer_tensors(opt)
    return {f"{prefix}.{k}": v for k, v in t.items()}, s


def train_gan(cfg: GanConfig, on_log: Callable[[dict], None] | None = None) -> dict:
    """Train (or resume) a DCGAN on real defect patches; returns a summary."""
    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    ck = out / "checkpoint.safetensors"
    if cfg.iterations < 1 or cfg.batch < 1:
        raise InputError("--iterations and --batch must be at least 1")
    if out.exists() and ck.exists() and not cfg.resume:
        raise InputError(f"{out}: holds a GAN already (use --resume to continue it)")
    real = real_defect_patches(cfg.gdxray, cfg.series, include_tuning=cfg.include_tuning)
    data = torch.from_numpy(real.astype(np.float32) / 127.5 - 1.0)[:, None]
    torch.manual_seed(cfg.seed)
    G, D = Generator(cfg.nz, cfg.width).to(device), Discriminator(cfg.width).to(device)
    G.apply(_init)
    D.apply(_init)
    oG = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
    oD = torch.optim.Adam(D.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
    start, rows = 0, []
    if cfg.resume and ck.exists():
        card = read_json(ck.with_suffix(".json"))
        t = load_tensors(ck)
        G.load_state_dict({k[2:]: v for k, v in t.items() if k.startswith("G.")})
        D.load_state_dict({k[2:]: v for k, v in t.items() if k.startswith("D.")})
        restore_optimizer(oG, {k[3:]: v for k, v in t.items() if k.startswith("oG.")},
                     card["optim_G"])
        restore_optimizer(oD, {k[3:]: v for k, v in t.items() if k.startswith("oD.")},
                     card["optim_D"])
        start, rows = card["iteration"], card["log"]
    out.mkdir(parents=True, exist_ok=True)
    fixed = torch.randn(64, cfg.nz, generator=torch.Generator().manual_seed(cfg.seed + 1))
    bce = F.binary_cross_entropy_with_logits
    bar = progress(total=cfg.iterations, initial=start, desc="gan", unit="it")
    t0, it0 = time.perf_counter(), start
    for it in range(start, cfg.iterations):
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + it)
        idx = torch.randint(len(data), (cfg.batch,), generator=g)
        x = dihedral(data[idx], torch.randint(8, (cfg.batch,), generator=g)).to(device)
        z = torch.randn(cfg.batch, cfg.nz, generator=g).to(device)
        torch.manual_seed(cfg.seed * 7919 + it)
        fake = G(z)
        oD.zero_grad(set_to_none=True)
        ones = torch.ones(cfg.batch, device=device)
        zeros = torch.zeros(cfg.batch, device=device)
        lossD = bce(D(x), ones) + bce(D(fake.detach()), zeros)
        lossD.backward()
        oD.step()
        oG.zero_grad(set_to_none=True)
        lossG = bce(D(fake), ones)
        lossG.backward()
        oG.step()
        bar.update()
        n = it + 1
        if n % cfg.every == 0 or n == cfg.iterations:
            rate = (n - it0) / (time.perf_counter() - t0)
            row = {"iteration": n, "loss_d": round(float(lossD.detach()), 5),
                   "loss_g": round(float(lossG.detach()), 5), "it_per_s": round(rate, 2)}
            rows.append(row)
            G.eval()
            with torch.no_grad():
                grid = G(fixed.to(device)).cpu().numpy()[:, 0]
            G.train()
            write_image(out / "samples" / f"iter_{n:06d}.png",
                        patch_grid(((grid + 1) * 127.5).clip(0, 255).astype(np.uint8)))
            card = {"format": GAN_FORMAT, "iteration": n, "config": asdict(cfg),
                    "real_patches": int(len(real)), "xdefect_version": __version__,
                    "image_splits": ["train", "tuning"] if cfg.include_tuning else ["train"],
                    "series": gdxray.protocol_series(cfg.gdxray, cfg.series),
                    "nz": cfg.nz, "width": cfg.width, "log": rows}
            tG, sG = _optim_state("oG", oG)
            tD, sD = _optim_state("oD", oD)
            save_tensors(out / "generator.safetensors", dict(G.state_dict()), card)
            save_tensors(ck, {**_state("G", G), **_state("D", D), **tG, **tD},
                         {**card, "optim_G": sG, "optim_D": sD})
            _write_log(out / "log.csv", rows)
            if on_log:
                on_log(row)
    bar.close()
    return {"out": str(out), "iterations": cfg.iterations, "real_patches": int(len(real)),
            "log": rows}


def _write_log(path: Path, rows: list[dict]) -> None:
    buf = _io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue())


def load_generator(folder: str | os.PathLike[str]) -> tuple[Generator, dict]:
    """Load ``GANDIR/generator.safetensors`` and its card (eval mode)."""
    f = Path(folder)
    p = f / "generator.safetensors" if f.is_dir() else f
    if not p.is_file():
        raise InputError(f"{f}: no generator.safetensors (train one with `xdefect gan train`)")
    card = read_json(p.with_suffix(".json"))
    if card.get("format") != GAN_FORMAT:
        raise InputError(f"{p.with_suffix('.json')}: not an xdefect GAN card")
    G = Generator(int(card["nz"]), int(card["width"]))
    try:
        G.load_state_dict(load_tensors(p))
    except RuntimeError as exc:
        raise InputError(f"{p}: weights do not match the card ({str(exc).splitlines()[0]})") \
            from None
    return G.eval(), card


@torch.no_grad()
def sample(G: Generator, n: int, rng: np.random.Generator, batch: int = 512) -> np.ndarray:
    """``n`` generated patches, uint8 ``(n, 32, 32)``; latents drawn from ``rng``."""
    out = np.empty((n, PATCH, PATCH), np.uint8)
    for s in range(0, n, batch):
        k = min(batch, n - s)
        z = torch.from_numpy(rng.standard_normal((k, G.nz)).astype(np.float32))
        x = G(z).numpy()[:, 0]
        out[s:s + k] = np.clip(np.rint((x + 1) * 127.5), 0, 255).astype(np.uint8)
    return out


def patch_source(folder: str | os.PathLike[str]) -> Callable[[int, np.random.Generator],
                                                                np.ndarray]:
    """A callable ``(n, rng) -> uint8 (n, 32, 32)`` of GAN defect patches (dataset mixes)."""
    G, _ = load_generator(folder)
    return lambda n, rng: sample(G, n, rng)
