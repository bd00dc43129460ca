"""Confirmation of near-duplicate candidates: the finer check a pair must pass to be a copy.

The hashes and MinHash bands only *propose* pairs: 64 bits cannot tell an adjacent CT slice
(pHash 2-8 bits away) from a re-encoded copy (0-2 bits), and caption shingles cannot tell
"5 mm" from "15 mm". `resolve(edges, confirmer)` (curate.dedup.groups) therefore keeps one
record per group and drops a member only when this module confirms it against that kept
record, so one weak link never chains neighbours into a group.

- Images: the pHash, or the gradient hash (`gradient_hash`), and the dHash within their
  thresholds *and* the gradient correlation of the 32x32
  thumbnails made in phase 1 (`curate.dedup.imagehash.thumbnail_pixels`) at least
  `confirm_gradient_min`, or that of the thumbnails averaged to 16x16 at least
  `confirm_coarse_gradient_min` (codec noise and clipped highlights average out there), or
  that of the 32x32 gradients outside highlights (`unclipped_gradient_correlation`) at least
  `confirm_unclipped_gradient_min` (a brightened copy is flat where it clipped).
  Gradients, not raw pixels: neighbouring slices share the smooth anatomy (raw correlation
  0.95-0.996, like copies) but differ in their edges.
- Captions: the MinHash Jaccard estimate at least `min_jaccard`, the same *cues* (numbers with
  their units, laterality and negation words: `caption_cues`), not two graphics of one figure,
  and, when both records have images, images that are not clearly different.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from curate.dedup.config import CropNearConfig, NearDedupConfig, TextNearConfig
from curate.dedup.crops import CropAligner, crop_neighbours
from curate.dedup.imagehash import popcount64, popcount_inplace

IMAGE_REASON = "near_duplicate_image"
CAPTION_REASON = "near_duplicate_caption"
# edges of the crop search: candidates only, never a drop reason (a confirmed crop drops as
# near_duplicate_image); in a large group they are replaced by aligned pairs (`linked_pairs`)
CROP_CANDIDATE = "crop_candidate"
CONFIRMED_REASONS = frozenset({IMAGE_REASON, CAPTION_REASON, CROP_CANDIDATE})

_NUMBER = re.compile(r"(?<![\w.])(\d+(?:[.,]\d+)?)\s*(%|[a-zµμ]+)?")
_WORD = re.compile(r"[a-z]+")
# Units that change a number's meaning ("5 mm" is not "5 cm"); any other word after a number
# is not part of it.
_UNIT_WORDS = (
    "% x mm cm m um µm μm nm ml l dl mg g kg mcg ug µg mmol mol meq iu u hu t s ms "
    "sec min h hr hrs d day days wk wks week weeks mo month months y yr yrs year "
    "years mmhg bpm kv kvp mas gy cgy mgy msv mbq ci mci fold"
)
_UNITS = frozenset(_UNIT_WORDS.split())


def caption_cues(text: str | None, config: TextNearConfig) -> int | None:
    """A 64-bit key of what must agree for two captions to be copies: numbers with their
    units, laterality words and negation words (lowercased, counted, in any order, so a
    reordered caption keeps its key). None without text."""
    if not text:
        return None
    lower = text.lower()
    cues = []
    for value, unit in _NUMBER.findall(lower):
        value = value.replace(",", ".")
        if "." in value:
            value = value.rstrip("0").rstrip(".")
        cues.append(f"n:{value}{unit if unit in _UNITS else ''}")
    # counted, not as a set: flipping one of two "left"s or dropping one of two "no"s matters
    laterality, negation = set(config.laterality_words), set(config.negation_words)
    for word in _WORD.findall(lower):
        if word in laterality:
            cues.append(f"l:{word}")
        elif word in negation:
            cues.append(f"x:{word}")
    digest = hashlib.blake2b("\x1f".join(sorted(cues)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def figure_key(record: Mapping[str, Any]) -> str | None:
    """The figure a graphic belongs to (graphics of one figure share captions, not images)."""
    pmcid, figure = record.get("pmcid"), record.get("figure_id")
    if pmcid and figure:
        return f"{pmcid}/{figure}"
    return None


def gradient_vectors(
    thumbs: Sequence[bytes | None], size: int, pool: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Unit-norm, zero-mean gradients (vertical then horizontal differences) of thumbnails,
    averaged over `pool` x `pool` blocks first, as rows of a float32 matrix, and whether each
    record had one."""
    have = np.array([t is not None and len(t) == size * size for t in thumbs], dtype=bool)
    side = size // pool
    width = 2 * side * (side - 1)
    out = np.zeros((len(thumbs), width), dtype=np.float32)
    if have.any():
        pixels = np.stack(
            [np.frombuffer(t, dtype=np.uint8) for t, h in zip(thumbs, have) if h and t]
        ).reshape(-1, size, size)
        pixels = pixels[:, : side * pool, : side * pool].astype(np.float32)
        if pool > 1:
            pixels = pixels.reshape(-1, side, pool, side, pool).mean(axis=(2, 4))
        grads = np.concatenate(
            [
                np.diff(pixels, axis=1).reshape(len(pixels), -1),
                np.diff(pixels, axis=2).reshape(len(pixels), -1),
            ],
            axis=1,
        )
        grads -= grads.mean(axis=1, keepdims=True)
        norms = np.linalg.norm(grads, axis=1, keepdims=True)
        out[have] = np.divide(grads, norms, out=np.zeros_like(grads), where=norms > 0)
    return out, have


