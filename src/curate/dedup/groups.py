"""Duplicate groups across methods: union-find over edges, one kept record per group.

Every method (image hash, caption MinHash, embedding cosine) only proposes *edges* between
records. All edges go into one union-find, so a record linked to A by its image and to B by its
caption ends in one group with both; each group keeps exactly one representative (SemDeDup's
released code drops every member, which loses data) and every other member is dropped with the
reason of its strongest edge and the id of the kept record.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

# When a record has edges of several kinds, the most specific evidence names the reason.
REASON_PRIORITY = (
    "near_duplicate_image",
    "near_duplicate_caption",
    "semantic_duplicate",
)


@dataclass(frozen=True, order=True)
class Duplicate:
    """A record to drop: it duplicates `duplicate_of`, which is kept."""

    record_id: str
    reason: str
    duplicate_of: str

    def as_tuple(self) -> tuple[str, str, str]:
        return (self.record_id, self.reason, self.duplicate_of)


@dataclass(frozen=True)
class Edge:
    """Two records judged duplicates by one method. `*_rank` orders candidates to keep (higher wins)."""

    a: str
    b: str
    reason: str
    a_rank: float = 0.0
    b_rank: float = 0.0


class UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        parent = self.parent
        if x not in parent:
            parent[x] = x
            return x
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    def union(self, a: str, b: str) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        # Deterministic: the smaller id becomes the root, whatever the edge order.
        if rb < ra:
            ra, rb = rb, ra
        self.parent[rb] = ra
        return True

    def same(self, a: str, b: str) -> bool:
        return self.find(a) == self.find(b)


def _reason_rank(reason: str) -> int:
    return REASON_PRIORITY.index(reason) if reason in REASON_PRIORITY else len(REASON_PRIORITY)


class Confirmer(Protocol):
    """Checks candidate members against a kept record (curate.dedup.confirm.PairConfirmer), by
    its own row positions so that a group's loop stays in NumPy."""

    handles: frozenset[str]  # edge reasons it decides; edges of other reasons stand as given

    def positions(self, record_ids: Sequence[str]) -> np.ndarray:
        """Each record's row position (int64), -1 for a record it has no row of."""
        ...

    def confirmed(self, keep: int, others: np.ndarray) -> list[tuple[int, str]]:
        """`(index into others, reason)` of each of `others` (row positions, none -1) that
        duplicates row `keep`."""
        ...


