"""Shared fixtures. GDXray tests read ``$XDEFECT_GDXRAY`` (default ../shared/data/gdxray);
with ``XDEFECT_REQUIRE_GDXRAY=1`` (set by .ci/run) a missing folder fails the run instead of
skipping those tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xdefect.gdxray import default_root

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def gdxray_root() -> Path:
    root = default_root()
    if not root.is_absolute():
        root = (REPO / root).resolve()
    if not (root / "Castings").is_dir():
        if os.environ.get("XDEFECT_REQUIRE_GDXRAY"):
            pytest.fail(f"GDXray not found at {root} (XDEFECT_REQUIRE_GDXRAY is set)")
        pytest.skip(f"GDXray not found at {root}")
    return root


@pytest.fixture(scope="session")
def extra_root(gdxray_root: Path) -> Path:
    """``../shared/data/gdxray-extra`` (beside the GDXray root): nine more annotated series
    as the database ships them, quirks included."""
    root = gdxray_root.parent / "gdxray-extra"
    if not (root / "Castings").is_dir():
        if os.environ.get("XDEFECT_REQUIRE_GDXRAY"):
            pytest.fail(f"gdxray-extra not found at {root} (XDEFECT_REQUIRE_GDXRAY is set)")
        pytest.skip(f"gdxray-extra not found at {root}")
    return root


def make_fake_root(tmp: Path, n: int = 4, shape: tuple[int, int] = (40, 50),
                   gt_rows: list[str] | None = None, series: str = "C0099") -> Path:
    """A tiny GDXray-like root with ``n`` 8-bit images and an optional ground truth."""
    d = tmp / "root" / "Castings" / series
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(1, n + 1):
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(
            d / f"{series}_{i:04d}.png")
    if gt_rows is not None:
        (d / "ground_truth.txt").write_text("\n".join(gt_rows) + "\n")
    return tmp / "root"


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m xdefect ARGS`` and capture its output."""
    e = dict(os.environ)
    if env:
        e.update(env)
    return subprocess.run([sys.executable, "-m", "xdefect", *args], capture_output=True,
                          text=True, env=e, cwd=REPO)


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])
