"""Candidate groups without one process holding every edge: connected components in Beam.

`component_keys` (curate.dedup.groups) labels the groups in one call, from every candidate
edge's two ids, and its labels reach the workers as a side input: fine for a collection whose
edges fit one worker, not for all of PMC. `ComponentLabels` finds the same groups on the
workers:

1. Rounds of the large-star and small-star steps (Kiveris et al., "Connected Components in
   MapReduce and Beyond", SoCC 2014): each is one GroupByKey over the edges and keeps every
   component connected while pulling its nodes towards its smallest id; a few rounds leave
   most components as stars around that id.
2. Every node's provisional label: the smallest of itself and its neighbours.
3. An edge whose two ends got different labels (a component the rounds left unfinished) joins
   those two labels in one small union-find; only such label pairs reach that call, so it
   holds the unfinished components' labels, not the collection's edges. Correct after any
   number of rounds (with none it is every edge), cheap once the rounds have converged.

`RouteToGroups` then sends each edge and each grouped record's row to its group by joins on
the record id instead of a broadcast: rows cross one more shuffle, so the one-process
labelling stays the default for collections it can hold (`NearDedupConfig.group_labels`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import apache_beam as beam

from curate.dedup.groups import Edge, component_keys
from curate.shuffle import MeasuredCoGroupByKey, MeasuredGroupByKey

Pair = tuple[str, str]


def _both_ways(pair: Pair) -> list[Pair]:
    a, b = pair
    return [] if a == b else [(a, b), (b, a)]


def large_star(item: tuple[str, Iterable[str]]) -> list[Pair]:
    """Every larger neighbour of a node links to the smallest of the node and its neighbours."""
    node, neighbours = item
    found = set(neighbours)
    low = min(found | {node})
    return [(v, low) for v in found if v > node]


def _towards_smaller(pair: Pair) -> list[Pair]:
    a, b = pair
    return [] if a == b else [(max(a, b), min(a, b))]


def small_star(item: tuple[str, Iterable[str]]) -> list[Pair]:
    """A node and its smaller neighbours all link to the smallest of them."""
    node, smaller = item
    found = set(smaller) | {node}
    low = min(found)
    return [(v, low) for v in found if v != low]


def lowest_label(item: tuple[str, Iterable[str]]) -> tuple[str, str]:
    node, neighbours = item
    return node, min(set(neighbours) | {node})


def _label(joined: dict[str, list]) -> str | None:
    """The one label a joined node has (None: the node is in no candidate group)."""
    labels = joined["label"]
    return labels[0] if labels else None


def _label_of_first_end(item: tuple[str, dict[str, list]]) -> list[tuple[str, str]]:
    """(far end, label of this end) for each edge leaving a labelled node."""
    label = _label(item[1])
    return [] if label is None else [(far, label) for far in item[1]["edge"]]


def _differing_labels(item: tuple[str, dict[str, list]]) -> list[Pair]:
    label = _label(item[1])
    return [] if label is None else [(o, label) for o in item[1]["from"] if o != label]


def _merged_label(item: tuple[str, str], merged: dict[str, str]) -> tuple[str, str]:
    node, label = item
    return node, merged.get(label, label)


class ComponentLabels(beam.PTransform):
    """(a, b) id pairs -> (record id, group key) for every id of the pairs: the key is one id
    of its connected group, the same for the whole group (see the module docstring)."""

    def __init__(self, rounds: int, shuffle_prefix: str) -> None:
        super().__init__()
        self.rounds = rounds
        self.shuffle_prefix = shuffle_prefix

    def expand(self, pairs: beam.PCollection) -> beam.PCollection:
        label = f"{self.shuffle_prefix}_component_rounds"
        for n in range(self.rounds):
            pairs = (
                pairs
                | f"BothWays{n}" >> beam.FlatMap(_both_ways)
                | f"Neighbours{n}" >> MeasuredGroupByKey(label)
                | f"LargeStar{n}" >> beam.FlatMap(large_star)
                | f"TowardsSmaller{n}" >> beam.FlatMap(_towards_smaller)
                | f"Smaller{n}" >> MeasuredGroupByKey(label)
                | f"SmallStar{n}" >> beam.FlatMap(small_star)
            )
        provisional = (
            pairs
            | "BothWaysLast" >> beam.FlatMap(_both_ways)
            | "AllNeighbours" >> MeasuredGroupByKey(label)
            | "LowestLabel" >> beam.Map(lowest_label)
        )
        check = f"{self.shuffle_prefix}_component_check"
        far_labels = (
            {"label": provisional, "edge": pairs}
            | "JoinFirstEnd" >> MeasuredCoGroupByKey(check)
            | "FirstEndLabels" >> beam.FlatMap(_label_of_first_end)
        )
        merged = beam.pvalue.AsDict(
            {"label": provisional, "from": far_labels}
            | "JoinSecondEnd" >> MeasuredCoGroupByKey(check)
            | "DifferingLabels" >> beam.FlatMap(_differing_labels)
            | "Unfinished" >> beam.combiners.ToList()
            | "MergeLabels" >> beam.FlatMap(component_keys)
        )
        return provisional | "FinalLabel" >> beam.Map(_merged_label, merged)


def _routed(item: tuple[str, dict[str, list]]) -> list[tuple[str, tuple[str, Any]]]:
    """A record's row and the edges it starts, keyed by its group (nothing without one)."""
    _, joined = item
    key = _label(joined)
    if key is None:
        return []
    return [(key, ("row", row)) for row in joined["row"]] + [
        (key, ("edge", edge)) for edge in joined["edge"]
    ]


def _members(item: tuple[str, Iterable[tuple[str, Any]]]) -> tuple[str, dict[str, list]]:
    key, tagged = item
    group: dict[str, list] = {"edges": [], "rows": []}
    for tag, value in tagged:
        group["edges" if tag == "edge" else "rows"].append(value)
    return key, group


def _row_by_id(row: dict) -> tuple[str, dict]:
    return str(row["record_id"]), row


def _edge_by_first(edge: Edge) -> tuple[str, Edge]:
    return edge.a, edge


class RouteToGroups(beam.PTransform):
    """{"labels", "rows", "edges"} -> (group key, {"edges": [...], "rows": [...]}), joined by
    record id: no step holds every label."""

    def __init__(self, shuffle_label: str, join_label: str) -> None:
        super().__init__()
        self.shuffle_label = shuffle_label
        self.join_label = join_label

    def expand(self, inputs: dict[str, beam.PCollection]) -> beam.PCollection:
        return (
            {
                "label": inputs["labels"],
                "row": inputs["rows"] | "RowById" >> beam.Map(_row_by_id),
                "edge": inputs["edges"] | "EdgeByFirst" >> beam.Map(_edge_by_first),
            }
            | "JoinLabels" >> MeasuredCoGroupByKey(self.join_label)
            | "Route" >> beam.FlatMap(_routed)
            | "GroupMembers" >> MeasuredGroupByKey(self.shuffle_label)
            | "Members" >> beam.Map(_members)
        )


__all__ = ["ComponentLabels", "RouteToGroups", "large_star", "lowest_label", "small_star"]
