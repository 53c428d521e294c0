"""Training for the dense mode: windows with their surroundings (``--context``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import assert_one_line_error, run_cli

from xdefect import detect as D
from xdefect.dataset import open_dataset
from xdefect.io import to_uint
from xdefect.models import create_model, normalise
from xdefect.simulate import phantom
from xdefect.windows import cut_context


def _model():
    torch.manual_seed(0)
    m = create_model("xnet2").eval()
    for mod in m.modules():  # non-trivial BatchNorm statistics
        if isinstance(mod, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
    return m


def test_a_window_with_surroundings_scores_as_the_dense_map():
    """The model on a window with 64 px of surroundings (beyond the 36 px reach) gives
    exactly the dense score map's value of that window; with 32 px, nearly."""
    m = _model()
    img = phantom(shape=(256, 320), n_defects=4, seed=1).image
    dense = D.score_map_dense(m, img, 8)
    img8 = to_uint(img, 8)
    rows, cols = np.array([64, 96, 120]), np.array([72, 160, 200])
    for margin, tol in ((64, 1e-4), (32, 0.2)):
        x = normalise(cut_context(img8, rows, cols, margin))
        with torch.no_grad():
            p = torch.softmax(m(x), 1)
        got = (p[:, 1] - p[:, 0]).numpy()
        # the dense map reads the float image; the crops are its uint8 quantisation
        want = dense.values[rows // 8, cols // 8]
        assert np.abs(got - want).max() < tol, (margin, got, want)


def test_cut_context_edges_and_zero_margin():
    img8 = np.arange(40 * 50, dtype=np.int64).reshape(40, 50).astype(np.uint8)
    c = cut_context(img8, np.array([0, 8]), np.array([0, 18]), 32)
    assert c.shape == (2, 96, 96)
    assert np.array_equal(c[:, 32:64, 32:64], np.stack([img8[0:32, 0:32], img8[8:40, 18:50]]))
    assert (c[0, :32, :] == 128).all() and (c[1, :, 82:] == 128).all()
    assert np.array_equal(cut_context(img8, np.array([3]), np.array([4]), 0)[0],
                          img8[3:35, 4:36])


def test_context_dataset_and_training(gdxray_root, tmp_path):
    out = tmp_path / "ctx"
    proc = run_cli("dataset", "build", "--gdxray", str(gdxray_root), "--out", str(out),
                   "--series", "C0021", "--per-image", "12", "--limit-images", "2",
                   "--real", "10", "--hard-negatives", "6", "--hard-model", "xnet2-paper",
                   "--hard-stride", "16", "--context", "32", "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    ds = open_dataset(out)
    assert ds.margin == 32 and ds.context.shape == (len(ds.labels), 96, 96)
    assert np.array_equal(ds.context[:, 32:64, 32:64], ds.patches)  # every source aligned
    assert ds.manifest["context"] == 32
    assert {"background", "ellipsoid", "real", "hard"} == set(ds.source.tolist())
    run = tmp_path / "run"
    proc = run_cli("train", "--data", str(out), "--out", str(run), "--epochs", "1",
                   "--batch", "8", "--context", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    import json

    card = json.loads((run / "best.json").read_text())
    assert card["context_margin"] == 32 and card["train_config"]["context"] is True


@pytest.mark.parametrize("extra, needle", [
    (["--context", "20"], "multiple of 32"),
    (["--context", "32", "--protocol", "table3"], "--context applies"),
    (["--context", "32", "--mix", "E050G050", "--gan", "nowhere"], "--context applies"),
])
def test_context_build_refusals(gdxray_root, tmp_path, extra, needle):
    proc = run_cli("dataset", "build", "--gdxray", str(gdxray_root), "--out",
                   str(tmp_path / "x"), "--series", "C0021", *extra)
    assert_one_line_error(proc, needle)
    assert not (tmp_path / "x").exists()


def test_train_context_needs_context_data(gdxray_root, tmp_path):
    out = tmp_path / "plain"
    assert run_cli("dataset", "build", "--gdxray", str(gdxray_root), "--out", str(out),
                   "--series", "C0021", "--per-image", "8", "--limit-images", "1",
                   "--workers", "1").returncode == 0
    proc = run_cli("train", "--data", str(out), "--out", str(tmp_path / "r"), "--context",
                   "--epochs", "1")
    assert_one_line_error(proc, "context.npy")


def test_context_contract_refusals(tmp_path):
    from xdefect.dataset import PatchSet
    from xdefect.errors import InputError

    m = create_model("xnet2").eval()
    with pytest.raises(ValueError, match="multiple of 32"):
        m(torch.zeros(1, 1, 80, 80))  # a 24 px margin misplaces the window's cells
    a = PatchSet.uncut("C0001", 1, np.zeros((2, 32, 32), np.uint8), 0, "background")
    b = PatchSet(a.series, a.images, a.patches, a.labels, a.source, a.rows, a.cols, a.boxes,
                 np.zeros((2, 96, 96), np.uint8))
    with pytest.raises(ValueError, match="surroundings"):
        a + b
    assert (PatchSet.empty() + b).context.shape == (2, 96, 96)
    # a dataset folder with a malformed context.npy is refused with one line
    from xdefect.dataset import META_COLUMNS
    from xdefect.io import write_json

    f = tmp_path / "ds"
    f.mkdir()
    np.save(f / "patches.npy", np.zeros((2, 32, 32), np.uint8))
    np.save(f / "labels.npy", np.zeros(2, np.uint8))
    (f / "meta.csv").write_text(",".join(META_COLUMNS) + "\n" + "0,train,0,background\n"
                                "1,train,0,background\n")
    write_json(f / "manifest.json", {})
    np.save(f / "context.npy", np.zeros((2, 96, 90), np.uint8))
    with pytest.raises(InputError, match="context.npy"):
        open_dataset(f)


def test_resume_refuses_other_settings(gdxray_root, tmp_path):
    from xdefect.patches import BuildArgs
    from xdefect.pipelines import build_dataset
    from xdefect.train import TrainConfig, train

    data = tmp_path / "d"
    build_dataset(BuildArgs(gdxray=str(gdxray_root), out=str(data), series=["C0021"],
                            per_image=8, limit_images=1, workers=1))
    cfg = dict(data=str(data), out=str(tmp_path / "r"), epochs=1, batch=8, device="cpu")
    train(TrainConfig(**cfg))
    with pytest.raises(Exception, match="channels_last"):
        train(TrainConfig(**{**cfg, "epochs": 2}, resume=True, channels_last=False))
    assert train(TrainConfig(**{**cfg, "epochs": 2}, resume=True))["epochs_run"] == 2
