"""Report sectioning: real MIMIC-CXR example, real IU X-ray rows, real CheXpert-labeler
impressions, and synthetic MIMIC-style reports with the quirks seen in the field."""

from __future__ import annotations

import csv

import pytest

from curate.demo.radiology import mimic_layout
from curate.errors import EmptyInput, NotUTF8, SpecError
from curate.parse.phi import load_redactor
from curate.parse.reports import (
    SectionLexicon,
    decode_report,
    load_lexicon,
    parse_report,
    parse_report_bytes,
    sections_from_fields,
)


def names_texts(parsed):
    return [(s.name, s.text) for s in parsed.sections]


@pytest.mark.realdata
def test_real_mimic_website_example_exact_sections(realdata):
    data = (realdata / "reports/mimic_cxr/website_example_report.txt").read_bytes()
    parsed = parse_report_bytes(data)
    assert parsed.has_sections is True
    assert names_texts(parsed) == [
        ("examination", "CHEST (PA AND LAT)"),
        ("indication", "___ year old woman with ?pleural effusion // ?pleural effusion"),
        ("technique", "Chest PA and lateral"),
        ("comparison", "___"),
        (
            "findings",
            "Cardiac size cannot be evaluated. Large left pleural effusion is new. Small "
            "right effusion is new. The upper lungs are clear. Right lower lobe opacities "
            "are better seen in prior CT. There is no pneumothorax. There are mild "
            "degenerative changes in the thoracic spine",
        ),
        ("impression", "Large left pleural effusion"),
    ]
    columns = parsed.convenience_columns()
    assert columns["history"] is None
    assert columns["impression"] == "Large left pleural effusion"
    assert parsed.report_text.startswith(
        "                                 FINAL REPORT\n EXAMINATION:"
    )
    assert parsed.notes == []


def _iu_rows(realdata):
    with open(realdata / "reports/iu_xray/indiana_reports.csv", newline="", encoding="utf-8") as f:
        return {row["uid"]: row for row in csv.DictReader(f)}


def _iu_parse(row):
    redactor = load_redactor()
    fields = [
        (name, redactor.normalise_placeholders("iu_xray", row[column])[0])
        for name, column in (
            ("examination", "image"),
            ("indication", "indication"),
            ("comparison", "comparison"),
            ("findings", "findings"),
            ("impression", "impression"),
        )
    ]
    return sections_from_fields(fields)


@pytest.mark.realdata
def test_real_iu_rows_exact_sections(realdata):
    rows = _iu_rows(realdata)
    assert names_texts(_iu_parse(rows["1"])) == [
        ("examination", "Xray Chest PA and Lateral"),
        ("indication", "Positive TB test"),
        ("comparison", "None."),
        (
            "findings",
            "The cardiac silhouette and mediastinum size are within normal limits. There "
            "is no pulmonary edema. There is no focal consolidation. There are no ___ of a "
            "pleural effusion. There is no evidence of pneumothorax.",
        ),
        ("impression", "Normal chest x-___."),
    ]
    # uid 3: empty comparison and findings are left out, never kept as empty sections
    assert names_texts(_iu_parse(rows["3"])) == [
        ("examination", "Xray Chest PA and Lateral"),
        (
            "indication",
            "rib pain after a ___, ___ ___ steps this ___. Pain to R back, R elbow and R "
            "rib ___, no previous heart or lung hx, non-___, no hx ca",
        ),
        (
            "impression",
            "No displaced rib fractures, pneumothorax, or pleural effusion identified. "
            "Well-expanded and clear lungs. Mediastinal contour within normal limits. "
            "No acute cardiopulmonary abnormality identified.",
        ),
    ]
    parsed4 = _iu_parse(rows["4"])
    assert names_texts(parsed4)[:3] == [
        ("examination", "PA and lateral views of the chest ___, ___ at ___ hours"),
        ("indication", "___-year-old ___ with ___."),
        ("comparison", "None available"),
    ]
    assert parsed4.convenience_columns()["impression"].startswith(
        "1. Bullous emphysema and interstitial fibrosis. 2. Probably scarring"
    )
    parsed9 = _iu_parse(rows["9"])
    assert parsed9.convenience_columns()["comparison"] == (
        "CT ___ image ___, CT abdomen which included the lower thorax ___."
    )
    assert parsed9.convenience_columns()["impression"].endswith(
        "discussed ___. ___ by Dr. ___ ___ telephone at ___ p.m. ___/___. "
        "Dr. ___<___>technologist receipt of the results."
    )
    assert parsed9.report_text.startswith(
        "EXAMINATION: Xray Chest PA and Lateral\n\nINDICATION: Chest pain today."
    )


