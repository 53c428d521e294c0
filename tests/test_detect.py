from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import assert_one_line_error, run_cli
from PIL import Image

from xdefect import detect as D
from xdefect import models as M
from xdefect.checkpoint import save_model


def _random_model(arch="xnet2", seed=0) -> M.PatchCNN:
    torch.manual_seed(seed)
    m = M.create_model(arch)
    for mod in m.modules():  # non-trivial BatchNorm statistics
        if isinstance(mod, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 2.0)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.2, 0.2)
    return m.eval()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("m") / "rand.safetensors"
    save_model(p, _random_model(), {"note": "random weights for tests"})
    return p


@pytest.mark.parametrize("stride", [1, 2, 4, 8, 16, 32])
def test_dense_equals_patch_on_one_window(stride):
    m = _random_model()
    x = np.random.default_rng(stride).uniform(0, 1, (32, 32)).astype(np.float32)
    a = D.score_map_dense(m, x, stride).values
    b = D.score_map_patch(m, x, stride).values
    assert a.shape == b.shape == (1, 1)
    assert np.abs(a - b).max() < 1e-5


@pytest.mark.parametrize("stride", [1, 2, 4, 8, 16])
def test_dense_equals_patch_everywhere_with_pointwise_convs(stride):
    # 1x1 kernels have no padding effects: dense mode must reproduce every window exactly
    arch = M.ArchConfig("pw", (1, 1, 1, 1, 1), (6, 8, 8, 12, 16), (10, 2))
    torch.manual_seed(1)
    m = M.PatchCNN(arch).eval()
    x = np.random.default_rng(0).uniform(0, 1, (80, 112)).astype(np.float32)
    a = D.score_map_dense(m, x, stride).values
    b = D.score_map_patch(m, x, stride).values
    assert a.shape == b.shape == D.grid_shape(x.shape, stride)
    assert np.abs(a - b).max() < 1e-5


def test_dense_tiles_are_seamless():
    m = _random_model()
    x = np.random.default_rng(2).uniform(0, 1, (150, 170)).astype(np.float32)
    whole = D.score_map_dense(m, x, 4, tile=4096).values
    tiled = D.score_map_dense(m, x, 4, tile=64).values
    assert np.abs(whole - tiled).max() < 1e-5


def test_dense_rejects_bad_stride():
    with pytest.raises(ValueError):
        D.score_map_dense(_random_model(), np.zeros((64, 64), np.float32), 3)
    with pytest.raises(ValueError):
        D.score_map_dense(_random_model(), np.zeros((64, 64), np.float32), 64)


def _smap(values, stride=4, shape=(100, 120)):
    return D.ScoreMap(np.asarray(values, np.float32), stride, shape)


def test_regions_by_hand():
    v = np.full(D.grid_shape((100, 120), 4), -1.0, np.float32)
    v[5:8, 6:9] = 0.9      # a 3x3 block of windows: centres rows 36..44, cols 40..48
    v[15, 20] = 0.8        # an isolated hit: small region
    p = D.DetectParams(stride=4, theta=0.5, radius=3, a_min=40, box_rule="windows")
    dets = D.regions(_smap(v), p)
    assert len(dets) == 1
    d = dets[0]
    assert d.box == (40 - 16, 36 - 16, 48 + 16, 44 + 16) and d.score == pytest.approx(0.9)
    p2 = D.DetectParams(stride=4, theta=0.5, radius=3, a_min=1, box_rule="region")
    dets2 = D.regions(_smap(v), p2)
    assert len(dets2) == 2
    assert dets2[0].box == (37, 33, 52, 48)  # centres dilated by 3 px, half-open
    assert dets2[1].area == int(D.disk(3).sum())
    # the casting mask removes what lies outside it
    mask = np.ones((100, 120), bool)
    mask[:, :60] = False
    assert D.regions(_smap(v), p2, mask)[0].box[0] >= 60
    assert D.regions(_smap(np.full_like(v, -1.0)), p2) == []
    # the report threshold keeps the regions and boxes theta made, only fewer of them
    cut = D.pyramid_regions({1: _smap(v)}, {1: None}, replace(p2, min_score=0.85), (100, 120))
    assert [(d.box, d.score) for d in cut] == [(dets2[0].box, dets2[0].score)]
    assert D.pyramid_regions({1: _smap(v)}, {1: None}, p2, (100, 120)) == dets2
    for bad in (1.5, -1.5, float("nan")):
        with pytest.raises(ValueError, match="min_score"):
            replace(p2, min_score=bad)


