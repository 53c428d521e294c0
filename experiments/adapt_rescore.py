"""Score finished adaptation runs again from their saved detections.

``experiments/adapt_series.py`` scores each series' source and adapted model on its even
images when it runs. When the scoring rules change after the run (2026-11-30: the images a
static series' ground truth leaves out, GDXray C0041's 36 of 37, are no longer scored as
defect-free: ``xdefect.gdxray.SeriesGroundTruth.covers``), this scores the saved
detections (``RUN/SERIES/eval-source/detections``, ``eval-adapted/detections``) again under
the current rules and rewrites ``RUN/adapt_series.json``: per series and pooled, source and
adapted. A series none of whose even images is annotated is recorded as unscored (its
rows ``null``). Nothing is detected again and nothing is chosen. The tuning-image figures
(``--tuning`` runs) are not saved per image and are kept as scored then (noted in the
file)::

    .venv/bin/python experiments/adapt_rescore.py runs/adapt-series-join
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from adapt_series import has_scored_images, row  # experiments/, beside this script

from xdefect.evaluate import ImageResult, summarise
from xdefect.io import command_line, write_json
from xdefect.protocol import evaluate_detections

__all__ = ["main", "rescore"]


def rescore(run: Path) -> dict:
    """``run``'s ``adapt_series.json`` with every series and the pools scored again from
    the saved detections (see the module docstring)."""
    doc = json.loads((run / "adapt_series.json").read_text())
    root = Path(doc["root"])
    pooled: dict[str, list[ImageResult]] = {"source": [], "adapted": []}
    unscored = []
    for s, v in doc["per_series"].items():
        if not has_scored_images(root, s):
            v["source"] = v["adapted"] = None
            unscored.append(s)
            continue
        for name in pooled:
            rs = evaluate_detections(run / s / f"eval-{name}" / "detections", root, "test",
                                     [s]).results
            v[name] = row(summarise(rs))
            pooled[name] += rs
    doc["pooled_source"] = row(summarise(pooled["source"]))
    doc["pooled_adapted"] = row(summarise(pooled["adapted"]))
    doc["unscored_series"] = unscored
    doc["rescored"] = {"command": command_line(),
                       "why": "scored again from the saved detections under the current "
                              "rules: a static series' images its ground truth leaves out "
                              "are not scored (xdefect.gdxray.SeriesGroundTruth.covers)"}
    if "pooled_tuning" in doc:
        doc["pooled_tuning_note"] = ("tuning-image figures as scored when the run was made "
                                     "(their detections are not saved)")
    return doc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path, nargs="+", help="experiments/adapt_series.py --out folders")
    a = ap.parse_args()
    for run in a.runs:
        doc = rescore(run)
        write_json(run / "adapt_series.json", doc)
        print(f"{run}: pooled AP source {doc['pooled_source']['ap']:.4f}, adapted "
              f"{doc['pooled_adapted']['ap']:.4f}"
              + (f"; unscored: {', '.join(doc['unscored_series'])}"
                 if doc["unscored_series"] else ""))


if __name__ == "__main__":
    main()
