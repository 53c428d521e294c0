"""ONNX export and the ONNX Runtime backend: the same score maps (1e-4) and detections as
PyTorch on real radiographs; the card travels as metadata."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import assert_one_line_error, run_cli

from xdefect import gdxray
from xdefect.detect import score_map_dense
from xdefect.detector import Detector
from xdefect.errors import InputError
from xdefect.export import OnnxScorer, patch_path

IMAGES = [("C0001", 2), ("C0015", 10), ("C0021", 2)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "default.onnx"
    proc = run_cli("export", "--format", "onnx", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr, proc.stderr
    return out


def test_export_writes_both_graphs_with_the_card(exported):
    meta = {p.key: p.value for p in onnx.load(str(exported)).metadata_props}
    assert meta["xdefect_graph"] == "dense" and meta["xdefect_stride"] == "4"
    assert json.loads(meta["xdefect_card"])["name"] == "xnet2-xdefect"
    pm = {p.key: p.value for p in onnx.load(str(patch_path(exported))).metadata_props}
    assert pm["xdefect_graph"] == "patch"
    # the patch classifier equals the torch model on random windows
    det = Detector.load(device="cpu", threads=1)
    x = torch.rand(64, 1, 32, 32) * 4 - 2
    with torch.no_grad():
        ref = det.model(x).numpy()
    sess = ort.InferenceSession(str(patch_path(exported)), providers=["CPUExecutionProvider"])
    assert np.abs(sess.run(None, {"patches": x.numpy()})[0] - ref).max() <= 1e-4


def test_onnx_score_maps_and_detections_equal_pytorch(exported, gdxray_root):
    det = Detector.load(device="cpu", threads=2)
    onnx_det = Detector.load(device="cpu", threads=2, backend="onnxruntime")
    scorer = OnnxScorer(exported)
    for series, number in IMAGES:
        rec = gdxray.list_images(gdxray_root, [series])[number - 1]
        img = gdxray.load_sample(rec, gdxray.load_ground_truth(gdxray_root, series)).image
        ref = score_map_dense(det.model, img, 4)
        got = scorer.score_map(img, 4)
        assert got.values.shape == ref.values.shape
        assert np.abs(got.values - ref.values).max() <= 1e-4, rec.stem
        a, b = onnx_det.detect(img), det.detect(img)
        assert [d.box for d in a] == [d.box for d in b], rec.stem
        assert np.allclose([d.score for d in a], [d.score for d in b], atol=1e-4)


def test_onnx_backend_refusals(exported, tmp_path):
    with pytest.raises(InputError, match="this ONNX graph computes stride 4"):
        OnnxScorer(exported).score_map(np.zeros((64, 64), np.float32), 8)
    with pytest.raises(InputError, match="not an xdefect dense score-map graph"):
        OnnxScorer(patch_path(exported))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(InputError, match="not a loadable ONNX model"):
        OnnxScorer(bad)
    from PIL import Image

    Image.fromarray(np.full((64, 64), 100, np.uint8)).save(tmp_path / "a.png")
    assert_one_line_error(run_cli("detect", str(tmp_path / "a.png"), "--out",
                                  str(tmp_path / "o"), "--backend", "onnxruntime",
                                  "--mode", "patch"), "--backend onnxruntime")
