"""Beam transform of benchmark decontamination: records -> decisions for leaked records."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import apache_beam as beam

from curate.decontaminate.benchmarks import BenchmarkIndex, first_leak
from curate.decontaminate.config import DecontamConfig


class _MatchBenchmarks(beam.DoFn):
    MATCHES = "matches"

    def __init__(self, config: DecontamConfig) -> None:
        self.config = config
        self.index: BenchmarkIndex | None = None

    def setup(self) -> None:
        self.index = BenchmarkIndex.load(str(self.config.index), self.config)

    def process(self, record: dict) -> Iterator[Any]:
        if self.index is None:
            self.setup()
        assert self.index is not None
        leaks = self.index.match(record)
        for leak in leaks:
            yield beam.pvalue.TaggedOutput(self.MATCHES, leak.as_row())
        chosen = first_leak(leaks)
        if chosen is not None:
            yield (chosen.record_id, chosen.reason, f"{chosen.benchmark}:{chosen.item_id}")


class Decontaminate(beam.PTransform):
    """records -> decisions `(record_id, "benchmark_leak:<name>", "<name>:<item_id>")`.

    With `with_matches=True` returns `{"decisions": ..., "matches": ...}`, where matches are
    dict rows (record_id, benchmark, item_id, kind, detail, reason) for the manifest.
    """

    def __init__(self, config: DecontamConfig, with_matches: bool = False) -> None:
        super().__init__()
        self.config = config
        self.with_matches = with_matches

    def expand(self, records: beam.PCollection) -> Any:
        out = records | "MatchBenchmarks" >> beam.ParDo(_MatchBenchmarks(self.config)).with_outputs(
            _MatchBenchmarks.MATCHES, main="decisions"
        )
        if self.with_matches:
            return {"decisions": out.decisions, "matches": out[_MatchBenchmarks.MATCHES]}
        return out.decisions
