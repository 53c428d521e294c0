"""COCO out, and a cross-check of xdefect's AP against pycocotools at IoU 0.5 with the same
(101-point) interpolation."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from conftest import run_cli

from xdefect import coco
from xdefect.evaluate import ImageResult, summarise


def _coco_ap50(dataset: dict, results: list[dict]) -> float:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = json.loads(json.dumps(dataset))
        gt.createIndex()
        if not results:
            return 0.0
        dt = gt.loadRes(json.loads(json.dumps(results)))
        ev = COCOeval(gt, dt, "bbox")
        ev.params.iouThrs = np.array([0.5])
        ev.params.maxDets = [100000]
        ev.params.areaRng = [[0, 1e10]]
        ev.params.areaRngLbl = ["all"]
        ev.evaluate()
        ev.accumulate()
    prec = ev.eval["precision"][0, :, 0, 0, -1]
    return float(prec[prec > -1].mean()) if (prec > -1).any() else 0.0


def _random_results(seed: int, n_images: int = 12) -> list[ImageResult]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_images):
        gt = []
        for _ in range(rng.integers(0, 5)):
            x, y = rng.integers(0, 200, 2)
            w, h = rng.integers(8, 60, 2)
            gt.append([x, y, x + w, y + h])
        gt = np.asarray(gt, float).reshape(-1, 4)
        dets = []
        for g in gt:  # near misses and hits
            if rng.random() < 0.8:
                dets.append(g + rng.integers(-6, 7, 4))
        for _ in range(rng.integers(0, 6)):  # false alarms
            x, y = rng.integers(0, 200, 2)
            dets.append([x, y, x + 20, y + 20])
        boxes = np.asarray(dets, float).reshape(-1, 4)
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        scores = rng.random(len(boxes))  # distinct with probability 1
        out.append(ImageResult(f"img{i:02d}", "S", boxes, scores, gt))
    return out


@pytest.mark.parametrize("seed", range(8))
def test_ap101_equals_pycocotools_on_random_detections(seed):
    results = _random_results(seed)
    shapes = [(300, 300)] * len(results)
    ours = summarise(results)["ap101"]
    theirs = _coco_ap50(coco.coco_dataset(results, shapes), coco.coco_results(results))
    assert ours == pytest.approx(theirs, abs=1e-9)


def test_coco_files_round_trip(tmp_path):
    results = _random_results(3, 4)
    dt = coco.write_coco(tmp_path / "gt.json", results, [(300, 320)] * 4)
    assert dt == tmp_path / "gt.detections.json"
    ds = json.loads((tmp_path / "gt.json").read_text())
    assert [im["id"] for im in ds["images"]] == [1, 2, 3, 4]
    assert ds["images"][0] == {"id": 1, "file_name": "img00", "width": 320, "height": 300,
                               "series": "S"}
    assert len(ds["annotations"]) == sum(len(r.gt) for r in results)
    a = ds["annotations"][0]
    r0 = next(r for r in results if len(r.gt))
    x1, y1, x2, y2 = r0.gt[0]
    assert a["bbox"] == [x1, y1, x2 - x1, y2 - y1] and a["area"] == (x2 - x1) * (y2 - y1)
    res = json.loads(dt.read_text())
    assert len(res) == sum(len(r.boxes) for r in results)
    assert set(res[0]) == {"image_id", "category_id", "bbox", "score"}


def test_real_detections_ap_agrees_with_pycocotools(gdxray_root, tmp_path):
    """The bundled model on the test images of two series: xdefect's 101-point AP equals
    pycocotools' AP at IoU 0.5, computed from the files `evaluate --coco` writes."""
    out = tmp_path / "ev"
    proc = run_cli("evaluate", "--gdxray", str(gdxray_root), "--series", "C0015", "C0031",
                   "--split", "test", "--out", str(out), "--no-overlays",
                   "--coco", str(tmp_path / "c.json"), "--threads", "2")
    assert proc.returncode == 0, proc.stderr
    m = json.loads((out / "metrics.json").read_text())
    ds = json.loads((tmp_path / "c.json").read_text())
    res = json.loads((tmp_path / "c.detections.json").read_text())
    assert len(ds["images"]) == m["images"] and len(ds["annotations"]) == m["gt_boxes"]
    assert len(res) == m["detections"] > 0
    assert m["ap101"] == pytest.approx(_coco_ap50(ds, res), abs=1e-9)
    assert "COCO: ground truth" in proc.stdout


def _write_pngs(folder, names, shape=(20, 30)):
    from xdefect.io import write_image

    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        write_image(folder / n, np.full(shape, 0.5))


