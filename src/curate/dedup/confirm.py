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

from curate.dedup.config import NearDedupConfig, TextNearConfig
from curate.dedup.crops import CropRows
from curate.dedup.imagehash import nearest_pairs, popcount64

IMAGE_REASON = "near_duplicate_image"
CAPTION_REASON = "near_duplicate_caption"
# edges of the crop search: candidates only, never a drop reason (a confirmed crop drops as
# near_duplicate_image); in a large group, like every proposal, only confirmed pairs link
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


class PairConfirmer:
    """Confirms candidate pairs from compact rows (the near sidecar's columns: record_id,
    image_hash, confirm_hash, thumb, signature, cues, figure_key; missing columns are None).

    `confirm(keep, others)` gives, for each of `others`, the reason it duplicates `keep`
    (image evidence first) or None."""

    handles = CONFIRMED_REASONS
    proposals = CONFIRMED_REASONS  # in a large group: confirmed pairs only (`linked_pairs`)

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
        self.crops = CropRows(rows, image.crop) if image.crop.enabled else None
        figures = [r.get("figure_key") for r in rows]
        codes = {f: k for k, f in enumerate(sorted({f for f in figures if f}), start=1)}
        self.figure = np.array([codes.get(f, 0) if f else 0 for f in figures], dtype=np.int64)

    def knows(self, record_id: str) -> bool:
        return record_id in self.index

    def _gradient(self, k: int, idx: np.ndarray) -> np.ndarray:
        return self.grads[idx] @ self.grads[k]

    def image_pairs(self, k: int, idx: np.ndarray, crops: bool = True) -> np.ndarray:
        """Whether each of `idx` is an image copy of `k` (`crops`: or a crop copy)."""
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
        if self.crops is not None and crops:
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
        return self.config.split_groups_above

    def pairs_confirmed(
        self, first: np.ndarray, second: np.ndarray, crops: bool = True
    ) -> np.ndarray:
        """Whether each pair of rows (first[k], second[k]) is a confirmed duplicate (one
        vectorised call per distinct first row; `crops`: a crop copy counts)."""
        ok = np.zeros(len(first), dtype=bool)
        order = np.argsort(first, kind="stable")
        starts = np.flatnonzero(np.r_[True, first[order][1:] != first[order][:-1]])
        for run in np.split(order, starts[1:]) if len(order) else []:
            for j, _ in self.confirmed(int(first[run[0]]), second[run], crops):
                ok[run[j]] = True
        return ok

    def linked_pairs(
        self, rows: np.ndarray, given: tuple[np.ndarray, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Index pairs (into `rows`, row positions, -1 unknown) that link the records of a
        large group in place of its candidate edges: the `given` edges' pairs (index pairs
        into `rows`) and each record's nearest by pHash, by gradient hash and by crop windows
        (`nearest_pairs`), those confirmed (crops: aligned)."""
        config, image = self.config, self.config.image
        nearest, window = config.split_neighbours, config.split_window
        known = np.flatnonzero(rows >= 0)
        at = rows[known]
        firsts, seconds = [given[0]], [given[1]]
        if image.enabled:
            searches = [(self.phash, self.has_image, image.max_hamming)]
            if image.gradient_hash_max is not None:
                searches.append(
                    (self.ghash, self.has_ghash & self.has_image, image.gradient_hash_max)
                )
            for values, usable, limit in searches:
                i, j = nearest_pairs(values[at][:, None], usable[at], limit, nearest, window)
                firsts.append(known[i])
                seconds.append(known[j])
        first, second = np.concatenate(firsts), np.concatenate(seconds)
        both = (rows[first] >= 0) & (rows[second] >= 0) & (first != second)
        first, second = first[both], second[both]
        # crops are aligned among the nearest by crop windows below, not again here
        ok = self.pairs_confirmed(rows[first], rows[second], crops=False)
        first, second = first[ok], second[ok]
        if self.crops is not None and image.enabled:
            i, j = self.crops.aligned_neighbours(at, nearest, window)
            first, second = np.r_[first, known[i]], np.r_[second, known[j]]
        return first, second

    def positions(self, record_ids: Sequence[str]) -> np.ndarray:
        index = self.index
        return np.fromiter((index.get(r, -1) for r in record_ids), np.int64, len(record_ids))

    def confirmed(self, keep: int, others: np.ndarray, crops: bool = True) -> list[tuple[int, str]]:
        """`(index into others, reason)` of the rows of `others` that duplicate row `keep`
        (image evidence first)."""
        image_on = self.config.image.enabled
        image = self.image_pairs(keep, others, crops) if image_on else np.zeros(len(others), bool)
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
