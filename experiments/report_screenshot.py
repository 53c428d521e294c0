"""The report screenshot of the docs: a phantom run (no GDXray pixels, so it may be shown).

Writes a GDXray-like root of synthetic wheel radiographs with simulated voids
(:func:`xdefect.pipelines.write_phantom_root`), evaluates the bundled default on it with
``--html`` into ``--out``, then loads ``report.html`` in headless Chromium and saves a
screenshot to ``--shot`` (default ``docs/img/report_phantom.png``)::

    .venv/bin/python experiments/report_screenshot.py [--out runs/report-phantom]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from xdefect.pipelines import write_phantom_root

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def browser() -> str | None:
    """The headless-capable browser on the PATH, if any."""
    return next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)


def screenshot(page: Path, shot: Path, size: str = "1200,1400") -> str:
    """Screenshot ``page`` with headless Chromium; returns the DOM after its scripts ran."""
    exe = browser()
    if exe is None:
        raise SystemExit("no Chromium on the PATH (apt-get install chromium)")
    flags = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--allow-file-access-from-files", f"--window-size={size}"]
    subprocess.run(flags + [f"--screenshot={shot.resolve()}", page.resolve().as_uri()],
                   check=True, capture_output=True, timeout=120)
    dom = subprocess.run(flags + ["--dump-dom", page.resolve().as_uri()], check=True,
                         capture_output=True, text=True, timeout=120)
    return dom.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/report-phantom"))
    ap.add_argument("--shot", type=Path, default=Path("docs/img/report_phantom.png"))
    ap.add_argument("--images", type=int, default=8)
    a = ap.parse_args()
    # the demo's size (the radiographs the model knows are 572x768), a series name that no
    # model trained on
    root = write_phantom_root(a.out / "root", n=a.images, shape=(572, 768), defects=6,
                              series="C0999")
    ev = a.out / "evaluation"
    subprocess.run([sys.executable, "-m", "xdefect", "evaluate", "--gdxray", str(root),
                    "--split", "all", "--out", str(ev), "--html"], check=True)
    a.shot.parent.mkdir(parents=True, exist_ok=True)
    screenshot(ev / "report.html", a.shot)
    print(f"{a.shot}: screenshot of {ev / 'report.html'}")


if __name__ == "__main__":
    main()
