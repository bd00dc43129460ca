"""Per-stage timings and counters: the pure chain, the phase-2 metrics, and a real build's
manifest and data card (counts exact; seconds only present, non-negative and plausible)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import apache_beam as beam
import pytest

from curate.build.outcomes import empty_summary, merge, summary_of
from curate.build.timings import Phase2Step, fold_phase1, output_bytes, phase2_steps
from curate.cli import main
from curate.errors import CurateError
from curate.runners import RunnerChoice
from curate.stages import Record, Rejected, Stage, run_chain

CORES = os.cpu_count() or 1


def plausible(wall_s: float, cpu_s: float) -> bool:
    return wall_s >= 0 and cpu_s >= 0 and cpu_s <= wall_s * CORES + 0.05


# ---- the pure chain ------------------------------------------------------------------------------


class Twice(Stage):
    name = "twice"

    def process(self, record: Record) -> Iterable[Record]:
        yield record
        yield {**record, "copy": True}


class DropOdd(Stage):
    name = "drop_odd"

    def process(self, record: Record) -> Iterable[Record | Rejected]:
        yield Rejected(record, "odd") if record["n"] % 2 else record


class FailOnFour(Stage):
    name = "fail_on_four"

    def process(self, record: Record) -> Iterable[Record]:
        if record["n"] == 4:
            raise CurateError("four")
        yield record


def test_run_chain_times_each_stage_in_order() -> None:
    records = [{"n": n} for n in range(6)]  # 0..5
    result = run_chain([DropOdd(), Twice(), FailOnFour()], records)
    assert list(result.timings) == ["drop_odd", "twice", "fail_on_four"]
    counts = {name: (t.records_in, t.records_out) for name, t in result.timings.items()}
    # 3 odd dropped; 3 doubled to 6; both copies of n=4 fail
    assert counts == {"drop_odd": (6, 3), "twice": (3, 6), "fail_on_four": (6, 4)}
    assert len(result.kept) == 4
    for timing in result.timings.values():
        assert plausible(timing.wall_s, timing.cpu_s)
        assert timing.bytes_read is None and timing.bytes_written is None  # not known: not 0


def test_chain_accounting_is_unchanged_by_timing() -> None:
    result = run_chain([DropOdd(), Twice(), FailOnFour()], [{"n": n} for n in range(6)])
    assert result.counts["twice"].as_dict()["produced"] == 6
    assert result.counts["fail_on_four"].errors == 2
    assert all(c.balanced for c in result.counts.values())


# ---- folding and metrics -------------------------------------------------------------------------


def _stage(name: str, wall: float, cpu: float, n_in: int, n_out: int, **extra: Any) -> dict:
    return {
        "stage": name,
        "wall_s": wall,
        "cpu_s": cpu,
        "records_in": n_in,
        "records_out": n_out,
        "bytes_read": extra.get("bytes_read"),
        "bytes_written": extra.get("bytes_written"),
    }


def _blank_outcome() -> dict:
    return {
        "task_id": "t",
        "source": "a",
        "units": 0,
        "units_failed": 0,
        "unit_error_reasons": {},
        "candidates": 0,
        "read_rejects": {},
        "read_record_errors": {},
        "stages": {},
        "kept": 0,
    }


def test_fold_phase1_sums_tasks_and_counts_the_timed_ones() -> None:
    outcomes = [
        {
            "timings": [
                _stage("read", 1.0, 0.5, 3, 4, bytes_read=100),
                _stage("rules", 0.25, 0.25, 4, 2),
            ]
        },
        {
            "timings": [
                _stage("read", 2.0, 1.5, 3, 5, bytes_read=50),
                _stage("rules", 0.5, 0.5, 5, 5),
            ]
        },
        {"task_id": "from a run before timings existed"},
    ]
    summary = empty_summary()
    for outcome in outcomes:
        summary = merge(summary, summary_of({**_blank_outcome(), **outcome}))
    folded = fold_phase1(summary)
    assert folded["tasks_total"] == 3
    assert folded["stages"] == [
        {**_stage("read", 3.0, 2.0, 6, 9, bytes_read=150), "tasks_timed": 2},
        {**_stage("rules", 0.75, 0.75, 9, 7), "tasks_timed": 2},
    ]


def test_output_bytes_per_table() -> None:
    files = [
        {"path": "shards/train/a.parquet", "rows": 3, "bytes": 300},
        {"path": "shards/test/b.parquet", "rows": 1, "bytes": 100},
        {"path": "rejects/part-0.parquet", "rows": 2, "bytes": 50},
    ]
    assert output_bytes(files) == {
        "rejects": {"files": 1, "rows": 2, "bytes": 50},
        "shards": {"files": 2, "rows": 4, "bytes": 400},
    }


def _count_and_drop(n: int) -> list[int]:
    step = Phase2Step("exact_image")
    step.count("records_in")
    if n % 3 == 0:
        step.count("drops")
        return []
    return [n]


def _write(n: int) -> int:
    step = Phase2Step("write_shards")
    with step.timed():
        step.count("records_out")
        step.count("bytes_written", 10)
    return n


def test_phase2_steps_read_back_from_beam_metrics() -> None:
    runner, options = RunnerChoice(running_mode="in_memory").make()
    pipeline = beam.Pipeline(runner=runner, options=options)
    _ = pipeline | beam.Create(range(9)) | beam.FlatMap(_count_and_drop) | beam.Map(_write)
    result = pipeline.run()
    result.wait_until_finish()
    steps = phase2_steps(result.metrics())
    assert [s["stage"] for s in steps] == ["exact_image", "write_shards"]  # display order
    assert steps[0] == {"stage": "exact_image", "records_in": 9, "drops": 3, "records_out": 6}
    write = steps[1]
    assert (write["records_out"], write["bytes_written"]) == (6, 60)
    assert plausible(write["wall_s"], write["cpu_s"])


def test_no_metrics_no_steps() -> None:
    assert phase2_steps(None) == []


# ---- a real build --------------------------------------------------------------------------------

LEAN_SPEC = """\
name: lean_demo
description: the demo PMC corpus with rules, modality and exact dedup only (a fast build)
schema: figure_caption.v1
sources:
  - {{kind: pmc, name: pmc_folder, path: "{root}/folder", options: {{layout: folder}}}}
  - {{kind: pmc, name: pmc_legacy, path: "{root}/legacy", options: {{layout: legacy}}}}