@pytest.mark.realdata
def test_real_chexpert_impressions_have_no_sections(realdata):
    with open(
        realdata / "reports/chexpert_labeler/sample_reports.csv", newline="", encoding="utf-8"
    ) as f:
        texts = [row[0] for row in csv.reader(f)]
    parsed = [parse_report(t) for t in texts]
    assert [p.has_sections for p in parsed] == [False, False, False, False]
    assert [names_texts(p) for p in parsed] == [
        [("text", "Heart size normal and lungs are clear. No edema or pneumonia. No effusion")],
        [
            (
                "text",
                "1. Left pleural effusion with adjacent atelectasis. Right effusion is also "
                "present.\n\n2. Cardiomegaly without overt edema.",
            )
        ],
        [
            (
                "text",
                "Minimal patchy airspace disease within the lingula, may reflect atelectasis "
                "or consolidation.",
            )
        ],
        [("text", "1. Stable mild cardiomegaly. 2. Hyperexpanded but clear lungs.")],
    ]
    assert parsed[0].convenience_columns()["impression"] is None


TYPOS = mimic_layout(
    """\
                                FINAL REPORT
NDICATION:  History: ___M with shortness of breath

COMPARISION:  Chest radiograph from ___.

FINDNGS:

Moderate cardiomegaly is unchanged.  Mild interstitial edema has slightly
improved.

IMPRESSON:

Improving mild pulmonary edema.

CONCLUSION:  See above.
"""
)


def test_typos_map_to_canonical_sections_and_ndication_is_indication():
    parsed = parse_report(TYPOS)
    assert names_texts(parsed) == [
        ("indication", "History: ___M with shortness of breath"),
        ("comparison", "Chest radiograph from ___."),
        (
            "findings",
            "Moderate cardiomegaly is unchanged. Mild interstitial edema has slightly improved.",
        ),
        ("impression", "Improving mild pulmonary edema."),
        ("impression", "See above."),
    ]
    # repeated sections are joined in the convenience column, in document order
    assert (
        parsed.convenience_columns()["impression"]
        == "Improving mild pulmonary edema.\n\nSee above."
    )
    # 'History:' mid-line is text, not a header
    assert parsed.convenience_columns()["history"] is None


ADDENDUM = mimic_layout(
    """\
                                FINAL ADDENDUM
ADDENDUM:  Findings were discussed with Dr. ___ by telephone at 4:10 p.m. on
___, at the time of the addendum.
IMPRESSION:  corrected impression.

______________________________________________________________________________
                                FINAL REPORT
EXAMINATION:  CHEST (PORTABLE AP)

INDICATION:  ___ with new line placement.

IMPRESSION:

Line in appropriate position.  No pneumothorax.
"""
)


def test_addendum_above_underscore_line_is_one_section_and_keeps_its_headers():
    parsed = parse_report(ADDENDUM)
    assert names_texts(parsed) == [
        (
            "addendum",
            "Findings were discussed with Dr. ___ by telephone at 4:10 p.m. on ___, at "
            "the time of the addendum.\n\nIMPRESSION: corrected impression.",
        ),
        ("examination", "CHEST (PORTABLE AP)"),
        ("indication", "___ with new line placement."),
        ("impression", "Line in appropriate position. No pneumothorax."),
    ]
    assert (
        parsed.convenience_columns()["impression"]
        == "Line in appropriate position. No pneumothorax."
    )
    assert parsed.notes == ["addendum"]


WET_READ = mimic_layout(
    """\
WET READ: ___ ___ 9:14 PM
 Small left pleural effusion.
______________________________________________________________________________
                                FINAL REPORT
CLINICAL HISTORY:  ___ year old woman with dyspnea.

PORTABLE UPRIGHT VIEW:  Single frontal view of the chest.

FINDINGS AND IMPRESSION:  Small left pleural effusion with adjacent
atelectasis.

RECOMMENDATION(S):  Follow-up radiograph after treatment.
Note: patient was moving.
Dr. Smith: called.
"""
)


def test_wet_read_unknown_header_combined_section_and_mixed_case():
    parsed = parse_report(WET_READ)
    assert names_texts(parsed) == [
        ("wet_read", "___ ___ 9:14 PM Small left pleural effusion."),
        ("history", "___ year old woman with dyspnea."),
        ("portable_upright_view", "Single frontal view of the chest."),
        ("findings_impression", "Small left pleural effusion with adjacent atelectasis."),
        ("recommendation", "Follow-up radiograph after treatment."),
        ("comment", "patient was moving. Dr. Smith: called."),
    ]
    columns = parsed.convenience_columns()
    assert columns["impression"] == "Small left pleural effusion with adjacent atelectasis."
    assert columns["findings"] is None
    assert parsed.notes == ["wet_read", "unknown_header:portable_upright_view"]


