"""PHI redaction of report text: each pattern, counts, context kept, no damage to radiology text."""

from __future__ import annotations

import pytest

from curate.errors import SpecError
from curate.parse.phi import PhiRedactor, load_redactor
from curate.parse.reports import parse_report
from curate.sources.radiology import RadiologyOptions, TextFields


@pytest.fixture(scope="module")
def redactor() -> PhiRedactor:
    return load_redactor()


@pytest.mark.parametrize(
    ("text", "expected", "counts"),
    [
        (
            "Discussed with Dr. Smith by telephone at 10:30 AM on 03/14/2019.",
            "Discussed with Dr. ___ by telephone at ___ on ___.",
            {"titled_name": 1, "time": 1, "date": 1},
        ),
        (
            "MRN: 12345678, call (617) 555-1234 or john.doe@example.org",
            "MRN: ___, call ___ or ___",
            {"record_number": 1, "phone": 1, "email": 1},
        ),
        ("Accession number 2019-44321 read.", "Accession number ___ read.", {"record_number": 1}),
        (
            "92 year old man; 45-year-old woman; 93-year-old",
            "___ year old man; 45-year-old woman; ___-year-old",
            {"age_over_89": 2},
        ),
        (
            "Name: John Smith seen Jan 3, 2019",
            "Name: ___ seen ___",
            {"labelled_name": 1, "date": 1},
        ),
        (
            "Seen on 2019-03-14 and 14 March 2019 at 5 p.m.",
            "Seen on ___ and ___ at ___",
            {"date": 2, "time": 1},
        ),
        ("Mrs. O'Neil and Mr. John Q. Public", "Mrs. ___ and Mr. ___", {"titled_name": 2}),
        ("SSN 123-45-6789; see www.example.org/p?id=1", "SSN ___; see ___", {"ssn": 1, "url": 1}),
    ],
)
def test_patterns_redact_and_count(redactor, text, expected, counts):
    result = redactor.redact(text)
    assert result.text == expected
    assert result.counts == counts
    assert result.total == sum(counts.values())


def test_radiology_text_is_left_alone(redactor):
    text = (
        "May be atelectasis. Disc space narrowing at T11-12 and C5-6; 3/4 of the lung; "
        "1:2 ratio; 45 year old; NG tube 10 cm above the carina; ___ placeholder kept; "
        "Impression: no acute process; name: pneumonia."
    )
    result = redactor.redact(text)
    assert result.text == text
    assert result.counts == {}
    assert result.count_structs() == []


def test_count_structs_sorted(redactor):
    result = redactor.redact("Dr. Smith at 10:30 on 1/2/2020")
    assert result.count_structs() == [
        {"pattern": "date", "count": 1},
        {"pattern": "time", "count": 1},
        {"pattern": "titled_name", "count": 1},
    ]


def test_source_placeholders(redactor):
    assert redactor.normalise_placeholders(
        "iu_xray", "XXXX-year-old x-XXXX ComparisXXXX/XXXX at XXXXPM"
    ) == ("___-year-old x-___ Comparis___/___ at ___PM", 5)
    assert redactor.normalise_placeholders("iu_xray", "XXXXXXXX") == ("______", 2)
    # MIMIC already uses the marker: nothing replaced, nothing counted
    assert redactor.normalise_placeholders("mimic_cxr", "___ year old") == ("___ year old", 0)
    assert redactor.normalise_placeholders("unknown_source", "XXXX") == ("XXXX", 0)


def test_bad_pattern_file_is_a_spec_error():
    with pytest.raises(SpecError):
        PhiRedactor.from_dict(
            {"marker": {"value": "___"}, "patterns": [{"name": "x", "regex": "("}]}
        )
    with pytest.raises(SpecError):
        PhiRedactor.from_dict(
            {
                "marker": {"value": "___"},
                "patterns": [{"name": "x", "regex": "a"}, {"name": "x", "regex": "b"}],
            }
        )
    with pytest.raises(SpecError):
        PhiRedactor.from_dict(
            {
                "marker": {"value": "___"},
                "patterns": [{"name": "x", "regex": "a", "flags": ["BOGUS"]}],
            }
        )


REPORT = "FINDINGS: Clear lungs.\nNOTIFICATION: Discussed with Dr. Adams at 10:30 on 03/14/2019.\n"


@pytest.mark.parametrize(
    ("mode", "deidentified", "redacted"),
    [("auto", True, False), ("auto", False, True), ("on", True, True), ("off", False, False)],
)
def test_redaction_runs_only_when_the_source_needs_it(mode, deidentified, redacted):
    fields = TextFields("custom", RadiologyOptions(phi_redaction=mode), deidentified).fields(
        parse_report(REPORT)
    )
    assert fields["phi_redacted"] is redacted
    if redacted:
        assert fields["sections"][1] == {
            "name": "notification",
            "text": "Discussed with Dr. ___ at ___ on ___.",
        }
        assert "Adams" not in fields["report_text"]
        assert fields["text_redaction_counts"] == [
            {"pattern": "date", "count": 1},
            {"pattern": "time", "count": 1},
            {"pattern": "titled_name", "count": 1},
        ]
    else:
        assert fields["sections"][1]["text"] == "Discussed with Dr. Adams at 10:30 on 03/14/2019."
        assert fields["text_redaction_counts"] == []
