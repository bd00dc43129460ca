"""Caption attribute questions: the answer is the one value a caption states; groups stating
none, several or a negated value are skipped; options never hint at the answer; yes/no
balanced; deterministic per (record_id, task); selected by a spec through the template file."""

from __future__ import annotations

from collections import Counter

import pyarrow as pa
import pytest

from curate.errors import SpecError
from curate.instruct.caption_attributes import (
    CaptionAttributeGenerator,
    load_attribute_templates,
    parse_attribute_templates,
    stated_value,
)
from curate.instruct.config import InstructConfig
from curate.instruct.generator import InstructionGenerator
from curate.schema import load_schema
from curate.stages import Rejected

WHY = "test"


def template_data(**task_overrides) -> dict:
    shape = {
        "answer_type": "choice",
        "values": {
            "round": ["round", "circular"],
            "triangular": ["triangular"],
            "square": ["square"],
        },
        "phrasings": ["What shape is the lesion: {options}?"],
    }
    quadrant = {
        "answer_type": "closed",
        "values": {
            "upper left": ["upper left", "top left"],
            "upper right": ["upper right"],
            "lower left": ["lower left"],
            "lower right": ["lower right"],
        },
        "phrasings": ["Is the lesion in the {value} quadrant?"],
    }
    side = {
        "answer_type": "choice",
        "values": {"left": ["left", "left-sided"], "right": ["right", "right-sided"]},
        "phrasings": ["Which side: {options}?"],
    }
    tasks = {"attr.shape": shape, "attr.quadrant": quadrant, "attr.side": side}
    tasks.update(task_overrides)
    return {
        "name": "attrs_test",
        "version": 1,
        "kind": "caption_attributes",
        "policy": {
            "negation_cues": {"value": ["no", "without"], "why": WHY},
            "negation_window": {"value": 3, "why": WHY},
        },
        "tasks": tasks,
    }


def generator(data: dict | None = None, tasks: list[str] | None = None):
    return CaptionAttributeGenerator(
        parse_attribute_templates(data or template_data(), "test"), tasks
    )


def figure(caption: str, record_id: str = "PMC1/F1/0", split: str = "train") -> dict:
    return {
        "record_id": record_id,
        "split": split,
        "caption": caption,
        "image": b"\x89PNG-fake",
        "image_sha256": "cd" * 32,
        "image_format": "PNG",
    }


def by_task(samples) -> dict:
    return {s["task"]: s for s in samples}


def question(sample: dict) -> str:
    return sample["conversations"][0]["value"]


def test_choice_answer_is_the_stated_value_with_every_option_listed():
    caption = "Axial CT showing a bright round lesion in the upper left quadrant."
    out = by_task(generator().generate(figure(caption), []))
    assert set(out) == {"attr.shape", "attr.quadrant", "attr.side"}
    shape = out["attr.shape"]
    assert shape["answer"] == "round" and shape["answer_type"] == "choice"
    assert sorted(shape["options"]) == ["round", "square", "triangular"]
    first, second, third = shape["options"]
    assert question(shape) == f"What shape is the lesion: {first}, {second} or {third}?"
    assert shape["conversations"][1] == {"from": "gpt", "value": "round"}
    # 'upper left' states the quadrant; its 'left' states the side in the other group
    assert out["attr.side"]["answer"] == "left"
    assert question(out["attr.side"]) in (
        "Which side: left or right?",
        "Which side: right or left?",
    )
    assert out["attr.shape"]["record_id"] == "PMC1/F1/0#attr.shape.0"
    assert out["attr.shape"]["template_version"] == "attrs_test.v1"


def test_closed_answer_says_whether_the_asked_value_is_the_stated_one():
    caption = "A dark square lesion in the lower right region."
    seen = set()
    for index in range(40):
        sample = by_task(generator().generate(figure(caption, f"PMC{index}/F1/0"), []))[
            "attr.quadrant"
        ]
        asked = question(sample).removeprefix("Is the lesion in the ").removesuffix(" quadrant?")
        assert asked in ("upper left", "upper right", "lower left", "lower right")
        assert sample["answer"] == ("Yes" if asked == "lower right" else "No")
        assert sample["options"] == ["Yes", "No"] and sample["answer_type"] == "closed"
        seen.add(sample["answer"])
    assert seen == {"Yes", "No"}


@pytest.mark.parametrize(
    ("caption", "why"),
    [
        ("Coronal reformat of the abdomen.", "states no shape"),
        ("A round and a square lesion side by side.", "states two shapes"),
        ("No round lesion is seen.", "the only shape is negated"),
        ("Imaged without square collimation, showing a round lesion.", "one of two is negated"),
    ],
)
def test_shape_group_is_skipped_when_the_caption_states_none_several_or_a_negated_value(
    caption, why
):
    assert "attr.shape" not in by_task(generator().generate(figure(caption), [])), why


def test_synonyms_hyphens_and_line_breaks_state_the_same_value():
    task = generator().template_set.tasks["attr.quadrant"]
    for text in ("in the upper-left area", "in the Upper\nLeft area", "top left corner"):
        assert stated_value(text, task, {}) == "upper left"
    side = generator().template_set.tasks["attr.side"]
    assert stated_value("a left-sided mass and a left effusion", side, {}) == "left"
    assert stated_value("leftover tissue", side, {}) is None  # whole words only
    shape = generator().template_set.tasks["attr.shape"]
    assert stated_value("a circular and a round blob", shape, {}) == "round"  # synonyms agree


