"""Fill the measured tables of ``docs/results.md`` from the experiments' JSON outputs.

Reads ``runs/table3.json`` (``experiments/table3.py``), ``runs/table4.json``
(``experiments/table4.py``), ``runs/series-out/series_out.json`` and
``runs/series-out-all/series_out.json`` (``experiments/series_out.py``),
``runs/pyramid-default.json`` (``experiments/pyramid.py``),
``runs/adapt-series/adapt_series.json`` (``experiments/adapt_series.py``),
``runs/table3_diagnosis.json`` (``experiments/table3_diagnosis.py``), the patch
classifier ``xnet2-xdefect``'s evaluations (the default model until ``segnet-xdefect``)
``runs/eval-test-xdefect/metrics.json`` (``xdefect evaluate --split test``) and
``runs/eval-extra-default/metrics.json`` (``xdefect evaluate --gdxray
../shared/data/gdxray-extra --split all``), the default model's
``runs/eval-test-long-hard-ext-tta8-join`` and
``runs/eval-extra-test-long-hard-ext-tta8-join`` (and the
evaluations of its other settings, with the re-tuned cards under ``runs/seg/``: the
``segment-boxes`` block); rewrites the blocks between ``<!-- name -->``
and ``<!-- /name -->`` markers of the report (``table3``, ``table4``, ``seriesout``,
``seriesout-all``, ``pyramid``, ``adapt``, ``extra-default``, ``table3-diagnosis``,
``ablation``, ``errors``) and copies the
PR curves of the test evaluations to ``docs/img/pr_curve_even.png`` (``xnet2-xdefect``) and
``docs/img/pr_curve_even_default.png`` (the default model) (plots: no GDXray pixels).
The ``bundled`` block comes from the model cards (``experiments/model_figures.py``, run
here too). The prose around the
blocks is written by hand.

``runs/`` is scratch and does not survive a new checkout: each run first restores into
``runs/`` the result files archived in ``experiments/results/`` (committed) that are missing
there, and last archives there the result files it found (:data:`ARCHIVED`; documents and
tuned cards, no weights or images). A block whose files are gone is left as it was;
the ablation table keeps the rows whose files are gone (:func:`merge_rows`).

    .venv/bin/python experiments/results_tables.py [--report docs/results.md]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

import model_figures  # experiments/, beside this script

from xdefect.checkpoint import rebuild_ensemble
from xdefect.errors import InputError
from xdefect.io import atomic_path, sha256_file

#: captions of the per-series test tables of the segmenter on simulated defects only
#: (``sim-only-segmenter``) and of the default model on ``gdxray-extra`` (``extra-segnet``)
SIM_ONLY_NOTE = (
    "Segmenters trained on simulated defects only (of `seg-variants`: no real defect as a "
    "target; the labels of the train images only keep real defects out of the background "
    "and of the mined hard negatives), their settings chosen on the paper series' tuning "
    "images, on the paper's test images (read once each, reported only; no model trained "
    "on a real defect, so both figures are leak-free):")
EXTRA_SEGNET_NOTE = (
    "The default model `segnet-xdefect` (trained on the paper's series only; its threshold, "
    "box growth and mirror views chosen on the tuning images of both roots) on the test "
    "(even) images of the nine `gdxray-extra` series, castings it never trained on "
    "(`xdefect evaluate --gdxray ../shared/data/gdxray-extra --split test`):")
#: the adaptation that distils only the source's confident regions (``--ignore-theta 0.9``)
ADAPT_CONFIDENT = Path("runs/adapt-series-distill-ign09/adapt_series.json")
#: the default adaptation (distill) from the default model of 2026-11-30 (hard negatives,
#: relative extent)
ADAPT_LONGHARD = Path("runs/adapt-series-longhard-ext/adapt_series.json")
#: the same from the default model with eight views (2026-11-30, later the same day)
ADAPT_TTA8 = Path("runs/adapt-series-tta8/adapt_series.json")
ADAPT_JOIN = Path("runs/adapt-series-join/adapt_series.json")
ADAPT_JOIN_S1 = Path("runs/adapt-series-join-s1/adapt_series.json")
#: adaptation from each series' own leave-series-out fold model (``--from-folds``)
ADAPT_LOSO = Path("runs/adapt-series-loso/adapt_series.json")
ADAPT_LOSO_LIB = Path("runs/adapt-series-loso-library/adapt_series.json")
#: from the backgrounds recipe's fold models, only their confident regions distilled
ADAPT_LOSO_BG = Path("runs/adapt-series-loso-bg-ign09/adapt_series.json")
#: from the local contrast channel's fold models (every detection distilled)
ADAPT_LOSO_LCN = Path("runs/adapt-series-loso-lcn/adapt_series.json")
#: The result files the tables are generated from, kept in the repository: ``runs/`` is
#: scratch (weights, detections, logs) and does not survive a new checkout, so every run of
#: this script copies the tables' inputs found there into ``experiments/results/`` (the same
#: layout) and, first, copies back into ``runs/`` the archived ones missing there.
ARCHIVE = model_figures.ROOT / "experiments" / "results"
RUNS = Path("runs")
#: Globs under ``runs/`` of the archived files: result documents and tuned cards, never
#: images, weights or crops of GDXray.
#: (A leave-series-out fold's detections, ``runs/fcn/*/fold*/results*.json``, 0.2-0.4 MB
#: each, stay in ``runs/``: the tables read the pooled ``runs/fcn_loso_*.json``.)
#: The leave-series-out folds of the library's recipe (``runs/seg/loso5-*/foldI``, made by
#: ``experiments/loso_library.sh`` and its kin) are archived whole but for copies of the
#: weights and images: the cards, the held-out series' saved detections
#: (``eval-SERIES/detections``, which ``experiments/loso_library_pool.py`` pools, and
#: ``loso_box_scale.py`` resizes) and the fold models (:data:`ARCHIVED_WEIGHTS`, 0.7 MB
#: each), so that a fold trained in one session is pooled, chosen again or adapted from in
#: the next. Not the cards of models derived from a fold for one held-out series
#: (``foldI/boxesK-SERIES``, ``experiments/loso_box_examples.py``: 0.45 MB each, remade in
#: minutes): their result file holds what the tables show.
ARCHIVED = ("*.json", "*/adapt_series.json", "*/series_out.json", "*/metrics.json",
            "*/*/eval-source/metrics.json", "seg/*/model.json",
            "seg/loso5-*/fold*/tta*/model.json", "seg/loso5-*/fold*/train/model.json",
            "seg/loso5-*/fold*/train/hard_negatives.json",
            "seg/loso5-*/fold*/eval-*/metrics.json",
            "seg/loso5-*/fold*/eval-*/detections/*.json")
#: Weights archived beside the documents (safetensors only, never a pickle): the finished
#: leave-series-out fold models, and a fold model's resumable checkpoint
#: (``last.safetensors``: weights, optimiser and random state, 2 MB) while it trains, so that
#: training cut short by the end of a session resumes in the next
#: (``experiments/loso_backgrounds.sh`` resumes it); dropped from the archive once the
#: fold's model is finished (:func:`drop_finished_checkpoints`).
#: Also the segmenters trained on simulated defects alone that the simulation-only
#: ensembles average (0.7 MB each, and their checkpoints while they train): the ensembles
#: are remade from them (``xdefect models ensemble``), so a later session adds members
#: instead of training the old ones again (``sim-hard``, ``sim-hard-xm`` and
#: ``sim-hard-xm-s1`` were not kept and are lost).
SIM_MEMBERS = ("sim-hard-xm-blur2", "sim-hard-xm-blur2-s1", "sim-hard-xm-s2", "sim-hard-xm360",
               "sim-hard-xm-lcn", "sim-hard-xm-lcn-s1", "sim-hard-xm-lcn-s2",
               "sim-hard-xm-lcn-s3")
#: And the segmenters trained on real defects that an ensemble may take as members beside
#: the bundled ``segnet-xdefect`` (``long-hard``'s weights).
REAL_MEMBERS = ("long-hard-lcn",)
ARCHIVED_WEIGHTS = ("seg/loso5-*/fold*/train/model.safetensors",
                    "seg/loso5-*/fold*/train/last.safetensors",
                    *(f"seg/{n}/{f}.safetensors" for n in SIM_MEMBERS + REAL_MEMBERS
                      for f in ("model", "last")))
#: A larger file (per-image detections of many images) stays in ``runs/`` only.
MAX_ARCHIVED_BYTES = 3_000_000
#: a run's hard negatives so far (``xdefect.train_segment.HARD_FILE``), archived beside
#: its checkpoint: a resumed run reads them
HARD_NEGATIVES = "hard_negatives.json"


def restore(archive: Path = ARCHIVE, runs: Path = RUNS) -> list[Path]:
    """Copy every archived result file missing from ``runs`` back there (never replacing
    one); returns the files restored."""
    out = []
    kept = [f for f in archive.rglob("*") if f.suffix in (".json", ".safetensors")
            ] if archive.is_dir() else []
    for f in sorted(kept):
        dst = runs / f.relative_to(archive)
        if not dst.exists():
            _write(dst, f.read_bytes())
            out.append(dst)
    return out


def restore_ensembles(runs: Path = RUNS) -> tuple[list[Path], list[str]]:
    """Rebuild the weights of every ensemble card under ``runs`` that lacks them (the
    archive keeps ensemble cards, not their weights, which are only their members')
    from the member files the card records (:func:`xdefect.checkpoint.rebuild_ensemble`:
    members' and result's checksums checked). Member paths are as recorded, relative to
    the project root. Returns (weights written, one line per card left without them:
    a member not archived, or a checksum that differs)."""
    done, left = [], []
    for card, doc in _cards_without_weights(runs):
        arch = doc.get("arch")
        if not (isinstance(arch, dict) and arch.get("members")):
            continue
        try:
            done.append(rebuild_ensemble(card))
        except InputError as exc:
            left.append(str(exc))
    return done, left


def restore_retuned(runs: Path = RUNS) -> tuple[list[Path], list[str]]:
    """Copy back the weights of every re-tuned copy under ``runs`` that lacks them (a
    ``tune-segmenter`` output: the archive keeps its card, whose weights are its
    source's, unchanged): the file its card's ``retuned.from`` records, when that file
    matches both the recorded checksum and the card's ``weights_sha256``. Returns (weights
    written, one line per card left without them; a copy of a copy is restored once its
    source is)."""
    done: list[Path] = []
    while True:
        new, left = _retuned_pass(runs)
        done += new
        if not new:
            return done, left


def _cards_without_weights(runs: Path) -> list[tuple[Path, dict]]:
    """Every model card under ``runs`` (``model.json``, a JSON object) whose tensors file
    is missing, with its document."""
    out = []
    for card in sorted(runs.rglob("model.json")):
        if card.with_suffix(".safetensors").exists():
            continue
        try:
            doc = json.loads(card.read_text())
        except (ValueError, UnicodeDecodeError):
            continue
        if isinstance(doc, dict):
            out.append((card, doc))
    return out


def _retuned_pass(runs: Path) -> tuple[list[Path], list[str]]:
    done, left = [], []
    for card, doc in _cards_without_weights(runs):
        weights = card.with_suffix(".safetensors")
        retuned, arch = doc.get("retuned"), doc.get("arch")
        src = retuned.get("from") if isinstance(retuned, dict) else None
        if not isinstance(src, dict) or (isinstance(arch, dict) and arch.get("members")):
            continue  # not a re-tuned copy (an ensemble's: restore_ensembles)
        f = Path(str(src.get("file")))
        if not f.is_file():
            left.append(f"{card}: its source {f} is missing")
        elif not (src.get("sha256") == doc.get("weights_sha256") == sha256_file(f)):
            left.append(f"{card}: {f} is not the weights it records")
        else:
            _write(weights, f.read_bytes())
            done.append(weights)
    return done, left


def _write(dst: Path, data: bytes) -> None:
    """``data`` to ``dst`` all or nothing (:func:`xdefect.io.atomic_path`)."""
    with atomic_path(dst) as tmp:
        tmp.write_bytes(data)


def archive_results(runs: Path = RUNS, archive: Path = ARCHIVE,
                    globs: tuple[str, ...] = ARCHIVED, max_bytes: int = MAX_ARCHIVED_BYTES,
                    weights: tuple[str, ...] = ARCHIVED_WEIGHTS
                    ) -> tuple[list[Path], list[Path]]:
    """Copy the result files of ``runs`` matching ``globs`` (JSON documents) or
    ``weights`` (``*.safetensors``) into ``archive`` (the same relative paths) where absent
    or different, each written under a temporary name and renamed; returns (files
    archived, files left out: over ``max_bytes``, or not what their glob promises)."""
    done, left = [], []
    docs = {f for g in globs for f in runs.glob(g) if f.is_file()}
    models = {f for g in weights for f in runs.glob(g) if f.is_file()
              and not _finished_checkpoint(f)}
    # what a checkpoint needs to resume: its card and the run's hard negatives so far
    docs |= {d for f in models if f.name == "last.safetensors"
             for d in (f.with_suffix(".json"), f.parent / HARD_NEGATIVES) if d.is_file()}
    for f in sorted(docs | models):
        if f.stat().st_size > max_bytes:  # never read whole
            left.append(f)
            continue
        data = f.read_bytes()
        if not (f.suffix == ".safetensors" if f in models else _is_json(data)):
            left.append(f)
            continue
        dst = archive / f.relative_to(runs)
        if dst.is_file() and dst.read_bytes() == data:
            continue
        _write(dst, data)
        done.append(dst)
    return done, left


def drop_finished_checkpoints(archive: Path = ARCHIVE) -> list[Path]:
    """Delete every archived ``last.safetensors`` (a training checkpoint) whose run folder
    in ``archive`` holds the finished ``model.safetensors``, with its card
    (``last.json``); returns the checkpoints deleted."""
    gone = [f for f in sorted(archive.rglob("last.safetensors")) if _finished_checkpoint(f)
            ] if archive.is_dir() else []
    for f in gone:
        f.unlink()
        f.with_suffix(".json").unlink(missing_ok=True)
    return gone


def _finished_checkpoint(f: Path) -> bool:
    """Whether ``f`` is a training checkpoint (``last.safetensors``) beside its run's
    finished ``model.safetensors``: stale, never archived."""
    return f.name == "last.safetensors" and (f.parent / "model.safetensors").is_file()


def _is_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except ValueError:
        return False
    return True


def _f(x, nd: int = 4) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def table3(doc: dict) -> str:
    lines = ["| arch | train acc | test acc (real C0001) | paper train | paper test | "
             "patches seen | seconds |", "|---|---|---|---|---|---|---|"]
    for r in doc["rows"]:
        lines.append(f"| {r['arch']} | {_f(r['train_acc'])} | {_f(r['test_acc'])} | "
                     f"{_f(r['paper_train_acc'])} | {_f(r['paper_test_acc'])} | "
                     f"{r['patches_seen']:,} | {r['train_seconds']:.0f} |")
    return "\n".join(lines)


def table4(doc: dict) -> str:
    lines = ["| dataset | train acc | val acc | AP (even) | AP11 | TP / FP / missed | "
             "paper train | paper val | paper mAP |", "|---|---|---|---|---|---|---|---|---|"]
    order = ["E100G000*", "E100G000", "E075G025", "E050G050", "E025G075", "E000G100"]
    rows = sorted(doc["rows"], key=lambda r: order.index(r["dataset"]))
    for r in rows:
        ap = _f(r["ap"])
        if "ap_mean_of_series" in r:
            ap += f" (mean of series {_f(r['ap_mean_of_series'])})"
        lines.append(f"| {r['dataset']} | {_f(r['train_acc'])} | {_f(r['val_acc'])} | {ap} | "
                     f"{_f(r['ap11'])} | {r['true_positives']} / {r['false_positives']} / "
                     f"{r['missed']} | {_f(r['paper_train_acc'])} | {_f(r['paper_val_acc'])} | "
                     f"{_f(r['paper_ap'])} |")
    series = sorted({s for r in rows for s in r["per_series_ap"]})
    lines += ["", "AP per series (even images):", "",
              "| dataset | " + " | ".join(series) + " |",
              "|---|" + "---|" * len(series)]
    for r in rows:
        lines.append(f"| {r['dataset']} | " + " | ".join(_f(r["per_series_ap"].get(s))
                                                       for s in series) + " |")
    return "\n".join(lines)


def errors(m: dict) -> str:
    lines = ["| series | images | boxes | AP | AP11 | found | missed | false alarms | "
             "false alarms / image | recall at 1 FP/image |", "|---" * 10 + "|"]
    for s, v in m["per_series"].items():
        r1 = v["recall_at_fppi"]["1.0"]
        lines.append(f"| {s} | {v['images']} | {v['gt_boxes']} | {_f(v['ap'])} | {_f(v['ap11'])} "
                     f"| {v['true_positives']} | {v['missed']} | {v['false_positives']} | "
                     f"{v['false_positives'] / max(v['images'], 1):.1f} | {_f(r1, 3)} |")
    lines.append(f"| all | {m['images']} | {m['gt_boxes']} | {_f(m['ap'])} | {_f(m['ap11'])} | "
                 f"{m['true_positives']} | {m['missed']} | {m['false_positives']} | "
                 f"{m['false_positives'] / max(m['images'], 1):.1f} | "
                 f"{_f(m['recall_at_fppi']['1.0'], 3)} |")
    return "\n".join(lines)


def series_out(doc: dict) -> str:
    """The leave-one-series-out table (``experiments/series_out.py``)."""
    a = doc["arguments"]
    lines = [f"Each fold: a model trained from scratch on `wholeimage` patches of the other "
             f"series' train images ({a['per_image']} + {a['per_image']} per image, mu "
             f"{a['mu'][0]}-{a['mu'][1]}, real windows {a['real']}), {a['epochs']} epochs of "
             f"{a['samples_per_epoch']:,} patches; tested on every image of the held-out "
             f"series with `{doc['params_from']}`'s detection settings "
             f"({doc['detection']['mode']} mode, stride {doc['detection']['stride']}, theta "
             f"{doc['detection']['theta']}).", "",
             "| held-out series | images | boxes | AP | found | missed | false alarms / image "
             "| build s | train s | test s |", "|---" * 10 + "|"]
    for s, v in doc["per_series"].items():
        lines.append(f"| {s} | {v['images']} | {v['gt_boxes']} | {_f(v['ap'])} | "
                     f"{v['true_positives']} | {v['missed']} | "
                     f"{v['false_alarms_per_image']:.1f} | {v['build_s']:.0f} | "
                     f"{v['train_s']:.0f} | {v['test_s']:.0f} |")
    p = doc["pooled"]
    lines.append(f"| **pooled** | {p['images']} | {p['gt_boxes']} | **{_f(p['ap'])}** | "
                 f"{p['true_positives']} | {p['missed']} | "
                 f"{doc['false_alarms_per_image']:.1f} | | | |")
    lines += ["", f"Total {doc['seconds_total'] / 60:.0f} minutes on this machine. Command: "
              f"`{doc['command']}`"]
    return "\n".join(lines)


def per_series_eval(m: dict, note: str) -> str:
    """An evaluation's per-series table (``xdefect evaluate``'s ``metrics.json``)."""
    lines = [note, "", "| series | images | boxes | AP | found | missed | false alarms | "
             "per image |", "|---" * 8 + "|"]
    for s, v in m["per_series"].items():
        lines.append(f"| {s} | {v['images']} | {v['gt_boxes']} | {_f(v['ap'])} | "
                     f"{v['true_positives']} | {v['missed']} | {v['false_positives']} | "
                     f"{v['false_positives'] / max(v['images'], 1):.1f} |")
    lines.append(f"| **all** | {m['images']} | {m['gt_boxes']} | **{_f(m['ap'])}** | "
                 f"{m['true_positives']} | {m['missed']} | {m['false_positives']} | "
                 f"{m['false_positives'] / max(m['images'], 1):.1f} |")
    lines += ["", f"Command: `{m['command']}`"]
    return "\n".join(lines)


#: segmenters trained on simulated defects only, each with its settings chosen on the paper
#: series' tuning images, on the paper's test images: (run folder under ``runs/seg``, test
#: evaluation folder under ``runs/``, label)
SIM_ONLY = (("sim-hard", "eval-test-sim-hard", "`sim-hard`: 20,000 steps, 2 rounds of hard "
             "negatives; its training's own choice (theta >= 0, growth <= 6)"),
            ("sim-hard-wide", "eval-test-sim-hard-wide", "`sim-hard`, the same weights, "
             "re-tuned on a wider grid (theta down to -0.9, i.e. p > 0.05; growth up to 16)"),
            ("sim-hard-xm-wide", "eval-test-sim-hard-xm-wide", "`sim-hard-xm`: as `sim-hard`, "
             "each void's x_max drawn from 60-180 mm (a mixture of contrasts, "
             "`--x-max-range 60 180`); the wider grid"),
            ("sim-ens-wide", "eval-test-sim-ens-wide", "the mean of `sim-hard` and "
             "`sim-hard-xm` (`xdefect models ensemble`); the wider grid, theta down to -0.98"),
            ("sim-ens3-wide", "eval-test-sim-ens3-wide", "the mean of `sim-hard`, `sim-hard-xm` "
             "and `sim-hard-xm-s1` (the latter with seed 1); the same grid"),
            ("sim-ens4-wide-tta4", "eval-test-sim-ens4-wide-tta4", "the mean of four new "
             "draws (`sim-hard-xm-blur2`, its seed 1, `sim-hard-xm-s2`, `sim-hard-xm360`), "
             "four mirror views (2026-12-01); the same grid"),
            ("sim-ens6-wide-tta4", "eval-test-sim-ens6-wide-tta4", "the mean of those four "
             "and two draws with a local contrast channel (`sim-hard-xm-lcn`, its seed 1: "
             "`--arch segnet-lcn`), four mirror views (2026-12-01, fourth session); the same "
             "grid"),
            ("sim-ens8-wide-tta4", "eval-test-sim-ens8-wide-tta4", "the mean of those six "
             "and two more local-contrast draws (seeds 2 and 3), four mirror views "
             "(2026-12-01, fifth session); the same grid"))


#: segmenters trained on simulated defects only and their ensembles, re-tuned on the wide
#: grid of the paper series' tuning images (``tune-segmenter``): (run folder under
#: ``runs/seg``, label); their tuning AP only (no test image read for most of them)
SIM_TUNED = (
    ("sim-hard-wide", "`sim-hard` (no contrast mixture), seed 0"),
    ("sim-hard-xm-wide", "`sim-hard-xm` (x_max 60-180 mm), seed 0"),
    ("sim-hard-xm-blur2-wide", "`sim-hard-xm-blur2`: as `sim-hard-xm`, edge blur 2 px, seed 0"),
    ("sim-hard-xm-blur2-s1-wide", "`sim-hard-xm-blur2-s1`: the same, seed 1"),
    ("sim-hard-xm-s2-wide", "`sim-hard-xm-s2`: `sim-hard-xm`, seed 2"),
    ("sim-hard-xm360-wide", "`sim-hard-xm360`: x_max 60-360 mm (fainter voids), seed 0"),
    ("sim-ens-wide", "mean of `sim-hard` and `sim-hard-xm`"),
    ("sim-blur2-ens-wide", "mean of the two `sim-hard-xm-blur2` draws"),
    ("sim-blur2-ens-wide-tta4", "the same mean, four mirror views"),
    ("sim-ens3-wide", "mean of `sim-hard`, `sim-hard-xm`, `sim-hard-xm-s1`"),
    ("sim-ens4-wide", "mean of the two blur draws, `sim-hard-xm-s2` and `sim-hard-xm360`"),
    ("sim-ens4-wide-tta4", "the same mean, four mirror views"),
    ("sim-hard-xm-lcn-wide", "`sim-hard-xm-lcn`: `sim-hard-xm` with a local contrast "
     "channel (`--arch segnet-lcn`), seed 0"),
    ("sim-hard-xm-lcn-s1-wide", "`sim-hard-xm-lcn-s1`: the same, seed 1"),
    ("sim-lcn-ens-wide", "mean of the two local-contrast draws"),
    ("sim-lcn-ens-wide-tta4", "the same mean, four mirror views"),
    ("sim-ens6-wide-tta4", "mean of the four `sim-ens4` members and the two local-contrast "
     "draws, four mirror views"),
    ("sim-hard-xm-lcn-s2-wide", "`sim-hard-xm-lcn-s2`: local contrast channel, seed 2"),
    ("sim-hard-xm-lcn-s3-wide", "`sim-hard-xm-lcn-s3`: local contrast channel, seed 3"),
    ("sim-lcn4-wide-tta4", "mean of the four local-contrast draws (seeds 0-3), four mirror "
     "views"),
    ("sim-ens8-wide-tta4", "mean of the six `sim-ens6` members and local-contrast seeds 2 "
     "and 3, four mirror views"),
)


def sim_tuned(runs: Path = RUNS) -> str:
    """The re-tuned simulation-only segmenters of :data:`SIM_TUNED` that have a card: the
    settings and tuning AP their re-tuning chose, and its command."""
    rows, commands = [], []
    for run, label in SIM_TUNED:
        f = runs / "seg" / run / "model.json"
        if not f.exists():
            continue
        c = json.loads(f.read_text())
        t, d = c["tuning"], c["detection"]
        rows.append(f"| {label} | {t['theta']:g}, {t.get('extent_fraction', 0.0):g}, "
                    f"{t['grow']} | {d.get('tta', 1)} | {_f(t['ap'])} |")
        commands.append(c.get("retuned", {}).get("command", ""))
    head = ("| segmenter (simulated defects only) | theta, relative extent, growth | views "
            "| tuning AP (paper series) |\n|---|---|---|---|")
    return "\n".join([head, *rows, "", "Commands: " + "; ".join(f"`{c}`" for c in commands
                                                                if c)])


def sim_only(runs: Path = RUNS) -> str:
    """The segmenters of :data:`SIM_ONLY` that have a card and a test evaluation: their
    settings and tuning AP (from the card) and their test figures (``metrics.json``)."""
    rows, commands, series = [], [], []
    for run, ev, label in SIM_ONLY:
        card_f, m_f = runs / "seg" / run / "model.json", runs / ev / "metrics.json"
        if not (card_f.exists() and m_f.exists()):
            continue
        t, m = json.loads(card_f.read_text())["tuning"], json.loads(m_f.read_text())
        series = series or [k for k in m["per_series"] if m["per_series"][k]["gt_boxes"]]
        u = m["unseen"]
        rows.append(f"| {label} | {t['theta']:g}, {t.get('extent_fraction', 0.0):g}, "
                    f"{t['grow']} | {_f(t['ap'])} | **{_f(m['ap'])}** | {_f(u['ap'])} | "
                    f"{m['true_positives']}/{m['gt_boxes']} | "
                    f"{m['false_positives'] / max(m['images'], 1):.1f} | "
                    + " | ".join(_f(m["per_series"][k]["ap"]) for k in series) + " |")
        commands.append(m["command"])
    if not rows:
        return "(no simulated-only segmenter evaluated yet)"
    head = ("| segmenter (simulated defects only) | theta, relative extent, growth | tuning AP "
            "| test AP | unseen-defect AP | found | FA/image | " + " | ".join(series) + " |")
    return "\n".join([SIM_ONLY_NOTE, "", head, "|---" * (7 + len(series)) + "|", *rows, "",
                      "Commands: " + "; ".join(f"`{c}`" for c in commands)])


def pyramid(doc: dict) -> str:
    """The image-pyramid grid (``experiments/pyramid.py``): one row per configuration,
    one AP / false-alarm column pair per data set."""
    sets = list(dict.fromkeys((r["root"], r["split"]) for r in doc["grid"]))
    head = "| levels | merge | boxes | " + " | ".join(
        f"{Path(root).name} {split}: AP | found | FA/image" for root, split in sets) + " |"
    lines = [head, "|---|---|---|" + "---|---|---|" * len(sets)]
    def conf(r: dict) -> tuple:
        return (tuple(r["scales"]), r["merge_rule"], r["merge"], r.get("box_rule", "card"),
                r.get("widen"))

    for c in dict.fromkeys(conf(r) for r in doc["grid"]):
        cells = []
        for root, split in sets:
            r = next(x for x in doc["grid"] if (x["root"], x["split"]) == (root, split)
                     and conf(x) == c)
            cells.append(f"{_f(r['ap'])} | {r['found']}/{r['boxes']} | "
                         f"{r['false_alarms_per_image']:.1f}")
        merge = "-" if len(c[0]) == 1 else f"{c[1]} {c[2]}"
        lines.append(f"| {', '.join(map(str, c[0]))} | {merge} | {c[3]}, widen {c[4]} | "
                     + " | ".join(cells) + " |")
    lines += ["", f"Model `{Path(doc['model']).stem}`, its card's detection settings "
              f"otherwise. Command: `{doc['command']}`"]
    return "\n".join(lines)


def series_out_all(doc: dict) -> str:
    """The leave-series-out table over several roots (``experiments/series_out.py`` with
    ``--roots``/``--kfold``)."""
    a = doc["arguments"]
    rounds = ("; round 2: hard negatives mined by round 1's model, windows with "
              f"{a['context']} px surroundings ({a['per_image2']} + {a['per_image2']} per "
              f"image, {a['real']:,} real, {a['hard']:,} hard), {a['epochs2']} epochs of "
              f"{a['samples2']:,} for the dense mode" if a["rounds"] == 2 else "")
    lines = [f"Roots {', '.join(f'`{r}`' for r in doc['roots'])}; training backgrounds "
             f"{', '.join(f'`{r}`' for r in doc['backgrounds']) or 'none'}. {len(doc['folds'])} "
             f"folds by series. Each fold: round 1 from scratch on the other series' train "
             f"images ({a['per_image']} + {a['per_image']} per image, mu {a['mu'][0]}-"
             f"{a['mu'][1]}, real windows {a['real']:,}{', augmented' if a['augment'] else ''}"
             f"), {a['epochs']} epochs of {a['samples_per_epoch']:,}{rounds}. Tested on every "
             f"image of the held-out series with `{doc['params_from']}`'s detection "
             f"settings ({doc['detection']['mode']} mode, stride {doc['detection']['stride']}, "
             f"theta {doc['detection']['theta']}, levels {doc['detection']['scales']}).", "",
             "| held-out series | fold | images | boxes | AP | found | missed | "
             "false alarms / image |", "|---" * 8 + "|"]
    for s, v in doc["per_series"].items():
        lines.append(f"| {s} | {v['fold']} | {v['images']} | {v['gt_boxes']} | {_f(v['ap'])} | "
                     f"{v['true_positives']} | {v['missed']} | "
                     f"{v['false_alarms_per_image']:.1f} |")
    p = doc["pooled"]
    lines.append(f"| **pooled** | | {p['images']} | {p['gt_boxes']} | **{_f(p['ap'])}** | "
                 f"{p['true_positives']} | {p['missed']} | "
                 f"{doc['false_alarms_per_image']:.1f} |")
    for root, r in doc.get("pooled_by_root", {}).items():
        lines.append(f"| pooled, `{Path(root).name}` series only | | {r['images']} | "
                     f"{r['gt_boxes']} | {_f(r['ap'])} | {r['true_positives']} | "
                     f"{r['missed']} | {r['false_alarms_per_image']:.1f} |")
    rec = p.get("recall_at_fppi", {})
    if "2.0" in rec:
        lines += ["", f"Recall at no more than 1 / 2 false alarms per image (pooled): "
                  f"{rec['1.0']:.3f} / {rec['2.0']:.3f}."]
    mins = [f"{f}: {v['train_s'] / 60:.0f} + {v['test_s'] / 60:.1f}" for f, v in
            doc["fold_costs"].items()]
    lines += ["", f"Minutes per fold (train + test): {'; '.join(mins)}; total "
              f"{doc['seconds_total'] / 60:.0f}. Command: `{doc['command']}`"]
    return "\n".join(lines)


def family(doc: dict) -> str:
    """The adapt_series.json's source model family (older files: from the source's card)."""
    if "source_family" in doc:
        return doc["source_family"]
    src = Path(str(doc.get("source")))
    if src.suffix == ".safetensors" and src.with_suffix(".json").is_file():
        arch = json.loads(src.with_suffix(".json").read_text()).get("arch", {})
        return "segmenter" if arch.get("family") == "segmenter" else "classifier"
    return "classifier"


def source_settings(doc: dict, path: Path | None) -> str:
    """The source model's detection settings as the run used them: recorded in the file,
    or (older files) in its first series' source evaluation beside it."""
    params = doc.get("source_detection")
    if params is None and path is not None and doc["per_series"]:
        f = path.parent / next(iter(doc["per_series"])) / "eval-source" / "metrics.json"
        params = json.loads(f.read_text()).get("params") if f.exists() else None
    if not params:
        return ""
    if isinstance(params, str):  # one source per series (--from-folds): said in words
        return f" (detection settings: {params})"
    return (f" (detection settings: {params['mode']} mode, theta {params['theta']:g}"
            + (f", grow {params.get('grow', 0)}" if params["mode"] == "segment" else "")
            + (f", relative extent {params['extent_fraction']:g}"
               if params.get("extent_fraction") else "")
            + (f", boxes joined at {params['join']} px" if params.get("join", -1) >= 0 else "")
            + (f", {params['tta']} mirror views" if params.get("tta", 1) > 1 else "") + ")")


