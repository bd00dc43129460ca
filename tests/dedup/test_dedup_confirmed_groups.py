"""Phase 2 resolves near-dup candidate groups one call per group (curate.dedup.beam
.ConfirmedGroups): only ids reach the one call that finds the groups, and only the rows of
records in some group are shuffled, to their group."""

from __future__ import annotations

import random

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to

from curate.dedup.beam import CALLS_NAMESPACE, NearDuplicates
from curate.dedup.config import NearDedupConfig
from curate.dedup.groups import component_keys
from curate.dedup.near import find_near_duplicates
from curate.demo.near_duplicates import generate
from curate.shuffle import shuffled_bytes


def test_component_keys_are_the_smallest_id_whatever_the_order():
    pairs = [("d", "c"), ("c", "b"), ("x", "y"), ("b", "a")]
    expected = {"a": "a", "b": "a", "c": "a", "d": "a", "x": "x", "y": "x"}
    for seed in range(5):
        shuffled = [
            p if random.Random(seed + i).random() < 0.5 else p[::-1] for i, p in enumerate(pairs)
        ]
        random.Random(seed).shuffle(shuffled)
        assert dict(component_keys(shuffled)) == expected


def _counter(result, name: str) -> int:
    counters = result.metrics().query(MetricsFilter().with_namespace(CALLS_NAMESPACE))["counters"]
    return sum(int(c.committed or c.attempted or 0) for c in counters if c.key.metric.name == name)


def test_groups_resolve_in_their_own_calls_and_lone_records_are_not_shuffled():
    planted = generate(n_originals=40, copies_per_variant=3, seed=11, variants=("reencoded",))
    records = [p.record for p in planted]
    config = NearDedupConfig()
    # no caption or crop search: these unrelated figures then form no candidate group
    crop = config.image.crop.model_copy(update={"enabled": False})
    image_only = config.model_copy(
        update={
            "caption": config.caption.model_copy(update={"enabled": False}),
            "image": config.image.model_copy(update={"crop": crop}),
        }
    )
    expected = [d.as_tuple() for d in find_near_duplicates(records, image_only)]
    assert len(expected) == 3  # the planted copies, each against its original

    pipeline = beam.Pipeline(runner=FnApiRunner(), options=PipelineOptions([]))
    decisions = pipeline | beam.Create(records) | NearDuplicates(image_only, shuffle_prefix="t")
    assert_that(decisions, equal_to(expected))
    result = pipeline.run()
    result.wait_until_finish()

    groups = _counter(result, "confirm_groups")
    assert groups >= len(expected)  # one call per candidate group, not one for everything
    shuffled = shuffled_bytes(result.metrics())["t_confirm_groups"]
    # the groups' edges and rows only: every row shuffled would alone be 43 elements
    assert 2 * len(expected) <= shuffled["elements"] < len(records)


def _partition(labels) -> set[frozenset[str]]:
    groups: dict[str, set[str]] = {}
    for rid, key in labels:
        groups.setdefault(key, set()).add(rid)
    return {frozenset(members) for members in groups.values()}


def _graphs():
    rng = random.Random(7)
    path = [(f"p{i:03d}", f"p{i + 1:03d}") for i in range(60)]  # long chains need many rounds
    reversed_path = [(f"q{i + 1:03d}", f"q{i:03d}") for i in range(60)]
    star = [("s000", f"s{i:03d}") for i in range(1, 40)] + [(f"h{i:02d}", "s020") for i in range(9)]
    nodes = [f"r{i:03d}" for i in range(200)]
    random_forest = [(nodes[i], rng.choice(nodes[:i])) for i in range(1, 200) if rng.random() < 0.9]
    random_graph = [tuple(rng.sample(nodes, 2)) for _ in range(150)]
    return {
        "path": path,
        "reversed path": reversed_path,
        "star": star,
        "forest": random_forest,
        "random": random_graph,
        "mixed": path + star + random_graph,
    }


def test_distributed_component_labels_find_the_one_process_groups():
    """Whatever the rounds (0: the union-find alone; 1: long chains left unfinished; 3), the
    workers' labels give the groups of `component_keys`."""
    from curate.dedup.components import ComponentLabels

    for name, pairs in _graphs().items():
        expected = _partition(component_keys(pairs))
        for rounds in (0, 1, 3):
            pipeline = beam.Pipeline(runner=FnApiRunner(), options=PipelineOptions([]))
            labels = pipeline | beam.Create(pairs) | ComponentLabels(rounds, "t")
            assert_that(
                labels | beam.combiners.ToList() | beam.Map(_partition),
                equal_to([expected]),
                label=f"{name}-{rounds}",
            )
            pipeline.run().wait_until_finish()


def test_star_steps_keep_the_groups_and_pull_towards_the_smallest_id():
    from curate.dedup.components import large_star, small_star

    assert sorted(large_star(("c", ["a", "d", "e"]))) == [("d", "a"), ("e", "a")]
    assert large_star(("e", ["c"])) == []  # no larger neighbour
    assert sorted(small_star(("d", ["b", "c"]))) == [("c", "b"), ("d", "b")]


def test_distributed_group_labels_decide_as_one_process():
    """The near-dup decisions of the whole Beam path are the same with the groups labelled on
    the workers (joins, no broadcast) as with the one-process labelling."""
    planted = generate(n_originals=30, copies_per_variant=2, seed=5)
    records = [p.record for p in planted]
    expected = [d.as_tuple() for d in find_near_duplicates(records, NearDedupConfig())]
    assert expected
    distributed = NearDedupConfig(group_labels="distributed", label_rounds=2)
    pipeline = beam.Pipeline(runner=FnApiRunner(), options=PipelineOptions([]))
    decisions = pipeline | beam.Create(records) | NearDuplicates(distributed, shuffle_prefix="t")
    assert_that(decisions, equal_to(expected))
    result = pipeline.run()
    result.wait_until_finish()
    shuffles = shuffled_bytes(result.metrics())
    assert shuffles["t_group_labels"]["elements"] > 0 and shuffles["t_component_rounds"]
