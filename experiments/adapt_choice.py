"""Choosing what the source's detections become per casting, without labels.

`xdefect adapt --source-regions` decides what a segmenter source's own detections on the
new images become: ``distill`` (the default: soft targets) or ``ignore`` (left out of the
loss). ``docs/results.md`` ("What the source's detections become") found each winning on
different castings. This script tests one label-free rule: **ignore where the source raises
more than R regions per adaptation image, distil elsewhere** (a source that fires
everywhere is mostly wrong there; one that raises a region or two is mostly right). For
each R of ``--rules`` it pools, over the series, the results of the adapted model that the
rule picks per series, on the tuning images (odd, n % 4 == 1: where R may be chosen) and on
the test images (even: reported only). It trains nothing: it reads two finished
``experiments/adapt_series.py`` runs (the same series and source), and evaluates their
adapted models once per split. Writes ``--out``::

    .venv/bin/python experiments/adapt_choice.py --ignore runs/adapt-series-default-ign05 \\
        --distill runs/adapt-series-distill --out runs/adapt_choice.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from xdefect.detector import Detector
from xdefect.evaluate import ImageResult, summarise
from xdefect.io import command_line, write_json
from xdefect.protocol import evaluate_folder


def regions_per_image(run: Path, series: str) -> float:
    """The source's regions per adaptation image of ``series`` (the adapted card's count:
    the source and its settings are the same in both runs, so either run's count)."""
    a = json.loads((run / series / "adapted" / "model.json").read_text())["adaptation"]
    found = a.get("source_regions_found", a.get("source_regions_distilled"))
    if found is None:
        raise SystemExit(f"{run / series}: the card does not record the source's regions")
    return found / a["images"]


def results(run: Path, root: str, series: str, split: str, threads: int
            ) -> list[ImageResult]:
    det = Detector.load(run / series / "adapted" / "model.safetensors", threads=threads)
    return evaluate_folder(det, root, split, [series]).results


def series_ap(rs: list[ImageResult]) -> float | None:
    """AP of one series' images; None where they hold no defect."""
    m = summarise(rs)
    return m["ap"] if m["gt_boxes"] else None


def figures(rs: list[ImageResult]) -> dict:
    m = summarise(rs)
    return {"ap": m["ap"], "true_positives": m["true_positives"], "gt_boxes": m["gt_boxes"],
            "false_alarms_per_image": m["false_positives"] / max(m["images"], 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ignore", type=Path, required=True, help="adapt_series run: ignore")
    ap.add_argument("--distill", type=Path, required=True, help="adapt_series run: distill")
    ap.add_argument("--rules", type=float, nargs="+",
                    default=[0, 1, 1.5, 2, 3, 5, 8, 9, 11, 12, 14, 1000],
                    help="thresholds R on the source's regions per image (0: always "
                         "ignore; a large R: always distil)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("runs/adapt_choice.json"))
    a = ap.parse_args()
    docs = {k: json.loads((r / "adapt_series.json").read_text())
            for k, r in (("ignore", a.ignore), ("distill", a.distill))}
    series = list(docs["distill"]["per_series"])
    if list(docs["ignore"]["per_series"]) != series or \
            docs["ignore"]["source"] != docs["distill"]["source"]:
        raise SystemExit("the two runs must adapt the same series from the same source")
    root = docs["distill"]["root"]
    runs = {"ignore": a.ignore, "distill": a.distill}
    per = {s: regions_per_image(a.distill, s) for s in series}
    res = {(k, s, split): results(runs[k], root, s, split, a.threads)
           for k in runs for s in series for split in ("tuning", "test")}
    rows = []
    for r in a.rules:
        pick = {s: "ignore" if per[s] > r else "distill" for s in series}
        rows.append({"rule": r, "pick": pick, **{
            split: figures([x for s in series for x in res[(pick[s], s, split)]])
            for split in ("tuning", "test")}})
    by_series = {s: {"regions_per_image": round(per[s], 2), **{
        f"{k}_{split}": series_ap(res[(k, s, split)]) for k in runs
        for split in ("tuning", "test")}} for s in series}
    write_json(a.out, {"root": root, "source": docs["distill"]["source"],
                       "runs": {k: str(v) for k, v in runs.items()}, "series": by_series,
                       "rows": rows, "command": command_line()})
    for row in rows:
        print(json.dumps({"rule": row["rule"], "tuning_ap": round(row["tuning"]["ap"], 4),
                          "test_ap": round(row["test"]["ap"], 4)}))


if __name__ == "__main__":
    main()
