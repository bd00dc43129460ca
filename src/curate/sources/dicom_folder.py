"""A folder of 2D DICOM images (any depth), optionally with a report CSV -> `report_image.v1`.

One unit and one record per DICOM file (`.dcm`, `.dicom`, `.dcm.gz`). The image is rendered to
PNG by the de-identifying decoder (`curate.parse.dicom.decode_dicom`); identifiers become
salted hashes: subject_id = patient pseudonym, study_id = study UID hash, image_id = SOP
instance UID hash; file names in unit ids and URIs become salted pseudonyms unless
`pseudonymise_paths` is off (curate.sources.path_privacy). Reports, when given, come from a CSV with columns `file` (path relative to
the folder) and `report` (full text), parsed into sections and PHI-redacted like the other
report sources. Without a report row the record keeps an empty report, unless
`require_report` rejects it (`report_missing`). BurnedInAnnotation YES is rejected
(`burned_in_annotation`) without its pixels, as in the MIMIC-CXR source.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Iterator
from typing import Any

from pydantic import Field

from curate import fs
from curate.sources.base import Source, Unit, register_source, safe_unit_id
from curate.sources.ct_rate import read_csv_table
from curate.sources.radiology import RadiologyOptions, TextFields
from curate.stages import Failed, Record, Rejected

DICOM_SUFFIXES = (".dcm", ".dicom", ".dcm.gz")


class DicomFolderOptions(RadiologyOptions):
    dataset: str = Field("dicom_folder", description="dataset name written into every record")
    reports_csv: str | None = Field(
        None,
        description="CSV with columns file (relative path) and report; absolute or "
        "relative to the folder",
    )
    require_report: bool = Field(False, description="reject images without a report row")
    modality: str | None = Field(
        None, description="modality vocabulary value for every image; None leaves it to enrichment"
    )
    frame: int | None = Field(
        None, description="multi-frame objects: frame to render; None = middle"
    )
    pseudonymise_paths: bool = Field(
        True,
        description="replace file and folder names in unit ids and URIs by salted pseudonyms "
        "(hospital exports name folders after patients)",
    )


@register_source
class DicomFolderSource(Source):
    kind = "dicom_folder"
    schema_ref = "report_image.v1"
    options_model = DicomFolderOptions
    group_field = "subject_id"

    options: DicomFolderOptions

    def discover(self) -> Iterator[Unit]:
        root = self.path.rstrip("/")
        reports: dict[str, dict[str, str]] = {}
        if self.options.reports_csv:
            uri = self.options.reports_csv
            if fs.is_local(uri) and not uri.startswith("/"):
                uri = fs.join(root, uri)
            reports = read_csv_table(uri, "file")
        for uri in fs.walk_files(root):
            if not uri.lower().endswith(DICOM_SUFFIXES):
                continue
            rel = uri[len(root) :].lstrip("/\\").replace("\\", "/")
            row = reports.get(rel)
            yield Unit(
                unit_id=safe_unit_id(f"{self.options.dataset}/{self.public_name(rel, 'f-')}"),
                uri=uri,
                kind=self.kind,
                meta={"rel": rel, "report": row.get("report") if row else None},
            )

    def read(self, unit: Unit) -> Iterator[Record | Rejected | Failed]:
        from curate.parse.deid import option_salt
        from curate.parse.dicom import decode_dicom
        from curate.parse.reports import load_lexicon, parse_report
        from curate.schema import load_schema

        opts = self.options
        decoded = decode_dicom(
            fs.read_bytes(unit.uri),
            bit_depth=opts.bit_depth,
            frame=opts.frame,
            uid_salt=option_salt(opts.uid_salt),
        )
        meta = decoded.metadata
        record: dict[str, Any] = dict.fromkeys(load_schema(self.schema_ref).field_names)
        subject = (
            meta.get("patient_pseudonym")
            or "p-unknown-" + hashlib.sha256(unit.uri.encode()).hexdigest()[:12]
        )
        study = meta.get("study_uid_hash") or "unknown"
        image_id = meta.get("sop_uid_hash") or self.public_name(
            posixpath.basename(unit.meta["rel"]), "f-"
        )
        spacing = meta.get("pixel_spacing") or meta.get("imager_pixel_spacing")
        record.update(
            record_id=f"{opts.dataset}/{subject}/{study}/{image_id}",
            unit_id=unit.unit_id,
            source_uri=unit.uri,
            dataset=opts.dataset,
            record_mode="image",
            subject_id=subject,
            study_id=study,
            image_id=image_id,
            view_position=meta.get("view_position"),
            study_date=meta.get("study_date_shifted"),
            image=decoded.png,
            image_format="PNG",
            image_source_format="DICOM",
            image_width=decoded.width,
            image_height=decoded.height,
            image_sha256=hashlib.sha256(decoded.png).hexdigest(),
            image_uri=unit.uri,
            bit_depth=decoded.bit_depth,
            modality=opts.modality,
            dicom_modality=meta.get("modality"),
            body_part=meta.get("body_part"),
            photometric_interpretation=meta.get("photometric_interpretation"),
            transfer_syntax=meta.get("transfer_syntax_uid"),
            pixel_spacing=[float(v) for v in spacing] if spacing else None,
            burned_in_annotation="YES" if meta.get("burned_in_annotation") else "NO",
            image_count=1,
            sections=[],
            report_text="",
            has_sections=False,
            phi_redacted=False,
            text_redaction_counts=[],
        )
        report = unit.meta.get("report")
        if report:
            text = TextFields(opts.dataset, opts, deidentified_upstream=False)
            columns = text.fields(parse_report(report, load_lexicon(opts.section_lexicon)))
            record.update({k: v for k, v in columns.items() if k in record})
        if opts.reject_burned_in_annotation and record["burned_in_annotation"] == "YES":
            record["image"] = None  # never copy pixels with burned-in PHI into the rejects
            yield Rejected(record=record, reason="burned_in_annotation", stage="read")
        elif opts.require_report and not report:
            yield Rejected(record=record, reason="report_missing", stage="read")
        else:
            yield record