@runtime_checkable
class SplittingConfirmer(Confirmer, Protocol):
    """A confirmer that also splits large candidate groups (`_split_large_groups`)."""

    # edge reasons that only propose: a group of more than `split_above` records drops them
    # and is split by its other edges plus the confirmer's `linked_pairs` (None: never split)
    proposals: frozenset[str]
    split_above: int | None

    def linked_pairs(
        self, rows: np.ndarray, given: tuple[np.ndarray, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Index pairs into `rows` (row positions, -1 for unknown records) that stand for the
        `proposals` edges of a large group (`given`: theirs, as index pairs into `rows`):
        pairs it has confirmed."""
        ...


def resolve(edges: Iterable[Edge], confirmer: Confirmer | None = None) -> list[Duplicate]:
    """Group records by the edges and pick the representative of each group.

    The representative has the highest rank (e.g. pixel count under `highest_resolution`);
    ties go to the lowest record id, so the result does not depend on edge order.

    With a `confirmer`, edges only propose candidate groups: each group keeps its best record,
    drops the members confirmed against it (`confirmer.confirmed`, or a direct edge of a reason
    the confirmer does not decide, e.g. semantic), and repeats on the members left, so every
    drop is confirmed against the record it names and one weak link cannot chain neighbours in.
    """
    edges = list(edges)
    if confirmer is None:
        return _resolve_components(edges)
    groups, rank = _connected_groups(edges)
    if isinstance(confirmer, SplittingConfirmer):
        groups = _split_large_groups(groups, edges, confirmer)
    direct: dict[str, dict[str, str]] = defaultdict(dict)  # record -> partner -> reason
    for edge in edges:
        if edge.reason not in confirmer.handles:
            for a, b in ((edge.a, edge.b), (edge.b, edge.a)):
                current = direct[a].get(b)
                if current is None or _reason_rank(edge.reason) < _reason_rank(current):
                    direct[a][b] = edge.reason
    out: list[Duplicate] = []
    for members in groups:
        out.extend(_keeper_loop(sorted(members, key=lambda r: (-rank[r], r)), confirmer, direct))
    return sorted(out)


def _split_large_groups(
    groups: list[list[str]], edges: list[Edge], confirmer: SplittingConfirmer
) -> list[list[str]]:
    """Groups of more than `confirmer.split_above` records, split into the records linked by
    their edges other than `confirmer.proposals` and by the pairs `confirmer.linked_pairs`
    confirms (among the proposals and each record's nearest candidates).

    Candidate edges that link many similar but different records (crop windows, pHashes and
    captions of similar figures) make one large group whose members are mostly not copies:
    its keeper loop meets every member with every other, quadratic in the group. Confirming
    a bounded number of candidates a record first, and linking only those, keeps the parts
    small; a member is still dropped only when confirmed against its part's kept record."""
    limit = confirmer.split_above
    if limit is None or all(len(members) <= limit for members in groups):
        return groups
    firm = UnionFind()  # records linked by edges that stand as given
    proposed: dict[str, list[Edge]] = defaultdict(list)  # the proposals, by their first record
    for edge in edges:
        if edge.reason in confirmer.proposals:
            proposed[edge.a].append(edge)
        else:
            firm.union(edge.a, edge.b)
    out: list[list[str]] = []
    for members in groups:
        if len(members) <= limit:
            out.append(members)
            continue
        at = {rid: i for i, rid in enumerate(members)}
        given = [(at[e.a], at[e.b]) for rid in members for e in proposed.get(rid, ())]
        pairs = np.array(given, dtype=np.int64).reshape(-1, 2)
        first, second = confirmer.linked_pairs(
            confirmer.positions(members), (pairs[:, 0], pairs[:, 1])
        )
        for i, j in zip(first.tolist(), second.tolist()):
            firm.union(members[i], members[j])
        parts: dict[str, list[str]] = defaultdict(list)
        for rid in members:
            parts[firm.find(rid)].append(rid)
        out.extend(part for part in parts.values() if len(part) > 1)
    return out


def _keeper_loop(
    order: list[str], confirmer: Confirmer, direct: dict[str, dict[str, str]]
) -> list[Duplicate]:
    """The keeper loop over one group's members, best first: the first record still standing
    is kept and drops those confirmed against it. The standing members are a mask, so each
    round costs NumPy work over them plus Python work per drop only."""
    rows = confirmer.positions(order)
    at = {rid: i for i, rid in enumerate(order)}
    standing = np.ones(len(order), dtype=bool)
    out: list[Duplicate] = []
    for k, keep in enumerate(order):
        if not standing[k]:
            continue
        standing[k] = False
        rest = np.flatnonzero(standing[k + 1 :]) + k + 1
        if not len(rest):
            break
        drops: dict[int, str] = {}
        known = rest[rows[rest] >= 0] if rows[k] >= 0 else rest[:0]
        if len(known):
            for j, reason in confirmer.confirmed(int(rows[k]), rows[known]):
                drops[int(known[j])] = reason
        for partner, reason in direct.get(keep, {}).items():
            i = at.get(partner, -1)
            if i > k and standing[i]:
                drops.setdefault(i, reason)  # the confirmer's reason first
        for i, reason in drops.items():
            standing[i] = False
            out.append(Duplicate(order[i], reason, keep))
    return out


def component_keys(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """`(record_id, component key)` for every record of the pairs: the key is the smallest
    record id of its connected group, whatever the pair order. Only ids are held, so one call
    can label a whole collection's candidate groups for the per-group steps that follow."""
    uf = UnionFind()
    for a, b in pairs:
        uf.union(a, b)
    return [(rid, uf.find(rid)) for rid in list(uf.parent)]


def _connected_groups(edges: list[Edge]) -> tuple[list[list[str]], dict[str, float]]:
    """(the records of each connected group, every record's highest rank)."""
    uf = UnionFind()
    rank: dict[str, float] = {}
    for edge in edges:
        uf.union(edge.a, edge.b)
        for rid, r in ((edge.a, edge.a_rank), (edge.b, edge.b_rank)):
            rank[rid] = max(rank.get(rid, r), r)
    groups: dict[str, list[str]] = defaultdict(list)
    for rid in rank:
        groups[uf.find(rid)].append(rid)
    return list(groups.values()), rank


def _resolve_components(edges: list[Edge]) -> list[Duplicate]:
    """Every member of a connected group duplicates its representative (no confirmation)."""
    groups, rank = _connected_groups(edges)
    reasons: dict[str, str] = {}
    for edge in edges:
        for rid in (edge.a, edge.b):
            current = reasons.get(rid)
            if current is None or _reason_rank(edge.reason) < _reason_rank(current):
                reasons[rid] = edge.reason
    out: list[Duplicate] = []
    for members in groups:
        keep = min(members, key=lambda rid: (-rank[rid], rid))
        for rid in members:
            if rid != keep:
                out.append(Duplicate(rid, reasons[rid], keep))
    return sorted(out)


def apply_decisions(
    records: Iterable[dict], decisions: Iterable[tuple[str, str, str | None]], stage: str = "dedup"
) -> tuple[list[dict], list]:
    """Split records into kept ones and `Rejected` markers (reason, duplicate_of) by decisions.

    For the engine's in-memory path and tests; the Beam path joins decisions by record id.
    """
    from curate.stages import Rejected

    by_id = {rid: (reason, dup) for rid, reason, dup in decisions}
    kept, rejected = [], []
    for record in records:
        hit = by_id.get(str(record.get("record_id")))
        if hit is None:
            kept.append(record)
        else:
            rejected.append(
                Rejected(record=record, reason=hit[0], stage=stage, duplicate_of=hit[1])
            )
    return kept, rejected
