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
