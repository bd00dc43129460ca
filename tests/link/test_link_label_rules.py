"""Report-label rules of issue 15, one construction per test (assertion.v2, label sets v2).

Each test states a construction in a few made-up sentences, not a copy of one report, so a
rule that only fits one example fails here.
"""

from __future__ import annotations

import pytest

from curate.enrich.link.assertion import AssertionDetector, AssertionRules
from curate.enrich.link.config import LinkConfig
from curate.enrich.link.labels import LabelSet, ReportLabeler
from curate.enrich.link.stage import LinkStage
from curate.resources import resource_path


@pytest.fixture(scope="module")
def cxr14() -> ReportLabeler:
    return ReportLabeler(LabelSet.load("chestxray14"), AssertionDetector())


@pytest.fixture(scope="module")
def chexpert() -> ReportLabeler:
    return ReportLabeler(LabelSet.load("chexpert14"), AssertionDetector())


def value(labeler: ReportLabeler, text: str, observation: str) -> str:
    return labeler.label({"findings": text}, [])[observation]


# ---- uncertainty phrasings ----


@pytest.mark.parametrize(
    ("text", "observation"),
    [
        ("Superimposed pneumonia would be a consideration.", "Pneumonia"),
        ("Right basilar opacity; pneumonia is in the differential.", "Pneumonia"),
        ("Overlying breast tissue could obscure a small nodule.", "Nodule"),
        ("It is difficult to exclude a small left effusion.", "Effusion"),
        ("It would be difficult to completely exclude a superimposed pneumonia.", "Pneumonia"),
        ("Evaluation for pneumothorax is limited by the supine technique.", "Pneumothorax"),
        ("Basilar opacity maybe due to atelectasis.", "Atelectasis"),
        ("Considerations could include edema.", "Edema"),
        ("The differential considerations include infiltrate.", "Infiltration"),
        ("There is a suggestion of a right apical pneumothorax.", "Pneumothorax"),
    ],
)
def test_hedges_make_the_finding_uncertain(cxr14, text, observation):
    assert value(cxr14, text, observation) == "uncertain"


def test_likely_and_probably_commit_while_possible_hedges(cxr14):
    assert value(cxr14, "Opacity, likely atelectasis.", "Atelectasis") == "positive"
    assert value(cxr14, "Airspace disease, most likely pneumonia.", "Pneumonia") == "positive"
    assert value(cxr14, "Opacity probably representing atelectasis.", "Atelectasis") == "positive"
    assert value(cxr14, "Opacity, possible atelectasis.", "Atelectasis") == "uncertain"
    assert value(cxr14, "Opacity, probable pneumonia.", "Pneumonia") == "uncertain"
    assert value(cxr14, "Pneumonia is less likely.", "Pneumonia") == "uncertain"


def test_two_findings_joined_by_or_hedge_each_other(cxr14):
    text = "Left basilar opacity, atelectasis or infiltrate."
    assert value(cxr14, text, "Atelectasis") == "uncertain"
    assert value(cxr14, text, "Infiltration") == "uncertain"
    assert value(cxr14, "Mass and/or nodule in the right apex.", "Mass") == "uncertain"
    # a negated list stays negated
    assert value(cxr14, "No effusion or pneumothorax.", "Pneumothorax") == "negative"
    # an "or" that does not join two findings hedges nothing
    assert value(cxr14, "Small effusion, left or right unclear.", "Effusion") == "positive"


def test_not_well_seen_hedges(cxr14):
    assert value(cxr14, "The small effusion is not well seen.", "Effusion") == "uncertain"


# ---- negation scope ----


def test_forward_negation_ends_where_a_closing_verb_ends_the_clause(cxr14):
    for closer in ("seen", "identified", "noted"):
        text = f"No definite effusion {closer}, left hilar nodule."
        assert value(cxr14, text, "Nodule") == "positive", text
        assert value(cxr14, text, "Effusion") == "negative", text


def test_a_closing_verb_right_after_the_trigger_keeps_the_negation(cxr14):
    assert value(cxr14, "No visualized pneumothorax.", "Pneumothorax") == "negative"
    assert value(cxr14, "No identified effusion.", "Effusion") == "negative"


def test_with_ends_a_negation(cxr14):
    text = "No cardiomegaly with bilateral effusions."
    assert value(cxr14, text, "Cardiomegaly") == "negative"
    assert value(cxr14, text, "Effusion") == "positive"
    # "without" still negates what follows it
    assert value(cxr14, "Cardiomegaly without edema.", "Edema") == "negative"


