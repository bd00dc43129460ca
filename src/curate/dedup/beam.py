"""Beam transforms for phase 2: they output *decisions* for the records to drop.

A decision is a tuple `(record_id, reason, duplicate_of)`; every record without a decision is
kept. `duplicate_of` is the kept record's id for duplicates, `<benchmark>:<item_id>` for
benchmark leaks and None for quality drops.

    decisions = records | NearDuplicates(near_config)                      # image + caption
    vectors   = records | EmbedRecords(embed_config, "text", out_dir=OUT)  # curate.embed.beam
    decisions = records | NearDuplicates(near_config, vectors=vectors, semantic=semantic_config)
    decisions = sidecar_rows | NearDuplicates(near_config, from_sidecar=True)  # curate.dedup.sidecar

Benchmark leaks (`curate.decontaminate.beam`) and low image-text similarity
(`curate.rules.beam`) are decided the same way.

All grouping work happens on compact attributes (hashes, signatures, vectors); image bytes
are read once to hash them and never shuffled. With `from_sidecar=True` the input is rows of
`curate.dedup.sidecar.near_sidecar_rows` (hashes and signatures made where the records were
read), with the same decisions as from the records (which are turned into those rows
first). Edges only propose groups: each candidate group's edges and its records' rows go to
one call of the resolving step (`ConfirmedGroups`), which drops a member only when it is
confirmed against the group's kept record (`curate.dedup.confirm`: thumbnail gradients for
images, cues and images for captions). Shuffles are counted (`curate.shuffle`:
`<prefix>_image_groups|gradient_groups|crop_groups`, `<prefix>_caption_bands|signatures|candidates`,
`<prefix>_confirm_groups`) and so are the calls of each grouped step (`curate.dedup:<step>`
counters).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any, Literal, NamedTuple

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from threadpoolctl import ThreadpoolController

from curate.dedup.caption_lsh import (
    SignatureBatch,
    band_packs,
    candidate_memberships,
    caption_layout,
    join_candidates,
    signature_packs,
    verify_candidates,
)
from curate.dedup.components import ComponentLabels, RouteToGroups
from curate.dedup.config import NearDedupConfig, SemanticDedupConfig, TextNearConfig
from curate.dedup.confirm import CROP_CANDIDATE, IMAGE_REASON, PairConfirmer
from curate.dedup.crops import crop_members
from curate.dedup.groups import Edge, UnionFind, component_keys, resolve
from curate.dedup.near import (
    ImageGroup,
    ImageMember,
    NearAttributes,
    gradient_members,
    image_edges_for_group,
    image_group_bits,
    image_group_keys,
)
from curate.dedup.semantic import assign_clusters, cluster_edges, fit_centroids
from curate.dedup.sidecar import near_sidecar_rows, sidecar_attributes, sidecar_signature_batch
from curate.shuffle import MeasuredCoGroupByKey, MeasuredGroupByKey

Decision = tuple[str, str, Any]
CALLS_NAMESPACE = "curate.dedup"  # counters of Beam calls per grouped step
SHUFFLE_PREFIX = "phase2.near"  # shuffle counters: <prefix>_image_groups, <prefix>_caption_*


def _counted(name: str, func: Callable[..., list]) -> Callable[..., list]:
    """`func`, counting its calls (`curate.dedup:<name>`): how many Beam calls a step makes."""

    def call(*args: Any, **kwargs: Any) -> list:
        Metrics.counter(CALLS_NAMESPACE, name).inc()
        return func(*args, **kwargs)

    return call


def _resolve_all(edges: list[Edge]) -> list[Decision]:
    return [d.as_tuple() for d in resolve(edges)]


@lru_cache(maxsize=1)
def _blas_controller() -> ThreadpoolController:
    return ThreadpoolController()  # scans the loaded libraries once per worker process


def _resolve_confirmed(group: dict[str, list], config: NearDedupConfig) -> list[Decision]:
    """One candidate group (its edges and its members' rows): each drop confirmed against its
    kept record (curate.dedup.confirm). Its matrix products are small: BLAS threads would
    double the CPU (and take other workers' cores) for no time saved, so it runs on one."""
    with _blas_controller().limit(limits=1, user_api="blas"):
        confirmer = PairConfirmer(group["rows"], config)
        return [d.as_tuple() for d in resolve(group["edges"], confirmer)]


def _edge_ids(edge: Edge) -> tuple[str, str]:
    return (edge.a, edge.b)


def _in_group(
    element: Any, component: dict[str, str], record_id: Callable[[Any], str]
) -> list[tuple[str, Any]]:
    """`(component key, element)`, or nothing for a record in no candidate group."""
    key = component.get(record_id(element))
    return [] if key is None else [(key, element)]


class ConfirmedGroups(beam.PTransform):
    """{"edges": candidate edges, "rows": sidecar rows} -> decisions, one call per candidate
    group on the workers.

    The groups are labelled from the edges' record ids only: by one union-find call whose
    labels are a side input that routes each edge and each involved record's row to its group
    (`group_labels: one_process`: rows are shuffled once, only for records in some group), or
    on the workers (`distributed`: curate.dedup.components, no step holds every label; rows
    are joined to their labels, one more shuffle). Each group is resolved with its own rows
    (`_resolve_confirmed`): groups resolve in parallel, and a large group is split inside its
    call (`groups.resolve`: records link only by confirmed pairs, a bounded number a record),
    so its CPU grows linearly (benchmarks/bench_resolve_growth.py); it is still one call that
    holds its members' rows."""

    def __init__(self, config: NearDedupConfig, shuffle_prefix: str) -> None:
        super().__init__()
        self.config = config
        self.shuffle_prefix = shuffle_prefix

    def expand(self, inputs: dict[str, beam.PCollection]) -> beam.PCollection:
        edges, rows, config = inputs["edges"], inputs["rows"], self.config
        ids = edges | "EdgeIds" >> beam.Map(_edge_ids)
        prefix = self.shuffle_prefix
        if config.group_labels == "distributed":
            labels = ids | "ComponentLabels" >> ComponentLabels(config.label_rounds, prefix)
            members = {"labels": labels, "rows": rows, "edges": edges} | "Route" >> RouteToGroups(
                f"{prefix}_confirm_groups", f"{prefix}_group_labels"
            )
        else:
            component = beam.pvalue.AsDict(
                ids
                | "AllEdgeIds" >> beam.combiners.ToList()
                | "ComponentKeys" >> beam.FlatMap(component_keys)
            )
            members = {
                "edges": edges | "EdgeGroups" >> beam.FlatMap(_in_group, component, lambda e: e.a),
                "rows": rows
                | "RowGroups" >> beam.FlatMap(_in_group, component, lambda r: str(r["record_id"])),
            } | "GroupMembers" >> MeasuredCoGroupByKey(f"{prefix}_confirm_groups")
        return members | "ResolveGroup" >> beam.FlatMap(lambda kv: _resolve_group(kv[1], config))


class SemanticEdges(beam.PTransform):
    """(record_id, vector) -> duplicate edges, SemDeDup style (k-means on a sample, side input)."""

    def __init__(self, config: SemanticDedupConfig) -> None:
        super().__init__()
        self.config = config

    def expand(self, vectors: beam.PCollection) -> beam.PCollection:
        config = self.config
        centroids = (
            vectors
            | "SampleVectors" >> beam.combiners.Sample.FixedSizeGlobally(config.sample_size)
            | "FitCentroids"
            >> beam.Map(
                lambda sample: (
                    fit_centroids(np.stack([v for _, v in sample]), config) if sample else None
                )
            )
        )
        return (
            vectors
            | "AssignCluster"
            >> beam.Map(
                lambda item, c: (
                    int(assign_clusters(item[1][None, :], c)[0]),
                    (item[0], item[1], 0.0),
                ),
                c=beam.pvalue.AsSingleton(centroids),
            )
            | "GroupClusters" >> beam.GroupByKey()
            | "ClusterEdges"
            >> beam.FlatMap(
                lambda kv: cluster_edges(
                    list(kv[1]), config.eps, skip_siblings=config.tower == "text"
                )
            )
        )


def _image_member(attrs: NearAttributes, config: NearDedupConfig) -> list[ImageMember]:
    """The record as an image near-dup member, or nothing when it cannot link to any."""
    if attrs.image_hash is None:
        return []
    if config.image.confirm_dhash_max is not None and attrs.confirm_hash is None:
        return []  # a pair needs both dHashes to be confirmed
    rank = attrs.keep_rank(config.keep)
    return [(attrs.record_id, attrs.image_hash, rank, attrs.confirm_hash)]


def _crop_members(attrs: NearAttributes, config: NearDedupConfig) -> list[ImageMember]:
    """The record's full and window pHashes as members of the crop search."""
    rank = attrs.keep_rank(config.keep)
    return list(crop_members(attrs.record_id, attrs.image_hash, attrs.crop_hashes, rank))


CandidateSearch = Literal["image", "crop", "gradient"]
# each search's shuffle counter: <prefix>_<label>
SEARCH_SHUFFLES: dict[CandidateSearch, str] = {
    "image": "image_groups",
    "gradient": "gradient_groups",
    "crop": "crop_groups",
}


class _Search(NamedTuple):
    """One image candidate search: a record's members, the pHash bits and dHash bits of a
    pair, and the reason of its edges."""

    members: Callable[[NearAttributes, NearDedupConfig], list[ImageMember]]
    max_hamming: int
    confirm_max: int | None
    reason: str = IMAGE_REASON


def _candidate_search(kind: CandidateSearch, config: NearDedupConfig) -> _Search:
    image = config.image
    if kind == "crop":
        return _Search(_crop_members, image.crop.max_hamming, None, CROP_CANDIDATE)
    if kind == "gradient":
        return _Search(gradient_members, image.gradient_hash_max or 0, None)
    return _Search(_image_member, image.max_hamming, image.confirm_dhash_max)


def image_searches(config: NearDedupConfig) -> tuple[CandidateSearch, ...]:
    """The image candidate searches a config turns on: pHashes confirmed on dHash, then the
    thumbnails' gradient hashes and the full and window pHashes of the crop search."""
    kinds: list[CandidateSearch] = ["image"]
    if config.image.gradient_hash_max is not None:
        kinds.append("gradient")
    if config.image.crop.enabled:
        kinds.append("crop")
    return tuple(kinds)


def _between_records(edges: list[Edge]) -> list[Edge]:
    """A spanning forest of the records the edges link. The edges come from a forest of
    hashes, and a record holds several (crop windows): two of one record prove nothing, and
    many link the same records again. Image edges only propose groups (the confirmer decides
    every pair), so connectivity is all they must keep."""
    forest = UnionFind()
    return [e for e in edges if forest.union(e.a, e.b)]


def _search_members(
    attrs: NearAttributes, config: NearDedupConfig, searches: dict[CandidateSearch, _Search]
) -> dict[CandidateSearch, list[ImageMember]]:
    return {kind: search.members(attrs, config) for kind, search in searches.items()}


def _member_counts(members: dict[CandidateSearch, list[ImageMember]]) -> dict[str, int]:
    return {kind: len(found) for kind, found in members.items()}


def _sum_counts(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for part in counts:
        for kind, n in part.items():
            total[kind] = total.get(kind, 0) + n
    return total


def _group_bits(
    counts: dict[str, int], searches: dict[CandidateSearch, _Search], group_size: int
) -> dict[str, int]:
    return {
        kind: image_group_bits(counts.get(kind, 0), search.max_hamming, group_size)
        for kind, search in searches.items()
    }


def _search_shuffle(prefix: str) -> Callable[[Any], str]:
    return lambda element: f"{prefix}_{SEARCH_SHUFFLES[element[0][0]]}"


class ImageEdges(beam.PTransform):
    """NearAttributes -> image edges of every candidate search (`image_searches`), one call per
    search and group of probe-key buckets.

    A group is a block and the top bits of its keys (`image_group_keys`), as many bits as keep
    a group near `beam_group_size` hashes (from the count of each search's hashes, a side
    input), so the whole set is a few calls instead of one per probe key. Every close pair
    shares a key, hence a group; each group yields a spanning forest of its members' pairs.
    The searches share their steps and their one shuffle (counted per search:
    `<prefix>_image_groups|gradient_groups|crop_groups`)."""

    def __init__(
        self,
        config: NearDedupConfig,
        shuffle_prefix: str = SHUFFLE_PREFIX,
        kinds: tuple[CandidateSearch, ...] | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.shuffle_prefix = shuffle_prefix
        self.kinds = kinds if kinds is not None else image_searches(config)

    def expand(self, attrs: beam.PCollection) -> beam.PCollection:
        image = self.config.image
        searches = {kind: _candidate_search(kind, self.config) for kind in self.kinds}
        members = attrs | "ImageMembers" >> beam.Map(_search_members, self.config, searches)
        bits = (
            members
            | "CountHashes" >> beam.Map(_member_counts)
            | "CountImages" >> beam.CombineGlobally(_sum_counts)
            | "GroupBits" >> beam.Map(_group_bits, searches, image.beam_group_size)
        )

        def edges(item: tuple[tuple[CandidateSearch, ImageGroup], Iterable]) -> list[Edge]:
            (kind, group), packs = item
            search = searches[kind]
            found = [m for pack in packs for m in pack]
            return _between_records(
                _image_edges_for_group(
                    group,
                    found,
                    search.max_hamming,
                    search.confirm_max,
                    image.chunk_size,
                    search.reason,
                )
            )

        return (
            members
            | "ImageGroups"
            >> beam.FlatMap(_packed_by_group, searches, bits=beam.pvalue.AsSingleton(bits))
            | "GroupImages" >> MeasuredGroupByKey(label_of=_search_shuffle(self.shuffle_prefix))
            | "ImageEdges" >> beam.FlatMap(edges)
        )


def _packed_by_group(
    members: dict[CandidateSearch, list[ImageMember]],
    searches: dict[CandidateSearch, _Search],
    bits: dict[str, int],
) -> list[tuple[tuple[CandidateSearch, ImageGroup], list[ImageMember]]]:
    """`((search, group), the record's members in it)`: one shuffled element per search and
    group a record reaches, not one per hash and group (a record's crop windows share most of
    their groups)."""
    packs: dict[tuple[CandidateSearch, ImageGroup], list[ImageMember]] = {}
    for kind, found in members.items():
        max_hamming = searches[kind].max_hamming
        for member in found:
            for group in image_group_keys(member[1], max_hamming, bits[kind]):
                packs.setdefault((kind, group), []).append(member)
    return list(packs.items())


_image_edges_for_group = _counted("image_groups", image_edges_for_group)
_resolve_group = _counted("confirm_groups", _resolve_confirmed)
_candidate_memberships = _counted("caption_band_groups", candidate_memberships)
_join_candidates = _counted("caption_record_groups", join_candidates)
_verify_candidates = _counted("caption_routes", verify_candidates)


def _batch_size(batch: SignatureBatch) -> int:
    return len(batch.record_ids)


class CaptionEdges(beam.PTransform):
    """SignatureBatch -> caption edges, in grouped steps that shuffle compact packs
    (`curate.dedup.caption_lsh`): band keys without signatures, then each signature once, and
    only candidates' signatures again. A grouped step holds about `group_size` items (group
    counts from the number of signatures, a side input), so the whole set is a few calls."""

    def __init__(
        self, caption: TextNearConfig, group_size: int, shuffle_prefix: str = SHUFFLE_PREFIX
    ) -> None:
        super().__init__()
        self.caption = caption
        self.group_size = group_size
        self.shuffle_prefix = shuffle_prefix

    def expand(self, batches: beam.PCollection) -> beam.PCollection:
        cap, prefix = self.caption, self.shuffle_prefix
        layout = beam.pvalue.AsSingleton(
            batches
            | "CountSignatures" >> beam.Map(_batch_size)
            | "SumSignatures" >> beam.CombineGlobally(sum)
            | "Layout" >> beam.Map(caption_layout, cap.bands, self.group_size)
        )
        candidates = (
            batches
            | "BandPacks" >> beam.FlatMap(band_packs, cap.bands, cap.rows, layout=layout)
            | "GroupBands" >> MeasuredGroupByKey(f"{prefix}_caption_bands")
            | "CandidateBuckets"
            >> beam.FlatMap(lambda kv, lay: _candidate_memberships(kv[1], lay), lay=layout)
        )
        signatures = batches | "SignaturePacks" >> beam.FlatMap(signature_packs, layout=layout)
        return (
            {"signatures": signatures, "candidates": candidates}
            | "JoinSignatures" >> MeasuredCoGroupByKey(f"{prefix}_caption_signatures")
            | "CandidateSignatures"
            >> beam.FlatMap(lambda kv: _join_candidates(kv[1]["signatures"], kv[1]["candidates"]))
            | "GroupCandidates" >> MeasuredGroupByKey(f"{prefix}_caption_candidates")
            | "VerifyCandidates"
            >> beam.FlatMap(lambda kv: _verify_candidates(kv[1], cap.min_jaccard))
        )


class NearDuplicates(beam.PTransform):
    """records -> decisions `(record_id, reason, duplicate_of)` for near/semantic duplicates.

    `vectors` (a PCollection of `(record_id, vector)` from `EmbedRecords`) with an enabled
    `semantic` config adds SemDeDup edges to the same union-find, so groups are consistent
    across methods and one record per group survives.

    `from_sidecar=True`: the input is `curate.dedup.sidecar` rows (record_id, image_hash,
    confirm_hash, pixels, signature), made under the same config, instead of full records;
    the decisions are the same. `caption_group_size` (default `image.beam_group_size`) sizes
    the caption steps' groups; `shuffle_prefix` names their shuffle counters.
    """

    def __init__(
        self,
        config: NearDedupConfig,
        vectors: beam.PCollection | None = None,
        semantic: SemanticDedupConfig | None = None,
        text_batch_size: int = 1024,
        from_sidecar: bool = False,
        caption_group_size: int | None = None,
        shuffle_prefix: str = SHUFFLE_PREFIX,
    ) -> None:
        super().__init__()
        self.config = config
        self.vectors = vectors
        self.semantic = semantic
        self.text_batch_size = text_batch_size
        self.from_sidecar = from_sidecar
        self.caption_group_size = caption_group_size or config.image.beam_group_size
        self.shuffle_prefix = shuffle_prefix

    def _batches(self, label: str, pcoll: beam.PCollection) -> beam.PCollection:
        return pcoll | label >> beam.BatchElements(
            min_batch_size=min(64, self.text_batch_size), max_batch_size=self.text_batch_size
        )

    def _rows(self, records: beam.PCollection) -> beam.PCollection:
        """Sidecar rows: the input itself, or made here from full records (so both inputs take
        one path and the confirmation step reads the same columns)."""
        if self.from_sidecar:
            return records
        return self._batches("BatchRecords", records) | "NearRows" >> beam.FlatMap(
            near_sidecar_rows, self.config
        )

    def _signatures(self, rows: beam.PCollection) -> beam.PCollection:
        """SignatureBatches of the eligible captions (rows without one have a null signature)."""
        signed = rows | "SignedRows" >> beam.Filter(lambda r: r.get("signature") is not None)
        return self._batches("BatchRows", signed) | "SidecarSignatures" >> beam.Map(
            sidecar_signature_batch, self.config
        )

    def expand(self, records: beam.PCollection) -> beam.PCollection:
        config = self.config
        image = config.enabled and config.image.enabled
        caption = config.enabled and config.caption.enabled
        rows = self._rows(records) if image or caption else None
        edge_sets = []
        if image:
            attrs = rows | "SidecarAttributes" >> beam.Map(sidecar_attributes)
            edge_sets.append(attrs | "Image" >> ImageEdges(config, self.shuffle_prefix))
        if caption:
            assert rows is not None
            edge_sets.append(
                self._signatures(rows)
                | "Caption"
                >> CaptionEdges(config.caption, self.caption_group_size, self.shuffle_prefix)
            )
        if self.vectors is not None and self.semantic is not None and self.semantic.enabled:
            edge_sets.append(self.vectors | "Semantic" >> SemanticEdges(self.semantic))
        if not edge_sets:
            return records.pipeline | "NoDecisions" >> beam.Create([])
        edges = tuple(edge_sets) | "FlattenEdges" >> beam.Flatten()
        if rows is None:
            return (
                edges
                | "AllEdges" >> beam.combiners.ToList()
                | "ResolveGroups" >> beam.FlatMap(_resolve_all)
            )
        return {"edges": edges, "rows": rows} | "ResolveGroups" >> ConfirmedGroups(
            config, self.shuffle_prefix
        )
