"""Phase 2: global decisions on compact attributes, then the outputs.

The graph, in order: read the phase-1 task files -> exact duplicates (caption+image, image
sha256) and the optional drop transforms (near/semantic dedup, image-text quality,
benchmark decontamination) -> one decision per record -> apply the decisions to the full
records -> write shards, rejects, errors and instruction tables. Each step is one composite,
labelled transform, so the runner's graph reads like this docstring.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import unicodedata
from collections.abc import Iterable, Iterator
from typing import Any, Protocol, TypeVar

import apache_beam as beam

from curate import fs
from curate.dedup.config import NearDedupConfig
from curate.instruct.config import InstructConfig
from curate.schema import ERROR_SCHEMA, RecordSchema, load_schema, reject_schema
from curate.shards import layout
from curate.shards.beam import WriteFlatFiles, WriteSettings, WriteSplitShards
from curate.shards.writer import read_rows
from curate.spec import Spec
from curate.stages import Rejected

Decision = tuple[str, str, str | None]  # (stage, reason, duplicate_of)

# When several phase-2 methods drop the same record, the first in this order names the reason.
DROP_PRIORITY = (
    "dedup:exact_caption_image",
    "dedup:exact_image",
    "dedup:near",
    "dedup:semantic",
    "decontaminate",
    "quality",
)
# Reject stages that phase 2 assigns (the manifest counts them as phase-2 rejects).
PHASE2_STAGE_PREFIXES = ("dedup", "decontaminate", "quality")

TEXT_FIELDS_FOR_EXACT_DEDUP = ("caption", "report_text", "findings")


# ---- exact duplicates on compact rows ----------------------------------------------------------


def normalise_text(text: str) -> str:
    text = unicodedata.normalize("NFKC", text or "").casefold()
    return " ".join(text.split())


def text_field(schema: RecordSchema) -> str | None:
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
) -> Iterator[tuple[str, Decision]]:
    """Keep the smallest record id of each group; the others duplicate it."""
    _, ids = item
    ordered = sorted(set(ids))
    for record_id in ordered[1:]:
        yield record_id, (stage, reason, ordered[0])


def _caption_image_key(row: dict[str, Any]) -> list[tuple[str, str]]:
    return [(row["caption_key"], row["record_id"])] if row["caption_key"] else []


def _image_key(row: dict[str, Any]) -> list[tuple[str, str]]:
    return [(row["image_sha256"], row["record_id"])] if row["image_sha256"] else []


class ExactDuplicates(beam.PTransform):
    """Kept-file paths -> (record_id, decision) for exact copies, read from compact columns."""

    def __init__(self, schema: RecordSchema, caption_image: bool, image_sha256: bool) -> None:
        super().__init__()
        self.text_field = text_field(schema)
        self.has_image = "image_sha256" in schema.field_names
        self.caption_image = caption_image and self.text_field is not None and self.has_image
        self.image_sha256 = image_sha256 and self.has_image

    def expand(self, kept_paths: Any) -> tuple[Any, ...]:
        compact = kept_paths | "ReadCompact" >> beam.FlatMap(
            read_compact, self.text_field, self.has_image
        )
        drops = []
        if self.caption_image:
            drops.append(
                compact
                | "CaptionImageKey" >> beam.FlatMap(_caption_image_key)
                | "GroupCaptionImage" >> beam.GroupByKey()
                | "CaptionImageDrops"
                >> beam.FlatMap(group_drops, "duplicate_caption_image", "dedup:exact_caption_image")
            )
        if self.image_sha256:
            drops.append(
                compact
                | "ImageKey" >> beam.FlatMap(_image_key)
                | "GroupImage" >> beam.GroupByKey()
                | "ImageDrops" >> beam.FlatMap(group_drops, "duplicate_image", "dedup:exact_image")
            )
        return tuple(drops)


# ---- optional drop transforms (near/semantic dedup, quality, decontamination) -----------------


class _Switchable(Protocol):
    enabled: bool


_Section = TypeVar("_Section", bound=_Switchable)


def _if_enabled(config: _Section | None) -> _Section | None:
    """An optional section when the spec gives it and does not switch it off."""
    return config if config is not None and config.enabled else None


def _as_drop(stage: str):
    def convert(decision: tuple[str, str, str | None]) -> tuple[str, Decision]:
        record_id, reason, duplicate_of = decision
        return record_id, (stage, reason, duplicate_of)

    return convert


def _write_jsonl(rows: list[dict[str, Any]], path: str) -> None:
    ordered = sorted(rows, key=lambda r: json.dumps(r, sort_keys=True, default=str))
    payload = "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in ordered)
    fs.write_bytes_atomic(path, payload.encode())


def optional_drops(spec: Spec, records: Any, out_dir: str) -> list[Any]:
    """PCollections of (record_id, (stage, reason, duplicate_of)) for records to drop: near and
    semantic duplicates (one union-find, one survivor per group), low image-text similarity,
    and benchmark leaks. The embedding pass runs first when a section needs vectors, writing
    its sidecar to OUT/attributes/ so thresholds can be re-tuned without re-embedding."""
    from curate.errors import SpecError

    near = _if_enabled(spec.dedup.near)
    semantic = _if_enabled(spec.dedup.semantic)
    quality = _if_enabled(spec.dedup.quality)
    decontam = _if_enabled(spec.dedup.decontam)
    embed = _if_enabled(spec.embed)
    drops: list[Any] = []
    vectors: dict[str, Any] = {}
    if embed is not None:
        from curate.embed.beam import EmbedRecords

        for tower in embed.towers:
            vectors[tower] = records | f"Embed_{tower}" >> EmbedRecords(
                embed, tower, out_dir=out_dir
            )
    if near is not None or semantic is not None:
        from curate.dedup.beam import NearDuplicates

        near_config = near if near is not None else NearDedupConfig(enabled=False)
        semantic_vectors = vectors.get(semantic.tower) if semantic is not None else None
        if semantic is not None and semantic_vectors is None:
            raise SpecError(
                f"dedup.semantic uses the {semantic.tower} tower: add it to embed.towers"
            )
        decisions = records | "NearDuplicates" >> NearDuplicates(
            near_config, vectors=semantic_vectors, semantic=semantic
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


# ---- decisions applied to full records ---------------------------------------------------------


def first_by_priority(decisions: Iterable[Decision]) -> Decision:
    rank = {name: i for i, name in enumerate(DROP_PRIORITY)}
    return min(decisions, key=lambda d: (rank.get(d[0], len(rank)), d[1], d[2] or ""))


class _ApplyDecision(beam.DoFn):
    def process(self, item: tuple[str, dict[str, list[Any]]]) -> Iterator[Any]:
        _, grouped = item
        for record in grouped["record"]:
            decision = grouped["decision"][0] if grouped["decision"] else None
            if decision is None:
                yield record
            else:
                stage, reason, duplicate_of = decision
                rejected = Rejected(
                    record=record, reason=reason, stage=stage, duplicate_of=duplicate_of
                )
                yield beam.pvalue.TaggedOutput("rejected", rejected.as_row())


def _key_by_id(record: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return record["record_id"], record


class ApplyDecisions(beam.PTransform):
    """(full records, *drop PCollections) -> tagged `kept` records and `rejected` rows: one
    decision per record (DROP_PRIORITY names the reason), joined by record id."""

    def expand(self, inputs: tuple[Any, ...]) -> Any:
        records, *drops = inputs
        if drops:
            decisions = (
                tuple(drops)
                | "AllDrops" >> beam.Flatten()
                | "OneDecisionPerRecord" >> beam.CombinePerKey(first_by_priority)
            )
        else:
            decisions = records.pipeline | "NoDrops" >> beam.Create([])
        full = records | "KeyById" >> beam.Map(_key_by_id)
        return (
            {"record": full, "decision": decisions}
            | "JoinDecisions" >> beam.CoGroupByKey()
            | "Apply" >> beam.ParDo(_ApplyDecision()).with_outputs("rejected", main="kept")
        )


# ---- outputs ----------------------------------------------------------------------------------


def instruct_config(spec: Spec) -> InstructConfig | None:
    return _if_enabled(spec.instruct)


class WriteInstructions(beam.PTransform):
    """Kept records -> instruction shards under instructions/<split>/ (generated after the
    split, so matching distractors come from the same split); rejected candidates go to
    instructions_rejects/, failures to instructions_errors/."""

    def __init__(
        self, config: InstructConfig, out_dir: str, settings: WriteSettings, shard_rows: int
    ):
        super().__init__()
        self.config, self.out_dir, self.settings, self.rows = config, out_dir, settings, shard_rows

    def expand(self, kept: Any) -> None:
        from curate.instruct.beam import GenerateInstructions

        schema = load_schema("instruction.v1")
        outputs = kept | "Generate" >> GenerateInstructions(self.config)
        _ = outputs.instructions | "InstructionShards" >> WriteSplitShards(
            self.out_dir, layout.INSTRUCTIONS, schema.arrow, self.settings, self.rows
        )
        _ = (
            outputs.rejected
            | "InstructionRejectRows" >> beam.Map(lambda r: r.as_row())
            | "InstructionRejects"
            >> WriteFlatFiles(
                self.out_dir,
                layout.INSTRUCTION_REJECTS,
                reject_schema(schema),
                self.settings,
                self.rows,
                "source_record_id",
            )
        )
        _ = (
            outputs.failed
            | "InstructionErrorRows" >> beam.Map(lambda f: f.as_row())
            | "InstructionErrors"
            >> WriteFlatFiles(
                self.out_dir,
                layout.INSTRUCTION_ERRORS,
                ERROR_SCHEMA,
                self.settings,
                self.rows,
                "record_id",
            )
        )


def clear_outputs(out_dir: str) -> None:
    """Phase 2 rewrites its folders whole, so a rerun never mixes old and new files."""
    for folder in layout.PHASE2_FOLDERS:
        path = fs.join(out_dir, folder)
        if fs.is_local(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            fs.delete(fs.glob(path.rstrip("/") + "/**"))


def task_files(out_dir: str, tasks: list[dict[str, Any]], name: str) -> list[str]:
    return [fs.join(out_dir, layout.WORK, "tasks", t["task_id"], name) for t in tasks]


def run_phase2(spec: Spec, out_dir: str, tasks: list[dict[str, Any]], runner: Any) -> Any:
    """Build and run the phase-2 graph; returns the runner's metrics."""
    clear_outputs(out_dir)
    schema = load_schema(spec.schema_)
    out = spec.output
    settings = WriteSettings(out.compression, out.compression_level, out.row_group_rows)
    beam_runner, options = runner.make()
    p = beam.Pipeline(runner=beam_runner, options=options)
    kept_paths = p | "KeptFiles" >> beam.Create(
        task_files(out_dir, tasks, "kept.parquet"), reshuffle=False
    )
    exact = spec.dedup.exact
    drops = list(
        kept_paths
        | "ExactDuplicates" >> ExactDuplicates(schema, exact.caption_image, exact.image_sha256)
    )
    records = kept_paths | "ReadFull" >> beam.FlatMap(read_rows)
    drops.extend(optional_drops(spec, records, out_dir))
    applied = (records, *drops) | "ApplyDecisions" >> ApplyDecisions()
    _ = applied.kept | "Shards" >> WriteSplitShards(
        out_dir, "shards", schema.arrow, settings, out.shard_rows
    )
    instruct = instruct_config(spec)
    if instruct is not None:
        _ = applied.kept | "Instructions" >> WriteInstructions(
            instruct, out_dir, settings, out.shard_rows
        )
    phase1_rejects = (
        p
        | "RejectFiles"
        >> beam.Create(task_files(out_dir, tasks, "rejects.parquet"), reshuffle=False)
        | "ReadRejects" >> beam.FlatMap(read_rows)
    )
    all_rejects = (phase1_rejects, applied.rejected) | "AllRejects" >> beam.Flatten()
    _ = all_rejects | "Rejects" >> WriteFlatFiles(
        out_dir, layout.REJECTS, reject_schema(schema), settings, out.shard_rows, "record_id"
    )
    errors = (
        p
        | "ErrorFiles" >> beam.Create(task_files(out_dir, tasks, "errors.parquet"), reshuffle=False)
        | "ReadErrors" >> beam.FlatMap(read_rows)
    )
    _ = errors | "Errors" >> WriteFlatFiles(
        out_dir, layout.ERRORS, ERROR_SCHEMA, settings, out.shard_rows, "source_uri"
    )
    result = p.run()
    result.wait_until_finish()
    return result.metrics()
