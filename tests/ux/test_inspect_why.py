"""Item 2: dropped records one command away (`curate inspect --rejects/--errors/--skipped`),
`curate why` for one record, and `curate schema NAME` with field docs."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from curate.cli import main
from curate.progress import QUIET_PHASE_S


def _rows(folder: Path) -> list[dict]:
    return [r for f in sorted(folder.glob("*.parquet")) for r in pq.read_table(f).to_pylist()]


def test_inspect_rejects_by_reason(
    core_build: tuple[Path, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    out, _, _ = core_build
    manifest = json.loads((out / "manifest.json").read_text())
    reason, count = max(manifest["reject_reasons"].items(), key=lambda kv: kv[1])
    assert main(["inspect", str(out), "--rejects", "--reason", reason, "--rows", "50"]) == 0
    printed = capsys.readouterr().out
    assert f"rejects: {manifest['records']['rejected']} in" in printed
    assert f"{reason}={count}" in printed
    shown = [json.loads(line) for line in printed.splitlines() if line.startswith("  {")]
    assert len(shown) == count and all(r["reason"] == reason for r in shown)
    expected = {r["record_id"] for r in _rows(out / "rejects") if r["reason"] == reason}
    assert {r["record_id"] for r in shown} == expected


def test_inspect_errors_and_skipped(
    core_build: tuple[Path, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    out, _, _ = core_build
    assert main(["inspect", str(out), "--errors", "--rows", "100"]) == 0
    printed = capsys.readouterr().out
    shown = [json.loads(line) for line in printed.splitlines() if line.startswith("  {")]
    assert len(shown) == len(_rows(out / "errors")) and all(r["message"] for r in shown)
    assert main(["inspect", str(out), "--skipped", "--rows", "100"]) == 0
    printed = capsys.readouterr().out
    shown = [json.loads(line) for line in printed.splitlines() if line.startswith("  {")]
    assert {r["unit_id"] for r in shown} == {r["unit_id"] for r in _rows(out / "skipped")}
    assert main(["inspect", str(out), "--errors", "--reason", "no_such_reason"]) == 1


def test_why_explains_kept_rejected_errored_and_skipped(
    core_build: tuple[Path, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    out, _, _ = core_build
    kept = _rows(out / "shards" / "train")[0]
    assert main(["why", str(out), kept["record_id"]]) == 0
    assert "kept in split train" in capsys.readouterr().out
    duplicate = next(r for r in _rows(out / "rejects") if r["duplicate_of"])
    assert main(["why", str(out), duplicate["record_id"]]) == 0
    printed = capsys.readouterr().out
    assert duplicate["reason"] in printed and duplicate["duplicate_of"] in printed
    unit_error = next(r for r in _rows(out / "errors") if r["record_id"] is None)
    assert main(["why", str(out), unit_error["unit_id"]]) == 0
    printed = capsys.readouterr().out
    assert f"error at {unit_error['stage']}: {unit_error['reason']}" in printed
    skipped = _rows(out / "skipped")[0]
    assert main(["why", str(out), skipped["unit_id"]]) == 0
    assert f"skipped (never read): {skipped['reason']}" in capsys.readouterr().out
    assert main(["why", str(out), "PMC0/none/0"]) == 1


def test_build_summary_names_folder_card_and_top_reasons(core_build: tuple[Path, str, str]) -> None:
    out, stdout, stderr = core_build
    manifest = json.loads((out / "manifest.json").read_text())
    assert (
        f"output: {out}; data card: {out / 'DATA_CARD.html'} and {out / 'DATA_CARD.md'}" in stdout
    )
    top = max(manifest["reject_reasons"].items(), key=lambda kv: kv[1])
    assert f"rejected: {top[0]}={top[1]}" in stdout
    # progress went to stderr (phases of QUIET_PHASE_S or more, and phase-1 tasks), nothing else did
    total = manifest["tasks"]["total"]
    assert f"phase 1: {total}/{total} tasks" in stderr
    # the pipeline's line shows when it took QUIET_PHASE_S or more (its time in the manifest is
    # measured apart: no claim within 0.2 s of the bound, where the two may disagree)
    wall = next(p["wall_s"] for p in manifest["timings"]["phases"] if p["phase"] == "pipeline")
    if wall >= QUIET_PHASE_S + 0.2:
        assert "curate core_pmc: pipeline done in" in stderr
    elif wall <= QUIET_PHASE_S - 0.2:
        assert "pipeline done in" not in stderr
    assert all(line.startswith("curate core_pmc: ") for line in stderr.splitlines()), stderr


def test_schema_without_version_shows_the_newest_with_field_docs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from curate.schema import available_schemas

    newest = max(
        (r for r in available_schemas() if r.startswith("figure_caption.v")),
        key=lambda r: int(r.rsplit(".v", 1)[1]),
    )
    assert main(["schema", "figure_caption"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(newest + " (hash ")
    assert printed.count("\n  ") >= 30  # one line per field
    assert main(["schema", "figure_caption.v1"]) == 0
    printed = capsys.readouterr().out
    line = next(line for line in printed.splitlines() if line.strip().startswith("record_id"))
    assert "deterministic id" in line
    assert main(["schema", "no_such_schema"]) == 2


def test_inspect_one_split_without_the_summary(
    core_build: tuple[Path, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    out, _, _ = core_build
    assert main(["inspect", str(out), "--split", "train", "--rows", "2", "--columns", "split"]) == 0
    printed = capsys.readouterr().out
    assert "accounting identities" not in printed and "[train]" in printed
    rows = [json.loads(line) for line in printed.splitlines() if line.startswith("  {")]
    assert rows == [{"split": "train"}] * 2
    assert main(["inspect", str(out), "--split", "dev"]) == 2
