"""Reliability: bad values on every command give one line and exit 2, never a traceback
and never a changed file; property tests of the ground-truth parser, the IoU arithmetic and
the flag validators (``docs/reliability.md``)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error, make_fake_root, run_cli
from hypothesis import given, settings
from hypothesis import strategies as st

from xdefect import gdxray
from xdefect.cli import build_parser
from xdefect.cli.common import float_in, int_in
from xdefect.errors import InputError
from xdefect.evaluate import iou_matrix, match_image

BAD = ["nan", "inf", "-inf", "abc", "1e999"]

#: (command words, option, bad values): every numeric option of every command
CASES = [
    (["detect", "x.png", "--out", "O"], "--batch", ["-1", "0", "1.5"]),
    (["detect", "x.png", "--out", "O"], "--theta", ["2", "-1.5", *BAD]),
    (["detect", "x.png", "--out", "O"], "--stride", ["0", "-4"]),
    (["detect", "x.png", "--out", "O"], "--sigma", ["-1", "nan"]),
    (["detect", "x.png", "--out", "O"], "--radius", ["-1"]),
    (["detect", "x.png", "--out", "O"], "--a-min", ["-1"]),
    (["detect", "x.png", "--out", "O"], "--widen", ["-2"]),
    (["detect", "x.png", "--out", "O"], "--scales", ["0", "17"]),
    (["detect", "x.png", "--out", "O"], "--merge", ["0", "1.5", "nan"]),
    (["detect", "x.png", "--out", "O"], "--threads", ["0", "-2"]),
    (["evaluate", "--out", "O"], "--iou", ["-1", "0", "1.01", *BAD]),
    (["simulate", "x.png", "--out", "O.png"], "--n", ["-1", "100000"]),
    (["simulate", "x.png", "--out", "O.png"], "--seed", ["-1"]),
    (["simulate", "x.png", "--out", "O.png"], "--source-distance", ["-1", "0", "nan"]),
    (["simulate", "x.png", "--out", "O.png"], "--x-max", ["0", "inf"]),
    (["simulate", "x.png", "--out", "O.png", "--axes-mm", "1"], "--mm-per-px", ["0"]),
    (["dataset", "build", "--out", "O"], "--per-image", ["0", "-5"]),
    (["dataset", "build", "--out", "O"], "--val-fraction", ["1", "-0.1", "nan"]),
    (["dataset", "build", "--out", "O"], "--workers", ["-1"]),
    (["dataset", "build", "--out", "O"], "--limit-images", ["0", "-1"]),
    (["dataset", "build", "--out", "O"], "--seed", ["-1"]),
    (["dataset", "build", "--out", "O"], "--real", ["-1"]),
    (["dataset", "build", "--out", "O"], "--hard-negatives", ["-1"]),
    (["train", "--data", "D", "--out", "O"], "--lr", ["0", "-1", *BAD]),
    (["train", "--data", "D", "--out", "O"], "--batch", ["0", "-1"]),
    (["train", "--data", "D", "--out", "O"], "--epochs", ["0"]),
    (["train", "--data", "D", "--out", "O"], "--samples-per-epoch", ["-1", "0"]),
    (["test", "--model", "M", "--data", "D"], "--batch", ["0"]),
    (["gan", "train", "--out", "O"], "--iterations", ["0"]),
    (["gan", "sample", "--model", "M", "--out", "O.png"], "--n", ["0"]),
    (["adapt", "--images", "I", "--out", "O"], "--lr", ["nan", "0"]),
    (["adapt", "--images", "I", "--out", "O"], "--per-image", ["0"]),
    (["demo"], "--n", ["-1"]),
    (["gdxray", "show", "C0001", "0", "--out", "O.png"], None, []),
]


def _cases():
    for words, opt, values in CASES:
        if opt is None:
            yield words, None
        for v in values:
            yield words, (opt, v)


@pytest.mark.parametrize("words, bad", list(_cases()))
def test_bad_values_one_line_exit_2_nothing_written(tmp_path, words, bad):
    """Parsed in-process (cheap): exit 2, one line naming the option; nothing created."""
    argv = [w if w not in ("O", "O.png", "D", "M", "I") else str(tmp_path / w) for w in words]
    if bad:
        argv += [bad[0], bad[1]]
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2
    assert list(tmp_path.iterdir()) == []


def test_bad_value_message_from_the_real_command(tmp_path):
    proc = run_cli("evaluate", "--iou", "-1", "--out", str(tmp_path / "o"))
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0] == "xdefect evaluate: error: argument --iou: -1.0 is out of range " \
                       "(need 0 < x <= 1)"
    assert not (tmp_path / "o").exists()


def test_every_help_renders():
    """Every command's --help prints (a stray % in a help string used to crash one)."""
    parser = build_parser()
    todo = [parser]
    seen = 0
    while todo:
        p = todo.pop()
        p.format_help()
        seen += 1
        for a in p._actions:  # noqa: SLF001 - walking argparse's tree in a test only
            if isinstance(a, argparse._SubParsersAction):  # noqa: SLF001
                todo.extend(a.choices.values())
    assert seen > 20


