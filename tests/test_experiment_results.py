"""The experiments' result files and rules behind docs/results.md: results_tables.py
archives them in experiments/results/ and restores them into runs/ (they survive a new
checkout); fcn_detector.py's label-free rate rule and its pooling of folds."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

import pytest
from conftest import REPO


def _experiment(name: str = "results_tables"):
    sys.path.insert(0, str(REPO / "experiments"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(REPO / "experiments"))


def _tables():
    return _experiment()


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
    (runs / "cut.json").write_text('{"pooled": ')  # an interrupted write: never archived
    done, left = rt.archive_results(runs, arch, max_bytes=100)
    names = sorted(str(p.relative_to(arch)) for p in done)
    assert names == ["fcn_loso_x-amin.json", "seg/long/model.json"]  # no fold detections
    assert left == [runs / "big.json", runs / "cut.json"]
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


def test_restore_rebuilds_ensembles_from_archived_members(tmp_path, monkeypatch):
    """The archive keeps an ensemble's card, not its weights (its members' only): the
    restore step rebuilds them, the plain and the re-tuned card alike, and leaves a card
    whose member was never archived without weights."""
    import torch

    from xdefect.checkpoint import ensemble_segmenters, save_model
    from xdefect.segment import create_segmenter

    rt = _tables()
    monkeypatch.chdir(tmp_path)  # member paths are recorded relative to the project root
    runs = Path("runs")
    for i, arch in enumerate(("segnet", "segnet-lcn")):
        torch.manual_seed(i)
        save_model(runs / "seg" / f"m{i}" / "model.safetensors",
                   create_segmenter(arch).eval(), {"lineage": []})
    ens = ensemble_segmenters([runs / "seg" / f"m{i}" / "model.safetensors" for i in (0, 1)],
                              runs / "seg" / "ens")
    tuned = runs / "seg" / "ens-tuned"
    tuned.mkdir()
    card = json.loads((runs / "seg" / "ens" / "model.json").read_text())
    (tuned / "model.json").write_text(json.dumps({**card, "detection": {"theta": 0.1}}))
    lost = runs / "seg" / "lost"
    lost.mkdir()
    stage = card["lineage"][-1]
    (lost / "model.json").write_text(json.dumps(
        {**card, "lineage": [{**stage, "members": [{**stage["members"][0],
                                                    "file": "runs/seg/gone/model.safetensors"},
                                                   stage["members"][1]]}]}))
    data = Path(ens["model"]).read_bytes()
    Path(ens["model"]).unlink()
    built, left = rt.restore_ensembles(runs)
    assert built == [runs / "seg" / n / "model.safetensors" for n in ("ens", "ens-tuned")]
    assert all(p.read_bytes() == data for p in built)
    assert len(left) == 1 and "member 0 (runs/seg/gone/model.safetensors) is missing" in left[0]
    assert not (lost / "model.safetensors").exists()
    assert rt.restore_ensembles(runs) == ([], left)  # nothing twice


def test_restore_gives_retuned_copies_their_sources_weights(tmp_path, monkeypatch):
    """A re-tuned copy's weights are its source's: the archive keeps its card only, and the
    restore step copies the source's file back, a copy of a copy after its source, never
    a file whose checksum is not the one the card records."""
    import torch

    from xdefect.checkpoint import init_record, model_state, read_card, save_model, save_tensors
    from xdefect.segment import create_segmenter

    rt = _tables()
    monkeypatch.chdir(tmp_path)  # source paths are recorded relative to the project root
    runs = Path("runs")
    src = runs / "seg" / "src" / "model.safetensors"
    torch.manual_seed(0)
    net = create_segmenter("segnet-lcn").eval()
    save_model(src, net, {"lineage": []})

    def retune(name: str, source: Path) -> Path:
        card = read_card(source)
        card.pop("weights_sha256", None)
        out = runs / "seg" / name / "model.safetensors"
        save_tensors(out, model_state(net), {**card, "detection": {"theta": 0.5},
                                             "retuned": {"from": init_record(source, card)}})
        return out

    tuned = retune("tuned", src)
    again = retune("again", tuned)  # sorts before "tuned": restored on the second pass
    other = retune("other", src)
    doc = json.loads(other.with_suffix(".json").read_text())
    doc["retuned"]["from"]["sha256"] = "0" * 64
    other.with_suffix(".json").write_text(json.dumps(doc))
    gone = retune("gone", src)
    doc = json.loads(gone.with_suffix(".json").read_text())
    doc["retuned"]["from"]["file"] = "runs/seg/lost/model.safetensors"
    gone.with_suffix(".json").write_text(json.dumps(doc))
    for f in (tuned, again, other, gone):
        f.unlink()
    done, left = rt.restore_retuned(runs)
    assert sorted(done) == sorted([tuned, again])
    assert all(f.read_bytes() == src.read_bytes() for f in done)
    assert sorted(line.split(":")[0] for line in left) == sorted(
        str(f.with_suffix(".json")) for f in (gone, other))
    assert any("is not the weights it records" in line for line in left)
    assert any("runs/seg/lost/model.safetensors is missing" in line for line in left)
    assert not other.exists() and not gone.exists()
    assert rt.restore_retuned(runs) == ([], left)  # nothing twice


def test_leave_series_out_folds_are_archived_with_detections_and_weights(tmp_path):
    """A fold of experiments/loso_library.sh and its kin survives a new checkout: cards,
    held-out detections and the finished fold model, not the training checkpoint."""
    rt = _tables()
    runs, arch = tmp_path / "runs", tmp_path / "archive"
    fold, work = runs / "seg" / "loso5-bg" / "fold2", runs / "seg" / "loso5-bg-ext" / "fold2"
    (fold / "train").mkdir(parents=True)
    (work / "tta8-join").mkdir(parents=True)
    (work / "eval-C0015" / "detections").mkdir(parents=True)
    (fold / "train" / "model.json").write_text('{"lineage": []}')
    (fold / "train" / "model.safetensors").write_bytes(b"weights")
    (fold / "train" / "last.safetensors").write_bytes(b"stale")  # beside a finished model
    (work / "tta8-join" / "model.json").write_text('{"detection": {}}')
    (work / "tta8-join" / "model.safetensors").write_bytes(b"same weights")  # a copy
    (work / "eval-C0015" / "metrics.json").write_text('{"ap": 0.7}')
    (work / "eval-C0015" / "detections" / "C0015_0001.json").write_text('{"detections": []}')
    (work / "eval-C0015" / "overlays").mkdir()
    (work / "eval-C0015" / "overlays" / "C0015_0001.png").write_bytes(b"pixels")
    done, left = rt.archive_results(runs, arch)
    names = sorted(str(p.relative_to(arch)) for p in done)
    assert names == ["seg/loso5-bg-ext/fold2/eval-C0015/detections/C0015_0001.json",
                     "seg/loso5-bg-ext/fold2/eval-C0015/metrics.json",
                     "seg/loso5-bg-ext/fold2/tta8-join/model.json",
                     "seg/loso5-bg/fold2/train/model.json",
                     "seg/loso5-bg/fold2/train/model.safetensors"] and left == []
    fresh = tmp_path / "fresh"
    back = rt.restore(arch, fresh)
    assert len(back) == 5
    assert (fresh / "seg" / "loso5-bg" / "fold2" / "train" / "model.safetensors"
            ).read_bytes() == b"weights"
    # a fold still training: its checkpoint is archived (to resume in a new checkout), and
    # dropped from the archive once the fold's model is finished
    (runs / "seg" / "loso5-bg" / "fold3" / "train").mkdir(parents=True)
    ck = runs / "seg" / "loso5-bg" / "fold3" / "train" / "last.safetensors"
    ck.write_bytes(b"checkpoint")
    # with what resuming it needs: its card and the hard negatives mined so far
    ck.with_suffix(".json").write_text('{"step": 500}')
    (ck.parent / "hard_negatives.json").write_text('{"rounds": []}')
    assert rt.archive_results(runs, arch)[0] == [arch / ck.parent.relative_to(runs) / n for n
                                                 in ("hard_negatives.json", "last.json",
                                                     "last.safetensors")]
    assert rt.drop_finished_checkpoints(arch) == []
    back = rt.restore(arch, tmp_path / "fresh2")
    assert {tmp_path / "fresh2" / ck.parent.relative_to(runs) / n
            for n in ("hard_negatives.json", "last.json", "last.safetensors")} <= set(back)
    ck.unlink()
    ck.with_suffix(".json").unlink()  # (training removes both when it finishes)
    (ck.parent / "model.safetensors").write_bytes(b"finished")
    rt.archive_results(runs, arch)
    assert rt.drop_finished_checkpoints(arch) == [arch / ck.relative_to(runs)]
    assert not (arch / ck.relative_to(runs)).exists()
    assert not (arch / ck.with_suffix(".json").relative_to(runs)).exists()
    # a weights glob matching a file that is not safetensors: left out, never archived
    (runs / "seg" / "loso5-bg" / "fold2" / "train" / "model.pt").write_bytes(b"pickle")
    done, left = rt.archive_results(runs, arch, weights=("seg/*/fold*/train/*.pt",))
    assert done == [] and left == [runs / "seg" / "loso5-bg" / "fold2" / "train" / "model.pt"]


def test_ablation_keeps_rows_whose_files_are_gone():
    rt = _tables()
    text = ("a\n<!-- t -->\n| change | data | AP |\n|---|---|---|\n| x | d | 0.1 |\n"
            "| lost | d | 0.2 |\n| y | d | 0.3 |\n<!-- /t -->\n")
    old = rt.block(text, "t")
    assert old.startswith("| change") and rt.block(text, "missing") == ""
    new = "| change | data | AP |\n|---|---|---|\n| y | d | 0.4 |\n| x | d | 0.5 |\n| z | d | 0.6 |"
    merged, kept = rt.merge_rows(old, new)
    assert kept == 1
    assert merged.splitlines() == ["| change | data | AP |", "|---|---|---|", "| x | d | 0.5 |",
                                   "| lost | d | 0.2 |", "| y | d | 0.4 |", "| z | d | 0.6 |"]
    assert rt.merge_rows("", new) == (new, 0)


def test_ablation_rows_of_a_run_growing_fold_by_fold_or_relabelled():
    rt = _tables()
    head = "| change | data | AP |\n|---|---|---|\n"
    old = (head + "| run | all 310 images, 2 of 5 folds | 0.2 |\n| kept | d | 0.1 |\n"
           "| run | all 421 images, 3 of 5 folds | 0.3 |\n| the same, cut | d | 0.7 |\n"
           "| other | all 707 images | 0.4 |")
    new = (head + "| run | all 671 images, 5 of 5 folds | 0.5 |\n"
           "| run, cut | d | 0.7 |\n| other | all 671 images | 0.6 |")
    merged, kept = rt.merge_rows(old, new)
    # the run's row now takes its first old place and its other old rows go; the relabelled
    # row keeps its place; a data cell without a fold count is matched exactly
    assert merged.splitlines()[2:] == ["| run | all 671 images, 5 of 5 folds | 0.5 |",
                                       "| kept | d | 0.1 |", "| run, cut | d | 0.7 |",
                                       "| other | all 707 images | 0.4 |",
                                       "| other | all 671 images | 0.6 |"]
    assert kept == 2
    # two new rows that one key would merge are refused, not one silently dropped
    with pytest.raises(ValueError, match="share the label"):
        rt.merge_rows(old, head + "| run | all 5 images, 1 of 5 folds | 0.1 |\n"
                                  "| run | all 9 images, 2 of 5 folds | 0.2 |")


def test_rate_threshold_is_the_lowest_meeting_the_reference():
    fcn = _experiment("fcn_detector")
    rates = {0.1: 9.0, 0.5: 2.0, 0.7: 1.5, 0.9: 0.4, 0.95: 0.6}
    assert fcn.rate_threshold(rates, 1.5) == (0.7, True)
    assert fcn.rate_threshold(rates, 0.5) == (0.9, True)
    assert fcn.rate_threshold(rates, 10.0) == (0.1, True)
    assert fcn.rate_threshold(rates, 0.1) == (0.95, False)  # none reaches it: the highest


def _fold(i: int, series: str, scores: list[float], scores_rate: list[float]) -> dict:
    def images(sc: list[float]) -> list[dict]:
        return [{"key": f"{series}_{i}", "series": series,
                 "boxes": [[0, 0, 10, 10], [50, 50, 60, 60]][:len(sc)], "scores": sc,
                 "gt": [[0, 0, 10, 10]]}]

    return {"fold": i, "held_out": [series], "threshold": 0.9, "a_min": 4, "grow": 0,
            "training": {"train_s": 60.0, "crops_seen": 100}, "test_s": 1.0,
            "images": images(scores), "images_rate": images(scores_rate),
            "rate_rule": {"reference_regions_per_image": 1.0,
                          "per_series": {series: {"threshold": 0.7, "rate_reached": True}}}}


def test_pool_folds_with_and_without_the_rate_rule(tmp_path):
    fcn = _experiment("fcn_detector")
    work = tmp_path / "fcn" / "x-loso2"
    for i, (series, fixed, rated) in enumerate((("C0001", [], [0.8]),
                                                ("C0002", [0.95, 0.99], [0.95]))):
        (work / f"fold{i}").mkdir(parents=True)
        (work / f"fold{i}" / "results-amin-rate.json").write_text(
            json.dumps(_fold(i, series, fixed, rated)))
    a = argparse.Namespace(name="x", kfold=2, threshold=None, a_min_grid=[4], grow_grid=None,
                           extent_grid=None, tta=1,
                           rate_rule=True, gdxray=Path("g"), extra=Path("e"),
                           out=tmp_path / "fcn_detector.json")
    fcn.pool_folds(a, work, [["C0001"], ["C0002"]])
    doc = json.loads((tmp_path / "fcn_loso_x-amin-rate.json").read_text())
    # the rule finds both defects without a false alarm; the fixed threshold one of two
    assert doc["pooled"]["true_positives"] == 2 and doc["pooled"]["ap"] == 1.0
    assert doc["pooled_fixed"]["true_positives"] == 1
    assert doc["pooled_fixed"]["false_alarms_per_image"] == 0.5
    assert doc["folds"][0]["threshold_by_series"] == {"C0001": 0.7}
    assert doc["folds_run"] == 2
    # without the rule: the plain results files, none here: refused, nothing written
    with pytest.raises(SystemExit, match="results-amin.json to pool"):
        fcn.pool_folds(argparse.Namespace(**{**vars(a), "rate_rule": False}), work,
                       [["C0001"], ["C0002"]])
    assert not (tmp_path / "fcn_loso_x-amin.json").exists()


def test_pooled_folds_carry_their_hard_negative_rounds(tmp_path):
    """A fold trained with --hard-rounds keeps its mining record through the pooling, and
    the results page lists it; a fold without keeps none."""
    fcn, rt = _experiment("fcn_detector"), _tables()
    work = tmp_path / "fcn" / "h-loso2"
    rounds = [{"step": 100, "s": 50.0, "images_mined": 10, "images_with_false_alarms": 7,
               "false_alarms": 1234, "mine_s": 20.4}]
    for i, series in enumerate(("C0001", "C0002")):
        d = _fold(i, series, [0.9], [0.9])
        if i == 0:
            d["training"]["hard_negatives"] = rounds
        (work / f"fold{i}").mkdir(parents=True)
        (work / f"fold{i}" / "results-amin.json").write_text(json.dumps(d))
    a = argparse.Namespace(name="h", kfold=2, threshold=None, a_min_grid=[4], grow_grid=None,
                           extent_grid=None, tta=1,
                           rate_rule=False, gdxray=Path("g"), extra=Path("e"),
                           out=tmp_path / "fcn_detector.json")
    fcn.pool_folds(a, work, [["C0001"], ["C0002"]])
    doc = json.loads((tmp_path / "fcn_loso_h-amin.json").read_text())
    assert doc["folds"][0]["hard_negatives"] == rounds
    assert "hard_negatives" not in doc["folds"][1]
    text = rt.hard_rounds(doc)
    assert "fold 0: 1,234 in 7 of 10 images at step 100 (20 s)" in text
    assert "mined per round (seed 3) (regions" in rt.hard_rounds(doc, "seed 3")
    assert "fold 1" not in text and rt.hard_rounds({"folds": []}) == ""


def test_list_lines_keep_the_entries_of_lost_runs():
    """Rows are known by their first two cells (name, settings): b's is replaced, a's
    kept; so are their entries in the lines after the table."""
    rt = _tables()
    head = "| run | settings | AP |\n|---|---|---|\n"
    old = (head + "| a | s | 0.1 |\n| b | s | 0.2 |\n\n"
           "Per series: a: X 0.1; b: X 0.2\n\nCommands: `run a`; `run b`\n")
    new = (head + "| b | s | 0.3 |\n| c | s | 0.4 |\n\nPer series: b: X 0.3; c: X 0.4\n\n"
           "Commands: `run b`; `run c`")
    assert rt.merge_lists(old, new) == (
        head + "| a | s | 0.1 |\n| b | s | 0.3 |\n| c | s | 0.4 |\n\n"
        "Per series: a: X 0.1; b: X 0.3; c: X 0.4\n\nCommands: `run a`; `run b`; `run c`")


def test_default_candidates_name_the_relative_extent(tmp_path):
    rt = _tables()
    roots = {"../shared/data/gdxray": ["C0001"]}

    def card(name: str, tuning: dict, grid: list[dict]) -> None:
        (tmp_path / "seg" / name).mkdir(parents=True)
        (tmp_path / "seg" / name / "model.json").write_text(json.dumps({
            "detection": {"tta": 4}, "retuned": {"tuning_ap_before": 0.5,
                                                 "command": f"xdefect tune-segmenter {name}"},
            "tuning": {"roots": roots, "images": 3, "ap": tuning["ap"], **tuning,
                       "grid": grid}}))

    row = {"found": 3, "boxes": 4, "fa_per_image": 1.0}
    # a card tuned before relative extents: no extent_fraction anywhere
    card("long-hard-tta4", {"theta": 0.94, "grow": 2, "ap": 0.6},
         [{"theta": 0.94, "grow": 2, "ap": 0.6, **row}])
    card("long-hard-ext-tta4", {"theta": 0.9, "grow": 2, "extent_fraction": 0.5, "ap": 0.64},
         [{"theta": 0.9, "grow": 2, "extent_fraction": 0.0, "ap": 0.55, **row, "found": 1},
          {"theta": 0.9, "grow": 2, "extent_fraction": 0.5, "ap": 0.64, **row}])
    (tmp_path / "eval-tuning-paper-long-hard-ext-tta4").mkdir()
    (tmp_path / "eval-tuning-paper-long-hard-ext-tta4" / "metrics.json").write_text(
        json.dumps({"ap": 0.85, "true_positives": 7, "gt_boxes": 9}))
    text = rt.default_candidates(tmp_path)
    lines = [ln for ln in text.splitlines() if ln.startswith("| `long-hard")]
    assert "| 0.94, 2 | **0.6000** | 3/4 |" in lines[0] and lines[0].endswith("| 0.5000 | - |")
    assert "| 0.9, 2 (relative extent 0.5) | **0.6400** | 3/4 |" in lines[1]
    assert lines[1].endswith("| 0.5000 | 0.8500 (7/9) |")


def test_fcn_grid_boxes_by_relative_extent_as_the_library_does():
    import numpy as np

    from xdefect.detect import ScoreMap, detection_arrays, regions
    from xdefect.segment import segment_params

    fcn = _experiment("fcn_detector")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:60, :90]
    odds = (9 * np.exp(-((yy - 20) ** 2 + (xx - 25) ** 2) / 50)
            + 20 * np.exp(-((yy - 40) ** 2 + (xx - 65) ** 2) / 80) - 6)
    prob = 1 / (1 + np.exp(-odds)) + rng.normal(0, 1e-4, odds.shape)
    prob = np.clip(prob, 0, 1).astype(np.float32)
    mask = np.ones(prob.shape, bool)
    got = fcn.grid_detections(prob, mask, [(0.9, 4, 1, 0.5), (0.9, 4, 1, 0.0), (0.9, 4)])
    sm = ScoreMap(2.0 * prob - 1.0, 1, prob.shape, 0)
    for k, ext, grow in (((0.9, 4, 1, 0.5), 0.5, 1), ((0.9, 4, 1, 0.0), 0.0, 1),
                         ((0.9, 4), 0.0, 0)):
        p = segment_params(2 * 0.9 - 1)
        b, s = detection_arrays(regions(sm, p.__class__(**{**p.to_dict(), "grow": grow,
                                                           "extent_fraction": ext}), mask))
        assert np.array_equal(got[k][0], b) and np.allclose(got[k][1], (s + 1) / 2)
    assert not np.array_equal(got[(0.9, 4, 1, 0.5)][0], got[(0.9, 4, 1, 0.0)][0])


def test_sim_only_table_reads_each_cards_choice_and_its_test_evaluation(tmp_path):
    rt = _tables()

    def run(name: str, ev: str | None, theta: float, ap: float, test_ap: float) -> None:
        (tmp_path / "seg" / name).mkdir(parents=True)
        (tmp_path / "seg" / name / "model.json").write_text(json.dumps({"tuning": {
            "theta": theta, "grow": 6, "extent_fraction": 0.4, "ap": ap}}))
        if ev is None:
            return
        (tmp_path / ev).mkdir()
        (tmp_path / ev / "metrics.json").write_text(json.dumps({
            "ap": test_ap, "true_positives": 3, "gt_boxes": 4, "false_positives": 8,
            "images": 2, "unseen": {"ap": test_ap - 0.1}, "command": f"xdefect evaluate {ev}",
            "per_series": {"C0001": {"ap": 0.25, "gt_boxes": 4},
                           "C0061": {"ap": None, "gt_boxes": 0}}}))

    run("sim-hard", "eval-test-sim-hard", 0.0, 0.4161, 0.4028)
    run("sim-hard-wide", "eval-test-sim-hard-wide", -0.8, 0.4828, 0.4449)
    run("sim-hard-xm-wide", None, -0.6, 0.5, 0.5)  # not evaluated yet: no row
    text = rt.sim_only(tmp_path)
    rows = [ln for ln in text.splitlines() if ln.startswith("| `sim-hard")]
    assert len(rows) == 2
    assert "| 0, 0.4, 6 | 0.4161 | **0.4028** | 0.3028 | 3/4 | 4.0 | 0.2500 |" in rows[0]
    assert "| -0.8, 0.4, 6 | 0.4828 | **0.4449** |" in rows[1]
    assert "C0061" not in text.splitlines()[2]  # a series without boxes gets no column
    assert "`xdefect evaluate eval-test-sim-hard-wide`" in text
    assert rt.sim_only(tmp_path / "none").startswith("(no simulated-only")


def test_fcn_mirror_views_reach_every_map_and_name_the_results(monkeypatch):
    """``--tta N``: every probability map of the grid (tuning and held-out images alike)
    is the library's mean over N views, and the result files say so (suffix -ttaN)."""
    import numpy as np

    fcn = _experiment("fcn_detector")
    seen = []

    def fake_map(net, pixels, device="cpu", views=1):
        seen.append(views)
        return np.zeros(pixels.shape, np.float32)

    monkeypatch.setattr(fcn, "probability_map", fake_map)
    img = fcn.Image(np.zeros((16, 16), np.float32), np.ones((16, 16), bool), np.zeros((0, 4)))
    net = fcn.make_net(4)
    fcn.grid_results([net, net], [("k", "C0001", img)], [(0.9, 4)], 4)
    assert seen == [4, 4]  # each member of the ensemble, four views
    a = argparse.Namespace(threshold=None, a_min_grid=[4], grow_grid=[0, 1], extent_grid=None,
                           tta=4, rate_rule=False)
    assert fcn.tag(a) == "-amin-grow-tta4"
    assert fcn.tag(argparse.Namespace(**{**vars(a), "tta": 1})) == "-amin-grow"
    b = argparse.Namespace(**{**vars(a), "join_grid": [-1, 0], "link_grid": [1.0, 0.5],
                              "choose_by": "series-mean"})
    assert fcn.tag(b) == "-amin-grow-join-link-smean-tta4"
    # the choice figure: pooled AP, or each casting's AP weighted alike
    gt = np.array([[10.0, 10, 20, 20]])
    hit = fcn.ImageResult("a", "C0001", gt.copy(), np.array([0.9]), gt)
    miss = [fcn.ImageResult(f"b{i}", "C0002", np.zeros((0, 4)), np.zeros(0), gt)
            for i in range(3)]
    assert fcn.choice_ap([hit, *miss]) == 0.25
    assert fcn.choice_ap([hit, *miss], "series-mean") == 0.5


