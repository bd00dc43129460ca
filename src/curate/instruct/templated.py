"""Templated instruction generator (CheXinstruct-style task families), offline and deterministic.

Tasks, phrasings and policy come from `curation_rules/templates/<name>.v<N>.yaml`. Answers come
only from what the record states: report labels (`labels`, then `derived_labels`) and linked
entities with their assertion (present → "Yes", absent → "No", uncertain → the declared policy).
Every random choice (phrasing, options, distractors) uses a generator seeded by
(record_id, task), so the same record always yields the same samples, whatever the order or
the worker that processes it.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import yaml

from curate.errors import SpecError
from curate.instruct import records as R
from curate.resources import resource_dir
from curate.stages import Record

GENERATOR = "templated"
ANSWER_TYPES = {"closed", "open", "choice", "generation"}
UNCERTAIN_POLICIES = {"skip", "answer_uncertain", "as_positive", "as_negative"}
LABEL_VALUES = {"positive", "negative", "uncertain", "not_mentioned"}
PLACEHOLDERS = ("finding", "options", "text", "location", "findings")
ASSERTION_STATUS = {"present": "positive", "absent": "negative", "uncertain": "uncertain"}


@dataclass(frozen=True)
class TaskSpec:
    name: str
    family: str
    answer_type: str
    needs: tuple[str, ...]
    phrasings: tuple[str, ...]
    options: tuple[str, ...] = ()
    answers: tuple[str, ...] = ()
    text_only: bool = False
    no_finding_answer: str | None = None


@dataclass(frozen=True)
class TemplateSet:
    ref: str
    policy: dict[str, Any]
    tasks: dict[str, TaskSpec]


def _require(cond: bool, where: str, message: str) -> None:
    if not cond:
        raise SpecError(f"{where}: {message}")


def parse_template_set(data: dict[str, Any], where: str) -> TemplateSet:
    _require(isinstance(data, dict), where, "template file must be a mapping")
    name, version = data.get("name"), data.get("version")
    _require(
        isinstance(name, str) and isinstance(version, int),
        where,
        "needs `name` and integer `version`",
    )
    policy: dict[str, Any] = {}
    for key, entry in (data.get("policy") or {}).items():
        _require(
            isinstance(entry, dict) and "value" in entry and bool(entry.get("why")),
            where,
            f"policy.{key} needs `value` and a one-line `why`",
        )
        policy[key] = entry["value"]
    _require(
        policy.get("uncertain") in UNCERTAIN_POLICIES,
        where,
        f"policy.uncertain must be one of {sorted(UNCERTAIN_POLICIES)}",
    )
    tasks: dict[str, TaskSpec] = {}
    for task_name, spec in (data.get("tasks") or {}).items():
        here = f"{where}: tasks.{task_name}"
        _require(isinstance(spec, dict), here, "must be a mapping")
        phrasings = spec.get("phrasings") or []
        _require(
            bool(phrasings) and all(isinstance(p, str) and p.strip() for p in phrasings),
            here,
            "needs a non-empty list of phrasings",
        )
        for text in [*phrasings, *(spec.get("answers") or [])]:
            try:
                text.format(**{name: "x" for name in PLACEHOLDERS})
            except (KeyError, IndexError, ValueError) as exc:
                raise SpecError(f"{here}: bad placeholder in {text!r}: {exc!r}") from exc
        _require(
            spec.get("answer_type") in ANSWER_TYPES,
            here,
            f"answer_type must be one of {sorted(ANSWER_TYPES)}",
        )
        _require(
            task_name in TASK_BUILDERS,
            here,
            f"no builder for this task; known: {sorted(TASK_BUILDERS)}",
        )
        tasks[task_name] = TaskSpec(
            name=task_name,
            family=str(spec.get("family") or task_name.split(".")[0]),
            answer_type=spec["answer_type"],
            needs=tuple(spec.get("needs") or ()),
            phrasings=tuple(phrasings),
            options=tuple(spec.get("options") or ()),
            answers=tuple(spec.get("answers") or ()),
            text_only=bool(spec.get("text_only")),
            no_finding_answer=spec.get("no_finding_answer"),
        )
    _require(bool(tasks), where, "declares no tasks")
    return TemplateSet(ref=f"{name}.v{version}", policy=policy, tasks=tasks)


@cache
def load_templates(ref: str) -> TemplateSet:
    path = resource_dir("curation_rules") / "templates" / f"{ref}.yaml"
    if not path.is_file():
        raise SpecError(f"unknown template file {ref!r} (looked for {path})")
    template_set = parse_template_set(yaml.safe_load(path.read_text()), str(path))
    if template_set.ref != ref:
        raise SpecError(f"{path}: declares {template_set.ref}, file name says {ref}")
    return template_set


# ---------------------------------------------------------------------------------------------
# What the record states about findings


@dataclass(frozen=True)
class Finding:
    key: str  # lower-case name, the identity across labels and entities
    phrase: str  # how a question names it
    status: str  # positive | negative | uncertain | not_mentioned


def _resolve_field_text(record: Record, field: str | None) -> str:
    """Text of an entity's `field`: a string column, or `inline_mentions[i]` / `inline_mentions.i`."""
    if not isinstance(field, str) or not field:
        return ""
    value = record.get(field)
    if isinstance(value, str):
        return value
    match = re.fullmatch(r"([a-z_]+)(?:\[(\d+)\]|\.(\d+))", field)
    if match:
        items = record.get(match.group(1))
        index = int(match.group(2) or match.group(3))
        if isinstance(items, list) and index < len(items) and isinstance(items[index], str):
            return items[index]
    return ""


