"""The manifest: fold task outcomes and output files into counts, check the accounting
identities, and list every output file with its size and sha256.

Everything here reads files the build wrote (task markers, output Parquet, digests); nothing
needs the pipeline engine, so a manifest can be re-derived from a finished build folder.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from collections import Counter
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from typing import Any

from curate import __version__, fs
from curate.build.phase2 import PHASE2_STAGE_PREFIXES, instruct_config
from curate.build.timings import timings_section
from curate.schema import load_schema
from curate.shards import layout
from curate.shards.writer import count_rows, digest_path, read_rows, relative_path
from curate.shuffle import shuffled_bytes
from curate.spec import LoadedSpec, Spec
from curate.stages import StageCounts
from curate.timing import PhaseClock

VERSIONED_PACKAGES = (
    "apache-beam",
    "pyarrow",
    "numpy",
    "lxml",
    "pillow",
    "pydantic",
    "pyyaml",
    "torch",
    "pydicom",
    "nibabel",
    "spacy",
    "scispacy",
    "openai",
    "scikit-learn",
)


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "curate": __version__}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return versions


# ---- phase 1: fold the task markers -------------------------------------------------------------


@dataclass
class Phase1Tally:
    """Phase-1 counts summed over every task (from the summary the pipeline folded)."""

    stages: dict[str, StageCounts] = field(default_factory=dict)
    unit_errors: Counter = field(default_factory=Counter)
    read_rejects: Counter = field(default_factory=Counter)
    read_record_errors: Counter = field(default_factory=Counter)
    record_warnings: Counter = field(default_factory=Counter)
    candidates: int = 0
    kept: int = 0

    @classmethod
    def fold(cls, summary: dict[str, Any], inputs: dict[str, dict[str, Any]]) -> Phase1Tally:
        """The phase-1 summary's per-source counts, summed; also fills each source's `read`
        and `failed` in `inputs`."""
        tally = cls()
        for source_label in inputs:
            inputs[source_label].update({"read": 0, "failed": {}})
        for label, counts in summary["sources"].items():
            entry = inputs[label]
            entry["read"] += counts["units"] - counts["units_failed"]
            failed = Counter(entry["failed"])
            failed.update(counts["unit_error_reasons"])
            entry["failed"] = dict(sorted(failed.items()))
            tally.unit_errors.update(counts["unit_error_reasons"])
            tally.read_rejects.update(counts["read_rejects"])
            tally.read_record_errors.update(counts["read_record_errors"])
            tally.record_warnings.update(counts.get("record_warnings") or {})
            tally.candidates += counts["candidates"]
            tally.kept += counts["kept"]
            for name, stage in counts["stages"].items():
                tally.stages.setdefault(name, StageCounts()).merge(StageCounts.from_dict(stage))
        # by name: workers fold outcomes in any order
        tally.stages = dict(sorted(tally.stages.items()))
        return tally

    @property
    def record_errors(self) -> int:
        return sum(self.read_record_errors.values()) + sum(c.errors for c in self.stages.values())


# ---- outputs: what the files hold -----------------------------------------------------------


@dataclass
class OutputStats:
    shards: dict[str, int] = field(default_factory=dict)  # split -> kept rows
    instruction_splits: dict[str, int] = field(default_factory=dict)
    files: list[dict[str, Any]] = field(default_factory=list)
    reject_reasons: Counter = field(default_factory=Counter)
    reject_stages: Counter = field(default_factory=Counter)
    error_reasons: Counter = field(default_factory=Counter)
    phase2_reject_reasons: Counter = field(default_factory=Counter)

    @property
    def kept(self) -> int:
        return sum(self.shards.values())

    @property
    def phase2_rejected(self) -> int:
        return sum(n for s, n in self.reject_stages.items() if s.startswith(PHASE2_STAGE_PREFIXES))


def file_entry(out_dir: str, path: str, rows: int) -> dict[str, Any]:
    entry: dict[str, Any] = {"path": relative_path(out_dir, path), "rows": rows}
    recorded = digest_path(out_dir, path)
    if fs.exists(recorded):
        digest = json.loads(fs.read_bytes(recorded))
        entry.update(bytes=digest["bytes"], sha256=digest["sha256"])
    else:  # small files written outside the shard writers (skipped units, sidecars)
        data = fs.read_bytes(path)
        entry.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    return entry


def output_stats(out_dir: str) -> OutputStats:
    stats = OutputStats()
    for table in layout.TABLES:
        per_split = stats.shards if table == "shards" else stats.instruction_splits
        for path in fs.glob(fs.join(out_dir, table, "*", "*.parquet")):
            rows = count_rows(path)
            split = path.replace("\\", "/").rsplit("/", 2)[-2]
            per_split[split] = per_split.get(split, 0) + rows
            stats.files.append(file_entry(out_dir, path, rows))
    for path in fs.glob(fs.join(out_dir, layout.REJECTS, "*.parquet")):
        reject_rows = read_rows(path, columns=["reason", "reject_stage"])
        for row in reject_rows:
            stats.reject_reasons[row["reason"]] += 1
            stats.reject_stages[row["reject_stage"]] += 1
            if row["reject_stage"].startswith(PHASE2_STAGE_PREFIXES):
                stats.phase2_reject_reasons[row["reason"]] += 1
        stats.files.append(file_entry(out_dir, path, len(reject_rows)))
    for path in fs.glob(fs.join(out_dir, layout.ERRORS, "*.parquet")):
        error_rows = read_rows(path, columns=["reason"])
        stats.error_reasons.update(r["reason"] for r in error_rows)
        stats.files.append(file_entry(out_dir, path, len(error_rows)))
    for folder in (
        layout.SKIPPED,
        layout.INSTRUCTION_REJECTS,
        layout.INSTRUCTION_ERRORS,
        layout.ATTRIBUTES,
    ):
        for path in fs.glob(fs.join(out_dir, folder, "*.parquet")):
            stats.files.append(file_entry(out_dir, path, count_rows(path)))
    stats.files.sort(key=lambda f: f["path"])
    return stats


# ---- counts per stage and the identities they must satisfy --------------------------------------


@dataclass
class UnitCounts:
    discovered: int
    skipped: int
    read: int
    failed: int

    @classmethod
    def of(cls, inputs: dict[str, dict[str, Any]], tally: Phase1Tally) -> UnitCounts:
        return cls(
            discovered=sum(e["discovered"] for e in inputs.values()),
            skipped=sum(sum(e["skipped"].values()) for e in inputs.values()),
            read=sum(e["read"] for e in inputs.values()),
            failed=sum(tally.unit_errors.values()),
        )


def phase2_counts(tally: Phase1Tally, outputs: OutputStats) -> StageCounts:
    phase2 = StageCounts(
        records_in=tally.kept,
        out=outputs.kept,
        produced=outputs.kept,
        rejected=outputs.phase2_rejected,
    )
    phase2.reject_reasons.update(dict(outputs.phase2_reject_reasons))
    return phase2


def stage_table(tally: Phase1Tally, units: UnitCounts, phase2: StageCounts) -> dict[str, Any]:
    read_rejected = sum(tally.read_rejects.values())
    read_errors = sum(tally.read_record_errors.values())
    table: dict[str, Any] = {
        "read": {
            "units_in": units.discovered - units.skipped,
            "units_read": units.read,
            "units_failed": units.failed,
            "records_out": tally.candidates - read_rejected - read_errors,
            "rejected": read_rejected,
            "record_errors": read_errors,
            "reject_reasons": dict(sorted(tally.read_rejects.items())),
            "error_reasons": dict(sorted((tally.unit_errors + tally.read_record_errors).items())),
        }
    }
    table.update({name: c.as_dict() for name, c in tally.stages.items()})
    table["phase2"] = phase2.as_dict()
    return table


def identity(name: str, lhs: int, rhs: int) -> dict[str, Any]:
    return {"name": name, "lhs": lhs, "rhs": rhs, "holds": lhs == rhs}


def identities(
    tally: Phase1Tally,
    units: UnitCounts,
    outputs: OutputStats,
    phase2: StageCounts,
    instructions: dict[str, Any] | None,
) -> list[dict[str, Any]]:
    """Every input and every record is accounted for exactly once."""
    rejected_total = sum(outputs.reject_reasons.values())
    checks = [
        identity(
            "every discovered unit is skipped, read or failed",
            units.discovered,
            units.skipped + units.read + units.failed,
        ),
        identity(
            "every candidate record is kept, rejected or an error",
            tally.candidates,
            outputs.kept + rejected_total + tally.record_errors,
        ),
        identity(
            "rows in errors/ equal unit failures plus record errors",
            sum(outputs.error_reasons.values()),
            units.failed + tally.record_errors,
        ),
        identity(
            "phase 2: records in equal kept plus phase-2 rejects",
            tally.kept,
            outputs.kept + phase2.rejected,
        ),
    ]
    for name, counts in tally.stages.items():
        checks.append(
            identity(
                f"stage {name}: in == out + rejected + errors",
                counts.records_in,
                counts.out + counts.rejected + counts.errors,
            )
        )
    if instructions is not None:
        checks.append(
            identity(
                "instructions: every kept record has instructions, a rejection or an error",
                instructions["records_in"],
                instructions["records_with_instructions"]
                + instructions["records_rejected"]
                + instructions["records_failed"],
            )
        )
    return checks


# ---- optional sections: benchmark matches, instruction accounting -------------------------------


def benchmark_matches(out_dir: str, config: Any = None) -> dict[str, Any] | None:
    """Counts of the decontamination matches; `config` (the spec's DecontamConfig) adds
    matches by kind and a warning per index without paraphrase embeddings."""
    from curate.decontaminate.semantic import manifest_fields

    path = fs.join(out_dir, layout.ATTRIBUTES, layout.BENCHMARK_MATCHES)
    if not fs.exists(path):
        return None
    rows = [json.loads(line) for line in fs.read_bytes(path).decode().splitlines() if line]
    by_benchmark = Counter(str(r.get("benchmark")) for r in rows)
    # The full list stays in the attributes file; the manifest carries counts and a sample.
    records = {str(r.get("record_id")) for r in rows}
    records_by = Counter(
        str(b) for b, _ in {(r.get("benchmark"), r.get("record_id")) for r in rows}
    )
    # `total` counts record x item matches; a record leaking several items is removed once
    summary = {
        "total": len(rows),
        "records_removed": len(records),
        "records_by_benchmark": dict(sorted(records_by.items())),
        "by_benchmark": dict(sorted(by_benchmark.items())),
        "file": f"{layout.ATTRIBUTES}/{layout.BENCHMARK_MATCHES}",
        "first": rows[:200],
    }
    summary.update(manifest_fields(config, rows))
    return summary


def _ids_and_reasons(
    out_dir: str, folder: str, id_field: str, reason_field: str
) -> tuple[set[str], Counter]:
    ids: set[str] = set()
    reasons: Counter = Counter()
    for path in fs.glob(fs.join(out_dir, folder, "*.parquet")):
        for row in read_rows(path, columns=[id_field, reason_field]):
            ids.add(row[id_field])
            reasons[row[reason_field]] += 1
    return ids, reasons


def instruction_accounting(spec: Spec, out_dir: str, metrics: Any) -> dict[str, Any] | None:
    """Per kept source record: out (some instruction kept), rejected, or failed — read back
    from the files."""
    config = instruct_config(spec)
    if config is None:
        return None
    from curate.instruct.beam import usage_from_metrics

    kept_ids: set[str] = set()
    for path in fs.glob(fs.join(out_dir, "shards", "*", "*.parquet")):
        kept_ids.update(r["record_id"] for r in read_rows(path, columns=["record_id"]))
    produced: set[str] = set()
    per_split: Counter = Counter()
    tasks: Counter = Counter()
    for path in fs.glob(fs.join(out_dir, layout.INSTRUCTIONS, "*", "*.parquet")):
        for row in read_rows(path, columns=["source_record_id", "split", "task"]):
            produced.add(row["source_record_id"])
            per_split[row["split"]] += 1
            tasks[row["task"]] += 1
    rejected_ids, reject_reasons = _ids_and_reasons(
        out_dir, layout.INSTRUCTION_REJECTS, "source_record_id", "reason"
    )
    failed_ids, error_reasons = _ids_and_reasons(
        out_dir, layout.INSTRUCTION_ERRORS, "record_id", "reason"
    )
    out = produced & kept_ids
    rejected = (rejected_ids - produced) & kept_ids
    failed = (failed_ids - produced - rejected_ids) & kept_ids
    without = kept_ids - out - rejected - failed
    return {
        "records_in": len(kept_ids),
        "records_with_instructions": len(out),
        "records_rejected": len(rejected),
        "records_failed": len(failed),
        "records_without_outcome": len(without),
        "instructions": dict(sorted(per_split.items())),
        "tasks": dict(sorted(tasks.items())),
        "candidate_reject_reasons": dict(sorted(reject_reasons.items())),
        "error_reasons": dict(sorted(error_reasons.items())),
        "usage": usage_from_metrics(metrics, config) if metrics is not None else None,
    }


# ---- the whole manifest ------------------------------------------------------------------------


@dataclass
class BuildFacts:
    """What the driver knows that the files do not: the spec, the plan, the run."""

    loaded: LoadedSpec
    out_dir: str
    tasks: int  # in the plan
    inputs: dict[str, dict[str, Any]]
    summary: dict[str, Any]  # phase 1, folded on workers (curate.build.outcomes)
    started: float
    runner: dict[str, Any]
    linking: dict[str, Any] | None
    deidentification: dict[str, Any] | None = None  # salt kind + fingerprint (build.salts)
    phase2_metrics: Any = None
    phases: list[PhaseClock] = field(default_factory=list)  # driver phases finished so far
    sample: int | None = None  # units per source, when the build ran on a sample


def build_manifest(facts: BuildFacts) -> dict[str, Any]:
    spec = facts.loaded.spec
    schema = load_schema(spec.schema_)
    inputs = facts.inputs
    summary = facts.summary
    tally = Phase1Tally.fold(summary, inputs)
    outputs = output_stats(facts.out_dir)
    units = UnitCounts.of(inputs, tally)
    phase2 = phase2_counts(tally, outputs)
    instructions = instruction_accounting(spec, facts.out_dir, facts.phase2_metrics)
    attempted = (units.discovered - units.skipped) + tally.candidates
    error_fraction = (units.failed + tally.record_errors) / attempted if attempted else 0.0
    tables: dict[str, Any] = {"shards": {"schema": schema.describe()}}
    extra: dict[str, Any] = {}
    if outputs.instruction_splits:
        extra["instruction_splits"] = outputs.instruction_splits
        tables["instructions"] = {"schema": load_schema("instruction.v1").describe()}
    if facts.sample is not None:
        extra["sample"] = {"units_per_source": facts.sample}
    return {
        "curate_version": __version__,
        "created_unix": int(time.time()),
        "duration_s": round(time.time() - facts.started, 3),
        "spec": {
            "name": spec.name,
            "path": str(facts.loaded.path),
            "sha256": facts.loaded.sha256,
            "resolved": facts.loaded.data,
        },
        "schema": schema.describe(),
        "tables": tables,
        "versions": package_versions(),
        "runner": facts.runner,
        "tasks": {"total": facts.tasks, "resumed": summary["resumed"], "ran": summary["ran"]},
        "inputs": inputs,
        "records": {
            "candidates": tally.candidates,
            "kept": outputs.kept,
            "rejected": sum(outputs.reject_reasons.values()),
            "errors": tally.record_errors,
        },
        "units": {
            "discovered": units.discovered,
            "skipped": units.skipped,
            "read": units.read,
            "failed": units.failed,
        },
        "splits": outputs.shards,
        "stages": stage_table(tally, units, phase2),
        "reject_reasons": dict(sorted(outputs.reject_reasons.items())),
        "error_reasons": dict(sorted(outputs.error_reasons.items())),
        "error_fraction": round(error_fraction, 6),
        # records read with a warning they carry ({warning: count}), e.g. padding_above_limit
        "warnings": dict(sorted(tally.record_warnings.items())),
        "max_error_fraction": spec.max_error_fraction,
        "identities": identities(tally, units, outputs, phase2, instructions),
        "files": outputs.files,
        "instructions": instructions,
        "benchmark_matches": benchmark_matches(facts.out_dir, spec.dedup.decontam),
        "linking": facts.linking,
        "deidentification": facts.deidentification,
        # Run-to-run values (seconds) live here, never in `stages`, whose counts are exact.
        "timings": timings_section(summary, facts.phases, facts.phase2_metrics, outputs.files),
        # pickled bytes and elements that entered each phase-2 shuffle (curate.shuffle)
        "shuffle": shuffled_bytes(facts.phase2_metrics) if facts.phase2_metrics else {},
        **extra,
    }
