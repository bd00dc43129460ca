"""`curate plan`: discover the inputs, build a sample of them in a temporary folder, project.

The calibration build is a real build (same spec, same code, local runner) on a few units per
source, so its timings are what the stages cost on this machine; its folder is the program's
own temporary folder and is deleted afterwards, whatever happens.
"""

from __future__ import annotations

import shutil
import tempfile
from typing import Any

from curate.build.driver import Build
from curate.build.estimate import Assumptions, Estimate, PriceList, SourceScale, estimate
from curate.build.plan import PlanStats
from curate.spec import LoadedSpec


def source_scales(discovered: PlanStats, sampled: dict[str, dict[str, Any]]) -> list[SourceScale]:
    """Each source's full discovery counts beside what its sample yielded (timings.sources)."""
    scales = []
    for label, entry in discovered.sources.items():
        sample = sampled.get(label, {})
        scales.append(
            SourceScale(
                label=label,
                kind=entry["kind"],
                discovered=entry["discovered"],
                skipped=dict(entry["skipped"]),
                sampled_units=sample.get("units", 0),
                sampled_records=sample.get("candidates", 0),
                sampled_bytes_read=sample.get("bytes_read", 0),
            )
        )
    return scales


def calibrate(
    loaded: LoadedSpec,
    runner: Any,
    prices: PriceList,
    *,
    sample: int | None,
    assume: Assumptions | None = None,
) -> Estimate:
    """Build `sample` units per source (every unit when None) and project to all of them."""
    folder = tempfile.mkdtemp(prefix="curate-plan-")
    try:
        build = Build(loaded, folder, runner, fresh=True, sample=sample)
        result = build.run()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    discovered = result.discovered
    return estimate(
        result.manifest,
        source_scales(discovered, result.manifest["timings"]["sources"]),
        tasks=discovered.tasks,
        units_per_task=loaded.spec.work.units_per_task,
        prices=prices,
        assume=assume or Assumptions(),
    )
