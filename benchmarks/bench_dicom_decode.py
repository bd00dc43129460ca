"""DICOM -> PNG throughput: curate's decode_dicom vs a bare pydicom + Pillow loop.

Files: every real DICOM in ../shared/realdata/dicom that both decode (or the folder given with
--dir). Baseline per file: dcmread, `pixel_array` of the same frame decode_dicom
takes (the middle one), a bare min-max to 8 bit (colour: as decoded, 16-bit colour >> 8), PNG
encode at the same zlib level. decode_dicom additionally applies modality LUT, VOI/window,
MONOCHROME1, palette LUTs and de-identifies metadata. Best of N rounds per file; target >= 0.8x.

    .venv/bin/python benchmarks/bench_dicom_decode.py [--repeat 3] [--dir PATH]
"""

from __future__ import annotations

import argparse
import io
import time
import warnings
from pathlib import Path

import numpy as np

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "dicom"


def baseline(data: bytes) -> bytes:
    import pydicom
    from PIL import Image
    from pydicom.pixels import pixel_array

    from curate.parse.dicom import maybe_gunzip

    ds = pydicom.dcmread(io.BytesIO(maybe_gunzip(data)), force=True)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    arr = pixel_array(ds, index=frames // 2)
    if arr.ndim == 2:
        low, high = float(arr.min()), float(arr.max())
        arr = ((arr - low) * (255.0 / (high - low or 1.0))).astype(np.uint8)
    elif arr.dtype != np.uint8:
        arr = (arr >> (arr.dtype.itemsize * 8 - 8)).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(arr).save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def main() -> int:
    from curate.errors import InputError
    from curate.parse.dicom import decode_dicom

    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=REALDATA)
    args = parser.parse_args()
    if not args.dir.is_dir():
        print(f"SKIP: {args.dir} is absent")
        return 0
    warnings.simplefilter("ignore")
    files = []
    for path in sorted(p for p in args.dir.rglob("*") if p.is_file()):
        data = path.read_bytes()
        try:
            decode_dicom(data)
            baseline(data)
        except (InputError, AttributeError):  # the bare loop cannot infer a missing syntax
            continue
        files.append(data)

    def timed(fn) -> float:
        total = 0.0
        for data in files:
            best = float("inf")
            for _ in range(args.repeat):
                start = time.perf_counter()
                fn(data)
                best = min(best, time.perf_counter() - start)
            total += best
        return total

    t_base = timed(baseline)
    t_ours = timed(lambda data: decode_dicom(data, uid_salt="bench"))
    megapixels = sum(decode_dicom(d).width * decode_dicom(d).height for d in files) / 1e6
    ratio = t_base / t_ours
    print(f"{len(files)} files that decode, {megapixels:.1f} Mpixel (one frame each)")
    print(f"bare pydicom pixel_array + PNG: {t_base:.3f} s ({len(files) / t_base:.1f} files/s)")
    print(f"decode_dicom:                   {t_ours:.3f} s ({len(files) / t_ours:.1f} files/s)")
    print(f"throughput ratio (ours / bare): {ratio:.2f}x")
    print("PASS" if ratio >= 0.8 else "FAIL", "(target >= 0.8x)")
    return 0 if ratio >= 0.8 else 1


if __name__ == "__main__":
    raise SystemExit(main())
