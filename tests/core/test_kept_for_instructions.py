"""Kept records go on to the instruction step without their image bytes (instructions reference
images by hash unless `instruct.include_image`): what an instruction takes from its record's
image must not change, and a record without a stored hash gets the hash of its bytes."""

from __future__ import annotations

import hashlib

from curate.build.task_outputs import without_image_bytes
from curate.instruct import records as R


def test_stripped_record_gives_the_same_image_fields_and_keeps_the_rest() -> None:
    data = b"\x89PNG fake image bytes"
    digest = hashlib.sha256(data).hexdigest()
    full = {"record_id": "r1", "caption": "CT of the chest", "image": data, "image_sha256": digest}
    full["image_format"] = "png"
    stripped = without_image_bytes(full)
    assert stripped["image"] is None and full["image"] == data  # the input is not touched
    assert R.has_image(stripped)
    assert R.image_fields(stripped, include_image=False) == R.image_fields(full, False)
    assert {k: v for k, v in stripped.items() if k != "image"} == {
        k: v for k, v in full.items() if k != "image"
    }


def test_missing_hash_is_made_from_the_bytes_and_imageless_records_pass_unchanged() -> None:
    data = b"another image"
    stripped = without_image_bytes({"record_id": "r2", "image": data, "image_sha256": None})
    assert stripped["image_sha256"] == hashlib.sha256(data).hexdigest()
    text_only = {"record_id": "r3", "report": "No acute findings.", "image": None}
    assert without_image_bytes(text_only) is text_only
    assert not R.has_image(without_image_bytes(text_only))
