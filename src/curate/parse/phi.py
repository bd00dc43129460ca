"""PHI redaction for free text: versioned regex patterns in, redacted text and counts out (pure).

The pattern set lives in `curation_rules/phi_patterns.v1.yaml` (policy as data). Every match is
replaced by the marker `___` (the MIMIC-CXR marker, so one marker covers sources that arrive
de-identified and text we redact ourselves). A pattern with a named group `phi` replaces only
that group, which keeps context words such as the title in "Dr. ___".

Regexes catch the formats listed in the file, not every identifier a human could write: they
are the safety net for sources that claim to be de-identified-ready text, not a replacement
for a certified de-identification of raw clinical notes.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import yaml

from curate.errors import SpecError
from curate.resources import resource_path

_FLAGS = {"IGNORECASE": re.IGNORECASE, "MULTILINE": re.MULTILINE, "DOTALL": re.DOTALL}


@dataclass(frozen=True)
class PhiPattern:
    name: str
    regex: re.Pattern[str]


@dataclass
class RedactionResult:
    text: str
    counts: dict[str, int] = field(default_factory=dict)  # pattern name -> matches replaced

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def count_structs(self) -> list[dict[str, Any]]:
        """`text_redaction_counts` column value: sorted {pattern, count} structs, zeros left out."""
        return [{"pattern": k, "count": v} for k, v in sorted(self.counts.items()) if v]


class PhiRedactor:
    """Applies an ordered list of patterns; each later pattern sees the previous ones' output."""

    def __init__(
        self,
        patterns: list[PhiPattern],
        marker: str = "___",
        source_placeholders: dict[str, re.Pattern[str]] | None = None,
        version: str = "",
    ) -> None:
        self.patterns = patterns
        self.marker = marker
        self.source_placeholders = source_placeholders or {}
        self.version = version

    @classmethod
    def from_dict(cls, data: dict[str, Any], version: str = "") -> PhiRedactor:
        try:
            patterns = []
            seen: set[str] = set()
            for entry in data["patterns"]:
                name = str(entry["name"])
                if name in seen:
                    raise SpecError(f"{version}: PHI pattern {name!r} listed twice")
                seen.add(name)
                flags = 0
                for flag in entry.get("flags", []):
                    if flag not in _FLAGS:
                        raise SpecError(f"{version}: pattern {name!r}: unknown flag {flag!r}")
                    flags |= _FLAGS[flag]
                patterns.append(PhiPattern(name, re.compile(entry["regex"], flags)))
            placeholders = {
                source: re.compile(entry["regex"])
                for source, entry in (data.get("source_placeholders") or {}).items()
            }
            return cls(patterns, str(data["marker"]["value"]), placeholders, version)
        except re.error as exc:
            raise SpecError(f"PHI pattern file {version}: bad regex: {exc}") from exc
        except (KeyError, TypeError) as exc:
            raise SpecError(f"PHI pattern file {version} is malformed: {exc!r}") from exc

    def redact(self, text: str) -> RedactionResult:
        counts: Counter[str] = Counter()
        for pattern in self.patterns:
            text, n = self._apply(pattern.regex, text)
            counts[pattern.name] += n
        return RedactionResult(text=text, counts={k: v for k, v in counts.items() if v})

    def _apply(self, regex: re.Pattern[str], text: str) -> tuple[str, int]:
        if "phi" not in regex.groupindex:
            return regex.subn(self.marker, text)

        def replace(match: re.Match[str]) -> str:
            start, end = match.span("phi")
            whole_start = match.start()
            piece = match.group(0)
            return piece[: start - whole_start] + self.marker + piece[end - whole_start :]

        return regex.subn(replace, text)

    def normalise_placeholders(self, source: str, text: str) -> tuple[str, int]:
        """Replace a source's own de-identification placeholder (IU X-ray `XXXX`) by the marker."""
        regex = self.source_placeholders.get(source)
        if regex is None:
            return text, 0
        replaced, n = regex.subn(self.marker, text)
        return replaced, (0 if regex.pattern == re.escape(self.marker) or replaced == text else n)


@cache
def load_redactor(ref: str = "phi_patterns.v1") -> PhiRedactor:
    path = resource_path("curation_rules", f"{ref}.yaml")
    if not path.is_file():
        raise SpecError(f"unknown PHI pattern set {ref!r} (no {path})")
    return PhiRedactor.from_dict(yaml.safe_load(path.read_text(encoding="utf-8")), ref)
