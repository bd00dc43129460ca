"""The build engine: a spec compiled into two Beam pipelines.

Phase 1 (per input unit, parallel, resumable): read -> parse -> rules -> enrich, in tasks of a
few units. Each task writes `_work/tasks/<task_id>/{kept,rejects,errors}.parquet` atomically and
then a `done.json` marker with its counts; a rerun skips tasks whose marker exists (the
datatrove/Dolma pattern), so a killed build resumes without redoing finished units.

Phase 2 (global): exact/near/semantic dedup and decontamination on compact attributes, then
heavy columns joined back by record id and written as shards bucketed by a hash of the record
id, sorted inside each shard — so the final shards depend only on the surviving records, not on
how many times the build was interrupted.

Only this module and `curate.runners` know Beam; stages and parsers are engine-free.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import platform
import shutil
import time
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq

from curate import __version__, fs
from curate.errors import SpecError
from curate.schema import ERROR_SCHEMA, REJECT_COLUMNS, RecordSchema, load_schema
from curate.shards import layout
from curate.shards.writer import count_rows, read_rows, write_parquet
from curate.sources.base import Source, Unit, get_source_class
from curate.spec import DEMO_SCHEME, LoadedSpec, Spec
from curate.stages import ChainResult, Failed, Rejected, Stage, StageCounts, run_chain

log = logging.getLogger("curate.build")

SKIPPED_SCHEMA = pa.schema(
    [
        pa.field("unit_id", pa.string(), nullable=False),
        pa.field("uri", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
    ]
)

# When several phase-2 methods drop the same record, the first in this order names the reason.
DROP_PRIORITY = (
    "dedup:exact_caption_image",
    "dedup:exact_image",
    "dedup:near",
    "dedup:semantic",
    "decontaminate",
    "quality",
)

TEXT_FIELDS_FOR_EXACT_DEDUP = ("caption", "report_text", "findings")


# --------------------------------------------------------------------------------------------
# Helpers shared by both phases
# --------------------------------------------------------------------------------------------


def stable_bucket(key: str, buckets: int) -> int:
    """A bucket that does not depend on Python's hash seed (reproducible shards)."""
    return int.from_bytes(hashlib.sha1(key.encode()).digest()[:8], "big") % max(1, buckets)


def normalise_text(text: str) -> str:
    text = unicodedata.normalize("NFKC", text or "").casefold()
    return " ".join(text.split())


def assign_split(group_key: str, seed: int, ratios: dict[str, float]) -> str:
    """Deterministic split of a group (article, patient): no group spans two splits."""
    from curate.split import assign_split as _assign

    return _assign(group_key, seed, ratios)


def reject_schema(schema: RecordSchema) -> pa.Schema:
    return schema.extended(REJECT_COLUMNS, "rejects").arrow


def rejected_row(item: Rejected) -> dict[str, Any]:
    row = dict(item.record)
    row["reason"] = item.reason
    row["reject_stage"] = item.stage or "unknown"
    row["duplicate_of"] = item.duplicate_of
    return row


def package_versions() -> dict[str, str]:
    names = [
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
    ]
    versions = {"python": platform.python_version(), "curate": __version__}
    for name in names:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return versions


# --------------------------------------------------------------------------------------------
# Phase 1: one task = a few units of one source, run by a pure class (tests call it directly)
# --------------------------------------------------------------------------------------------


def phase1_stages(spec: Spec) -> list[Stage]:
    """Per-record stages after reading: the rule chains, then enrichment."""
    from curate.enrich.modality import ModalityTagger
    from curate.rules.files import load_rule_chain

    stages: list[Stage] = [load_rule_chain(ref) for ref in spec.rules]
    if spec.enrich.modality:
        stages.append(ModalityTagger())
    if spec.enrich.link is not None:
        from curate.link.config import LinkConfig
        from curate.link.stage import LinkStage

        link_config = LinkConfig.model_validate(spec.enrich.link)
        if getattr(link_config, "enabled", True):
            stages.append(LinkStage(link_config))
    return stages


@dataclass
class TaskOutcome:
    task_id: str
    source: str
    units: int = 0
    units_failed: int = 0
    unit_error_reasons: Counter = field(default_factory=Counter)
    candidates: int = 0
    read_rejects: Counter = field(default_factory=Counter)
    read_record_errors: Counter = field(default_factory=Counter)
    stages: dict[str, StageCounts] = field(default_factory=dict)
    kept: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "source": self.source,
            "units": self.units,
            "units_failed": self.units_failed,
            "unit_error_reasons": dict(self.unit_error_reasons),
            "candidates": self.candidates,
            "read_rejects": dict(self.read_rejects),
            "read_record_errors": dict(self.read_record_errors),
            "stages": {name: c.as_dict() for name, c in self.stages.items()},
            "kept": self.kept,
        }


