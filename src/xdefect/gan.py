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

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xdefect import __version__, gdxray, seeds
from xdefect.checkpoint import (
    load_tensors,
    optimizer_tensors,
    prefixed,
    restore_optimizer,
    save_tensors,
    unprefixed,
)
from xdefect.errors import InputError
from xdefect.io import atomic_path, progress, read_json, to_uint, write_csv, write_image
from xdefect.models import setup_device
from xdefect.report import patch_grid
from xdefect.windows import PATCH, real_positions

__all__ = ["GAN_FORMAT", "Discriminator", "GanConfig", "Generator", "dihedral", "load_generator",
           "patch_source", "real_defect_patches", "sample", "save_samples", "train_gan"]

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
        img8 = to_uint(smp.image, 8)
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


@dataclass
class _Gan:
    """The two networks and their optimisers."""

    G: Generator
    D: Discriminator
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer

    @staticmethod
    def create(cfg: GanConfig, device: str) -> _Gan:
        torch.manual_seed(cfg.seed)
        G, D = Generator(cfg.nz, cfg.width).to(device), Discriminator(cfg.width).to(device)
        G.apply(_init)
        D.apply(_init)
        return _Gan(G, D, torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=(0.5, 0.999)),
                    torch.optim.Adam(D.parameters(), lr=cfg.lr, betas=(0.5, 0.999)))

    def restore(self, ck: Path) -> tuple[int, list[dict]]:
        """Load a checkpoint; returns the iteration it reached and its log."""
        card = read_json(ck.with_suffix(".json"))
        t = load_tensors(ck)
        self.G.load_state_dict(unprefixed("G", t))
        self.D.load_state_dict(unprefixed("D", t))
        restore_optimizer(self.opt_g, unprefixed("oG", t), card["optim_G"])
        restore_optimizer(self.opt_d, unprefixed("oD", t), card["optim_D"])
        return card["iteration"], card["log"]

    def save(self, out: Path, card: dict) -> None:
        """Write the generator with its card and the full checkpoint (to resume)."""
        tG, sG = optimizer_tensors(self.opt_g)
        tD, sD = optimizer_tensors(self.opt_d)
        save_tensors(out / "generator.safetensors", dict(self.G.state_dict()), card)
        save_tensors(out / "checkpoint.safetensors",
                     {**prefixed("G", self.G.state_dict()), **prefixed("D", self.D.state_dict()),
                      **prefixed("oG", tG), **prefixed("oD", tD)},
                     {**card, "optim_G": sG, "optim_D": sD})

    def step(self, x: torch.Tensor, z: torch.Tensor) -> tuple[float, float]:
        """One discriminator and one generator update (the non-saturating loss); returns
        both losses."""
        bce = F.binary_cross_entropy_with_logits
        fake = self.G(z)
        ones = torch.ones(len(x), device=x.device)
        zeros = torch.zeros(len(x), device=x.device)
        self.opt_d.zero_grad(set_to_none=True)
        lossD = bce(self.D(x), ones) + bce(self.D(fake.detach()), zeros)
        lossD.backward()
        self.opt_d.step()
        self.opt_g.zero_grad(set_to_none=True)
        lossG = bce(self.D(fake), ones)
        lossG.backward()
        self.opt_g.step()
        return float(lossD.detach()), float(lossG.detach())


