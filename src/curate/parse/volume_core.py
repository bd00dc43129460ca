"""Volume basics shared by the readers and the preprocessing: the `Volume` type, its RAS+
canonical form, affine checks, and array storage in records.

`array_from_record` and `decode_array` depend on numpy and pyarrow only (no Beam, no pydicom),
so training code can decode stored volumes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

ARRAY_FORMAT = "zstd(raw little-endian C-order)"

# ---------------------------------------------------------------- array storage (no Beam) ----


def encode_array(array: np.ndarray, *, level: int = 3) -> bytes:
    """A standard zstd frame of the array's raw little-endian C-order bytes.

    dtype and shape travel in their own record columns; the frame holds its content size, so
    `zstd -d`, the `zstandard` package or `pyarrow.Codec("zstd")` all decode it.
    """
    import pyarrow as pa

    data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    return pa.Codec("zstd", compression_level=level).compress(data.tobytes(), asbytes=True)


def decode_array(blob: bytes, dtype: str, shape: list[int] | tuple[int, ...]) -> np.ndarray:
    import pyarrow as pa

    dt = np.dtype(dtype).newbyteorder("<")
    size = int(np.prod(shape)) * dt.itemsize
    raw = pa.Codec("zstd").decompress(blob, decompressed_size=size, asbytes=True)
    return (
        np.frombuffer(raw, dtype=dt)
        .reshape(tuple(int(s) for s in shape))
        .astype(dt.newbyteorder("="), copy=False)
    )


def array_from_record(record: dict[str, Any]) -> np.ndarray:
    """The volume of a `volume.v1` record as a numpy array (axes RAS, see `orientation`)."""
    return decode_array(record["array"], record["dtype"], record["shape"])


# ------------------------------------------------------------------------------ volume ----


@dataclass
class Volume:
    array: np.ndarray  # axes (i, j, k): float32, or int16/int32 from integer DICOM values
    affine: np.ndarray  # 4x4 voxel -> RAS+ mm
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.array.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]

    @property
    def orientation(self) -> str:
        from nibabel.orientations import aff2axcodes

        return "".join(aff2axcodes(self.affine))


def canonical(volume: Volume) -> Volume:
    """Reorient to the closest RAS+ axis order with nibabel (flips/permutes, no resampling)."""
    import nibabel as nib

    image = nib.Nifti1Image(volume.array, volume.affine)
    out = nib.as_closest_canonical(image)
    # Flips and permutations are views: the dtype (float32, or int16/int32 for DICOM whose
    # rescale is integral) and the values are kept.
    return Volume(np.asarray(out.dataobj), out.affine.copy(), volume.metadata)


def check_affine(affine: np.ndarray, where: str) -> None:
    from curate.errors import InvalidGeometry

    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise InvalidGeometry(
            f"{where}: affine is not a finite 4x4 matrix", reason="invalid_affine"
        )
    zooms = np.linalg.norm(affine[:3, :3], axis=0)
    if np.any(zooms < 1e-6):
        raise InvalidGeometry(
            f"{where}: zero voxel spacing {zooms.tolist()}", reason="zero_spacing"
        )
    if abs(np.linalg.det(affine[:3, :3])) < 1e-9 * float(np.prod(zooms)):
        raise InvalidGeometry(
            f"{where}: singular affine (axes are parallel)", reason="invalid_affine"
        )
