"""Shared pieces of the report+image sources (MIMIC-CXR, IU X-ray): options, text fields,
image loading and record assembly for schema `report_image.v1`.

Decisions kept in one place:

- A metadata row (or projection row) naming an image file that does not exist gives a `Failed`
  dead letter with reason `missing_file` for that image: the metadata promised an input that is
  not there, which is an input error, not a curation choice. When a source has no image folder
  at all (IU X-ray reports-only download), each image is a `Rejected` record `image_missing`
  (text-only evaluation stays possible from the rejects).
- A study with a report but no image rows is one `Rejected` record `image_missing`.
- DICOM with BurnedInAnnotation YES is `Rejected` `burned_in_annotation` (option, on by default);
  the reject keeps the text and metadata but never the pixels.
- In `study` mode an image that fails is a dead letter of its own and the study record keeps
  the other images; a study whose every image failed is still one record (`image_count` 0)
  rejected `image_missing`, so the report is accounted for too.
"""

from __future__ import annotations

import csv
import gzip
import io
import posixpath
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from curate import fs
from curate.errors import EmptyInput, MalformedMetadata, MissingFile, NotUTF8
from curate.parse.images import probe_image
from curate.parse.phi import PhiRedactor, load_redactor
from curate.parse.reports import ParsedReport, Section, load_lexicon
from curate.sources.base import SourceOptions
from curate.stages import Failed, Record, Rejected

DICOM_EXTENSIONS = (".dcm", ".dicom", ".dcm.gz")
RASTER_EXTENSIONS = (".jpg", ".jpeg", ".png")
# Frontal views first: the image most report-generation work pairs with the report.
FRONTAL_VIEWS = ("PA", "AP", "FRONTAL", "AP AXIAL", "PA LLD", "AP LLD", "AP RLD", "PA RLD")
OTHER_VIEWS = ("LATERAL", "LL", "RL", "LAO", "RAO", "LPO", "RPO", "XTABLE LATERAL", "SWIMMERS")
VIEW_ORDER = FRONTAL_VIEWS + OTHER_VIEWS
LABEL_VALUES = {
    "1": "positive",
    "1.0": "positive",
    "0": "negative",
    "0.0": "negative",
    "-1": "uncertain",
    "-1.0": "uncertain",
    "": "not_mentioned",
}
SPLIT_NAMES = {
    "train": "train",
    "validate": "validation",
    "validation": "validation",
    "val": "validation",
    "test": "test",
}


class RadiologyOptions(SourceOptions):
    record_mode: Literal["image", "study"] = Field(
        "image",
        description="image: one record per image; study: one record per study with `images`",
    )
    phi_redaction: Literal["auto", "on", "off"] = Field(
        "auto", description="auto: redact only sources not de-identified upstream"
    )
    phi_patterns: str = Field("phi_patterns.v1", description="curation_rules file of PHI patterns")
    section_lexicon: str = Field("report_sections.v1", description="curation_rules section lexicon")
    reject_burned_in_annotation: bool = Field(
        True, description="reject DICOM images whose BurnedInAnnotation is YES (PHI in pixels)"
    )
    bit_depth: Literal[8, 16] = Field(
        8, description="grey-scale PNG depth for images rendered from DICOM"
    )
    modality: str | None = Field(
        "x-ray", description="modality (curation_rules/modality.v1 vocabulary) of every image"
    )
    uid_salt: str | None = Field(
        None, description="salt for UID/patient hashes; else $CURATE_UID_SALT (set one per project)"
    )


def read_text_file(uri: str) -> bytes:
    if not fs.exists(uri):
        raise MissingFile(f"{uri} does not exist")
    return fs.read_bytes(uri)


def read_csv_rows(uri: str, required: tuple[str, ...]) -> list[dict[str, str]]:
    """Rows of a CSV (optionally gzip'd, by magic bytes), checked for `required` columns."""
    data = read_text_file(uri)
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise MalformedMetadata(f"{uri}: corrupt gzip: {exc}") from exc
    if not data.strip():
        raise EmptyInput(f"{uri} is empty")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise NotUTF8(f"{uri} is not UTF-8 (offset {exc.start})") from exc
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        fields = reader.fieldnames or []
        missing = [c for c in required if c not in fields]
        if missing:
            raise MalformedMetadata(f"{uri}: missing columns {missing}; found {fields}")
        rows = []
        for line_no, row in enumerate(reader, start=2):
            if None in row:
                raise MalformedMetadata(f"{uri}:{line_no}: more values than columns")
            rows.append({k: (v or "").strip() for k, v in row.items()})
        return rows
    except csv.Error as exc:
        raise MalformedMetadata(f"{uri}: {exc}") from exc


