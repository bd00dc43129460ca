"""IU X-ray (Open-i, Indiana University chest X-ray collection) in its common CSV layout.

`path` holds `indiana_reports.csv` (uid, image, indication, comparison, findings, impression;
extra columns such as MeSH/Problems are ignored) and `indiana_projections.csv` (uid, filename,
projection), plus optionally the image folder (`images/images_normalized/` as on Kaggle, or
any folder named by `images_dir`). One unit per report (uid); the uid is also the subject id,
since each report of the collection is one patient's study.

The `image` column describes the examination and becomes the `examination` section; `XXXX`
de-identification placeholders become `___` (counted as `source_placeholder`). Without an image
folder every projection is a `Rejected` record `image_missing`, so text-only work still sees
every report; with a folder, a projection whose file is absent is a `missing_file` dead letter.
`record_mode: report` gives one kept text-only record per report instead, images not read
(`curate.sources.report_only`), so a report corpus can be labelled without its images.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from typing import Any

from pydantic import Field

from curate import fs
from curate.errors import EmptyInput, MalformedMetadata
from curate.parse.reports import sections_from_fields
from curate.schema import load_schema
from curate.sources.base import Source, Unit, register_source, safe_unit_id
from curate.sources.radiology import (
    RadiologyOptions,
    TextFields,
    assemble,
    image_stem,
    read_csv_rows,
)
from curate.sources.report_only import (
    RECORD_MODE_HELP,
    REPORT_MODE,
    RecordMode,
    report_record,
)
from curate.stages import Failed, Record, Rejected

_TEXT_COLUMNS = (
    ("examination", "image"),
    ("indication", "indication"),
    ("comparison", "comparison"),
    ("findings", "findings"),
    ("impression", "impression"),
)
_PROJECTIONS = {"frontal": "FRONTAL", "lateral": "LATERAL"}


class IuXrayOptions(RadiologyOptions):
    record_mode: RecordMode = Field("image", description=RECORD_MODE_HELP)  # type: ignore[assignment]
    reports_csv: str = Field("indiana_reports.csv", description="report CSV, relative to path")
    projections_csv: str | None = Field(
        "indiana_projections.csv", description="projection CSV, relative to path; null: none"
    )
    images_dir: str | None = Field(
        "auto",
        description="image folder relative to path; auto: images/images_normalized, "
        "then images; null: reports only (every image rejected image_missing)",
    )


def _iu_image_id(filename: str) -> str:
    """'1_IM-0001-4001.dcm.png' -> '1_IM-0001-4001' (the Kaggle PNGs keep the DICOM name)."""
    stem = image_stem(filename)
    return image_stem(stem) if stem.lower().endswith(".dcm") else stem


def _resolve(base: str, value: str) -> str:
    return value if (posixpath.isabs(value) or "://" in value) else fs.join(base, value)


@register_source
class IuXraySource(Source):
    kind = "iu_xray"
    schema_ref = "report_image.v1"
    options_model = IuXrayOptions
    group_field = "subject_id"
    deidentified_upstream = True  # Open-i replaced PHI with XXXX

    options: IuXrayOptions

    def _images_dir(self) -> str | None:
        value = self.options.images_dir
        if value is None:
            return None
        candidates = ["images/images_normalized", "images"] if value == "auto" else [value]
        for candidate in candidates:
            path = _resolve(self.path, candidate)
            if fs.exists(path):
                return path
        if value != "auto":
            raise MalformedMetadata(f"images_dir {value!r} does not exist under {self.path}")
        return None

    def discover(self) -> Iterator[Unit]:
        opts = self.options
        reports_uri = _resolve(self.path, opts.reports_csv)
        rows = read_csv_rows(reports_uri, ("uid",))
        projections: dict[str, list[dict[str, str]]] = {}
        if opts.projections_csv is not None:
            for row in read_csv_rows(
                _resolve(self.path, opts.projections_csv), ("uid", "filename")
            ):
                projections.setdefault(row["uid"], []).append(row)
        # reports-only: the image folder is not needed, nor looked for
        images_dir = None if opts.record_mode == REPORT_MODE else self._images_dir()
        seen: set[str] = set()
        for row in rows:
            uid = row["uid"]
            if not uid or uid in seen:
                raise MalformedMetadata(f"{reports_uri}: uid {uid!r} is empty or repeated")
            seen.add(uid)
            images = []
            for projection in projections.get(uid, []):
                filename = projection["filename"]
                uri = fs.join(images_dir, filename) if images_dir else None
                images.append(
                    {
                        "image_id": _iu_image_id(filename),
                        "uri": uri,
                        "missing": uri is not None and not fs.exists(uri),
                        "view_position": _PROJECTIONS.get(
                            projection.get("projection", "").lower(),
                            projection.get("projection") or None,
                        ),
                    }
                )
            yield Unit(
                unit_id=safe_unit_id(f"iu_xray/{uid}"),
                uri=reports_uri,
                kind=self.kind,
                meta={
                    "uid": uid,
                    "row": {k: row.get(c, "") for k, c in _TEXT_COLUMNS},
                    "images": images,
                },
            )
        if unknown := sorted(set(projections) - seen, key=lambda u: (len(u), u)):
            # projections of a uid with no report would be lost silently: fail loudly instead
            raise MalformedMetadata(f"projection rows name uids without a report: {unknown[:10]}")

    def read(self, unit: Unit) -> Iterator[Record | Rejected | Failed]:
        meta: dict[str, Any] = unit.meta
        text_fields = TextFields(self.kind, self.options, self.deidentified_upstream)
        placeholders = 0
        columns: list[tuple[str, str | None]] = []
        for name, _column in _TEXT_COLUMNS:
            value, n = text_fields.normalise_placeholders(meta["row"].get(name, ""))
            placeholders += n
            columns.append((name, value))
        if not any((value or "").strip() for name, value in columns if name != "examination"):
            raise EmptyInput(
                f"report uid {meta['uid']} has no indication, comparison, findings "
                "or impression text"
            )
        parsed = sections_from_fields(columns, text_fields.lexicon)
        text = text_fields.fields(parsed, placeholder_count=placeholders)
        uid = meta["uid"]
        base = {
            "unit_id": unit.unit_id,
            "source_uri": unit.uri,
            "dataset": self.kind,
            "subject_id": uid,
            "study_id": uid,
            "procedure": text.get("examination"),
        }
        schema_fields = load_schema(self.schema_ref).field_names
        if self.options.record_mode == REPORT_MODE:
            yield report_record(base, text, schema_fields, self.options.modality)
            return
        yield from assemble(
            base=base,
            text=text,
            images=meta["images"],
            options=self.options,
            schema_fields=schema_fields,
            unit_uri=unit.uri,
            unit_id=unit.unit_id,
        )
