"""Beam wrapper: `GenerateInstructions(config)` over a PCollection of split-assigned records.

Per split, a deterministic sample of compact records (the `distractor_pool_size` records whose
sha256(record_id) is smallest) becomes a side input; each record's matching distractors come
from its own split only, so matching never leaks text across splits. Records are batched so the
LLM generator can keep `concurrency` requests in flight per worker.

Outputs (tagged): main = instruction dicts, 'rejected' = `Rejected`, 'failed' = `Failed`.
Usage counters go to Beam metrics (namespace `curate.instruct`).
"""

from __future__ import annotations

import hashlib
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from curate.instruct import records as R
from curate.instruct.config import InstructConfig
from curate.stages import Failed, Rejected

REJECTED = "rejected"
FAILED = "failed"
MAIN = "instructions"
NAMESPACE = "curate.instruct"


def _pool_rank(entry: dict[str, Any]) -> str:
    return hashlib.sha256(str(entry.get("record_id")).encode()).hexdigest()


def _sorted_pool(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(entries, key=lambda e: str(e.get("record_id")))


class _GenerateDoFn(beam.DoFn):
    def __init__(self, config: InstructConfig) -> None:
        self.config = config
        self.generator: Any = None
        self._reported: dict[str, int] = {}
        self._counters: dict[str, Any] = {}

    def setup(self) -> None:
        from curate.instruct.generator import InstructionGenerator

        self.generator = InstructionGenerator(self.config)
        self.generator.setup()

    def teardown(self) -> None:
        if self.generator is not None:
            self.generator.teardown()

    def process(self, batch: list[dict[str, Any]], pools: dict[str, list[dict[str, Any]]]):
        by_split: dict[Any, list[dict[str, Any]]] = {}
        for record in batch:
            by_split.setdefault(record.get("split"), []).append(record)
        for split, records in sorted(by_split.items(), key=lambda kv: str(kv[0])):
            pool = pools.get(str(split), [])
            for outputs in self.generator.generate_batch(records, pool):
                for item in outputs:
                    if isinstance(item, Rejected):
                        yield beam.pvalue.TaggedOutput(REJECTED, item)
                    elif isinstance(item, Failed):
                        yield beam.pvalue.TaggedOutput(FAILED, item)
                    else:
                        yield item
        self._report_usage()

    def _report_usage(self) -> None:
        # Metrics are deltas: report what grew since the last bundle.
        for name, value in self.generator.usage().items():
            if not isinstance(value, int):
                continue
            delta = value - self._reported.get(name, 0)
            if delta:
                counter = self._counters.setdefault(name, Metrics.counter(NAMESPACE, name))
                counter.inc(delta)
                self._reported[name] = value


def usage_from_metrics(metrics: Any, config: InstructConfig) -> dict[str, Any]:
    """The manifest's `instruct.usage` from a finished pipeline's metrics (summed over workers),
    with the estimated cost from the configured prices."""
    from apache_beam.metrics.metric import MetricsFilter

    from curate.instruct.llm import Usage

    usage = Usage(
        price_per_1k_input=config.llm.price_per_1k_input,
        price_per_1k_output=config.llm.price_per_1k_output,
    )
    query = metrics.query(MetricsFilter().with_namespace(NAMESPACE))
    for counter in query["counters"]:
        name = counter.key.metric.name
        if hasattr(usage, name) and isinstance(getattr(usage, name), int):
            value = counter.committed if counter.committed is not None else counter.attempted
            setattr(usage, name, getattr(usage, name) + int(value or 0))
    return usage.as_dict()


class GenerateInstructions(beam.PTransform):
    def __init__(self, config: InstructConfig) -> None:
        super().__init__()
        self.config = config

    def expand(self, records):
        size = self.config.distractor_pool_size
        pools = (
            records
            | "Compact" >> beam.Map(lambda r: (str(r.get("split")), R.compact(r)))
            | "SamplePerSplit"
            >> beam.combiners.Top.PerKey(max(size, 1), key=_pool_rank, reverse=True)
            | "SortPool"
            >> beam.MapTuple(lambda split, entries: (split, _sorted_pool(entries) if size else []))
        )
        return (
            records
            | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=self.config.batch_size)
            | "Generate"
            >> beam.ParDo(_GenerateDoFn(self.config), pools=beam.pvalue.AsDict(pools)).with_outputs(
                REJECTED, FAILED, main=MAIN
            )
        )
