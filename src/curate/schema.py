"""Record schemas: YAML files in `schemas/` are the single source of truth.

A schema file declares `name`, `version` and `fields`; each field has a `type` from a small
grammar (string, large_string, binary, bool, int32, int64, float32, float64, list, struct) and
a `doc`. `load_schema("figure_caption.v1")` builds the pyarrow schema with the name, version
and a content hash in its metadata. Released versions are frozen: tests pin their hashes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from typing import Any

import pyarrow as pa
import yaml

from curate.errors import SchemaMismatch, SpecError
from curate.resources import resource_dir

_SCALARS: dict[str, pa.DataType] = {
    "string": pa.string(),
    "large_string": pa.large_string(),
    "binary": pa.binary(),
    "large_binary": pa.large_binary(),
    "bool": pa.bool_(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
}

META_NAME = b"curate.schema.name"
META_VERSION = b"curate.schema.version"
META_HASH = b"curate.schema.hash"


@dataclass(frozen=True)
class RecordSchema:
    name: str
    version: int
    hash: str
    arrow: pa.Schema
    definition: dict[str, Any]

    @property
    def ref(self) -> str:
        return f"{self.name}.v{self.version}"

    @property
    def field_names(self) -> list[str]:
        return list(self.arrow.names)

    def metadata(self) -> dict[bytes, bytes]:
        return {
            META_NAME: self.name.encode(),
            META_VERSION: str(self.version).encode(),
            META_HASH: self.hash.encode(),
        }

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "hash": self.hash}

    def extended(self, extra: list[pa.Field], suffix: str) -> RecordSchema:
        """This schema plus bookkeeping columns (rejects add `reason`, `duplicate_of`)."""
        arrow = pa.schema(list(self.arrow) + extra)
        return RecordSchema(
            name=f"{self.name}.{suffix}",
            version=self.version,
            hash=self.hash,
            arrow=arrow.with_metadata(self.metadata()),
            definition=self.definition,
        )

    def empty_record(self) -> dict[str, Any]:
        return {name: None for name in self.arrow.names}

    def check(self, metadata: dict[bytes, bytes] | None, where: str = "") -> None:
        """Raise SchemaMismatch unless `metadata` names this schema exactly."""
        metadata = metadata or {}
        found = (
            metadata.get(META_NAME, b"?").decode(),
            metadata.get(META_VERSION, b"?").decode(),
            metadata.get(META_HASH, b"?").decode(),
        )
        expected = (self.name, str(self.version), self.hash)
        if found != expected:
            raise SchemaMismatch(
                f"{where or 'shard'} was written with schema {found[0]} v{found[1]} "
                f"(hash {found[2]}); expected {expected[0]} v{expected[1]} (hash {expected[2]})"
            )


def _arrow_type(spec: dict[str, Any], where: str) -> pa.DataType:
    kind = spec.get("type")
    if kind in _SCALARS:
        return _SCALARS[kind]
    if kind == "list":
        if "items" not in spec:
            raise SpecError(f"{where}: list type needs `items`")
        return pa.list_(_arrow_type(spec["items"], where + ".items"))
    if kind == "struct":
        return pa.struct([_arrow_field(f, where) for f in spec.get("fields", [])])
    raise SpecError(f"{where}: unknown type {kind!r}")


def _arrow_field(spec: dict[str, Any], where: str) -> pa.Field:
    name = spec.get("name")
    if not name:
        raise SpecError(f"{where}: field without a name")
    return pa.field(name, _arrow_type(spec, f"{where}.{name}"), nullable=spec.get("nullable", True))


def _canonical_hash(definition: dict[str, Any]) -> str:
    # Docs are excluded so that clarifying a description does not change the schema identity.
    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in sorted(node.items()) if k not in ("doc", "description")}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    payload = json.dumps(strip(definition), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def schema_from_definition(definition: dict[str, Any]) -> RecordSchema:
    name, version = definition.get("name"), definition.get("version")
    if not name or not isinstance(version, int):
        raise SpecError("schema needs `name` and an integer `version`")
    fields = [_arrow_field(f, name) for f in definition.get("fields", [])]
    digest = _canonical_hash(definition)
    schema = RecordSchema(
        name=name, version=version, hash=digest, arrow=pa.schema(fields), definition=definition
    )
    return RecordSchema(
        name, version, digest, schema.arrow.with_metadata(schema.metadata()), definition
    )


@cache
def load_schema(ref: str) -> RecordSchema:
    """`ref` is `<name>.v<version>`, e.g. `figure_caption.v1`."""
    path = resource_dir("schemas") / f"{ref}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in resource_dir("schemas").glob("*.v*.yaml"))
        raise SpecError(f"unknown record schema {ref!r}; available: {available}")
    definition = yaml.safe_load(path.read_text())
    schema = schema_from_definition(definition)
    if schema.ref != ref:
        raise SpecError(f"{path}: declares {schema.ref}, file name says {ref}")
    return schema


def available_schemas() -> list[str]:
    return sorted(p.name[: -len(".yaml")] for p in resource_dir("schemas").glob("*.v*.yaml"))


# Bookkeeping tables share one definition each, so every writer and reader agrees.
REJECT_COLUMNS = [
    pa.field("reason", pa.string(), nullable=False),
    pa.field("reject_stage", pa.string(), nullable=False),
    pa.field("duplicate_of", pa.string()),
]

ERROR_SCHEMA = pa.schema(
    [
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("unit_id", pa.string()),
        pa.field("record_id", pa.string()),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("error_type", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("message", pa.string()),
    ]
)


def reject_schema(schema: RecordSchema) -> pa.Schema:
    """The Arrow schema of `rejects/`: the record's columns plus REJECT_COLUMNS."""
    return schema.extended(REJECT_COLUMNS, "rejects").arrow
