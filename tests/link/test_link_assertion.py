"""Assertion rules (curation_rules/linking/assertion.v1.yaml), each with real report sentences.

Sentences are taken verbatim from ../shared/realdata/reports (IU X-ray CSV, chexpert-labeler
samples, the MIMIC-CXR example); each test first checks the sentence is really in those files.
Rules that no real sentence there exercises ("no increase", "not only", "but") use sentences
written in the same style, in the inline tests at the end.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from curate.enrich.link.assertion import (
    ABSENT,
    PRESENT,
    UNCERTAIN,
    AssertionDetector,
    AssertionRules,
)
from curate.errors import SpecError


@pytest.fixture(scope="module")
def detector() -> AssertionDetector:
    return AssertionDetector()


@pytest.fixture(scope="module")
def report_text(realdata: Path) -> str:
    reports = realdata / "reports"
    parts = [
        (reports / "iu_xray" / "indiana_reports.csv").read_text(encoding="utf-8"),
        (reports / "chexpert_labeler" / "sample_reports.csv").read_text(encoding="utf-8"),
        (reports / "mimic_cxr" / "website_example_report.txt").read_text(encoding="utf-8"),
    ]
    return "\n".join(parts)


def check(detector, sentence: str, expected: dict[str, str]) -> None:
    spans = []
    for mention in expected:
        start = sentence.index(mention)
        spans.append((start, start + len(mention)))
    got = dict(zip(expected, detector.assert_spans(sentence, spans)))
    assert got == expected


REAL_CASES = [
    # negation, forward ("no", "no evidence of", "without evidence of"), over comma lists
    ("There is no evidence of pneumothorax.", {"pneumothorax": ABSENT}),
    (
        "No displaced rib fractures, pneumothorax, or pleural effusion identified.",
        {"rib fractures": ABSENT, "pneumothorax": ABSENT, "pleural effusion": ABSENT},
    ),
    (
        "The lungs are normally inflated without evidence of focal airspace disease, pleural "
        "effusion, or pneumothorax.",
        {"lungs": PRESENT, "airspace disease": ABSENT, "pneumothorax": ABSENT},
    ),
    (
        "Heart size normal and lungs are clear. No edema or pneumonia. No effusion",
        {"Heart": PRESENT, "edema": ABSENT, "pneumonia": ABSENT, "effusion": ABSENT},
    ),
    ("There is no pneumothorax.", {"pneumothorax": ABSENT}),
    ("Resolution of right effusion and infiltrate.", {"effusion": ABSENT, "infiltrate": ABSENT}),
    # negation, backward ("has resolved", "is not seen")
    ("Previously seen left pleural effusion has resolved.", {"pleural effusion": ABSENT}),
    ("The left apical pneumothorax has resolved.", {"pneumothorax": ABSENT}),
    (
        "The previously seen right upper lobe mass lesion is not seen in XXXX study.",
        {"mass lesion": ABSENT},
    ),
    # a finding before "without" stays present; the one after is absent
    ("2. Cardiomegaly without overt edema.", {"Cardiomegaly": PRESENT, "edema": ABSENT}),
    # uncertainty, forward
    ("Cannot exclude early pulmonary edema.", {"pulmonary edema": UNCERTAIN}),
    ("Possible pneumonia.", {"pneumonia": UNCERTAIN}),
    (
        "This may represent resolving or developing pneumonia given the patient's history.",
        {"pneumonia": UNCERTAIN},
    ),
    (
        "XXXX right upper lobe mass, suspicious for neoplasm.",
        {"mass": PRESENT, "neoplasm": UNCERTAIN},
    ),
    (
        "Minimal patchy airspace disease within the lingula, may reflect atelectasis or "
        "consolidation.",
        {"atelectasis": UNCERTAIN, "consolidation": UNCERTAIN},
    ),
    ("There is mild diffuse interstitial prominence suggestive of edema.", {"edema": UNCERTAIN}),
    ("INDICATION:  ___ year old woman with ?pleural effusion", {"pleural effusion": UNCERTAIN}),
    # uncertainty, backward ("cannot be excluded") and both ways ("versus")
    ("A subtle infiltrate cannot be excluded.", {"infiltrate": UNCERTAIN}),
    ("Metastatic disease cannot be excluded.", {"Metastatic disease": UNCERTAIN}),
    (
        "Patchy right lower lobe infiltrate as well as probable left basilar infiltrate versus "
        "atelectasis.",
        {"basilar infiltrate": UNCERTAIN, "atelectasis": UNCERTAIN},
    ),
    # pseudo-triggers: "no change in", "no interval change", "without change", "no significant change"
    (
        "No change in moderate left pneumothorax with left pleural drainage catheter again seen "
        "overlying the left upper lung.",
        {"pneumothorax": PRESENT, "catheter": PRESENT},
    ),
    ("No change in the small calcified right upper lobe nodule.", {"nodule": PRESENT}),
    (
        "No interval change in the appearance of the XXXX opacities in the bilateral lower lobes.",
        {"opacities": PRESENT},
    ),
    (
        "Again, a chronic increased pulmonary markings are seen without change.",
        {"pulmonary markings": PRESENT},
    ),
    (
        "No significant change in pneumothorax or right pleural fluid.",
        {"pneumothorax": PRESENT, "pleural fluid": PRESENT},
    ),
    # terminators: a semicolon ends the scope of "no"
    (
        "Pt is pre-op R carotid artery repair; XXXX XXXX XXXX/XXXX/SOB; no Hx smoking; XXXX XXXX L "
        "carotid artery repair in XXXX",
        {"smoking": ABSENT, "L carotid artery repair": PRESENT},
    ),
    # sentence end ends every scope
    (
        "There is no pneumothorax.  There are mild degenerative changes in the thoracic spine",
        {"pneumothorax": ABSENT, "degenerative changes": PRESENT},
    ),
    ("Large left pleural effusion is new.", {"pleural effusion": PRESENT}),
]


@pytest.mark.realdata
@pytest.mark.parametrize(("sentence", "expected"), REAL_CASES, ids=[c[0][:40] for c in REAL_CASES])
def test_real_report_sentences(detector, report_text, sentence, expected):
    assert " ".join(sentence.split()) in " ".join(report_text.split())
    check(detector, sentence, expected)


INLINE_CASES = [
    ("No increase in the small left pleural effusion.", {"pleural effusion": PRESENT}),
    (
        "Not only atelectasis but also consolidation in the left base.",
        {"atelectasis": PRESENT, "consolidation": PRESENT},
    ),
    (
        "No pneumothorax, but a small left pleural effusion is present.",
        {"pneumothorax": ABSENT, "pleural effusion": PRESENT},
    ),
    (
        "No pleural effusion; mild cardiomegaly.",
        {"pleural effusion": ABSENT, "cardiomegaly": PRESENT},
    ),
    (
        "No consolidation, however there is a new nodule.",
        {"consolidation": ABSENT, "nodule": PRESENT},
    ),
    ("Pneumonia cannot be excluded.", {"Pneumonia": UNCERTAIN}),
    ("No definite pneumothorax.", {"pneumothorax": ABSENT}),
    ("Absent radius is a known phenotype.", {"Absent radius": PRESENT}),
]


@pytest.mark.parametrize(
    ("sentence", "expected"), INLINE_CASES, ids=[c[0][:40] for c in INLINE_CASES]
)
def test_rules_without_a_real_sentence(detector, sentence, expected):
    check(detector, sentence, expected)


def test_scope_stops_after_the_token_limit(detector):
    words = " ".join(["word"] * 20)
    sentence = f"No {words} pneumothorax."
    start = sentence.index("pneumothorax")
    assert detector.assert_spans(sentence, [(start, start + 12)]) == [PRESENT]


def test_unquoted_yaml_boolean_trigger_is_refused(tmp_path):
    rules = tmp_path / "assertion.yaml"
    rules.write_text(
        "name: t.v1\nscope: {max_tokens_forward: {value: 5}, max_tokens_backward: {value: 3}}\n"
        "negated: {forward: {phrases: [no]}}\nuncertain: {}\n"
        "pseudo: {phrases: []}\nterminators: {phrases: []}\n"
    )
    with pytest.raises(SpecError, match="is not a string"):
        AssertionRules.load(rules)
