"""Shuffles that count what they move: a GroupByKey (or CoGroupByKey) whose input elements'
pickled sizes go to a Beam counter, so a build can say how many bytes crossed the shuffle
(`curate.shuffle:<label>.bytes` / `.elements`; the manifest's timings and the cost benchmark
read them). The pickled size is what a runner serialises, give or take its coder's framing."""

from __future__ import annotations

import pickle
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

NAMESPACE = "curate.shuffle"


class _Measure(beam.DoFn):
    def __init__(self, label: str) -> None:
        self.label = label

    def setup(self) -> None:
        self.bytes = Metrics.counter(NAMESPACE, f"{self.label}.bytes")
        self.elements = Metrics.counter(NAMESPACE, f"{self.label}.elements")

    def process(self, element: Any):
        self.bytes.inc(len(pickle.dumps(element, protocol=pickle.HIGHEST_PROTOCOL)))
        self.elements.inc()
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
    """`beam.GroupByKey()` that counts the bytes and elements it shuffles."""

    def __init__(self, label: str) -> None:
        super().__init__()
        self.measure_label = label

    def expand(self, pcoll: Any) -> Any:
        return pcoll | "Measure" >> beam.ParDo(_Measure(self.measure_label)) | beam.GroupByKey()


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
