"""The image pyramid of detection: levels, box scaling and the merge across levels."""

from __future__ import annotations

import numpy as np
import pytest
from test_detect import _random_model

from xdefect import detect as D
from xdefect.detect import Detection


def test_downsample_is_the_block_mean():
    a = np.arange(7 * 9, dtype=np.float32).reshape(7, 9)
    d = D.downsample(a, 2)
    assert d.shape == (3, 4) and d.dtype == np.float32
    assert d[1, 2] == pytest.approx(a[2:4, 4:6].mean())
    assert D.downsample(a, 1) is a
    m = np.zeros((8, 8), bool)
    m[:4, :2] = True  # half of the blocks (0,0) and (1,0) of factor 4
    np.testing.assert_array_equal(D.downsample_mask(m, 4), [[True, False], [False, False]])


def test_scale_detections_back_to_image_pixels():
    d = [Detection((10, 20, 30, 41), 0.9, 100)]
    out = D.scale_detections(d, 4, (150, 100))
    assert out == [Detection((40, 80, 100, 150), 0.9, 1600)]  # y2 164 clipped to 150
    assert D.scale_detections(d, 1, (150, 100)) is d


def test_merge_keeps_the_best_of_overlapping_levels_only():
    fine = [Detection((0, 0, 20, 20), 0.9, 1), Detection((40, 0, 60, 20), 0.5, 1),
            Detection((41, 0, 61, 20), 0.4, 1)]  # same level: never merged
    coarse = [Detection((0, 0, 22, 22), 0.8, 1), Detection((30, 0, 90, 60), 0.95, 1)]
    out = D.merge_detections([fine, coarse], 0.5, "iou")
    assert [d.score for d in out] == [0.95, 0.9, 0.5, 0.4]  # (0,0,22,22) overlaps 0.9's box
    # intersection over the smaller box: boxes inside the large coarse one go
    out = D.merge_detections([fine, coarse], 0.5, "iom")
    assert [d.score for d in out] == [0.95, 0.9]


def test_params_scales_validated_and_round_trip():
    p = D.DetectParams(scales=[1, 2], merge_rule="iom", merge=0.3)
    assert p.scales == (1, 2)
    assert D.DetectParams.from_dict(p.to_dict()) == p
    assert p.to_dict()["scales"] == [1, 2]
    for bad in [{"scales": ()}, {"scales": (0,)}, {"scales": (2, 2)}, {"merge": 0.0},
                {"merge": float("nan")}, {"merge_rule": "x"}]:
        with pytest.raises(ValueError):
            D.DetectParams(**bad)


def test_single_level_detection_unchanged_and_levels_add_boxes():
    rng = np.random.default_rng(0)
    img = rng.uniform(0.3, 0.7, (160, 200)).astype(np.float32)
    img[60:100, 80:130] *= 0.6  # a dark blob larger than the window
    m = _random_model()
    p = D.DetectParams(mode="dense", stride=4, theta=-1.0, a_min=0, box_rule="blobs",
                       use_mask=False)
    one, smap = D.detect(m, img, p)
    ref = D.regions(D.score_map_dense(m, img, 4), p)
    assert one == ref and smap.image_shape == img.shape
    two, smap2 = D.detect(m, img, D.DetectParams(**{**p.to_dict(), "scales": (1, 2)}))
    assert smap2.image_shape == img.shape  # the finest level's map
    assert len(two) >= len(one) and all(d.box[2] <= 200 and d.box[3] <= 160 for d in two)
    coarse = D.regions(D.score_map_dense(m, D.downsample(img, 2), 4), p)
    assert len(two) <= len(one) + len(coarse)
    # a level smaller than a window is skipped; the image itself too small is an error
    few, _ = D.detect(m, img, D.DetectParams(**{**p.to_dict(), "scales": (1, 8)}))
    assert few == one
    from xdefect.errors import InputError

    with pytest.raises(InputError, match="smaller than the 32x32 window"):
        D.detect(m, img[:20], p)


def test_extent_rule_boxes_each_maximum_to_its_windows():
    """A long region with two maxima: blobs gives two window-size boxes, extent gives each
    maximum the extent of its nearest window centres less widen (a large defect lighting
    two maxima gets boxes of its size)."""
    shape = (200, 240)
    v = np.full(D.grid_shape(shape, 4), -1.0, np.float32)
    v[5:10, 6:20] = 0.8          # centres rows 36..52, cols 40..92
    v[7, 8], v[7, 17] = 1.0, 1.0  # two maxima: cols 48 and 84
    base = dict(stride=4, theta=0.5, radius=3, a_min=1, box_margin=10, sigma=0.0, nms=20,
                widen=4)
    smap = D.ScoreMap(v, 4, shape)
    blobs = D.regions(smap, D.DetectParams(box_rule="blobs", **base))
    assert sorted(d.box[2] - d.box[0] for d in blobs) == [21, 21]
    ext = sorted(D.regions(smap, D.DetectParams(box_rule="extent", **base)),
                 key=lambda d: d.box[0])
    assert len(ext) == 2
    # centres split at the midpoint between cols 48 and 84: cols 40..64 and 68..92; each
    # box is at least the 21-px box around its maximum (row 44) and at least its centres'
    # extent less 4 px a side
    assert (ext[0].box[0], ext[0].box[2]) == (min(48 - 10, 40 + 4), max(48 + 11, 64 - 3))
    assert (ext[1].box[0], ext[1].box[2]) == (min(84 - 10, 68 + 4), max(84 + 11, 92 - 3))
    assert ext[0].box[2] - ext[0].box[0] > 21 and ext[1].box[2] - ext[1].box[0] > 21
    assert all((d.box[1], d.box[3]) == (44 - 10, 44 + 11) for d in ext)
