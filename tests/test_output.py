"""Progress and output for scripts: plain progress lines off a terminal, ``--quiet`` and
``--json`` (issue 17, item 5)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from conftest import assert_one_line_error, make_fake_root, run_cli

from xdefect.io import ProgressLines, progress, set_quiet
from xdefect.pipelines import write_phantom_root

LINES = {"XDEFECT_PROGRESS": "lines", "XDEFECT_PROGRESS_INTERVAL": "0"}


def test_progress_lines_count_rate_and_postfix():
    out = io.StringIO()
    bar = ProgressLines(total=4, desc="detect", unit="image", interval=0, file=out)
    for _ in range(4):
        bar.set_postfix(loss="0.1234")
        bar.update()
    bar.close()
    bar.close()  # closing twice writes nothing more
    lines = out.getvalue().splitlines()
    assert len(lines) == 5, lines
    assert lines[0].startswith("xdefect: detect 1/4 image (25%), ")
    assert "s left" in lines[0] and lines[0].endswith("; loss 0.1234")
    assert lines[3].startswith("xdefect: detect 4/4 image (100%)")
    assert lines[4].endswith(", done; loss 0.1234")


def test_short_jobs_write_no_progress_line():
    out = io.StringIO()
    assert list(ProgressLines(iterable=range(5), desc="q", interval=60, file=out)) == [0, 1, 2,
                                                                                       3, 4]
    assert out.getvalue() == ""


def test_progress_choice(monkeypatch):
    monkeypatch.setenv("XDEFECT_PROGRESS", "lines")
    assert isinstance(progress(total=3), ProgressLines)
    assert not isinstance(progress(total=3, hidden=True), ProgressLines)
    set_quiet(True)
    try:
        bar = progress(total=3)
        assert not isinstance(bar, ProgressLines) and bar.disable
    finally:
        set_quiet(False)
    monkeypatch.setenv("XDEFECT_PROGRESS", "0")
    assert progress(total=3).disable
    monkeypatch.setenv("XDEFECT_PROGRESS", "1")
    assert not progress(total=3).disable


@pytest.fixture(scope="module")
def phantom_root(tmp_path_factory) -> Path:
    return write_phantom_root(tmp_path_factory.mktemp("out") / "root", n=2, shape=(160, 224),
                              series="C0998")


def test_detect_json_quiet_and_lines(phantom_root, tmp_path):
    images = phantom_root / "Castings" / "C0998"
    proc = run_cli("detect", str(images), "--out", str(tmp_path / "a"), "--json", env=LINES)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)  # stdout is exactly one JSON object
    assert doc["images"] == 2 and doc["out"] == str(tmp_path / "a") and doc["skipped"] == []
    assert doc["detections"] == sum(len(json.loads(f.read_text())["detections"])
                                    for f in (tmp_path / "a").glob("C0998_*.json"))
    # off a terminal, progress is plain lines on stderr, never carriage returns
    assert "xdefect: detect 1/2 image (50%)" in proc.stderr and "\r" not in proc.stderr
    assert "xdefect: detect 2/2 image (100%)" in proc.stderr
    proc = run_cli("detect", str(images), "--out", str(tmp_path / "b"), "--quiet", env=LINES)
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == "", proc
    assert sorted(p.name for p in (tmp_path / "b").iterdir())[:2] == ["C0998_0001.json",
                                                                    "C0998_0001.png"]
    # warnings still reach stderr under --quiet; the status tells the rest
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "broken.png").write_bytes(b"not a png")
    (tmp_path / "in" / "ok.png").write_bytes((images / "C0998_0001.png").read_bytes())
    proc = run_cli("detect", str(tmp_path / "in"), "--out", str(tmp_path / "c"), "--quiet")
    assert proc.returncode == 1 and proc.stdout == ""
    assert "broken.png" in proc.stderr and "warning" in proc.stderr


def test_bad_progress_interval_is_one_line(phantom_root, tmp_path):
    proc = run_cli("detect", str(phantom_root / "Castings" / "C0998"), "--out",
                   str(tmp_path / "a"), env={"XDEFECT_PROGRESS": "lines",
                                             "XDEFECT_PROGRESS_INTERVAL": "soon"})
    assert_one_line_error(proc, "XDEFECT_PROGRESS_INTERVAL", "soon")
    assert not (tmp_path / "a").exists()


def test_evaluate_json_is_the_metrics(phantom_root, tmp_path):
    proc = run_cli("evaluate", "--gdxray", str(phantom_root), "--split", "all", "--out",
                   str(tmp_path / "ev"), "--no-overlays", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    saved = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert doc["metrics"]["ap"] == saved["ap"] and doc["metrics"]["images"] == 2
    assert doc["out"] == str(tmp_path / "ev")


def test_simulate_json_to_stdout_and_file(tmp_path):
    proc = run_cli("simulate", "phantom", "--out", str(tmp_path / "s.png"), "--n", "3", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert len(doc["defects"]) == 3 and all(len(d["box"]) == 4 for d in doc["defects"])
    # --json FILE keeps its meaning: the file, and the summary on stdout
    proc = run_cli("simulate", "phantom", "--out", str(tmp_path / "t.png"), "--n", "3",
                   "--json", str(tmp_path / "t.json"))
    assert proc.returncode == 0 and "3 simulated defects" in proc.stdout
    assert json.loads((tmp_path / "t.json").read_text())["defects"] == doc["defects"]
    proc = run_cli("simulate", "phantom", "--out", str(tmp_path / "u.png"), "--quiet")
    assert proc.returncode == 0 and proc.stdout == "" and (tmp_path / "u.png").exists()


def test_dataset_build_json(tmp_path):
    root = make_fake_root(tmp_path, n=4, shape=(64, 64))
    proc = run_cli("dataset", "build", "--gdxray", str(root), "--series", "C0099", "--out",
                   str(tmp_path / "ds"), "--per-image", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["manifest"] == json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert doc["manifest"]["n"] == 2 + 2  # one train image (3), 2 + 2 patches
