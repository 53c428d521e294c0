from __future__ import annotations

import csv
import json

import numpy as np
import torch
from conftest import assert_one_line_error, run_cli

from xdefect import gan
from xdefect.patches import BuildArgs
from xdefect.pipelines import build_dataset


def test_networks_shapes():
    G, D = gan.Generator(100, 8), gan.Discriminator(8)
    x = G(torch.randn(5, 100))
    assert x.shape == (5, 1, 32, 32) and x.abs().max() <= 1
    assert D(x).shape == (5,)
    k = torch.arange(8)
    y = gan.dihedral(torch.arange(16.0).view(1, 1, 4, 4).repeat(8, 1, 1, 1), k)
    assert len({tuple(v.flatten().tolist()) for v in y}) == 8  # eight distinct transforms


def test_train_resume_sample_and_mix(gdxray_root, tmp_path):
    out = tmp_path / "g"
    cfg = dict(gdxray=str(gdxray_root), out=str(out), batch=8, every=2, series=["C0010"],
               width=8, threads=1)
    res = gan.train_gan(gan.GanConfig(iterations=2, **cfg))
    assert res["iterations"] == 2 and res["real_patches"] > 100
    for name in ("generator.safetensors", "generator.json", "checkpoint.safetensors",
                 "checkpoint.json", "log.csv", "samples/iter_000002.png"):
        assert (out / name).is_file(), name
    # without --resume an existing GAN is refused; with it, training continues at 2
    proc = run_cli("gan", "train", "--gdxray", str(gdxray_root), "--out", str(out),
                   "--iterations", "4")
    assert_one_line_error(proc, "--resume")
    res = gan.train_gan(gan.GanConfig(iterations=4, resume=True, **cfg))
    with open(out / "log.csv") as fh:
        assert [r["iteration"] for r in csv.DictReader(fh)] == ["2", "4"]
    assert json.loads((out / "generator.json").read_text())["iteration"] == 4
    # sampling
    proc = run_cli("gan", "sample", "--model", str(out), "--n", "70", "--out",
                   str(tmp_path / "s"))
    assert proc.returncode == 0, proc.stderr
    x = np.load(tmp_path / "s.npy")
    assert x.shape == (70, 32, 32) and x.dtype == np.uint8
    assert (tmp_path / "s.png").stat().st_size > 1000
    # mixes hold the requested portions
    ds = tmp_path / "mix"
    man = build_dataset(BuildArgs(gdxray=str(gdxray_root), out=str(ds), series=["C0010"],
                                  per_image=40, limit_images=3, mix="E025G075", gan=str(out)))
    assert man["counts"]["source"] == {"background": 120, "ellipsoid": 30, "gan": 90}
    assert len(man["gan_generator_sha256"]) == 64
    with open(ds / "meta.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r["source"] == "gan"]
    assert all(r["row"] == "-1" and r["label"] == "1" for r in rows)


def test_sample_bad_model(tmp_path):
    assert_one_line_error(run_cli("gan", "sample", "--model", str(tmp_path), "--n", "3",
                                  "--out", str(tmp_path / "x")), "no generator.safetensors")
