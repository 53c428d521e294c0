"""The segmenter: model, crops with exact masks, resumable training, detection, adapt."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import assert_one_line_error, run_cli
from PIL import Image

from xdefect.checkpoint import (
    ensemble_segmenters,
    load_model,
    load_tensors,
    read_card,
    rebuild_ensemble,
    save_model,
    save_tensors,
)
from xdefect.cli.common import TTA_CHOICES
from xdefect.crops import (
    CropConfig,
    add_hard,
    inscribed_ellipse,
    make_crop,
    sample_batch,
    training_image,
    with_hard,
)
from xdefect.detect import (
    TTA_VIEWS,
    Detection,
    DetectParams,
    ScoreMap,
    join_detections,
    regions,
    resize_detections,
)
from xdefect.detector import Detector
from xdefect.errors import InputError
from xdefect.models import NORMALISATION
from xdefect.pipelines import export_model, write_phantom_root
from xdefect.segment import (
    SEGMENTERS,
    VIEWS,
    LocalContrast,
    SegConfig,
    SegEnsemble,
    SegNet,
    create_segmenter,
    mirror,
    probability_map,
    score_map,
    segment_params,
)
from xdefect.simulate import phantom
from xdefect.train_segment import (
    EXTENT_FRACTIONS,
    GROWS,
    JOINS,
    LINKS,
    THETAS,
    SegTrainConfig,
    mine_false_alarms,
    train_segmenter,
)

# ----------------------------------------------------------------------------------- model


def test_registry_and_config_round_trip():
    for name, cfg in SEGMENTERS.items():
        assert cfg.name == name
        doc = json.loads(json.dumps(cfg.to_dict()))
        assert doc["family"] == "segmenter" and SegConfig.from_dict(doc) == cfg
    assert SEGMENTERS["segnet"].params() == 181473
    with pytest.raises(ValueError):
        SegConfig.from_dict({"name": "xnet2", "p": [7]})  # a classifier's arch block
    with pytest.raises(KeyError, match="known: segnet"):
        create_segmenter("nope")


def test_local_contrast_channel():
    """``lcn`` > 0: a second input channel, the image's local contrast normalisation, which
    ignores the exposure (a grey-level offset) and the casting's thickness ramp and keeps a
    faint void."""
    cfg = SegConfig("x", 8, lcn=4)
    assert SegConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert SegConfig.from_dict({k: v for k, v in SEGMENTERS["segnet"].to_dict().items()
                                if k != "lcn"}).lcn == 0.0  # cards from before lcn
    for bad in (-1.0, 0.2, 100.0):
        with pytest.raises(ValueError, match="lcn"):
            SegConfig("x", 8, lcn=bad)
    net = SegNet(cfg).eval()
    assert net.e1[0].in_channels == 2 and net(torch.zeros(1, 1, 40, 48)).shape == (1, 1, 20, 24)
    assert "lcn.kernel" not in net.state_dict()  # fixed, not saved with the weights
    lc = LocalContrast(8.0)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64]
    base = 0.3 + 0.004 * xx + 0.004 * rng.standard_normal((64, 64))  # a thickness ramp
    void = np.exp(-((yy - 32) ** 2 + (xx - 32) ** 2) / 18.0) * 0.03  # 7 grey levels
    x = torch.from_numpy(((base + void - 0.5) / 0.25).astype(np.float32))[None, None]
    y = lc(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert float(y[0, 0, 32, 32]) > 2.0 > float(y[0, 0, :16, :16].abs().median())  # a void
    torch.testing.assert_close(lc(x + 1.0), y, atol=1e-4, rtol=1e-4)  # another exposure
    stronger = lc(3.0 * x)  # three times the contrast: the floor matters less
    assert float(y[0, 0, 32, 32]) < float(stronger[0, 0, 32, 32]) < 3 * float(y[0, 0, 32, 32])


def test_forward_shapes_and_receptive_field():
    net = create_segmenter("segnet").eval()
    assert net(torch.zeros(2, 1, 64, 96)).shape == (2, 1, 32, 48)
    with pytest.raises(ValueError, match="multiples of 8"):
        net(torch.zeros(1, 1, 60, 64))
    torch.manual_seed(0)
    x = torch.randn(1, 1, 512, 512, requires_grad=True)
    net(x)[0, 0, 128, 128].backward()
    rows = np.flatnonzero((x.grad[0, 0].abs() > 0).any(1).numpy())
    assert 75 <= 256 - rows.min() <= 90 and 75 <= rows.max() - 256 <= 90  # "about 80 px"


def test_score_map_per_pixel_on_any_size():
    net = create_segmenter("segnet")
    net.train()
    img = np.random.default_rng(0).random((45, 70)).astype(np.float32)
    p = probability_map(net, img)
    assert p.shape == (45, 70) and p.dtype == np.float32 and 0 <= p.min() <= p.max() <= 1
    assert net.training  # the caller's mode is restored
    sm = score_map(net, img)
    assert sm.stride == 1 and sm.offset == 0 and sm.image_shape == (45, 70)
    np.testing.assert_allclose(sm.values, 2 * p - 1, atol=1e-6)


def test_mirror_views_average_the_maps_of_the_mirrored_image():
    net = create_segmenter("segnet")
    img = np.random.default_rng(1).random((40, 56)).astype(np.float32)
    maps = [probability_map(net, np.ascontiguousarray(img[::r, ::c]))[::r, ::c]
            for r, c in ((1, 1), (1, -1), (-1, 1), (-1, -1))]
    np.testing.assert_allclose(probability_map(net, img, views=4), np.mean(maps, 0), atol=1e-6)
    np.testing.assert_allclose(probability_map(net, img, views=2), np.mean(maps[:2], 0),
                               atol=1e-6)
    np.testing.assert_allclose(score_map(net, img, views=4).values,
                               2 * np.mean(maps, 0) - 1, atol=1e-6)
    # 8 views: the four mirror images and their transposes, each turned back
    turned = [probability_map(net, np.ascontiguousarray(img[::r, ::c].T)).T[::r, ::c]
              for r, c in ((1, 1), (1, -1), (-1, 1), (-1, -1))]
    eight = probability_map(net, img, views=8)
    assert eight.shape == img.shape
    np.testing.assert_allclose(eight, np.mean(maps + turned, 0), atol=1e-6)
    for v in VIEWS:
        np.testing.assert_array_equal(mirror(mirror(img, v), v, inverse=True), img)
    assert TTA_CHOICES == TTA_VIEWS  # the parser's copy
    with pytest.raises(ValueError, match="views"):
        probability_map(net, img, views=3)
    with pytest.raises(ValueError, match="tta"):
        DetectParams(tta=3)
    with pytest.raises(InputError, match="segmenters only"):
        Detector.load("xnet2-xdefect", device="cpu", tta=4)


def test_segment_regions_are_pixel_components_boxed_by_extent():
    v = np.full((60, 80), -1.0, np.float32)
    v[10:20, 30:45] = 0.5
    v[14, 35] = 0.95
    v[40:42, 5:7] = 0.9  # 4 pixels: kept at a_min 4
    v[50, 70] = 0.99  # one pixel: dropped
    dets = regions(ScoreMap(v, 1, (60, 80), 0), segment_params(0.0))
    assert [(d.box, round(d.score, 2), d.area) for d in dets] == [
        ((30, 10, 45, 20), 0.95, 150), ((5, 40, 7, 42), 0.9, 4)]
    mask = np.ones((60, 80), bool)
    mask[:, :40] = False  # the mask cuts the first region
    d2 = regions(ScoreMap(v, 1, (60, 80), 0), segment_params(0.0), mask)
    assert [d.box for d in d2] == [(40, 10, 45, 20)]


def test_grow_adds_pixels_to_every_box_side_clipped_to_the_image():
    v = np.full((60, 80), -1.0, np.float32)
    v[10:20, 30:45] = 0.95
    v[0:3, 76:80] = 0.9  # at the image's corner
    sm = ScoreMap(v, 1, (60, 80), 0)
    plain = [d.box for d in regions(sm, segment_params(0.0))]
    grown = regions(sm, DetectParams(**{**segment_params(0.0).to_dict(), "grow": 3}))
    assert plain == [(30, 10, 45, 20), (76, 0, 80, 3)]
    assert [d.box for d in grown] == [(27, 7, 48, 23), (73, 0, 80, 6)]
    assert [d.area for d in grown] == [150, 12]  # scores and areas are the regions'
    with pytest.raises(ValueError, match="grow"):
        DetectParams(grow=-1)
    assert DetectParams.from_dict({"theta": 0.5}).grow == 0  # cards written before grow


def test_join_unites_boxes_within_the_gap_transitively():
    dets = [Detection((0, 0, 10, 10), 0.5, 100), Detection((10, 0, 20, 10), 0.9, 100),
            Detection((25, 0, 30, 5), 0.7, 25), Detection((50, 50, 60, 60), 0.3, 4)]
    assert join_detections(dets, -1) is dets  # off
    # touching boxes (x2 == x1: no pixel between) join at gap 0; the box 5 pixels on stays
    assert join_detections(dets, 0) == [Detection((0, 0, 20, 10), 0.9, 200),
                                        Detection((25, 0, 30, 5), 0.7, 25),
                                        Detection((50, 50, 60, 60), 0.3, 4)]
    assert join_detections(dets, 4) == join_detections(dets, 0)
    assert join_detections(dets, 5) == [Detection((0, 0, 30, 10), 0.9, 225),
                                        Detection((50, 50, 60, 60), 0.3, 4)]
    # an enclosing box can reach a box that no member reached: joined again
    chain = [Detection((0, 0, 4, 40), 0.6, 1), Detection((0, 36, 40, 40), 0.8, 1),
             Detection((6, 2, 9, 5), 0.4, 1)]
    assert join_detections(chain, 0) == [Detection((0, 0, 40, 40), 0.8, 3)]
    # the Chebyshev gap: diagonal neighbours 3 pixels apart on both axes
    diag = [Detection((0, 0, 5, 5), 0.9, 1), Detection((8, 8, 12, 12), 0.8, 1)]
    assert len(join_detections(diag, 2)) == 2 and len(join_detections(diag, 3)) == 1


def test_regions_join_after_growth():
    v = np.full((60, 80), -1.0, np.float32)
    v[10:20, 10:20] = 0.95
    v[10:20, 24:30] = 0.9  # 4 pixels to the right of the first region
    v[40:45, 60:70] = 0.99
    sm = ScoreMap(v, 1, (60, 80), 0)
    base = segment_params(0.0)
    assert len(regions(sm, base)) == 3
    assert len(regions(sm, replace(base, join=3))) == 3
    joined = regions(sm, replace(base, join=4))
    assert [(d.box, d.score, d.area) for d in joined] == [
        ((60, 40, 70, 45), pytest.approx(0.99), 50), ((10, 10, 30, 20), pytest.approx(0.95), 160)]
    # grown by 2 a side the two are 0 pixels apart: joined at 0
    assert [d.box for d in regions(sm, replace(base, grow=2, join=0))] == [
        (58, 38, 72, 47), (8, 8, 32, 22)]
    with pytest.raises(ValueError, match="join"):
        DetectParams(join=-2)
    assert DetectParams.from_dict({"theta": 0.5}).join == -1  # cards written before join


def test_box_scale_resizes_every_box_about_its_centre_clipped_to_the_image():
    dets = [Detection((10, 20, 30, 30), 0.9, 50), Detection((0, 0, 4, 4), 0.5, 16),
            Detection((50, 50, 51, 51), 0.2, 1)]
    assert resize_detections(dets, 1.0, (60, 80)) is dets  # off
    big = resize_detections(dets, 1.5, (60, 80))
    # 20 x 10 about the centre (20, 25) -> 30 x 15: x 5..35, y 17.5..32.5 rounded half up
    assert [d.box for d in big] == [(5, 18, 35, 33), (0, 0, 5, 5), (50, 50, 51, 51)]
    assert [(d.score, d.area) for d in big] == [(0.9, 50), (0.5, 16), (0.2, 1)]
    # the corner box's 6 x 6 is clipped at the image's top-left; at least one pixel a side
    small = resize_detections(dets, 0.1, (60, 80))
    assert [d.box for d in small] == [(19, 25, 21, 26), (2, 2, 3, 3), (50, 50, 51, 51)]
    edge = resize_detections([Detection((70, 50, 80, 60), 0.9, 1)], 2.0, (60, 80))
    assert edge[0].box == (65, 45, 80, 60)
    for bad in (0.0, -1.0, 4.5, float("nan")):
        with pytest.raises(ValueError, match="box_scale"):
            DetectParams(box_scale=bad)
    assert DetectParams.from_dict({"theta": 0.5}).box_scale == 1.0  # cards written before


def test_regions_scale_boxes_after_growth_and_before_joining():
    v = np.full((60, 80), -1.0, np.float32)
    v[10:20, 10:20] = 0.95
    v[10:20, 24:30] = 0.9  # 4 pixels to the right of the first region
    sm = ScoreMap(v, 1, (60, 80), 0)
    base = segment_params(0.0)
    grown = regions(sm, replace(base, grow=1))
    assert [d.box for d in grown] == [(9, 9, 21, 21), (23, 9, 31, 21)]
    # 12 x 12 -> 18 x 18 about (15, 15); 8 x 12 -> 12 x 18 about (27, 15): they now overlap
    scaled = regions(sm, replace(base, grow=1, box_scale=1.5))
    assert [d.box for d in scaled] == [(6, 6, 24, 24), (21, 6, 33, 24)]
    assert [d.box for d in regions(sm, replace(base, grow=1, box_scale=1.5, join=0))] == [
        (6, 6, 33, 24)]
    assert [d.box for d in regions(sm, replace(base, grow=1, join=0))] == [(9, 9, 21, 21),
                                                                           (23, 9, 31, 21)]


def test_link_unites_regions_connected_above_the_link_score():
    v = np.full((60, 90), -1.0, np.float32)
    v[10:20, 10:20] = 0.95
    v[10:20, 20:26] = 0.2  # a dip between two patches of one defect
    v[10:20, 26:34] = 0.9
    v[10:20, 37:45] = 0.99  # a defect of its own: background (-1) between
    sm = ScoreMap(v, 1, (60, 90), 0)
    base = segment_params(0.8)
    assert [d.box for d in regions(sm, base)] == [(37, 10, 45, 20), (10, 10, 20, 20),
                                                 (26, 10, 34, 20)]
    linked = regions(sm, replace(base, link=0.0))
    # one region: boxed by its pixels above theta, area counting only them
    assert [(d.box, d.area) for d in linked] == [((37, 10, 45, 20), 80),
                                                 ((10, 10, 34, 20), 180)]
    assert linked[1].score == pytest.approx(0.95)
    assert regions(sm, replace(base, link=0.5)) == regions(sm, base)  # the dip is below
    assert regions(sm, replace(base, link=0.9)) == regions(sm, base)  # >= theta: off
    # a mask cutting the dip keeps the two apart
    mask = np.ones((60, 90), bool)
    mask[:, 22] = False
    assert len(regions(sm, replace(base, link=0.0), mask)) == 3
    with pytest.raises(ValueError, match="link"):
        DetectParams(link=float("nan"))
    assert DetectParams.from_dict({"theta": 0.5}).link == 1.0  # cards written before link


def _blob(v: np.ndarray, cy: int, cx: int, peak: float, width: float) -> None:
    """A defect-like probability blob: log-odds falling off as a Gaussian from ``peak``."""
    yy, xx = np.mgrid[:v.shape[0], :v.shape[1]]
    odds = peak * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * width ** 2)) - 6.0
    v[:] = np.maximum(v, 2 / (1 + np.exp(-odds)) - 1)


def test_relative_extent_boxes_faint_defects_by_their_own_falloff():
    v = np.full((80, 120), -1.0, np.float64)
    _blob(v, 20, 30, 9.0, 6.0)  # faint: peak log-odds 3 (p 0.95)
    _blob(v, 50, 90, 20.0, 6.0)  # clear: peak log-odds 14 (p at the 1e-6 cap)
    sm = ScoreMap(v.astype(np.float32), 1, (80, 120), 0)
    base = segment_params(0.8)  # p > 0.9: log-odds above 2.2
    fixed = regions(sm, base)
    rel = regions(sm, replace(base, extent_fraction=0.5))
    assert [d.score for d in rel] == [d.score for d in fixed]  # the seeds' own scores
    faint = [d for d in fixed if d.box[0] < 60][0]
    faint_rel = [d for d in rel if d.box[0] < 60][0]
    clear_rel = [d for d in rel if d.box[0] >= 60][0]
    clear = [d for d in fixed if d.box[0] >= 60][0]

    # p > 0.9 is log-odds > 2.20: radius 2 of the faint blob, 8 of the clear one; the
    # relative levels are 1.5 (radius 3) and 6.9 (half the 13.8 cap: radius 5)
    assert (faint.box, clear.box) == ((28, 18, 33, 23), (82, 42, 99, 59))
    assert (faint_rel.box, clear_rel.box) == ((27, 17, 34, 24), (85, 45, 96, 56))
    # two seeds of one defect (a dip below theta splits it) give one box
    v2 = v.copy()
    v2[50, 60:120] = 2 / (1 + np.exp(-1.8)) - 1  # log-odds 1.8: below theta, above 1.38
    sm2 = ScoreMap(v2.astype(np.float32), 1, (80, 120), 0)
    assert len(regions(sm2, base)) == 3
    assert len(regions(sm2, replace(base, extent_fraction=0.1))) == 2
    # growth comes last, the mask bounds the extent
    grown = regions(sm, replace(base, extent_fraction=0.5, grow=2))
    assert [d.box for d in grown] == [(d.box[0] - 2, d.box[1] - 2, d.box[2] + 2, d.box[3] + 2)
                                      for d in rel]
    mask = np.ones((80, 120), bool)
    mask[:, :30] = False
    masked = regions(sm, replace(base, extent_fraction=0.5), mask)
    assert min(d.box[0] for d in masked) == 30
    with pytest.raises(ValueError, match="extent_fraction"):
        DetectParams(extent_fraction=1.0, mode="segment", box_rule="region")
    with pytest.raises(ValueError, match="box rule region"):
        DetectParams(extent_fraction=0.5)  # a patch classifier's windows
    assert DetectParams.from_dict({"theta": 0.5}).extent_fraction == 0.0  # older cards
    # a card's relative extent gives way when the overrides leave segment-mode regions
    from xdefect.detector import params_from_card

    card = {"detection": replace(base, extent_fraction=0.5).to_dict()}
    assert params_from_card(card).extent_fraction == 0.5
    assert params_from_card(card, box_rule="peaks").extent_fraction == 0.0
    assert params_from_card(card, extent_fraction=0.0).extent_fraction == 0.0
    with pytest.raises(InputError, match="extent_fraction"):
        params_from_card(card, box_rule="peaks", extent_fraction=0.4)


def test_classifier_maps_keep_the_window_centre_offset():
    sm = ScoreMap(np.array([[1.0]], np.float32), 8, (32, 32))
    assert sm.offset == 16
    d = regions(sm, DetectParams(theta=0.0, radius=0, a_min=1, box_rule="region"), None)
    assert d[0].box == (16, 16, 17, 17)


# ----------------------------------------------------------------------------------- crops


def test_crop_targets_are_the_exact_shadows_of_simulated_defects():
    img = training_image(phantom((200, 260), seed=3).image)
    cfg = CropConfig(size=64, axes_mm=(2.0, 3.0), mu_range=(0.03, 0.04))
    rng = np.random.default_rng(1)
    c0, t0, v0 = make_crop(img, cfg, np.random.default_rng(1), 0)
    c1, t1, v1 = make_crop(img, cfg, rng, 2)
    assert c1.shape == t1.shape == v1.shape == (64, 64) and c1.dtype == np.float32
    assert not t0.any() and v0.all() and v1.all()
    assert t1.any()
    assert 0 <= c1.min() <= c1.max() <= 1


def test_crop_real_boxes_targets_or_ignored():
    pix = np.full((100, 100), 0.5, np.float32)
    boxes = np.array([[40, 40, 60, 56]])
    mask = np.ones((100, 100), bool)
    img = training_image(pix, boxes, margin=4, mask=mask)
    assert not img.free[36:60, 36:64].any() and img.free[:30].all()
    cfg = CropConfig(size=96, defects=0, real=True)
    _, t, v = make_crop(img, cfg, np.random.default_rng(0), 0, on_real=True)
    ell = inscribed_ellipse(16, 20)
    assert t.sum() == ell.sum() and (~v).sum() == (~ell).sum()  # the rest of the box ignored
    cfg = CropConfig(size=96, defects=0, real=False, margin=4)
    _, t, v = make_crop(img, cfg, np.random.default_rng(0), 0, on_real=True)
    assert not t.any() and (~v).sum() == 28 * 24  # the box grown by the margin


def test_crop_soft_targets():
    """A teacher's probability as the target: kept as it is (no flip or turn changes a
    constant), its boxes neither ignored nor hard targets, simulated voids on top."""
    pix = np.full((100, 100), 0.5, np.float32)
    soft = np.zeros((100, 100), np.float32)
    soft[40:56, 40:60] = 0.7
    img = training_image(pix, np.array([[40, 40, 60, 56]]), margin=4,
                         mask=np.ones((100, 100), bool), soft=soft)
    _, t, v = make_crop(img, CropConfig(size=96, defects=0, margin=4),
                        np.random.default_rng(0), 0)
    assert t.dtype == np.float32 and v.all()
    assert np.isclose(t.sum(), 0.7 * 16 * 20) and set(np.unique(t)) == {0.0, np.float32(0.7)}
    _, t2, _ = make_crop(img, CropConfig(size=96, defects=2, margin=4),
                         np.random.default_rng(1), 2)
    assert (t2 == 1).any() and np.isclose((t2 == np.float32(0.7)).sum(), 16 * 20, atol=40)
    x, y, _ = sample_batch([img, training_image(pix, mask=np.ones((100, 100), bool))],
                           CropConfig(size=96, defects=0), np.random.default_rng(0), 4)
    assert y.dtype == np.float32 and x.shape == y.shape == (4, 96, 96)
    for bad in (soft[:50], soft + 1, np.full((100, 100), np.nan, np.float32)):
        with pytest.raises(ValueError, match="soft targets"):
            training_image(pix, soft=bad)


def test_sample_batch_and_small_images():
    imgs = [training_image(phantom((50, 70), seed=1).image),
            training_image(phantom((200, 260), seed=2).image)]
    x, y, v = sample_batch(imgs, CropConfig(size=96), np.random.default_rng(0), 6)
    assert x.shape == y.shape == v.shape == (6, 96, 96)
    _, _, v = sample_batch(imgs[:1], CropConfig(size=96), np.random.default_rng(0), 1)
    assert v.sum() == 50 * 70  # the padding of the 50x70 image is not valid
    with pytest.raises(ValueError):
        CropConfig(size=50)
    with pytest.raises(ValueError, match="x_max_range"):
        CropConfig(x_max_range=(90.0, 30.0))


def test_crops_with_a_range_of_contrasts():
    img = training_image(np.full((120, 120), 0.5, np.float32), mask=np.ones((120, 120), bool))
    cfg = CropConfig(size=96, axes_mm=(3.0, 3.0), mu_range=(0.02, 0.02),
                     x_max_range=(60.0, 240.0))
    assert CropConfig(**{k: tuple(v) if isinstance(v, list) else v
                         for k, v in cfg.to_dict().items()}) == cfg  # a card's round trip
    assert cfg.to_dict()["x_max_range"] == [60.0, 240.0]
    assert cfg.sampler().x_max_range == (60.0, 240.0)
    peaks = [float(make_crop(img, cfg, np.random.default_rng(s), 1)[0].max()) - 0.5
             for s in range(40)]
    fixed = float(make_crop(img, replace(cfg, x_max_range=None), np.random.default_rng(0),
                            1)[0].max()) - 0.5
    assert max(peaks) <= fixed * 1.01 and min(peaks) < 0.6 * fixed  # as strong or fainter
    with pytest.raises(ValueError):
        sample_batch([], CropConfig(), np.random.default_rng(0), 1)


def test_hard_negative_crops():
    """Crops on a known false alarm hold it; without hard_share the crops are those of an
    image without hard negatives (the random stream is untouched)."""
    pix = np.full((200, 260), 0.5, np.float32)
    pix[20, 230] = 1.0  # the "false alarm", near a corner
    mask = np.ones((200, 260), bool)
    img = with_hard(training_image(pix, mask=mask), np.array([[20, 230]]))
    cfg = CropConfig(size=64, defects=0, hard_share=0.9)
    for seed in range(20):
        c, t, _ = make_crop(img, cfg, np.random.default_rng(seed), 0, on_hard=True)
        assert (c == 1.0).sum() == 1 and not t.any()
    x, _, _ = sample_batch([img], cfg, np.random.default_rng(0), 40)
    assert sum((c == 1.0).any() for c in x) >= 30  # 90% centred on it, others by chance
    plain = training_image(pix, mask=mask)
    for a, b in zip(sample_batch([img], replace(cfg, hard_share=0.0), np.random.default_rng(3), 5),
                    sample_batch([plain], replace(cfg, hard_share=0.0),
                                 np.random.default_rng(3), 5), strict=True):
        assert np.array_equal(a, b)
    assert "hard_share" not in CropConfig().to_dict()  # cards before hard negatives
    assert CropConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="hard_share"):
        CropConfig(hard_share=1.0)
    with pytest.raises(ValueError, match="outside"):
        with_hard(plain, np.array([[200, 5]]))
    assert with_hard(img, np.zeros((0, 2))).hard is None
    both = add_hard(img, np.array([[5, 6]]))  # a later round's false alarms join
    assert both.hard.tolist() == [[20, 230], [5, 6]] and add_hard(img, np.zeros((0, 2))) is img


def test_mine_false_alarms_keeps_regions_away_from_real_defects(monkeypatch):
    """The deployed detection's regions that touch no real box (grown by the margin), the
    strongest first, at most per_image; nothing from an unannotated image."""
    v = np.full((100, 120), -1.0)
    v[10:20, 10:20] = 0.9  # on the real defect
    v[60:70, 80:90] = 0.8  # a false alarm, centre (65, 85)
    v[40:44, 30:36] = 0.5  # a weaker one, centre (42, 33)
    v[27:30, 27:30] = 0.95  # within the margin of the real box: not a false alarm
    monkeypatch.setattr("xdefect.train_segment.score_map",
                        lambda net, image, device="cpu": ScoreMap(v, 1, v.shape, 0))
    pix, mask = np.zeros((100, 120), np.float32), np.ones((100, 120), bool)
    annotated = training_image(pix, np.array([[12, 12, 18, 18]]), mask=mask, annotated=True)
    unannotated = training_image(pix, mask=mask)
    found = mine_false_alarms(None, [annotated, unannotated], theta=0.0, margin=10)
    assert found[0].tolist() == [[65, 85], [42, 33]] and found[1].shape == (0, 2)
    assert mine_false_alarms(None, [annotated], theta=0.0, per_image=1,
                             margin=10)[0].tolist() == [[65, 85]]
    assert mine_false_alarms(None, [annotated], theta=0.6, margin=10)[0].tolist() == [[65, 85]]


# -------------------------------------------------------------------- training, detection


@pytest.fixture(scope="module")
def phantom_root(tmp_path_factory):
    return write_phantom_root(tmp_path_factory.mktemp("ph") / "root", n=8, shape=(160, 200))


def _cfg(root, out, **kw) -> SegTrainConfig:
    base = dict(out=str(out), gdxray=(str(root),), crops=CropConfig(size=64, real=True),
                steps=6, batch=4, checkpoint_every=2, threads=1, device="cpu", command="test")
    return SegTrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def trained(phantom_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("seg") / "run"
    res = train_segmenter(_cfg(phantom_root, out))
    return out, res


def test_training_writes_a_model_with_a_card(trained):
    out, res = trained
    assert res["steps"] == 6 and res["crops_seen"] == 24
    assert not (out / "last.safetensors").exists()
    card = read_card(out / "model.safetensors")
    assert card["arch"]["family"] == "segmenter" and card["normalisation"] == NORMALISATION
    assert card["detection"]["mode"] == "segment" and card["detection"]["stride"] == 1
    stage = card["lineage"][-1]
    assert stage["data_image_splits"] == ["train"] and stage["data_series"] == ["C0001"]
    assert stage["data_sources"] == {"simulated": True, "real": True}
    assert card["tuning"]["images"] == 2  # 1 and 5: n % 4 == 1
    assert card["detection"]["theta"] == card["tuning"]["theta"] == res["theta"]
    assert card["detection"]["grow"] == card["tuning"]["grow"] == res["grow"]
    assert len(card["tuning"]["grid"]) == len(THETAS) * len(GROWS) * len(EXTENT_FRACTIONS)
    assert card["detection"]["extent_fraction"] == res["extent_fraction"]
    assert list(card["tuning"]["roots"].values()) == [["C0001"]]
    assert card["train_config"]["crops"]["size"] == 64
    net, _ = load_model(out / "model.safetensors")
    assert isinstance(net, SegNet) and not net.training


def test_resume_ends_with_the_same_weights(phantom_root, trained, tmp_path):
    out, _ = trained

    def stop(row):
        if row["step"] == 4:
            raise KeyboardInterrupt

    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train_segmenter(_cfg(phantom_root, run), on_log=stop)
    assert read_card(run / "last.safetensors", ("xdefect-checkpoint/1",))["step"] == 2
    with pytest.raises(InputError, match="--resume"):
        train_segmenter(_cfg(phantom_root, run))
    with pytest.raises(InputError, match="other settings"):
        train_segmenter(_cfg(phantom_root, run, lr=1e-3, resume=True))
    # a checkpoint written before a crop setting existed resumes with its default
    side = run / "last.json"
    card = json.loads(side.read_text())
    del card["train_config"]["crops"]["x_max_range"]
    for k in ("hard_rounds", "hard_theta", "hard_per_image"):  # and a training setting
        del card["train_config"][k]
    side.write_text(json.dumps(card))
    train_segmenter(_cfg(phantom_root, run, resume=True))
    a, _ = load_model(out / "model.safetensors")
    b, _ = load_model(run / "model.safetensors")
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), k
    with pytest.raises(InputError, match="finished"):
        train_segmenter(_cfg(phantom_root, run, resume=True))


def test_detector_runs_a_segmenter(trained, phantom_root):
    out, _ = trained
    model = out / "model.safetensors"
    det = Detector.load(model, device="cpu", theta=-1.0, a_min=1)
    assert det.params.mode == "segment"
    img = phantom((160, 200), seed=4).image
    dets = det.detect(img)
    assert dets and all(-1 <= d.score <= 1 for d in dets)
    assert det.score_map(img).values.shape == (160, 200)
    with pytest.raises(InputError, match="segment"):
        Detector.load(model, device="cpu", mode="dense")
    with pytest.raises(InputError, match="segmenter"):
        Detector.load("xnet2-xdefect", device="cpu", mode="segment")
    with pytest.raises(InputError, match="patch classifier"):
        det.scorer()
    # ONNX: the same detections from the exported graph and from the onnxruntime backend
    r = export_model(model, out.parent / "x.onnx")
    assert r["graph"] == "segment" and r["stride"] == 1
    for other in (Detector.load(out.parent / "x.onnx", theta=-1.0, a_min=1),
                  Detector.load(model, device="cpu", backend="onnxruntime", theta=-1.0,
                                a_min=1)):
        assert np.abs(other.score_map(img).values - det.score_map(img).values).max() < 1e-4
        assert [d.box for d in other.detect(img)] == [d.box for d in dets]
    with pytest.raises(InputError, match="stride 1"):
        export_model(model, out.parent / "y.onnx", stride=4)
    # mirror views: the same on ONNX Runtime, and a different map from one view
    four = Detector.load(model, device="cpu", tta=4)
    four_onnx = Detector.load(out.parent / "x.onnx", tta=4)
    assert np.abs(four_onnx.score_map(img).values - four.score_map(img).values).max() < 1e-4
    eight, eight_onnx = (Detector.load(m, device="cpu", tta=8)
                         for m in (model, out.parent / "x.onnx"))
    assert np.abs(eight_onnx.score_map(img).values - eight.score_map(img).values).max() < 1e-4
    assert np.abs(four.score_map(img).values - det.score_map(img).values).max() > 1e-4


def test_weights_that_do_not_match_the_card(trained, tmp_path):
    out, _ = trained
    card = read_card(out / "model.safetensors")
    card["arch"]["channels"] = 8
    save_tensors(tmp_path / "bad.safetensors",
                 {k: v for k, v in load_model(out / "model.safetensors")[0]
                  .state_dict().items()}, card)
    with pytest.raises(InputError, match="do not match"):
        load_model(tmp_path / "bad.safetensors")


def casting_folder(tmp_path, n: int, seed: int):
    """A folder of ``n`` phantom radiographs (PNG, 120 x 160), a new casting without
    labels."""
    d = tmp_path / "casting"
    d.mkdir()
    for i in range(n):
        Image.fromarray(np.round(phantom((120, 160), seed=seed + i).image * 255)
                        .astype(np.uint8)).save(d / f"part_{i}.png")
    return d


def test_cli_train_evaluate_and_adapt(phantom_root, trained, tmp_path):
    out, _ = trained
    model = str(out / "model.safetensors")
    ev = run_cli("evaluate", "--model", model, "--gdxray", str(phantom_root), "--split",
                 "tuning", "--out", str(tmp_path / "ev"), "--json", "--threads", "1")
    assert ev.returncode == 0, ev.stderr
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["images"] == 2 and m["gt_boxes"] > 0
    show = run_cli("models", "show", model)
    assert show.returncode == 0, show.stderr
    assert "(segnet, 6 steps)" in show.stdout and "segmenter crops from" in show.stdout
    d = casting_folder(tmp_path, 3, seed=0)
    before = {f.name: f.read_bytes() for f in d.iterdir()}
    ad = run_cli("adapt", "--images", str(d), "--from", model, "--out", str(tmp_path / "ad"),
                 "--steps", "3", "--threads", "1", "--source-regions", "ignore")
    assert ad.returncode == 0, ad.stderr
    assert {f.name: f.read_bytes() for f in d.iterdir()} == before
    card = read_card(tmp_path / "ad" / "model.safetensors")
    src = read_card(model)
    assert card["detection"] == src["detection"] and card["adaptation"]["images"] == 3
    assert card["lineage"][-1]["init"]["sha256"] == src["weights_sha256"]
    assert card["lineage"][-1]["data_files"] == 3 and len(card["lineage"]) == 2
    assert card["train_config"]["crops"]["real"] is False
    ev2 = run_cli("evaluate", "--model", str(tmp_path / "ad" / "model.safetensors"), "--gdxray",
                  str(phantom_root), "--split", "test", "--out", str(tmp_path / "ev2"),
                  "--threads", "1", "--no-overlays")
    assert ev2.returncode == 0, ev2.stderr
    prov = json.loads((tmp_path / "ev2" / "metrics.json").read_text())["provenance"]
    assert prov["trained_on_image_splits"] == ["files", "train"]
    assert prov["trained_on_evaluated_images"] is None  # image files: unknown
    assert Detector.load(tmp_path / "ad" / "model.safetensors", device="cpu").detect(
        np.asarray(Image.open(d / "part_0.png"))) is not None


def test_adapt_with_rehearsal(phantom_root, trained, tmp_path):
    out, _ = trained
    d = casting_folder(tmp_path, 2, seed=10)
    ad = run_cli("adapt", "--images", str(d), "--from", str(out / "model.safetensors"),
                 "--out", str(tmp_path / "ad"), "--steps", "2", "--threads", "1",
                 "--rehearse", str(phantom_root), "--rehearse-share", "0.25",
                 "--source-regions", "negative")
    assert ad.returncode == 0, ad.stderr
    card = read_card(tmp_path / "ad" / "model.safetensors")
    assert card["adaptation"]["ignored_source_regions"] == 0
    st = card["lineage"][-1]
    assert st["rehearsal_roots"] == {str(phantom_root): ["C0001"]}
    assert st["rehearse_share"] == 0.25 and st["data_sources"]["real"] is True
    assert card["tuning"]["images"] == 2  # theta chosen again on the rehearsed tuning images
    assert card["detection"]["theta"] == card["tuning"]["theta"]
    bad = run_cli("adapt", "--images", str(d), "--from", str(out / "model.safetensors"),
                  "--out", str(tmp_path / "ad2"), "--ignore-theta", "1.5")
    assert_one_line_error(bad, "--ignore-theta")
    assert not (tmp_path / "ad2").exists()


def test_adapt_with_pseudo_labels(trained, tmp_path):
    """``--source-regions target``: the source's detections become defect targets (the
    crops' real-defect rule); ``distill`` (the default): their soft targets; both counted
    in the card; ``--ignore-theta`` refused with ``negative``."""
    out, _ = trained
    d = casting_folder(tmp_path, 2, seed=20)
    model = str(out / "model.safetensors")
    ad = run_cli("adapt", "--images", str(d), "--from", model, "--out", str(tmp_path / "ad"),
                 "--steps", "2", "--threads", "1", "--source-regions", "target",
                 "--ignore-theta", "-1")
    assert ad.returncode == 0, ad.stderr
    card = read_card(tmp_path / "ad" / "model.safetensors")
    assert card["train_config"]["crops"]["real"] is True
    assert card["adaptation"]["settings"]["source_regions"] == "target"
    assert card["adaptation"]["source_regions_found"] >= 2  # every casting is a region
    assert card["adaptation"]["ignored_source_regions"] == 0
    assert card["detection"] == read_card(model)["detection"]
    dist = run_cli("adapt", "--images", str(d), "--from", model, "--out", str(tmp_path / "ds"),
                   "--steps", "2", "--threads", "1", "--ignore-theta", "-1")  # the default
    assert dist.returncode == 0, dist.stderr
    card = read_card(tmp_path / "ds" / "model.safetensors")
    assert card["adaptation"]["settings"]["source_regions"] == "distill"
    assert card["train_config"]["crops"]["real"] is False
    assert card["adaptation"]["source_regions_found"] >= 2
    bad = run_cli("adapt", "--images", str(d), "--from", model, "--out", str(tmp_path / "ad2"),
                  "--source-regions", "negative", "--ignore-theta", "0.5")
    assert_one_line_error(bad, "--ignore-theta needs")
    assert not (tmp_path / "ad2").exists()


def test_cli_bad_input(tmp_path, phantom_root):
    assert_one_line_error(run_cli("train-segmenter", "--out", str(tmp_path / "r")),
                          "nothing to train on")
    assert_one_line_error(run_cli("train-segmenter", "--out", str(tmp_path / "r"), "--gdxray",
                                  str(phantom_root), "--resume"), "nothing to resume")
    assert_one_line_error(run_cli("train-segmenter", "--out", str(tmp_path / "r"), "--gdxray",
                                  str(phantom_root), "--series", "C0404"), "C0404")
    assert_one_line_error(run_cli("train-segmenter", "--out", str(tmp_path / "r"), "--gdxray",
                                  str(phantom_root), "--size", "60"), "multiple of 8")
    assert_one_line_error(run_cli("train-segmenter", "--out", str(tmp_path / "r"), "--gdxray",
                                  str(phantom_root), "--x-max-range", "180", "60"),
                          "--x-max-range")
    assert_one_line_error(run_cli("train-segmenter", "--out", str(tmp_path / "r"), "--gdxray",
                                  str(phantom_root), "--x-max-range", "1e-20", "60"),
                          "--x-max-range")
    assert_one_line_error(run_cli("train-segmenter", "--out", str(tmp_path / "r"), "--gdxray",
                                  str(phantom_root), "--hard-rounds", "1", "--hard-share",
                                  "0"), "--hard-share")
    assert not (tmp_path / "r").exists()


def test_cli_hard_negatives_and_a_bundled_init(phantom_root, tmp_path):
    """``--hard-rounds`` mines the annotated train images with the model as it stands
    (every region above p 0: theta -1 is refused, -0.99 nearly all); the library takes a
    bundled model's name as ``init``."""
    r = run_cli("train-segmenter", "--out", str(tmp_path / "h"), "--gdxray", str(phantom_root),
                "--steps", "4", "--batch", "2", "--size", "64", "--real", "--hard-rounds", "1",
                "--hard-theta", "-0.99", "--no-theta", "--threads", "1", "--json")
    assert r.returncode == 0, r.stderr
    card = read_card(tmp_path / "h" / "model.safetensors")
    (rnd,) = card["training"]["hard_negatives"]
    assert rnd["step"] == 2 and rnd["images_mined"] == 2  # train images 3 and 7
    assert card["train_config"]["crops"]["hard_share"] == 0.25  # the default with rounds
    assert (tmp_path / "h" / "hard_negatives.json").is_file()
    assert card["lineage"][-1]["hard_negatives"] == {"rounds": 1, "share": 0.25,
                                                     "theta": -0.99, "per_image": 16}
    show = run_cli("models", "show", str(tmp_path / "h" / "model.safetensors"))
    assert show.returncode == 0, show.stderr
    assert "hard negatives: 1 round(s), 0.25 of the other crops" in show.stdout
    assert f"{rnd['false_alarms']} found at step 2" in show.stdout
    train_segmenter(_cfg(phantom_root, tmp_path / "i", init="segnet-xdefect", steps=1,
                         choose_theta=False))
    init = read_card(tmp_path / "i" / "model.safetensors")["lineage"][-1]["init"]
    assert init["file"].endswith("segnet-xdefect.safetensors")


