"""Shuffles count the pickled bytes and elements they move (curate.shuffle)."""

from __future__ import annotations

import pickle

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from curate.shuffle import MeasuredCoGroupByKey, MeasuredGroupByKey, shuffled_bytes


def _size(element: object) -> int:
    return len(pickle.dumps(element, protocol=pickle.HIGHEST_PROTOCOL))


def test_group_by_key_counts_every_element_it_moves() -> None:
    items = [(i % 3, b"x" * (10 * i)) for i in range(20)]
    left, right = [("a", 1), ("b", 2)], [("a", "z")]
    pipeline = beam.Pipeline(runner=FnApiRunner(), options=PipelineOptions([]))
    _ = pipeline | "Items" >> beam.Create(items) | MeasuredGroupByKey("test.items")
    _ = {
        "left": pipeline | "Left" >> beam.Create(left),
        "right": pipeline | "Right" >> beam.Create(right),
    } | MeasuredCoGroupByKey("test.join")
    result = pipeline.run()
    result.wait_until_finish()
    assert shuffled_bytes(result.metrics()) == {
        "test.items": {"bytes": sum(map(_size, items)), "elements": 20},
        "test.join": {"bytes": sum(map(_size, left + right)), "elements": 3},
    }


def test_total_order_equals_sorting_by_the_field_then_the_tie_breaker() -> None:
    """Output files sort rows by id; rows sharing an id (a record rejected twice, a unit with
    several errors) are ordered by the tie-breaker, made only for those rows."""
    import random

    from curate.shards.beam import _tie_breaker, _total_order

    rng = random.Random(5)
    rows = [
        {"record_id": f"r{rng.randrange(30)}", "reason": rng.choice("abc"), "n": rng.randrange(9)}
        for _ in range(200)
    ]
    expected = sorted(rows, key=lambda r: (str(r["record_id"]), _tie_breaker(r)))
    for _ in range(3):
        rng.shuffle(rows)
        assert _total_order(rows, "record_id") == expected
