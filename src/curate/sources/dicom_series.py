"""A plain folder of DICOM series (any layout) and NIfTI volumes -> `volume.v2`, no report needed.

What a hospital PACS export or a public archive gives: files in any folder layout (by patient,
by study, flat, names without extension like `IM000001`), several series per folder or one
series across folders, classic slices, enhanced multi-frame objects and Siemens MOSAICs.

Discovery reads each file's header (a prefix of the file when that holds it) and groups DICOM
files by SeriesInstanceUID: one unit per series, one record per 3D volume in it (a 4D series
gives one record per time point / echo / stack; `volume_index` says which). NIfTI files are
one unit each. Files that are not DICOM are listed as skipped (`not_dicom`), a DICOMDIR as
`dicomdir_index`; a `.dcm` file whose header does not parse is a unit that fails with the
parser's named error. Ids come from salted hashes of the SeriesInstanceUID, never from paths;
NIfTI names and folder-keyed groups go through `public_name` (pseudonyms unless
`pseudonymise_paths` is off). A series with a BurnedInAnnotation YES slice is rejected
(`burned_in_annotation`) without its pixels.

Preprocessing starts from a preset (`native`: the acquired grid and values; `ct_clip`:
CT-CLIP's recipe), single values overridden by `preprocess`. Modality: the DICOM header, else
the spec's `modality`, else the NIfTI file name (`curation_rules/volume_modality.v1.yaml`).
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field

from curate import fs
from curate.errors import InputError, NotDicom
from curate.parse.series_geometry import SeriesOptions
from curate.sources.base import Source, SourceOptions, Unit, register_source, safe_unit_id
from curate.stages import Failed, Record, Rejected

NIFTI_SUFFIXES = (".nii.gz", ".nii")
DICOM_SUFFIXES = (".dcm", ".dcm.gz", ".dicom", ".ima")
# Files next to DICOM in exports that are certainly not DICOM: not even tried.
OTHER_SUFFIXES = (".txt", ".csv", ".json", ".xml", ".md", ".html", ".pdf", ".jpg", ".png", ".zip")
HEADER_PREFIX_BYTES = 64 << 10  # holds a CT/MR header; larger ones are read whole
# Series that are valid DICOM but hold no 3D volume: rejected with the reason, not errors
# (an export holds many scouts and key images; they must not count toward max_error_fraction).
NOT_A_VOLUME = {"too_few_slices"}
DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
# Objects exports file beside the images that hold no image (reports, presentation states,
# key-object notes, RT plans/structures): listed as skipped, not counted as errors.
NON_IMAGE_MODALITIES = {"SR", "PR", "KO", "DOC", "RTPLAN", "RTSTRUCT", "RTRECORD", "REG", "FID"}
ARRAY_COLUMNS = (
    "array",
    "array_format",
    "dtype",
    "shape",
    "spacing",
    "orientation",
    "affine",
    "original_spacing",
    "original_shape",
    "intensity_window",
    "padding_fraction",
    "preprocess_warnings",
    "image_sha256",
)


class DicomSeriesOptions(SourceOptions):
    dataset: str = Field("dicom_series", description="dataset name written into every record")
    uid_salt: str | None = Field(
        None,
        description="salt for UID/patient hashes: demo, env:NAME, file:PATH; else $CURATE_UID_SALT",
    )
    pseudonymise_paths: bool = Field(
        True,
        description="replace file and folder names in ids and URIs by salted pseudonyms "
        "(hospital exports name folders after patients)",
    )
    reject_burned_in_annotation: bool = Field(
        True, description="reject series with a slice whose BurnedInAnnotation is YES"
    )
    preset: Literal["native", "ct_clip"] = Field(
        "native", description="preprocessing preset (curation_rules/volume_presets.v1.yaml)"
    )
    preprocess: dict[str, Any] = Field(
        default_factory=dict,
        description="single preprocessing values overriding the preset (target_spacing, "
        "intensity_window, target_shape, pad_value, store_dtype, max_padding_fraction)",
    )
    series: SeriesOptions = Field(
        default_factory=lambda: SeriesOptions(gantry_tilt="resample"),
        description="series tolerances; gantry_tilt: resample (default here) or refuse",
    )
    modality: str | None = Field(
        None, description="modality of NIfTI volumes; None reads it from the file name"
    )
    volume_index: int | None = Field(
        None, description="4D NIfTI: which volume to take; None rejects 4D inputs"
    )


def _header(uri: str) -> Any:
    """The file's DICOM header without pixel data; reads a prefix first, the file if needed."""
    from curate.parse.dicom import read_dataset

    data = fs.read_bytes(uri, limit=HEADER_PREFIX_BYTES)
    if len(data) == HEADER_PREFIX_BYTES and data[:2] != b"\x1f\x8b":
        try:
            ds, _ = read_dataset(data, stop_before_pixels=True)
            if "SeriesInstanceUID" in ds:  # (0020,000E): what grouping needs was read
                return ds
        except InputError:
            pass  # the header runs past the prefix (large per-frame groups): read it all
        data = fs.read_bytes(uri)
    ds, _ = read_dataset(data, stop_before_pixels=True)
    return ds


