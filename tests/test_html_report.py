"""The browsable report: every link resolves, the marks agree with metrics.json, nothing
is fetched from outside the folder."""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
from conftest import run_cli
from PIL import Image


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.images: list[str] = []
        self.cards: list[dict[str, str]] = []
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "a":
            self.links.append(a["href"])
        elif tag == "img":
            self.images.append(a["src"])
        elif tag == "div" and a.get("class") == "card":
            self.cards.append(a)
        elif tag == "script":
            self.scripts += 1


def test_report_html_links_resolve_and_marks_agree(gdxray_root, tmp_path):
    out = tmp_path / "ev"
    proc = run_cli("evaluate", "--gdxray", str(gdxray_root), "--series", "C0015",
                   "--split", "test", "--out", str(out), "--html", "--threads", "2")
    assert proc.returncode == 0, proc.stderr
    assert "report.html" in proc.stdout
    m = json.loads((out / "metrics.json").read_text())
    page = _Page()
    page.feed((out / "report.html").read_text())
    assert len(page.cards) == m["images"] == 18
    assert sum(int(c["data-misses"]) for c in page.cards) == m["missed"]
    assert sum(int(c["data-alarms"]) for c in page.cards) == m["false_positives"]
    assert {c["data-series"] for c in page.cards} == {"C0015"}
    for href in page.links:  # each thumbnail opens its full overlay, beside the page
        assert not href.startswith(("http:", "https:", "/")) and (out / href).is_file(), href
    assert len(page.links) == m["images"]
    for src in page.images:  # embedded: the page stands alone
        assert src.startswith("data:image/")
        data = base64.b64decode(src.split(",", 1)[1])
        Image.open(io.BytesIO(data)).verify()
    assert len(page.images) == m["images"] + 1  # thumbnails and the PR curve
    assert page.scripts == 2


BROWSERS = ("chromium", "chromium-browser", "google-chrome")


@pytest.mark.skipif(not any(shutil.which(b) for b in BROWSERS),
                    reason="no headless Chromium on the PATH (apt-get install chromium)")
def test_report_in_headless_chromium(tmp_path):
    """As a person would see it: the page loads, its script runs (the shown-count is
    filled in), and the screenshot is not blank. A phantom run: no GDXray pixels."""
    from xdefect.pipelines import write_phantom_root

    root = write_phantom_root(tmp_path / "root", n=3, shape=(160, 224), series="C0999")
    out = tmp_path / "ev"
    proc = run_cli("evaluate", "--gdxray", str(root), "--split", "all", "--out", str(out),
                   "--html", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    exe = next(shutil.which(b) for b in BROWSERS if shutil.which(b))
    flags = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1000,900"]
    page = (out / "report.html").resolve().as_uri()
    shot = tmp_path / "shot.png"
    subprocess.run(flags + [f"--screenshot={shot}", page], check=True, capture_output=True,
                   timeout=120)
    dom = subprocess.run(flags + ["--dump-dom", page], check=True, capture_output=True,
                         text=True, timeout=120).stdout
    assert '<span id="shown">3</span>' in dom
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (900, 1000) and pixels.std() > 10
