"""Named random streams: every random number xdefect draws comes from one of these.

A NumPy stream is seeded with ``(seed, STREAM, *keys)`` (:func:`stream`). Each stage
draws from its own stream so that changing how many numbers one stage draws (more patches
of one source, another validation subset, a GAN portion) never shifts the numbers another
stage draws: builds stay byte-identical wherever their inputs are, and an ablation
changes only what it means to change. The values are arbitrary but fixed: changing one
changes every dataset and model built with it.

Torch's generators take one integer; :func:`torch_seed` spaces the run seed far apart
from the step index (epoch, iteration) so no two (seed, step) pairs in practical ranges
collide.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ADAPTATION", "GAN_BATCH", "GAN_QUOTA", "GAN_TORCH", "PATCH_SPLIT", "TABLE3",
           "TABLE3_GAN", "TABLE3_TEST_JOBS", "TRAIN_DROPOUT", "VAL_SUBSET", "epoch_order", "stream",
           "torch_seed"]

# ---- NumPy streams: (seed, STREAM, *keys)
#: Two streams carry no id, kept so that existing builds and runs reproduce: 'wholeimage'
#: jobs are keyed ``(seed, series number, image number)`` and the order of training
#: epoch ``e`` is keyed ``(seed, e)`` (:func:`epoch_order`). The others:
TABLE3 = 3            #: table3: real-window picks, count trims, and its training-image jobs
TABLE3_TEST_JOBS = 4  #: table3: jobs of the test images (no-defect C0001 patches)
PATCH_SPLIT = 7       #: train/val patch hold-out of a build
GAN_QUOTA = 11        #: 'wholeimage': GAN patches filling each image's quota
TABLE3_GAN = 12       #: table3: the GAN patches
ADAPTATION = 21       #: 'wholeimage': real windows (--real) and hard negatives
VAL_SUBSET = 99       #: train --val-samples: the fixed validation subset

# ---- torch seeds: seed * SPACING + step (* STEP) + rank
TRAIN_DROPOUT = (100003, 1009)  #: train: dropout masks of (seed, epoch, rank)
GAN_BATCH = (1_000_003, 1)      #: gan: batch picks, flips and latents of (seed, iteration)
GAN_TORCH = (7919, 1)           #: gan: torch's global generator at (seed, iteration)


def stream(seed: int, name: int, *keys: int) -> np.random.Generator:
    """The NumPy generator of stream ``name`` (a constant above) for ``seed`` and
    ``keys`` (e.g. series and image numbers)."""
    return np.random.default_rng(np.random.SeedSequence([seed, name, *keys]))


def epoch_order(seed: int, epoch: int) -> np.random.Generator:
    """The generator of training epoch ``epoch``'s patch order."""
    return np.random.default_rng(np.random.SeedSequence([seed, epoch]))


def torch_seed(seed: int, kind: tuple[int, int], step: int, rank: int = 0) -> int:
    """The integer seed of a torch generator: ``seed * kind[0] + step * kind[1] + rank``
    (``kind``: :data:`TRAIN_DROPOUT`, :data:`GAN_BATCH` or :data:`GAN_TORCH`)."""
    return seed * kind[0] + step * kind[1] + rank
