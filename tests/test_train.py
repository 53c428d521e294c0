from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import REPO, assert_one_line_error, run_cli

from xdefect import models as M
from xdefect.checkpoint import load_model
from xdefect.patches import BuildArgs
from xdefect.pipelines import build_dataset


@pytest.fixture(scope="module")
def tiny_ds(gdxray_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("tds") / "d"
    build_dataset(BuildArgs(gdxray=str(gdxray_root), out=str(out), series=["C0001"],
                            per_image=60, limit_images=10, seed=0))
    return out


def test_registry_counts():
    table = {r["name"]: r for r in M.registry_table()}
    assert {"xnet2", "xnet"} | {f"t3-{i}" for i in range(8)} <= set(table)
    assert table["xnet2"]["params"] == 1_349_522
    assert table["xnet2"]["trainable_params"] == 1_349_522 - 2 * (940 + 480)
    assert table["xnet2"]["params"] - 4 * 940 + 4 * (32 + 16 + 8 + 4 + 2) == 1_346_010
    for name, r in table.items():
        model = M.create_model(name)
        assert M.count_params_keras(model) == r["params"], name
        out = model.eval()(torch.zeros(3, 1, 32, 32))
        assert out.shape == (3, 2)


def test_macs_match_layer_shapes():
    model = M.create_model("xnet2").eval()
    macs = []

    def hook(mod, inp, out):
        if isinstance(mod, torch.nn.Conv2d):
            macs.append(out.shape[2] * out.shape[3] * mod.weight.numel())
        elif isinstance(mod, torch.nn.Linear):
            macs.append(mod.weight.numel())

    for m in model.modules():
        m.register_forward_hook(hook)
    model(torch.zeros(1, 1, 32, 32))
    assert sum(macs) == M.get_arch("xnet2").macs_per_patch()


def test_models_list_json():
    proc = run_cli("models", "list", "--json")
    doc = json.loads(proc.stdout)
    row = [r for r in doc if r["name"] == "xnet2"][0]
    assert set(row) == {"name", "p", "d", "f", "params", "macs_per_patch", "stretch"}
    assert row["params"] == 1_349_522 and row["d"] == [20, 40, 80, 160, 640]
    assert row["stretch"] == 0
    # the stretched Xnet-II: the same weights, every window at its own contrast
    st = [r for r in doc if r["name"] == "xnet2-stretch"][0]
    assert st["params"] == row["params"] and st["stretch"] > 0


def test_stretched_architecture_sees_each_window_at_its_own_contrast():
    """``stretch``: every window mapped to its own contrast before the first layer, so
    the same window at any contrast above the floor (and any grey level) gives the same
    logits; a flat window is mid-grey, not blown up; surroundings are stretched by the
    window's own (centre) statistics; the card round-trips and stays as before without."""
    g = torch.Generator().manual_seed(0)
    grey = 100 + 20 * torch.randn(4, 1, 32, 32, generator=g)
    x = M.normalise(grey)
    fainter = M.normalise(200 + (grey - 100) / 4)  # a quarter of the contrast, brighter
    s, sf = M.stretch_windows(x, 2.0), M.stretch_windows(fainter, 2.0)
    assert torch.allclose(s, sf, atol=1e-4)
    assert s.mean().abs() < 1e-3 and abs(float(s.std()) - M.STRETCH_SD) < 0.02
    flat = M.normalise(torch.full((1, 1, 32, 32), 90.0))
    assert M.stretch_windows(flat, 2.0).abs().max() < 1e-5
    # 1 grey level of noise under a floor of 4: scaled by the floor, not to full contrast
    noise = M.normalise(128 + torch.randn(1, 1, 32, 32, generator=g))
    assert float(M.stretch_windows(noise, 4.0).std()) == pytest.approx(M.STRETCH_SD / 4,
                                                                       rel=0.1)
    ctx = torch.nn.functional.pad(x, (16, 16, 16, 16), value=3.0)  # a 64x64 surround
    assert torch.allclose(M.stretch_windows(ctx, 2.0)[..., 16:48, 16:48], s, atol=1e-6)
    with pytest.raises(ValueError, match="floor must be positive"):
        M.stretch_windows(x, 0.0)
    with pytest.raises(ValueError, match="stretch must be 0"):
        M.ArchConfig("bad", (3,), (4,), (2,), stretch=-1.0)
    arch = M.get_arch("xnet2-stretch")
    assert M.ArchConfig.from_dict(arch.to_dict()) == arch
    assert "stretch" not in M.get_arch("xnet2").to_dict()
    torch.manual_seed(0)
    model = M.create_model(arch).eval()
    with torch.no_grad():
        d_stretch = float((model(x) - model(fainter)).abs().max())
        plain = M.create_model("xnet2").eval()
        plain.load_state_dict(model.state_dict())
        d_plain = float((plain(x) - plain(fainter)).abs().max())
    assert d_stretch < 1e-4 and d_plain > 10 * d_stretch  # the same weights unstretched


def _train(data, out, *extra, env=None):
    return subprocess.run([sys.executable, "-m", "xdefect", "train", "--data", str(data),
                           "--out", str(out), "--threads", "1", "--batch", "32", *extra],
                          capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, **(env or {})})


