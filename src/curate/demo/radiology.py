"""A small MIMIC-CXR-style tree and an IU-X-ray-style CSV pair, generated offline.

The demo and the default tests run on this instead of credentialed data. Every quirk the
sources must handle is planted once, and `generate_radiology_demo` returns what it planted so
tests assert exact counts:

MIMIC-CXR side (`<out>/mimic_cxr`): 8 subjects, 14 studies, DICOM in five transfer syntaxes
(explicit/implicit little endian, explicit big endian, RLE lossless, JPEG baseline), a
MONOCHROME1 image, a BurnedInAnnotation YES image, a DICOM with PHI in PatientName/PatientID/
InstitutionName, MIMIC-CXR-JPG `.jpg` studies; reports with 79-column wraps, `___`, typos
(NDICATION, FINDNGS, IMPRESSON), an addendum above an underscore line, a combined FINDINGS AND
IMPRESSION, a report without headers, a wet read, an unknown header, a cp1252 (non-UTF-8)
report and an empty one; a gzip'd metadata CSV with a row whose file is missing, the official
split CSV (train/validate/test), a CheXpert label CSV, a study with a report and no images, and
a study with images and no report.

IU X-ray side (`<out>/iu_xray`): indiana_reports.csv + indiana_projections.csv with `XXXX`
placeholders, an all-empty report row, and `images/images_normalized/*.png` with one file missing.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from curate.demo.drawing import chest_gradient, dicom_dataset, encode, to_image, write_file

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

MIMIC_OBSERVATIONS = [
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Enlarged Cardiomediastinum",
    "Fracture",
    "Lung Lesion",
    "Lung Opacity",
    "No Finding",
    "Pleural Effusion",
    "Pleural Other",
    "Pneumonia",
    "Pneumothorax",
    "Support Devices",
]
PHI_DICOM = {
    "PatientName": "Doe^Jane",
    "PatientID": "MRN88112233",
    "InstitutionName": "Springfield General Hospital",
}


def mimic_layout(text: str) -> str:
    """MIMIC-CXR's on-disk layout for a report written plainly: every line starts with one
    space (blank lines become a single space) and a header alone on its line keeps the space
    after its colon. Lets the source stay free of trailing whitespace."""
    lines = []
    for line in text.split("\n")[:-1] if text.endswith("\n") else text.split("\n"):
        lines.append(" " + line + (" " if line.endswith(":") else ""))
    return "\n".join(lines) + "\n"


_WRAPPED = mimic_layout(
    """\
                                FINAL REPORT
EXAMINATION:  CHEST (PA AND LAT)

INDICATION:  ___ year old woman with cough and fever  // ?pneumonia

TECHNIQUE:  Chest PA and lateral

COMPARISON:  ___

FINDINGS:

There is a new right lower lobe opacity concerning for pneumonia.  The heart
size is normal.  The mediastinal and hilar contours are unremarkable.  There is
no pleural effusion or pneumothorax.

IMPRESSION:

1. Right lower lobe pneumonia.
2. No pleural effusion.
"""
)

_ADDENDUM = mimic_layout(
    """\
                                FINAL ADDENDUM
ADDENDUM:  Findings were discussed with Dr. ___ by telephone at 4:10 p.m. on
___, at the time of the addendum.

______________________________________________________________________________
                                FINAL REPORT
EXAMINATION:  CHEST (PORTABLE AP)

INDICATION:  ___ with new line placement.

FINDINGS:

Right internal jugular central venous catheter terminates in the mid SVC.  No
pneumothorax.

IMPRESSION:

Line in appropriate position.  No pneumothorax.
"""
)

_TYPOS = mimic_layout(
    """\
                                FINAL REPORT
NDICATION:  History: ___M with shortness of breath

COMPARISION:  Chest radiograph from ___.

FINDNGS:

Moderate cardiomegaly is unchanged.  Mild interstitial edema has slightly
improved.

IMPRESSON:

Improving mild pulmonary edema.
"""
)

_COMBINED = mimic_layout(
    """\
                                FINAL REPORT
HISTORY:  ___-year-old man with chest pain.