def test_peaks_and_blobs_by_hand():
    shape = (200, 240)
    v = np.full(D.grid_shape(shape, 4), -1.0, np.float32)
    v[5:10, 6:11] = 1.0  # a saturated 5x5 plateau: centres rows 36..52, cols 40..56
    p = D.DetectParams(stride=4, theta=0.5, radius=3, a_min=1, box_rule="peaks", box_margin=10,
                       widen=-1, sigma=0.0)
    # a flat top is one maximum, at its middle (row 44, col 48)
    (d,) = D.regions(_smap(v, shape=shape), p)
    assert d.box == (48 - 10, 44 - 10, 48 + 11, 44 + 11)
    # a nearly flat plateau whose highest cell is a corner: peaks boxes the corner first and
    # keeps further cells 10 px away as duplicates without smoothing; smoothed, the middle
    noisy = v.copy()
    noisy[5:10, 6:11] = 0.999 - 1e-4 * np.random.default_rng(0).random((5, 5))
    noisy[5, 6] = 0.9995
    dets = D.regions(_smap(noisy, shape=shape), p)
    assert dets[0].box == (40 - 10, 36 - 10, 40 + 11, 36 + 11) and len(dets) > 1
    (d,) = D.regions(_smap(noisy, shape=shape), replace(p, sigma=1.0))
    assert d.box == (48 - 10, 44 - 10, 48 + 11, 44 + 11)
    pb = D.DetectParams(stride=4, theta=0.5, radius=3, a_min=1, box_rule="blobs",
                        box_margin=10, sigma=1.0, nms=20, widen=8)
    (d,) = D.regions(_smap(noisy, shape=shape), pb)
    assert d.box == (48 - 10, 44 - 10, 48 + 11, 44 + 11) and 0.5 < d.score <= 1.0
    # a large isolated plateau (centres rows 36..100): widened to rows 44..93 (half-open),
    # with widen 8 (centres' extent less 8 px a side); not widened with -1
    big = np.full_like(v, -1.0)
    big[5:22, 6:11] = 1.0
    (d,) = D.regions(_smap(big, shape=shape), pb)
    assert (d.box[1], d.box[3]) == (36 + 8, 100 - 7) and (d.box[0], d.box[2]) == (38, 59)
    (d,) = D.regions(_smap(big, shape=shape), replace(pb, widen=-1))
    assert d.box[3] - d.box[1] == 21
    (d,) = D.regions(_smap(big, shape=shape), replace(p, widen=4))  # peaks widens too
    assert (d.box[1], d.box[3]) == (36 + 4, 100 - 3)
    # two plateaus merged by the dilation stay two detections, each 21 px
    two = np.full_like(v, -1.0)
    two[5:10, 6:11] = 1.0
    two[5:10, 12:17] = 0.9
    dets = D.regions(_smap(two, shape=shape), replace(pb, radius=12))
    assert [x.box[2] - x.box[0] for x in dets] == [21, 21] and dets[0].score > dets[1].score
    with pytest.raises(ValueError):
        D.DetectParams(sigma=-1)
    assert D.DetectParams.from_dict(pb.to_dict()) == pb
    with pytest.raises(ValueError, match="unknown detection parameters: zzz"):
        D.DetectParams.from_dict({"zzz": 1})


def test_small_image_is_an_error():
    from xdefect.errors import InputError

    with pytest.raises(InputError, match="smaller than the 32x32 window"):
        D.score_map_dense(_random_model(), np.zeros((20, 300), np.float32))


