"""One small core build shared by the UX tests: the generated PMC demo corpus (three layouts,
broken files, licences, duplicates) through rules, modality and exact + near dedup, with no
linking and no embedding, run in a subprocess where torch (and what needs it) cannot be
imported, as on a machine with the core install only."""

from __future__ import annotations

from pathlib import Path

import pytest
from ux_helpers import CORE_SPEC, TORCH_STACK, run_curate


@pytest.fixture(scope="session")
def core_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """(output folder, stdout, stderr) of the core build, run without torch."""
    from curate.demo.pmc import generate_pmc_demo

    corpus = tmp_path_factory.mktemp("corpus") / "pmc"
    generate_pmc_demo(str(corpus))
    spec = tmp_path_factory.mktemp("spec") / "core_pmc.yaml"
    spec.write_text(CORE_SPEC.replace("CORPUS", str(corpus)))
    out = tmp_path_factory.mktemp("build") / "out"
    done = run_curate(
        ["build", "--spec", str(spec), "--out", str(out), "--running-mode", "in_memory"],
        blocked=TORCH_STACK,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out, done.stdout, done.stderr