FINDINGS AND IMPRESSION:  Lungs are clear.  Heart size is normal.  No acute
cardiopulmonary process.
"""
)

_NO_HEADERS = mimic_layout(
    """\
PA and lateral chest radiographs were obtained.  The lungs are well expanded
and clear.  There is no effusion.  Normal cardiomediastinal silhouette.
"""
)

_STANDARD = mimic_layout(
    """\
                                FINAL REPORT
EXAMINATION:  CHEST (PA AND LAT)

INDICATION:  ___ year old man with fall.

COMPARISON:  None.

FINDINGS:

No displaced rib fracture is seen.  Lungs are clear.

IMPRESSION:

No acute cardiopulmonary process.
"""
)

_WET_READ = mimic_layout(
    """\
WET READ: ___ ___ 9:14 PM
 Small left pleural effusion.
______________________________________________________________________________
                                FINAL REPORT
EXAMINATION:  CHEST (PORTABLE AP)

CLINICAL HISTORY:  ___ year old woman with dyspnea.

PORTABLE UPRIGHT VIEW:  Single frontal view of the chest.

FINDINGS:

Small left pleural effusion with adjacent atelectasis.

IMPRESSION:

Small left pleural effusion.

RECOMMENDATION(S):  Follow-up radiograph after treatment.
"""
)

_CP1252 = (
    "                                 FINAL REPORT\n FINDINGS:  Small effusion \u2013 "
    "unchanged.\n IMPRESSION:  Stable.\n"
).encode("cp1252")


def _write_dicom(path: Path, ds: Dataset, arr: np.ndarray, syntax: str) -> None:
    """Save `ds` with `arr` as its pixels in transfer syntax `syntax`, and read it back: the
    demo must only plant DICOM that decodes."""
    import pydicom

    _set_pixels(ds, arr, syntax)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    pydicom.dcmread(path).pixel_array  # noqa: B018 - decoding is the check


def _dicom_header(
    *,
    syntax: str,
    view: str,
    photometric: str,
    burned_in: str,
    phi: dict[str, str] | None,
    seed_uid: str,
) -> Dataset:
    """A chest CR image's header, all but the pixels: UIDs derived from `seed_uid` (stable
    across runs), the view, the burned-in flag and optional PHI."""
    from pydicom.uid import (
        ExplicitVRBigEndian,
        ExplicitVRLittleEndian,
        ImplicitVRLittleEndian,
        JPEGBaseline8Bit,
        generate_uid,
    )

    transfer_syntax = {
        "explicit_le": ExplicitVRLittleEndian,
        "implicit_le": ImplicitVRLittleEndian,
        "explicit_be": ExplicitVRBigEndian,
        "rle": ExplicitVRLittleEndian,
        "jpeg_baseline": JPEGBaseline8Bit,
    }[syntax]
    sop_class = "1.2.840.10008.5.1.4.1.1.1"  # Computed Radiography Image Storage
    ds = dicom_dataset(sop_class, generate_uid(entropy_srcs=[seed_uid, "sop"]), transfer_syntax)
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[seed_uid.rsplit("/", 1)[0], "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[seed_uid, "series"])
    ds.Modality = "CR"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = view
    ds.StudyDate = "21800101"
    ds.PatientName = (phi or {}).get("PatientName", "")
    ds.PatientID = (phi or {}).get("PatientID", "")
    if phi and "InstitutionName" in phi:
        ds.InstitutionName = phi["InstitutionName"]
    ds.BurnedInAnnotation = burned_in
    ds.PixelSpacing = [0.139, 0.139]
    ds.PhotometricInterpretation = photometric
    return ds


def _set_pixels(ds: Dataset, arr: np.ndarray, syntax: str) -> None:
    """The image module and pixel data, encoded as `syntax` needs (JPEG, big endian, RLE)."""
    from pydicom.encaps import encapsulate
    from pydicom.uid import RLELossless

    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel = 1
    ds.PixelRepresentation = 0
    bits = 16 if arr.dtype == np.uint16 else 8
    ds.BitsAllocated = bits
    ds.BitsStored = 12 if bits == 16 else 8
    ds.HighBit = ds.BitsStored - 1
    if syntax == "jpeg_baseline":
        ds.PixelData = encapsulate([encode(to_image(arr), "JPEG")])
        ds["PixelData"].VR = "OB"
        ds.LossyImageCompression = "01"
    elif syntax == "explicit_be":
        ds.PixelData = arr.astype(">u2" if bits == 16 else np.uint8).tobytes()
    else:
        ds.PixelData = arr.tobytes()
    if syntax == "rle":
        ds.compress(RLELossless, arr)


def _write_csv(path: Path, header: list[str], rows: list[list[Any]], *, gz: bool = False) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    data = buffer.getvalue().encode("utf-8")
    write_file(path, gzip.compress(data, mtime=0) if gz else data)


# (subject, study, report (str | bytes | None), images [(dicom_id, kind, view, options)], split)
# kind: a DICOM syntax name, "jpg", or "missing" (metadata row without a file).
_STUDIES: list[tuple[str, str, Any, list[tuple[str, str, str, dict[str, Any]]], str]] = [
    (
        "10000001",
        "50000001",
        _WRAPPED,
        [
            ("d01a", "explicit_le", "PA", {"bits": 16}),
            ("d01b", "implicit_le", "LATERAL", {"bits": 16}),
        ],
        "train",
    ),
    ("10000001", "50000002", _ADDENDUM, [("d02a", "explicit_be", "AP", {"bits": 16})], "train"),
    ("10000002", "50000003", _TYPOS, [("d03a", "rle", "PA", {"bits": 16})], "train"),
    ("10000002", "50000004", _COMBINED, [("d04a", "jpeg_baseline", "PA", {"bits": 8})], "train"),
    (
        "10000003",
        "50000005",
        _NO_HEADERS,
        [("d05a", "explicit_le", "PA", {"bits": 16, "photometric": "MONOCHROME1"})],
        "validate",
    ),
    (
        "10000003",
        "50000006",
        _STANDARD,
        [
            ("d06a", "explicit_le", "PA", {"bits": 16, "burned_in": "YES"}),
            ("d06b", "explicit_le", "LATERAL", {"bits": 16}),
        ],
        "validate",
    ),
    (
        "10000004",
        "50000007",
        _STANDARD,
        [("d07a", "explicit_le", "PA", {"bits": 16, "phi": PHI_DICOM})],
        "test",
    ),
    (
        "10000004",
        "50000008",
        _WET_READ,
        [("j08a", "jpg", "AP", {}), ("j08b", "jpg", "LATERAL", {})],
        "test",
    ),
    ("10000005", "50000009", _CP1252, [("j09a", "jpg", "PA", {})], "train"),
    (
        "10000006",
        "50000010",
        _STANDARD,
        [("j10a", "jpg", "PA", {}), ("j10b", "missing", "LATERAL", {})],
        "train",
    ),
    ("10000007", "50000011", b"", [("j11a", "jpg", "PA", {})], "train"),
    ("10000007", "50000012", None, [("j12a", "jpg", "PA", {})], "train"),
    ("10000008", "50000013", _STANDARD, [], "train"),
    (
        "10000008",
        "50000014",
        _WRAPPED,
        [("j14a", "jpg", "PA", {}), ("j14b", "jpg", "LL", {})],
        "train",
    ),
]

# Labels for some studies: column -> value ("" = not mentioned).
_LABELS = {
    ("10000001", "50000001"): {
        "Pneumonia": "1.0",
        "Pleural Effusion": "0.0",
        "Cardiomegaly": "0.0",
    },
    ("10000002", "50000003"): {"Edema": "1.0", "Cardiomegaly": "1.0"},
    ("10000004", "50000008"): {"Pleural Effusion": "1.0", "Atelectasis": "-1.0"},
    ("10000008", "50000014"): {"Pneumonia": "1.0"},
}

_IU_REPORTS = [
    [
        "1",
        "Xray Chest PA and Lateral",
        "XXXX-year-old male, chest pain.",
        "None.",
        "The heart is normal in size. The mediastinum is unremarkable. The lungs are clear.",
        "No acute disease.",
    ],
    [
        "2",
        "Chest, 2 views, frontal and lateral",
        "Dyspnea.",
        "Chest radiographs XXXX.",
        "Borderline cardiomegaly. Midline sternotomy XXXX. Clear lungs.",
        "No acute pulmonary findings.",
    ],
    [
        "3",
        "Xray Chest PA and Lateral",
        "",
        "",
        "",
        "No displaced rib fractures, pneumothorax, or pleural effusion identified.",
    ],
    ["4", "Xray Chest PA and Lateral", "", "", "", ""],
]
_IU_PROJECTIONS = [
    ["1", "1_IM-0001-4001.dcm.png", "Frontal"],
    ["1", "1_IM-0001-3001.dcm.png", "Lateral"],
    ["2", "2_IM-0652-1001.dcm.png", "Frontal"],
    ["2", "2_IM-0652-2001.dcm.png", "Lateral"],
    ["3", "3_IM-1384-1001.dcm.png", "Frontal"],
    ["3", "3_IM-1384-2001.dcm.png", "Lateral"],
    ["4", "4_IM-2050-1001.dcm.png", "Frontal"],
]
_IU_MISSING_IMAGE = "3_IM-1384-2001.dcm.png"


# ViewPosition -> the metadata CSV's ViewCodeSequence_CodeMeaning.
_VIEW_MEANINGS = {
    "PA": "postero-anterior",
    "AP": "antero-posterior",
    "LATERAL": "lateral",
    "LL": "left lateral",
}


def _metadata_row(dicom_id: str, subject: str, study: str, view: str) -> list[Any]:
    """One row of mimic-cxr-2.0.0-metadata.csv (every demo image is 96 x 80)."""
    return [
        dicom_id,
        subject,
        study,
        "CHEST (PA AND LAT)",
        view,
        96,
        80,
        "21800101",
        "101010.000",
        "Chest 2 Views",
        _VIEW_MEANINGS[view],
        "Erect",
    ]


def _write_study_image(
    study_dir: Path,
    rng: np.random.Generator,
    seed_uid: str,
    image: tuple[str, str, str, dict[str, Any]],
) -> None:
    """One image of a study: a JPEG, a DICOM in the image's syntax, or nothing ("missing").
    The pixels are drawn even for a missing file, so every image takes its draw."""
    dicom_id, kind, view, opts = image
    arr = chest_gradient(rng, 96, 80, 12 if opts.get("bits", 8) == 16 else 8)
    if kind == "jpg":
        write_file(study_dir / f"{dicom_id}.jpg", encode(to_image(arr), "JPEG"))
    elif kind != "missing":
        ds = _dicom_header(
            syntax=kind,
            view=view,
            photometric=opts.get("photometric", "MONOCHROME2"),
            burned_in=opts.get("burned_in", "NO"),
            phi=opts.get("phi"),
            seed_uid=seed_uid,
        )
        _write_dicom(study_dir / f"{dicom_id}.dcm", ds, arr, kind)


def _write_mimic_studies(
    files: Path, rng: np.random.Generator, seed: int
) -> tuple[list[list[Any]], list[list[Any]], dict[str, int]]:
    """Reports and images of every study; returns the metadata rows, the split rows and how
    many DICOM files each transfer syntax got."""
    meta_rows: list[list[Any]] = []
    split_rows: list[list[Any]] = []
    syntaxes: dict[str, int] = {}
    for subject, study, report, images, split in _STUDIES:
        study_dir = files / f"p{subject[:2]}" / f"p{subject}" / f"s{study}"
        if report is not None:
            data = report.encode("utf-8") if isinstance(report, str) else report
            write_file(study_dir.with_suffix(".txt"), data)
        for image in images:
            dicom_id, kind, view, _opts = image
            _write_study_image(study_dir, rng, f"{seed}/{subject}/{study}/{dicom_id}", image)
            if kind not in ("jpg", "missing"):
                syntaxes[kind] = syntaxes.get(kind, 0) + 1
            meta_rows.append(_metadata_row(dicom_id, subject, study, view))
            split_rows.append([dicom_id, study, subject, split])
    return meta_rows, split_rows, syntaxes


def _write_mimic_csvs(mimic: Path, meta_rows: list[list[Any]], split_rows: list[list[Any]]) -> None:
    """The gzip'd metadata CSV, the official split CSV and the CheXpert label CSV."""
    _write_csv(
        mimic / "mimic-cxr-2.0.0-metadata.csv.gz",
        [
            "dicom_id",
            "subject_id",
            "study_id",
            "PerformedProcedureStepDescription",
            "ViewPosition",
            "Rows",
            "Columns",
            "StudyDate",
            "StudyTime",
            "ProcedureCodeSequence_CodeMeaning",
            "ViewCodeSequence_CodeMeaning",
            "PatientOrientationCodeSequence_CodeMeaning",
        ],
        meta_rows,
        gz=True,
    )
    _write_csv(
        mimic / "mimic-cxr-2.0.0-split.csv",
        ["dicom_id", "study_id", "subject_id", "split"],
        split_rows,
    )
    _write_csv(
        mimic / "mimic-cxr-2.0.0-chexpert.csv",
        ["subject_id", "study_id", *MIMIC_OBSERVATIONS],
        [
            [s, t, *(values.get(o, "") for o in MIMIC_OBSERVATIONS)]
            for (s, t), values in sorted(_LABELS.items())
        ],
    )


