"""The printed plan of `curate plan`: units, expectations, cost per record, machine costs."""

from __future__ import annotations

from curate.build.estimate import FORMULA, Estimate
from curate.datacard.card import human_bytes as _size


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.6f}"


def _units_lines(est: Estimate) -> list[str]:
    lines = []
    for s in est.sources:
        skipped = ", ".join(f"{k} {v}" for k, v in sorted(s.skipped.items())) or "none"
        lines.append(
            f"  {s.label} ({s.kind}): {s.discovered:,} discovered, skipped: {skipped}; "
            f"{s.active:,} to build; sample {s.sampled_units} units -> {s.sampled_records} "
            f"records ({s.records_per_unit:.3f} per unit)"
        )
    return lines


def _expectation_lines(est: Estimate) -> list[str]:
    outputs = ", ".join(f"{t} {_size(b)}" for t, b in est.expected_output_bytes.items())
    kept_share = est.sample_kept / est.sample_records if est.sample_records else 0.0
    return [
        f"tasks: {est.tasks:,} ({est.units_per_task} units per task)",
        f"expected records: {est.expected_records:,.0f} candidates, ~{est.expected_kept:,.0f} kept "
        f"({kept_share:.1%} kept in the sample; dedup rates change with scale)",
        f"expected bytes: read {_size(est.expected_bytes_read)}; written "
        f"{_size(sum(est.expected_output_bytes.values()))} ({outputs or 'none'}); "
        f"shuffled {_size(est.shuffle_bytes)}",
    ]


def _cost_table(est: Estimate) -> list[str]:
    lines = [
        f"  {'stage':34} {'wall s/record':>14} {'CPU s/record':>14}",
    ]
    for cost in est.stage_costs:
        lines.append(
            f"  {cost.stage:34} {_seconds(cost.wall_s_per_record):>14} "
            f"{_seconds(cost.cpu_s_per_record):>14}"
        )
    lines.append(
        f"  CPU s per record used below: low {est.cpu_s_per_record_low:.6f} (the stages' own "
        f"work), high {est.cpu_s_per_record_high:.6f} (the whole sample build)"
    )
    return lines


def _machine_lines(est: Estimate) -> list[str]:
    lines = [
        f"  {'machine':20} {'runner':9} {'vCPUs':>5} {'$/hour':>8} "
        f"{'worker-hours (low-high)':>26} {'cost $ (low-high)':>24}"
    ]
    for m in est.machines:
        hours = f"{m.worker_hours_low:,.3f}-{m.worker_hours_high:,.3f}"
        cost = f"{m.cost_usd_low:,.2f}-{m.cost_usd_high:,.2f}"
        lines.append(
            f"  {m.machine:20} {m.runner:9} {m.vcpus:>5} {m.usd_per_hour:>8.4f} "
            f"{hours:>26} {cost:>24}"
        )
    lines.append(
        f"  Dataflow Shuffle on top: {_size(est.shuffle_bytes)} x "
        f"${est.prices.shuffle_usd_per_gb}/GB = ${est.shuffle_cost_usd:,.2f}"
    )
    return lines


def render_text(est: Estimate) -> str:
    sample = f"{est.sample_per_source} units per source" if est.sample_per_source else "every unit"
    lines = [f"plan for spec {est.spec} (calibrated on {sample}; sample build {est.sample_status})"]
    lines += ["units:", *_units_lines(est), *_expectation_lines(est)]
    lines += [f"  assumed: {note}" for note in est.assumptions]
    lines += [
        f"cost per record (sample build, {est.sample_records} candidate records):",
        *_cost_table(est),
    ]
    lines += [
        f"projection ({FORMULA}; efficiency {est.prices.efficiency}; "
        f"prices as of {est.prices.prices_as_of} from {est.prices.path}):",
        *_machine_lines(est),
    ]
    return "\n".join(lines)
