"""The Xnet-II family: one configurable patch CNN and a registry of named architectures.

An architecture is ``(p, d, f)`` (the paper's notation): ``len(p) == len(d)`` 'conv' blocks,
block ``i`` = Conv2D ``p[i] x p[i]`` with ``d[i]`` channels (same padding, bias) ->
BatchNorm (per channel) -> ReLU -> MaxPool 2x2 -> Dropout; then flatten and 'fc' blocks
``f``: Dense (no bias) -> BatchNorm -> ReLU -> Dropout for each but the last, and
Dense(``f[-1]``) (bias) -> softmax. Input: one 32x32 grey patch, normalised by
:func:`normalise`; output: two activations, index 0 'no-defect', 1 'defect' (the model
returns logits; ``softmax`` gives the paper's ``y0``, ``y1``).

An architecture may stretch every window to its own contrast before its first layer
(``stretch``, a floor in grey levels; :func:`stretch_windows`): C0001's voids, a few grey
levels deep, are then as large to the network as the training castings' (Table 3 on the
``table3`` protocol: ``docs/results.md``). Such a model scores windows one by one (the
``patch`` mode); the ``dense`` score map, whose windows share their first layer's work,
cannot apply it and refuses.

The paper's Table 2 lists no activation layer in its 'conv' blocks (its Keras Conv2D
layers presumably carried ``activation='relu'``); xdefect applies ReLU after BatchNorm.

Parameter counts follow Keras, as the paper's tables do: BatchNorm has four numbers per
channel (scale, shift, running mean, running variance). ``xnet2`` then has 1,349,522. The
paper prints 1,346,010, which only adds up if its conv BatchNorm layers had normalised over
the image width (4 x width = 128, 64, 32, 16, 8 instead of 4 x channels): 1,349,522
- 4 x (20 + 40 + 80 + 160 + 640) + 4 x (32 + 16 + 8 + 4 + 2) = 1,346,010.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from xdefect.errors import InputError
from xdefect.windows import PATCH

__all__ = ["INFERENCE_BATCH", "NORMALISATION", "REGISTRY", "STRETCH_SD",
           "XNET2_STRETCH_FLOOR", "ArchConfig",
           "PatchCNN", "bf16_native", "count_params_keras", "create_model", "get_arch",
           "inference_copy", "normalise", "normalise_float", "registry_table", "setup_device",
           "stretch_windows"]

# Input normalisation, defined once: float = (uint8 / 255 - MEAN) / STD.
NORMALISATION = {"scale": 1.0 / 255.0, "mean": 0.5, "std": 0.25}


def normalise(patches: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (or [0, 255] float) patches ``(N, 32, 32)`` -> float32 tensor ``(N, 1, 32, 32)``."""
    t = torch.as_tensor(np.asarray(patches) if not isinstance(patches, torch.Tensor) else patches)
    t = t.to(torch.float32)
    if t.ndim == 3:
        t = t.unsqueeze(1)
    return (t * NORMALISATION["scale"] - NORMALISATION["mean"]) / NORMALISATION["std"]


#: a stretched window's standard deviation in normalised units (:func:`stretch_windows`):
#: half a unit, 32 grey levels, so that the normalised range of uint8 grey levels (+-2)
#: holds four standard deviations either side of the mean
STRETCH_SD = 0.5


def stretch_windows(x: torch.Tensor, floor: float) -> torch.Tensor:
    """Normalised windows ``(N, C, H, W)`` (:func:`normalise`), each mapped to its own
    contrast: ``STRETCH_SD * (x - m) / max(s, floor)`` clipped to +-2, with ``m`` and
    ``s`` the mean and (population) standard deviation of the window's centre 32x32 patch
    (windows with surroundings, ``H = 32 + 2M``, are stretched as their patch is);
    ``floor`` in grey levels (> 0) keeps flat, noiseless windows from being blown up to
    full contrast. A stretched window's mean is 0 (mid-grey) and its standard deviation
    half a unit (32 grey levels) unless the floor or the clip bind."""
    if not floor > 0:
        raise ValueError(f"stretch floor must be positive, got {floor}")
    h, w = x.shape[-2:]
    r, c = (h - PATCH) // 2, (w - PATCH) // 2
    centre = x[..., r:r + PATCH, c:c + PATCH]
    m = centre.mean(dim=(-2, -1), keepdim=True)
    sd = ((centre - m) ** 2).mean(dim=(-2, -1), keepdim=True).sqrt()
    least = floor * NORMALISATION["scale"] / NORMALISATION["std"]  # grey levels -> units
    return (STRETCH_SD * (x - m) / sd.clamp(min=least)).clamp(-2.0, 2.0)


