"""Planning on workers: coarse partitions -> units -> settled units -> task files.

    driver   each source's `partitions()`: a few coarse pieces (key prefixes, inventory shards)
    workers  expand each piece into units, settle units that share a key (the versions of one
             article), cut each piece's active units (sorted by id) into tasks, and write
             _work/plan/parts/<source>-<piece>.jsonl: its tasks and its skipped units
    driver   reads _work/plan/stats.json (counts per source and per piece), written last

The driver never holds per-unit data and the job graph never carries it: phase 1 reads the task
files on workers. A task is a few units of one piece; its id carries a digest of its unit ids,
so a changed input set never resumes a stale task. Units a source skips on purpose (older
article versions, retracted articles) are listed with their reason and never read. The plan of
a build folder is made once: a resumed build continues the plan it started (`--fresh` replans).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam
import pyarrow as pa

from curate import fs
from curate.errors import SpecError
from curate.shards import layout
from curate.sources.base import Source, Unit, get_source_class
from curate.sources.roots import root_problem
from curate.sources.uris import relative_uri
from curate.spec import DEMO_SCHEME, Spec

PLAN = "plan"
STATS = "stats.json"
SKIPPED_SCHEMA = pa.schema(
    [
        pa.field("unit_id", pa.string(), nullable=False),
        pa.field("uri", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
    ]
)


def source_paths(spec: Spec, work_dir: str) -> dict[str, str]:
    """Each source's path; `demo:<name>` paths are generated inside the work folder first."""
    paths: dict[str, str] = {}
    for source in spec.sources:
        path = source.path
        if path.startswith(DEMO_SCHEME):
            from curate.demo.materialise import materialise_demo

            path = materialise_demo(path[len(DEMO_SCHEME) :], fs.join(work_dir, "demo_input"))
        paths[source.label] = path
    return paths


def plan_file(out_dir: str, *parts: str) -> str:
    return fs.join(out_dir, layout.WORK, PLAN, *parts)


def task_file(out_dir: str, task_id: str, name: str = "") -> str:
    """A phase-1 task's folder (`name` empty) or one of its files (kept/rejects/errors.parquet,
    done.json) under the work folder."""
    folder = fs.join(out_dir, layout.WORK, "tasks", task_id)
    return fs.join(folder, name) if name else folder


def make_tasks(label: str, units: list[Unit], size: int, piece: int = 0) -> list[dict[str, Any]]:
    """Cut sorted units into tasks of `size`; the id names the source, piece, position and
    contents."""
    tasks = []
    for index in range(0, len(units), size):
        chunk = units[index : index + size]
        digest = hashlib.sha1("\n".join(u.unit_id for u in chunk).encode()).hexdigest()[:10]
        tasks.append(
            {
                "task_id": f"{label}-{piece:05d}-{index // size:06d}-{digest}",
                "source": label,
                "units": [u.as_dict() for u in chunk],
            }
        )
    return tasks


# ---- the plan's summary ---------------------------------------------------------------------------


@dataclass
class PlanStats:
    """What the driver knows of a plan: counts per source and per piece, and where the task
    files are (`parts`: one entry per piece that had units, in source and piece order)."""

    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    parts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def tasks(self) -> int:
        return sum(p["tasks"] for p in self.parts)

    @property
    def inputs(self) -> dict[str, dict[str, Any]]:
        """The manifest's `inputs`: kind, path, discovered and skipped units per source."""
        keys = ("kind", "path", "discovered", "skipped")
        return {label: {k: entry[k] for k in keys} for label, entry in self.sources.items()}

    def part_paths(self, out_dir: str) -> list[str]:
        return [plan_file(out_dir, p["file"]) for p in self.parts]

    def as_dict(self) -> dict[str, Any]:
        return {"sources": self.sources, "parts": self.parts}

    @classmethod
    def read(cls, out_dir: str) -> PlanStats | None:
        path = plan_file(out_dir, STATS)
        if not fs.exists(path):
            return None
        data = json.loads(fs.read_bytes(path))
        return cls(sources=data["sources"], parts=data["parts"])


# ---- the planning pipeline (workers) -------------------------------------------------------------


@dataclass(frozen=True)
class SourceRef:
    """What a worker needs to rebuild a source: its label, kind, resolved path and options."""

    label: str
    kind: str
    path: str
    options: dict[str, Any]

    def make(self) -> Source:
        return get_source_class(self.kind)(self.path, self.options)


def source_refs(spec: Spec, paths: dict[str, str]) -> list[SourceRef]:
    return [SourceRef(s.label, s.kind, paths[s.label], s.options) for s in spec.sources]


Piece = tuple[str, int, str]  # (source label, piece index, partition)


def pieces(refs: list[SourceRef]) -> list[Piece]:
    """The driver's share of discovery: each source's coarse partitions, numbered."""
    return [
        (ref.label, index, partition)
        for ref in refs
        for index, partition in enumerate(ref.make().partitions())
    ]


