"""report_image.v1 is released with the radiology sources: pinned so a change needs a v2."""

from __future__ import annotations

import pyarrow as pa

from curate.schema import load_schema

REPORT_IMAGE_V1_HASH = "fd4db611a674c786"


def test_report_image_v1_is_frozen() -> None:
    assert load_schema("report_image.v1").hash == REPORT_IMAGE_V1_HASH, (
        "report_image.v1 changed: release report_image.v2 instead"
    )


def test_report_image_v1_types() -> None:
    schema = load_schema("report_image.v1").arrow
    label = pa.struct([("observation", pa.string()), ("value", pa.string())])
    assert schema.field("sections").type == pa.list_(
        pa.struct([("name", pa.string()), ("text", pa.string())])
    )
    assert schema.field("labels").type == pa.list_(label)
    assert schema.field("derived_labels").type == pa.list_(label)
    assert (
        schema.field("entities").type
        == load_schema("figure_caption.v1").arrow.field("entities").type
    )
    assert schema.field("image").type == pa.large_binary()
    assert schema.field("pixel_spacing").type == pa.list_(pa.float64())
    image_struct = schema.field("images").type.value_type
    assert [f.name for f in image_struct] == [
        "image_id",
        "view_position",
        "view_description",
        "image",
        "image_format",
        "image_source_format",
        "image_width",
        "image_height",
        "image_sha256",
        "image_uri",
        "bit_depth",
        "dicom_modality",
        "body_part",
        "photometric_interpretation",
        "transfer_syntax",
        "pixel_spacing",
    ]
    for name in (
        "record_id",
        "unit_id",
        "source_uri",
        "dataset",
        "record_mode",
        "subject_id",
        "study_id",
        "report_text",
        "has_sections",
        "phi_redacted",
        "image_count",
    ):
        assert not schema.field(name).nullable, name