def test_read_coco_ground_truth_converts_boxes_finds_files_and_flags_crowds(tmp_path):
    _write_pngs(tmp_path / "img", ["a.png", "b.tif"])
    doc = {"images": [{"id": 7, "file_name": "a.png", "width": 30, "height": 20},
                      {"id": 3, "file_name": "b", "width": 30, "height": 20}],
           "annotations": [{"id": 1, "image_id": 3, "bbox": [2, 4, 6, 8], "category_id": 9},
                           {"id": 2, "image_id": 3, "bbox": [0, 0, 30, 20], "iscrowd": 1},
                           {"id": 3, "image_id": 7, "bbox": [1.5, 2, 3, 4.5]}]}
    f = tmp_path / "ann.json"
    f.write_text(json.dumps(doc))
    got = coco.read_coco_ground_truth(f, tmp_path / "img")
    # the file's order; a bare stem ("b", as coco_dataset writes it) finds b.tif
    assert [g.path.name for g in got] == ["a.png", "b.tif"]
    assert got[0].boxes.tolist() == [[1.5, 2.0, 4.5, 6.5]] and got[0].crowd.tolist() == [False]
    assert got[1].boxes.tolist() == [[2, 4, 8, 12], [0, 0, 30, 20]]
    assert got[1].crowd.tolist() == [False, True]
    # round trip with the writer: the same boxes come back
    res = [ImageResult("a", "", np.zeros((0, 4)), np.zeros(0), got[0].boxes),
           ImageResult("b", "", np.zeros((0, 4)), np.zeros(0), got[1].boxes)]
    (tmp_path / "img" / "again.json").write_text(
        json.dumps(coco.coco_dataset(res, [(20, 30), (20, 30)])))
    back = coco.read_coco_ground_truth(tmp_path / "img" / "again.json")
    assert [b.boxes.tolist() for b in back] == [g.boxes.tolist() for g in got]


@pytest.mark.parametrize("change, needle", [
    (lambda d: d.pop("annotations"), 'no "annotations" list'),
    (lambda d: d["images"].append({"id": 1, "file_name": "a.png"}), "id 1 missing or repeated"),
    (lambda d: d["annotations"][0].update(image_id=5), "image_id 5 is not among the images"),
    (lambda d: d["annotations"][0].update(image_id=[1]), "image_id [1] is not among the"),
    (lambda d: d["images"][0].update(id=[1]), "id [1] missing or repeated"),
    (lambda d: d["annotations"][0].update(bbox=[1, 2, 3]), "is not four finite numbers"),
    (lambda d: d["annotations"][0].update(bbox=[1, 2, float("nan"), 3]),
     "is not four finite numbers"),
    (lambda d: d["annotations"][0].update(bbox=[1, 2, 0, 3]), "positive width and height"),
    (lambda d: d["annotations"][0].update(bbox=[25, 2, 6, 3]), "runs past the image (30 x 20)"),
    (lambda d: d["images"][0].update(file_name="gone.png"), "image 'gone.png': no such file"),
])
def test_read_coco_ground_truth_refuses_malformed_files_naming_them(tmp_path, change, needle):
    from xdefect.errors import InputError

    _write_pngs(tmp_path, ["a.png"])
    doc = {"images": [{"id": 1, "file_name": "a.png", "width": 30, "height": 20}],
           "annotations": [{"id": 1, "image_id": 1, "bbox": [1, 2, 3, 4]}]}
    change(doc)
    f = tmp_path / "ann.json"
    f.write_text(json.dumps(doc))
    with pytest.raises(InputError, match="ann.json: ") as exc:
        coco.read_coco_ground_truth(f)
    assert needle in str(exc.value)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match="bad.json"):
        coco.read_coco_ground_truth(tmp_path / "bad.json")


def test_evaluate_on_your_own_coco_file_matches_the_gdxray_evaluation(extra_root, tmp_path):
    """`evaluate --coco` writes C0045's tuning images as a COCO file; `evaluate
    --annotations` on that file, with the model and with the saved detections, scores the
    same detections against the same boxes."""
    ann = tmp_path / "c0045.json"
    base = ("--gdxray", str(extra_root), "--series", "C0045", "--split", "tuning")
    proc = run_cli("evaluate", "--model", "segnet-xdefect", *base, "--threads", "1",
                   "--device", "cpu", "--no-overlays", "--coco", str(ann),
                   "--out", str(tmp_path / "ref"), "--json")
    assert proc.returncode == 0, proc.stderr
    ref = json.loads(proc.stdout)["metrics"]
    images = str(extra_root / "Castings" / "C0045")
    runs = {"model": ("--model", "segnet-xdefect", "--threads", "1", "--device", "cpu"),
            "saved": ("--detections", str(tmp_path / "ref" / "detections"))}
    for name, how in runs.items():
        out = tmp_path / name
        proc = run_cli("evaluate", *how, "--annotations", str(ann), "--image-dir", images,
                       "--out", str(out), *(("--html",) if name == "saved" else ()))
        assert proc.returncode == 0, proc.stderr
        assert "ground truth: " in proc.stdout and "annotated images" in proc.stdout
        m = json.loads((out / "metrics.json").read_text())
        keys = ("ap", "ap11", "images", "gt_boxes", "detections", "true_positives",
                "false_positives")
        assert {k: m[k] for k in keys} == {k: ref[k] for k in keys}, name
        assert m["per_series"].keys() == {"C0045"} and m["split"] == "annotated"
        assert m["annotations"] == str(ann) and "unseen" not in m
    assert (tmp_path / "saved" / "report.html").is_file()
    assert len(list((tmp_path / "saved" / "overlays").glob("*.png"))) == ref["images"]
    for extra, needle in ((base[:2], "--gdxray is for GDXray series"),
                          (("--split", "odd"), "--split is for GDXray series"),
                          (("--theta-sweep",), "--theta-sweep: the paper's curve"),
                          (("--image-dir", str(tmp_path / "nope")), "no such folder")):
        proc = run_cli("evaluate", "--model", "segnet-xdefect", "--annotations", str(ann),
                       *extra, "--out", str(tmp_path / "x"))
        assert proc.returncode == 2 and needle in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x").exists()
