"""Rule files (`curation_rules/*.yaml`): resolution by stem, validation with `file:line`."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from curate.errors import SpecError
from curate.problems import Problem, line_index, nearest_line
from curate.resources import resource_dir
from curate.rules.chain import RuleChain, instantiate


@cache
def _rule_file_schema() -> dict[str, Any]:
    return json.loads((resource_dir("schemas") / "rule_file.schema.json").read_text())


def resolve_rule_file(ref: str) -> Path:
    """A path to a rule file, or the stem of one in `curation_rules/` (e.g. `pmc_figures.v1`)."""
    candidate = Path(ref)
    if candidate.suffix in (".yaml", ".yml"):
        if candidate.is_file():
            return candidate
        raise SpecError(f"rule file {ref} does not exist")
    bundled = resource_dir("curation_rules") / f"{ref}.yaml"
    if bundled.is_file():
        return bundled
    available = sorted(p.stem for p in resource_dir("curation_rules").glob("*.yaml"))
    raise SpecError(f"no rule file {ref!r} in curation_rules/ (available: {', '.join(available)})")


def validate_rule_file(path: Path) -> list[Problem]:
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        return [Problem(str(path), (mark.line + 1) if mark else 1, f"YAML syntax: {exc}")]
    lines = line_index(text)
    problems: list[Problem] = []
    validator = jsonschema.Draft202012Validator(_rule_file_schema())
    for error in sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path)):
        loc = tuple(error.absolute_path)
        problems.append(
            Problem(
                str(path),
                nearest_line(lines, loc),
                f"{'.'.join(map(str, loc)) or '(top)'}: {error.message}",
            )
        )
    if problems:
        return problems
    for i, entry in enumerate(data["rules"]):
        try:
            instantiate(entry["rule"], dict(entry.get("params") or {}))
        except SpecError as exc:
            problems.append(Problem(str(path), nearest_line(lines, ("rules", i, "rule")), str(exc)))
    return problems


def load_rule_chain(ref: str, name: str = "rules") -> RuleChain:
    path = resolve_rule_file(ref)
    problems = validate_rule_file(path)
    if problems:
        raise SpecError("\n".join(str(p) for p in problems))
    return RuleChain.from_file(path, name=f"{name}:{Path(path).stem}")
