"""Licence normalisation: PMC Cloud codes, legacy file-list values, URLs and prose."""

from __future__ import annotations

import pytest

from curate.parse.licenses import load_license_policy, normalise_license


@pytest.mark.parametrize(
    ("code", "expected", "family"),
    [
        ("CC0", "CC0", "commercial"),
        ("CC BY", "CC BY", "commercial"),
        ("CC BY-SA", "CC BY-SA", "commercial"),
        ("CC BY-ND", "CC BY-ND", "commercial"),
        ("CC BY-NC", "CC BY-NC", "noncommercial"),
        ("CC BY-NC-SA", "CC BY-NC-SA", "noncommercial"),
        ("CC BY-NC-ND", "CC BY-NC-ND", "noncommercial"),
        ("cc-by-nc-nd 4.0", "CC BY-NC-ND 4.0", "noncommercial"),
        ("TDM", None, "other"),
        ("NO-CC CODE", None, "other"),
    ],
)
def test_metadata_codes(code: str, expected: str | None, family: str) -> None:
    lic = normalise_license(code=code)
    assert (lic.code if lic else None) == expected
    assert load_license_policy().family(lic, stated=True) == family


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://creativecommons.org/licenses/by/2.0", "CC BY 2.0"),
        ("https://creativecommons.org/licenses/by-nc-sa/4.0/legalcode", "CC BY-NC-SA 4.0"),
        ("http://creativecommons.org/licenses/by-nd-nc/1.0/", "CC BY-NC-ND 1.0"),
        ("http://creativecommons.org/licenses/by/3", "CC BY 3.0"),
        ("https://creativecommons.org/publicdomain/zero/1.0/", "CC0 1.0"),
        ("http://creativecommons.org/publicdomain/mark/1.0/", "PDM 1.0"),
        ("https://www.elsevier.com/open-access/userlicense/1.0/", None),
    ],
)
def test_urls(url: str, expected: str | None) -> None:
    lic = normalise_license(hrefs=[url])
    assert (lic.code if lic else None) == expected


def test_url_wins_over_prose_and_type() -> None:
    lic = normalise_license(
        hrefs=["http://creativecommons.org/licenses/by-nc/3.0/"],
        license_types=["CC BY"],
        text="Creative Commons Attribution License",
    )
    assert lic is not None and (lic.code, lic.url) == (
        "CC BY-NC 3.0",
        "http://creativecommons.org/licenses/by-nc/3.0/",
    )


def test_no_statement_is_family_none() -> None:
    assert normalise_license() is None
    assert load_license_policy().family(None, stated=False) == "none"
