"""Phase 2: global decisions on compact rows, then the outputs written from the task files.

The graph, in order: read compact rows (ids, split, hashes) of the phase-1 task files ->
exact duplicates (caption+image, image sha256) and the optional drop transforms (near/semantic
dedup, image-text quality, benchmark decontamination) -> one decision per record -> shards and
rejects written from the task files (`task_outputs`: only ids and decisions shuffle) -> errors
and instruction tables. Each step is one composite, labelled transform, so the runner's graph
reads like this docstring.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any, Protocol, TypeVar

import apache_beam as beam

from curate import fs
from curate.build.phase1 import NEAR_FILE
from curate.build.plan import task_file
from curate.build.task_outputs import KEPT, WriteFromTasks
from curate.build.timings import Phase2Step, file_size, parquet_bytes_read
from curate.dedup.config import NearDedupConfig
from curate.dedup.exact import Decision, caption_image_key, group_drops, text_field
from curate.instruct.config import InstructConfig
from curate.schema import ERROR_SCHEMA, RecordSchema, load_schema, reject_schema
from curate.shards import layout
from curate.shards.beam import FlatTable, WriteFlatTables, WriteSettings, WriteSplitShards
from curate.shards.writer import read_rows
from curate.shuffle import MeasuredGroupByKey, MeasureShuffle
from curate.spec import Spec

# When several phase-2 methods drop the same record, the first in this order names the reason.
# A benchmark leak comes first: a leaked record that is also a copy must be counted as a leak.
DROP_PRIORITY = (
    "decontaminate",
    "dedup:exact_caption_image",
    "dedup:exact_image",
    "dedup:near",
    "dedup:semantic",
    "quality",
)
# Reject stages that phase 2 assigns (the manifest counts them as phase-2 rejects).
PHASE2_STAGE_PREFIXES = ("dedup", "decontaminate", "quality")


# Beam metrics of the main steps (the manifest's `timings.phase2`).
READ_COMPACT = Phase2Step("read_compact")
EXACT_CAPTION_IMAGE = Phase2Step("exact_caption_image")
EXACT_IMAGE = Phase2Step("exact_image")
READ_FULL = Phase2Step("read_full")
READ_NEAR = Phase2Step("read_near")
READ_ERRORS = Phase2Step("read_errors")


# ---- exact duplicates on compact rows ----------------------------------------------------------


def read_compact(
    item: tuple[str, str], text_field: str | None, has_image: bool
) -> Iterator[dict[str, Any]]:
    """(task id, kept file) -> compact rows: id, split, task, image digest, caption key."""
    task_id, path = item
    columns = (
        ["record_id", "split"]
        + (["image_sha256"] if has_image else [])
        + ([text_field] if text_field else [])
    )
    # Built before the first yield, so the step's time excludes the fused steps downstream.
    with READ_COMPACT.timed():
        compact = [
            {
                "record_id": row["record_id"],
                "split": row["split"],
                "task_id": task_id,
                "image_sha256": row.get("image_sha256"),
                "caption_key": caption_image_key(
                    row.get(text_field) if text_field else None, row.get("image_sha256")
                ),
            }
            for row in read_rows(path, columns=columns)
        ]
    READ_COMPACT.count("files")
    READ_COMPACT.count("records_out", len(compact))
    READ_COMPACT.count("bytes_read", parquet_bytes_read(path, columns))
    yield from compact


def _caption_image_key(row: dict[str, Any]) -> list[tuple[str, str]]:
    EXACT_CAPTION_IMAGE.count("records_in")
    return [(row["caption_key"], row["record_id"])] if row["caption_key"] else []


def _image_key(row: dict[str, Any]) -> list[tuple[str, str]]:
    EXACT_IMAGE.count("records_in")
    return [(row["image_sha256"], row["record_id"])] if row["image_sha256"] else []


def _counted_drops(
    item: tuple[str, Iterable[str]], reason: str, stage: str, step: Phase2Step
) -> Iterator[tuple[str, Decision]]:
    """`group_drops`, counting the drops for the step's metrics."""
    for drop in group_drops(item, reason, stage):
        step.count("drops")
        yield drop


