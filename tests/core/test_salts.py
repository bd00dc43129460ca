"""De-identification salts: a secret from the environment or a secrets file, or the declared demo
salt; never silently the public default; only a fingerprint in the manifest; a resume with
another salt refused (curate.parse.deid, curate.build.salts)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curate.build.salts import deidentification_section, source_salts
from curate.cli import main
from curate.errors import SpecError
from curate.parse.deid import DEFAULT_SALT, pseudonym, salt_from
from curate.spec import Spec

SECRET = "a-real-secret-of-some-length"


@pytest.fixture()
def no_salt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CURATE_UID_SALT", raising=False)
    monkeypatch.delenv("CURATE_UID_SALT_FILE", raising=False)


def test_no_salt_is_an_error_not_the_public_default(no_salt: None) -> None:
    with pytest.raises(SpecError, match="no de-identification salt: set CURATE_UID_SALT"):
        salt_from(None)


def test_salt_sources_and_kinds(
    no_salt: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert salt_from("demo").kind == "demo" and salt_from("demo").value == DEFAULT_SALT
    monkeypatch.setenv("CURATE_UID_SALT", SECRET)
    from_env = salt_from(None)
    assert (from_env.kind, from_env.value) == ("secret", SECRET)
    secret_file = tmp_path / "salt.txt"
    secret_file.write_text(SECRET + "\n")
    assert salt_from(f"file:{secret_file}").value == SECRET
    monkeypatch.setenv("OTHER_SALT", SECRET + "x")
    assert salt_from("env:OTHER_SALT").value == SECRET + "x"
    # the public value passed as a "secret" is still the demo salt, and says so
    monkeypatch.setenv("CURATE_UID_SALT", DEFAULT_SALT)
    assert salt_from(None).kind == "demo"


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("my-literal-salt", "a salt written into the spec is not secret"),
        ("env:UNSET_SALT_VARIABLE", "is empty"),
        ("file:/nonexistent/salt", "cannot read the salt file"),
    ],
)
def test_bad_salt_options(no_salt: None, option: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        salt_from(option)


def test_short_secret_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CURATE_UID_SALT", "short")
    with pytest.raises(SpecError, match="too short"):
        salt_from(None)


def test_fingerprint_names_the_salt_without_revealing_it() -> None:
    salt = salt_from("demo")
    other = salt_from("demo")
    assert salt.fingerprint == other.fingerprint and len(salt.fingerprint) == 16
    assert salt.value not in json.dumps(salt.describe())
    # not a pseudonym of anything a user could look up
    assert salt.fingerprint not in {pseudonym("", salt.value), pseudonym("fingerprint", salt.value)}


def spec_with(options: dict, kind: str = "dicom_folder") -> Spec:
    return Spec.model_validate(
        {
            "name": "t",
            "schema": "report_image.v1",
            "sources": [{"kind": kind, "path": "/x", "options": options}],
        }
    )


def test_manifest_section_says_which_salt_class(no_salt: None) -> None:
    demo = deidentification_section(source_salts(spec_with({"uid_salt": "demo"})))
    assert demo["salt"] == "demo" and "not for real data" in demo["note"]
    with pytest.raises(SpecError, match="source dicom_folder: no de-identification salt"):
        source_salts(spec_with({}))
    pmc = Spec.model_validate(
        {"name": "t", "schema": "figure_caption.v1", "sources": [{"kind": "pmc", "path": "/x"}]}
    )
    assert deidentification_section(source_salts(pmc))["salt"] == "none"


def folder_spec(tmp_path: Path, options: str = "{}") -> Path:
    corpus = tmp_path / "export"
    corpus.mkdir(exist_ok=True)
    (corpus / "a.dcm").write_bytes(b"not really dicom")
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "name: t\nschema: report_image.v1\nrules: []\nmax_error_fraction: 1\n"
        f"sources:\n  - kind: dicom_folder\n    path: {corpus}\n    options: {options}\n"
    )
    return spec


def test_validate_and_build_refuse_a_patient_source_without_salt(
    no_salt: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = folder_spec(tmp_path)
    assert main(["validate", "--spec", str(spec)]) == 1
    assert "no de-identification salt" in capsys.readouterr().err
    out = tmp_path / "out"
    assert main(["build", "--spec", str(spec), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "no de-identification salt" in err and "Traceback" not in err
    assert not (out / "shards").exists()


@pytest.mark.slow
def test_a_resume_with_another_salt_is_refused(
    no_salt: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    spec = folder_spec(tmp_path)
    out = tmp_path / "out"
    args = ["build", "--spec", str(spec), "--out", str(out), "--running-mode", "in_memory"]
    monkeypatch.setenv("CURATE_UID_SALT", SECRET)
    assert main(args) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["deidentification"]["salt"] == "secret"
    assert manifest["deidentification"]["salt_fingerprint"] == salt_from(None).fingerprint
    assert SECRET not in (out / "manifest.json").read_text()
    monkeypatch.setenv("CURATE_UID_SALT", SECRET + "-rotated")
    assert main(args) == 2
    assert "holds work of another spec" in capsys.readouterr().err


def test_a_reports_only_build_needs_no_salt(no_salt: None) -> None:
    """record_mode: report reads no DICOM and hashes nothing: no salt is asked for."""
    spec = spec_with({"record_mode": "report"}, kind="iu_xray")
    assert source_salts(spec) == {}
    with pytest.raises(SpecError, match="no de-identification salt"):
        source_salts(spec_with({"record_mode": "image"}, kind="iu_xray"))
