"""A build writes to and deletes in its own folders only, and refuses wrong or empty inputs
before any pipeline starts (curate.build.ownership, curate.build.plan)."""

from __future__ import annotations

from pathlib import Path

import pytest

from curate.cli import main


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from curate.demo.pmc import generate_pmc_demo

    root = tmp_path_factory.mktemp("corpus")
    generate_pmc_demo(str(root))
    return root / "folder"


def build(out: Path, source: Path, *extra: str) -> int:
    # the demo folder corpus plants unreadable articles: accept its error fraction here
    settings = ["dedup.near.enabled=false", "max_error_fraction=1"]
    args = ["build", "--spec", "demo_cohort", "--out", str(out), "--running-mode", "in_memory"]
    args += ["--source", f"pmc_cohort={source}"]
    return main([*args, *(x for s in settings for x in ("--set", s)), *extra])


def user_folder(path: Path) -> dict[str, bytes]:
    (path / "sub").mkdir(parents=True)
    (path / "thesis.tex").write_text("\\section{mine}")
    (path / "sub" / "data.csv").write_text("a,b\n")
    (path / "errors").mkdir()  # a same-named folder a build would rewrite
    (path / "errors" / "notes.txt").write_text("my errors")
    return snapshot(path)


def snapshot(path: Path) -> dict[str, bytes]:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in path.rglob("*") if p.is_file()}


@pytest.mark.parametrize("fresh", [False, True])
def test_a_folder_of_user_files_is_refused_and_untouched(
    fresh: bool, corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "P"
    before = user_folder(out)
    assert build(out, corpus, *(["--fresh"] if fresh else [])) == 2
    assert "holds files that no curate build wrote" in capsys.readouterr().err
    assert snapshot(out) == before


def test_out_that_is_a_file_is_refused(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "out.txt"
    target.write_text("keep")
    assert build(target, corpus) == 2
    assert "is a file" in capsys.readouterr().err and target.read_text() == "keep"


def test_an_input_inside_out_is_refused_before_anything_is_deleted(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    out = tmp_path / "out"
    shutil.copytree(corpus, out / "input")
    before = snapshot(out)
    assert build(out, out / "input", "--fresh") == 2
    assert "lies inside --out" in capsys.readouterr().err
    assert snapshot(out) == before


@pytest.mark.parametrize("where", ["missing", "empty"])
def test_a_missing_or_empty_source_fails_the_build(
    where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / where
    if where == "empty":
        source.mkdir()
    assert build(tmp_path / "out", source) == 2
    err = capsys.readouterr().err
    assert ("does not exist" if where == "missing" else "holds no files") in err
    # nothing of a plan is kept: the same folder builds once the input is fixed
    assert not (tmp_path / "out" / "_work" / "plan").exists()


@pytest.mark.slow
def test_fresh_in_a_build_folder_removes_only_what_builds_write(
    corpus: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    assert build(out, corpus) == 0
    (out / "my_notes.md").write_text("beside the build")
    (out / "eval").mkdir()
    (out / "eval" / "scores.json").write_text("{}")
    assert build(out, corpus, "--fresh") == 0
    assert (out / "my_notes.md").read_text() == "beside the build"
    assert (out / "eval" / "scores.json").exists()
    assert (out / "manifest.json").exists()


@pytest.mark.parametrize("out", [".", ".."])
def test_out_dot_or_a_parent_of_the_work_is_refused(
    out: str,
    corpus: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--out .` in a repository (or its parent) with `--fresh` would have emptied it."""
    repo = tmp_path / "home" / "repo"
    before = user_folder(repo)
    monkeypatch.chdir(repo)
    assert build(Path(out), corpus, "--fresh") == 2
    assert "holds files that no curate build wrote" in capsys.readouterr().err
    assert snapshot(repo) == before


def test_allow_empty_makes_an_empty_source_an_empty_build(tmp_path: Path) -> None:
    import json

    source = tmp_path / "empty"
    source.mkdir()
    out = tmp_path / "out"
    assert build(out, source, "--set", "sources.0.allow_empty=true") == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["units"]["discovered"] == 0 and manifest["records"]["kept"] == 0
    assert all(identity["holds"] for identity in manifest["identities"])