def normalise_float(image01: np.ndarray | torch.Tensor) -> torch.Tensor:
    """The same normalisation for grey values already in [0, 1] (whole images)."""
    t = image01 if isinstance(image01, torch.Tensor) else torch.from_numpy(
        np.array(image01, dtype=np.float32))  # a writable copy
    return (t.to(torch.float32) - NORMALISATION["mean"]) / NORMALISATION["std"]


@dataclass(frozen=True)
class ArchConfig:
    """A (p, d, f) architecture. ``conv_dropout``/``fc_dropout``: dropout rates."""

    name: str
    p: tuple[int, ...]
    d: tuple[int, ...]
    f: tuple[int, ...]
    conv_dropout: float = 0.1
    fc_dropout: float = 0.3
    description: str = ""
    #: per-window contrast stretch before the first layer, its floor in grey levels
    #: (:func:`stretch_windows`); 0: off (the paper's models)
    stretch: float = 0.0

    def __post_init__(self) -> None:
        if not (np.isfinite(self.stretch) and self.stretch >= 0):
            raise ValueError(f"stretch must be 0 (off) or a positive floor in grey levels, "
                             f"got {self.stretch}")
        if len(self.p) != len(self.d) or not self.p:
            raise ValueError("p and d must have the same, non-zero length")
        if PATCH % (2 ** len(self.p)):
            raise ValueError("too many conv blocks for a 32x32 patch")
        if not self.f or self.f[-1] != 2:
            raise ValueError("the last fc block must have 2 outputs")

    @property
    def flat_size(self) -> int:
        side = PATCH // 2 ** len(self.p)
        return side * side * self.d[-1]

    def to_dict(self) -> dict:
        out = asdict(self)
        for k in ("p", "d", "f"):
            out[k] = list(out[k])
        if not self.stretch:  # cards of unstretched models stay as they were
            del out["stretch"]
        return out

    @staticmethod
    def from_dict(doc: dict) -> ArchConfig:
        return ArchConfig(name=doc["name"], p=tuple(doc["p"]), d=tuple(doc["d"]),
                          f=tuple(doc["f"]), conv_dropout=float(doc.get("conv_dropout", 0.1)),
                          fc_dropout=float(doc.get("fc_dropout", 0.3)),
                          description=doc.get("description", ""),
                          stretch=float(doc.get("stretch", 0.0)))

    def params(self) -> int:
        """Parameters, Keras convention (BatchNorm: 4 per channel)."""
        n, cin = 0, 1
        for k, c in zip(self.p, self.d, strict=True):
            n += k * k * cin * c + c + 4 * c
            cin = c
        fin = self.flat_size
        for i, fo in enumerate(self.f):
            if i < len(self.f) - 1:
                n += fin * fo + 4 * fo
            else:
                n += fin * fo + fo
            fin = fo
        return n

    def trainable_params(self) -> int:
        """Parameters that training updates (BatchNorm: 2 per channel)."""
        return self.params() - 2 * (sum(self.d) + sum(self.f[:-1]))

    def macs_per_patch(self) -> int:
        """Multiply-accumulates of one forward pass on one 32x32 patch."""
        n, cin, side = 0, 1, PATCH
        for k, c in zip(self.p, self.d, strict=True):
            n += side * side * k * k * cin * c
            cin, side = c, side // 2
        fin = self.flat_size
        for fo in self.f:
            n += fin * fo
            fin = fo
        return n