class TaskRunner:
    """Runs phase-1 tasks: read every unit, apply the per-record stages, write the task files."""

    def __init__(
        self, spec_data: dict[str, Any], out_dir: str, source_paths: dict[str, str]
    ) -> None:
        self.spec_data = spec_data
        self.out_dir = out_dir
        self.source_paths = source_paths  # label -> resolved path (demo inputs materialised)
        self._ready = False

    def setup(self) -> None:
        if self._ready:
            return
        self.spec = Spec.model_validate(self.spec_data)
        self.schema = load_schema(self.spec.schema_)
        self.sources: dict[str, Source] = {}
        self.group_fields: dict[str, str] = {}
        for source_spec in self.spec.sources:
            cls = get_source_class(source_spec.kind)
            self.sources[source_spec.label] = cls(
                self.source_paths[source_spec.label], source_spec.options
            )
            self.group_fields[source_spec.label] = self.spec.split.group_by or cls.group_field
        self.stages = phase1_stages(self.spec)
        for stage in self.stages:
            stage.setup()
        self._ready = True

    def task_dir(self, task_id: str) -> str:
        return fs.join(self.out_dir, layout.WORK, "tasks", task_id)

    def _with_split(self, record: dict[str, Any], source: str) -> dict[str, Any]:
        if not record.get("split"):  # a preset split (an official split file) wins
            group_field = self.group_fields[source]
            group = record.get(group_field) if group_field else None
            # Without a group key (an article with no PMCID) the input unit stands in for it:
            # a unit is one article (or one study), so its records still share one split.
            key = str(group) if group not in (None, "") else f"unit:{record.get('unit_id')}"
            record["split"] = assign_split(key, self.spec.split.seed, self.spec.split.ratios)
        return record

    def run(self, task: dict[str, Any]) -> dict[str, Any]:
        self.setup()
        label = task["source"]
        source = self.sources[label]
        outcome = TaskOutcome(task_id=task["task_id"], source=label)
        records: list[dict[str, Any]] = []
        rejected: list[Rejected] = []
        failed: list[Failed] = []
        for unit_dict in task["units"]:
            unit = Unit.from_dict(unit_dict)
            outcome.units += 1
            try:
                items = list(source.read(unit))
            except Exception as exc:  # noqa: BLE001 - one bad unit is a dead letter
                failure = Failed.from_exception(
                    exc, stage="read", source_uri=unit.uri, unit_id=unit.unit_id
                )
                failed.append(failure)
                outcome.units_failed += 1
                outcome.unit_error_reasons[failure.reason] += 1
                continue
            for item in items:
                outcome.candidates += 1
                if isinstance(item, Rejected):
                    item.stage = item.stage or "read"
                    outcome.read_rejects[item.reason] += 1
                    rejected.append(item)
                elif isinstance(item, Failed):
                    item.unit_id = item.unit_id or unit.unit_id
                    outcome.read_record_errors[item.reason] += 1
                    failed.append(item)
                else:
                    records.append(self._with_split(item, label))
        result = run_chain(
            self.stages, records, result=ChainResult(rejected=rejected, failed=failed)
        )
        outcome.stages = result.counts
        outcome.kept = len(result.kept)
        self._write(task["task_id"], result, outcome)
        return outcome.as_dict()

    def _write(self, task_id: str, result: ChainResult, outcome: TaskOutcome) -> None:
        folder = self.task_dir(task_id)
        out = self.spec.output
        write_parquet(
            fs.join(folder, "kept.parquet"),
            result.kept,
            self.schema.arrow,
            compression=out.compression,
            row_group_rows=out.row_group_rows,
        )
        write_parquet(
            fs.join(folder, "rejects.parquet"),
            [rejected_row(r) for r in result.rejected],
            reject_schema(self.schema),
            compression=out.compression,
            row_group_rows=out.row_group_rows,
        )
        write_parquet(
            fs.join(folder, "errors.parquet"),
            [f.as_row() for f in result.failed],
            ERROR_SCHEMA,
            compression=out.compression,
        )
        # The marker comes last: its presence means the three files above are complete.
        fs.write_bytes_atomic(
            fs.join(folder, "done.json"), json.dumps(outcome.as_dict(), sort_keys=True).encode()
        )


# Test hook: simulate a build killed part-way (the process dies like `kill -9` after N tasks).
CRASH_AFTER_TASKS_ENV = "CURATE_CRASH_AFTER_TASKS"
_tasks_finished_here = 0


def _maybe_crash() -> None:
    global _tasks_finished_here
    _tasks_finished_here += 1
    limit = os.environ.get(CRASH_AFTER_TASKS_ENV)
    if limit and _tasks_finished_here >= int(limit):
        os._exit(137)


class RunTaskDoFn(beam.DoFn):
    def __init__(
        self, spec_data: dict[str, Any], out_dir: str, source_paths: dict[str, str]
    ) -> None:
        self.runner = TaskRunner(spec_data, out_dir, source_paths)

    def setup(self) -> None:
        self.runner.setup()

    def process(self, task: dict[str, Any]) -> Iterator[dict[str, Any]]:
        outcome = self.runner.run(task)
        _maybe_crash()
        yield outcome


