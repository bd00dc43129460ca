"""Phase-2 transforms contributed by optional packages (dedup, quality, decontamination,
instructions). Each is added only when the spec has its section, so the core build needs none
of their dependencies."""

from __future__ import annotations

from typing import Any

import apache_beam as beam

from curate.spec import Spec, section

INSTRUCTIONS = "instructions"
INSTRUCTION_REJECTS = "instructions_rejects"
INSTRUCTION_ERRORS = "instructions_errors"


BENCHMARK_MATCHES = "benchmark_matches.jsonl"


def _enabled(config: Any) -> bool:
    return config is not None and getattr(config, "enabled", True)


def _as_drop(stage: str):
    def convert(decision: tuple[str, str, str | None]) -> tuple[str, tuple[str, str, str | None]]:
        record_id, reason, duplicate_of = decision
        return record_id, (stage, reason, duplicate_of)

    return convert


def _write_jsonl(rows: list[dict[str, Any]], path: str) -> None:
    import json

    from curate import fs

    ordered = sorted(rows, key=lambda r: json.dumps(r, sort_keys=True, default=str))
    payload = "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in ordered)
    fs.write_bytes_atomic(path, payload.encode())


def phase2_drop_transforms(spec: Spec, records: Any, out_dir: str) -> list[Any]:
    """PCollections of (record_id, (stage, reason, duplicate_of)) for records to drop: near and
    semantic duplicates (one union-find, one survivor per group), low image-text similarity,
    and benchmark leaks. The embedding pass runs first when a section needs vectors, writing
    its sidecar to OUT/attributes/ so thresholds can be re-tuned without re-embedding."""
    from curate import fs

    near: Any = section(spec, ("dedup", "near"))
    semantic: Any = section(spec, ("dedup", "semantic"))
    quality: Any = section(spec, ("dedup", "quality"))
    decontam: Any = section(spec, ("dedup", "decontam"))
    embed: Any = section(spec, ("embed",))
    drops: list[Any] = []
    vectors: dict[str, Any] = {}
    if _enabled(embed):
        from curate.embed.beam import EmbedRecords

        for tower in embed.towers:
            vectors[tower] = records | f"Embed_{tower}" >> EmbedRecords(
                embed, tower, out_dir=out_dir
            )
    if _enabled(near) or _enabled(semantic):
        from curate.dedup.beam import NearDuplicates
        from curate.dedup.config import NearDedupConfig

        near_config = near if _enabled(near) else NearDedupConfig(enabled=False)
        semantic_vectors = vectors.get(semantic.tower) if _enabled(semantic) else None
        if _enabled(semantic) and semantic_vectors is None:
            from curate.errors import SpecError

            raise SpecError(
                f"dedup.semantic uses the {semantic.tower} tower: add it to embed.towers"
            )
        decisions = records | "NearDuplicates" >> NearDuplicates(
            near_config, vectors=semantic_vectors, semantic=semantic if _enabled(semantic) else None
        )
        drops.append(decisions | "NearAsDrops" >> beam.Map(_as_drop("dedup:near")))
    if _enabled(quality) and (
        quality.min_clip_score is not None or quality.keep_top_fraction is not None
    ):
        if not ("image" in vectors and "text" in vectors):
            from curate.errors import SpecError

            raise SpecError(
                "dedup.quality scores image-text similarity: embed both towers with one CLIP-type model"
            )
        from curate.dedup.beam import QualityScores

        low = {"image": vectors["image"], "text": vectors["text"]} | "Quality" >> QualityScores(
            quality
        )
        drops.append(low | "QualityAsDrops" >> beam.Map(_as_drop("quality")))
    if _enabled(decontam):
        from curate.dedup.beam import Decontaminate

        leaks = records | "Decontaminate" >> Decontaminate(decontam, with_matches=True)
        drops.append(leaks["decisions"] | "LeaksAsDrops" >> beam.Map(_as_drop("decontaminate")))
        _ = (
            leaks["matches"]
            | "AllMatches" >> beam.combiners.ToList()
            | "WriteMatches"
            >> beam.Map(_write_jsonl, fs.join(out_dir, "attributes", BENCHMARK_MATCHES))
        )
    return drops


def instruct_config(spec: Spec) -> Any | None:
    config = section(spec, ("instruct",))
    if config is None or not getattr(config, "enabled", True):
        return None
    return config


def instruction_transform(spec: Spec, kept: Any, out_dir: str, settings: Any) -> None:
    """Generate instruction records from kept records (after the split, so matching distractors
    come from the same split) and write them as shards under instructions/<split>/; rejected
    candidates go to instructions_rejects/, failures to instructions_errors/."""
    config = instruct_config(spec)
    if config is None:
        return
    from curate.build import WriteFlatFiles, WriteSplitShards, rejected_row
    from curate.instruct.beam import GenerateInstructions
    from curate.schema import ERROR_SCHEMA, REJECT_COLUMNS, load_schema

    schema = load_schema("instruction.v1")
    rows = spec.output.shard_rows
    outputs = kept | "Instructions" >> GenerateInstructions(config)
    _ = outputs.instructions | "InstructionShards" >> WriteSplitShards(
        out_dir, INSTRUCTIONS, schema.arrow, settings, rows
    )
    _ = (
        outputs.rejected
        | "InstructionRejectRows" >> beam.Map(rejected_row)
        | "InstructionRejects"
        >> WriteFlatFiles(
            out_dir,
            INSTRUCTION_REJECTS,
            schema.extended(REJECT_COLUMNS, "rejects").arrow,
            settings,
            rows,
            "source_record_id",
        )
    )
    _ = (
        outputs.failed
        | "InstructionErrorRows" >> beam.Map(lambda f: f.as_row())
        | "InstructionErrors"
        >> WriteFlatFiles(out_dir, INSTRUCTION_ERRORS, ERROR_SCHEMA, settings, rows, "record_id")
    )


def instruction_accounting(
    spec: Spec, out_dir: str, kept_ids: set[str], metrics: Any
) -> dict[str, Any] | None:
    """Per source record: out (some instruction kept), rejected, or failed — read back from files."""
    config = instruct_config(spec)
    if config is None:
        return None
    from collections import Counter

    from curate import fs
    from curate.instruct.beam import usage_from_metrics
    from curate.shards.writer import read_rows

    produced: set[str] = set()
    per_split: Counter = Counter()
    tasks: Counter = Counter()
    for path in fs.glob(fs.join(out_dir, INSTRUCTIONS, "*", "*.parquet")):
        for row in read_rows(path, columns=["source_record_id", "split", "task"]):
            produced.add(row["source_record_id"])
            per_split[row["split"]] += 1
            tasks[row["task"]] += 1
    rejected_ids: set[str] = set()
    reject_reasons: Counter = Counter()
    for path in fs.glob(fs.join(out_dir, INSTRUCTION_REJECTS, "*.parquet")):
        for row in read_rows(path, columns=["source_record_id", "reason"]):
            rejected_ids.add(row["source_record_id"])
            reject_reasons[row["reason"]] += 1
    failed_ids: set[str] = set()
    error_reasons: Counter = Counter()
    for path in fs.glob(fs.join(out_dir, INSTRUCTION_ERRORS, "*.parquet")):
        for row in read_rows(path, columns=["record_id", "reason"]):
            failed_ids.add(row["record_id"])
            error_reasons[row["reason"]] += 1
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