def test_unwrap_keeps_list_items_and_paragraphs_and_crlf():
    text = "FINDINGS:\r\n  Heart is\r\n  normal.\r\n\r\n  Lungs clear.\r\nIMPRESSION:\r\n 1. No acute\r\n process.\r\n 2. Stable.\r\n"
    parsed = parse_report(text)
    assert names_texts(parsed) == [
        ("findings", "Heart is normal.\n\nLungs clear."),
        ("impression", "1. No acute process.\n2. Stable."),
    ]
    assert (
        parsed.report_text
        == "FINDINGS:\n  Heart is\n  normal.\n\n  Lungs clear.\nIMPRESSION:\n 1. No acute\n process.\n 2. Stable."
    )


def test_preamble_before_first_header_is_kept():
    parsed = parse_report("CHEST RADIOGRAPH OF ___\nFINDINGS: clear.\n")
    assert names_texts(parsed) == [("preamble", "CHEST RADIOGRAPH OF ___"), ("findings", "clear.")]


def test_shouting_and_short_caps_are_not_headers():
    parsed = parse_report(
        "FINDINGS: see below\nAP: upright view.\n"
        "THE PATIENT IS VERY SICK AND COULD NOT STAND: portable film.\n"
    )
    assert names_texts(parsed) == [
        (
            "findings",
            "see below AP: upright view. THE PATIENT IS VERY SICK AND COULD NOT STAND: portable film.",
        ),
    ]


def test_bytes_bad_inputs():
    with pytest.raises(EmptyInput):
        decode_report(b"")
    with pytest.raises(EmptyInput):
        parse_report_bytes(b"  \n \r\n")
    with pytest.raises(NotUTF8) as info:
        parse_report_bytes("FINDINGS: effusion \u2013 small".encode("cp1252"))
    assert info.value.reason == "not_utf8"
    assert "0x96" in str(info.value)
    assert decode_report(b"\xef\xbb\xbfFINDINGS: ok") == "FINDINGS: ok"


def test_lexicon_refuses_a_header_mapped_twice():
    data = {
        "canonical": {
            "findings": {"synonyms": ["finding"]},
            "impression": {"synonyms": ["finding"]},
        },
        "title_lines": [],
        "preamble_section": "preamble",
        "unsectioned_section": "text",
        "header_rules": {
            "unknown_header_max_words": {"value": 6},
            "unknown_header_min_chars": {"value": 3},
            "mixed_case_headers": {"value": "known_only"},
            "addendum_separator_min_underscores": {"value": 10},
        },
    }
    with pytest.raises(SpecError):
        SectionLexicon.from_dict(data, "test")


def test_shipped_lexicon_loads_and_knows_mimic_synonyms():
    lexicon = load_lexicon()
    assert lexicon.canonical_name("CONCLUSION") == "impression"
    assert lexicon.canonical_name("ndication") == "indication"
    assert lexicon.canonical_name("Reason for examination") == "indication"
    assert lexicon.canonical_name("CLINICAL  HISTORY") == "history"
    assert lexicon.canonical_name("FINDINGS/IMPRESSION") == "findings_impression"
    assert lexicon.canonical_name("RECOMMENDATION(S)") == "recommendation"
    assert lexicon.canonical_name("CONCUSION") == "impression"
    assert lexicon.canonical_name("PA AND LATERAL VIEWS OF THE CHEST") == "findings"
    assert lexicon.canonical_name("PFI") == "wet_read"
    assert lexicon.canonical_name("whatever") is None


def test_sections_from_fields_rejects_all_empty():
    with pytest.raises(EmptyInput):
        sections_from_fields([("findings", ""), ("impression", "  ")])


def test_glued_known_header_and_hostile_lines():
    parsed = parse_report("FINDINGS:The lungs are clear.\nAB:CD is text.\n" + " " * 200_000 + "x\n")
    assert names_texts(parsed) == [("findings", "The lungs are clear. AB:CD is text. x")]
    with pytest.raises(EmptyInput):
        parse_report("____________________\n   \n____________________\n")
    long_line = "A" + " " * 1_000_000 + ":"
    assert parse_report(long_line).has_sections is False