def test_loso_growth_regrows_each_folds_boxes_from_their_own_growth():
    import numpy as np

    lg = _experiment("loso_growth")
    grown = np.array([[8.0, 8.0, 22.0, 22.0]])  # a 10-px region grown by 2 a side
    assert np.array_equal(lg.boxes_at(grown, 2, 0), [[10, 10, 20, 20]])
    assert np.array_equal(lg.boxes_at(grown, 2, 5), [[5, 5, 25, 25]])
    assert np.allclose(lg.boxes_at(grown, 2, 0, 1.4), [[8, 8, 22, 22]])
    gt = [[10, 10, 20, 20]]
    fold = {"grow": 2, "held_out": ["C0001"], "images": [
        {"key": "a", "series": "C0001", "boxes": grown.tolist(), "scores": [0.9], "gt": gt}]}
    # as the fold chose (IoU 100/196 ~ 0.51): found; its own growth taken off: exact; 4
    # pixels a side: IoU 100/324, missed
    assert lg.score([fold], None)["ap"] == 1.0
    assert lg.score([fold], 0)["ap"] == 1.0 and lg.score([fold], 4)["ap"] == 0.0
    text = _tables().loso_growth({"runs": {"x-amin-grow": {
        "chosen": lg.score([fold], None) | {"grow_by_series": {"C0001": 2}},
        "grows": {"0": lg.score([fold], 0), "4": lg.score([fold], 4)},
        "scales": {"1.2": lg.score([fold], 0, 1.2)}, "command": "python loso_growth.py"}}})
    assert "| C0001 (2) | 1.0000 | 1.0000 | 0.0000 | 1.0000 |" in text
    # two fragments of one defect: joined (touching after the growth), one box that matches
    halves = {"grow": 1, "held_out": ["C0031"], "images": [
        {"key": "b", "series": "C0031", "boxes": [[9, 9, 16, 21], [14, 9, 21, 21]],
         "scores": [0.9, 0.8], "gt": gt}]}
    assert lg.score([halves], None)["ap"] == 0.0
    assert lg.score([halves], None, join=0)["ap"] == 1.0
    assert lg.score([halves], None, join=-1) == lg.score([halves], None)
    # without joining a scaled box keeps its fractional sides (nothing rounded)
    b, sc = lg.joined(np.array([[1.2, 2.6, 10.4, 11.5]]), [0.5], -1)
    assert np.array_equal(b, [[1.2, 2.6, 10.4, 11.5]]) and np.array_equal(sc, [0.5])
    text = _tables().loso_growth({"runs": {"y": {
        "chosen": lg.score([halves], None) | {"grow_by_series": {"C0031": 1}},
        "grows": {}, "scales": {}, "joins": {"0": lg.score([halves], None, join=0)},
        "command": "python loso_growth.py"}}})
    assert "own growth, join 0" in text and "| C0031 (1) | 0.0000 | 1.0000 |" in text