def _mention(record: Record, entity: dict[str, Any]) -> tuple[str, str, int, int]:
    """(field text, surface form, start, end); empty strings when the offsets do not resolve."""
    text = _resolve_field_text(record, entity.get("field"))
    start, end = entity.get("start"), entity.get("end")
    if text and isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(text):
        return text, text[start:end], start, end
    return "", "", -1, -1


def collect_findings(record: Record, policy: dict[str, Any]) -> dict[str, Finding]:
    """One status per finding. Sources in priority order: labels, derived_labels, entities.

    A lower-priority source never overrides a higher one; a finding stated with two different
    statuses by the same source (e.g. "no new effusion ... small effusion") is ambiguous and
    dropped.
    """
    excluded = {str(o).lower() for o in policy.get("excluded_observations", [])}
    finding_types = set(policy.get("finding_semantic_types", []))
    decided: dict[str, Finding] = {}
    for source in ("labels", "derived_labels", "entities"):
        found: dict[str, Finding] = {}
        conflicted: set[str] = set()
        for item in record.get(source) or []:
            if source == "entities":
                status = ASSERTION_STATUS.get(str(item.get("assertion") or ""))
                if status is None or not finding_types & set(item.get("semantic_types") or []):
                    continue
                name = str(item.get("name") or "").strip()
                surface = _mention(record, item)[1].strip()
                key, phrase = name.lower(), (surface or name).lower()
            else:
                status = str(item.get("value") or "")
                name = str(item.get("observation") or "").strip()
                if status not in LABEL_VALUES:
                    continue
                key, phrase = name.lower(), name.lower()
            if not key or key in decided:
                continue
            if key in found and found[key].status != status:
                conflicted.add(key)
            found.setdefault(key, Finding(key=key, phrase=phrase, status=status))
        for key, finding in found.items():
            if key not in conflicted:
                decided[key] = finding
    # "No Finding" is kept out of questions but read by the open QA task.
    return {k: f for k, f in decided.items() if k not in excluded or k == "no finding"}


def _apply_uncertain_policy(findings: dict[str, Finding], policy: str) -> dict[str, Finding]:
    if policy == "skip":
        return {k: f for k, f in findings.items() if f.status != "uncertain"}
    mapped = {"as_positive": "positive", "as_negative": "negative"}.get(policy)
    if mapped is None:
        return findings
    return {
        k: (Finding(f.key, f.phrase, mapped) if f.status == "uncertain" else f)
        for k, f in findings.items()
    }


# ---------------------------------------------------------------------------------------------
# Task builders: each returns a list of (question, answer, options, answer_text_only) samples


@dataclass
class Sample:
    question: str
    answer: str
    options: list[str]


@dataclass
class Context:
    record: Record
    rng: random.Random
    spec: TaskSpec
    policy: dict[str, Any]
    findings: dict[str, Finding]
    pool: list[dict[str, Any]]

    def phrase(self, **values: str) -> str:
        return self.rng.choice(self.spec.phrasings).format(**values)

    def labelled(self, correct: str, distractors: list[str]) -> tuple[list[str], str]:
        """Shuffle options deterministically and label them 'A. ...'; returns (options, answer)."""
        labels = list(self.policy.get("option_labels", ["A", "B", "C", "D"]))
        choices = [correct, *distractors][: len(labels)]
        self.rng.shuffle(choices)
        options = [f"{label}. {choice}" for label, choice in zip(labels, choices)]
        return options, options[choices.index(correct)]


