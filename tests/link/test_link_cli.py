"""`curate kb build` / `curate kb check` through the registered argparse subcommands."""

from __future__ import annotations

import argparse
import json

from curate.enrich.link.cli import register


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="curate")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_kb_build_from_umls_rrf_then_check(tmp_path, rrf, capsys):
    meta = rrf.write(tmp_path / "META")
    out = tmp_path / "umls_kb"
    assert (
        run(
            [
                "kb",
                "build",
                "--umls-meta",
                str(meta),
                "--umls-tui",
                "T047",
                "--out",
                str(out),
                "--name",
                "umls",
            ]
        )
        == 0
    )
    built = json.loads(capsys.readouterr().out)
    assert built["concepts"] == 2  # pneumothorax and cardiomegaly are T047
    assert built["kb_id"].startswith("umls-")
    assert run(["kb", "check", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["kb_sha256"] == built["kb_sha256"]


def test_kb_build_reports_a_malformed_source_and_fails(tmp_path, rrf, capsys):
    meta = rrf.write(tmp_path / "META", conso=["C0032326|ENG|broken"])
    assert run(["kb", "build", "--umls-meta", str(meta), "--out", str(tmp_path / "kb")]) == 1
    assert "malformed_kb" in capsys.readouterr().err


def test_kb_check_on_a_folder_that_is_no_kb(tmp_path, capsys):
    assert run(["kb", "check", str(tmp_path)]) == 1
    assert "missing_file" in capsys.readouterr().err
