"""CT-RATE-style source: 3D CT volumes (NIfTI files or DICOM series folders) + a report CSV.

Layout (CT-RATE on Hugging Face, or any folder like it):

    <path>/**/train_<patient>_<scan>_<reconstruction>.nii.gz   one unit per volume
    <path>/**/<series folder>/*.dcm                             one unit per folder, one record
                                                                per SeriesInstanceUID in it
    reports CSV   VolumeName, Findings_EN, Impressions_EN[, ClinicalInformation_EN, Technique_EN]
    metadata CSV  (optional) VolumeName, RescaleSlope, RescaleIntercept: CT-RATE's NIfTI files
                  hold stored values; CT-CLIP applies slope/intercept from this file to get HU.

Pairing: a volume's name is its file name without `.nii[.gz]`, a series' name is its folder
name; the report row with that VolumeName is its text. No row -> `Rejected` `report_missing`
(before any voxel is read) unless `require_report` is off. CT-RATE names give the patient-level
group key `subject_id = <split>_<patient>` (all scans and reconstructions of one patient stay in
one split); DICOM series use a salted hash of PatientID, never the ID itself.
"""

from __future__ import annotations

import csv
import io
import json
import posixpath
import re
from collections.abc import Iterator
from typing import Any

from pydantic import Field

from curate import fs
from curate.errors import EmptyInput, InputError, MalformedMetadata, NotUTF8
from curate.parse.volume import SeriesOptions, VolumePreprocessOptions
from curate.sources.base import Source, SourceOptions, Unit, register_source, safe_unit_id
from curate.stages import Failed, Record, Rejected

NIFTI_SUFFIXES = (".nii.gz", ".nii")
DICOM_SUFFIXES = (".dcm", ".dcm.gz", ".dicom")
CT_RATE_NAME = re.compile(r"^(train|valid)_(\d+)_([a-z]+)_(\d+)$")
SOURCE_SPLITS = {"train": "train", "valid": "validation"}
REPORT_COLUMNS = (
    ("ClinicalInformation_EN", "CLINICAL INFORMATION"),
    ("Technique_EN", "TECHNIQUE"),
    ("Findings_EN", "FINDINGS"),
    ("Impressions_EN", "IMPRESSION"),
)


class CtRateOptions(SourceOptions):
    dataset: str = Field("ct_rate", description="dataset name written into every record")
    reports_csv: str | None = Field(
        None,
        description="report CSV (absolute, or relative to the source path); default: the "
        "only *reports*.csv below the path",
    )
    metadata_csv: str | None = Field(
        None, description="optional CT-RATE metadata CSV with RescaleSlope/RescaleIntercept"
    )
    require_report: bool = Field(
        True, description="reject volumes without a report row (report_missing)"
    )
    modality: str | None = Field(
        None,
        description="modality of NIfTI volumes (DICOM gives its own); None reads it from the file "
        "name (curation_rules/volume_modality.v1.yaml), else leaves it null",
    )
    volume_index: int | None = Field(
        None, description="4D NIfTI: which volume to take; None rejects 4D inputs"
    )
    uid_salt: str | None = Field(
        None, description="salt for UID/patient hashes; else $CURATE_UID_SALT"
    )
    pseudonymise_paths: bool = Field(
        True,
        description="replace file and folder names in ids (volume_name, record_id, unit_id) and "
        "URIs by salted pseudonyms; turn off for CT-RATE itself, whose names are public ids",
    )
    reject_burned_in_annotation: bool = Field(
        True,
        description="reject DICOM series with a slice whose BurnedInAnnotation is YES (PHI in "
        "pixels), as the 2D radiology sources do",
    )
    preprocess: VolumePreprocessOptions = Field(default_factory=VolumePreprocessOptions)
    series: SeriesOptions = Field(default_factory=SeriesOptions)


def read_csv_table(uri: str, key: str) -> dict[str, dict[str, str]]:
    """A CSV as {row[key]: row}; loud on bad encoding, missing key column or duplicate keys."""
    data = fs.read_bytes(uri)
    if not data.strip():
        raise EmptyInput(f"{uri} is empty")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise NotUTF8(f"{uri} is not UTF-8 (offset {exc.start})") from exc
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        if key not in (reader.fieldnames or []):
            raise MalformedMetadata(f"{uri}: no {key} column; found {reader.fieldnames}")
        table: dict[str, dict[str, str]] = {}
        for line, row in enumerate(reader, start=2):
            if None in row:
                raise MalformedMetadata(f"{uri}:{line}: more values than columns")
            name = _strip_suffix((row.get(key) or "").strip())
            if name in table:
                raise MalformedMetadata(f"{uri}:{line}: {key} {name!r} appears twice")
            table[name] = {k: (v or "").strip() for k, v in row.items()}
        return table
    except csv.Error as exc:
        raise MalformedMetadata(f"{uri}: {exc}") from exc


