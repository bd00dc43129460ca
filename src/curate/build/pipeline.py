"""The build's one pipeline after planning: phase 1 and phase 2 in a single job.

    task files (plan) -> Phase1 (run or resume each task) -> task outcomes
        outcomes -> summary (_work/phase1_summary.json, folded on workers)
        outcomes -> task ids -> Phase2 (decisions on compact rows, outputs from task files)
    task files -> skipped units -> skipped/

Phase 2 starts from phase 1's outcomes, so it needs no list of tasks from the driver, and a
runner starts one job instead of two.
"""

from __future__ import annotations

from typing import Any

import apache_beam as beam

from curate import fs
from curate.build.outcomes import WriteSummary, read_summary, summary_path
from curate.build.phase1 import Phase1
from curate.build.phase2 import Phase2, clear_outputs
from curate.build.plan import SKIPPED_SCHEMA, read_part
from curate.shards import layout
from curate.shards.beam import WriteFlatFiles, WriteSettings
from curate.spec import Spec


def run_build_pipeline(
    spec: Spec,
    spec_data: dict[str, Any],
    out_dir: str,
    paths: dict[str, str],
    runner: Any,
    task_files: list[str],
    *,
    phase2: bool = True,
    skipped: bool = True,
) -> tuple[dict[str, Any], Any]:
    """Run phase 1 (and phase 2 unless `phase2` is False) over the plan's task files; returns
    (the phase-1 summary, the runner's metrics). `skipped` writes the plan's skipped units."""
    fs.remove(summary_path(out_dir))
    if phase2:
        clear_outputs(out_dir)
    out = spec.output
    settings = WriteSettings(out.compression, out.compression_level, out.row_group_rows)
    beam_runner, options = runner.make()
    p = beam.Pipeline(runner=beam_runner, options=options)
    files = p | "TaskFiles" >> beam.Create(task_files, reshuffle=False)
    outcomes = files | "Phase1" >> Phase1(spec_data, out_dir, paths)
    _ = outcomes | "SummariseTasks" >> WriteSummary(out_dir)
    if skipped:
        _ = (
            files
            | "ReadSkipped" >> beam.FlatMap(read_part, "skipped")
            | "Skipped"
            >> WriteFlatFiles(
                out_dir, layout.SKIPPED, SKIPPED_SCHEMA, settings, out.shard_rows, "unit_id"
            )
        )
    if phase2:
        _ = (
            outcomes
            | "TaskIds" >> beam.Map(lambda outcome: outcome["task_id"])
            | "Phase2" >> Phase2(spec, out_dir)
        )
    result = p.run()
    result.wait_until_finish()
    return read_summary(out_dir), result.metrics()
