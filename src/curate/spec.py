"""Build specs: YAML validated into a typed model, with problems reported as `file:line`.

Mechanism here; policy (which rules, thresholds) lives in `curation_rules/` and is referenced
by name. Sections owned by optional stages (linking, near dedup, instructions, ...) are typed
by those stages' own pydantic models, referenced from `Spec`, so one `Spec.model_validate`
checks everything and `curate validate` catches every problem before Beam starts. Those config
modules must stay free of torch, Beam and spaCy at import: every worker imports this one.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from curate.decontaminate.config import DecontamConfig
from curate.dedup.config import NearDedupConfig, SemanticDedupConfig
from curate.embed.config import EmbedConfig
from curate.enrich.link.config import LinkConfig
from curate.errors import SpecError
from curate.instruct.config import InstructConfig
from curate.problems import Problem, line_index, nearest_line
from curate.resources import resource_dir
from curate.rules.similarity import QualityConfig

DEMO_SCHEME = "demo:"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceSpec(_Model):
    kind: str = Field(description="source kind: pmc, mimic_cxr, iu_xray, ct_rate, ...")
    path: str = Field(
        description="local path, gs:// or s3:// URI, or demo:<name> for generated demo data"
    )
    name: str | None = Field(
        default=None, description="name used by --source NAME=PATH; defaults to kind"
    )
    options: dict[str, Any] = Field(default_factory=dict, description="source-specific options")
    allow_empty: bool = Field(
        False,
        description="an empty source (no files, or no input units) is a valid, empty input; "
        "otherwise it is an error, like a path that does not exist",
    )

    @property
    def label(self) -> str:
        return self.name or self.kind


class ExactDedupSpec(_Model):
    image_sha256: bool = Field(
        True, description="drop records whose image bytes repeat another record's"
    )
    caption_image: bool = Field(
        True, description="drop records whose normalised caption and image both repeat"
    )


class DedupSpec(_Model):
    exact: ExactDedupSpec = Field(default_factory=ExactDedupSpec)
    near: NearDedupConfig | None = Field(
        default=None, description="near duplicates: perceptual hash, MinHash-LSH (curate.dedup)"
    )
    semantic: SemanticDedupConfig | None = Field(
        default=None, description="SemDeDup on embeddings (needs an `embed` section)"
    )
    quality: QualityConfig | None = Field(
        default=None, description="image-text similarity threshold / keep-top-fraction"
    )
    decontam: DecontamConfig | None = Field(
        default=None, description="benchmark decontamination against `curate benchmark add` indexes"
    )


class SplitSpec(_Model):
    seed: int = 0
    ratios: dict[str, float] = Field(
        default_factory=lambda: {"train": 0.9, "validation": 0.05, "test": 0.05}
    )
    group_by: str | None = Field(
        default=None, description="field that keeps related records together; default: the source's"
    )

    @field_validator("ratios")
    @classmethod
    def _ratios_sum_to_one(cls, ratios: dict[str, float]) -> dict[str, float]:
        if not ratios or any(v < 0 for v in ratios.values()):
            raise ValueError("ratios must be non-negative and non-empty")
        if abs(sum(ratios.values()) - 1.0) > 1e-6:
            raise ValueError(f"ratios must sum to 1 (they sum to {sum(ratios.values()):.6f})")
        return ratios


class OutputSpec(_Model):
    shard_rows: int = Field(2000, ge=1, description="target rows per shard")
    row_group_rows: int = Field(
        256, ge=1, description="rows per Parquet row group (the unit load_shards divides)"
    )
    compression: Literal["zstd", "snappy", "gzip", "none"] = "zstd"
    compression_level: int | None = None


class EnrichSpec(_Model):
    modality: bool = Field(
        True, description="keyword modality tagging from curation_rules/modality.v1.yaml"
    )
    link: LinkConfig | None = Field(
        default=None, description="UMLS linking settings (curate.enrich.link)"
    )


class WorkSpec(_Model):
    units_per_task: int = Field(16, ge=1, description="input units per resumable phase-1 task")


class Spec(_Model):
    name: str
    description: str = ""
    intended_uses: list[str] = Field(
        default_factory=list, description="what the dataset is for (the data card lists them)"
    )
    citation: str | None = Field(
        None, description="how to cite the dataset (BibTeX or text), shown in the data card"
    )
    schema_: str = Field(alias="schema", description="record schema, e.g. figure_caption.v1")
    sources: list[SourceSpec] = Field(min_length=1)
    rules: list[str] = Field(
        default_factory=list, description="rule files in curation_rules/ (by stem) or paths"
    )
    enrich: EnrichSpec = Field(default_factory=EnrichSpec)
    dedup: DedupSpec = Field(default_factory=DedupSpec)
    embed: EmbedConfig | None = Field(
        default=None, description="embedding pass (RunInference): model, device, towers"
    )
    split: SplitSpec = Field(default_factory=SplitSpec)
    instruct: InstructConfig | None = None
    output: OutputSpec = Field(default_factory=OutputSpec)
    work: WorkSpec = Field(default_factory=WorkSpec)
    max_error_fraction: float = Field(
        0.25, ge=0, le=1, description="fail the build when more inputs than this fraction error"
    )

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _unique_source_labels(self) -> Spec:
        labels = [s.label for s in self.sources]
        if len(labels) != len(set(labels)):
            raise ValueError(f"source names must be unique (got {labels}); set `name:` on each")
        return self


def resolve_spec_path(name_or_path: str) -> Path:
    """A path to a spec file, or the stem of a bundled spec in `pipelines/`."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        if not candidate.is_file():
            raise SpecError(f"spec file {name_or_path} does not exist")
        return candidate
    bundled = resource_dir("pipelines") / f"{name_or_path}.yaml"
    if bundled.is_file():
        return bundled
    available = sorted(p.stem for p in resource_dir("pipelines").glob("*.yaml"))
    raise SpecError(
        f"no spec {name_or_path!r}: not a file, and not a bundled spec ({', '.join(available)})"
    )


