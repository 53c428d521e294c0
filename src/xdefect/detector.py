"""The Python entry point to detection: a model, its card and its detection settings.

::

    import xdefect
    det = xdefect.Detector.load()            # the bundled default; or a name or a path
    found = det.detect(image)                # list of Detection(box, score, area)

``image``: a 2-D grey array (uint8, uint16, or float in [0, 1]) or an image file's path.
Boxes are ``(x1, y1, x2, y2)``, 0-based, half-open pixels (x the column, y the row);
``score`` is the highest window score ``y1 - y0`` in the box's region, in [-1, 1].
The detection settings are the model card's (chosen on the tuning images), overridden by
any :class:`~xdefect.detect.DetectParams` field given to :meth:`Detector.load`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from xdefect.checkpoint import load_model, resolve_model
from xdefect.detect import (
    DenseNet,
    Detection,
    DetectParams,
    ScoreMap,
    dense_net,
    detect,
    detection_doc,
    score_map,
    score_map_dense,
)
from xdefect.errors import InputError
from xdefect.io import as_image
from xdefect.models import INFERENCE_BATCH, PatchCNN, setup_device
from xdefect.segment import SEGMENT_PARAMS, SegNet
from xdefect.segment import score_map as segment_score_map

__all__ = ["Detector", "check_params", "params_from_card"]


def check_params(model: PatchCNN | SegNet, params: DetectParams) -> DetectParams:
    """``params`` if this model can run them: a segmenter runs segment mode at stride 1
    only, a patch classifier patch or dense mode; dense mode needs a power-of-two stride
    no larger than ``2 ** (number of pooling blocks)``; :class:`InputError` otherwise."""
    if isinstance(model, SegNet):
        if params.mode != "segment" or params.stride != 1:
            raise InputError(f"--mode {params.mode} --stride {params.stride}: a segmenter "
                             "scores every pixel (mode segment, stride 1)")
        return params
    if params.mode == "segment":
        raise InputError("--mode segment needs a segmenter; this model is a patch "
                         "classifier (mode patch or dense)")
    if params.tta != 1:
        raise InputError(f"--tta {params.tta}: mirror views are averaged by segmenters only "
                         "(this model is a patch classifier)")
    top = 2 ** len(model.arch.p)
    s = params.stride
    if params.mode == "dense" and model.arch.stretch:
        raise InputError(f"--mode dense: {model.arch.name} stretches every window to its own "
                         "contrast, which the dense score map cannot (its windows share "
                         "their first layer's work): use --mode patch (or --hard-mode patch)")
    if params.mode == "dense" and (s & (s - 1) or s > top):
        raise InputError(f"--stride {s}: dense mode needs a power of two no larger than {top} "
                         "(or --mode patch)")
    return params


def params_from_card(card: dict[str, Any], **overrides: Any) -> DetectParams:
    """The detection settings of a model card (its ``detection`` block; the library's
    defaults when it has none) with ``overrides`` applied (``None`` values are ignored,
    so that unset command-line options keep the card's values; a card's relative extent
    is dropped when the overrides leave segment mode or the ``region`` box rule, where it
    does not apply). :class:`InputError` on an unknown field or a bad value."""
    try:
        base = (DetectParams.from_dict(card["detection"])
                if isinstance(card.get("detection"), dict) else DetectParams())
    except (TypeError, ValueError) as exc:
        raise InputError(f"model card: bad detection parameters ({exc})") from None
    known = {f.name for f in fields(DetectParams)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise InputError(f"unknown detection parameters: {', '.join(unknown)}")
    given = {k: v for k, v in overrides.items() if v is not None}
    if (base.extent_fraction and "extent_fraction" not in given
            and (given.get("mode", base.mode) != "segment"
                 or given.get("box_rule", base.box_rule) != "region")):
        given["extent_fraction"] = 0.0  # the card's relative extent boxes segment regions only
    try:
        return replace(base, **given)
    except (TypeError, ValueError) as exc:
        raise InputError(f"detection parameters: {exc}") from None


def _graph_params(path: Path, graph: str, stride: int, params: DetectParams) -> DetectParams:
    """``params`` if an exported graph can run them (a dense graph: dense mode at its own
    stride; a segment graph: segment mode, stride 1), else :class:`InputError` naming
    ``path``."""
    if params.tta != 1 and graph != "segment":
        raise InputError(f"{path}: --tta {params.tta}: mirror views are averaged by "
                         "segmenters only")
    if params.mode != graph or params.stride != stride:
        again = ("export the model again with --stride, or use its .safetensors"
                 if graph == "dense" else "a segmenter scores every pixel")
        raise InputError(f"{path}: an ONNX graph runs the {graph} score map at stride {stride} "
                         f"only (asked: {params.mode} mode, stride {params.stride}); {again}")
    return params


@dataclass(frozen=True)
class Detector:
    """A loaded model ready to inspect radiographs (:meth:`load` builds one).

    ``model``: the patch CNN or the segmenter (eval mode; None for a model loaded from an
    ``.onnx`` file);
    ``card``: its model card; ``params``: the detection settings; ``path``: the weights
    file; ``device``: where it runs; ``batch``: windows per forward pass in patch mode."""

    model: PatchCNN | SegNet | None
    card: dict[str, Any]
    params: DetectParams
    path: Path
    device: str = "cpu"
    batch: int = INFERENCE_BATCH
    #: ``"torch"``, or ``"onnxruntime"``: score maps from the model exported to ONNX and
    #: run on ONNX Runtime (dense mode; :mod:`xdefect.export`)
    backend: str = "torch"
    onnx: Any = None
    #: the model's dense networks by stride, built on first use (torch backend)
    nets: dict[int, DenseNet] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def load(cls, model: str | os.PathLike[str] | None = None, *, device: str | None = "auto",
             threads: int | None = None, batch: int = INFERENCE_BATCH, backend: str = "torch",
             **params: Any) -> Detector:
        """Load ``model``: ``None`` for the bundled default, a bundled name
        (``segnet-xdefect``, ``xnet2-xdefect``, ``xnet2-paper``), a ``.safetensors`` path,
        or an ``.onnx`` dense or segment graph written by ``xdefect export`` (run on ONNX
        Runtime, with the card and detection settings embedded in it; no PyTorch weights
        needed). ``device``:
        ``cpu``, ``cuda`` or ``auto`` (CUDA when present, the default); ``threads``: CPU
        threads; ``params``: :class:`~xdefect.detect.DetectParams` fields overriding the
        card's settings."""
        if batch < 1:
            raise InputError(f"--batch {batch}: must be at least 1")
        if backend not in ("torch", "onnxruntime"):
            raise InputError(f"--backend {backend!r}: expected torch or onnxruntime")
        path = resolve_model(model)
        if path.suffix.lower() == ".onnx":
            return cls._load_onnx(path, threads, batch, params)
        dev = setup_device(device, threads)
        net, card = load_model(path, dev)
        if isinstance(net, SegNet) and not isinstance(card.get("detection"), dict):
            card = {**card, "detection": SEGMENT_PARAMS.to_dict()}
        p = check_params(net, params_from_card(card, **params))
        onnx = None
        if backend == "onnxruntime":
            from xdefect.export import OnnxScorer, dense_onnx_bytes, segment_onnx_bytes

            if isinstance(net, SegNet):
                onnx = OnnxScorer(segment_onnx_bytes(net, card), threads)
            elif p.mode != "dense":
                raise InputError("--backend onnxruntime runs the dense score map: use "
                                 "--mode dense")
            else:
                onnx = OnnxScorer(dense_onnx_bytes(net, p.stride, card), threads)
        return cls(net, card, p, path, dev, batch, backend, onnx)

    @classmethod
    def _load_onnx(cls, path: Path, threads: int | None, batch: int, params: dict[str, Any]
                   ) -> Detector:
        """A detector on an exported dense graph: ONNX Runtime, the embedded card's
        settings; dense mode at the graph's stride only."""
        from xdefect.export import OnnxScorer

        if not path.is_file():
            raise InputError(f"{path}: no such model file")
        onnx = OnnxScorer(path, threads)
        p = _graph_params(path, onnx.graph, onnx.stride, params_from_card(onnx.card, **params))
        return cls(None, onnx.card, p, path, "cpu", batch, "onnxruntime", onnx)

    @property
    def name(self) -> str:
        """The weights file, as recorded in detection documents."""
        return str(self.path)

    def with_params(self, **overrides: Any) -> Detector:
        """The same model with other detection settings."""
        p = params_from_card({"detection": self.params.to_dict()}, **overrides)
        if self.model is None:  # an ONNX graph: its one mode and stride
            assert self.onnx is not None
            return replace(self, params=_graph_params(self.path, self.onnx.graph,
                                                      self.onnx.stride, p))
        return replace(self, params=check_params(self.model, p))

    def score_map(self, image: np.ndarray | str | os.PathLike[str]) -> ScoreMap:
        """The score map ``y1 - y0`` of every window on the grid of ``params.stride``."""
        if self.onnx is not None:
            return self.onnx.score_map(as_image(image), self.params.stride, self.params.tta)
        if self.params.mode == "dense":
            return self._dense(as_image(image), self.params.stride)
        if isinstance(self.model, SegNet):
            return segment_score_map(self.model, as_image(image), self.device,
                                     self.params.tta)
        assert self.model is not None
        return score_map(self.model, as_image(image), self.params, self.batch, self.device)

    def _dense(self, image: np.ndarray, stride: int) -> ScoreMap:
        """The dense score map with this detector's network for ``stride`` (kept)."""
        assert isinstance(self.model, PatchCNN)
        if stride not in self.nets:
            self.nets[stride] = dense_net(self.model, stride, self.device)
        return score_map_dense(self.model, image, stride, device=self.device,
                               net=self.nets[stride])

    def run(self, image: np.ndarray | str | os.PathLike[str], mask: np.ndarray | None = None
            ) -> tuple[list[Detection], ScoreMap]:
        """Detections and the score map they came from. ``mask``: where defects may be
        (default: the casting mask, unless ``params.use_mask`` is off); in patch mode the
        windows holding no mask pixel are not run and score -1 in that map
        (:meth:`score_map` runs them all)."""
        return detect(self.model, as_image(image), self.params, mask=mask, batch=self.batch,
                      device=self.device, score_fn=self.score_function())

    def score_function(self) -> Callable[[np.ndarray, DetectParams], ScoreMap] | None:
        """``score(image, params)``, what :func:`xdefect.detect.detect` takes as
        ``score_fn``: the score map on ONNX Runtime for the ``onnxruntime`` backend, the
        dense map with this detector's kept networks in dense mode, the segmenter's
        per-pixel map in segment mode; None in patch mode (``detect`` then skips the
        windows outside the mask)."""
        if self.onnx is not None:
            onnx = self.onnx

            def score(image: np.ndarray, params: DetectParams) -> ScoreMap:
                return onnx.score_map(image, params.stride, params.tta)

            return score
        if isinstance(self.model, SegNet):
            seg, device = self.model, self.device
            return lambda image, params: segment_score_map(seg, image, device, params.tta)
        if self.params.mode != "dense":
            return None
        return lambda image, params: self._dense(image, params.stride)

    def detect(self, image: np.ndarray | str | os.PathLike[str],
               mask: np.ndarray | None = None) -> list[Detection]:
        """The detections of one radiograph, highest score first."""
        dets, _ = self.run(image, mask)
        return sorted(dets, key=lambda d: -d.score)

    def document(self, image: str, shape: tuple[int, ...], dets: list[Detection]) -> dict:
        """The detection JSON document of one image (what ``xdefect detect`` writes)."""
        return detection_doc(image, shape, self.name, self.params, dets)

    def scorer(self, mode: str | None = None, stride: int | None = None):
        """A function ``image -> (values, stride)`` scoring whole images with this model
        (what hard negatives are mined from), in ``mode`` at ``stride`` (default: the
        detection settings'). Patch classifiers only: hard negatives are windows."""
        if isinstance(self.model, SegNet) or getattr(self.onnx, "graph", None) == "segment":
            raise InputError(f"{self.path}: a segmenter; hard negatives are mined with a "
                             "patch classifier")
        p = (self.with_params(mode=mode, stride=stride).params if self.model is None else
             check_params(self.model, params_from_card({"detection": self.params.to_dict()},
                                                       mode=mode, stride=stride)))
        onnx = self.onnx if self.model is None else None

        def score(image: np.ndarray) -> tuple[np.ndarray, int]:
            sm = (onnx.score_map(image, p.stride) if onnx is not None else
                  self._dense(image, p.stride) if p.mode == "dense" else
                  score_map(self.model, image, p, self.batch, self.device))
            return sm.values, sm.stride

        return score
