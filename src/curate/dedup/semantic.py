"""Semantic dedup after SemDeDup (Abbas et al. 2023), keeping one record per group.

1. Fit spherical k-means on a sample of the (L2-normalised) embeddings: `fit_centroids`.
2. Assign every record to its nearest centroid (the centroids are a Beam side input).
3. Within each cluster, pairs with cosine similarity > 1 - eps are duplicates: `cluster_edges`.

SemDeDup's released code removes every member of a duplicate group (its issue #8); here the
edges go into the same union-find as the near-duplicate edges and one member survives.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from curate.dedup.config import SemanticDedupConfig
from curate.dedup.groups import Duplicate, Edge, UnionFind, resolve

SEMANTIC_REASON = "semantic_duplicate"


def normalize_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def fit_centroids(vectors: np.ndarray, config: SemanticDedupConfig) -> np.ndarray:
    """Spherical k-means (cosine) on at most `sample_size` rows; returns unit-norm centroids."""
    x = normalize_rows(vectors)
    if len(x) == 0:
        return np.zeros((0, x.shape[1] if x.ndim == 2 else 0), np.float32)
    rng = np.random.default_rng(config.seed)
    if len(x) > config.sample_size:
        x = x[np.sort(rng.choice(len(x), config.sample_size, replace=False))]
    k = min(config.n_clusters, len(x))
    # k-means++ style seeding on cosine distance, then Lloyd iterations on the sphere.
    centroids = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        dist = 1.0 - np.max(x @ np.stack(centroids).T, axis=1)
        dist = np.clip(dist, 0, None)
        total = float(dist.sum())
        if total <= 0:
            break
        centroids.append(x[rng.choice(len(x), p=dist / total)])
    c = np.stack(centroids)
    for _ in range(config.kmeans_iterations):
        labels = np.argmax(x @ c.T, axis=1)
        new = np.zeros_like(c)
        np.add.at(new, labels, x)
        empty = np.linalg.norm(new, axis=1) < 1e-12
        new[empty] = c[empty]
        new = normalize_rows(new)
        if np.allclose(new, c, atol=1e-6):
            c = new
            break
        c = new
    return c.astype(np.float32)


def assign_clusters(vectors: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    return np.argmax(normalize_rows(vectors) @ centroids.T, axis=1)


def parent_id(record_id: str) -> str:
    """The unit part of a record id: `<pmcid>/<figure id>` for a figure's graphic
    `<pmcid>/<figure id>/<graphic index>`, the study for an image of a study."""
    return record_id.rsplit("/", 1)[0]


def cluster_edges(
    members: Sequence[tuple[str, np.ndarray, float]],
    eps: float,
    reason: str = SEMANTIC_REASON,
    chunk: int = 2048,
    *,
    skip_siblings: bool = False,
) -> list[Edge]:
    """Edges between (record_id, vector, keep_rank) members with cosine > 1 - eps. With
    `skip_siblings` (the text tower) records of one parent are never edges: the graphics of one
    figure, or the images of one study, share their text by construction, not by copying."""
    if len(members) < 2:
        return []
    members = sorted(members, key=lambda m: m[0])
    ids = [m[0] for m in members]
    x = normalize_rows(np.stack([m[1] for m in members]))
    uf = UnionFind()
    edges: list[Edge] = []
    for lo in range(0, len(ids), chunk):
        sims = x[lo : lo + chunk] @ x.T
        rows, cols = np.nonzero(sims > 1.0 - eps)
        for r, c in zip(rows.tolist(), cols.tolist()):
            i = lo + r
            if i >= c or (skip_siblings and parent_id(ids[i]) == parent_id(ids[c])):
                continue
            if uf.union(ids[i], ids[c]):
                edges.append(Edge(ids[i], ids[c], reason, members[i][2], members[c][2]))
    return edges


def semantic_edges(
    ids: Sequence[str],
    vectors: np.ndarray,
    config: SemanticDedupConfig,
    ranks: dict[str, float] | None = None,
) -> list[Edge]:
    if len(ids) < 2:
        return []
    centroids = fit_centroids(vectors, config)
    labels = assign_clusters(vectors, centroids)
    clusters: dict[int, list[tuple[str, np.ndarray, float]]] = defaultdict(list)
    for rid, vec, label in zip(ids, vectors, labels.tolist()):
        clusters[label].append((rid, vec, (ranks or {}).get(rid, 0.0)))
    edges: list[Edge] = []
    for label in sorted(clusters):
        edges.extend(
            cluster_edges(clusters[label], config.eps, skip_siblings=config.tower == "text")
        )
    return edges


def find_semantic_duplicates(
    ids: Sequence[str],
    vectors: np.ndarray,
    config: SemanticDedupConfig | None = None,
    ranks: dict[str, float] | None = None,
) -> list[Duplicate]:
    config = config or SemanticDedupConfig(enabled=True)
    return resolve(semantic_edges(ids, vectors, config, ranks))


def find_semantic_duplicates_from_sidecar(
    path: str,
    config: SemanticDedupConfig,
    ranks: dict[str, float] | None = None,
) -> list[Duplicate]:
    """Re-run semantic dedup with new thresholds on a stored embeddings sidecar (no re-embedding)."""
    from curate.embed.beam import read_sidecar

    ids, matrix, _ = read_sidecar(path)
    return find_semantic_duplicates(ids, matrix, config, ranks)
