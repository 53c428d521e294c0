"""Whole-image detection: the score map (the paper's f1) and regions (f2).

Score map
---------
For a grey image ``(H, W)`` in [0, 1] and a stride ``s``, window ``(i, j)`` is the 32x32
patch with top-left pixel ``(i * s, j * s)`` (0-based; rows ``i*s : i*s + 32``), for every
window that lies wholly inside the image. Its score is ``y1 - y0`` (softmax outputs of the
classifier: 'defect' minus 'no-defect'), in [-1, 1]. The window's *centre* is the pixel
``(i * s + 16, j * s + 16)``.

Two modes compute it:

* ``patch``: windows are cut out and batched through the CNN, each zero-padded at its own
  border (the paper's semantics).
* ``dense``: the network runs convolutionally over the whole image. The first ``log2(s)``
  max-pools keep their stride 2; each later pool becomes a stride-1 pool dilated by the
  product of the strides it replaced, and the convolutions after it are dilated likewise
  (the "filter rarefaction" of dense CNN evaluation); the dense layers become (dilated)
  convolutions. Every window then shares computation with its neighbours. Results equal
  ``patch`` mode except near window borders, where ``patch`` sees zero padding and
  ``dense`` sees the neighbouring pixels: ``docs/detection.md`` measures the difference.
  ``s`` must be a power of two no larger than ``2**len(p)``.

Large images are processed in tiles (about ``tile`` pixels a side, aligned to ``s``,
each with enough context around it that the result does not depend on the tiling), so
memory is bounded by the tile, not the image.

Regions
-------
``theta`` -> binary map of the centres of windows with score > theta -> dilation with a
disk of radius ``r`` -> AND with the casting mask -> 8-connected regions -> regions with
fewer than ``a_min`` pixels dropped -> one box per region. Box rule (``box_rule``):
``"windows"`` is the union of the 32x32 windows whose centres fall in the
region, clipped to the image; ``"region"`` is the region's own bounding box. The region's
score is the maximum window score inside it. ``"centres"`` is the bounding box of the
region's window centres grown by ``box_margin`` pixels (inclusive of the last centre).
``"peaks"`` (the default) splits a region at the local maxima of the score map smoothed
with a Gaussian of ``sigma`` grid cells (3x3 windows; a flat top is one maximum, at its
middle; maxima closer than ``nms`` pixels, default ``box_margin``, to a higher one are
suppressed): one box of ``2 * box_margin + 1`` pixels around each, scored by the window's
own score (neighbouring defects merged by the dilation stay separate detections). With
``widen`` >= 0, a region holding a single maximum gets at least its window centres' extent
less ``widen`` pixels a side (a defect of width ``D`` lights window centres over about
``D + 16`` pixels), so that one isolated large defect gets one large box.
``"extent"`` is ``"blobs"`` where every maximum (not only a region's single one) gets
at least the extent of the window centres nearest to it less ``widen`` pixels a side, so
that a large defect lighting two or three maxima gets boxes of its size.
``"blobs"`` is ``"peaks"`` ranked and scored by the smoothed score. Smoothing matters
because a classifier trained on defects up to 8 pixels off-centre answers with a plateau
of nearly equal scores around each defect, whose highest cell is an arbitrary one.
Boxes are ``(x1, y1, x2, y2)``, 0-based, half-open.

Relative extent (segmenters, ``extent_fraction`` F > 0)
-------------------------------------------------------
A segmenter's probability falls off at a defect's edge, and how fast depends on how sure
it is: above one fixed ``theta`` a faint defect leaves a few pixels, a clear one nearly
its whole shadow. With F > 0 the regions above ``theta`` (and ``a_min``) are only the
*seeds*: each seed's box is the extent of the 8-connected pixels of the casting mask whose
log-odds ``log(p / (1 - p))`` exceed F times the seed's peak log-odds and that touch the
seed (p from the score ``2 p - 1``, clipped to ``[1e-6, 1 - 1e-6]``, so log-odds lie
within +-13.8): a clear defect's box can be tighter than its seed, a faint one's wider.
A seed peaking at p <= 0.5 (``theta`` < 0) keeps its own extent. The seed keeps its
score; a box lying wholly inside a higher-scored one (two seeds of one defect) is
dropped; ``grow`` is added last.

Linking regions (``link`` L < ``theta``)
----------------------------------------
A defect whose score dips between bright patches (a shrinkage area is a lattice of
voids) leaves several regions above ``theta``. With ``link`` L below ``theta``, regions
connected through the (likewise dilated and masked) pixels above L are one region
(hysteresis): its box spans only its pixels above ``theta``, its area counts them, its
score is their highest. Defects separated by background stay apart, however close.
L >= ``theta`` (the default 1): off.

Joining boxes (``join`` J >= 0)
-------------------------------
A large irregular defect (a shrinkage area, GDXray C0031 and C0036) often lights several
separate regions, each boxed on its own and none matching the defect's box. With J >= 0,
after ``grow`` boxes at most J pixels apart (Chebyshev distance between the boxes, 0 when
they touch or overlap) are joined into their enclosing box, transitively and again until
no two boxes are that close; a joined box is scored by its highest member and its area
is the members' sum. -1 (the default): off.

Box scale (``box_scale`` S)
---------------------------
After ``grow`` and before joining, each box's width and height are multiplied by S about
its centre: ``x1' = floor(cx - S (x2 - x1) / 2 + 1/2)``, ``x2' = floor(cx + S (x2 - x1) / 2
+ 1/2)`` with ``cx = (x1 + x2) / 2`` (likewise in y; at least one pixel a side), clipped to
the image; 1 (the default) leaves every box as it is. Where ``grow`` adds the same pixels
to a 10- and a 100-pixel box, S sizes boxes in proportion: for annotators who box
defects more generously than the model does (an annotation convention: on castings it
never saw, GDXray's paper series gain by 1.1 and the other series lose, ``docs/results.md``,
"Box scale on castings never seen").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi
from scipy.sparse.csgraph import connected_components
from torch import nn

from xdefect.errors import InputError
from xdefect.gdxray import casting_mask
from xdefect.models import INFERENCE_BATCH, PatchCNN, inference_copy, normalise_float
from xdefect.windows import PATCH, window_sums
from xdefect.winograd import WinogradWeights, transform_weights
from xdefect.winograd import conv3x3 as winograd_conv3x3

__all__ = ["BOX_RULES", "EXTENT_EPS", "MAX_BOX_SCALE", "MERGE_RULES", "MODES", "TTA_VIEWS",
           "WINOGRAD_MIN_CHANNELS", "DenseNet",
           "DetectParams", "Detection", "Labelled",
           "ScoreMap", "boxes_of_regions", "context_margin", "detect", "detection_arrays",
           "dense_net", "detection_doc", "disk", "downsample", "downsample_mask",
           "finish_boxes", "grid_shape",
           "grow_detections", "join_detections", "label_regions", "log_odds",
           "merge_detections",
           "pyramid_regions", "regions", "relative_extents", "reported", "resize_detections",
           "scale_detections", "score_map", "score_map_dense", "score_map_patch"]

BOX_RULES = ("windows", "centres", "region", "peaks", "blobs", "extent")
MERGE_RULES = ("iou", "iom")
#: how the score map is computed: a patch classifier's windows one by one (``patch``) or
#: convolutionally (``dense``); a segmenter's per-pixel map (``segment``,
#: :mod:`xdefect.segment`)
MODES = ("dense", "patch", "segment")
#: test-time augmentation of a segmenter (``DetectParams.tta``): how many views of the
#: image are averaged (2, 4: mirror images; 8: those and their transposes,
#: :data:`xdefect.segment.VIEWS`)
TTA_VIEWS = (1, 2, 4, 8)


@dataclass(frozen=True)
class DetectParams:
    """Detection parameters. The defaults are the library's, for a model whose card has no
    ``detection`` block; every bundled model's card carries the parameters chosen for it
    on the tuning images (odd, number % 4 == 1) by ``experiments/tune_detection.py``, and
    ``detect``/``evaluate`` read them from the card (``docs/detection.md``).

    ``stride``: window step (pixels). ``theta``: score threshold on ``y1 - y0``.
    ``radius``: dilation disk radius (pixels). ``a_min``: minimum region area (pixels,
    after dilation and masking). ``box_rule``: ``"windows"``, ``"centres"``, ``"region"``,
    ``"peaks"``, ``"blobs"`` or ``"extent"``; ``box_margin``: pixels around the window
    centres (``"centres"``, ``"peaks"``, ``"blobs"``, ``"extent"``). ``sigma``: Gaussian
    smoothing of the score map (grid cells) before its local maxima are found (``"peaks"``,
    ``"blobs"``, ``"extent"``; 0: none).
    ``nms``: maxima closer than this (pixels, Chebyshev) to a higher one are suppressed
    (0: ``box_margin``). ``widen``: ``"peaks"``/``"blobs"`` box of a region with a single
    maximum widened to its window centres' extent less ``widen`` pixels a side (-1: off).
    ``mode``: ``"dense"`` or ``"patch"`` (patch classifiers), ``"segment"`` (segmenters,
    :mod:`xdefect.segment`: stride 1, theta on ``2 p - 1``). ``use_mask``: AND with the
    casting mask. ``grow``: pixels added to every side of every box, whatever its rule
    (clipped to the image; pixels of the image the score map was computed on, so at
    pyramid level ``f`` each is ``f`` pixels of the original); 0: none. ``tta``: views
    of the image whose per-pixel probabilities a segmenter averages (1: the image; 2: and
    its left-right mirror; 4: and the up-down and both mirrors); segment mode only.
    ``box_scale``: each box's width and height multiplied by this about its centre, after
    ``grow`` and before ``join`` (module docstring, "Box scale"); 1: off.
    ``extent_fraction``: segment mode with the ``region`` rule: each region above
    ``theta`` is a seed whose box spans the connected pixels with log-odds above this
    fraction of its peak log-odds (module docstring, "Relative extent"); 0: off (the box
    of the pixels above ``theta``), else in (0, 1). ``join``: boxes (after ``grow``)
    at most this many pixels apart (0: touching or overlapping) are joined into their
    enclosing box (module docstring, "Joining boxes"); -1: off. ``link``: regions above
    ``theta`` connected through pixels above ``link`` are one region (module docstring,
    "Linking regions"); ``link`` >= ``theta`` (default 1): off. ``min_score``: detections
    scoring below it (same scale as ``theta``) are not reported: the operating point,
    how many boxes reach the inspector, while ``theta`` decides the regions and their
    extents (``tune-segmenter --max-false-alarms`` chooses it on the tuning images);
    -1 (default): all.
    """

    stride: int = 8
    theta: float = 0.0
    radius: int = 6
    a_min: int = 150
    box_rule: str = "peaks"
    box_margin: int = 10
    mode: str = "patch"
    use_mask: bool = True
    sigma: float = 1.0
    nms: int = 0
    widen: int = 4
    #: image pyramid: the downsampling factors detection runs at (1: the image itself)
    scales: tuple[int, ...] = (1,)
    #: pyramid merge: a detection is dropped when a higher-scored one of another level
    #: overlaps it by at least ``merge`` (``merge_rule`` "iou": intersection over union;
    #: "iom": intersection over the smaller box's area)
    merge: float = 0.5
    merge_rule: str = "iou"
    grow: int = 0
    tta: int = 1
    extent_fraction: float = 0.0
    join: int = -1
    link: float = 1.0
    min_score: float = -1.0
    box_scale: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "scales", tuple(int(f) for f in self.scales))
        if self.box_rule not in BOX_RULES:
            raise ValueError(f"unknown box rule {self.box_rule!r} ({', '.join(BOX_RULES)})")
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r} ({', '.join(MODES)})")
        if (self.stride < 1 or self.radius < 0 or self.a_min < 0 or self.box_margin < 0
                or self.sigma < 0 or self.nms < 0 or self.widen < -1 or self.grow < 0
                or self.join < -1):
            raise ValueError("stride must be >= 1; radius, a_min, box_margin, sigma, nms and "
                             "grow >= 0; widen and join >= -1")
        if (not self.scales or min(self.scales) < 1 or max(self.scales) > 16
                or len(set(self.scales)) != len(self.scales)):
            raise ValueError("scales must be distinct downsampling factors from 1 to 16")
        if self.tta not in TTA_VIEWS:
            raise ValueError(f"tta must be one of {', '.join(map(str, TTA_VIEWS))}")
        if self.merge_rule not in MERGE_RULES or not 0 < self.merge <= 1:
            raise ValueError(f"merge_rule must be one of {', '.join(MERGE_RULES)} and merge "
                             "in (0, 1]")
        if not -1 <= self.link <= 1:  # also refuses NaN
            raise ValueError("link must be in [-1, 1] (a score 2 p - 1; >= theta: off)")
        if not -1 <= self.min_score <= 1:  # also refuses NaN
            raise ValueError("min_score must be in [-1, 1] (same scale as theta; -1: all)")
        if not 0 < self.box_scale <= MAX_BOX_SCALE:  # also refuses NaN
            raise ValueError(f"box_scale must be in (0, {MAX_BOX_SCALE:g}] (1: boxes as made)")
        if not 0 <= self.extent_fraction < 1:  # also refuses NaN
            raise ValueError("extent_fraction must be in [0, 1)")
        if self.extent_fraction and (self.mode != "segment" or self.box_rule != "region"):
            raise ValueError("extent_fraction > 0 needs mode segment with box rule region "
                             "(a segmenter's per-pixel map)")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["scales"] = list(self.scales)
        return d

    @classmethod
    def from_dict(cls, doc: dict) -> DetectParams:
        """Parameters from a dict such as a model card's ``"detection"`` (unknown keys:
        :class:`ValueError`; missing keys take the defaults)."""
        unknown = sorted(set(doc) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown detection parameters: {', '.join(unknown)}")
        return cls(**doc)


@dataclass(frozen=True)
class ScoreMap:
    """``values[i, j]`` = ``y1 - y0`` of the window with top-left ``(i*stride, j*stride)``,
    whose centre is the pixel ``(i*stride + offset, j*stride + offset)``. A patch
    classifier's map has ``offset`` 16 (half a window); a segmenter's per-pixel map
    (:mod:`xdefect.segment`) has stride 1 and offset 0."""

    values: np.ndarray
    stride: int
    image_shape: tuple[int, int]
    offset: int = PATCH // 2


@dataclass(frozen=True)
class Detection:
    """A detected region: ``box`` ``(x1, y1, x2, y2)`` 0-based half-open; ``score`` its
    maximum window score; ``area`` its pixel count."""

    box: tuple[int, int, int, int]
    score: float
    area: int


def detection_arrays(dets: list[Detection]) -> tuple[np.ndarray, np.ndarray]:
    """Boxes ``(n, 4)`` float (``(x1, y1, x2, y2)``, 0-based, half-open) and scores
    ``(n,)`` float of a list of detections, in its order (``n`` may be 0)."""
    return (np.asarray([d.box for d in dets], float).reshape(-1, 4),
            np.asarray([d.score for d in dets], float))


def detection_doc(image_path: str, shape: tuple[int, ...], model: str, params: DetectParams,
                  dets: list[Detection]) -> dict:
    """The detection JSON document of one image (what ``xdefect detect`` writes):
    ``{image, width, height, model, params, detections: [{box, score}]}``. Scores are
    written whole (JSON's float text reads back to the same number), so scoring saved
    documents ranks detections exactly as the live run did: rounded, near-tied scores
    from different images would swap places and move AP by a few thousandths."""
    return {"image": image_path, "width": int(shape[1]), "height": int(shape[0]),
            "model": model, "params": params.to_dict(),
            "detections": [{"box": [int(v) for v in d.box], "score": float(d.score)}
                           for d in dets]}


def _check_image(image: np.ndarray) -> np.ndarray:
    a = np.asarray(image, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError("expected a 2-D grey image")
    if a.shape[0] < PATCH or a.shape[1] < PATCH:
        raise InputError(f"image {a.shape[1]}x{a.shape[0]} is smaller than the "
                         f"{PATCH}x{PATCH} window")
    return a


def grid_shape(shape: tuple[int, int], stride: int) -> tuple[int, int]:
    """Number of window rows and columns for an image of ``shape`` (windows wholly inside)."""
    return ((shape[0] - PATCH) // stride + 1, (shape[1] - PATCH) // stride + 1)


# ----------------------------------------------------------------------------- patch mode


@torch.no_grad()
def score_map_patch(model: PatchCNN, image: np.ndarray, stride: int = 4,
                    batch: int = INFERENCE_BATCH, device: str | torch.device = "cpu",
                    mask: np.ndarray | None = None) -> ScoreMap:
    """Score map by cutting every window and batching it through the CNN (exact).

    With ``mask`` (e.g. the casting mask), only the windows that hold at least one mask
    pixel are run; the others score -1 (certainly no defect): their centres lie at least
    16 pixels from the mask, so no region inside it can come from them at a dilation
    radius below 16 (the smoothing of the ``peaks``/``blobs`` rules still reads their -1
    near the mask's edge: ``docs/detection.md``, "Speed")."""
    if batch < 1:
        raise InputError(f"--batch {batch}: must be at least 1")
    a = _check_image(image)
    gh, gw = grid_shape(a.shape, stride)
    win = np.lib.stride_tricks.sliding_window_view(a, (PATCH, PATCH))[::stride, ::stride]
    win = win[:gh, :gw].reshape(-1, PATCH, PATCH)
    keep = np.arange(len(win))
    if mask is not None:
        touch = window_sums(np.asarray(mask, bool).astype(np.int32))[::stride, ::stride]
        keep = np.flatnonzero(touch[:gh, :gw].reshape(-1) > 0)
    net = inference_copy(model).to(device)
    out = np.full(len(win), -1.0, np.float32)
    for s in range(0, len(keep), batch):
        idx = keep[s:s + batch]
        x = normalise_float(np.ascontiguousarray(win[idx]))[:, None].to(device)
        p = torch.softmax(net(x.contiguous(memory_format=torch.channels_last)), dim=1)
        out[idx] = (p[:, 1] - p[:, 0]).float().cpu().numpy()
    return ScoreMap(out.reshape(gh, gw), stride, a.shape)


# ----------------------------------------------------------------------------- dense mode


def _fold_bn(weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.Module
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold an eval-mode BatchNorm that follows a linear layer into its weight and bias."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    b = bias if bias is not None else torch.zeros_like(bn.running_mean)
    shape = (-1,) + (1,) * (weight.ndim - 1)
    return weight * scale.view(shape), (b - bn.running_mean) * scale + bn.bias


def _max2(x: torch.Tensor, d: int) -> torch.Tensor:
    """2x2 max-pool with stride 1 and dilation ``d``, without padding (output shrinks by
    ``d`` along each axis); columns first, then rows (two passes, not three)."""
    x = torch.maximum(x[..., :-d], x[..., d:])
    return torch.maximum(x[..., :-d, :], x[..., d:, :])


#: a 3x3 layer with at least this many input x output channels runs by Winograd's
#: F(4x4, 3x3) in :class:`DenseNet` on the CPU (smaller ones gain nothing: ``bench/detect.py``)
WINOGRAD_MIN_CHANNELS = 80 * 160


class DenseNet(nn.Module):
    """A :class:`PatchCNN` evaluated convolutionally at stride ``s`` (see module docs).

    Built from the model's weights with each BatchNorm folded into the layer before it
    (eval mode). ``forward`` maps a normalised ``(N, 1, H, W)`` image to ``(N, 2, H', W')``
    logits where position ``(u, v)`` is the window with top-left ``(u*s, v*s)``; the
    stride-1 pools do not pad, so exactly the windows that lie inside the image come out
    (``H' = (H - 32) // s + 1`` when ``H`` is a multiple of ``s``, more otherwise: crop).

    ``winograd``: on the CPU, one image at a time, the 3x3 layers after the strided pools
    with at least :data:`WINOGRAD_MIN_CHANNELS` channel pairs run by
    :func:`xdefect.winograd.conv3x3` (a quarter of the multiplications; equal to the plain
    convolution up to float32 rounding, about 1e-5 relative). ``False`` keeps every layer
    a plain convolution (what :mod:`xdefect.export` traces)."""

    def __init__(self, model: PatchCNN, stride: int, winograd: bool = True) -> None:
        super().__init__()
        arch = model.arch
        nblocks = len(arch.p)
        k = int(round(math.log2(stride))) if stride >= 1 else -1
        if stride < 1 or 2**k != stride or k > nblocks:
            raise ValueError(f"dense mode needs a power-of-two stride <= {2**nblocks}, "
                             f"not {stride}")
        if arch.stretch:
            raise InputError(f"{arch.name} stretches every window to its own contrast "
                             f"(floor {arch.stretch:g}): the dense mode cannot apply that "
                             "(its windows share their first layer's work); use mode patch")
        model = model.eval()
        self.k = k
        self.stride = stride
        # weights live in registered buffers, so that .to(device) moves them
        feats = list(model.features)
        self.kernels: list[int] = []
        for i in range(nblocks):
            conv, bn = feats[5 * i], feats[5 * i + 1]
            w, b = _fold_bn(conv.weight.detach(), conv.bias.detach(), bn)
            self.register_buffer(f"conv{i}_w", w.contiguous())
            self.register_buffer(f"conv{i}_b", b.detach().contiguous())
            self.kernels.append(conv.kernel_size[0])
        lin = [m for m in model.classifier if isinstance(m, (nn.Linear, nn.BatchNorm1d))]
        self.relus: list[bool] = []
        i = 0
        while i < len(lin):
            w, b = lin[i].weight.detach(), lin[i].bias
            b = b.detach() if b is not None else None
            relu = False
            if i + 1 < len(lin) and isinstance(lin[i + 1], nn.BatchNorm1d):
                w, b = _fold_bn(w, b, lin[i + 1])
                relu = True
                i += 2
            else:
                i += 1
            j = len(self.relus)
            self.register_buffer(f"fc{j}_w", w.detach().contiguous())
            self.register_buffer(f"fc{j}_b", None if b is None else b.detach().contiguous())
            self.relus.append(relu)
        self.side = PATCH // 2**nblocks
        # Winograd forms of the heavy dilated 3x3 layers (buffers too: .to() moves them)
        self.winograd: list[int] = []
        for i in range(k, nblocks) if winograd else ():
            w = getattr(self, f"conv{i}_w")
            if self.kernels[i] == 3 and w.shape[0] * w.shape[1] >= WINOGRAD_MIN_CHANNELS:
                wg = transform_weights(w, getattr(self, f"conv{i}_b"))
                self.register_buffer(f"wino{i}_u", wg.u)
                self.register_buffer(f"wino{i}_in", wg.b_in)
                self.register_buffer(f"wino{i}_out", wg.a_out)
                self.winograd.append(i)
                self.winograd_m = wg.m

    def _winograd(self, i: int) -> WinogradWeights:
        return WinogradWeights(self.winograd_m, getattr(self, f"wino{i}_u"),
                               getattr(self, f"wino{i}_in"), getattr(self, f"wino{i}_out"),
                               getattr(self, f"conv{i}_b"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dil = 1
        fast = x.device.type == "cpu" and x.shape[0] == 1
        for i, kk in enumerate(self.kernels):
            if fast and i in self.winograd:
                hwc = x[0].permute(1, 2, 0)
                x = winograd_conv3x3(hwc, self._winograd(i), dil).permute(2, 0, 1)[None]
            else:
                w, b = getattr(self, f"conv{i}_w"), getattr(self, f"conv{i}_b")
                x = F.conv2d(x, w, b, padding=dil * (kk // 2), dilation=dil)
            # max-pool before ReLU (they commute) on the smaller map
            if i < self.k:
                x = F.max_pool2d(x, 2, 2)
            else:
                x = _max2(x, dil)
                dil *= 2
            x = torch.relu_(x)
        cin = x.shape[1]
        for j, relu in enumerate(self.relus):
            w, b = getattr(self, f"fc{j}_w"), getattr(self, f"fc{j}_b")
            if j == 0:
                x = F.conv2d(x, w.view(w.shape[0], cin, self.side, self.side), b, dilation=dil)
            else:
                x = F.conv2d(x, w.view(w.shape[0], w.shape[1], 1, 1), b)
            if relu:
                x = torch.relu_(x)
        return x


def context_margin(model: PatchCNN, stride: int) -> int:
    """Pixels beyond a window that influence its dense score (the receptive field's reach
    through the 'same' convolutions), rounded up to a multiple of ``stride``."""
    reach = sum((k // 2) * 2**i for i, k in enumerate(model.arch.p))
    return -(-reach // stride) * stride


def dense_net(model: PatchCNN, stride: int, device: str | torch.device = "cpu") -> DenseNet:
    """The :class:`DenseNet` of ``model`` at ``stride``, on ``device``, in the memory layout
    :func:`score_map_dense` runs it in (build it once to score many images)."""
    # channels_last: oneDNN's faster layout here (0.52 against 0.75 s at stride 4)
    return DenseNet(model, stride).to(device).to(memory_format=torch.channels_last)


@torch.no_grad()
def score_map_dense(model: PatchCNN, image: np.ndarray, stride: int = 4, tile: int = 1024,
                    device: str | torch.device = "cpu", net: DenseNet | None = None
                    ) -> ScoreMap:
    """Score map by running the CNN convolutionally over the image, in tiles of about
    ``tile`` x ``tile`` pixels. Each tile carries :func:`context_margin` pixels of context on
    every side, so the result does not depend on the tiling. ``net``: ``model``'s
    :func:`dense_net` at ``stride``, when the caller keeps one (else it is built here)."""
    a = _check_image(image)
    h, w = a.shape
    gh, gw = grid_shape(a.shape, stride)
    if net is None:
        net = dense_net(model, stride, device)
    elif net.stride != stride:
        raise ValueError(f"a DenseNet of stride {net.stride} cannot score at stride {stride}")
    margin = context_margin(model, stride)
    out = np.empty((gh, gw), np.float32)
    step = max((max(tile, 2 * PATCH) - PATCH) // stride, 1)  # windows per tile and axis
    for i0 in range(0, gh, step):
        for j0 in range(0, gw, step):
            ni, nj = min(step, gh - i0), min(step, gw - j0)
            r0, c0 = max(i0 * stride - margin, 0), max(j0 * stride - margin, 0)
            r1 = min((i0 + ni - 1) * stride + PATCH + margin, h)
            c1 = min((j0 + nj - 1) * stride + PATCH + margin, w)
            x = normalise_float(np.ascontiguousarray(a[r0:r1, c0:c1]))[None, None].to(device)
            x = x.contiguous(memory_format=torch.channels_last)
            oi, oj = (i0 * stride - r0) // stride, (j0 * stride - c0) // stride
            logits = net(x)[0, :, oi:oi + ni, oj:oj + nj]
            p = torch.softmax(logits, dim=0)
            out[i0:i0 + ni, j0:j0 + nj] = (p[1] - p[0]).cpu().numpy()
    return ScoreMap(out, stride, a.shape)


def score_map(model: PatchCNN, image: np.ndarray, params: DetectParams | None = None,
              batch: int = INFERENCE_BATCH, device: str | torch.device = "cpu",
              mask: np.ndarray | None = None) -> ScoreMap:
    """Score map in the mode of ``params`` (default :class:`DetectParams`: ``patch``);
    ``mask``: patch mode skips the windows that hold no mask pixel (see
    :func:`score_map_patch`)."""
    p = params or DetectParams()
    if p.mode == "patch":
        return score_map_patch(model, image, p.stride, batch, device, mask)
    if p.mode == "dense":
        return score_map_dense(model, image, p.stride, device=device)
    raise ValueError(f"mode {p.mode!r}: the score map of a segmenter is "
                     "xdefect.segment.score_map (or a Detector's)")


# -------------------------------------------------------------------------------- regions


def disk(radius: int) -> np.ndarray:
    """Boolean disk structuring element of the given radius (pixels)."""
    r = int(radius)
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return xx * xx + yy * yy <= r * r


@dataclass(frozen=True)
class Labelled:
    """First stage of :func:`regions` (threshold, dilate, mask, label), reusable for
    several minimum areas and box rules. ``labels``: ``(H, W)`` int region labels (0 =
    background); ``areas[k]``: pixels of region ``k``; ``centre_rows``/``centre_cols``/
    ``centre_scores``/``centre_labels``: the hit windows' centres, scores and regions;
    ``centre_peaks``: whether each is a local maximum (3x3 windows, one cell per flat top)
    of the score map smoothed with ``sigma``; ``centre_smooth``: its smoothed score."""

    labels: np.ndarray
    areas: np.ndarray
    centre_rows: np.ndarray
    centre_cols: np.ndarray
    centre_scores: np.ndarray
    centre_labels: np.ndarray
    centre_peaks: np.ndarray
    centre_smooth: np.ndarray


def _region_map(smap: ScoreMap, level: float, radius: int, mask: np.ndarray | None
                ) -> tuple[np.ndarray, np.ndarray]:
    """The grid cells above ``level`` and the image's pixel map of their centres, dilated
    with a disk of ``radius`` pixels (Euclidean) and ANDed with ``mask``."""
    h, w = smap.image_shape
    hits = np.argwhere(smap.values > level)
    centres = np.zeros((h, w), bool)
    centres[hits[:, 0] * smap.stride + smap.offset, hits[:, 1] * smap.stride + smap.offset] = True
    out = ndi.distance_transform_edt(~centres) <= radius if radius > 0 else centres
    if mask is not None:
        out &= mask
    return hits, out


def label_regions(smap: ScoreMap, theta: float, radius: int, mask: np.ndarray | None,
                  sigma: float = 0.0, link: float = 1.0) -> Labelled | None:
    """Threshold the score map, dilate the hit centres with a disk of ``radius`` pixels
    (Euclidean), AND with ``mask`` and label 8-connected regions; ``None`` when nothing
    is above ``theta``. ``sigma`` (grid cells) smooths the map for its local maxima.
    ``link`` < ``theta``: regions connected through the (likewise dilated and masked)
    centres above ``link`` are one region (module docstring, "Linking regions"); each
    keeps only its pixels of the map above ``theta``."""
    hits, region_map = _region_map(smap, theta, radius, mask)
    if len(hits) == 0:
        return None
    rows = hits[:, 0] * smap.stride + smap.offset
    cols = hits[:, 1] * smap.stride + smap.offset
    structure = np.ones((3, 3), bool)
    if link < theta:
        low, _ = ndi.label(_region_map(smap, link, radius, mask)[1], structure=structure)
        low[~region_map] = 0
        ids = np.unique(low[low > 0])
        index = np.zeros(int(low.max()) + 1, np.int32)
        index[ids] = np.arange(1, len(ids) + 1)
        lab, n = index[low], len(ids)
    else:
        lab, n = ndi.label(region_map, structure=structure)
    areas = np.bincount(lab.ravel(), minlength=n + 1)
    sm = (ndi.gaussian_filter(smap.values.astype(np.float64), sigma, mode="nearest")
          if sigma > 0 else smap.values)
    peak = _maxima(sm)
    return Labelled(lab, areas, rows, cols, smap.values[hits[:, 0], hits[:, 1]],
                    lab[rows, cols], peak[hits[:, 0], hits[:, 1]],
                    sm[hits[:, 0], hits[:, 1]].astype(np.float64))


def _maxima(values: np.ndarray) -> np.ndarray:
    """Local maxima of a grid (3x3 neighbourhood), one cell per flat top: cells tied at
    a maximum and 8-connected form one maximum, represented by the member nearest to
    their centroid (a saturated plateau gives its middle, not its first cell)."""
    top = values >= ndi.maximum_filter(values, size=3, mode="nearest")
    lab, n = ndi.label(top, structure=np.ones((3, 3), bool))
    out = np.zeros(values.shape, bool)
    if n == 0:
        return out
    rr, cc = np.nonzero(lab)
    k = lab[rr, cc] - 1
    cnt = np.bincount(k, minlength=n)
    mr = np.bincount(k, rr, minlength=n) / cnt
    mc = np.bincount(k, cc, minlength=n) / cnt
    d = (rr - mr[k]) ** 2 + (cc - mc[k]) ** 2
    order = np.lexsort((d, k))  # by component, then by distance to its centroid
    first = order[np.r_[True, k[order][1:] != k[order][:-1]]]
    out[rr[first], cc[first]] = True
    return out


def boxes_of_regions(lab: Labelled, a_min: int, box_rule: str, box_margin: int,
                     theta: float, nms: int = 0, widen: int = -1, grow: int = 0
                     ) -> list[Detection]:
    """Second stage of :func:`regions`: drop small regions, one box and score per region
    (each box grown by ``grow`` pixels a side, clipped to the image)."""
    h, w = lab.labels.shape
    out: list[Detection] = []
    objs = ndi.find_objects(lab.labels)
    keep = np.flatnonzero(lab.areas >= max(a_min, 1))
    for k in keep[keep > 0]:
        sl = objs[k - 1]
        if sl is None:
            continue
        sel = lab.centre_labels == k
        # a region whose centres all lie outside the mask ranks at theta
        score = float(lab.centre_scores[sel].max()) if sel.any() else float(theta)
        if box_rule in ("peaks", "blobs", "extent") and sel.any():
            out.extend(_peak_boxes(lab, sel, box_margin, int(lab.areas[k]), w, h,
                                   nms or box_margin, box_rule != "peaks", widen,
                                   every=box_rule == "extent"))
            continue
        if box_rule == "region" or not sel.any():
            box = (sl[1].start, sl[0].start, sl[1].stop, sl[0].stop)
        else:
            rr, cc = lab.centre_rows[sel], lab.centre_cols[sel]
            m = PATCH // 2 if box_rule == "windows" else box_margin
            extra = 1 if box_rule == "centres" else 0
            box = (max(int(cc.min()) - m, 0), max(int(rr.min()) - m, 0),
                   min(int(cc.max()) + m + extra, w), min(int(rr.max()) + m + extra, h))
        out.append(Detection(tuple(int(v) for v in box), score, int(lab.areas[k])))  # type: ignore[arg-type]
    out.sort(key=lambda d: -d.score)
    return grow_detections(out, grow, (h, w))


def grow_detections(dets: list[Detection], grow: int, shape: tuple[int, ...]
                    ) -> list[Detection]:
    """``dets`` with every box grown by ``grow`` pixels a side, clipped to an image of
    ``shape`` ``(H, W)`` (the same list when ``grow`` is 0)."""
    if not grow:
        return dets
    h, w = shape[:2]
    return [replace(d, box=(max(d.box[0] - grow, 0), max(d.box[1] - grow, 0),
                            min(d.box[2] + grow, w), min(d.box[3] + grow, h)))
            for d in dets]


def resize_detections(dets: list[Detection], scale: float, shape: tuple[int, ...]
                      ) -> list[Detection]:
    """``dets`` with every box's width and height multiplied by ``scale`` about its centre
    (module docstring, "Box scale"; at least one pixel a side), clipped to an image of
    ``shape`` ``(H, W)``; the same list when ``scale`` is 1. Scores and areas are kept."""
    if scale == 1 or not dets:
        return dets
    h, w = shape[:2]
    b = np.asarray([d.box for d in dets], np.float64).reshape(-1, 4)
    centre = (b[:, :2] + b[:, 2:]) / 2
    half = np.maximum((b[:, 2:] - b[:, :2]) * scale, 1.0) / 2
    lo = np.floor(centre - half + 0.5).astype(np.int64)
    hi = np.maximum(np.floor(centre + half + 0.5).astype(np.int64), lo + 1)
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, [w, h])
    return [replace(d, box=(int(a[0]), int(a[1]), int(c[0]), int(c[1])))
            for d, a, c in zip(dets, lo, hi, strict=True)]


def join_detections(dets: list[Detection], gap: int) -> list[Detection]:
    """``dets`` with the boxes at most ``gap`` pixels apart (Chebyshev distance between
    the boxes, 0 when they touch or overlap) joined into their enclosing box,
    transitively and again until no two boxes are that close (module docstring, "Joining
    boxes"); a joined box is scored by its highest member, its area is the members' sum.
    Sorted by decreasing score. ``gap`` -1: ``dets`` unchanged."""
    if gap < 0 or len(dets) < 2:
        return dets
    boxes = np.asarray([d.box for d in dets], np.int64).reshape(-1, 4)
    scores = np.asarray([d.score for d in dets], float)
    areas = np.asarray([d.area for d in dets], np.int64)
    while True:
        gx = np.maximum(boxes[:, None, 0] - boxes[None, :, 2],
                        boxes[None, :, 0] - boxes[:, None, 2])
        gy = np.maximum(boxes[:, None, 1] - boxes[None, :, 3],
                        boxes[None, :, 1] - boxes[:, None, 3])
        n, comp = connected_components(np.maximum(gx, gy) <= gap, directed=False)
        if n == len(boxes):
            break
        order = np.argsort(comp, kind="stable")
        starts = np.r_[0, np.cumsum(np.bincount(comp, minlength=n))[:-1]]
        b = boxes[order]
        boxes = np.concatenate([np.minimum.reduceat(b[:, :2], starts),
                                np.maximum.reduceat(b[:, 2:], starts)], axis=1)
        scores = np.maximum.reduceat(scores[order], starts)
        areas = np.add.reduceat(areas[order], starts)
    out = [Detection(tuple(int(v) for v in b), float(s), int(a))  # type: ignore[arg-type]
           for b, s, a in zip(boxes, scores, areas, strict=True)]
    out.sort(key=lambda d: -d.score)
    return out


#: the largest ``DetectParams.box_scale``
MAX_BOX_SCALE = 4.0
#: probabilities are clipped to ``[EXTENT_EPS, 1 - EXTENT_EPS]`` before their log-odds
EXTENT_EPS = 1e-6


def log_odds(values: np.ndarray) -> np.ndarray:
    """``log(p / (1 - p))`` of scores ``2 p - 1`` (float64; p clipped to
    ``[1e-6, 1 - 1e-6]``, so within +-13.8)."""
    p = np.clip((np.asarray(values, np.float64) + 1) / 2, EXTENT_EPS, 1 - EXTENT_EPS)
    return np.log(p) - np.log1p(-p)


def relative_extents(lab: Labelled, smap: ScoreMap, mask: np.ndarray | None,
                     fraction: float, a_min: int, theta: float) -> list[Detection]:
    """Boxes by relative extent (module docstring): each region of ``lab`` with at least
    ``a_min`` pixels is a seed; its box spans the 8-connected pixels (inside ``mask``)
    whose log-odds exceed ``fraction`` times the seed's peak log-odds and that touch the
    seed. Scored by the seed's peak; a box inside a higher-scored one is dropped; sorted
    by decreasing score. ``smap``: a per-pixel map (stride 1, offset 0)."""
    if smap.stride != 1 or smap.offset != 0:
        raise ValueError("relative extents need a per-pixel score map (stride 1, offset 0)")
    objs = ndi.find_objects(lab.labels)
    seeds = []
    for k in np.flatnonzero(lab.areas >= max(a_min, 1)):
        sel = lab.centre_labels == k
        if k == 0 or objs[k - 1] is None or not sel.any():
            continue
        seeds.append((float(lab.centre_scores[sel].max()), int(k)))
    seeds.sort(key=lambda t: -t[0])
    odds = log_odds(smap.values) if seeds else None
    kept: list[Detection] = []
    for score, k in seeds:
        assert odds is not None
        level = fraction * float(log_odds(np.array(score)))
        box, area = _grown_extent(odds, level, lab.labels, k, objs[k - 1], mask)
        x1, y1, x2, y2 = box
        if any(d.box[0] <= x1 and d.box[1] <= y1 and d.box[2] >= x2 and d.box[3] >= y2
               for d in kept):
            continue
        kept.append(Detection(box, score, area))
    return kept


def _grown_extent(odds: np.ndarray, level: float, labels: np.ndarray, k: int,
                  sl: tuple[slice, slice], mask: np.ndarray | None
                  ) -> tuple[tuple[int, int, int, int], int]:
    """Box and pixel count of the pixels above ``level`` (inside ``mask``) connected to
    region ``k`` (the region itself if none is: a seed peaking at p <= 0.5), searched in
    a window around the region, widened until the extent fits in it."""
    h, w = labels.shape
    margin = 32
    while True:
        y0, y1 = max(sl[0].start - margin, 0), min(sl[0].stop + margin, h)
        x0, x1 = max(sl[1].start - margin, 0), min(sl[1].stop + margin, w)
        above = odds[y0:y1, x0:x1] > level
        seed = labels[y0:y1, x0:x1] == k
        if mask is not None:
            above &= mask[y0:y1, x0:x1]
        comp, _ = ndi.label(above, structure=np.ones((3, 3), bool))
        ids = np.unique(comp[seed])
        ids = ids[ids > 0]
        # a seed peaking at p <= 0.5 has no pixel above its level: the seed itself
        region = np.isin(comp, ids) if ids.size else seed
        rr, cc = np.nonzero(region)
        r0, r1, c0, c1 = int(rr.min()), int(rr.max()) + 1, int(cc.min()), int(cc.max()) + 1
        inside = ((r0 > 0 or y0 == 0) and (r1 < y1 - y0 or y1 == h)
                  and (c0 > 0 or x0 == 0) and (c1 < x1 - x0 or x1 == w))
        if inside or (y0 == 0 and x0 == 0 and y1 == h and x1 == w):
            return (x0 + c0, y0 + r0, x0 + c1, y0 + r1), int(region.sum())
        margin *= 2


def _peak_boxes(lab: Labelled, sel: np.ndarray, m: int, area: int, w: int, h: int,
                nms: int, blobs: bool = False, widen: int = -1, every: bool = False
                ) -> list[Detection]:
    """One box of ``2 * m + 1`` pixels per local maximum in a region, greedily
    suppressing maxima closer than ``nms`` pixels (Chebyshev) to a higher one.
    ``blobs``: maxima ordered and scored by the smoothed score. ``widen`` >= 0: a region
    with a single maximum gets at least its window centres' extent less ``widen`` pixels
    a side. ``every`` (the ``extent`` rule): every maximum gets at least the extent of
    the region's window centres nearest to it (Chebyshev), less ``widen`` a side."""
    key = lab.centre_smooth if blobs else lab.centre_scores
    idx = np.flatnonzero(sel & lab.centre_peaks)
    if idx.size == 0:
        idx = np.flatnonzero(sel)[[int(np.argmax(key[sel]))]]
    idx = idx[np.argsort(-key[idx], kind="stable")]
    kept: list[int] = []
    for i in idx:
        r, c = lab.centre_rows[i], lab.centre_cols[i]
        if all(max(abs(r - lab.centre_rows[j]), abs(c - lab.centre_cols[j])) >= nms
               for j in kept):
            kept.append(int(i))
    out = []
    members = np.flatnonzero(sel)
    owner = None
    if every and len(kept) > 1:  # each window centre belongs to its nearest kept maximum
        kr, kc = lab.centre_rows[kept], lab.centre_cols[kept]
        d = np.maximum(np.abs(lab.centre_rows[members][:, None] - kr[None, :]),
                       np.abs(lab.centre_cols[members][:, None] - kc[None, :]))
        owner = np.argmin(d, axis=1)
    for n, i in enumerate(kept):
        r, c = int(lab.centre_rows[i]), int(lab.centre_cols[i])
        box = [c - m, r - m, c + m + 1, r + m + 1]
        if widen >= 0 and (len(kept) == 1 or every):
            mine = members if owner is None else members[owner == n]
            rr, cc = lab.centre_rows[mine], lab.centre_cols[mine]
            box = [min(box[0], int(cc.min()) + widen), min(box[1], int(rr.min()) + widen),
                   max(box[2], int(cc.max()) - widen + 1),
                   max(box[3], int(rr.max()) - widen + 1)]
        box = [max(box[0], 0), max(box[1], 0), min(box[2], w), min(box[3], h)]
        out.append(Detection(tuple(box), float(key[i]), area))  # type: ignore[arg-type]
    return out


def regions(smap: ScoreMap, params: DetectParams | None = None,
            mask: np.ndarray | None = None) -> list[Detection]:
    """The paper's f2: threshold, dilate the window centres, mask, label, filter, box.

    ``mask``: casting mask ``(H, W)`` (ignored when ``params.use_mask`` is False).
    Detections are sorted by decreasing score.
    """
    p = params or DetectParams()
    use = mask if p.use_mask else None
    lab = label_regions(smap, p.theta, p.radius, use, p.sigma, p.link)
    if lab is None:
        return []
    if p.extent_fraction:
        dets = relative_extents(lab, smap, use, p.extent_fraction, p.a_min, p.theta)
    else:
        dets = boxes_of_regions(lab, p.a_min, p.box_rule, p.box_margin, p.theta, p.nms,
                                p.widen)
    return finish_boxes(dets, p, smap.image_shape)


def finish_boxes(dets: list[Detection], params: DetectParams, shape: tuple[int, ...]
                 ) -> list[Detection]:
    """The last steps every box rule's boxes go through in :func:`regions`: growth by
    ``params.grow``, the box scale ``params.box_scale``, joining at ``params.join`` (each
    clipped to an image of ``shape`` ``(H, W)``). The report threshold is not applied."""
    grown = grow_detections(dets, params.grow, shape)
    return join_detections(resize_detections(grown, params.box_scale, shape), params.join)


def detect(model: PatchCNN, image: np.ndarray, params: DetectParams | None = None,
           mask: np.ndarray | None = None, batch: int = INFERENCE_BATCH,
           device: str | torch.device = "cpu",
           score_fn: Callable[[np.ndarray, DetectParams], ScoreMap] | None = None
           ) -> tuple[list[Detection], ScoreMap]:
    """Score map and regions of one image. ``mask`` defaults to the casting mask (with
    ``params.use_mask``); windows that cannot touch it are not run.

    With an image pyramid (``params.scales`` other than ``(1,)``), each level
    (:func:`downsample`) is scanned with the same parameters, its boxes scaled back to the
    image's pixels and all levels merged (:func:`merge_detections`); the score map
    returned is the finest level's. ``score_fn(image, params)``: another way to compute
    the score map (the ONNX Runtime backend, :mod:`xdefect.export`); ``model`` is then
    unused."""
    p = params or DetectParams()
    if p.use_mask and mask is None:
        mask = casting_mask(image)
    # windows holding no mask pixel cannot reach a region inside it while the dilation
    # stays under half a window and every skipped window (score -1) stays below theta
    skip = p.use_mask and p.radius < PATCH // 2 and p.theta >= -1
    maps: dict[int, ScoreMap] = {}
    masks: dict[int, np.ndarray | None] = {}
    for f in sorted(p.scales):
        img = downsample(image, f)
        if min(img.shape) < PATCH:
            continue  # the level is smaller than one window
        masks[f] = None if mask is None else downsample_mask(mask, f)
        maps[f] = (score_fn(img, p) if score_fn is not None else
                   score_map(model, img, p, batch, device, masks[f] if skip else None))
    if not maps:
        _check_image(image)  # the image itself is smaller than a window: say so
    return pyramid_regions(maps, masks, p, np.shape(image)), maps[min(maps)]


def pyramid_regions(maps: dict[int, ScoreMap], masks: dict[int, np.ndarray | None],
                    params: DetectParams, shape: tuple[int, ...]) -> list[Detection]:
    """Regions of the score maps of several pyramid levels (``{factor: map}``, masks
    likewise), each level's boxes in the pixels of the image of ``shape``, merged by
    :func:`merge_detections` when there is more than one level."""
    levels = [scale_detections(regions(maps[f], params, masks[f]), f, shape)
              for f in sorted(maps)]
    dets = levels[0] if len(levels) == 1 else merge_detections(levels, params.merge,
                                                                params.merge_rule)
    return reported(dets, params.min_score)


def reported(dets: list[Detection], min_score: float) -> list[Detection]:
    """The detections scoring at least ``min_score`` (``DetectParams.min_score``)."""
    return dets if min_score <= -1 else [d for d in dets if d.score >= min_score]


# --------------------------------------------------------------------------- image pyramid


def downsample(image: np.ndarray, factor: int) -> np.ndarray:
    """The pyramid level of ``factor``: the mean of each ``factor`` x ``factor`` block of
    pixels (rows and columns beyond the last whole block dropped), float32 in the image's
    units. Pixel ``(i, j)`` of the level covers image rows ``i*factor : (i+1)*factor``.
    ``factor`` 1 returns the image unchanged."""
    if factor == 1:
        return image
    a = np.asarray(image, dtype=np.float32)
    h, w = (a.shape[0] // factor) * factor, (a.shape[1] // factor) * factor
    return a[:h, :w].reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))


def downsample_mask(mask: np.ndarray, factor: int) -> np.ndarray:
    """A boolean mask at pyramid level ``factor``: a level pixel is in the mask when at
    least half of its block is."""
    if factor == 1:
        return mask
    return downsample(mask.astype(np.float32), factor) >= 0.5


def scale_detections(dets: list[Detection], factor: int, shape: tuple[int, ...]
                     ) -> list[Detection]:
    """Detections of pyramid level ``factor`` in the pixels of the image of ``shape``
    (boxes multiplied by ``factor`` and clipped to the image, areas by ``factor**2``)."""
    if factor == 1:
        return dets
    h, w = int(shape[0]), int(shape[1])
    out = []
    for d in dets:
        x1, y1, x2, y2 = (v * factor for v in d.box)
        out.append(Detection((x1, y1, min(x2, w), min(y2, h)), d.score, d.area * factor**2))
    return out


def merge_detections(levels: list[list[Detection]], overlap: float = 0.5,
                     rule: str = "iou") -> list[Detection]:
    """Pool the detections of several pyramid levels, best score first, and drop each one
    that a higher-scored detection of *another* level overlaps by at least ``overlap``
    (``rule`` "iou": intersection over union; "iom": intersection over the smaller box's
    area, so that a small box inside a large one goes). Detections of one level are never
    compared with each other: each level's own box rule already separated them."""
    pool = sorted(((d, k) for k, lev in enumerate(levels) for d in lev),
                  key=lambda t: -t[0].score)
    boxes = np.asarray([d.box for d, _ in pool], float).reshape(-1, 4)
    level = np.asarray([k for _, k in pool], int)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    kept: list[int] = []
    for i in range(len(pool)):
        if kept:
            k = np.asarray(kept)
            k = k[level[k] != level[i]]
            iw = (np.minimum(boxes[k, 2], boxes[i, 2]) - np.maximum(boxes[k, 0], boxes[i, 0]))
            ih = (np.minimum(boxes[k, 3], boxes[i, 3]) - np.maximum(boxes[k, 1], boxes[i, 1]))
            inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
            den = (areas[k] + areas[i] - inter if rule == "iou"
                   else np.minimum(areas[k], areas[i]))
            if np.any(inter >= overlap * np.maximum(den, 1e-9)):
                continue
        kept.append(i)
    return [pool[i][0] for i in kept]