def read_full(path: str, batch_rows: int) -> Iterator[list[dict[str, Any]]]:
    """Every column of a task's kept file (for the transforms that hash or embed records), in
    file order, as batches of at most `batch_rows` rows: a batch depends on the file alone."""
    with READ_FULL.timed():
        rows = read_rows(path)
    READ_FULL.count("records_out", len(rows))
    READ_FULL.count("bytes_read", file_size(path))
    for start in range(0, len(rows), batch_rows):
        yield rows[start : start + batch_rows]


def read_errors(path: str) -> list[dict[str, Any]]:
    rows = read_rows(path)
    READ_ERRORS.count("records_out", len(rows))
    return rows


class ExactDuplicates(beam.PTransform):
    """Compact rows -> (record_id, decision) for exact copies."""

    def __init__(self, schema: RecordSchema, caption_image: bool, image_sha256: bool) -> None:
        super().__init__()
        has_text = text_field(schema.field_names) is not None
        has_image = "image_sha256" in schema.field_names
        self.caption_image = caption_image and has_text and has_image
        self.image_sha256 = image_sha256 and has_image

    def expand(self, compact: Any) -> tuple[Any, ...]:
        # (label, key of a row, reason, reject stage, counter): one grouping per kind of copy.
        kinds = []
        if self.caption_image:
            kinds.append(
                (
                    "CaptionImage",
                    _caption_image_key,
                    "duplicate_caption_image",
                    "dedup:exact_caption_image",
                    EXACT_CAPTION_IMAGE,
                )
            )
        if self.image_sha256:
            kinds.append(("Image", _image_key, "duplicate_image", "dedup:exact_image", EXACT_IMAGE))
        return tuple(
            compact
            | f"{label}Key" >> beam.FlatMap(key_of)
            | f"Group{label}" >> MeasuredGroupByKey(f"phase2.{stage.split(':')[1]}")
            | f"{label}Drops" >> beam.FlatMap(_counted_drops, reason, stage, counter)
            for label, key_of, reason, stage, counter in kinds
        )


# ---- optional drop transforms (near/semantic dedup, quality, decontamination) -----------------


class _Switchable(Protocol):
    enabled: bool


_Section = TypeVar("_Section", bound=_Switchable)


def _if_enabled(config: _Section | None) -> _Section | None:
    """An optional section when the spec gives it and does not switch it off."""
    return config if config is not None and config.enabled else None


def _as_drop(stage: str):
    step = Phase2Step(stage)

    def convert(decision: tuple[str, str, str | None]) -> tuple[str, Decision]:
        step.count("drops")
        record_id, reason, duplicate_of = decision
        return record_id, (stage, reason, duplicate_of)

    return convert


def _write_jsonl(rows: list[dict[str, Any]], path: str) -> None:
    ordered = sorted(rows, key=lambda r: json.dumps(r, sort_keys=True, default=str))
    payload = "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in ordered)
    fs.write_bytes_atomic(path, payload.encode())


def needs_full_records(spec: Spec) -> bool:
    """Whether an optional drop transform reads the records (to embed them or check them
    against benchmarks); near dedup reads phase 1's compact sidecars instead."""
    sections = (spec.dedup.semantic, spec.dedup.decontam, spec.embed)
    return any(_if_enabled(section) is not None for section in sections)  # type: ignore[type-var]


