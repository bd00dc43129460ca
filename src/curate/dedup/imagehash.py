"""Perceptual image hashes (pHash, dHash) and a decode helper, with numpy and Pillow only.

- pHash: grayscale, resize to 32x32, 2-D DCT-II, keep the 8x8 lowest frequencies, one bit per
  coefficient (above the median or not). Survives re-encoding, resizing and brightness shifts,
  because those change high frequencies and the DC term, not the ordering of low frequencies.
- dHash: grayscale, resize to 9x8, one bit per horizontal neighbour pair (left brighter than
  right). Cheaper, a little less robust to re-encoding.

Both return unsigned 64-bit integers; `hamming` compares them. The same pipeline (decode,
grayscale, resize, DCT) gives the offline default image embedding in `curate.embed.models`.
"""

from __future__ import annotations

import io
from functools import cache

import numpy as np
from PIL import Image, UnidentifiedImageError

from curate.errors import DecompressionBomb, EmptyInput, UnreadableImage

# A figure above this many pixels is almost certainly hostile or broken (PIL's own warning
# threshold is ~89M); a spec can raise it.
DEFAULT_MAX_PIXELS = 200_000_000


def open_image(data: bytes | None, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open image bytes lazily (header only), refusing empty, unreadable and oversized images."""
    if not data:
        raise EmptyInput("image bytes are empty")
    try:
        image = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise UnreadableImage(f"not a readable image: {exc}") from exc
    width, height = image.size
    if width <= 0 or height <= 0:
        raise UnreadableImage(f"image has size {width}x{height}")
    if width * height > max_pixels:
        raise DecompressionBomb(f"image declares {width}x{height} pixels (> {max_pixels})")
    return image


def decode_gray(
    data: bytes, draft: tuple[int, int], max_pixels: int = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """Decode to an 8-bit grayscale PIL image (JPEGs decoded at reduced scale, >= `draft`)."""
    image = open_image(data, max_pixels)
    try:
        # JPEG draft mode decodes at 1/2..1/8 scale straight from the DCT: much faster, and the
        # result is resized again afterwards, so hashes do not depend on it beyond rounding.
        image.draft("L", draft)
        if image.mode in ("RGBA", "LA", "PA") or (
            image.mode == "P" and "transparency" in image.info
        ):
            # Transparent pixels are shown on white in papers; flatten the same way.
            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(background, rgba)
        if image.mode.startswith("I;16"):
            image = image.convert("I")
        if image.mode in ("I", "F"):
            # 16-bit or float images (some TIFFs): rescale min-max to 8 bits before hashing.
            arr = np.asarray(image, dtype=np.float32)
            lo, hi = float(arr.min()), float(arr.max())
            arr = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
            image = Image.fromarray(arr.astype(np.uint8), mode="L")
        gray = image.convert("L")
        gray.load()
        return gray
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise UnreadableImage(f"image cannot be decoded: {exc}") from exc


def _resize(gray: Image.Image, size: tuple[int, int]) -> np.ndarray:
    try:
        return np.asarray(gray.resize(size, Image.Resampling.LANCZOS), dtype=np.float32)
    except (OSError, ValueError) as exc:
        raise UnreadableImage(f"image cannot be resized: {exc}") from exc


def grayscale(
    data: bytes, size: tuple[int, int], max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Decode, convert to 8-bit grayscale and resize to `size` (width, height) as float32."""
    return _resize(decode_gray(data, (size[0] * 4, size[1] * 4), max_pixels), size)


def image_hashes(
    data: bytes, methods: tuple[str, ...], max_pixels: int = DEFAULT_MAX_PIXELS
) -> dict[str, int]:
    """Several hashes from one decode (near-dedup wants pHash and dHash of every image)."""
    return gray_hashes(decode_gray(data, (128, 128), max_pixels), methods)


def image_signals(
    data: bytes,
    methods: tuple[str, ...],
    thumb_size: int | None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[dict[str, int], bytes | None]:
    """Hashes and, with `thumb_size`, the thumbnail (`thumbnail_pixels`) from one decode."""
    return gray_signals(decode_gray(data, (128, 128), max_pixels), methods, thumb_size)


def gray_signals(
    gray: Image.Image, methods: tuple[str, ...], thumb_size: int | None
) -> tuple[dict[str, int], bytes | None]:
    """`image_signals` of an image already decoded (`decode_gray`)."""
    thumb = thumbnail_pixels(_resize(gray, (thumb_size, thumb_size))) if thumb_size else None
    return gray_hashes(gray, methods), thumb


def thumbnail_pixels(pixels: np.ndarray) -> bytes:
    """A square grayscale thumbnail stretched to 0..255 (brightness and contrast shifts of a
    copy vanish) as row-major uint8 bytes: the finer check of near-dup candidates."""
    lo, hi = float(pixels.min()), float(pixels.max())
    scaled = (pixels - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(pixels)
    return np.round(scaled).astype(np.uint8).tobytes()


def gray_hashes(gray: Image.Image, methods: tuple[str, ...]) -> dict[str, int]:
    out: dict[str, int] = {}
    for method in methods:
        if method == "phash":
            out[method] = phash_pixels(_resize(gray, (32, 32)))
        elif method == "dhash":
            out[method] = dhash_pixels(_resize(gray, (9, 8)))
        else:
            raise ValueError(f"unknown image hash {method!r}; expected 'phash' or 'dhash'")
    return out


@cache
def dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix: `M @ x` is the DCT of column vector x."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m.astype(np.float64)


def dct2(pixels: np.ndarray) -> np.ndarray:
    rows = dct_matrix(pixels.shape[0])
    cols = dct_matrix(pixels.shape[1])
    return rows @ pixels.astype(np.float64) @ cols.T


def _bits_to_int(bits: np.ndarray) -> int:
    packed = np.packbits(bits.astype(np.uint8).ravel())
    return int.from_bytes(packed.tobytes(), "big")


def phash_pixels(pixels32: np.ndarray, hash_size: int = 8) -> int:
    low = dct2(pixels32)[:hash_size, :hash_size]
    return _bits_to_int(low > np.median(low))


def dhash_pixels(pixels9x8: np.ndarray) -> int:
    return _bits_to_int(pixels9x8[:, :-1] > pixels9x8[:, 1:])


def phash(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> int:
    """64-bit DCT perceptual hash of image bytes."""
    return phash_pixels(grayscale(data, (32, 32), max_pixels))


def dhash(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> int:
    """64-bit difference hash of image bytes."""
    return dhash_pixels(grayscale(data, (9, 8), max_pixels))


def image_hash(data: bytes, method: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> int:
    if method == "phash":
        return phash(data, max_pixels)
    if method == "dhash":
        return dhash(data, max_pixels)
    raise ValueError(f"unknown image hash {method!r}; expected 'phash' or 'dhash'")


# Popcount by SWAR, in place (numpy 1.26 has no bitwise_count): a few passes over uint64s.
_M1, _M2, _M4, _H01 = (
    np.uint64(c)
    for c in (0x5555555555555555, 0x3333333333333333, 0x0F0F0F0F0F0F0F0F, 0x0101010101010101)
)


def popcount_inplace(x: np.ndarray) -> np.ndarray:
    """Number of set bits of each uint64 of `x`, overwriting `x` (which is returned)."""
    y = x >> np.uint64(1)
    y &= _M1
    x -= y
    np.right_shift(x, np.uint64(2), out=y)
    y &= _M2
    x &= _M2
    x += y
    np.right_shift(x, np.uint64(4), out=y)
    x += y
    x &= _M4
    x *= _H01
    x >>= np.uint64(56)
    return x


def popcount64(values: np.ndarray) -> np.ndarray:
    """Number of set bits of each value (a new uint64 array)."""
    return popcount_inplace(np.array(values, dtype=np.uint64))


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def hamming_to(block: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    """Hamming distances (len(block) x len(hashes)) of uint64 hashes, by byte popcount table."""
    xor = block.astype(np.uint64)[:, None] ^ hashes.astype(np.uint64)[None, :]
    counts = _POPCOUNT8[xor.view(np.uint8)].reshape(len(block), len(hashes), 8)
    return counts.sum(axis=2, dtype=np.int32)


def hamming_matrix(hashes: np.ndarray) -> np.ndarray:
    """Pairwise Hamming distances of uint64 hashes (n x n), vectorised."""
    return hamming_to(hashes, hashes)


def hash_blocks(value: int, blocks: int) -> list[tuple[int, int]]:
    """Split a 64-bit hash into `blocks` bit ranges: (block index, block value).

    Pigeonhole: two hashes within Hamming distance d < blocks agree exactly on at least one
    block, so grouping by (index, value) finds every pair within the threshold with blocks=d+1.
    """
    out = []
    bounds = np.linspace(0, 64, blocks + 1).astype(int)
    for index in range(blocks):
        lo, hi = int(bounds[index]), int(bounds[index + 1])
        out.append((index, (value >> lo) & ((1 << (hi - lo)) - 1)))
    return out


# bit rotations of the sorted passes of `nearest_pairs`: each brings one 16-bit quarter of
# the hash to the front, and a pair within a few bits agrees on at least one whole quarter
_NEIGHBOUR_ROTATIONS = (0, 16, 32, 48)


def _rotated(values: np.ndarray, bits: int) -> np.ndarray:
    if not bits:
        return values
    return (values << np.uint64(bits)) | (values >> np.uint64(64 - bits))


def nearest_pairs(
    hashes: np.ndarray,
    usable: np.ndarray,
    max_hamming: int,
    nearest: int | None,
    window: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs (i, j), i < j, of the records whose hashes are the rows of `hashes`
    (n x m: a pHash, or a full pHash and its crop windows; only `usable` rows): each record's
    `nearest` partners (all when None) by their fewest differing bits, among those within
    `max_hamming`.

    Bounded work whatever the density: every hash is sorted four times (each 16-bit quarter
    of it brought to the front) and compared with the `window` hashes after it, so a group of
    similar figures costs ~4 x window comparisons a hash, not one per pair of records. A pair
    that shares a quarter and has fewer than `window` hashes sorted between them is always
    found (every pair when a group holds at most `window` + 1 hashes); in a crowd of similar
    hashes some farther pairs are not, as `nearest` would drop them anyway."""
    rows = np.flatnonzero(usable)
    width = hashes.shape[1] if hashes.ndim == 2 else 0
    empty = np.empty(0, dtype=np.int64)
    if len(rows) < 2 or not width:
        return empty, empty
    owner = np.repeat(rows, width)
    values = hashes[rows].reshape(-1)
    # one entry per distinct hash of a record (short hash lists are padded with repeats)
    distinct = np.unique(np.stack([owner.astype(np.uint64), values]), axis=1)
    owner, values = distinct[0].astype(np.int64), distinct[1]
    firsts, seconds, bits = [], [], []
    for rotation in _NEIGHBOUR_ROTATIONS:
        order = np.argsort(_rotated(values, rotation), kind="stable")
        sorted_values, sorted_owner = values[order], owner[order]
        for offset in range(1, min(window, len(order) - 1) + 1):
            distance = popcount_inplace(sorted_values[:-offset] ^ sorted_values[offset:])
            hit = (distance <= max_hamming) & (sorted_owner[:-offset] != sorted_owner[offset:])
            firsts.append(sorted_owner[:-offset][hit])
            seconds.append(sorted_owner[offset:][hit])
            bits.append(distance[hit])
    a, b, d = np.concatenate(firsts), np.concatenate(seconds), np.concatenate(bits)
    if not len(a):
        return empty, empty
    # each record's partners, nearest first (a pair seen twice keeps its fewest bits)
    source, target = np.r_[a, b], np.r_[b, a]
    distance = np.r_[d, d].astype(np.int64)
    order = np.lexsort((distance, target, source))
    source, target, distance = source[order], target[order], distance[order]
    first = np.r_[True, (source[1:] != source[:-1]) | (target[1:] != target[:-1])]
    source, target, distance = source[first], target[first], distance[first]
    if nearest is not None:
        order = np.lexsort((target, distance, source))
        source, target = source[order], target[order]
        start = np.flatnonzero(np.r_[True, source[1:] != source[:-1]])
        place = np.arange(len(source)) - np.repeat(start, np.diff(np.r_[start, len(source)]))
        source, target = source[place < nearest], target[place < nearest]
    pairs = np.unique(np.stack([np.minimum(source, target), np.maximum(source, target)]), axis=1)
    return pairs[0], pairs[1]