def _metrics(run):
    with open(run / "metrics.csv") as fh:
        return list(csv.DictReader(fh))


def test_train_writes_files_and_test_reads_them(tiny_ds, tmp_path):
    run = tmp_path / "run"
    proc = _train(tiny_ds, run, "--epochs", "2")
    assert proc.returncode == 0, proc.stderr
    for name in ("metrics.csv", "best.safetensors", "best.json", "last.safetensors",
                 "last.json"):
        assert (run / name).is_file(), name
    rows = _metrics(run)
    assert [r["epoch"] for r in rows] == ["1", "2"]
    card = json.loads((run / "best.json").read_text())
    assert card["arch"]["name"] == "xnet2" and card["normalisation"] == M.NORMALISATION
    assert len(card["data_manifest_sha256"]) == 64 and card["seed"] == 0
    assert {"val_acc", "val_precision", "val_recall", "val_loss"} <= set(card["metrics"])
    model, _ = load_model(run / "best.safetensors")
    assert isinstance(model, M.PatchCNN)
    proc = run_cli("test", "--model", str(run / "best.safetensors"), "--data", str(tiny_ds),
                   "--split", "val", "--json")
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert res["n"] == 240 and 0 <= res["accuracy"] <= 1
    assert np.asarray(res["confusion"]).sum() == 240
    # a second run into the same folder without --resume is refused
    assert_one_line_error(_train(tiny_ds, run, "--epochs", "1"), "--resume")
    # a resume with other settings is refused with the list, unless they are allowed
    assert_one_line_error(_train(tiny_ds, run, "--epochs", "3", "--resume", "--lr", "0.0005",
                                 "--batch", "64"),
                          "lr 0.001 -> 0.0005", "batch 32 -> 64", "--allow-change lr batch")
    assert_one_line_error(_train(tiny_ds, run, "--epochs", "3", "--resume", "--optimizer",
                                 "rmsprop"), "optimizer 'adam'")
    proc = _train(tiny_ds, run, "--epochs", "3", "--resume", "--lr", "0.0005",
                  "--allow-change", "lr")
    assert proc.returncode == 0, proc.stderr
    assert float(_metrics(run)[-1]["lr"]) == 0.0005  # the optimiser follows the new rate


def test_sigkill_resume_matches_uninterrupted_run(tiny_ds, tmp_path):
    ref = tmp_path / "ref"
    assert _train(tiny_ds, ref, "--epochs", "3").returncode == 0
    run = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "xdefect", "train", "--data", str(tiny_ds),
                             "--out", str(run), "--threads", "1", "--batch", "32",
                             "--epochs", "3"], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (run / "last.json").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # into epoch 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    rows = _metrics(run)
    assert len(rows) in (1, 2)  # killed mid-training
    res = _train(tiny_ds, run, "--epochs", "3", "--resume")
    assert res.returncode == 0, res.stderr
    got, want = _metrics(run), _metrics(ref)
    assert [r["epoch"] for r in got] == ["1", "2", "3"]
    keys = ("train_loss", "train_acc", "val_loss", "val_acc")
    for g, w in zip(got, want, strict=True):  # determinism: same seed and threads
        assert all(g[k] == w[k] for k in keys), (g, w)
    leftovers = [p.name for p in run.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_two_process_ddp(tiny_ds, tmp_path):
    run = tmp_path / "ddp"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                           "--master_port=29533", "-m", "xdefect", "train", "--data",
                           str(tiny_ds), "--out", str(run), "--epochs", "1", "--threads", "1",
                           "--batch", "32"], capture_output=True, text=True, cwd=REPO,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = _metrics(run)
    assert len(rows) == 1
    card = json.loads((run / "best.json").read_text())
    assert card["world_size"] == 2
    assert float(rows[0]["val_acc"]) > 0


def test_bad_model_file(tmp_path, tiny_ds):
    bad = tmp_path / "m.safetensors"
    bad.write_bytes(b"\x00" * 64)
    assert_one_line_error(run_cli("test", "--model", str(bad), "--data", str(tiny_ds)),
                          "m.safetensors")
    (tmp_path / "m.json").write_text(json.dumps({"format": "xdefect-model/1",
                                                 "arch": M.get_arch("xnet2").to_dict()}))
    assert_one_line_error(run_cli("test", "--model", str(bad), "--data", str(tiny_ds)),
                          "not a safetensors file")
    pkl = tmp_path / "p.safetensors"
    torch.save({"a": torch.zeros(1)}, pkl)  # a pickle in disguise is refused, never loaded
    (tmp_path / "p.json").write_text((tmp_path / "m.json").read_text())
    assert_one_line_error(run_cli("test", "--model", str(pkl), "--data", str(tiny_ds)),
                          "not a safetensors file")
    assert_one_line_error(run_cli("train", "--data", str(tmp_path / "none"), "--out",
                                  str(tmp_path / "r")), "no such dataset folder")