@lru_cache(maxsize=4)
def _sign_projections(width: int) -> np.ndarray:
    """64 fixed +/-1 directions over `width` gradient values, drawn from SHAKE-256 (the same
    on every machine and NumPy version, so sidecars made elsewhere stay comparable)."""
    raw = hashlib.shake_256(b"curate.gradient_hash.v1").digest(64 * width // 8 + 1)
    bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8))[: 64 * width]
    return np.where(bits.reshape(64, width) > 0, 1.0, -1.0).astype(np.float32)


def gradient_hash(thumb: bytes | None, size: int) -> int | None:
    """A 64-bit sign-projection hash (SimHash) of a thumbnail's gradients: the angle between
    two images' gradient vectors, which the confirmation thresholds, shows as differing bits
    (about 64 * angle / 180 degrees). It proposes pairs whose pHash is unstable (energy
    outside pHash's 8x8 lowest frequencies: stripes, fine texture, a small bright region on
    black). None without a thumbnail or without gradients (a flat image)."""
    grads, have = gradient_vectors([thumb], size)
    if not have[0] or not grads[0].any():
        return None
    # einsum, not BLAS: one 64 x ~2,000 product per image is faster without BLAS's threads
    bits = np.einsum("ij,j->i", _sign_projections(grads.shape[1]), grads[0]) > 0
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def unclipped_gradient_correlation(
    thumbs: Sequence[bytes | None], k: int, idx: np.ndarray, size: int, highlight: int
) -> np.ndarray:
    """Correlation of thumbnail `k`'s gradients with each of `idx`'s over the differences whose
    two pixels are below `highlight` in both thumbnails. Brightening a figure clips its
    highlights to flat white; the plain correlation then loses their edges, this one skips them
    (a 15-25% brightening clips above 80-87% of the range: 204-222 of 255)."""
    pixels = np.stack([np.frombuffer(thumbs[i] or b"", dtype=np.uint8) for i in [k, *idx.tolist()]])
    pixels = pixels.reshape(-1, size, size).astype(np.float32)
    dark = pixels < highlight
    grads = np.concatenate(
        [
            np.diff(pixels, axis=1).reshape(len(pixels), -1),
            np.diff(pixels, axis=2).reshape(len(pixels), -1),
        ],
        axis=1,
    )
    valid = np.concatenate(
        [
            (dark[:, 1:, :] & dark[:, :-1, :]).reshape(len(pixels), -1),
            (dark[:, :, 1:] & dark[:, :, :-1]).reshape(len(pixels), -1),
        ],
        axis=1,
    )
    mask = valid[0] & valid[1:]  # a difference counts only where both images are unclipped
    a = np.where(mask, grads[0], 0.0)
    b = np.where(mask, grads[1:], 0.0)
    a -= a.mean(axis=1, keepdims=True)
    b -= b.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.divide((a * b).sum(axis=1), norms, out=np.zeros(len(b)), where=norms > 0)


class _GradientRows:
    """`gradient_vectors` of the thumbnails, each row made when first read: a large group's
    keeper loops (after its split) read the rows of its parts' members only. The matrix is
    `np.zeros`, whose pages the OS maps only once written, so unread rows cost no memory."""

    def __init__(self, thumbs: Sequence[bytes | None], size: int, pool: int) -> None:
        self.thumbs, self.size, self.pool = thumbs, size, pool
        side = size // pool
        self.values = np.zeros((len(thumbs), 2 * side * (side - 1)), dtype=np.float32)
        self.made = np.zeros(len(thumbs), dtype=bool)

    def __getitem__(self, rows: int | np.ndarray) -> np.ndarray:
        wanted = np.atleast_1d(rows)
        missing = np.unique(wanted[~self.made[wanted]])
        if len(missing):
            thumbs = [self.thumbs[i] for i in missing.tolist()]
            self.values[missing] = gradient_vectors(thumbs, self.size, self.pool)[0]
            self.made[missing] = True
        return self.values[rows]