rules: [pmc_figures.v1]
enrich: {{modality: true}}
dedup:
  exact: {{image_sha256: true, caption_image: true}}
split:
  seed: 0
  ratios: {{train: 0.8, validation: 0.2}}
output: {{shard_rows: 4}}
work: {{units_per_task: 3}}
max_error_fraction: 0.9
"""


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from curate.demo.pmc import generate_pmc_demo

    root = tmp_path_factory.mktemp("corpus") / "pmc"
    generate_pmc_demo(str(root))
    return root


@pytest.fixture(scope="module")
def lean_spec(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "lean_demo.yaml"
    path.write_text(LEAN_SPEC.format(root=corpus))
    return path


def build(spec: Path, out: Path) -> dict[str, Any]:
    args = ["build", "--spec", str(spec), "--out", str(out), "--running-mode", "in_memory"]
    assert main(args) == 0
    return json.loads((out / "manifest.json").read_text())


@pytest.fixture(scope="module")
def built(lean_spec: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("lean") / "out"
    return out, build(lean_spec, out)


def test_phases_are_timed_in_run_order(built: tuple[Path, dict]) -> None:
    _, manifest = built
    phases = manifest["timings"]["phases"]
    assert [p["phase"] for p in phases] == [
        "prepare",
        "inputs",
        "plan",
        "pipeline",
        "manifest",
        "data_card",
    ]
    for phase in phases:
        assert plausible(phase["wall_s"], phase["cpu_s"] + phase["cpu_children_s"])


def test_phase1_timings_match_the_stage_counts(built: tuple[Path, dict]) -> None:
    _, manifest = built
    phase1 = manifest["timings"]["phase1"]
    stages = {row["stage"]: row for row in phase1["stages"]}
    counts = manifest["stages"]
    assert list(stages) == ["read", "rules:pmc_figures.v1", "enrich:modality", "write"]
    assert phase1["tasks_total"] == manifest["tasks"]["total"] == 6
    assert {row["tasks_timed"] for row in stages.values()} == {6}
    assert stages["read"]["records_in"] == counts["read"]["units_in"]  # units
    assert stages["read"]["records_out"] == counts["read"]["records_out"]
    for name in ("rules:pmc_figures.v1", "enrich:modality"):
        assert stages[name]["records_in"] == counts[name]["in"]
        assert stages[name]["records_out"] == counts[name]["produced"]
    for row in stages.values():
        assert plausible(row["wall_s"], row["cpu_s"])


def test_read_bytes_are_the_input_files_read(built: tuple[Path, dict], corpus: Path) -> None:
    _, manifest = built
    sources = manifest["timings"]["sources"]
    # Every package of the legacy layout is read whole once; the plain folder is read whole.
    packages = sum(p.stat().st_size for p in (corpus / "legacy").rglob("*.tar.gz"))
    folder = sum(p.stat().st_size for p in (corpus / "folder").rglob("*") if p.is_file())
    assert sources["pmc_legacy"]["bytes_read"] == packages
    assert sources["pmc_folder"]["bytes_read"] == folder
    read = manifest["timings"]["phase1"]["stages"][0]
    assert read["bytes_read"] == packages + folder
    assert sum(s["candidates"] for s in sources.values()) == manifest["records"]["candidates"]


def test_task_write_bytes_are_the_task_files(built: tuple[Path, dict]) -> None:
    out, manifest = built
    task_files = sorted((out / "_work" / "tasks").glob("*/*.parquet"))
    assert len(task_files) == 3 * 6
    write = manifest["timings"]["phase1"]["stages"][-1]
    assert write["bytes_written"] == sum(p.stat().st_size for p in task_files)
    # every row of the task files: kept, rejected, and errors (failed units included)
    errors = sum(manifest["error_reasons"].values())
    phase2 = manifest["stages"]["phase2"]
    kept, rejected = phase2["in"], manifest["records"]["rejected"] - phase2["rejected"]
    assert (write["records_in"], write["records_out"]) == (kept + rejected + errors,) * 2


def test_phase2_steps_match_the_outputs(built: tuple[Path, dict]) -> None:
    _, manifest = built
    steps = {row["stage"]: row for row in manifest["timings"]["phase2"]["steps"]}
    files = manifest["timings"]["outputs"]
    assert steps["read_compact"]["files"] == 6
    assert steps["read_compact"]["records_out"] == manifest["stages"]["phase2"]["in"]
    assert steps["write_shards"]["records_out"] == manifest["records"]["kept"]
    assert steps["write_shards"]["bytes_written"] == files["shards"]["bytes"]
    assert steps["write_shards"]["files"] == files["shards"]["files"]
    assert steps["write_rejects"]["records_out"] == manifest["records"]["rejected"]
    assert steps["write_rejects"]["bytes_written"] == files["rejects"]["bytes"]
    assert steps["read_errors"]["records_out"] == files["errors"]["rows"]
    assert (
        manifest["shuffle"]["phase2.exact_image"]["elements"] == manifest["stages"]["phase2"]["in"]
    )


def test_data_card_shows_where_the_time_went(built: tuple[Path, dict]) -> None:
    out, manifest = built
    card = (out / "DATA_CARD.md").read_text()
    section = card.split("## Where the time went", 1)[1].split("## Software", 1)[0]
    for name in ("plan", "pipeline", "phase 1: read", "phase 1: write", "phase 2: write_shards"):
        assert f"| {name} |" in section
    read = manifest["timings"]["phase1"]["stages"][0]
    assert f"| {read['records_in']} | {read['records_out']} |" in section
    assert "6 of 6 tasks timed" in section


def test_a_resumed_task_keeps_the_timings_of_the_run_that_did_it(
    lean_spec: Path, tmp_path: Path
) -> None:
    first = build(lean_spec, tmp_path / "out")
    again = build(lean_spec, tmp_path / "out")
    assert again["tasks"] == {"total": 6, "resumed": 6, "ran": 0}
    assert again["timings"]["phase1"] == first["timings"]["phase1"]
    assert again["stages"] == first["stages"]  # timings never leak into the exact counts
