"""DICOM decode time per image, medfm vs pydicom, side by side (run by scripts/bench/dicom.sh).

medfm: `examples/bench_dicom --serve` times `std::fs::read` + `data::dicom::decode` (parse,
decode, LUTs: the 16-bit gray or 8-bit RGB image). pydicom: `pydicom.dcmread` + `pixel_array`
+ the LUTs of scripts/fixtures/dicom_reference.py (the definition the fixtures use). Both read
the same file from the page cache, one after the other, file by file and iteration by
iteration (bench_common.interleave), so both see the same machine load.

The files: a few of the committed fixtures (real files, small) and synthetic images at
clinical sizes written here with pydicom (uncompressed, RLE, JPEG 2000 lossless through
pylibjpeg-openjpeg, JPEG Baseline through Pillow).

Usage: dicom.py BINARY WORKDIR [--iters N] [--warmup N]
"""

import argparse
import io
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

HERE = Path(__file__).resolve().parent
# bench_common.py lives in scripts/ (or beside this file once the benchmarks move here).
sys.path[:0] = [str(HERE), str(HERE.parent), str(HERE.parent / "fixtures")]
from bench_common import interleave, ratio  # noqa: E402
from dicom_reference import reference  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "dicom"
FIXTURE_FILES = [
    "CT_small.dcm",
    "MR_small_RLE.dcm",
    "image_dfl.dcm",
    "JPEG2000.dcm",
    "J2K_pixelrep_mismatch.dcm",
    "GDCMJ2K_TextGBR.dcm",
    "SC_rgb_jpeg_gdcm.dcm",
    "SC_jpeg_no_color_transform.dcm",
]


def dataset(arr, photometric, bits_stored):
    """A single-frame Secondary Capture dataset holding `arr` uncompressed."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    ds.Rows, ds.Columns = arr.shape[:2]
    ds.SamplesPerPixel = 1 if arr.ndim == 2 else 3
    ds.PhotometricInterpretation = photometric
    if arr.ndim == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = arr.dtype.itemsize * 8
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    ds.PixelData = arr.tobytes()
    return ds


def synthetic(workdir):
    """Clinical-size images: a 12-bit mammogram-sized gray image (with and without a window)
    in three codecs, an 8-bit gray JPEG, a YBR_FULL_422 colour JPEG."""
    rng = np.random.default_rng(0)
    out = []

    def write(name, ds):
        path = workdir / name
        if not path.exists():
            ds.save_as(path, enforce_file_format=True)
        out.append(path)

    h, w = 3328, 2560  # a full-field digital mammogram's matrix
    y, x = np.mgrid[0:h, 0:w]
    gray = (2048 + 1500 * np.sin(x / 300.0) * np.cos(y / 400.0) + rng.normal(0, 40, (h, w))).clip(0, 4095)
    gray = gray.astype(np.uint16)
    ds = dataset(gray, "MONOCHROME2", 12)
    write("mammo_3328x2560_native.dcm", ds)
    ds.WindowCenter, ds.WindowWidth = 2048, 3000
    write("mammo_3328x2560_native_window.dcm", ds)
    small = gray[:1024, :1024].copy()
    if not (workdir / "gray_1024_rle.dcm").exists():
        ds = dataset(small, "MONOCHROME2", 12)
        ds.compress(RLELossless, encoding_plugin="pydicom")
        write("gray_1024_rle.dcm", ds)
    else:
        out.append(workdir / "gray_1024_rle.dcm")
    if not (workdir / "mammo_3328x2560_j2k_lossless.dcm").exists():
        ds = dataset(gray, "MONOCHROME2", 12)
        ds.compress(JPEG2000Lossless)
        write("mammo_3328x2560_j2k_lossless.dcm", ds)
    else:
        out.append(workdir / "mammo_3328x2560_j2k_lossless.dcm")

    def jpeg(arr, mode, name, photometric, **kw):
        if (workdir / name).exists():
            out.append(workdir / name)
            return
        buf = io.BytesIO()
        Image.fromarray(arr, mode).save(buf, "JPEG", quality=90, **kw)
        ds = dataset(arr, photometric, 8)
        ds.PixelData = encapsulate([buf.getvalue()])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        write(name, ds)

    jpeg((gray >> 4).astype(np.uint8), "L", "mammo_3328x2560_jpeg.dcm", "MONOCHROME2")
    rgb = np.stack([(gray[:1024, :1024] >> 4).astype(np.uint8)] * 3, -1)
    rgb[..., 1] = 255 - rgb[..., 1]
    jpeg(rgb, "RGB", "rgb_1024_jpeg_ybr422.dcm", "YBR_FULL_422", subsampling="4:2:2")
    return out


class Medfm:
    def __init__(self, binary):
        self.proc = subprocess.Popen([binary, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if self.proc.stdout.readline().strip() != "ready":
            sys.exit(f"{binary} did not start")

    def decode_ms(self, path):
        self.proc.stdin.write(f"{path}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline().strip()
        if line.startswith("error"):
            sys.exit(f"medfm: {line}")
        return float(line)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def pydicom_ms(path):
    t = time.perf_counter()
    ds = pydicom.dcmread(path)
    reference(ds)
    return (time.perf_counter() - t) * 1e3


SHORT = {
    "1.2.840.10008.1.2": "Implicit VR LE",
    "1.2.840.10008.1.2.1": "Explicit VR LE",
    "1.2.840.10008.1.2.1.99": "Deflated LE",
    "1.2.840.10008.1.2.2": "Explicit VR BE",
    "1.2.840.10008.1.2.5": "RLE",
    "1.2.840.10008.1.2.4.50": "JPEG Baseline",
    "1.2.840.10008.1.2.4.57": "JPEG Lossless",
    "1.2.840.10008.1.2.4.70": "JPEG Lossless SV1",
    "1.2.840.10008.1.2.4.90": "JPEG 2000 lossless",
    "1.2.840.10008.1.2.4.91": "JPEG 2000",
}


def describe(path):
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    uid = ds.file_meta.TransferSyntaxUID
    ts = SHORT.get(uid, uid.name)
    return f"{ds.Columns}x{ds.Rows} {ds.PhotometricInterpretation} {ds.BitsStored}-bit, {ts}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("binary")
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--iters", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    files = [FIXTURES / f for f in FIXTURE_FILES] + synthetic(args.workdir)
    medfm = Medfm(args.binary)
    print(f"{'file':36s} {'image':48s} {'pydicom ms':>10s} {'medfm ms':>9s} {'speed-up':>8s}")
    for path in files:
        times = interleave(
            {"pydicom": lambda: pydicom_ms(path), "medfm": lambda: medfm.decode_ms(path)},
            args.warmup,
            args.iters,
        )
        py, rs = statistics.median(times["pydicom"]), statistics.median(times["medfm"])
        speedup = 1 / ratio(times["medfm"], times["pydicom"])
        print(f"{path.name:36s} {describe(path):48s} {py:10.2f} {rs:9.2f} {speedup:7.1f}x")
    medfm.close()


if __name__ == "__main__":
    main()