def _strip_suffix(name: str) -> str:
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def volume_identity(volume_name: str) -> tuple[str, str | None]:
    """(subject_id, source split) from a CT-RATE volume name; other names are their own subject."""
    match = CT_RATE_NAME.match(volume_name)
    if not match:
        return volume_name, None
    return f"{match[1]}_{match[2]}", SOURCE_SPLITS[match[1]]


def report_fields(row: dict[str, str] | None) -> dict[str, Any]:
    if row is None:
        return {"findings": None, "impression": None, "report_text": None}
    parts = [f"{title}: {row[col]}" for col, title in REPORT_COLUMNS if row.get(col)]
    return {
        "findings": row.get("Findings_EN") or None,
        "impression": row.get("Impressions_EN") or None,
        "report_text": "\n".join(parts) or None,
    }


def _burned_in(items: list[tuple[Any, Any]]) -> bool:
    """Whether any slice of a series says its pixels carry burned-in text."""
    return any(str(ds.get("BurnedInAnnotation", "") or "").upper() == "YES" for _, ds in items)


@register_source
class CtRateSource(Source):
    kind = "ct_rate"
    schema_ref = "volume.v1"
    options_model = CtRateOptions
    group_field = "subject_id"

    options: CtRateOptions

    def _resolve(self, value: str) -> str:
        return (
            value
            if (not fs.is_local(value) or value.startswith("/"))
            else fs.join(self.path, value)
        )

    def _reports_uri(self, files: list[str]) -> str | None:
        if self.options.reports_csv:
            return self._resolve(self.options.reports_csv)
        found = [
            f
            for f in files
            if f.lower().endswith(".csv") and "report" in posixpath.basename(f).lower()
        ]
        if len(found) > 1:
            raise MalformedMetadata(
                f"several report CSVs below {self.path}: {found}; set reports_csv"
            )
        return found[0] if found else None

    def discover(self) -> Iterator[Unit]:
        files = list(fs.walk_files(self.path))
        reports_uri = self._reports_uri(files)
        reports = read_csv_table(reports_uri, "VolumeName") if reports_uri else {}
        meta_rows = (
            read_csv_table(self._resolve(self.options.metadata_csv), "VolumeName")
            if self.options.metadata_csv
            else {}
        )
        series_dirs: dict[str, list[str]] = {}
        for uri in files:
            lower = uri.lower()
            if lower.endswith(NIFTI_SUFFIXES):
                raw = _strip_suffix(posixpath.basename(uri.replace("\\", "/")))
                name = self.public_name(raw, "v-")
                yield Unit(
                    unit_id=safe_unit_id(f"{self.options.dataset}/{name}"),
                    uri=uri,
                    kind=self.kind,
                    meta={
                        "format": "nifti",
                        "volume_name": name,
                        "report": reports.get(raw),
                        "rescale": _rescale(meta_rows.get(raw)),
                    },
                )
            elif lower.endswith(DICOM_SUFFIXES):
                folder = uri.replace("\\", "/").rsplit("/", 1)[0]
                series_dirs.setdefault(folder, []).append(uri)
        for folder, members in sorted(series_dirs.items()):
            raw = posixpath.basename(folder)
            name = self.public_name(raw, "v-")
            yield Unit(
                unit_id=safe_unit_id(f"{self.options.dataset}/{name}"),
                uri=folder,
                kind=self.kind,
                meta={
                    "format": "dicom_series",
                    "volume_name": name,
                    "files": sorted(members),
                    "report": reports.get(raw),
                },
            )

    # ------------------------------------------------------------------------- read ----

    def _base(self, unit: Unit, volume_name: str) -> Record:
        report = unit.meta.get("report")
        return {
            "record_id": f"{self.options.dataset}/{volume_name}",
            "unit_id": unit.unit_id,
            "source_uri": unit.uri,
            "source_format": unit.meta["format"],
            "dataset": self.options.dataset,
            "volume_name": volume_name,
            "entities": None,
            "split": None,
            **report_fields(report),
        }

    def read(self, unit: Unit) -> Iterator[Record | Rejected | Failed]:
        if unit.meta["format"] == "nifti":
            yield from self._read_nifti(unit)
        else:
            yield from self._read_series(unit)

    def _missing_report(self, unit: Unit) -> bool:
        return self.options.require_report and unit.meta.get("report") is None

    def _read_nifti(self, unit: Unit) -> Iterator[Record | Rejected]:
        from curate.enrich.modality import volume_modality
        from curate.parse.volume import Volume, load_nifti

        name = unit.meta["volume_name"]
        subject_id, source_split = volume_identity(name)
        record = self._base(unit, name)
        record.update(
            subject_id=subject_id,
            source_split=source_split,
            series_uid_hash=None,
            modality=volume_modality(
                declared=self.options.modality, file_name=posixpath.basename(unit.uri)
            )[0],
            metadata_json=None,
        )
        if self._missing_report(unit):
            yield Rejected(_without_array(record), "report_missing")
            return
        volume = load_nifti(
            fs.read_bytes(unit.uri), name=unit.uri, volume_index=self.options.volume_index
        )
        rescale = unit.meta.get("rescale")
        if rescale:
            slope, intercept = rescale
            volume = Volume(volume.array * slope + intercept, volume.affine, volume.metadata)
            record["metadata_json"] = json.dumps(
                {"rescale_slope": slope, "rescale_intercept": intercept}
            )
        record.update(self._prepared_columns(volume))
        yield record

    def _read_series(self, unit: Unit) -> Iterator[Record | Rejected | Failed]:
        from curate.parse.deid import option_salt, pseudonym
        from curate.parse.volume import group_by_series, read_series_datasets, volume_from_series

        files = [(uri, fs.read_bytes(uri)) for uri in unit.meta["files"]]
        parsed, failed = read_series_datasets(files)
        for uri, exc in failed:
            yield Failed.from_exception(exc, stage="read", source_uri=uri, unit_id=unit.unit_id)
        groups = group_by_series(parsed)
        if not groups:
            return
        salt = option_salt(self.options.uid_salt)
        for index, (_, items) in enumerate(sorted(groups.items())):
            name = (
                unit.meta["volume_name"]
                if len(groups) == 1
                else f"{unit.meta['volume_name']}_{index}"
            )
            record = self._base(unit, name)
            patient = str(items[0][1].get("PatientID", "") or "")
            record.update(
                subject_id=pseudonym(patient, salt, "p-")
                if patient
                else pseudonym(unit.uri, salt, "series-"),
                source_split=None,
                series_uid_hash=None,
                modality=None,
                metadata_json=None,
            )
            if self._missing_report(unit):
                yield Rejected(_without_array(record), "report_missing")
                continue
            if self.options.reject_burned_in_annotation and _burned_in(items):
                yield Rejected(_without_array(record), "burned_in_annotation")
                continue
            try:
                volume = volume_from_series(items, options=self.options.series, uid_salt=salt)
            except InputError as exc:
                yield Failed.from_exception(
                    exc,
                    stage="read",
                    source_uri=unit.uri,
                    unit_id=unit.unit_id,
                    record_id=record["record_id"],
                )
                continue
            record.update(
                series_uid_hash=volume.metadata.get("series_uid_hash"),
                modality=volume.metadata.get("modality"),
                metadata_json=json.dumps(volume.metadata, sort_keys=True),
            )
            record.update(self._prepared_columns(volume))
            yield record

    def _prepared_columns(self, volume: Any) -> dict[str, Any]:
        from curate.parse.volume import preprocess, volume_columns

        return volume_columns(preprocess(volume, self.options.preprocess))


def _rescale(row: dict[str, str] | None) -> list[float] | None:
    if not row or not row.get("RescaleSlope") or not row.get("RescaleIntercept"):
        return None
    try:
        return [float(row["RescaleSlope"]), float(row["RescaleIntercept"])]
    except ValueError as exc:
        raise MalformedMetadata(
            f"metadata row {row.get('VolumeName')}: bad rescale ({exc})"
        ) from exc


def _without_array(record: Record) -> Record:
    """A reject keeps ids and text; array columns stay empty (no voxels were read)."""
    return {
        **record,
        "array": None,
        "array_format": None,
        "dtype": None,
        "shape": None,
        "spacing": None,
        "orientation": None,
        "affine": None,
        "original_spacing": None,
        "original_shape": None,
        "intensity_window": None,
    }
