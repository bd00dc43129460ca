"""Shuffles that count what they move: a GroupByKey (or CoGroupByKey) whose input elements'
pickled sizes go to a Beam counter, so a build can say how many bytes crossed the shuffle
(`curate.shuffle:<label>.bytes` / `.elements`; the manifest's timings and the cost benchmark
read them). The pickled size is what a runner serialises, give or take its coder's framing."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

NAMESPACE = "curate.shuffle"


class _Measure(beam.DoFn):
    """Counts each element under `label`, or under `label_of(element)` (one shuffle that
    carries several kinds of element, each counted apart)."""

    def __init__(self, label: str | None, label_of: Callable[[Any], str] | None = None) -> None:
        self.label = label
        self.label_of = label_of

    def setup(self) -> None:
        self.counters: dict[str, tuple[Any, Any]] = {}

    def _counters(self, label: str) -> tuple[Any, Any]:
        found = self.counters.get(label)
        if found is None:
            found = self.counters[label] = (
                Metrics.counter(NAMESPACE, f"{label}.bytes"),
                Metrics.counter(NAMESPACE, f"{label}.elements"),
            )
        return found

    def process(self, element: Any):
        label = self.label_of(element) if self.label_of is not None else self.label
        assert label is not None
        size, count = self._counters(label)
        size.inc(len(pickle.dumps(element, protocol=pickle.HIGHEST_PROTOCOL)))
        count.inc()
        yield element


class MeasureShuffle(beam.PTransform):
    """Counts the elements about to enter a shuffle that is not a plain GroupByKey (a
    CombinePerKey, whose combiner lifting may move less: an upper bound)."""

    def __init__(self, label: str) -> None:
        super().__init__()
        self.measure_label = label

    def expand(self, pcoll: Any) -> Any:
        return pcoll | beam.ParDo(_Measure(self.measure_label))


class MeasuredGroupByKey(beam.PTransform):
    """`beam.GroupByKey()` that counts the bytes and elements it shuffles, under `label` or,
    for a shuffle of several kinds of element, under `label_of(element)`."""

    def __init__(self, label: str | None = None, label_of: Callable[[Any], str] | None = None):
        super().__init__()
        if (label is None) == (label_of is None):
            raise ValueError("give a label or a label_of function")
        self.measure_label = label
        self.label_of = label_of

    def expand(self, pcoll: Any) -> Any:
        measure = _Measure(self.measure_label, self.label_of)
        return pcoll | "Measure" >> beam.ParDo(measure) | beam.GroupByKey()


class MeasuredCoGroupByKey(beam.PTransform):
    """`beam.CoGroupByKey()` over a dict of PCollections, counting what each input shuffles."""

    def __init__(self, label: str) -> None:
        super().__init__()
        self.measure_label = label

    def expand(self, inputs: dict[str, Any]) -> Any:
        measured = {
            tag: pcoll | f"Measure_{tag}" >> beam.ParDo(_Measure(self.measure_label))
            for tag, pcoll in inputs.items()
        }
        return measured | beam.CoGroupByKey()


def shuffled_bytes(metrics: Any) -> dict[str, dict[str, int]]:
    """{label: {"bytes": n, "elements": n}} from a finished pipeline's metrics."""
    from apache_beam.metrics.metric import MetricsFilter

    out: dict[str, dict[str, int]] = {}
    for counter in metrics.query(MetricsFilter().with_namespace(NAMESPACE))["counters"]:
        label, _, kind = counter.key.metric.name.rpartition(".")
        value = counter.committed if counter.committed is not None else counter.attempted
        entry = out.setdefault(label, {"bytes": 0, "elements": 0})
        entry[kind] = entry.get(kind, 0) + int(value or 0)
    return dict(sorted(out.items()))
