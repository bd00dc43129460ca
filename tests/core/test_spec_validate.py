"""`curate validate`: every problem is reported with file:line, and the exit code says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curate.cli import main
from curate.errors import SpecError
from curate.spec import apply_overrides, load_spec, spec_json_schema, validate_spec

GOOD = """\
name: tiny
schema: figure_caption.v1
sources:
  - kind: pmc
    path: /data/pmc
    options: {layout: folder}
rules: [pmc_figures.v1]
split:
  seed: 3
  ratios: {train: 0.8, validation: 0.1, test: 0.1}
"""


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_good_spec_validates(tmp_path: Path) -> None:
    loaded, problems = validate_spec(write(tmp_path, GOOD))
    assert problems == []
    assert loaded is not None
    assert loaded.spec.split.seed == 3
    assert loaded.spec.schema_ == "figure_caption.v1"
    assert len(loaded.sha256) == 64


def test_problems_carry_file_and_line(tmp_path: Path) -> None:
    bad = GOOD.replace("seed: 3", "seed: three").replace(
        "ratios: {train: 0.8,", "ratios: {train: 0.9,"
    )
    bad = bad.replace("    path: /data/pmc\n", "    path: /data/pmc\n    colour: blue\n")
    path = write(tmp_path, bad)
    _, problems = validate_spec(path)
    rendered = sorted(str(p) for p in problems)
    assert any(r.startswith(f"{path}:6: sources.0.colour") for r in rendered), rendered
    assert any(r.startswith(f"{path}:10: split.seed") for r in rendered), rendered
    assert any(f"{path}:11: split.ratios" in r and "sum to 1" in r for r in rendered), rendered


SECTIONS = """\
enrich:
  link:
    enabled: true
    label_sets: [chexpert14, no_such_set]
dedup:
  near:
    rules: dedup/near_dedup.v1
    image:
      max_hamming: 99
  semantic: {rules: dedup/missing_policy.v1}