class PatchCNN(nn.Module):
    """The configurable patch classifier. ``forward`` maps ``(N, 1, 32, 32)`` normalised
    patches to ``(N, 2)`` logits (each patch first stretched to its own contrast when the
    architecture's ``stretch`` is set)."""

    def __init__(self, arch: ArchConfig) -> None:
        super().__init__()
        self.arch = arch
        layers: list[nn.Module] = []
        cin = 1
        for k, c in zip(arch.p, arch.d, strict=True):
            layers += [nn.Conv2d(cin, c, k, padding=k // 2), nn.BatchNorm2d(c),
                       nn.ReLU(inplace=True), nn.MaxPool2d(2), nn.Dropout(arch.conv_dropout)]
            cin = c
        self.features = nn.Sequential(*layers)
        fc: list[nn.Module] = [nn.Flatten()]
        fin = arch.flat_size
        for i, fo in enumerate(arch.f):
            if i < len(arch.f) - 1:
                fc += [nn.Linear(fin, fo, bias=False), nn.BatchNorm1d(fo), nn.ReLU(inplace=True),
                       nn.Dropout(arch.fc_dropout)]
            else:
                fc += [nn.Linear(fin, fo)]
            fin = fo
        self.classifier = nn.Sequential(*fc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of ``(N, 1, 32, 32)`` patches, or of the centre windows of ``(N, 1, 32 +
        2M, 32 + 2M)`` windows with ``M`` pixels of surroundings (``M`` a multiple of
        ``2 ** len(p)``): the convolutions then see the real neighbours instead of zero
        padding, exactly as the dense score map (``detect.DenseNet``) computes that window
        when ``M`` covers its reach (``detect.context_margin``), and the head reads the
        window's own cells. An architecture with ``stretch`` first maps each window to its
        own contrast (:func:`stretch_windows`)."""
        h, w = x.shape[-2:]
        cell = 1 << len(self.arch.p)
        if h != w or h < PATCH or (h - PATCH) % (2 * cell):
            raise ValueError(f"expected 32x32 windows or 32 + 2M with M a multiple of {cell} "
                             f"(square), got {h}x{w}")
        if self.arch.stretch:
            x = stretch_windows(x, self.arch.stretch)
        f = self.features(x)
        side = PATCH >> len(self.arch.p)
        if f.shape[-2:] != (side, side):
            r, c = (f.shape[-2] - side) // 2, (f.shape[-1] - side) // 2
            f = f[:, :, r:r + side, c:c + side]
        return self.classifier(f)


def count_params_keras(model: nn.Module) -> int:
    """Parameters plus BatchNorm running statistics (Keras' count)."""
    n = sum(p.numel() for p in model.parameters())
    n += sum(b.numel() for name, b in model.named_buffers()
             if name.endswith(("running_mean", "running_var")))
    return n


def _t3(i: int, p, d, f, desc: str) -> ArchConfig:
    return ArchConfig(f"t3-{i}", tuple(p), tuple(d), tuple(f), description=desc)


_ROWS = [
    _t3(0, (7, 5, 3), (32, 64, 128), (256, 64, 2), "Table 3 row 0 (= xnet, WACV 2017)"),
    _t3(1, (7, 5, 3), (20, 40, 80), (200, 2), "Table 3 row 1"),
    _t3(2, (7, 5, 3, 3), (20, 40, 80, 160), (320, 160, 2), "Table 3 row 2"),
    _t3(3, (7, 5, 3, 3), (40, 80, 120, 160), (320, 160, 2), "Table 3 row 3"),
    _t3(4, (7, 5, 3, 3), (40, 80, 120, 160), (320, 640, 2), "Table 3 row 4"),
    _t3(5, (7, 5, 3, 3, 3), (20, 40, 80, 160, 320), (200, 400, 2), "Table 3 row 5"),
    _t3(6, (7, 5, 3, 3, 3), (20, 40, 80, 160, 640), (320, 160, 2), "Table 3 row 6 (= xnet2)"),
    _t3(7, (7, 5, 3, 3, 3), (20, 40, 80, 160, 640), (100, 200, 400, 2), "Table 3 row 7"),
]

#: the floor of ``xnet2-stretch`` (grey levels): the floor of the first stretched Table 3
#: run; ``experiments/table3_floor.py`` measures the choice on training castings held out
#: of the ``table3`` protocol (``docs/results.md``)
XNET2_STRETCH_FLOOR = 2.0

REGISTRY: dict[str, ArchConfig] = {
    "xnet2": ArchConfig("xnet2", _ROWS[6].p, _ROWS[6].d, _ROWS[6].f,
                        description="Xnet-II (Table 2; Table 3 row 6)"),
    "xnet": ArchConfig("xnet", _ROWS[0].p, _ROWS[0].d, _ROWS[0].f,
                       description="Xnet (WACV 2017; Table 3 row 0)"),
    **{a.name: a for a in _ROWS},
    "xnet2-stretch": ArchConfig(
        "xnet2-stretch", _ROWS[6].p, _ROWS[6].d, _ROWS[6].f, stretch=XNET2_STRETCH_FLOOR,
        description="Xnet-II with every window stretched to its own contrast; patch mode "
                    "only"),
}


def get_arch(name: str) -> ArchConfig:
    """The registered architecture ``name`` (``KeyError`` with the known names if absent)."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown architecture {name!r} (known: {', '.join(REGISTRY)})") from None


def create_model(arch: str | ArchConfig) -> PatchCNN:
    """Build a fresh model from a registry name or an :class:`ArchConfig`."""
    return PatchCNN(get_arch(arch) if isinstance(arch, str) else arch)


def registry_table() -> list[dict]:
    """``[{"name", "p", "d", "f", "params", "macs_per_patch", ...}]`` for ``models list``."""
    out = []
    for name, a in REGISTRY.items():
        out.append({"name": name, "p": list(a.p), "d": list(a.d), "f": list(a.f),
                    "params": a.params(), "trainable_params": a.trainable_params(),
                    "macs_per_patch": a.macs_per_patch(), "stretch": a.stretch,
                    "description": a.description})
    return out


#: windows per forward pass at inference: measured fastest on 2 CPU cores in
#: ``bench/detect.py`` (larger batches fall out of the caches)
INFERENCE_BATCH = 256


def inference_copy(model: PatchCNN) -> PatchCNN:
    """A copy of ``model`` in eval mode with its weights in ``channels_last`` memory
    format: oneDNN's fastest layout for these convolutions on CPU (about twice float32's
    default layout here, ``bench/detect.py``); the model itself is left as it is."""
    return copy.deepcopy(model).eval().to(memory_format=torch.channels_last)


def bf16_native(device: str) -> bool:
    """Whether ``device`` computes bfloat16 natively (CUDA with bf16 support; a CPU with
    AVX512-BF16 or AMX). Elsewhere bfloat16 autocast is emulated and many times slower
    than float32 (measured 35 against 890 patches/s on this project's AVX2 machine)."""
    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(
            including_emulation=False)
    try:
        with open("/proc/cpuinfo") as fh:
            flags = fh.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def setup_device(device: str | None = None, threads: int | None = None) -> str:
    """Resolve a device name for torch and apply the CPU thread count.

    ``device``: ``"cpu"``, ``"cuda"`` (or ``"cuda:N"``), or ``"auto"``/``None`` for CUDA
    when present, else the CPU; asking for CUDA where there is none is an
    :class:`InputError`. ``threads``: torch's intra-op CPU threads (``None`` or 0: torch's
    default)."""
    if device in (None, "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {device}: CUDA is not available on this machine")
    if device != "cpu" and not device.startswith("cuda"):
        raise InputError(f"--device {device}: expected cpu, cuda or auto")
    if threads is not None and threads < 0:
        raise InputError(f"--threads {threads}: must not be negative (0: torch's default)")
    if threads:
        torch.set_num_threads(threads)
    return device