def test_previously_seen_does_not_end_a_negation(cxr14):
    text = "Interval resolution of the previously seen bibasilar infiltrates."
    assert value(cxr14, text, "Infiltration") == "negative"


def test_plural_post_negation_covers_a_long_list(cxr14):
    text = (
        "The right pleural effusion, the left basilar atelectasis and the patchy lingular "
        "consolidation have cleared."
    )
    for observation in ("Effusion", "Atelectasis", "Consolidation"):
        assert value(cxr14, text, observation) == "negative", observation
    # a singular post-negation keeps the short window: the earlier clause is not negated
    text = (
        "Cardiomegaly is again demonstrated with stable mild tortuosity and the effusion resolved."
    )
    assert value(cxr14, text, "Cardiomegaly") == "positive"


@pytest.mark.parametrize(
    "phrase",
    [
        "without significant interval change of",
        "without interval change of",
        "without appreciable change in",
        "with no significant interval change in",
    ],
)
def test_unchanged_findings_are_present(cxr14, phrase):
    text = f"There is redemonstration {phrase} the mild left basilar atelectasis."
    assert value(cxr14, text, "Atelectasis") == "positive"


# ---- lexicon ----


@pytest.mark.parametrize(
    "text",
    [
        "Interlobar fissural thickening.",
        "Mild thickening of the minor fissure.",
        "The right major fissure is thickened.",
        "Biapical pleural capping.",
        "Stable left apical capping.",
    ],
)
def test_fissural_thickening_and_apical_capping_are_pleural_thickening(cxr14, chexpert, text):
    assert value(cxr14, text, "Pleural_Thickening") == "positive"
    assert value(chexpert, text, "Pleural Other") == "positive"


@pytest.mark.parametrize(
    "text",
    [
        "Borderline cardiomegaly.",
        "Heart size is borderline.",
        "Heart size is at the upper limits of normal.",
        "The cardiac silhouette is near upper limits of normal in size.",
        "Heart size upper normal.",
        "The heart is top normal in size.",
    ],
)
def test_borderline_or_upper_normal_heart_size_is_cardiomegaly(cxr14, chexpert, text):
    assert value(cxr14, text, "Cardiomegaly") == "positive"
    assert value(chexpert, text, "Cardiomegaly") == "positive"


def test_normal_heart_size_stays_negative(cxr14):
    assert value(cxr14, "Heart size is within normal limits.", "Cardiomegaly") == "negative"
    assert value(cxr14, "Heart size normal. Borderline low lung volumes.", "Cardiomegaly") == (
        "negative"
    )


@pytest.mark.parametrize(
    ("text", "observation"),
    [
        ("Reticulonodular opacities in both upper lobes.", "Nodule"),
        ("Fibronodular scarring at the apices.", "Nodule"),
        ("Fibronodular scarring at the apices.", "Fibrosis"),
        ("Scattered micronodules.", "Nodule"),
        ("Masslike opacity in the right hilum.", "Mass"),
        ("Mass-like opacity in the right hilum.", "Mass"),
        ("Complete collapse of the left lower lobe.", "Atelectasis"),
        ("The right upper lobe is collapsed.", "Atelectasis"),
    ],
)
def test_lexicon_gaps_are_filled(cxr14, text, observation):
    assert value(cxr14, text, observation) == "positive"


@pytest.mark.parametrize(
    ("text", "observation"),
    [
        ("History of cystic fibrosis.", "Fibrosis"),
        ("Soft tissue edema of the chest wall.", "Edema"),
        ("Edema of the soft tissues.", "Edema"),
        ("Large pericardial mass.", "Mass"),
        ("Small left hydropneumothorax.", "Effusion"),
        ("Partial collapse of the T12 vertebral body.", "Atelectasis"),
        ("Vertebral body collapse at L1.", "Atelectasis"),
    ],
)
def test_over_reaching_phrases_name_no_finding(cxr14, text, observation):
    assert value(cxr14, text, observation) == "not_mentioned"


def test_hydropneumothorax_is_still_a_pneumothorax(cxr14):
    assert value(cxr14, "Small left hydropneumothorax.", "Pneumothorax") == "positive"


def test_exclusion_hides_linked_entities_too(cxr14):
    text = "Soft tissue edema."
    start = text.index("edema")
    entity = {"field": "f", "cui": "C0013604", "start": start, "end": start + 5}
    entity["assertion"] = "present"
    assert cxr14.label({"f": text}, [entity])["Edema"] == "not_mentioned"
    assert cxr14.label({"f": "Pulmonary edema."}, [{**entity, "start": 10, "end": 15}])[
        "Edema"
    ] == ("positive")


# ---- placeholders ----


