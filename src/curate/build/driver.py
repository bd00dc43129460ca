"""The run: prepare the output folder, plan, phase 1 + phase 2, manifest and data card.

    prepare -> plan (pipeline: workers discover units and write task files; skipped when the
            folder's plan is complete) -> build (one pipeline: phase 1 per task, resumable,
            then phase 2's global decisions and outputs) -> manifest -> data card

The driver holds only counts: the plan's stats and phase 1's summary, each one file written by
the pipelines; per-unit and per-record work runs on workers. Each step runs under a
`PhaseClock`, so the manifest's `timings.phases` says where the run's wall and CPU time went.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from curate import fs
from curate.build.manifest import BuildFacts, build_manifest
from curate.build.ownership import check_output_folder, state_path
from curate.build.pipeline import run_build_pipeline
from curate.build.plan import (
    PlanStats,
    plan_file,
    require_units,
    run_plan,
    sample_plan,
    source_paths,
)
from curate.build.salts import deidentification_section, source_salts
from curate.errors import SpecError
from curate.progress import NoProgress, Progress
from curate.schema import load_schema
from curate.shards import layout
from curate.spec import LoadedSpec
from curate.timing import PhaseClock


@dataclass
class BuildResult:
    manifest: dict[str, Any]
    ok: bool
    message: str = ""
    # Everything discovery found, before any sampling (`curate plan` scales the sample to it).
    discovered: PlanStats = field(default_factory=PlanStats)


class Build:
    def __init__(
        self,
        loaded: LoadedSpec,
        out_dir: str,
        runner: Any,
        *,
        fresh: bool = False,
        sample: int | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.loaded = loaded
        self.spec = loaded.spec
        self.out_dir = out_dir
        self.runner = runner
        self.fresh = fresh
        self.sample = sample  # build only this many units per source (calibration)
        self.schema = load_schema(self.spec.schema_)
        self.phases: list[PhaseClock] = []
        self.progress = progress or NoProgress()

    @contextmanager
    def _phase(self, name: str) -> Iterator[PhaseClock]:
        clock = PhaseClock(name)
        self.phases.append(clock)
        with clock, self.progress.phase(name):
            yield clock

    def _work(self, *parts: str) -> str:
        return fs.join(self.out_dir, layout.WORK, *parts)

    def prepare(self) -> None:
        self.runner.configure_filesystems()
        check_output_folder(self.out_dir, self.spec)  # before anything is written or removed
        if self.fresh:
            clear_build_folder(self.out_dir)
        fs.makedirs(self.out_dir)
        state_file = state_path(self.out_dir)
        self.linking = self._link_identity()
        salts = source_salts(self.spec)  # a missing secret salt fails here, before any worker
        self.deidentification = deidentification_section(salts)
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
        if salts:  # ... and with another salt, two pseudonym spaces
            identity["salt_fingerprints"] = {k: v.fingerprint for k, v in sorted(salts.items())}
        if fs.exists(state_file):
            previous = json.loads(fs.read_bytes(state_file))
            if previous != identity:
                raise SpecError(
                    f"{self.out_dir} holds work of another spec or schema ({previous}); resume needs the "
                    "same spec and overrides: use another --out or pass --fresh"
                )
        else:
            fs.write_bytes_atomic(state_file, json.dumps(identity, sort_keys=True).encode())

    def _link_identity(self) -> dict[str, Any] | None:
        """The linking KB's id and hash for the manifest; builds the default KB once, in the
        driver, so that workers find it ready."""
        link = self.spec.enrich.link
        if link is None or not link.enabled:
            return None
        from curate.enrich.link.stage import LinkStage

        return LinkStage(link).kb_identity()

    def run(self, *, phase2: bool = True) -> BuildResult:
        """The whole build; `phase2=False` stops after phase 1 (benchmarks, debugging)."""
        started = time.time()
        with self._phase("prepare"):
            self.prepare()
        with self._phase("inputs"):  # generates the demo corpora for `demo:` paths
            paths = self.runner.resolve_paths(source_paths(self.spec, self._work()))
        with self._phase("plan"):
            discovered = run_plan(self.spec, paths, self.out_dir, self.runner)
            try:
                require_units(  # a wrong path or an empty input is an error
                    discovered.inputs, {s.label for s in self.spec.sources if s.allow_empty}
                )
            except SpecError:
                fs.remove(plan_file(self.out_dir))  # so that a fixed input is planned again
                raise
            plan = discovered
            if self.sample is not None:
                plan = sample_plan(
                    discovered, self.out_dir, self.sample, self.spec.work.units_per_task
                )
        with self._phase("pipeline"), self.progress.tasks(self.out_dir, plan.tasks):
            summary, metrics = run_build_pipeline(
                self.spec,
                self.loaded.data,
                self.out_dir,
                paths,
                self.runner,
                plan.part_paths(self.out_dir),
                phase2=phase2,
                skipped=phase2 and self.sample is None,
            )
        if not phase2:
            return BuildResult(manifest={"phase1": summary}, ok=True, discovered=discovered)
        with self._phase("manifest"):
            manifest = build_manifest(
                BuildFacts(
                    loaded=self.loaded,
                    out_dir=self.out_dir,
                    tasks=plan.tasks,
                    inputs=plan.inputs,
                    summary=summary,
                    started=started,
                    runner=self.runner.describe(),
                    linking=self.linking,
                    deidentification=self.deidentification,
                    phase2_metrics=metrics,
                    phases=self.phases,
                    sample=self.sample,
                )
            )
            ok, message = verdict(manifest, self.spec.max_error_fraction)
            manifest["status"] = "ok" if ok else "failed"
            manifest["status_message"] = message
        self._write_card_and_manifest(manifest)
        return BuildResult(manifest=manifest, ok=ok, message=message, discovered=discovered)

    def _write_card_and_manifest(self, manifest: dict[str, Any]) -> None:
        from curate.datacard.card import write_data_card

        timings = manifest["timings"]
        timings["phases"] = [p.as_dict() for p in self.phases]  # the manifest phase, finished
        with self._phase("data_card"):
            write_data_card(self.out_dir, manifest)
        timings["phases"].append(self.phases[-1].as_dict())  # the card cannot show its own time
        fs.write_bytes_atomic(
            fs.join(self.out_dir, layout.MANIFEST),
            json.dumps(manifest, indent=2, sort_keys=True, default=str).encode(),
        )


def verdict(manifest: dict[str, Any], max_error_fraction: float) -> tuple[bool, str]:
    """A build fails when an accounting identity breaks or too many inputs errored."""
    broken = [i for i in manifest["identities"] if not i["holds"]]
    if broken:
        return False, "accounting identities do not hold: " + "; ".join(i["name"] for i in broken)
    if manifest["error_fraction"] > max_error_fraction:
        return False, (
            f"error fraction {manifest['error_fraction']:.3f} exceeds max_error_fraction "
            f"{max_error_fraction}"
        )
    return True, ""


def build(
    loaded: LoadedSpec,
    out_dir: str,
    runner: Any,
    *,
    fresh: bool = False,
    sample: int | None = None,
    progress: Progress | None = None,
) -> BuildResult:
    return Build(loaded, out_dir, runner, fresh=fresh, sample=sample, progress=progress).run()


def clear_build_folder(out_dir: str) -> None:
    """`--fresh`: remove what a build writes (its manifest, data card, output folders and work
    folder), local or on an object store, and nothing else that lives there."""
    for name in (*layout.BUILD_ENTRIES, layout.WORK):
        fs.remove(fs.join(out_dir, name))
