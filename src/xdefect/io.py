"""Disk I/O helpers: reading radiographs, writing images and JSON atomically.

Every writer here writes to a temporary name beside the target and renames it when
complete, so an interrupted run never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import logging
import os
import shlex
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from xdefect.errors import DataWarning, InputError

__all__ = ["IMAGE_SUFFIXES", "LOW_16BIT", "Radiograph", "as_image", "atomic_dir",
           "PROGRESS_INTERVAL", "ProgressLines", "atomic_path", "check_new_dir", "command_line",
           "image_size", "json_safe", "list_image_files", "progress", "read_detections",
           "read_image", "read_json", "set_quiet", "sha256_file", "to_uint", "write_csv",
           "write_image", "write_json"]

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg", ".dcm", ".dicom")
#: a 16-bit image whose largest value is below this likely holds 12-bit (or fewer) data
LOW_16BIT = 4096


@dataclass(frozen=True)
class Radiograph:
    """A grey radiograph loaded from disk.

    Attributes
    ----------
    pixels:
        ``(height, width)`` float32 array in [0, 1]; row 0 is the top of the image.
        Grey value ``g`` of a ``b``-bit file maps to ``g / (2**b - 1)``.
    bit_depth:
        Bits per sample of the file (8 or 16).
    path:
        The file it came from.
    """

    pixels: np.ndarray
    bit_depth: int
    path: Path

    @property
    def shape(self) -> tuple[int, int]:
        return self.pixels.shape  # type: ignore[return-value]


def read_image(path: str | os.PathLike[str]) -> Radiograph:
    """Read a grey radiograph: 8- or 16-bit PNG, BMP or JPEG (Pillow), 8- or 16-bit TIFF
    (``tifffile``), or DICOM/DICONDE (``pydicom``; recognised by its ``DICM`` marker,
    whatever the file's extension).

    Normalisation to [0, 1]: an 8-bit value ``g`` reads ``g / 255``, a 16-bit one
    ``g / 65535`` (so an 8-bit image and the same image times 257 read the same); a 16-bit
    image whose largest value is under 4096 (12-bit data in a 16-bit file) reads dark, and
    a :class:`~xdefect.errors.DataWarning` says so. DICOM: the stored values
    (``BitsStored`` bits, signed or not) go through ``RescaleSlope``/``RescaleIntercept`` and
    are mapped linearly from the range the stored bits can hold onto [0, 1]; MONOCHROME1
    (high values dark) is inverted so that, as everywhere in xdefect, bright means more
    transmitted radiation. A grey image saved as RGB (three equal channels) is read as grey.

    Raises :class:`InputError` naming the file when it is missing, not an image, colour
    (channels that differ), multi-frame, of another sample type, or larger than Pillow's
    decompression-bomb limit.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if p.is_dir():
        raise InputError(f"{p}: is a folder, expected an image file")
    if _is_dicom(p):
        arr01, depth = _read_dicom(p)
        return Radiograph(pixels=arr01, bit_depth=depth, path=p)
    if p.suffix.lower() in (".tif", ".tiff"):
        arr, depth = _read_tiff(p)
    else:
        arr, depth = _read_pillow(p)
    if arr.ndim != 2:
        raise InputError(f"{p}: expected a single-channel image, got shape {arr.shape}")
    if depth == 16 and arr.size and int(arr.max()) < LOW_16BIT:
        warnings.warn(f"{p}: 16-bit image whose largest value is {int(arr.max())} (< "
                      f"{LOW_16BIT}): if it holds 12-bit data it reads dark (16-bit images "
                      "are scaled by 65535)", DataWarning, stacklevel=2)
    scale = 255.0 if depth == 8 else 65535.0
    return Radiograph(pixels=(arr.astype(np.float32) / np.float32(scale)), bit_depth=depth,
                      path=p)


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(height, width)`` of an image file from its header, without decoding the pixels
    (any format :func:`read_image` reads); :class:`InputError` naming the file when it is
    not a readable image."""
    p = Path(path)
    if _is_dicom(p):
        import pydicom

        try:
            with _quiet("pydicom"):
                ds = pydicom.dcmread(p, stop_before_pixels=True)
            return int(ds.Rows), int(ds.Columns)
        except Exception as exc:  # damaged header: pydicom raises many kinds
            raise InputError(f"{p}: not a readable DICOM image ({exc.__class__.__name__})"
                             ) from None
    if p.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        try:
            with _quiet("tifffile"), tifffile.TiffFile(p) as tf:
                shape = tf.pages[0].shape
            return int(shape[0]), int(shape[1])
        except (tifffile.TiffFileError, OSError, ValueError, KeyError, IndexError) as exc:
            raise InputError(f"{p}: not a readable TIFF ({exc.__class__.__name__})") from None
    try:
        with Image.open(p) as im:
            w, h = im.size
    except Image.DecompressionBombError:
        raise InputError(f"{p}: more pixels than an image xdefect reads (a decompression "
                         "bomb?)") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"{p}: not a readable image ({exc.__class__.__name__})") from None
    return h, w


@contextlib.contextmanager
def _quiet(library: str) -> Iterator[None]:
    """Silence a reader library's own log lines and warnings: xdefect reports a bad file in
    one line of its own."""
    log = logging.getLogger(library)
    level = log.level
    log.setLevel(logging.CRITICAL + 1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        log.setLevel(level)


def _grey(p: Path, arr: np.ndarray) -> np.ndarray:
    """A ``(H, W, C)`` array with equal colour channels as ``(H, W)``; colour refused."""
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        rgb = arr[..., :3]
        if not (np.array_equal(rgb[..., 0], rgb[..., 1])
                and np.array_equal(rgb[..., 0], rgb[..., 2])):
            raise InputError(f"{p}: a colour image (its channels differ); radiographs are "
                             "grey: convert it to grey first")
        return np.ascontiguousarray(rgb[..., 0])
    return arr


def _read_pillow(p: Path) -> tuple[np.ndarray, int]:
    try:
        with Image.open(p) as im:
            if getattr(im, "n_frames", 1) > 1:
                raise InputError(f"{p}: holds {im.n_frames} frames; expected one radiograph")
            im.load()
            mode = im.mode
            if mode in ("1", "L", "P", "LA"):
                return np.asarray(im.convert("L"), dtype=np.uint8), 8
            if mode in ("RGB", "RGBA"):
                return _grey(p, np.asarray(im, dtype=np.uint8)), 8
            if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
                return np.asarray(im).astype(np.uint16), 16
            if mode == "I":
                arr = np.asarray(im)
                if arr.min() < 0 or arr.max() > 65535:
                    raise InputError(f"{p}: 32-bit integer samples outside 0..65535 "
                                     "are not supported (expected 8- or 16-bit grey)")
                return arr.astype(np.uint16), 16
            raise InputError(f"{p}: unsupported pixel format {mode!r} "
                             "(expected 8- or 16-bit grey)")
    except InputError:
        raise
    except Image.DecompressionBombError:
        raise InputError(f"{p}: more pixels than an image xdefect reads (over "
                         f"{Image.MAX_IMAGE_PIXELS} pixels: a decompression bomb?)") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{p}: not a readable image ({exc.__class__.__name__})") from None


def _read_tiff(p: Path) -> tuple[np.ndarray, int]:
    import tifffile

    try:
        with _quiet("tifffile"), tifffile.TiffFile(p) as tf:
            if len(tf.pages) > 1 or len(tf.series) > 1:
                raise InputError(f"{p}: a TIFF of {len(tf.pages)} pages; expected one "
                                 "radiograph")
            page = tf.pages[0]
            if page.shape and int(np.prod(page.shape)) > 2 * (Image.MAX_IMAGE_PIXELS or 2**31):
                raise InputError(f"{p}: more pixels than an image xdefect reads (a "
                                 "decompression bomb?)")
            arr = _grey(p, page.asarray())
    except InputError:
        raise
    except (tifffile.TiffFileError, OSError, ValueError, KeyError, IndexError) as exc:
        raise InputError(f"{p}: not a readable TIFF ({exc.__class__.__name__})") from None
    if arr.dtype == np.uint8:
        return arr, 8
    if arr.dtype == np.uint16:
        return arr, 16
    raise InputError(f"{p}: TIFF samples of type {arr.dtype} (expected 8- or 16-bit unsigned "
                     "grey)")


def _is_dicom(p: Path) -> bool:
    """Whether the file has DICOM's ``DICM`` marker after its 128-byte preamble."""
    try:
        with open(p, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def _read_dicom(p: Path) -> tuple[np.ndarray, int]:
    """A DICOM/DICONDE image as [0, 1] floats (see :func:`read_image`) and its depth."""
    import pydicom

    try:
        with _quiet("pydicom"):
            ds = pydicom.dcmread(p)
        photo = str(ds.get("PhotometricInterpretation", ""))
        if photo not in ("MONOCHROME1", "MONOCHROME2"):
            raise InputError(f"{p}: DICOM image of photometric interpretation {photo!r} "
                             "(expected MONOCHROME1 or MONOCHROME2 grey)")
        if int(ds.get("NumberOfFrames", 1) or 1) > 1:
            raise InputError(f"{p}: a DICOM of {ds.NumberOfFrames} frames; expected one "
                             "radiograph")
        with _quiet("pydicom"):
            raw = ds.pixel_array
    except InputError:
        raise
    except Exception as exc:  # pydicom raises many kinds on damaged or compressed data
        raise InputError(f"{p}: not a readable DICOM image ({exc.__class__.__name__}: "
                         f"{str(exc).splitlines()[0][:120] if str(exc) else ''})") from None
    if raw.ndim != 2:
        raise InputError(f"{p}: DICOM pixel data of shape {raw.shape}; expected one grey "
                         "frame")
    bits = int(ds.get("BitsStored", raw.dtype.itemsize * 8))
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    lo_raw, hi_raw = ((-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed
                      else (0, 2**bits - 1))
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    if not (np.isfinite(slope) and np.isfinite(intercept)) or slope == 0:
        raise InputError(f"{p}: DICOM rescale slope {slope} / intercept {intercept} unusable")
    vals = raw.astype(np.float64) * slope + intercept
    ends = sorted((lo_raw * slope + intercept, hi_raw * slope + intercept))
    out = np.clip((vals - ends[0]) / (ends[1] - ends[0]), 0, 1)
    if photo == "MONOCHROME1":
        out = 1.0 - out
    return out.astype(np.float32), 8 if bits <= 8 else 16


def as_image(image: np.ndarray | str | os.PathLike[str]) -> np.ndarray:
    """A grey image as float32 ``(height, width)`` in [0, 1], xdefect's working form:
    uint8 ``g`` -> ``g / 255``, uint16 ``g`` -> ``g / 65535``, float kept (must lie in
    [0, 1], no NaN), a path read with :func:`read_image`. :class:`InputError` otherwise."""
    if isinstance(image, (str, os.PathLike)):
        return read_image(image).pixels
    a = np.asarray(image)
    if a.ndim != 2:
        raise InputError(f"expected a 2-D grey image, got an array of shape {a.shape}")
    if a.dtype == np.uint8 or a.dtype == np.uint16:
        return a.astype(np.float32) / np.float32(255.0 if a.dtype == np.uint8 else 65535.0)
    if not np.issubdtype(a.dtype, np.floating):
        raise InputError(f"image of dtype {a.dtype}: expected uint8, uint16 or float in [0, 1]")
    a = a.astype(np.float32)
    if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
        raise InputError("float image: grey values must be finite and in [0, 1]")
    return a


def to_uint(pixels: np.ndarray, bit_depth: int = 8, low: float = 0.0, high: float = 1.0
            ) -> np.ndarray:
    """Quantise a float image whose grey values span ``[low, high]`` (default [0, 1]) to
    uint8 or uint16: ``rint((pixels - low) * top / (high - low))``, clipped to ``[0,
    top]``. The arithmetic stays in the input's float precision (float32 in, float32
    products), so that patch datasets are byte-identical across versions."""
    if bit_depth not in (8, 16):
        raise ValueError("bit_depth must be 8 or 16")
    top = 255 if bit_depth == 8 else 65535
    a = np.asarray(pixels)
    if not np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float64)
    a = a * (top / (high - low)) if low == 0 else (a - low) * (top / (high - low))
    return np.clip(np.rint(a), 0, top).astype(np.uint8 if bit_depth == 8 else np.uint16)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success.

    On an exception the temporary file is removed and ``target`` is left untouched.
    """
    t = Path(target)
    t.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{t.name}.", suffix=".tmp" + t.suffix, dir=t.parent)
    os.close(fd)
    tmp_p = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_p, 0o666 & ~umask)  # mkstemp's 0600 would make results private
    try:
        yield tmp_p
        os.replace(tmp_p, t)
    finally:
        if tmp_p.exists():
            tmp_p.unlink()


def check_new_dir(target: str | os.PathLike[str], force: bool = False) -> None:
    """:class:`InputError` when the output folder ``target`` exists and ``force`` is off,
    or when ``force`` would replace something xdefect did not write: a file, a link, or a
    folder (not empty) without an xdefect ``manifest.json`` (what :func:`atomic_dir`
    checks; callers check early, before expensive work)."""
    t = Path(target)
    if not (t.exists() or t.is_symlink()):
        return
    if not force:
        raise InputError(f"{target}: output folder exists (use --force to replace it)")
    if t.is_dir() and not t.is_symlink() and not any(t.iterdir()):
        return  # an empty folder: nothing to lose
    if t.is_symlink() or not t.is_dir():
        raise InputError(f"{target}: is a {'link' if t.is_symlink() else 'file'}, not a "
                         "folder xdefect wrote: --force will not replace it")
    try:
        fmt = json.loads((t / "manifest.json").read_text()).get("format", "")
    except (OSError, ValueError, AttributeError):
        fmt = ""
    if not (isinstance(fmt, str) and fmt.startswith("xdefect")):
        raise InputError(f"{target}: holds no xdefect manifest.json: --force replaces only a "
                         "folder xdefect wrote")


def _clean_stale(t: Path) -> None:
    """Remove the temporary folders of killed runs beside ``t`` (their process gone)."""
    for d in t.parent.glob(f".{t.name}.*.tmp"):
        try:
            pid = int((d / ".xdefect-pid").read_text())
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except (OSError, ValueError):
            continue  # not ours to judge (no pid file, another user's process)


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike[str], force: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; rename it onto ``target`` on success.

    With ``force`` an existing ``target`` is replaced (only once the new one is complete),
    and only when xdefect wrote it (:func:`check_new_dir`). On an exception the temporary
    folder is removed; the temporary folders of killed runs (their process gone) are
    removed on the next call.
    """
    t = Path(target)
    check_new_dir(t, force)
    t.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale(t)
    tmp = Path(tempfile.mkdtemp(prefix=f".{t.name}.", suffix=".tmp", dir=t.parent))
    try:
        (tmp / ".xdefect-pid").write_text(str(os.getpid()))
        yield tmp
        (tmp / ".xdefect-pid").unlink()
        if t.exists():
            old = t.with_name(f".{t.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(t, old)
            os.replace(tmp, t)
            shutil.rmtree(old)
        else:
            os.replace(tmp, t)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_image(path: str | os.PathLike[str], pixels: np.ndarray, bit_depth: int = 8) -> None:
    """Write a grey [0, 1] float image (or an RGB uint8 array) atomically.

    ``pixels`` of shape ``(H, W)`` and float dtype are quantised to ``bit_depth``;
    uint8/uint16 arrays and ``(H, W, 3)`` uint8 RGB arrays are written as they are. The
    format follows the suffix (PNG or TIFF).
    """
    arr = np.asarray(pixels)
    if arr.dtype.kind == "f":
        arr = to_uint(arr, bit_depth)
    if arr.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"cannot write an image of dtype {arr.dtype}")
    im = Image.fromarray(arr)  # uint16 -> mode I;16
    with atomic_path(path) as tmp:
        fmt = "TIFF" if Path(path).suffix.lower() in (".tif", ".tiff") else "PNG"
        im.save(tmp, format=fmt)


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float (NaN, infinity: "no value", e.g. the AP of a
    set without ground truth) replaced by ``None``, so that the JSON written is valid."""
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, np.floating):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON atomically (non-finite numbers become ``null``)."""
    text = json.dumps(json_safe(obj), indent=2, allow_nan=False)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n")


def write_csv(path: str | os.PathLike[str], rows: list[dict[str, Any]],
              columns: Sequence[str] | None = None) -> None:
    """Write ``rows`` (dicts) as CSV with a header atomically; ``columns``: the header and
    the keys written (default: the first row's keys)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns or (rows[0] if rows else [])),
                       extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue())


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file; :class:`InputError` naming the file if missing or malformed."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file")
    try:
        return json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: malformed JSON ({exc})") from None


def sha256_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 hex digest of a file's bytes (read in chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def command_line(argv: list[str] | None = None) -> str:
    """The command line of this process, as a shell would take it back: ``xdefect ...``
    for the console script, ``python -m xdefect ...`` for the module, the script path for
    a script (e.g. ``experiments/x.py ...``). Recorded in manifests and model cards so that
    lineage is captured by the program, never typed."""
    argv = list(sys.argv if argv is None else argv)
    if not argv:
        return ""
    head = Path(argv[0])
    if head.name == "__main__.py" and head.parent.name == "xdefect":
        first = ["python", "-m", "xdefect"]
    elif head.name in ("xdefect", "xdefect.exe"):
        first = ["xdefect"]
    elif head.suffix == ".py":
        try:
            first = ["python", str(head.resolve().relative_to(Path.cwd().resolve()))]
        except ValueError:
            first = ["python", str(head)]
    else:
        first = [head.name]
    return shlex.join(first + argv[1:])


#: seconds between two plain progress lines (``XDEFECT_PROGRESS_INTERVAL`` overrides)
PROGRESS_INTERVAL = 30.0
_progress_hidden = False


def set_quiet(quiet: bool) -> None:
    """Hide (``True``) or allow (``False``) every progress report of this process and the
    worker processes it forks (``--quiet`` of the command line)."""
    global _progress_hidden
    _progress_hidden = bool(quiet)


def _interval() -> float:
    text = os.environ.get("XDEFECT_PROGRESS_INTERVAL")
    if text is None:
        return PROGRESS_INTERVAL
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not (np.isfinite(v) and v >= 0):
        raise InputError(f"XDEFECT_PROGRESS_INTERVAL={text!r}: expected seconds >= 0")
    return v


class ProgressLines:
    """Progress as plain lines for logs and pipes, where a tqdm bar would be a mess of
    carriage returns: ``xdefect: detect 40/126 image (32%), 12 s, about 26 s left``, on
    stderr, at most once every ``interval`` seconds, plus a closing line when any was
    written (short jobs stay silent). Same calls as the tqdm bars it stands in for:
    ``update``, ``set_postfix``, ``close``, iteration and ``with``."""

    def __init__(self, iterable: Any = None, *, total: int | None = None, desc: str = "",
                 unit: str = "it", initial: int = 0, interval: float = PROGRESS_INTERVAL,
                 file: Any = None, **_: Any) -> None:
        self._clock = time.monotonic
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.desc, self.unit = total, desc, unit
        self.n = self.initial = initial
        self.interval = interval
        self.file = file
        self.postfix = ""
        self.lines = 0
        self._start = self._last = self._clock()
        self._closed = False

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable:
            yield item
            self.update()
        self.close()

    def __enter__(self) -> ProgressLines:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{k} {v}" for k, v in values.items())

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self._clock()
        if now - self._last >= self.interval:
            self._last = now
            self._write(now, done=False)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self.lines:
                self._write(self._clock(), done=True)

    def _write(self, now: float, done: bool) -> None:
        took = now - self._start
        count = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        text = f"xdefect: {self.desc} {count} {self.unit}"
        if self.total:
            text += f" ({100 * self.n / self.total:.0f}%)"
        text += f", {took:.1f} s" if took < 10 else f", {took:.0f} s"
        rate = (self.n - self.initial) / took if took > 0 else 0.0
        if done:
            text += ", done"
        elif self.total and rate > 0 and self.n < self.total:
            text += f", about {(self.total - self.n) / rate:.0f} s left"
        if self.postfix:
            text += f"; {self.postfix}"
        print(text, file=self.file or sys.stderr, flush=True)
        self.lines += 1


def progress(*, hidden: bool = False, **kwargs: Any) -> tqdm | ProgressLines:
    """A progress report on stderr: a tqdm bar on a terminal, plain periodic lines
    (:class:`ProgressLines`, every ``XDEFECT_PROGRESS_INTERVAL`` s, default 30) when stderr
    is a log or a pipe. ``XDEFECT_PROGRESS=1`` forces the bar, ``=lines`` the lines, ``=0``
    (or ``hidden``, or :func:`set_quiet`) hides it. Takes tqdm's ``iterable``, ``total``,
    ``desc``, ``unit``, ``initial``."""
    env = os.environ.get("XDEFECT_PROGRESS")
    if hidden or _progress_hidden or env == "0":
        return tqdm(leave=False, disable=True, **kwargs)
    if env == "1" or (env != "lines" and sys.stderr.isatty()):
        return tqdm(leave=False, disable=False, **kwargs)
    return ProgressLines(interval=_interval(), **kwargs)


def list_image_files(inputs: list[str | os.PathLike[str]]) -> list[Path]:
    """Expand files and folders (their image files, sorted; hidden files skipped) into a
    list of image paths; :class:`InputError` for a missing path or a folder without
    images."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if not p.exists():
            raise InputError(f"{p}: no such file or folder")
        if p.is_dir():
            # hidden files (macOS's "._a.png" resource forks...) are not images
            files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES
                           and not f.name.startswith(".") and f.is_file())
            if not files:
                raise InputError(f"{p}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
            out.extend(files)
        else:
            out.append(p)
    return out


def read_detections(folder: str | os.PathLike[str]) -> dict[str, dict]:
    """Read every ``*.json`` detection file of a folder (but ``manifest.json``), keyed by
    file stem.

    Each must be ``{"image": str, "width": int, "height": int, "detections": [{"box":
    [x1, y1, x2, y2], "score": float}, ...]}``; :class:`InputError` naming the file
    otherwise.
    """
    f = Path(folder)
    if not f.is_dir():
        raise InputError(f"{f}: no such detections folder")
    out: dict[str, dict] = {}
    for p in sorted(f.glob("*.json")):
        if p.name == "manifest.json" or p.name.startswith("."):
            continue  # the folder's own record (xdefect detect writes one), not an image's
        doc = read_json(p)
        dets = doc.get("detections") if isinstance(doc, dict) else None
        if not isinstance(dets, list):
            raise InputError(f"{p}: not a detection file (no 'detections' list)")
        for i, d in enumerate(dets):
            box = d.get("box") if isinstance(d, dict) else None
            ok = (isinstance(box, list) and len(box) == 4
                  and all(isinstance(v, (int, float)) for v in box)
                  and isinstance(d.get("score"), (int, float)))
            if not ok:
                raise InputError(f"{p}: detection {i} must be {{\"box\": [x1, y1, x2, y2], "
                                 "\"score\": number}")
        out[p.stem] = doc
    if not out:
        raise InputError(f"{f}: holds no detection files (*.json)")
    return out
