"""Input formats: 8/16-bit PNG and TIFF (tifffile), DICOM/DICONDE (pydicom); colour and
multi-frame refused; the same image at 8 and 16 bits gives the same detections. Every file
is generated here."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import tifffile
from conftest import run_cli
from PIL import Image

from xdefect.detector import Detector
from xdefect.errors import DataWarning, InputError
from xdefect.io import read_image
from xdefect.simulate import phantom


def _phantom8() -> np.ndarray:
    return np.round(phantom((160, 200), n_defects=4, seed=3).image * 255).astype(np.uint8)


def _dicom(path, pixels: np.ndarray, photometric="MONOCHROME2", bits=16, slope=None,
           intercept=None, frames=None, samples=1):
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"  # secondary capture
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = pixels.shape[-2], pixels.shape[-1]
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16 if pixels.dtype == np.uint16 else 8
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    if samples > 1:
        ds.PlanarConfiguration = 0
    if frames:
        ds.NumberOfFrames = frames
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)


def test_png_and_tiff_at_8_and_16_bits_read_the_same(tmp_path):
    a8 = _phantom8()
    a16 = a8.astype(np.uint16) * 257
    Image.fromarray(a8).save(tmp_path / "a8.png")
    Image.fromarray(a16).save(tmp_path / "a16.png")
    tifffile.imwrite(tmp_path / "a8.tif", a8)
    tifffile.imwrite(tmp_path / "a16.tiff", a16)
    ref = read_image(tmp_path / "a8.png")
    assert ref.bit_depth == 8
    for name, depth in (("a16.png", 16), ("a8.tif", 8), ("a16.tiff", 16)):
        r = read_image(tmp_path / name)
        assert r.bit_depth == depth
        np.testing.assert_array_equal(r.pixels, ref.pixels)
    # an RGB file holding a grey image reads as that grey image
    Image.fromarray(np.stack([a8] * 3, -1)).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(read_image(tmp_path / "rgb.png").pixels, ref.pixels)


def test_same_detections_at_8_and_16_bits(tmp_path):
    a8 = _phantom8()
    Image.fromarray(a8).save(tmp_path / "a8.png")
    tifffile.imwrite(tmp_path / "a16.tif", a8.astype(np.uint16) * 257)
    det = Detector.load(device="cpu", threads=1)
    d8 = det.detect(tmp_path / "a8.png")
    assert det.detect(tmp_path / "a16.tif") == d8


def test_dicom_monochrome_rescale_and_bits_stored(tmp_path):
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 4096, (64, 80)).astype(np.uint16)  # 12 bits stored in 16
    _dicom(tmp_path / "m2.dcm", raw, bits=12)
    r = read_image(tmp_path / "m2.dcm")
    np.testing.assert_allclose(r.pixels, raw / 4095, atol=1e-6)
    assert r.bit_depth == 16
    # MONOCHROME1: high values are dark, inverted so that bright means more radiation
    _dicom(tmp_path / "m1", raw, photometric="MONOCHROME1", bits=12)  # no extension
    np.testing.assert_allclose(read_image(tmp_path / "m1").pixels, 1 - raw / 4095, atol=1e-6)
    # a rescale maps the stored range linearly: with a positive slope, the same picture
    _dicom(tmp_path / "rs.dcm", raw, bits=12, slope=2.0, intercept=-1000.0)
    np.testing.assert_allclose(read_image(tmp_path / "rs.dcm").pixels, raw / 4095, atol=1e-6)
    _dicom(tmp_path / "neg.dcm", raw, bits=12, slope=-1.0, intercept=0.0)
    np.testing.assert_allclose(read_image(tmp_path / "neg.dcm").pixels, 1 - raw / 4095,
                               atol=1e-6)
    # the command line reads it as any image
    proc = run_cli("detect", str(tmp_path / "m2.dcm"), "--out", str(tmp_path / "o"),
                   "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "o" / "m2.json").is_file()


@pytest.mark.parametrize("kind, needle", [
    ("rgb_png", "a colour image"), ("rgb_tiff", "a colour image"),
    ("pages_tiff", "pages"), ("float_tiff", "TIFF samples of type float32"),
    ("rgb_dicom", "photometric interpretation 'RGB'"), ("frames_dicom", "frames"),
    ("broken_tiff", "not a readable TIFF"), ("broken_dicom", "DICOM"),
])
def test_refused_with_one_line(tmp_path, kind, needle):
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 255, (40, 50)).astype(np.uint8)
    colour = rng.integers(0, 255, (40, 50, 3)).astype(np.uint8)
    p = tmp_path / {"rgb_png": "x.png", "rgb_tiff": "x.tif", "pages_tiff": "x.tif",
                    "float_tiff": "x.tif", "rgb_dicom": "x.dcm", "frames_dicom": "x.dcm",
                    "broken_tiff": "x.tif", "broken_dicom": "x.dcm"}[kind]
    if kind == "rgb_png":
        Image.fromarray(colour).save(p)
    elif kind == "rgb_tiff":
        tifffile.imwrite(p, colour, photometric="rgb")
    elif kind == "pages_tiff":
        tifffile.imwrite(p, np.stack([grey, grey]))
    elif kind == "float_tiff":
        tifffile.imwrite(p, grey.astype(np.float32) / 255)
    elif kind == "rgb_dicom":
        _dicom(p, colour, photometric="RGB", bits=8, samples=3)
    elif kind == "frames_dicom":
        _dicom(p, np.stack([grey, grey]), bits=8, frames=2)
    elif kind == "broken_tiff":
        p.write_bytes(b"II*\0" + b"\xff" * 20)
    else:
        p.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00" * 10)
    with pytest.raises(InputError, match=needle):
        read_image(p)
    proc = run_cli("detect", str(p), "--out", str(tmp_path / "o"))
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and str(p) in lines[0], proc.stderr
    assert not (tmp_path / "o").exists()


def test_12_bit_data_in_a_16_bit_file_is_named(tmp_path):
    a = (np.random.default_rng(2).integers(0, 4096, (40, 50))).astype(np.uint16)
    Image.fromarray(a).save(tmp_path / "a12.png")
    with pytest.warns(DataWarning, match="largest value is 4095"):
        read_image(tmp_path / "a12.png")
    Image.fromarray((a * 16).astype(np.uint16)).save(tmp_path / "a16.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a full-range 16-bit image gives no warning
        read_image(tmp_path / "a16.png")
