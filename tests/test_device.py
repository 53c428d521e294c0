"""Devices: the dense network's weights move with ``.to()``, and detection and training
run on CUDA when one is present (skipped with the reason otherwise)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xdefect.detect import DenseNet
from xdefect.models import create_model, setup_device
from xdefect.simulate import phantom

CUDA = pytest.mark.skipif(not torch.cuda.is_available(),
                          reason="no CUDA device on this machine (the CPU tests cover the rest)")


def test_densenet_weights_are_buffers():
    torch.manual_seed(0)
    net = DenseNet(create_model("xnet2").eval(), 8)
    names = dict(net.named_buffers())
    assert {"conv0_w", "conv0_b", "conv4_w", "fc0_w", "fc2_b"} <= set(names)
    before = net(torch.zeros(1, 1, 64, 64))
    moved = net.to(torch.float64)  # .to() reaches every weight
    assert all(b.dtype == torch.float64 for b in moved.buffers())
    after = moved(torch.zeros(1, 1, 64, 64, dtype=torch.float64))
    assert torch.allclose(before.double(), after, atol=1e-5)


def test_device_choice():
    assert setup_device("cpu") == "cpu"
    assert setup_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        from xdefect.errors import InputError

        with pytest.raises(InputError, match="CUDA is not available"):
            setup_device("cuda")


@CUDA
def test_detection_on_cuda_matches_cpu():
    import xdefect

    ph = phantom(shape=(192, 256), n_defects=4, seed=2)
    for mode in ("patch", "dense"):
        cpu = xdefect.Detector.load(device="cpu", mode=mode)
        gpu = xdefect.Detector.load(device="cuda", mode=mode)
        a, b = cpu.score_map(ph.image).values, gpu.score_map(ph.image).values
        assert np.abs(a - b).max() < 1e-3, mode
        assert [d.box for d in cpu.detect(ph.image)] == [d.box for d in gpu.detect(ph.image)]


@CUDA
def test_training_on_cuda(tmp_path, gdxray_root):
    from xdefect.patches import BuildArgs
    from xdefect.pipelines import build_dataset
    from xdefect.train import TrainConfig, train

    data = tmp_path / "ds"
    build_dataset(BuildArgs(gdxray=str(gdxray_root), out=str(data), series=["C0021"],
                            per_image=16, limit_images=2, workers=1))
    res = train(TrainConfig(data=str(data), out=str(tmp_path / "run"), epochs=1, batch=16,
                            device="cuda"))
    assert res["epochs_run"] == 1
