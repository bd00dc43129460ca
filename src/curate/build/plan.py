"""Planning: resolve source paths, discover input units, cut them into resumable tasks.

A task is a few units of one source; its id carries a digest of its unit ids, so a changed
input set never resumes a stale task. Units a source skips on purpose (older article versions,
retracted articles) are listed with their reason and never read.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from curate import fs
from curate.errors import SpecError
from curate.shards import layout
from curate.shards.writer import write_parquet
from curate.sources.base import Unit, get_source_class
from curate.sources.uris import relative_uri
from curate.spec import DEMO_SCHEME, Spec

SKIPPED_SCHEMA = pa.schema(
    [
        pa.field("unit_id", pa.string(), nullable=False),
        pa.field("uri", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
    ]
)


@dataclass
class Plan:
    tasks: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)


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


def discover(spec: Spec, paths: dict[str, str]) -> Plan:
    plan = Plan()
    for source_spec in spec.sources:
        label = source_spec.label
        source = get_source_class(source_spec.kind)(paths[label], source_spec.options)
        units = list(source.discover())
        _check_unique(label, units)
        active = sorted((u for u in units if not u.skip_reason), key=lambda u: u.unit_id)
        skip_reasons: Counter = Counter()
        for unit in units:
            if unit.skip_reason:
                skip_reasons[unit.skip_reason] += 1
                plan.skipped.append(
                    {
                        "unit_id": unit.unit_id,
                        "uri": relative_uri(unit.uri, paths[label]),
                        "source": label,
                        "reason": unit.skip_reason,
                    }
                )
        plan.inputs[label] = {
            "kind": source_spec.kind,
            "path": paths[label],
            "discovered": len(units),
            "skipped": dict(sorted(skip_reasons.items())),
        }
        plan.tasks.extend(make_tasks(label, active, spec.work.units_per_task))
    return plan


def _check_unique(label: str, units: list[Unit]) -> None:
    ids = [u.unit_id for u in units]
    if len(ids) != len(set(ids)):
        duplicates = sorted(k for k, n in Counter(ids).items() if n > 1)[:5]
        raise SpecError(f"source {label}: unit ids are not unique (e.g. {duplicates})")


def task_file(out_dir: str, task_id: str, name: str = "") -> str:
    """A phase-1 task's folder (`name` empty) or one of its files (kept/rejects/errors.parquet,
    done.json) under the work folder."""
    folder = fs.join(out_dir, layout.WORK, "tasks", task_id)
    return fs.join(folder, name) if name else folder


def make_tasks(label: str, units: list[Unit], size: int) -> list[dict[str, Any]]:
    """Cut sorted units into tasks of `size`; the id names the source, position and contents."""
    tasks = []
    for index in range(0, len(units), size):
        chunk = units[index : index + size]
        digest = hashlib.sha1("\n".join(u.unit_id for u in chunk).encode()).hexdigest()[:10]
        tasks.append(
            {
                "task_id": f"{label}-{index // size:06d}-{digest}",
                "source": label,
                "units": [u.as_dict() for u in chunk],
            }
        )
    return tasks


def write_skipped(out_dir: str, skipped: list[dict[str, Any]], compression: str) -> None:
    if skipped:
        rows = sorted(skipped, key=lambda r: (r["source"], r["unit_id"]))
        write_parquet(
            fs.join(out_dir, layout.SKIPPED, "part-00000.parquet"),
            rows,
            SKIPPED_SCHEMA,
            compression=compression,
        )


def evenly_spaced(items: list[Any], n: int) -> list[Any]:
    """`n` items spread over the whole (sorted) list: deterministic, and a sample that sees the
    start, middle and end of the input rather than only its first ids."""
    if n >= len(items):
        return list(items)
    return [items[(i * len(items)) // n] for i in range(n)]


def sample_plan(plan: Plan, per_source: int, units_per_task: int) -> Plan:
    """A plan over `per_source` active units of each source (evenly spaced by unit id), for a
    calibration build; skipped units stay out, so the sample's accounting covers only itself."""
    if per_source < 1:
        raise SpecError(f"a sample needs at least one unit per source, not {per_source}")
    sampled = Plan()
    for label, entry in plan.inputs.items():
        active = [
            Unit.from_dict(unit)
            for task in plan.tasks
            if task["source"] == label
            for unit in task["units"]
        ]
        chosen = evenly_spaced(active, per_source)
        sampled.inputs[label] = {**entry, "discovered": len(chosen), "skipped": {}}
        sampled.tasks.extend(make_tasks(label, chosen, units_per_task))
    return sampled


def require_units(plan: Plan) -> None:
    """Every source has units to build: a missing or empty path is an error, not an empty plan."""
    for label, entry in plan.inputs.items():
        path = entry["path"]
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
