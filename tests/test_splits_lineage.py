"""Issue 12: image-split vocabulary, tuning images kept out of training data, lineage in
model cards, unseen-defect AP, bundled model names and card-generated README figures."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO, assert_one_line_error, run_cli

from xdefect import gdxray
from xdefect.checkpoint import (
    BUNDLED,
    DEFAULT_MODEL,
    describe_model,
    lineage_summary,
    read_card,
    resolve_model,
    save_model,
)
from xdefect.errors import InputError
from xdefect.evaluate import ImageResult, match_image, seen_mask, summarise
from xdefect.gan import GanConfig, train_gan
from xdefect.io import command_line, sha256_file
from xdefect.models import create_model, get_arch
from xdefect.patches import BuildArgs
from xdefect.pipelines import build_dataset
from xdefect.train import TrainConfig, train


def _meta(folder):
    with open(folder / "meta.csv", newline="") as fh:
        return list(csv.DictReader(fh))


# ------------------------------------------------------------------ split vocabulary


def test_image_split_names():
    assert [gdxray.image_split(n) for n in (1, 2, 3, 4, 5, 7, 9)] == [
        "tuning", "test", "train", "test", "tuning", "train", "tuning"]
    assert gdxray.canonical_split("val") == "tuning"
    assert gdxray.canonical_split(None) == "all"
    assert gdxray.in_split(6, "even") and gdxray.in_split(6, "test")
    assert gdxray.in_split(5, "odd") and not gdxray.in_split(5, "train")
    with pytest.raises(ValueError):
        gdxray.canonical_split("validation")


def test_list_images_by_split(gdxray_root):
    tr = gdxray.list_images(gdxray_root, ["C0010"], "train")
    tu = gdxray.list_images(gdxray_root, ["C0010"], "tuning")
    te = gdxray.list_images(gdxray_root, ["C0010"], "test")
    assert {r.number % 4 for r in tr} == {3} and {r.number % 4 for r in tu} == {1}
    assert all(r.number % 2 == 0 for r in te)
    assert len(tr) + len(tu) + len(te) == 37
    assert gdxray.list_images(gdxray_root, ["C0010"], "val") == tu  # old name


def test_protocol_series_never_every_series(tmp_path, gdxray_root):
    assert gdxray.protocol_series(gdxray_root) == list(gdxray.PAPER_SERIES)
    # a full download holds more series: the default stays the paper's seven
    root = tmp_path / "full"
    (root / "Castings").mkdir(parents=True)
    for s in list(gdxray.PAPER_SERIES) + ["C0002"]:
        (root / "Castings" / s).symlink_to(gdxray_root / "Castings" / s
                                           if s != "C0002" else gdxray_root / "Castings" / "C0010")
    assert "C0002" in gdxray.list_series(root)
    assert gdxray.protocol_series(root) == list(gdxray.PAPER_SERIES)
    # a root with none of the defaults (gdxray-extra) gives every series it holds
    assert gdxray.protocol_series(root, None, ("C0999",)) == gdxray.list_series(root)
    with pytest.raises(InputError, match="unknown series"):
        gdxray.protocol_series(root, ["C0999"])


# ------------------------------------------- no tuning or test image reaches training


@pytest.fixture(scope="module")
def tiny_gan(gdxray_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("gan") / "g"
    train_gan(GanConfig(gdxray=str(gdxray_root), out=str(out), iterations=2, batch=8,
                        every=2, series=["C0010", "C0015"], threads=1))
    return out


def test_gan_learns_from_train_images_only(tiny_gan):
    card = json.loads((tiny_gan / "generator.json").read_text())
    assert card["image_splits"] == ["train"] and card["series"] == ["C0010", "C0015"]


@pytest.fixture(scope="module")
def hard_model(tmp_path_factory):
    torch.manual_seed(0)
    p = tmp_path_factory.mktemp("hm") / "m.safetensors"
    save_model(p, create_model(get_arch("xnet2")), {"epoch": 0})
    return p


def _build(root, out, gan, hard, **kw):
    """Every source at once, through the library's build (which opens the GAN and the
    hard-negative model from their paths)."""
    return build_dataset(BuildArgs(gdxray=str(root), out=str(out), series=["C0010", "C0015"],
                                   per_image=12, mix="E050G050", gan=str(gan), real=30,
                                   hard_negatives=20, hard_model=str(hard), hard_mode="dense",
                                   hard_stride=16, seed=1, workers=1, **kw))


def test_every_source_comes_from_train_images_only(gdxray_root, tmp_path, tiny_gan,
                                                   hard_model):
    out = tmp_path / "ds"
    man = _build(gdxray_root, out, tiny_gan, hard_model)
    meta = _meta(out)
    sources = {m["source"] for m in meta}
    assert sources == {"background", "ellipsoid", "gan", "real", "hard"}
    numbers = {int(m["image"]) for m in meta}
    assert numbers and all(n % 4 == 3 for n in numbers), sorted(numbers)
    tuning = {r.number for s in ("C0010", "C0015")
              for r in gdxray.list_images(gdxray_root, [s], "tuning")}
    assert not numbers & tuning
    assert man["image_splits"] == ["train"]
    assert all(s["image"] % 4 == 3 for s in man["source_images"])
    assert man["gan_image_splits"] == ["train"]
    assert man["command"]  # captured by the program


def test_include_tuning_is_explicit_and_recorded(gdxray_root, tmp_path, tiny_gan,
                                                 hard_model):
    out = tmp_path / "ds"
    man = _build(gdxray_root, out, tiny_gan, hard_model, include_tuning=True)
    numbers = {int(m["image"]) for m in _meta(out)}
    assert {n % 4 for n in numbers} == {1, 3}  # odd only: never a test image
    assert man["image_splits"] == ["train", "tuning"]


def test_gan_from_tuning_images_is_refused(gdxray_root, tmp_path, tiny_gan, hard_model):
    import shutil

    g = tmp_path / "g"
    shutil.copytree(tiny_gan, g)
    card = json.loads((g / "generator.json").read_text())
    card["image_splits"] = ["train", "tuning"]
    (g / "generator.json").write_text(json.dumps(card))
    with pytest.raises(InputError, match="tuning"):
        _build(gdxray_root, tmp_path / "ds", g, hard_model)
    assert not (tmp_path / "ds").exists()


# ------------------------------------------------------------------------- lineage


@pytest.fixture(scope="module")
def two_stage(gdxray_root, tmp_path_factory):
    base = tmp_path_factory.mktemp("lin")
    d1, d2 = base / "d1", base / "d2"
    build_dataset(BuildArgs(gdxray=str(gdxray_root), out=str(d1), series=["C0010"],
                            per_image=10, workers=1, command="xdefect dataset build (d1)"))
    build_dataset(BuildArgs(gdxray=str(gdxray_root), out=str(d2), series=["C0010"],
                            per_image=10, workers=1, real=20, seed=1))
    train(TrainConfig(data=str(d1), out=str(base / "r1"), epochs=1, batch=32, threads=1,
                      command="xdefect train (r1)"))
    train(TrainConfig(data=str(d2), out=str(base / "r2"), epochs=1, batch=32, threads=1,
                      init=str(base / "r1" / "best.safetensors")))
    return base


def test_card_records_every_stage(two_stage):
    c1 = read_card(two_stage / "r1" / "best.safetensors")
    c2 = read_card(two_stage / "r2" / "best.safetensors")
    lin = c2["lineage"]
    assert len(lin) == 2 and lin[0] == c1["lineage"][0]
    assert lin[0]["command"] == "xdefect train (r1)"
    assert lin[0]["data_command"] == "xdefect dataset build (d1)"
    assert lin[1]["command"] == command_line()  # captured, not typed
    assert lin[1]["data_manifest_sha256"] == sha256_file(two_stage / "d2" / "manifest.json")
    init = lin[1]["init"]
    assert init["sha256"] == sha256_file(two_stage / "r1" / "best.safetensors")
    assert init["card_sha256"] == sha256_file(two_stage / "r1" / "best.json")
    assert c2["weights_sha256"] == sha256_file(two_stage / "r2" / "best.safetensors")
    s = lineage_summary(c2)
    assert s["image_splits"] == ["train"] and s["series"] == ["C0010"]
    assert s["real_defects"] and s["complete"] and s["stages"] == 2
    assert not lineage_summary(c1)["real_defects"]


def test_models_show_prints_and_checks_lineage(two_stage):
    m = two_stage / "r2" / "best.safetensors"
    proc = run_cli("models", "show", str(m))
    assert proc.returncode == 0, proc.stderr
    assert "matches the card" in proc.stdout and "stage 2:" in proc.stdout
    assert "file on disk matches" in proc.stdout and "xdefect train (r1)" in proc.stdout
    d = describe_model(m)
    assert d["weights_match_card"] and d["lineage"][1]["init_file_matches"]
    # a tampered weights file is reported
    tampered = two_stage / "t.safetensors"
    tampered.write_bytes(m.read_bytes()[:-1] + b" ")
    (two_stage / "t.json").write_text((two_stage / "r2" / "best.json").read_text())
    assert describe_model(tampered)["weights_match_card"] is False


# -------------------------------------------------------------------- unseen defects


def test_seen_mask_and_ignored_boxes():
    gt = np.array([[0, 0, 10, 10], [50, 50, 60, 60]], float)
    ref = np.array([[1, 1, 11, 11]], float)
    seen = seen_mask(gt, ref)
    assert seen.tolist() == [True, False]
    dets = np.array([[0, 0, 10, 10], [50, 50, 60, 60], [100, 100, 110, 110]], float)
    scores = np.array([0.9, 0.8, 0.7])
    tp, which = match_image(dets, scores, gt, 0.5, ignore=seen)
    assert tp.tolist() == [False, True, False] and which.tolist() == [-2, 1, -1]
    m = summarise([ImageResult("a", "S", dets, scores, gt, seen)])
    assert m["gt_boxes"] == 2 and m["true_positives"] == 2
    u = m["unseen"]
    assert u["gt_boxes"] == 1 and u["ignored_boxes"] == 1
    assert u["detections"] == 2 and u["true_positives"] == 1 and u["false_positives"] == 1
    assert u["ap"] == pytest.approx(1.0)


def test_voc_and_coco_matching_differ():
    gt = np.array([[0, 0, 10, 10], [0, 0, 10, 12]], float)
    dets = np.array([[0, 0, 10, 11], [0, 0, 10, 11]], float)
    s = np.array([0.9, 0.8])
    assert match_image(dets, s, gt, 0.5, "coco")[0].tolist() == [True, True]
    assert match_image(dets, s, gt, 0.5, "voc")[0].tolist() == [True, False]


def test_evaluate_reports_unseen_ap_and_provenance(gdxray_root, tmp_path, two_stage):
    det = tmp_path / "det"
    det.mkdir()
    model = two_stage / "r2" / "best.safetensors"
    gt = gdxray.load_ground_truth(gdxray_root, "C0034")
    for r in gdxray.list_images(gdxray_root, ["C0034", "C0010"], "test"):
        g = gdxray.load_ground_truth(gdxray_root, r.series) if r.series != "C0034" else gt
        boxes = g.boxes_of(r.number)
        (det / f"{r.stem}.json").write_text(json.dumps({
            "model": str(model), "params": {},
            "detections": [{"box": [int(v) for v in b], "score": 0.9} for b in boxes]}))
    out = tmp_path / "ev"
    proc = run_cli("evaluate", "--detections", str(det), "--gdxray", str(gdxray_root),
                   "--split", "test", "--series", "C0034", "C0010", "--out", str(out),
                   "--no-overlays")
    assert proc.returncode == 0, proc.stderr
    assert "unseen defects: AP" in proc.stdout and "leak-free" in proc.stdout
    m = json.loads((out / "metrics.json").read_text())
    assert m["ap"] == pytest.approx(1.0) and m["series"] == ["C0034", "C0010"]
    u = m["unseen"]
    # every C0034 test defect is also in an odd image: none is unseen
    assert u["per_series"]["C0034"]["gt_boxes"] == 0 and u["per_series"]["C0034"]["ap"] is None
    assert u["ignored_boxes"] >= 18 and u["ap"] == pytest.approx(1.0)
    assert m["provenance"]["real_defects_in_training"] is True
    assert m["provenance"]["trained_on_evaluated_images"] is False
    assert "NaN" not in (out / "metrics.json").read_text()


def test_evaluate_split_names(gdxray_root, tmp_path):
    proc = run_cli("evaluate", "--detections", str(tmp_path), "--split", "validation",
                   "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "invalid choice" in proc.stderr
    proc = run_cli("evaluate", "--detections", str(tmp_path), "--iou", "-1",
                   "--out", str(tmp_path / "o"))
    assert_one_line_error(proc, "--iou")


# ------------------------------------------------------------------- bundled models


def test_bundled_names_resolve():
    for name in BUNDLED:
        p = resolve_model(name)
        assert p.name == f"{name}.safetensors" and p.is_file()
        card = read_card(p)
        assert card["name"] == name
        s = lineage_summary(card)
        assert s["complete"] and s["image_splits"] == ["train"]  # tuning + test held out
        assert card["weights_sha256"] == sha256_file(p)
        assert card["detection_tuning"]["split"] == "tuning"
        assert "unseen" in card["test_even"]
    assert resolve_model(None) == resolve_model(DEFAULT_MODEL) == resolve_model("segnet-xdefect")
    from xdefect.cli.common import MODEL_HELP  # --model's help names them and the default

    assert all(n in MODEL_HELP for n in BUNDLED) and MODEL_HELP.endswith(
        f"default {DEFAULT_MODEL}")
    assert resolve_model("xnet2-e100g000") == resolve_model("xnet2-xdefect")  # old name
    assert not lineage_summary(read_card(resolve_model("xnet2-paper")))["real_defects"]
    with pytest.raises(InputError, match="neither a file nor a bundled model"):
        resolve_model("xnet2-nonesuch")


def test_readme_figures_match_the_cards():
    proc = subprocess.run([sys.executable, "experiments/model_figures.py", "--check"],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_series_out_experiment_trial(gdxray_root, tmp_path, two_stage):
    out = tmp_path / "so"
    proc = subprocess.run(
        [sys.executable, "experiments/series_out.py", "--gdxray", str(gdxray_root), "--out",
         str(out), "--folds", "C0015", "C0034", "--params-from",
         str(two_stage / "r1" / "best.safetensors"), "--mode", "dense", "--per-image", "10",
         "--epochs", "1", "--samples-per-epoch", "200", "--val-samples", "50",
         "--limit-images", "2", "--threads", "1"],
        cwd=REPO, capture_output=True, text=True, env={**__import__("os").environ,
                                                       "XDEFECT_PROGRESS": "0"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads((out / "series_out.json").read_text())
    assert doc["folds"] == ["C0015", "C0034"] and doc["pooled"]["images"] == 4
    for held in ("C0015", "C0034"):
        fold = doc["per_series"][held]
        assert held not in fold["trained_on_series"] and len(fold["trained_on_series"]) == 6
        card = read_card(out / f"fold-{held}" / "run" / "best.safetensors")
        assert held not in lineage_summary(card)["series"]
        m = json.loads((out / f"fold-{held}" / "metrics.json").read_text())
        assert m["series"] == [held] and m["provenance"]["trained_on_evaluated_images"] is False


def test_readme_speed_figures_come_from_bench_results():
    """The README's speed table is generated from bench/results.jsonl."""
    proc = subprocess.run([sys.executable, "experiments/bench_figures.py", "--check"],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