class _CropRows:
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

    def aligned_neighbours(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Index pairs (into `rows`) of crop copies among the rows: each record's `max_checks`
        nearest crop candidates (`crop_neighbours`), aligned. Linear in the rows: the work of
        a large group of similar figures, where comparing every member with every other is
        what made it quadratic."""
        config = self.config
        i, j = crop_neighbours(
            self.hashes[rows],
            self.usable[rows],
            config.max_hamming,
            config.max_checks,
            config.neighbour_window,
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


class PairConfirmer:
    """Confirms candidate pairs from compact rows (the near sidecar's columns: record_id,
    image_hash, confirm_hash, thumb, signature, cues, figure_key; missing columns are None).

    `confirm(keep, others)` gives, for each of `others`, the reason it duplicates `keep`
    (image evidence first) or None."""

    handles = CONFIRMED_REASONS
    proposals = frozenset({CROP_CANDIDATE})  # replaced by `linked_pairs` in a large group

    def __init__(self, rows: Sequence[Mapping[str, Any]], config: NearDedupConfig) -> None:
        self.config = config
        self.index = {str(r["record_id"]): i for i, r in enumerate(rows)}
        image, caption = config.image, config.caption

        def ints(key: str) -> tuple[np.ndarray, np.ndarray]:
            values = [r.get(key) for r in rows]
            have = np.array([v is not None for v in values], dtype=bool)
            return np.array([int(v or 0) for v in values], dtype=np.uint64), have

        self.phash, self.has_image = ints("image_hash")
        self.has_image &= image.enabled
        self.ghash, self.has_ghash = ints("gradient_hash")
        self.dhash, self.has_dhash = ints("confirm_hash")
        self.cues, self.has_cues = ints("cues")
        thumbs = [r.get("thumb") for r in rows]
        self.thumbs = thumbs
        side = image.thumb_size
        self.has_thumb = np.array([t is not None and len(t) == side * side for t in thumbs])
        self.grads = _GradientRows(thumbs, side, pool=1)
        self.coarse = _GradientRows(thumbs, side, pool=2)
        signatures = [r.get("signature") for r in rows]
        self.has_sig = np.array([s is not None for s in signatures], dtype=bool) & caption.enabled
        width = caption.num_perm
        self.sigs = np.zeros((len(rows), width), dtype=np.uint32)
        for i, s in enumerate(signatures):
            if s is not None and len(s) == width:
                self.sigs[i] = np.asarray(s, dtype=np.uint32)
            else:
                self.has_sig[i] = False
        self.crops = _CropRows(rows, image.crop) if image.crop.enabled else None
        figures = [r.get("figure_key") for r in rows]
        codes = {f: k for k, f in enumerate(sorted({f for f in figures if f}), start=1)}
        self.figure = np.array([codes.get(f, 0) if f else 0 for f in figures], dtype=np.int64)

    def knows(self, record_id: str) -> bool:
        return record_id in self.index

    def _gradient(self, k: int, idx: np.ndarray) -> np.ndarray:
        return self.grads[idx] @ self.grads[k]

    def image_pairs(self, k: int, idx: np.ndarray) -> np.ndarray:
        """Whether each of `idx` is an image copy of `k`."""
        image = self.config.image
        ok = self.has_image[idx] & self.has_image[k]
        close = popcount64(self.phash[idx] ^ self.phash[k]) <= image.max_hamming
        # pairs only the gradient hash proposes (the pHash dissents); with a gate they must agree
        # more closely than usual to overrule it
        overrule = np.zeros(len(idx), dtype=bool)
        if image.gradient_hash_max is not None and self.has_ghash[k]:
            near = popcount64(self.ghash[idx] ^ self.ghash[k]) <= image.gradient_hash_max
            overrule = ~close & self.has_ghash[idx] & near
        ok &= close | overrule
        if image.confirm_dhash_max is not None:
            ok &= self.has_dhash[idx] & self.has_dhash[k]
            ok &= popcount64(self.dhash[idx] ^ self.dhash[k]) <= image.confirm_dhash_max
        if image.confirm_gradient_min is not None and self.has_thumb[k]:
            # the thumbnail checks run only on the pairs the hashes left standing: a group's
            # keeper meets every other member, most of them no candidate of it
            need = np.flatnonzero(ok & self.has_thumb[idx])
            passed = np.zeros(len(idx), dtype=bool)
            if len(need):
                passed[need] = self._thumbnails_agree(k, idx[need], overrule[need])
            ok &= ~self.has_thumb[idx] | passed
        else:
            ok &= ~overrule  # the gradient hash proposes only where thumbnails can confirm
        if self.crops is not None:
            rest = ~ok & self.has_image[idx] & self.has_image[k]
            if rest.any():
                ok[rest] = self.crops.crops_of(k, idx[rest])
        return ok

    def _thumbnails_agree(self, k: int, idx: np.ndarray, overrule: np.ndarray) -> np.ndarray:
        """The thumbnail checks of `image_pairs` for pairs that both have thumbnails."""
        image = self.config.image
        fine_score = self._gradient(k, idx)
        passed = fine_score >= image.confirm_gradient_min
        passed |= self.coarse[idx] @ self.coarse[k] >= image.confirm_coarse_gradient_min
        if image.confirm_unclipped_gradient_min is not None and not passed.all():
            rest = ~passed
            score = unclipped_gradient_correlation(
                self.thumbs, k, idx[rest], image.thumb_size, image.highlight_level
            )
            passed[rest] = score >= image.confirm_unclipped_gradient_min
        if image.gradient_hash_confirm_min is not None:
            passed[overrule] = fine_score[overrule] >= image.gradient_hash_confirm_min
        return passed

    def images_differ(self, k: int, idx: np.ndarray) -> np.ndarray:
        """Whether the images of `k` and each of `idx` are clearly different (both present,
        hashes far apart and, with thumbnails, gradients uncorrelated)."""
        caption = self.config.caption
        if caption.image_different_phash_min is None:
            return np.zeros(len(idx), dtype=bool)
        both = self.has_image[idx] & self.has_image[k]
        far = popcount64(self.phash[idx] ^ self.phash[k]) >= caption.image_different_phash_min
        unlike = np.ones(len(idx), dtype=bool)
        if self.has_thumb[k]:
            with_thumb = self.has_thumb[idx]
            unlike = ~with_thumb | (self._gradient(k, idx) < caption.image_different_gradient_max)
        return both & far & unlike

    def caption_pairs(self, k: int, idx: np.ndarray) -> np.ndarray:
        """Whether each of `idx` is a caption copy of `k` (see the module docstring)."""
        caption = self.config.caption
        ok = self.has_sig[idx] & self.has_sig[k]
        signed = np.flatnonzero(ok)
        if not len(signed):
            return ok
        ok[signed] = (self.sigs[idx[signed]] == self.sigs[k]).mean(axis=1) >= caption.min_jaccard
        if caption.same_cues:
            ok &= self.has_cues[idx] & self.has_cues[k] & (self.cues[idx] == self.cues[k])
        if self.figure[k]:
            ok &= self.figure[idx] != self.figure[k]
        standing = np.flatnonzero(ok)
        if len(standing):
            ok[standing] = ~self.images_differ(k, idx[standing])
        return ok

    @property
    def split_above(self) -> int | None:
        """Candidate groups of more records than this are split (`linked_pairs`)."""
        return self.crops.config.split_groups_above if self.crops is not None else None

    def linked_pairs(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Index pairs (into `rows`) that link records of a large group in place of its crop
        candidate edges (`PROPOSALS`): aligned crop copies among each record's nearest."""
        if self.crops is None or not self.config.image.enabled:
            empty = np.empty(0, dtype=np.int64)
            return empty, empty
        known = np.flatnonzero(rows >= 0)
        i, j = self.crops.aligned_neighbours(rows[known])
        return known[i], known[j]

    def positions(self, record_ids: Sequence[str]) -> np.ndarray:
        index = self.index
        return np.fromiter((index.get(r, -1) for r in record_ids), np.int64, len(record_ids))

    def confirmed(self, keep: int, others: np.ndarray) -> list[tuple[int, str]]:
        """`(index into others, reason)` of the rows of `others` that duplicate row `keep`
        (image evidence first)."""
        image_on = self.config.image.enabled
        image = self.image_pairs(keep, others) if image_on else np.zeros(len(others), bool)
        caption = self.caption_pairs(keep, others) & ~image
        return [(j, IMAGE_REASON) for j in np.flatnonzero(image).tolist()] + [
            (j, CAPTION_REASON) for j in np.flatnonzero(caption).tolist()
        ]

    def confirm(self, keep: str, others: Sequence[str]) -> list[str | None]:
        """For each of `others`, the reason it duplicates `keep`, or None (unknown ids: None)."""
        out: list[str | None] = [None] * len(others)
        k = self.index.get(keep)
        rows = self.positions(others)
        known = np.flatnonzero(rows >= 0)
        if k is None or not len(known):
            return out
        for j, reason in self.confirmed(k, rows[known]):
            out[int(known[j])] = reason
        return out


__all__ = [
    "CONFIRMED_REASONS",
    "CROP_CANDIDATE",
    "PairConfirmer",
    "caption_cues",
    "figure_key",
    "gradient_hash",
    "gradient_vectors",
    "unclipped_gradient_correlation",
]