def test_tune_segmenter_chooses_theta_and_grow_on_tuning_images(trained, phantom_root,
                                                                tmp_path):
    out, _ = trained
    src = out / "model.safetensors"
    proc = run_cli("tune-segmenter", "--model", str(src), "--out", str(tmp_path / "t"),
                   "--threads", "1", "--device", "cpu", "--tta", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    card = read_card(tmp_path / "t" / "model.safetensors")
    grid = card["tuning"]["grid"]
    assert len(grid) == (len(THETAS) * len(GROWS) * len(EXTENT_FRACTIONS) * len(JOINS)
                         * len(LINKS))
    assert card["tuning"]["images"] == 2
    best = max(grid, key=lambda row: row["ap"])
    assert (card["detection"]["theta"], card["detection"]["grow"],
            card["detection"]["extent_fraction"]) == (r["theta"], r["grow"],
                                                      r["extent_fraction"])
    # each row's AP is what evaluating at its settings gives (the sweep reuses the
    # regions of settings that differ only in growth)
    row = next(x for x in grid if x["grow"] == 3 and x["extent_fraction"] == 0.5
               and x["theta"] == 0.8)
    ev = run_cli("evaluate", "--model", str(tmp_path / "t" / "model.safetensors"),
                 "--gdxray", str(phantom_root), "--split", "tuning", "--theta", "0.8",
                 "--grow", "3", "--extent-fraction", "0.5", "--tta", "2", "--no-overlays",
                 "--quiet", "--threads", "1", "--device", "cpu", "--out", str(tmp_path / "ev"))
    assert ev.returncode == 0, ev.stderr
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["params"]["extent_fraction"] == 0.5
    assert round(m["ap"], 4) == row["ap"] and m["true_positives"] == row["found"]
    assert m["params"]["box_scale"] == 1.0
    # --box-scale resizes the same boxes (the same detections found, boxes smaller)
    for name, scale in (("s1", "1"), ("s2", "0.5")):
        ev2 = run_cli("evaluate", "--model", str(tmp_path / "t" / "model.safetensors"),
                      "--gdxray", str(phantom_root), "--split", "tuning", "--theta", "-0.8",
                      "--tta", "2", "--no-overlays", "--box-scale", scale, "--quiet",
                      "--threads", "1", "--device", "cpu", "--out", str(tmp_path / name))
        assert ev2.returncode == 0, ev2.stderr
        assert json.loads((tmp_path / name / "metrics.json").read_text())["params"][
            "box_scale"] == float(scale)
    d1, d2 = ([d for f in sorted((tmp_path / e / "detections").glob("*.json"))
               for d in json.loads(f.read_text())["detections"]] for e in ("s1", "s2"))
    assert d1 and [d["score"] for d in d1] == [d["score"] for d in d2]
    widths = [(a["box"][2] - a["box"][0], b["box"][2] - b["box"][0])
              for a, b in zip(d1, d2, strict=True)]
    assert all(w2 == (w1 + 1) // 2 or w2 == w1 // 2 for w1, w2 in widths)
    assert_one_line_error(run_cli("evaluate", "--model", str(tmp_path / "t" / "model.safetensors"),
                                  "--box-scale", "0", "--out", str(tmp_path / "ev3")),
                          "--box-scale")
    assert card["detection"]["tta"] == r["tta"] == 2
    assert r["tuning_ap"] == best["ap"] >= r["before"]
    assert card["retuned"]["from"]["file"] == str(src)
    assert card["lineage"] == read_card(src)["lineage"]  # the same weights, the same data
    a, _ = load_model(src)
    b, _ = load_model(tmp_path / "t" / "model.safetensors")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                 b.state_dict().values(), strict=True))
    # the detector uses the chosen growth
    assert Detector.load(tmp_path / "t" / "model.safetensors").params.grow == r["grow"]
    # refusals, one line each, nothing written
    assert_one_line_error(run_cli("tune-segmenter", "--model", str(src), "--out",
                                  str(tmp_path / "t")), "holds a model already")
    assert_one_line_error(run_cli("tune-segmenter", "--model", "xnet2-xdefect", "--out",
                                  str(tmp_path / "c")), "a patch classifier")
    empty = write_phantom_root(tmp_path / "empty", n=2, shape=(64, 64), defects=0,
                               series="C0998")
    assert_one_line_error(run_cli("tune-segmenter", "--model", str(src), "--gdxray",
                                  str(empty), "--out", str(tmp_path / "e")),
                          "no annotated tuning images")
    assert not (tmp_path / "c").exists() and not (tmp_path / "e").exists()