def adapt_table(doc: dict, path: Path | None = None) -> str:
    """Adaptation per series (``experiments/adapt_series.py``)."""
    source = doc["source"]
    if source == "bundled default":  # files written while xnet2-xdefect was the default
        source = "`xnet2-xdefect` (the bundled default then)"
    source += source_settings(doc, path)
    planned = doc.get("series_planned") or list(doc["per_series"])
    done = (f" {len(doc['per_series'])} of the {len(planned)} planned series done."
            if len(doc["per_series"]) < len(planned) else "")
    lines = [f"Root `{doc['root']}`; source model: {source}. {doc['protocol']}.{done}", "",
             "| series | odd images adapted on | even images | boxes | source AP | source "
             "FA/image | adapted AP | adapted found | adapted FA/image | minutes |",
             "|---" * 10 + "|"]
    for s, v in doc["per_series"].items():
        src, ad = v["source"], v["adapted"]
        if src is None or ad is None:  # experiments/adapt_rescore.py: nothing to score
            lines.append(f"| {s} | {v['odd_images']} | 0 | - | unscored: no annotated even "
                         f"image | | | | | {v['adapt_minutes']:.1f} |")
            continue
        lines.append(f"| {s} | {v['odd_images']} | {ad['images']} | {ad['gt_boxes']} | "
                     f"{_f(src['ap'])} | {src['false_alarms_per_image']:.1f} | "
                     f"{_f(ad['ap'])} | {ad['true_positives']} | "
                     f"{ad['false_alarms_per_image']:.1f} | {v['adapt_minutes']:.1f} |")
    src, ad = doc["pooled_source"], doc["pooled_adapted"]
    lines.append(f"| **pooled** | | {ad['images']} | {ad['gt_boxes']} | **{_f(src['ap'])}** | "
                 f"{src['false_alarms_per_image']:.1f} | **{_f(ad['ap'])}** | "
                 f"{ad['true_positives']} | {ad['false_alarms_per_image']:.1f} | |")
    lines += ["", f"Command: `{doc['command']}`"]
    if doc.get("rescored"):
        lines.append(f"Scored again from its saved detections: `{doc['rescored']['command']}` "
                     f"({doc['rescored']['why']}).")
    return "\n".join(lines)


#: the adaptations compared by what the source's own detections become (``adapt-regions``):
#: result folder and label
ADAPT_REGIONS = (("runs/adapt-series-default-ign05", "ignore (score > -0.5)"),
                 ("runs/adapt-series-target", "target (pseudo-labels)"),
                 ("runs/adapt-series-distill", "distill (soft targets)"))