def apply_overrides(
    data: dict[str, Any], sources: list[str] | tuple[str, ...], sets: list[str] | tuple[str, ...]
) -> dict[str, Any]:
    """Command-line overrides: `--source [NAME=]PATH` and `--set dotted.key=YAML_VALUE`."""
    data = copy.deepcopy(data)
    for item in sources:
        name, sep, path = item.partition("=")
        if not sep:
            name, path = "", item
        entries = data.get("sources") or []
        if not name:
            if len(entries) != 1:
                raise SpecError("--source PATH needs NAME=PATH when the spec has several sources")
            entries[0]["path"] = path
            continue
        matches = [s for s in entries if (s.get("name") or s.get("kind")) == name]
        if not matches:
            raise SpecError(f"--source {name}=...: no source named {name!r}")
        matches[0]["path"] = path
    for item in sets:
        dotted, sep, raw = item.partition("=")
        if not sep:
            raise SpecError(f"--set needs KEY=VALUE, got {item!r}")
        node: Any = data
        keys = dotted.split(".")
        for key in keys[:-1]:
            key_or_index: Any = int(key) if isinstance(node, list) else key
            if isinstance(node, dict):
                node = node.setdefault(key_or_index, {})
            else:
                node = node[key_or_index]
        last: Any = int(keys[-1]) if isinstance(node, list) else keys[-1]
        node[last] = yaml.safe_load(raw)
    return data


@dataclass
class LoadedSpec:
    spec: Spec
    path: Path
    text: str
    sha256: str
    data: dict[str, Any]


@dataclass
class _Locator:
    """Turns a key path of one spec file into a `file:line: message` problem."""

    file: str
    lines: dict[tuple[Any, ...], int]

    def problem(self, loc: tuple[Any, ...], message: str) -> Problem:
        return Problem(self.file, nearest_line(self.lines, loc), message)

    def validation_problems(
        self, exc: ValidationError, prefix: tuple[Any, ...] = ()
    ) -> list[Problem]:
        """One problem per pydantic error, named by its dotted path below `prefix`."""
        problems = []
        for err in exc.errors():
            loc = (*prefix, *err["loc"])
            field = ".".join(str(part) for part in loc) or "(top)"
            problems.append(self.problem(loc, f"{field}: {err['msg']}"))
        return problems


def _parse_yaml(text: str, file: str) -> tuple[dict[str, Any] | None, list[Problem]]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        return None, [Problem(file, (mark.line + 1) if mark else 1, f"YAML syntax: {exc}")]
    if not isinstance(data, dict):
        return None, [Problem(file, 1, "a spec must be a mapping")]
    return data, []


def _overridden(
    data: dict[str, Any], sources: list[str], sets: list[str], file: str
) -> tuple[dict[str, Any] | None, list[Problem]]:
    try:
        return apply_overrides(data, sources, sets), []
    except SpecError as exc:
        return None, [Problem(file, 1, str(exc))]


def _validated_model(data: dict[str, Any], at: _Locator) -> tuple[Spec | None, list[Problem]]:
    """The whole spec, optional sections (and the rule files they name) included."""
    try:
        return Spec.model_validate(data), []
    except ValidationError as exc:
        return None, at.validation_problems(exc)


