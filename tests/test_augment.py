"""Training-window augmentation: repeatable, in range, the input untouched, each transform
doing what it says."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xdefect.augment import AugmentParams, augment

NONE = AugmentParams(flip=False, gamma=(1, 1), gain=(1, 1), offset=0, blur=(0, 0),
                     p_blur=0, noise=(0, 0))


def _batch(n=16, side=32):
    return torch.as_tensor(np.random.default_rng(1).uniform(0.2, 0.8, (n, 1, side, side)),
                           dtype=torch.float32)


def test_repeatable_in_range_and_input_untouched():
    x = _batch()
    before = x.clone()
    a = augment(x, AugmentParams(), np.random.default_rng(5))
    b = augment(x, AugmentParams(), np.random.default_rng(5))
    torch.testing.assert_close(a, b)
    assert torch.equal(x, before)
    assert a.shape == x.shape and float(a.min()) >= 0 and float(a.max()) <= 1
    assert not torch.allclose(a, x)


def test_identity_settings_change_nothing():
    x = _batch()
    torch.testing.assert_close(augment(x, NONE, np.random.default_rng(0)), x)


def test_symmetries_keep_the_centre_and_the_values():
    x = torch.zeros(64, 1, 9, 9)
    x[:, 0, 4, 4] = 1.0  # centre pixel
    x[:, 0, 0, 1] = 0.5  # a mark off the axes
    p = AugmentParams(**{**NONE.__dict__, "flip": True})
    y = augment(x, p, np.random.default_rng(0))
    assert torch.all(y[:, 0, 4, 4] == 1.0)
    assert torch.all(y.sum(dim=(1, 2, 3)) == 1.5)
    marks = {tuple(torch.nonzero(y[i, 0] == 0.5)[0].tolist()) for i in range(64)}
    assert len(marks) == 8  # all eight symmetries of the square occur


def test_gain_offset_gamma_blur_noise():
    x = _batch(8)
    rng = np.random.default_rng(0)
    g = augment(x, AugmentParams(**{**NONE.__dict__, "gain": (2, 2)}), rng)
    m = x.mean(dim=(2, 3), keepdim=True)
    torch.testing.assert_close(g, (m + 2 * (x - m)).clamp(0, 1))
    o = augment(x, AugmentParams(**{**NONE.__dict__, "offset": 0.1}), rng)
    d = (o - x).mean(dim=(1, 2, 3))
    assert torch.all(d.abs() <= 0.1 + 1e-6) and d.std() > 0
    gm = augment(x, AugmentParams(**{**NONE.__dict__, "gamma": (2, 2)}), rng)
    torch.testing.assert_close(gm, x ** 2)
    bl = augment(x, AugmentParams(**{**NONE.__dict__, "blur": (1, 1), "p_blur": 1}), rng)
    assert float(bl.std()) < float(x.std())  # smoothing lowers the pixel variance
    torch.testing.assert_close(bl.mean(), x.mean(), atol=5e-3, rtol=0)
    nz = augment(x, AugmentParams(**{**NONE.__dict__, "noise": (0.05, 0.05)}), rng)
    assert float((nz - x).std()) == pytest.approx(0.05, rel=0.1)


@pytest.mark.parametrize("bad", [{"gamma": (0, 1)}, {"gain": (2, 1)}, {"offset": -0.1},
                                 {"p_blur": 1.5}, {"noise": (0, float("nan"))}])
def test_bad_ranges_refused(bad):
    with pytest.raises(ValueError):
        AugmentParams(**bad)