def _batch(cfg: GanConfig, data: torch.Tensor, it: int, device: str
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Iteration ``it``'s real batch (random picks, random flips/rotations) and latents,
    from the iteration's own seed (so a resumed run draws what the uninterrupted would)."""
    g = torch.Generator().manual_seed(seeds.torch_seed(cfg.seed, seeds.GAN_BATCH, it))
    idx = torch.randint(len(data), (cfg.batch,), generator=g)
    x = dihedral(data[idx], torch.randint(8, (cfg.batch,), generator=g)).to(device)
    z = torch.randn(cfg.batch, cfg.nz, generator=g).to(device)
    torch.manual_seed(seeds.torch_seed(cfg.seed, seeds.GAN_TORCH, it))
    return x, z


def _sample_grid(G: Generator, fixed: torch.Tensor) -> np.ndarray:
    G.eval()
    with torch.no_grad():
        grid = G(fixed).cpu().numpy()[:, 0]
    G.train()
    return patch_grid(to_uint(grid, 8, low=-1.0))


def train_gan(cfg: GanConfig, on_log: Callable[[dict], None] | None = None) -> dict:
    """Train (or resume) a DCGAN on real defect patches; returns a summary."""
    device = setup_device(cfg.device, cfg.threads)
    out = Path(cfg.out)
    ck = out / "checkpoint.safetensors"
    if cfg.iterations < 1 or cfg.batch < 1:
        raise InputError("--iterations and --batch must be at least 1")
    if out.exists() and ck.exists() and not cfg.resume:
        raise InputError(f"{out}: holds a GAN already (use --resume to continue it)")
    real = real_defect_patches(cfg.gdxray, cfg.series, include_tuning=cfg.include_tuning)
    data = torch.from_numpy(real.astype(np.float32) / 127.5 - 1.0)[:, None]
    gan = _Gan.create(cfg, device)
    start, rows = gan.restore(ck) if cfg.resume and ck.exists() else (0, [])
    out.mkdir(parents=True, exist_ok=True)
    fixed = torch.randn(64, cfg.nz, generator=torch.Generator().manual_seed(cfg.seed + 1))
    card = {"format": GAN_FORMAT, "config": asdict(cfg), "real_patches": int(len(real)),
            "xdefect_version": __version__,
            "image_splits": ["train", "tuning"] if cfg.include_tuning else ["train"],
            "series": gdxray.protocol_series(cfg.gdxray, cfg.series), "nz": cfg.nz,
            "width": cfg.width}
    bar = progress(total=cfg.iterations, initial=start, desc="gan", unit="it")
    t0 = time.perf_counter()
    for it in range(start, cfg.iterations):
        loss_d, loss_g = gan.step(*_batch(cfg, data, it, device))
        bar.update()
        n = it + 1
        if n % cfg.every == 0 or n == cfg.iterations:
            row = {"iteration": n, "loss_d": round(loss_d, 5), "loss_g": round(loss_g, 5),
                   "it_per_s": round((n - start) / (time.perf_counter() - t0), 2)}
            rows.append(row)
            write_image(out / "samples" / f"iter_{n:06d}.png",
                        _sample_grid(gan.G, fixed.to(device)))
            gan.save(out, {**card, "iteration": n, "log": rows})
            write_csv(out / "log.csv", rows)
            if on_log:
                on_log(row)
    bar.close()
    return {"out": str(out), "iterations": cfg.iterations, "real_patches": int(len(real)),
            "log": rows}


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
        out[s:s + k] = to_uint(x, 8, low=-1.0)
    return out


def patch_source(folder: str | os.PathLike[str]) -> Callable[[int, np.random.Generator],
                                                                np.ndarray]:
    """A callable ``(n, rng) -> uint8 (n, 32, 32)`` of GAN defect patches (dataset mixes)."""
    G, _ = load_generator(folder)
    return lambda n, rng: sample(G, n, rng)


def save_samples(model: str | os.PathLike[str], n: int, out: str | os.PathLike[str],
                 seed: int = 0) -> tuple[Path, Path]:
    """Generate ``n`` patches with the GAN at ``model`` and write ``OUT.npy`` (uint8 ``(n,
    32, 32)``) and ``OUT.png`` (a grid of up to 64, the paper's Fig. 8); ``out`` may carry
    either suffix. Returns both paths."""
    if n < 1:
        raise InputError(f"--n {n}: must be at least 1")
    G, _ = load_generator(model)
    x = sample(G, n, np.random.default_rng(seed))
    base = Path(out)
    base = base.with_suffix("") if base.suffix in (".npy", ".png") else base
    npy, png = base.with_suffix(".npy"), base.with_suffix(".png")
    with atomic_path(npy) as tmp, open(tmp, "wb") as fh:
        np.save(fh, x)
    write_image(png, patch_grid(x[:64], cols=8))
    return npy, png
