"""Resampling benchmark: separable linear interpolation vs scipy.ndimage.zoom(order=1).

Both produce the same output grid (scipy's corner-aligned zoom grid) from one 512 x 512 x 100
CT-like float32 volume (0.7 x 0.7 x 2.5 mm -> CT-RATE's 0.75 x 0.75 x 1.5 mm). One thread for
both (BLAS/OpenMP pinned before numpy loads), so the ratio is per core. Best of N runs each.

    .venv/bin/python benchmarks/bench_volume_preprocess.py [--repeat 3] [--slices 100]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402


def best_of(repeat: int, fn):
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> int:
    from scipy import ndimage

    from curate.demo.volumes import ct_phantom
    from curate.parse.volume import (
        Volume,
        VolumePreprocessOptions,
        preprocess,
        resample_linear,
        zoom_grid,
    )

    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--slices", type=int, default=100)
    args = parser.parse_args()

    volume = ct_phantom((512, 512, args.slices), seed=0)
    source, target = (0.7, 0.7, 2.5), (0.75, 0.75, 1.5)
    zoom = tuple(s / t for s, t in zip(source, target))

    t_scipy, reference = best_of(args.repeat, lambda: ndimage.zoom(volume, zoom, order=1))
    coords = zoom_grid(volume.shape, zoom)
    t_ours, ours = best_of(args.repeat, lambda: resample_linear(volume, coords))
    assert ours.shape == reference.shape, (ours.shape, reference.shape)
    diff = float(np.abs(ours - reference).max())

    affine = np.diag(list(source) + [1.0])
    options = VolumePreprocessOptions()  # CT-CLIP: 0.75/0.75/1.5 mm, clip, 480x480x240, int16
    t_full, prepared = best_of(
        args.repeat, lambda: preprocess(Volume(volume.copy(), affine), options)
    )
    ratio = t_scipy / t_ours
    print(f"input {volume.shape} float32, output grid {ours.shape}, threads 1")
    print(f"scipy.ndimage.zoom(order=1): {t_scipy:.3f} s")
    print(f"separable linear (ours):     {t_ours:.3f} s")
    print(f"speed-up: {ratio:.2f}x   max abs difference: {diff:.2e} HU")
    print(
        f"full CT-CLIP preprocess (resample physical grid, clip, crop/pad to "
        f"{prepared.array.shape}, int16): {t_full:.3f} s"
    )
    print("PASS" if ratio >= 2.0 else "FAIL", "(target >= 2x)")
    return 0 if ratio >= 2.0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