def test_cli_detect_png_and_16bit_tiff(model_file, tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (96, 128), dtype=np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(rng.integers(0, 65535, (90, 100)).astype(np.uint16)).save(tmp_path / "b.tif")
    out = tmp_path / "out"
    proc = run_cli("detect", "--model", str(model_file), str(tmp_path / "a.png"),
                   str(tmp_path / "b.tif"), "--out", str(out), "--theta", "-1", "--a-min", "1",
                   "--no-mask")
    assert proc.returncode == 0, proc.stderr
    for stem, (h, w) in (("a", (96, 128)), ("b", (90, 100))):
        doc = json.loads((out / f"{stem}.json").read_text())
        assert set(doc) == {"image", "width", "height", "model", "params", "detections"}
        assert (doc["width"], doc["height"]) == (w, h)
        assert doc["params"]["theta"] == -1 and len(doc["detections"]) >= 1
        for det in doc["detections"]:
            x1, y1, x2, y2 = det["box"]
            assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h and -1 <= det["score"] <= 1
        im = np.asarray(Image.open(out / f"{stem}.png"))
        assert im.shape == (h, w, 3) and (im[..., 1] == 220).any()  # green boxes


def test_cli_detect_bad_inputs(model_file, tmp_path):
    Image.fromarray(np.zeros((20, 40), np.uint8)).save(tmp_path / "tiny.png")
    out = tmp_path / "o"
    assert_one_line_error(run_cli("detect", "--model", str(model_file), str(tmp_path / "tiny.png"),
                                  "--out", str(out)), "tiny.png", "smaller than the 32x32")
    assert not out.exists()
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "ok.png")
    bad = tmp_path / "bad.safetensors"
    bad.write_text("{}")
    assert_one_line_error(run_cli("detect", "--model", str(bad), str(tmp_path / "ok.png"),
                                  "--out", str(out)), "bad.safetensors")
    assert_one_line_error(run_cli("detect", "--model", str(model_file),
                                  str(tmp_path / "missing.png"), "--out", str(out)),
                          "missing.png", "no such file")


def test_cli_evaluate_saved_detections(gdxray_root, tmp_path):
    from xdefect import gdxray

    det = tmp_path / "det"
    det.mkdir()
    # perfect detections for C0010's even images, nothing for C0015
    gt = gdxray.load_ground_truth(gdxray_root, "C0010")
    n_gt = 0
    for r in gdxray.list_images(gdxray_root, ["C0010"], "even"):
        boxes = gt.boxes_of(r.number)
        n_gt += len(boxes)
        doc = {"image": str(r.path), "width": 768, "height": 572, "model": "hand",
               "params": {}, "detections": [{"box": [int(v) for v in b], "score": 0.9}
                                            for b in boxes]}
        (det / f"{r.stem}.json").write_text(json.dumps(doc))
    out = tmp_path / "ev"
    proc = run_cli("evaluate", "--detections", str(det), "--gdxray", str(gdxray_root),
                   "--split", "even", "--series", "C0010", "C0015", "C0061", "--out", str(out),
                   "--no-overlays")
    assert proc.returncode == 0, proc.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert {"ap", "ap11", "iou", "images", "gt_boxes", "detections", "per_series", "params",
            "model"} <= set(m)
    assert m["per_series"]["C0010"]["ap"] == 1.0 and m["per_series"]["C0010"]["gt_boxes"] == n_gt
    assert m["per_series"]["C0015"]["ap"] == 0.0
    assert m["unscored_series"] == ["C0061"] and "C0061" not in m["per_series"]
    assert m["iou"] == 0.5 and (out / "pr_curve.png").stat().st_size > 1000
    # a rerun into the same --out is refused; --force replaces the earlier run whole
    again = ["evaluate", "--detections", str(det), "--gdxray", str(gdxray_root), "--split",
             "even", "--series", "C0010", "--out", str(out), "--no-overlays"]
    assert_one_line_error(run_cli(*again), "output folder exists")
    assert run_cli(*again, "--force").returncode == 0
    m2 = json.loads((out / "metrics.json").read_text())
    assert m2["series"] == ["C0010"] and json.loads(
        (out / "manifest.json").read_text())["format"] == "xdefect-evaluation/1"
    (det / "broken.json").write_text("{not json")
    assert_one_line_error(run_cli("evaluate", "--detections", str(det), "--gdxray",
                                  str(gdxray_root), "--out", str(tmp_path / "ev2")),
                          "broken.json", "malformed JSON")


def test_cli_evaluate_with_model_and_overlays(gdxray_root, model_file, tmp_path):
    out = tmp_path / "ev"
    proc = run_cli("evaluate", "--model", str(model_file), "--gdxray", str(gdxray_root),
                   "--split", "even", "--series", "C0034", "--out", str(out), "--stride", "8",
                   "--mode", "dense")
    assert proc.returncode == 0, proc.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert m["images"] == 18 and m["gt_boxes"] == 18 and m["params"]["stride"] == 8
    assert len(list((out / "overlays").glob("*.png"))) == 18
    assert len(list((out / "detections").glob("*.json"))) == 18
    # the saved documents, scored again, give the live run's figures exactly
    again = tmp_path / "again"
    proc = run_cli("evaluate", "--detections", str(out / "detections"), "--gdxray",
                   str(gdxray_root), "--split", "even", "--series", "C0034", "--out",
                   str(again), "--no-overlays")
    assert proc.returncode == 0, proc.stderr
    m2 = json.loads((again / "metrics.json").read_text())
    assert (m2["ap"], m2["detections"], m2["true_positives"]) == (
        m["ap"], m["detections"], m["true_positives"])


