"""The segmenter: a fully convolutional model that scores every pixel of a radiograph.

The patch classifier (:mod:`xdefect.models`) answers "is there a defect in this 32x32
window?", so its boxes come from a rule around score peaks and cannot follow a defect
larger than the window. The segmenter says, for every pixel, whether it lies in a
defect's shadow; a detection is then an 8-connected region of the score map above
``theta`` inside the casting mask, boxed by its extent and scored by its highest pixel
(:func:`xdefect.detect.regions` with :data:`SEGMENT_PARAMS`: no window, no box rule).

Architecture (:class:`SegNet`, configured by a :class:`SegConfig` from the
:data:`SEGMENTERS` registry): a stride-2 stem, two 3x3 convolutions (BatchNorm, ReLU)
per scale at a half, a quarter and an eighth of the resolution, then one more 3x3
convolution per entry of ``dilations`` at the eighth (with the default ``(2, 4)`` each
pixel sees about 80 pixels on either side), nearest-neighbour upsampling with skip
connections back to half resolution, and a 1x1 head: logits ``(N, 1, H/2, W/2)`` of a
normalised ``(N, 1, H, W)`` image (``H``, ``W`` multiples of 8; :func:`score_map` pads
by reflection).

An ensemble (:class:`SegEnsemble`, a :class:`SegConfig` with ``members``) runs several
segmenters on the same image; its probability is the mean of theirs. One model file, one
card, which the detector, adaptation and export run like any segmenter (members trained
with other seeds or inputs, e.g. with and without the local contrast channel, err on
different pixels; averaging cancels part of it).

Score: ``2 p - 1`` with ``p`` the sigmoid of the logit upsampled bilinearly to full
resolution, i.e. ``p(defect) - p(no defect)``, in [-1, 1] like the classifier's ``y1 -
y0``; the :class:`~xdefect.detect.ScoreMap` has stride 1 and offset 0 (cell ``(i, j)`` is
pixel ``(i, j)``). Trained by :mod:`xdefect.train_segment` on crops with exact defect
masks (:mod:`xdefect.crops`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xdefect.detect import TTA_VIEWS, DetectParams, ScoreMap
from xdefect.models import NORMALISATION, count_params_keras, normalise_float

__all__ = ["FAMILY", "LCN_FLOOR", "SEGMENTERS", "SEGMENT_PARAMS", "VIEWS", "LocalContrast",
           "ProbabilityNet", "SegConfig", "SegEnsemble", "SegNet", "create_segmenter",
           "get_segmenter", "is_segmenter_arch", "mirror",
           "pad_to_multiple", "probability_map", "score_map", "segment_params", "views_mean"]

#: the ``arch["family"]`` of a segmenter's model card (patch classifiers have none)
FAMILY = "segmenter"

#: detection settings of a segmenter without a ``detection`` block: threshold the
#: per-pixel score at ``theta`` (p > 0.9), no dilation, regions of at least 4 pixels,
#: boxed by their extent and scored by their highest pixel
SEGMENT_PARAMS = DetectParams(stride=1, theta=0.8, radius=0, a_min=4, box_rule="region",
                              box_margin=0, mode="segment", sigma=0.0, widen=-1)


def segment_params(theta: float = SEGMENT_PARAMS.theta, a_min: int = SEGMENT_PARAMS.a_min
                   ) -> DetectParams:
    """:data:`SEGMENT_PARAMS` with another threshold (score ``2 p - 1``) or minimum area."""
    return replace(SEGMENT_PARAMS, theta=float(theta), a_min=int(a_min))


@dataclass(frozen=True)
class SegConfig:
    """A segmenter architecture: ``channels`` at half resolution (twice that at a
    quarter, four times at an eighth), ``dilations`` of the context convolutions at an
    eighth."""

    name: str
    channels: int = 16
    dilations: tuple[int, ...] = (2, 4)
    description: str = ""
    lcn: float = 0.0
    #: an ensemble's members (each a plain segmenter); empty for a plain segmenter, whose
    #: other fields then describe its layers
    members: tuple[SegConfig, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "dilations", tuple(int(d) for d in self.dilations))
        object.__setattr__(self, "lcn", float(self.lcn))
        object.__setattr__(self, "members", tuple(self.members))
        if self.members and (len(self.members) < 2
                             or any(m.members for m in self.members)):
            raise ValueError("an ensemble has at least two members, none of them an ensemble")
        if not 1 <= self.channels <= 512 or any(d < 1 for d in self.dilations):
            raise ValueError("channels must be in 1..512 and dilations >= 1")
        if not (self.lcn == 0.0 or 0.5 <= self.lcn <= 64.0):
            raise ValueError(f"lcn (Gaussian sigma in pixels) must be 0 or in 0.5..64, "
                             f"got {self.lcn}")

    def to_dict(self) -> dict:
        doc = {**asdict(self), "family": FAMILY, "dilations": list(self.dilations)}
        doc.pop("members")
        if self.members:  # (a plain segmenter's card stays as it was before ensembles)
            doc["members"] = [m.to_dict() for m in self.members]
        return doc

    @staticmethod
    def from_dict(doc: dict) -> SegConfig:
        if doc.get("family") != FAMILY:
            raise ValueError(f"not a segmenter architecture (family {doc.get('family')!r})")
        members = doc.get("members") or ()
        if not isinstance(members, list | tuple) or not all(isinstance(m, dict)
                                                             for m in members):
            raise ValueError("an ensemble's members must be a list of architectures")
        return SegConfig(name=str(doc["name"]), channels=int(doc["channels"]),
                         dilations=tuple(doc.get("dilations", (2, 4))),
                         description=str(doc.get("description", "")),
                         lcn=float(doc.get("lcn", 0.0)),
                         members=tuple(SegConfig.from_dict(m) for m in members))

    @staticmethod
    def ensemble(members: list[SegConfig] | tuple[SegConfig, ...], name: str = "ensemble"
                 ) -> SegConfig:
        """The architecture of an ensemble of ``members`` (its own layer fields unused)."""
        ms = tuple(members)
        if len(ms) < 2:
            raise ValueError("an ensemble has at least two members, none of them an ensemble")
        return SegConfig(name=name, channels=ms[0].channels,
                         description="mean probability of " + ", ".join(m.name for m in ms),
                         members=ms)

    def params(self) -> int:
        """Parameters, Keras convention (BatchNorm: 4 per channel), as for the classifiers."""
        return count_params_keras(create_segmenter(self))


SEGMENTERS: dict[str, SegConfig] = {
    "segnet": SegConfig("segnet", 16, (2, 4), "fully convolutional segmenter, 16 channels "
                        "at half resolution, context dilated 2 and 4 at an eighth"),
    "segnet-wide": SegConfig("segnet-wide", 32, (2, 4), "segnet with twice the channels"),
    "segnet-lcn": SegConfig("segnet-lcn", 16, (2, 4), "segnet with a second input channel, "
                            "the local contrast normalisation (sigma 8 px)", lcn=8.0),
}


def is_segmenter_arch(doc: dict) -> bool:
    """Whether a model card's ``arch`` block describes a segmenter."""
    return isinstance(doc, dict) and doc.get("family") == FAMILY


