"""`curate plan`: the projection arithmetic on given numbers, the machine price list, sampling,
and the command itself on the demo spec, on a cloud-layout mirror, and on missing inputs."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest

from curate.build.estimate import (
    Assumptions,
    Machine,
    PriceList,
    SourceScale,
    cpu_bounds,
    estimate,
    load_prices,
    machine_costs,
    worker_hours,
)
from curate.build.plan import (
    PlanStats,
    evenly_spaced,
    make_tasks,
    plan_file,
    read_part,
    sample_plan,
)
from curate.cli import main
from curate.errors import SpecError
from curate.sources.base import Unit

# ---- the arithmetic ------------------------------------------------------------------------------


def test_worker_hours_formula() -> None:
    # 0.036 CPU-s x 1e6 records = 10 CPU-hours, over 4 vCPUs at 50 % efficiency = 5 hours
    assert worker_hours(0.036, 1_000_000, vcpus=4, efficiency=0.5) == 5.0
    assert worker_hours(0.036, 1_000_000, vcpus=1, efficiency=1.0) == 10.0


def prices(efficiency: float = 0.5, shuffle: float = 0.011) -> PriceList:
    machines = (
        Machine("free", "local", 2, 8, 0.0, "test"),
        Machine("four", "dataflow", 4, 16, 0.5, "test"),
    )
    return PriceList(machines, efficiency, shuffle, "2024-06", "test.yaml")


def test_machine_costs_per_machine() -> None:
    costs = machine_costs(prices(), cpu_low=0.025, cpu_high=0.1, records=144_000)
    four = costs[1]
    # low: 0.025 x 144,000 = 3,600 CPU-s = 1 CPU-hour / (4 x 0.5) = 0.5 h; at $0.5 -> $0.25
    assert (four.worker_hours_low, four.cost_usd_low) == (0.5, 0.25)
    assert (four.worker_hours_high, four.cost_usd_high) == (2.0, 1.0)
    free = costs[0]
    assert (free.worker_hours_low, free.cost_usd_low) == (1.0, 0.0)


def sample_manifest() -> dict[str, Any]:
    def phase(name: str, cpu: float, children: float = 0.0) -> dict[str, Any]:
        return {"phase": name, "wall_s": 9.0, "cpu_s": cpu, "cpu_children_s": children}

    return {
        "spec": {"name": "given"},
        "status": "ok",
        "sample": {"units_per_source": 10},
        "records": {"candidates": 40, "kept": 30},
        "shuffle": {"phase2.exact_image": {"bytes": 4000, "elements": 40}},
        "timings": {
            # prepare and inputs (generated demo corpora) are not per-record costs
            "phases": [
                phase("prepare", 1.0),
                phase("inputs", 5.0),
                phase("phase1", 0.5, 1.5),
                phase("phase2", 2.0),
            ],
            "phase1": {
                "stages": [
                    {"stage": "read", "wall_s": 0.5, "cpu_s": 0.5},
                    {"stage": "write", "wall_s": 0.5, "cpu_s": 0.25},
                ]
            },
            "phase2": {
                "steps": [
                    {"stage": "decisions", "records_in": 40},  # counted, not timed
                    {"stage": "write_shards", "wall_s": 0.5, "cpu_s": 0.25},
                ],
            },
            "outputs": {"shards": {"files": 1, "rows": 30, "bytes": 8000}},
        },
    }


def given_sources() -> list[SourceScale]:
    return [
        # 40,000 to build, 3 records per unit in the sample -> 120,000 records
        SourceScale("a", "pmc", 50_000, {"retracted": 10_000}, 10, 30, 1000),
        # 24,000 to build, 1 record per unit -> 24,000 records
        SourceScale("b", "pmc", 24_000, {}, 10, 10, 500),
    ]


def test_cpu_bounds_from_given_timings() -> None:
    low, high = cpu_bounds(sample_manifest()["timings"], records=40)
    assert low == 1.0 / 40  # 0.5 + 0.25 (phase 1) + 0.25 (phase 2 steps)
    assert high == 4.0 / 40  # phase1 0.5 + 1.5 (workers) + phase2 2.0; prepare, inputs out


def test_estimate_scales_the_sample_to_the_discovered_units() -> None:
    est = estimate(
        sample_manifest(), given_sources(), tasks=8_000, units_per_task=8, prices=prices()
    )
    assert [s.expected_records for s in est.sources] == [120_000, 24_000]
    assert est.expected_records == 144_000
    assert est.expected_kept == 108_000  # 30 of 40 kept in the sample
    assert est.expected_bytes_read == 100 * 40_000 + 50 * 24_000
    assert est.expected_output_bytes == {"shards": 8000 * 3600}  # 144,000 / 40 = 3,600x
    assert est.shuffle_bytes == 4000 * 3600
    assert (est.cpu_s_per_record_low, est.cpu_s_per_record_high) == (0.025, 0.1)
    four = est.machines[1]
    assert (four.worker_hours_low, four.worker_hours_high) == (0.5, 2.0)
    assert (four.cost_usd_low, four.cost_usd_high) == (0.25, 1.0)
    assert est.shuffle_cost_usd == 4000 * 3600 / 1e9 * 0.011
    per_stage = {c.stage: c.cpu_s_per_record for c in est.stage_costs}
    assert per_stage == {
        "phase 1: read": 0.5 / 40,
        "phase 1: write": 0.25 / 40,
        "phase 2: write_shards": 0.25 / 40,
        "whole phase1": 2.0 / 40,
        "whole phase2": 2.0 / 40,
    }


def test_estimate_with_assumed_units_and_records_per_unit() -> None:
    assume = Assumptions(units=1000, records_per_unit=2.5)
    est = estimate(sample_manifest(), given_sources(), 1, 8, prices(), assume)
    assert est.expected_records == 2500
    assert est.expected_bytes_read == 2500 * (1500 / 40)  # the sample's bytes per record
    assert est.assumptions[:2] == [
        "units: 1,000 (assumed)",
        "records per unit: 2.5 (assumed)",
    ]


# ---- machine prices --------------------------------------------------------------------------------

DATAFLOW_VCPU_HOUR, DATAFLOW_GB_HOUR, DISK = 0.056, 0.003557, 25 * 0.000054


def test_bundled_price_list() -> None:
    price_list = load_prices()
    names = [m.name for m in price_list.machines]
    for name in ("local", "n2-standard-4", "n2-standard-8", "n2-standard-16", "n2-highmem-8"):
        assert name in names
    assert price_list.prices_as_of and 0 < price_list.efficiency <= 1
    local = price_list.machines[names.index("local")]
    assert (local.usd_per_hour, local.vcpus) == (0.0, os.cpu_count())
    for machine in price_list.machines:
        assert machine.why
        if machine.runner == "dataflow":  # each hourly price is the documented sum of its rates
            rates = machine.vcpus * DATAFLOW_VCPU_HOUR + machine.memory_gb * DATAFLOW_GB_HOUR
            assert machine.usd_per_hour == round(rates + DISK, 4), machine.name


def test_a_broken_price_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "machines.yaml"
    path.write_text("machines:\n  - {name: x, runner: local}\n")
    with pytest.raises(SpecError, match="incomplete"):
        load_prices(path)
    with pytest.raises(SpecError, match="does not exist"):
        load_prices(tmp_path / "absent.yaml")


# ---- sampling ----------------------------------------------------------------------------------------


def test_evenly_spaced_is_deterministic_and_spread() -> None:
    assert evenly_spaced(list(range(10)), 3) == [0, 3, 6]
    assert evenly_spaced(list(range(10)), 5) == [0, 2, 4, 6, 8]
    assert evenly_spaced([1, 2], 5) == [1, 2]


def _write_piece(out: Path, label: str, piece: int, units: list[Unit], size: int) -> dict:
    tasks = make_tasks(label, units, size, piece)
    name = f"parts/{label}-{piece:05d}.jsonl"
    path = Path(plan_file(str(out), name))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"task": t}) + "\n" for t in tasks))
    return {
        "source": label,
        "piece": piece,
        "file": name,
        "active": len(units),
        "tasks": len(tasks),
    }


def test_sample_plan_takes_units_per_source_across_pieces(tmp_path: Path) -> None:
    units = [Unit(f"u{i:02d}", f"/in/{i}.xml", "pmc") for i in range(10)]
    entry = {"kind": "pmc", "path": "/in", "skipped": {}, "tasks": 0}
    stats = PlanStats(
        sources={
            "a": {**entry, "discovered": 12, "active": 10, "skipped": {"retracted": 2}},
            "b": {**entry, "discovered": 2, "active": 2},
        },
        # source a's units lie in two pieces (the second never read: no unit of it is chosen
        # when only one unit per source is sampled)
        parts=[
            _write_piece(tmp_path, "a", 0, units[:7], 4),
            _write_piece(tmp_path, "a", 1, units[7:], 4),
            _write_piece(tmp_path, "b", 0, units[:2], 4),
        ],
    )
    sampled = sample_plan(stats, str(tmp_path), 3, units_per_task=2)
    chosen = [
        [u["unit_id"] for u in t["units"]]
        for path in sampled.part_paths(str(tmp_path))
        for t in read_part(path, "task")
    ]
    assert chosen == [["u00", "u03"], ["u06"], ["u00", "u01"]]
    assert sampled.inputs["a"]["discovered"] == 3 and sampled.inputs["a"]["skipped"] == {}
    assert sampled.tasks == 3
    Path(plan_file(str(tmp_path), "parts/a-00001.jsonl")).unlink()
    assert sample_plan(stats, str(tmp_path), 1, units_per_task=2).tasks == 2
    with pytest.raises(SpecError):
        sample_plan(stats, str(tmp_path), 0, units_per_task=2)


# ---- the command -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cloud_mirror(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pmc_demo")
    assert main(["pmc-demo", "--out", str(out)]) == 0
    return out / "cloud"


@pytest.fixture()
def made_folders(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The temporary folders the command makes (so a test can see they are gone)."""
    made: list[str] = []
    real = tempfile.mkdtemp

    def recording(*args: Any, **kwargs: Any) -> str:
        folder = real(*args, **kwargs)
        if os.path.basename(folder).startswith("curate-plan-"):  # not Beam's own
            made.append(folder)
        return folder

    monkeypatch.setattr(tempfile, "mkdtemp", recording)
    return made