def test_detection_doc_keeps_scores_whole():
    """Scores are not rounded: near ties across images keep their order when saved files
    are scored (six decimals once moved a pooled AP by 0.003)."""
    s = np.float32(0.123456789)
    dets = [D.Detection((1, 2, 5, 9), float(s), 28), D.Detection((0, 0, 3, 3), 0.1234571, 9)]
    doc = json.loads(json.dumps(D.detection_doc("a.png", (40, 50), "m", D.DetectParams(),
                                                dets)))
    assert [d["score"] for d in doc["detections"]] == [float(s), 0.1234571]
    assert doc["detections"][0]["box"] == [1, 2, 5, 9]


def test_demo_with_a_model(model_file, tmp_path):
    import time

    t = time.perf_counter()
    proc = run_cli("demo", "--out", str(tmp_path / "d"), "--model", str(model_file))
    assert proc.returncode == 0, proc.stderr
    assert time.perf_counter() - t < 30
    assert "phantom: 12 defects" in proc.stdout and "false alarms" in proc.stdout
    doc = json.loads((tmp_path / "d" / "phantom.json").read_text())
    assert len(doc["ground_truth"]) == 12 and "detections" in doc
    assert (tmp_path / "d" / "phantom_overlay.png").is_file()


def test_cli_dataset_build_with_hard_negatives(gdxray_root, model_file, tmp_path):
    out = tmp_path / "ds"
    proc = run_cli("dataset", "build", "--gdxray", str(gdxray_root), "--out", str(out),
                   "--series", "C0001", "--limit-images", "3", "--per-image", "10",
                   "--real", "7", "--hard-negatives", "6", "--hard-model", str(model_file))
    assert proc.returncode == 0, proc.stderr
    man = json.loads((out / "manifest.json").read_text())
    assert man["counts"]["source"] == {"background": 30, "ellipsoid": 30, "hard": 6, "real": 7}
    assert man["arguments"]["hard_mode"] == "dense" and "hard_model_sha256" in man
    assert_one_line_error(run_cli("dataset", "build", "--gdxray", str(gdxray_root), "--out",
                                  str(tmp_path / "x"), "--limit-images", "1",
                                  "--hard-negatives", "5"), "needs --hard-model")


def test_patch_mode_skips_windows_off_the_mask_without_changing_detections(gdxray_root):
    """Windows holding no casting pixel are not run (score -1), the others score as the
    full map does, and the detections of a real image stay the same."""
    from xdefect import gdxray
    from xdefect.detector import Detector

    det = Detector.load("xnet2-xdefect", device="cpu", mode="patch", stride=8)
    rec = gdxray.list_images(gdxray_root, ["C0015"], "test")[0]
    image = gdxray.load_sample(rec, gdxray.load_ground_truth(gdxray_root, "C0015")).image
    mask = gdxray.casting_mask(image)
    full = D.score_map_patch(det.model, image, 8)
    part = D.score_map_patch(det.model, image, 8, mask=mask)
    run = part.values > -1
    assert 0.3 < run.mean() < 1.0  # this casting leaves some windows off the mask
    assert np.allclose(part.values[run], full.values[run], atol=1e-5)
    expected = sorted(d.box for d in D.regions(full, det.params, mask))
    assert expected and sorted(d.box for d in det.detect(image)) == expected


