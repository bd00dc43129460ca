"""Radiology-aware assertion (present / absent / uncertain), ConText/NegEx style.

Rules come from `curation_rules/linking/assertion.v2.yaml` (v1 stays loadable). A text is split
into sentences and scanned once for trigger phrases (longest match first, pseudo-triggers and
terminators included), so many mentions in one text cost one scan. A negation or uncertainty
trigger opens a scope forward, backward or both, inside its sentence, up to a terminator or a
token limit; the nearest covering trigger decides a mention's assertion. Triggers inside the
mention itself do not count ("Absent radius" is a present phenotype).

Two refinements (v2 rule files): some terminators end only a forward negation ("no
cardiomegaly with bilateral effusions", "no definite effusion seen, left hilar nodule"), and a
backward trigger may carry its own, longer window ("A, B and C have cleared": a plural verb
after a list). De-identification placeholders (`XXXX`, `___`) are one token each, so windows
measure the same on raw and de-identified text.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from curate.enrich.link.text import sentence_spans
from curate.errors import SpecError
from curate.resources import resource_path

PRESENT, ABSENT, UNCERTAIN = "present", "absent", "uncertain"
DEFAULT_RULES = "linking/assertion.v2.yaml"

_TRIGGER_TOKEN = re.compile(r"[A-Za-z0-9]+|_{3,}|[;:?]")


def _word(token: str) -> str:
    # every placeholder spelling reads as `xxxx` (IU's XXXX, the `___` a build writes)
    return "xxxx" if token[0] == "_" else token.lower()


def _trigger_tokens(text: str) -> tuple[str, ...]:
    return tuple(_word(m.group()) for m in _TRIGGER_TOKEN.finditer(text))


@dataclass(frozen=True)
class Trigger:
    tokens: tuple[str, ...]
    kind: str  # negated | uncertain | pseudo | terminator | forward_negation_terminator
    forward: bool = False
    backward: bool = False
    backward_max: int | None = None  # this trigger's own backward window (else the rules')

    @property
    def rank(self) -> tuple[int, int]:
        # Longest phrase first; on a tie, pseudo > terminator > a scope-opening trigger.
        order = {"pseudo": 2, "terminator": 1, "forward_negation_terminator": 1}.get(self.kind, 0)
        return (len(self.tokens), order)


@dataclass(frozen=True)
class AssertionRules:
    name: str
    max_forward: int
    max_backward: int
    triggers: tuple[Trigger, ...]

    @classmethod
    def load(cls, path: Path | None = None) -> AssertionRules:
        path = Path(path) if path else resource_path("curation_rules", DEFAULT_RULES)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise SpecError(f"{path}: cannot read assertion rules ({exc})") from exc
        try:
            return cls.from_dict(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise SpecError(f"{path}: malformed assertion rules ({exc!r})") from exc

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AssertionRules:
        merged: dict[tuple[str, ...], Trigger] = {}

        def add(
            phrases: list[str],
            kind: str,
            forward: bool = False,
            backward: bool = False,
            backward_max: int | None = None,
        ) -> None:
            for phrase in phrases:
                if not isinstance(phrase, str):
                    # YAML reads a bare `no` as False: quote trigger words in the rule file.
                    raise ValueError(f"trigger {phrase!r} is not a string (quote it)")
                tokens = _trigger_tokens(phrase)
                if not tokens:
                    raise ValueError(f"trigger {phrase!r} has no tokens")
                old = merged.get(tokens)
                fw, bw, limit = forward, backward, backward_max
                if old is not None and old.kind == kind:
                    # The same phrase listed forward and backward opens both scopes.
                    fw, bw = fw or old.forward, bw or old.backward
                    limit = max(limit or 0, old.backward_max or 0) or None
                elif old is not None and old.rank[1] > Trigger(tokens, kind).rank[1]:
                    continue
                merged[tokens] = Trigger(tokens, kind, fw, bw, limit)

        for kind in ("negated", "uncertain"):
            add(data[kind].get("forward", {}).get("phrases", []), kind, forward=True)
            add(data[kind].get("backward", {}).get("phrases", []), kind, backward=True)
            if backward_list := data[kind].get("backward_list"):
                add(
                    backward_list["phrases"],
                    kind,
                    backward=True,
                    backward_max=int(backward_list["max_tokens"]),
                )
        add(data["terminators"]["phrases"], "terminator")
        if forward_negation := data["terminators"].get("forward_negation"):
            add(forward_negation["phrases"], "forward_negation_terminator")
        add(data["pseudo"]["phrases"], "pseudo")
        return cls(
            name=data["name"],
            max_forward=int(data["scope"]["max_tokens_forward"]["value"]),
            max_backward=int(data["scope"]["max_tokens_backward"]["value"]),
            triggers=tuple(merged.values()),
        )


@dataclass
class _Scope:
    kind: str
    first: int  # token index range [first, last) the scope covers
    last: int
    trigger_first: int
    trigger_last: int


class _AnalysedText:
    """Token offsets and trigger scopes of one text, to answer many span queries."""

    def __init__(
        self, starts: list[int], ends: list[int], scopes: list[_Scope], sentence_of: list[int]
    ) -> None:
        self.starts, self.ends, self.scopes, self.sentence_of = starts, ends, scopes, sentence_of

    def assertion(self, start: int, end: int) -> str:
        first = bisect.bisect_right(self.ends, start)  # first token ending after `start`
        last = bisect.bisect_left(self.starts, end)  # tokens [first, last) overlap the span
        if first >= last:
            return PRESENT
        best: tuple[int, str] | None = None
        for scope in self.scopes:
            if scope.last <= first or scope.first >= last:
                continue
            if scope.trigger_first < last and scope.trigger_last > first:
                continue  # the trigger is part of the mention itself
            distance = (
                first - scope.trigger_last
                if scope.trigger_last <= first
                else scope.trigger_first - last
            )
            if best is None or distance < best[0]:
                best = (distance, scope.kind)
        if best is None:
            return PRESENT
        return ABSENT if best[1] == "negated" else UNCERTAIN


def _next_at(positions: list[int], at: int, default: int) -> int:
    """The first of the sorted `positions` at or after `at`, else `default`."""
    nxt = bisect.bisect_left(positions, at)
    return positions[nxt] if nxt < len(positions) else default


class AssertionDetector:
    """Applies `AssertionRules` to texts; build once, call `analyse(text)` per text."""

    def __init__(self, rules: AssertionRules | None = None) -> None:
        self.rules = rules or AssertionRules.load()
        self._by_first: dict[str, list[Trigger]] = {}
        for trigger in self.rules.triggers:
            self._by_first.setdefault(trigger.tokens[0], []).append(trigger)
        for options in self._by_first.values():
            options.sort(key=lambda t: t.rank, reverse=True)
        # the linker and each label set analyse the same field: remember the last few texts
        self._recent: dict[str, _AnalysedText] = {}

    def analyse(self, text: str) -> _AnalysedText:
        analysed = self._recent.get(text)
        if analysed is None:
            if len(self._recent) >= 32:
                self._recent.clear()
            analysed = self._recent[text] = self._analyse(text)
        return analysed

    def _analyse(self, text: str) -> _AnalysedText:
        starts: list[int] = []
        ends: list[int] = []
        scopes: list[_Scope] = []
        sentence_of: list[int] = []
        for number, (s_start, s_end) in enumerate(sentence_spans(text)):
            words = [
                (_word(m.group()), m.start(), m.end())
                for m in _TRIGGER_TOKEN.finditer(text, s_start, s_end)
            ]
            base = len(starts)
            starts.extend(w[1] for w in words)
            ends.extend(w[2] for w in words)
            sentence_of.extend([number] * len(words))
            scopes.extend(self._sentence_scopes([w[0] for w in words], base))
        return _AnalysedText(starts, ends, scopes, sentence_of)

    def _sentence_scopes(self, words: list[str], base: int) -> list[_Scope]:
        found: list[tuple[int, int, Trigger]] = []
        i = 0
        while i < len(words):
            match = None
            for trigger in self._by_first.get(words[i], ()):
                n = len(trigger.tokens)
                if tuple(words[i : i + n]) == trigger.tokens:
                    match = trigger
                    break
            if match is None:
                i += 1
                continue
            found.append((i, i + len(match.tokens), match))
            i += len(match.tokens)
        terminators = [start for start, _, t in found if t.kind == "terminator"]
        terminator_ends = [end for _, end, t in found if t.kind == "terminator"]
        closers = [start for start, _, t in found if t.kind == "forward_negation_terminator"]
        scopes: list[_Scope] = []
        for start, end, trigger in found:
            if trigger.kind not in ("negated", "uncertain"):
                continue
            if trigger.forward:
                stop = _next_at(terminators, end, len(words))
                if trigger.kind == "negated":
                    # a closing verb ends a negation only after a negated word: "no effusion
                    # seen, left nodule" ends at "seen", "no visualized pneumothorax" does not
                    stop = min(stop, _next_at(closers, end + 1, len(words)))
                stop = min(stop, end + self.rules.max_forward)
                if stop > end:
                    scopes.append(
                        _Scope(trigger.kind, base + end, base + stop, base + start, base + end)
                    )
            if trigger.backward:
                prv = bisect.bisect_right(terminator_ends, start) - 1
                begin = terminator_ends[prv] if prv >= 0 else 0
                begin = max(begin, start - (trigger.backward_max or self.rules.max_backward))
                if begin < start:
                    scopes.append(
                        _Scope(trigger.kind, base + begin, base + start, base + start, base + end)
                    )
        return scopes

    def assert_spans(self, text: str, spans: list[tuple[int, int]]) -> list[str]:
        analysed = self.analyse(text)
        return [analysed.assertion(s, e) for s, e in spans]