def get_segmenter(name: str) -> SegConfig:
    """The registered segmenter ``name`` (``KeyError`` with the known names if absent)."""
    try:
        return SEGMENTERS[name]
    except KeyError:
        raise KeyError(f"unknown segmenter {name!r} (known: {', '.join(SEGMENTERS)})") from None


def _block(cin: int, cout: int, dil: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=dil, dilation=dil, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


#: the floor of :class:`LocalContrast`'s local standard deviation: 2 grey levels (of 255)
#: in :func:`xdefect.models.normalise_float` units, so flat, noiseless areas are not
#: blown up to unit contrast
LCN_FLOOR = 2.0 / 255.0 / NORMALISATION["std"]


class LocalContrast(nn.Module):
    """Local contrast normalisation of ``(N, 1, H, W)`` images: ``(x - m) / sqrt(v +
    floor^2)`` with ``m`` the Gaussian-weighted local mean (standard deviation ``sigma``
    pixels, truncated at 3 sigma) and ``v`` the Gaussian-weighted local variance around it;
    borders reflected (replicated where the image is smaller than 3 sigma). Removes the
    casting's thickness and the radiograph's exposure, keeps a void's local contrast
    relative to the texture around it. No trainable parameters."""

    def __init__(self, sigma: float, floor: float = LCN_FLOOR) -> None:
        super().__init__()
        r = max(1, math.ceil(3.0 * sigma))
        k = torch.exp(-torch.arange(-r, r + 1, dtype=torch.float32) ** 2 / (2.0 * sigma ** 2))
        self.register_buffer("kernel", (k / k.sum()).view(1, 1, 1, -1), persistent=False)
        self.radius = r
        self.floor = float(floor)

    def blur(self, x: torch.Tensor) -> torch.Tensor:
        r = self.radius
        mode = "reflect" if min(x.shape[-2:]) > r else "replicate"
        x = F.pad(x, (r, r, r, r), mode=mode)
        x = F.conv2d(x, self.kernel)
        return F.conv2d(x, self.kernel.transpose(-1, -2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = x - self.blur(x)
        return d / torch.sqrt(self.blur(d * d) + self.floor ** 2)


class SegNet(nn.Module):
    """Per-pixel defect logits at half resolution (see the module docstring). With
    ``cfg.lcn`` > 0 the network sees two channels: the normalised image and its local
    contrast normalisation (:class:`LocalContrast`, sigma ``cfg.lcn`` pixels)."""

    def __init__(self, cfg: SegConfig) -> None:
        super().__init__()
        self.arch = cfg
        c = cfg.channels
        self.lcn = LocalContrast(cfg.lcn) if cfg.lcn else None
        self.e1 = nn.Sequential(nn.Conv2d(2 if cfg.lcn else 1, c, 3, stride=2, padding=1,
                                          bias=False),
                                nn.BatchNorm2d(c), nn.ReLU(inplace=True), _block(c, c))
        self.e2 = nn.Sequential(_block(c, 2 * c), _block(2 * c, 2 * c))
        self.e3 = nn.Sequential(_block(2 * c, 4 * c), _block(4 * c, 4 * c),
                                *(_block(4 * c, 4 * c, d) for d in cfg.dilations))
        self.d2 = _block(6 * c, 2 * c)
        self.d1 = _block(3 * c, c)
        self.head = nn.Conv2d(c, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, 1, H/2, W/2)`` of normalised images ``(N, 1, H, W)``, ``H`` and
        ``W`` multiples of 8."""
        if x.shape[-1] % 8 or x.shape[-2] % 8:
            raise ValueError(f"image sides must be multiples of 8, got {tuple(x.shape[-2:])}")
        if self.lcn is not None:
            x = torch.cat([x, self.lcn(x)], 1)
        f1 = self.e1(x)
        f2 = self.e2(F.max_pool2d(f1, 2))
        f3 = self.e3(F.max_pool2d(f2, 2))
        u2 = self.d2(torch.cat([F.interpolate(f3, scale_factor=2.0), f2], 1))
        u1 = self.d1(torch.cat([F.interpolate(u2, scale_factor=2.0), f1], 1))
        return self.head(u1)


class SegEnsemble(SegNet):
    """Several segmenters run on the same input: the logit of the mean of their
    probabilities, ``(N, 1, H/2, W/2)`` (clamped to ``[1e-6, 1 - 1e-6]`` before the logit),
    so that everything that trains a :class:`SegNet` trains the ensemble; what scores
    images (:class:`ProbabilityNet`, hence :func:`probability_map`, the detector and the
    ONNX export) averages the members' full-resolution probabilities instead. Its state
    dict holds each member's under ``members.I.``."""

    def __init__(self, cfg: SegConfig) -> None:
        if not cfg.members:
            raise ValueError("an ensemble needs members")
        nn.Module.__init__(self)  # no layers of its own: SegNet's are the members'
        self.arch = cfg
        self.members = nn.ModuleList(SegNet(m) for m in cfg.members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = torch.stack([torch.sigmoid(m(x)) for m in self.members]).mean(0)
        return torch.logit(p, eps=1e-6)


def create_segmenter(arch: str | SegConfig) -> SegNet:
    """A fresh segmenter from a registry name or a :class:`SegConfig` (with ``members``:
    a :class:`SegEnsemble`)."""
    cfg = get_segmenter(arch) if isinstance(arch, str) else arch
    return SegEnsemble(cfg) if cfg.members else SegNet(cfg)


#: the views of :func:`probability_map`'s ``views``: (flip rows, flip columns[, transpose]);
#: the first 4 are the mirror images, the last 4 the same transposed (8: the whole
#: dihedral group, every view the training crops' turns and mirrors could show)
VIEWS = ((False, False), (False, True), (True, False), (True, True),
         (False, False, True), (False, True, True), (True, False, True), (True, True, True))


def mirror(a: np.ndarray, view: tuple[bool, ...], inverse: bool = False) -> np.ndarray:
    """``a`` (``(H, W)``) mirrored up-down and/or left-right as ``view`` says, then
    transposed if its third flag is set; ``inverse``: undo that (transpose first). A view
    without transpose is its own inverse."""
    rows, cols = view[0], view[1]
    swap = len(view) > 2 and view[2]
    if swap and inverse:
        a = a.T
    a = a[::-1 if rows else 1, ::-1 if cols else 1]
    return a.T if swap and not inverse else a


def views_mean(fn, image: np.ndarray, views: int = 1) -> np.ndarray:
    """The mean over the first ``views`` of :data:`VIEWS` of ``fn`` applied to the
    mirrored (and, past 4, transposed) ``image`` and turned back: test-time augmentation
    for any per-pixel map ``fn(image) -> (H, W)``."""
    if views not in TTA_VIEWS:
        raise ValueError(f"views must be one of {', '.join(map(str, TTA_VIEWS))}, got {views}")
    acc = None
    for v in VIEWS[:views]:
        p = mirror(fn(np.ascontiguousarray(mirror(image, v))), v, inverse=True)
        acc = p.astype(np.float64) if acc is None else acc + p
    assert acc is not None
    return (acc / views).astype(np.float32)


@torch.no_grad()
def probability_map(net: SegNet, image: np.ndarray, device: str | torch.device = "cpu",
                    views: int = 1) -> np.ndarray:
    """Defect probability ``(H, W)`` float32 of every pixel of a grey image in [0, 1]
    ``(H, W)``: the image is padded by reflection to multiples of 8, the half-resolution
    map upsampled bilinearly and cropped back. ``views`` 2, 4 or 8: the mean of the
    image's and its mirror images' (8: and their transposes') maps (:func:`views_mean`;
    ``DetectParams.tta``). The network
    runs in eval mode (its training flag is restored)."""
    if views != 1:
        return views_mean(lambda a: probability_map(net, a, device), image, views)
    a = pad_to_multiple(image)
    h, w = np.shape(image)
    x = normalise_float(a)[None, None].to(device)
    was = net.training
    try:
        p = ProbabilityNet(net.eval())(x)
    finally:
        net.train(was)
    return p[0, 0, :h, :w].float().cpu().numpy()


def pad_to_multiple(image: np.ndarray, k: int = 8) -> np.ndarray:
    """A grey image ``(H, W)`` as float32, padded at the bottom and right to multiples of
    ``k`` by reflection (by edge replication where the image is too small to reflect);
    the first ``H`` rows and ``W`` columns are the image."""
    a = np.asarray(image, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError("expected a 2-D grey image")
    h, w = a.shape
    ph, pw = -h % k, -w % k
    mode = "reflect" if min(h, w) > max(ph, pw) else "edge"
    return np.pad(a, ((0, ph), (0, pw)), mode=mode)


class ProbabilityNet(nn.Module):
    """A segmenter with its output brought to full resolution: defect probabilities
    ``(N, 1, H, W)`` (the sigmoid of the logits upsampled bilinearly; of an ensemble, the
    mean of its members') of normalised images
    ``(N, 1, H, W)`` with ``H``, ``W`` multiples of 8 (what :func:`probability_map` runs
    and :mod:`xdefect.export` exports)."""

    def __init__(self, net: SegNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nets = self.net.members if isinstance(self.net, SegEnsemble) else [self.net]
        p = [torch.sigmoid(F.interpolate(n(x), scale_factor=2.0, mode="bilinear",
                                         align_corners=False)) for n in nets]
        return p[0] if len(p) == 1 else torch.stack(p).mean(0)


def score_map(net: SegNet, image: np.ndarray, device: str | torch.device = "cpu",
              views: int = 1) -> ScoreMap:
    """The per-pixel score map ``2 p - 1`` (stride 1, offset 0) of a grey [0, 1] image
    (``views``: as :func:`probability_map`)."""
    p = probability_map(net, image, device, views)
    return ScoreMap(2.0 * p - 1.0, 1, (int(p.shape[0]), int(p.shape[1])), 0)
