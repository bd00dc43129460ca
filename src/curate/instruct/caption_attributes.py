"""Caption attribute questions: image-dependent questions whose answer is what the caption states.

A template file of kind `caption_attributes` (`curation_rules/templates/caption_attributes.v1.yaml`)
declares attribute groups (modality, laterality, shape, ...): each value with the words a caption
uses for it, the question phrasings and the answer type. A group yields a question only when the
record's text states exactly one of its values, none negated; a caption that states none or
several ("CT and MRI", "left and right") or a negated one ("no left effusion") is skipped, never
guessed. Answer types:

- `choice`: every value of the group is offered (in a per-record shuffled order, so the option
  list never hints at the answer) and the answer is the stated one;
- `closed`: "is it <value>?" with a yes/no answer; the asked value is the stated one or another
  with even odds, so yes and no are balanced.

Every random choice uses a generator seeded by (record_id, task), as in the templated
generator: the same record always gives the same questions.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import cache, cached_property
from typing import Any

import yaml

from curate.errors import SpecError
from curate.instruct import records as R
from curate.instruct.templated import TemplatedGenerator
from curate.resources import resource_dir
from curate.stages import Record

KIND = "caption_attributes"
GENERATOR = "templated"
ANSWER_TYPES = {"choice", "closed"}
PLACEHOLDERS = ("options", "value")
TASK_KEYS = {"family", "answer_type", "needs", "values", "phrasings", "fields"}


@dataclass(frozen=True)
class AttributeTask:
    name: str
    family: str
    answer_type: str
    values: dict[str, tuple[str, ...]]  # answer -> words that state it
    phrasings: tuple[str, ...]
    fields: tuple[str, ...]
    needs: tuple[str, ...] = ("image",)

    @cached_property
    def pattern(self) -> re.Pattern[str]:
        return _word_pattern([w for words in self.values.values() for w in words])

    def value_of(self, mention: str) -> str:
        wanted = _normalised(mention)
        for value, words in self.values.items():
            if wanted in (_normalised(w) for w in words):
                return value
        raise KeyError(mention)  # unreachable: the pattern only matches declared words


@dataclass(frozen=True)
class AttributeTemplateSet:
    ref: str
    policy: dict[str, Any]
    tasks: dict[str, AttributeTask]


def _normalised(words: str) -> str:
    """Lower case, with spaces and hyphens between words made one space ('upper-left')."""
    return " ".join(re.split(r"[\s-]+", words.strip().lower()))


def _word_pattern(words: list[str]) -> re.Pattern[str]:
    """Whole words or phrases, longest first (so 'upper left' wins over 'left'); the words of
    a phrase may be joined by spaces, line breaks or hyphens."""
    ordered = sorted({_normalised(w) for w in words}, key=len, reverse=True)
    body = "|".join(r"[\s-]+".join(re.escape(p) for p in w.split(" ")) for w in ordered)
    return re.compile(rf"(?<!\w)({body})(?!\w)", re.IGNORECASE)


def _require(cond: bool, where: str, message: str) -> None:
    if not cond:
        raise SpecError(f"{where}: {message}")


def _parse_task(name: str, spec: Any, policy: dict[str, Any], where: str) -> AttributeTask:
    here = f"{where}: tasks.{name}"
    _require(isinstance(spec, dict), here, "must be a mapping")
    unknown = sorted(set(spec) - TASK_KEYS)
    _require(not unknown, here, f"unknown keys {unknown}; known: {sorted(TASK_KEYS)}")
    _require(
        spec.get("answer_type") in ANSWER_TYPES,
        here,
        f"answer_type must be one of {sorted(ANSWER_TYPES)}",
    )
    raw_values = spec.get("values")
    _require(
        isinstance(raw_values, dict) and len(raw_values) >= 2,
        here,
        "needs `values`: a mapping of at least two answers to the words that state them",
    )
    values: dict[str, tuple[str, ...]] = {}
    owner: dict[str, str] = {}
    for value, words in raw_values.items():
        _require(
            isinstance(words, list) and bool(words),
            here,
            f"values.{value} needs a list of words",
        )
        _require(
            all(isinstance(w, str) and w.strip() for w in words),
            here,
            f"values.{value}: words must be non-empty strings",
        )
        for word in words:
            other = owner.setdefault(_normalised(word), str(value))
            _require(other == str(value), here, f"word {word!r} states both {other} and {value}")
        values[str(value)] = tuple(words)
    phrasings = spec.get("phrasings") or []
    _require(
        bool(phrasings) and all(isinstance(p, str) and p.strip() for p in phrasings),
        here,
        "needs a non-empty list of phrasings",
    )
    for text in phrasings:
        try:
            text.format(**{key: "x" for key in PLACEHOLDERS})
        except (KeyError, IndexError, ValueError) as exc:
            raise SpecError(f"{here}: bad placeholder in {text!r}: {exc!r}") from exc
        if spec["answer_type"] == "closed":
            _require("{value}" in text, here, f"a closed phrasing must name {{value}}: {text!r}")
        else:
            _require(
                "{options}" in text, here, f"a choice phrasing must list {{options}}: {text!r}"
            )
    labels = policy.get("option_labels") or []
    _require(
        spec["answer_type"] != "choice" or not labels or len(values) <= len(labels),
        here,
        f"{len(values)} values but only {len(labels)} option labels",
    )
    fields = spec.get("fields") or policy.get("text_fields") or ["caption"]
    return AttributeTask(
        name=name,
        family=str(spec.get("family") or name.split(".")[0]),
        answer_type=spec["answer_type"],
        values=values,
        phrasings=tuple(phrasings),
        fields=tuple(fields),
        needs=tuple(spec.get("needs") or ("image",)),
    )


def parse_attribute_templates(data: Any, where: str) -> AttributeTemplateSet:
    _require(isinstance(data, dict), where, "template file must be a mapping")
    name, version = data.get("name"), data.get("version")
    _require(
        isinstance(name, str) and isinstance(version, int),
        where,
        "needs `name` and integer `version`",
    )
    _require(data.get("kind") == KIND, where, f"kind must be {KIND!r}")
    policy: dict[str, Any] = {}
    for key, entry in (data.get("policy") or {}).items():
        _require(
            isinstance(entry, dict) and "value" in entry and bool(entry.get("why")),
            where,
            f"policy.{key} needs `value` and a one-line `why`",
        )
        policy[key] = entry["value"]
    answers = policy.get("closed_answers", ["Yes", "No"])
    _require(
        isinstance(answers, list) and len(answers) == 2,
        where,
        "policy.closed_answers must be [yes, no]",
    )
    tasks = {
        str(task): _parse_task(str(task), spec, policy, where)
        for task, spec in (data.get("tasks") or {}).items()
    }
    _require(bool(tasks), where, "declares no tasks")
    return AttributeTemplateSet(ref=f"{name}.v{version}", policy=policy, tasks=tasks)


def _template_path(ref: str):
    path = resource_dir("curation_rules") / "templates" / f"{ref}.yaml"
    if not path.is_file():
        raise SpecError(f"unknown template file {ref!r} (looked for {path})")
    return path


@cache
def template_kind(ref: str) -> str:
    """The file's `kind`; files without one are CheXinstruct-style task templates."""
    data = yaml.safe_load(_template_path(ref).read_text())
    return str(data.get("kind") or "tasks") if isinstance(data, dict) else "tasks"


