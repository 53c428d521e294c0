from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import assert_one_line_error, make_fake_root, run_cli
from PIL import Image

from xdefect import gdxray
from xdefect.errors import DataWarning, InputError
from xdefect.io import read_image

# ------------------------------------------------------------------ on the real data


def test_info_counts(gdxray_root):
    info = gdxray.series_info(gdxray_root)
    assert info["total"] == {"images": 288, "boxes": 540}
    c1 = info["series"]["C0001"]
    assert (c1["images"], c1["height"], c1["width"], c1["boxes"]) == (72, 572, 768, 226)
    assert (c1["images_with_boxes"], c1["odd"], c1["even"]) == (72, 36, 36)
    assert info["series"]["C0061"]["annotated"] is False
    assert info["series"]["C0061"]["height"] == 574


def test_info_json_shape(gdxray_root):
    proc = run_cli("gdxray", "info", "--root", str(gdxray_root), "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert set(doc) == {"root", "series", "total"}
    assert doc["total"] == {"images": 288, "boxes": 540}
    assert set(doc["series"]["C0001"]) == {"images", "height", "width", "sizes",
                                           "ground_truth", "clipped", "duplicates", "boxes",
                                           "images_with_boxes", "odd", "even",
                                           "unannotated_images"}
    assert doc["series"]["C0001"]["unannotated_images"] == 0
    assert doc["series"]["C0001"]["ground_truth"] == "ground_truth.txt"
    assert (doc["series"]["C0001"]["sizes"], doc["series"]["C0001"]["clipped"]) == (1, 0)
    assert list(doc["series"]) == list(gdxray.PAPER_SERIES)


def test_static_series_annotated_on_some_images_leaves_the_others_unscored(tmp_path):
    import warnings

    from xdefect.errors import DataWarning
    from xdefect.pipelines import write_phantom_root
    from xdefect.protocol import select

    root = write_phantom_root(tmp_path / "r", n=6, shape=(64, 80), defects=1, series="C0998")
    d = root / "Castings" / "C0998"
    rows = (d / "ground_truth.txt").read_text().splitlines()
    (d / "ground_truth.txt").write_text("\n".join(r for r in rows if r.split()[0] in "13")
                                         + "\n")
    # without a readme (or a moving part) an image without boxes is defect-free
    gt = gdxray.load_ground_truth(root, "C0998")
    assert gt.unannotated_images == frozenset() and gt.covers(2)
    assert [r.number for r in select(root, ["C0998"], "all").records] == [1, 2, 3, 4, 5, 6]
    # GDXray's readme of a static series (C0041: "<static images, without motion>")
    (d / "C0998_readme.txt").write_text("set: X050\n<static images, without motion>\n")
    assert gdxray.is_static(root, "C0998")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gt = gdxray.load_ground_truth(root, "C0998")
    assert any(issubclass(w.category, DataWarning) and "static series" in str(w.message)
               and "4 show the same defects unannotated" in str(w.message) for w in caught)
    assert gt.unannotated_images == frozenset({2, 4, 5, 6})
    assert gt.covers(1) and gt.covers(3) and not gt.covers(2)
    sel = select(root, ["C0998"], "all")
    assert [r.number for r in sel.records] == [1, 3] and sel.unscored == []
    samples = {s.record.number: s.annotated for s in gdxray.iter_samples(root, ["C0998"])}
    assert samples == {1: True, 2: False, 3: True, 4: False, 5: False, 6: False}
    info = gdxray.series_info(root)["series"]["C0998"]
    assert info["unannotated_images"] == 4 and info["annotated"] is True
    proc = run_cli("gdxray", "info", "--root", str(root))
    assert proc.returncode == 0 and "static series: 4 image(s)" in proc.stdout
    # every image annotated (GDXray C0034, static too): nothing left out
    (d / "ground_truth.txt").write_text("\n".join(rows) + "\n")
    assert gdxray.load_ground_truth(root, "C0998").unannotated_images == frozenset()


def test_info_root_from_env(gdxray_root):
    proc = run_cli("gdxray", "info", "--json", env={"XDEFECT_GDXRAY": str(gdxray_root)})
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["root"] == str(gdxray_root)


def test_ground_truth_convention(gdxray_root):
    # first row of C0001: "1 171 198 471 493" (1-based inclusive x1 x2 y1 y2)
    gt = gdxray.load_ground_truth(gdxray_root, "C0001")
    np.testing.assert_array_equal(gt.boxes_of(1)[0], [170, 470, 198, 493])
    # a box reaching x2 = 768 on a 768-wide image becomes exactly the image edge
    all_boxes = np.concatenate([b for s in gdxray.PAPER_SERIES[:-1]
                                for b in gdxray.load_ground_truth(gdxray_root, s).boxes.values()])
    assert all_boxes[:, 2].max() <= 768 and all_boxes[:, 0].min() >= 0


def test_split_and_samples(gdxray_root):
    odd = gdxray.list_images(gdxray_root, ["C0010"], "odd")
    even = gdxray.list_images(gdxray_root, ["C0010"], "even")
    assert len(odd) == 19 and len(even) == 18
    assert all(r.number % 2 == 1 for r in odd) and all(r.number % 2 == 0 for r in even)
    smp = next(gdxray.iter_samples(gdxray_root, ["C0001"], "odd"))
    assert smp.image.dtype == np.float32 and smp.image.shape == (572, 768)
    assert smp.image.min() >= 0.0 and smp.image.max() <= 1.0
    assert smp.bit_depth == 8 and smp.annotated and smp.record.number == 1
    c61 = next(gdxray.iter_samples(gdxray_root, ["C0061"]))
    assert not c61.annotated and len(c61.boxes) == 0


def test_casting_mask_keeps_boxes(gdxray_root):
    rep = gdxray.mask_report(gdxray_root)
    assert rep["total"]["boxes"] == 540
    assert rep["total"]["fraction_inside"] >= 0.99
    for s in gdxray.PAPER_SERIES:
        assert 0.3 < rep[s]["mask_fraction"] < 0.95, s


def test_casting_mask_excludes_air_and_fov(gdxray_root):
    img = read_image(gdxray_root / "Castings/C0001/C0001_0001.png").pixels
    m = gdxray.casting_mask(img)
    assert not m[:5, :5].any()  # corner outside the intensifier's field of view
    # saturated air, away from its blurred edge, is excluded
    from scipy import ndimage as ndi

    air = ndi.distance_transform_edt(img >= 185 / 255) > 15
    assert air.sum() > 10000
    assert m[air].mean() < 0.01


def test_show_writes_png(gdxray_root, tmp_path):
    out = tmp_path / "s.png"
    proc = run_cli("gdxray", "show", "C0001", "3", "--out", str(out), "--root", str(gdxray_root))
    assert proc.returncode == 0, proc.stderr
    a = np.asarray(Image.open(out))
    assert a.shape == (572, 768, 3)
    assert ((a[..., 0] == 255) & (a[..., 1] == 0)).any()  # red ground truth drawn


# --------------------------------------------------------------- without the data


def test_parse_converts_and_checks(tmp_path):
    p = tmp_path / "gt.txt"
    p.write_text("  1.0000000e+00  1.0e+00  5.0e+00  2.0e+00  3.0e+00\n2 10 50 1 40\n")
    b = gdxray.parse_ground_truth(p, {1: (40, 50), 2: (40, 50)})
    np.testing.assert_array_equal(b[1], [[0, 1, 5, 3]])
    np.testing.assert_array_equal(b[2], [[9, 0, 50, 40]])


@pytest.mark.parametrize("rows, needle", [
    (["1 2 3 4"], ":1: expected 5 columns"),
    (["1 1 5 1 5", "9 1 5 1 5"], ":2: names image 9, which does not exist"),
    (["1 1 54 1 5"], ":1: box x1=1 x2=54 y1=1 y2=5 (image 50x40) reaches 4 px past the "
                     "image edge"),
    (["1 -3 5 1 5"], ":1: box x1=-3 x2=5 y1=1 y2=5 (image 50x40) reaches 4 px past"),
    (["1 51 53 1 5"], ":1: box x1=51 x2=53 y1=1 y2=5 (image 50x40) lies wholly outside"),
    (["1 a 5 1 5"], ":1: non-numeric"),
    (["1 5 1 1 5"], ":1: invalid row"),
    (["0 1 5 1 5"], ":1: invalid row image=0"),
])
def test_bad_ground_truth_exits_2(tmp_path, rows, needle):
    root = make_fake_root(tmp_path, gt_rows=rows)
    proc = run_cli("gdxray", "info", "--root", str(root))
    assert_one_line_error(proc, "ground_truth.txt", needle)


def test_missing_root_exits_2(tmp_path):
    proc = run_cli("gdxray", "info", "--root", str(tmp_path / "nope"))
    assert_one_line_error(proc, "nope", "does not exist")


def test_root_without_series_exits_2(tmp_path):
    (tmp_path / "Castings").mkdir()
    proc = run_cli("gdxray", "info", "--root", str(tmp_path))
    assert_one_line_error(proc, "holds no GDXray series")
    proc = run_cli("gdxray", "info", "--root", str(tmp_path / "Castings" / ".."))
    assert proc.returncode == 2


def test_root_without_castings_exits_2(tmp_path):
    proc = run_cli("gdxray", "info", "--root", str(tmp_path))
    assert_one_line_error(proc, "no Castings/")


def test_unreadable_image_exits_2(tmp_path):
    root = make_fake_root(tmp_path)
    bad = root / "Castings/C0099/C0099_0002.png"
    bad.write_bytes(b"this is not a PNG")
    proc = run_cli("gdxray", "info", "--root", str(root))
    assert_one_line_error(proc, "C0099_0002.png", "not a readable image")
    proc = run_cli("gdxray", "show", "C0099", "2", "--root", str(root),
                   "--out", str(tmp_path / "x.png"))
    assert_one_line_error(proc, "C0099_0002.png")
    assert not (tmp_path / "x.png").exists()


def test_unknown_series_and_image(tmp_path):
    root = make_fake_root(tmp_path)
    proc = run_cli("gdxray", "show", "C0001", "1", "--root", str(root),
                   "--out", str(tmp_path / "x.png"))
    assert_one_line_error(proc, "unknown series 'C0001'")
    proc = run_cli("gdxray", "show", "C0099", "9", "--root", str(root),
                   "--out", str(tmp_path / "x.png"))
    assert_one_line_error(proc, "no image number 9")


def test_fake_root_info_and_split(tmp_path):
    root = make_fake_root(tmp_path, n=5, gt_rows=["1 1 5 1 5", "1 2 6 2 6", "4 1 50 1 40"])
    info = gdxray.series_info(root)["series"]["C0099"]
    assert info == {"images": 5, "height": 40, "width": 50, "boxes": 3,
                    "images_with_boxes": 2, "odd": 3, "even": 2, "annotated": True,
                    "sizes": 1, "ground_truth": "ground_truth.txt", "clipped": 0,
                    "duplicates": 0, "unannotated_images": 0}


def test_read_image_bit_depths(tmp_path):
    a16 = (np.arange(30 * 40).reshape(30, 40) * 50).astype(np.uint16)
    for suffix in (".png", ".tif"):
        p = tmp_path / f"a16{suffix}"
        Image.fromarray(a16).save(p)
        r = read_image(p)
        assert r.bit_depth == 16 and r.pixels.dtype == np.float32
        np.testing.assert_allclose(r.pixels, a16 / 65535.0, atol=1e-7)
    a8 = np.arange(256, dtype=np.uint8).reshape(16, 16)
    Image.fromarray(a8).save(tmp_path / "a8.tif")
    r = read_image(tmp_path / "a8.tif")
    assert r.bit_depth == 8 and r.pixels.max() == 1.0
    Image.fromarray(np.zeros((4, 4), np.float32)).save(tmp_path / "f.tif")
    with pytest.raises(InputError, match="TIFF samples of type float32"):
        read_image(tmp_path / "f.tif")
    with pytest.raises(InputError, match="no such file"):
        read_image(tmp_path / "missing.png")


def test_casting_mask_on_synthetic_scene():
    # air (bright) on the left, metal in the middle, no-signal floor on the right
    rng = np.random.default_rng(0)
    img = np.full((200, 300), 0.5) + rng.normal(0, 0.02, (200, 300))
    img[:, :100] = 0.94
    img[:, 220:] = 0.06
    m = gdxray.casting_mask(np.clip(img, 0, 1))
    assert m[:, 120:200].all()
    assert not m[:, :80].any() and not m[:, 240:].any()


@pytest.mark.parametrize("radius", [0.5, 1.0, 2.9, 3.0, 7.5, 10.0])
def test_deeper_than_equals_the_distance_transform(radius):
    from scipy import ndimage as ndi

    rng = np.random.default_rng(int(radius * 10))
    for trial in range(40):
        h, w = rng.integers(1, 50, 2)
        region = rng.uniform(size=(h, w)) < rng.uniform(0.5, 0.999)
        if trial % 2:
            region = ndi.binary_opening(region)
        if trial == 0:
            region = np.ones((h, w), bool)  # no background at all: scipy's convention
        assert np.array_equal(gdxray._deeper_than(region, radius),
                              ndi.distance_transform_edt(region) > radius), (trial, h, w)


@pytest.mark.parametrize("iterations", [1, 2, 3])
def test_cross_morphology_equals_scipy(iterations):
    from scipy import ndimage as ndi

    rng = np.random.default_rng(iterations)
    for trial in range(40):
        h, w = rng.integers(1, 30, 2)
        region = rng.uniform(size=(h, w)) < rng.uniform(0.2, 0.95)
        for op, ref in (("erode", ndi.binary_erosion), ("dilate", ndi.binary_dilation)):
            assert np.array_equal(gdxray._cross_morphology(region, op, iterations),
                                  ref(region, iterations=iterations)), (op, trial, h, w)
        before = region.copy()
        gdxray._cross_morphology(region, "erode", iterations)
        assert np.array_equal(region, before)  # the input is not modified


def test_boxes_past_the_edge_clipped_and_duplicates_dropped(tmp_path):
    root = make_fake_root(tmp_path, gt_rows=["1 0 5 1 5", "1 40 53 30 41", "2 1 5 1 5",
                                             "2 1 5 1 5", "3 2 6 2 6"])
    with pytest.warns(DataWarning, match="2 box.*clipped"):
        gt = gdxray.load_ground_truth(root, "C0099")
    assert (gt.clipped, gt.duplicates) == (2, 1)
    np.testing.assert_array_equal(gt.boxes_of(1), [[0, 0, 5, 5], [39, 29, 50, 40]])
    assert len(gt.boxes_of(2)) == 1  # a duplicate row is one defect, not two
    proc = run_cli("gdxray", "info", "--root", str(root))
    assert proc.returncode == 0, proc.stderr
    assert "2 box(es) clipped to the image, 1 duplicate row(s) dropped" in proc.stdout
    warn = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(warn) == 2 and all(w.startswith("xdefect: warning: ") for w in warn), warn
    assert "Traceback" not in proc.stderr


def test_ground_truth_without_extension(tmp_path):
    root = make_fake_root(tmp_path)
    d = root / "Castings" / "C0099"
    (d / "ground_truth").write_text("1 1 5 1 5\n")
    (d / "Xgdxannotate('C',99)").write_text("1 1 5 1 5\n")  # a copy under an odd name
    assert gdxray.ground_truth_path(root, "C0099").name == "ground_truth"
    gt = gdxray.load_ground_truth(root, "C0099")
    assert gt.annotated and len(gt.boxes_of(1)) == 1
    (d / "ground_truth.txt").write_text("2 1 5 1 5\n")  # the usual name wins
    assert gdxray.load_ground_truth(root, "C0099").boxes_of(2).shape == (1, 4)


def test_extra_series_read_as_they_ship(extra_root):
    """gdxray-extra: mixed image sizes (C0002), 256x256 images, a ground-truth file without
    extension (C0037), a box one pixel past the edge (C0045)."""
    proc = run_cli("gdxray", "info", "--root", str(extra_root), "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["total"] == {"images": 450, "boxes": 315}
    s = doc["series"]
    assert s["C0002"]["sizes"] == 8 and s["C0045"]["height"] == 256
    assert s["C0037"]["ground_truth"] == "ground_truth" and s["C0037"]["boxes"] == 34
    assert s["C0045"]["clipped"] == 1
    assert "C0045/ground_truth.txt: 1 box(es)" in proc.stderr
    assert gdxray.protocol_series(extra_root) == gdxray.list_series(extra_root)