def _usable_text(value: str, policy: dict[str, Any]) -> bool:
    if len(value) < int(policy.get("min_text_chars", 1)):
        return False
    return not any(marker in value for marker in policy.get("placeholder_markers", []))


def _choice_from_table(ctx: Context, value: str | None, table: dict[str, str]) -> list[Sample]:
    """A multiple-choice question whose distractors are the table's other names (up to 3)."""
    code = " ".join(str(value or "").split()).upper()
    if code not in table:
        return []
    correct = table[code]
    others = sorted({name for name in table.values() if name != correct})
    wanted = min(len(ctx.policy.get("option_labels", "ABCD")) - 1, len(others))
    if wanted < 1:
        return []
    options, answer = ctx.labelled(correct, ctx.rng.sample(others, wanted))
    return [Sample(ctx.phrase(options="\n".join(options)), answer, options)]


def build_view(ctx: Context) -> list[Sample]:
    code = " ".join(str(ctx.record.get("view_position") or "").split()).upper()
    for option_set in ctx.policy.get("view_option_sets") or []:
        if code in option_set:
            return _choice_from_table(ctx, code, option_set)
    return []


def build_modality(ctx: Context) -> list[Sample]:
    return _choice_from_table(ctx, ctx.record.get("modality"), ctx.policy.get("modalities") or {})


def _questionable(ctx: Context) -> dict[str, list[Finding]]:
    excluded = {str(o).lower() for o in ctx.policy.get("excluded_observations", [])}
    by_status: dict[str, list[Finding]] = {
        "positive": [],
        "negative": [],
        "uncertain": [],
        "not_mentioned": [],
    }
    for key in sorted(ctx.findings):
        if key not in excluded:
            by_status[ctx.findings[key].status].append(ctx.findings[key])
    return by_status


def build_disease_choice(ctx: Context) -> list[Sample]:
    groups = _questionable(ctx)
    wanted = len(ctx.policy.get("option_labels", "ABCD")) - 1
    pool = list(groups["negative"])
    if ctx.policy.get("not_mentioned_as_distractor"):
        pool += groups["not_mentioned"]
    if not groups["positive"] or len(pool) < wanted:
        return []
    correct = ctx.rng.choice(groups["positive"]).phrase.capitalize()
    distractors = [f.phrase.capitalize() for f in ctx.rng.sample(pool, wanted)]
    options, answer = ctx.labelled(correct, distractors)
    return [Sample(ctx.phrase(options="\n".join(options)), answer, options)]


def build_closed(ctx: Context) -> list[Sample]:
    """Yes/no questions in (yes, no) pairs so that every task stays balanced."""
    groups = _questionable(ctx)
    yes, no = list(groups["positive"]), list(groups["negative"])
    ctx.rng.shuffle(yes)
    ctx.rng.shuffle(no)
    pairs = min(len(yes), len(no), int(ctx.policy.get("closed_pairs_per_record", 1)))
    uncertain_answer = str(ctx.policy.get("uncertain_answer", "Uncertain"))
    answering_uncertain = ctx.policy.get("uncertain") == "answer_uncertain"
    options = list(ctx.spec.options or ("Yes", "No"))
    if answering_uncertain:
        options.append(uncertain_answer)
    samples: list[Sample] = []
    for index in range(pairs):
        samples.append(Sample(ctx.phrase(finding=yes[index].phrase), options[0], options))
        samples.append(Sample(ctx.phrase(finding=no[index].phrase), options[1], options))
    if answering_uncertain:
        unsure = list(groups["uncertain"])
        ctx.rng.shuffle(unsure)
        for finding in unsure[: int(ctx.policy.get("closed_pairs_per_record", 1))]:
            samples.append(Sample(ctx.phrase(finding=finding.phrase), uncertain_answer, options))
    return samples


def _join_phrases(phrases: list[str]) -> str:
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def build_open(ctx: Context) -> list[Sample]:
    positives = [f.phrase for f in _questionable(ctx)["positive"]]
    if positives:
        answer_template = ctx.rng.choice(ctx.spec.answers or ("{findings}.",))
        answer = answer_template.format(findings=_join_phrases(positives))
        return [Sample(ctx.phrase(), answer[0].upper() + answer[1:], [])]
    no_finding = ctx.findings.get("no finding")
    if no_finding and no_finding.status == "positive" and ctx.spec.no_finding_answer:
        return [Sample(ctx.phrase(), ctx.spec.no_finding_answer, [])]
    return []