def _looks_like_dicom(uri: str) -> bool:
    lower = uri.lower()
    if lower.endswith(DICOM_SUFFIXES):
        return True
    head = fs.read_bytes(uri, limit=132)
    return len(head) >= 132 and head[128:132] == b"DICM"


def _burned_in(items: list[tuple[str, Any]]) -> bool:
    return any(str(ds.get("BurnedInAnnotation", "") or "").upper() == "YES" for _, ds in items)


def array_digest(array: Any) -> str:
    """sha256 over dtype, shape and the little-endian bytes: equal arrays, equal digests."""
    import numpy as np

    data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    head = f"{data.dtype.str}{list(data.shape)}".encode()
    return hashlib.sha256(head + data.tobytes()).hexdigest()


@register_source
class DicomSeriesSource(Source):
    kind = "dicom_series"
    schema_ref = "volume.v2"
    options_model = DicomSeriesOptions
    group_field = "subject_id"

    options: DicomSeriesOptions

    # ------------------------------------------------------------------- discovery ----

    def _salt(self) -> str:
        from curate.parse.deid import option_salt

        return option_salt(self.options.uid_salt)

    def discover(self) -> Iterator[Unit]:
        salt = self._salt()
        root = self.path.rstrip("/")
        series: dict[str, list[str]] = {}
        for uri in fs.walk_files(root):
            lower = uri.lower()
            rel = uri[len(root) :].lstrip("/\\").replace("\\", "/")
            if lower.endswith(NIFTI_SUFFIXES):
                name = self.public_name(_strip_nifti(posixpath.basename(rel)), "v-")
                yield self._unit(name, uri, {"format": "nifti", "volume_name": name})
                continue
            if lower.endswith(OTHER_SUFFIXES):
                yield self._unit(self.public_name(rel, "f-"), uri, {}, skip="not_dicom")
                continue
            try:
                ds = _header(uri)
            except InputError as exc:
                if _looks_like_dicom(uri):  # a broken DICOM file: its error is an output
                    name = self.public_name(rel, "f-")
                    yield self._unit(name, uri, {"format": "unreadable", "error": exc.reason})
                else:
                    yield self._unit(self.public_name(rel, "f-"), uri, {}, skip="not_dicom")
                continue
            if str(ds.get("SOPClassUID", "") or "") == DICOMDIR_SOP_CLASS or (
                "DirectoryRecordSequence" in ds
            ):
                yield self._unit(self.public_name(rel, "f-"), uri, {}, skip="dicomdir_index")
                continue
            if str(ds.get("Modality", "") or "").strip().upper() in NON_IMAGE_MODALITIES:
                yield self._unit(self.public_name(rel, "f-"), uri, {}, skip="not_an_image")
                continue
            uid = str(ds.get("SeriesInstanceUID", "") or "").strip()
            key = f"uid:{uid}" if uid else f"folder:{posixpath.dirname(rel)}"
            series.setdefault(key, []).append(uri)
        for key, files in sorted(series.items()):
            kind, _, value = key.partition(":")
            if kind == "uid":
                from curate.parse.deid import pseudonym

                name = pseudonym(value, salt, "s-")
            else:
                name = self.public_name(value or ".", "d-")
            folder = _common_folder(files)
            yield self._unit(
                name,
                folder,
                {"format": "dicom_series", "volume_name": name, "files": sorted(files)},
            )

    def _unit(self, name: str, uri: str, meta: dict[str, Any], skip: str | None = None) -> Unit:
        return Unit(
            unit_id=safe_unit_id(f"{self.options.dataset}/{name}"),
            uri=uri,
            kind=self.kind,
            meta=meta,
            skip_reason=skip,
        )

    # ------------------------------------------------------------------------ read ----

    def read(self, unit: Unit) -> Iterator[Record | Rejected | Failed]:
        fmt = unit.meta.get("format")
        if fmt == "nifti":
            yield from self._read_nifti(unit)
        elif fmt == "dicom_series":
            yield from self._read_series(unit)
        else:  # a file discovery could not parse: its named error, read again
            from curate.parse.dicom import read_dataset

            read_dataset(fs.read_bytes(unit.uri), stop_before_pixels=True)
            raise NotDicom(f"{unit.uri}: header unreadable at discovery ({unit.meta.get('error')})")

    def _preprocess_options(self) -> Any:
        from curate.parse.volume_preprocess import VolumePreprocessOptions, preset

        base = preset(self.options.preset).model_dump()
        return VolumePreprocessOptions(**{**base, **self.options.preprocess})

    def _base(self, unit: Unit, name: str) -> Record:
        from curate.schema import load_schema

        record: Record = dict.fromkeys(load_schema(self.schema_ref).field_names)
        record.update(
            record_id=f"{self.options.dataset}/{name}",
            unit_id=unit.unit_id,
            source_uri=unit.uri,
            source_format=unit.meta["format"],
            dataset=self.options.dataset,
            volume_name=name,
            preset=self.options.preset,
        )
        return record

    def _finish(self, record: Record, volume: Any) -> Record:
        from curate.parse.volume_preprocess import preparation_columns, preprocess, volume_columns

        prepared = preprocess(volume, self._preprocess_options())
        record.update(volume_columns(prepared))
        record.update(preparation_columns(prepared))
        record["image_sha256"] = array_digest(prepared.array)
        return record

    def _read_nifti(self, unit: Unit) -> Iterator[Record]:
        from curate.enrich.modality import volume_modality
        from curate.parse.deid import pseudonym
        from curate.parse.volume import load_nifti

        name = unit.meta["volume_name"]
        record = self._base(unit, name)
        modality, origin = volume_modality(
            declared=self.options.modality, file_name=posixpath.basename(unit.uri)
        )
        volume = load_nifti(
            fs.read_bytes(unit.uri), name=unit.uri, volume_index=self.options.volume_index
        )
        record.update(
            subject_id=pseudonym(name, self._salt(), "p-"),
            storage="nifti",
            volume_index=0,
            volumes_in_series=1,
            modality=modality,
            modality_source=origin,
            gantry_tilt_deg=0.0,
        )
        yield self._finish(record, volume)

    def _read_series(self, unit: Unit) -> Iterator[Record | Rejected | Failed]:
        from curate.enrich.modality import volume_modality
        from curate.parse.deid import pseudonym
        from curate.parse.volume import read_series_datasets, series_volumes

        salt = self._salt()
        files = [(uri, fs.read_bytes(uri)) for uri in unit.meta["files"]]
        parsed, failed = read_series_datasets(files)
        for uri, exc in failed:
            yield Failed.from_exception(exc, stage="read", source_uri=uri, unit_id=unit.unit_id)
        items = []
        for uri, ds in parsed:
            if "PixelData" in ds or "FloatPixelData" in ds:
                items.append((uri, ds))
                continue
            # An SR, presentation state or key-object note filed in the image series.
            from curate.errors import MissingPixelData

            yield Failed.from_exception(
                MissingPixelData(f"{uri}: series member without pixel data"),
                stage="read",
                source_uri=uri,
                unit_id=unit.unit_id,
            )
        if not items:
            return
        name = unit.meta["volume_name"]
        record = self._base(unit, name)
        patient = str(items[0][1].get("PatientID", "") or "")
        record["subject_id"] = (
            pseudonym(patient, salt, "p-") if patient else pseudonym(name, salt, "series-")
        )
        if self.options.reject_burned_in_annotation and _burned_in(items):
            yield Rejected(_without_array(record), "burned_in_annotation", stage="read")
            return
        try:
            volumes, failures = series_volumes(items, options=self.options.series, uid_salt=salt)
        except InputError as series_error:
            failures, volumes = [(unit.uri, series_error)], []
        for uri, failure in failures:
            if getattr(failure, "reason", "") in NOT_A_VOLUME:
                # a scout, a key image, a 2D secondary capture: valid input, not a volume
                yield Rejected(_without_array(record), failure.reason, stage="read")  # type: ignore[attr-defined]
                continue
            yield Failed.from_exception(
                failure,
                stage="read",
                source_uri=uri,
                unit_id=unit.unit_id,
                record_id=record["record_id"],
            )
        for volume in volumes:
            meta = volume.metadata
            out = dict(record)
            if int(meta.get("volumes_in_series", 1)) > 1:
                out["volume_name"] = f"{name}_v{meta['volume_index']}"
                out["record_id"] = f"{self.options.dataset}/{out['volume_name']}"
            modality, origin = volume_modality(header=meta.get("modality"))
            out.update(
                series_uid_hash=meta.get("series_uid_hash"),
                storage=meta.get("storage"),
                volume_index=int(meta.get("volume_index", 0)),
                volumes_in_series=int(meta.get("volumes_in_series", 1)),
                modality=modality,
                modality_source=origin,
                gantry_tilt_deg=float(meta.get("gantry_tilt_deg", 0.0)),
                metadata_json=json.dumps(meta, sort_keys=True, default=str),
            )
            yield self._finish(out, volume)


def _common_folder(files: list[str]) -> str:
    """The deepest folder holding every file; plain string parts, so `gs://b/x` stays a URI
    (posixpath.commonpath would fold its `//`)."""
    parts = [f.replace("\\", "/").split("/")[:-1] for f in files]
    common = parts[0]
    for other in parts[1:]:
        size = 0
        while size < min(len(common), len(other)) and common[size] == other[size]:
            size += 1
        common = common[:size]
    return "/".join(common)


def _strip_nifti(name: str) -> str:
    for suffix in NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _without_array(record: Record) -> Record:
    """A reject keeps ids; array columns stay empty (no voxels were read)."""
    return {**record, **dict.fromkeys(ARRAY_COLUMNS)}
