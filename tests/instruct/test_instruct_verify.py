"""Verification: structure, refusals, source give-aways and grounding, each drop with a reason."""

from __future__ import annotations

import pytest
import yaml

from curate.errors import SpecError
from curate.instruct.verify import (
    LexiconConceptExtractor,
    MalformedTurns,
    UnparseableConversation,
    Verifier,
    check_structure,
    load_verify_rules,
    parse_conversation,
)
from curate.resources import resource_dir

SOURCE = "Chest radiograph showing a large right pleural effusion with mediastinal shift."
RECORD = {"record_id": "r", "entities": []}


def convo(*answers: str, question: str = "What is shown?") -> str:
    return "\n".join(f"User: {question}\nAssistant: {a}" for a in answers)


def test_parse_role_lines_json_and_fenced_json():
    text = "Here is the conversation:\nUser: What is it?\nAssistant: A radiograph.\nIt is frontal.\n\nHuman: Side?\nGPT: Right."
    assert parse_conversation(text) == [
        {"from": "human", "value": "What is it?"},
        {"from": "gpt", "value": "A radiograph.\nIt is frontal."},
        {"from": "human", "value": "Side?"},
        {"from": "gpt", "value": "Right."},
    ]
    as_json = '[{"from": "human", "value": "Q?"}, {"role": "assistant", "content": "A."}]'
    assert parse_conversation(as_json) == [
        {"from": "human", "value": "Q?"},
        {"from": "gpt", "value": "A."},
    ]
    fenced = '```json\n{"conversations": [{"from": "user", "value": "Q?"}, {"from": "gpt", "value": "A."}]}\n```'
    assert parse_conversation(fenced) == [
        {"from": "human", "value": "Q?"},
        {"from": "gpt", "value": "A."},
    ]
    for bad in (
        "",
        "   ",
        "just prose without roles",
        '[{"from": "human"',
        '{"x": 1}',
        '[{"from": "bot", "value": "v"}]',
    ):
        with pytest.raises(UnparseableConversation):
            parse_conversation(bad)


def test_structure_rules():
    check_structure([{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}])
    bad = [
        [],
        [{"from": "human", "value": "q"}],
        [{"from": "gpt", "value": "a"}, {"from": "human", "value": "q"}],
        [{"from": "human", "value": "q"}, {"from": "human", "value": "q"}],
        [{"from": "human", "value": "q"}, {"from": "gpt", "value": "  "}],
    ]
    for turns in bad:
        with pytest.raises(MalformedTurns):
            check_structure(turns)
    with pytest.raises(MalformedTurns, match="rounds"):
        check_structure([{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}] * 9, 1, 8)


def test_verify_file_has_twenty_refusal_patterns_each_catching_something():
    path = resource_dir("curation_rules") / "prompts" / "verify.v1.yaml"
    data = yaml.safe_load(path.read_text())
    assert len(data["refusal_patterns"]["value"]) >= 20
    verifier = Verifier()
    refusals = [
        "I'm sorry, but that is not possible.",
        "As an AI, I cannot see it.",
        "I am unable to view the image.",
        "I cannot interpret medical images.",
        "I don't have access to the image.",
        "Without seeing the actual image, it is hard to say.",
        "Please consult your doctor.",
        "You should seek medical attention.",
        "I apologize for the confusion.",
        "No image was provided.",
    ]
    for answer in refusals:
        verdict = verifier.check_text(convo(answer), SOURCE, RECORD)
        assert verdict.reason == "refusal", answer
    bare = verifier.check_text(
        "I'm sorry, but as an AI language model I cannot see images.", SOURCE, RECORD
    )
    assert bare.reason == "refusal" and bare.turns is None
    # ordinary answers that share words with the patterns are kept
    assert verifier.check_text(
        convo("The effusion is on the right; the heart cannot be assessed."), SOURCE, RECORD
    ).kept


def test_giveaway_phrases_are_stripped_or_dropped():
    verifier = Verifier()
    verdict = verifier.check_text(
        convo("According to the caption, there is a large right pleural effusion."), SOURCE, RECORD
    )
    assert verdict.kept
    assert verdict.turns[1]["value"] == "There is a large right pleural effusion."
    verdict = verifier.check_text(
        convo("Based on the description provided, the effusion is large."), SOURCE, RECORD
    )
    assert verdict.kept and verdict.turns[1]["value"] == "The effusion is large."
    dropped = verifier.check_text(convo("The caption mentions a pleural effusion."), SOURCE, RECORD)
    assert dropped.reason == "source_giveaway"
    dropped = verifier.check_text(
        convo("The effusion is large, as the given text explains."), SOURCE, RECORD
    )
    assert dropped.reason == "source_giveaway"
    kept = verifier.check_text(convo("The text on the film reads R for right."), SOURCE, RECORD)
    assert kept.kept  # 'text' alone is no give-away
    # an answer that was mostly the give-away is rejected, not kept as a fragment
    for answer in ("According to the caption, yes.", "As described in the text, effusion."):
        fragment = verifier.check_text(convo(answer), SOURCE, RECORD)
        assert fragment.reason == "source_giveaway" and "left only" in fragment.message