def adapt_regions() -> str | None:
    """Per series, the tuning-image AP (where the option is chosen) and the test AP of each
    adaptation of :data:`ADAPT_REGIONS` run with ``--tuning``, and the source's."""
    docs = [(lbl, json.loads((Path(d) / "adapt_series.json").read_text()))
            for d, lbl in ADAPT_REGIONS if (Path(d) / "adapt_series.json").exists()]
    docs = [(lbl, d) for lbl, d in docs if "pooled_tuning" in d]
    if not docs:
        return None
    series = list(docs[0][1]["per_series"])
    lines = ["AP on the tuning images (odd, n % 4 == 1: adapted on, labels unused; where the "
             "option is chosen) / on the test images (even; reported only). Source: "
             f"`{docs[0][1]['source']}`{source_settings(docs[0][1], None)}.", "",
             "| series | source | " + " | ".join(lbl for lbl, _ in docs) + " |",
             "|---|---|" + "---|" * len(docs)]

    def cell(t: dict | None, e: dict | None) -> str:
        return f"{_f(t['ap']) if t else '-'} / {_f(e['ap']) if e else 'unscored'}"

    for s in series:
        v0 = docs[0][1]["per_series"][s]
        row = [cell(v0.get("tuning", {}).get("source"), v0["source"])]
        for _, d in docs:
            v = d["per_series"].get(s)
            row.append(cell(v.get("tuning", {}).get("adapted"), v["adapted"]) if v else "-")
        lines.append(f"| {s} | " + " | ".join(row) + " |")
    d0 = docs[0][1]
    pooled = [cell(d["pooled_tuning"]["adapted"], d["pooled_adapted"]) for _, d in docs]
    lines.append("| **pooled** | " + cell(d0["pooled_tuning"]["source"], d0["pooled_source"])
                 + " | " + " | ".join(f"**{c}**" for c in pooled) + " |")
    lines.append("| false alarms / image (test) | "
                 f"{d0['pooled_source']['false_alarms_per_image']:.1f} | " + " | ".join(
                     f"{d['pooled_adapted']['false_alarms_per_image']:.1f}" for _, d in docs)
                 + " |")
    lines += ["", "Commands: " + "; ".join(f"`{d['command']}`" for _, d in docs)]
    return "\n".join(lines)


def adapt_choice(doc: dict) -> str:
    """The label-free rule of ``experiments/adapt_choice.py``: ignore the source's regions
    where it raises more than R per image, distil them elsewhere."""
    ser = doc["series"]
    lines = ["| series | source's regions per image | ignore: tuning / test AP | "
             "distill: tuning / test AP |", "|---|---|---|---|"]
    for s, r in ser.items():
        lines.append(f"| {s} | {r['regions_per_image']:.1f} | "
                     f"{_f(r['ignore_tuning'])} / {_f(r['ignore_test'])} | "
                     f"{_f(r['distill_tuning'])} / {_f(r['distill_test'])} |")
    lines += ["", "| rule: ignore where the source raises more than R regions per image | "
              "ignored in | tuning AP (found) | test AP (found, FA/image) |",
              "|---|---|---|---|"]
    for row in doc["rows"]:
        ign = [s for s, k in row["pick"].items() if k == "ignore"]
        t, e = row["tuning"], row["test"]
        what = ("all" if len(ign) == len(ser) else ", ".join(ign) or "none")
        lines.append(f"| R = {row['rule']:g} | {what} | {_f(t['ap'])} "
                     f"({t['true_positives']}/{t['gt_boxes']}) | {_f(e['ap'])} "
                     f"({e['true_positives']}/{e['gt_boxes']}, "
                     f"{e['false_alarms_per_image']:.1f}) |")
    lines += ["", f"Root `{doc['root']}`; source `{Path(doc['source']).name}`; adapted models "
              f"of {', '.join(f'`{v}`' for v in doc['runs'].values())}. Command: "
              f"`{doc['command']}`"]
    return "\n".join(lines)


def table3_diagnosis(doc: dict) -> str:
    """Recall on Table 3's real test patches by the defect's offset from the window centre
    (``experiments/table3_diagnosis.py``)."""
    b = doc["bins_px"]
    keep = [i for i, n in enumerate(doc["defect_patches_per_bin"]) if n]  # non-empty bins
    heads = [f"{b[i]}-{b[i + 1]} px" for i in keep]
    lines = ["| model | accuracy | recall | specificity | " + " | ".join(
        f"recall {h}" for h in heads) + " |", "|---" * (4 + len(heads)) + "|",
        "| (defect patches per bin) | | | | " + " | ".join(
            str(doc["defect_patches_per_bin"][i]) for i in keep) + " |"]
    for name, m in doc["models"].items():
        lines.append(f"| `{name}` | {_f(m['accuracy'], 3)} | {_f(m['recall'], 3)} | "
                     f"{_f(m['specificity'], 3)} | " + " | ".join(
                         _f(m["recall_by_offset"][i], 2) for i in keep) + " |")
    lines += ["", f"{doc['test_patches']:,} test patches ({doc['defect_patches']:,} with a real "
              f"C0001 defect). Command: `{doc['command']}`"]
    return "\n".join(lines)


def table3_rule(doc: dict) -> str:
    """Table 3 with training windows by each rule (``experiments/table3_rule.py``); a row
    with ``stretch`` trained and tested on patches stretched to their own contrast."""
    b = doc["bins_px"]
    rows = doc["rows"]
    keep = [i for i in range(len(b) - 1)
            if any(r["test"]["recall_by_offset"][i] is not None for r in rows)]
    lines = ["| simulated training windows | mu (1/mm), x_max (mm) | train acc | "
             "test acc (real C0001) | recall | specificity | "
             + " | ".join(f"recall {b[i]}-{b[i + 1]} px" for i in keep)
             + " | patches seen | minutes |",
             "|---" * (8 + len(keep)) + "|"]
    for r in rows:
        t = r["test"]
        how = (f"; every patch stretched to its own contrast (floor {r['stretch']:g} grey "
               "levels)" if r.get("stretch") else "")
        if r.get("arch_stretch"):
            how += (f"; `{r['arch']}`: every patch stretched inside the network (floor "
                    f"{r['arch_stretch']:g} grey levels)")
        seen = r.get("patches_seen", doc["epochs"] * doc["samples_per_epoch"])
        lines.append(
            f"| {r['rule']}: centre within {r['max_offset']} px, {r['min_inside']:g} of the "
            f"shadow inside{how} | {r['mu'][0]:g}-{r['mu'][1]:g}, {r.get('x_max', 60):g} | "
            f"{_f(r['train']['accuracy'])} | "
            f"{_f(t['accuracy'])} | {_f(t['recall'], 3)} | {_f(t['specificity'], 3)} | "
            + " | ".join(_f(t["recall_by_offset"][i], 2) for i in keep)
            + f" | {seen:,} | {(r['build_seconds'] + r['train_seconds']) / 60:.0f} |")
    own = list(dict.fromkeys(r["command"] for r in rows if r.get("command")))
    older = [r["rule"] for r in rows if not r.get("command")]
    cmds = "; ".join(f"`{c}`" for c in own)
    if older:
        cmds = (f"{', '.join(older)} (before each row kept its command; the file's last: "
                f"`{doc['command']}`)" + (f"; {cmds}" if cmds else ""))
    lines += ["", "Xnet-II, epochs of "
              f"{doc['samples_per_epoch']:,} patches each; paper: test accuracy 0.9687. "
              f"Commands: {cmds}"]
    return "\n".join(lines)


def table3_floor(doc: dict) -> str:
    """The stretch floor chosen on held-out training castings
    (``experiments/table3_floor.py``): one row per floor, the chosen one in bold."""
    c = doc["counts"]
    lines = ["| floor (grey levels) | train acc | held-out acc | held-out recall | "
             "held-out specificity | patches seen | minutes |", "|---" * 7 + "|"]
    for r in sorted(doc["rows"], key=lambda r: r["floor"]):
        h = r["held_out"]
        mark = "**" if r["floor"] == doc.get("chosen") else ""
        fl = f"{r['floor']:g}" if r["floor"] else "0 (no stretch)"
        lines.append(f"| {mark}{fl}{mark} | {_f(r['train']['accuracy'])} | "
                     f"{mark}{_f(h['accuracy'])}{mark} | {_f(h['recall'], 3)} | "
                     f"{_f(h['specificity'], 3)} | "
                     f"{doc['epochs'] * doc['samples_per_epoch']:,} | "
                     f"{r['train_seconds'] / 60:.0f} |")
    lines += ["", f"Xnet-II on the test rule's windows of the `table3` protocol without "
              f"{', '.join(doc['hold'])}: {c['train']:,} training windows of the other "
              f"series; held out: the {c['held_real']:,} real defect windows of "
              f"{', '.join(doc['hold'])} and {c['held_background']:,} of their defect-free "
              f"windows; {doc['epochs']} epochs of {doc['samples_per_epoch']:,} patches "
              f"per floor; chosen: {doc.get('chosen', '-')}. No C0001 window is used. "
              f"Command: `{doc['command']}`"]
    return "\n".join(lines)


def sim_ablation(doc: dict) -> str:
    """One simulator change per row (``experiments/sim_ablation.py``), tuning images."""
    p = doc["protocol"]
    lines = ["| variant | change | val acc | tuning AP | AP11 | found | FA/image | "
             "real windows recognised | own theta: theta, AP, found, FA/image | minutes |",
             "|---" * 10 + "|"]
    for r in doc["rows"]:
        ch = ", ".join(f"{k} {v}" for k, v in r["changes"].items()) or "none (sharp edges)"
        t = r.get("chosen_theta")
        own = (f"{t['theta']:g}, {_f(t['tuning_ap'])}, {t['true_positives']}, "
               f"{t['false_alarms_per_image']:.1f}" if t else "-")
        lines.append(f"| {r['variant']} | {ch} | {_f(r['val_acc'])} | {_f(r['tuning_ap'])} | "
                     f"{_f(r['tuning_ap11'])} | {r['true_positives']}/{r['gt_boxes']} | "
                     f"{r['false_alarms_per_image']:.1f} | {_f(r['real_window_recall'], 3)} "
                     f"of {r['real_windows']:,} | {own} | "
                     f"{(r['build_s'] + r['train_s'] + r['eval_s']) / 60:.0f} |")
    lines += ["", f"Train images of {', '.join(p['series'])}; {p['per_image']} + "
              f"{p['per_image']} patches per image; {p['epochs']} epochs of "
              f"{p['samples_per_epoch']:,}; scored on the tuning images with the bundled "
              "`xnet2-paper` card's detection settings (own theta: the same settings with "
              "the theta of the best tuning AP among 0 ... 0.999, chosen per row with "
              "`--choose-theta`). Commands: "
              + "; ".join(f"`{c}`" for c in dict.fromkeys(r.get("command", doc["command"])
                                                          for r in doc["rows"]))]
    return "\n".join(lines)


def fcn(doc: dict) -> str:
    """The fully convolutional detector's runs (``experiments/fcn_detector.py``)."""
    lines = ["| run | real defects | crops seen | minutes | threshold (tuning) | tuning AP | "
             "unseen defects: AP, found | found | FA/image | `gdxray-extra` odd: AP | found | "
             "FA/image |", "|---" * 12 + "|"]
    for r in doc["rows"]:
        t, e = r["tuning"], r["extra_odd"]
        u = t.get("unseen")
        lines.append(f"| {r['name']} | {'targets' if r['real'] else 'ignored'} | "
                     f"{r['crops_seen']:,} | {r['train_minutes']:.0f} | {r['threshold']:g} | "
                     f"{_f(t['ap'])} | "
                     + (f"{_f(u['ap'])}, {u['true_positives']}/{u['gt_boxes']}" if u else "-")
                     + f" | {t['true_positives']}/{t['gt_boxes']} | "
                     f"{t['false_alarms_per_image']:.1f} | {_f(e['ap'])} | "
                     f"{e['true_positives']}/{e['gt_boxes']} | "
                     f"{e['false_alarms_per_image']:.1f} |")
    lines += ["", "Per series (tuning AP at the chosen threshold): "
              + "; ".join(f"{r['name']}: " + ", ".join(f"{k} {_f(v)}" for k, v in
                                                     r["tuning"]["per_series"].items())
                          for r in doc["rows"]),
              "", "Commands: " + "; ".join(f"`{r['command']}`" for r in doc["rows"])]
    return "\n".join(lines)


def seg_settings(r: dict) -> str:
    """What a segmenter variant changed, in words."""
    st, c = r["settings"], r["settings"]["crops"]
    parts = [f"{st['arch']}, {r['steps']} steps",
             "real defects as targets" if c["real"] else "simulated defects only"]
    if st.get("augment"):
        parts.append("grey-level augmentation")
    if st.get("images"):
        parts.append(f"{len(st['images'])} unannotated folders as backgrounds")
    if c["defects"] != 1.5:
        parts.append(f"{c['defects']:g} voids per crop")
    if c.get("x_max_range"):
        lo, hi = c["x_max_range"]
        parts.append(f"each void's x_max drawn from {lo:g}-{hi:g} mm")
    if c.get("blur_px"):
        parts.append(f"edge blur {c['blur_px']:g} px")
    if st.get("hard_rounds"):
        parts.append(f"hard negatives: {st['hard_rounds']} rounds mined from the annotated "
                     f"train images, {c['hard_share']:g} of the other crops on them")
    if st.get("init"):
        parts.append(f"from `{Path(st['init']).stem}` at peak lr {st['lr']:g}")
    return ", ".join(parts)


def seg_variants(doc: dict) -> str:
    """Segmenter variants trained by the library (``experiments/segmenter_variants.py``)."""
    lines = ["| variant | settings | theta (tuning) | tuning AP | found | FA/image | "
             "`gdxray-extra` odd: AP | found | FA/image | minutes |", "|---" * 10 + "|"]
    for r in doc["rows"]:
        t, e = r["tuning"], r["extra_odd"]
        lines.append(f"| {r['name']} | {seg_settings(r)} | {r['theta']:g} | {_f(t['ap'])} | "
                     f"{t['true_positives']}/{t['gt_boxes']} | "
                     f"{t['false_alarms_per_image']:.1f} | {_f(e['ap'])} | "
                     f"{e['true_positives']}/{e['gt_boxes']} | "
                     f"{e['false_alarms_per_image']:.1f} | {r['train_minutes']:.0f} |")
    lines += ["", "Per series, `gdxray-extra` odd images: " + "; ".join(
        f"{r['name']}: " + ", ".join(f"{k} {_f(v)}" for k, v in r["extra_odd"]["per_series"]
                                     .items()) for r in doc["rows"]),
        "", "Commands: " + "; ".join(f"`{r['command']}`" for r in doc["rows"])]
    return "\n".join(lines)


def _grid_table(card: dict) -> list[str]:
    """A re-tuned segmenter's theta x grow grid (its card's ``tuning`` block)."""
    t = card["tuning"]
    ext = t.get("extent_fraction", 0.0)  # the grid at the chosen relative extent
    grid = [r for r in t["grid"] if r.get("extent_fraction", 0.0) == ext]
    grows = sorted({r["grow"] for r in grid})
    cell = {(r["theta"], r["grow"]): r for r in grid}
    roots = t.get("roots") or card["lineage"][-1]["data_roots"]
    where = "; ".join(f"`{r}` ({len(ss)} series)" for r, ss in roots.items())
    lines = [f"Tuning images of {where}: {t['images']} images, {t['grid'][0]['boxes']} boxes; "
             f"chosen theta {t['theta']:g}, grow {t['grow']} (bold).", "",
             "| theta | " + " | ".join(f"grow {g}" for g in grows) + " |",
             "|---" * (len(grows) + 1) + "|"]
    for th in sorted({r["theta"] for r in grid}):
        row = []
        for g in grows:
            r = cell[(th, g)]
            txt = f"{r['ap']:.3f} / {r['found']} / {r['fa_per_image']:.1f}"
            row.append(f"**{txt}**" if (th, g) == (t["theta"], t["grow"]) else txt)
        lines.append(f"| {th:g} | " + " | ".join(row) + " |")
    return lines


def extent_grid(card: dict) -> str:
    """A segmenter's tuning grid by threshold (rows) and relative extent (columns), each
    cell the best AP over the box growths with that growth, found and false alarms per
    image (the card's ``tuning`` block; the chosen setting bold)."""
    t = card["tuning"]
    exts = sorted({r.get("extent_fraction", 0.0) for r in t["grid"]})
    roots = t.get("roots") or card["lineage"][-1]["data_roots"]
    where = "; ".join(f"`{r}` ({len(ss)} series)" for r, ss in roots.items())
    lines = [f"Tuning images of {where}: {t['images']} images, {t['grid'][0]['boxes']} boxes; "
             f"{card['detection']['tta']} views. Each cell: the best AP over the box growths "
             "(pixels a side, in brackets) / defects found / false alarms per image; chosen: "
             f"theta {t['theta']:g}, extent {t.get('extent_fraction', 0.0):g}, grow "
             f"{t['grow']} (bold).", "",
             "| theta | " + " | ".join("extent above theta" if e == 0 else f"extent {e:g}"
                                      for e in exts) + " |",
             "|---" * (len(exts) + 1) + "|"]
    for th in sorted({r["theta"] for r in t["grid"]}):
        row = []
        for e in exts:
            r = max((r for r in t["grid"] if r["theta"] == th
                     and r.get("extent_fraction", 0.0) == e), key=lambda r: r["ap"])
            txt = f"{r['ap']:.3f} ({r['grow']}) / {r['found']} / {r['fa_per_image']:.1f}"
            chosen = (th, e, r["grow"]) == (t["theta"], t.get("extent_fraction", 0.0),
                                            t["grow"])
            row.append(f"**{txt}**" if chosen else txt)
        lines.append(f"| {th:g} | " + " | ".join(row) + " |")
    return "\n".join(lines + ["", f"Command: `{card['retuned']['command']}`"])


