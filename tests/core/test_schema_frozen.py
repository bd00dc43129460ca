"""Released record schemas are frozen: a change must be a new version file."""

from __future__ import annotations

import pyarrow as pa
import pytest

from curate.errors import SchemaMismatch, SpecError
from curate.schema import META_HASH, available_schemas, load_schema, schema_from_definition

# name.vN -> hash of the released definition. Adding a schema adds a line; changing one fails.
RELEASED = {
    "figure_caption.v1": "6e5c18e8d41ccce1",
    "report_image.v1": "fd4db611a674c786",
    "volume.v1": "48e195837f86090b",
    "instruction.v1": "dde2db5ed6e36883",
    "figure_caption.v2": "da0b273752138046",
    "volume.v2": "fed685bd8da60876",
}


@pytest.mark.parametrize("ref", sorted(RELEASED))
def test_released_schema_unchanged(ref: str) -> None:
    assert load_schema(ref).hash == RELEASED[ref], f"{ref} changed: release a new version instead"


def test_every_schema_file_is_released_or_new() -> None:
    for ref in available_schemas():
        schema = load_schema(ref)
        assert schema.arrow.metadata[META_HASH].decode() == schema.hash
        assert ref == schema.ref


def test_docs_do_not_change_identity() -> None:
    base = {"name": "x", "version": 1, "fields": [{"name": "a", "type": "string", "doc": "one"}]}
    redoc = {"name": "x", "version": 1, "fields": [{"name": "a", "type": "string", "doc": "two"}]}
    retyped = {"name": "x", "version": 1, "fields": [{"name": "a", "type": "int64"}]}
    assert schema_from_definition(base).hash == schema_from_definition(redoc).hash
    assert schema_from_definition(base).hash != schema_from_definition(retyped).hash


def test_figure_caption_types() -> None:
    schema = load_schema("figure_caption.v1").arrow
    assert schema.field("image").type == pa.large_binary()
    assert schema.field("inline_mentions").type == pa.list_(pa.string())
    assert schema.field("caption").nullable is False
    entity = schema.field("entities").type.value_type
    assert [f.name for f in entity] == [
        "cui",
        "name",
        "semantic_types",
        "field",
        "start",
        "end",
        "score",
        "assertion",
    ]


def test_check_names_the_mismatch() -> None:
    schema = load_schema("figure_caption.v1")
    schema.check(schema.metadata())
    with pytest.raises(SchemaMismatch, match="expected figure_caption v1"):
        schema.check({b"curate.schema.name": b"other", b"curate.schema.version": b"1"})
    with pytest.raises(SpecError, match="unknown record schema"):
        load_schema("nope.v1")