@cache
def load_attribute_templates(ref: str) -> AttributeTemplateSet:
    path = _template_path(ref)
    template_set = parse_attribute_templates(yaml.safe_load(path.read_text()), str(path))
    if template_set.ref != ref:
        raise SpecError(f"{path}: declares {template_set.ref}, file name says {ref}")
    return template_set


# ---------------------------------------------------------------------------------------------
# What the text states


def _negated(text: str, start: int, policy: dict[str, Any]) -> bool:
    """A negation cue among the few words before the mention, in the same sentence."""
    cues = [str(c).lower() for c in policy.get("negation_cues") or []]
    if not cues:
        return False
    window = int(policy.get("negation_window", 3))
    sentence_start = max(text.rfind(".", 0, start), text.rfind(";", 0, start)) + 1
    before = re.findall(r"[\w&'-]+", text[sentence_start:start].lower())[-window:]
    joined = " " + " ".join(before) + " "
    return any(f" {cue} " in joined for cue in cues)


def stated_value(text: str, task: AttributeTask, policy: dict[str, Any]) -> str | None:
    """The single value the text states for this group; None for none, several or negated."""
    found: set[str] = set()
    for match in task.pattern.finditer(text):
        if _negated(text, match.start(), policy):
            return None
        found.add(task.value_of(match.group(1)))
    return found.pop() if len(found) == 1 else None


