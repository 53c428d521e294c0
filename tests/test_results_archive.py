"""The result files behind docs/results.md survive a new checkout: results_tables.py
archives them in experiments/results/ and restores them into runs/ (issue 13's figures)."""

from __future__ import annotations

import importlib
import json
import sys

from conftest import REPO


def _tables():
    sys.path.insert(0, str(REPO / "experiments"))
    try:
        return importlib.import_module("results_tables")
    finally:
        sys.path.remove(str(REPO / "experiments"))


def test_archive_copies_result_documents_only(tmp_path):
    rt = _tables()
    runs, arch = tmp_path / "runs", tmp_path / "archive"
    (runs / "fcn" / "x-loso5" / "fold0").mkdir(parents=True)
    (runs / "seg" / "long").mkdir(parents=True)
    (runs / "fcn_loso_x-amin.json").write_text('{"pooled": {"ap": 0.3}}')
    (runs / "fcn" / "x-loso5" / "fold0" / "results-amin.json").write_text("{}")
    (runs / "fcn" / "x-loso5" / "fold0" / "model.safetensors").write_bytes(b"weights")
    (runs / "seg" / "long" / "model.json").write_text('{"theta": 0.6}')
    (runs / "seg" / "long" / "model.safetensors").write_bytes(b"weights")
    (runs / "big.json").write_text(json.dumps({"x": "y" * 200}))
    done, big = rt.archive_results(runs, arch, max_bytes=100)
    names = sorted(str(p.relative_to(arch)) for p in done)
    assert names == ["fcn/x-loso5/fold0/results-amin.json", "fcn_loso_x-amin.json",
                     "seg/long/model.json"]
    assert big == [runs / "big.json"]
    assert not list(arch.rglob("*.safetensors")) and not list(arch.rglob("*.tmp"))
    # unchanged files are not written again; a changed one is
    assert rt.archive_results(runs, arch, max_bytes=100)[0] == []
    (runs / "fcn_loso_x-amin.json").write_text('{"pooled": {"ap": 0.4}}')
    assert rt.archive_results(runs, arch, max_bytes=100)[0] == [arch / "fcn_loso_x-amin.json"]


def test_restore_fills_only_missing_files(tmp_path):
    rt = _tables()
    runs, arch = tmp_path / "runs", tmp_path / "archive"
    (arch / "seg" / "long").mkdir(parents=True)
    (arch / "seg" / "long" / "model.json").write_text('{"theta": 0.6}')
    (arch / "table3.json").write_text('{"archived": true}')
    runs.mkdir()
    (runs / "table3.json").write_text('{"archived": false}')
    back = rt.restore(arch, runs)
    assert back == [runs / "seg" / "long" / "model.json"]
    assert json.loads((runs / "table3.json").read_text()) == {"archived": False}
    assert json.loads((runs / "seg" / "long" / "model.json").read_text()) == {"theta": 0.6}
    assert rt.restore(tmp_path / "nothing", runs) == []


def test_kept_block_counts_rows():
    rt = _tables()
    text = "a\n<!-- t -->\n| h |\n|---|\n| 1 |\nprose | no\n<!-- /t -->\n"
    assert rt.table_rows(rt.block(text, "t")) == 3
    assert rt.block(text, "missing") == ""
