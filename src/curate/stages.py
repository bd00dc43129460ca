"""Stages: one unit of work, one small class (datatrove style), engine-agnostic.

A `Stage.process(record)` yields records that go on and `Rejected` markers for records a rule
dropped; raising a `CurateError` (or anything else) turns that record into a `Failed` dead
letter for this stage. `run_chain` applies stages in order and keeps the per-stage
accounting (`in == out + rejected + errors`). Beam wrappers in `curate.build` call the same
code, so the pure chain is what unit tests exercise.
"""

from __future__ import annotations

import re
import traceback
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from curate.errors import CurateError
from curate.timing import StageTiming, Stopwatch

Record = dict[str, Any]

# Library messages sometimes embed object addresses ("<_io.BytesIO object at 0x7f..>"); they
# would make error files differ between identical runs.
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


@dataclass
class Rejected:
    """A record a rule dropped, with a snake_case reason (and the id it duplicates, if any)."""

    record: Record
    reason: str
    stage: str = ""
    duplicate_of: str | None = None

    def as_row(self) -> dict[str, Any]:
        """The full record plus reason, reject_stage and duplicate_of (a row of `rejects/`)."""
        row = dict(self.record)
        row["reason"] = self.reason
        row["reject_stage"] = self.stage or "unknown"
        row["duplicate_of"] = self.duplicate_of
        return row


@dataclass
class Failed:
    """An input or record that failed, with where and why."""

    source_uri: str
    stage: str
    error_type: str
    reason: str
    message: str
    unit_id: str | None = None
    record_id: str | None = None

    @classmethod
    def from_exception(
        cls,
        exc: BaseException,
        *,
        stage: str,
        source_uri: str,
        unit_id: str | None = None,
        record_id: str | None = None,
    ) -> Failed:
        reason = exc.reason if isinstance(exc, CurateError) else "unexpected_error"
        message = str(exc) or exc.__class__.__name__
        if not isinstance(exc, CurateError):
            # An unexpected exception is a bug somewhere: keep the innermost frame to find it.
            tb = traceback.extract_tb(exc.__traceback__)
            if tb:
                last = tb[-1]
                message = f"{message} (at {last.filename.rsplit('/', 1)[-1]}:{last.lineno})"
        return cls(
            source_uri=source_uri,
            stage=stage,
            error_type=type(exc).__name__,
            reason=reason,
            message=_ADDRESS.sub("", message)[:2000],
            unit_id=unit_id,
            record_id=record_id,
        )

    def as_row(self) -> dict[str, Any]:
        return {
            "source_uri": self.source_uri,
            "unit_id": self.unit_id,
            "record_id": self.record_id,
            "stage": self.stage,
            "error_type": self.error_type,
            "reason": self.reason,
            "message": self.message,
        }


