"""Volume modality from header / spec / file name; exact dedup of records without text."""

from __future__ import annotations

import hashlib

import pytest

from curate.dedup.exact import caption_image_key, group_drops
from curate.enrich.modality import volume_modality, volume_modality_from_name


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("example_mr_sm.nii.gz", "MR"),  # TotalSegmentator's MR example
        ("example_ct.nii.gz", "CT"),
        ("sub-01_T1w.nii.gz", "MR"),  # BIDS
        ("sub-01_task-rest_bold.nii", "MR"),
        ("patient7_PET.nii.gz", "PT"),
        ("train_1_a_1.nii.gz", None),  # CT-RATE names say nothing: the spec must
        ("anatomical.nii", None),
        ("contract.nii.gz", None),  # "ct" inside a word is not a token
    ],
)
def test_modality_from_file_name(name, code):
    assert volume_modality_from_name(name) == code


def test_header_then_spec_then_file_name():
    assert volume_modality(header="mr", declared="CT", file_name="x_ct.nii") == (
        "MR",
        "dicom_header",
    )
    assert volume_modality(declared="CT", file_name="x_mr.nii") == ("CT", "spec")
    assert volume_modality(file_name="x_mr.nii") == ("MR", "file_name")
    assert volume_modality(file_name="x.nii") == (None, None)


def test_records_without_text_get_no_caption_image_key():
    digest = hashlib.sha256(b"pixels").hexdigest()
    # a DICOM image without a report: copies are duplicate_image (image key), never
    # duplicate_caption_image
    assert caption_image_key("", digest) is None
    assert caption_image_key("  \n ", digest) is None
    assert caption_image_key(None, digest) is None
    keyed = caption_image_key("Chest CT.", digest)
    assert keyed is not None and keyed == caption_image_key("chest  ct.", digest)


def test_group_drops_keep_the_smallest_id():
    drops = list(group_drops(("k", ["b", "a", "c", "a"]), "duplicate_image", "dedup:exact_image"))
    assert drops == [
        ("b", ("dedup:exact_image", "duplicate_image", "a")),
        ("c", ("dedup:exact_image", "duplicate_image", "a")),
    ]