def test_grounding_drop_flag_and_off():
    answer = convo("There is a large pleural effusion and a small pneumothorax.")
    dropped = Verifier(grounding="drop").check_text(answer, SOURCE, RECORD)
    assert dropped.reason == "ungrounded_concept:pneumothorax"
    flagged = Verifier(grounding="flag").check_text(answer, SOURCE, RECORD)
    assert flagged.kept and flagged.flags == ["ungrounded_concept:pneumothorax"]
    assert Verifier(grounding="off").check_text(answer, SOURCE, RECORD).flags == []
    # synonyms of a supported concept are grounded ("effusions" ~ "pleural effusion")
    assert Verifier().check_text(convo("Effusions are seen."), SOURCE, RECORD).kept


def test_record_entities_extend_the_default_lexicon():
    source = "MRI showing a schwannoma of the vestibular nerve."
    record = {
        "entities": [
            {"name": "Schwannoma", "assertion": "present"},
            {"name": "Meningioma", "assertion": "absent"},
        ]
    }
    verifier = Verifier()
    assert verifier.check_text(convo("A schwannoma is visible."), source, record).kept
    # a concept the record's linker knows but the source text does not state is ungrounded
    verdict = verifier.check_text(
        convo("A meningioma is visible."),
        source,
        {"entities": record["entities"][:1] + [{"name": "Meningioma", "assertion": "present"}]},
    )
    assert verdict.reason == "ungrounded_concept:meningioma"


def test_pluggable_extractor_object_and_module_factory(tmp_path, monkeypatch):
    seen: list[str] = []

    def extractor(text: str) -> set[str]:
        seen.append(text)
        return {word for word in ("C0032227", "C0032326") if word.lower() in text.lower()}

    verifier = Verifier(concept_extractor=extractor)
    verdict = verifier.check_text(
        convo("Finding c0032326 is present."), "only C0032227 here", RECORD
    )
    assert verdict.reason == "ungrounded_concept:C0032326" and len(seen) == 2

    (tmp_path / "my_linker.py").write_text(
        "def make():\n    return lambda text: {'kidney'} if 'kidney' in text else set()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    plugged = Verifier(extractor_spec="my_linker:make")
    assert (
        plugged.check_text(convo("The kidney is enlarged."), "A liver scan.", RECORD).reason
        == "ungrounded_concept:kidney"
    )
    with pytest.raises(SpecError, match="cannot be loaded"):
        Verifier(extractor_spec="no_such_module_xyz:make")
    with pytest.raises(SpecError, match="module:factory"):
        Verifier(extractor_spec="nonsense")


def test_lexicon_extractor_matches_whole_words_only():
    extract = LexiconConceptExtractor({"mass": ["mass", "masses"], "edema": ["edema", "oedema"]})
    assert extract("Two masses and pulmonary oedema.") == {"mass", "edema"}
    assert extract("Massive biomass; edematous.") == set()
    rules = load_verify_rules("verify.v1")
    assert rules.finding_lexicon["pleural effusion"][0] == "pleural effusion"


@pytest.mark.slow
def test_grounding_through_curate_link():
    # the default offline KB of curate.enrich.link (built into its cache on first use)
    verifier = Verifier(extractor_spec="curate.instruct.grounding:link_concepts")
    source = "Chest X-ray with a large pleural effusion."
    dropped = verifier.check_text(convo("A pleural effusion and a pneumothorax."), source, RECORD)
    assert dropped.reason is not None and dropped.reason.startswith("ungrounded_concept:")
    assert "pneumothorax" in dropped.reason
    assert verifier.check_text(convo("There is a pleural effusion."), source, RECORD).kept


def test_case_folded_patterns_keep_escapes():
    from curate.instruct.verify import _alternation, _casefold_pattern

    assert _casefold_pattern(r"\bI'?M \S+ AI [A-Z]\\X") == r"\bi'?m \S+ ai [a-z]\\x"
    folded = _alternation([r"\bAs An AI\b", r"\bNO \S+ provided\b"], "t", folded=True)
    assert folded.search("as an ai, i think".lower())
    assert folded.search("No image provided".lower())
    assert not folded.search("no  provided")  # \S+ still needs a non-space run