def test_adapt_series_refuses_a_source_that_saw_the_series(tmp_path):
    ad = _experiment("adapt_series")
    src = REPO / "src" / "xdefect" / "weights"
    card = json.loads((src / "segnet-xdefect.json").read_text())
    card["lineage"] = [{**card["lineage"][0], "data_series": ["C0001", "C0037"]}]
    (tmp_path / "m.json").write_text(json.dumps(card))
    (tmp_path / "m.safetensors").write_bytes((src / "segnet-xdefect.safetensors").read_bytes())
    ad.check_unseen(str(tmp_path / "m.safetensors"), ["C0039", "C0040"])
    with pytest.raises(SystemExit, match="trained on C0037: choose a source"):
        ad.check_unseen(str(tmp_path / "m.safetensors"), ["C0039", "C0037"])


def test_loso_sources_write_each_fold_as_a_model_that_never_saw_its_series(tmp_path):
    from safetensors.torch import save_file

    from xdefect.checkpoint import lineage_summary, load_model
    from xdefect.segment import SegConfig, SegNet

    ls = _experiment("loso_sources")
    fold = tmp_path / "run-loso5" / "fold1"
    fold.mkdir(parents=True)
    net = SegNet(SegConfig("segnet", 4, lcn=2.0))
    save_file({k: v.contiguous() for k, v in net.state_dict().items()},
              fold / "model.safetensors")
    crops = {"size": 96, "defects": 1.5, "axes_mm": [1.0, 10.0], "mu_range": [0.01, 0.04],
             "x_max": 60.0, "blur_px": 0.0, "real": True, "real_share": 1 / 3, "margin": 8,
             "x_max_range": None, "hard_share": 0.25}
    (fold / "card.json").write_text(json.dumps({
        "architecture": {"name": "SegNet", "channels": 4, "lcn": 2.0},
        "data": {"roots_series": {"gd": ["C0001"], "ex": ["C0037"]}, "split": "train"},
        "command": "python experiments/fcn_detector.py --hard-rounds 1 --hard-per-image 8"}))
    (fold / "results-amin-grow.json").write_text(json.dumps({
        "fold": 1, "held_out": ["C0002", "C0041"], "threshold": 0.95, "a_min": 48,
        "grow": 2, "join": 0, "backgrounds": ["unannotated"],
        "training": {"crops": crops, "steps": 10, "crops_seen": 160, "train_s": 60.0,
                     "hard_negatives": [{"step": 5, "false_alarms": 3}]}}))
    (tmp_path / "run-loso5" / "fold0").mkdir()  # no weights: skipped
    folds = ls.write_sources(tmp_path / "run-loso5", "-amin-grow", tmp_path / "out")
    target = str(tmp_path / "out" / "fold1.safetensors")
    assert folds == {"C0002": target, "C0041": target}
    assert json.loads((tmp_path / "out" / "folds.json").read_text()) == folds
    model, card = load_model(target)
    assert isinstance(model, SegNet) and model.arch.lcn == 2.0 and model.arch.channels == 4
    det = card["detection"]
    assert (det["theta"], det["a_min"], det["grow"], det["join"]) == (
        pytest.approx(0.9), 48, 2, 0)
    summary = lineage_summary(card)
    assert summary["series"] == ["C0001", "C0037"] and summary["real_defects"]
    hard = card["lineage"][0]["hard_negatives"]
    assert (hard["rounds"], hard["share"], hard["per_image"]) == (1, 0.25, 8)
    with pytest.raises(SystemExit, match="no fold with model.safetensors"):
        ls.write_sources(tmp_path / "run-loso5", "-other", tmp_path / "out2")


