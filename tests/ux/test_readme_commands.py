"""Every shell command in README.md is exercised by a test: cheap ones run here (against the
core build of this folder, in place of `out/demo`), expensive ones name the test that runs
them, and tools other than curate (aws, docker, pip) say why no test runs them. A README
command that matches no entry below fails `test_every_readme_command_is_covered`."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from readme_commands import commands

from curate.cli import main

REPO = Path(__file__).resolve().parents[2]
HERE = "tests/ux/test_readme_commands.py"

# (pattern over the whole command, where it is exercised). "path::name" must name a function or
# fixture defined in that file; "external: why" is a command of another tool.
COVERAGE: list[tuple[str, str]] = [
    (
        r"make demo",
        "tests/ux/test_make_demo.py::test_make_demo_is_short_shows_progress_and_ends_with_the_card",
    ),
    (r"make test", ".ci/run::make test"),
    (r"make setup", ".ci/run::make test"),
    (r"\. \.venv/bin/activate", "external: shell activation of the venv make setup creates"),
    (r"curate validate --spec demo", f"{HERE}::test_validate_demo"),
    (r"curate build --spec demo --out out/demo", "tests/ux/conftest.py::core_build"),
    (r"curate inspect out/demo --rows 2", f"{HERE}::test_inspect_and_dropped_records"),
    (
        r"curate inspect out/demo --(rejects|errors|skipped).*",
        f"{HERE}::test_inspect_and_dropped_records",
    ),
    (r"curate why out/demo \S+", f"{HERE}::test_why_from_the_readme"),
    (r"curate schema figure_caption", f"{HERE}::test_schema_from_the_readme"),
    (r"python - <<'PY'\n(.|\n)*load_shards(.|\n)*", f"{HERE}::test_quickstart_python"),
    (r"aws s3 sync .*", "external: the AWS CLI mirrors the public bucket; nothing curate runs"),
    (
        r"curate build --spec pmc15m --source pmc=/data/\S+ --out /data/pmc15m",
        "tests/core/test_build_e2e.py::corpus_args",
    ),
    (r"pip install .*", "external: pip; tests/ux/test_core_install.py checks the extras"),
    (r"docker (build|push) .*", "external: docker, documented in docker/README.md"),
    (
        r"curate plan --spec pmc15m --source pmc=gs://\S+ --sample \d+",
        "tests/core/test_plan_command.py::test_plan_on_the_demo_spec_with_a_cloud_mirror",
    ),
    (
        r"curate build --spec pmc15m .*--runner DataflowRunner.*",
        "tests/core/test_portable_runner.py::test_portable_runner_with_external_workers_equals_local",
    ),
    (r"curate kb build", "tests/link/conftest.py::default_kb"),
    (r"curate kb build --umls-meta .*", f"{HERE}::test_kb_build_from_the_readme"),
    (r"curate kb check \S+", f"{HERE}::test_kb_build_from_the_readme"),
    (r"curate benchmark add .*", "tests/dedup/test_dedup_decontam.py::test_cli_benchmark_add"),
    (
        r"curate (train|eval) cfm .*",
        "tests/train/test_train_cli.py::test_train_resume_and_eval_cfm",
    ),
    (r"curate (train|eval) mllm .*", "tests/train/test_train_cli.py::test_train_and_eval_mllm"),
    (
        r"curate build --spec demo_cohort --out out/cohort",
        "tests/core/test_demo_cohort.py::test_demo_cohort_builds_and_keeps_its_figures",
    ),
    (
        r"curate (train|eval) (cfm|mllm) .*out/cohort.*",
        "tests/train/test_train_mllm_cohort.py::"
        "test_mllm_beats_zeroed_image_and_majority_on_held_out_cohort_questions",
    ),
    (
        r"torchrun --nproc_per_node \d+ -m curate(\.cli)? train cfm .*",
        "tests/train/test_train_distributed.py::"
        "test_cfm_two_ranks_with_accumulation_match_one_rank_and_resume_exactly",
    ),
    (r"curate export hf .*", "tests/ux/test_exports.py::test_export_hf_opens_with_load_dataset"),
    (r"curate export webdataset .*", "tests/ux/test_exports.py::test_export_webdataset_reads_back"),
]


def _readme_commands() -> list[str]:
    return commands(REPO / "README.md")


def _covering(command: str) -> list[str]:
    return [where for pattern, where in COVERAGE if re.fullmatch(pattern, command)]


def test_every_readme_command_is_covered() -> None:
    found = _readme_commands()
    assert len(found) > 20  # the extraction sees the README's blocks
    uncovered = [c for c in found if not _covering(c)]
    assert uncovered == [], f"README commands without a test (add them to COVERAGE): {uncovered}"


def test_every_named_test_exists() -> None:
    for _, where in COVERAGE:
        if where.startswith("external:"):
            continue
        path, _, name = where.partition("::")
        text = (REPO / path).read_text()
        if path == ".ci/run":
            assert name in text
            continue
        assert re.search(rf"^def {re.escape(name)}\(", text, re.M), where


def _readme(pattern: str) -> list[str]:
    found = [c for c in _readme_commands() if re.fullmatch(pattern, c)]
    assert found, f"no README command matches {pattern}"
    return found


def _run(command: str, out: Path) -> int:
    argv = shlex.split(command.replace("out/demo", str(out)))
    assert argv[0] == "curate"
    return main(argv[1:])


def test_validate_demo(capsys: pytest.CaptureFixture[str]) -> None:
    (command,) = _readme(r"curate validate --spec demo")
    assert _run(command, Path("unused")) == 0
    assert ": ok (spec demo" in capsys.readouterr().out


def test_inspect_and_dropped_records(
    core_build: tuple[Path, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    out, _, _ = core_build
    for command in _readme(r"curate inspect out/demo.*"):
        assert _run(command, out) == 0, command
        printed = capsys.readouterr().out
        assert printed.strip(), command
        if "--reason" in command:
            reason = command.split("--reason ", 1)[1].split()[0]
            rows = [json.loads(x) for x in printed.splitlines() if x.startswith("  {")]
            assert rows and all(r["reason"] == reason for r in rows)


def test_why_from_the_readme(
    core_build: tuple[Path, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    out, _, _ = core_build
    (command,) = _readme(r"curate why out/demo \S+")
    assert _run(command, out) == 0
    assert "rejected at" in capsys.readouterr().out


def test_schema_from_the_readme(capsys: pytest.CaptureFixture[str]) -> None:
    (command,) = _readme(r"curate schema figure_caption")
    assert _run(command, Path("unused")) == 0
    assert "record_id" in capsys.readouterr().out


def test_quickstart_python(core_build: tuple[Path, str, str]) -> None:
    out, _, _ = core_build
    (command,) = _readme(r"python - <<'PY'\n(.|\n)*load_shards(.|\n)*")
    code = command.split("\n", 1)[1].replace('"out/demo"', repr(str(out)))
    # torch sets TORCHINDUCTOR_CACHE_DIR in this process once a trainer test ran; a child that
    # inherits it aborts at exit ("terminate called without an active exception", torch 2.13)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORCHINDUCTOR_")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    count = json.loads((out / "manifest.json").read_text())["splits"]["train"]
    assert done.stdout.startswith(f"{count} ")


def test_kb_build_from_the_readme(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a tiny UMLS release: one concept from each of the README's vocabularies, one from another
    meta = tmp_path / "META"
    meta.mkdir()
    (meta / "MRCONSO.RRF").write_text(
        "C0032326|ENG|P|L1|PF|S1|Y|A1||||SNOMEDCT_US|PT|36118008|Pneumothorax|9|N||\n"
        "C0004057|ENG|P|L2|PF|S2|Y|A2||||RXNORM|IN|1191|Aspirin|0|N||\n"
        "C0018800|ENG|P|L3|PF|S3|Y|A3||||MSH|MH|D006332|Cardiomegaly|0|N||\n"
    )
    (meta / "MRSTY.RRF").write_text(
        "C0032326|T047|B2.2.1.2.1|Disease or Syndrome|AT1||\n"
        "C0004057|T121|A1.4.1.1.1|Pharmacologic Substance|AT2||\n"
        "C0018800|T047|B2.2.1.2.1|Disease or Syndrome|AT3||\n"
    )
    (build,) = _readme(r"curate kb build --umls-meta .*")
    argv = shlex.split(
        build.replace("/data/umls/2025AA/META", str(meta)).replace("/data/kb", str(tmp_path))
    )
    assert main(argv[1:]) == 0
    built = json.loads(capsys.readouterr().out)
    assert built["concepts"] == 2  # SNOMEDCT_US and RXNORM kept, MSH not: the comma list works
    (check,) = _readme(r"curate kb check \S+")
    assert main(shlex.split(check.replace("/data/kb", str(tmp_path)))[1:]) == 0
