from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from xdefect import detect as D
from xdefect import models as M
from xdefect.detector import Detector
from xdefect.winograd import conv3x3, transform_weights


def _reference(x_hwc: torch.Tensor, w: torch.Tensor, b: torch.Tensor, d: int) -> torch.Tensor:
    y = F.conv2d(x_hwc.permute(2, 0, 1)[None], w, b, padding=d, dilation=d)
    return y[0].permute(1, 2, 0)


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("d", [1, 2, 3, 4])
@pytest.mark.parametrize("shape", [(13, 17), (8, 8), (1, 5), (33, 20)])
def test_equals_plain_convolution(m, d, shape):
    g = torch.Generator().manual_seed(d * 100 + shape[0])
    c, k = 5, 7
    x = torch.randn(*shape, c, generator=g)
    w = torch.randn(k, c, 3, 3, generator=g)
    b = torch.randn(k, generator=g)
    ref = _reference(x, w, b, d)
    for tiles in (1, 3, 1000):  # block rows per product: one, some, all
        y = conv3x3(x, transform_weights(w, b, m), d, tiles=tiles)
        assert y.shape == ref.shape
        assert torch.allclose(y, ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))


def test_without_bias_and_without_a_bias_given():
    g = torch.Generator().manual_seed(0)
    x, w, b = torch.randn(9, 11, 4, generator=g), torch.randn(6, 4, 3, 3, generator=g), \
        torch.randn(6, generator=g)
    ww = transform_weights(w, b)
    assert torch.allclose(conv3x3(x, ww, 2, bias=False) + b, conv3x3(x, ww, 2), atol=1e-5)
    assert torch.allclose(conv3x3(x, transform_weights(w), 2),
                          _reference(x, w, torch.zeros(6), 2), atol=1e-4)


def test_bad_arguments():
    w = torch.zeros(4, 3, 3, 3)
    with pytest.raises(ValueError, match="block size"):
        transform_weights(w, m=3)
    with pytest.raises(ValueError, match="3, 3"):
        transform_weights(torch.zeros(4, 3, 5, 5))
    ww = transform_weights(w)
    with pytest.raises(ValueError, match="input"):
        conv3x3(torch.zeros(5, 5, 2), ww)
    with pytest.raises(ValueError, match="dilation"):
        conv3x3(torch.zeros(5, 5, 3), ww, 0)


def _xnet2(seed: int = 0) -> M.PatchCNN:
    torch.manual_seed(seed)
    m = M.create_model("xnet2")
    for mod in m.modules():  # non-trivial BatchNorm statistics
        if isinstance(mod, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 2.0)
    return m.eval()


@pytest.mark.parametrize("stride", [2, 4, 8])
def test_dense_map_with_and_without_winograd(stride):
    m = _xnet2()
    x = np.random.default_rng(stride).uniform(0, 1, (150, 190)).astype(np.float32)
    fast = D.dense_net(m, stride)
    # xnet2's heavy layers (80x160 and 160x640 channels) run by Winograd at these strides
    assert fast.winograd == [len(m.arch.p) - 2, len(m.arch.p) - 1]
    plain = D.DenseNet(m, stride, winograd=False).to(memory_format=torch.channels_last)
    assert not plain.winograd
    a = D.score_map_dense(m, x, stride, net=fast).values
    b = D.score_map_dense(m, x, stride, net=plain).values
    assert a.shape == b.shape == D.grid_shape(x.shape, stride)
    assert np.abs(a - b).max() < 1e-4
    with pytest.raises(ValueError, match="stride"):
        D.score_map_dense(m, x, stride * 2, net=fast)


def test_detector_keeps_its_dense_networks(tmp_path):
    from xdefect.checkpoint import save_model

    path = tmp_path / "m.safetensors"
    save_model(path, _xnet2(), {})
    det = Detector.load(path, device="cpu", mode="dense", stride=4)
    img = np.random.default_rng(0).uniform(0, 1, (96, 128)).astype(np.float32)
    first = det.score_map(img)
    net = det.nets[4]
    assert np.array_equal(det.score_map(img).values, first.values)
    det.run(img)
    det.with_params(stride=8).run(img)
    assert det.nets[4] is net and set(det.nets) == {4, 8}  # built once per stride, shared
    ref = D.score_map_dense(det.model, img, 4).values
    assert np.abs(first.values - ref).max() < 1e-6
