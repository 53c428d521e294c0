"""The Python API of the README: three lines to load, detect and evaluate, and the same
figures as the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_cli

from xdefect.pipelines import write_phantom_root
from xdefect.simulate import phantom


def _phantom_root(tmp_path, n: int = 4):
    """A GDXray-like root with one paper series of ``n`` small synthetic radiographs with
    simulated defects, and their boxes as GDXray ground truth (1-based, inclusive)."""
    root = write_phantom_root(tmp_path / "root", n=n, shape=(160, 224), defects=3)
    return root, root / "Castings" / "C0001"


def test_three_line_api(tmp_path):
    gdxray_root, series_dir = _phantom_root(tmp_path)
    image = str(series_dir / "C0001_0002.png")

    import xdefect
    det = xdefect.Detector.load()            # the bundled default; or a name or a path
    found = det.detect(image)                # list of Detection(box, score), boxes (x1, y1, x2, y2)
    report = xdefect.evaluate_folder(det, gdxray_root, split="even")

    assert found and all(isinstance(d, xdefect.Detection) for d in found)
    for d in found:
        x1, y1, x2, y2 = d.box
        assert 0 <= x1 < x2 <= 224 and 0 <= y1 < y2 <= 160 and -1 <= d.score <= 1
    assert [d.score for d in found] == sorted((d.score for d in found), reverse=True)
    assert report.metrics["images"] == 2 and report.metrics["split"] == "even"
    assert report.metrics["gt_boxes"] == 6 and 0 <= report.ap <= 1
    # the command line prints and writes the very same figures
    proc = run_cli("evaluate", "--gdxray", str(gdxray_root), "--series", "C0001", "--split",
                   "even", "--out", str(tmp_path / "ev"), "--no-overlays")
    assert proc.returncode == 0, proc.stderr
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["ap"] == pytest.approx(report.metrics["ap"])
    assert m["detections"] == report.metrics["detections"]


def test_detector_inputs_and_overrides():
    import xdefect

    det = xdefect.Detector.load("xnet2-paper", stride=16, theta=0.5)
    assert det.params.stride == 16 and det.params.theta == 0.5
    assert det.params.mode == det.card["detection"]["mode"]  # the rest from the card
    ph = phantom(shape=(128, 160), n_defects=2, seed=3)
    as_float = det.detect(ph.image)
    as_uint8 = det.detect(np.clip(np.rint(ph.image * 255), 0, 255).astype(np.uint8))
    assert [d.box for d in as_float] == [d.box for d in as_uint8]
    with pytest.raises(xdefect.InputError, match="unknown detection parameters"):
        xdefect.Detector.load(strides=4)
    with pytest.raises(xdefect.InputError, match="stride"):
        det.with_params(stride=0)
    with pytest.raises(xdefect.InputError, match="finite"):
        det.detect(np.full((64, 64), np.nan, np.float32))


def test_simulate_defects_api():
    import xdefect

    ph = phantom(shape=(160, 224), seed=0)
    out, placed = xdefect.simulate_defects(ph.image, 4, seed=1)
    again, _ = xdefect.simulate_defects(ph.image, 4, seed=1)
    assert len(placed) == 4 and np.array_equal(out, again)
    assert not np.array_equal(out, ph.image)
    for _, (x1, y1, x2, y2) in placed:
        assert not np.array_equal(out[y1:y2, x1:x2], ph.image[y1:y2, x1:x2])