@pytest.mark.slow
def test_plan_on_the_demo_spec_with_a_cloud_mirror(
    cloud_mirror: Path, made_folders: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["plan", "--spec", "demo", "--sample", "1", "--source", f"pmc_cloud={cloud_mirror}"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "pmc_cloud (pmc): 11 discovered, skipped: not_open_access 1, retracted 1, " in out
    assert "superseded_version 3; 6 to build; sample 1 units" in out
    assert "pmc_legacy (pmc): 8 discovered, skipped: package_absent 1; 7 to build" in out
    assert "tasks: 8 (3 units per task)" in out
    assert "expected records: " in out and "cost per record" in out
    for machine in load_prices().machines:
        assert any(line.split()[:2] == [machine.name, machine.runner] for line in out.splitlines())
    # the sample build ran in the program's own temporary folder, deleted afterwards
    assert len(made_folders) == 1 and not os.path.exists(made_folders[0])


def test_plan_json_on_a_single_source(
    tmp_path: Path, made_folders: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # demo_cohort's corpus is large to generate: point its one source at a small generated one
    from curate.demo.pmc import generate_pmc_demo

    corpus = tmp_path / "corpus"
    generate_pmc_demo(str(corpus))
    args = ["plan", "--spec", "demo_cohort", "--source", f"pmc_cohort={corpus / 'folder'}"]
    assert main([*args, "--sample", "4", "--json", "--set", "dedup.near.enabled=false"]) == 0
    plan = json.loads(capsys.readouterr().out)
    (source,) = plan["sources"]
    assert (source["discovered"], source["active"], source["sampled_units"]) == (9, 9, 4)
    assert plan["tasks"] == 1 and plan["sample_per_source"] == 4
    assert plan["expected_records"] == source["records_per_unit"] * 9
    assert plan["formula"].startswith("worker-hours = CPU-seconds per record x records")
    assert len(plan["machines"]) == len(load_prices().machines)
    assert len(made_folders) == 1 and not os.path.exists(made_folders[0])


@pytest.mark.parametrize("where", ["missing", "empty"])
def test_a_missing_or_empty_source_is_an_error(
    where: str, tmp_path: Path, made_folders: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / where
    if where == "empty":
        path.mkdir()
    args = ["plan", "--spec", "demo_cohort", "--source", f"pmc_cohort={path}"]
    assert main(args) == 2
    err = capsys.readouterr().err
    expected = "does not exist" if where == "missing" else "holds no files"
    assert "source pmc_cohort: " in err and expected in err and str(path) in err
    assert made_folders and not any(os.path.exists(f) for f in made_folders)