def test_loso_sources_map_library_folds_to_the_series_they_never_saw(tmp_path):
    from conftest import make_fake_root

    from xdefect.checkpoint import MODEL_FORMAT

    ls = _experiment("loso_sources")
    rows = ["1 1 5 1 5"]
    root = make_fake_root(tmp_path / "g", series="C0001", gt_rows=rows)
    make_fake_root(tmp_path / "g", series="C0002", gt_rows=rows)
    roots = [root, make_fake_root(tmp_path / "u", series="C0090")]  # no ground truth
    work = tmp_path / "work"

    def fold(i: int, seen: list[str]) -> Path:
        d = work / f"fold{i}" / "tta8-join"
        d.mkdir(parents=True)
        (d / "model.safetensors").write_bytes(b"")
        (d / "model.json").write_text(json.dumps({
            "format": MODEL_FORMAT, "arch": {}, "lineage": [{"data_series": seen}]}))
        return d / "model.safetensors"

    f0 = fold(0, ["C0002", "C0090"])
    f1 = fold(1, ["C0001"])
    (work / "fold2").mkdir()  # not tuned yet: skipped
    folds = ls.library_sources(work, roots)
    assert folds == {"C0001": str(f0), "C0002": str(f1)}
    assert json.loads((work / "folds.json").read_text()) == folds
    fold(3, ["C0090"])  # holds out both: not a partition
    with pytest.raises(SystemExit, match="held out by both"):
        ls.library_sources(work, roots)
    with pytest.raises(SystemExit, match="no fold with other/model.safetensors"):
        ls.library_sources(work, roots, "other")


def test_adapt_series_takes_each_series_source_from_its_fold():
    ad = _experiment("adapt_series")
    a = argparse.Namespace(source=None, folds={"C0002": "f1.safetensors"})
    assert ad.source_of(a, "C0002") == "f1.safetensors"
    assert ad.source_of(argparse.Namespace(source="m.safetensors", folds=None),
                        "C0002") == "m.safetensors"


def test_adapt_table_names_one_source_per_series_in_words():
    rt = _tables()
    fig = {"ap": 0.5, "images": 4, "gt_boxes": 6, "true_positives": 3,
           "false_positives": 2, "false_alarms_per_image": 0.5}
    doc = {"root": "ex", "protocol": "adapt on odd, test on even",
           "source": "the leave-series-out fold model of each series (runs/x)",
           "source_detection": "each fold model's own (per_series: source_model)",
           "series_planned": ["C0037"],
           "per_series": {"C0037": {"odd_images": 9, "adapt_minutes": 2.0,
                                    "source_model": "runs/x/fold3.safetensors",
                                    "source": fig, "adapted": {**fig, "ap": 0.75}}},
           "pooled_source": fig, "pooled_adapted": {**fig, "ap": 0.75}, "command": "c"}
    text = rt.adapt_table(doc)
    assert "fold model of each series (runs/x) (detection settings: each fold" in text
    assert "| C0037 | 9 | 4 | 6 | 0.5000 | 0.5 | 0.7500 | 3 | 0.5 | 2.0 |" in text


