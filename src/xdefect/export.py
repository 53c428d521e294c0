"""ONNX export and the ONNX Runtime backend.

Production lines run models with ONNX Runtime rather than PyTorch. :func:`export_onnx`
writes two graphs of a model, each with the model card embedded as metadata
(``xdefect_card``, JSON) and its kind (``xdefect_graph``):

* ``OUT.onnx``: the **dense score-map network** (:class:`xdefect.detect.DenseNet`) at the
  card's stride (``xdefect_stride``), input ``image`` ``(1, 1, H, W)`` normalised grey
  (``(g - 0.5) / 0.25`` for ``g`` in [0, 1]), any ``H, W`` of at least 32, output
  ``logits`` ``(1, 2, H', W')``: window ``(i, j)`` of the score map is
  ``softmax(logits)[1] - softmax(logits)[0]`` at ``(i, j)`` for ``i < (H - 32) // s + 1``
  (the rest is cropped);
* ``OUT.patch.onnx``: the **patch classifier**, input ``patches`` ``(N, 1, 32, 32)``, output
  ``logits`` ``(N, 2)``.

A segmenter (:mod:`xdefect.segment`) has one graph, ``OUT.onnx`` (``xdefect_graph``
``segment``, ``xdefect_stride`` 1): input ``image`` ``(1, 1, H, W)`` normalised as above,
``H`` and ``W`` multiples of 8 (pad the image at the bottom and right,
:func:`xdefect.segment.pad_to_multiple`), output ``probability`` ``(1, 1, H, W)``, the
defect probability ``p`` of every pixel; the score map is ``2 p - 1`` on the image's own
rows and columns.

:class:`OnnxScorer` runs a dense or segment graph on ONNX Runtime and returns the same
:class:`~xdefect.detect.ScoreMap` as :func:`xdefect.detect.score_map_dense` or
:func:`xdefect.segment.score_map` (within float rounding: ``tests/test_export.py`` checks
1e-4 on real radiographs and equal detections); ``xdefect detect --backend onnxruntime``
uses it.
"""

from __future__ import annotations

import copy
import io
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xdefect.detect import DenseNet, ScoreMap, grid_shape
from xdefect.errors import InputError
from xdefect.io import atomic_path
from xdefect.models import NORMALISATION, PatchCNN, inference_copy
from xdefect.segment import ProbabilityNet, SegNet, pad_to_multiple, views_mean
from xdefect.windows import PATCH

__all__ = ["OPSET", "OnnxScorer", "dense_onnx_bytes", "export_onnx", "patch_path",
           "segment_onnx_bytes"]

OPSET = 17


