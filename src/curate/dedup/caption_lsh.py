"""Caption near-duplicates by MinHash LSH in grouped, compact steps: what the Beam path runs.

The plain way (one element per band per record, each carrying the whole signature, then one
call per bucket) shuffles bands x signature bytes per record and makes a call of every bucket,
though most buckets hold one record. Here each step works on packs (numpy arrays over many
records) keyed by a group, and a signature is shuffled once:

1. `band_packs`: per batch of signatures, every record's buckets (band, key) go to a *band
   group* (a hash of the bucket), so a bucket lives whole in one group. A record travels as
   its *handle* (a 64-bit hash of its id), not its id or signature.
2. `candidate_memberships`: per band group, the buckets of >= 2 members (sort, run lengths).
   Their members go to their *record group* (handle mod the group count) with the bucket and
   its *route*: the smallest handle of its members, mod the same count. All members of a
   bucket agree on its route, and a near-copy pair, sharing many buckets, has one route.
3. `signature_packs` + `join_candidates`: per record group, the signatures (all records, once
   each) meet the candidate memberships by handle (checked distinct there, so the join is
   exact); a candidate's signature goes to its buckets' routes.
4. `verify_candidates`: per route, buckets are rebuilt from the memberships and verified
   with `text_edges_in_bucket`'s rule (estimated Jaccard >= min_jaccard, identical signatures
   linked directly) into one union-find: identical signatures are linked to one holder that
   stands for them in every bucket, buckets with the same members are verified once, pairs
   all at once, and larger buckets skip pairs already in one group.

Every pair sharing a bucket is compared or already in one group, as with one
`text_edges_in_bucket` call per bucket, so the groups are the same and, since a group's
records are exactly those its edges touch, so are the decisions (only repeated edges go).
Group counts come from the number of signatures (`caption_layout`): a band group holds about
`group_size` bucket memberships, a record group or route about `group_size` signatures.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple

import numpy as np

from curate.dedup.groups import Edge
from curate.dedup.minhash import lsh_band_keys
from curate.dedup.near import CAPTION_REASON

_BAND_MIX = np.uint64(0x9E3779B97F4A7C15)  # spreads a band over the key bits of its group hash
_PAIR_SLICE = 1 << 14  # pairs verified per numpy step: bounds the (pairs x num_perm) compare


class SignatureBatch(NamedTuple):
    """MinHash signatures of some records: row i is record_ids[i]'s, ranks[i] its keep rank."""

    record_ids: list[str]
    signatures: np.ndarray  # (n, num_perm) uint32
    ranks: np.ndarray  # (n,) float64


class BucketItems(NamedTuple):
    """Bucket memberships: item i puts record owners[i] (an index into its pack's records) in
    bucket (bands[i], keys[i])."""

    owners: np.ndarray  # uint16 or uint32 (`_index_dtype`)
    bands: np.ndarray
    keys: np.ndarray  # uint64

    def take(self, selection: np.ndarray) -> BucketItems:
        return BucketItems(self.owners[selection], self.bands[selection], self.keys[selection])

    def with_owners(self, owners: np.ndarray) -> BucketItems:
        return BucketItems(
            owners.astype(_index_dtype(int(owners.max(initial=0)) + 1)), self.bands, self.keys
        )


class BandPack(NamedTuple):
    """Step 1's output: band keys of some records (by handle); no id, no signature."""

    handles: np.ndarray  # (n,) uint64
    items: BucketItems


class MembershipPack(NamedTuple):
    """Step 2's output: memberships of candidate buckets (by handle), with each item's route."""

    handles: np.ndarray
    items: BucketItems
    routes: np.ndarray  # one per item


class CandidatePack(NamedTuple):
    """Step 3's output: candidates' signatures with their memberships for one route."""

    record_ids: list[str]
    signatures: np.ndarray
    ranks: np.ndarray
    items: BucketItems


class CaptionLayout(NamedTuple):
    """How many groups each grouped step uses (a side input, from the count of signatures)."""

    band_groups: int
    record_groups: int


