"""Vectorised MinHash signatures and LSH banding for caption / report near-duplicates.

Why not `datasketch`: its `update_batch` hashes every shingle with a Python SHA-1 call and runs
the permutations document by document. Here a whole batch of documents is processed with a
handful of numpy operations: tokens are hashed once each (cached, the vocabulary of captions is
small), word or character n-gram hashes are combined over the concatenated batch, the
permutations run on one (shingles x num_perm) matrix, and `np.minimum.reduceat` takes the
per-document minimum.

The permutation family is datasketch's `affine32` scheme (its default since 2.0): a 32-bit
shingle hash is pre-mixed with the MurmurHash3 finaliser and mapped by `a * h + b mod 2^32`
with odd `a`; `a` and `b` are drawn with `np.random.RandomState(seed)` exactly as datasketch
draws them, so the same seed gives the same permutations. Only the shingle hash differs
(a cached BLAKE2b token hash combined per n-gram, not SHA-1 of the shingle string), which does
not change the estimator: both are 32-bit hashes of the same shingle sets.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np

_WORD_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789_") | frozenset(range(128, 256))
# bytes.translate table: ASCII letters lower-cased, ASCII punctuation/space -> space; bytes of
# non-ASCII characters are word characters (so accented words stay one token).
_TOKEN_TABLE = bytes(
    (c + 32 if 65 <= c <= 90 else c) if (c + 32 if 65 <= c <= 90 else c) in _WORD_BYTES else 32
    for c in range(256)
)
_SPACE_RE = re.compile(r"\s+")

_U32 = np.uint32
_U64 = np.uint64
_MAX32 = np.uint32(0xFFFFFFFF)
# Odd 64-bit constants for combining hashes (golden ratio and a MurmurHash multiplier).
_COMBINE = np.uint64(0x9E3779B97F4A7C15)
_POLY = np.uint64(0x100000001B3)  # odd, so it has an inverse mod 2^64


def fmix32(hv: np.ndarray) -> np.ndarray:
    """MurmurHash3 32-bit finaliser (the same pre-mix datasketch's affine32 scheme applies)."""
    hv = hv ^ (hv >> _U32(16))
    hv = hv * _U32(0x85EBCA6B)
    hv = hv ^ (hv >> _U32(13))
    hv = hv * _U32(0xC2B2AE35)
    return hv ^ (hv >> _U32(16))


def fmix64(hv: np.ndarray) -> np.ndarray:
    hv = hv ^ (hv >> _U64(33))
    hv = hv * _U64(0xFF51AFD7ED558CCD)
    hv = hv ^ (hv >> _U64(33))
    hv = hv * _U64(0xC4CEB9FE1A85EC53)
    return hv ^ (hv >> _U64(33))


def affine32_permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The `(a, b)` arrays datasketch 2.x draws for `MinHash(num_perm, seed, scheme="affine32")`."""
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a, b


def normalize_text(text: str) -> str:
    """Lower-case and collapse whitespace: case and layout never make two captions different."""
    return _SPACE_RE.sub(" ", text.lower()).strip()


def word_tokens(text: str) -> list[bytes]:
    """Lower-cased word tokens: maximal runs of ASCII letters, digits, `_` and non-ASCII chars.

    Done with `bytes.translate` + `split` (C speed; a regex is 3x slower on captions).
    """
    if not text:
        return []
    if not text.isascii():
        text = text.lower()
    return text.encode("utf-8", "surrogatepass").translate(_TOKEN_TABLE).split()


def word_shingles(text: str, size: int) -> set[bytes]:
    """The shingle set the vectorised hasher uses, as strings (for baselines and exact Jaccard).

    A document with fewer than `size` tokens is one shingle of all its tokens, so short captions
    still have a signature.
    """
    tokens = word_tokens(text)
    if not tokens:
        return set()
    if len(tokens) < size:
        return {b" ".join(tokens)}
    return {b" ".join(tokens[i : i + size]) for i in range(len(tokens) - size + 1)}


def char_shingles(text: str, size: int) -> set[bytes]:
    norm = normalize_text(text)
    if not norm:
        return set()
    if len(norm) < size:
        return {norm.encode("utf-8", "surrogatepass")}
    return {
        norm[i : i + size].encode("utf-8", "surrogatepass") for i in range(len(norm) - size + 1)
    }


def shingle_set(text: str, kind: str, size: int) -> set[bytes]:
    if kind == "word":
        return word_shingles(text, size)
    if kind == "char":
        return char_shingles(text, size)
    raise ValueError(f"unknown shingle type {kind!r}; expected 'word' or 'char'")


def exact_jaccard(a: set[bytes], b: set[bytes]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


class _TokenHashes(dict):
    """token bytes -> stable 64-bit hash, computed on first use (a dict miss calls `__missing__`)."""

    max_size = 2_000_000

    def __missing__(self, token: bytes) -> int:
        if len(self) >= self.max_size:  # bounded memory on huge vocabularies
            self.clear()
        value = int.from_bytes(hashlib.blake2b(token, digest_size=8).digest(), "little")
        self[token] = value
        return value


@dataclass(frozen=True)
class Signatures:
    """MinHash signatures of a batch: row i belongs to document i; `empty[i]` when it had no shingles."""

    values: np.ndarray  # (n_docs, num_perm) uint32
    empty: np.ndarray  # (n_docs,) bool


class MinHasher:
    """Batch MinHash over word or character n-gram shingles."""

    def __init__(
        self,
        num_perm: int = 128,
        seed: int = 1,
        shingle: str = "word",
        size: int = 5,
        chunk_elements: int = 128_000,
    ) -> None:
        if shingle not in ("word", "char"):
            raise ValueError(f"unknown shingle type {shingle!r}; expected 'word' or 'char'")
        if size < 1 or num_perm < 1:
            raise ValueError("shingle size and num_perm must be positive")
        self.num_perm = num_perm
        self.seed = seed
        self.shingle = shingle
        self.size = size
        self.a, self.b = affine32_permutations(num_perm, seed)
        # Bounds the (shingles x num_perm) working matrix: 128k uint32 = 512 kB, cache-sized.
        self._chunk_rows = max(1, chunk_elements // num_perm)
        self._tokens = _TokenHashes()
        self._pow = np.ones(1, dtype=_U64)
        self._inv_pow = np.ones(1, dtype=_U64)

    # ---- shingle hashes -------------------------------------------------------------------

    def _word_shingle_hashes(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        token_lists = [word_tokens(t) for t in texts]
        lengths = np.fromiter(map(len, token_lists), dtype=np.int64, count=len(texts))
        total = int(lengths.sum())
        flat = np.fromiter(
            map(self._tokens.__getitem__, chain.from_iterable(token_lists)),
            dtype=_U64,
            count=total,
        )
        n = self.size
        starts = np.zeros(len(texts), dtype=np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
        # Shingles per document: L - n + 1, or one shingle of all tokens when 0 < L < n.
        counts = np.where(lengths >= n, lengths - n + 1, (lengths > 0).astype(np.int64))
        n_sh = int(counts.sum())
        doc_of = np.repeat(np.arange(len(texts)), counts)
        first = np.zeros(len(texts), dtype=np.int64)
        np.cumsum(counts[:-1], out=first[1:])
        pos = starts[doc_of] + (np.arange(n_sh) - first[doc_of])
        short = lengths[doc_of] < n
        any_short = bool(short.any())
        width = np.minimum(lengths[doc_of], n)
        padded = np.concatenate([flat, np.zeros(n, dtype=_U64)])
        # Token hashes are already uniform (BLAKE2b), so a polynomial combine mod 2^64 and one
        # finaliser give a well-mixed n-gram hash; the width tag keeps short-document shingles
        # apart from the zero padding.
        h = padded[pos].copy()
        for j in range(1, n):
            tok = padded[pos + j]
            if any_short:
                tok[j >= width] = 0
            h *= _COMBINE
            h += tok
        if any_short:
            h += width.astype(_U64)
        return self._fold(fmix64(h)), counts

    def _powers(self, length: int) -> tuple[np.ndarray, np.ndarray]:
        if len(self._pow) < length + 1:
            size = max(length + 1, 2 * len(self._pow))
            base = np.full(size, _POLY, dtype=_U64)
            base[0] = 1
            self._pow = np.cumprod(base, dtype=_U64)
            inv = np.full(size, _u64_inverse(int(_POLY)), dtype=_U64)
            inv[0] = 1
            self._inv_pow = np.cumprod(inv, dtype=_U64)
        return self._pow, self._inv_pow

    def _char_shingle_hashes(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        norms = [normalize_text(t) if t else "" for t in texts]
        lengths = np.fromiter((len(t) for t in norms), dtype=np.int64, count=len(norms))
        joined = "".join(norms)
        codes = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32).astype(_U64)
        codes = fmix64(codes + _U64(1))
        total = len(codes)
        k = self.size
        starts = np.zeros(len(texts), dtype=np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
        counts = np.where(lengths >= k, lengths - k + 1, (lengths > 0).astype(np.int64))
        n_sh = int(counts.sum())
        doc_of = np.repeat(np.arange(len(texts)), counts)
        first = np.zeros(len(texts), dtype=np.int64)
        np.cumsum(counts[:-1], out=first[1:])
        pos = starts[doc_of] + (np.arange(n_sh) - first[doc_of])
        width = np.minimum(lengths[doc_of], k)
        # Polynomial hash of each window from one prefix sum (mod 2^64): with W_m = c_m * P^-m,
        # sum_{j<w} c_{i+j} P^(w-1-j) = (S[i+w] - S[i]) * P^(i+w-1).
        pw, inv = self._powers(total + 1)
        prefix = np.zeros(total + 1, dtype=_U64)
        np.cumsum(codes * inv[:total], dtype=_U64, out=prefix[1:])
        end = pos + width
        h = (prefix[end] - prefix[pos]) * pw[end - 1] + width.astype(_U64)
        return self._fold(fmix64(h)), counts

    @staticmethod
    def _fold(h64: np.ndarray) -> np.ndarray:
        return fmix32(((h64 >> _U64(32)) ^ h64).astype(_U32))

    # ---- signatures ----------------------------------------------------------------------

    def signatures(self, texts: Sequence[str]) -> Signatures:
        texts = list(texts)
        if not texts:
            return Signatures(np.zeros((0, self.num_perm), dtype=_U32), np.zeros(0, dtype=bool))
        if self.shingle == "word":
            hashes, counts = self._word_shingle_hashes(texts)
        else:
            hashes, counts = self._char_shingle_hashes(texts)
        out = np.full((len(texts), self.num_perm), _MAX32, dtype=_U32)
        empty = counts == 0
        docs = np.flatnonzero(~empty)
        if len(docs):
            offsets = np.zeros(len(texts), dtype=np.int64)
            np.cumsum(counts[:-1], out=offsets[1:])
            self._fill(out, hashes, docs, offsets[docs], counts[docs])
        return Signatures(out, empty)

    def _fill(
        self,
        out: np.ndarray,
        hashes: np.ndarray,
        docs: np.ndarray,
        offsets: np.ndarray,
        counts: np.ndarray,
    ) -> None:
        # Whole documents per chunk, so the (rows x num_perm) working matrix stays cache-sized.
        ends = offsets + counts
        i = 0
        buf = np.empty((self._chunk_rows, self.num_perm), dtype=_U32)
        while i < len(docs):
            lo = int(offsets[i])
            j = int(np.searchsorted(ends, lo + self._chunk_rows, side="right"))
            j = max(j, i + 1)
            hi = int(ends[j - 1])
            rows = hi - lo
            phv = buf[:rows] if rows <= len(buf) else np.empty((rows, self.num_perm), _U32)
            np.multiply(hashes[lo:hi, None], self.a[None, :], out=phv)
            np.add(phv, self.b[None, :], out=phv)
            out[docs[i:j]] = np.minimum.reduceat(phv, offsets[i:j] - lo, axis=0)
            i = j


def _u64_inverse(value: int) -> int:
    return pow(value, -1, 1 << 64)


def lsh_band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(n_docs, bands) uint64 bucket keys: documents sharing a key in any band are candidates.

    With bands b and rows r, the probability that two sets of Jaccard s become candidates is
    1 - (1 - s^r)^b (the S-curve; threshold ~ (1/b)^(1/r)).
    """
    if bands * rows > signatures.shape[1]:
        raise ValueError(f"bands x rows = {bands * rows} exceeds num_perm {signatures.shape[1]}")
    n = signatures.shape[0]
    sig = signatures[:, : bands * rows].astype(_U64).reshape(n, bands, rows)
    h = np.zeros((n, bands), dtype=_U64)
    for r in range(rows):
        h = fmix64(h * _COMBINE + sig[:, :, r] + _U64(r + 1))
    return h


def candidate_pairs(keys: np.ndarray) -> set[tuple[int, int]]:
    """Index pairs (i < j) that share a bucket in at least one band."""
    pairs: set[tuple[int, int]] = set()
    for band in range(keys.shape[1]):
        column = keys[:, band]
        order = np.argsort(column, kind="stable")
        sorted_keys = column[order]
        boundaries = np.flatnonzero(np.diff(sorted_keys)) + 1
        for group in np.split(order, boundaries):
            if len(group) < 2:
                continue
            members = sorted(int(x) for x in group)
            for x_i, x in enumerate(members):
                for y in members[x_i + 1 :]:
                    pairs.add((x, y))
    return pairs
