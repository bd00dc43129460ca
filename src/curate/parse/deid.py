"""De-identify DICOM metadata by allow-list (DICOM PS3.15 Basic Application Level Confidentiality).

Policy lives in `curation_rules/deid_profile.v1.yaml`; this module is the mechanism:

- only the attributes the profile lists under `carry` reach a record (an allow-list: an attribute
  nobody thought of, a private tag, a free-text comment is dropped by construction);
- study/series/instance UIDs become deterministic salted hashes (valid `2.25.` UIDs, so files of
  one series still group together across reruns and machines with the same salt);
- dates move back by a deterministic per-patient number of days (PS3.15 E.3.6 "modified dates");
- BurnedInAnnotation == YES is reported, because no metadata rule can remove text in pixels.

The salt is a secret: it comes from `$CURATE_UID_SALT`, a secrets file (`$CURATE_UID_SALT_FILE` or
the source option `uid_salt: file:PATH`) or another variable (`uid_salt: env:NAME`). Demo and test
builds say `uid_salt: demo` and get the public demo salt, which the manifest and card then name
("demo salt, not for real data"). Without either a build over patient data is refused: a public
default would let anyone holding a candidate MRN recompute its pseudonym and date shift. Only a
fingerprint of the salt reaches the manifest, never the salt.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from curate.errors import SpecError

SALT_ENV = "CURATE_UID_SALT"
SALT_FILE_ENV = "CURATE_UID_SALT_FILE"
# The salt of `uid_salt: demo` (demos, tests). It is public, so hashes made with it can be
# recomputed by anyone holding the original identifiers: never for real patient data.
DEFAULT_SALT = "curate-public-default-salt"
DEMO = "demo"
MIN_SECRET_LENGTH = 16

_KINDS = ("str", "int", "float", "float_list", "str_list")


@dataclass(frozen=True)
class CarriedAttribute:
    keyword: str
    column: str
    kind: str


@dataclass(frozen=True)
class DeidProfile:
    name: str
    version: int
    carry: tuple[CarriedAttribute, ...]
    uid_columns: tuple[tuple[str, str], ...]  # (keyword, column)
    pseudonym_columns: tuple[tuple[str, str, str], ...]  # (keyword, column, prefix)
    date_columns: tuple[tuple[str, str], ...]
    date_action: str  # shift | drop
    max_shift_days: int
    reject_burned_in: bool
    identifying: dict[str, str]  # keyword -> PS3.15 action code

    @property
    def columns(self) -> list[str]:
        cols = [a.column for a in self.carry] + [c for _, c in self.uid_columns]
        cols += [c for _, c, _ in self.pseudonym_columns]
        if self.date_action == "shift":
            cols += [c for _, c in self.date_columns]
        return cols + ["burned_in_annotation"]


@dataclass(frozen=True)
class Salt:
    """A resolved salt and where it came from; `kind` is "secret" or "demo"."""

    value: str = field(repr=False)
    kind: str
    origin: str

    @property
    def fingerprint(self) -> str:
        """Names the salt in the manifest (equal fingerprints, equal pseudonyms) without
        revealing it: an HMAC of a fixed message, keyed by the salt."""
        return hmac.new(
            self.value.encode(), b"curate salt fingerprint", hashlib.sha256
        ).hexdigest()[:16]

    def describe(self) -> dict[str, str]:
        return {"salt": self.kind, "salt_fingerprint": self.fingerprint, "origin": self.origin}


def salt_from(option: str | None) -> Salt:
    """The salt a source option names: `demo`, `env:NAME`, `file:PATH`, or None for
    `$CURATE_UID_SALT` / `$CURATE_UID_SALT_FILE`. Anything else, or no salt at all, is an error."""
    if option == DEMO:
        return Salt(DEFAULT_SALT, DEMO, "uid_salt: demo")
    if option and option.startswith("env:"):
        return _checked(os.environ.get(option[4:], ""), f"environment variable {option[4:]}")
    if option and option.startswith("file:"):
        return _checked(_read_secret_file(option[5:]), f"file {option[5:]}")
    if option:
        raise SpecError(
            "uid_salt must be `demo`, `env:NAME` or `file:PATH`: a salt written into the spec "
            "is not secret (specs are shared and copied into the manifest)"
        )
    if os.environ.get(SALT_ENV):
        return _checked(os.environ[SALT_ENV], f"environment variable {SALT_ENV}")
    if os.environ.get(SALT_FILE_ENV):
        path = os.environ[SALT_FILE_ENV]
        return _checked(_read_secret_file(path), f"file {path}")
    raise SpecError(
        f"no de-identification salt: set {SALT_ENV} (or {SALT_FILE_ENV}, a secrets file) to a "
        "secret of 16+ characters, or say `uid_salt: demo` in the source options for demo data"
    )


def _checked(value: str, origin: str) -> Salt:
    value = value.strip()
    if value == DEFAULT_SALT:  # the public demo salt, however it was passed
        return Salt(value, DEMO, origin)
    if len(value) < MIN_SECRET_LENGTH:
        raise SpecError(
            f"the salt from {origin} is {'empty' if not value else 'too short'}: a secret of "
            f"{MIN_SECRET_LENGTH}+ characters is needed"
        )
    return Salt(value, "secret", origin)


@cache
def _read_secret_file(path: str) -> str:
    """A local file (a mounted secret on a worker): no object-store reads in this pure module."""
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read the salt file {path}: {exc}") from exc


def option_salt(option: str | None) -> str:
    """The salt value a source's `uid_salt` option names (see `salt_from`)."""
    return salt_from(option).value


