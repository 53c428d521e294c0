"""``xdefect adapt``: a folder of unlabelled radiographs in, a model ready for detect out."""

from __future__ import annotations

import csv
import json

import numpy as np
from conftest import assert_one_line_error, run_cli
from PIL import Image

from xdefect.simulate import phantom

# a patch classifier source (the default source is the default model, a segmenter)
TINY = ["--from", "xnet2-xdefect", "--per-image", "20", "--hard-per-image", "5", "--epochs", "1",
        "--samples-per-epoch", "200", "--val-samples", "40", "--threads", "1"]


def _folder(tmp_path, n=3):
    d = tmp_path / "casting"
    d.mkdir()
    for i in range(n):
        img = phantom((200, 260), seed=i).image
        Image.fromarray(np.round(img * 255).astype(np.uint8)).save(d / f"part_{i:02d}.png")
    (d / "._part_00.png").write_bytes(b"\0\5\26\7")  # a macOS resource fork: not an image
    return d


def test_adapt_writes_a_model_that_detect_uses(tmp_path):
    d = _folder(tmp_path)
    before = {f.name: f.read_bytes() for f in d.iterdir()}
    out = tmp_path / "adapted"
    proc = run_cli("adapt", "--images", str(d), "--out", str(out), *TINY)
    assert proc.returncode == 0, proc.stderr
    assert "adapted on 3 images" in proc.stdout
    assert {f.name: f.read_bytes() for f in d.iterdir()} == before  # inputs untouched
    card = json.loads((out / "model.json").read_text())
    assert card["name"] == "xnet2-xdefect-adapted"
    assert card["detection"]["mode"] == "dense" and card["context_margin"] == 32
    assert card["adaptation"]["images"] == 3 and card["augment"] is not None
    assert card["data_counts"]["source"] == {"background": 60, "ellipsoid": 60, "hard": 15}
    with open(out / "images.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["file"].rsplit("/", 1)[1] for r in rows] == [f"part_{i:02d}.png" for i in range(3)]
    det = run_cli("detect", str(d / "part_01.png"), "--model", str(out / "model.safetensors"),
                  "--out", str(tmp_path / "det"), "--threads", "1")
    assert det.returncode == 0, det.stderr
    again = run_cli("adapt", "--images", str(d), "--out", str(out), *TINY)
    assert_one_line_error(again, "holds an adapted model already")


def test_adapt_bad_inputs(tmp_path):
    d = _folder(tmp_path, 1)
    proc = run_cli("adapt", "--images", str(d), "--out", str(tmp_path / "o"), *TINY)
    assert_one_line_error(proc, "at least 2 radiographs")
    proc = run_cli("adapt", "--images", str(tmp_path / "nope"), "--out", str(tmp_path / "o"))
    assert_one_line_error(proc, "nope", "no such file or folder")
    proc = run_cli("adapt", "--images", str(d), "--out", str(tmp_path / "o"), "--mu", "0", "1")
    assert_one_line_error(proc, "--mu")
    assert not (tmp_path / "o").exists()


def test_adapt_from_the_default_model_is_a_segmenter_adaptation(tmp_path):
    """No --from: the default model (the segmenter segnet-xdefect) is adapted, and the
    result is a segmenter with its detection settings."""
    d = _folder(tmp_path, 2)
    out = tmp_path / "adapted"
    proc = run_cli("adapt", "--images", str(d), "--out", str(out), "--steps", "3",
                   "--threads", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    card = json.loads((out / "model.json").read_text())
    assert card["arch"]["family"] == "segmenter" and card["detection"]["mode"] == "segment"
    assert card["adaptation"]["source"].endswith("segnet-xdefect.safetensors")
