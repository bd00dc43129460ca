"""Siemens MOSAIC: one 2D image holding a grid of slices -> one `SliceHeader` per tile.

Siemens writes EPI/DWI/fMRI volumes as one instance per volume whose pixel matrix is an
m x m grid of tiles (ImageType contains MOSAIC); how many tiles hold slices is in the private
CSA image header (`NumberOfImagesInMosaic`, mirrored in (0019,100A)), read with nibabel's CSA
reader. The instance's ImagePositionPatient is the corner of the whole mosaic, not of the
first slice: shifting by half the difference between mosaic and tile size along the row and
column cosines gives the first tile's corner (nibabel's `MosaicWrapper`, dcm2niix). Tiles then
step along the CSA `SliceNormalVector` by the slice spacing (SpacingBetweenSlices, else
SliceThickness). Every MOSAIC instance is its own 3D volume (one time point / b-value).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from curate.parse.series_geometry import SliceHeader, plane_header

SIEMENS_IMAGES_IN_MOSAIC = 0x0019100A


def _csareader() -> Any:
    import warnings

    with warnings.catch_warnings():  # nibabel.nicom warns on import that it is experimental
        warnings.simplefilter("ignore")
        from nibabel.nicom import csareader
    return csareader


def _csa(ds: Any) -> dict[str, Any] | None:
    import warnings

    csareader = _csareader()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return csareader.get_csa_header(ds, "image")
    except (csareader.CSAReadError, KeyError, ValueError, TypeError, IndexError):
        return None


def is_mosaic(ds: Any) -> bool:
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    return "MOSAIC" in image_type


def images_in_mosaic(ds: Any, csa: dict[str, Any] | None) -> int | None:
    csareader = _csareader()

    if csa is not None:
        try:
            n = csareader.get_n_mosaic(csa)
            if n:
                return int(n)
        except (KeyError, ValueError, TypeError, IndexError):
            pass
    element = ds.get(SIEMENS_IMAGES_IN_MOSAIC)
    if element is not None:
        try:
            return int(
                element.value
                if not isinstance(element.value, bytes)
                else int.from_bytes(element.value[:2], "little")
            )
        except (TypeError, ValueError):
            return None
    return None


def _slice_normal(csa: dict[str, Any] | None, row: np.ndarray, col: np.ndarray) -> np.ndarray:
    csareader = _csareader()

    normal = None
    if csa is not None:
        try:
            normal = csareader.get_slice_normal(csa)
        except (KeyError, ValueError, TypeError, IndexError):
            normal = None
    if normal is None or len(normal) != 3:
        computed = np.cross(row, col)
        return computed / np.linalg.norm(computed)
    vector = np.asarray([float(v) for v in normal], dtype=np.float64)
    return vector / np.linalg.norm(vector)


def _slice_spacing(ds: Any) -> float:
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        value = ds.get(keyword)
        try:
            if value not in (None, "") and float(value) > 0:
                return float(value)
        except (TypeError, ValueError):
            continue
    from curate.errors import InvalidGeometry

    raise InvalidGeometry(
        "MOSAIC without SpacingBetweenSlices or SliceThickness: slice positions unknown",
        reason="missing_geometry",
    )


def mosaic_slices(uri: str, ds: Any) -> list[SliceHeader]:
    from curate.errors import InvalidGeometry

    csa = _csa(ds)
    count = images_in_mosaic(ds, csa)
    if not count or count < 1:
        raise InvalidGeometry(
            f"{uri}: ImageType says MOSAIC but neither the CSA header nor (0019,100A) gives "
            "NumberOfImagesInMosaic",
            reason="mosaic_without_count",
        )
    whole = plane_header(uri, ds)  # IPP/IOP/spacing of the mosaic as a 2D image
    tiles_per_side = math.ceil(math.sqrt(count))
    rows, columns = whole.shape
    if rows % tiles_per_side or columns % tiles_per_side:
        # A resized mosaic (256 / 7 pixels per tile) has tile borders inside pixels: no tile
        # can be cut out exactly (nibabel's reader refuses it as well).
        raise InvalidGeometry(
            f"{uri}: mosaic {rows}x{columns} does not split into {tiles_per_side}x"
            f"{tiles_per_side} tiles of whole pixels ({count} images)",
            reason="mosaic_grid_mismatch",
        )
    tile_shape = (rows // tiles_per_side, columns // tiles_per_side)
    row_spacing, column_spacing = whole.pixel_spacing
    first = (
        whole.position
        + whole.col_cosine * row_spacing * (rows - tile_shape[0]) / 2
        + whole.row_cosine * column_spacing * (columns - tile_shape[1]) / 2
    )
    normal = _slice_normal(csa, whole.row_cosine, whole.col_cosine)
    gap = _slice_spacing(ds)
    key = (
        str(ds.get("AcquisitionNumber", "") or ""),
        str(ds.get("InstanceNumber", "") or ""),
        uri,
    )
    return [
        SliceHeader(
            uri,
            ds,
            first + tile * gap * normal,
            whole.row_cosine,
            whole.col_cosine,
            whole.pixel_spacing,
            tile_shape,
            frame=0,
            tile=tile,
            volume_key=key,
        )
        for tile in range(count)
    ]


def tile_pixels(mosaic: np.ndarray, tile: int, tile_shape: tuple[int, int]) -> np.ndarray:
    """Tile `tile` of a mosaic (row-major over the grid: left to right, then down)."""
    rows, columns = tile_shape
    per_row = mosaic.shape[1] // columns
    r, c = divmod(tile, per_row)
    return mosaic[r * rows : (r + 1) * rows, c * columns : (c + 1) * columns]