def test_loso_library_pool_scores_only_folds_whose_held_out_series_are_all_evaluated(
        tmp_path, gdxray_root):
    from xdefect import gdxray

    pool = _experiment("loso_library_pool")
    annotated = [s for s in gdxray.list_series(gdxray_root)
                 if gdxray.load_ground_truth(gdxray_root, s).annotated]
    fold = tmp_path / "fold0"
    (fold / "tta8-join").mkdir(parents=True)
    (fold / "tta8-join" / "model.json").write_text(json.dumps({
        "lineage": [{"data_series": [s for s in annotated if s not in ("C0010", "C0034")]}],
        "training": {"minutes": 35.0}, "detection": {"tta": 8},
        "tuning": {"theta": 0.9, "grow": 2, "extent_fraction": 0.5, "join": 0, "ap": 0.7}}))
    gt = gdxray.load_ground_truth(gdxray_root, "C0010")
    for s in ("C0010", "C0034"):
        det = fold / f"eval-{s}" / "detections"
        det.mkdir(parents=True)
        (fold / f"eval-{s}" / "metrics.json").write_text(json.dumps(
            {"params": {"tta": 8, "theta": 0.9, "min_score": -1.0}}))
        for rec in gdxray.list_images(gdxray_root, [s], "all"):
            # C0010: the ground truth itself (all found); C0034: nothing (all missed)
            boxes = gt.boxes_of(rec.number) if s == "C0010" else []
            (det / f"{rec.stem}.json").write_text(json.dumps({"detections": [
                {"box": [float(v) for v in b], "score": 0.9} for b in boxes]}))
    doc = pool.pool(tmp_path, [gdxray_root])
    assert doc["folds_done"] == 1 and doc["folds"][0]["held_out"] == ["C0010", "C0034"]
    per = doc["pooled"]["per_series"]
    assert per["C0010"]["ap"] == pytest.approx(1.0) and per["C0034"]["true_positives"] == 0
    assert doc["folds"][0]["chosen"] == {"theta": 0.9, "grow": 2, "extent_fraction": 0.5,
                                         "join": 0, "tta": 8}
    text = _tables().loso_library(doc)
    assert "| C0010 | 0 | " in text and "| 1.0000 (" in text
    assert "theta 0.9, grow 2, relative extent 0.5, join 0, 8 views (tuning AP 0.700)" in text
    # a reference run of the same layout (another seed): its saved detections, same folds
    ref = pool.reference(tmp_path, "", ["fold0"], [gdxray_root])
    assert ref["results"] == "eval-SERIES/detections"
    assert ref["per_series"] == doc["pooled"]["per_series"]
    assert pool.reference(tmp_path, "", ["fold1"], [gdxray_root]) is None
    # a reference whose fold folders are gone: its pooled result file (this script's output)
    saved = tmp_path / "ref.json"
    saved.write_text(json.dumps(doc))
    whole = pool.reference_from_result(saved, ["fold0"])
    assert whole["ap"] == doc["pooled"]["ap"] and whole["per_series"] == per
    two = dict(doc, folds=doc["folds"] + [dict(doc["folds"][0], fold="fold1",
                                               per_series={"C0037": {"ap": 0.5}})])
    saved.write_text(json.dumps(two))
    part = pool.reference_from_result(saved, ["fold0"])  # a subset: per series only
    assert part["ap"] is None and part["per_series"] == per and "per series only" in part[
        "results"]
    assert pool.reference_from_result(saved, ["fold2"]) is None
    gone = pool.pool(tmp_path, [gdxray_root], ref=(tmp_path / "gone", ""), ref_result=saved)
    assert gone["reference"]["per_series"] == per
    assert "| **pooled** | 1 of 5 folds |" in _tables().loso_library(gone)
    # the operating point: the same choice plus a report threshold, the same files cut
    (fold / "tta8-join" / "model.json").write_text(json.dumps({
        "lineage": [{"data_series": [s for s in annotated if s not in ("C0010", "C0034")]}],
        "training": {"minutes": 35.0}, "detection": {"tta": 8, "theta": 0.9},
        "tuning": {"theta": 0.9, "grow": 2, "extent_fraction": 0.5, "join": 0, "ap": 0.7}}))
    (fold / "tta8-join-fa2").mkdir()
    capped_card = {
        "lineage": [{"data_series": [s for s in annotated if s not in ("C0010", "C0034")]}],
        "training": {"minutes": 35.0}, "detection": {"tta": 8, "theta": 0.9, "min_score": 0.95},
        "tuning": {"theta": 0.9, "grow": 2, "extent_fraction": 0.5, "join": 0, "ap": 0.7,
                   "min_score": 0.95, "max_fa_per_image": 2.0,
                   "at_min_score": {"ap": 0.69, "found": 5, "boxes": 6, "fa_per_image": 1.25}}}
    (fold / "tta8-join-fa2" / "model.json").write_text(json.dumps(capped_card))
    capped = pool.pool(tmp_path, [gdxray_root], cut_by="tta8-join-fa2")
    f0 = capped["folds"][0]
    assert f0["min_score"] == 0.95 and f0["max_fa_per_image"] == 2.0
    assert capped["point"] == "cut by tta8-join-fa2's report threshold"
    # every detection scored 0.9: none reaches the report threshold
    assert f0["per_series"]["C0010"]["true_positives"] == 0
    assert pool.pool(tmp_path, [gdxray_root])["folds"][0]["per_series"]["C0010"][
        "ap"] == pytest.approx(1.0)
    # a card with a report threshold read without --cut-by: every detection is scored
    assert pool.pool(tmp_path, [gdxray_root], tuned="tta8-join-fa2")["folds"][0][
        "per_series"]["C0010"]["ap"] == pytest.approx(1.0)
    text = _tables().loso_library(capped)
    assert "at most 2 false alarms per tuning image" in text
    assert "report threshold 0.950: tuning AP 0.690 at 1.25 false alarms per tuning" in text
    capped_card["detection"]["theta"] = 0.8  # another choice: not a cut of the same files
    (fold / "tta8-join-fa2" / "model.json").write_text(json.dumps(capped_card))
    with pytest.raises(SystemExit, match="differ from"):
        pool.pool(tmp_path, [gdxray_root], cut_by="tta8-join-fa2")
    (fold / "eval-C0034" / "metrics.json").unlink()  # one held-out series not evaluated
    with pytest.raises(SystemExit, match="no fold evaluated yet"):
        pool.pool(tmp_path, [gdxray_root])


def test_loso_pyramid_variants_box_each_level_and_merge_them():
    import numpy as np

    pyr = _experiment("loso_pyramid")
    assert pyr.upsample(np.arange(6, dtype=float).reshape(2, 3), (5, 7)).shape == (5, 7)
    mask = np.ones((40, 40), bool)
    p1 = np.zeros((40, 40))
    p1[10:14, 10:14] = 0.95  # one defect lit as two fragments at full resolution
    p1[10:14, 18:22] = 0.95
    p2 = np.zeros((40, 40))
    p2[9:15, 9:23] = 0.99  # whole at half resolution
    out = pyr.variants(p1, p2, mask, (0.9, 4, 0, 0.0, -1, 1.0))
    assert len(out["L1"][0]) == 2 and len(out["L2"][0]) == 1
    assert out["L2"][0][0].tolist() == [9, 9, 23, 15]
    assert len(out["max"][0]) == 1  # the maximum holds the whole region
    assert len(out["merge-iou"][0]) == 3  # no fragment overlaps the whole by IoU 0.5
    assert len(out["merge-iom"][0]) == 1  # the fragments lie inside the higher-scored box
    assert set(out) == set(pyr.VARIANTS)


def test_loso_localisation_sorts_each_missed_defect_by_its_best_overlapping_box():
    import numpy as np

    from xdefect.evaluate import ImageResult

    loc = _experiment("loso_localisation")
    gt = np.array([[0, 0, 10, 10],       # found: the same box
                   [100, 100, 120, 120],  # too small: a 10x10 box inside it (IoU 0.25)
                   [200, 200, 210, 210],  # too big: a 20x20 box around it (IoU 0.25)
                   [300, 300, 310, 310],  # merged with its neighbour in one box
                   [312, 300, 322, 310],  # (both centres inside the 22x10 box)
                   [500, 500, 510, 510]], float)  # nothing overlaps it
    boxes = np.array([[0, 0, 10, 10], [105, 105, 115, 115], [195, 195, 215, 215],
                      [300, 300, 322, 310]], float)
    r = ImageResult("a", "C0000", boxes, np.ones(len(boxes)), gt)
    assert loc.miss_kinds(r) == ["too small", "too big", "merged", "merged", "nothing"]
    assert loc.miss_kinds(r, iou=0.2) == ["nothing"]  # the others overlap 0.25-0.45
    s = loc.sizes([r])
    # pairs at IoU >= 0.1: all but the last; width ratios 1, 0.5, 2, 2.2, 2.2 -> median 2
    assert s["pairs"] == 5 and s["width_ratio"] == pytest.approx(2.0)
    assert s["height_ratio"] == pytest.approx(1.0) and s["centre_dy"] == pytest.approx(0.0)
    text = _tables().loso_localisation({
        "work": "w", "images": 1, "command": "c",
        "by_iou": {t: {"ap": 0.5, "true_positives": 1, "per_series": {"C0000": 0.5}}
                   for t in ("0.5", "0.3", "0.1")},
        "series": {"C0000": {"boxes": 6, "missed": {"nothing": 1, "merged": 2,
                                                    "too small": 1, "too big": 1}, **s}}})
    assert "| C0000 | 6 | 0.50 / 0.50 / 0.50 | 1 / 2 / 1 / 1 | 2.00, 1.00 |" in text


