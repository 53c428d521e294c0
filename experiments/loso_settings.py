"""Detection settings chosen across castings, not on the castings trained on (issue 13,
target 1).

Each leave-series-out fold of the library's layout (``experiments/loso_library.sh``,
``loso_backgrounds.sh``: ``WORK/foldI/TUNED/model.safetensors``) chose its threshold,
relative extent, box growth and joining on the tuning images of the twelve series its
model trained on, whose defects it has learnt and whose annotators' boxes it has learnt to
draw. ``experiments/loso_localisation.py`` shows the held-out castings' losses are mostly
boxes (too small on C0001, C0031, C0036; too big on C0002), which those settings decide.
The issue allows choosing settings by the leave-series-out figure itself; done without
letting a casting choose its own settings, that is a nested choice:

1. for every fold, its model scans every image of its held-out series once (the card's
   views, ``tta``) and the regions of each score map are found at every setting of the
   grid (``--thetas`` x ``--extents`` x ``--grows`` x ``--joins``; the sweep of
   :func:`xdefect.protocol.model_results`, as ``xdefect tune-segmenter`` does on tuning
   images); each series' detections per setting are cached in
   ``WORK/foldI/grid/SERIES.json`` (resumable, one series at a time);
2. for every fold, the setting with the best pooled AP (IoU 0.5) over the **other** folds'
   held-out series (scored by models that never saw them; ``--choose-on odd``: only their
   odd images, no test image of any series), applied to the fold's own held-out series;
   pooled over the folds.

Also recorded: each fold's own tuning choice read from the same grid (it must reproduce
the fold's saved held-out detections: a check of the grid) and the best single setting for
all folds (a diagnosis that reads the held-out labels: nothing is chosen by it). Writes
``--out`` (JSON; the layout of ``loso_library_pool.py``'s figures), read by
``experiments/results_tables.py`` (block ``loso-settings``)::

    .venv/bin/python experiments/loso_settings.py --work runs/seg/loso5-bg-ext --threads 1
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
from loso_library_pool import figures, held_out_results  # experiments/, beside this script

from xdefect import gdxray
from xdefect.checkpoint import load_model
from xdefect.detect import DetectParams
from xdefect.evaluate import ImageResult, summarise
from xdefect.io import command_line, write_json
from xdefect.models import setup_device
from xdefect.protocol import model_results, select
from xdefect.segment import score_map

__all__ = ["EXTENTS", "GROWS", "JOINS", "THETAS", "choose", "fold_grid", "grid_settings",
           "key_of", "main", "nested"]

#: the grid (every fold's own choice of the backgrounds and library folds lies in it)
THETAS = (-0.6, 0.0, 0.4, 0.6, 0.8, 0.9, 0.94, 0.98)
EXTENTS = (0.0, 0.2, 0.3, 0.4, 0.5, 0.6)
GROWS = (0, 1, 2, 3, 4, 6)
JOINS = (-1, 0)
KEYS = ("theta", "extent_fraction", "grow", "join")


def key_of(p: DetectParams | dict) -> str:
    """A setting's name: ``theta/extent/grow/join``, then ``/xS`` when its box scale S
    (``DetectParams.box_scale``) is not 1."""
    d = p if isinstance(p, dict) else p.to_dict()
    key = "/".join(f"{float(d[k]):g}" if k in ("theta", "extent_fraction") else
                   f"{int(d[k])}" for k in KEYS)
    scale = float(d.get("box_scale", 1.0))
    return key if scale == 1 else f"{key}/x{scale:g}"


def grid_settings(base: DetectParams, thetas=THETAS, extents=EXTENTS, grows=GROWS,
                  joins=JOINS) -> list[DetectParams]:
    """``base`` (views, link, area as the fold's card) at every setting of the grid, every
    detection reported (``min_score`` -1)."""
    return [replace(base, theta=t, extent_fraction=e, grow=g, join=j, min_score=-1.0)
            for t in thetas for e in extents for g in grows for j in joins]


def _series_grid(net, root: Path, series: str, settings: list[DetectParams], device
                 ) -> dict:
    """One held-out series' detections at every setting (every image, ``split`` all)."""
    sel = select(root, [series], "all")
    sweep: dict = dict.fromkeys(settings)
    base = settings[0]

    def score(image: np.ndarray, params: DetectParams):
        return score_map(net, image, device, params.tta)

    for _ in model_results(sel, net, base, "segmenter", sweep=sweep, score_fn=score):
        pass
    return {"series": series, "root": str(root),
            "images": [{"key": r.key, "gt": np.asarray(r.gt).tolist()} for r in sweep[base]],
            "settings": {key_of(p): [{"boxes": np.asarray(r.boxes).tolist(),
                                      "scores": np.asarray(r.scores).tolist()}
                                     for r in rs] for p, rs in sweep.items()}}


def fold_grid(fold: Path, roots: list[Path], tuned: str, settings_of, device
              ) -> tuple[dict, dict[str, list[ImageResult]]] | None:
    """A fold's card and its held-out series' results per setting (``{key: results}``),
    computing the settings missing from each series' cache (``fold/grid/SERIES.json``;
    one scan of the series for all of them) and adding them to it; None until the fold
    is tuned and evaluated."""
    got = held_out_results(fold, roots, tuned)
    if got is None:
        return None
    card, held, saved, _ = got
    net = None
    base = DetectParams.from_dict(card["detection"])
    settings = settings_of(base)
    out: dict[str, list[ImageResult]] = {key_of(p): [] for p in settings}
    for s, root in sorted(held.items()):
        cache = fold / "grid" / f"{s}.json"
        doc = json.loads(cache.read_text()) if cache.is_file() else None
        keys = [r.stem for r in select(root, [s], "all").records]
        if doc is not None and (doc.get("tta") != base.tta
                                or [im["key"] for im in doc["images"]] != keys):
            doc = None  # other views or other images: every setting scanned again
        missing = [p for p in settings if doc is None or key_of(p) not in doc["settings"]]
        if missing:
            if net is None:
                net, _ = load_model(fold / tuned / "model.safetensors", device)
            print(f"{fold.name}: scanning {s} at {len(missing)} settings", flush=True)
            new = {**_series_grid(net, root, s, missing, device), "tta": base.tta}
            if doc is not None:  # the same views and images: the settings it holds kept
                new["settings"] = {**doc["settings"], **new["settings"]}
            doc = new
            write_json(cache, doc)
        gts = [np.asarray(im["gt"], float).reshape(-1, 4) for im in doc["images"]]
        for k in out:
            out[k] += [ImageResult(im["key"], s, np.asarray(d["boxes"], float).reshape(-1, 4),
                                   np.asarray(d["scores"], float), gt)
                       for im, d, gt in zip(doc["images"], doc["settings"][k], gts,
                                            strict=True)]
    mine = key_of(card["detection"])
    if mine in out and summarise(out[mine])["ap"] != summarise(saved)["ap"]:
        raise SystemExit(f"loso_settings.py: {fold}: the grid at the fold's own settings "
                         f"({mine}) does not reproduce its saved held-out detections")
    return card, out


def choose(grids: list[dict[str, list[ImageResult]]], odd_only: bool = False
           ) -> tuple[str, dict[str, float]]:
    """The setting with the best pooled AP over ``grids`` (folds' results per setting;
    ``odd_only``: their odd images only), the first of equals in grid order; and the AP of
    every setting."""
    keys = list(grids[0])
    aps = {}
    for k in keys:
        rs = [r for g in grids for r in g[k]
              if not odd_only or gdxray.split_of(int(r.key[-4:])) == "odd"]
        aps[k] = summarise(rs)["ap"]
    return max(keys, key=lambda k: aps[k]), aps


def nested(done: dict[str, tuple[dict, dict[str, list[ImageResult]]]], odd_only: bool
           ) -> tuple[list[dict], list[ImageResult], list[ImageResult]]:
    """Each fold's setting chosen on the other folds (:func:`choose`), its figures there
    and at its own tuning choice; returns the fold records, the pooled results at the
    chosen settings and at each fold's own."""
    folds, chosen, own = [], [], []
    series = [r.series for _, grid in done.values() for r in next(iter(grid.values()))]
    held = {n: {r.series for r in next(iter(g.values()))} for n, (_, g) in done.items()}
    twice = sorted({s for s in series if sum(s in h for h in held.values()) > 1})
    if twice:  # a fold's own held-out series would help choose its settings
        raise SystemExit(f"loso_settings.py: {', '.join(twice)} held out by more than one "
                         "fold: the folds are not a partition")
    for name, (card, grid) in done.items():
        best, aps = choose([g for n, (_, g) in done.items() if n != name], odd_only)
        mine = key_of(card["detection"])
        if mine not in grid:
            raise SystemExit(f"loso_settings.py: {name}: its own settings {mine} are not in "
                             "the grid")
        chosen += grid[best]
        own += grid[mine]
        folds.append({"fold": name, "held_out": sorted({r.series for r in grid[best]}),
                      "trained_on": card["lineage"][-1]["data_series"],
                      "train_minutes": (card.get("training") or {}).get("minutes"),
                      "own": {"setting": mine, "ap": summarise(grid[mine])["ap"]},
                      "chosen": {"setting": best, "others_ap": aps[best],
                                 "others_ap_at_own": aps[mine]},
                      **figures(grid[best])})
    return folds, chosen, own


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("runs/seg/loso5-bg-ext"))
    ap.add_argument("--gdxray", type=Path, nargs="+",
                    default=[Path("../shared/data/gdxray"), Path("../shared/data/gdxray-extra")])
    ap.add_argument("--tuned", default="tta8-join", help="each fold's tuned model folder")
    ap.add_argument("--thetas", type=float, nargs="+", default=list(THETAS))
    ap.add_argument("--extents", type=float, nargs="+", default=list(EXTENTS))
    ap.add_argument("--grows", type=int, nargs="+", default=list(GROWS))
    ap.add_argument("--joins", type=int, nargs="+", default=list(JOINS))
    ap.add_argument("--choose-on", choices=("all", "odd"), default="all",
                    help="the other folds' held-out images that choose: all, or only the "
                         "odd ones (no test image of any series)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None,
                    help="default: runs/loso5_settings_WORKNAME[-odd].json")
    a = ap.parse_args()
    device = setup_device("cpu", a.threads)

    def settings_of(base: DetectParams) -> list[DetectParams]:
        return grid_settings(base, tuple(a.thetas), tuple(a.extents), tuple(a.grows),
                             tuple(a.joins))

    done = {}
    for fold in sorted(p for p in a.work.glob("fold*") if p.is_dir()):
        got = fold_grid(fold, a.gdxray, a.tuned, settings_of, device)
        if got is not None:
            done[fold.name] = got
    if len(done) < 2:
        raise SystemExit(f"loso_settings.py: {a.work}: fewer than two folds evaluated (a "
                         "fold's settings are chosen on the others)")
    folds, chosen, own = nested(done, a.choose_on == "odd")
    keys = list(next(iter(done.values()))[1])
    single = {k: summarise([r for _, g in done.values() for r in g[k]])["ap"] for k in keys}
    best_single = max(keys, key=lambda k: single[k])
    odd = "-odd" if a.choose_on == "odd" else ""
    out = a.out or Path(f"runs/loso5_settings_{a.work.name}{odd}.json")
    write_json(out, {
        "protocol": "leave-series-out, 5 folds over the 15 annotated series of both roots; "
                    "each fold's model trained on the other twelve series; its detection "
                    "settings chosen on the other folds' held-out series; every image of "
                    "the held-out series scored once",
        "work": str(a.work), "tuned": a.tuned,
        "chosen_on": "the other folds' held-out series, "
        + ("all images" if a.choose_on == "all" else "odd images only"),
        "grid": {"thetas": a.thetas, "extents": a.extents, "grows": a.grows,
                 "joins": a.joins, "settings": len(keys)},
        "point": "all detections", "folds_done": len(folds), "folds": folds,
        "pooled": figures(chosen), "own_settings": figures(own),
        "best_single_setting": {"setting": best_single, "ap": single[best_single]},
        "command": command_line()})
    print(f"{out}: pooled AP {summarise(chosen)['ap']:.4f} (each fold's own settings: "
          f"{summarise(own)['ap']:.4f}; best single setting {best_single}: "
          f"{single[best_single]:.4f}); chosen "
          + ", ".join(f"{f['fold']} {f['chosen']['setting']}" for f in folds))


if __name__ == "__main__":
    main()