@pytest.mark.parametrize("placeholder", ["XXXX", "___", "_____"])
def test_placeholders_read_the_same_in_raw_and_built_text(cxr14, placeholder):
    assert value(cxr14, f"Heart size {placeholder} enlarged.", "Cardiomegaly") == "positive"
    text = f"There are no {placeholder} of a pleural effusion."
    assert value(cxr14, text, "Effusion") == "negative"


def test_placeholder_does_not_change_negation_windows():
    detector = AssertionDetector()
    for placeholder in ("XXXX", "___"):
        text = (
            f"No {placeholder} {placeholder} {placeholder} {placeholder} {placeholder} "
            f"{placeholder} {placeholder} {placeholder} {placeholder} {placeholder} "
            f"{placeholder} {placeholder} {placeholder} {placeholder} effusion."
        )
        start = text.index("effusion")
        assert detector.assert_spans(text, [(start, start + 8)]) == ["present"]


# ---- uncertainty policy and label fields ----


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (None, "uncertain"),
        ("uncertain", "uncertain"),
        ("positive", "positive"),
        ("negative", "negative"),
    ],
)
def test_uncertain_as_maps_hedged_labels(policy, expected):
    labeler = ReportLabeler(LabelSet.load("chexpert14"), AssertionDetector(), uncertain_as=policy)
    values = labeler.label({"impression": "Possible left lower lobe pneumonia."}, [])
    assert values["Pneumonia"] == expected
    # No Finding is derived before the map: a hedged finding is still a finding
    assert values["No Finding"] == "not_mentioned"


def test_label_sets_declare_their_default_policy():
    assert LabelSet.load("chexpert14").uncertain_as == "uncertain"
    assert LabelSet.load("chestxray14").uncertain_as == "uncertain"
    assert LabelSet.load("chestxray14.v1").name == "chestxray14.v1"


def test_uncertain_as_per_label_set_must_name_a_configured_set():
    config = LinkConfig(
        enabled=True, uncertain_as={"chexpert14": "negative", "chestxray14": "positive"}
    )
    assert config.uncertain_as_for("chexpert14") == "negative"
    assert config.uncertain_as_for("chestxray14") == "positive"
    with pytest.raises(ValueError, match="not in label_sets"):
        LinkConfig(enabled=True, label_sets=["chexpert14"], uncertain_as={"other": "positive"})


@pytest.fixture(scope="module")
def default_stage(lexicon_kb) -> LinkStage:
    return LinkStage(LinkConfig(enabled=True, kb=str(lexicon_kb), label_sets=["chestxray14"]))


def labels_of(stage: LinkStage, record: dict) -> dict[str, str]:
    out = next(iter(stage.process(record)))
    return {d["observation"]: d["value"] for d in out["derived_labels"]}


def test_indication_and_report_text_do_not_decide_labels_by_default(default_stage):
    record = {
        "indication": "Pneumonia? Cough.",
        "comparison": "Prior study showed effusion.",
        "findings": "Lungs are clear.",
        "impression": "No acute disease.",
        "report_text": "INDICATION: Pneumonia? Cough. COMPARISON: Prior study showed effusion.",
    }
    labels = labels_of(default_stage, record)
    assert labels["Pneumonia"] == "not_mentioned"
    assert labels["Effusion"] == "not_mentioned"


def test_a_spec_may_ask_for_indication(lexicon_kb):
    stage = LinkStage(
        LinkConfig(
            enabled=True,
            kb=str(lexicon_kb),
            label_sets=["chestxray14"],
            label_fields=["indication", "findings", "impression"],
        )
    )
    labels = labels_of(stage, {"indication": "Pneumonia.", "findings": "", "impression": None})
    assert labels["Pneumonia"] == "positive"


def test_a_report_without_headers_is_labelled_from_its_text_section(default_stage):
    record = {
        "findings": None,
        "impression": None,
        "sections": [{"name": "text", "text": "Small right pleural effusion."}],
        "report_text": "Small right pleural effusion.",
    }
    assert labels_of(default_stage, record)["Effusion"] == "positive"
    # with sections, the fallback is not used
    record["sections"] = [
        {"name": "indication", "text": "Effusion?"},
        {"name": "impression", "text": "Clear."},
    ]
    record["impression"] = "Clear."
    assert labels_of(default_stage, record)["Effusion"] == "not_mentioned"


def test_v1_rules_stay_loadable():
    rules = AssertionRules.load(resource_path("curation_rules", "linking/assertion.v1.yaml"))
    assert rules.name == "assertion.v1"
    assert AssertionRules.load().name == "assertion.v2"