class _SourceDoFn(beam.DoFn):
    def __init__(self, refs: list[SourceRef]) -> None:
        self.refs = refs
        self.sources: dict[str, Source] = {}

    def setup(self) -> None:
        self.sources = {ref.label: ref.make() for ref in self.refs}


class ExpandPieces(_SourceDoFn):
    """(label, piece, partition) -> ((label, settle key), (piece, unit)) for each candidate."""

    def process(self, item: Piece) -> Iterator[tuple[tuple[str, str], tuple[int, dict]]]:
        label, index, partition = item
        source = self.sources[label]
        for unit in source.expand(partition):
            yield (label, source.settle_key(unit)), (index, unit.as_dict())


class SettleUnits(_SourceDoFn):
    """Candidates sharing a settle key -> ((label, piece), unit) with skip reasons decided."""

    def process(self, item: tuple[tuple[str, str], Any]) -> Iterator[tuple[tuple[str, int], dict]]:
        (label, _), members = item
        members = sorted(members, key=lambda m: m[1]["unit_id"])
        piece_of = {unit["unit_id"]: index for index, unit in members}
        if len(piece_of) != len(members):
            duplicates = sorted(
                k for k, n in Counter(u["unit_id"] for _, u in members).items() if n > 1
            )
            raise SpecError(f"source {label}: unit ids are not unique (e.g. {duplicates[:5]})")
        for unit in self.sources[label].settle([Unit.from_dict(u) for _, u in members]):
            yield (label, piece_of[unit.unit_id]), unit.as_dict()


class WritePiece(beam.DoFn):
    """One piece's settled units -> its task file (tasks, then skipped units), and its counts."""

    def __init__(self, out_dir: str, roots: dict[str, str], units_per_task: int) -> None:
        self.out_dir, self.roots, self.units_per_task = out_dir, roots, units_per_task

    def process(self, item: tuple[tuple[str, int], Any]) -> Iterator[dict[str, Any]]:
        (label, index), unit_dicts = item
        units = sorted((Unit.from_dict(u) for u in unit_dicts), key=lambda u: u.unit_id)
        active = [u for u in units if not u.skip_reason]
        tasks = make_tasks(label, active, self.units_per_task, index)
        skipped = [
            {
                "unit_id": u.unit_id,
                "uri": relative_uri(u.uri, self.roots[label]),
                "source": label,
                "reason": u.skip_reason,
            }
            for u in units
            if u.skip_reason
        ]
        name = f"parts/{label}-{index:05d}.jsonl"
        write_part(plan_file(self.out_dir, name), tasks, skipped)
        yield {
            "source": label,
            "piece": index,
            "file": name,
            "discovered": len(units),
            "active": len(active),
            "tasks": len(tasks),
            "skipped": dict(Counter(s["reason"] for s in skipped)),
        }


def write_stats(part_rows: list[dict[str, Any]], out_dir: str, refs: list[SourceRef]) -> None:
    """The plan's summary, written after every piece's file: its presence means the plan is
    complete."""
    stats = PlanStats(
        sources={
            ref.label: {
                "kind": ref.kind,
                "path": ref.path,
                "discovered": 0,
                "skipped": {},
                "active": 0,
                "tasks": 0,
            }
            for ref in refs
        },
        parts=sorted(part_rows, key=lambda p: (p["source"], p["piece"])),
    )
    for part in stats.parts:
        entry = stats.sources[part["source"]]
        for key in ("discovered", "active", "tasks"):
            entry[key] += part[key]
        skipped = Counter(entry["skipped"])
        skipped.update(part["skipped"])
        entry["skipped"] = dict(sorted(skipped.items()))
    fs.write_bytes_atomic(
        plan_file(out_dir, STATS), json.dumps(stats.as_dict(), sort_keys=True).encode()
    )


class PlanInputs(beam.PTransform):
    """Pieces -> the plan's task files and stats.json (see the module docstring)."""

    def __init__(self, refs: list[SourceRef], out_dir: str, units_per_task: int) -> None:
        super().__init__()
        self.refs, self.out_dir, self.units_per_task = refs, out_dir, units_per_task

    def expand(self, piece_list: Any) -> Any:
        roots = {ref.label: ref.path for ref in self.refs}
        return (
            piece_list
            | "Distribute" >> beam.Reshuffle()
            | "Expand" >> beam.ParDo(ExpandPieces(self.refs))
            | "BySettleKey" >> beam.GroupByKey()
            | "Settle" >> beam.ParDo(SettleUnits(self.refs))
            | "ByPiece" >> beam.GroupByKey()
            | "WritePieces" >> beam.ParDo(WritePiece(self.out_dir, roots, self.units_per_task))
            | "AllPieces" >> beam.combiners.ToList()
            | "WriteStats" >> beam.Map(write_stats, self.out_dir, self.refs)
        )