def test_calibrate_boxes_sets_the_box_scale_from_annotated_tuning_images(extra_root, tmp_path):
    from safetensors.numpy import load_file

    from xdefect.checkpoint import bundled_model, read_card
    from xdefect.detector import Detector

    out = tmp_path / "cal"
    args = ("calibrate-boxes", "--model", "segnet-xdefect", "--gdxray", str(extra_root),
            "--series", "C0045", "--threads", "1", "--device", "cpu")
    proc = run_cli(*args, "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    card = read_card(out / "model.safetensors")
    # C0045_0001 holds 2 annotated defects: a second tuning image is read for the third
    assert r["images"] == ["C0045_0001", "C0045_0005"] and r["pairs"] >= 3
    assert card["detection"]["box_scale"] == r["box_scale"] == pytest.approx(r["ratio"],
                                                                             abs=1e-3)
    cal = card["box_calibration"]
    assert (cal["box_scale_before"], cal["split"], cal["series"]) == (1.0, "tuning", ["C0045"])
    assert "calibrate-boxes" in cal["command"]
    src = load_file(str(bundled_model("segnet-xdefect")))
    mine = load_file(str(out / "model.safetensors"))
    assert src.keys() == mine.keys() and all((src[k] == mine[k]).all() for k in src)
    det = Detector.load(out / "model.safetensors", device="cpu")
    assert det.params.box_scale == r["box_scale"]
    for extra, needle in ((("--out", str(out)), "holds a model already"),
                          (("--images", "1000", "--out", str(tmp_path / "x")),
                           "only 9 tuning image(s) of C0045 hold an annotated defect, fewer "
                           "than --images 1000"),
                          (("--min-pairs", "1000", "--out", str(tmp_path / "x")),
                           "annotated defects on the 9 tuning image(s) of C0045 overlap a "
                           "detection, fewer than --min-pairs 1000")):
        bad = run_cli(*args, *extra)
        errors = [ln for ln in bad.stderr.splitlines() if "warning:" not in ln]
        assert bad.returncode == 2 and len(errors) == 1 and needle in errors[0], bad.stderr
        assert "Traceback" not in bad.stderr
    assert not (tmp_path / "x").exists()
    from xdefect.errors import InputError
    from xdefect.pipelines import calibrate_boxes

    with pytest.raises(InputError, match="never on the test images"):
        calibrate_boxes("segnet-xdefect", tmp_path / "y", extra_root, ["C0045"], "test")
    assert not r["capped"] and not (tmp_path / "y").exists()


def test_calibrate_boxes_from_a_coco_file_matches_the_gdxray_route(extra_root, tmp_path):
    """The user's way in: the same two C0045 tuning images as a COCO file (GDXray's boxes
    converted to [x, y, w, h]) set the same box scale as the GDXray series does."""
    from xdefect import gdxray
    from xdefect.pipelines import calibrate_boxes

    gt = gdxray.load_ground_truth(extra_root, "C0045")
    recs = [r for r in gdxray.list_images(extra_root, ["C0045"], "tuning")
            if r.number in (1, 5)]
    images, anns = [], []
    for i, r in enumerate(recs, start=1):
        images.append({"id": i, "file_name": r.path.name})
        for x1, y1, x2, y2 in gt.boxes_of(r.number).tolist():
            anns.append({"id": len(anns) + 1, "image_id": i,
                         "bbox": [x1, y1, x2 - x1, y2 - y1]})
    ann = tmp_path / "labels.json"
    ann.write_text(json.dumps({"images": images, "annotations": anns}))
    mine = calibrate_boxes("segnet-xdefect", tmp_path / "coco", annotations=ann,
                           image_dir=recs[0].path.parent, threads=1)
    ref = calibrate_boxes("segnet-xdefect", tmp_path / "gdx", extra_root, ["C0045"],
                          threads=1)
    assert mine["images"] == [r.path.name for r in recs]
    assert (mine["box_scale"], mine["pairs"], mine["defects"]) == (
        ref["box_scale"], ref["pairs"], ref["defects"])
    cal = json.loads((tmp_path / "coco" / "model.json").read_text())["box_calibration"]
    assert cal["annotations"] == str(ann) and "split" not in cal
    for extra, needle in ((("--gdxray", str(extra_root)), "--gdxray is for GDXray series"),
                          (("--split", "odd"), "--split is for GDXray series")):
        proc = run_cli("calibrate-boxes", "--annotations", str(ann), *extra,
                       "--out", str(tmp_path / "x"))
        assert_one_line_error(proc, needle)
    proc = run_cli("calibrate-boxes", "--image-dir", str(tmp_path), "--out", str(tmp_path / "x"))
    assert_one_line_error(proc, "--image-dir goes with --annotations")
    assert not (tmp_path / "x").exists()


def test_derived_run_refuses_an_onnx_graph_and_an_existing_model(tmp_path):
    from xdefect.checkpoint import derived_run
    from xdefect.errors import InputError

    src, run = derived_run("segnet-xdefect", tmp_path / "r", "calibrate")
    assert src.name == "segnet-xdefect.safetensors" and run == tmp_path / "r"
    (tmp_path / "x.onnx").write_bytes(b"")
    with pytest.raises(InputError, match="an ONNX graph; calibrate the .safetensors model"):
        derived_run(tmp_path / "x.onnx", tmp_path / "r", "calibrate")
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "model.safetensors").write_bytes(b"")
    with pytest.raises(InputError, match="holds a model already"):
        derived_run("segnet-xdefect", tmp_path / "r", "tune")
