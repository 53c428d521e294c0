"""Named random streams of the dataset builder and the training loops.

A NumPy stream is keyed ``(seed, NAME, *keys)`` (:func:`key`, :func:`stream`). Each step of
a build and of a training run draws from its own stream, so changing how many numbers one
step draws (more patches of one source, another validation subset, more hard negatives)
does not shift the numbers the other steps draw: an ablation changes only what it means to
change, and the same arguments give byte-identical datasets. One exception, kept so that
existing ``table3`` builds reproduce: the real-window picks, the count trims and the test
picks of ``table3`` share the :data:`TABLE3` stream, in that order. The values are
arbitrary but fixed: changing one changes every dataset and model built with it.

Two streams carry no name, kept so that existing builds and runs reproduce: the
'wholeimage' image jobs (:data:`IMAGE_JOB`, keyed ``(seed, series number, image
number)``) and the order of training epoch ``e`` (keyed ``(seed, e)``,
:func:`epoch_order`). Draws a user seeds directly (``simulate_defects(image, n, seed)``,
the demo, picture grids) use ``numpy.random.default_rng(seed)``.

Torch's generators take one integer; :func:`torch_seed` spaces the run seed far apart
from the step index (epoch, iteration) so that no two (seed, step) pairs in practical
ranges collide.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ADAPTATION", "GAN_BATCH", "GAN_QUOTA", "GAN_TORCH", "HARD_PAIRS", "IMAGE_JOB",
           "PATCH_SPLIT",
           "TABLE3", "TABLE3_GAN", "TABLE3_TEST_JOBS", "TRAIN_AUGMENT", "TRAIN_DROPOUT",
           "VAL_SUBSET",
           "epoch_order", "generator", "key", "stream", "torch_seed"]

# ---- NumPy streams: (seed, NAME, *keys)
IMAGE_JOB = None      #: 'wholeimage': background and ellipsoid patches of one image (no id)
TABLE3 = 3            #: table3: real-window picks, count trims; its training-image jobs
TABLE3_TEST_JOBS = 4  #: table3: jobs of the test images (no-defect C0001 patches)
PATCH_SPLIT = 7       #: train/val patch hold-out of a build
GAN_QUOTA = 11        #: 'wholeimage': GAN patches filling each image's quota
TABLE3_GAN = 12       #: table3: the GAN patches
ADAPTATION = 21       #: 'wholeimage': real windows (--real) and hard negatives
HARD_PAIRS = 22       #: 'wholeimage' --hard-pairs: the defects put on hard negatives' spots
VAL_SUBSET = 99       #: train --val-samples: the fixed validation subset
TRAIN_AUGMENT = 31    #: train --augment: the parameters of (seed, epoch, rank)'s windows

# ---- torch seeds: seed * SPACING + step * STEP + rank
TRAIN_DROPOUT = (100003, 1009)  #: train: dropout masks of (seed, epoch, rank)
GAN_BATCH = (1_000_003, 1)      #: gan: batch picks, flips and latents of (seed, iteration)
GAN_TORCH = (7919, 1)           #: gan: torch's global generator at (seed, iteration)


def key(seed: int, name: int | None, *keys: int) -> tuple[int, ...]:
    """The key of stream ``name`` (a constant above) for ``seed`` and ``keys`` (e.g. series
    and image numbers): a plain tuple, so that it travels to worker processes."""
    return (seed, *keys) if name is None else (seed, name, *keys)


def generator(k: tuple[int, ...]) -> np.random.Generator:
    """The NumPy generator of a stream key."""
    return np.random.default_rng(np.random.SeedSequence(list(k)))


def stream(seed: int, name: int | None, *keys: int) -> np.random.Generator:
    """``generator(key(seed, name, *keys))``."""
    return generator(key(seed, name, *keys))


def epoch_order(seed: int, epoch: int) -> np.random.Generator:
    """The generator of training epoch ``epoch``'s patch order."""
    return generator((seed, epoch))


def torch_seed(seed: int, kind: tuple[int, int], step: int, rank: int = 0) -> int:
    """The integer seed of a torch generator: ``seed * kind[0] + step * kind[1] + rank``
    (``kind``: :data:`TRAIN_DROPOUT`, :data:`GAN_BATCH` or :data:`GAN_TORCH`)."""
    return seed * kind[0] + step * kind[1] + rank
