"""3x3 convolutions by Winograd's minimal filtering, for the dense score map's heavy layers.

A 3x3 convolution computes every output from nine products per input channel. Winograd's
algorithm F(m x m, 3 x 3) computes an ``m x m`` block of outputs from an ``(m + 2) x
(m + 2)`` block of inputs with ``(m + 2)**2`` products per channel pair instead of
``9 * m * m``: for ``m = 4``, 36 instead of 144, a quarter of the multiplications. The
transforms to and from that product space are small fixed matrices (Lavin and Gray, "Fast
Algorithms for Convolutional Neural Networks", CVPR 2016); the products themselves become
``(m + 2)**2`` independent matrix products over the channels, which is where the time goes.

A convolution dilated by ``d`` is ``d * d`` ordinary convolutions, one per phase (the
pixels whose row and column have the same remainders modulo ``d``), so the same algorithm
serves the dilated layers of :class:`xdefect.detect.DenseNet` (where a 32x32 classifier's
last convolutions run at dilations 2, 4, ... over the whole image).

Layout: images are ``(H, W, C)`` float32 tensors, channels last, one image; row 0 is the
top. Padding is "same" (``d`` zero pixels a side, as ``F.conv2d(..., padding=d,
dilation=d)``). The result equals ``torch.nn.functional.conv2d`` up to float32 rounding
(measured: relative differences about 1e-5 for ``m = 4``, 1e-6 for ``m = 2``), not bit for
bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["WinogradWeights", "conv3x3", "transform_weights"]

# F(2x2, 3x3) and F(4x4, 3x3) with interpolation points 0, +-1 (and +-2) and infinity
_BT = {2: [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
       4: [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
           [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]]}
_G = {2: [[1, 0, 0], [1 / 2, 1 / 2, 1 / 2], [1 / 2, -1 / 2, 1 / 2], [0, 0, 1]],
      4: [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
          [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]]}
_AT = {2: [[1, 1, 1, 0], [0, 1, -1, -1]],
       4: [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
           [0, 1, -1, 8, -8, 1]]}


@dataclass(frozen=True)
class WinogradWeights:
    """A 3x3 convolution's weights in Winograd's product space.

    ``u``: ``((m + 2)**2, C, K)``; ``b_in``: ``((m + 2)**2, (m + 2)**2)``, the input
    transform of a flattened tile (left factor); ``a_out``: ``(m * m, (m + 2)**2)``, the
    output transform; ``bias``: ``(K,)``."""

    m: int
    u: torch.Tensor
    b_in: torch.Tensor
    a_out: torch.Tensor
    bias: torch.Tensor


def transform_weights(weight: torch.Tensor, bias: torch.Tensor | None = None, m: int = 4
                      ) -> WinogradWeights:
    """Weights ``(K, C, 3, 3)`` (and bias ``(K,)``) of a 3x3 convolution for
    :func:`conv3x3` with output blocks of ``m x m`` (2 or 4). Computed in float64."""
    if m not in _BT:
        raise ValueError(f"Winograd block size {m}: 2 or 4")
    if weight.ndim != 4 or tuple(weight.shape[2:]) != (3, 3):
        raise ValueError(f"expected (K, C, 3, 3) weights, got {tuple(weight.shape)}")
    bt, g, at = (torch.tensor(t, dtype=torch.float64) for t in (_BT[m], _G[m], _AT[m]))
    k, c = weight.shape[:2]
    a = m + 2
    u = torch.einsum("ai,kcij,bj->abck", g, weight.detach().double().cpu(), g)
    b = torch.zeros(k) if bias is None else bias.detach().cpu()
    return WinogradWeights(m, u.reshape(a * a, c, k).float().contiguous(),
                           torch.kron(bt, bt).float().contiguous(),
                           torch.kron(at, at).float().contiguous(), b.float().contiguous())


def conv3x3(x: torch.Tensor, w: WinogradWeights, dilation: int = 1, tiles: int = 128,
            bias: bool = True) -> torch.Tensor:
    """3x3 "same" convolution of one ``(H, W, C)`` image, dilated by ``dilation``:
    ``(H, W, K)`` (a view of a slightly larger contiguous tensor), with the bias unless
    ``bias`` is False (a caller that pools first can add it later: a per-channel constant
    commutes with max-pooling). ``tiles``: about how many ``m x m`` output blocks each
    matrix product handles; the work goes block row by block row, so that the transformed
    tiles stay in the cache."""
    if x.ndim != 3 or x.shape[2] != w.u.shape[1]:
        raise ValueError(f"expected (H, W, {w.u.shape[1]}) input, got {tuple(x.shape)}")
    d, m = int(dilation), w.m
    if d < 1:
        raise ValueError(f"dilation {d}: must be at least 1")
    a = m + 2
    H, W, C = x.shape
    K = w.u.shape[2]
    h, wd = -(-H // d), -(-W // d)  # each phase's grid
    th, tw = -(-h // m), -(-wd // m)  # blocks per phase and axis
    # a zero ring of d pixels (one per phase) and whole blocks; phase (p, q) is then the
    # strided view xp[p::d, q::d]
    xp = F.pad(x, (0, 0, d, (m * tw + 1) * d - W, d, (m * th + 1) * d - H))
    out = x.new_empty((th, m, d, tw, m, d, K))  # row = (block * m + u) * d + p
    rows = max(1, min(th, tiles // tw))
    items = [(p, q, b0, min(rows, th - b0)) for p in range(d) for q in range(d)
             for b0 in range(0, th, rows)]
    while items:  # groups of about `tiles` blocks, from one or more phases
        group, n = [], 0
        while items and (n == 0 or n + items[0][3] * tw <= tiles):
            group.append(items.pop(0))
            n += group[-1][3] * tw
        t = x.new_empty((a * a, n, C))
        o = 0
        for p, q, b0, r in group:
            src = xp[p::d, q::d][b0 * m:(b0 + r) * m + 2].unfold(0, a, m).unfold(1, a, m)
            t[:, o:o + r * tw].view(a, a, r, tw, C).copy_(src.permute(3, 4, 0, 1, 2))
            o += r * tw
        v = (w.b_in @ t.view(a * a, n * C)).view(a * a, n, C)
        prod = torch.bmm(v, w.u)  # (a*a, blocks, K)
        y = (w.a_out @ prod.view(a * a, -1)).view(m, m, n, K)
        o = 0
        for p, q, b0, r in group:
            out[b0:b0 + r, :, p, :, :, q] = y[:, :, o:o + r * tw].view(m, m, r, tw, K) \
                .permute(2, 0, 3, 1, 4)
            o += r * tw
    img = out.view(th * m * d, tw * m * d, K)[:H, :W]
    return img.add_(w.bias) if bias else img