def test_tune_segmenter_searches_the_thetas_and_grows_given(trained, tmp_path):
    out, _ = trained
    src = out / "model.safetensors"
    proc = run_cli("tune-segmenter", "--model", str(src), "--out", str(tmp_path / "w"),
                   "--thetas", "-0.8", "0.5", "--grows", "0", "8", "--extent-fractions", "0",
                   "--joins", "-1", "6", "--links", "1", "0", "--threads", "1", "--device",
                   "cpu", "--json")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    card = read_card(tmp_path / "w" / "model.safetensors")
    grid = card["tuning"]["grid"]
    assert sorted((x["theta"], x["grow"], x["join"], x["link"]) for x in grid) == [
        (t, g, j, lk) for t in (-0.8, 0.5) for g in (0, 8) for j in (-1, 6) for lk in (0, 1)]
    assert (r["theta"], r["grow"], r["join"]) in {(x["theta"], x["grow"], x["join"])
                                                  for x in grid}
    best = max(grid, key=lambda x: x["ap"])  # the first of equal APs
    assert (r["join"], r["tuning_ap"]) == (best["join"], best["ap"])
    assert card["detection"]["join"] == card["tuning"]["join"] == r["join"]
    assert card["detection"]["link"] == card["tuning"]["link"] == r["link"]
    for bad, what in ((["--thetas", "1"], "--thetas"), (["--thetas", "nan"], "--thetas"),
                      (["--grows", "-1"], "--grows"), (["--joins", "-2"], "--joins"),
                      (["--links", "nan"], "--links")):
        assert_one_line_error(run_cli("tune-segmenter", "--model", str(src), "--out",
                                      str(tmp_path / "b"), *bad), what)
    assert not (tmp_path / "b").exists()
    # the operating point: the same choice plus the report threshold for a false-alarm cap
    row = max(grid, key=lambda x: x["ap"])
    cap = max(row["fa_per_image"] / 2, 0.1)
    proc = run_cli("tune-segmenter", "--model", str(src), "--out", str(tmp_path / "cap"),
                   "--thetas", "-0.8", "0.5", "--grows", "0", "8", "--extent-fractions", "0",
                   "--joins", "-1", "6", "--links", "1", "0", "--threads", "1", "--device",
                   "cpu", "--max-false-alarms", str(cap), "--json")
    assert proc.returncode == 0, proc.stderr
    r2 = json.loads(proc.stdout)
    capped = read_card(tmp_path / "cap" / "model.safetensors")
    assert capped["tuning"]["grid"] == grid and r2["tuning_ap"] == r["tuning_ap"]
    assert {k: v for k, v in capped["detection"].items() if k != "min_score"} == {
        k: v for k, v in card["detection"].items() if k != "min_score"}
    assert card["detection"]["min_score"] == -1.0 and -1 <= r2["min_score"] <= 1
    at = capped["tuning"]["at_min_score"]
    assert at == r2["at_min_score"] and at["fa_per_image"] <= cap
    assert capped["tuning"]["min_score"] == capped["detection"]["min_score"] == r2["min_score"]
    assert "at most" in capped["tuning"]["rule"]
    # evaluating the capped model on the same images gives the operating point's figures
    ev = run_cli("evaluate", "--model", str(tmp_path / "cap" / "model.safetensors"),
                 "--split", "tuning", "--no-overlays", "--quiet", "--threads", "1",
                 "--device", "cpu", "--out", str(tmp_path / "evcap"),
                 "--gdxray", *capped["tuning"]["roots"])
    assert ev.returncode == 0, ev.stderr
    m = json.loads((tmp_path / "evcap" / "metrics.json").read_text())
    assert (round(m["ap"], 4), m["true_positives"]) == (at["ap"], at["found"])
    assert round(m["false_positives"] / m["images"], 2) == at["fa_per_image"]


