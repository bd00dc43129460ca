"""`demo:<generator>[/<subfolder>]` source paths: corpora the project generates itself, so the
demo and the tests need no download. Each generator writes deterministically into the build's
work folder once; later runs (resume) reuse it."""

from __future__ import annotations

import importlib
import json
import os

from curate.errors import SpecError

GENERATORS = {
    "pmc": "curate.demo.pmc:generate_pmc_demo",
    "pmc_cohort": "curate.demo.cohort:generate_pmc_cohort",
    "radiology": "curate.demo.radiology:generate_radiology_demo",
    "volumes": "curate.demo.volumes:generate_volume_demo",
}


def materialise_demo(name: str, work_dir: str) -> str:
    generator, _, subfolder = name.partition("/")
    if generator not in GENERATORS:
        raise SpecError(f"unknown demo corpus {generator!r}; available: {sorted(GENERATORS)}")
    target = os.path.join(work_dir, generator)
    marker = os.path.join(target, ".generated.json")
    if not os.path.isfile(marker):
        module_name, function_name = GENERATORS[generator].split(":")
        function = getattr(importlib.import_module(module_name), function_name)
        planted = function(target)
        with open(marker + ".tmp", "w") as handle:
            json.dump(planted, handle, indent=2, sort_keys=True, default=str)
        os.replace(marker + ".tmp", marker)
    return os.path.join(target, subfolder) if subfolder else target


def planted(work_dir: str, generator: str) -> dict:
    with open(os.path.join(work_dir, generator, ".generated.json")) as handle:
        return json.load(handle)
