"""Crop-tolerant image near-dup: a copy with 5-10% of its border cut (on any side, unevenly)
keeps neither its pHash nor its aligned thumbnail, so it needs signals of its own.

- Phase 1 (`crop_signals`): pHashes of windows of the image at the `scales`, centred and shifted
  by `offsets` of its width and height (a crop of an image is close to a window of the
  original, or window to window; an uneven crop moves the centre, which 64 bits do not
  forgive) and a `thumb_size` square thumbnail (stretched to 0..255), finer than the
  aligned-check one, to align on.
- Candidates (`crop_edges`): every record's full and window pHashes are members of one probe-key
  search (`curate.dedup.near` spanning forest) within `max_hamming` bits: sub-quadratic, and
  an edge between two members of different records proposes the pair.
- Confirmation (`CropAligner.score`): first a cheap look (`prefilter_min`): the boxes of a grid
  twice as coarse, compared as 8x8 raw pixels, which forgive the coarse grid's misalignment;
  most candidate pairs (unrelated images whose window hashes happen to be close) stop here.
  Then the larger image's thumbnail is cut by every crop box of a grid (each side
  0..`max_cut`, both axes; boxes whose shape disagrees with the smaller image's aspect ratio
  are skipped), resampled by area weights, then refined around the best box; the pair is a
  copy when the best normalised correlation of the 16x16 gradients reaches `gradient_min`
  (chosen on the tuning part of benchmarks/dedup_quality.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cached_property, lru_cache
from typing import Any

import numpy as np
from PIL import Image

from curate.dedup.config import CropNearConfig
from curate.dedup.imagehash import (
    _resize,
    dct_matrix,
    nearest_pairs,
    popcount_inplace,
    thumbnail_pixels,
)

# side of the aligned windows compared: area weights straight to 16x16 equal 32x32 windows
# averaged 2x2 (the coarse check of curate.dedup.confirm), at a quarter of the work
_COMPARE = 16
# side of the prefilter's raw-pixel windows, and thumbnails whose products it keeps
_PREFILTER = 8
# thumbnails whose prefilter products an aligner keeps: a group of up to 256 members (a
# larger one is split, and its pairs aligned grouped by the larger image) meets each in turn,
# as the larger and as the smaller image (256 x ~21 KB of float32 windows at most)
_PREFILTER_CACHE = 256
# their 8x8 targets (as the smaller image) are 256 bytes: kept for a whole large group
_TARGET_CACHE = 16384


# windows are hashed from the image reduced to at most this many pixels a side (a 32x32 pHash
# of a window needs no more; a 2,048-pixel PNG would cost 60x the work)
_WINDOW_SOURCE = 256


def crop_signals(gray: Image.Image, config: CropNearConfig) -> tuple[tuple[int, ...], bytes]:
    """Window pHashes (per scale, per x offset, per y offset) and the alignment thumbnail of a
    decoded image."""
    side = config.thumb_size
    return window_phashes(gray, config.scales, config.offsets), thumbnail_pixels(
        _resize(gray, (side, side))
    )


def window_phashes(
    gray: Image.Image, scales: Sequence[float], offsets: Sequence[float]
) -> tuple[int, ...]:
    """pHashes of the windows of each scale, centred and shifted by every (x, y) pair of
    `offsets` (fractions of the width, height), x outer. Each window is resampled to 32x32 by
    area weights folded into the 8 lowest DCT rows, so one matrix product per axis and offset
    gives every window's low frequencies: no image is cut or resized per window."""
    factor = -(-max(gray.size) // _WINDOW_SOURCE)
    source = gray.reduce(factor) if factor > 1 else gray
    pixels = np.asarray(source, dtype=np.float64)
    height, width = pixels.shape
    hashes: list[int] = []
    for scale in scales:
        rows = _window_rows(height, scale, tuple(offsets))  # (ny, 8, h)
        cols = _window_rows(width, scale, tuple(offsets))  # (nx, 8, w)
        half = rows @ pixels  # (ny, 8, w)
        low = half[None] @ cols.transpose(0, 2, 1)[:, None]  # (nx, ny, 8, 8): x outer
        flat = low.reshape(-1, 64)
        bits = flat > np.median(flat, axis=1, keepdims=True)
        hashes.extend(int.from_bytes(b.tobytes(), "big") for b in np.packbits(bits, axis=1))
    return tuple(hashes)


@lru_cache(maxsize=512)
def _window_rows(n: int, scale: float, offsets: tuple[float, ...]) -> np.ndarray:
    """(offsets, 8, n): the 8 lowest DCT rows of each window's 32-sample area resampling of n
    pixels (cached: a collection repeats its image sizes)."""
    low_rows = dct_matrix(32)[:8]
    cut = (1 - scale) / 2
    return np.stack([low_rows @ box_weights(n, 32, cut + o, 1 - cut + o) for o in offsets])


def box_weights(n: int, m: int, lo: float, hi: float) -> np.ndarray:
    """(m x n) area weights resampling the span [lo, hi) (fractions) of n pixels to m."""
    width = (hi - lo) * n / m
    start = lo * n + np.arange(m)[:, None] * width
    pixel = np.arange(n)[None, :]
    overlap = np.clip(np.minimum(start + width, pixel + 1) - np.maximum(start, pixel), 0, None)
    return overlap / np.maximum(overlap.sum(axis=1, keepdims=True), 1e-12)


@lru_cache(maxsize=4096)
def _cached_weights(n: int, m: int, lo: float, hi: float) -> np.ndarray:
    # float32, like the search's grid: its products are a third faster than in float64 and
    # its scores move by ~1e-7 (the threshold and the scores it separates are ~1e-3 apart)
    weights = box_weights(n, m, lo, hi).astype(np.float32)
    weights.setflags(write=False)
    return weights


def _memo(
    cache: dict[bytes, np.ndarray], key: bytes, make: Callable[[], np.ndarray], limit: int
) -> np.ndarray:
    """`cache[key]`, made by `make()` when missing (the cache is emptied at `limit` items)."""
    value = cache.get(key)
    if value is None:
        if len(cache) >= limit:
            cache.clear()
        value = cache[key] = make()
    return value


def _unit_rows(values: np.ndarray) -> np.ndarray:
    """Rows made zero-mean and unit-norm (zero rows stay zero)."""
    values = values - values.mean(axis=-1, keepdims=True)
    norms = np.linalg.norm(values, axis=-1, keepdims=True)
    return np.divide(values, norms, out=np.zeros_like(values), where=norms > 0)


def _box_windows(
    row_weights: np.ndarray, pixels: np.ndarray, col_weights: np.ndarray
) -> np.ndarray:
    """(row spans, col spans, m, m): every box of the pixels resampled by the spans' (m x n)
    area weights, in two matrix products (a stack of small per-box products is ~10x slower)."""
    spans_r, m, n = row_weights.shape
    half = row_weights.reshape(-1, n) @ pixels  # (row spans * m, n)
    full = half @ col_weights.reshape(-1, n).T  # (row spans * m, col spans * m)
    return full.reshape(spans_r, m, len(col_weights), m).transpose(0, 2, 1, 3)


def _gradients(windows: np.ndarray) -> np.ndarray:
    """Unit-norm, zero-mean gradients of (..., 16, 16) windows."""
    pooled = windows
    grads = np.concatenate(
        [
            np.diff(pooled, axis=-2).reshape(*pooled.shape[:-2], -1),
            np.diff(pooled, axis=-1).reshape(*pooled.shape[:-2], -1),
        ],
        axis=-1,
    )
    return _unit_rows(grads)


class CropAligner:
    """Best-alignment gradient correlation of a smaller image against crop boxes of a larger."""

    def __init__(self, config: CropNearConfig) -> None:
        self.config = config
        cuts = np.arange(0.0, config.max_cut + 1e-9, config.step)
        self.spans = [(float(a), float(1 - b)) for a in cuts for b in cuts]
        coarse = np.arange(0.0, config.max_cut + 1e-9, 2 * config.step)
        self.coarse_spans = [(float(a), float(1 - b)) for a in coarse for b in coarse]
        self.size = config.thumb_size
        # a group's kept record meets every other member in turn: its prefilter products are
        # reused (caches of this aligner, dropped with it; emptied when full)
        self._windows_cache: dict[bytes, np.ndarray] = {}
        self._target_cache: dict[bytes, np.ndarray] = {}

    @cached_property
    def _grid(self) -> np.ndarray:
        grid = [box_weights(self.size, _COMPARE, lo, hi) for lo, hi in self.spans]
        return np.stack(grid).astype(np.float32)  # see _cached_weights

    @cached_property
    def _whole(self) -> np.ndarray:
        return box_weights(self.size, _COMPARE, 0.0, 1.0)

    @cached_property
    def _coarse_grid(self) -> np.ndarray:
        return np.stack(
            [box_weights(self.size, _PREFILTER, lo, hi) for lo, hi in self.coarse_spans]
        )

    @cached_property
    def _coarse_whole(self) -> np.ndarray:
        return box_weights(self.size, _PREFILTER, 0.0, 1.0)

    def _fitting(
        self,
        rows: Sequence[tuple[float, float]],
        cols: Sequence[tuple[float, float]],
        ratio: float | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(row, column) indices of the boxes whose shape gives `ratio` (all without one)."""
        fits = np.ones((len(rows), len(cols)), dtype=bool)
        if ratio is not None:
            fy = np.array([hi - lo for lo, hi in rows])
            fx = np.array([hi - lo for lo, hi in cols])
            fits = np.abs(fx[None, :] / fy[:, None] - ratio) <= self.config.aspect_tolerance
        row_index, col_index = np.nonzero(fits)
        return row_index, col_index

    def prefilter(self, big_thumb: bytes, small_thumb: bytes, ratio: float | None = None) -> float:
        """Best raw-pixel correlation (8x8) of the smaller thumbnail against the boxes of a grid
        twice as coarse as the search's: a cheap bound to skip pairs that are no crop."""
        r, c = self._fitting(self.coarse_spans, self.coarse_spans, ratio)
        if not len(r):
            return -1.0
        windows = self._coarse_windows(big_thumb)[r * len(self.coarse_spans) + c]
        return float((windows @ self._coarse_target(small_thumb)).max())

    def _span_weights(self, lo: float, hi: float) -> np.ndarray:
        # the refined spans come from a small set (grid +/- refine steps): cache them
        return _cached_weights(self.size, _COMPARE, round(lo, 9), round(hi, 9))

    def _pixels(self, thumb: bytes) -> np.ndarray:
        return np.frombuffer(thumb, dtype=np.uint8).reshape(self.size, self.size).astype(np.float32)

    def _coarse_windows(self, thumb: bytes) -> np.ndarray:
        """Every coarse box of the thumbnail as unit 8x8 rows (row box outer), made once."""

        def windows() -> np.ndarray:
            cut = _box_windows(self._coarse_grid, self._pixels(thumb), self._coarse_grid)
            return _unit_rows(cut.reshape(-1, _PREFILTER * _PREFILTER)).astype(np.float32)

        return _memo(self._windows_cache, thumb, windows, _PREFILTER_CACHE)

    def _coarse_target(self, thumb: bytes) -> np.ndarray:
        def target() -> np.ndarray:
            pixels = self._coarse_whole @ self._pixels(thumb) @ self._coarse_whole.T
            return _unit_rows(pixels.ravel()).astype(np.float32)

        return _memo(self._target_cache, thumb, target, _TARGET_CACHE)

    def _scores(
        self,
        big: np.ndarray,
        target: np.ndarray,
        rows: Sequence[tuple[float, float]],
        cols: Sequence[tuple[float, float]],
        ratio: float | None,
        row_weights: np.ndarray | None = None,
        col_weights: np.ndarray | None = None,
    ) -> np.ndarray:
        """Correlations (len(rows) x len(cols)); -1 where the box's shape misses `ratio`."""
        if row_weights is None:
            row_weights = np.stack([self._span_weights(lo, hi) for lo, hi in rows])
        if col_weights is None:
            col_weights = np.stack([self._span_weights(lo, hi) for lo, hi in cols])
        scores = np.full((len(rows), len(cols)), -1.0)
        r, c = self._fitting(rows, cols, ratio)  # only the boxes of the right shape
        if len(r):
            windows = _box_windows(row_weights, big, col_weights)[r, c]  # (boxes, 16, 16)
            scores[r, c] = _gradients(windows.astype(np.float32)) @ target
        return scores

    def score(
        self,
        big_thumb: bytes,
        small_thumb: bytes,
        ratio: float | None = None,
        prefilter: bool = True,
    ) -> float:
        """Best correlation of `small_thumb` against crop boxes of `big_thumb`. `ratio`: the
        smaller image's aspect ratio over the larger's (a crop box must give that shape). With
        `prefilter` and `prefilter_min` set, a pair below it returns the prefilter's score
        (below `gradient_min`) without the search."""
        if prefilter and self.config.prefilter_min is not None:
            first = self.prefilter(big_thumb, small_thumb, ratio)
            if first < self.config.prefilter_min:
                return min(first, self.config.gradient_min - 1e-6)
        big = self._pixels(big_thumb)
        small = self._pixels(small_thumb)
        target = _gradients(self._whole @ small @ self._whole.T)
        coarse = self._scores(big, target, self.spans, self.spans, ratio, self._grid, self._grid)
        best = float(coarse.max())
        if best <= -1.0:
            return best
        row, col = np.unravel_index(int(coarse.argmax()), coarse.shape)
        offsets = self.config.refine_step * np.arange(-2, 3)

        def around(span: tuple[float, float]) -> list[tuple[float, float]]:
            return [
                (max(0.0, span[0] + a), min(1.0, span[1] + b)) for a in offsets for b in offsets
            ]

        fine = self._scores(big, target, around(self.spans[row]), around(self.spans[col]), ratio)
        return max(best, float(fine.max()))


class CropRows:
    """The crop columns of the rows (curate.dedup.crops): is one image a border crop of the
    other? Centre/full pHashes within `crop.max_hamming` and the best crop-box alignment of the
    larger image's thumbnail correlating >= `crop.gradient_min` with the smaller's."""

    def __init__(self, rows: Sequence[Mapping[str, Any]], config: CropNearConfig) -> None:
        self.config = config
        self.aligner = CropAligner(config)
        size = config.thumb_size * config.thumb_size
        # full then window pHashes, one row per record (a shorter list is padded with its own
        # full hash, which changes no minimum distance)
        lists: list[list[int]] = []
        for r in rows:
            crop, full = r.get("crop_hashes"), r.get("image_hash")
            if crop is None or not len(crop) or full is None:
                lists.append([])
            else:
                lists.append([int(full), *(int(h) for h in crop)])
        width = max((len(h) for h in lists), default=0)
        self.hashes = np.zeros((len(rows), max(width, 1)), dtype=np.uint64)
        for i, values in enumerate(lists):
            if values:
                self.hashes[i] = values + [values[0]] * (width - len(values))
        self.thumbs = [
            t if t is not None and len(t) == size else None
            for t in (r.get("crop_thumb") for r in rows)
        ]
        self.usable = np.array(
            [bool(h) and t is not None for h, t in zip(lists, self.thumbs)], dtype=bool
        )
        self.pixels = np.array([int(r.get("pixels") or 0) for r in rows], dtype=np.int64)
        # width / height of each decoded image; NaN where unknown
        self.aspects = np.array([float(r.get("aspect") or np.nan) for r in rows])

    def _ratio(self, big: int, small: int) -> float | None:
        if self.config.aspect_tolerance is None:
            return None
        a, b = float(self.aspects[big]), float(self.aspects[small])
        return b / a if np.isfinite(a) and np.isfinite(b) else None

    def distances(self, k: int, idx: np.ndarray) -> np.ndarray:
        """Fewest differing bits between any full or window pHash of `k` and each of `idx`'s
        (vectorised over `idx`); 65 where the pair cannot be a crop: either unusable, or, with
        `skip_same_shape`, both of one width and height (cutting a border changes the size)."""
        out = np.full(len(idx), 65, dtype=np.int64)
        possible = self.usable[idx] & self.usable[k]
        possible &= self._shape_allows(np.full(len(idx), k), idx)
        left = np.flatnonzero(possible)
        if len(left):
            hashes = self.hashes[idx[left]]
            bits = popcount_inplace(hashes[:, :, None] ^ self.hashes[k][None, None, :])
            out[left] = bits.min(axis=(1, 2))
        return out

    def _shape_allows(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Whether each pair may be a crop: with `skip_same_shape`, not two images of one
        width, height and aspect (cutting a border changes the size)."""
        if not self.config.skip_same_shape:
            return np.ones(len(a), dtype=bool)
        aspect_a, aspect_b = self.aspects[a], self.aspects[b]
        same_aspect = (aspect_a == aspect_b) | (np.isnan(aspect_a) & np.isnan(aspect_b))
        return ~((self.pixels[a] == self.pixels[b]) & same_aspect)

    def aligned_neighbours(
        self, rows: np.ndarray, nearest: int, window: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Index pairs (into `rows`) of crop copies among the rows: each record's `nearest`
        crop candidates (`nearest_pairs`), aligned."""
        i, j = nearest_pairs(
            self.hashes[rows], self.usable[rows], self.config.max_hamming, nearest, window
        )
        possible = self._shape_allows(rows[i], rows[j])
        i, j = i[possible], j[possible]
        # the larger image's prefilter windows are cached: align pairs grouped by it
        larger = np.where(self.pixels[rows[i]] >= self.pixels[rows[j]], i, j)
        order = np.argsort(larger, kind="stable")
        i, j = i[order], j[order]
        ok = np.array([self.aligned(int(rows[a]), int(rows[b])) for a, b in zip(i, j)], bool)
        return i[ok], j[ok]

    def aligned(self, a: int, b: int) -> bool:
        """The best crop box of the larger thumbnail reaches `gradient_min` (equal sizes: either
        may be the crop)."""
        order = [(a, b)] if self.pixels[a] > self.pixels[b] else [(b, a)]
        if self.pixels[a] == self.pixels[b]:
            order.append((a, b))
        return any(
            self.aligner.score(
                self.thumbs[big] or b"", self.thumbs[small] or b"", self._ratio(big, small)
            )
            >= self.config.gradient_min
            for big, small in order
        )

    def crops_of(self, k: int, idx: np.ndarray) -> np.ndarray:
        """Whether each of `idx` is a crop copy of `k` (or `k` of it). With `max_checks`, only
        that many candidates are aligned, the nearest by pHash distance (ties in `idx` order)."""
        distance = self.distances(k, idx)
        chosen = np.flatnonzero(distance <= self.config.max_hamming)
        limit = self.config.max_checks
        if limit is not None and len(chosen) > limit:
            chosen = chosen[np.argsort(distance[chosen], kind="stable")[:limit]]
        out = np.zeros(len(idx), dtype=bool)
        for j in chosen.tolist():
            out[j] = self.aligned(k, int(idx[j]))
        return out


def crop_members(
    record_id: str,
    image_hash: int | None,
    crop_hashes: Sequence[int] | None,
    rank: float,
) -> list[tuple[str, int, float, None]]:
    """The record's full and window pHashes as near-dup members of the crop search."""
    if image_hash is None or not crop_hashes:
        return []
    return [(record_id, int(h), rank, None) for h in (image_hash, *crop_hashes)]


def min_crop_distance(hashes_a: Iterable[int], hashes_b: Iterable[int]) -> int:
    """Fewest differing bits between any full/window pHash of one image and one of another
    (65 when either has none)."""
    a = np.array(list(hashes_a), dtype=np.uint64)
    b = np.array(list(hashes_b), dtype=np.uint64)
    if not a.size or not b.size:
        return 65
    return int(popcount_inplace(a[:, None] ^ b[None, :]).min())


__all__ = [
    "CropAligner",
    "CropRows",
    "box_weights",
    "crop_members",
    "crop_signals",
    "min_crop_distance",
    "window_phashes",
]