@dataclass
class StageCounts:
    """Per-stage accounting. The identity `records_in == out + rejected + errors` must hold."""

    records_in: int = 0
    out: int = 0
    produced: int = 0  # records emitted; differs from `out` only for fan-out stages
    rejected: int = 0
    errors: int = 0
    reject_reasons: Counter = field(default_factory=Counter)
    error_reasons: Counter = field(default_factory=Counter)

    def merge(self, other: StageCounts) -> None:
        self.records_in += other.records_in
        self.out += other.out
        self.produced += other.produced
        self.rejected += other.rejected
        self.errors += other.errors
        self.reject_reasons.update(other.reject_reasons)
        self.error_reasons.update(other.error_reasons)

    def as_dict(self) -> dict[str, Any]:
        return {
            "in": self.records_in,
            "out": self.out,
            "produced": self.produced,
            "rejected": self.rejected,
            "errors": self.errors,
            "reject_reasons": dict(sorted(self.reject_reasons.items())),
            "error_reasons": dict(sorted(self.error_reasons.items())),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StageCounts:
        return cls(
            records_in=data["in"],
            out=data["out"],
            produced=data.get("produced", data["out"]),
            rejected=data["rejected"],
            errors=data["errors"],
            reject_reasons=Counter(data.get("reject_reasons", {})),
            error_reasons=Counter(data.get("error_reasons", {})),
        )

    @property
    def balanced(self) -> bool:
        return self.records_in == self.out + self.rejected + self.errors


class Stage:
    """Per-record stage. Subclasses set `name` and implement `process`.

    `setup()` runs once per worker before the first record (load models, KBs, indexes there,
    never at import time).  `process` may yield zero or more records (a parser stage may fan
    out one input into many records) and `Rejected` markers.
    """

    name: str = "stage"

    def setup(self) -> None:  # pragma: no cover - default does nothing
        return None

    def teardown(self) -> None:  # pragma: no cover - default does nothing
        return None

    def process(self, record: Record) -> Iterable[Record | Rejected]:
        raise NotImplementedError


@dataclass
class ChainResult:
    kept: list[Record] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    failed: list[Failed] = field(default_factory=list)
    counts: dict[str, StageCounts] = field(default_factory=dict)
    # Wall/CPU of each stage's pass over the records, in chain order (stage name -> totals).
    timings: dict[str, StageTiming] = field(default_factory=dict)


def run_chain(
    stages: list[Stage],
    records: Iterable[Record],
    *,
    result: ChainResult | None = None,
) -> ChainResult:
    """Apply `stages` in order to `records`, accounting for every record at every stage."""
    result = result or ChainResult()
    current: list[Record] = list(records)
    for stage in stages:
        timing = result.timings.setdefault(stage.name, StageTiming(stage.name))
        with Stopwatch() as watch:
            following = _run_stage(stage, current, result)
        timing.add_time(watch)
        timing.records_in += len(current)
        timing.records_out += len(following)
        current = following
    result.kept.extend(current)
    return result


def _run_stage(stage: Stage, current: list[Record], result: ChainResult) -> list[Record]:
    """One stage over every record: what goes on is returned, the rest lands in `result`."""
    counts = result.counts.setdefault(stage.name, StageCounts())
    following: list[Record] = []
    for record in current:
        counts.records_in += 1
        following.extend(_apply(stage, record, counts, result))
    return following


def _apply(stage: Stage, record: Record, counts: StageCounts, result: ChainResult) -> list[Record]:
    """One record through one stage: the records that go on; rejects and failures to `result`."""
    try:
        outputs = list(stage.process(record))
    except Exception as exc:  # noqa: BLE001 - dead letter, never a crashed run
        failure = Failed.from_exception(
            exc,
            stage=stage.name,
            source_uri=str(record.get("source_uri", "")),
            unit_id=record.get("unit_id"),
            record_id=record.get("record_id"),
        )
        counts.errors += 1
        counts.error_reasons[failure.reason] += 1
        result.failed.append(failure)
        return []
    # `out` counts inputs that went on (once, even when a fan-out stage yields several
    # records); a stage that yields nothing for an input without a Rejected marker
    # would lose it silently, so that is an error with its own reason.
    produced: list[Record] = []
    rejected_here = 0
    for item in outputs:
        if isinstance(item, Rejected):
            item.stage = item.stage or stage.name
            counts.rejected += 1
            counts.reject_reasons[item.reason] += 1
            result.rejected.append(item)
            rejected_here += 1
        else:
            produced.append(item)
    counts.produced += len(produced)
    if produced:
        counts.out += 1
    elif not rejected_here:
        counts.errors += 1
        counts.error_reasons["dropped_without_reason"] += 1
        result.failed.append(
            Failed(
                source_uri=str(record.get("source_uri", "")),
                stage=stage.name,
                error_type="SilentDrop",
                reason="dropped_without_reason",
                message=f"stage {stage.name} yielded nothing for this record",
                unit_id=record.get("unit_id"),
                record_id=record.get("record_id"),
            )
        )
    return produced