# --------------------------------------------------------------------------------------------
# Phase 2: global decisions on compact attributes, then shards
# --------------------------------------------------------------------------------------------


def _text_field(schema: RecordSchema) -> str | None:
    for name in TEXT_FIELDS_FOR_EXACT_DEDUP:
        if name in schema.field_names:
            return name
    return None


def read_compact(path: str, text_field: str | None, has_image: bool) -> Iterator[dict[str, Any]]:
    columns = (
        ["record_id", "split"]
        + (["image_sha256"] if has_image else [])
        + ([text_field] if text_field else [])
    )
    for row in read_rows(path, columns=columns):
        image = row.get("image_sha256")
        text = row.get(text_field) if text_field else None
        caption_key = None
        if image and text is not None:
            caption_key = hashlib.sha256(f"{normalise_text(text)}\x00{image}".encode()).hexdigest()
        yield {
            "record_id": row["record_id"],
            "split": row["split"],
            "image_sha256": image,
            "caption_key": caption_key,
        }


def group_drops(
    item: tuple[str, Iterable[str]], reason: str, stage: str
) -> Iterator[tuple[str, tuple[str, str, str | None]]]:
    """Keep the smallest record id of each group; the others duplicate it."""
    _, ids = item
    ordered = sorted(set(ids))
    for record_id in ordered[1:]:
        yield record_id, (stage, reason, ordered[0])


def first_by_priority(
    decisions: Iterable[tuple[str, str, str | None]],
) -> tuple[str, str, str | None]:
    rank = {name: i for i, name in enumerate(DROP_PRIORITY)}
    return min(decisions, key=lambda d: (rank.get(d[0], len(rank)), d[1], d[2] or ""))


class ApplyDecision(beam.DoFn):
    def process(self, item: tuple[str, dict[str, list[Any]]]) -> Iterator[Any]:
        _, grouped = item
        for record in grouped["record"]:
            decision = grouped["decision"][0] if grouped["decision"] else None
            if decision is None:
                yield record
            else:
                stage, reason, duplicate_of = decision
                yield beam.pvalue.TaggedOutput(
                    "rejected",
                    rejected_row(
                        Rejected(
                            record=record, reason=reason, stage=stage, duplicate_of=duplicate_of
                        )
                    ),
                )


def shard_key(
    record: dict[str, Any], counts: dict[str, int], shard_rows: int
) -> tuple[tuple[str, int, int], dict[str, Any]]:
    total = max(1, math.ceil(counts.get(record["split"], 0) / shard_rows))
    return (record["split"], stable_bucket(record["record_id"], total), total), record


def file_key(
    row: dict[str, Any], total_rows: int, shard_rows: int, id_field: str
) -> tuple[tuple[int, int], dict[str, Any]]:
    total = max(1, math.ceil(total_rows / shard_rows))
    return (stable_bucket(str(row.get(id_field)), total), total), row


@dataclass
class WriteSettings:
    compression: str
    compression_level: int | None
    row_group_rows: int


def write_group(
    item: tuple[Any, Iterable[dict[str, Any]]],
    path_of: Any,
    schema: pa.Schema,
    settings: WriteSettings,
    sort_field: str,
) -> dict[str, Any]:
    key, rows = item
    # A total order (ties broken by every text column), so a file's bytes never depend on the
    # order in which the runner delivered its rows.
    ordered = sorted(rows, key=lambda r: (str(r.get(sort_field)), _tie_breaker(r)))
    path = path_of(key)
    count = write_parquet(
        path,
        ordered,
        schema,
        compression=settings.compression,
        compression_level=settings.compression_level,
        row_group_rows=settings.row_group_rows,
        digest_path=digest_path(path_of.out_dir, path),
    )
    return {"path": path, "rows": count}


def digest_path(out_dir: str, path: str) -> str:
    """Where the writer leaves the size and sha256 of an output file for the manifest."""
    relative = path[len(out_dir) :].lstrip("/\\") if path.startswith(out_dir) else path
    return fs.join(
        out_dir, layout.WORK, "digests", relative.replace("\\", "/").replace("/", "__") + ".json"
    )


def _tie_breaker(row: dict[str, Any]) -> str:
    return repr(
        sorted((k, v) for k, v in row.items() if isinstance(v, str | int | float) and v is not None)
    )


class ShardPath:
    def __init__(self, out_dir: str, table: str) -> None:
        self.out_dir, self.table = out_dir, table

    def __call__(self, key: tuple[str, int, int]) -> str:
        split, index, total = key
        return fs.join(self.out_dir, self.table, split, layout.shard_name(split, index, total))


class FlatPath:
    def __init__(self, out_dir: str, folder: str) -> None:
        self.out_dir, self.folder = out_dir, folder

    def __call__(self, key: tuple[int, int]) -> str:
        index, total = key
        return fs.join(self.out_dir, self.folder, f"part-{index:05d}-of-{total:05d}.parquet")


