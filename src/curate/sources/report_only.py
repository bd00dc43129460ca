"""`record_mode: report`: one text-only record per report, for labelling a report corpus.

IU X-ray and MIMIC-CXR read this way need no images: every report becomes one kept
report_image.v1 record with `record_mode = "report"`, the image columns null, `images` null and
`image_count` 0. Image rows and files are not looked at, so an absent image folder or a
missing image file is no error in this mode. Accounting is unchanged otherwise: a report
without text, or undecodable, is an error with its reason, and a MIMIC study without a report
file is a `missing_file` error, so every input is still kept, rejected or an error.
"""

from __future__ import annotations

from typing import Any, Literal

from curate.stages import Record

REPORT_MODE = "report"
RecordMode = Literal["image", "study", "report"]
RECORD_MODE_HELP = (
    "image: one record per image; study: one record per study with `images`; "
    "report: one text-only record per report, images not read"
)


def report_record(
    base: dict[str, Any], text: dict[str, Any], schema_fields: list[str], modality: str | None
) -> Record:
    """The record of one report in `report` mode (same id as the study record)."""
    record: Record = dict.fromkeys(schema_fields)
    record.update(base)
    record.update(text)
    record.update(
        record_mode=REPORT_MODE,
        record_id=f"{base['dataset']}/{base['subject_id']}/{base['study_id']}",
        image_count=0,
        modality=modality,
    )
    return record