# ---------------------------------------------------------------------------------------------
# Questions


@dataclass(frozen=True)
class AttributeSample:
    question: str
    answer: str
    options: list[str]


def _inline(choices: list[str], joiner: str) -> str:
    if len(choices) == 1:
        return choices[0]
    return ", ".join(choices[:-1]) + f" {joiner} " + choices[-1]


def build_question(
    task: AttributeTask, value: str, rng: random.Random, policy: dict[str, Any]
) -> AttributeSample:
    phrasing = rng.choice(task.phrasings)
    if task.answer_type == "closed":
        yes, no = (str(a) for a in policy.get("closed_answers", ["Yes", "No"]))
        others = [v for v in task.values if v != value]
        asked = value if rng.random() < 0.5 else rng.choice(others)
        return AttributeSample(
            phrasing.format(value=asked, options=""), yes if asked == value else no, [yes, no]
        )
    choices = list(task.values)
    rng.shuffle(choices)
    labels = [str(label) for label in policy.get("option_labels") or []]
    if labels:
        options = [f"{label}. {choice}" for label, choice in zip(labels, choices)]
        rendered = "\n".join(options)
        answer = options[choices.index(value)]
    else:
        options, answer = choices, value
        rendered = _inline(choices, str(policy.get("option_joiner", "or")))
    return AttributeSample(phrasing.format(options=rendered, value=""), answer, options)


def _needs_met(record: Record, task: AttributeTask) -> bool:
    return all(R.has_image(record) for need in task.needs if need == "image")


class CaptionAttributeGenerator:
    """Record -> caption attribute questions (possibly none). Same interface as
    `TemplatedGenerator`: `template_set.ref`, `tasks`, `generate(record, pool)`."""

    def __init__(
        self,
        templates: str | AttributeTemplateSet,
        tasks: list[str] | None = None,
        include_image: bool = False,
    ) -> None:
        self.template_set = (
            templates
            if isinstance(templates, AttributeTemplateSet)
            else load_attribute_templates(templates)
        )
        unknown = sorted(set(tasks or []) - set(self.template_set.tasks))
        if unknown:
            raise SpecError(
                f"unknown templated tasks {unknown}; {self.template_set.ref} has "
                f"{sorted(self.template_set.tasks)}"
            )
        self.tasks = [t for t in self.template_set.tasks if tasks is None or t in tasks]
        self.include_image = include_image

    def samples(self, record: Record) -> list[tuple[AttributeTask, AttributeSample]]:
        policy = self.template_set.policy
        record_id = str(record["record_id"])
        out = []
        for name in self.tasks:
            task = self.template_set.tasks[name]
            if not _needs_met(record, task):
                continue
            text = "\n".join(R.text(record, field) for field in task.fields)
            value = stated_value(text, task, policy)
            if value is None:
                continue
            rng = random.Random(R.stable_seed(record_id, name))
            out.append((task, build_question(task, value, rng, policy)))
        return out

    def generate(self, record: Record, pool: list[dict[str, Any]]) -> list[dict[str, Any]]:
        del pool  # attribute questions need no distractor texts
        return [
            R.new_instruction(
                record,
                index=0,
                task=task.name,
                task_family=task.family,
                conversations=[
                    {"from": "human", "value": sample.question},
                    {"from": "gpt", "value": sample.answer},
                ],
                answer_type=task.answer_type,
                answer=sample.answer,
                options=sample.options,
                generator=GENERATOR,
                template_version=self.template_set.ref,
                include_image=self.include_image,
            )
            for task, sample in self.samples(record)
        ]


def templated_generator(
    templates: str, tasks: list[str] | None, include_image: bool
) -> TemplatedGenerator | CaptionAttributeGenerator:
    """The generator a template file asks for: caption attribute questions or the
    CheXinstruct-style task builders."""
    if template_kind(templates) == KIND:
        return CaptionAttributeGenerator(templates, tasks, include_image=include_image)
    return TemplatedGenerator(templates, tasks, include_image=include_image)