#: (settings, its card or None for the trained run's, test evaluation on the paper's
#: series, evaluation of the `gdxray-extra` even images)
SEGMENT_BOX_RUNS = (
    ("as trained: theta on the paper series' tuning images, no growth", None,
     "eval-test-segnet", "eval-extra-segnet-even"),
    ("theta x grow on the paper series' tuning images", "segnet-xdefect-tuned",
     "eval-test-segnet-tuned", "eval-extra-segnet-tuned-even"),
    ("theta x grow on the tuning images of both roots", "segnet-xdefect-tuned2",
     "eval-test-segnet-tuned2", "eval-extra-test-segnet-tuned2"),
    ("20,000 steps (`long`); theta x grow on the tuning images of both roots",
     "long-tuned2", "eval-test-segnet-long", "eval-extra-test-segnet-long"),
    ("20,000 steps, 4 mirror views averaged (`--tta 4`); theta x grow on both roots' tuning "
     "images (bundled until 2026-11-30)", "long-tta4", "eval-test-segnet-tta4",
     "eval-extra-test-segnet-tta4"),
)


def segment_boxes(runs: Path = Path("runs")) -> str:
    """The theta x grow grids of ``segnet-xdefect`` re-tuned by ``xdefect tune-segmenter``
    (their cards' ``tuning`` blocks) and each choice's figures on the test images of the
    paper's series and on the even images of ``gdxray-extra``."""
    lines = ["Tuning AP (IoU 0.5) per threshold (rows; score `2p - 1`) and box growth "
             "(columns, pixels a side): AP / defects found / false alarms per image; the "
             "8,000-step model (paper roots, then both roots), then the 20,000-step one "
             "(one view, then four mirror views averaged)."]
    commands = []
    for _, name, _, _ in SEGMENT_BOX_RUNS:
        f = runs / "seg" / str(name) / "model.json"
        if name and f.exists():
            card = json.loads(f.read_text())
            lines += [""] + _grid_table(card)
            commands.append(card["retuned"]["command"])
    lines += ["", "| settings | theta, grow | paper test AP | unseen-defect AP | found | "
              "FA/image | `gdxray-extra` even: AP | found | FA/image |",
              "|---|---|---|---|---|---|---|---|---|"]
    for what, _, test, extra in SEGMENT_BOX_RUNS:
        ft, fe = runs / test / "metrics.json", runs / extra / "metrics.json"
        if not (ft.exists() and fe.exists()):
            continue
        m, e = json.loads(ft.read_text()), json.loads(fe.read_text())
        pr = m["params"]
        lines.append(f"| {what} | {pr['theta']:g}, {pr.get('grow', 0)} | {_f(m['ap'])} | "
                     f"{_f(m['unseen']['ap'])} | {m['true_positives']}/{m['gt_boxes']} | "
                     f"{m['false_positives'] / m['images']:.1f} | {_f(e['ap'])} | "
                     f"{e['true_positives']}/{e['gt_boxes']} | "
                     f"{e['false_positives'] / e['images']:.1f} |")
    lines += ["", "Commands: " + "; ".join(f"`{c}`" for c in commands)
              + "; each evaluated by `xdefect evaluate --model RUN/model.safetensors --split "
              "test` (paper series) and on `--gdxray ../shared/data/gdxray-extra --split "
              "test` (the first two from their `--split all` detections, "
              "`xdefect evaluate --detections`)."]
    return "\n".join(lines)


#: candidates for the default segmenter, each re-tuned (theta x grow) on both roots' tuning
#: images by ``xdefect tune-segmenter``: (run folder under ``runs/seg``, label)
DEFAULT_CANDIDATES = (
    ("long-tta4", "`long`: 20,000 steps, paper series' train images; 4 mirror views "
                  "(bundled until 2026-11-30)"),
    ("long-tta8", "`long`, 8 views (the mirror images and their transposes)"),
    ("long-bg-tta4", "`long-bg`: 20,000 steps, + every image of the 11 unannotated series "
                     "as backgrounds; 4 views"),
    ("long2-tta4", "`long2`: `long` trained 20,000 steps more (peak lr 0.001); 4 views"),
    ("long-hard-tta4", "`long-hard`: `long`'s recipe with 2 rounds of hard negatives "
                       "(`--hard-rounds 2`); 4 views (bundled on 2026-11-30 until the "
                       "relative extent)"),
    ("long-hard-ext-tta4", "`long-hard`, the same weights, boxes by relative extent "
                           "(`--extent-fractions 0 0.4 0.5 0.6` in the choice); 4 views "
                           "(bundled on 2026-11-30 until 8 views)"),
    ("long-hard3-tta4", "`long-hard3`: 3 rounds of hard negatives, 0.4 of the other crops "
                        "on them (`--hard-rounds 3 --hard-share 0.4`); relative extent in "
                        "the choice; 4 views"),
    ("long-hard-ext-tta8", "`long-hard`, the same weights, relative extent in the choice; "
                           "8 views (bundled on 2026-11-30 until box joining)"),
    ("real-ens-tta4", "the mean of `long-hard` and `long-hard3` (`xdefect models "
                      "ensemble`); 4 views each (the inference cost of 8 views of one)"),
    ("real-ens-tta8", "the mean of `long-hard` and `long-hard3`; 8 views each"),
    ("long-hard-ext-tta8-join", "`long-hard`, the same weights, relative extent and box "
                                "joining (`--joins -1 0 2 4`) in the choice; 8 views "
                                "(bundled since 2026-11-30)"),
    ("both-hard-s0-tta8-join", "`both-hard`: `long-hard`'s recipe on the train images of "
                               "both roots (16 castings: it knows `gdxray-extra`'s); 8 "
                               "views, relative extent and joining in the choice"),
    ("both-hard-s1-tta8-join", "`both-hard`, seed 1; 8 views"),
    ("both-ens-tta4-join", "the mean of `both-hard` seeds 0 and 1; 4 views each"),
    ("mix-ens-tta4-join", "the mean of `long-hard` and `both-hard` seed 1; 4 views each"),
    ("long-hard-ext2-tta8-join", "`long-hard` (the bundled weights), relative extents 0.2 "
                                 "and 0.3 added to the choice (the library's grid since "
                                 "2026-11-30); 8 views, joining"),
    ("long-hard-ext3-tta8-join", "the same choice with C0041's 9 unannotated tuning images "
                                 "left unscored (bundled since 2026-11-30, eighth session)"),
    ("long-hard-s1-tta8-join", "`long-hard`'s recipe drawn again, seed 1 (`segmenter_variants"
                               ".py --name long-hard-s1 --seed 1`); 8 views, relative extent "
                               "and joining in the choice"),
    ("seeds-ens-tta4-join", "the mean of `long-hard` (the bundled weights) and its seed 1 "
                            "(`xdefect models ensemble`); 4 views each"),
    ("long-hard-lcn-tta8-join", "`long-hard-lcn`: `long-hard`'s recipe with the local "
                                "contrast channel (`--arch segnet-lcn`); 8 views, relative "
                                "extent and joining in the choice"),
    ("lcn-mix-tta4-join", "the mean of `long-hard` (the bundled weights) and "
                          "`long-hard-lcn` (`xdefect models ensemble`); 4 views each"),
)


#: the image-pyramid variants of ``experiments/loso_pyramid.py``: key, column label
PYRAMID_VARIANTS = (("L1", "full resolution (the folds' figure)"), ("L2", "half resolution"),
                    ("max", "pixelwise max of the two maps"),
                    ("mean", "pixelwise mean"), ("merge-iou", "both levels' boxes, IoU merge"),
                    ("merge-iom", "both levels' boxes, merge by the smaller box"))


def loso_pyramid(doc: dict) -> str:
    """The image-pyramid diagnosis of a leave-series-out ensemble
    (``experiments/loso_pyramid.py``): per held-out series, AP of each variant."""
    keys = [(k, lbl) for k, lbl in PYRAMID_VARIANTS if k in doc["variants"]]
    v = doc["variants"]
    lines = ["| held-out series | " + " | ".join(lbl for _, lbl in keys) + " |",
             "|---" * (len(keys) + 1) + "|"]
    for s in sorted(v[keys[0][0]]["per_series"]):
        lines.append(f"| {s} | " + " | ".join(
            f"{_f(v[k]['per_series'][s])} ({v[k]['per_series_found'][s]})" for k, _ in keys)
            + " |")
    lines.append("| **pooled** | " + " | ".join(
        f"**{_f(v[k]['ap'])}** ({v[k]['true_positives']}/{v[k]['gt_boxes']})"
        for k, _ in keys) + " |")
    lines.append("| false alarms / image | " + " | ".join(
        f"{v[k]['false_alarms_per_image']:.1f}" for k, _ in keys) + " |")
    lines += ["", f"Ensemble `{doc['run']}` ({', '.join(doc['members'])}), each fold's "
              f"settings from its `results{doc['suffix']}.json`; {doc['minutes']:g} minutes. "
              f"Command: `{doc['command']}`"]
    return "\n".join(lines)


def fold_command(doc: dict) -> str:
    """The command that made each fold of a pooled leave-series-out run: its recorded
    ``fold_script``, with ``FOLD`` where the fold's number goes (appended if absent)."""
    script = doc.get("fold_script", "experiments/loso_library.sh")
    return script if "FOLD" in script else f"{script} FOLD"


def loso_library(doc: dict) -> str:
    """Leave-series-out with the library's default recipe per fold
    (``experiments/loso_library.sh``, pooled by ``experiments/loso_library_pool.py``),
    beside the same folds of the reference ``fcn_detector.py`` run."""
    ref = doc.get("reference") or {}
    rper = ref.get("per_series", {})
    lines = ["| held-out series | fold | images | boxes | AP (found) | false alarms / image | "
             "reference: AP (found) |", "|---|---|---|---|---|---|---|"]
    for f in doc["folds"]:
        for s, v in sorted(f["per_series"].items()):
            r = rper.get(s)
            lines.append(f"| {s} | {f['fold'].removeprefix('fold')} | {v['images']} | "
                         f"{v['gt_boxes']} | {_f(v['ap'])} ({v['true_positives']}) | "
                         f"{v['false_alarms_per_image']:.1f} | "
                         + (f"{_f(r['ap'])} ({r['true_positives']}) |" if r else "- |"))
    p = doc["pooled"]
    lines.append(f"| **pooled** | {doc['folds_done']} of 5 folds | {p['images']} | "
                 f"{p['gt_boxes']} | **{_f(p['ap'])}** ({p['true_positives']}) | "
                 f"{p['false_alarms_per_image']:.1f} | "
                 + (f"**{_f(ref['ap'])}** ({ref['true_positives']}) |"
                    if ref.get("ap") is not None else "- |"))
    def at_point(f: dict) -> str:
        at = f.get("at_min_score")
        if at is None:
            fa = f.get("tuning_fa_per_image")
            return "" if fa is None else f", {fa:g} false alarms per tuning image"
        return (f"; report threshold {f['min_score']:.3f}: tuning AP {_f(at['ap'], 3)} at "
                f"{at['fa_per_image']:g} false alarms per tuning image")

    chosen = "; ".join(
        f"{f['fold']}: theta {f['chosen']['theta']:g}, grow {f['chosen']['grow']}, relative "
        f"extent {f['chosen']['extent_fraction']:g}, join {f['chosen']['join']}, "
        f"{f['chosen']['tta']} views (tuning AP {_f(f['tuning_ap'], 3)}{at_point(f)})"
        + ("" if f.get("train_minutes") is None else f", trained {f['train_minutes']:.0f} min")
        for f in doc["folds"])
    cap = next((f.get("max_fa_per_image") for f in doc["folds"]
                if f.get("max_fa_per_image") is not None), None)
    if str(doc.get("point", "")) in ("", "all detections"):
        cap = None  # a card with a report threshold, its detections scored uncut
    rule = ("every detection (the list AP ranks)" if cap is None else
            f"the detections scoring at least each fold's report threshold, the lowest "
            f"keeping at most {cap:g} false alarms per tuning image (`tune-segmenter "
            "--max-false-alarms`; the same saved detections, cut)")
    lines += ["", f"{doc['protocol']}. Operating point: {rule}. Chosen per fold on its "
              f"training series' tuning images: {chosen}. Reference: the same folds of "
              f"`{ref.get('run', '-')}` "
              f"({ref.get('results', '-')})"
              + "".join(f"; `{o['run']}` ({o['results']}) on the same folds: pooled "
                        f"{_f(o['ap'])} ({o['true_positives']}/{o['gt_boxes']}, "
                        f"{o['false_alarms_per_image']:.1f} false alarms per image)"
                        for o in doc.get("other_references") or [] if o)
              + f". Commands: `{fold_command(doc)}` per fold, then "
              f"`{doc['command']}`"]
    return "\n".join(lines)


def paper_tuning(runs: Path, name: str) -> str:
    """A default candidate's AP on the paper series' tuning images alone (at the settings
    it chose on both roots' tuning images), from ``runs/eval-tuning-paper-NAME``; '-' when
    that evaluation was not run."""
    f = runs / f"eval-tuning-paper-{name}" / "metrics.json"
    if not f.exists():
        return "-"
    m = json.loads(f.read_text())
    return f"{_f(m['ap'])} ({m['true_positives']}/{m['gt_boxes']})"


def default_candidates(runs: Path = Path("runs")) -> str:
    """Each :data:`DEFAULT_CANDIDATES` run's choice and tuning AP on both roots' tuning
    images (the rule that picks the bundled default), from its card."""
    lines = ["| candidate | views | theta, grow | tuning AP | found | FA/image | "
             "AP at the source's settings | paper series' tuning images alone |",
             "|---|---|---|---|---|---|---|---|"]
    commands: list[str] = []
    roots: dict = {}
    for name, label in DEFAULT_CANDIDATES:
        f = runs / "seg" / name / "model.json"
        if not f.exists():
            continue
        card = json.loads(f.read_text())
        t, det = card["tuning"], card["detection"]
        if commands and t["roots"] != roots:  # a choice on other images: not comparable
            continue
        ext = t.get("extent_fraction", 0.0)  # cards tuned before relative extents: 0
        join = t.get("join", -1)  # and before box joining: off
        cell = next(g for g in t["grid"] if g["theta"] == t["theta"] and g["grow"] == t["grow"]
                    and g.get("extent_fraction", 0.0) == ext and g.get("join", -1) == join)
        how = (f"{t['theta']:g}, {t['grow']}" + (f" (relative extent {ext:g})" if ext else "")
               + (f" (join {join})" if join >= 0 else ""))
        lines.append(f"| {label} | {det['tta']} | {how} | "
                     f"**{_f(t['ap'])}** | {cell['found']}/{cell['boxes']} | "
                     f"{cell['fa_per_image']:.1f} | {_f(card['retuned']['tuning_ap_before'])} | "
                     f"{paper_tuning(runs, name)} |")
        commands.append(card["retuned"]["command"])
        roots = t["roots"]
    if not commands:
        return "(no candidate tuned yet)"
    where = ", ".join(f"`{r}` ({len(s)} series)" for r, s in roots.items())
    lines += ["", f"Tuning images (odd, n % 4 == 1) of {where}: "
              f"{t['images']} images; the source's settings: the theta and grow the model "
              "came with (its training's own choice on the tuning images of the series it "
              "trained on); "
              "the paper series' tuning images alone: AP at the chosen settings, `xdefect "
              "evaluate --model runs/seg/NAME/model.safetensors --gdxray "
              "../shared/data/gdxray --split tuning --out runs/eval-tuning-paper-NAME` "
              "('-': not evaluated)",
              "", "Commands: " + "; ".join(f"`{c}`" for c in commands)]
    return "\n".join(lines)


def adapt_diagnosis(doc: dict) -> str:
    """Simulated-void AP against real-defect AP of adapted segmenters
    (``experiments/adapt_diagnosis.py``)."""
    lines = [f"Series {doc['series']} of `{doc['root']}`; validation: {doc['validation']}.", "",
             "| model | simulated voids on the odd images: best theta, AP | real defects, "
             "even images, card's theta: AP, found | the same at the simulated choice |",
             "|---|---|---|---|"]
    for r in doc["rows"]:
        c, sc = r["real_even"]["card"], r["real_even"]["simulated_choice"]
        sim_ap = r["simulated_ap_by_theta"][f"{r['simulated_best']:g}"]
        lines.append(f"| `{r['model']}` | {r['simulated_best']:g}, {_f(sim_ap)} | "
                     f"{c['theta']:g}: {_f(c['ap'])}, {c['true_positives']}/{c['gt_boxes']} | "
                     f"{sc['theta']:g}: {_f(sc['ap'])}, {sc['true_positives']}/"
                     f"{sc['gt_boxes']} |")
    lines += ["", f"Command: `{doc['command']}`"]
    return "\n".join(lines)