def test_unexpected_error_is_one_line_with_a_log(tmp_path, monkeypatch, capsys):
    """A bug (simulated: the demo's library function raises) gives one line naming a crash
    log that holds the traceback, exit 70; --debug lets the traceback through."""
    import xdefect.pipelines
    from xdefect.cli import main

    def broken(*args, **kwargs):
        raise RuntimeError("simulated bug\nsecond line")

    monkeypatch.setattr(xdefect.pipelines, "run_demo", broken)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert main(["demo", "--out", str(tmp_path / "o")]) == 70
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err
    assert "internal error (RuntimeError: simulated bug)" in lines[0]
    log = lines[0].split("please report it with ")[1].split(" ")[0]
    assert "Traceback" in Path(log).read_text() and "simulated bug" in Path(log).read_text()
    with pytest.raises(RuntimeError):
        main(["--debug", "demo", "--out", str(tmp_path / "o")])


def test_detect_never_writes_over_its_inputs(tmp_path):
    from PIL import Image

    d = tmp_path / "imgs"
    d.mkdir()
    Image.fromarray(np.full((64, 64), 100, np.uint8)).save(d / "a.png")
    before = (d / "a.png").read_bytes()
    proc = run_cli("detect", str(d), "--out", str(d))
    assert proc.returncode == 2 and "is an input image" in proc.stderr
    assert (d / "a.png").read_bytes() == before and sorted(os.listdir(d)) == ["a.png"]


def test_force_replaces_only_what_xdefect_wrote(tmp_path):
    root = make_fake_root(tmp_path, n=4, shape=(64, 64))
    other = tmp_path / "mine"
    other.mkdir()
    (other / "keep.txt").write_text("precious")
    link = tmp_path / "link"
    link.symlink_to(other)
    for target, needle in ((other, "holds no xdefect manifest"), (link, "is a link")):
        proc = run_cli("dataset", "build", "--gdxray", str(root), "--series", "C0099",
                       "--out", str(target), "--force", "--per-image", "2")
        assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
    assert (other / "keep.txt").read_text() == "precious"


def test_stale_temporary_of_a_killed_build_is_removed(tmp_path):
    from xdefect.io import atomic_dir

    stale = tmp_path / ".ds.abc123.tmp"
    stale.mkdir()
    (stale / "patches.npy").write_bytes(b"\0" * 100)
    (stale / ".xdefect-pid").write_text("999999999")  # no such process
    with atomic_dir(tmp_path / "ds") as tmp:
        (tmp / "manifest.json").write_text('{"format": "xdefect-patches/1"}')
    assert not stale.exists() and (tmp_path / "ds" / "manifest.json").exists()
    assert not (tmp_path / "ds" / ".xdefect-pid").exists()


# ------------------------------------------------------------------ property tests


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 4), st.integers(-5, 60), st.integers(-5, 60),
                          st.integers(-5, 50), st.integers(-5, 50)), max_size=12))
def test_ground_truth_parser_accepts_or_refuses_cleanly(tmp_path_factory, rows):
    """Any row set parses into boxes inside the image (clipped at most EDGE_TOLERANCE px)
    or raises InputError naming the file and line; never anything else."""
    p = tmp_path_factory.mktemp("gt") / "ground_truth.txt"
    p.write_text("".join(f"{n} {x1} {x2} {y1} {y2}\n" for n, x1, x2, y1, y2 in rows))
    shapes = {n: (40, 50) for n in range(1, 5)}
    try:
        gt = gdxray.read_ground_truth(p, shapes)
    except InputError as exc:
        assert str(exc).startswith(f"{p}:")
        return
    uniq = len(set(rows))
    assert sum(len(b) for b in gt.boxes.values()) == uniq
    assert gt.duplicates == len(rows) - uniq
    for b in gt.boxes.values():
        assert np.all(b[:, 0] >= 0) and np.all(b[:, 1] >= 0)
        assert np.all(b[:, 2] <= 50) and np.all(b[:, 3] <= 40)
        assert np.all(b[:, 2] > b[:, 0]) and np.all(b[:, 3] > b[:, 1])


boxes = st.tuples(st.integers(0, 100), st.integers(0, 100), st.integers(1, 60),
                  st.integers(1, 60)).map(lambda t: (t[0], t[1], t[0] + t[2], t[1] + t[3]))


@settings(max_examples=300, deadline=None)
@given(st.lists(boxes, min_size=1, max_size=6), st.lists(boxes, max_size=6))
def test_iou_and_matching_properties(dets, gts):
    d = np.asarray(dets, float)
    g = np.asarray(gts, float).reshape(-1, 4)
    m = iou_matrix(d, g)
    assert m.shape == (len(d), len(g))
    assert np.all((m >= 0) & (m <= 1 + 1e-12))
    np.testing.assert_allclose(iou_matrix(g, d), m.T)
    np.testing.assert_allclose(np.diag(iou_matrix(d, d)), 1.0)
    scores = np.linspace(1, 0.1, len(d))
    tp, which = match_image(d, scores, g, 0.5)
    assert tp.sum() <= min(len(d), len(g))  # each box found at most once
    matched = which[tp]
    assert len(set(matched.tolist())) == len(matched)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr),
                 st.integers(-10**6, 10**6).map(str), st.text(max_size=6)))