def test_ensemble_of_segmenter_files(trained, phantom_root, tmp_path):
    out, _ = trained
    a = out / "model.safetensors"
    # a second member with another input: the local contrast channel
    torch.manual_seed(3)
    lcn = create_segmenter("segnet-lcn").eval()
    b = tmp_path / "lcn.safetensors"
    save_model(b, lcn, {"lineage": [{"complete": True, "kind": "segmenter", "command": "t",
                                     "data_roots": {"other": ["C0002"]},
                                     "data_image_splits": ["train"], "data_series": ["C0002"],
                                     "data_sources": {"simulated": True}, "init": None}]})
    proc = run_cli("models", "ensemble", str(a), str(b), "--out", str(tmp_path / "e"), "--json")
    assert proc.returncode == 0, proc.stderr
    model = tmp_path / "e" / "model.safetensors"
    assert json.loads(proc.stdout)["model"] == str(model)
    ens, card = load_model(model)
    assert isinstance(ens, SegEnsemble) and isinstance(ens, SegNet) and not ens.training
    assert [m.arch.lcn for m in ens.members] == [0.0, 8.0]
    # the logit of the mean of the members' probabilities
    m0, _ = load_model(a)
    x = torch.randn(1, 1, 64, 96)
    with torch.no_grad():
        want = (torch.sigmoid(m0(x)) + torch.sigmoid(lcn(x))) / 2
        assert torch.allclose(torch.sigmoid(ens(x)), want, atol=1e-5)
    # what scores images: the mean of the members' full-resolution maps (as measured by
    # experiments/fcn_detector.py --ensemble)
    im = phantom((88, 120), seed=7).image
    both = (probability_map(m0, im) + probability_map(lcn, im)) / 2
    assert np.abs(probability_map(ens, im) - both).max() < 1e-6
    # the card: members' lineage, then the ensemble stage; roots for tune-segmenter
    assert card["arch"]["members"][1]["lcn"] == 8.0
    assert SegConfig.from_dict(card["arch"]) == ens.arch
    assert [st.get("member") for st in card["lineage"]] == [0, 1, None]
    last = card["lineage"][-1]
    assert last["kind"] == "ensemble" and [m["file"] for m in last["members"]] == [str(a), str(b)]
    assert set(last["data_roots"]) == {str(phantom_root), "other"}
    assert card["detection"] == read_card(a)["detection"] and "detection_from" in card
    assert card["train_config"]["crops"] == read_card(a)["train_config"]["crops"]
    assert "members" not in SEGMENTERS["segnet"].to_dict()  # plain cards stay as they were
    show = run_cli("models", "show", str(model))
    assert show.returncode == 0 and "member 1: " in show.stdout
    assert show.stdout.count("file on disk matches") >= 2
    # it runs wherever a segmenter runs: the detector, ONNX, tune-segmenter
    img = phantom((160, 200), seed=4).image
    det = Detector.load(model, device="cpu", theta=-1.0, a_min=1)
    assert det.detect(img) and det.score_map(img).values.shape == (160, 200)
    onnx = Detector.load(model, device="cpu", backend="onnxruntime", theta=-1.0, a_min=1)
    assert np.abs(onnx.score_map(img).values - det.score_map(img).values).max() < 1e-4
    t = run_cli("tune-segmenter", "--model", str(model), "--gdxray", str(phantom_root),
                "--out", str(tmp_path / "t"), "--threads", "1", "--device", "cpu")
    assert t.returncode == 0, t.stderr
    assert isinstance(load_model(tmp_path / "t" / "model.safetensors")[0], SegEnsemble)
    # a card travels without its weights (only the members'): rebuilt from the member
    # files its ensemble stage records, the re-tuned copy too, byte for byte
    for run in (tmp_path / "e", tmp_path / "t"):
        w = run / "model.safetensors"
        data = w.read_bytes()
        w.unlink()
        assert rebuild_ensemble(run / "model.json") == w and w.read_bytes() == data
    with pytest.raises(InputError, match="exists already"):
        rebuild_ensemble(tmp_path / "e" / "model.json")
    with pytest.raises(InputError, match="not an ensemble"):
        rebuild_ensemble(a.with_suffix(".json"))
    # a member changed since (or a card edited): refused, nothing written
    (tmp_path / "t" / "model.safetensors").unlink()
    moved = tmp_path / "lcn-moved.safetensors"
    b.rename(moved)
    b.with_suffix(".json").rename(moved.with_suffix(".json"))
    with pytest.raises(InputError, match="member 1 .* is missing"):
        rebuild_ensemble(tmp_path / "t" / "model.json")
    save_tensors(b, {k: v + 1 for k, v in load_tensors(moved).items()}, read_card(moved))
    with pytest.raises(InputError, match="sha256 differs"):
        rebuild_ensemble(tmp_path / "t" / "model.json")
    assert not list((tmp_path / "t").glob("*.safetensors*"))
    moved.with_suffix(".json").rename(b.with_suffix(".json"))
    moved.rename(b)
    tuned = json.loads((tmp_path / "t" / "model.json").read_text())
    (tmp_path / "t" / "model.json").write_text(json.dumps({**tuned, "weights_sha256": "0"}))
    with pytest.raises(InputError, match="weights_sha256 differs"):
        rebuild_ensemble(tmp_path / "t" / "model.json")
    assert not list((tmp_path / "t").glob("*.safetensors*"))
    (tmp_path / "t" / "model.json").write_text(json.dumps(tuned))
    rebuild_ensemble(tmp_path / "t" / "model.json")
    # a card whose members are not records: one line, no traceback
    bad = json.loads((tmp_path / "e" / "model.json").read_text())
    bad["lineage"][-1]["members"] = ["a.safetensors", "b.safetensors"]
    (tmp_path / "badcard").mkdir()
    (tmp_path / "badcard" / "model.json").write_text(json.dumps(bad))
    with pytest.raises(InputError, match="not an ensemble's card"):
        rebuild_ensemble(tmp_path / "badcard" / "model.json")
    # a bundled member recorded at another checkout's path: found by its checksum
    ensemble_segmenters(["segnet-xdefect", b], tmp_path / "withbundled")
    w = tmp_path / "withbundled" / "model.safetensors"
    data = w.read_bytes()
    card = json.loads(w.with_suffix(".json").read_text())
    card["lineage"][-1]["members"][0]["file"] = "/elsewhere/weights/segnet-xdefect.safetensors"
    w.with_suffix(".json").write_text(json.dumps(card))
    w.unlink()
    assert rebuild_ensemble(w.with_suffix(".json")).read_bytes() == data
    d = casting_folder(tmp_path, 2, seed=1)
    ad = run_cli("adapt", "--images", str(d), "--from", str(model), "--out",
                 str(tmp_path / "ad"), "--steps", "2", "--threads", "1")
    assert ad.returncode == 0, ad.stderr
    adapted, acard = load_model(tmp_path / "ad" / "model.safetensors")
    assert isinstance(adapted, SegEnsemble) and acard["arch"] == card["arch"]
    # a card whose members are not architectures: one line naming the file
    bad = json.loads((tmp_path / "e" / "model.json").read_text())
    bad["arch"]["members"] = ["segnet", "segnet"]
    save_tensors(tmp_path / "bad.safetensors", load_tensors(model), bad)
    assert_one_line_error(run_cli("detect", "--model", str(tmp_path / "bad.safetensors"),
                                  str(d), "--out", str(tmp_path / "det")), "bad.safetensors")
    # refusals, one line each, nothing written
    for args, msg in (((str(a),), "at least two"),
                      ((str(a), "xnet2-xdefect"), "a patch classifier"),
                      ((str(a), str(model)), "an ensemble already"),
                      ((str(a), str(tmp_path / "none.safetensors")), "none.safetensors")):
        assert_one_line_error(run_cli("models", "ensemble", *args, "--out",
                                      str(tmp_path / "x")), msg)
    assert_one_line_error(run_cli("models", "ensemble", str(a), str(b), "--out",
                                  str(tmp_path / "e")), "holds a model already")
    assert not (tmp_path / "x").exists()
    with pytest.raises(ValueError, match="at least two"):
        SegConfig.ensemble([SEGMENTERS["segnet"]])


