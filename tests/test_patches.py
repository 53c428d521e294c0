from __future__ import annotations

import csv
import json
from dataclasses import replace

import numpy as np
import pytest
from conftest import assert_one_line_error, run_cli

from xdefect import gdxray
from xdefect.dataset import open_dataset
from xdefect.errors import InputError
from xdefect.io import read_image, to_uint
from xdefect.patches import BuildArgs, build_patches, ellipsoid_patches, parse_mix
from xdefect.pipelines import build_dataset
from xdefect.simulate import SamplerConfig
from xdefect.windows import (
    PATCH,
    background_positions,
    centred_real_positions,
    hard_negative_positions,
    real_positions,
)


def _meta(folder):
    with open(folder / "meta.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def small_ds(gdxray_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("ds") / "w"
    build_dataset(BuildArgs(gdxray=str(gdxray_root), out=str(out), series=["C0001", "C0021"],
                            per_image=60, limit_images=None, seed=3, workers=2))
    return out


def test_wholeimage_format_and_rules(small_ds, gdxray_root):
    p = np.load(small_ds / "patches.npy", mmap_mode="r")
    lab = np.load(small_ds / "labels.npy")
    assert p.dtype == np.uint8 and p.shape[1:] == (32, 32) and lab.dtype == np.uint8
    n_img = 18 + 9  # the train images (odd, n % 4 == 3) of C0001 and C0021
    assert len(p) == len(lab) == n_img * 120
    meta = _meta(small_ds)
    assert list(meta[0])[:8] == ["index", "split", "label", "source", "series", "image", "row",
                                 "col"]
    man = json.loads((small_ds / "manifest.json").read_text())
    assert man["counts"]["label"] == {"0": n_img * 60, "1": n_img * 60}
    assert man["counts"]["source"] == {"background": n_img * 60, "ellipsoid": n_img * 60}
    assert man["mix"] == "E100G000" and man["protocol"] == "wholeimage" and man["seed"] == 3
    assert len(man["source_images"]) == n_img and all(len(s["sha256"]) == 64
                                                      for s in man["source_images"])
    gts = {s: gdxray.load_ground_truth(gdxray_root, s) for s in ("C0001", "C0021")}
    imgs = {}
    for m in meta:
        n = int(m["image"])
        assert n % 4 == 3  # only train images: no tuning (n % 4 == 1) or test (even) image
        r, c = int(m["row"]), int(m["col"])
        i = int(m["index"])
        assert lab[i] == int(m["label"]) and (m["source"] == "background") == (lab[i] == 0)
        for x1, y1, x2, y2 in gts[m["series"]].boxes_of(n):  # no patch touches a real defect
            assert not (c < x2 and x1 < c + PATCH and r < y2 and y1 < r + PATCH), m
        key = (m["series"], n)
        if key not in imgs:
            rec = [x for x in gdxray.list_images(gdxray_root, [key[0]]) if x.number == n][0]
            imgs[key] = np.rint(gdxray.load_sample(rec, gts[key[0]]).image * 255)
        if m["source"] == "ellipsoid":
            bx = [int(m[k]) for k in ("box_x1", "box_y1", "box_x2", "box_y2")]
            assert 0 <= bx[0] < bx[2] <= 32 and 0 <= bx[1] < bx[3] <= 32
            # a 'defect' patch always differs from the radiograph it was cut from
            assert not np.array_equal(p[i], imgs[key][r:r + 32, c:c + 32]), m
        else:  # background patches are the image's pixels, unchanged
            np.testing.assert_array_equal(p[i], imgs[key][r:r + 32, c:c + 32])
    # stratified split: 20% of each label in val
    for labv in ("0", "1"):
        rows = [m for m in meta if m["label"] == labv]
        val = sum(m["split"] == "val" for m in rows)
        assert abs(val / len(rows) - 0.2) < 0.01


def test_deterministic(small_ds, gdxray_root, tmp_path):
    out = tmp_path / "again"
    build_dataset(BuildArgs(gdxray=str(gdxray_root), out=str(out), series=["C0001", "C0021"],
                            per_image=60, seed=3, workers=1))
    for name in ("patches.npy", "labels.npy", "meta.csv"):
        assert (out / name).read_bytes() == (small_ds / name).read_bytes(), name
    a = json.loads((out / "manifest.json").read_text())
    b = json.loads((small_ds / "manifest.json").read_text())
    a["arguments"].pop("out"), b["arguments"].pop("out")
    assert a == b


def test_split_by_image(gdxray_root, tmp_path):
    out = tmp_path / "img"
    build_dataset(BuildArgs(gdxray=str(gdxray_root), out=str(out), series=["C0010"],
                            per_image=20, split_by="image", seed=1))
    sides: dict = {}
    for m in _meta(out):
        sides.setdefault(m["image"], set()).add(m["split"])
    assert all(len(v) == 1 for v in sides.values())
    assert len(sides) == 9  # C0010's train images: 3, 7, ..., 35
    assert sum(v == {"val"} for v in sides.values()) == 2  # round(0.2 * 9)


def test_table3_small(gdxray_root, tmp_path):
    out = tmp_path / "t3"
    man = build_dataset(BuildArgs(
        gdxray=str(gdxray_root), out=str(out), protocol="table3", series=["C0021"],
        t3_defects=400,
        t3_no_defects=400, t3_real=100, t3_test_defects=300, t3_test_no_defects=300,
        limit_images=8, seed=0))
    c = man["counts"]
    assert c["split"] == {"test": 600, "train": 800}
    assert c["source"] == {"background": 700, "ellipsoid": 300, "real": 400}
    ds = open_dataset(out)
    gt1 = gdxray.load_ground_truth(gdxray_root, "C0001")
    for m in _meta(out):
        if m["split"] == "test":
            assert m["series"] == "C0001"
        else:
            assert m["series"] == "C0021"
        if m["split"] == "test" and m["source"] == "real":
            r, c0 = int(m["row"]), int(m["col"])
            best = 0.0
            for x1, y1, x2, y2 in gt1.boxes_of(int(m["image"])):
                ov = max(0, min(x2, c0 + 32) - max(x1, c0)) * max(0, min(y2, r + 32) - max(y1, r))
                best = max(best, ov / min((x2 - x1) * (y2 - y1), 32 * 32))
            assert best >= 1 / 3 - 1e-9
    assert len(ds.indices("test")) == 600


def test_real_positions_rule():
    boxes = np.array([[10, 10, 22, 22]])  # 12x12 = 144 pixels
    pos = real_positions(boxes, (100, 100))
    for r, c, _ in pos:
        ov = max(0, min(22, c + 32) - max(10, c)) * max(0, min(22, r + 32) - max(10, r))
        assert ov * 3 >= 144
    assert (0, 0, 0) in pos and len(pos) == len(set(pos))


def test_background_positions_avoid_boxes():
    mask = np.ones((80, 90), bool)
    boxes = np.array([[40, 30, 50, 40]])
    pos = background_positions(mask, boxes, margin=0)
    for r, c in pos:
        assert not (c < 50 and c + 32 > 40 and r < 40 and r + 32 > 30)
    assert len(pos) > 0


def test_parse_mix():
    assert parse_mix("E050G050").name == "E050G050"
    assert parse_mix("e100g000").ellipsoid == 100


@pytest.mark.parametrize("extra, needle", [
    (["--series", "C9999"], "unknown series 'C9999'"),
    (["--mix", "E060G050"], "add up to 110"),
    (["--mix", "E050G050"], "needs --gan"),
    (["--per-image", "400000"], "fewer than the 400000 asked for"),
])
def test_build_bad_input(gdxray_root, tmp_path, extra, needle):
    out = tmp_path / "o"
    proc = run_cli("dataset", "build", "--gdxray", str(gdxray_root), "--out", str(out),
                   "--limit-images", "2", *extra)
    assert_one_line_error(proc, needle)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # nothing left behind


def test_build_existing_folder_and_cli(gdxray_root, tmp_path, small_ds):
    out = tmp_path / "o"
    out.mkdir()
    proc = run_cli("dataset", "build", "--gdxray", str(gdxray_root), "--out", str(out))
    assert_one_line_error(proc, "exists (use --force")
    proc = run_cli("dataset", "info", str(small_ds), "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["n"] == 27 * 120
    proc = run_cli("dataset", "grid", str(small_ds), "--out", str(tmp_path / "g.png"))
    assert proc.returncode == 0 and (tmp_path / "g.png").stat().st_size > 1000
    assert_one_line_error(run_cli("dataset", "info", str(tmp_path)), "not an xdefect dataset")


def test_centred_real_positions_rule():
    small = np.array([[40, 50, 60, 70]])  # 20x20, centre (row 60, col 50)
    pos = centred_real_positions(small, (200, 200), max_offset=8)
    assert len(pos) == 17 * 17
    for r, c, k in pos:
        assert k == 0 and abs(r + 16 - 60) <= 8 and abs(c + 16 - 50) <= 8
    wide = np.array([[10, 100, 110, 120]])  # 100 wide: centres anywhere in x 26..94
    cols = {c + 16 for _, c, _ in centred_real_positions(wide, (300, 300), 8)}
    assert min(cols) == 26 and max(cols) == 94
    # near the edge, windows are moved inside the image, without repeats
    edge = centred_real_positions(np.array([[0, 0, 10, 10]]), (64, 64), 8)
    assert edge == [(0, 0, 0)]
    edge = centred_real_positions(np.array([[20, 0, 30, 10]]), (64, 64), 8)
    assert sorted(c for _, c, _ in edge) == list(range(1, 18))


def test_hard_negative_positions_pick_highest_clear_windows():
    mask = np.ones((96, 96), bool)
    mask[:, 80:] = False
    scores = np.zeros((17, 17), np.float32)  # stride 4 grid of a 96x96 image
    scores[2, 2] = 0.9    # window (8, 8): clear -> first
    scores[10, 10] = 0.95  # window (40, 40): overlaps the box -> excluded
    scores[5, 16] = 0.99  # window (20, 64): centre col 80 outside the mask -> excluded
    scores[12, 1] = 0.5   # window (48, 4): clear -> second
    boxes = np.array([[50, 50, 60, 60]])
    pos = hard_negative_positions(scores, 4, mask, boxes, n=2, margin=4)
    assert pos.tolist() == [[8, 8], [48, 4]]
    assert len(hard_negative_positions(scores, 4, mask, boxes, n=10**6)) > 2
    assert len(hard_negative_positions(scores, 4, mask, boxes, n=0)) == 0


def test_wholeimage_real_and_hard_negatives(gdxray_root, tmp_path):
    def score_fn(image):  # a "model" that finds the brightest windows most defect-like
        win = np.lib.stride_tricks.sliding_window_view(image, (32, 32))[::4, ::4]
        return win.mean(axis=(2, 3)), 4

    out = tmp_path / "a"
    args = BuildArgs(gdxray=str(gdxray_root), out=str(out), series=["C0001"], per_image=20,
                     limit_images=3, real=50, hard_negatives=30, workers=1, seed=1)
    man = build_patches(args, score_fn)
    ds = open_dataset(out)
    assert man["counts"]["source"] == {"background": 60, "ellipsoid": 60, "hard": 30,
                                       "real": 50}
    rows = _meta(out)
    paths = {r.number: r.path for r in gdxray.list_images(gdxray_root, ["C0001"], "train")}
    gt = gdxray.load_ground_truth(gdxray_root, "C0001")
    for i, m in enumerate(rows):
        if m["source"] not in ("real", "hard"):
            continue
        n, r, c = int(m["image"]), int(m["row"]), int(m["col"])
        assert n in paths  # never a val (n % 4 == 1) image
        boxes = gt.boxes_of(n)
        if m["source"] == "real":
            assert m["label"] == "1"
            off = [max(abs(r + 16 - (y1 + y2) / 2), abs(c + 16 - (x1 + x2) / 2))
                   for x1, y1, x2, y2 in boxes]
            assert min(off) <= 8.5
        else:
            assert m["label"] == "0"
            for x1, y1, x2, y2 in boxes:  # clear of every box grown by the margin (4)
                assert not (c < x2 + 4 and c + 32 > x1 - 4 and r < y2 + 4 and r + 32 > y1 - 4)
        pixels = read_image(paths[n]).pixels
        assert np.array_equal(ds.patches[i], to_uint(pixels, 8)[r:r + PATCH, c:c + PATCH])
    assert man["adaptation"]["hard_negatives"] == 30
    with pytest.raises(Exception, match="needs --hard-model"):
        build_dataset(BuildArgs(gdxray=str(gdxray_root), out=str(tmp_path / "b"),
                                series=["C0001"], per_image=5, limit_images=1,
                                hard_negatives=5))


def test_hard_pairs_put_a_simulated_defect_on_each_hard_spot(gdxray_root, tmp_path):
    def score_fn(image):  # the brightest windows are the most defect-like
        win = np.lib.stride_tricks.sliding_window_view(image, (32, 32))[::4, ::4]
        return win.mean(axis=(2, 3)), 4

    out = tmp_path / "a"
    man = build_patches(BuildArgs(gdxray=str(gdxray_root), out=str(out), series=["C0001"],
                                  per_image=10, limit_images=2, hard_negatives=12,
                                  hard_pairs=True, workers=1, seed=1), score_fn)
    assert man["counts"]["source"] == {"background": 20, "ellipsoid": 20, "hard": 12,
                                       "hard-defect": 12}
    ds = open_dataset(out)
    rows = _meta(out)
    hard = [(int(m["image"]), int(m["row"]), int(m["col"])) for m in rows
            if m["source"] == "hard"]
    paths = {r.number: r.path for r in gdxray.list_images(gdxray_root, ["C0001"], "train")}
    for i, m in enumerate(rows):
        if m["source"] != "hard-defect":
            continue
        n, r, c = int(m["image"]), int(m["row"]), int(m["col"])
        assert m["label"] == "1" and ds.labels[i] == 1
        # within 6 px of a hard negative's window of the same image (2 px centre + 4 px)
        assert min(max(abs(r - hr), abs(c - hc)) for hn, hr, hc in hard if hn == n) <= 6
        raw = to_uint(read_image(paths[n]).pixels, 8)[r:r + PATCH, c:c + PATCH]
        assert not np.array_equal(ds.patches[i], raw)  # the defect is there
        bx = [int(m[k]) for k in ("box_x1", "box_y1", "box_x2", "box_y2")]
        assert 0 <= bx[0] < bx[2] <= 32 and 0 <= bx[1] < bx[3] <= 32
    with pytest.raises(InputError, match="--hard-pairs"):
        build_patches(BuildArgs(gdxray=str(gdxray_root), out=str(tmp_path / "b"),
                                series=["C0001"], per_image=5, limit_images=1,
                                hard_pairs=True), score_fn)


def test_simulated_defects_that_change_nothing_are_drawn_again():
    # left half saturated (a defect there brightens nothing), right half mid-grey
    img = np.full((96, 192), 0.5, np.float32)
    img[:, :96] = 1.0
    centres = np.ones(img.shape, bool)
    rng = np.random.default_rng(0)
    p, rows, cols, _ = ellipsoid_patches(img, centres, 60, rng, SamplerConfig())
    raw = to_uint(img, 8)
    for k in range(len(p)):
        assert not np.array_equal(p[k], raw[rows[k]:rows[k] + 32, cols[k]:cols[k] + 32]), k
    # wholly saturated: refused with a line naming the problem, never uniform 'defects'
    with pytest.raises(InputError, match="changed a pixel"):
        ellipsoid_patches(np.ones((96, 96), np.float32), centres[:, :96], 5, rng,
                          SamplerConfig())


def test_build_args_range_of_contrasts():
    args = BuildArgs(gdxray="g", out="o", x_max_range=(60.0, 180.0))
    args.validate()
    assert args.sampler().x_max_range == (60.0, 180.0)
    for bad in ((180.0, 60.0), (0.0, 60.0), (float("nan"), 60.0)):
        with pytest.raises(InputError, match="--x-max-range"):
            BuildArgs(gdxray="g", out="o", x_max_range=bad).validate()
    proc = run_cli("dataset", "build", "--gdxray", "g", "--out", "o", "--x-max-range", "0", "9")
    assert_one_line_error(proc, "--x-max-range")
    # the patches' defects keep their own x_max: fainter than the fixed one, never stronger
    img = np.full((96, 96), 0.5, np.float32)
    centres = np.zeros(img.shape, bool)
    centres[40:56, 40:56] = True
    cfg = SamplerConfig(axes_mm=(2.0, 2.0), mu_range=(0.02, 0.02))
    fixed = ellipsoid_patches(img, centres, 20, np.random.default_rng(0), cfg)[0]
    faint = ellipsoid_patches(img, centres, 20, np.random.default_rng(0),
                              replace(cfg, x_max_range=(120.0, 240.0)))[0]
    assert faint.astype(int).max(axis=(1, 2)).mean() < fixed.astype(int).max(axis=(1, 2)).mean()
