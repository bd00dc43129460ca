"""The linker on a small KB: exact/normalised matches, abbreviations, fuzzy, entity structs."""

from __future__ import annotations

import pyarrow as pa
import pytest

from curate.enrich.link.abbreviations import find_abbreviations
from curate.enrich.link.index import LoadedKB
from curate.enrich.link.linker import Linker, LinkerSettings
from curate.enrich.link.text import normalise_token, sentence_spans, tokenize
from curate.schema import load_schema


@pytest.fixture(scope="module")
def linker(lexicon_kb) -> Linker:
    return Linker.from_path(lexicon_kb)


def spans(linker, text):
    return [(text[e["start"] : e["end"]], e["cui"], e["assertion"]) for e in linker.link(text, "f")]


def test_plural_folding_is_shared_by_aliases_and_texts():
    assert [
        normalise_token(w)
        for w in [
            "effusions",
            "opacities",
            "masses",
            "atelectasis",
            "pneumothoraces",
            "lungs",
            "mass",
        ]
    ] == ["effusion", "opacity", "mass", "atelectasis", "pneumothorax", "lung", "mass"]


def test_tokens_keep_offsets_and_mark_punctuation_breaks():
    tokens = tokenize("effusion, left-sided")
    assert [(t.text, t.start, t.end, t.breaks_before) for t in tokens] == [
        ("effusion", 0, 8, False),
        ("left", 10, 14, True),
        ("sided", 15, 20, False),
    ]


def test_sentences_split_on_missing_space_and_numbered_items():
    text = "Opacity in the apex.There is no effusion.\n2. Stable."
    assert [text[s:e] for s, e in sentence_spans(text)] == [
        "Opacity in the apex.",
        "There is no effusion.",
        "2.",
        "Stable.",
    ]


def test_longest_exact_match_with_assertions(linker):
    text = "No pleural effusions. Small left pneumothorax. Mild cardiomegaly."
    assert spans(linker, text) == [
        ("pleural effusions", "C0032227", "absent"),
        ("pneumothorax", "C0032326", "present"),
        ("cardiomegaly", "C0018800", "present"),
    ]


def test_alias_never_spans_punctuation(linker):
    # "hiatal hernia" is an alias; "hiatal, hernia" is not that alias.
    assert spans(linker, "hiatal, hernia") == [("hernia", "C0019270", "present")]


def test_short_abbreviation_aliases_match_only_in_their_case(linker):
    assert spans(linker, "History of COPD.") == [("COPD", "C0024117", "present")]
    assert spans(linker, "the copd clinic") == []


def test_abbreviation_defined_in_text_links_later_short_forms(linker):
    text = "Patients with hiatal hernia (HH) were imaged. The HH was large."
    assert find_abbreviations(text)[0].long == "hiatal hernia"
    assert spans(linker, text) == [
        ("hiatal hernia", "C0019291", "present"),
        ("HH", "C0019291", "present"),
        ("HH", "C0019291", "present"),
    ]


def test_fuzzy_match_for_a_misspelling_scores_below_one(linker):
    entities = linker.link("Marked cardiomegally.", "caption")
    assert [(e["cui"], e["start"], e["end"]) for e in entities] == [("C0018800", 7, 20)]
    assert 0.86 <= entities[0]["score"] < 1.0


def test_fuzzy_skips_phrases_of_known_words(linker):
    # "cardiac" and "silhouette" are alias words; together they are no alias and must not
    # drift to "enlarged cardiac silhouette".
    assert spans(linker, "The cardiac silhouette.") == []


def test_entity_struct_is_exactly_the_schema_struct(linker):
    entities = linker.link("No pneumothorax.", "inline_mentions[0]")
    assert entities == [
        {
            "cui": "C0032326",
            "name": "Pneumothorax",
            "semantic_types": ["T047"],
            "field": "inline_mentions[0]",
            "start": 3,
            "end": 15,
            "score": 1.0,
            "assertion": "absent",
        }
    ]
    schema = load_schema("figure_caption.v1")
    entity_type = schema.arrow.field("entities").type
    assert [f.name for f in entity_type.value_type] == list(entities[0])
    array = pa.array([entities], type=entity_type)
    assert array.to_pylist() == [entities]


def test_empty_and_blank_texts_give_no_entities(linker):
    assert linker.link("", "caption") == []
    assert linker.link("   \n ", "caption") == []


def test_settings_come_from_the_rule_file():
    settings = LinkerSettings.load()
    assert settings.name == "linker.v1"
    assert settings.fuzzy_threshold == 0.86
    assert ("normal",) in settings.stop_aliases
    assert "no" in settings.skip_words and "on" in settings.skip_words


def test_linker_is_built_from_a_loaded_kb(lexicon_kb):
    kb = LoadedKB.load(lexicon_kb)
    linker = Linker(kb)
    assert linker.matcher.exact[("pleural", "effusion")] == "C0032227"