def _sentence_around(text: str, start: int, end: int) -> tuple[str, int]:
    """The sentence holding text[start:end], and its offset in text."""
    left = max(text.rfind(".", 0, start), text.rfind("\n", 0, start)) + 1
    stops = [i for i in (text.find(".", end), text.find("\n", end)) if i != -1]
    right = min(stops) if stops else len(text)
    return text[left:right], left


def _present_mentions(ctx: Context) -> list[tuple[str, str, int]]:
    """(phrase, sentence, mention offset in sentence) for present findings, one per finding."""
    finding_types = set(ctx.policy.get("finding_semantic_types", []))
    seen: set[str] = set()
    mentions = []
    for entity in ctx.record.get("entities") or []:
        if entity.get("assertion") != "present" or not finding_types & set(
            entity.get("semantic_types") or []
        ):
            continue
        text, surface, start, end = _mention(ctx.record, entity)
        key = str(entity.get("name") or "").lower()
        # Only findings whose overall status is positive (a conflicting statement elsewhere skips it).
        finding = ctx.findings.get(key)
        if not text or key in seen or finding is None or finding.status != "positive":
            continue
        seen.add(key)
        sentence, offset = _sentence_around(text, start, end)
        mentions.append((surface.lower(), sentence, start - offset))
    return mentions


def _word_regex(words: list[str]) -> re.Pattern[str]:
    ordered = sorted({w.lower() for w in words}, key=len, reverse=True)
    return re.compile(r"\b(" + "|".join(re.escape(w) for w in ordered) + r")\b", re.IGNORECASE)


def build_laterality(ctx: Context) -> list[Sample]:
    terms: dict[str, list[str]] = ctx.policy.get("laterality_terms") or {}
    word_to_side = {w.lower(): side for side, words in terms.items() for w in words}
    if not word_to_side:
        return []
    pattern = _word_regex(list(word_to_side))
    samples = []
    mentions = _present_mentions(ctx)
    for phrase, sentence, _ in mentions:
        sides = {word_to_side[m.group(1).lower()] for m in pattern.finditer(sentence)}
        if len(sides) != 1 or any(word in phrase.split() for word in word_to_side):
            continue  # no side, several sides, or the side is part of the name: not a question
        side = sides.pop()
        distractors = [s for s in (ctx.spec.options or tuple(terms)) if s != side]
        options, answer = ctx.labelled(side, distractors)
        samples.append(
            Sample(ctx.phrase(finding=phrase, options="\n".join(options)), answer, options)
        )
    return samples[: int(ctx.policy.get("fine_questions_per_record", 1))]


def build_location(ctx: Context) -> list[Sample]:
    heads = list(ctx.policy.get("location_heads") or [])
    sides = [w for words in (ctx.policy.get("laterality_terms") or {}).values() for w in words]
    if not heads:
        return []
    side_part = "|".join(re.escape(s) for s in sorted(sides, key=len, reverse=True))
    head_part = "|".join(re.escape(h) for h in sorted(heads, key=len, reverse=True))
    pattern = re.compile(rf"\b(?:(?:{side_part})\s+)?(?:{head_part})\b", re.IGNORECASE)
    samples = []
    for phrase, sentence, offset in _present_mentions(ctx):
        places = [
            m for m in pattern.finditer(sentence) if m.group(0).lower() not in ("lung", "lungs")
        ]
        if not places:
            continue
        # the place nearest to the mention describes it
        place = min(places, key=lambda m: abs(m.start() - offset)).group(0).lower()
        if place in phrase:
            continue
        answer = ctx.rng.choice(ctx.spec.answers or ("In the {location}.",)).format(location=place)
        samples.append(Sample(ctx.phrase(finding=phrase), answer, []))
    return samples[: int(ctx.policy.get("fine_questions_per_record", 1))]


def _generation(field: str) -> Callable[[Context], list[Sample]]:
    def build(ctx: Context) -> list[Sample]:
        target = R.text(ctx.record, field)
        if not _usable_text(target, ctx.policy):
            return []
        return [Sample(ctx.phrase(), target, [])]

    return build


def build_summarization(ctx: Context) -> list[Sample]:
    findings, impression = R.text(ctx.record, "findings"), R.text(ctx.record, "impression")
    if not (_usable_text(findings, ctx.policy) and _usable_text(impression, ctx.policy)):
        return []
    return [Sample(ctx.phrase(findings=findings), impression, [])]