def caption_layout(count: int, bands: int, group_size: int) -> CaptionLayout:
    """Groups holding about `group_size` bucket memberships (band groups) or signatures."""
    return CaptionLayout(max(1, -(-count * bands // group_size)), max(1, -(-count // group_size)))


def record_handles(record_ids: Sequence[str]) -> np.ndarray:
    """A stable 64-bit hash per record id (the same in every worker, unlike `hash`)."""
    return np.fromiter(
        (
            int.from_bytes(
                hashlib.blake2b(rid.encode("utf-8", "surrogatepass"), digest_size=8).digest(),
                "little",
            )
            for rid in record_ids
        ),
        dtype=np.uint64,
        count=len(record_ids),
    )


def _index_dtype(size: int) -> type[np.unsignedinteger]:
    """The narrowest unsigned type indexing `size` things: packs stay small on the wire."""
    return np.uint16 if size <= 1 << 16 else np.uint32


def _split_by(groups: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """(group, indices of the items in it) for every group present."""
    order = np.argsort(groups, kind="stable")
    present, starts = np.unique(groups[order], return_index=True)
    ends = np.r_[starts[1:], len(order)]
    for group, start, end in zip(present.tolist(), starts.tolist(), ends.tolist()):
        yield group, order[start:end]


def _compact(owners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The records `owners` names (sorted indices) and the owners renumbered into them, so a
    pack carries only its own records."""
    present, inverse = np.unique(owners, return_inverse=True)
    return present, inverse.reshape(-1)


def _pick(record_ids: Sequence[str], rows: np.ndarray) -> list[str]:
    return [record_ids[i] for i in rows.tolist()]


def _concat_items(parts: Sequence[BucketItems], pack_sizes: Sequence[int]) -> BucketItems:
    """Items of several packs as one, owners indexing the packs' records laid end to end."""
    offsets = np.cumsum([0, *pack_sizes[:-1]])
    return BucketItems(
        np.concatenate([p.owners.astype(np.int64) + o for p, o in zip(parts, offsets)]),
        np.concatenate([p.bands for p in parts]),
        np.concatenate([p.keys for p in parts]),
    )


def _bucket_runs(items: BucketItems) -> tuple[BucketItems, np.ndarray, np.ndarray]:
    """Items sorted by bucket then owner, repeats dropped: (items, run starts, run sizes), a
    run per bucket."""
    if not len(items.keys):
        return items, np.zeros(0, np.int64), np.zeros(0, np.int64)
    ordered = items.take(np.lexsort((items.owners, items.keys, items.bands)))
    owners, bands, keys = ordered
    new_bucket = np.r_[True, (bands[1:] != bands[:-1]) | (keys[1:] != keys[:-1])]
    new_item = new_bucket | np.r_[True, owners[1:] != owners[:-1]]
    ordered, new_bucket = ordered.take(new_item), new_bucket[new_item]
    starts = np.flatnonzero(new_bucket)
    return ordered, starts, np.diff(np.r_[starts, len(new_bucket)])


# ---- step 1: band keys per batch ---------------------------------------------------------


def band_packs(
    batch: SignatureBatch, bands: int, rows: int, layout: CaptionLayout
) -> list[tuple[int, BandPack]]:
    """(band group, pack) for a batch: each record's buckets, by the group holding them."""
    n = len(batch.record_ids)
    if n == 0:
        return []
    keys = lsh_band_keys(batch.signatures, bands, rows).reshape(-1)
    band_of = np.tile(np.arange(bands, dtype=_index_dtype(bands)), n)
    owners = np.repeat(np.arange(n), bands)
    groups = (keys ^ (band_of.astype(np.uint64) * _BAND_MIX)) % np.uint64(layout.band_groups)
    handles = record_handles(batch.record_ids)
    items = BucketItems(owners, band_of, keys)
    packs = []
    for group, selection in _split_by(groups):
        part = items.take(selection)
        present, renumbered = _compact(part.owners)
        packs.append((group, BandPack(handles[present], part.with_owners(renumbered))))
    return packs


def signature_packs(
    batch: SignatureBatch, layout: CaptionLayout
) -> list[tuple[int, SignatureBatch]]:
    """(record group, signatures) for a batch: where step 3 joins them with candidates."""
    if not batch.record_ids:
        return []
    homes = record_handles(batch.record_ids) % np.uint64(layout.record_groups)
    return [
        (
            group,
            SignatureBatch(
                _pick(batch.record_ids, rows), batch.signatures[rows], batch.ranks[rows]
            ),
        )
        for group, rows in _split_by(homes)
    ]


# ---- step 2: candidate buckets per band group --------------------------------------------


def candidate_memberships(
    packs: Iterable[BandPack], layout: CaptionLayout
) -> list[tuple[int, MembershipPack]]:
    """(record group, memberships) of the buckets of >= 2 members among a group's packs."""
    packs = list(packs)
    handles = np.concatenate([pack.handles for pack in packs])
    items = _concat_items([pack.items for pack in packs], [len(pack.handles) for pack in packs])
    sorted_items, starts, sizes = _bucket_runs(items)
    shared = sizes >= 2
    if not shared.any():
        return []
    groups = np.uint64(layout.record_groups)
    route_of_run = np.minimum.reduceat(handles[sorted_items.owners], starts) % groups
    run_of_item = np.repeat(np.arange(len(starts)), sizes)
    in_shared = shared[run_of_item]
    members = sorted_items.take(in_shared)
    routes = route_of_run[run_of_item[in_shared]].astype(_index_dtype(layout.record_groups))
    out = []
    for group, selection in _split_by(handles[members.owners] % groups):
        part = members.take(selection)
        present, renumbered = _compact(part.owners)
        pack = MembershipPack(handles[present], part.with_owners(renumbered), routes[selection])
        out.append((group, pack))
    return out


# ---- step 3: signatures meet candidates per record group ---------------------------------


def _rows_of(record_ids: Sequence[str], wanted: np.ndarray) -> np.ndarray:
    """Row in `record_ids` of each wanted handle. Handles must be distinct among a record
    group's ids for the join to be exact: checked (two ids sharing a 64-bit hash is a
    ~n^2 / 2^65 chance, never silently wrong)."""
    handles = record_handles(record_ids)
    order = np.argsort(handles)
    ordered = handles[order]
    if len(ordered) > 1 and (ordered[1:] == ordered[:-1]).any():
        first = int(np.flatnonzero(ordered[1:] == ordered[:-1])[0])
        ids = sorted({record_ids[order[first]], record_ids[order[first + 1]]})
        raise ValueError(f"record ids {ids} share a 64-bit handle (or repeat): ids must be unique")
    position = np.minimum(np.searchsorted(ordered, wanted), len(ordered) - 1)
    if not (ordered[position] == wanted).all():
        raise ValueError("a candidate bucket names a record without a signature")
    return order[position]


def join_candidates(
    signatures: Iterable[SignatureBatch], memberships: Iterable[MembershipPack]
) -> list[tuple[int, CandidatePack]]:
    """(route, candidates with signatures) for a record group; nothing without candidates."""
    memberships = list(memberships)
    if not memberships:
        return []
    batches = list(signatures)
    record_ids = [rid for batch in batches for rid in batch.record_ids]
    sigs = np.concatenate([batch.signatures for batch in batches])
    ranks = np.concatenate([batch.ranks for batch in batches])
    items = _concat_items(
        [pack.items for pack in memberships], [len(pack.handles) for pack in memberships]
    )
    wanted = np.concatenate([pack.handles for pack in memberships])
    items = items.with_owners(_rows_of(record_ids, wanted)[items.owners])
    routes = np.concatenate([pack.routes for pack in memberships])
    out = []
    for route, selection in _split_by(routes):
        part = items.take(selection)
        present, renumbered = _compact(part.owners)
        pack = CandidatePack(
            _pick(record_ids, present), sigs[present], ranks[present], part.with_owners(renumbered)
        )
        out.append((route, pack))
    return out


# ---- step 4: verification per route ------------------------------------------------------


def _member_sets(items: BucketItems) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    """The distinct member sets of the buckets: pairs as an (n, 2) array, larger ones as
    tuples (buckets of one member have nothing to verify)."""
    ordered, starts, sizes = _bucket_runs(items)
    owners = ordered.owners.astype(np.int64)
    pair_starts = starts[sizes == 2]
    pairs = np.stack([owners[pair_starts], owners[pair_starts + 1]], axis=1)
    larger = {
        tuple(owners[start : start + size].tolist())
        for start, size in zip(starts[sizes > 2].tolist(), sizes[sizes > 2].tolist())
    }
    return np.unique(pairs, axis=0), sorted(larger)


def _concat_candidates(packs: Sequence[CandidatePack]) -> CandidatePack:
    return CandidatePack(
        [rid for pack in packs for rid in pack.record_ids],
        np.concatenate([pack.signatures for pack in packs]),
        np.concatenate([pack.ranks for pack in packs]),
        _concat_items([pack.items for pack in packs], [len(pack.record_ids) for pack in packs]),
    )


def _signature_holders(pack: CandidatePack) -> np.ndarray:
    """For each candidate, the candidate of lowest id with the same signature (itself if
    none): the first holder `text_edges_in_bucket` links identical signatures to."""
    by_id = np.array(sorted(range(len(pack.record_ids)), key=pack.record_ids.__getitem__))
    _, first, inverse = np.unique(
        pack.signatures[by_id], axis=0, return_index=True, return_inverse=True
    )
    holders = np.empty(len(by_id), dtype=np.int64)
    holders[by_id] = by_id[first[inverse.reshape(-1)]]
    return holders


class _Links:
    """Union-find over a route's candidates (a numpy parent array) that keeps one edge per
    join: the route's groups from any number of buckets, with at most n - 1 edges."""

    def __init__(self, pack: CandidatePack, min_jaccard: float, reason: str) -> None:
        self.pack = pack
        self.min_jaccard = min_jaccard
        self.reason = reason
        self.parent = np.arange(len(pack.record_ids))
        self.edges: list[Edge] = []

    def roots(self, x: np.ndarray) -> np.ndarray:
        root = self.parent[x]
        while not np.array_equal(up := self.parent[root], root):
            root = up
        self.parent[x] = root  # compress the paths walked
        return root

    def join(self, a: int, b: int) -> None:
        ra, rb = self.roots(np.array([a, b])).tolist()
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)
            ids, ranks = self.pack.record_ids, self.pack.ranks
            if ids[b] < ids[a]:
                a, b = b, a  # the lower id first, as text_edges_in_bucket orders members
            self.edges.append(Edge(ids[a], ids[b], self.reason, float(ranks[a]), float(ranks[b])))

    def close(self, a: np.ndarray | int, b: np.ndarray) -> np.ndarray:
        """Whether each pair's estimated Jaccard reaches the threshold (the comparison
        `text_edges_in_bucket` makes)."""
        sigs = self.pack.signatures
        return (sigs[a] == sigs[b]).mean(axis=1) >= self.min_jaccard

    def pairs(self, pairs: np.ndarray) -> None:
        for start in range(0, len(pairs), _PAIR_SLICE):
            a, b = pairs[start : start + _PAIR_SLICE].T
            close = self.close(a, b)
            for i, j in zip(a[close].tolist(), b[close].tolist()):
                self.join(i, j)

    def bucket(self, members: np.ndarray) -> None:
        """Every pair of `members` compared or already in one group: each member in turn is
        compared with the later members outside its group, and the bucket is done once all
        are in one group, so a tight cluster costs a step or two, not k^2 / 2 pairs."""
        pending = members
        while len(pending) > 1:
            roots = self.roots(pending)
            if (roots == roots[0]).all():
                return
            first, rest = int(pending[0]), pending[1:][roots[1:] != roots[0]]
            for other in rest[self.close(first, rest)].tolist():
                self.join(first, other)
            pending = pending[1:]


def verify_candidates(
    packs: Iterable[CandidatePack], min_jaccard: float, reason: str = CAPTION_REASON
) -> list[Edge]:
    """Edges of one route: the groups of its candidate pairs that share a bucket and reach
    `min_jaccard`, the groups `text_edges_in_bucket` per bucket gives.

    Identical signatures share every bucket and always link: each is linked to its first
    holder once, and the holder stands for it in the buckets (a boilerplate bucket of
    thousands of copies becomes one member). Buckets with the same members are verified
    once, pairs all at once, and a pair already in one group is not compared again."""
    packs = list(packs)
    if not packs:
        return []
    pack = _concat_candidates(packs)
    links = _Links(pack, min_jaccard, reason)
    holders = _signature_holders(pack)
    for copy in np.flatnonzero(holders != np.arange(len(holders))).tolist():
        links.join(int(holders[copy]), copy)
    pairs, larger = _member_sets(pack.items.with_owners(holders[pack.items.owners]))
    links.pairs(pairs)
    for members in larger:
        links.bucket(np.array(members))
    return links.edges


# ---- all steps in memory, grouped as the Beam path groups them ---------------------------


def _grouped(pairs: Iterable[tuple[int, object]]) -> dict[int, list]:
    out: dict[int, list] = {}
    for key, value in pairs:
        out.setdefault(key, []).append(value)
    return out


def grouped_caption_edges(
    batches: Sequence[SignatureBatch],
    bands: int,
    rows: int,
    min_jaccard: float,
    group_size: int,
) -> list[Edge]:
    """The four steps in one process (tests and benchmarks check the Beam path's logic)."""
    count = sum(len(batch.record_ids) for batch in batches)
    layout = caption_layout(count, bands, group_size)
    by_band = _grouped(p for batch in batches for p in band_packs(batch, bands, rows, layout))
    candidates = _grouped(
        p for packs in by_band.values() for p in candidate_memberships(packs, layout)
    )
    signatures = _grouped(p for batch in batches for p in signature_packs(batch, layout))
    routed = _grouped(
        p
        for group, packs in candidates.items()
        for p in join_candidates(signatures.get(group, []), packs)
    )
    return [edge for packs in routed.values() for edge in verify_candidates(packs, min_jaccard)]