def label_structs(row: dict[str, str], observations: list[str], uri: str) -> list[dict[str, str]]:
    out = []
    for observation in observations:
        raw = row.get(observation, "")
        if raw not in LABEL_VALUES:
            raise MalformedMetadata(f"{uri}: label {observation}={raw!r} is not 1.0/0.0/-1.0/blank")
        out.append({"observation": observation, "value": LABEL_VALUES[raw]})
    return out


def normalise_split(value: str, uri: str) -> str | None:
    if not value:
        return None
    if value.lower() not in SPLIT_NAMES:
        raise MalformedMetadata(f"{uri}: unknown split value {value!r}")
    return SPLIT_NAMES[value.lower()]


def view_rank(view: str | None) -> int:
    view = (view or "").upper()
    return VIEW_ORDER.index(view) if view in VIEW_ORDER else len(VIEW_ORDER)


def is_dicom_path(uri: str) -> bool:
    return uri.lower().endswith(DICOM_EXTENSIONS)


def is_image_path(uri: str) -> bool:
    return is_dicom_path(uri) or uri.lower().endswith(RASTER_EXTENSIONS)


def image_stem(uri: str) -> str:
    name = posixpath.basename(uri.replace("\\", "/"))
    for ext in (*DICOM_EXTENSIONS, *RASTER_EXTENSIONS):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


class TextFields:
    """Turns a parsed report into the text columns, with placeholder normalisation and PHI
    redaction applied to every section and to the full text."""

    def __init__(
        self, dataset: str, options: RadiologyOptions, deidentified_upstream: bool
    ) -> None:
        self.dataset = dataset
        self.lexicon_ref = options.section_lexicon
        self.lexicon = load_lexicon(options.section_lexicon)
        self.redactor: PhiRedactor = load_redactor(options.phi_patterns)
        mode = options.phi_redaction
        self.redact = mode == "on" or (mode == "auto" and not deidentified_upstream)

    def normalise_placeholders(self, text: str) -> tuple[str, int]:
        return self.redactor.normalise_placeholders(self.dataset, text)

    def fields(self, parsed: ParsedReport, placeholder_count: int = 0) -> dict[str, Any]:
        counts: dict[str, int] = {}
        report_text, n = self.normalise_placeholders(parsed.report_text)
        placeholder_count = max(placeholder_count, n)
        sections = [
            {"name": s.name, "text": self.normalise_placeholders(s.text)[0]}
            for s in parsed.sections
        ]
        if self.redact:
            result = self.redactor.redact(report_text)
            report_text = result.text
            counts.update(result.counts)
            sections = [
                {"name": s["name"], "text": self.redactor.redact(s["text"]).text} for s in sections
            ]
        if placeholder_count:
            counts["source_placeholder"] = placeholder_count
        columns: dict[str, Any] = {}
        redacted = (
            ParsedReport(
                sections=[Section(name=s["name"], text=s["text"]) for s in sections],
                has_sections=parsed.has_sections,
                report_text=report_text,
            )
            if sections
            else parsed
        )
        columns.update(redacted.convenience_columns())
        columns.update(
            sections=sections,
            report_text=report_text,
            has_sections=parsed.has_sections,
            report_flags=list(parsed.notes),
            section_lexicon=self.lexicon_ref,
            phi_redacted=self.redact,
            text_redaction_counts=[{"pattern": k, "count": v} for k, v in sorted(counts.items())],
        )
        return columns