def fcn_loso(doc: dict) -> str:
    """Leave-series-out with the fully convolutional detector (``fcn_detector.py
    --kfold``)."""
    lines = ["| held-out series | fold | images | boxes | AP | found | false alarms / image |",
             "|---|---|---|---|---|---|---|"]
    for f in doc["folds"]:
        for s in f["held_out"]:
            if s in f["per_series"]:
                found = f["per_series_found"][s]
                lines.append(f"| {s} | {f['fold']} | {f['per_series_images'][s]} | "
                             f"{found.split('/')[1]} | "
                             f"{_f(f['per_series'][s])} | {found.split('/')[0]} | "
                             f"{f['per_series_fa'][s]:.1f} |")
    p = doc["pooled"]
    r2 = p["recall_at_fppi"]
    lines.append(f"| **pooled** | {doc['folds_run']} of {doc['kfold']} folds | {p['images']} | "
                 f"{p['gt_boxes']} | **{_f(p['ap'])}** | {p['true_positives']} | "
                 f"{p['false_alarms_per_image']:.1f} |")
    mins = sum(f["train_minutes"] + f["test_s"] / 60 for f in doc["folds"])
    lines += ["", f"Recall at 2 false alarms per image (the same detections, a higher score "
              f"cut): {r2['2.0']:.3f} (1 per image: {r2['1.0']:.3f}). "
              + ("Thresholds per fold: " + ", ".join(
                  f"{f['fold']}: {f['threshold']:g}"
                  + (f" (minimum area {f['a_min']} px)" if f.get("a_min", 4) != 4 else "")
                  for f in doc["folds"])
                 + " (each fold's best AP on the tuning images of the series it trained "
                   "on). " if len({f["threshold"] for f in doc["folds"]}) > 1 else
                 f"Threshold {doc['folds'][0]['threshold']:g}. ")
              + f"Each fold trained "
              f"from scratch on the train images of the other annotated series of "
              f"{', '.join(f'`{r}`' for r in doc['roots'])} "
              f"({doc['folds'][0]['crops_seen']:,} crops in fold 0), tested on every image of its "
              f"held-out series; {mins:.0f} minutes in all. Command: "
              f"`{doc['command']}` after one `--fold I` run per fold."]
    return "\n".join(lines)


#: the leave-series-out runs compared side by side (``fcn-loso-variants``): result file
#: (next to ``--fcn``) and what the run changed against the reference
LOSO_VARIANTS = (("fcn_loso_fcn-real-amin.json", "reference (`fcn-real`)"),
                 ("fcn_loso_fcn-aug-amin.json", "grey-level augmentation"),
                 ("fcn_loso_fcn-bg-amin.json", "+ unannotated backgrounds"),
                 ("fcn_loso_fcn-bglcn-amin.json", "+ unannotated backgrounds + local "
                                                   "contrast channel (sigma 8 px)"),
                 ("fcn_loso_fcn-bg-s1-amin.json", "+ unannotated backgrounds, seed 1"),
                 ("fcn_loso_fcn-ens-bglcn-amin.json", "mean of the backgrounds and the "
                                                      "local contrast models"),
                 ("fcn_loso_fcn-ens-seeds-amin.json", "mean of the backgrounds models of "
                                                      "seeds 0 and 1"))
#: the third seed (2) of the backgrounds recipe and of its local contrast variant, their
#: ensemble, and each with the label-free per-casting threshold (``--rate-rule``): result
#: files archived in ``experiments/results/`` (those of LOSO_VARIANTS were lost with runs/)
LOSO_SEED2 = (("fcn_loso_fcn-bg-s2-amin.json", "backgrounds, seed 2"),
              ("fcn_loso_fcn-bglcn-s2-amin.json", "+ local contrast, seed 2"),
              ("fcn_loso_fcn-ens-s2-amin.json", "mean of the two, seed 2"),
              ("fcn_loso_fcn-bg-s2-amin-rate.json", "backgrounds, seed 2; rate rule"),
              ("fcn_loso_fcn-bglcn-s2-amin-rate.json", "+ local contrast, seed 2; rate rule"),
              ("fcn_loso_fcn-ens-s2-amin-rate.json", "mean of the two, seed 2; rate rule"))
#: hard negatives mined in the deployed mode (``--hard-rounds``) against the same recipe
#: and seed without them
LOSO_HARD = (("fcn_loso_fcn-bg-s2-amin.json", "backgrounds, seed 2"),
             ("fcn_loso_fcn-bghard-s2-amin.json", "+ hard negatives, 2 rounds, seed 2"),
             ("fcn_loso_fcn-bghard-amin.json", "+ hard negatives, 2 rounds, seed 0"),
             ("fcn_loso_fcn-bghard-s1-amin.json", "+ hard negatives, 2 rounds, seed 1"))
#: the same fold models boxed by the extent above the threshold, with the box growth
#: chosen too, then with the relative extent chosen too (``fcn_detector.py --grow-grid``,
#: ``--extent-grid``): (result file, label)
LOSO_EXTENT = (("fcn_loso_fcn-bghard-s2-amin.json", "hard negatives, seed 2 (threshold, "
                                                   "minimum area)"),
               ("fcn_loso_fcn-bghard-s2-amin-grow.json", "seed 2, + growth"),
               ("fcn_loso_fcn-bghard-s2-amin-grow-ext.json", "seed 2, + growth and relative "
                                                             "extent"),
               ("fcn_loso_fcn-bghard-amin.json", "hard negatives, seed 0 (threshold, "
                                                 "minimum area)"),
               ("fcn_loso_fcn-bghard-amin-grow.json", "seed 0, + growth"),
               ("fcn_loso_fcn-bghard-amin-grow-ext.json", "seed 0, + growth and relative "
                                                          "extent"),
               ("fcn_loso_fcn-bghard-s1-amin.json", "hard negatives, seed 1 (threshold, "
                                                    "minimum area)"),
               ("fcn_loso_fcn-bghard-s1-amin-grow.json", "seed 1, + growth"))
#: fold models averaged (nothing retrained), each fold's threshold, minimum area and growth
#: chosen on its training series' tuning images: (result file, label)
LOSO_ENSEMBLE = (("fcn_loso_fcn-bghard-amin-grow.json", "hard negatives, seed 0"),
                 ("fcn_loso_fcn-bghard-s1-amin-grow.json", "hard negatives, seed 1"),
                 ("fcn_loso_fcn-bghard-s2-amin-grow.json", "hard negatives, seed 2"),
                 ("fcn_loso_fcn-ens-s2-amin-grow.json", "mean of backgrounds and local "
                                                        "contrast, seed 2"),
                 ("fcn_loso_fcn-ens3hard-amin-grow.json", "mean of the three hard-negative "
                                                          "seeds"),
                 ("fcn_loso_fcn-ens5-amin-grow.json", "mean of all five"),
                 ("fcn_loso_fcn-ens-s2-amin-grow-tta4.json", "mean of backgrounds and "
                                                             "local contrast, seed 2, 4 "
                                                             "mirror views each"),
                 ("fcn_loso_fcn-ens5-amin-grow-tta4.json", "mean of all five, 4 mirror "
                                                           "views each"))
#: the five-model mean with the boxes of one defect joined (DetectParams.join) or its
#: regions linked (DetectParams.link), chosen per fold with threshold, area and growth
LOSO_JOIN = (("fcn_loso_fcn-ens5-amin-grow.json", "mean of all five (growth chosen)"),
             ("fcn_loso_fcn-ens5-amin-grow-join.json", "+ boxes joined (join chosen from "
                                                       "off, 0, 2, 4, 8 px)"),
             ("fcn_loso_fcn-ens5-amin-grow-join-link.json", "+ regions linked (link chosen "
                                                            "from off, p 0.7, 0.5, 0.3; "
                                                            "join from off, 0)"),
             ("fcn_loso_fcn-ens5-amin-grow-join-smean.json", "boxes joined, each training "
                                                             "casting weighted alike in "
                                                             "the choice"),
             ("fcn_loso_fcn-ens3hard-amin-grow.json", "mean of the three hard-negative "
                                                      "seeds (growth chosen)"),
             ("fcn_loso_fcn-ens3hard-amin-grow-join.json", "the three, + boxes joined "
                                                           "(off, 0, 2, 4, 8 px)"),
             ("fcn_loso_fcn-ens-s2-amin-grow.json", "mean of backgrounds and local "
                                                    "contrast, seed 2 (growth chosen)"),
             ("fcn_loso_fcn-ens-s2-amin-grow-join.json", "the two, + boxes joined (off, 0, "
                                                         "2, 4, 8 px)"),
             ("fcn_loso_fcn-ens5-amin-grow-join-tta4.json", "mean of all five, boxes "
                                                            "joined, 4 mirror views each"))
#: fold 0 (C0001, C0031, C0040) of two variants, each at the threshold the other chose,
#: and the first with another seed: (result file, label)
LOSO_FOLD0 = (("fcn_loso_fcn-bg-amin.json", "unannotated backgrounds; threshold and minimum "
                                            "area chosen on the tuning images"),
              ("fcn_loso_fcn-bg-t0.9.json", "unannotated backgrounds; threshold 0.9 given"),
              ("fcn_loso_fcn-bg-s1-amin.json", "unannotated backgrounds, seed 1; threshold "
                                               "and minimum area chosen on the tuning "
                                               "images"),
              ("fcn_loso_fcn-bg-s1-t0.7.json", "unannotated backgrounds, seed 1; threshold "
                                               "0.7 given"),
              ("fcn_loso_fcn-bgxm-amin.json", "+ contrasts drawn per void; threshold and "
                                              "minimum area chosen on the tuning images"),
              ("fcn_loso_fcn-bgxm-t0.7.json", "+ contrasts drawn per void; threshold 0.7 "
                                              "given"))


def fcn_loso_variants(fcn: Path, variants: tuple[tuple[str, str], ...] = LOSO_VARIANTS,
                      settings: bool = False) -> str:
    """Per held-out series, the AP of each leave-series-out variant of ``variants``
    ((result file, label) pairs) that has run (the same five folds, the same threshold and
    minimum-area rule); ``settings``: a row of the settings each fold chose."""
    docs = [(label, json.loads(fcn.with_name(f).read_text())) for f, label in variants
            if fcn.with_name(f).exists()]
    series = sorted({s for _, d in docs for f in d["folds"] for s in f["held_out"]})
    lines = ["| held-out series | " + " | ".join(lbl for lbl, _ in docs) + " |",
             "|---|" + "---|" * len(docs)]
    for s in series:
        cells = []
        for _, d in docs:
            f = next((f for f in d["folds"] if s in f["held_out"]), None)
            cells.append(f"{_f(f['per_series'][s])} ({f['per_series_found'][s]})"
                         if f and s in f["per_series"] else "-")
        lines.append(f"| {s} | " + " | ".join(cells) + " |")

    def series_mean(d: dict) -> float:
        aps = [f["per_series"][s] for f in d["folds"] for s in f["held_out"]
               if s in f["per_series"]]
        return sum(aps) / len(aps)

    lines.append("| mean of the series | " + " | ".join(f"{series_mean(d):.4f}"
                                                        for _, d in docs) + " |")
    lines.append("| **pooled AP** | " + " | ".join(
        f"**{_f(d['pooled']['ap'])}** ({d['pooled']['true_positives']}/"
        f"{d['pooled']['gt_boxes']})" for _, d in docs) + " |")
    lines.append("| false alarms / image | " + " | ".join(
        f"{d['pooled']['false_alarms_per_image']:.1f}" for _, d in docs) + " |")
    lines.append("| recall at 2 (1) false alarms / image | " + " | ".join(
        f"{d['pooled']['recall_at_fppi']['2.0']:.3f} ({d['pooled']['recall_at_fppi']['1.0']:.3f})"
        for _, d in docs) + " |")
    lines.append("| crops seen in fold 0 | " + " | ".join(
        f"{d['folds'][0]['crops_seen']:,}" if d["folds"][0]["fold"] == 0 else "-"
        for _, d in docs) + " |")
    lines.append("| folds run (pooled and mean over them) | " + " | ".join(
        f"{d['folds_run']} of {d['kfold']}" for _, d in docs) + " |")
    if settings:
        lines.append("| chosen per fold: p / area / grow / join / link | " + " | ".join(
            ", ".join(f"{f['threshold']:g}/{f['a_min']}/{f['grow']}/{f.get('join', -1)}/"
                      f"{f.get('link', 1.0):g}" for f in d["folds"])
            for _, d in docs) + " |")
    lines += rate_thresholds(docs)
    lines += ["", "Commands: " + "; ".join(f"`{d['command']}` after one `--fold I` run per "
                                            f"fold" for _, d in docs)]
    return "\n".join(lines)


def hard_rounds(doc: dict, label: str = "") -> str:
    """The false alarms each fold mined per round (a paragraph after the table)."""
    parts = []
    for f in doc["folds"]:
        rs = f.get("hard_negatives") or []
        if rs:
            parts.append(f"fold {f['fold']}: " + ", ".join(
                f"{r['false_alarms']:,} in {r['images_with_false_alarms']} of "
                f"{r['images_mined']} images at step {r['step']:,} ({r['mine_s']:.0f} s)"
                for r in rs))
    what = f" ({label})" if label else ""
    return ("\n\nFalse alarms mined per round" + what + " (regions of p > 0.5 away from "
            "real defects, at most 16 per image): " + "; ".join(parts) + ".") if parts else ""


def loso_scores(doc: dict) -> str:
    """``experiments/loso_scores.py``: per run and held-out series, the defects found and
    the false alarms at each fold's threshold, their median scores, the share scoring at
    least ``high``, and their median box sides."""
    lines = ["| run | held-out series | found | false alarms / image | median score: found / "
             "false alarms | share >= 0.99: found / false alarms | median side (px): found "
             "/ false alarms |", "|---|---|---|---|---|---|---|"]

    def f(v: float | None, nd: int = 3) -> str:
        return "-" if v is None else f"{v:.{nd}f}"

    for name, run in doc["runs"].items():
        for s, r in run["per_series"].items():
            lines.append(f"| {name} | {s} | {r['found']}/{r['defects']} | "
                         f"{r['false_alarms'] / max(r['images'], 1):.1f} | "
                         f"{f(r['tp_score_median'])} / {f(r['fa_score_median'])} | "
                         f"{f(r['tp_high'], 2)} / {f(r['fa_high'], 2)} | "
                         f"{f(r['tp_side_median'], 0)} / {f(r['fa_side_median'], 0)} |")
    ranked = [f"{name} {r['pooled_ap_ranked_by']['peak']:.4f} -> "
              f"{r['pooled_ap_ranked_by']['area']:.4f}" for name, r in doc["runs"].items()
              if "pooled_ap_ranked_by" in r]
    cmds = sorted({r["command"] for r in doc["runs"].values()})
    return "\n".join(lines + (["", "Pooled AP of the same detections ranked by peak "
                                "probability -> by box area: " + "; ".join(ranked)]
                               if ranked else [])
                      + ["", "Command: " + "; ".join(f"`{c}`" for c in cmds)])


def loso_localisation(doc: dict) -> str:
    """``experiments/loso_localisation.py``: per held-out series, AP at IoU 0.5, 0.3 and
    0.1, the kinds of the boxes missed at IoU 0.5 and the median box-to-defect side
    ratios; pooled AP per IoU below."""
    by = doc["by_iou"]
    lines = ["| held-out series | boxes | AP at IoU 0.5 / 0.3 / 0.1 | missed at IoU 0.5: nothing "
             "/ merged / too small / too big | box side / defect side: width, height | box "
             "centre offset (defect widths): x, y |", "|---|---|---|---|---|---|"]
    for s, v in doc["series"].items():
        aps = " / ".join(_f(by[t]["per_series"].get(s), 2) for t in ("0.5", "0.3", "0.1"))
        m = v["missed"]
        lines.append(f"| {s} | {v['boxes']} | {aps} | {m['nothing']} / {m['merged']} / "
                     f"{m['too small']} / {m['too big']} | {_f(v['width_ratio'], 2)}, "
                     f"{_f(v['height_ratio'], 2)} | {_f(v['centre_dx'], 2)}, "
                     f"{_f(v['centre_dy'], 2)} |")
    pooled = "; ".join(f"IoU {t}: {_f(v['ap'])} ({v['true_positives']} found)"
                       for t, v in by.items())
    rank = doc.get("ranked_by_series")
    ranking = ("" if rank is None else
               f" At IoU 0.5 with each held-out series' detections ranked against the other "
               f"series' by their own series' precision at their rank (an oracle: reads the "
               f"labels, keeps each series' order): {_f(rank['ap'])}; the mean of the "
               f"per-series APs: {_f(rank['mean_series_ap'])}.")
    return "\n".join(lines + ["", f"Pooled AP of the same detections ({doc['images']} images, "
                                  f"`{doc['work']}`): {pooled}.{ranking} Side ratios and "
                                  "offsets: medians over each defect's best-overlapping "
                                  "detection where they overlap at IoU >= 0.1.",
                              "", f"Command: `{doc['command']}`"])


