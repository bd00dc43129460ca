"""Helpers of the UX tests: run `curate` in a fresh interpreter with packages made absent,
and the spec of the small core build (see conftest.py).

The build: the generated PMC demo corpus (three layouts,
broken files, licences, duplicates) through rules, modality and exact + near dedup, with no
linking and no embedding, run in a subprocess where torch (and what needs it) cannot be
imported, as on a machine with the core install only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CORE_SPEC = """
name: core_pmc
description: Figure-caption pairs from the generated PMC corpus, built with the core install.
schema: figure_caption.v1
sources:
  - {kind: pmc, name: pmc_cloud, path: CORPUS/cloud, options: {layout: cloud}}
  - {kind: pmc, name: pmc_legacy, path: CORPUS/legacy, options: {layout: legacy}}
  - {kind: pmc, name: pmc_folder, path: CORPUS/folder, options: {layout: folder}}
rules: [pmc_figures.v1]
enrich: {modality: true}
dedup:
  exact: {image_sha256: true, caption_image: true}
  near: {rules: dedup/near_dedup.v1}
split: {seed: 0, ratios: {train: 0.7, validation: 0.15, test: 0.15}}
output: {shard_rows: 8, row_group_rows: 4}
work: {units_per_task: 3}
max_error_fraction: 0.5
"""

# Run before anything else in the child: a None entry in sys.modules makes `import torch` raise
# ModuleNotFoundError and importlib.util.find_spec("torch") return None, as when the package
# is not installed.
BLOCKER = """
import sys
for _name in {blocked!r}:
    sys.modules[_name] = None
"""


def run_curate(
    args: list[str], blocked: tuple[str, ...] = (), cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`curate ARGS` in a fresh interpreter where the `blocked` top-level packages are absent."""
    code = BLOCKER.format(blocked=list(blocked)) + (
        "from curate.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    )
    env = dict(os.environ, CURATE_PROGRESS_INTERVAL="1")
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=600,
    )


TORCH_STACK = ("torch", "torchvision", "transformers", "sentence_transformers")