def test_tuning_misses_reads_box_peaks_and_sorts_the_lit_from_the_unlit():
    import numpy as np

    from xdefect.evaluate import ImageResult

    tm = _experiment("tuning_misses")
    values = np.full((40, 60), -0.9)
    values[5, 12] = 0.7  # the pixel (x 12, y 5)
    values[30, 50] = 0.2  # (x 50, y 30): just outside the half-open box below
    boxes = np.array([[10, 0, 20, 10], [40, 20, 50, 30], [100, 100, 110, 110]], float)
    assert tm.box_peaks(values, boxes).tolist() == pytest.approx([0.7, -0.9, -1.0])
    # a coarser map: values[i, j] at the pixel (j*4 + 16, i*4 + 16); the box x 16-21,
    # y 16-21 holds the grid pixels (16, 16) and (20, 20) only
    coarse = np.zeros((5, 5))
    coarse[1, 1], coarse[2, 2] = 0.5, 0.9
    assert tm.box_peaks(coarse, np.array([[16, 16, 21, 21]]), 4, 16)[0] == pytest.approx(0.5)
    rows = [{"found": True, "lit": True, "peak": 0.9, "kind": None, "contrast": 20.0},
            {"found": False, "lit": True, "peak": 0.5, "kind": "too small", "contrast": 9.0},
            {"found": False, "lit": False, "peak": -0.88, "kind": "nothing", "contrast": 4.0},
            {"found": False, "lit": False, "peak": -0.7, "kind": "nothing", "contrast": 6.0}]
    gt = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10], [60, 0, 70, 10]], float)
    r = ImageResult("a", "C0000", np.array([[0, 0, 10, 10], [100, 0, 110, 10]], float),
                    np.array([0.9, 0.8]), gt)
    b = tm.series_block(rows, [r])
    assert (b["boxes"], b["found"], b["unlit"]) == (4, 1, 2)
    assert b["lit_missed"] == {"nothing": 0, "merged": 0, "too small": 1, "too big": 0}
    # unlit peaks p = 0.06 and 0.15
    assert b["unlit_peak_p_median"] == pytest.approx(0.105)
    assert b["unlit_peak_p_at_least"] == {"0.05": 2, "0.1": 1, "0.2": 0}
    assert (b["contrast_found"], b["contrast_unlit"]) == (20.0, 5.0)
    assert b["false_alarms"] == 1 and b["ap"] == pytest.approx(0.25)
    doc = {"roots": ["r"], "command": "c",
           "models": [{"name": "m", "theta": 0.0, "tta": 4, "pooled": b,
                       "series": {"C0000": b}}]}
    text = _tables().tuning_misses(doc)
    assert "| `m` (theta 0, 4 views) | all | 4 | 1 | 2 | 0 / 0 / 1 / 0 | 0.105; 2 / 1 / 0 |" \
        in text
    assert "|  | C0000 | 4 | 1 | 2 |" in text


def test_loso_localisation_ranks_each_series_by_its_own_precision():
    import numpy as np

    from xdefect.evaluate import ImageResult, summarise

    loc = _experiment("loso_localisation")
    # hits F T T F: the hull runs (0,0) -> (3,2) -> (4,2): slopes 2/3, 2/3, 2/3, 0
    assert loc.hull_precision(np.array([False, True, True, False])) == pytest.approx(
        [2 / 3, 2 / 3, 2 / 3, 0])
    assert loc.hull_precision(np.array([True, False, True])) == pytest.approx([1, 0.5, 0.5])
    assert len(loc.hull_precision(np.array([], bool))) == 0
    gt = np.array([[0, 0, 10, 10]], float)
    hit, miss = [0, 0, 10, 10], [50, 50, 60, 60]
    # series A scores its false alarm above everything; series B finds its defect lower
    a = ImageResult("A_1", "A", np.array([miss, hit], float), np.array([0.99, 0.5]), gt)
    b = ImageResult("B_1", "B", np.array([hit], float), np.array([0.9]), gt)
    assert summarise([a, b])["ap"] == pytest.approx(2 / 3)  # A's false alarm ranked first
    ranked = loc.ranked_by_series([a, b])
    assert ranked[1].scores[0] == pytest.approx(1.0)  # B's hit first
    assert ranked[0].scores[0] == pytest.approx(0.5, abs=1e-6)  # A: hull 0.5 for both
    assert ranked[0].scores[0] > ranked[0].scores[1]  # A's order kept
    assert summarise(ranked)["ap"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)  # B's hit first
    assert summarise(ranked)["true_positives"] == summarise([a, b])["true_positives"] == 2
    text = _tables().loso_localisation({
        "work": "w", "images": 2, "command": "c", "series": {},
        "by_iou": {t: {"ap": 0.5, "true_positives": 1, "per_series": {}}
                   for t in ("0.5", "0.3", "0.1")},
        "ranked_by_series": {"ap": 0.75, "true_positives": 2, "mean_series_ap": 0.6}})
    assert "keeps each series' order): 0.7500; the mean of the per-series APs: 0.6000" in text


def test_loso_settings_choose_each_fold_on_the_other_folds_only():
    from dataclasses import replace

    import numpy as np

    from xdefect.detect import DetectParams
    from xdefect.evaluate import ImageResult

    st = _experiment("loso_settings")
    base = DetectParams(mode="segment", box_rule="region", theta=0.5, extent_fraction=0.4,
                        grow=2, join=-1, tta=8, min_score=0.3)
    grid = st.grid_settings(base, (0.0, 0.9), (0.3,), (1, 2), (-1,))
    assert [st.key_of(p) for p in grid] == ["0/0.3/1/-1", "0/0.3/2/-1", "0.9/0.3/1/-1",
                                            "0.9/0.3/2/-1"]
    assert all(p.tta == 8 and p.min_score == -1.0 for p in grid)
    assert st.key_of(base.to_dict()) == "0.5/0.4/2/-1"
    assert st.key_of(replace(base, box_scale=1.1)) == "0.5/0.4/2/-1/x1.1"  # scale 1: no suffix
    assert st.key_of({**base.to_dict(), "box_scale": 1.0}) == "0.5/0.4/2/-1"
    gt = np.array([[0, 0, 10, 10]], float)

    def res(key: str, series: str, hit: bool) -> ImageResult:
        box = [0, 0, 10, 10] if hit else [50, 50, 60, 60]
        return ImageResult(key, series, np.array([box], float), np.array([0.9]), gt)

    # setting "a" finds the defects of fold0's and fold2's castings, "b" those of fold1's
    def fold(i: int, a_hits: bool) -> dict:
        return {"a": [res(f"S{i}_0001", f"S{i}", a_hits), res(f"S{i}_0002", f"S{i}", True)],
                "b": [res(f"S{i}_0001", f"S{i}", not a_hits),
                      res(f"S{i}_0002", f"S{i}", False)]}

    grids = {f"fold{i}": fold(i, i != 1) for i in range(3)}
    best, aps = st.choose([grids["fold0"], grids["fold2"]])
    assert best == "a" and aps["a"] == pytest.approx(1.0) and aps["b"] == 0
    # odd images only: image 1 of each; fold1's odd image is found by "b" alone
    assert st.choose([grids["fold1"]], odd_only=True)[0] == "b"
    same = grids["fold0"]["a"]
    assert st.choose([{"y": same, "x": same}])[0] == "y"  # equal APs: the first in grid order
    cards = {n: {"detection": {"theta": 0, "extent_fraction": 0.3, "grow": 1, "join": -1},
                 "lineage": [{"data_series": []}]} for n in grids}
    renamed = {n: {"0/0.3/1/-1": g["a"], "0/0.3/2/-1": g["b"]} for n, g in grids.items()}
    folds, chosen, own = st.nested({n: (cards[n], renamed[n]) for n in grids}, False)
    assert [f["chosen"]["setting"] for f in folds] == ["0/0.3/1/-1"] * 3
    assert len(chosen) == len(own) == 6
    same = {**renamed, "fold2": renamed["fold1"]}  # fold2 holds out fold1's series too
    with pytest.raises(SystemExit, match="S1 held out by more than one fold"):
        st.nested({n: (cards[n], same[n]) for n in grids}, False)
    cards["fold1"]["detection"]["grow"] = 3
    with pytest.raises(SystemExit, match="fold1: its own settings 0/0.3/3/-1 are not in"):
        st.nested({n: (cards[n], renamed[n]) for n in grids}, False)
    fig = {"ap": 0.5, "true_positives": 3, "gt_boxes": 6, "false_alarms_per_image": 1.25,
           "per_series": {"S0": {"ap": 0.5, "true_positives": 1, "gt_boxes": 2,
                                 "false_alarms_per_image": 1.0}}}
    text = _tables().loso_settings([{
        "work": "w", "chosen_on": "the other folds' held-out series, all images",
        "pooled": fig, "own_settings": {**fig, "ap": 0.25},
        "best_single_setting": {"setting": "0/0.2/3/0", "ap": 0.75},
        "folds": [{"fold": "fold0", "held_out": ["S0"], "own": {"setting": "0/0.5/3/0"},
                   "chosen": {"setting": "0.4/0.6/3/0", "others_ap": 0.6,
                              "others_ap_at_own": 0.55}}],
        "grid": {"thetas": [0], "extents": [0.2], "grows": [3], "joins": [0], "settings": 1},
        "command": "c"}])
    assert "| `w` | all images | 0.2500 (3/6, 1.2 per image) | **0.5000** | 3/6 | 1.2 |" in text
    assert "| S0 | fold0 | 2 | 0.5000 (1) | 0.5000 (1) | 1.0 -> 1.0 |" in text
    assert "fold0: 0/0.5/3/0 -> 0.4/0.6/3/0 (the other folds' AP 0.5500 -> 0.6000)" in text