def run_plan(spec: Spec, paths: dict[str, str], out_dir: str, runner: Any) -> PlanStats:
    """The build folder's plan: read when complete, else made by a planning pipeline."""
    stats = PlanStats.read(out_dir)
    if stats is not None:
        return stats
    fs.remove(plan_file(out_dir))  # pieces of an unfinished plan
    refs = source_refs(spec, paths)
    allow_empty = {s.label: s.allow_empty for s in spec.sources}
    for ref in refs:  # before any pipeline starts: missing, unreadable and empty roots
        problem = root_problem(ref.path, allow_empty=allow_empty.get(ref.label, False))
        if problem:
            raise SpecError(f"source {ref.label}: {problem}")
    piece_list = pieces(refs)
    beam_runner, options = runner.make()
    with beam.Pipeline(runner=beam_runner, options=options) as pipeline:
        _ = (
            pipeline
            | "Pieces" >> beam.Create(piece_list, reshuffle=False)
            | "Plan" >> PlanInputs(refs, out_dir, spec.work.units_per_task)
        )
    stats = PlanStats.read(out_dir)
    if stats is None:
        raise RuntimeError(
            f"the planning pipeline finished without writing {plan_file(out_dir, STATS)}"
        )
    return stats


# ---- reading the plan (workers) ------------------------------------------------------------------


def write_part(
    path: str, tasks: list[dict[str, Any]], skipped: list[dict[str, Any]] | None = None
) -> None:
    """A task file: one JSON line per task, then one per skipped unit (`read_part`)."""
    lines = [json.dumps({"task": t}, sort_keys=True) for t in tasks]
    lines += [json.dumps({"skipped": s}, sort_keys=True) for s in skipped or []]
    fs.write_bytes_atomic(path, "".join(line + "\n" for line in lines).encode())


def read_part(path: str, kind: str) -> Iterator[dict[str, Any]]:
    """The tasks (`kind` "task") or skipped units ("skipped") of one task file."""
    for line in fs.read_bytes(path).decode().splitlines():
        if line:
            entry = json.loads(line)
            if kind in entry:
                yield entry[kind]


# ---- sampling (calibration builds) --------------------------------------------------------------


def evenly_spaced(items: list[Any], n: int) -> list[Any]:
    """`n` items spread over the whole (sorted) list: deterministic, and a sample that sees the
    start, middle and end of the input rather than only its first ids."""
    if n >= len(items):
        return list(items)
    return [items[(i * len(items)) // n] for i in range(n)]


def sample_plan(stats: PlanStats, out_dir: str, per_source: int, units_per_task: int) -> PlanStats:
    """A plan over `per_source` active units of each source, evenly spaced over its pieces in
    order (units sorted by id in each), written as task files under plan/sample/; only the
    pieces that hold a chosen unit are read. Skipped units stay out, so the sample's
    accounting covers only itself."""
    if per_source < 1:
        raise SpecError(f"a sample needs at least one unit per source, not {per_source}")
    sampled = PlanStats()
    for label, entry in stats.sources.items():
        chosen: list[Unit] = []
        offset = 0
        picks = evenly_spaced(list(range(entry["active"])), per_source)
        for part in (p for p in stats.parts if p["source"] == label):
            wanted = [i - offset for i in picks if offset <= i < offset + part["active"]]
            offset += part["active"]
            if wanted:
                units = [
                    Unit.from_dict(u)
                    for task in read_part(plan_file(out_dir, part["file"]), "task")
                    for u in task["units"]
                ]
                chosen.extend(units[i] for i in wanted)
        tasks = make_tasks(label, chosen, units_per_task)
        name = f"sample/{label}.jsonl"
        write_part(plan_file(out_dir, name), tasks)
        sampled.sources[label] = {
            **entry,
            "discovered": len(chosen),
            "skipped": {},
            "active": len(chosen),
            "tasks": len(tasks),
        }
        sampled.parts.append(
            {"source": label, "piece": 0, "file": name, "active": len(chosen), "tasks": len(tasks)}
        )
    return sampled


def require_units(inputs: dict[str, dict[str, Any]], allow_empty: Collection[str] = ()) -> None:
    """Every source has units to build: a missing or empty path is an error, not an empty plan
    (unless the source says `allow_empty`)."""
    for label, entry in inputs.items():
        path = entry["path"]
        if label in allow_empty and fs.exists(path):
            continue
        if fs.is_local(path) and not os.path.exists(path):
            raise SpecError(f"source {label}: path {path} does not exist")
        if not entry["discovered"]:
            raise SpecError(
                f"source {label}: no {entry['kind']} input units found under {path} "
                "(empty folder, or another layout than the spec's options say?)"
            )
        skipped = sum(entry["skipped"].values())
        if skipped == entry["discovered"]:
            raise SpecError(
                f"source {label}: all {skipped} units under {path} are skipped "
                f"({', '.join(f'{k} {v}' for k, v in sorted(entry['skipped'].items()))})"
            )