def read_near_rows(path: str, config: NearDedupConfig) -> list[dict[str, Any]]:
    """A task's near-dup sidecar (phase 1 wrote it under this build's spec)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from curate.dedup.sidecar import near_sidecar_matches

    with READ_NEAR.timed():
        data = fs.read_bytes(path)
        table = pq.read_table(pa.BufferReader(data))
        rows = table.to_pylist()
    if not near_sidecar_matches(table.schema, config):
        raise RuntimeError(f"{path} was made under other near-dedup settings: rebuild with --fresh")
    READ_NEAR.count("records_out", len(rows))
    READ_NEAR.count("bytes_read", len(data))
    return rows


def optional_drops(spec: Spec, batches: Any, near_rows: Any, out_dir: str) -> list[Any]:
    """PCollections of (record_id, (stage, reason, duplicate_of)) for records to drop: near and
    semantic duplicates (one union-find, one survivor per group), low image-text similarity,
    and benchmark leaks. The embedding pass runs first when a section needs vectors, writing
    its sidecar to OUT/attributes/ so thresholds can be re-tuned without re-embedding.
    `batches` are lists of full records cut from one task file each (`read_full`), None when
    no section needs them; `near_rows` the near-dup sidecar rows, None when near is off."""
    from curate.errors import SpecError

    near = _if_enabled(spec.dedup.near)
    semantic = _if_enabled(spec.dedup.semantic)
    quality = _if_enabled(spec.dedup.quality)
    decontam = _if_enabled(spec.dedup.decontam)
    embed = _if_enabled(spec.embed)
    drops: list[Any] = []
    vectors: dict[str, Any] = {}
    records = None if batches is None else batches | "Records" >> beam.FlatMap(lambda b: b)
    if embed is not None:
        from curate.embed.beam import EmbedRecords

        for tower in embed.towers:
            vectors[tower] = batches | f"Embed_{tower}" >> EmbedRecords(
                embed, tower, out_dir=out_dir, fixed_batches=True
            )
    if near is not None or semantic is not None:
        from curate.dedup.beam import NearDuplicates

        near_config = near if near is not None else NearDedupConfig(enabled=False)
        semantic_vectors = vectors.get(semantic.tower) if semantic is not None else None
        if semantic is not None and semantic_vectors is None:
            raise SpecError(
                f"dedup.semantic uses the {semantic.tower} tower: add it to embed.towers"
            )
        decisions = (records if near_rows is None else near_rows) | "NearDuplicates" >> (
            NearDuplicates(
                near_config,
                vectors=semantic_vectors,
                semantic=semantic,
                from_sidecar=near_rows is not None,
            )
        )
        drops.append(decisions | "NearAsDrops" >> beam.Map(_as_drop("dedup:near")))
    if quality is not None and (
        quality.min_clip_score is not None or quality.keep_top_fraction is not None
    ):
        if not ("image" in vectors and "text" in vectors):
            raise SpecError(
                "dedup.quality scores image-text similarity: embed both towers with one CLIP-type model"
            )
        from curate.rules.beam import QualityScores

        low = {"image": vectors["image"], "text": vectors["text"]} | "Quality" >> QualityScores(
            quality
        )
        drops.append(low | "QualityAsDrops" >> beam.Map(_as_drop("quality")))
    if decontam is not None:
        from curate.decontaminate.beam import Decontaminate

        leaks = records | "Decontaminate" >> Decontaminate(decontam, with_matches=True)
        drops.append(leaks["decisions"] | "LeaksAsDrops" >> beam.Map(_as_drop("decontaminate")))
        _ = (
            leaks["matches"]
            | "AllMatches" >> beam.combiners.ToList()
            | "WriteMatches"
            >> beam.Map(_write_jsonl, fs.join(out_dir, layout.ATTRIBUTES, layout.BENCHMARK_MATCHES))
        )
    return drops


# ---- one decision per record -------------------------------------------------------------------


def first_by_priority(decisions: Iterable[Decision]) -> Decision:
    rank = {name: i for i, name in enumerate(DROP_PRIORITY)}
    return min(decisions, key=lambda d: (rank.get(d[0], len(rank)), d[1], d[2] or ""))


class OneDecisionPerRecord(beam.PTransform):
    """Drop PCollections (at least one) -> (record_id, decision): DROP_PRIORITY names the
    reason."""

    def expand(self, drops: tuple[Any, ...]) -> Any:
        return (
            drops
            | "AllDrops" >> beam.Flatten()
            | "Measure" >> MeasureShuffle("phase2.decisions")
            | "FirstByPriority" >> beam.CombinePerKey(first_by_priority)
        )


# ---- outputs ----------------------------------------------------------------------------------


def instruct_config(spec: Spec) -> InstructConfig | None:
    return _if_enabled(spec.instruct)


class WriteInstructions(beam.PTransform):
    """Kept records -> instruction shards under instructions/<split>/ (generated after the
    split, so matching distractors come from the same split); returns the flat tables left to
    write, {folder: rows}: rejected candidates for instructions_rejects/, failures for
    instructions_errors/ (`instruction_tables`)."""

    def __init__(
        self, config: InstructConfig, out_dir: str, settings: WriteSettings, shard_rows: int
    ):
        super().__init__()
        self.config, self.out_dir, self.settings, self.rows = config, out_dir, settings, shard_rows

    def expand(self, kept: Any) -> dict[str, Any]:
        from curate.instruct.beam import GenerateInstructions

        schema = load_schema("instruction.v1")
        outputs = kept | "Generate" >> GenerateInstructions(self.config)
        _ = outputs.instructions | "InstructionShards" >> WriteSplitShards(
            self.out_dir, layout.INSTRUCTIONS, schema.arrow, self.settings, self.rows
        )
        return {
            layout.INSTRUCTION_REJECTS: outputs.rejected
            | "InstructionRejectRows" >> beam.Map(lambda r: r.as_row()),
            layout.INSTRUCTION_ERRORS: outputs.failed
            | "InstructionErrorRows" >> beam.Map(lambda f: f.as_row()),
        }


def instruction_tables() -> list[FlatTable]:
    return [
        FlatTable(
            layout.INSTRUCTION_REJECTS,
            reject_schema(load_schema("instruction.v1")),
            "source_record_id",
        ),
        FlatTable(layout.INSTRUCTION_ERRORS, ERROR_SCHEMA, "record_id"),
    ]


def clear_outputs(out_dir: str) -> None:
    """Phase 2 rewrites its folders whole, so a rerun never mixes old and new files."""
    for folder in layout.PHASE2_FOLDERS:
        fs.remove(fs.join(out_dir, folder))


def _task_file_of(task_id: str, out_dir: str, name: str) -> tuple[str, str]:
    return task_id, task_file(out_dir, task_id, name)


class Phase2(beam.PTransform):
    """Task ids (phase 1 finished them) -> the build's outputs; see the module docstring."""

    def __init__(self, spec: Spec, out_dir: str) -> None:
        super().__init__()
        self.spec, self.out_dir = spec, out_dir

    def expand(self, task_ids: Any) -> None:
        spec, out_dir = self.spec, self.out_dir
        p = task_ids.pipeline
        schema = load_schema(spec.schema_)
        out = spec.output
        settings = WriteSettings(out.compression, out.compression_level, out.row_group_rows)
        kept_files = task_ids | "KeptFiles" >> beam.Map(_task_file_of, out_dir, "kept.parquet")
        compact = kept_files | "ReadCompact" >> beam.FlatMap(
            read_compact, text_field(schema.field_names), "image_sha256" in schema.field_names
        )
        exact = spec.dedup.exact
        drops = list(
            compact
            | "ExactDuplicates" >> ExactDuplicates(schema, exact.caption_image, exact.image_sha256)
        )
        batches = near_rows = None
        if needs_full_records(spec):
            # Read, not shuffled: the stages below reduce each record to vectors first.
            embed = _if_enabled(spec.embed)
            batch_rows = embed.batch_size if embed is not None else 1 << 30
            batches = kept_files | "ReadFull" >> beam.FlatMap(
                lambda item: read_full(item[1], batch_rows)
            )
        near = _if_enabled(spec.dedup.near)
        if near is not None:
            near_rows = task_ids | "NearSidecars" >> beam.FlatMap(
                lambda t: read_near_rows(task_file(out_dir, t, NEAR_FILE), near)
            )
        if batches is not None or near_rows is not None:
            drops.extend(optional_drops(spec, batches, near_rows, out_dir))
        if not drops:  # nothing can drop a record: an empty decision set
            drops.append(p | "NoDrops" >> beam.Create([]))
        decisions = tuple(drops) | "OneDecisionPerRecord" >> OneDecisionPerRecord()
        instruct = instruct_config(spec)
        written = (task_ids, compact, decisions) | "ShardsAndRejects" >> WriteFromTasks(
            out_dir,
            schema,
            settings,
            out.shard_rows,
            emit_kept=instruct is not None,
            # instructions reference images by hash unless told to copy them
            kept_image_bytes=instruct is not None and instruct.include_image,
        )
        flat = {
            layout.ERRORS: task_ids
            | "ErrorFiles" >> beam.Map(lambda t: task_file(out_dir, t, "errors.parquet"))
            | "ReadErrors" >> beam.FlatMap(read_errors)
        }
        tables = [FlatTable(layout.ERRORS, ERROR_SCHEMA, "source_uri")]
        if instruct is not None:
            flat.update(
                written[KEPT]
                | "Instructions" >> WriteInstructions(instruct, out_dir, settings, out.shard_rows)
            )
            tables += instruction_tables()
        # the small tables share one count and one shuffle
        _ = flat | "FlatTables" >> WriteFlatTables(out_dir, tables, settings, out.shard_rows)