def test_negation_only_reaches_a_few_words_back_in_the_same_sentence():
    shape = generator().template_set.tasks["attr.shape"]
    policy = {"negation_cues": ["no"], "negation_window": 3}
    assert stated_value("No effusion. A round lesion.", shape, policy) == "round"
    assert stated_value("no change in size of this round lesion", shape, policy) == "round"
    assert stated_value("there is no round lesion", shape, policy) is None


def test_records_without_text_or_image_get_nothing():
    assert generator().generate(figure(""), []) == []
    record = figure("A round lesion.")
    record.update(image=None, image_sha256=None)
    assert generator().generate(record, []) == []


def test_same_record_same_questions_and_options_whatever_the_order():
    captions = [f"Case {i}: a triangular lesion in the lower left area." for i in range(20)]
    records = [figure(c, f"PMC{i}/F1/0") for i, c in enumerate(captions)]
    forward = [generator().generate(r, []) for r in records]
    backward = [generator().generate(r, []) for r in reversed(records)]
    assert forward == list(reversed(backward))
    questions = {question(by_task(s)["attr.shape"]) for s in forward}
    assert len(questions) > 1  # the option order varies between records


def test_correct_option_position_and_yes_no_are_balanced():
    positions: Counter = Counter()
    answers: Counter = Counter()
    for index in range(600):
        out = by_task(generator().generate(figure("a square lesion, lower left", f"R{index}"), []))
        positions[out["attr.shape"]["options"].index("square")] += 1
        answers[out["attr.quadrant"]["answer"]] += 1
    assert set(positions) == {0, 1, 2} and min(positions.values()) > 150
    assert 0.42 < answers["Yes"] / 600 < 0.58


def test_labelled_options_answer_with_the_option():
    data = template_data()
    data["policy"]["option_labels"] = {"value": ["A", "B", "C", "D"], "why": WHY}
    data["tasks"]["attr.shape"]["phrasings"] = ["Which shape?\n{options}"]
    sample = by_task(generator(data).generate(figure("A triangular lesion."), []))["attr.shape"]
    assert [o[:3] for o in sample["options"]] == ["A. ", "B. ", "C. "]
    assert sample["answer"] in sample["options"] and sample["answer"].endswith(". triangular")
    assert question(sample) == "Which shape?\n" + "\n".join(sample["options"])


def test_task_selection_and_unknown_tasks():
    out = generator(tasks=["attr.side"]).generate(figure("A round lesion on the right."), [])
    assert [s["task"] for s in out] == ["attr.side"]
    with pytest.raises(SpecError, match="unknown templated tasks"):
        generator(tasks=["attr.colour"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("kind"), "kind must be"),
        (lambda d: d["tasks"]["attr.shape"].update(values={"round": ["round"]}), "at least two"),
        (
            lambda d: d["tasks"]["attr.shape"]["values"].update(square=["square", "round"]),
            "states both",
        ),
        (lambda d: d["tasks"]["attr.quadrant"].update(phrasings=["Where?"]), "must name"),
        (lambda d: d["tasks"]["attr.shape"].update(phrasings=["Shape {colour}?"]), "placeholder"),
        (lambda d: d["tasks"]["attr.shape"].update(answer_type="open"), "answer_type"),
        (lambda d: d["tasks"]["attr.shape"].update(colour="red"), "unknown keys"),
        (lambda d: d["policy"].update(negation_window={"value": 3}), "why"),
    ],
)
def test_template_file_is_validated(change, message):
    data = template_data()
    change(data)
    with pytest.raises(SpecError, match=message):
        parse_attribute_templates(data, "test")


def test_spec_selects_the_shipped_file_and_rows_fit_the_instruction_schema():
    config = InstructConfig(
        templated={
            "templates": "caption_attributes.v1",
            "tasks": ["attribute.modality", "attribute.laterality", "attribute.shape"],
        },
        distractor_pool_size=0,
    )
    gen = InstructionGenerator(config)
    real_like = figure(
        "Contrast-enhanced computed tomography of the chest shows a rounded right-sided mass "
        "(arrow). No pleural effusion."
    )
    out = by_task(gen.generate(real_like, []))
    assert {t: s["answer"] for t, s in out.items()} == {
        "attribute.modality": "CT",
        "attribute.laterality": "right",
        "attribute.shape": "round",
    }
    pa.Table.from_pylist(list(out.values()), schema=load_schema("instruction.v1").arrow)
    # a caption stating two modalities and both sides asks nothing: a reject with its reason
    (reject,) = gen.generate(figure("CT and MRI of the left and right kidneys."), [])
    assert isinstance(reject, Rejected) and reject.reason == "no_applicable_template_task"


def test_shipped_file_declares_its_version():
    template_set = load_attribute_templates("caption_attributes.v1")
    assert template_set.ref == "caption_attributes.v1"
    assert {"attribute.modality", "attribute.quadrant_check"} <= set(template_set.tasks)
