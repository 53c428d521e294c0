"""The on-disk contract of a patch dataset: what :mod:`xdefect.patches` writes and
:mod:`xdefect.train` reads (training depends on this module only, never on the builders).

Format of a dataset folder (``xdefect-patches/1``)::

    patches.npy    uint8 (N, 32, 32), readable with numpy.load(..., mmap_mode="r")
    labels.npy     uint8 (N,), 1 = defect, 0 = no defect
    meta.csv       index, split, label, source, series, image, row, col,
                   box_x1, box_y1, box_x2, box_y2   (defect box inside the patch; empty
                   for 'background'; for 'real' the clipped ground-truth box)
    manifest.json  protocol, the captured command line, GDXray root, series, image splits,
                   mix, seed, arguments, xdefect version, counts, source images with
                   SHA-256 checksums (and the GAN's and hard-negative model's)
    context.npy    optional (manifest "context": M > 0): uint8 (N, 32 + 2M, 32 + 2M), each
                   patch with M pixels of its surroundings (the patch at [M:M + 32,
                   M:M + 32]; mid-grey 128 beyond the image), for training the dense mode

``split`` is the *patch* split: train, val (the random patch hold-out for early
stopping, not the tuning images) or test (``table3``); ``source`` is one of
:data:`SOURCES` (GAN patches are not cut from an image: their ``row``/``col`` are -1, and
their series/image name the image whose quota they fill, ``gan``/0 in ``table3``).
Coordinates: ``row``/``col`` are the 0-based top-left corner of the patch in its image;
boxes are ``(x1, y1, x2, y2)``, 0-based, half-open, in patch coordinates.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xdefect.errors import InputError
from xdefect.io import read_json
from xdefect.windows import PATCH

__all__ = ["FORMAT", "META_COLUMNS", "SOURCES", "SPLITS", "Dataset", "PatchSet", "PatchWriter",
           "open_dataset"]

FORMAT = "xdefect-patches/1"
SOURCES = ("real", "ellipsoid", "gan", "background", "hard", "hard-defect")
SPLITS = ("train", "val", "test")
META_COLUMNS = ("index", "split", "label", "source", "series", "image", "row", "col",
                "box_x1", "box_y1", "box_x2", "box_y2")


@dataclass
class PatchSet:
    """Patches with their provenance, one entry per patch. ``series``/``images``: the
    source image of each patch; ``patches``: uint8 ``(n, 32, 32)``; ``labels``: uint8
    ``(n,)``; ``source``: source names; ``rows``/``cols``: top-left corners (0-based);
    ``boxes``: ``(n, 4)`` defect box inside the patch (-1 where none); ``context``: uint8
    ``(n, 32 + 2M, 32 + 2M)`` the patches with ``M`` pixels of surroundings, or None."""

    series: list[str]
    images: np.ndarray
    patches: np.ndarray
    labels: np.ndarray
    source: list[str]
    rows: np.ndarray
    cols: np.ndarray
    boxes: np.ndarray
    context: np.ndarray | None = None

    @staticmethod
    def empty() -> PatchSet:
        return PatchSet([], np.zeros(0, np.int32), np.zeros((0, PATCH, PATCH), np.uint8),
                        np.zeros(0, np.uint8), [], np.zeros(0, np.int32),
                        np.zeros(0, np.int32), np.zeros((0, 4), np.int32))

    @staticmethod
    def uncut(series: str, image: int, patches: np.ndarray, label: int, source: str
              ) -> PatchSet:
        """Patches of one label and source, all from one image, with no position in it
        (``row = col = -1``, no box): generated or mined patches."""
        n = len(patches)
        return PatchSet([series] * n, np.full(n, image, np.int32), patches,
                        np.full(n, label, np.uint8), [source] * n, np.full(n, -1, np.int32),
                        np.full(n, -1, np.int32), np.full((n, 4), -1, np.int32))

    def __len__(self) -> int:
        return len(self.labels)

    @staticmethod
    def join(sets: list[PatchSet]) -> PatchSet:
        """The sets one after the other (one copy; empty sets may lack surroundings)."""
        parts = [p.context for p in sets if len(p)]
        if any(c is None for c in parts) and not all(c is None for c in parts):
            raise ValueError("cannot join patch sets with and without surroundings")
        context = np.concatenate(parts) if parts and parts[0] is not None else None

        def cat(name: str) -> np.ndarray:
            return np.concatenate([getattr(p, name) for p in sets])

        return PatchSet([s for p in sets for s in p.series], cat("images"), cat("patches"),
                        cat("labels"), [s for p in sets for s in p.source], cat("rows"),
                        cat("cols"), cat("boxes"), context)

    def __add__(self, other: PatchSet) -> PatchSet:
        return PatchSet.join([self, other])

    def subset(self, idx: list[int] | np.ndarray) -> PatchSet:
        """The patches at positions ``idx``, in that order."""
        ix = np.asarray(idx, dtype=np.int64)
        return PatchSet([self.series[i] for i in ix], self.images[ix], self.patches[ix],
                        self.labels[ix], [self.source[i] for i in ix], self.rows[ix],
                        self.cols[ix], self.boxes[ix],
                        None if self.context is None else self.context[ix])


class PatchWriter:
    """Streams patch sets into a dataset folder: ``patches.npy`` (memory-mapped, of a
    ``capacity`` known in advance) and the metadata rows (to a part file; the split column
    is filled in at the end, when :meth:`finish` writes ``labels.npy`` and ``meta.csv``).
    Memory beyond the memory-mapped output is a few bytes per patch. The caller writes
    ``manifest.json`` and makes the folder appear atomically (``io.atomic_dir``). With
    ``context`` M > 0, every patch set added carries its surroundings, written to
    ``context.npy``."""

    def __init__(self, folder: Path, capacity: int, context: int = 0) -> None:
        self.folder = folder
        self.capacity = capacity
        self.mm = np.lib.format.open_memmap(folder / "patches.npy", mode="w+", dtype=np.uint8,
                                            shape=(capacity, PATCH, PATCH))
        side = PATCH + 2 * context
        self.ctx = (np.lib.format.open_memmap(folder / "context.npy", mode="w+",
                                              dtype=np.uint8, shape=(capacity, side, side))
                    if context else None)
        self.labels = np.zeros(capacity, np.uint8)
        self.splits = np.zeros(capacity, np.uint8)      # index into SPLITS
        self.sources = np.zeros(capacity, np.uint8)     # index into SOURCES
        self.n = 0
        self._part = open(folder / "meta.part", "w", newline="")  # noqa: SIM115
        self._csv = csv.writer(self._part, lineterminator="\n")

    def add(self, ps: PatchSet, split: str) -> None:
        k = len(ps)
        if self.n + k > self.capacity:
            raise RuntimeError("patch writer overflow")
        sl = slice(self.n, self.n + k)
        self.mm[sl] = ps.patches
        if self.ctx is not None and k:
            if ps.context is None or ps.context.shape[1:] != self.ctx.shape[1:]:
                raise ValueError("patch set without the writer's surroundings")
            self.ctx[sl] = ps.context
        self.labels[sl] = ps.labels
        self.splits[sl] = SPLITS.index(split)
        self.sources[sl] = [SOURCES.index(x) for x in ps.source]
        for i in range(k):
            box = ["" if v < 0 else int(v) for v in ps.boxes[i]]
            self._csv.writerow([ps.series[i], int(ps.images[i]), int(ps.rows[i]),
                                int(ps.cols[i]), *box])
        self.n += k

    def finish(self) -> dict:
        """Flush everything; returns the ``counts`` block of the manifest."""
        self.mm.flush()
        del self.mm
        if self.ctx is not None:
            self.ctx.flush()
            self.ctx = None
        self._part.close()
        if self.n != self.capacity:
            raise RuntimeError(f"expected {self.capacity} patches, wrote {self.n}")
        np.save(self.folder / "labels.npy", self.labels)
        with open(self.folder / "meta.part", newline="") as src, \
                open(self.folder / "meta.csv", "w", newline="") as dst:
            w = csv.writer(dst, lineterminator="\n")
            w.writerow(META_COLUMNS)
            for i, row in enumerate(csv.reader(src)):
                w.writerow([i, SPLITS[self.splits[i]], int(self.labels[i]),
                            SOURCES[self.sources[i]], *row])
        (self.folder / "meta.part").unlink()
        return {"split": {SPLITS[k]: int(v) for k, v in
                          sorted(Counter(self.splits.tolist()).items())},
                "label": {str(k): int(v) for k, v in sorted(Counter(self.labels.tolist()).items())},
                "source": dict(sorted((SOURCES[k], int(v)) for k, v in
                                      Counter(self.sources.tolist()).items()))}


@dataclass
class Dataset:
    """A dataset folder opened for reading; ``patches`` is memory-mapped."""

    folder: Path
    patches: np.ndarray
    labels: np.ndarray
    split: np.ndarray
    source: np.ndarray
    manifest: dict
    #: uint8 ``(N, 32 + 2M, 32 + 2M)`` (memory-mapped) when the folder has ``context.npy``
    context: np.ndarray | None = None

    @property
    def margin(self) -> int:
        """``M``, the pixels of surroundings of ``context`` (0 without it)."""
        return 0 if self.context is None else (self.context.shape[1] - PATCH) // 2

    def indices(self, split: str) -> np.ndarray:
        """Positions of the patches of a patch split (``train``, ``val``, ``test``)."""
        return np.flatnonzero(self.split == split)


def open_dataset(folder: str | os.PathLike[str]) -> Dataset:
    """Open a dataset folder (checks its files against the format above)."""
    f = Path(folder)
    if not f.is_dir():
        raise InputError(f"{f}: no such dataset folder")
    for name in ("patches.npy", "labels.npy", "meta.csv", "manifest.json"):
        if not (f / name).is_file():
            raise InputError(f"{f}: not an xdefect dataset (missing {name})")
    try:
        patches = np.load(f / "patches.npy", mmap_mode="r", allow_pickle=False)
        labels = np.load(f / "labels.npy", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise InputError(f"{f}: unreadable patches.npy/labels.npy ({exc})") from None
    if patches.dtype != np.uint8 or patches.ndim != 3 or patches.shape[1:] != (PATCH, PATCH):
        raise InputError(f"{f / 'patches.npy'}: expected uint8 (N, 32, 32), "
                         f"got {patches.dtype} {patches.shape}")
    if labels.shape != (len(patches),):
        raise InputError(f"{f / 'labels.npy'}: {labels.shape[0]} labels for "
                         f"{len(patches)} patches")
    if labels.size and not np.isin(labels, (0, 1)).all():
        bad = sorted(set(np.unique(labels).tolist()) - {0, 1})[:3]
        raise InputError(f"{f / 'labels.npy'}: labels must be 0 (no defect) or 1 (defect), "
                         f"found {', '.join(map(str, bad))}")
    with open(f / "meta.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows or tuple(rows[0][:8]) != META_COLUMNS[:8] or len(rows) - 1 != len(patches):
        raise InputError(f"{f / 'meta.csv'}: malformed (expected header "
                         f"{','.join(META_COLUMNS[:8])}... and one row per patch)")
    split = np.asarray([r[1] for r in rows[1:]])
    source = np.asarray([r[3] for r in rows[1:]])
    context = None
    if (f / "context.npy").is_file():
        try:
            context = np.load(f / "context.npy", mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise InputError(f"{f / 'context.npy'}: unreadable ({exc})") from None
        side = context.shape[1] if context.ndim == 3 else 0
        if (context.dtype != np.uint8 or context.shape != (len(patches), side, side)
                or side < PATCH or (side - PATCH) % 2):
            raise InputError(f"{f / 'context.npy'}: expected uint8 (N, 32 + 2M, 32 + 2M) "
                             f"for {len(patches)} patches, got {context.dtype} {context.shape}")
    return Dataset(f, patches, labels, split, source, read_json(f / "manifest.json"), context)
