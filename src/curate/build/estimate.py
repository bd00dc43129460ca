"""What a full build will cost, projected from a calibration build on a sample.

    records per unit (per source, from the sample) x units discovered -> expected records
    CPU-seconds per record (from the sample's timings)
    worker-hours = CPU-seconds per record x records / 3600 / (vCPUs x efficiency)
    cost         = worker-hours x $/hour (curation_rules/machines.v1.yaml)

Two CPU figures bound the truth: `low` sums the measured work of the stages (per-task phase-1
CPU and the timed phase-2 steps); `high` is the whole sample build's CPU (discovery to data card,
worker start-up and shuffles included) per record, which overstates a large build because fixed
costs are spread over few records; it approaches the truth as the sample grows.

Pure arithmetic on a manifest and the discovery counts: `calibrate.py` runs the sample build.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from curate.errors import SpecError
from curate.resources import resource_path

FORMULA = "worker-hours = CPU-seconds per record x records / 3600 / (vCPUs x efficiency)"
# Phases that a real build does not repeat per record: the output folder and generated inputs.
FIXED_PHASES = ("prepare", "inputs")


# ---- machine prices ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Machine:
    name: str
    runner: str  # "local" or "dataflow"
    vcpus: int
    memory_gb: float
    usd_per_hour: float
    why: str


@dataclass(frozen=True)
class PriceList:
    machines: tuple[Machine, ...]
    efficiency: float
    shuffle_usd_per_gb: float
    prices_as_of: str
    path: str


def _auto(value: Any, local: float) -> float:
    return local if value == "auto" else float(value)


def _memory_gb() -> float:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9, 1)
    except (ValueError, OSError, AttributeError):  # not every platform reports it
        return 0.0


def _machine(entry: dict[str, Any], path: str) -> Machine:
    try:
        return Machine(
            name=str(entry["name"]),
            runner=str(entry["runner"]),
            vcpus=int(_auto(entry["vcpus"], os.cpu_count() or 1)),
            memory_gb=_auto(entry["memory_gb"], _memory_gb()),
            usd_per_hour=float(entry["usd_per_hour"]),
            why=str(entry["why"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise SpecError(f"{path}: machine entry {entry!r} is incomplete or wrong ({exc})") from exc


def load_prices(path: str | Path | None = None) -> PriceList:
    """The machine price list (default: the bundled `curation_rules/machines.v1.yaml`)."""
    file = Path(path) if path else resource_path("curation_rules", "machines.v1.yaml")
    if not file.is_file():
        raise SpecError(f"machine price file {file} does not exist")
    data = yaml.safe_load(file.read_text())
    if not isinstance(data, dict) or not data.get("machines"):
        raise SpecError(f"{file}: expected a mapping with a non-empty `machines` list")
    machines = tuple(_machine(entry, str(file)) for entry in data["machines"])
    if any(m.vcpus < 1 for m in machines):
        raise SpecError(f"{file}: every machine needs at least one vCPU")
    efficiency = float(data.get("efficiency", {}).get("value", 1.0))
    if not 0 < efficiency <= 1:
        raise SpecError(f"{file}: efficiency must be in (0, 1], not {efficiency}")
    return PriceList(
        machines=machines,
        efficiency=efficiency,
        shuffle_usd_per_gb=float(data.get("dataflow_shuffle_usd_per_gb", {}).get("value", 0.0)),
        prices_as_of=str(data.get("prices_as_of", "unknown")),
        path=str(file),
    )


# ---- the projection arithmetic -----------------------------------------------------------------


def worker_hours(cpu_s_per_record: float, records: float, vcpus: int, efficiency: float) -> float:
    return cpu_s_per_record * records / 3600 / (vcpus * efficiency)


@dataclass(frozen=True)
class MachineCost:
    machine: str
    runner: str
    vcpus: int
    usd_per_hour: float
    worker_hours_low: float
    worker_hours_high: float
    cost_usd_low: float
    cost_usd_high: float


def machine_costs(
    prices: PriceList, cpu_low: float, cpu_high: float, records: float
) -> list[MachineCost]:
    costs = []
    for machine in prices.machines:
        low = worker_hours(cpu_low, records, machine.vcpus, prices.efficiency)
        high = worker_hours(cpu_high, records, machine.vcpus, prices.efficiency)
        costs.append(
            MachineCost(
                machine=machine.name,
                runner=machine.runner,
                vcpus=machine.vcpus,
                usd_per_hour=machine.usd_per_hour,
                worker_hours_low=low,
                worker_hours_high=high,
                cost_usd_low=low * machine.usd_per_hour,
                cost_usd_high=high * machine.usd_per_hour,
            )
        )
    return costs


# ---- what the sample says per source and per record ---------------------------------------------


@dataclass
class SourceScale:
    """One source: what discovery found in full, and what its sample yielded."""

    label: str
    kind: str
    discovered: int
    skipped: dict[str, int]
    sampled_units: int
    sampled_records: int
    sampled_bytes_read: int

    @property
    def active(self) -> int:
        return self.discovered - sum(self.skipped.values())

    @property
    def records_per_unit(self) -> float:
        return self.sampled_records / self.sampled_units if self.sampled_units else 0.0

    @property
    def expected_records(self) -> float:
        return self.records_per_unit * self.active

    @property
    def expected_bytes_read(self) -> float:
        return (
            self.sampled_bytes_read / self.sampled_units * self.active
            if self.sampled_units
            else 0.0
        )


@dataclass(frozen=True)
class StageCost:
    """Seconds per candidate record of the sample. One denominator for every row, so the
    stage rows add up to the low CPU figure and the `whole <phase>` rows to the high one."""

    stage: str
    wall_s_per_record: float | None
    cpu_s_per_record: float | None


def _per_record(value: float | None, records: int) -> float | None:
    return None if value is None or not records else value / records


def stage_costs(timings: dict[str, Any], records: int) -> list[StageCost]:
    rows = [
        StageCost(
            f"phase 1: {row['stage']}",
            _per_record(row["wall_s"], records),
            _per_record(row["cpu_s"], records),
        )
        for row in timings["phase1"]["stages"]
    ]
    rows += [
        StageCost(
            f"phase 2: {row['stage']}",
            _per_record(row["wall_s"], records),
            _per_record(row["cpu_s"], records),
        )
        for row in timings["phase2"]["steps"]
        if "wall_s" in row
    ]
    for phase in timings["phases"]:
        if phase["phase"] not in FIXED_PHASES:
            cpu = phase["cpu_s"] + phase["cpu_children_s"]
            rows.append(
                StageCost(
                    f"whole {phase['phase']}",
                    _per_record(phase["wall_s"], records),
                    _per_record(cpu, records),
                )
            )
    return rows


def cpu_bounds(timings: dict[str, Any], records: int) -> tuple[float, float]:
    """(low, high) CPU-seconds per record: the stages' own work; the whole build's CPU."""
    if not records:
        return 0.0, 0.0
    work = sum(row["cpu_s"] for row in timings["phase1"]["stages"])
    work += sum(row.get("cpu_s", 0.0) for row in timings["phase2"]["steps"])
    whole = sum(
        p["cpu_s"] + p["cpu_children_s"]
        for p in timings["phases"]
        if p["phase"] not in FIXED_PHASES
    )
    return work / records, max(whole, work) / records


# ---- the estimate --------------------------------------------------------------------------------


@dataclass
class Estimate:
    spec: str
    sample_per_source: int | None
    sources: list[SourceScale]
    tasks: int
    units_per_task: int
    sample_records: int
    sample_kept: int
    expected_records: float
    expected_kept: float
    expected_bytes_read: float
    expected_output_bytes: dict[str, float]
    shuffle_bytes: float
    stage_costs: list[StageCost]
    cpu_s_per_record_low: float
    cpu_s_per_record_high: float
    machines: list[MachineCost]
    prices: PriceList
    assumptions: list[str] = field(default_factory=list)
    sample_status: str = "ok"

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["sources"] = [
            {
                **asdict(s),
                "active": s.active,
                "records_per_unit": s.records_per_unit,
                "expected_records": s.expected_records,
            }
            for s in self.sources
        ]
        data["prices"] = {
            "file": self.prices.path,
            "as_of": self.prices.prices_as_of,
            "efficiency": self.prices.efficiency,
            "dataflow_shuffle_usd_per_gb": self.prices.shuffle_usd_per_gb,
        }
        data["formula"] = FORMULA
        data["shuffle_cost_usd"] = self.shuffle_cost_usd
        return data

    @property
    def shuffle_cost_usd(self) -> float:
        return self.shuffle_bytes / 1e9 * self.prices.shuffle_usd_per_gb


@dataclass(frozen=True)
class Assumptions:
    """Overrides for a projection beyond the discovered inputs (e.g. the full PMC OA subset)."""

    units: int | None = None
    records_per_unit: float | None = None


def estimate(
    manifest: dict[str, Any],
    sources: list[SourceScale],
    tasks: int,
    units_per_task: int,
    prices: PriceList,
    assume: Assumptions | None = None,
) -> Estimate:
    """Project the sample build's manifest to the full inputs (or to the assumed ones)."""
    timings = manifest["timings"]
    records = manifest["records"]["candidates"]
    kept = manifest["records"]["kept"]
    expected, bytes_read, notes = _expected_records(sources, assume or Assumptions())
    scale = expected / records if records else 0.0
    low, high = cpu_bounds(timings, records)
    shuffled = sum(s["bytes"] for s in (manifest.get("shuffle") or {}).values())
    return Estimate(
        spec=manifest["spec"]["name"],
        sample_per_source=(manifest.get("sample") or {}).get("units_per_source"),
        sources=sources,
        tasks=tasks,
        units_per_task=units_per_task,
        sample_records=records,
        sample_kept=kept,
        expected_records=expected,
        expected_kept=kept * scale,
        expected_bytes_read=bytes_read,
        expected_output_bytes={t: o["bytes"] * scale for t, o in timings["outputs"].items()},
        shuffle_bytes=shuffled * scale,
        stage_costs=stage_costs(timings, records),
        cpu_s_per_record_low=low,
        cpu_s_per_record_high=high,
        machines=machine_costs(prices, low, high, expected),
        prices=prices,
        assumptions=notes,
        sample_status=manifest.get("status", "ok"),
    )


def _expected_records(
    sources: list[SourceScale], assume: Assumptions
) -> tuple[float, float, list[str]]:
    """(expected candidate records, expected input bytes, the assumptions made)."""
    if assume.units is None and assume.records_per_unit is None:
        return (
            sum(s.expected_records for s in sources),
            sum(s.expected_bytes_read for s in sources),
            [],
        )
    sampled_units = sum(s.sampled_units for s in sources)
    units = assume.units if assume.units is not None else sum(s.active for s in sources)
    measured = sum(s.sampled_records for s in sources) / sampled_units if sampled_units else 0.0
    per_unit = assume.records_per_unit if assume.records_per_unit is not None else measured
    bytes_per_record = (
        sum(s.sampled_bytes_read for s in sources) / sum(s.sampled_records for s in sources)
        if any(s.sampled_records for s in sources)
        else 0.0
    )
    notes = [f"units: {units:,} ({'assumed' if assume.units is not None else 'discovered'})"]
    notes.append(
        f"records per unit: {per_unit:g} "
        f"({'assumed' if assume.records_per_unit is not None else 'measured on the sample'})"
    )
    notes.append("bytes scale with records at the sample's bytes per record")
    records = units * per_unit
    return records, records * bytes_per_record, notes
