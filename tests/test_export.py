"""ONNX export and the ONNX Runtime backend: the same score maps (1e-4) and detections as
PyTorch on real radiographs, for the patch classifier's dense graph and the segmenter's
per-pixel graph; the card travels as metadata."""

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
from xdefect.pipelines import write_phantom_root

IMAGES = [("C0001", 2), ("C0015", 10), ("C0021", 2)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "classifier.onnx"
    proc = run_cli("export", "--format", "onnx", "--model", "xnet2-xdefect", "--out", str(out))
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
    det = Detector.load("xnet2-xdefect", device="cpu", threads=1)
    x = torch.rand(64, 1, 32, 32) * 4 - 2
    with torch.no_grad():
        ref = det.model(x).numpy()
    sess = ort.InferenceSession(str(patch_path(exported)), providers=["CPUExecutionProvider"])
    assert np.abs(sess.run(None, {"patches": x.numpy()})[0] - ref).max() <= 1e-4


def test_onnx_score_maps_and_detections_equal_pytorch(exported, gdxray_root):
    det = Detector.load("xnet2-xdefect", device="cpu", threads=2)
    onnx_det = Detector.load("xnet2-xdefect", device="cpu", threads=2, backend="onnxruntime")
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
    with pytest.raises(InputError, match="the patch classifier, not the dense score-map"):
        OnnxScorer(patch_path(exported))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(InputError, match="not a loadable ONNX model"):
        OnnxScorer(bad)
    from PIL import Image

    Image.fromarray(np.full((64, 64), 100, np.uint8)).save(tmp_path / "a.png")
    assert_one_line_error(run_cli("detect", str(tmp_path / "a.png"), "--out",
                                  str(tmp_path / "o"), "--backend", "onnxruntime",
                                  "--model", "xnet2-xdefect", "--mode", "patch"),
                          "--backend onnxruntime")


def test_exported_file_runs_as_a_model(exported, gdxray_root, tmp_path):
    """A line deploys the .onnx file alone: `--model FILE.onnx` runs detect and evaluate on
    ONNX Runtime with the settings and lineage of the card embedded in it."""
    from xdefect.pipelines import write_phantom_root
    from xdefect.protocol import evaluate_folder

    det = Detector.load(exported, threads=2)
    assert det.model is None and det.backend == "onnxruntime"
    ref = Detector.load("xnet2-xdefect", device="cpu", threads=2)
    assert det.params == ref.params and det.card["name"] == "xnet2-xdefect"
    a = evaluate_folder(det, gdxray_root, series=["C0001"], split="test", limit=3)
    b = evaluate_folder(ref, gdxray_root, series=["C0001"], split="test", limit=3)
    assert a.metrics["ap"] == pytest.approx(b.metrics["ap"], abs=1e-9)
    assert a.metrics["provenance"] == b.metrics["provenance"]
    assert [r.boxes.tolist() for r in a.results] == [r.boxes.tolist() for r in b.results]
    root = write_phantom_root(tmp_path / "root", n=2, shape=(160, 224), series="C0997")
    images = root / "Castings" / "C0997"
    proc = run_cli("detect", str(images), "--model", str(exported), "--out",
                   str(tmp_path / "o"), "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "o" / "C0997_0001.json").read_text())
    assert doc["model"] == str(exported)
    # the graph has one mode and stride; a graph is not trainable nor re-exportable
    assert_one_line_error(run_cli("detect", str(images), "--model", str(exported), "--out",
                                  str(tmp_path / "p"), "--stride", "8"), "stride 4 only")
    assert_one_line_error(run_cli("detect", str(images), "--model",
                                  str(patch_path(exported)), "--out", str(tmp_path / "p")),
                          "the patch classifier")
    assert_one_line_error(run_cli("adapt", "--images", str(images), "--from", str(exported),
                                  "--out", str(tmp_path / "ad")), "cannot be fine-tuned")
    assert not (tmp_path / "p").exists() and not (tmp_path / "ad" / "model.safetensors").exists()


@pytest.fixture(scope="module")
def segment_exported(tmp_path_factory):
    """The default model (the segmenter segnet-xdefect) exported with no --model."""
    out = tmp_path_factory.mktemp("onnx") / "default.onnx"
    proc = run_cli("export", "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr, proc.stderr
    r = json.loads(proc.stdout)
    assert r["graph"] == "segment" and r["segment"] == str(out) and r["stride"] == 1
    assert not patch_path(out).exists()  # a segmenter has one graph
    return out


def test_segmenter_graph_equals_pytorch(segment_exported, gdxray_root):
    """The segment graph carries the card and gives the per-pixel score map of PyTorch
    (1e-4) and the same boxes, from the file and from --backend onnxruntime."""
    meta = {p.key: p.value for p in onnx.load(str(segment_exported)).metadata_props}
    assert meta["xdefect_graph"] == "segment" and meta["xdefect_stride"] == "1"
    assert json.loads(meta["xdefect_card"])["name"] == "segnet-xdefect"
    det = Detector.load(device="cpu", threads=2)
    from_file = Detector.load(segment_exported, threads=2)
    from_backend = Detector.load(device="cpu", threads=2, backend="onnxruntime")
    assert from_file.params == det.params and det.params.mode == "segment"
    found = 0
    for series, number in IMAGES:
        rec = gdxray.list_images(gdxray_root, [series])[number - 1]
        img = gdxray.load_sample(rec, gdxray.load_ground_truth(gdxray_root, series)).image
        ref = det.score_map(img)
        for other in (from_file, from_backend):
            got = other.score_map(img)
            assert (got.stride, got.offset, got.values.shape) == (1, 0, img.shape)
            assert np.abs(got.values - ref.values).max() <= 1e-4, rec.stem
            a, b = other.detect(img), det.detect(img)
            assert [d.box for d in a] == [d.box for d in b], rec.stem
            assert np.allclose([d.score for d in a], [d.score for d in b], atol=1e-4)
        found += len(det.detect(img))
    assert found > 0  # the comparison covered boxes, not only empty lists
    # odd sizes: padded to multiples of 8 and cropped back, as in PyTorch
    odd = img[:101, :203]
    assert np.abs(from_file.score_map(odd).values - det.score_map(odd).values).max() <= 1e-4


def test_local_contrast_segmenter_graph_equals_pytorch(gdxray_root, tmp_path):
    """A segmenter with the local contrast channel (``segnet-lcn``): the normalisation is
    inside the graph, the maps equal PyTorch's (1e-4) on a radiograph and an odd size."""
    phantom_root = write_phantom_root(tmp_path / "root", n=4, shape=(160, 200))
    run = tmp_path / "lcn"
    proc = run_cli("train-segmenter", "--gdxray", str(phantom_root), "--arch", "segnet-lcn",
                   "--steps", "3", "--batch", "2", "--no-theta", "--threads", "1",
                   "--out", str(run))
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "lcn.onnx"
    proc = run_cli("export", "--model", str(run / "model.safetensors"), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    det = Detector.load(run / "model.safetensors", device="cpu", threads=1)
    assert det.model.arch.lcn == 8.0
    from_file = Detector.load(out, threads=1)
    rec = gdxray.list_images(gdxray_root, ["C0001"])[1]
    img = gdxray.load_sample(rec, gdxray.load_ground_truth(gdxray_root, "C0001")).image
    for a in (img, img[:101, :203]):
        assert np.abs(from_file.score_map(a).values - det.score_map(a).values).max() <= 1e-4


def test_segmenter_graph_refusals(segment_exported, tmp_path):
    images = tmp_path / "imgs"
    images.mkdir()
    from PIL import Image

    for name in ("a.png", "b.png"):
        Image.fromarray(np.full((64, 64), 100, np.uint8)).save(images / name)
    for extra, words in ((("--stride", "4"), "stride 1 only"),
                         (("--mode", "dense"), "segment score map at stride 1 only")):
        assert_one_line_error(run_cli("detect", str(images), "--model", str(segment_exported),
                                      "--out", str(tmp_path / "o"), *extra), words)
    assert_one_line_error(run_cli("export", "--out", str(tmp_path / "s.onnx"), "--stride", "4"),
                          "a segmenter scores every pixel")
    assert_one_line_error(run_cli("adapt", "--images", str(images), "--from",
                                  str(segment_exported), "--out", str(tmp_path / "ad")),
                          "cannot be fine-tuned")
    assert not (tmp_path / "o").exists() and not (tmp_path / "s.onnx").exists()
    with pytest.raises(InputError, match="a segmenter; hard negatives"):
        Detector.load(segment_exported).scorer()


def test_stretched_classifier_exports_its_patch_graph_only(tmp_path, gdxray_root):
    """``xnet2-stretch`` maps each window to its own contrast inside the network: the
    export writes the patch classifier alone (the dense graph cannot stretch window by
    window), equal to PyTorch (1e-4) on windows of a real radiograph and on the same
    windows at a tenth of their contrast; the dense mode and ``--stride`` refuse."""
    from xdefect.checkpoint import save_model
    from xdefect.models import create_model, normalise

    torch.manual_seed(0)
    model = create_model("xnet2-stretch").eval()
    src = tmp_path / "stretch.safetensors"
    save_model(src, model, {"note": "random weights for tests"})
    out = tmp_path / "stretch.onnx"
    proc = run_cli("export", "--model", str(src), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "patch classifier" in proc.stdout and not patch_path(out).exists()
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["xdefect_graph"] == "patch"
    assert json.loads(meta["xdefect_card"])["arch"]["stretch"] > 0
    rec = gdxray.list_images(gdxray_root, ["C0001"])[1]
    img = gdxray.load_sample(rec, gdxray.load_ground_truth(gdxray_root, "C0001")).image
    wins = np.stack([img[r:r + 32, c:c + 32] for r in (100, 200, 300) for c in (80, 240)])
    x = normalise(wins)
    faint = normalise(np.rint(wins.mean() + (wins.astype(np.float32) - wins.mean()) / 10))
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        for v in (x, faint):
            got = sess.run(None, {"patches": v.numpy()})[0]
            assert np.abs(got - model(v).numpy()).max() <= 1e-4
    proc = run_cli("export", "--model", str(src), "--out", str(tmp_path / "s.onnx"),
                   "--stride", "4")
    assert_one_line_error(proc, "no dense graph")
    with pytest.raises(InputError, match="use --mode patch"):
        Detector.load(src, device="cpu", mode="dense")
    with pytest.raises(InputError, match="use --mode patch"):
        Detector.load(src, device="cpu").scorer(mode="dense")  # hard negatives, dense
    from xdefect.detect import dense_net
    with pytest.raises(InputError, match="dense mode cannot"):
        dense_net(model, 4)
    with pytest.raises(InputError, match="no score-map graph"):
        Detector.load(out)