def _to_onnx(net: torch.nn.Module, x: torch.Tensor, names: tuple[str, str],
             dynamic: dict[str, dict[int, str]]) -> bytes:
    """``net`` traced on ``x`` and exported (the TorchScript exporter: no extra package),
    its tracing warnings silenced (the shape checks it warns about hold for every input
    the graph is documented for)."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), buf, input_names=[names[0]], output_names=[names[1]],
                          dynamic_axes=dynamic, opset_version=OPSET, dynamo=False)
    return buf.getvalue()


def _metadata(model_bytes: bytes, card: dict[str, Any], graph: str, stride: int | None
              ) -> bytes:
    import onnx

    m = onnx.load_from_string(model_bytes)
    props = {"xdefect_card": json.dumps(card, sort_keys=True), "xdefect_graph": graph,
             "xdefect_normalisation": json.dumps(NORMALISATION)}
    if stride is not None:
        props["xdefect_stride"] = str(stride)
    for k, v in props.items():
        entry = m.metadata_props.add()
        entry.key, entry.value = k, v
    return m.SerializeToString()


def dense_onnx_bytes(model: PatchCNN, stride: int, card: dict[str, Any]) -> bytes:
    """The dense score-map network of ``model`` at ``stride`` as an ONNX model (bytes)."""
    net = DenseNet(inference_copy(model).to("cpu").to(memory_format=torch.contiguous_format),
                   stride, winograd=False).eval()
    data = _to_onnx(net, torch.zeros(1, 1, 4 * PATCH, 4 * PATCH), ("image", "logits"),
                    {"image": {2: "height", 3: "width"}, "logits": {2: "rows", 3: "cols"}})
    return _metadata(data, card, "dense", stride)


def segment_onnx_bytes(net: SegNet, card: dict[str, Any]) -> bytes:
    """A segmenter's per-pixel probability graph (:class:`xdefect.segment.ProbabilityNet`)
    as an ONNX model (bytes), dynamic height and width."""
    seg = ProbabilityNet(copy.deepcopy(net).to("cpu").eval()).eval()
    data = _to_onnx(seg, torch.zeros(1, 1, 4 * PATCH, 4 * PATCH), ("image", "probability"),
                    {"image": {2: "height", 3: "width"},
                     "probability": {2: "height", 3: "width"}})
    return _metadata(data, card, "segment", 1)


def _patch_onnx_bytes(model: PatchCNN, card: dict[str, Any]) -> bytes:
    net = inference_copy(model).to("cpu").to(memory_format=torch.contiguous_format).eval()
    data = _to_onnx(net, torch.zeros(2, 1, PATCH, PATCH), ("patches", "logits"),
                    {"patches": {0: "n"}, "logits": {0: "n"}})
    return _metadata(data, card, "patch", None)


def patch_path(out: str | os.PathLike[str]) -> Path:
    """Where :func:`export_onnx` writes the patch classifier beside ``out``."""
    p = Path(out)
    stem = p.name[:-5] if p.name.endswith(".onnx") else p.name
    return p.with_name(f"{stem}.patch.onnx")


def export_onnx(model: PatchCNN | SegNet, card: dict[str, Any], stride: int,
                out: str | os.PathLike[str]) -> dict[str, Any]:
    """Write a patch classifier's dense graph (``out``) and the patch classifier
    (:func:`patch_path`), or a segmenter's segment graph (``out``; ``stride`` must be 1),
    atomically; returns the kind of graph (``graph``), their paths and sizes. A patch
    classifier that stretches each window to its own contrast has no dense graph: its
    patch classifier goes to ``out`` (``graph`` ``"patch"``)."""
    if isinstance(model, SegNet):
        if stride != 1:
            raise InputError(f"--stride {stride}: a segmenter scores every pixel (stride 1)")
        data = segment_onnx_bytes(model, card)
        with atomic_path(Path(out)) as tmp:
            tmp.write_bytes(data)
        return {"graph": "segment", "segment": str(out), "stride": 1,
                "bytes": {str(out): len(data)}}
    if model.arch.stretch:  # each window at its own contrast: the patch graph alone
        data = _patch_onnx_bytes(model, card)
        with atomic_path(Path(out)) as tmp:
            tmp.write_bytes(data)
        return {"graph": "patch", "patch": str(out), "bytes": {str(out): len(data)}}
    dense = dense_onnx_bytes(model, stride, card)
    patch = _patch_onnx_bytes(model, card)
    written = {}
    for path, data in ((Path(out), dense), (patch_path(out), patch)):
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
        written[str(path)] = len(data)
    return {"graph": "dense", "dense": str(out), "patch": str(patch_path(out)),
            "stride": stride, "bytes": written}


class OnnxScorer:
    """A dense or segment score-map graph on ONNX Runtime (CPU). ``source``: an ``.onnx``
    file written by :func:`export_onnx` or the bytes of one; ``graph``: its kind
    (``dense`` or ``segment``)."""

    def __init__(self, source: bytes | str | os.PathLike[str], threads: int | None = None
                 ) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
        try:
            self.session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own kinds on a bad graph
            raise InputError(f"{source if not isinstance(source, bytes) else 'ONNX model'}: "
                             f"not a loadable ONNX model ({exc.__class__.__name__})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        self.graph = meta.get("xdefect_graph")
        if self.graph not in ("dense", "segment"):
            what = "ONNX model" if isinstance(source, bytes) else str(source)
            stretched = self.graph == "patch" and json.loads(
                meta.get("xdefect_card", "{}")).get("arch", {}).get("stretch")
            kind = ("a patch classifier that stretches each window to its own contrast: it "
                    "has no score-map graph (detect runs its .safetensors in patch mode)"
                    if stretched else
                    "the patch classifier, not the dense score-map graph (detect takes the "
                    "file `xdefect export --out` names)" if self.graph == "patch" else
                    "not an xdefect score-map graph (detect takes the file `xdefect export "
                    "--out` names)")
            raise InputError(f"{what}: {kind}")
        self.stride = int(meta["xdefect_stride"])
        self.card = json.loads(meta.get("xdefect_card", "{}"))

    def score_map(self, image: np.ndarray, stride: int, views: int = 1) -> ScoreMap:
        """The score map of a grey [0, 1] image (as :func:`score_map_dense`, or
        :func:`xdefect.segment.score_map` for a segment graph; ``views``: its mirror
        views averaged, segment graphs only)."""
        if stride != self.stride:
            raise InputError(f"--stride {stride}: this ONNX graph computes stride "
                             f"{self.stride}")
        if self.graph == "segment":
            a = np.asarray(image, dtype=np.float32)
            p = views_mean(self._probability, a, views)
            return ScoreMap((2.0 * p - 1.0).astype(np.float32), 1, a.shape, 0)
        if views != 1:
            raise InputError(f"--tta {views}: mirror views are averaged by segmenters only")
        a = np.asarray(image, dtype=np.float32)
        if a.ndim != 2 or min(a.shape) < PATCH:
            raise InputError(f"image {a.shape[::-1]} is smaller than the 32x32 window")
        x = ((a - NORMALISATION["mean"]) / NORMALISATION["std"])[None, None]
        logits = self.session.run(None, {"image": np.ascontiguousarray(x)})[0][0]
        gh, gw = grid_shape(a.shape, stride)
        z = logits[:, :gh, :gw].astype(np.float64)
        z = z - z.max(axis=0, keepdims=True)
        e = np.exp(z)
        p = e / e.sum(axis=0, keepdims=True)
        return ScoreMap((p[1] - p[0]).astype(np.float32), stride, a.shape)

    def _probability(self, image: np.ndarray) -> np.ndarray:
        """A segment graph's defect probability of every pixel of ``image``."""
        h, w = np.shape(image)
        x = (pad_to_multiple(image) - NORMALISATION["mean"]) / NORMALISATION["std"]
        return self.session.run(None, {"image": np.ascontiguousarray(x[None, None])})[0][
            0, 0, :h, :w]