def test_box_examples_table_and_rows_name_the_scale_each_casting_got(tmp_path):
    rt = _tables()
    fig = {"ap": 0.25, "images": 4, "gt_boxes": 6, "true_positives": 2,
           "false_alarms_per_image": 0.5}
    cal = {"ap": 0.5, "images": 4, "gt_boxes": 6, "true_positives": 3,
           "false_alarms_per_image": 0.75}
    doc = {"work": "runs/seg/w", "tuned": "tta8-join", "images": 1, "folds": ["fold0"],
           "command": "c", "pooled_scale_1": fig, "pooled_calibrated": cal,
           "per_series": {
               "C0001": {"fold": "fold0", "calibrated": True, "box_scale": 1.3,
                         "images": ["C0001_0001", "C0001_0005"], "pairs": 3, "defects": 4,
                         "ratio": 1.3, "scale_1": fig, "calibrated_model": cal},
               "C0047": {"fold": "fold0", "calibrated": False, "why": "too few",
                         "box_scale": 1.0, "scale_1": fig, "calibrated_model": fig}}}
    text = rt.loso_box_examples([doc, {**doc, "tuned": None, "work": "runs/a"}])
    assert ("| `runs/seg/w`, leave-series-out folds | 1 | 0.2500 (2/6) | **0.5000** | 3/6 | "
            "0.8 |") in text
    assert "| `runs/a`, adapted per casting (`--adapt`) |" in text
    assert "| C0001 | fold0 | 2 | 3/4 | 1.3 | 0.2500 (2/6) | 0.5000 (3) |" in text
    assert "| C0047 | fold0 | too few paired defects: its own scale kept | - | 1 |" in text
    (tmp_path / rt.BOX_EXAMPLES_RUNS[0]).write_text(json.dumps(doc))
    (tmp_path / rt.BOX_EXAMPLES_RUNS[2]).write_text(json.dumps({**doc, "tuned": None}))
    rows = rt.box_example_rows(tmp_path)
    assert len(rows) == 2 and rows[0].endswith("| - | 0.5000 | 3/6 | 0.8 |")
    assert "fold models" in rows[0] and "1 of 5 folds" in rows[0]
    assert "adapted to each casting" in rows[1] and "then each casting's odd images" in rows[1]


def test_library_loso_rows_sum_training_minutes_and_skip_missing_files(tmp_path):
    rt = _tables()
    doc = {"folds_done": 2, "folds": [{"train_minutes": 50.0}, {"train_minutes": 49.4}],
           "pooled": {"images": 310, "ap": 0.25, "true_positives": 200, "gt_boxes": 407,
                      "false_alarms_per_image": 4.66}}
    (tmp_path / "loso5_ext.json").write_text(json.dumps(doc))
    doc["folds"][1]["train_minutes"] = None  # an ensemble of finished models
    (tmp_path / "loso5_seeds_s1.json").write_text(json.dumps(doc))
    rows = rt.library_loso_rows(tmp_path)
    assert len(rows) == 2
    assert rows[0].endswith("| 99 | 0.2500 | 200/407 | 4.7 |") and "2 of 5 folds" in rows[0]
    assert "| - | 0.2500 |" in rows[1]


def test_loso_box_scale_resizes_like_the_library_and_chooses_on_other_folds(tmp_path):
    import numpy as np

    from xdefect.evaluate import ImageResult

    bs = _experiment("loso_box_scale")
    # a 20 x 20 defect boxed 18 x 18 (IoU 0.81) and a 10 x 10 one boxed 8 x 8 about its
    # centre (IoU 0.64); scaled by 1.25 the first box is 22 x 22 (IoU 0.83), the second 10 x 10
    gt = np.array([[10, 10, 30, 30], [50, 50, 60, 60]], float)
    boxes = np.array([[11, 11, 29, 29], [51, 51, 59, 59]], float)
    r = ImageResult("C0000_0001", "C0000", boxes, np.array([0.9, 0.8]), gt)
    shapes = {"C0000_0001": (64, 64)}
    assert bs.resized([r], shapes, 1.0)[0] is r
    out = bs.resized([r], shapes, 1.25)[0]
    assert out.boxes.tolist() == [[9, 9, 31, 31], [50, 50, 60, 60]]
    assert out.scores is r.scores and out.gt is r.gt
    assert bs.resized([r], shapes, 4.0)[0].boxes.tolist() == [[0, 0, 56, 56], [39, 39, 64, 64]]
    # IoU 0.5 needs the second box larger: scale 1 finds 2 of 2 too (IoU 0.64), a scale of
    # 2 loses both; the first of equal APs (1) wins
    best, aps = bs.choose([r], shapes, (1.0, 1.25, 2.0))
    assert best == 1.0 and aps["1"] == aps["1.25"] == 1.0 and aps["2"] == 0.0
    small = ImageResult("C0000_0001", "C0000", np.array([[53, 53, 57, 57]], float),
                        np.array([0.9]), gt[1:])  # IoU 0.16: found only once scaled
    best, aps = bs.choose([small], shapes, (1.0, 2.0, 3.0))
    assert best == 2.0 and aps["1"] == 0.0 and aps["2"] == 1.0
    text = _tables().loso_box_scale([{
        "work": "w", "point": "all detections", "command": "c",
        "folds": [{"chosen": {"box_scale": 1.1}}, {"chosen": {"box_scale": 1.2}}],
        "scale_1": {"ap": 0.4, "true_positives": 5, "gt_boxes": 10,
                    "per_series": {"C0000": {"ap": 0.4, "true_positives": 5}}},
        "pooled": {"ap": 0.5, "true_positives": 6, "gt_boxes": 10, "false_alarms_per_image": 1.0,
                   "per_series": {"C0000": {"ap": 0.5, "true_positives": 6, "gt_boxes": 10}}},
        "fixed": {"1": {"ap": 0.4}, "1.1": {"ap": 0.5}}}])
    assert ("| `w` | all detections | all images | 1.1, 1.2 | 0.4000 (5/10) | **0.5000** | "
            "6/10 | 1.0 |") in text
    assert "| C0000 | 10 | 0.400 | 0.500 | 5 | 6 |" in text and "1: 0.4000; 1.1: 0.5000" in text


def test_loso_box_scale_nested_choice_takes_each_folds_own_boxes_at_each_scale():
    """A joined fold's boxes at each scale come from a new scan, not from resizing: the
    nested choice reads each fold's results per scale as given, and each fold chooses on
    the other folds' held-out images only."""
    import numpy as np

    from xdefect.evaluate import ImageResult

    bs = _experiment("loso_box_scale")
    gt = np.array([[10, 10, 30, 30]], float)
    good, bad = [10, 10, 30, 30], [40, 40, 60, 60]

    def res(i: int, box: list[int]) -> ImageResult:  # one image per fold, S{i}_000{i}
        return ImageResult(f"S{i}_000{i}", f"S{i}", np.array([box], float),
                           np.array([0.9 - 0.1 * i]), gt)

    # folds 0 and 1 find their defect only at scale 1.2, folds 2 and 3 only at scale 1
    done = {f"fold{i}": ({"tuning": {"theta": 0.9}, "lineage": [{"data_series": []}]},
                         {1.0: [res(i, bad if i < 2 else good)],
                          1.2: [res(i, good if i < 2 else bad)]}) for i in range(4)}
    folds, nested, plain = bs.nested_scales(done)
    # fold0 sees S1 (found at 1.2), S2, S3 (found at 1): 1 wins; fold2 sees S0, S1, S3
    assert [f["chosen"]["box_scale"] for f in folds] == [1.0, 1.0, 1.2, 1.2]
    assert folds[2]["others_ap_by_scale"]["1.2"] == pytest.approx(2 / 3)
    assert folds[0]["ap_at_scale_1"] == 0.0 and folds[3]["ap_at_scale_1"] == 1.0
    assert [r.boxes.tolist() for r in nested] == [[bad]] * 4  # each fold chose the others'
    assert [r.boxes.tolist() for r in plain] == [[bad], [bad], [good], [good]]
    # odd images only: S1_0001 and S3_0003; fold1 sees S3 alone, fold3 S1 alone
    folds, _, _ = bs.nested_scales(done, odd_only=True)
    assert [f["chosen"]["box_scale"] for f in folds] == [1.2, 1.0, 1.2, 1.2]


