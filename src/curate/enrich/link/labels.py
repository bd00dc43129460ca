"""Report-level observation labels (positive / negative / uncertain / not_mentioned).

A label set (`curation_rules/linking/labels_*.yaml`) maps each observation to CUIs and to
aliases. Mentions are linked entities with a listed CUI plus alias matches found here with the
linker's tokenisation; each mention carries its sentence's assertion. Aggregation follows
CheXpert: positive if any mention is present, else uncertain if any is uncertain, else negative
if any is absent (or a `negative_phrases` match is present: "heart size is normal"), else
not_mentioned. `exclude` phrases hide every mention they cover, linked entities included.
`derived_labels` entries are `{"observation": <name>, "value": ...}`, the same struct and names
as the `labels` a source gives (MIMIC's CheXpert CSV), so templates read both.

Uncertainty policy: each label set names its `uncertain_as` (positive | negative | uncertain;
the bundled sets keep `uncertain`); a spec overrides it per set (`link.uncertain_as`). The map
is applied last, after "No Finding" is derived from the unmapped values (as CheXpert's U-Ones /
U-Zeros map a labeller's output).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from curate.enrich.link.assertion import ABSENT, PRESENT, UNCERTAIN, AssertionDetector
from curate.enrich.link.text import Token, normalise_phrase, tokenize
from curate.errors import SpecError
from curate.resources import resource_path

POSITIVE, NEGATIVE, UNCERTAIN_LABEL, NOT_MENTIONED = (
    "positive",
    "negative",
    "uncertain",
    "not_mentioned",
)
# A bare name takes the newest version; a versioned name reproduces an older one.
LABEL_SET_FILES = {
    "chexpert14": "linking/labels_chexpert14.v2.yaml",
    "chestxray14": "linking/labels_chestxray14.v2.yaml",
    "chexpert14.v1": "linking/labels_chexpert14.v1.yaml",
    "chestxray14.v1": "linking/labels_chestxray14.v1.yaml",
    "chexpert14.v2": "linking/labels_chexpert14.v2.yaml",
    "chestxray14.v2": "linking/labels_chestxray14.v2.yaml",
}
UncertainAs = Literal["positive", "negative", "uncertain"]
UNCERTAIN_AS_VALUES = ("positive", "negative", "uncertain")
_EXCLUDE, _NEGATIVE = "\x00exclude", "\x00negative:"


@dataclass(frozen=True)
class Nearby:
    """A head word and a finding word close together: "heart size borderline enlarged"."""

    heads: tuple[tuple[str, ...], ...]
    findings: tuple[tuple[str, ...], ...]
    max_gap: int


@dataclass(frozen=True)
class Observation:
    name: str
    cuis: frozenset[str]
    aliases: tuple[str, ...]
    negative_phrases: tuple[str, ...] = ()
    nearby: tuple[Nearby, ...] = ()


@dataclass(frozen=True)
class LabelSet:
    key: str  # the short name used in derived_labels ("chexpert14")
    name: str  # versioned rule name ("chexpert14.v1")
    observations: tuple[Observation, ...]
    exclude: tuple[str, ...] = ()
    no_finding: str | None = None
    no_finding_ignores: frozenset[str] = field(default_factory=frozenset)
    uncertain_as: UncertainAs = "uncertain"

    @classmethod
    def load(cls, key_or_path: str | Path) -> LabelSet:
        if str(key_or_path) in LABEL_SET_FILES:
            key = str(key_or_path).split(".")[0]
            path = resource_path("curation_rules", LABEL_SET_FILES[str(key_or_path)])
        else:
            path = Path(key_or_path)
            key = path.name.split(".")[0].removeprefix("labels_")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
            observations = tuple(
                Observation(
                    name=str(o["name"]),
                    cuis=frozenset(o.get("cuis") or []),
                    aliases=tuple(_strings(o.get("aliases") or [], o["name"])),
                    negative_phrases=tuple(_strings(o.get("negative_phrases") or [], o["name"])),
                    nearby=tuple(
                        Nearby(
                            heads=tuple(
                                normalise_phrase(h) for h in _strings(n["heads"], o["name"])
                            ),
                            findings=tuple(
                                normalise_phrase(f) for f in _strings(n["findings"], o["name"])
                            ),
                            max_gap=int(n["max_gap"]),
                        )
                        for n in o.get("nearby") or []
                    ),
                )
                for o in data["observations"]
            )
            no_finding = data.get("no_finding") or {}
            uncertain_as = (data.get("uncertain_as") or {}).get("value", "uncertain")
            if uncertain_as not in UNCERTAIN_AS_VALUES:
                raise ValueError(
                    f"uncertain_as {uncertain_as!r} is not one of {UNCERTAIN_AS_VALUES}"
                )
            return cls(
                key=key,
                name=str(data["name"]),
                observations=observations,
                exclude=tuple(_strings((data.get("exclude") or {}).get("phrases", []), "exclude")),
                no_finding=no_finding.get("name"),
                no_finding_ignores=frozenset(no_finding.get("ignore", [])),
                uncertain_as=uncertain_as,
            )
        except (OSError, yaml.YAMLError) as exc:
            raise SpecError(f"{path}: cannot read label set ({exc})") from exc
        except (KeyError, TypeError, ValueError) as exc:
            raise SpecError(f"{path}: malformed label set ({exc!r})") from exc

    @property
    def names(self) -> list[str]:
        names = [o.name for o in self.observations]
        return ([self.no_finding] if self.no_finding else []) + names


_OR = re.compile(r"[ \t]*(?:and[ \t]*/[ \t]*)?or[ \t]+", re.IGNORECASE)


def _or_hedged(
    text: str, mentions: list[tuple[int, int, str, str]]
) -> list[tuple[int, int, str, str]]:
    """Two findings joined by "or" ("atelectasis or infiltrate") hedge each other: both
    become uncertain when neither is negated. Negated lists ("no effusion or pneumothorax")
    and negative phrases are left alone."""
    by_start: dict[int, list[int]] = {}
    for i, (start, _end, target, assertion) in enumerate(mentions):
        if assertion != ABSENT and not target.startswith(_NEGATIVE):
            by_start.setdefault(start, []).append(i)
    hedged: set[int] = set()
    for i, (_start, end, target, assertion) in enumerate(mentions):
        if assertion == ABSENT or target.startswith(_NEGATIVE):
            continue
        joined = _OR.match(text, end)
        if joined and (after := by_start.get(joined.end())):
            hedged.add(i)
            hedged.update(after)
    if not hedged:
        return mentions
    # every mention sharing a hedged span is hedged too (an alias and an entity of one word)
    spans = {mentions[i][:2] for i in hedged}
    return [(*m[:3], UNCERTAIN) if m[:2] in spans else m for m in mentions]


def _overlaps(start: int, end: int, spans: list[tuple[int, int]]) -> bool:
    return any(start < s_end and end > s_start for s_start, s_end in spans)


def _strings(items: list[Any], where: str) -> list[str]:
    bad = [i for i in items if not isinstance(i, str)]
    if bad:
        raise ValueError(f"{where}: {bad!r} are not strings (quote them in YAML)")
    return items


class ReportLabeler:
    """Turns texts + their linked entities into observation values for one label set."""

    def __init__(
        self,
        label_set: LabelSet,
        assertion: AssertionDetector,
        uncertain_as: UncertainAs | None = None,
    ) -> None:
        self.label_set = label_set
        self.assertion = assertion
        self.uncertain_as = uncertain_as or label_set.uncertain_as
        self._by_cui: dict[str, list[str]] = {}
        # phrase key -> its targets: an alias may name several observations ("fibronodular"
        # is Nodule and Fibrosis); an exclude phrase names nothing else
        self._phrases: dict[tuple[str, ...], tuple[str, ...]] = {}
        for phrase in label_set.exclude:
            self._phrases[normalise_phrase(phrase)] = (_EXCLUDE,)
        for obs in label_set.observations:
            for cui in obs.cuis:
                self._by_cui.setdefault(cui, []).append(obs.name)
            targets = [(a, obs.name) for a in obs.aliases]
            targets += [(p, _NEGATIVE + obs.name) for p in obs.negative_phrases]
            for phrase, target in targets:
                key = normalise_phrase(phrase)
                known = self._phrases.get(key, ())
                if _EXCLUDE not in known and target not in known:
                    self._phrases[key] = (*known, target)
        # nearby rules: every head and finding phrase indexed by its first token, so one pass
        # over a text finds the phrases of all rules
        self._nearby = [(obs.name, rule) for obs in label_set.observations for rule in obs.nearby]
        self._nearby_index: dict[str, list[tuple[int, bool, tuple[str, ...]]]] = {}
        for number, (_name, rule) in enumerate(self._nearby):
            for is_head, phrases in ((True, rule.heads), (False, rule.findings)):
                for words in phrases:
                    if words:
                        self._nearby_index.setdefault(words[0], []).append((number, is_head, words))
        self._lengths: dict[str, list[int]] = {}
        for key in self._phrases:
            self._lengths.setdefault(key[0], []).append(len(key))
        for first in self._lengths:
            self._lengths[first] = sorted(set(self._lengths[first]), reverse=True)

    def _phrase_matches(self, tokens: list[Token]) -> list[tuple[int, int, str]]:
        found, i, n = [], 0, len(tokens)
        while i < n:
            hit = None
            for length in self._lengths.get(tokens[i].norm, ()):
                j = i + length
                if j > n or any(tokens[k].breaks_before for k in range(i + 1, j)):
                    continue
                targets = self._phrases.get(tuple(t.norm for t in tokens[i:j]))
                if targets is not None:
                    hit = [(tokens[i].start, tokens[j - 1].end, target) for target in targets]
                    i = j
                    break
            if hit:
                found.extend(hit)
            else:
                i += 1
        return found

    def _nearby_matches(self, tokens: list[Token]) -> list[tuple[int, int, str]]:
        """(start, end, observation) of the finding word of each head/finding pair.

        The span is the finding word alone, so "heart is not enlarged" is judged on "enlarged"
        (negated by "not") rather than on a span that swallows its own trigger.
        """
        norms = [t.norm for t in tokens]
        index = self._nearby_index
        heads: dict[int, list[tuple[int, int]]] = {}
        findings: dict[int, list[tuple[int, int]]] = {}
        for i, norm in enumerate(norms):
            for number, is_head, phrase in index.get(norm, ()):
                if tuple(norms[i : i + len(phrase)]) == phrase:
                    (heads if is_head else findings).setdefault(number, []).append(
                        (i, i + len(phrase))
                    )
        out = []
        for number, found in findings.items():
            name, rule = self._nearby[number]
            for f_start, f_end in found:
                for h_start, h_end in heads.get(number, ()):
                    lo, hi = (h_end, f_start) if h_end <= f_start else (f_end, h_start)
                    if 0 <= hi - lo <= rule.max_gap and not any(
                        tokens[k].breaks_before
                        for k in range(min(h_start, f_start) + 1, max(h_end, f_end))
                    ):
                        out.append((tokens[f_start].start, tokens[f_end - 1].end, name))
                        break
        return out

    def _mentions(
        self, field_name: str, text: str, entities: list[dict[str, Any]]
    ) -> list[tuple[int, int, str, str]]:
        """(start, end, target, assertion) of every mention in one text, in text order;
        `target` is an observation name or a `negative_phrases` marker."""
        analysed = self.assertion.analyse(text)
        tokens = tokenize(text)
        phrases = self._phrase_matches(tokens)
        excluded = [(start, end) for start, end, target in phrases if target == _EXCLUDE]
        found = [
            (start, end, name, analysed.assertion(start, end))
            for start, end, name in self._nearby_matches(tokens)
            if not _overlaps(start, end, excluded)
        ]
        found.extend(
            (start, end, target, analysed.assertion(start, end))
            for start, end, target in phrases
            if target != _EXCLUDE
        )
        for entity in entities:
            start, end = entity.get("start", 0), entity.get("end", 0)
            if entity.get("field") == field_name and not _overlaps(start, end, excluded):
                for name in self._by_cui.get(entity["cui"], ()):
                    found.append((start, end, name, entity["assertion"]))
        found.sort()
        return _or_hedged(text, found)

    def label(self, texts: dict[str, str], entities: list[dict[str, Any]]) -> dict[str, str]:
        """Observation name -> value, over all `texts` (field -> text) of one report."""
        seen: dict[str, set[str]] = {o.name: set() for o in self.label_set.observations}
        for field_name, text in texts.items():
            if not text or not text.strip():
                continue
            for _start, _end, target, assertion in self._mentions(field_name, text, entities):
                if target.startswith(_NEGATIVE):
                    if assertion == PRESENT:
                        seen[target[len(_NEGATIVE) :]].add(ABSENT)
                    continue
                seen[target].add(assertion)
        values = {}
        for name, assertions in seen.items():
            if PRESENT in assertions:
                values[name] = POSITIVE
            elif UNCERTAIN in assertions:
                values[name] = UNCERTAIN_LABEL
            elif ABSENT in assertions:
                values[name] = NEGATIVE
            else:
                values[name] = NOT_MENTIONED
        if self.label_set.no_finding:
            ignored = self.label_set.no_finding_ignores
            finding = any(
                v in (POSITIVE, UNCERTAIN_LABEL) for k, v in values.items() if k not in ignored
            )
            values = {self.label_set.no_finding: NOT_MENTIONED if finding else POSITIVE, **values}
        if self.uncertain_as != "uncertain":
            mapped = POSITIVE if self.uncertain_as == "positive" else NEGATIVE
            values = {k: mapped if v == UNCERTAIN_LABEL else v for k, v in values.items()}
        return values

    def derived_labels(
        self, texts: dict[str, str], entities: list[dict[str, Any]]
    ) -> list[dict[str, str]]:
        values = self.label(texts, entities)
        return [{"observation": name, "value": value} for name, value in values.items()]
