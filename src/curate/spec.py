"""Build specs: YAML validated into a typed model, with problems reported as `file:line`.

Mechanism here; policy (which rules, thresholds) lives in `curation_rules/` and is referenced
by name. Sections owned by optional stages (linking, near dedup, instructions, ...) are typed
by those stages' own pydantic models, looked up in `SECTION_MODELS` and validated here too,
so `curate validate` catches every problem before Beam starts.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from curate.errors import SpecError
from curate.problems import Problem, line_index, nearest_line
from curate.resources import resource_dir

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
    near: dict[str, Any] | None = Field(
        default=None, description="near duplicates: perceptual hash, MinHash-LSH (curate.dedup)"
    )
    semantic: dict[str, Any] | None = Field(
        default=None, description="SemDeDup on embeddings (needs an `embed` section)"
    )
    quality: dict[str, Any] | None = Field(
        default=None, description="image-text similarity threshold / keep-top-fraction"
    )
    decontam: dict[str, Any] | None = Field(
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
    link: dict[str, Any] | None = Field(
        default=None, description="UMLS linking settings (curate.enrich.link)"
    )


class WorkSpec(_Model):
    units_per_task: int = Field(16, ge=1, description="input units per resumable phase-1 task")


class Spec(_Model):
    name: str
    description: str = ""
    schema_: str = Field(alias="schema", description="record schema, e.g. figure_caption.v1")
    sources: list[SourceSpec] = Field(min_length=1)
    rules: list[str] = Field(
        default_factory=list, description="rule files in curation_rules/ (by stem) or paths"
    )
    enrich: EnrichSpec = Field(default_factory=EnrichSpec)
    dedup: DedupSpec = Field(default_factory=DedupSpec)
    embed: dict[str, Any] | None = Field(
        default=None, description="embedding pass (RunInference): model, device, towers"
    )
    split: SplitSpec = Field(default_factory=SplitSpec)
    instruct: dict[str, Any] | None = None
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


# Optional sections are typed by the owning package's config model ("module:Class").
SECTION_MODELS: dict[tuple[str, ...], str] = {
    ("enrich", "link"): "curate.enrich.link.config:LinkConfig",
    ("dedup", "near"): "curate.dedup.config:NearDedupConfig",
    ("dedup", "semantic"): "curate.dedup.config:SemanticDedupConfig",
    ("dedup", "quality"): "curate.rules.similarity:QualityConfig",
    ("dedup", "decontam"): "curate.decontaminate.config:DecontamConfig",
    ("embed",): "curate.embed.config:EmbedConfig",
    ("instruct",): "curate.instruct.config:InstructConfig",
}


def section_model(path: tuple[str, ...]) -> type[BaseModel]:
    module_name, class_name = SECTION_MODELS[path].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise SpecError(
            f"section {'.'.join(path)} needs {module_name}, which is not available: {exc}"
        ) from exc
    return getattr(module, class_name)


def section(spec: Spec, path: tuple[str, ...]) -> BaseModel | None:
    """The typed config of an optional section, or None when the spec leaves it out."""
    node: Any = spec
    for key in path:
        node = getattr(node, key if key != "schema" else "schema_", None)
        if node is None:
            return None
    return section_model(path).model_validate(node)


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


def validate_spec(
    path: Path, sources: list[str] | tuple[str, ...] = (), sets: list[str] | tuple[str, ...] = ()
) -> tuple[LoadedSpec | None, list[Problem]]:
    """Validate a spec file fully: the model, optional sections, rule files and rule names."""
    text = path.read_text(encoding="utf-8")
    where = str(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        return None, [Problem(where, (mark.line + 1) if mark else 1, f"YAML syntax: {exc}")]
    if not isinstance(data, dict):
        return None, [Problem(where, 1, "a spec must be a mapping")]
    lines = line_index(text)
    try:
        data = apply_overrides(data, list(sources), list(sets))
    except SpecError as exc:
        return None, [Problem(where, 1, str(exc))]
    problems: list[Problem] = []
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            field = ".".join(str(p) for p in loc) or "(top)"
            problems.append(Problem(where, nearest_line(lines, loc), f"{field}: {err['msg']}"))
        return None, problems

    from curate.schema import load_schema
    from curate.sources.base import get_source_class

    try:
        load_schema(spec.schema_)
    except SpecError as exc:
        problems.append(Problem(where, nearest_line(lines, ("schema",)), str(exc)))
    for i, source in enumerate(spec.sources):
        try:
            cls = get_source_class(source.kind)
            cls.options_model(**source.options)
            if cls.schema_ref and cls.schema_ref != spec.schema_:
                problems.append(
                    Problem(
                        where,
                        nearest_line(lines, ("sources", i, "kind")),
                        f"source kind {source.kind} produces {cls.schema_ref}, spec schema is {spec.schema_}",
                    )
                )
        except SpecError as exc:
            problems.append(Problem(where, nearest_line(lines, ("sources", i, "kind")), str(exc)))
        except ValidationError as exc:
            for err in exc.errors():
                loc = ("sources", i, "options", *err["loc"])
                problems.append(
                    Problem(
                        where,
                        nearest_line(lines, loc),
                        f"sources.{i}.options.{'.'.join(map(str, err['loc']))}: {err['msg']}",
                    )
                )
    for path_key in SECTION_MODELS:
        node: Any = data
        for key in path_key:
            node = node.get(key) if isinstance(node, dict) else None
        if node is None:
            continue
        try:
            section_model(path_key).model_validate(node)
        except SpecError as exc:
            problems.append(Problem(where, nearest_line(lines, path_key), str(exc)))
        except ValidationError as exc:
            for err in exc.errors():
                loc = (*path_key, *err["loc"])
                problems.append(
                    Problem(
                        where, nearest_line(lines, loc), f"{'.'.join(map(str, loc))}: {err['msg']}"
                    )
                )
    from curate.rules.files import resolve_rule_file, validate_rule_file

    for i, ref in enumerate(spec.rules):
        try:
            rule_path = resolve_rule_file(ref)
        except SpecError as exc:
            problems.append(Problem(where, nearest_line(lines, ("rules", i)), str(exc)))
            continue
        problems.extend(validate_rule_file(rule_path))
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