def test_saved_results_leave_out_a_static_series_unannotated_images(tmp_path):
    from xdefect.pipelines import write_phantom_root

    fcn = _experiment("fcn_detector")
    root = write_phantom_root(tmp_path / "r", n=3, shape=(64, 80), defects=1, series="C0998")
    d = root / "Castings" / "C0998"
    rows = (d / "ground_truth.txt").read_text().splitlines()
    (d / "ground_truth.txt").write_text(rows[0] + "\n")  # image 1 only
    (d / "C0998_readme.txt").write_text("<static images, without motion>\n")
    recs = [{"key": f"C0998_000{n}", "series": "C0998", "boxes": [[1, 1, 5, 5]],
             "scores": [0.9], "gt": []} for n in (1, 2, 3)]
    assert [r.key for r in fcn.read_images(recs)] == ["C0998_0001", "C0998_0002", "C0998_0003"]
    assert [r.key for r in fcn.read_images(recs, [tmp_path / "none", root])] == ["C0998_0001"]
    # a series under none of the roots is kept as saved
    other = [{**recs[0], "key": "C0997_0002", "series": "C0997"}]
    assert len(fcn.read_images(other, [root])) == 1
    # an adaptation series with nothing left to score shows as unscored in its table
    doc = {"source": "s", "protocol": "p", "root": "r", "command": "c",
           "per_series": {"C0998": {"odd_images": 2, "source": None, "adapted": None,
                                    "adapt_minutes": 1.0}},
           "pooled_source": {"ap": 0.5, "false_alarms_per_image": 1.0},
           "pooled_adapted": {"ap": 0.5, "images": 1, "gt_boxes": 1, "true_positives": 1,
                              "false_alarms_per_image": 1.0},
           "source_detection": {}, "rescored": {"command": "r", "why": "w"}}
    text = _tables().adapt_table(doc)
    assert "| C0998 | 2 | 0 | - | unscored: no annotated even image |" in text
    assert "Scored again from its saved detections: `r` (w)." in text


def test_table3_stretch_maps_each_patch_to_its_own_contrast(tmp_path):
    import csv

    import numpy as np

    from xdefect.dataset import META_COLUMNS, open_dataset

    t3 = _experiment("table3_rule")
    flat = np.full((32, 32), 200, np.uint8)
    faint = np.full((32, 32), 100, np.uint8)
    faint[8:24, 8:24] = 104  # a 4-grey-level void over a quarter of the patch
    strong = faint.copy()
    strong[8:24, 8:24] = 140  # the same void at ten times the contrast
    out = t3.stretch(np.stack([flat, faint, strong]), floor=2.0)
    assert out.dtype == np.uint8 and out.shape == (3, 32, 32)
    assert (out[0] == 128).all()  # no contrast: the mid grey, not blown up by the floor
    # faint: mean 101, sd 3 ** 0.5 < floor 2, so scaled by the floor: 112 and 176;
    # strong: mean 110, sd 300 ** 0.5 (17.3): 128 - 18.5 and 128 + 55.4
    assert (out[1, 0, 0], out[1, 12, 12]) == (112, 176)
    assert (out[2, 0, 0], out[2, 12, 12]) == (110, 183)
    with pytest.raises(ValueError, match="floor must be positive"):
        t3.stretch(out, 0.0)
    # a dataset folder copied with its patches stretched, all else unchanged
    src, dst = tmp_path / "plain", tmp_path / "stretched"
    src.mkdir()
    np.save(src / "patches.npy", np.stack([flat, faint, strong]))
    np.save(src / "labels.npy", np.array([0, 1, 1], np.int64))
    with open(src / "meta.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(META_COLUMNS)
        for i in range(3):
            w.writerow([i, "train" if i < 2 else "test", int(i > 0), "real", "C0001",
                        "x.png", 0, 0, 0, 0, 0, 0])
    (src / "manifest.json").write_text(json.dumps({"format": "x"}))
    t3.stretched_dataset(src, dst, 2.0, chunk=2)
    ds = open_dataset(dst)
    assert (ds.patches[:] == out).all() and ds.labels.tolist() == [0, 1, 1]
    assert ds.indices("test").tolist() == [2]
    assert "per-patch contrast stretch" in ds.manifest["derived"]["transform"]
    assert not list(tmp_path.glob(".*"))  # no temporary folder left
    with pytest.raises(FileExistsError):
        t3.stretched_dataset(src, dst, 2.0)
    # the table: a stretched row says so, each row's own command and patches seen
    row = {"rule": "r", "max_offset": 16, "min_inside": 0.33, "mu": [0.01, 0.04],
           "x_max": 60, "train": {"accuracy": 0.9}, "build_seconds": 60, "train_seconds": 120,
           "test": {"accuracy": 0.6, "recall": 0.45, "specificity": 0.75,
                    "recall_by_offset": [0.5, None]}, "patches_seen": 600000,
           "stretch": 2.0, "command": "python experiments/table3_rule.py --stretch 2"}
    doc = {"bins_px": [0, 4, 8], "epochs": 4, "samples_per_epoch": 50000, "command": "c",
           "rows": [row, {**row, "rule": "old", "stretch": None, "command": None,
                          "patches_seen": 200000}]}
    text = _tables().table3_rule(doc)
    assert ("| r: centre within 16 px, 0.33 of the shadow inside; every patch stretched to "
            "its own contrast (floor 2 grey levels) | 0.01-0.04, 60 | 0.9000 | 0.6000 | "
            "0.450 | 0.750 | 0.50 | 600,000 | 3 |") in text
    assert "| old: centre within 16 px, 0.33 of the shadow inside | " in text
    assert "Commands: old (before each row kept its command; the file's last: `c`); " in text
    assert "`python experiments/table3_rule.py --stretch 2`" in text
    doc["rows"] = [{**row, "stretch": None, "arch": "xnet2-stretch", "arch_stretch": 4.0}]
    assert ("0.33 of the shadow inside; `xnet2-stretch`: every patch stretched inside the "
            "network (floor 4 grey levels) | ") in _tables().table3_rule(doc)


def test_table3_floor_holds_out_training_castings_and_chooses_on_them(tmp_path):
    import csv

    import numpy as np

    from xdefect.dataset import META_COLUMNS, open_dataset

    t3f = _experiment("table3_floor")
    # A and D train; B is held out (2 real, 3 defect-free, 1 simulated window); C0001 test
    kinds = [("train", "A", "background", 0), ("train", "A", "ellipsoid", 1),
             ("train", "A", "real", 1), ("train", "B", "real", 1),
             ("train", "B", "background", 0), ("train", "B", "ellipsoid", 1),
             ("train", "B", "background", 0), ("train", "B", "real", 1),
             ("train", "B", "background", 0), ("test", "C0001", "real", 1),
             ("test", "C0001", "background", 0), ("train", "D", "background", 0)]
    src = tmp_path / "plain"
    src.mkdir()
    patches = np.arange(len(kinds), dtype=np.uint8)[:, None, None] * np.ones((1, 32, 32),
                                                                              np.uint8)
    np.save(src / "patches.npy", patches)
    np.save(src / "labels.npy", np.array([k[3] for k in kinds], np.int64))
    with open(src / "meta.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(META_COLUMNS)
        for i, (split, series, source, label) in enumerate(kinds):
            w.writerow([i, split, label, source, series, 1, 0, 0, "", "", "", ""])
    (src / "manifest.json").write_text(json.dumps({"format": "x"}))
    dst = tmp_path / "held"
    counts = t3f.held_out_dataset(src, dst, ["B"], seed=0, chunk=2)
    assert counts == {"train": 4, "held_real": 2, "held_background": 2}
    ds = open_dataset(dst)
    assert ds.indices("train").tolist() == [0, 1, 2, 3]
    assert ds.patches[:4, 0, 0].tolist() == [0, 1, 2, 11]  # A's windows (all kinds), D's
    test = ds.patches[ds.indices("test"), 0, 0].tolist()
    # B's two real windows and two of its three defect-free ones; never its simulated
    # window (5) nor C0001's (9, 10)
    assert {3, 7} <= set(test) and len(test) == 4 and set(test) <= {3, 4, 6, 7, 8}
    assert ds.labels[ds.indices("test")].sum() == 2
    assert ds.manifest["derived"]["held_out"] == ["B"]
    assert not list(tmp_path.glob(".*"))
    with pytest.raises(FileExistsError):
        t3f.held_out_dataset(src, dst, ["B"])
    with pytest.raises(ValueError, match="not among its training series"):
        t3f.held_out_dataset(src, tmp_path / "x", ["C0001"])
    with pytest.raises(ValueError, match="need some real windows"):
        t3f.held_out_dataset(src, tmp_path / "y", ["D"])  # no real window to validate on
    with pytest.raises(ValueError, match="not among"):
        t3f.held_out_dataset(src, tmp_path / "z", [])
    # the choice: highest held-out accuracy, the smaller floor on a tie
    rows = [{"floor": f, "held_out": {"accuracy": acc, "recall": 0.5, "specificity": 0.7},
             "train": {"accuracy": 0.9}, "train_seconds": 600.0}
            for f, acc in ((0.0, 0.55), (1.0, 0.6), (2.0, 0.7), (4.0, 0.7), (8.0, 0.65))]
    assert t3f.choose_floor(rows) == 2.0
    with pytest.raises(ValueError):
        t3f.choose_floor([])
    doc = {"counts": counts, "hold": ["B"], "epochs": 4, "samples_per_epoch": 50000,
           "chosen": 2.0, "command": "python experiments/table3_floor.py", "rows": rows}
    text = _tables().table3_floor(doc)
    assert "| **2** | 0.9000 | **0.7000** | 0.500 | 0.700 | 200,000 | 10 |" in text
    assert "| 4 | 0.9000 | 0.7000 |" in text and "| 0 (no stretch) | 0.9000 | 0.5500 |" in text
    assert "chosen: 2.0" in text and "`python experiments/table3_floor.py`" in text
