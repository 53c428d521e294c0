"""Known-answer tests of the evaluation, computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from xdefect.evaluate import (
    ImageResult,
    box_size_ratio,
    iou_matrix,
    match_image,
    pr_curve,
    summarise,
)


def res(key, boxes, scores, gt, series="S1"):
    return ImageResult(key, series, np.asarray(boxes, float).reshape(-1, 4),
                       np.asarray(scores, float), np.asarray(gt, float).reshape(-1, 4))


def test_iou_by_hand():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[5, 0, 15, 10], [0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 5, 5]])
    np.testing.assert_allclose(iou_matrix(a, b), [[50 / 150, 1.0, 0.0, 25 / 100]])


def test_perfect_detections():
    rs = [res("a", [[0, 0, 10, 10]], [0.9], [[0, 0, 10, 10]]),
          res("b", [[5, 5, 20, 20], [30, 30, 40, 40]], [0.8, 0.7],
              [[5, 5, 20, 20], [30, 30, 40, 40]])]
    m = summarise(rs)
    assert m["ap"] == 1.0 and m["ap11"] == 1.0
    assert m["true_positives"] == 3 and m["false_positives"] == 0 and m["missed"] == 0


def test_no_detections():
    m = summarise([res("a", [], [], [[0, 0, 10, 10]])])
    assert m["ap"] == 0.0 and m["ap11"] == 0.0 and m["missed"] == 1


def test_duplicates_are_false_positives():
    # two detections of one box: the higher score matches, the other is a FP
    tp, which = match_image([[0, 0, 10, 10], [1, 1, 10, 10]], [0.6, 0.9], [[0, 0, 10, 10]])
    assert tp.tolist() == [False, True] and which.tolist() == [-1, 0]
    c = pr_curve([res("a", [[0, 0, 10, 10], [1, 1, 10, 10]], [0.6, 0.9], [[0, 0, 10, 10]])])
    assert c.tp.tolist() == [True, False]
    assert c.ap() == 1.0  # the FP ranks after full recall


def test_partial_overlap_threshold():
    # IoU exactly 0.5 counts; just below does not
    gt = [[0, 0, 10, 10]]
    assert match_image([[0, 0, 10, 20]], [1.0], gt, 0.5)[0].tolist() == [True]   # 100/200
    assert match_image([[0, 0, 10, 21]], [1.0], gt, 0.5)[0].tolist() == [False]  # 100/210
    assert match_image([[0, 0, 10, 21]], [1.0], gt, 0.4)[0].tolist() == [True]


def test_hand_computed_ap():
    # ranks: TP, FP, TP, FP over 3 ground-truth boxes
    # precision 1, 1/2, 2/3, 2/4; recall 1/3, 1/3, 2/3, 2/3
    # all-point AP = 1/3 * 1 + 1/3 * 2/3 = 5/9; 11-point: r=0..0.3 -> 1 (4 points),
    # r=0.4..0.6 -> 2/3 (3 points), r=0.7..1 -> 0 (4 points) = (4 + 2) / 11
    rs = [res("a", [[0, 0, 10, 10], [50, 50, 60, 60]], [0.9, 0.8], [[0, 0, 10, 10]]),
          res("b", [[20, 20, 30, 30], [70, 70, 80, 80]], [0.7, 0.6],
            [[20, 20, 30, 30], [90, 90, 99, 99]])]
    c = pr_curve(rs)
    assert c.ap() == pytest.approx(5 / 9)
    assert c.ap11() == pytest.approx(6 / 11)
    assert c.recall_at_fppi((0.5, 1.0)) == {"0.5": pytest.approx(2 / 3),
                                            "1.0": pytest.approx(2 / 3)}


def test_images_without_defects_add_false_positives():
    with_fp = [res("a", [[0, 0, 10, 10]], [0.5], [[0, 0, 10, 10]]),
               res("b", [[0, 0, 10, 10]], [0.9], [])]
    c = pr_curve(with_fp)
    assert c.n_gt == 1 and c.tp.tolist() == [False, True]
    assert c.ap() == pytest.approx(0.5)
    m = summarise(with_fp)
    assert m["images"] == 2 and m["false_positives"] == 1


def test_per_series_and_no_ground_truth():
    rs = [res("a", [[0, 0, 10, 10]], [0.9], [[0, 0, 10, 10]], "S1"),
          res("b", [[0, 0, 10, 10]], [0.9], [[40, 40, 50, 50]], "S2")]
    m = summarise(rs)
    assert m["per_series"]["S1"]["ap"] == 1.0 and m["per_series"]["S2"]["ap"] == 0.0
    assert np.isnan(summarise([res("a", [[0, 0, 1, 1]], [0.5], [])])["ap"])


def test_report_threshold_for_a_false_alarm_cap():
    """score_at_fppi: the lowest score whose detections (and all above) hold at most the
    cap's false alarms; ties are kept or cut together."""
    from xdefect.evaluate import PRCurve

    c = PRCurve(np.array([0.9, 0.8, 0.8, 0.5, 0.3]),
                np.array([True, False, True, False, False]), n_gt=3, n_images=2)
    assert c.score_at_fppi(0) == 0.9  # the tied 0.8 pair holds a false alarm
    assert c.score_at_fppi(0.4) == 0.9
    assert c.score_at_fppi(0.5) == 0.8
    assert c.score_at_fppi(1) == 0.5
    assert c.score_at_fppi(1.5) == -1.0  # every detection fits
    top_fp = PRCurve(np.array([0.7, 0.2]), np.array([False, True]), n_gt=1, n_images=1)
    assert 0.7 < top_fp.score_at_fppi(0) < 0.70001  # nothing fits: just above the top
    assert PRCurve(np.zeros(0), np.zeros(0, bool), 1, 1).score_at_fppi(0) == -1.0
    for bad in (-0.5, float("nan")):
        with pytest.raises(ValueError, match="per image"):
            c.score_at_fppi(bad)


def test_box_size_ratio_compares_each_defect_with_its_best_overlapping_detection():
    # defect 20x20 with a centred 10x10 detection (IoU 0.25): sqrt(400/100) = 2;
    # defect 10x10 with a 20x20 detection around it: 0.5; defect 10x10 found exactly: 1;
    # a defect with no detection near it is not a pair
    a = res("a", [[5, 5, 15, 15], [95, 95, 115, 115], [60, 60, 90, 90]], [0.9, 0.1, 0.5],
            [[0, 0, 20, 20], [100, 100, 110, 110], [300, 300, 310, 310]])
    b = res("b", [[0, 0, 10, 10]], [0.2], [[0, 0, 10, 10]])
    r = box_size_ratio([a, b])
    assert (r.pairs, r.defects, r.images) == (3, 4, 2)
    assert r.ratio == pytest.approx(1.0)  # the median of 2, 0.5 and 1
    assert box_size_ratio([a]).ratio == pytest.approx(np.sqrt(2 * 0.5))  # median of two
    assert box_size_ratio([a], min_iou=0.3).pairs == 0  # both overlap 0.25 only
    assert np.isnan(box_size_ratio([a], min_iou=0.3).ratio)
    ign = ImageResult("a", "S1", a.boxes, a.scores, a.gt, np.array([True, False, False]))
    r = box_size_ratio([ign])
    assert (r.pairs, r.defects, r.ratio) == (1, 2, pytest.approx(0.5))
    assert box_size_ratio([]).pairs == 0
    with pytest.raises(ValueError, match="min_iou"):
        box_size_ratio([a], min_iou=float("nan"))
