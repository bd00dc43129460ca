"""Beam transforms for phase 2: they output *decisions* for the records to drop.

A decision is a tuple `(record_id, reason, duplicate_of)`; every record without a decision is
kept. `duplicate_of` is the kept record's id for duplicates, `<benchmark>:<item_id>` for
benchmark leaks and None for quality drops.

    decisions = records | NearDuplicates(near_config)                      # image + caption
    vectors   = records | EmbedRecords(embed_config, "text", out_dir=OUT)  # curate.embed.beam
    decisions = records | NearDuplicates(near_config, vectors=vectors, semantic=semantic_config)

Benchmark leaks (`curate.decontaminate.beam`) and low image-text similarity
(`curate.rules.beam`) are decided the same way.

All grouping work happens on compact attributes (hashes, signatures, vectors); image bytes
are read once to hash them and never shuffled.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import numpy as np

from curate.dedup.config import NearDedupConfig, SemanticDedupConfig
from curate.dedup.groups import Edge, resolve
from curate.dedup.minhash import MinHasher, lsh_band_keys
from curate.dedup.near import (
    ImageMember,
    NearAttributes,
    eligible_text,
    image_edges_for_group,
    image_group_bits,
    image_group_keys,
    near_attributes,
    text_edges_in_bucket,
    text_hasher,
)
from curate.dedup.semantic import assign_clusters, cluster_edges, fit_centroids

Decision = tuple[str, str, Any]


class _Signatures(beam.DoFn):
    """Batches of NearAttributes -> (record_id, signature, rank), MinHash over the whole batch."""

    def __init__(self, config: NearDedupConfig) -> None:
        self.config = config
        self.hasher: MinHasher | None = None

    def setup(self) -> None:
        self.hasher = text_hasher(self.config.caption)

    def process(self, batch: list[NearAttributes]) -> Iterator[tuple[str, np.ndarray, float]]:
        if self.hasher is None:
            self.setup()
        assert self.hasher is not None
        sigs = self.hasher.signatures([a.text or "" for a in batch]).values
        for attrs, sig in zip(batch, sigs):
            yield (attrs.record_id, sig, attrs.keep_rank(self.config.keep))


def _band_items(item: tuple[str, np.ndarray, float], bands: int, rows: int):
    keys = lsh_band_keys(item[1][None, :], bands, rows)[0]
    return [((band, int(key)), item) for band, key in enumerate(keys.tolist())]


def _resolve_all(edges: list[Edge]) -> list[Decision]:
    return [d.as_tuple() for d in resolve(edges)]


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
            | "ClusterEdges" >> beam.FlatMap(lambda kv: cluster_edges(list(kv[1]), config.eps))
        )


def _image_member(attrs: NearAttributes, config: NearDedupConfig) -> list[ImageMember]:
    """The record as an image near-dup member, or nothing when it cannot link to any."""
    if attrs.image_hash is None:
        return []
    if config.image.confirm_dhash_max is not None and attrs.confirm_hash is None:
        return []  # a pair needs both dHashes to be confirmed
    rank = attrs.keep_rank(config.keep)
    return [(attrs.record_id, attrs.image_hash, rank, attrs.confirm_hash)]


class ImageEdges(beam.PTransform):
    """NearAttributes -> image edges, one call per group of probe-key buckets.

    A group is a block and the top bits of its keys (`image_group_keys`), as many bits as keep
    a group near `beam_group_size` hashes (from the count of hashes, a side input), so the
    whole set is a few calls instead of one per probe key. Every close pair shares a key,
    hence a group; each group yields a spanning forest of its members' pairs."""

    def __init__(self, config: NearDedupConfig) -> None:
        super().__init__()
        self.config = config

    def expand(self, attrs: beam.PCollection) -> beam.PCollection:
        image = self.config.image
        members = attrs | "ImageMembers" >> beam.FlatMap(_image_member, self.config)
        bits = (
            members
            | "CountImages" >> beam.combiners.Count.Globally()
            | "GroupBits" >> beam.Map(image_group_bits, image.max_hamming, image.beam_group_size)
        )
        return (
            members
            | "ImageGroups"
            >> beam.FlatMap(
                lambda m, b: [(g, m) for g in image_group_keys(m[1], image.max_hamming, b)],
                b=beam.pvalue.AsSingleton(bits),
            )
            | "GroupImages" >> beam.GroupByKey()
            | "ImageEdges"
            >> beam.FlatMap(
                lambda kv: image_edges_for_group(
                    kv[0],
                    list(kv[1]),
                    image.max_hamming,
                    image.confirm_dhash_max,
                    image.chunk_size,
                )
            )
        )


class NearDuplicates(beam.PTransform):
    """records -> decisions `(record_id, reason, duplicate_of)` for near/semantic duplicates.

    `vectors` (a PCollection of `(record_id, vector)` from `EmbedRecords`) with an enabled
    `semantic` config adds SemDeDup edges to the same union-find, so groups are consistent
    across methods and one record per group survives.
    """

    def __init__(
        self,
        config: NearDedupConfig,
        vectors: beam.PCollection | None = None,
        semantic: SemanticDedupConfig | None = None,
        text_batch_size: int = 1024,
    ) -> None:
        super().__init__()
        self.config = config
        self.vectors = vectors
        self.semantic = semantic
        self.text_batch_size = text_batch_size

    def expand(self, records: beam.PCollection) -> beam.PCollection:
        config = self.config
        attrs = records | "NearAttributes" >> beam.Map(near_attributes, config)
        edge_sets = []
        if config.enabled and config.image.enabled:
            edge_sets.append(attrs | "Image" >> ImageEdges(config))
        if config.enabled and config.caption.enabled:
            cap = config.caption
            text_edges = (
                attrs
                | "EligibleText" >> beam.Filter(lambda a: eligible_text(a.text, cap))
                | "BatchText"
                >> beam.BatchElements(
                    min_batch_size=min(64, self.text_batch_size),
                    max_batch_size=self.text_batch_size,
                )
                | "MinHash" >> beam.ParDo(_Signatures(config))
                | "Bands" >> beam.FlatMap(_band_items, cap.bands, cap.rows)
                | "GroupBands" >> beam.GroupByKey()
                | "CaptionEdges"
                >> beam.FlatMap(lambda kv: text_edges_in_bucket(list(kv[1]), cap.min_jaccard))
            )
            edge_sets.append(text_edges)
        if self.vectors is not None and self.semantic is not None and self.semantic.enabled:
            edge_sets.append(self.vectors | "Semantic" >> SemanticEdges(self.semantic))
        if not edge_sets:
            return records.pipeline | "NoDecisions" >> beam.Create([])
        return (
            tuple(edge_sets)
            | "FlattenEdges" >> beam.Flatten()
            | "AllEdges" >> beam.combiners.ToList()
            | "ResolveGroups" >> beam.FlatMap(_resolve_all)
        )