def test_training_with_hard_negatives_rounds_and_resume(phantom_root, tmp_path, monkeypatch):
    """Rounds mined at a third and two thirds of the steps (the mining itself is tested
    above; here a fixed false alarm per annotated image): the file, the card's counts,
    and a resumed run that reads the first round back ends with the same weights."""
    calls = []

    def mine(net, images, theta, a_min, per_image, margin, device):
        calls.append(len(images))
        return [np.array([[30, 40]]) if im.annotated else np.zeros((0, 2), int)
                for im in images]

    monkeypatch.setattr("xdefect.train_segment.mine_false_alarms", mine)
    crops = CropConfig(size=64, real=True, hard_share=0.5)
    cfg = dict(hard_rounds=2, crops=crops, choose_theta=False)
    train_segmenter(_cfg(phantom_root, tmp_path / "a", **cfg))
    card = read_card(tmp_path / "a" / "model.safetensors")
    rounds = card["training"]["hard_negatives"]
    assert [r["step"] for r in rounds] == [2, 4] and len(calls) == 2
    assert all(r["false_alarms"] == r["images_with_false_alarms"] > 0 for r in rounds)
    assert card["train_config"]["hard_rounds"] == 2
    assert card["train_config"]["crops"]["hard_share"] == 0.5
    doc = json.loads((tmp_path / "a" / "hard_negatives.json").read_text())
    assert [r["step"] for r in doc["rounds"]] == [2, 4]
    assert doc["rounds"][0]["images"][0]["points"] == [[30, 40]]

    def stop(row):
        if row["step"] == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # after the round of step 2, before step 4's
        train_segmenter(_cfg(phantom_root, tmp_path / "b", **cfg), on_log=stop)
    train_segmenter(_cfg(phantom_root, tmp_path / "b", resume=True, **cfg))
    a, _ = load_model(tmp_path / "a" / "model.safetensors")
    b, _ = load_model(tmp_path / "b" / "model.safetensors")
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), k
    assert read_card(tmp_path / "b" / "model.safetensors")["training"]["hard_negatives"] == rounds
    with pytest.raises(InputError, match="hard-share"):
        train_segmenter(_cfg(phantom_root, tmp_path / "c", hard_rounds=1))
    assert SegTrainConfig(out="x", steps=10, hard_rounds=2).mining_steps() == [3, 7]


