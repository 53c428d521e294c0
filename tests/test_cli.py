from __future__ import annotations

import subprocess
import sys

from conftest import REPO, run_cli

from xdefect import __version__


def test_version_and_module():
    proc = run_cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"xdefect {__version__}"
    exe = REPO / ".venv" / "bin" / "xdefect"
    if exe.exists():
        out = subprocess.run([str(exe), "--version"], capture_output=True, text=True)
        assert out.stdout == proc.stdout


def test_help_lists_commands():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for cmd in ("gdxray", "simulate", "demo"):
        assert cmd in proc.stdout


def test_group_without_subcommand_exits_2():
    proc = run_cli("gdxray")
    assert proc.returncode == 2 and "info" in proc.stderr


def test_unknown_option_one_line():
    proc = subprocess.run([sys.executable, "-m", "xdefect", "gdxray", "info", "--bogus"],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1


def test_every_command_help_renders(capsys):
    """A '%' in a help string crashes argparse's formatter: render every help page."""
    import argparse

    import pytest

    from xdefect.cli import build_parser

    def walk(parser: argparse.ArgumentParser):
        yield parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    yield from walk(sub)

    pages = list(walk(build_parser()))
    assert len(pages) > 15
    for page in pages:
        with pytest.raises(SystemExit) as exc:
            page.parse_args(["--help"])
        assert exc.value.code == 0, page.prog
    assert "number % 4 == 1" in capsys.readouterr().out


def test_cli_records_its_command_line(tmp_path, gdxray_root):
    """The manifest and the model card hold the captured command line, never the name of
    the command group (argparse's dest of the subcommand must not leak into configs)."""
    import json

    out = tmp_path / "ds"
    proc = run_cli("dataset", "build", "--gdxray", str(gdxray_root), "--out", str(out),
                   "--series", "C0010", "--per-image", "8", "--limit-images", "2",
                   "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    man = json.loads((out / "manifest.json").read_text())
    assert man["command"].startswith("python -m xdefect dataset build --gdxray"), man["command"]
    run = tmp_path / "run"
    proc = run_cli("train", "--data", str(out), "--out", str(run), "--epochs", "1",
                   "--batch", "8", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    card = json.loads((run / "best.json").read_text())
    assert card["command"].startswith("python -m xdefect train --data"), card["command"]
    assert card["lineage"][-1]["data_command"] == man["command"]
    assert card["train_config"]["command"] is None  # captured by train() itself


def test_output_piped_into_head_stops_quietly(tmp_path, monkeypatch, capsys):
    """`xdefect ... | head -1`: when the reader goes away, no BrokenPipeError traceback,
    Unix's status 141 (the closed pipe is simulated by a stdout whose writes fail)."""
    import os

    from xdefect.cli import main

    fd = os.open(tmp_path / "sink", os.O_WRONLY | os.O_CREAT)

    class ClosedPipe:
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self) -> None:
            pass

        def fileno(self) -> int:
            return fd

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(["models", "list"]) == 141
    assert "Traceback" not in capsys.readouterr().err
