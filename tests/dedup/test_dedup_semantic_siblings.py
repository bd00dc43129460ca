"""Text-tower semantic dedup never pairs records of one parent (the graphics of one figure, the
images of one study): they share their text by construction (issue: sibling panels dropped)."""

from __future__ import annotations

import numpy as np

from curate.dedup.semantic import cluster_edges, parent_id


def test_parent_of_a_figure_graphic_and_of_a_study_image() -> None:
    assert parent_id("PMC1/F2/0") == "PMC1/F2"
    assert parent_id("mimic/p1/s2/img3") == "mimic/p1/s2"


def test_siblings_are_not_text_duplicates_but_copies_elsewhere_are() -> None:
    same = np.ones(4, dtype=np.float32)
    members = [("PMC1/F2/0", same, 0.0), ("PMC1/F2/1", same, 0.0), ("PMC7/F1/0", same, 0.0)]
    text_edges = cluster_edges(members, eps=0.01, skip_siblings=True)
    assert all(parent_id(e.a) != parent_id(e.b) for e in text_edges)
    assert len(text_edges) == 2  # a copy in another article is still found, for each panel
    assert len(cluster_edges(members, eps=0.01)) == 2  # the image tower keeps sibling edges