def test_operating_point_cuts_where_the_false_alarm_cap_is_reached():
    from xdefect.errors import InputError
    from xdefect.evaluate import ImageResult
    from xdefect.train_segment import operating_point

    gt = np.array([[0, 0, 10, 10]], float)

    def res(key, boxes, scores):
        return ImageResult(key, "S", np.asarray(boxes, float).reshape(-1, 4),
                           np.asarray(scores, float), gt)

    rs = [res("a", [[0, 0, 10, 10], [50, 50, 60, 60]], [0.9, 0.3]),
          res("b", [[0, 0, 10, 10], [70, 70, 80, 80], [90, 90, 99, 99]], [0.5, 0.8, -0.2])]
    op = operating_point(rs, 0.5)  # one false alarm over the two images
    assert op["min_score"] == 0.5 and op["max_fa_per_image"] == 0.5
    # ranked 0.9 hit, 0.8 false alarm, 0.5 hit: AP = 0.5 * 1 + 0.5 * 2/3
    assert op["at_min_score"] == {"ap": 0.8333, "found": 2, "boxes": 2, "fa_per_image": 0.5}
    assert operating_point(rs, 1.5)["min_score"] == -1.0  # all three false alarms fit
    with pytest.raises(InputError, match="false alarms per image"):
        operating_point(rs, float("nan"))
    with pytest.raises(InputError, match="top-scored detections"):
        operating_point([res("c", [[50, 50, 60, 60]], [1.0])], 0)