def load_image(uri: str, options: RadiologyOptions) -> dict[str, Any]:
    """Image columns for one file: DICOM is rendered to PNG by the de-identifying decoder,
    JPEG/PNG bytes are kept unchanged (header probed, SHA-256)."""
    import hashlib

    data = read_text_file(uri)
    if is_dicom_path(uri):
        from curate.parse.deid import option_salt
        from curate.parse.dicom import decode_dicom

        decoded = decode_dicom(
            data, bit_depth=options.bit_depth, uid_salt=option_salt(options.uid_salt)
        )
        meta = decoded.metadata
        spacing = meta.get("pixel_spacing") or meta.get("imager_pixel_spacing")
        burned = meta.get("burned_in_annotation")
        return {
            "image": decoded.png,
            "image_format": "PNG",
            "image_source_format": "DICOM",
            "image_width": decoded.width,
            "image_height": decoded.height,
            "image_sha256": hashlib.sha256(decoded.png).hexdigest(),
            "image_uri": uri,
            "bit_depth": decoded.bit_depth,
            "dicom_modality": meta.get("modality"),
            "body_part": meta.get("body_part"),
            "photometric_interpretation": meta.get("photometric_interpretation"),
            "transfer_syntax": meta.get("transfer_syntax_uid") or meta.get("transfer_syntax"),
            "pixel_spacing": [float(v) for v in spacing] if spacing else None,
            "burned_in_annotation": None
            if burned is None
            else ("YES" if burned is True or str(burned).upper() == "YES" else "NO"),
            "dicom_view_position": meta.get("view_position"),
        }
    info = probe_image(data)
    if info.format not in ("JPEG", "PNG"):
        from curate.errors import UnreadableImage

        raise UnreadableImage(f"{uri}: expected JPEG or PNG, found {info.format}")
    return {
        "image": data,
        "image_format": info.format,
        "image_source_format": info.format,
        "image_width": info.width,
        "image_height": info.height,
        "image_sha256": info.sha256,
        "image_uri": uri,
        "bit_depth": 8,
        "dicom_modality": None,
        "body_part": None,
        "photometric_interpretation": None,
        "transfer_syntax": None,
        "pixel_spacing": None,
        "burned_in_annotation": None,
        "dicom_view_position": None,
    }


STRUCT_IMAGE_COLUMNS = (
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
)


Loaded = list[tuple[dict[str, Any], dict[str, Any]]]  # (image row, its columns) per image loaded


@dataclass(frozen=True)
class _Study:
    """What every record of one study starts from: the schema's columns, filled with the
    study's base fields, its text columns and the modality."""

    base: dict[str, Any]
    text: dict[str, Any]
    options: RadiologyOptions
    schema_fields: list[str]

    def blank(self) -> dict[str, Any]:
        record = dict.fromkeys(self.schema_fields)
        record.update(self.base)
        record.update(self.text)
        record["modality"] = self.options.modality
        return record

    def record_id(self) -> str:
        return f"{self.base['dataset']}/{self.base['subject_id']}/{self.base['study_id']}"

    def image_record_id(self, image_id: str) -> str:
        return f"{self.record_id()}/{image_id}"

    def rejects_burned_in(self, burned_in_annotation: str | None) -> bool:
        return self.options.reject_burned_in_annotation and burned_in_annotation == "YES"


def assemble(
    *,
    base: dict[str, Any],
    text: dict[str, Any],
    images: list[dict[str, Any]],
    options: RadiologyOptions,
    schema_fields: list[str],
    unit_uri: str,
    unit_id: str,
) -> Iterator[Record | Rejected | Failed]:
    """Records of one study. `images`: dicts with image_id, uri (None = no image known),
    missing (bool), view_position, view_description, split; loaded here, one at a time.

    Dead letters of images come first, then the image records (image mode) or the study
    record and the rejects of the burned-in images it left out (study mode)."""
    study = _Study(base, text, options, schema_fields)
    splits: set[str] = {str(image["split"]) for image in images if image.get("split")}
    if options.record_mode == "study" and len(splits) > 1:
        # checked before anything is yielded: the whole study is one dead letter
        raise MalformedMetadata(f"study {base['study_id']} has images in splits {sorted(splits)}")
    loaded = yield from _load_images(study, images, unit_uri=unit_uri, unit_id=unit_id)
    if options.record_mode == "image":
        yield from _image_records(study, loaded, has_images=bool(images))
    else:
        yield from _study_records(study, loaded, splits)


def _load_images(
    study: _Study, images: list[dict[str, Any]], *, unit_uri: str, unit_id: str
) -> Generator[Rejected | Failed, None, Loaded]:
    """Load the images one at a time. Yields a dead letter for each missing or unreadable
    image and, in image mode, a text-only reject for each image the source has no folder for;
    returns the images that loaded, with their columns."""
    loaded: Loaded = []
    for image in images:
        record_id = study.image_record_id(image["image_id"])
        if image.get("missing"):
            exc: Exception = MissingFile(f"metadata names {image['uri']}, which does not exist")
            yield Failed.from_exception(
                exc,
                stage="read",
                source_uri=image["uri"] or unit_uri,
                unit_id=unit_id,
                record_id=record_id,
            )
            continue
        if image.get("uri") is None:  # the source has no image folder: text-only reject
            if study.options.record_mode == "image":
                yield _text_only_reject(study, image, record_id)
            continue
        try:
            columns = load_image(image["uri"], study.options)
        except Exception as exc:  # noqa: BLE001 - one bad image is one dead letter
            yield Failed.from_exception(
                exc, stage="read", source_uri=image["uri"], unit_id=unit_id, record_id=record_id
            )
            continue
        loaded.append((image, columns))
    return loaded