def tuning_misses(doc: dict) -> str:
    """``experiments/tuning_misses.py``: per model and series, the tuning images' boxes
    found, never lit (the score never reaches theta inside them) and lit but missed (by
    kind), the unlit boxes' peak probabilities and the found and unlit boxes' contrasts."""
    lines = ["| model | series | boxes | found | never above theta | lit, missed: nothing / "
             "merged / too small / too big | unlit: median peak p; with p >= 0.05 / 0.1 / "
             "0.2 | contrast (grey levels): found, unlit | AP | false alarms |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for d in doc["models"]:
        for s, v in [("all", d["pooled"]), *d["series"].items()]:
            m, at = v["lit_missed"], v["unlit_peak_p_at_least"]
            name = f"`{d['name']}` (theta {d['theta']:g}, {d['tta']} views)" if s == "all" \
                else ""
            lines.append(
                f"| {name} | {s} | {v['boxes']} | {v['found']} | {v['unlit']} | "
                f"{m['nothing']} / {m['merged']} / {m['too small']} / {m['too big']} | "
                f"{_f(v['unlit_peak_p_median'], 3)}; {at['0.05']} / {at['0.1']} / "
                f"{at['0.2']} | {_f(v['contrast_found'], 1)}, {_f(v['contrast_unlit'], 1)} "
                f"| {_f(v['ap'], 3)} | {v['false_alarms']} |")
    roots = ", ".join(f"`{r}`" for r in doc["roots"])
    return "\n".join(lines + ["", f"Annotated tuning images (odd, n % 4 == 1) of {roots}; "
                                  "each model with its card's settings.", "",
                               f"Command: `{doc['command']}`"])


#: ``experiments/loso_box_scale.py`` result files (block ``loso-box-scale``), the first
#: shown per series
BOX_SCALE_RUNS = ("loso5_box_loso5-ext.json", "loso5_box_loso5-ext-fa2.json",
                  "loso5_box_loso5-ext-odd.json", "loso5_box_loso5-ext-fa2-odd.json",
                  "loso5_box_loso5-hard.json", "loso5_box_loso5-hard-fa2.json",
                  "loso5_box_loso5-hard-segnet-lcn.json",
                  "loso5_box_loso5-hard-segnet-lcn-odd.json")


def loso_box_scale(docs: list[dict]) -> str:
    """``experiments/loso_box_scale.py``: per run, the scale each fold chose on the other
    folds and the pooled AP before and after; per series for the first run, and its
    pooled AP at every fixed scale (a diagnosis)."""
    lines = ["| fold models (`--work`) | detections | chosen on the other folds' held-out "
             "series: | box scale chosen per fold | pooled AP, scale 1 | **pooled AP, chosen "
             "scales** | found | false alarms / image |", "|---|---|---|---|---|---|---|---|"]
    for d in docs:
        p, one = d["pooled"], d["scale_1"]
        chosen = ", ".join(f"{f['chosen']['box_scale']:g}" for f in d["folds"])
        on = "odd images" if "odd" in d.get("chosen_on", "") else "all images"
        lines.append(f"| `{d['work']}` | {d['point']} | {on} | {chosen} | {_f(one['ap'])} "
                     f"({one['true_positives']}/{one['gt_boxes']}) | **{_f(p['ap'])}** | "
                     f"{p['true_positives']}/{p['gt_boxes']} | "
                     f"{p['false_alarms_per_image']:.1f} |")
    first = docs[0]
    lines += ["", f"Per held-out series, `{first['work']}` ({first['point']}):", "",
              "| held-out series | boxes | AP, scale 1 | AP, chosen scale | found, scale 1 | "
              "found, chosen scale |", "|---|---|---|---|---|---|"]
    before, after = first["scale_1"]["per_series"], first["pooled"]["per_series"]
    for s in sorted(after):
        lines.append(f"| {s} | {after[s]['gt_boxes']} | {_f(before[s]['ap'], 3)} | "
                     f"{_f(after[s]['ap'], 3)} | {before[s]['true_positives']} | "
                     f"{after[s]['true_positives']} |")
    fixed = "; ".join(f"{k}: {_f(v['ap'])}" for k, v in first["fixed"].items())
    roots = "; ".join(f"`{r}`: {_f(v['scale 1'])} -> {_f(v['chosen scales'])}"
                      for r, v in first.get("by_root", {}).items())
    if roots:
        lines += ["", f"Pooled per root (scale 1 -> chosen scales): {roots}."]
    lines += ["", f"The same folds at one fixed scale each (all folds; a diagnosis that "
                  f"reads the held-out labels, nothing chosen by it): {fixed}.", "",
              "Commands: " + "; ".join(f"`{d['command']}`" for d in docs)]
    return "\n".join(lines)


#: ``experiments/loso_settings.py`` result files (block ``loso-settings``), the first shown
#: per series
SETTINGS_RUNS = ("loso5_settings_loso5-bg-ext.json", "loso5_settings_loso5-bg-ext-odd.json")


def loso_settings(docs: list[dict]) -> str:
    """``experiments/loso_settings.py``: per run, the pooled AP at each fold's own tuning
    choice and at the settings chosen on the other folds; per held-out series for the
    first run; the settings per fold."""
    lines = ["| fold models (`--work`) | chosen on the other folds' held-out series: | "
             "pooled AP, each fold's own settings | **pooled AP, chosen settings** | found | "
             "false alarms / image | best single setting for all folds (diagnosis) |",
             "|---|---|---|---|---|---|---|"]
    for d in docs:
        p, own, one = d["pooled"], d["own_settings"], d["best_single_setting"]
        on = "odd images" if "odd" in d["chosen_on"] else "all images"
        lines.append(f"| `{d['work']}` | {on} | {_f(own['ap'])} ({own['true_positives']}/"
                     f"{own['gt_boxes']}, {own['false_alarms_per_image']:.1f} per image) | "
                     f"**{_f(p['ap'])}** | {p['true_positives']}/{p['gt_boxes']} | "
                     f"{p['false_alarms_per_image']:.1f} | {one['setting']}: {_f(one['ap'])} |")
    first = docs[0]
    before, after = first["own_settings"]["per_series"], first["pooled"]["per_series"]
    fold_of = {s: f["fold"] for f in first["folds"] for s in f["held_out"]}
    lines += ["", f"Per held-out series, `{first['work']}` ({first['chosen_on']}):", "",
              "| held-out series | fold | boxes | AP (found), own settings | AP (found), "
              "chosen settings | false alarms / image, own -> chosen |",
              "|---|---|---|---|---|---|"]
    for s in sorted(after):
        b, a = before[s], after[s]
        lines.append(f"| {s} | {fold_of[s]} | {a['gt_boxes']} | {_f(b['ap'])} "
                     f"({b['true_positives']}) | {_f(a['ap'])} ({a['true_positives']}) | "
                     f"{b['false_alarms_per_image']:.1f} -> {a['false_alarms_per_image']:.1f} |")
    per = "; ".join(f"{f['fold']}: {f['own']['setting']} -> {f['chosen']['setting']} (the "
                    f"other folds' AP {_f(f['chosen']['others_ap_at_own'])} -> "
                    f"{_f(f['chosen']['others_ap'])})" for f in first["folds"])
    g = first["grid"]
    return "\n".join(lines + [
        "", f"Settings as theta/relative extent/grow/join, each fold's own (chosen on its "
            f"training series' tuning images) -> chosen on the other folds: {per}. Grid: "
            f"theta {g['thetas']}, relative extent {g['extents']}, grow {g['grows']}, join "
            f"{g['joins']} ({g['settings']} settings); every detection reported. The best "
            "single setting reads every fold's held-out labels: a diagnosis, nothing chosen "
            "by it.", "", "Commands: " + "; ".join(f"`{d['command']}`" for d in docs)])


#: ``experiments/loso_box_examples.py`` result files (block ``loso-box-examples``), the first
#: shown per series
BOX_EXAMPLES_RUNS = ("loso5_boxes1_loso5-bg-ext.json", "loso5_boxes3_loso5-bg-ext.json",
                     "adapt_boxes1_adapt-series-loso-bg-ign09.json")


def loso_box_examples(docs: list[dict]) -> str:
    """``experiments/loso_box_examples.py``: the held-out castings' test images at box scale
    1 and with each casting's box size set on its first annotated tuning images; per
    series for the first run."""
    lines = ["| models | annotated tuning images read per casting (at least) "
             "| test AP, the models' own box scale | **test AP, box size from the casting's "
             "tuning images** | found | false alarms / image |", "|---|---|---|---|---|---|"]
    for d in docs:
        b, c = d["pooled_scale_1"], d["pooled_calibrated"]
        what = ("adapted per casting (`--adapt`)" if d.get("tuned") is None else
                "leave-series-out folds")
        lines.append(f"| `{d['work']}`, {what} | {d['images']} | {_f(b['ap'])} "
                     f"({b['true_positives']}/"
                     f"{b['gt_boxes']}) | **{_f(c['ap'])}** | {c['true_positives']}/"
                     f"{c['gt_boxes']} | {c['false_alarms_per_image']:.1f} |")
    first = docs[0]
    lines += ["", f"Per held-out series, `{first['work']}`, at least {first['images']} "
                  "annotated tuning image(s) read:", "",
              "| held-out series | fold | tuning images read | defects paired | box scale set "
              "| test AP (found), scale 1 | test AP (found), the casting's box size |",
              "|---|---|---|---|---|---|---|"]
    for s, v in sorted(first["per_series"].items()):
        b, c = v["scale_1"], v["calibrated_model"]
        read = (f"{len(v['images'])}" if v["calibrated"] else "too few paired defects: "
                "its own scale kept")
        paired = f"{v['pairs']}/{v['defects']}" if v["calibrated"] else "-"
        lines.append(f"| {s} | {v['fold']} | {read} | {paired} | {v['box_scale']:g} | "
                     f"{_f(b['ap'])} ({b['true_positives']}/{b['gt_boxes']}) | "
                     f"{_f(c['ap'])} ({c['true_positives']}) |")
    return "\n".join(lines + ["", "Commands: " + "; ".join(f"`{d['command']}`" for d in docs)])


def adapt_box_scale(doc: dict) -> str:
    """``loso_box_scale.py --adapt``: each adaptation run's pooled AP (even images) at
    scale 1, at each series' fold's scale and at 1.1 and 1.2."""
    cols = ("scale 1", "the fold's scale", "scale 1.1", "scale 1.2")
    lines = ["| adaptation run (even images) | " + " | ".join(cols) + " |",
             "|---|" + "---|" * len(cols)]
    for run, v in doc["runs"].items():
        lines.append(f"| `{run}` | " + " | ".join(
            f"{_f(v[c]['ap'])} ({v[c]['true_positives']}/{v[c]['gt_boxes']})" for c in cols)
            + " |")
    first = next(iter(doc["runs"].values()))
    before, after = first["scale 1"]["per_series"], first[cols[1]]["per_series"]
    per = "; ".join(f"{s} {_f(before[s]['ap'], 2)} -> {_f(after[s]['ap'], 2)}"
                    for s in first["fold_scales"] if s in before)
    return "\n".join(lines + ["", f"Per series, the first run (scale 1 -> the fold's "
                                   f"scale): {per}. The folds' scales: `{doc['scales_from']}`.",
                               "", f"Command: `{doc['command']}`"])


def loso_growth(doc: dict) -> str:
    """``experiments/loso_growth.py``: per run and held-out series, the AP at each fold's
    own growth and at every growth and scale factor tried (a diagnosis: nothing chosen)."""
    out = []
    for name, run in doc["runs"].items():
        cols = ([("folds' choice", run["chosen"])]
                + [(f"grow {g}", r) for g, r in run["grows"].items()]
                + [(f"scale {k}", r) for k, r in run["scales"].items()]
                + [(f"own growth, join {j}", r) for j, r in run.get("joins", {}).items()])
        series = list(run["chosen"]["per_series"])
        lines = [f"`{name}`:", "", "| held-out series | " + " | ".join(c for c, _ in cols)
                 + " |", "|---|" + "---|" * len(cols)]
        for s in series:
            lines.append(f"| {s} ({run['chosen']['grow_by_series'][s]}) | "
                         + " | ".join(_f(r["per_series"].get(s)) for _, r in cols) + " |")
        lines.append("| **pooled** | " + " | ".join(f"**{_f(r['ap'])}** ({r['found']}/"
                                                    f"{r['boxes']})" for _, r in cols) + " |")
        lines.append("| false alarms / image | " + " | ".join(f"{r['fa_per_image']:.1f}"
                                                             for _, r in cols) + " |")
        out.append("\n".join(lines + ["", f"Command: `{run['command']}`"]))
    return "\n\n".join(out)


def rate_thresholds(docs: list[tuple[str, dict]]) -> list[str]:
    """For the runs with the label-free rate rule, each held-out series' threshold: the
    one chosen on the training series' tuning images -> the rule's."""
    rated = [(lbl, d) for lbl, d in docs if "pooled_fixed" in d]
    if not rated:
        return []
    lines = ["", "Thresholds of the rate rule (chosen on the training series' tuning images "
             "-> the held-out casting's own, label-free; reference regions per image):", "",
             "| held-out series | " + " | ".join(lbl for lbl, _ in rated) + " |",
             "|---|" + "---|" * len(rated)]
    series = sorted({s for _, d in rated for f in d["folds"] for s in f["held_out"]})
    for s in series:
        cells = []
        for _, d in rated:
            f = next((f for f in d["folds"] if s in f["threshold_by_series"]), None)
            cells.append(f"{f['threshold']:g} -> {f['threshold_by_series'][s]:g} "
                         f"({f['reference_regions_per_image']:.2f})" if f else "-")
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return lines


def loso_fold0(fcn: Path) -> str:
    """Fold 0 of the leave-series-out variants of :data:`LOSO_FOLD0`: per held-out series
    AP (found) and false alarms per image, at the threshold each row names."""
    docs = [(label, json.loads(fcn.with_name(f).read_text())) for f, label in LOSO_FOLD0
            if fcn.with_name(f).exists()]
    lines = ["| variant, threshold | theta, minimum area | C0001 | C0031 | C0040 | "
             "pooled AP | FA/image |", "|---|---|---|---|---|---|---|"]
    for label, d in docs:
        f = next((f for f in d["folds"] if f["fold"] == 0), None)
        if f is None:
            continue
        if f.get("x_max_range"):
            label += " (`x_max` {:g}-{:g} mm)".format(*f["x_max_range"])
        cells = " | ".join(f"{_f(f['per_series'][s])} ({f['per_series_found'][s]})"
                           for s in ("C0001", "C0031", "C0040"))
        lines.append(f"| {label} | {f['threshold']:g}, {f['a_min']} px | {cells} | "
                     f"{_f(f['ap'])} | {f['false_alarms_per_image']:.1f} |")
    lines += ["", "Fold 0 of five, the same training images (train images of the other "
              "twelve annotated series, all images of the eleven unannotated ones), 14 "
              "minutes of training on one core, seed 0 unless named; a given threshold "
              "keeps the minimum area at 4 px. Commands: "
              + "; ".join(f"`{d['command']}`" for _, d in docs)
              + ", each after the `--fold 0` run with the same arguments and `--minutes 14 "
              "--threads 1` (a `--threshold` run reuses the fold's saved model)"]
    return "\n".join(lines)


def sharpness(doc: dict) -> str:
    """Edge slope and contrast of real and simulated defects
    (``experiments/defect_sharpness.py``)."""
    lines = ["| defects | boxes | contrast p25 / p50 / p75 | edge slope p25 / p50 / p75 (1/px) |",
             "|---|---|---|---|"]

    def row(label: str, m: dict) -> str:
        c, sl = m["contrast"], m["slope"]
        return (f"| {label} | {c['n']} | {c['25']:.1f} / {c['50']:.1f} / {c['75']:.1f} | "
                f"{sl['25']:.3f} / {sl['50']:.3f} / {sl['75']:.3f} |")

    lines.append(row("real (train images)", doc["real"]))
    for bl, m in doc["simulated"].items():
        lines.append(row(f"simulated, blur {bl} px", m))
    cc = doc.get("centre_contrast")
    if cc:
        lines += ["", "| centre contrast (grey levels, signed) | defects | p10 | p25 | median | "
                  "p75 |", "|---|---|---|---|---|---|"]
        for name, m in cc["real"].items():
            lines.append(f"| real, {name} | {m['n']} | {m['10']:.1f} | {m['25']:.1f} | "
                         f"{m['50']:.1f} | {m['75']:.1f} |")
        for xm, m in cc["simulated_x_max"].items():
            lines.append(f"| simulated, x_max {xm} mm | {m['n']} | {m['10']:.1f} | "
                         f"{m['25']:.1f} | {m['50']:.1f} | {m['75']:.1f} |")
    lines += ["", f"Simulated: mu {doc['mu_range'][0]:g}-{doc['mu_range'][1]:g} /mm, 8 per "
              f"train image; slopes of defects with contrast >= {doc['min_contrast']:g}. "
              f"Closest median slope: blur {doc['closest_blur']} px. Command: `"
              + doc["command"] + "`"]
    return "\n".join(lines)


#: (result file, what changed) of the leave-series-out rows of the ablation table
LOSO_ROWS = (("fcn_loso_fcn-real-t0.9.json", "threshold 0.9 from the paper "
              "series' tuning images"),
             ("fcn_loso_fcn-real.json", "threshold chosen per fold on the "
              "training series' tuning images"),
             ("fcn_loso_fcn-real-amin.json", "threshold and minimum region area "
              "(4, 16, 48 or 120 px) chosen per fold on the training series' "
              "tuning images, the same models"),
             ("fcn_loso_fcn-real-amin-grow.json", "threshold, minimum region area "
              "and box growth (0-6 px a side) chosen per fold on the training "
              "series' tuning images, the same models"),
             ("fcn_loso_fcn-aug-amin.json", "grey-level augmentation "
              "(`xdefect.augment`), 12 minutes of training per fold, threshold and "
              "minimum region area chosen per fold on the training series' tuning "
              "images"),
             ("fcn_loso_fcn-bg-amin.json", "all 452 images of the eleven "
              "unannotated series added as backgrounds for simulated voids, "
              "threshold and minimum region area chosen per fold on the training "
              "series' tuning images"),
             ("fcn_loso_fcn-bglcn-amin.json", "unannotated backgrounds and a "
              "second input channel, the local contrast normalisation (sigma 8 "
              "px), threshold and minimum region area chosen per fold on the "
              "training series' tuning images"),
             ("fcn_loso_fcn-bg-s1-amin.json", "unannotated backgrounds, seed 1 "
              "(the seed's spread), threshold and minimum region area chosen per "
              "fold on the training series' tuning images"),
             ("fcn_loso_fcn-ens-bglcn-amin.json", "the mean probability map "
              "of two of the runs above (unannotated backgrounds; and with the "
              "local contrast channel), nothing retrained, threshold and minimum "
              "region area chosen per fold on the training series' tuning images"),
             ("fcn_loso_fcn-ens-seeds-amin.json", "the mean probability map of "
              "the unannotated-backgrounds models of seeds 0 and 1, nothing "
              "retrained, threshold and minimum region area chosen per fold on the "
              "training series' tuning images"),
             ("fcn_loso_fcn-bgxm-amin.json", "unannotated backgrounds, each "
              "simulated void's contrast drawn (`--x-max-range`, block "
              "`loso-fold0`), threshold and minimum region area chosen per fold on "
              "the training series' tuning images"))


_CHOSEN = ("threshold and minimum region area chosen per fold on the training series' "
           "tuning images")
_GROWN = ("threshold, minimum region area and box growth (0-3 px a side) chosen per fold on "
          "the training series' tuning images")
_RATE = ("minimum region area chosen per fold on the training series' tuning images, the "
         "threshold per held-out casting by the label-free rate rule (`--rate-rule`), the same "
         "models")
#: (result file, what changed) of the seed-2 rows of the ablation table
LOSO_SEED2_ROWS = (
    ("fcn_loso_fcn-bg-s2-amin.json", f"unannotated backgrounds, seed 2, {_CHOSEN}"),
    ("fcn_loso_fcn-bglcn-s2-amin.json", "unannotated backgrounds and the local contrast "
     f"channel (sigma 8 px), seed 2, {_CHOSEN}"),
    ("fcn_loso_fcn-ens-s2-amin.json", "the mean probability map of the two seed-2 runs "
     f"above, nothing retrained, {_CHOSEN}"),
    ("fcn_loso_fcn-bg-s2-amin-rate.json", f"unannotated backgrounds, seed 2, {_RATE}"),
    ("fcn_loso_fcn-bglcn-s2-amin-rate.json", "unannotated backgrounds and the local contrast "
     f"channel, seed 2, {_RATE}"),
    ("fcn_loso_fcn-ens-s2-amin-rate.json", f"the mean of the two seed-2 runs, {_RATE}"),
    ("fcn_loso_fcn-bghard-s2-amin.json", "unannotated backgrounds and hard negatives (2 "
     "rounds mined in the deployed mode from the annotated train images of the training "
     f"series, a quarter of the other crops centred on them), seed 2, {_CHOSEN}"),
    ("fcn_loso_fcn-bghard-amin.json", "unannotated backgrounds and hard negatives (as "
     f"above), seed 0, {_CHOSEN}"),
    ("fcn_loso_fcn-bghard-s1-amin.json", "unannotated backgrounds and hard negatives (as "
     f"above), seed 1, {_CHOSEN}"),
    ("fcn_loso_fcn-bghard-s2-amin-grow.json", "unannotated backgrounds and hard negatives, "
     f"seed 2, the same models, {_GROWN}"),
    ("fcn_loso_fcn-bghard-amin-grow.json", "unannotated backgrounds and hard negatives, "
     f"seed 0, the same models, {_GROWN}"),
    ("fcn_loso_fcn-bghard-s1-amin-grow.json", "unannotated backgrounds and hard negatives, "
     f"seed 1, the same models, {_GROWN}"),
    ("fcn_loso_fcn-ens3hard-amin-grow.json", "the mean probability map of the three "
     f"hard-negative seeds' fold models above, nothing retrained, {_GROWN}"),
    ("fcn_loso_fcn-ens-s2-amin-grow.json", "the mean probability map of the seed-2 "
     f"backgrounds and local-contrast fold models, nothing retrained, {_GROWN}"),
    ("fcn_loso_fcn-ens5-amin-grow.json", "the mean probability map of five fold models (the "
     "three hard-negative seeds, the seed-2 backgrounds and local-contrast models), nothing "
     f"retrained, {_GROWN}"),
    ("fcn_loso_fcn-ens5-amin-grow-tta4.json", "the same five, each map the mean of 4 mirror "
     f"views (`--tta 4`), nothing retrained, {_GROWN}"),
    ("fcn_loso_fcn-ens-s2-amin-grow-tta4.json", "the seed-2 backgrounds and local-contrast "
     f"fold models averaged, each map the mean of 4 mirror views, nothing retrained, "
     f"{_GROWN}"),
    ("fcn_loso_fcn-ens5-amin-grow-join.json", "the same five averaged, nothing retrained, "
     f"{_GROWN}, with the box joining distance (`DetectParams.join`: off, 0, 2, 4, 8 px)"),
    ("fcn_loso_fcn-ens5-amin-grow-join-link.json", "the same five averaged, nothing "
     f"retrained, {_GROWN}, with box joining (off, 0) and region linking by hysteresis "
     "(`DetectParams.link`: off, p 0.7, 0.5, 0.3)"),
    ("fcn_loso_fcn-ens-s2-amin-grow-join.json", "the seed-2 backgrounds and local-contrast "
     f"fold models averaged, nothing retrained, {_GROWN}, with the box joining distance "
     "(off, 0, 2, 4, 8 px)"),
    ("fcn_loso_fcn-ens5-amin-grow-join-tta4.json", "the same five averaged, each map the "
     f"mean of 4 mirror views, nothing retrained, {_GROWN}, with the box joining distance "
     "(off, 0, 2, 4, 8 px)"),
    ("fcn_loso_fcn-ens3hard-amin-grow-join.json", "the three hard-negative seeds' fold "
     f"models averaged, nothing retrained, {_GROWN}, with the box joining distance (off, 0, "
     "2, 4, 8 px)"),
    ("fcn_loso_fcn-ens5-amin-grow-join-smean.json", "the same five averaged, nothing "
     f"retrained, {_GROWN}, with box joining (off, 0, 2, 4, 8 px), each training casting "
     "weighted alike in the choice (mean of the series' tuning APs, `--choose-by "
     "series-mean`)"))


def loso_rows(fcn: Path, entries: tuple[tuple[str, str], ...]) -> list[str]:
    """The ablation rows of the leave-series-out runs of ``entries`` ((result file beside
    ``fcn``, how the threshold was chosen / what changed) pairs) that have run."""
    rows = []
    for name, rule in entries:
        if not fcn.with_name(name).exists():
            continue
        d = json.loads(fcn.with_name(name).read_text())
        p = d["pooled"]
        mins = sum(f["train_minutes"] + f["test_s"] / 60 for f in d["folds"])
        rows.append(f"| leave-series-out, fully convolutional detector, real defects as "
                    f"targets, {rule}, {d['folds_run']} of {d['kfold']} folds | held-out "
                    f"series, all "
                    f"{p['images']} images | gdxray, gdxray-extra (train images of the "
                    f"others) | {mins:.0f} | {_f(p['ap'])} | "
                    f"{p['true_positives']}/{p['gt_boxes']} | "
                    f"{p['false_alarms_per_image']:.1f} |")
    return rows


#: the library-recipe leave-series-out runs pooled by ``experiments/loso_library_pool.py``
#: (result file under ``runs/``, the ablation table's label)
LIBRARY_LOSO_ROWS = (
    ("loso5_hard.json", "leave-series-out, the default's recipe per fold (`train-segmenter "
                        "--real --hard-rounds 2`, 20,000 steps; 8 views, relative extent, "
                        "joining chosen per fold), every detection"),
    ("loso5_hard-fa2.json", "the default's recipe per fold, cut at each fold's report "
                            "threshold for 2 false alarms per tuning image"),
    ("loso5_mix.json", "the same fold models averaged with `fcn-bghard`'s, 4 views each, "
                       "nothing retrained"),
    ("loso5_ext.json", "the default's recipe per fold, relative extents 0.2 and 0.3 added "
                       "to the choice, nothing retrained"),
    ("loso5_ext-fa2.json", "the default's recipe per fold, relative extents 0.2 and 0.3 "
                           "in the choice, cut at each fold's report threshold for 2 false "
                           "alarms per tuning image"),
    ("loso5_box_loso5-ext.json", "the default's recipe per fold, relative extents 0.2 and "
                                 "0.3 in the choice, every box scaled by the box scale each "
                                 "fold chose on the other folds' held-out series (1.1), "
                                 "nothing retrained"),
    ("loso5_box_loso5-ext-fa2.json", "the same box scale (1.1) on the relative-extent "
                                     "folds, cut at each fold's report threshold for 2 "
                                     "false alarms per tuning image"),
    ("loso5_ext_s1.json", "the default's recipe per fold, seed 1, relative extents 0.2 and "
                          "0.3 in the choice"),
    ("loso5_seeds_s1.json", "the default's recipe per fold, seeds 0 and 1 averaged, 4 views "
                            "each, nothing retrained"),
    ("loso5_lcn.json", "the default's recipe per fold with the local contrast channel "
                       "(`--arch segnet-lcn`), relative extents 0.2 and 0.3 in the choice"),
    ("loso5_lcn-fa2.json", "the local contrast channel's folds, cut at each fold's report "
                           "threshold for 2 false alarms per tuning image"),
    ("loso5_lcn_s1.json", "the default's recipe per fold with the local contrast channel, "
                          "seed 1"),
    ("loso5_box_loso5-hard-segnet-lcn.json", "the local contrast channel's folds, every box "
                                             "scaled by the scale each fold chose on the other "
                                             "folds' held-out series (1-1.15; the joined fold "
                                             "boxed anew at each scale), nothing retrained"),
    ("loso5_box_loso5-hard-segnet-lcn-odd.json", "the same, each fold's box scale chosen on the "
                                                 "other folds' held-out odd images only "
                                                 "(1.15-1.2)"),
    ("loso5_mix_lcn_s1.json", "the local contrast channel's fold models, seeds 0 and 1 "
                              "averaged, 4 views each, nothing retrained"),
    ("loso5_mix_lcn_bg.json", "the local contrast channel's fold models averaged with the "
                              "backgrounds recipe's (`loso5-bg`), 4 views each, nothing "
                              "retrained"),
    ("loso5_bg.json", "the default's recipe per fold with the eleven unannotated series' "
                      "train images as backgrounds (never mined), relative extents 0.2 and "
                      "0.3 in the choice"),
    ("loso5_settings_loso5-bg-ext.json", "the backgrounds fold models, detection settings "
                                         "(theta, relative extent, grow, join) chosen per "
                                         "fold on the other folds' held-out series, nothing "
                                         "retrained (`loso_settings.py`)"),
    ("loso5_settings_loso5-bg-ext-odd.json", "the same, chosen on the other folds' held-out "
                                             "odd images only"),
)


def library_loso_rows(runs: Path) -> list[str]:
    """Ablation rows of :data:`LIBRARY_LOSO_ROWS` whose result files exist: pooled AP,
    found, false alarms per image, the folds' summed training minutes ('-' for an
    ensemble of finished models)."""
    rows = []
    for name, label in LIBRARY_LOSO_ROWS:
        f = runs / name
        if not f.exists():
            continue
        d = json.loads(f.read_text())
        p = d["pooled"]
        mins = [x.get("train_minutes") for x in d["folds"]]
        minutes = "-" if any(m is None for m in mins) else f"{sum(mins):.0f}"
        rows.append(f"| {label} | all {p['images']} images of the held-out series, "
                    f"{d['folds_done']} of 5 folds | train images of the other 12 annotated "
                    f"series per fold | {minutes} | {_f(p['ap'])} | "
                    f"{p['true_positives']}/{p['gt_boxes']} | "
                    f"{p['false_alarms_per_image']:.1f} |")
    return rows


def box_example_rows(runs: Path) -> list[str]:
    """Ablation rows of :data:`BOX_EXAMPLES_RUNS` whose result files exist: the held-out
    castings' test images with each casting's box size set on its own tuning images."""
    rows = []
    for name in BOX_EXAMPLES_RUNS:
        f = runs / name
        if not f.exists():
            continue
        d = json.loads(f.read_text())
        p = d["pooled_calibrated"]
        adapted = d.get("tuned") is None
        what = ("models adapted to each casting without labels" if adapted else
                "fold models")
        rows.append(f"| `{Path(d['work']).name}` {what}, each held-out casting's box size "
                    f"set on at least {d['images']} of its annotated tuning image(s) "
                    f"(`xdefect calibrate-boxes`; before: "
                    f"{_f(d['pooled_scale_1']['ap'])}), nothing retrained | test images of "
                    f"the held-out series, {p['images']} images"
                    + ("" if adapted else f", {len(d['folds'])} of 5 folds") +
                    " | train images of the other 12 annotated series per fold"
                    + (", then each casting's odd images" if adapted else "") + " | - | "
                    f"{_f(p['ap'])} | {p['true_positives']}/{p['gt_boxes']} | "
                    f"{p['false_alarms_per_image']:.1f} |")
    return rows


def ablation(a: argparse.Namespace) -> str:
    """Issue 13's ablation table: one row per measured change, from the result files."""
    rows = ["| change | data | trained on | minutes | AP | found | FA/image |",
            "|---|---|---|---|---|---|---|"]

    def load(path: Path) -> dict | None:
        return json.loads(path.read_text()) if path.exists() else None

    m = load(a.extra_eval / "metrics.json")
    if m:
        rows.append(f"| `xnet2-xdefect` (trained on the paper's series), no change | "
                    f"`gdxray-extra`, all {m['images']} images | - | - | {_f(m['ap'])} | "
                    f"{m['true_positives']}/{m['gt_boxes']} | "
                    f"{m['false_positives'] / max(m['images'], 1):.1f} |")
    pyr = load(a.pyramid) or {"grid": [], "params": {}}
    card = (pyr["params"].get("box_rule"), pyr["params"].get("widen"))
    for levels, box, label in (([1], card, "reference: the card's settings"),
                               ([1, 2], card, "image pyramid, levels 1 + 2"),
                               ([2], card, "image pyramid, level 2 alone"),
                               ([1], ("extent", 0), "`extent` boxes, widen 0")):
        for r in pyr["grid"]:
            if (r["scales"] == levels and r["merge_rule"] == "iou" and r["merge"] == 0.5
                    and (r.get("box_rule", card[0]), r.get("widen", card[1])) == box):
                rows.append(f"| {label} (no retraining) | `{Path(r['root']).name}` {r['split']} "
                            f"images | - | - | {_f(r['ap'])} | {r['found']}/{r['boxes']} | "
                            f"{r['false_alarms_per_image']:.1f} |")
    for path, label in ((a.series_out, "leave-series-out, 6 paper series, simulated only"),
                        (a.series_out_all, "leave-series-out, 15 series in 5 folds: more "
                                           "castings, unannotated backgrounds, augmentation, "
                                           "other series' real windows, dense hard-negative "
                                           "round")):
        d = load(path)
        if d:
            p = d["pooled"]
            rows.append(f"| {label} | held-out series, all {p['images']} images | "
                        f"{', '.join(Path(r).name for r in d.get('roots', [d['gdxray']]))} "
                        f"(train images of the others) | {d['seconds_total'] / 60:.0f} | "
                        f"{_f(p['ap'])} | {p['true_positives']}/{p['gt_boxes']} | "
                        f"{d['false_alarms_per_image']:.1f} |")
            for root, r in d.get("pooled_by_root", {}).items():
                rows.append(f"| the same, scored on the `{Path(root).name}` series alone | "
                            f"{r['images']} images | | | {_f(r['ap'])} | "
                            f"{r['true_positives']}/{r['gt_boxes']} | "
                            f"{r['false_alarms_per_image']:.1f} |")
    for path in sorted(a.adapt.parent.parent.glob(a.adapt.parent.name + "*/adapt_series.json")):
        d = load(path)
        if len(d["per_series"]) < len(d.get("series_planned") or d["per_series"]):
            continue  # a run still going (or cut): its row would change as it goes on
        p = d["pooled_adapted"]
        mins = sum(v["adapt_minutes"] for v in d["per_series"].values())
        hard = d["arguments"].get("hard_per_image")
        pairs = ", each paired with a simulated defect" if d["arguments"].get("hard_pairs") else ""
        lr = d["arguments"].get("lr")
        pairs += f", lr {lr:g}" if lr and lr != 2.5e-4 else ""
        how = f"{hard} hard negatives per image{pairs}"
        if family(d) == "segmenter":
            arg = d["arguments"]
            above = ("" if arg.get("ignore_theta") is None else
                     f" (score > {arg['ignore_theta']:g})")
            regions = {"negative": "as background", "ignore": f"{above} ignored",
                       "target": f"{above} as pseudo-labels (defect targets)",
                       "distill": f"{above} as soft targets (the source's probability)"
                       }[arg["source_regions"]].lstrip()
            src = (f"`{Path(arg['from_folds']).name}` fold models (each series from the "
                   "fold that never saw it)" if arg.get("from_folds")
                   else f"`{Path(d['source']).stem}`")
            how = (f"segmenter {src} fine-tuned {arg['steps']} steps on "
                   f"simulated voids, its own detections {regions}"
                   + (f", rehearsing {', '.join(Path(r).name for r in arg['rehearse'])} "
                      f"({arg['rehearse_share']:g} of each batch)" if arg.get("rehearse")
                      else ""))
        seed = d["arguments"].get("seed") or 0
        how += f", seed {seed}" if seed else ""
        rows.append(f"| `xdefect adapt` per series, {how} (source "
                    f"AP {_f(d['pooled_source']['ap'])}, "
                    f"{d['pooled_source']['false_alarms_per_image']:.1f} FA/image) "
                    f"| {', '.join(d['per_series'])} even images | their odd images, no labels "
                    f"| {mins:.0f} | {_f(p['ap'])} | {p['true_positives']}/{p['gt_boxes']} | "
                    f"{p['false_alarms_per_image']:.1f} |")
    d = load(a.sim_ablation)
    for r in (d or {}).get("rows", []):
        ch = ", ".join(f"{k} {v}" for k, v in r["changes"].items()) or "none (reference)"
        rows.append(f"| paper protocol, simulator change: {ch} ({r['variant']}) | paper series, "
                    f"tuning images | simulated only, train images | "
                    f"{(r['build_s'] + r['train_s'] + r['eval_s']) / 60:.0f} | "
                    f"{_f(r['tuning_ap'])} | {r['true_positives']}/{r['gt_boxes']} | "
                    f"{r['false_alarms_per_image']:.1f} |")
    rows += loso_rows(a.fcn, LOSO_ROWS + LOSO_SEED2_ROWS)
    rows += library_loso_rows(RUNS)
    rows += box_example_rows(RUNS)
    def tuning_and_extra(label: str, r: dict, minutes: float) -> None:
        for key, data in (("tuning", "paper series, tuning images"),
                          ("extra_odd", "`gdxray-extra` odd images")):
            m = r[key]
            rows.append(f"| {label} | {data} | train images of 7 series | {minutes:.0f} | "
                        f"{_f(m['ap'])} | {m['true_positives']}/{m['gt_boxes']} | "
                        f"{m['false_alarms_per_image']:.1f} |")

    for r in (load(a.seg_variants) or {}).get("rows", []):
        tuning_and_extra(f"segmenter (library, `train-segmenter`) {r['name']}: "
                         f"{seg_settings(r)}, theta {r['theta']:g}", r, r["train_minutes"])
    for r in (load(a.fcn) or {}).get("rows", []):
        what = "real defects as targets" if r["real"] else "simulated defects only"
        tuning_and_extra(f"fully convolutional detector ({r['name']}), {what}, threshold "
                         f"{r['threshold']:g}", r, r["train_minutes"] + r["score_s"] / 60)
    return "\n".join(rows)


def block(text: str, name: str) -> str:
    """The body of the report's ``<!-- name -->`` ... ``<!-- /name -->`` block ('' if none)."""
    m = re.search(rf"<!-- {re.escape(name)} -->\n(.*?)<!-- /{re.escape(name)} -->", text, re.S)
    return m.group(1) if m else ""


def _row_cells(line: str) -> list[str]:
    return [c.strip() for c in line.split("|")[1:-1]]


def _row_key(line: str) -> tuple[str, str]:
    """A row's identity: its label and its data cell, where a fold-by-fold run's data
    ("all 385 images of the held-out series, 3 of 5 folds") reads its numbers as ``#``:
    the same run at any count of folds done, or re-scored on a corrected image set."""
    label, data = (_row_cells(line) + ["", ""])[:2]
    if re.search(r"\b\d+ of \d+ folds\b", data):
        data = re.sub(r"\d+", "#", data)
    return label, data


def merge_rows(old: str, new: str) -> tuple[str, int]:
    """A table block regenerated from the result files there are: ``new``'s rows in
    ``old``'s order, ``new``'s other rows after them, and ``old``'s rows that ``new``
    lacks (their result files gone) kept where they were. A row is known by
    :func:`_row_key` (an old row of a fold-by-fold run is replaced, at its first place,
    by the run's row now, and its other old rows dropped), else, for a run relabelled,
    by all its other cells when exactly one new row of a new label has them. Returns the
    table and how many rows were kept; raises ``ValueError`` when two of ``new``'s rows
    share a key (one would silently replace the other)."""
    head = [ln for ln in new.splitlines() if ln.startswith("|")][:2]
    fresh: dict[tuple[str, str], str] = {}
    for ln in [ln for ln in new.splitlines() if ln.startswith("|")][2:]:
        if _row_key(ln) in fresh:
            raise ValueError(f"two rows share the label and data cells {_row_key(ln)}")
        fresh[_row_key(ln)] = ln
    before = [ln for ln in old.splitlines() if ln.startswith("|")][2:]
    known = {_row_key(ln) for ln in before}
    rows, placed, kept = [], set(), 0
    for ln in before:
        key = _row_key(ln)
        if key in fresh:
            rows.append(fresh.pop(key))
            placed.add(key)
            continue
        if key in placed:
            continue  # superseded by the run's row now, placed above
        same = [k for k, f in fresh.items()
                if k not in known and _row_cells(f)[1:] == _row_cells(ln)[1:]]
        if len(same) == 1 and len(_row_cells(ln)) > 2:
            rows.append(fresh.pop(same[0]))
        else:
            rows.append(ln)
            kept += 1
    return "\n".join(head + rows + list(fresh.values())), kept


def merge_lists(old: str, new: str) -> str:
    """A block of a table and ``Label: a; b; c`` lines (per-run lists after a table)
    regenerated from the result files there are, merged with the block as it was: the
    table by :func:`merge_rows`, each list line of ``new`` with the items of ``old``'s
    line of the same label that it lacks, first (an item is known by its text up to its
    first colon, or by all of it: the runs whose result files are gone keep their
    entries)."""
    table, _ = merge_rows(old, new)

    def lists(text: str) -> dict[str, list[str]]:
        out = {}
        for ln in text.splitlines():
            if ln and not ln.startswith("|") and ": " in ln:
                label, rest = ln.split(": ", 1)
                out[label] = rest.split("; ")
        return out

    before = lists(old)
    lines = []
    for label, items in lists(new).items():
        have = {i.split(":")[0] for i in items}
        lines.append(f"{label}: " + "; ".join(
            [i for i in before.get(label, []) if i.split(":")[0] not in have] + items))
    return "\n\n".join([table, *lines])


def replace_block(text: str, name: str, body: str, where: Path) -> str:
    """Rewrite the ``<!-- name -->`` ... ``<!-- /name -->`` block of the report."""
    return model_figures.replace_block(text, f"<!-- {name} -->", f"<!-- /{name} -->", body,
                                       where)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--report", type=Path, default=Path("docs/results.md"))
    ap.add_argument("--table3", type=Path, default=Path("runs/table3.json"))
    ap.add_argument("--table4", type=Path, default=Path("runs/table4.json"))
    ap.add_argument("--eval", type=Path, default=Path("runs/eval-test-xdefect"),
                    help="the test evaluation of xnet2-xdefect (error analysis, PR curve)")
    ap.add_argument("--eval-default", type=Path,
                    default=Path("runs/eval-test-long-hard-ext-tta8-join"),
                    help="the test evaluation of the default model (its PR curve)")
    ap.add_argument("--series-out", type=Path, default=Path("runs/series-out/series_out.json"))
    ap.add_argument("--series-out-all", type=Path,
                    default=Path("runs/series-out-all/series_out.json"))
    ap.add_argument("--extra-eval", type=Path, default=Path("runs/eval-extra-default"))
    ap.add_argument("--pyramid", type=Path, default=Path("runs/pyramid-default.json"))
    ap.add_argument("--adapt", type=Path, default=Path("runs/adapt-series/adapt_series.json"))
    ap.add_argument("--adapt-default", type=Path,
                    default=Path("runs/adapt-series-default/adapt_series.json"))
    ap.add_argument("--adapt-default-ign", type=Path,
                    default=Path("runs/adapt-series-default-ign05/adapt_series.json"))
    ap.add_argument("--adapt-seg", type=Path,
                    default=Path("runs/adapt-series-segnet/adapt_series.json"),
                    help="the segmenter adaptation shown per series (settings fixed before "
                         "it ran: the other variants are ablation rows)")
    ap.add_argument("--table3-diagnosis", type=Path,
                    default=Path("runs/table3_diagnosis.json"))
    ap.add_argument("--table3-rule", type=Path, default=Path("runs/table3_rule.json"))
    ap.add_argument("--sim-ablation", type=Path, default=Path("runs/sim_ablation.json"))
    ap.add_argument("--sharpness", type=Path, default=Path("runs/defect_sharpness.json"))
    ap.add_argument("--fcn", type=Path, default=Path("runs/fcn_detector.json"))
    ap.add_argument("--seg-variants", type=Path, default=Path("runs/segmenter_variants.json"))
    ap.add_argument("--no-restore", action="store_true",
                    help="do not copy archived result files missing from runs/ back there "
                         "(e.g. after deleting one to run its experiment afresh)")
    a = ap.parse_args()
    back = [] if a.no_restore else restore()
    if back:
        print(f"{len(back)} result file(s) restored from {ARCHIVE} into {RUNS}/")
    if not a.no_restore:
        copied, lost = restore_retuned()
        if copied:
            print(f"{len(copied)} re-tuned copy(ies) given their source's archived weights")
        built, left = restore_ensembles()
        if built:
            print(f"{len(built)} ensemble(s) rebuilt from their members' archived weights")
        for line in lost:
            if "is missing" not in line:
                print(f"re-tuned copy not restored: {line}")
        for line in left:
            if "is missing" not in line:  # a lost member is expected: not archived then
                print(f"ensemble not rebuilt: {line}")
    text = a.report.read_text()
    for name, path, fn in (("seriesout-all", a.series_out_all, series_out_all),
                           ("pyramid", a.pyramid, pyramid),
                           ("adapt", a.adapt, lambda d: adapt_table(d, a.adapt)),
                           ("adapt-seg", a.adapt_seg, lambda d: adapt_table(d, a.adapt_seg)),
                           ("adapt-default", a.adapt_default,
                            lambda d: adapt_table(d, a.adapt_default)),
                           ("adapt-default-ign", a.adapt_default_ign,
                            lambda d: adapt_table(d, a.adapt_default_ign)),
                           ("adapt-diagnosis", Path("runs/adapt_diagnosis.json"),
                            adapt_diagnosis),
                           ("adapt-choice", Path("runs/adapt_choice.json"), adapt_choice),
                           ("loso-scores", Path("runs/loso_scores.json"), loso_scores),
                           ("loso-growth", Path("runs/loso_growth.json"), loso_growth),
                           ("loso-localisation", RUNS / "loso_localisation.json",
                            loso_localisation),
                           ("loso-localisation-bg", RUNS / "loso_localisation_bg.json",
                            loso_localisation),
                           ("adapt-box-scale", RUNS / "adapt_box_scale.json", adapt_box_scale),
                           ("tuning-misses", RUNS / "tuning_misses.json", tuning_misses),
                           ("adapt-distill-confident", ADAPT_CONFIDENT,
                            lambda d: adapt_table(d, ADAPT_CONFIDENT)),
                           ("adapt-longhard", ADAPT_LONGHARD,
                            lambda d: adapt_table(d, ADAPT_LONGHARD)),
                           ("adapt-tta8", ADAPT_TTA8, lambda d: adapt_table(d, ADAPT_TTA8)),
                           ("adapt-join", ADAPT_JOIN, lambda d: adapt_table(d, ADAPT_JOIN)),
                           ("adapt-join-s1", ADAPT_JOIN_S1,
                            lambda d: adapt_table(d, ADAPT_JOIN_S1)),
                           ("adapt-loso", ADAPT_LOSO, lambda d: adapt_table(d, ADAPT_LOSO)),
                           ("adapt-loso-library", ADAPT_LOSO_LIB,
                            lambda d: adapt_table(d, ADAPT_LOSO_LIB)),
                           ("adapt-loso-bg", ADAPT_LOSO_BG,
                            lambda d: adapt_table(d, ADAPT_LOSO_BG)),
                           ("adapt-loso-lcn", ADAPT_LOSO_LCN,
                            lambda d: adapt_table(d, ADAPT_LOSO_LCN)),
                           ("loso-library", RUNS / "loso5_hard.json", loso_library),
                           ("loso-library-fa2", RUNS / "loso5_hard-fa2.json", loso_library),
                           ("loso-mix", RUNS / "loso5_mix.json", loso_library),
                           ("loso-library-ext", RUNS / "loso5_ext.json", loso_library),
                           ("loso-library-ext-fa2", RUNS / "loso5_ext-fa2.json", loso_library),
                           ("loso-library-s1", RUNS / "loso5_ext_s1.json", loso_library),
                           ("loso-seeds", RUNS / "loso5_seeds_s1.json", loso_library),
                           ("loso-lcn", RUNS / "loso5_lcn.json", loso_library),
                           ("loso-lcn-fa2", RUNS / "loso5_lcn-fa2.json", loso_library),
                           ("loso-backgrounds", RUNS / "loso5_bg.json", loso_library),
                           ("loso-mix-fa2", RUNS / "loso5_mix-fa2.json", loso_library),
                           ("loso-mix-lcn-bg", RUNS / "loso5_mix_lcn_bg.json", loso_library),
                           ("loso-lcn-s1", RUNS / "loso5_lcn_s1.json", loso_library),
                           ("loso-mix-lcn-s1", RUNS / "loso5_mix_lcn_s1.json", loso_library),
                           ("loso-pyramid", RUNS / "loso_pyramid.json", loso_pyramid),
                           ("table3-diagnosis", a.table3_diagnosis, table3_diagnosis),
                           ("table3-rule", a.table3_rule, table3_rule),
                           ("table3-stretch", RUNS / "table3_stretch.json", table3_rule),
                           ("table3-floor", RUNS / "table3_floor.json", table3_floor),
                           ("sim-ablation", a.sim_ablation, sim_ablation),
                           ("fcn", a.fcn, fcn),
                           ("fcn-loso", a.fcn.with_name("fcn_loso_fcn-real.json"), fcn_loso),
                           ("fcn-loso-aug", a.fcn.with_name("fcn_loso_fcn-aug-amin.json"),
                            fcn_loso),
                           ("extent-grid", RUNS / "seg" / "long-hard-ext-tta4" / "model.json",
                            extent_grid),
                           ("extra-segnet",
                            RUNS / "eval-extra-test-long-hard-ext-tta8-join" / "metrics.json",
                            lambda d: per_series_eval(d, EXTRA_SEGNET_NOTE))):
        if path.exists():
            text = replace_block(text, name, fn(json.loads(path.read_text())), a.report)
    for name, files, fn in (("loso-box-scale", BOX_SCALE_RUNS, loso_box_scale),
                            ("loso-box-examples", BOX_EXAMPLES_RUNS, loso_box_examples),
                            ("loso-settings", SETTINGS_RUNS, loso_settings)):
        docs = [json.loads((RUNS / n).read_text()) for n in files if (RUNS / n).exists()]
        if docs:  # one block from several result files, those present
            text = replace_block(text, name, fn(docs), a.report)
    if a.seg_variants.exists():  # rows whose result files were lost kept as generated
        text = replace_block(text, "seg-variants", merge_lists(
            block(text, "seg-variants"), seg_variants(json.loads(a.seg_variants.read_text()))),
            a.report)
    if any((RUNS / ev / "metrics.json").exists() for _, ev, _ in SIM_ONLY):
        text = replace_block(text, "sim-only-segmenter", sim_only(), a.report)
    if any((RUNS / "seg" / r / "model.json").exists() for r, _ in SIM_TUNED):
        text = replace_block(text, "sim-only-tuning", sim_tuned(), a.report)
    regions = adapt_regions()
    if regions:
        text = replace_block(text, "adapt-regions", regions, a.report)
    if a.fcn.with_name(LOSO_VARIANTS[0][0]).exists():
        text = replace_block(text, "fcn-loso-variants", fcn_loso_variants(a.fcn), a.report)
    if a.fcn.with_name(LOSO_FOLD0[0][0]).exists():
        text = replace_block(text, "loso-fold0", loso_fold0(a.fcn), a.report)
    abl, kept = merge_rows(block(text, "ablation"), ablation(a))
    text = replace_block(text, "ablation", abl, a.report)
    if kept:
        print(f"ablation: {kept} row(s) kept as they were (their result files are missing "
              "from runs/ and the archive)")
    if a.fcn.with_name(LOSO_HARD[1][0]).exists():
        text = replace_block(text, "fcn-loso-hard", fcn_loso_variants(a.fcn, LOSO_HARD)
                             + "".join(hard_rounds(json.loads(a.fcn.with_name(f).read_text()),
                                                   label)
                                       for f, label in LOSO_HARD[1:]
                                       if a.fcn.with_name(f).exists()), a.report)
    if a.fcn.with_name(LOSO_EXTENT[2][0]).exists():
        text = replace_block(text, "fcn-loso-extent", fcn_loso_variants(a.fcn, LOSO_EXTENT),
                             a.report)
    if a.fcn.with_name(LOSO_ENSEMBLE[4][0]).exists():
        text = replace_block(text, "fcn-loso-ensemble",
                             fcn_loso_variants(a.fcn, LOSO_ENSEMBLE), a.report)
    if a.fcn.with_name(LOSO_JOIN[1][0]).exists():
        text = replace_block(text, "fcn-loso-join",
                             fcn_loso_variants(a.fcn, LOSO_JOIN, settings=True), a.report)
    if a.fcn.with_name(LOSO_SEED2[0][0]).exists():
        text = replace_block(text, "fcn-loso-seed2", fcn_loso_variants(a.fcn, LOSO_SEED2),
                             a.report)
    if any((RUNS / "seg" / n / "model.json").exists() for n, _ in DEFAULT_CANDIDATES):
        # candidates whose cards were lost with runs/ keep their rows as generated
        text = replace_block(text, "default-candidates", merge_lists(
            block(text, "default-candidates"), default_candidates()), a.report)
    if Path("runs/seg/segnet-xdefect-tuned/model.json").exists():
        text = replace_block(text, "segment-boxes", segment_boxes(), a.report)
    if (a.extra_eval / "metrics.json").exists():
        text = replace_block(text, "extra-default", per_series_eval(
            json.loads((a.extra_eval / "metrics.json").read_text()),
            "The bundled patch classifier `xnet2-xdefect` (the default model until "
            "`segnet-xdefect`) on every image of the nine `gdxray-extra` series (castings "
            "it never saw):"), a.report)
    if a.table3.exists():
        text = replace_block(text, "table3", table3(json.loads(a.table3.read_text())),
                             a.report)
    if a.table4.exists():
        text = replace_block(text, "table4", table4(json.loads(a.table4.read_text())),
                             a.report)
    if a.series_out.exists():
        text = replace_block(text, "seriesout", series_out(json.loads(a.series_out.read_text())),
                             a.report)
    if (a.eval / "metrics.json").exists():
        text = replace_block(text, "errors",
                             errors(json.loads((a.eval / "metrics.json").read_text())), a.report)
        if (a.eval / "pr_curve.png").exists():  # (not archived: docs/img holds the copy)
            img = a.report.parent / "img" / "pr_curve_even.png"
            img.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(a.eval / "pr_curve.png", img)
    if (a.eval_default / "pr_curve.png").exists():
        shutil.copyfile(a.eval_default / "pr_curve.png",
                        a.report.parent / "img" / "pr_curve_even_default.png")
    a.report.write_text(text)
    print(f"{a.report}: tables updated")
    if a.sharpness.exists():
        sim = a.report.parent / "simulation.md"
        sim.write_text(replace_block(sim.read_text(), "sharpness",
                                     sharpness(json.loads(a.sharpness.read_text())), sim))
        print(f"{sim}: sharpness table updated")
    print(model_figures.status(model_figures.update()))
    done, left = archive_results()
    dropped = drop_finished_checkpoints()
    print(f"{len(done)} result file(s) archived in {ARCHIVE}"
          + "".join(f"; {f} left out ({f.stat().st_size:,} bytes, or not JSON)" for f in left)
          + (f"; {len(dropped)} checkpoint(s) of finished runs dropped" if dropped else ""))


if __name__ == "__main__":
    main()
