"""Report-level observation labels (positive / negative / uncertain / not_mentioned).

A label set (`curation_rules/linking/labels_*.yaml`) maps each observation to CUIs and to
aliases. Mentions are linked entities with a listed CUI plus alias matches found here with the
linker's tokenisation; each mention carries its sentence's assertion. Aggregation follows
CheXpert: positive if any mention is present, else uncertain if any is uncertain, else negative
if any is absent (or a `negative_phrases` match is present: "heart size is normal"), else
not_mentioned. `derived_labels` entries are `{"observation": <name>, "value": ...}`, the same
struct and names as the `labels` a source gives (MIMIC's CheXpert CSV), so templates read both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
LABEL_SET_FILES = {
    "chexpert14": "linking/labels_chexpert14.v1.yaml",
    "chestxray14": "linking/labels_chestxray14.v1.yaml",
}
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

    @classmethod
    def load(cls, key_or_path: str | Path) -> LabelSet:
        if str(key_or_path) in LABEL_SET_FILES:
            key = str(key_or_path)
            path = resource_path("curation_rules", LABEL_SET_FILES[key])
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
            return cls(
                key=key,
                name=str(data["name"]),
                observations=observations,
                exclude=tuple(_strings((data.get("exclude") or {}).get("phrases", []), "exclude")),
                no_finding=no_finding.get("name"),
                no_finding_ignores=frozenset(no_finding.get("ignore", [])),
            )
        except (OSError, yaml.YAMLError) as exc:
            raise SpecError(f"{path}: cannot read label set ({exc})") from exc
        except (KeyError, TypeError, ValueError) as exc:
            raise SpecError(f"{path}: malformed label set ({exc!r})") from exc

    @property
    def names(self) -> list[str]:
        names = [o.name for o in self.observations]
        return ([self.no_finding] if self.no_finding else []) + names


def _strings(items: list[Any], where: str) -> list[str]:
    bad = [i for i in items if not isinstance(i, str)]
    if bad:
        raise ValueError(f"{where}: {bad!r} are not strings (quote them in YAML)")
    return items


class ReportLabeler:
    """Turns texts + their linked entities into observation values for one label set."""

    def __init__(self, label_set: LabelSet, assertion: AssertionDetector) -> None:
        self.label_set = label_set
        self.assertion = assertion
        self._by_cui: dict[str, list[str]] = {}
        self._phrases: dict[tuple[str, ...], str] = {}
        for phrase in label_set.exclude:
            self._phrases[normalise_phrase(phrase)] = _EXCLUDE
        for obs in label_set.observations:
            for cui in obs.cuis:
                self._by_cui.setdefault(cui, []).append(obs.name)
            for alias in obs.aliases:
                self._phrases.setdefault(normalise_phrase(alias), obs.name)
            for phrase in obs.negative_phrases:
                self._phrases.setdefault(normalise_phrase(phrase), _NEGATIVE + obs.name)
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
                target = self._phrases.get(tuple(t.norm for t in tokens[i:j]))
                if target is not None:
                    hit = (tokens[i].start, tokens[j - 1].end, target)
                    i = j
                    break
            if hit:
                found.append(hit)
            else:
                i += 1
        return found

    def _nearby_matches(self, tokens: list[Token]) -> list[tuple[int, int, str]]:
        """(start, end, observation) of the finding word of each head/finding pair.

        The span is the finding word alone, so "heart is not enlarged" is judged on "enlarged"
        (negated by "not") rather than on a span that swallows its own trigger.
        """
        norms = [t.norm for t in tokens]

        def positions(phrases: tuple[tuple[str, ...], ...]) -> list[tuple[int, int]]:
            found = []
            for i in range(len(norms)):
                for phrase in phrases:
                    if tuple(norms[i : i + len(phrase)]) == phrase:
                        found.append((i, i + len(phrase)))
            return found

        out = []
        for obs in self.label_set.observations:
            for rule in obs.nearby:
                heads = positions(rule.heads)
                if not heads:
                    continue
                for f_start, f_end in positions(rule.findings):
                    for h_start, h_end in heads:
                        lo, hi = (h_end, f_start) if h_end <= f_start else (f_end, h_start)
                        if 0 <= hi - lo <= rule.max_gap and not any(
                            tokens[k].breaks_before
                            for k in range(min(h_start, f_start) + 1, max(h_end, f_end))
                        ):
                            out.append((tokens[f_start].start, tokens[f_end - 1].end, obs.name))
                            break
        return out

    def label(self, texts: dict[str, str], entities: list[dict[str, Any]]) -> dict[str, str]:
        """Observation name -> value, over all `texts` (field -> text) of one report."""
        seen: dict[str, set[str]] = {o.name: set() for o in self.label_set.observations}
        for field_name, text in texts.items():
            if not text or not text.strip():
                continue
            analysed = self.assertion.analyse(text)
            tokens = tokenize(text)
            for start, end, name in self._nearby_matches(tokens):
                seen[name].add(analysed.assertion(start, end))
            for start, end, target in self._phrase_matches(tokens):
                if target == _EXCLUDE:
                    continue
                assertion = analysed.assertion(start, end)
                if target.startswith(_NEGATIVE):
                    if assertion == PRESENT:
                        seen[target[len(_NEGATIVE) :]].add(ABSENT)
                    continue
                seen[target].add(assertion)
            for entity in entities:
                if entity.get("field") == field_name:
                    for name in self._by_cui.get(entity["cui"], ()):
                        seen[name].add(entity["assertion"])
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
        return values

    def derived_labels(
        self, texts: dict[str, str], entities: list[dict[str, Any]]
    ) -> list[dict[str, str]]:
        values = self.label(texts, entities)
        return [{"observation": name, "value": value} for name, value in values.items()]
