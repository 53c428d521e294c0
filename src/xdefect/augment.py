"""Augmentation of training windows: the radiographs of a casting never seen differ from
the training castings' in grey level, contrast, gamma, sharpness and noise, and a void has
no preferred orientation.

:func:`augment` takes a batch of grey windows in [0, 1] (``(N, 1, H, W)`` float32 torch
tensor, with or without their surroundings: every transform keeps the centre at the centre)
and returns a new batch, each window transformed with its own parameters drawn from a
NumPy generator, so that a seeded run is repeatable. In order:

1. **flips and quarter turns** (``flip``): one of the 8 symmetries of the square;
2. **gamma** ``x ** g``, ``g`` log-uniform in ``gamma``;
3. **contrast and grey level**: ``m + k * (x - m) + b`` with ``m`` the window's mean,
   ``k`` log-uniform in ``gain`` and ``b`` uniform in ``[-offset, offset]`` (full scale 1);
4. **blur** with probability ``p_blur``: a Gaussian of ``sigma`` uniform in ``blur``
   (pixels; a 5x5 kernel);
5. **noise**: additive Gaussian of standard deviation uniform in ``noise`` (full scale 1);
6. clipped to [0, 1].

A simulated defect's contrast is scaled with its background's, as it would be by another
exposure. ``docs/results.md`` records what they did to accuracy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["AugmentParams", "augment"]


@dataclass(frozen=True)
class AugmentParams:
    """The ranges of :func:`augment` (see the module docstring); units: grey levels as a
    fraction of full scale, ``blur`` in pixels."""

    flip: bool = True
    gamma: tuple[float, float] = (0.7, 1.4)
    gain: tuple[float, float] = (0.7, 1.4)
    offset: float = 0.1
    blur: tuple[float, float] = (0.3, 1.2)
    p_blur: float = 0.3
    noise: tuple[float, float] = (0.0, 0.02)

    def __post_init__(self) -> None:
        for name in ("gamma", "gain", "blur", "noise"):
            lo, hi = getattr(self, name)
            if not (np.isfinite(lo) and np.isfinite(hi) and 0 <= lo <= hi):
                raise ValueError(f"augment {name}: need 0 <= low <= high, finite")
        if self.gamma[0] <= 0 or self.gain[0] <= 0:
            raise ValueError("augment gamma and gain must be positive")
        if not (0 <= self.offset <= 1 and 0 <= self.p_blur <= 1):
            raise ValueError("augment offset and p_blur must lie in [0, 1]")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def _log_uniform(rng: np.random.Generator, lo: float, hi: float, n: int) -> np.ndarray:
    return np.exp(rng.uniform(np.log(lo), np.log(hi), n))


def _symmetries(x: torch.Tensor, k: np.ndarray) -> torch.Tensor:
    """Window ``i`` turned by ``k[i] % 4`` quarter turns, then mirrored if ``k[i] >= 4``."""
    out = x.clone()
    for s in range(1, 8):
        sel = np.flatnonzero(k == s)
        if sel.size:
            t = torch.rot90(x[sel], s % 4, dims=(2, 3))
            out[sel] = torch.flip(t, dims=(3,)) if s >= 4 else t
    return out


def _blur(x: torch.Tensor, sigma: np.ndarray) -> torch.Tensor:
    """Each window convolved with its own 5x5 Gaussian (``sigma`` 0: unchanged)."""
    r = np.arange(-2, 3, dtype=np.float64)
    s = np.maximum(sigma, 1e-6)[:, None]
    g = np.exp(-(r[None, :] ** 2) / (2 * s**2))
    g /= g.sum(axis=1, keepdims=True)
    k = torch.as_tensor(g[:, :, None] * g[:, None, :], dtype=x.dtype, device=x.device)
    n = x.shape[0]
    y = F.conv2d(F.pad(x.reshape(1, n, *x.shape[2:]), (2, 2, 2, 2), mode="replicate"),
                 k[:, None], groups=n)
    return y.reshape(x.shape)


def augment(x: torch.Tensor, params: AugmentParams, rng: np.random.Generator) -> torch.Tensor:
    """A transformed copy of windows ``x`` (``(N, 1, H, W)``, [0, 1]); see the module
    docstring. ``rng`` draws every parameter (and seeds the noise)."""
    if x.ndim != 4 or x.shape[1] != 1:
        raise ValueError("augment expects windows (N, 1, H, W)")
    n = x.shape[0]
    p = params
    if p.flip:
        x = _symmetries(x, rng.integers(0, 8, n))
    col = (n, 1, 1, 1)

    def draw(v: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(v.reshape(col), dtype=x.dtype, device=x.device)

    x = x.clamp(0, 1) ** draw(_log_uniform(rng, *p.gamma, n))
    m = x.mean(dim=(2, 3), keepdim=True)
    x = m + draw(_log_uniform(rng, *p.gain, n)) * (x - m) + draw(
        rng.uniform(-p.offset, p.offset, n))
    blur = rng.random(n) < p.p_blur
    if blur.any():
        sel = np.flatnonzero(blur)
        x[sel] = _blur(x[sel], rng.uniform(*p.blur, sel.size))
    gen = torch.Generator(device=x.device).manual_seed(int(rng.integers(2**62)))
    noise = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
    x = x + noise * draw(rng.uniform(*p.noise, n))
    return x.clamp_(0, 1)
