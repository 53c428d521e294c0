"""How the detector's scores separate real defects from false alarms on castings it never
saw: per held-out series of a finished leave-series-out run of ``fcn_detector.py``, the
scores and sizes of the true positives and of the false alarms at each fold's chosen
threshold (IoU 0.5, COCO matching, as ``xdefect evaluate``).

If false alarms score as high as the defects found, no threshold (chosen on familiar
castings or per casting without labels) can trade them away without losing the defects:
what limits the AP is the ranking, not the operating point. Reads
``runs/fcn/NAME-loso5/fold*/results<suffix>.json``; writes ``--out`` (JSON, one entry per
run, read by ``experiments/results_tables.py``)::

    .venv/bin/python experiments/loso_scores.py --names fcn-bg-s2 fcn-bglcn-s2 fcn-ens-s2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from xdefect.evaluate import ImageResult, match_image, summarise
from xdefect.io import command_line, write_json

#: score above which a region is "certain" (probability)
HIGH = 0.99


def series_scores(images: list[dict]) -> dict[str, dict]:
    """Per series: defects, true positives, false alarms, their median scores and box
    sides (square root of the area, pixels), and the share of each scoring >= HIGH."""
    acc: dict[str, dict[str, list[float]]] = {}
    count: dict[str, dict[str, int]] = {}
    for im in images:
        boxes = np.asarray(im["boxes"], float).reshape(-1, 4)
        scores = np.asarray(im["scores"], float)
        gt = np.asarray(im["gt"], float).reshape(-1, 4)
        tp, _ = match_image(boxes, scores, gt)
        side = np.sqrt(np.clip((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]),
                               0, None))
        a = acc.setdefault(im["series"], {"tp": [], "fa": [], "tp_side": [], "fa_side": []})
        a["tp"] += scores[tp].tolist()
        a["fa"] += scores[~tp].tolist()
        a["tp_side"] += side[tp].tolist()
        a["fa_side"] += side[~tp].tolist()
        n = count.setdefault(im["series"], {"gt": 0, "images": 0})
        n["gt"] += len(gt)
        n["images"] += 1

    def med(v: list[float]) -> float | None:
        return round(float(np.median(v)), 4) if v else None

    def high(v: list[float]) -> float | None:
        return round(float(np.mean(np.asarray(v) >= HIGH)), 3) if v else None

    return {s: {"images": count[s]["images"], "defects": count[s]["gt"], "found": len(a["tp"]),
                "false_alarms": len(a["fa"]), "tp_score_median": med(a["tp"]),
                "fa_score_median": med(a["fa"]), "tp_high": high(a["tp"]),
                "fa_high": high(a["fa"]), "tp_side_median": med(a["tp_side"]),
                "fa_side_median": med(a["fa_side"])} for s, a in sorted(acc.items())}


def pooled_ap_by_score(images: list[dict]) -> dict[str, float]:
    """Pooled AP of the same detections ranked by their peak probability (as detected)
    and by their box area instead (does a region's size tell defects from false
    alarms?)."""
    out = {}
    for rule in ("peak", "area"):
        rs = []
        for im in images:
            b = np.asarray(im["boxes"], float).reshape(-1, 4)
            s = np.asarray(im["scores"], float)
            if rule == "area":
                s = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
            rs.append(ImageResult(im["key"], im["series"], b, s,
                                  np.asarray(im["gt"], float).reshape(-1, 4)))
        out[rule] = round(summarise(rs)["ap"], 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--names", nargs="+", required=True, help="fcn_detector.py run names")
    ap.add_argument("--work", type=Path, default=Path("runs/fcn"))
    ap.add_argument("--kfold", type=int, default=5)
    ap.add_argument("--suffix", default="-amin", help="the fold results files' suffix")
    ap.add_argument("--out", type=Path, default=Path("runs/loso_scores.json"))
    a = ap.parse_args()
    doc = json.loads(a.out.read_text()) if a.out.is_file() else {"runs": {}}
    for name in a.names:
        files = sorted((a.work / f"{name}-loso{a.kfold}").glob(f"fold*/results{a.suffix}.json"))
        if not files:
            raise SystemExit(f"{a.work / f'{name}-loso{a.kfold}'}: no fold*/results"
                             f"{a.suffix}.json (run the folds first)")
        images = [im for f in files for im in json.loads(f.read_text())["images"]]
        doc["runs"][name] = {"folds": len(files), "suffix": a.suffix, "high": HIGH,
                             "per_series": series_scores(images),
                             "pooled_ap_ranked_by": pooled_ap_by_score(images),
                             "command": command_line()}
        print(json.dumps({name: doc["runs"][name]["per_series"]}))
    write_json(a.out, doc)


if __name__ == "__main__":
    main()
