from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import assert_one_line_error, run_cli
from PIL import Image

from xdefect import simulate as S
from xdefect.io import read_image


def _rot_x(deg: float) -> np.ndarray:
    t = math.radians(deg)
    return np.array([[1, 0, 0], [0, math.cos(t), -math.sin(t)], [0, math.sin(t), math.cos(t)]])


def test_sphere_chord_length():
    r, s = 2.0, 0.1
    ell = S.Ellipsoid((r, r, r), np.eye(3), (50.0, 70.0), 0.05)
    d, (r0, r1, c0, c1) = S.path_length((100, 160), ell, S.Geometry(s))
    rows, cols = np.mgrid[r0:r1, c0:c1]
    rho = np.hypot((rows - 50.0) * s, (cols - 70.0) * s)
    expected = 2 * np.sqrt(np.maximum(r * r - rho * rho, 0))
    np.testing.assert_allclose(d, expected, atol=1e-6)
    assert abs(d.max() - 2 * r) < 1e-6
    assert d[50 - r0, 70 - c0] == pytest.approx(2 * r, abs=1e-6)


@pytest.mark.parametrize("axes, rot, expect", [
    ((1.0, 2.0, 3.0), np.eye(3), 6.0),             # c along the ray
    ((1.0, 2.0, 3.0), _rot_x(90), 4.0),            # b rotated onto the ray
])
def test_axis_along_ray(axes, rot, expect):
    ell = S.Ellipsoid(axes, rot, (60.0, 60.0), 0.05)
    d, _ = S.path_length((120, 120), ell, S.Geometry(0.1))
    assert d.max() == pytest.approx(expect, abs=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_volume(seed):
    rng = np.random.default_rng(seed)
    s = 0.1
    axes = tuple(rng.uniform(1, 6, 3))
    ell = S.Ellipsoid(axes, S.random_rotation(rng), (150.3, 170.6), 0.05)
    d, _ = S.path_length((300, 340), ell, S.Geometry(s))
    assert (d > 0).any(axis=0).sum() >= 10  # at least 10 pixels across
    vol = 4 / 3 * math.pi * np.prod(axes)
    assert d.sum() * s * s == pytest.approx(vol, rel=0.02)


def test_unhit_pixels_unchanged_and_void_brightens():
    rng = np.random.default_rng(3)
    img = rng.uniform(0.2, 0.8, (80, 100)).astype(np.float32)
    ell = S.Ellipsoid((2.0, 3.0, 1.5), S.random_rotation(rng), (40.0, 50.0), 0.03)
    res = S.superimpose(img, ell)
    dmap = res.d_map(img.shape)
    assert np.array_equal(res.image[dmap == 0], img[dmap == 0])
    assert (res.image[dmap > 0] > img[dmap > 0]).all()
    # Eq. 3 exactly
    b = S.offset_b(0.03, S.DEFAULT_X_MAX)
    hit = dmap > 0
    expected = np.clip((img[hit] - b) * np.exp(0.03 * dmap[hit]) + b, 0, 1)
    np.testing.assert_allclose(res.image[hit], expected, rtol=1e-6)
    x1, y1, x2, y2 = res.box
    assert hit[y1:y2, x1:x2].any(axis=0).all() and hit[y1:y2, x1:x2].any(axis=1).all()
    assert hit.sum() == hit[y1:y2, x1:x2].sum()


def test_blurred_defect_softens_its_edge_and_keeps_its_box_and_signal():
    img = np.full((80, 100), 0.5, np.float32)
    ell = S.Ellipsoid((2.0, 3.0, 1.5), np.eye(3), (40.0, 50.0), 0.03)
    sharp = S.superimpose(img, ell)
    assert np.array_equal(S.superimpose(img, ell, blur_px=0.0).image, sharp.image)
    soft = S.superimpose(img, ell, blur_px=1.5)
    assert soft.box == sharp.box  # the void's geometric shadow, blurred or not
    gain_sharp = sharp.image.astype(np.float64) - 0.5
    gain_soft = soft.image.astype(np.float64) - 0.5
    # the blur spreads the same added signal over a wider, lower profile
    assert abs(gain_soft.sum() - gain_sharp.sum()) < 1e-3 * gain_sharp.sum()
    assert gain_soft.max() < gain_sharp.max()
    assert (gain_soft > 1e-4).sum() > (gain_sharp > 0).sum()
    slope = [np.abs(np.diff(g, axis=1)).max() for g in (gain_sharp, gain_soft)]
    assert slope[1] < 0.6 * slope[0]
    # nothing changes beyond three sigmas of the shadow; the input is not modified
    x1, y1, x2, y2 = sharp.box
    far = np.ones(img.shape, bool)
    far[max(y1 - 5, 0):y2 + 5, max(x1 - 5, 0):x2 + 5] = False
    assert np.array_equal(soft.image[far], img[far]) and (img == 0.5).all()
    # a defect at the image's corner blurs without error, clipped to the image
    corner = S.Ellipsoid((2.0, 3.0, 1.5), np.eye(3), (1.0, 1.0), 0.03)
    assert S.superimpose(img, corner, blur_px=2.0).box is not None
    with pytest.raises(ValueError, match="blur_px"):
        S.superimpose(img, ell, blur_px=float("nan"))


def test_x_max_sets_the_contrast_and_mu_log_keeps_the_stream():
    img = np.full((80, 100), 0.5, np.float32)
    ell = S.Ellipsoid((2.0, 3.0, 1.5), np.eye(3), (40.0, 50.0), 0.02)
    gain = [float(S.superimpose(img, ell, x_max=x).image.max()) - 0.5 for x in (60, 120, 240)]
    assert gain[0] > gain[1] > gain[2] > 0  # a larger x_max: a fainter defect
    mask = np.ones((80, 100), bool)
    a = S.DefectSampler(mask, S.SamplerConfig(mu_range=(0.002, 0.04)))
    b = S.DefectSampler(mask, S.SamplerConfig(mu_range=(0.002, 0.04), mu_log=True))
    ra, rb = np.random.default_rng(5), np.random.default_rng(5)
    mus_a, mus_b = [], []
    for _ in range(400):
        ea, eb = a.sample(ra), b.sample(rb)
        assert ea.center == eb.center and ea.axes_mm == eb.axes_mm  # same draws otherwise
        mus_a.append(ea.mu)
        mus_b.append(eb.mu)
    assert all(0.002 <= m <= 0.04 for m in mus_a + mus_b)
    # log-uniform: half the draws below the geometric mean (0.0089), uniform: about a fifth
    assert np.mean(np.array(mus_b) < 0.0089) > 0.4 > np.mean(np.array(mus_a) < 0.0089)


#: the first default defect of seed 7 on an 80 x 100 mask, as drawn before x_max_range
PINNED = (0.019091, (4.1255, 5.4861, 4.8784), (39.297069428752046, 97.96793495284372))


def test_x_max_range_draws_a_contrast_per_defect_and_keeps_the_stream():
    img = np.full((80, 100), 0.5, np.float32)
    ell = S.Ellipsoid((2.0, 3.0, 1.5), np.eye(3), (40.0, 50.0), 0.02)
    faint = S.Ellipsoid((2.0, 3.0, 1.5), np.eye(3), (40.0, 50.0), 0.02, x_max=180.0)
    g60 = float(S.superimpose(img, ell, x_max=60).image.max()) - 0.5
    g180 = float(S.superimpose(img, faint, x_max=60).image.max()) - 0.5  # its own x_max wins
    assert g180 == pytest.approx(float(S.superimpose(img, ell, x_max=180).image.max()) - 0.5)
    assert 0 < g180 < 0.7 * g60  # fainter (about d / x_max while mu x_max is small)
    mask = np.ones((80, 100), bool)
    a = S.DefectSampler(mask, S.SamplerConfig())
    b = S.DefectSampler(mask, S.SamplerConfig(x_max_range=(60, 240)))
    xs = []
    for seed in range(300):
        ea, eb = a.sample(np.random.default_rng(seed)), b.sample(np.random.default_rng(seed))
        assert ea.x_max is None
        assert ea.center == eb.center and ea.mu == eb.mu  # the same draws before x_max
        xs.append(eb.x_max)
    xs = np.array(xs)
    assert xs.min() >= 60 and xs.max() <= 240
    # log-uniform: half the draws below the geometric mean, 120
    assert 0.4 < np.mean(xs < 120) < 0.6
    _, placed = S.add_random_defects(img, 3, np.random.default_rng(0), config=b.config)
    assert all(60 <= r["x_max"] <= 240 for r in S.defect_records(placed))
    assert "x_max" not in S.defect_records([(ell, (0, 0, 1, 1))])[0]
    for bad in ((240, 60), (0, 60), (60, float("nan"))):
        with pytest.raises(ValueError, match="x_max_range"):
            S.SamplerConfig(x_max_range=bad)
    with pytest.raises(ValueError, match="x_max"):
        S.SamplerConfig(x_max=float("nan"))
    with pytest.raises(ValueError, match="infinite"):
        S.offset_b(0.01, 1e-20)
    # the default stream, pinned: the first defect of seed 7 as it was drawn before ranges
    e = S.DefectSampler(mask, S.SamplerConfig()).sample(np.random.default_rng(7))
    assert (round(e.mu, 6), tuple(round(v, 4) for v in e.axes_mm), e.center) == PINNED


@pytest.mark.parametrize("center", [(-3.0, 10.0), (10.0, -4.0), (47.0, 25.0), (25.0, 118.0),
                                    (-2.0, -2.0), (49.0, 119.0), (-40.0, 50.0), (20.0, 400.0)])
def test_clipping_non_square(center):
    img = np.full((50, 120), 0.5, np.float32)
    ell = S.Ellipsoid((3.0, 2.0, 2.5), _rot_x(30), center, 0.04)
    res = S.superimpose(img, ell, S.Geometry(0.3))
    changed = res.image != img
    if res.box is None:
        assert not changed.any()
        return
    x1, y1, x2, y2 = res.box
    assert 0 <= x1 < x2 <= 120 and 0 <= y1 < y2 <= 50
    assert changed.sum() == changed[y1:y2, x1:x2].sum() > 0
    assert changed[y1:y2, x1:x2].any(axis=0).all() and changed[y1:y2, x1:x2].any(axis=1).all()


def test_perspective_tends_to_parallel_and_magnifies():
    ell = S.Ellipsoid((2.0, 3.0, 1.5), _rot_x(20), (20.0, 30.0), 0.05)
    par, wp = S.path_length((120, 160), ell, S.Geometry(0.2))
    far, wf = S.path_length((120, 160), ell, S.Geometry(0.2, 1e7))
    full_p = np.zeros((120, 160))
    full_p[wp[0]:wp[1], wp[2]:wp[3]] = par
    full_f = np.zeros((120, 160))
    full_f[wf[0]:wf[1], wf[2]:wf[3]] = far
    np.testing.assert_allclose(full_f, full_p, atol=1e-3)
    # mm_per_px is the pixel size in the defect's plane: a near source tilts the rays off
    # axis and widens the footprint slightly, the volume stays close
    near, wn = S.path_length((120, 160), ell, S.Geometry(0.2, 30.0))
    full_n = np.zeros((120, 160))
    full_n[wn[0]:wn[1], wn[2]:wn[3]] = near
    assert (full_n > 0).sum() > (full_p > 0).sum()
    assert near.sum() * 0.04 == pytest.approx(4 / 3 * math.pi * 9, rel=0.15)


def test_sampler_seeded_and_inside_mask():
    mask = np.zeros((60, 80), bool)
    mask[20:40, 30:50] = True
    a = [S.DefectSampler(mask).sample(np.random.default_rng(7)) for _ in range(2)]
    assert a[0].center == a[1].center and np.array_equal(a[0].rotation, a[1].rotation)
    rng = np.random.default_rng(1)
    sampler = S.DefectSampler(mask, S.SamplerConfig(axes_mm=(2, 3), mu_range=(0.1, 0.2)))
    for _ in range(200):
        e = sampler.sample(rng)
        assert mask[int(round(e.center[0])), int(round(e.center[1]))]
        assert all(2 <= v <= 3 for v in e.axes_mm) and 0.1 <= e.mu <= 0.2
        np.testing.assert_allclose(e.rotation @ e.rotation.T, np.eye(3), atol=1e-12)
    with pytest.raises(ValueError):
        S.DefectSampler(np.zeros((4, 4), bool))


def test_phantom():
    p = S.phantom(n_defects=8, seed=1)
    assert p.image.shape == (572, 768) and p.image.dtype == np.float32
    assert p.image.min() >= 0 and p.image.max() <= 1
    assert len(p.boxes) == 8 == len(p.defects)
    assert (p.image == 1.0).mean() > 0.05      # air saturates
    assert 0.3 < p.mask.mean() < 0.9
    q = S.phantom(n_defects=8, seed=1)
    assert np.array_equal(p.image, q.image)
    clean = S.phantom(seed=1)
    for x1, y1, x2, y2 in p.boxes.astype(int):  # defects brighten their box
        assert p.image[y1:y2, x1:x2].sum() > clean.image[y1:y2, x1:x2].sum()


def test_cli_simulate_on_real_image(gdxray_root, tmp_path):
    src = gdxray_root / "Castings/C0001/C0001_0003.png"
    out, js = tmp_path / "o.png", tmp_path / "o.json"
    proc = run_cli("simulate", str(src), "--out", str(out), "--n", "6", "--seed", "2",
                   "--json", str(js))
    assert proc.returncode == 0, proc.stderr
    a = np.asarray(Image.open(src)).astype(int)
    b = np.asarray(Image.open(out)).astype(int)
    assert a.shape == b.shape and Image.open(out).mode == "L"
    doc = json.loads(js.read_text())
    assert doc["image"] == str(src) and len(doc["defects"]) == 6
    inside = np.zeros(a.shape, bool)
    for dd in doc["defects"]:
        x1, y1, x2, y2 = dd["box"]
        inside[y1:y2, x1:x2] = True
        assert set(dd) >= {"box", "axes_mm", "angles_deg", "center", "mu"}
        assert (b[y1:y2, x1:x2] >= a[y1:y2, x1:x2]).all()
        assert b[y1:y2, x1:x2].sum() > a[y1:y2, x1:x2].sum()
    assert np.array_equal(a[~inside], b[~inside])


def test_cli_simulate_16bit_tiff_and_grid(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "in.tif"
    Image.fromarray(rng.integers(20000, 40000, (90, 130)).astype(np.uint16)).save(src)
    out = tmp_path / "out.tif"
    proc = run_cli("simulate", str(src), "--out", str(out), "--n", "3",
                   "--grid", str(tmp_path / "g.png"))
    assert proc.returncode == 0, proc.stderr
    r = read_image(out)
    assert r.bit_depth == 16 and r.pixels.shape == (90, 130)
    g = np.asarray(Image.open(tmp_path / "g.png"))
    assert g.shape[0] > 8 * 64 and g.shape[1] > 8 * 64
    proc = run_cli("simulate", "phantom", "--out", str(tmp_path / "p.png"), "--n", "4")
    assert proc.returncode == 0 and Image.open(tmp_path / "p.png").size == (768, 572)


def test_cli_simulate_bad_input(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("nope")
    assert_one_line_error(run_cli("simulate", str(bad), "--out", str(tmp_path / "o.png")),
                          "bad.png", "not a readable image")
    assert not (tmp_path / "o.png").exists()
    assert_one_line_error(run_cli("simulate", "phantom", "--out", str(tmp_path / "o.png"),
                                  "--axes-mm", "3", "1"), "--axes-mm")
    assert_one_line_error(run_cli("simulate", "phantom", "--out", str(tmp_path / "o.png"),
                                  "--x-max-range", "200", "100"), "--x-max-range")