def _normalised(value: str) -> str:
    return " ".join(value.lower().split())


def build_matching(ctx: Context) -> list[Sample]:
    own = R.matching_text(ctx.record)
    limit = int(ctx.policy.get("max_matching_chars", 1000))
    if not _usable_text(own, ctx.policy) or len(own) > limit:
        return []
    is_figure = R.source_schema(ctx.record) == R.FIGURE
    own_id, seen = ctx.record.get("record_id"), {_normalised(own)}
    candidates: list[str] = []
    for entry in sorted(ctx.pool, key=lambda e: str(e.get("record_id"))):
        if entry.get("record_id") == own_id or entry.get("split") not in (
            None,
            ctx.record.get("split"),
        ):
            continue
        if is_figure != ("caption" in entry):
            continue
        other = R.matching_text(entry)
        if not _usable_text(other, ctx.policy) or len(other) > limit or _normalised(other) in seen:
            continue
        seen.add(_normalised(other))
        candidates.append(other)
    wanted = len(ctx.policy.get("option_labels", "ABCD")) - 1
    if len(candidates) < wanted:
        return []
    options, answer = ctx.labelled(own, ctx.rng.sample(candidates, wanted))
    return [Sample(ctx.phrase(options="\n".join(options)), answer, options)]


TASK_BUILDERS: dict[str, Callable[[Context], list[Sample]]] = {
    "coarse.view_classification": build_view,
    "coarse.modality_classification": build_modality,
    "coarse.disease_classification": build_disease_choice,
    "fine.laterality": build_laterality,
    "fine.location": build_location,
    "text_generation.findings": _generation("findings"),
    "text_generation.impression": _generation("impression"),
    "text_generation.summarization": build_summarization,
    "text_generation.caption": _generation("caption"),
    "qa.closed": build_closed,
    "qa.open": build_open,
    "matching.image_text": build_matching,
}


def _needs_met(record: Record, needs: tuple[str, ...]) -> bool:
    for need in needs:
        if need == "image" and not R.has_image(record):
            return False
        if need in ("caption", "findings", "impression") and not R.text(record, need):
            return False
        if need in ("view_position", "modality") and not record.get(need):
            return False
        if need == "entities" and not record.get("entities"):
            return False
        if need == "findings_status" and not (
            record.get("labels") or record.get("derived_labels") or record.get("entities")
        ):
            return False
    return True


class TemplatedGenerator:
    """Record → templated instruction dicts (possibly none)."""

    def __init__(
        self,
        templates: str | TemplateSet = "chexinstruct.v1",
        tasks: list[str] | None = None,
        include_image: bool = False,
    ) -> None:
        self.template_set = (
            templates if isinstance(templates, TemplateSet) else load_templates(templates)
        )
        unknown = sorted(set(tasks or []) - set(self.template_set.tasks))
        if unknown:
            raise SpecError(
                f"unknown templated tasks {unknown}; {self.template_set.ref} has "
                f"{sorted(self.template_set.tasks)}"
            )
        self.tasks = [t for t in self.template_set.tasks if tasks is None or t in tasks]
        self.include_image = include_image

    def generate(self, record: Record, pool: list[dict[str, Any]]) -> list[dict[str, Any]]:
        policy = self.template_set.policy
        findings = _apply_uncertain_policy(collect_findings(record, policy), policy["uncertain"])
        record_id = str(record["record_id"])
        out: list[dict[str, Any]] = []
        for task_name in self.tasks:
            spec = self.template_set.tasks[task_name]
            if not _needs_met(record, spec.needs):
                continue
            ctx = Context(
                record=record,
                rng=random.Random(R.stable_seed(record_id, task_name)),
                spec=spec,
                policy=policy,
                findings=findings,
                pool=pool,
            )
            for index, sample in enumerate(TASK_BUILDERS[task_name](ctx)):
                out.append(
                    R.new_instruction(
                        record,
                        index=index,
                        task=task_name,
                        task_family=spec.family,
                        conversations=[
                            {"from": "human", "value": sample.question},
                            {"from": "gpt", "value": sample.answer},
                        ],
                        answer_type=spec.answer_type,
                        answer=sample.answer,
                        options=sample.options,
                        generator=GENERATOR,
                        template_version=self.template_set.ref,
                        include_image=self.include_image,
                        text_only=spec.text_only,
                    )
                )
        return out