class WriteSplitShards(beam.PTransform):
    """Records with a `split` -> `OUT/<table>/<split>/part-*.parquet`, bucketed by a hash of the
    record id (shard count from the split's size), sorted inside each shard."""

    def __init__(
        self, out_dir: str, table: str, schema: pa.Schema, settings: WriteSettings, shard_rows: int
    ) -> None:
        super().__init__()
        self.out_dir, self.table, self.schema = out_dir, table, schema
        self.settings, self.shard_rows = settings, shard_rows

    def expand(self, rows: Any) -> Any:
        counts = (
            rows
            | "SplitOf" >> beam.Map(lambda r: (r["split"], 1))
            | "CountSplits" >> beam.CombinePerKey(sum)
        )
        return (
            rows
            | "ShardKey"
            >> beam.Map(shard_key, counts=beam.pvalue.AsDict(counts), shard_rows=self.shard_rows)
            | "GroupShards" >> beam.GroupByKey()
            | "WriteShards"
            >> beam.Map(
                write_group,
                ShardPath(self.out_dir, self.table),
                self.schema,
                self.settings,
                "record_id",
            )
        )


class WriteFlatFiles(beam.PTransform):
    """Rows -> `OUT/<folder>/part-*.parquet` (rejects, errors), bucketed by `sort_field`."""

    def __init__(
        self,
        out_dir: str,
        folder: str,
        schema: pa.Schema,
        settings: WriteSettings,
        shard_rows: int,
        sort_field: str,
    ) -> None:
        super().__init__()
        self.out_dir, self.folder, self.schema = out_dir, folder, schema
        self.settings, self.shard_rows, self.sort_field = settings, shard_rows, sort_field

    def expand(self, rows: Any) -> Any:
        total = rows | "Count" >> beam.combiners.Count.Globally()
        return (
            rows
            | "Key"
            >> beam.Map(
                file_key,
                total_rows=beam.pvalue.AsSingleton(total),
                shard_rows=self.shard_rows,
                id_field=self.sort_field,
            )
            | "Group" >> beam.GroupByKey()
            | "Write"
            >> beam.Map(
                write_group,
                FlatPath(self.out_dir, self.folder),
                self.schema,
                self.settings,
                self.sort_field,
            )
        )


# --------------------------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------------------------


@dataclass
class BuildResult:
    manifest: dict[str, Any]
    ok: bool
    message: str = ""


