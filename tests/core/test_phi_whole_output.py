"""Whole-output PHI scan: real DICOM files from ../shared/realdata with PHI planted in their
headers (and in the folder names a hospital export would use) are built through every
radiology and volume source; no planted value, and not the salt, may appear in any file the
build writes: Parquet decoded (every column, schema key-value metadata), manifest, data cards,
rejects, errors and `_work`.

The one documented exception: `_work/plan` lists the raw input paths (workers must open them),
so folder-name PHI is looked for everywhere except there.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pydicom
import pytest

from curate.cli import main

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

SALT = "phi-scan-secret-salt-0123456789"
HEADER_PHI = {
    "PatientName": "Zyxwvut^Quenby",
    "PatientID": "MRN99887766",
    "PatientBirthDate": "19470312",
    "AccessionNumber": "ACC55443322",
    "InstitutionName": "Kwisatzhaderach General",
    "ReferringPhysicianName": "Drqwerty^Hazel",
    "StudyDate": "20191105",
    "SeriesDate": "20191105",
    "ContentDate": "20191105",
    "OtherPatientIDs": "OTHERID4477",
    "StudyDescription": "chest for Zyxwvut Quenby",
    "ImageComments": "call 555-867-5309 re MRN99887766",
    "StudyID": "STUDY31415",
}
FOLDER = "Zyxwvut_Quenby_MRN99887766"
# what must never appear: the values, their parts, and the salt
NEEDLES = sorted(
    {
        "Zyxwvut",
        "Quenby",
        "99887766",
        "19470312",
        "ACC55443322",
        "Kwisatzhaderach",
        "Drqwerty",
        "20191105",
        "2019-11-05",
        "OTHERID4477",
        "867-5309",
        "STUDY31415",
        SALT,
    }
)
FOLDER_NEEDLES = ["Zyxwvut", "Quenby", "99887766"]


def plant(source: Path, target: Path, *, series: str | None = None) -> None:
    ds = pydicom.dcmread(str(source))
    for keyword, value in HEADER_PHI.items():
        setattr(ds, keyword, value)
    ds.add_new(0x00110010, "LO", "Zyxwvut private creator")
    ds.add_new(0x00111001, "LO", "MRN99887766 private")
    if series:
        ds.SeriesInstanceUID = series
    target.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(str(target))


def two_d_corpus(realdata: Path, root: Path) -> None:
    """A dicom_folder export and a MIMIC-CXR layout holding the same planted 2D images."""
    originals = [
        realdata / "dicom" / "pydicom" / "CT_small.dcm",
        realdata / "dicom" / "pydicom" / "MR_small.dcm",
        realdata / "dicom" / "highdicom" / "dx_image.dcm",
    ]
    for index, original in enumerate(originals):
        plant(original, root / "export" / FOLDER / f"{FOLDER}_{index}.dcm")
        study = root / "mimic" / "files" / "p10" / "p10000032" / f"s5000000{index}"
        plant(original, study / f"img{index}.dcm")
        study.with_suffix(".txt").write_text(
            "FINDINGS: The lungs are clear. No effusion.\nIMPRESSION: Normal chest.\n"
        )


def series_corpus(realdata: Path, root: Path) -> Path:
    """The real 20-slice CT series, in a folder named after the patient."""
    folder = root / "volumes" / FOLDER
    for path in sorted((realdata / "dicom" / "totalsegmentator_example_ct").glob("*.dcm")):
        plant(path, folder / f"{FOLDER}_{path.name}")
    return folder.parent


def build(tmp_path: Path, name: str, schema: str, sources: list[dict]) -> Path:
    spec = {
        "name": name,
        "schema": schema,
        "sources": sources,
        "rules": [],
        "split": {"seed": 0, "ratios": {"train": 0.8, "validation": 0.1, "test": 0.1}},
        "max_error_fraction": 1,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(json.dumps(spec))
    out = tmp_path / f"out_{name}"
    rc = main(["build", "--spec", str(path), "--out", str(out), "--running-mode", "in_memory"])
    assert rc == 0
    return out


def file_texts(out: Path) -> list[tuple[str, str]]:
    """(relative path, searchable text) for every file: Parquet decoded, others as bytes."""
    found = []
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        rel = path.relative_to(out).as_posix()
        if path.suffix == ".parquet":
            table = pq.read_table(path)
            metadata = table.schema.metadata or {}
            text = repr(table.to_pylist()) + repr(metadata)
            text += "".join(repr(f.metadata) for f in table.schema)
        else:
            text = path.read_bytes().decode("latin-1")
        found.append((rel, text))
    return found


def leaks(out: Path) -> list[str]:
    found = []
    for rel, text in file_texts(out):
        needles = (
            NEEDLES
            if not rel.startswith("_work/plan/")
            else sorted(set(NEEDLES) - set(FOLDER_NEEDLES))
        )
        found += [f"{rel}: {n}" for n in needles if n.lower() in text.lower()]
    return found


@pytest.fixture()
def secret_salt(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("PHI_SCAN_SALT", SALT)
    return "env:PHI_SCAN_SALT"


def test_no_planted_phi_in_any_output_of_the_2d_sources(
    realdata: Path, tmp_path: Path, secret_salt: str
) -> None:
    two_d_corpus(realdata, tmp_path)
    sources = [
        {
            "kind": "dicom_folder",
            "name": "export",
            "path": str(tmp_path / "export"),
            "options": {"uid_salt": secret_salt, "reject_burned_in_annotation": False},
        },
        {
            "kind": "mimic_cxr",
            "name": "mimic",
            "path": str(tmp_path / "mimic"),
            "options": {"record_mode": "image", "uid_salt": secret_salt},
        },
    ]
    out = build(tmp_path, "phi_2d", "report_image.v1", sources)
    manifest = json.loads((out / "manifest.json").read_text())
    # the scan is over real outputs (the MIMIC copies are rejected duplicate_image), not an
    # empty build
    assert manifest["records"]["candidates"] == 6 and manifest["records"]["kept"] == 3
    deid = manifest["deidentification"]
    assert deid["salt"] == "secret" and len(deid["salt_fingerprint"]) == 16
    assert leaks(out) == []


@pytest.mark.parametrize("kind", ["ct_rate", "dicom_series"])
def test_no_planted_phi_in_any_output_of_the_volume_sources(
    kind: str, realdata: Path, tmp_path: Path, secret_salt: str
) -> None:
    from curate.sources.base import get_source_class

    root = series_corpus(realdata, tmp_path)
    options: dict = {"uid_salt": secret_salt}
    if kind == "ct_rate":
        small = {"target_spacing": None, "target_shape": [32, 32, 16], "intensity_window": None}
        options |= {"require_report": False, "preprocess": {**small, "store_dtype": "int16"}}
    source = {"kind": kind, "name": "series", "path": str(root), "options": options}
    out = build(tmp_path, f"phi_{kind}", get_source_class(kind).schema_ref, [source])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["records"]["kept"] == 1  # the real series, built
    assert leaks(out) == []