def _text_only_reject(study: _Study, image: dict[str, Any], record_id: str) -> Rejected:
    """An image row without pixels to read: the text stays available among the rejects."""
    record = study.blank()
    record.update(
        record_mode="image",
        record_id=record_id,
        image_id=image["image_id"],
        view_position=image.get("view_position"),
        view_description=image.get("view_description"),
        split=image.get("split") or study.base.get("split"),
        image_count=0,
    )
    return Rejected(record=record, reason="image_missing", stage="read")


def _image_records(study: _Study, loaded: Loaded, has_images: bool) -> Iterator[Record | Rejected]:
    """Image mode: one record per loaded image; a study without image rows is one reject."""
    for image, columns in loaded:
        yield _image_record(study, image, columns)
    if not has_images:
        record = study.blank()
        record.update(record_mode="image", record_id=study.record_id(), image_count=0)
        yield Rejected(record=record, reason="image_missing", stage="read")


def _image_record(
    study: _Study, image: dict[str, Any], columns: dict[str, Any]
) -> Record | Rejected:
    """The record of one loaded image, or its reject when the pixels carry burned-in PHI."""
    record = study.blank()
    dicom_view = columns.pop("dicom_view_position", None)
    record.update(columns)
    record.update(
        record_mode="image",
        record_id=study.image_record_id(image["image_id"]),
        image_id=image["image_id"],
        view_position=image.get("view_position") or dicom_view,
        view_description=image.get("view_description"),
        split=image.get("split") or study.base.get("split"),
        image_count=1,
    )
    if study.rejects_burned_in(record["burned_in_annotation"]):
        record["image"] = None  # never copy pixels with burned-in PHI into the rejects
        return Rejected(record=record, reason="burned_in_annotation", stage="read")
    return record


def _image_structs(
    study: _Study, loaded: Loaded
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The `images` entries of a study record, frontal views first: (kept, burned-in)."""
    kept: list[dict[str, Any]] = []
    burned: list[dict[str, Any]] = []
    for image, columns in sorted(
        loaded,
        key=lambda p: (
            view_rank(p[0].get("view_position") or p[1].get("dicom_view_position")),
            p[0]["image_id"],
        ),
    ):
        struct = {k: columns[k] for k in STRUCT_IMAGE_COLUMNS}
        struct["image_id"] = image["image_id"]
        struct["view_position"] = image.get("view_position") or columns.get("dicom_view_position")
        struct["view_description"] = image.get("view_description")
        keep = not study.rejects_burned_in(columns["burned_in_annotation"])
        (kept if keep else burned).append(struct)
    return kept, burned


def _study_records(study: _Study, loaded: Loaded, splits: set[str]) -> Iterator[Record | Rejected]:
    """Study mode: one record holding the kept images (or one reject when none is kept),
    then a reject for each burned-in image a kept study record left out."""
    kept, burned = _image_structs(study, loaded)
    record = study.blank()
    record.update(
        record_mode="study",
        record_id=study.record_id(),
        images=kept,
        image_count=len(kept),
        split=next(iter(splits)) if splits else study.base.get("split"),
    )
    if kept:
        yield record
    elif burned:
        record["images"] = None
        yield Rejected(record=record, reason="burned_in_annotation", stage="read")
    else:
        # every image failed (each is already a dead letter) or the study has none
        record["images"] = None
        yield Rejected(record=record, reason="image_missing", stage="read")
    if burned and kept:
        for struct in burned:
            yield _burned_in_reject(study, struct)


def _burned_in_reject(study: _Study, struct: dict[str, Any]) -> Rejected:
    """Accounts for one burned-in image a study record left out (without its pixels)."""
    reject = study.blank()
    reject.update(
        record_mode="image",
        record_id=study.image_record_id(struct["image_id"]),
        image_id=struct["image_id"],
        view_position=struct["view_position"],
        image_count=1,
        burned_in_annotation="YES",
        **{k: v for k, v in struct.items() if k not in ("image", "image_id", "view_position")},
    )
    return Rejected(record=reject, reason="burned_in_annotation", stage="read")