def _schema_problems(spec: Spec, at: _Locator) -> list[Problem]:
    # The schema, source and rule catalogues are imported by these checks only: a worker that
    # re-validates its spec needs none of them.
    from curate.schema import load_schema

    try:
        load_schema(spec.schema_)
    except SpecError as exc:
        return [at.problem(("schema",), str(exc))]
    return []


def _source_problems(spec: Spec, index: int, at: _Locator) -> list[Problem]:
    """A source's kind exists, its options validate, and it produces the spec's schema."""
    from curate.sources.base import get_source_class

    source = spec.sources[index]
    kind_loc = ("sources", index, "kind")
    try:
        cls = get_source_class(source.kind)
        cls.options_model(**source.options)
    except SpecError as exc:
        return [at.problem(kind_loc, str(exc))]
    except ValidationError as exc:
        return at.validation_problems(exc, prefix=("sources", index, "options"))
    if cls.schema_ref and spec.schema_ not in cls.schemas():
        message = (
            f"source kind {source.kind} produces {' or '.join(cls.schemas())}, spec schema is "
            f"{spec.schema_}"
        )
        return [at.problem(kind_loc, message)]
    return []


def _input_problems(spec: Spec, at: _Locator) -> list[Problem]:
    """Each source root exists, is readable and holds files; each patient-data source has
    its de-identification salt (a secret, or the declared demo salt)."""
    from curate.parse.deid import salt_from
    from curate.sources.base import get_source_class
    from curate.sources.roots import root_problem

    problems: list[Problem] = []
    for i, source in enumerate(spec.sources):
        if not source.path.startswith(DEMO_SCHEME):
            problem = root_problem(source.path, allow_empty=source.allow_empty)
            if problem:
                problems.append(
                    at.problem(("sources", i, "path"), f"source {source.label}: {problem}")
                )
        if get_source_class(source.kind).uses_salt(source.options):
            try:
                salt_from(source.options.get("uid_salt"))
            except SpecError as exc:
                problems.append(at.problem(("sources", i), f"source {source.label}: {exc}"))
    return problems


def _rule_file_problems(spec: Spec, at: _Locator) -> list[Problem]:
    """Each rule file named in `rules:` exists, and its rules and parameters validate."""
    from curate.rules.files import resolve_rule_file, validate_rule_file

    problems: list[Problem] = []
    for i, ref in enumerate(spec.rules):
        try:
            rule_path = resolve_rule_file(ref)
        except SpecError as exc:
            problems.append(at.problem(("rules", i), str(exc)))
            continue
        problems.extend(validate_rule_file(rule_path))
    return problems


def validate_spec(
    path: Path,
    sources: list[str] | tuple[str, ...] = (),
    sets: list[str] | tuple[str, ...] = (),
    *,
    check_inputs: bool = False,
) -> tuple[LoadedSpec | None, list[Problem]]:
    """Validate a spec file fully: the YAML, the overrides, the model with its optional
    sections, the schema and sources, then the rule files and rule names; with
    `check_inputs`, also each source's root (exists, readable, not empty) and salt."""
    text = path.read_text(encoding="utf-8")
    data, problems = _parse_yaml(text, str(path))
    if data is not None:
        data, problems = _overridden(data, list(sources), list(sets), str(path))
    if data is None:
        return None, problems
    at = _Locator(str(path), line_index(text))
    spec, problems = _validated_model(data, at)
    if spec is None:
        return None, problems
    problems = _schema_problems(spec, at)
    for i in range(len(spec.sources)):
        problems.extend(_source_problems(spec, i, at))
    problems.extend(_rule_file_problems(spec, at))
    if check_inputs and not problems:
        problems.extend(_input_problems(spec, at))
    if problems:
        return None, problems
    digest = hashlib.sha256(text.encode()).hexdigest()
    return LoadedSpec(spec=spec, path=path, text=text, sha256=digest, data=data), []


def load_spec(
    name_or_path: str,
    sources: list[str] | tuple[str, ...] = (),
    sets: list[str] | tuple[str, ...] = (),
) -> LoadedSpec:
    path = resolve_spec_path(name_or_path)
    loaded, problems = validate_spec(path, sources, sets)
    if loaded is None:
        raise SpecError("\n".join(str(p) for p in problems))
    return loaded


def spec_json_schema() -> dict[str, Any]:
    schema = Spec.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://curate.dev/schemas/spec.schema.json"
    return schema
