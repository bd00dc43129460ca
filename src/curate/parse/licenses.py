"""Normalise licence statements to short codes (`CC BY 4.0`, `CC BY-NC-ND 3.0`, `CC0 1.0`).

Mechanism only: which code family counts as commercial / noncommercial is policy, read from
`curation_rules/licenses.v1.yaml`. Inputs come in many shapes (a Creative Commons URL in
`xlink:href` or `<ali:license_ref>`, a `license-type` attribute such as `CC BY-NC-ND`, a URL or
a phrase inside the licence text, PMC Cloud's `license_code`, the legacy file list's
`License` column); `normalise_license` tries the machine-readable ones first.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import yaml

from curate.resources import resource_path

_CC_URL = re.compile(
    r"creativecommons\.org/(?:licenses|licences)/(?P<parts>[a-z-]+)(?:/(?P<ver>\d(?:\.\d)?))?",
    re.IGNORECASE,
)
_CC0_URL = re.compile(r"creativecommons\.org/publicdomain/zero/(?P<ver>\d\.\d)", re.IGNORECASE)
_PDM_URL = re.compile(r"creativecommons\.org/publicdomain/mark/(?P<ver>\d\.\d)", re.IGNORECASE)
# "CC BY-NC-ND 4.0", "CC-BY", "CC BY NC", "CC0"
_CC_CODE = re.compile(
    r"\bCC[\s-]?(?P<zero>0|zero)\b(?:\s*(?P<zver>\d\.\d))?"
    r"|\bCC[\s-]BY(?P<parts>(?:[\s-](?:NC|ND|SA)\b)*)(?:\s*(?P<ver>\d\.\d))?",
    re.IGNORECASE,
)
# "Creative Commons Attribution-NonCommercial-NoDerivatives 4.0 International License"
_CC_PHRASE = re.compile(
    r"Creative\s+Commons\s+(?P<body>Attribution[^.;()]{0,80}?)(?=License|Licence|Public|\(|\.|;|,\s|$)",
    re.IGNORECASE,
)
_VERSION = re.compile(r"\b(\d\.\d)\b")


@dataclass(frozen=True)
class License:
    code: str  # e.g. "CC BY-NC-ND 4.0"; family name without version is `base`
    base: str  # e.g. "CC BY-NC-ND"
    url: str | None = None


def _cc_from_parts(parts: list[str], version: str | None, url: str | None) -> License | None:
    order = ["by", "nc", "sa", "nd"]
    parts = [p.lower() for p in parts if p]
    if "by" not in parts:
        return None
    if any(p not in order for p in parts):
        return None
    # Canonical CC naming: BY, then NC, then ND or SA.
    suffix = [p.upper() for p in ("nc", "nd", "sa") if p in parts]
    base = "-".join(["CC BY", *suffix]) if suffix else "CC BY"
    return License(f"{base} {version}" if version else base, base, url)


def license_from_url(url: str) -> License | None:
    """A Creative Commons licence or public-domain tool URL, or None."""
    if m := _CC0_URL.search(url):
        return License(f"CC0 {m['ver']}", "CC0", url)
    if m := _PDM_URL.search(url):
        return License(f"PDM {m['ver']}", "PDM", url)
    if m := _CC_URL.search(url):
        return _cc_from_parts(m["parts"].split("-"), _normal_version(m["ver"]), url)
    return None


def _normal_version(ver: str | None) -> str | None:
    if not ver:
        return None
    return ver if "." in ver else f"{ver}.0"


def license_from_code(text: str) -> License | None:
    """Codes like `CC BY-NC-ND`, `CC-BY 4.0`, `CC0` (PMC Cloud `license_code`, license-type)."""
    m = _CC_CODE.search(text)
    if not m:
        return None
    if m["zero"]:
        return License(f"CC0 {m['zver']}" if m["zver"] else "CC0", "CC0")
    parts = ["by", *re.split(r"[\s-]+", (m["parts"] or "").strip(" -"))]
    return _cc_from_parts(parts, m["ver"], None)


def license_from_phrase(text: str) -> License | None:
    """Prose such as 'Creative Commons Attribution-NonCommercial 4.0 International License'."""
    m = _CC_PHRASE.search(text)
    if not m:
        return None
    body = m["body"].lower().replace(" ", "").replace("-", "")
    parts = ["by"]
    if "noncommercial" in body:
        parts.append("nc")
    if "noderiv" in body:
        parts.append("nd")
    if "sharealike" in body:
        parts.append("sa")
    # The lazy body stops at the first "." (the one inside "4.0"): look a little further.
    ver = _VERSION.search(text, m.start("body"), m.end() + 8)
    return _cc_from_parts(parts, ver.group(1) if ver else None, None)


_URL_IN_TEXT = re.compile(r"https?://[^\s\"'<>)]+", re.IGNORECASE)


def normalise_license(
    *,
    hrefs: Sequence[str] = (),
    license_types: Sequence[str] = (),
    text: str = "",
    code: str | None = None,
) -> License | None:
    """The first licence recognised, most machine-readable evidence first."""
    for href in hrefs:
        if href and (lic := license_from_url(href)):
            return lic
    for url in _URL_IN_TEXT.findall(text or ""):
        if lic := license_from_url(url):
            return lic
    for kind in license_types:
        if kind and (lic := license_from_code(kind)):
            return lic
    if text:
        if lic := license_from_phrase(text):
            return lic
        if lic := license_from_code(text):
            return lic
    if code and (lic := license_from_code(code)):
        return lic
    return None


@dataclass(frozen=True)
class LicensePolicy:
    family_of_base: dict[str, str]
    other: str
    none: str

    def family(self, lic: License | None, *, stated: bool) -> str:
        """Usage family of a licence; `stated` says whether any licence statement existed."""
        if lic is not None:
            return self.family_of_base.get(lic.base, self.other)
        return self.other if stated else self.none


@cache
def load_license_policy(ref: str = "licenses.v1") -> LicensePolicy:
    data = yaml.safe_load(resource_path("curation_rules", f"{ref}.yaml").read_text())
    family_of_base = {
        code: family for family, spec in data["families"].items() for code in spec["codes"]
    }
    return LicensePolicy(
        family_of_base, data["other_family"]["value"], data["none_family"]["value"]
    )
