"""Beam transform of benchmark decontamination: records -> decisions for leaked records.

Records are matched in batches on the workers: the index (and, for paraphrase matching, the
text model of `curate.embed.models`) is loaded once per worker process and shared by its
threads (`apache_beam.utils.shared`), and a batch's sentences are embedded in one call.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.utils import shared

from curate.decontaminate.benchmarks import BenchmarkIndex, first_leak
from curate.decontaminate.config import DecontamConfig


class _MatchBenchmarks(beam.DoFn):
    MATCHES = "matches"

    def __init__(self, config: DecontamConfig) -> None:
        self.config = config
        self._shared = shared.Shared()
        self.index: BenchmarkIndex | None = None

    def _load(self) -> BenchmarkIndex:
        return BenchmarkIndex.load(str(self.config.index), self.config)

    def setup(self) -> None:
        # one index per worker process; the config is part of the tag so two Decontaminate
        # transforms with different settings never share one
        tag = self.config.model_dump_json()
        self.index = self._shared.acquire(self._load, tag=tag)

    def process(self, batch: list[dict]) -> Iterator[Any]:
        if self.index is None:
            self.setup()
        assert self.index is not None
        for leaks in self.index.match_many(list(batch)):
            for leak in leaks:
                yield beam.pvalue.TaggedOutput(self.MATCHES, leak.as_row())
            chosen = first_leak(leaks)
            if chosen is not None:
                yield (chosen.record_id, chosen.reason, f"{chosen.benchmark}:{chosen.item_id}")


class Decontaminate(beam.PTransform):
    """records -> decisions `(record_id, "benchmark_leak:<name>", "<name>:<item_id>")`.

    With `with_matches=True` returns `{"decisions": ..., "matches": ...}`, where matches are
    dict rows (record_id, benchmark, item_id, kind, detail, reason, match, cosine) for the
    manifest; `match` is phash, verbatim or semantic, `cosine` set for semantic ones.
    """

    def __init__(self, config: DecontamConfig, with_matches: bool = False) -> None:
        super().__init__()
        self.config = config
        self.with_matches = with_matches

    def expand(self, records: beam.PCollection) -> Any:
        size = self.config.semantic.batch_size
        out = (
            records
            | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=size)
            | "MatchBenchmarks"
            >> beam.ParDo(_MatchBenchmarks(self.config)).with_outputs(
                _MatchBenchmarks.MATCHES, main="decisions"
            )
        )
        if self.with_matches:
            return {"decisions": out.decisions, "matches": out[_MatchBenchmarks.MATCHES]}
        return out.decisions