def test_flag_validators_return_in_range_or_refuse(text):
    for parse, ok in ((int_in(1, 100), lambda v: 1 <= v <= 100),
                      (float_in(0, 1, lo_open=True), lambda v: 0 < v <= 1),
                      (float_in(-1, 1), lambda v: -1 <= v <= 1)):
        try:
            v = parse(text)
        except argparse.ArgumentTypeError:
            continue
        assert ok(v) and v == v and abs(v) != float("inf")


def test_detect_batch_goes_on_past_a_bad_image_unless_strict(tmp_path):
    from PIL import Image

    d = tmp_path / "imgs"
    d.mkdir()
    Image.fromarray(np.full((64, 64), 100, np.uint8)).save(d / "a.png")
    (d / "b.png").write_text("not a png")
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(d / "c.png")
    proc = run_cli("detect", str(d), "--out", str(tmp_path / "o"), "--threads", "1")
    assert proc.returncode == 1, proc.stderr
    assert "1 images" in proc.stdout and "2 skipped" in proc.stdout
    warn = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(warn) == 2 and all(w.startswith("xdefect: warning: ") for w in warn)
    assert "b.png" in warn[0] and "c.png" in warn[1] and "Traceback" not in proc.stderr
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["a.json", "a.png",
                                                                 "manifest.json"]
    man = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert man["format"] == "xdefect-detections/1" and len(man["skipped"]) == 2
    strict = run_cli("detect", str(d), "--out", str(tmp_path / "s"), "--strict")
    assert strict.returncode == 2 and "b.png" in strict.stderr
    assert not (tmp_path / "s").exists()
    # a rerun into the same --out is refused, --force replaces it whole: no stale files
    (d / "b.png").unlink()
    (d / "c.png").unlink()
    (d / "a.png").rename(d / "z.png")
    assert run_cli("detect", str(d), "--out", str(tmp_path / "o")).returncode == 2
    assert run_cli("detect", str(d), "--out", str(tmp_path / "o"), "--force").returncode == 0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["manifest.json", "z.json",
                                                                 "z.png"]


def test_dense_stride_the_model_cannot_run_is_one_line(tmp_path):
    from PIL import Image

    Image.fromarray(np.full((64, 64), 100, np.uint8)).save(tmp_path / "a.png")
    for stride in ("3", "64"):
        proc = run_cli("detect", str(tmp_path / "a.png"), "--out", str(tmp_path / "o"),
                       "--model", "xnet2-xdefect", "--stride", stride)
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr
        assert "dense mode needs a power of two" in lines[0]
    # the default model, a segmenter, scores every pixel: any other stride is refused
    assert_one_line_error(run_cli("detect", str(tmp_path / "a.png"), "--out",
                                  str(tmp_path / "o"), "--stride", "4"),
                          "a segmenter scores every pixel")
    assert not (tmp_path / "o").exists()


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims ``width`` x ``height`` grey pixels (no pixel data)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def test_decompression_bomb_is_one_line(tmp_path):
    bomb = tmp_path / "bomb.png"
    _png_header_only(bomb, 50_000, 50_000)
    for argv in (["detect", str(bomb), "--out", str(tmp_path / "o")],
                 ["simulate", str(bomb), "--out", str(tmp_path / "s.png")]):
        proc = run_cli(*argv)
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr
        assert "bomb.png" in lines[0] and "decompression bomb" in lines[0]


def test_small_grid_bad_labels_and_invisible_defects(tmp_path):
    from PIL import Image

    Image.fromarray(np.full((20, 20), 128, np.uint8)).save(tmp_path / "tiny.png")
    proc = run_cli("simulate", str(tmp_path / "tiny.png"), "--grid", str(tmp_path / "g.png"))
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "smaller than the 32x32" in lines[0]
    # defects simulated on a saturated image change no pixel: said so, not hidden
    Image.fromarray(np.full((100, 100), 255, np.uint8)).save(tmp_path / "white.png")
    proc = run_cli("simulate", str(tmp_path / "white.png"), "--out", str(tmp_path / "w.png"),
                   "--n", "3")
    assert proc.returncode == 0 and "3 changed no pixel" in proc.stdout, proc.stdout
    # a dataset whose labels hold something else than 0 and 1 is refused on opening
    from xdefect.dataset import open_dataset

    ds = tmp_path / "ds"
    root = make_fake_root(tmp_path, n=4, shape=(64, 64))
    assert run_cli("dataset", "build", "--gdxray", str(root), "--series", "C0099", "--out",
                   str(ds), "--per-image", "2").returncode == 0
    labels = np.load(ds / "labels.npy")
    labels[0] = 7
    np.save(ds / "labels.npy", labels)
    with pytest.raises(InputError, match="labels must be 0 .* or 1 .*found 7"):
        open_dataset(ds)