def _write_iu_xray(iu: Path, rng: np.random.Generator) -> None:
    """The two IU X-ray CSVs and a PNG for every projection but the planted missing one."""
    _write_csv(
        iu / "indiana_reports.csv",
        ["uid", "image", "indication", "comparison", "findings", "impression"],
        _IU_REPORTS,
    )
    _write_csv(iu / "indiana_projections.csv", ["uid", "filename", "projection"], _IU_PROJECTIONS)
    for _uid, filename, _projection in _IU_PROJECTIONS:
        if filename != _IU_MISSING_IMAGE:
            png = encode(to_image(chest_gradient(rng, 64, 64, 8)), "PNG")
            write_file(iu / "images" / "images_normalized" / filename, png)


def _planted(mimic: Path, iu: Path, syntaxes: dict[str, int]) -> dict[str, Any]:
    """What the trees hold and what reading them must give (exact counts for the tests)."""
    files = mimic / "files"
    image_rows = sum(len(images) for *_, images, _ in _STUDIES)
    return {
        "mimic_cxr": {
            "path": str(mimic),
            "subjects": len({s for s, *_ in _STUDIES}),
            "studies": len(_STUDIES),
            "metadata_rows": image_rows,
            "dicom_syntaxes": dict(sorted(syntaxes.items())),
            # image mode: what `MimicCxrSource.read` yields over all units
            "records_image_mode": 13,  # images kept: 15 files - burned-in - unit errors (3 images)
            "rejected_image_mode": {"burned_in_annotation": 1, "image_missing": 1},
            "failed_images": {"missing_file": 1},
            "unit_errors": {"not_utf8": 1, "empty_input": 1, "missing_file": 1},
            "records_study_mode": 10,
            "rejected_study_mode": {"burned_in_annotation": 1, "image_missing": 1},
            "labelled_studies": len(_LABELS),
            "phi_dicom": dict(PHI_DICOM),
            "phi_dicom_path": str(files / "p10" / "p10000004" / "s50000007" / "d07a.dcm"),
            "burned_in_dicom_path": str(files / "p10" / "p10000003" / "s50000006" / "d06a.dcm"),
            "monochrome1_dicom_path": str(files / "p10" / "p10000003" / "s50000005" / "d05a.dcm"),
        },
        "iu_xray": {
            "path": str(iu),
            "reports": len(_IU_REPORTS),
            "projections": len(_IU_PROJECTIONS),
            "records_image_mode": 5,
            "failed_images": {"missing_file": 1},
            "unit_errors": {"empty_input": 1},
        },
    }


def generate_radiology_demo(out_dir: str | os.PathLike[str], seed: int = 0) -> dict[str, Any]:
    """Write the demo trees under `out_dir` and return what was planted (paths and counts).

    One generator draws the pixels of the MIMIC-CXR images first, then of the IU X-ray ones."""
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    mimic = out / "mimic_cxr"
    meta_rows, split_rows, syntaxes = _write_mimic_studies(mimic / "files", rng, seed)
    _write_mimic_csvs(mimic, meta_rows, split_rows)
    _write_iu_xray(out / "iu_xray", rng)
    return _planted(mimic, out / "iu_xray", syntaxes)