def resolve_salt(salt: str | None = None) -> str:
    """For the parse functions: a salt value their caller resolved, else the environment's."""
    return salt if salt else salt_from(None).value


def profile_from_definition(data: dict[str, Any], where: str = "deid profile") -> DeidProfile:
    try:
        carry = tuple(
            CarriedAttribute(a["keyword"], a["column"], a.get("kind", "str"))
            for a in data["carry"]["attributes"]
        )
        uids = tuple((a["keyword"], a["column"]) for a in data["uids"]["attributes"])
        pseudonyms = tuple(
            (a["keyword"], a["column"], a.get("prefix", ""))
            for a in (data.get("pseudonyms") or {}).get("attributes", [])
        )
        dates = data.get("dates") or {}
        date_cols = tuple((a["keyword"], a["column"]) for a in dates.get("attributes", []))
        identifying = {str(k): str(v) for k, v in (data.get("identifying") or {}).items()}
        profile = DeidProfile(
            name=data["name"],
            version=int(data["version"]),
            carry=carry,
            uid_columns=uids,
            pseudonym_columns=pseudonyms,
            date_columns=date_cols,
            date_action=dates.get("action", "drop"),
            max_shift_days=int(dates.get("max_shift_days", 0)),
            reject_burned_in=bool(
                (data.get("burned_in_annotation") or {}).get("reject_by_default", True)
            ),
            identifying=identifying,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise SpecError(f"{where}: malformed de-identification profile ({exc!r})") from exc
    for attr in carry:
        if attr.kind not in _KINDS:
            raise SpecError(f"{where}: {attr.keyword} has unknown kind {attr.kind!r}")
        # The allow-list must never carry an attribute the confidentiality profile removes.
        if attr.keyword in identifying:
            raise SpecError(
                f"{where}: carries {attr.keyword}, which PS3.15 E.1-1 lists with action "
                f"{identifying[attr.keyword]}"
            )
    if profile.date_action not in ("shift", "drop"):
        raise SpecError(f"{where}: dates.action must be shift or drop")
    if profile.date_action == "shift" and profile.max_shift_days < 1:
        raise SpecError(f"{where}: dates.max_shift_days must be >= 1 when shifting")
    return profile


@cache
def load_deid_profile(path: str | None = None) -> DeidProfile:
    """Load a profile YAML; the bundled `deid_profile.v1.yaml` by default."""
    if path is None:
        from curate.resources import resource_path

        file = resource_path("curation_rules", "deid_profile.v1.yaml")
    else:
        file = Path(path)
    return profile_from_definition(yaml.safe_load(file.read_text()), where=str(file))


def hash_uid(uid: str, salt: str) -> str:
    """Deterministic salted replacement UID in the `2.25.<decimal>` form (ISO/IEC 9834-8).

    HMAC-SHA256 keyed by the salt: without the salt the original UID cannot be confirmed by
    hashing candidates. 128 bits as a decimal keeps it a valid UID (≤ 64 chars).
    """
    digest = hmac.new(salt.encode(), uid.strip().encode(), hashlib.sha256).digest()
    return "2.25." + str(int.from_bytes(digest[:16], "big"))


def pseudonym(value: str, salt: str, prefix: str = "") -> str:
    """A short deterministic salted pseudonym for an identifier (patient id -> subject id)."""
    digest = hmac.new(salt.encode(), value.strip().encode(), hashlib.sha256).hexdigest()
    return f"{prefix}{digest[:20]}"


def date_shift_days(patient_key: str, salt: str, max_days: int) -> int:
    """Days (1..max_days) that every date of this patient moves back; never 0 (0 would leak)."""
    digest = hmac.new(salt.encode(), b"date-shift:" + patient_key.encode(), hashlib.sha256).digest()
    return 1 + int.from_bytes(digest[:8], "big") % max_days


def shift_date(value: str, days: int) -> str | None:
    """`YYYYMMDD` moved back by `days`; None when the value is not a valid DICOM DA."""
    text = str(value).strip()
    try:
        parsed = dt.datetime.strptime(text[:8], "%Y%m%d").date()
    except ValueError:
        return None
    return (parsed - dt.timedelta(days=days)).strftime("%Y%m%d")


def _lookup(ds: Any, keyword: str) -> Any:
    """Top-level value, else the shared functional groups of an enhanced multi-frame object."""
    value = ds.get(keyword)
    if value is not None and value != "":
        return value
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        for item in shared[0]:
            if item.VR == "SQ" and item.value:
                nested = item.value[0].get(keyword)
                if nested is not None and nested != "":
                    return nested
    return None


def _convert(value: Any, kind: str) -> Any:
    if value is None:
        return None
    try:
        if kind == "str":
            text = str(value).strip()
            return text or None
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        items = list(value) if _is_multi(value) else [value]
        if kind == "float_list":
            return [float(v) for v in items]
        return [str(v).strip() for v in items]
    except (TypeError, ValueError):
        return None  # a malformed optional attribute is not carried rather than guessed


def _is_multi(value: Any) -> bool:
    return isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue"


def deidentified_metadata(
    ds: Any, *, salt: str | None = None, profile: DeidProfile | None = None
) -> dict[str, Any]:
    """The allow-listed, de-identified metadata of a pydicom Dataset, as a plain dict."""
    profile = profile or load_deid_profile()
    salt = resolve_salt(salt)
    out: dict[str, Any] = {}
    for attr in profile.carry:
        out[attr.column] = _convert(_lookup(ds, attr.keyword), attr.kind)
    for keyword, column in profile.uid_columns:
        uid = ds.get(keyword)
        out[column] = hash_uid(str(uid), salt) if uid else None
    for keyword, column, prefix in profile.pseudonym_columns:
        value = str(ds.get(keyword, "") or "").strip()
        out[column] = pseudonym(value, salt, prefix) if value else None
    if profile.date_action == "shift":
        days = date_shift_days(str(ds.get("PatientID", "") or ""), salt, profile.max_shift_days)
        for keyword, column in profile.date_columns:
            value = ds.get(keyword)
            out[column] = shift_date(value, days) if value else None
    out["burned_in_annotation"] = str(ds.get("BurnedInAnnotation", "")).strip().upper() == "YES"
    return out


def identifying_values(ds: Any, profile: DeidProfile | None = None) -> dict[str, str]:
    """Values of the profile's identifying attributes present in `ds` (top level and sequences).

    Used to verify outputs: none of these strings may appear in a record or an image file.
    """
    profile = profile or load_deid_profile()
    found: dict[str, str] = {}
    for elem in ds.iterall():
        if elem.keyword in profile.identifying and elem.VR != "SQ" and elem.value not in (None, ""):
            values = elem.value if _is_multi(elem.value) else [elem.value]
            for i, value in enumerate(values):
                text = str(value).strip()
                if text:
                    found[f"{elem.keyword}[{i}]" if i else elem.keyword] = text
    return found


def find_leaks(output: Any, values: Iterable[str], *, min_length: int = 4) -> list[str]:
    """Which `values` occur inside `output` (nested dicts/lists of str, bytes, numbers).

    Values shorter than `min_length` are skipped: a one-letter sex code or a two-digit age
    matches by chance inside any binary blob, so such a hit proves nothing either way.
    """
    needles = {v for v in values if len(v) >= min_length}
    leaks: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(key)
                walk(value)
        elif isinstance(node, (list, tuple, set)):
            for value in node:
                walk(value)
        elif isinstance(node, (bytes, bytearray)):
            blob = bytes(node)
            for needle in needles:
                for encoding in ("utf-8", "utf-16-le"):
                    if needle.encode(encoding, "ignore") in blob:
                        leaks.append(needle)
        elif node is not None:
            text = str(node)
            leaks.extend(n for n in needles if n in text)

    walk(output)
    return sorted(set(leaks))
