"""Gantry-tilt correction: a sheared slice stack -> the orthogonal grid it overlaps.

A CT acquired with a tilted gantry stores axial-looking slices whose origins move sideways
from slice to slice: the step between slices leaves the slice normal. An orthogonal affine
cannot describe that grid. Each slice is shifted in its own plane by the sideways part of its
offset (linear interpolation, values outside the slice get `fill`), so that voxel (i, j, k)
lies at origin + i*dx*row + j*dy*col + k*dz*normal with dz the step along the normal; the
in-plane axes grow by the total drift so no slice loses its edge. The grid (shape and affine)
equals dcm2niix's `_Tilt_1` output; the voxel placement is checked physically (a straight rod
stays straight, at its patient position). The angle goes into the metadata (`gantry_tilt_deg`).
"""

from __future__ import annotations

import math

import numpy as np


def _shift_axis(plane: np.ndarray, shift: float, axis: int, fill: float) -> np.ndarray:
    """out[x] = plane[x - shift] along `axis` (linear), `fill` where x - shift leaves the plane."""
    if abs(shift) < 1e-9:
        return plane
    n = plane.shape[axis]
    coords = np.arange(n, dtype=np.float64) - shift
    inside = (coords >= -1e-6) & (coords <= n - 1 + 1e-6)
    coords = np.clip(coords, 0, n - 1)
    lo = np.minimum(np.floor(coords).astype(np.intp), max(n - 2, 0))
    w = (coords - lo).astype(np.float32)
    hi = np.minimum(lo + 1, n - 1)
    shape = [1, 1]
    shape[axis] = n
    a0 = np.take(plane, lo, axis=axis)
    a1 = np.take(plane, hi, axis=axis)
    out = a0 + (a1 - a0) * w.reshape(shape)
    mask = inside.reshape(shape)
    return np.where(mask, out, np.float32(fill)).astype(np.float32)


def correct_tilt(
    array: np.ndarray,
    origin: np.ndarray,
    step: np.ndarray,
    row_cosine: np.ndarray,
    col_cosine: np.ndarray,
    pixel_spacing: tuple[float, float],
    fill: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(array (i, j, k), LPS origin and step) -> (resampled array, LPS origin, orthogonal LPS
    step, tilt degrees).

    The in-plane axes grow by the total sideways drift (rounded up to whole voxels), so every
    slice keeps its whole field of view, as dcm2niix's `_Tilt_1` output does.
    `pixel_spacing` is DICOM's (between rows, between columns): i moves by the second value.
    """
    normal = np.cross(row_cosine, col_cosine)
    normal /= np.linalg.norm(normal)
    along = float(step @ normal)
    last = array.shape[2] - 1
    drift = (
        float(step @ row_cosine) / pixel_spacing[1],  # voxels per slice along i
        float(step @ col_cosine) / pixel_spacing[0],  # voxels per slice along j
    )
    low = [min(0, math.floor(d * last + 1e-6)) for d in drift]
    high = [max(0, math.ceil(d * last - 1e-6)) for d in drift]
    shape = (array.shape[0] + high[0] - low[0], array.shape[1] + high[1] - low[1], array.shape[2])
    out = np.full(shape, fill, dtype=np.float32)
    for k in range(array.shape[2]):
        plane = np.full(shape[:2], fill, dtype=np.float32)
        plane[-low[0] : -low[0] + array.shape[0], -low[1] : -low[1] + array.shape[1]] = array[
            :, :, k
        ]
        # grid index x of the output holds input position x + low - k * drift
        plane = _shift_axis(plane, k * drift[0] + 0.0, 0, fill)
        plane = _shift_axis(plane, k * drift[1] + 0.0, 1, fill)
        out[:, :, k] = plane
    new_origin = (
        origin + low[0] * pixel_spacing[1] * row_cosine + low[1] * pixel_spacing[0] * col_cosine
    )
    angle = math.degrees(math.acos(min(1.0, abs(along) / float(np.linalg.norm(step)))))
    return out, new_origin, normal * along, angle
