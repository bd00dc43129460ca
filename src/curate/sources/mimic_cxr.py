"""MIMIC-CXR (DICOM) and MIMIC-CXR-JPG: one unit per study, report sections paired with images.

Layout (PhysioNet): `files/pXX/p<subject>/s<study>/<dicom_id>.dcm` (or `.jpg` for MIMIC-CXR-JPG)
and reports `files/pXX/p<subject>/s<study>.txt` (from mimic-cxr-reports.zip; `reports_root`
points elsewhere when they are unpacked apart). Optional CSVs, plain or gzip'd, looked up under
`path` by their PhysioNet names unless given:
  metadata  mimic-cxr-2.0.0-metadata.csv[.gz]  dicom_id, subject_id, study_id, ViewPosition, ...
  split     mimic-cxr-2.0.0-split.csv[.gz]     dicom_id, study_id, subject_id, split
  labels    mimic-cxr-2.0.0-chexpert.csv[.gz]  subject_id, study_id + 14 observations
The official split presets `record['split']` (`validate` -> `validation`); the engine keeps it.
Studies come from the union of the metadata rows, the report files and the image folders, so a
report without images, images without a report and metadata rows without files are all
accounted for (see `curate.sources.radiology` for which becomes what). `record_mode: report`
gives one kept text-only record per report, images not read (`curate.sources.report_only`); a
study without a report is still a `missing_file` error.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field

from curate import fs
from curate.errors import MissingFile
from curate.parse.reports import load_lexicon, parse_report_bytes
from curate.schema import load_schema
from curate.sources.base import Source, Unit, register_source, safe_unit_id
from curate.sources.radiology import (
    RadiologyOptions,
    TextFields,
    assemble,
    image_stem,
    is_dicom_path,
    is_image_path,
    label_structs,
    normalise_split,
    read_csv_rows,
    read_text_file,
)
from curate.sources.report_only import (
    RECORD_MODE_HELP,
    REPORT_MODE,
    RecordMode,
    report_record,
)
from curate.stages import Failed, Record, Rejected

_REPORT = re.compile(r"(?:^|/)p\d+/p(\d+)/s(\d+)\.txt$")
_IMAGE = re.compile(r"(?:^|/)p\d+/p(\d+)/s(\d+)/([^/]+)$")
_DEFAULT_NAMES = {
    "metadata": "mimic-cxr-2.0.0-metadata.csv",
    "split": "mimic-cxr-2.0.0-split.csv",
    "labels": "mimic-cxr-2.0.0-chexpert.csv",
}
_ID_COLUMNS = ("subject_id", "study_id")


class MimicCxrOptions(RadiologyOptions):
    record_mode: RecordMode = Field("image", description=RECORD_MODE_HELP)  # type: ignore[assignment]
    reports_root: str | None = Field(
        None, description="folder holding files/pXX/p<subject>/s<study>.txt; default: `path`"
    )
    metadata_csv: str | None = Field(
        "auto", description="metadata CSV; auto: PhysioNet name under path; null: none"
    )
    split_csv: str | None = Field(
        "auto", description="official split CSV; auto: PhysioNet name under path; null: none"
    )
    labels_csv: str | None = Field(
        "auto",
        description="CheXpert or NegBio label CSV; auto: the CheXpert file under path; null: none",
    )
    image_format: Literal["auto", "dicom", "jpg"] = Field(
        "auto", description="which image files to pair: auto prefers DICOM when a study has both"
    )


def _subject_prefix(subject_id: str) -> str:
    return f"p{subject_id[:2]}"


def _strip_prefix(value: str, prefix: str) -> str:
    value = value.strip()
    return value[1:] if value[:1].lower() == prefix and value[1:].isdigit() else value


@register_source
class MimicCxrSource(Source):
    kind = "mimic_cxr"
    schema_ref = "report_image.v1"
    options_model = MimicCxrOptions
    group_field = "subject_id"
    deidentified_upstream = True  # PhysioNet de-identified the reports (`___`) and DICOM

    options: MimicCxrOptions

    # ---- discovery ----

    def _files_root(self, base: str) -> str:
        candidate = fs.join(base, "files")
        return candidate if fs.exists(candidate) else base

    def _resolve_csv(self, value: str | None, key: str) -> str | None:
        if value is None:
            return None
        if value != "auto":
            path = (
                value if (posixpath.isabs(value) or "://" in value) else fs.join(self.path, value)
            )
            if not fs.exists(path):
                raise MissingFile(f"{key} CSV {path} does not exist")
            return path
        for name in (_DEFAULT_NAMES[key], _DEFAULT_NAMES[key] + ".gz"):
            path = fs.join(self.path, name)
            if fs.exists(path):
                return path
        return None

    def discover(self) -> Iterator[Unit]:
        opts = self.options
        files_root = self._files_root(self.path)
        reports_root = self._files_root(opts.reports_root) if opts.reports_root else files_root

        reports: dict[tuple[str, str], str] = {}
        files: dict[tuple[str, str], dict[str, list[str]]] = {}
        for uri in fs.walk_files(files_root):
            rel = uri[len(files_root) :].replace("\\", "/")
            if match := _REPORT.search(rel):
                reports[(match[1], match[2])] = uri
            elif (match := _IMAGE.search(rel)) and is_image_path(uri):
                files.setdefault((match[1], match[2]), {}).setdefault(image_stem(uri), []).append(
                    uri
                )
        if reports_root != files_root:
            for uri in fs.walk_files(reports_root):
                rel = uri[len(reports_root) :].replace("\\", "/")
                if match := _REPORT.search(rel):
                    reports[(match[1], match[2])] = uri

        any_dicom = any(
            is_dicom_path(u) for study in files.values() for us in study.values() for u in us
        )
        rows_by_study: dict[tuple[str, str], list[dict[str, str]]] = {}
        if metadata_uri := self._resolve_csv(opts.metadata_csv, "metadata"):
            for row in read_csv_rows(metadata_uri, ("dicom_id", *_ID_COLUMNS)):
                key = (_strip_prefix(row["subject_id"], "p"), _strip_prefix(row["study_id"], "s"))
                rows_by_study.setdefault(key, []).append(row)

        splits: dict[str, str | None] = {}
        study_splits: dict[tuple[str, str], str | None] = {}
        if split_uri := self._resolve_csv(opts.split_csv, "split"):
            for row in read_csv_rows(split_uri, ("dicom_id", *_ID_COLUMNS, "split")):
                value = normalise_split(row["split"], split_uri)
                splits[row["dicom_id"]] = value
                key = (_strip_prefix(row["subject_id"], "p"), _strip_prefix(row["study_id"], "s"))
                study_splits.setdefault(key, value)

        labels: dict[tuple[str, str], list[dict[str, str]]] = {}
        label_source = None
        if labels_uri := self._resolve_csv(opts.labels_csv, "labels"):
            rows = read_csv_rows(labels_uri, _ID_COLUMNS)
            name = posixpath.basename(labels_uri).lower()
            label_source = (
                "negbio" if "negbio" in name else "chexpert" if "chexpert" in name else name
            )
            if rows:
                observations = [c for c in rows[0] if c not in _ID_COLUMNS]
                for row in rows:
                    key = (
                        _strip_prefix(row["subject_id"], "p"),
                        _strip_prefix(row["study_id"], "s"),
                    )
                    labels[key] = label_structs(row, observations, labels_uri)

        keys = sorted(
            set(reports) | set(files) | set(rows_by_study),
            key=lambda k: (
                int(k[0]) if k[0].isdigit() else 0,
                k[0],
                int(k[1]) if k[1].isdigit() else 0,
                k[1],
            ),
        )
        for subject, study in keys:
            study_dir = fs.join(files_root, _subject_prefix(subject), f"p{subject}", f"s{study}")
            on_disk = files.get((subject, study), {})
            images: list[dict[str, Any]] = []
            listed: set[str] = set()
            for row in rows_by_study.get((subject, study), []):
                dicom_id = row["dicom_id"]
                listed.add(dicom_id)
                image_uri = self._pick(on_disk.get(dicom_id, []))
                if image_uri is None and not files:
                    missing = False  # reports-only download: text-only rejects, not failures
                elif image_uri is None:
                    image_uri = fs.join(
                        study_dir, dicom_id + self._expected_extension(on_disk, any_dicom)
                    )
                    missing = True
                else:
                    missing = False
                images.append(
                    {
                        "image_id": dicom_id,
                        "uri": image_uri,
                        "missing": missing,
                        "view_position": row.get("ViewPosition") or None,
                        "view_description": row.get("ViewCodeSequence_CodeMeaning") or None,
                        "procedure": row.get("PerformedProcedureStepDescription") or None,
                        "study_date": row.get("StudyDate") or None,
                        "split": splits.get(dicom_id),
                    }
                )
            for stem in sorted(set(on_disk) - listed):
                extra = self._pick(on_disk[stem])
                if extra is not None:
                    images.append(
                        {
                            "image_id": stem,
                            "uri": extra,
                            "missing": False,
                            "split": splits.get(stem),
                        }
                    )
            report_uri = reports.get((subject, study))
            yield Unit(
                unit_id=safe_unit_id(f"mimic_cxr/p{subject}/s{study}"),
                uri=report_uri or study_dir,
                kind=self.kind,
                meta={
                    "subject_id": subject,
                    "study_id": study,
                    "report_uri": report_uri,
                    "images": images,
                    "labels": labels.get((subject, study)),
                    "label_source": label_source if (subject, study) in labels else None,
                    "split": study_splits.get((subject, study)),
                },
            )

    def _expected_extension(self, on_disk: dict[str, list[str]], any_dicom: bool) -> str:
        """Extension to name a missing file by: what its study (else the tree) holds."""
        if self.options.image_format != "auto":
            return ".jpg" if self.options.image_format == "jpg" else ".dcm"
        present = [u for uris in on_disk.values() for u in uris]
        if present:
            return ".dcm" if any(is_dicom_path(u) for u in present) else ".jpg"
        return ".dcm" if any_dicom else ".jpg"

    def _pick(self, uris: list[str]) -> str | None:
        fmt = self.options.image_format
        dicoms = sorted(u for u in uris if is_dicom_path(u))
        rasters = sorted(u for u in uris if not is_dicom_path(u))
        if fmt == "dicom":
            return dicoms[0] if dicoms else None
        if fmt == "jpg":
            return rasters[0] if rasters else None
        candidates = dicoms or rasters
        return candidates[0] if candidates else None

    # ---- reading ----

    def read(self, unit: Unit) -> Iterator[Record | Rejected | Failed]:
        meta = unit.meta
        report_uri = meta.get("report_uri")
        if not report_uri:
            raise MissingFile(
                f"study s{meta['study_id']} of p{meta['subject_id']} has no report file "
                f"({len(meta['images'])} image(s) not used)"
            )
        parsed = parse_report_bytes(
            read_text_file(report_uri), load_lexicon(self.options.section_lexicon)
        )
        text = TextFields(self.kind, self.options, self.deidentified_upstream).fields(parsed)
        first = meta["images"][0] if meta["images"] else {}
        base = {
            "unit_id": unit.unit_id,
            "source_uri": report_uri,
            "dataset": self.kind,
            "subject_id": meta["subject_id"],
            "study_id": meta["study_id"],
            "procedure": first.get("procedure"),
            "study_date": first.get("study_date"),
            "labels": meta.get("labels"),
            "label_source": meta.get("label_source"),
            "split": meta.get("split"),
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