"""


def test_section_problems_carry_their_dotted_path_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + SECTIONS)
    _, problems = validate_spec(path)
    assert sorted(str(p) for p in problems) == [
        f"{path}:14: enrich.link.label_sets: Value error, unknown label set 'no_such_set'; use "
        "one of ['chestxray14', 'chestxray14.v1', 'chestxray14.v2', 'chexpert14', 'chexpert14.v1', "
        "'chexpert14.v2'] or the path of a label-set YAML file",
        f"{path}:19: dedup.near.image.max_hamming: Input should be less than or equal to 32",
        f"{path}:20: dedup.semantic: rule file 'dedup/missing_policy.v1' not found "
        "(looked in curation_rules/ too)",
    ]


def test_sections_are_typed_by_their_owners_models(tmp_path: Path) -> None:
    from curate.dedup.config import NearDedupConfig
    from curate.enrich.link.config import LinkConfig

    fixed = (
        SECTIONS.replace(", no_such_set", "")
        .replace("99", "5")
        .replace("missing_policy", "semantic_dedup")
        .replace("near_dedup.v1", "near_dedup_reports.v1")
    )
    loaded, problems = validate_spec(write(tmp_path, GOOD + fixed))
    assert problems == [] and loaded is not None
    link, near = loaded.spec.enrich.link, loaded.spec.dedup.near
    assert isinstance(link, LinkConfig) and link.enabled and link.label_sets == ["chexpert14"]
    assert isinstance(near, NearDedupConfig)
    # The override sits next to `rules:`; the other values come from the rule file (the report
    # policy switches caption dedup off, unlike the model's default).
    assert (near.image.max_hamming, near.image.hash, near.caption.enabled) == (5, "phash", False)
    semantic = loaded.spec.dedup.semantic
    assert semantic is not None and semantic.rules == "dedup/semantic_dedup.v1"
    assert loaded.spec.embed is None and loaded.spec.instruct is None


def test_unknown_rule_file_and_rule_name(tmp_path: Path) -> None:
    rules = write(
        tmp_path,
        "name: x\nversion: 1\nrules:\n  - rule: caption_words.v1\n    params: {min_words: 2, min_chars: 3}\n    why: short\n  - rule: no_such_rule.v9\n    why: testing\n",
        "r.yaml",
    )
    spec = write(
        tmp_path, GOOD.replace("rules: [pmc_figures.v1]", f"rules: [{rules}, missing_rules.v1]")
    )
    _, problems = validate_spec(spec)
    text = "\n".join(map(str, problems))
    assert f"{rules}:7: unknown rule 'no_such_rule.v9'" in text
    assert f"{spec}:7: no rule file 'missing_rules.v1'" in text


def test_rule_without_why_is_rejected(tmp_path: Path) -> None:
    rules = write(
        tmp_path,
        "name: x\nversion: 1\nrules:\n  - rule: caption_words.v1\n    params: {min_words: 2, min_chars: 3}\n",
        "r.yaml",
    )
    _, problems = validate_spec(write(tmp_path, GOOD.replace("[pmc_figures.v1]", f"[{rules}]")))
    assert [str(p) for p in problems] == [f"{rules}:4: rules.0: 'why' is a required property"]


def test_unknown_source_kind_and_bad_yaml(tmp_path: Path) -> None:
    _, problems = validate_spec(write(tmp_path, GOOD.replace("kind: pmc", "kind: nope")))
    assert (
        len(problems) == 1
        and problems[0].line == 4
        and "unknown source kind 'nope'" in problems[0].message
    )
    _, problems = validate_spec(write(tmp_path, "name: [unclosed\n"))
    assert problems[0].line == 2 and "YAML syntax" in problems[0].message


def test_cli_validate_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = tmp_path / "pmc"
    corpus.mkdir()
    (corpus / "PMC1.xml").write_text("<article/>")
    good = write(tmp_path, GOOD.replace("/data/pmc", str(corpus)))
    assert main(["validate", "--spec", str(good)]) == 0
    bad = write(tmp_path, GOOD.replace("seed: 3", "seed: x"), "bad.yaml")
    assert main(["validate", "--spec", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:9: split.seed" in err


def test_overrides_source_and_set(tmp_path: Path) -> None:
    loaded = load_spec(
        str(write(tmp_path, GOOD)),
        sources=["/elsewhere"],
        sets=["split.seed=11", "output.shard_rows=7"],
    )
    assert loaded.spec.sources[0].path == "/elsewhere"
    assert loaded.spec.split.seed == 11 and loaded.spec.output.shard_rows == 7
    with pytest.raises(SpecError, match="no source named"):
        apply_overrides({"sources": [{"kind": "pmc", "path": "a"}]}, ["other=/x"], [])


def test_bundled_specs_resolve_and_validate() -> None:
    from curate.resources import resource_dir

    names = sorted(p.stem for p in resource_dir("pipelines").glob("*.yaml"))
    assert {"demo", "pmc15m"} <= set(names)
    for name in names:
        loaded, problems = validate_spec(resource_dir("pipelines") / f"{name}.yaml")
        assert problems == [], (name, [str(p) for p in problems])


def test_committed_json_schema_matches_model(repo_root: Path) -> None:
    committed = json.loads((repo_root / "schemas" / "spec.schema.json").read_text())
    assert committed == spec_json_schema(), (
        "run: python -m curate.spec_schema > schemas/spec.schema.json"
    )


@pytest.mark.parametrize("where", ["missing", "empty", "unreadable"])
def test_validate_refuses_a_source_root_that_cannot_be_built(
    where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import os

    root = tmp_path / "corpus"
    if where != "missing":
        root.mkdir()
    if where == "unreadable":
        (root / "PMC1.xml").write_text("<article/>")
        root.chmod(0)
        if os.access(root, os.R_OK):  # root ignores permissions: nothing to test here
            root.chmod(0o755)
            pytest.skip("running as a user that can read any folder")
    spec = write(tmp_path, GOOD.replace("/data/pmc", str(root)))
    try:
        assert main(["validate", "--spec", str(spec)]) == 1
    finally:
        if root.exists():
            root.chmod(0o755)
    err = capsys.readouterr().err
    expected = {
        "missing": "does not exist",
        "empty": "holds no files",
        "unreadable": "not readable",
    }
    assert f"{spec}:" in err and f"source pmc: path {root} {expected[where]}" in err


def test_allow_empty_accepts_an_empty_source(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    root.mkdir()
    text = GOOD.replace("/data/pmc", str(root)).replace(
        f"    path: {root}\n", f"    path: {root}\n    allow_empty: true\n"
    )
    assert "allow_empty" in text
    assert main(["validate", "--spec", str(write(tmp_path, text))]) == 0