class Build:
    def __init__(
        self, loaded: LoadedSpec, out_dir: str, runner: Any, *, fresh: bool = False
    ) -> None:
        self.loaded = loaded
        self.spec = loaded.spec
        self.out_dir = out_dir
        self.runner = runner
        self.fresh = fresh
        self.schema = load_schema(self.spec.schema_)

    # ---- set-up -----------------------------------------------------------------------------

    def _work(self, *parts: str) -> str:
        return fs.join(self.out_dir, layout.WORK, *parts)

    def prepare(self) -> None:
        if self.fresh and fs.is_local(self.out_dir) and os.path.isdir(self.out_dir):
            shutil.rmtree(self.out_dir)
        fs.makedirs(self.out_dir)
        state_path = self._work("state.json")
        self.linking = self._link_identity()
        identity = {
            "spec_sha256": self.loaded.sha256,
            "schema": self.schema.describe(),
            "spec_data_sha256": hashlib.sha256(
                json.dumps(self.loaded.data, sort_keys=True, default=str).encode()
            ).hexdigest(),
        }
        if self.linking:
            # Resuming with another KB would mix entities from two KBs in one build.
            identity["kb_sha256"] = self.linking["kb_sha256"]
        if fs.exists(state_path):
            previous = json.loads(fs.read_bytes(state_path))
            if previous != identity:
                raise SpecError(
                    f"{self.out_dir} holds work of another spec or schema ({previous}); resume needs the "
                    "same spec and overrides: use another --out or pass --fresh"
                )
        else:
            fs.write_bytes_atomic(state_path, json.dumps(identity, sort_keys=True).encode())

    def _link_identity(self) -> dict[str, Any] | None:
        """The linking KB's id and hash for the manifest; builds the default KB once, in the
        driver, so that workers find it ready."""
        if self.spec.enrich.link is None:
            return None
        from curate.link.config import LinkConfig
        from curate.link.stage import LinkStage

        config = LinkConfig.model_validate(self.spec.enrich.link)
        if not config.enabled:
            return None
        return LinkStage(config).kb_identity()

    def source_paths(self) -> dict[str, str]:
        """Resolve `demo:<name>` paths by generating the demo corpus inside the work folder."""
        paths: dict[str, str] = {}
        for source in self.spec.sources:
            path = source.path
            if path.startswith(DEMO_SCHEME):
                from curate.sources.demo import materialise_demo

                path = materialise_demo(path[len(DEMO_SCHEME) :], self._work("demo_input"))
            paths[source.label] = path
        return paths

    def discover(
        self, paths: dict[str, str]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, dict[str, Any]]]:
        tasks: list[dict[str, Any]] = []
        skipped: list[dict[str, Any]] = []
        inputs: dict[str, dict[str, Any]] = {}
        for source_spec in self.spec.sources:
            label = source_spec.label
            source = get_source_class(source_spec.kind)(paths[label], source_spec.options)
            units = list(source.discover())
            ids = [u.unit_id for u in units]
            if len(ids) != len(set(ids)):
                duplicates = sorted(k for k, n in Counter(ids).items() if n > 1)[:5]
                raise SpecError(f"source {label}: unit ids are not unique (e.g. {duplicates})")
            active = sorted((u for u in units if not u.skip_reason), key=lambda u: u.unit_id)
            skip_reasons: Counter = Counter()
            for unit in units:
                if unit.skip_reason:
                    skip_reasons[unit.skip_reason] += 1
                    skipped.append(
                        {
                            "unit_id": unit.unit_id,
                            "uri": unit.uri,
                            "source": label,
                            "reason": unit.skip_reason,
                        }
                    )
            inputs[label] = {
                "kind": source_spec.kind,
                "path": paths[label],
                "discovered": len(units),
                "skipped": dict(sorted(skip_reasons.items())),
            }
            size = self.spec.work.units_per_task
            for index in range(0, len(active), size):
                chunk = active[index : index + size]
                digest = hashlib.sha1("\n".join(u.unit_id for u in chunk).encode()).hexdigest()[:10]
                tasks.append(
                    {
                        "task_id": f"{label}-{index // size:06d}-{digest}",
                        "source": label,
                        "units": [u.as_dict() for u in chunk],
                    }
                )
        return tasks, skipped, inputs

    # ---- phase 1 ----------------------------------------------------------------------------

    def run_phase1(self, tasks: list[dict[str, Any]], paths: dict[str, str]) -> tuple[int, int]:
        done = [t for t in tasks if fs.exists(self._work("tasks", t["task_id"], "done.json"))]
        done_ids = {t["task_id"] for t in done}
        pending = [t for t in tasks if t["task_id"] not in done_ids]
        log.info(
            "phase 1: %d tasks, %d already done, %d to run", len(tasks), len(done), len(pending)
        )
        if pending:
            runner, options = self.runner.make()
            with beam.Pipeline(runner=runner, options=options) as pipeline:
                _ = (
                    pipeline
                    | "PendingTasks" >> beam.Create(pending, reshuffle=False)
                    | "Distribute" >> beam.Reshuffle()
                    | "ReadRulesEnrich"
                    >> beam.ParDo(RunTaskDoFn(self.loaded.data, self.out_dir, paths))
                )
        return len(done), len(pending)

    # ---- phase 2 ----------------------------------------------------------------------------

    def _clear_outputs(self) -> None:
        from curate.plugins import INSTRUCTION_ERRORS, INSTRUCTION_REJECTS

        for folder in (
            *layout.TABLES,
            layout.REJECTS,
            layout.ERRORS,
            layout.ATTRIBUTES,
            "skipped",
            INSTRUCTION_REJECTS,
            INSTRUCTION_ERRORS,
            f"{layout.WORK}/digests",
        ):
            path = fs.join(self.out_dir, folder)
            if fs.is_local(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                fs.delete(fs.glob(path.rstrip("/") + "/**"))

    def run_phase2(self, tasks: list[dict[str, Any]]) -> None:
        self._clear_outputs()
        kept_files = [self._work("tasks", t["task_id"], "kept.parquet") for t in tasks]
        reject_files = [self._work("tasks", t["task_id"], "rejects.parquet") for t in tasks]
        error_files = [self._work("tasks", t["task_id"], "errors.parquet") for t in tasks]
        out = self.spec.output
        settings = WriteSettings(out.compression, out.compression_level, out.row_group_rows)
        text_field = _text_field(self.schema)
        has_image = "image_sha256" in self.schema.field_names
        record_schema = self.schema.arrow
        rejects_schema = reject_schema(self.schema)
        exact = self.spec.dedup.exact
        runner, options = self.runner.make()
        p = beam.Pipeline(runner=runner, options=options)
        kept_paths = p | "KeptFiles" >> beam.Create(kept_files, reshuffle=False)
        compact = kept_paths | "ReadCompact" >> beam.FlatMap(read_compact, text_field, has_image)
        drops = []
        if exact.caption_image and text_field and has_image:
            drops.append(
                compact
                | "CaptionImageKey"
                >> beam.FlatMap(
                    lambda r: [(r["caption_key"], r["record_id"])] if r["caption_key"] else []
                )
                | "GroupCaptionImage" >> beam.GroupByKey()
                | "CaptionImageDrops"
                >> beam.FlatMap(group_drops, "duplicate_caption_image", "dedup:exact_caption_image")
            )
        if exact.image_sha256 and has_image:
            drops.append(
                compact
                | "ImageKey"
                >> beam.FlatMap(
                    lambda r: [(r["image_sha256"], r["record_id"])] if r["image_sha256"] else []
                )
                | "GroupImage" >> beam.GroupByKey()
                | "ImageDrops" >> beam.FlatMap(group_drops, "duplicate_image", "dedup:exact_image")
            )
        records = kept_paths | "ReadFull" >> beam.FlatMap(read_rows)
        drops.extend(self._plugin_drops(p, records))
        if drops:
            decisions = (
                tuple(drops)
                | "AllDrops" >> beam.Flatten()
                | "OneDecisionPerRecord" >> beam.CombinePerKey(first_by_priority)
            )
        else:
            decisions = p | "NoDrops" >> beam.Create([])
        full = records | "KeyById" >> beam.Map(lambda r: (r["record_id"], r))
        applied = (
            {"record": full, "decision": decisions}
            | "JoinDecisions" >> beam.CoGroupByKey()
            | "Apply" >> beam.ParDo(ApplyDecision()).with_outputs("rejected", main="kept")
        )
        kept = applied.kept
        _ = kept | "Shards" >> WriteSplitShards(
            self.out_dir, "shards", record_schema, settings, out.shard_rows
        )
        self._plugin_instructions(kept, settings)
        phase1_rejects = (
            p
            | "RejectFiles" >> beam.Create(reject_files, reshuffle=False)
            | "ReadRejects" >> beam.FlatMap(read_rows)
        )
        all_rejects = (phase1_rejects, applied.rejected) | "AllRejects" >> beam.Flatten()
        _ = all_rejects | "Rejects" >> WriteFlatFiles(
            self.out_dir, layout.REJECTS, rejects_schema, settings, out.shard_rows, "record_id"
        )
        errors = (
            p
            | "ErrorFiles" >> beam.Create(error_files, reshuffle=False)
            | "ReadErrors" >> beam.FlatMap(read_rows)
        )
        _ = errors | "Errors" >> WriteFlatFiles(
            self.out_dir, layout.ERRORS, ERROR_SCHEMA, settings, out.shard_rows, "source_uri"
        )
        result = p.run()
        result.wait_until_finish()
        self.phase2_metrics = result.metrics()

    def _plugin_drops(self, pipeline: Any, records: Any) -> list[Any]:
        """Near/semantic dedup, quality and decontamination, when the spec asks for them."""
        from curate.plugins import phase2_drop_transforms

        return phase2_drop_transforms(self.spec, records, self.out_dir)

    def _plugin_instructions(self, kept: Any, settings: WriteSettings) -> None:
        from curate.plugins import instruction_transform

        instruction_transform(self.spec, kept, self.out_dir, settings)

    # ---- accounting -------------------------------------------------------------------------

    def write_skipped(self, skipped: list[dict[str, Any]]) -> None:
        if skipped:
            rows = sorted(skipped, key=lambda r: (r["source"], r["unit_id"]))
            write_parquet(
                fs.join(self.out_dir, "skipped", "part-00000.parquet"),
                rows,
                SKIPPED_SCHEMA,
                compression=self.spec.output.compression,
            )

    def manifest(
        self,
        tasks: list[dict[str, Any]],
        inputs: dict[str, dict[str, Any]],
        resumed: int,
        ran: int,
        started: float,
    ) -> dict[str, Any]:
        outcomes = [
            json.loads(fs.read_bytes(self._work("tasks", t["task_id"], "done.json"))) for t in tasks
        ]
        stages: dict[str, StageCounts] = {}
        unit_errors: Counter = Counter()
        read_rejects: Counter = Counter()
        read_record_errors: Counter = Counter()
        candidates = 0
        phase1_kept = 0
        for source_label in inputs:
            inputs[source_label].update({"read": 0, "failed": {}})
        for outcome in outcomes:
            entry = inputs[outcome["source"]]
            entry["read"] += outcome["units"] - outcome["units_failed"]
            failed = Counter(entry["failed"])
            failed.update(outcome["unit_error_reasons"])
            entry["failed"] = dict(sorted(failed.items()))
            unit_errors.update(outcome["unit_error_reasons"])
            read_rejects.update(outcome["read_rejects"])
            read_record_errors.update(outcome["read_record_errors"])
            candidates += outcome["candidates"]
            phase1_kept += outcome["kept"]
            for name, counts in outcome["stages"].items():
                stages.setdefault(name, StageCounts()).merge(StageCounts.from_dict(counts))

        outputs = self._output_stats()
        reject_reasons: Counter = outputs.pop("reject_reasons")
        reject_stages: Counter = outputs.pop("reject_stages")
        error_reasons: Counter = outputs.pop("error_reasons")
        rejected_total = sum(reject_reasons.values())
        kept_total = sum(outputs["shards"].values())
        phase2_rejects = {
            s: n
            for s, n in reject_stages.items()
            if s.startswith(("dedup", "decontaminate", "quality"))
        }
        stage_errors = sum(c.errors for c in stages.values())
        record_errors = sum(read_record_errors.values()) + stage_errors
        units_discovered = sum(e["discovered"] for e in inputs.values())
        units_skipped = sum(sum(e["skipped"].values()) for e in inputs.values())
        units_read = sum(e["read"] for e in inputs.values())
        units_failed = sum(unit_errors.values())
        phase2 = StageCounts(
            records_in=phase1_kept,
            out=kept_total,
            produced=kept_total,
            rejected=sum(phase2_rejects.values()),
        )
        phase2.reject_reasons.update({r: n for r, n in outputs["phase2_reject_reasons"].items()})
        stage_table = {
            "read": {
                "units_in": units_discovered - units_skipped,
                "units_read": units_read,
                "units_failed": units_failed,
                "records_out": candidates
                - sum(read_rejects.values())
                - sum(read_record_errors.values()),
                "rejected": sum(read_rejects.values()),
                "record_errors": sum(read_record_errors.values()),
                "reject_reasons": dict(sorted(read_rejects.items())),
                "error_reasons": dict(sorted((unit_errors + read_record_errors).items())),
            }
        }
        stage_table.update({name: c.as_dict() for name, c in stages.items()})
        stage_table["phase2"] = phase2.as_dict()
        error_rows = sum(error_reasons.values())
        identities = [
            _identity(
                "every discovered unit is skipped, read or failed",
                units_discovered,
                units_skipped + units_read + units_failed,
            ),
            _identity(
                "every candidate record is kept, rejected or an error",
                candidates,
                kept_total + rejected_total + record_errors,
            ),
            _identity(
                "rows in errors/ equal unit failures plus record errors",
                error_rows,
                units_failed + record_errors,
            ),
            _identity(
                "phase 2: records in equal kept plus phase-2 rejects",
                phase1_kept,
                kept_total + phase2.rejected,
            ),
        ]
        for name, counts in stages.items():
            identities.append(
                _identity(
                    f"stage {name}: in == out + rejected + errors",
                    counts.records_in,
                    counts.out + counts.rejected + counts.errors,
                )
            )
        instructions = self._instruction_accounting()
        if instructions is not None:
            identities.append(
                _identity(
                    "instructions: every kept record has instructions, a rejection or an error",
                    instructions["records_in"],
                    instructions["records_with_instructions"]
                    + instructions["records_rejected"]
                    + instructions["records_failed"],
                )
            )
        attempted = (units_discovered - units_skipped) + candidates
        error_fraction = (units_failed + record_errors) / attempted if attempted else 0.0
        return {
            "curate_version": __version__,
            "created_unix": int(time.time()),
            "duration_s": round(time.time() - started, 3),
            "spec": {
                "name": self.spec.name,
                "path": str(self.loaded.path),
                "sha256": self.loaded.sha256,
                "resolved": self.loaded.data,
            },
            "schema": self.schema.describe(),
            "tables": {
                "shards": {"schema": self.schema.describe()},
                **outputs.pop("table_schemas"),
            },
            "versions": package_versions(),
            "runner": self.runner.describe(),
            "tasks": {"total": len(tasks), "resumed": resumed, "ran": ran},
            "inputs": inputs,
            "records": {
                "candidates": candidates,
                "kept": kept_total,
                "rejected": rejected_total,
                "errors": record_errors,
            },
            "units": {
                "discovered": units_discovered,
                "skipped": units_skipped,
                "read": units_read,
                "failed": units_failed,
            },
            "splits": outputs["shards"],
            "stages": stage_table,
            "reject_reasons": dict(sorted(reject_reasons.items())),
            "error_reasons": dict(sorted(error_reasons.items())),
            "error_fraction": round(error_fraction, 6),
            "max_error_fraction": self.spec.max_error_fraction,
            "identities": identities,
            "files": outputs["files"],
            "instructions": instructions,
            "benchmark_matches": self._benchmark_matches(),
            "linking": self.linking,
            **outputs.get("extra", {}),
        }

    def _benchmark_matches(self) -> dict[str, Any] | None:
        from curate.plugins import BENCHMARK_MATCHES

        path = fs.join(self.out_dir, layout.ATTRIBUTES, BENCHMARK_MATCHES)
        if not fs.exists(path):
            return None
        rows = [json.loads(line) for line in fs.read_bytes(path).decode().splitlines() if line]
        by_benchmark = Counter(str(r.get("benchmark")) for r in rows)
        # The full list stays in the attributes file; the manifest carries counts and a sample.
        return {
            "total": len(rows),
            "by_benchmark": dict(sorted(by_benchmark.items())),
            "file": f"{layout.ATTRIBUTES}/{BENCHMARK_MATCHES}",
            "first": rows[:200],
        }

    def _instruction_accounting(self) -> dict[str, Any] | None:
        from curate.plugins import instruction_accounting

        if self.spec.instruct is None:
            return None
        kept_ids: set[str] = set()
        for path in fs.glob(fs.join(self.out_dir, "shards", "*", "*.parquet")):
            kept_ids.update(r["record_id"] for r in read_rows(path, columns=["record_id"]))
        return instruction_accounting(
            self.spec, self.out_dir, kept_ids, getattr(self, "phase2_metrics", None)
        )

    def _output_stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = {
            "shards": {},
            "files": [],
            "reject_reasons": Counter(),
            "reject_stages": Counter(),
            "error_reasons": Counter(),
            "phase2_reject_reasons": Counter(),
            "table_schemas": {},
        }
        for table in layout.TABLES:
            for path in fs.glob(fs.join(self.out_dir, table, "*", "*.parquet")):
                rows = count_rows(path)
                split = path.replace("\\", "/").rsplit("/", 2)[-2]
                if table == "shards":
                    stats["shards"][split] = stats["shards"].get(split, 0) + rows
                else:
                    stats.setdefault("instructions", {})
                    stats["instructions"][split] = stats["instructions"].get(split, 0) + rows
                stats["files"].append(_file_entry(self.out_dir, path, rows))
        if "instructions" in stats:
            stats.setdefault("extra", {})["instruction_splits"] = stats.pop("instructions")
            stats["table_schemas"]["instructions"] = {
                "schema": load_schema("instruction.v1").describe()
            }
        for path in fs.glob(fs.join(self.out_dir, layout.REJECTS, "*.parquet")):
            reject_rows = read_rows(path, columns=["reason", "reject_stage"])
            for row in reject_rows:
                stats["reject_reasons"][row["reason"]] += 1
                stats["reject_stages"][row["reject_stage"]] += 1
                if row["reject_stage"].startswith(("dedup", "decontaminate", "quality")):
                    stats["phase2_reject_reasons"][row["reason"]] += 1
            stats["files"].append(_file_entry(self.out_dir, path, len(reject_rows)))
        for path in fs.glob(fs.join(self.out_dir, layout.ERRORS, "*.parquet")):
            error_rows = read_rows(path, columns=["reason"])
            stats["error_reasons"].update(r["reason"] for r in error_rows)
            stats["files"].append(_file_entry(self.out_dir, path, len(error_rows)))
        for folder in ("skipped", "instructions_rejects", "instructions_errors", layout.ATTRIBUTES):
            for path in fs.glob(fs.join(self.out_dir, folder, "*.parquet")):
                stats["files"].append(_file_entry(self.out_dir, path, count_rows(path)))
        stats["files"].sort(key=lambda f: f["path"])
        return stats

    # ---- run --------------------------------------------------------------------------------

    def run(self) -> BuildResult:
        started = time.time()
        self.prepare()
        paths = self.source_paths()
        tasks, skipped, inputs = self.discover(paths)
        resumed, ran = self.run_phase1(tasks, paths)
        self.run_phase2(tasks)
        self.write_skipped(skipped)
        manifest = self.manifest(tasks, inputs, resumed, ran, started)
        broken = [i for i in manifest["identities"] if not i["holds"]]
        ok = not broken and manifest["error_fraction"] <= self.spec.max_error_fraction
        message = ""
        if broken:
            message = "accounting identities do not hold: " + "; ".join(i["name"] for i in broken)
        elif not ok:
            message = (
                f"error fraction {manifest['error_fraction']:.3f} exceeds max_error_fraction "
                f"{self.spec.max_error_fraction}"
            )
        manifest["status"] = "ok" if ok else "failed"
        manifest["status_message"] = message
        from curate.report.datacard import write_data_card

        write_data_card(self.out_dir, manifest)
        fs.write_bytes_atomic(
            fs.join(self.out_dir, layout.MANIFEST),
            json.dumps(manifest, indent=2, sort_keys=True, default=str).encode(),
        )
        return BuildResult(manifest=manifest, ok=ok, message=message)


def _identity(name: str, lhs: int, rhs: int) -> dict[str, Any]:
    return {"name": name, "lhs": lhs, "rhs": rhs, "holds": lhs == rhs}


def _file_entry(out_dir: str, path: str, rows: int) -> dict[str, Any]:
    relative = path[len(out_dir) :].lstrip("/\\") if path.startswith(out_dir) else path
    entry: dict[str, Any] = {"path": relative.replace("\\", "/"), "rows": rows}
    recorded = digest_path(out_dir, path)
    if fs.exists(recorded):
        digest = json.loads(fs.read_bytes(recorded))
        entry.update(bytes=digest["bytes"], sha256=digest["sha256"])
    else:  # small files written outside the shard writers (skipped units, sidecars)
        data = fs.read_bytes(path)
        entry.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    return entry


def build(loaded: LoadedSpec, out_dir: str, runner: Any, *, fresh: bool = False) -> BuildResult:
    return Build(loaded, out_dir, runner, fresh=fresh).run()


def parquet_schema_identity(path: str) -> dict[str, str]:
    meta = pq.ParquetFile(path).schema_arrow.metadata or {}
    return {k.decode(): v.decode() for k, v in meta.items() if k.startswith(b"curate.")}
